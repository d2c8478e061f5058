"""Small texts shared by several handlers: role and kind names, dates, names."""

from __future__ import annotations

import re
from datetime import datetime

from aiogram import html
from aiogram.utils.i18n import gettext as _

from bot.dates import future, when
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
        OrgKind.KINDERGARTEN: _("Kindergarten"),
        OrgKind.SCHOOL: _("School"),
        OrgKind.CENTRE: _("After-school centre"),
    }
    return names.get(OrgKind(kind), kind)


def local_time(moment: datetime, org: Organisation | None) -> str:
    return when(moment, org.timezone if org is not None else None)


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


def future_time(text: str, org: Organisation) -> tuple[datetime | None, str | None]:
    """A typed date and time that must lie ahead: (the moment, None) or (None, what to tell the person)."""
    return future(text, org.timezone)
