"""Files for people: /stats and /audit as Excel workbooks a school opens as is —
headers in the reader's language, local times (no seconds, no microseconds,
real date cells), roles and actions in words, rates as percentages.

The CSV files of /stats and /audit stay as they were, for programs
(snake_case headers, UTC ISO times, action codes).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiogram.utils.i18n import gettext as _
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from bot.dates import day_label, when
from handlers.texts import role_name
from storage.models import Organisation, Role
from storage.repo import Repo

DATETIME_FORMAT = "DD.MM.YYYY HH:MM"
DATE_FORMAT = "DD.MM.YYYY"
PERCENT_FORMAT = "0%"
_HEADER_FILL = PatternFill("solid", start_color="DDEBF7")


def action_name(code: str) -> str:
    """An audit action in words (an unknown code is shown as it is)."""
    names = {
        "admin.appoint": _("Administrator appointed"),
        "chat.link": _("Group chat linked"),
        "chat.lost": _("Group chat lost (the bot was removed)"),
        "chat.unlink": _("Group chat unlinked"),
        "group.archive": _("Group archived"),
        "group.create": _("Group created"),
        "group.rename": _("Group renamed"),
        "invitation.create": _("Invitation created"),
        "invitation.approval": _("Approval of a class code switched"),
        "classlist.import": _("Class list imported"),
        "stafflist.import": _("Staff list imported"),
        "family_code.reissue": _("Family code reissued"),
        "staff_code.join": _("Joined with a staff code"),
        "org.audit_keep_months": _("Audit log retention changed"),
        "invitation.revoke": _("Invitation revoked"),
        "invitation.revoke_unused": _("Unused invitations revoked"),
        "join_request.approved": _("Join request approved"),
        "join_request.rejected": _("Join request rejected"),
        "member.remove": _("Member removed"),
        "member.rename": _("Member's name corrected"),
        "org.absence_cutoff": _("Cut-off for absence notices changed"),
        "org.quiet_hours": _("Quiet hours changed"),
        "org.setup": _("Organisation set up"),
        "person.forget": _("Personal data deleted"),
        "post.withdraw": _("Post withdrawn"),
        "pupil.move": _("Child moved to another group"),
        "relay.block": _("Sender blocked"),
        "teacher.verify": _("Teacher verified"),
        "teacher.decline": _("Teacher declined"),
    }
    return names.get(code, code)


_ROLE_CODES = re.compile(r"\b(" + "|".join(r.value for r in Role) + r")\b")


def detail_text(detail: str | None) -> str:
    """An audit detail with role codes in words («5А; parent; 14d» → «5А; родитель; 14d»)."""
    return _ROLE_CODES.sub(lambda m: role_name(m.group(1)), detail or "")


async def subject_names(repo: Repo, org_id: int, subjects: Iterable[str | None]) -> dict[str, str]:
    """«person:12» → the person's name, «group:3» → the group's title; others in words."""
    person_ids, group_ids = set(), set()
    for subject in subjects:
        kind, _sep, ref = (subject or "").partition(":")
        if ref.isdigit():
            (person_ids if kind in ("person", "pupil") else group_ids if kind == "group" else set()).add(int(ref))
    people = {p.id: p.display_name for p in await repo.people_by_ids(person_ids)} if person_ids else {}
    groups = {}
    for group_id in sorted(group_ids):  # archived ones too: a few at most per export
        if (group := await repo.group(org_id, group_id)) is not None:
            groups[group_id] = group.title
    labels = {"invitation": _("invitation"), "post": _("post"), "org": _("organisation"), "chat": _("chat")}
    names: dict[str, str] = {}
    for subject in subjects:
        if not subject:
            continue
        kind, _sep, ref = subject.partition(":")
        number = int(ref) if ref.isdigit() else None
        if kind in ("person", "pupil") and number in people:
            names[subject] = people[number]
        elif kind == "group" and number in groups:
            names[subject] = groups[number]
        elif kind in labels:
            names[subject] = f"{labels[kind]} {ref}".strip()
        else:
            names[subject] = subject
    return names


def local_naive(moment: datetime, zone: str) -> datetime:
    """The wall-clock time in the organisation's zone, to the minute (Excel has no time zones)."""
    return moment.astimezone(ZoneInfo(zone)).replace(tzinfo=None, second=0, microsecond=0)


def workbook(sheets: Sequence[tuple[str, Sequence[str], Sequence[Sequence[Any]], dict[int, str]]]) -> bytes:
    """Sheets of (title, headers, rows, {column index: number format}) as an .xlsx file:
    a bold, frozen header with filters, columns wide enough to read."""
    book = Workbook()
    book.remove(book.active)  # type: ignore[arg-type]
    for title, headers, rows, formats in sheets:
        sheet = book.create_sheet(_sheet_title(title))
        sheet.append(list(headers))
        for cell in sheet[1]:
            cell.font = Font(bold=True)
            cell.fill = _HEADER_FILL
            cell.alignment = Alignment(wrap_text=True, vertical="top")
        for row in rows:
            sheet.append(list(row))
        for column, number_format in formats.items():
            for (cell,) in sheet.iter_rows(min_row=2, min_col=column + 1, max_col=column + 1):
                cell.number_format = number_format
        for index, header in enumerate(headers, start=1):
            values = [header, *(_shown(r[index - 1], formats.get(index - 1)) for r in rows)]
            width = min(60, max(8, *(len(line) for v in values for line in str(v).split("\n"))) + 2)
            sheet.column_dimensions[get_column_letter(index)].width = width
        sheet.freeze_panes = "A2"
        if rows:
            sheet.auto_filter.ref = sheet.dimensions
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _sheet_title(title: str) -> str:
    return re.sub(r"[\[\]:*?/\\]", " ", title)[:31] or "Sheet"


def _shown(value: Any, number_format: str | None) -> str:
    if isinstance(value, datetime):
        return "00.00.0000 00:00"
    if isinstance(value, date):
        return "00.00.0000"
    if number_format == PERCENT_FORMAT:
        return "100%"
    return "" if value is None else str(value)


def stats_workbook(data: dict, org: Organisation, now: datetime) -> bytes:  # type: ignore[type-arg]
    roles = list(Role)
    headers = [_("Group"), *[role_name(r).capitalize() for r in roles], _("Posts"), _("Copies sent"),
               _("Delivered"), _("Delivered, %"), _("Not reachable"), _("Asked to acknowledge"),
               _("Acknowledged"), _("Acknowledged, %"), _("Absences (30 days)")]
    rows = []
    for r in data["rows"]:
        rows.append([
            r["group"], *[r["members"].get(role.value, 0) for role in roles], r["posts"], r["copies"],
            r["delivered"], r["delivered"] / r["copies"] if r["copies"] else None, r["unreachable"],
            r["ack_delivered"], r["acks"], r["acks"] / r["ack_delivered"] if r["ack_delivered"] else None,
            r["absences"],
        ])
    first = len(roles) + 1
    formats = {first + 3: PERCENT_FORMAT, first + 7: PERCENT_FORMAT}
    today = now.astimezone(ZoneInfo(org.timezone)).date()
    summary = [
        [_("Organisation"), org.name],
        [_("As of"), when(now, org.timezone)],
        [_("Active people, last 7 days"), data["active7"]],
        [_("Active people, last 30 days"), data["active30"]],
    ]
    for n, joined in enumerate(data["weeks"]):
        start = today - timedelta(days=7 * (len(data["weeks"]) - n))
        summary.append([_("Joined in the week from {day}").format(day=day_label(start, today=today)), joined])
    return workbook([
        (_("Groups"), headers, rows, formats),
        (_("Summary"), [_("Figure"), _("Value")], summary, {}),
    ])


async def audit_workbook(repo: Repo, org: Organisation, entries: list[tuple[Any, str]]) -> bytes:
    names = await subject_names(repo, org.id, [e.subject for e, _who in entries])
    rows = [
        [local_naive(e.created_at, org.timezone), who, action_name(e.action), names.get(e.subject or "", ""),
         detail_text(e.detail)]
        for e, who in entries
    ]
    headers = [_("Time ({zone})").format(zone=org.timezone), _("Who"), _("Action"), _("About"), _("Details")]
    return workbook([(_("Audit log"), headers, rows, {0: DATETIME_FORMAT})])


# -- the calendar file of /events ----------------------------------------------------------

EVENT_LENGTH = timedelta(hours=1)  # an event has no end in Parta: the calendar shows an hour


def events_calendar(posts: Sequence[Any], org: Organisation, deployment: str, title: str) -> bytes:
    """The .ics of /events: each event with an end, a UID that is unique across
    deployments and organisations (post, organisation and the bot's username),
    an alarm per reminder offset, and the calendar's name."""
    from icalendar import Alarm, Calendar, Event

    from bot.posts import plain_text
    from bot.timeline import reminder_minutes

    calendar = Calendar()
    calendar.add("prodid", "-//Parta//parta//")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    calendar.add("x-wr-calname", title)
    calendar.add("x-wr-timezone", org.timezone)
    host = re.sub(r"[^a-z0-9_.-]", "", (deployment or "parta").lower()) or "parta"
    for post in posts:
        summary = plain_text(post.text).strip().split("\n", 1)[0][:100] or _("Event")
        event = Event()
        event.add("uid", f"post-{post.id}.org-{org.id}@{host}")
        event.add("summary", summary)
        event.add("dtstart", post.event_at)
        event.add("dtend", post.event_at + EVENT_LENGTH)
        event.add("dtstamp", post.edited_at or post.created_at)
        event.add("sequence", int((post.edited_at or post.created_at).timestamp()) - int(post.created_at.timestamp()))
        if post.place:
            event.add("location", post.place)
        if post.text:
            event.add("description", plain_text(post.text))
        for minutes in reminder_minutes(post):
            alarm = Alarm()
            alarm.add("action", "DISPLAY")
            alarm.add("description", summary)
            alarm.add("trigger", timedelta(minutes=-minutes))
            event.add_component(alarm)
        calendar.add_component(event)
    return calendar.to_ical()
