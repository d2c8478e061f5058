"""Small texts shared by several handlers: role and kind names, dates, names."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from aiogram import html
from aiogram.utils.i18n import gettext as _

from storage.models import Organisation, OrgKind, Role

NAME_MAX = 128
TITLE_MAX = 64


def is_number(value: str) -> bool:
    """Plain ASCII digits that int() reads ("²".isdigit() is True too), not absurdly long."""
    return value.isascii() and value.isdigit() and len(value) <= 12


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def in_messages(lines: list[str], limit: int = 4096) -> list[str]:
    """Lines joined into as few messages as Telegram's length allows (each line fits)."""
    parts: list[str] = []
    for line in lines:
        if parts and len(parts[-1]) + 1 + len(line) <= limit:
            parts[-1] += "\n" + line
        else:
            parts.append(line[:limit])
    return parts


def other_org_alert() -> str:
    """A button from another of the person's organisations (Actor.elsewhere)."""
    return _("This is from another of your organisations. Switch to it with /org, then press again.")


def role_name(role: str) -> str:
    names = {
        Role.ADMIN: _("administrator"),
        Role.HEAD: _("head"),
        Role.TEACHER: _("teacher"),
        Role.SPECIALIST: _("specialist"),
        Role.PARENT: _("parent"),
        Role.STUDENT: _("student"),
    }
    return names.get(Role(role), role)


def kind_name(kind: str) -> str:
    names = {
        OrgKind.KINDERGARTEN: _("kindergarten"),
        OrgKind.SCHOOL: _("school"),
        OrgKind.CENTRE: _("after-school centre"),
    }
    return names.get(OrgKind(kind), kind)


def local_time(moment: datetime, org: Organisation | None) -> str:
    zone = ZoneInfo(org.timezone) if org is not None else None
    return moment.astimezone(zone).strftime("%d.%m.%Y %H:%M")


# Characters that print as nothing: zero-width ones and joiners, direction
# controls (an override can make a text read backwards), the soft hyphen, and
# the blank "letters" (Hangul fillers, the Braille blank) that isalpha() accepts.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064"
    "\u2066-\u2069\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0]"
)


def plain(text: str | None) -> str:
    """A short field as typed, without what prints as nothing, spaces collapsed."""
    return " ".join(_INVISIBLE.sub("", text or "").split())


def blank(text: str | None) -> bool:
    """Nothing a reader would see: empty, spaces, or only invisible characters."""
    return not plain(text)


def clean_name(text: str | None, limit: int = NAME_MAX) -> str | None:
    """A person's or group's name as typed, or None if it cannot be one."""
    if not text:
        return None
    value = plain("".join(ch for ch in text if ch.isprintable()))
    if len(value) < 2 or len(value) > limit or value.startswith("/"):
        return None
    if not any(ch.isalpha() for ch in value):
        return None
    return value


def q(text: str | None) -> str:
    """Anything a user typed, quoted for HTML."""
    return html.quote(text or "")


_FORMATS = ("%d.%m.%Y %H:%M", "%d.%m.%y %H:%M", "%Y-%m-%d %H:%M")
_NO_YEAR = re.compile(r"(\d{1,2})[./](\d{1,2}) (\d{1,2}:\d{2})")


def parse_local_time(text: str, zone: str, now: datetime) -> datetime | None:
    """A date and time typed in the organisation's zone, as an aware UTC moment.

    Without a year, the next such date from now is meant (in December, "05.01"
    is next January). Returns None when it cannot be read.
    """
    value = re.sub(r"\s+", " ", text.strip().replace(",", " ")).replace("в ", "")
    tz = ZoneInfo(zone)
    local_now = now.astimezone(tz)
    if match := _NO_YEAR.fullmatch(value):
        # This year's date, or next year's once this one has passed; the year is
        # given to strptime, so 29.02 is read in a leap year (1900, its default, is not).
        day, month, clock = match.groups()
        for year in (local_now.year, local_now.year + 1):
            try:
                parsed = datetime.strptime(f"{day}.{month}.{year} {clock}", "%d.%m.%Y %H:%M")
            except ValueError:
                continue
            if parsed.replace(tzinfo=tz) >= local_now - timedelta(days=1):
                return parsed.replace(tzinfo=tz).astimezone(timezone.utc)
        return None
    for fmt in _FORMATS:
        try:
            parsed = datetime.strptime(value, fmt)
        except ValueError:
            continue
        return parsed.replace(tzinfo=tz).astimezone(timezone.utc)
    return None


def future_time(text: str, org: Organisation) -> tuple[datetime | None, str | None]:
    """A typed date and time that must lie ahead: (the moment, None) or (None, what to tell the person)."""
    moment = parse_local_time(text, org.timezone, datetime.now(timezone.utc))
    if moment is None:
        return None, _("I cannot read this date. Send it like <code>25.12 18:30</code> or <code>25.12.2026 18:30</code>.")
    if moment <= datetime.now(timezone.utc):
        return None, _("This time has already passed. Send a time in the future.")
    return moment, None
