"""Dates as people type them and as people read them.

`read()` understands what a teacher types, in Russian or English whatever the
interface language: «завтра 18:30», «пт 9:00», «25 декабря 10:00», «25.12
10:00», «18:30» (today, or tomorrow once it has passed), "tomorrow 6:30 pm",
"fri 9:00", "Dec 25 10:00", "25 December 2027 10:00". The wall-clock time is
the organisation's (zoneinfo, so a daylight-saving change is right: a time the
clocks skip is refused, a time they repeat means the first one).

`when()` shows a moment with its weekday in the reader's language (Babel), in
the organisation's zone: «пт, 25 декабря, 18:30», "Fri, 25 December, 18:30";
the year only when it is not the current one.
"""

from __future__ import annotations

import re
from html import unescape
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext
from babel.dates import format_date, format_datetime

# -- reading ---------------------------------------------------------------------------

UNREADABLE = "unreadable"
IMPOSSIBLE = "impossible"  # 31.02, 25:00, 29.02 of a common year
SKIPPED = "skipped"  # the clocks jump over it (daylight saving starts)
PAST = "past"
NO_TIME = "no_time"  # a day without the time of day
WEEKDAY = "weekday"  # "пт 24.12" when 24.12 is a Thursday

# A date without a year that lies at most this far back is a slip ("already
# passed"), not next year's date.
SLIP = timedelta(days=31)

_MONTHS = (
    (r"январ[ья]|янв", r"january|jan"),
    (r"феврал[ья]|фев|февр", r"february|feb"),
    (r"марта?|мар", r"march|mar"),
    (r"апрел[ья]|апр", r"april|apr"),
    (r"ма[йя]", r"may"),
    (r"июн[ья]|июн", r"june|jun"),
    (r"июл[ья]|июл", r"july|jul"),
    (r"августа?|авг", r"august|aug"),
    (r"сентябр[ья]|сен|сент", r"september|sept|sep"),
    (r"октябр[ья]|окт", r"october|oct"),
    (r"ноябр[ья]|ноя|нояб", r"november|nov"),
    (r"декабр[ья]|дек", r"december|dec"),
)
_MONTH = [re.compile(rf"(?:{ru}|{en})\.?") for ru, en in _MONTHS]

_WEEKDAYS = (
    r"понедельник|пн|monday|mon",
    r"вторник|вт|tuesday|tues|tue",
    r"среда|среду|ср|wednesday|wed",
    r"четверг|чт|thursday|thurs|thur|thu",
    r"пятница|пятницу|пт|friday|fri",
    r"суббота|субботу|сб|saturday|sat",
    r"воскресенье|вс|sunday|sun",
)
_WEEKDAY = [re.compile(rf"(?:{w})\.?") for w in _WEEKDAYS]

_RELATIVE = {
    "сегодня": 0, "today": 0,
    "завтра": 1, "tomorrow": 1,
    "послезавтра": 2, "day after tomorrow": 2, "the day after tomorrow": 2,
}
# Words that carry nothing here: «в 18:30», «во вторник», "at 9", "on Friday", «25 декабря 2026 г.».
_FILLER = re.compile(r"\b(?:в|во|at|on|the|of|next|this|следующий|следующую|следующее|эту|этот|это|г|года)\b\.?")

_CLOCK = re.compile(
    r"(?<![\d.:/-])(?P<h>\d{1,2})(?::(?P<m>\d{2}))?\s*(?P<ampm>a\.?m\.?|p\.?m\.?)?(?![\d.:/-])"
)
_NUMERIC = re.compile(r"(?P<d>\d{1,2})[./](?P<m>\d{1,2})(?:[./](?P<y>\d{4}|\d{2}))?")
_ISO = re.compile(r"(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})")
_DAY_MONTH = re.compile(r"(?P<d>\d{1,2})(?:st|nd|rd|th|-?го|-?е)?\s+(?P<mon>[a-zа-я]+\.?)(?:\s+(?P<y>\d{4}))?")
_MONTH_DAY = re.compile(r"(?P<mon>[a-z]+\.?)\s+(?P<d>\d{1,2})(?:st|nd|rd|th)?(?:\s+(?P<y>\d{4}))?")


@dataclass(frozen=True)
class Reading:
    """What a typed date came to: a moment (aware, UTC) or the problem with it."""

    moment: datetime | None = None
    problem: str | None = None
    day: date | None = None  # the local day, when one was read (also with NO_TIME or WEEKDAY)

    @property
    def ok(self) -> bool:
        return self.moment is not None


def _month(token: str) -> int | None:
    for number, pattern in enumerate(_MONTH, start=1):
        if pattern.fullmatch(token):
            return number
    return None


def _weekday(token: str) -> int | None:
    for number, pattern in enumerate(_WEEKDAY):
        if pattern.fullmatch(token):
            return number
    return None


def _normal(text: str) -> str:
    value = text.strip().lower().replace("ё", "е").replace(",", " ").replace("\u00a0", " ")
    value = re.sub(r"(?<=\d)[тt](?=\d)", " ", value)  # 2026-12-25T18:30
    return re.sub(r"\s+", " ", value).strip()


def _clock(text: str) -> tuple[tuple[int, int] | None | str, str]:
    """(hours, minutes) found in the text and the rest of it; IMPOSSIBLE for 25:00."""
    found = None
    for match in _CLOCK.finditer(text):
        if match.group("m") is None and match.group("ampm") is None:
            continue  # a bare number is a day («25 декабря»), not a time
        found = match
    if found is None:
        return None, text
    rest = (text[: found.start()] + " " + text[found.end():]).strip()
    hours, minutes = int(found.group("h")), int(found.group("m") or 0)
    ampm = (found.group("ampm") or "").replace(".", "")
    if ampm:
        if not 1 <= hours <= 12:
            return IMPOSSIBLE, rest
        hours = hours % 12 + (12 if ampm == "pm" else 0)
    if hours > 23 or minutes > 59:
        return IMPOSSIBLE, rest
    return (hours, minutes), rest


def _year(value: str | None) -> int | None:
    if value is None:
        return None
    year = int(value)
    return year + 2000 if year < 100 else year


def _calendar_day(day: int, month: int, year: int | None, today: date) -> date | str:
    """The date, the next one when the year is left out (a slip into the past stays in the past)."""
    if year is not None:
        try:
            return date(year, month, day)
        except ValueError:
            return IMPOSSIBLE
    for candidate in (today.year, today.year + 1, today.year + 2, today.year + 3, today.year + 4):
        try:
            found = date(candidate, month, day)
        except ValueError:
            if not 1 <= month <= 12 or not 1 <= day <= 31 or (month, day) != (2, 29):
                return IMPOSSIBLE
            continue  # 29 February: the next leap year
        if found >= today - SLIP:
            return found
    return IMPOSSIBLE


def _date_part(text: str, today: date) -> tuple[date | None | str, int | None, bool]:
    """(the day or a problem, a weekday named with it, whether the weekday was all there was)."""
    words = re.sub(r"\s+", " ", _FILLER.sub(" ", text)).strip()
    if not words:
        return None, None, False
    if words in _RELATIVE:
        return today + timedelta(days=_RELATIVE[words]), None, False
    named: int | None = None
    first, _sep, remainder = words.partition(" ")
    if (weekday := _weekday(first)) is not None:
        if not remainder:
            return today + timedelta(days=(weekday - today.weekday()) % 7), weekday, True
        named, words = weekday, remainder
    found: date | str
    if (match := _ISO.fullmatch(words)) is not None:
        found = _calendar_day(int(match["d"]), int(match["m"]), int(match["y"]), today)
    elif (match := _NUMERIC.fullmatch(words)) is not None:
        found = _calendar_day(int(match["d"]), int(match["m"]), _year(match["y"]), today)
    elif (match := _DAY_MONTH.fullmatch(words)) is not None and (month := _month(match["mon"])):
        found = _calendar_day(int(match["d"]), month, _year(match["y"]), today)
    elif (match := _MONTH_DAY.fullmatch(words)) is not None and (month := _month(match["mon"])):
        found = _calendar_day(int(match["d"]), month, _year(match["y"]), today)
    else:
        return UNREADABLE, None, False
    return found, named, False


def read(text: str, zone_name: str, now: datetime, *, day: date | None = None) -> Reading:
    """A typed date and time in the zone, which must lie after `now`.

    `day` is a day already chosen (a button): then the time alone is enough.
    A time alone means today, or tomorrow once today's has passed; a weekday
    alone means the next one (today while its time is still ahead).
    """
    zone = ZoneInfo(zone_name)
    today = now.astimezone(zone).date()
    clock, rest = _clock(_normal(text))
    if clock == IMPOSSIBLE:
        return Reading(problem=IMPOSSIBLE)
    found, named, weekday_alone = _date_part(rest, today)
    if isinstance(found, str):
        return Reading(problem=found)
    if found is None and day is not None:
        found = day
    if clock is None:
        return Reading(problem=NO_TIME if found is not None else UNREADABLE, day=found)
    assert isinstance(clock, tuple)
    at = time(*clock)
    if found is None:  # a time alone
        found = today if _utc(today, at, zone) > now else today + timedelta(days=1)
    elif weekday_alone and _utc(found, at, zone) <= now:
        found += timedelta(days=7)
    elif named is not None and found.weekday() != named:
        return Reading(problem=WEEKDAY, day=found)
    local = datetime.combine(found, at, tzinfo=zone)
    moment = local.astimezone(timezone.utc)
    if moment.astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
        return Reading(problem=SKIPPED, day=found)
    if moment <= now:
        return Reading(problem=PAST, day=found)
    return Reading(moment=moment, day=found)


def _utc(day: date, at: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=zone).astimezone(timezone.utc)


def examples() -> str:
    return _("for example <code>tomorrow 18:30</code>, <code>fri 9:00</code>, <code>25.12 10:00</code> "
             "or <code>25 December 10:00</code>")


def explain(reading: Reading, zone_name: str) -> str:
    """What to tell the person about a typed date that cannot be used."""
    if reading.problem == PAST:
        return _("This time has already passed. Send a time in the future ({examples}).").format(examples=examples())
    if reading.problem == IMPOSSIBLE:
        return _("There is no such date or time. Please check it and send it again ({examples}).").format(
            examples=examples())
    if reading.problem == SKIPPED:
        return _("The clocks skip this time on that day (daylight saving). Please choose another time.")
    if reading.problem == NO_TIME:
        return _("And at what time? Send the day with the time, like <code>{day} 18:30</code>.").format(
            day=reading.day.strftime("%d.%m") if reading.day else "25.12")
    if reading.problem == WEEKDAY and reading.day is not None:
        return _("{day} is a {weekday}. Please check the date and send it again.").format(
            day=format_date(reading.day, "d MMMM y", locale=_locale()),
            weekday=format_date(reading.day, "EEEE", locale=_locale()))
    return _("I cannot read this date. Send the day and the time, {examples}.").format(examples=examples())


def future(text: str, zone_name: str, now: datetime | None = None, *, day: date | None = None) -> tuple[datetime | None, str | None]:
    """(the moment, None), or (None, what to tell the person)."""
    reading = read(text, zone_name, now or datetime.now(timezone.utc), day=day)
    if reading.moment is not None:
        return reading.moment, None
    return None, explain(reading, zone_name)


# -- showing ---------------------------------------------------------------------------


def _locale() -> str:
    i18n = I18n.get_current(no_error=True)
    if i18n is None:
        return "ru"
    return i18n.current_locale or i18n.default_locale


def when(moment: datetime, zone_name: str | None, *, now: datetime | None = None) -> str:
    """«пт, 25 декабря, 18:30» / "Fri, 25 December, 18:30" in the reader's language;
    with the year when it is not this year."""
    zone = ZoneInfo(zone_name) if zone_name else timezone.utc
    local = moment.astimezone(zone)
    this_year = (now or datetime.now(timezone.utc)).astimezone(zone).year
    pattern = "EEE, d MMMM, HH:mm" if local.year == this_year else "EEE, d MMMM y, HH:mm"
    return format_datetime(local, pattern, tzinfo=zone, locale=_locale())


def day_label(day: date, *, long: bool = False, today: date | None = None) -> str:
    """«пт, 25 декабря» / "Fri, 25 December" (with the year when it is not this year)."""
    year = (today or date.today()).year
    pattern = "EEE, d MMMM" if day.year == year else "EEE, d MMMM y"
    if long:
        pattern = "EEEE, d MMMM y"
    return format_date(day, pattern, locale=_locale())


def short_day(day: date) -> str:
    """«пт 25.12» / "Fri 25.12": a button's label."""
    return format_date(day, "EEE dd.MM", locale=_locale())


def period(start: date, end: date) -> str:
    """Two days, or one when they are the same."""
    if start == end:
        return day_label(start)
    return day_label(start) + " – " + day_label(end)


def in_time(left: timedelta) -> str:
    """How soon, roughly as a person says it: «через 2 дня», «через 1 час», «через 15 минут»."""
    minutes = max(1, round(left.total_seconds() / 60))
    if minutes >= 1440 and minutes % 1440 < 60:
        return ngettext("in {n} day", "in {n} days", minutes // 1440).format(n=minutes // 1440)
    if minutes >= 1440:
        hours = round(minutes / 60)
        return ngettext("in {n} hour", "in {n} hours", hours).format(n=hours)
    if minutes >= 60 and minutes % 60 < 5:
        return ngettext("in {n} hour", "in {n} hours", minutes // 60).format(n=minutes // 60)
    if minutes >= 60:
        return _("in {h} h {m} min").format(h=minutes // 60, m=minutes % 60)
    return ngettext("in {n} minute", "in {n} minutes", minutes).format(n=minutes)


def plain(text: str) -> str:
    """A hint without its HTML, for a button's alert."""
    return unescape(re.sub(r"<[^>]+>", "", text))
