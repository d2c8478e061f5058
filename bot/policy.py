"""One delivery policy: when a message to a person may leave.

Every path to other people passes here — `bot.outbox.enqueue` (cards,
answers, notices, relays), `bot.posts.broadcast` (posts, re-notifications,
reminders) and `bot.posts.notify` (summaries, weekly reminders) — so quiet
hours, the daily digest and urgency are decided once, not at each call site.
Who may still receive a message is decided by `bot.rights` (the recipients of
a post are its audience's live members when it is sent; a digest leaves out
anyone who is no longer one).

- Urgent posts and the author's own card go at once.
- Everything else meant to be read by a person waits for the end of the
  organisation's quiet hours (default 21:00–08:00): posts, reminders to
  acknowledge, absence notices, relayed messages, cards and answers to staff.
- Edits and withdrawals of copies already delivered, menus and chat
  housekeeping are not messages anyone is woken by: at once.
- An event reminder waits only if quiet hours end well before the event.
- A family on a daily digest gets ordinary posts in it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.timeline import next_daily, quiet_until
from storage.models import Organisation, Person

# Messages that wait for the end of quiet hours unless urgent.
QUIET_TOPICS = frozenset({
    "post", "post_renotify", "event_reminder", "weekly_reminder", "absence", "relay",
    "join_request", "join_request_answer", "verify", "verify_answer", "admin_appointed",
    "ack_deadline", "poll_result", "lost_right",
})
# Ordinary posts go into a family's digest.
DIGEST_TOPICS = frozenset({"post"})
EVENT_MARGIN = timedelta(minutes=30)


def not_before(org: Organisation | None, topic: str | None, *, now: datetime, urgent: bool = False,
               event_at: datetime | None = None) -> datetime | None:
    """When a message about `topic` may leave (None: now)."""
    if org is None or urgent or topic not in QUIET_TOPICS:
        return None
    hold = quiet_until(org, now)
    if hold is not None and topic == "event_reminder" and event_at is not None and hold > event_at - EVENT_MARGIN:
        return None  # a reminder after the event would be no reminder
    return hold


def digest_at(person: Person, org: Organisation, topic: str | None, *, now: datetime,
              urgent: bool = False) -> datetime | None:
    """The digest that carries this message to this person, if they chose one."""
    if urgent or topic not in DIGEST_TOPICS or not person.digest_at:
        return None
    return next_daily(person.digest_at, org.timezone, now)
