"""Dates as teachers type them (bot/dates.py), with fixed clocks, in both
languages, across a daylight-saving change, midnight and 29 February; and how
dates are shown (the weekday in the reader's language)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from bot import dates
from bot.i18n import create_i18n, in_locale

MSK = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")
# Tuesday 1 December 2026, 12:00 in Moscow.
TUESDAY_NOON = datetime(2026, 12, 1, 12, 0, tzinfo=MSK).astimezone(timezone.utc)


def msk(*args: int) -> datetime:
    return datetime(*args, tzinfo=MSK).astimezone(timezone.utc)


def read(text: str, now: datetime = TUESDAY_NOON, zone: str = "Europe/Moscow", **kw) -> dates.Reading:  # type: ignore[no-untyped-def]
    return dates.read(text, zone, now, **kw)


@pytest.mark.parametrize(("typed", "expected"), [
    ("завтра 18:30", msk(2026, 12, 2, 18, 30)),
    ("Завтра в 18:30", msk(2026, 12, 2, 18, 30)),
    ("послезавтра 9:00", msk(2026, 12, 3, 9, 0)),
    ("сегодня 18:00", msk(2026, 12, 1, 18, 0)),
    ("пт 9:00", msk(2026, 12, 4, 9, 0)),
    ("в пятницу в 9:00", msk(2026, 12, 4, 9, 0)),
    ("пятница 9:00", msk(2026, 12, 4, 9, 0)),
    ("во вторник 13:00", msk(2026, 12, 1, 13, 0)),  # today, still ahead
    ("вт 11:00", msk(2026, 12, 8, 11, 0)),  # today's has passed: next week
    ("25 декабря 10:00", msk(2026, 12, 25, 10, 0)),
    ("25 дек 10:00", msk(2026, 12, 25, 10, 0)),
    ("25 декабря 2027 г. 10:00", msk(2027, 12, 25, 10, 0)),
    ("25-го декабря в 10:00", msk(2026, 12, 25, 10, 0)),
    ("1 мая 10:00", msk(2027, 5, 1, 10, 0)),  # May has passed this year: next May
    ("25.12 10:00", msk(2026, 12, 25, 10, 0)),
    ("25/12, 10:00", msk(2026, 12, 25, 10, 0)),
    ("25.12.2026 18:30", msk(2026, 12, 25, 18, 30)),
    ("25.12.27 18:30", msk(2027, 12, 25, 18, 30)),
    ("2026-12-25 18:30", msk(2026, 12, 25, 18, 30)),
    ("10:00 25.12", msk(2026, 12, 25, 10, 0)),
    ("18:30", msk(2026, 12, 1, 18, 30)),  # today
    ("11:59", msk(2026, 12, 2, 11, 59)),  # passed today: tomorrow
    ("12:00", msk(2026, 12, 2, 12, 0)),  # exactly now is not ahead
    ("tomorrow 18:30", msk(2026, 12, 2, 18, 30)),
    ("Tomorrow at 6:30 pm", msk(2026, 12, 2, 18, 30)),
    ("the day after tomorrow at 9am", msk(2026, 12, 3, 9, 0)),
    ("today 1 pm", msk(2026, 12, 1, 13, 0)),
    ("fri 9:00", msk(2026, 12, 4, 9, 0)),
    ("on Friday at 9:00", msk(2026, 12, 4, 9, 0)),
    ("next fri 9:00", msk(2026, 12, 4, 9, 0)),
    ("Sunday 12:00 am", msk(2026, 12, 6, 0, 0)),
    ("25 December 10:00", msk(2026, 12, 25, 10, 0)),
    ("25th of December 10:00", msk(2026, 12, 25, 10, 0)),
    ("Dec 25 10:00", msk(2026, 12, 25, 10, 0)),
    ("December 25th 2027 10:00", msk(2027, 12, 25, 10, 0)),
    ("dec. 25, 10:00", msk(2026, 12, 25, 10, 0)),
    ("fri 25 dec 10:00", msk(2026, 12, 25, 10, 0)),  # the weekday agrees with the date
    ("пт 25.12 10:00", msk(2026, 12, 25, 10, 0)),
    ("05.01 10:00", msk(2027, 1, 5, 10, 0)),  # in December, January is next year's
])
def test_what_teachers_type_is_read_in_the_organisations_zone(typed: str, expected: datetime) -> None:
    reading = read(typed)
    assert reading.problem is None, (typed, reading)
    assert reading.moment == expected, typed


@pytest.mark.parametrize(("typed", "problem"), [
    ("31.02 10:00", dates.IMPOSSIBLE),
    ("31 апреля 10:00", dates.IMPOSSIBLE),
    ("32.12 10:00", dates.IMPOSSIBLE),
    ("25.13 10:00", dates.IMPOSSIBLE),
    ("25:00", dates.IMPOSSIBLE),
    ("завтра 18:60", dates.IMPOSSIBLE),
    ("13 pm", dates.IMPOSSIBLE),
    ("29.02.2027 10:00", dates.IMPOSSIBLE),  # 2027 is not a leap year
    ("сегодня 9:00", dates.PAST),
    ("30.11 10:00", dates.PAST),  # yesterday: a slip, not next year's date
    ("01.01.2020 10:00", dates.PAST),
    ("25.12", dates.NO_TIME),
    ("завтра", dates.NO_TIME),
    ("friday", dates.NO_TIME),
    ("когда-нибудь", dates.UNREADABLE),
    ("вчера 10:00", dates.UNREADABLE),
    ("", dates.UNREADABLE),
    ("25 смарта 10:00", dates.UNREADABLE),
    ("чт 25.12 10:00", dates.WEEKDAY),  # 25.12.2026 is a Friday
    ("mon 25 December 10:00", dates.WEEKDAY),
])
def test_past_impossible_and_unreadable_dates_are_refused_with_the_reason(typed: str, problem: str) -> None:
    reading = read(typed)
    assert reading.moment is None and reading.problem == problem, (typed, reading)


def test_the_reasons_are_explained_in_both_languages() -> None:
    i18n = create_i18n("ru")
    with i18n.context():
        with in_locale("en"):
            assert "already passed" in dates.future("сегодня 9:00", "Europe/Moscow", TUESDAY_NOON)[1]  # type: ignore[operator]
            assert "no such date" in dates.future("31.02 10:00", "Europe/Moscow", TUESDAY_NOON)[1]  # type: ignore[operator]
            assert "<code>25.12 18:30</code>" in dates.future("25.12", "Europe/Moscow", TUESDAY_NOON)[1]  # type: ignore[operator]
            assert "is a Friday" in dates.future("чт 25.12 10:00", "Europe/Moscow", TUESDAY_NOON)[1]  # type: ignore[operator]
            assert "tomorrow 18:30" in dates.future("hm", "Europe/Moscow", TUESDAY_NOON)[1]  # type: ignore[operator]
        with in_locale("ru"):
            assert "уже прошло" in dates.future("сегодня 9:00", "Europe/Moscow", TUESDAY_NOON)[1]  # type: ignore[operator]
            assert "пятница" in dates.future("чт 25.12 10:00", "Europe/Moscow", TUESDAY_NOON)[1]  # type: ignore[operator]
            assert "завтра 18:30" in dates.future("hm", "Europe/Moscow", TUESDAY_NOON)[1]  # type: ignore[operator]
        moment, hint = dates.future("завтра 18:30", "Europe/Moscow", TUESDAY_NOON)
        assert moment == msk(2026, 12, 2, 18, 30) and hint is None


def test_crossing_midnight() -> None:
    late = datetime(2026, 12, 1, 23, 50, tzinfo=MSK).astimezone(timezone.utc)  # Tuesday 23:50
    assert read("00:10", late).moment == msk(2026, 12, 2, 0, 10)  # ten minutes ahead, tomorrow
    assert read("23:55", late).moment == msk(2026, 12, 1, 23, 55)  # still today
    assert read("23:45", late).moment == msk(2026, 12, 2, 23, 45)  # passed: tomorrow's
    assert read("завтра 00:30", late).moment == msk(2026, 12, 2, 0, 30)
    assert read("ср 8:00", late).moment == msk(2026, 12, 2, 8, 0)  # Wednesday is tomorrow
    # In UTC it is already Wednesday in Vladivostok: "today" is the local day.
    vladivostok = datetime(2026, 12, 1, 15, 0, tzinfo=timezone.utc)  # 01:00 on Wednesday there
    assert read("сегодня 10:00", vladivostok, "Asia/Vladivostok").moment == datetime(
        2026, 12, 2, 10, 0, tzinfo=ZoneInfo("Asia/Vladivostok"))
    # The last day of the year: "tomorrow" and "05.01" are next year's.
    silvester = datetime(2026, 12, 31, 22, 0, tzinfo=MSK).astimezone(timezone.utc)
    assert read("завтра 10:00", silvester).moment == msk(2027, 1, 1, 10, 0)
    assert read("05.01 10:00", silvester).moment == msk(2027, 1, 5, 10, 0)


def test_daylight_saving_change() -> None:
    # Berlin moves from 02:00 to 03:00 on Sunday 28 March 2027, and back from 03:00 to 02:00 on 31 October 2027.
    friday = datetime(2027, 3, 26, 12, 0, tzinfo=BERLIN).astimezone(timezone.utc)
    assert read("вс 10:00", friday, "Europe/Berlin").moment == datetime(2027, 3, 28, 8, 0, tzinfo=timezone.utc)  # CEST
    assert read("сб 10:00", friday, "Europe/Berlin").moment == datetime(2027, 3, 27, 9, 0, tzinfo=timezone.utc)  # CET
    skipped = read("28.03 02:30", friday, "Europe/Berlin")
    assert skipped.moment is None and skipped.problem == dates.SKIPPED
    autumn = datetime(2027, 10, 29, 12, 0, tzinfo=BERLIN).astimezone(timezone.utc)
    twice = read("31.10 02:30", autumn, "Europe/Berlin")
    assert twice.moment == datetime(2027, 10, 31, 0, 30, tzinfo=timezone.utc)  # the first 02:30 (CEST)
    # A time alone on the night of the change: the next such wall-clock time.
    night = datetime(2027, 3, 28, 1, 30, tzinfo=BERLIN).astimezone(timezone.utc)
    assert read("03:30", night, "Europe/Berlin").moment == datetime(2027, 3, 28, 1, 30, tzinfo=timezone.utc)


def test_29_february() -> None:
    november_2027 = msk(2027, 11, 23, 9, 0)
    assert read("29.02 10:00", november_2027).moment == msk(2028, 2, 29, 10, 0)
    assert read("29 февраля 10:00", november_2027).moment == msk(2028, 2, 29, 10, 0)
    assert read("Feb 29 10:00", november_2027).moment == msk(2028, 2, 29, 10, 0)
    # In a common year the next 29 February is the next leap year's.
    assert read("29.02 10:00", msk(2026, 3, 1, 9, 0)).moment == msk(2028, 2, 29, 10, 0)
    # On 29 February itself: today's, while it is ahead.
    leap_day = msk(2028, 2, 29, 9, 0)
    assert read("29.02 18:00", leap_day).moment == msk(2028, 2, 29, 18, 0)
    assert read("завтра 10:00", leap_day).moment == msk(2028, 3, 1, 10, 0)
    assert read("29.02.2029 10:00", leap_day).problem == dates.IMPOSSIBLE


def test_a_chosen_day_needs_only_the_time() -> None:
    day = date(2026, 12, 10)
    assert read("18:30", day=day).moment == msk(2026, 12, 10, 18, 30)
    assert read("25.12 9:00", day=day).moment == msk(2026, 12, 25, 9, 0)  # a typed date wins
    assert read("9:00", day=date(2026, 12, 1)).problem == dates.PAST  # today's 9:00 has passed


def test_dates_are_shown_with_the_weekday_in_the_readers_language() -> None:
    i18n = create_i18n("ru")
    moment = msk(2026, 12, 25, 18, 30)
    now = TUESDAY_NOON
    with i18n.context():
        with in_locale("ru"):
            assert dates.when(moment, "Europe/Moscow", now=now) == "пт, 25 декабря, 18:30"
            assert dates.when(msk(2027, 1, 5, 9, 0), "Europe/Moscow", now=now) == "вт, 5 января 2027, 09:00"
            assert dates.day_label(date(2026, 12, 25), today=date(2026, 12, 1)) == "пт, 25 декабря"
            assert dates.in_time(timedelta(hours=2)) == "через 2 часа"
        with in_locale("en"):
            assert dates.when(moment, "Europe/Moscow", now=now) == "Fri, 25 December, 18:30"
            assert dates.when(moment, "Asia/Vladivostok", now=now) == "Sat, 26 December, 01:30"  # the zone counts
            assert dates.period(date(2026, 12, 24), date(2026, 12, 25)) in (
                "Thu, 24 December – Fri, 25 December", "Thu, 24 December 2026 – Fri, 25 December 2026")
            assert dates.in_time(timedelta(days=1)) == "in 1 day"
            assert dates.in_time(timedelta(minutes=90)) == "in 1 h 30 min"
            assert dates.in_time(timedelta(minutes=15)) == "in 15 minutes"
