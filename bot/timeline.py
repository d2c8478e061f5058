"""Local time: quiet hours, weekly occurrences, and the due items a post or a
weekly item needs. All moments are aware UTC; the organisation's zone is
applied only to read and show wall-clock times (zoneinfo, so daylight-saving
changes are right)."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from storage.models import DueItem, DueKind, Organisation, Post, PostKind, WeeklyItem
from storage.repo import Repo

DEFAULT_REMINDERS = (1440, 60)  # a day and an hour before an event
REMINDER_CHOICES = (10080, 1440, 60, 15)


def hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def parse_hhmm(text: str) -> str | None:
    """'9:05', '09.05', '9 05' → '09:05'; None when it is not a time of day."""
    match = re.fullmatch(r"\s*(\d{1,2})[:.\s](\d{2})\s*", text)
    if not match:
        return None
    hours, minutes = int(match.group(1)), int(match.group(2))
    if hours > 23 or minutes > 59:
        return None
    return f"{hours:02d}:{minutes:02d}"


def _local(day: date, at: time, zone: ZoneInfo) -> datetime:
    """A wall-clock time on a day, as UTC. In the spring gap (02:30 that never
    happens) zoneinfo moves it forward; in the autumn overlap the first one counts."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(timezone.utc)


def quiet_until(org: Organisation, moment: datetime) -> datetime | None:
    """If `moment` falls in the organisation's quiet hours, the end of them (UTC)."""
    if not org.quiet_start or not org.quiet_end or org.quiet_start == org.quiet_end:
        return None
    zone = ZoneInfo(org.timezone)
    local = moment.astimezone(zone)
    start, end = hhmm(org.quiet_start), hhmm(org.quiet_end)
    now = local.time().replace(tzinfo=None)
    if start < end:  # e.g. 13:00–15:00 on the same day
        return _local(local.date(), end, zone) if start <= now < end else None
    # Crosses midnight, e.g. 21:00–08:00.
    if now >= start:
        return _local(local.date() + timedelta(days=1), end, zone)
    if now < end:
        return _local(local.date(), end, zone)
    return None


def next_weekly(item: WeeklyItem, zone_name: str, after: datetime) -> datetime:
    """The next occurrence strictly after `after`, in UTC."""
    zone = ZoneInfo(zone_name)
    local_after = after.astimezone(zone)
    at = hhmm(item.time_of_day)
    day = local_after.date() + timedelta(days=(item.weekday - local_after.weekday()) % 7)
    moment = _local(day, at, zone)
    if moment <= after:
        moment = _local(day + timedelta(days=7), at, zone)
    return moment


def next_daily(at: str, zone_name: str, after: datetime) -> datetime:
    """The next time the clock shows `at` ("HH:MM") strictly after `after`, in UTC."""
    zone = ZoneInfo(zone_name)
    local_after = after.astimezone(zone)
    moment = _local(local_after.date(), hhmm(at), zone)
    if moment <= after:
        moment = _local(local_after.date() + timedelta(days=1), hhmm(at), zone)
    return moment


def reminder_minutes(post: Post) -> list[int]:
    if not post.reminder_minutes:
        return []
    return [int(m) for m in post.reminder_minutes.split(",") if m]


async def plan_post(repo: Repo, post: Post, now: datetime, *, only_reminders: bool = False) -> None:
    """The due items of a sent post: event reminders, the acknowledgement
    reminder and deadline, the poll's closing."""
    if post.kind == PostKind.EVENT and post.event_at is not None:
        for minutes in reminder_minutes(post):
            due = post.event_at - timedelta(minutes=minutes)
            if due > now:
                await repo.add_due(DueItem(
                    org_id=post.org_id, kind=DueKind.EVENT_REMINDER.value, ref_id=post.id, due_at=due,
                    minutes=minutes, key=f"event:{post.id}:{minutes}:{post.event_at.isoformat()}",
                ))
    if only_reminders:
        return
    if post.ask_ack and post.ack_due_at is not None and post.ack_due_at > now:
        # Those who have not acknowledged are reminded halfway to the deadline.
        reminder = now + (post.ack_due_at - now) / 2
        await repo.add_due(DueItem(org_id=post.org_id, kind=DueKind.ACK_REMINDER.value, ref_id=post.id,
                                   due_at=reminder, key=f"ack-reminder:{post.id}"))
        await repo.add_due(DueItem(org_id=post.org_id, kind=DueKind.ACK_DEADLINE.value, ref_id=post.id,
                                   due_at=post.ack_due_at, key=f"ack-deadline:{post.id}"))
    if post.kind == PostKind.POLL and post.poll_closes_at is not None and post.poll_closed_at is None:
        await repo.add_due(DueItem(org_id=post.org_id, kind=DueKind.POLL_CLOSE.value, ref_id=post.id,
                                   due_at=post.poll_closes_at, key=f"poll-close:{post.id}"))


async def plan_scheduled_post(repo: Repo, post: Post) -> None:
    assert post.scheduled_at is not None
    await repo.add_due(DueItem(
        org_id=post.org_id, kind=DueKind.SCHEDULED_POST.value, ref_id=post.id, due_at=post.scheduled_at,
        key=f"scheduled:{post.id}:{post.scheduled_at.isoformat()}",
    ))


def next_weekly_reminder(item: WeeklyItem, zone_name: str, now: datetime) -> DueItem | None:
    """The reminder of the next occurrence (each occurrence has its own key)."""
    if not item.remind_minutes or item.archived_at is not None:
        return None
    after = now + timedelta(minutes=item.remind_minutes)
    occurrence = next_weekly(item, zone_name, after)
    return DueItem(
        org_id=item.org_id, kind=DueKind.WEEKLY_REMINDER.value, ref_id=item.id,
        due_at=occurrence - timedelta(minutes=item.remind_minutes), minutes=item.remind_minutes,
        key=f"weekly:{item.id}:{occurrence.isoformat()}",
    )


async def plan_weekly(repo: Repo, item: WeeklyItem, zone_name: str, now: datetime) -> None:
    reminder = next_weekly_reminder(item, zone_name, now)
    if reminder is not None:
        await repo.add_due(reminder)

