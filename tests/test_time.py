"""Time, with a controlled clock: reminders at the right local time (across a
daylight-saving change too), restarts that catch up within the grace period
and skip what is stale, quiet hours that hold and release, scheduled posts,
acknowledgement and poll deadlines. Nothing fires twice."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from aiogram.methods import SendMessage
from sqlalchemy import select, update

from bot.timeline import next_weekly, plan_weekly, quiet_until
from storage.models import Delivery, DueItem, Organisation, Post, WeeklyItem, utcnow
from storage.repo import Repo
from tests.flows import set_quiet_hours
from tests.harness import Harness, only, texts
from tests.test_posting import P1, P2, P3, STUDENT, TEACHER, school

MSK = ZoneInfo("Europe/Moscow")


def msk(*args: int) -> datetime:
    return datetime(*args, tzinfo=MSK).astimezone(timezone.utc)


async def due_items(app: Harness) -> list[DueItem]:
    async with app.session_maker() as s:
        return list((await s.scalars(select(DueItem).order_by(DueItem.due_at, DueItem.id))).all())


async def the_post(app: Harness) -> Post:
    async with app.session_maker() as s:
        return (await s.scalars(select(Post).order_by(Post.id.desc()))).first()  # type: ignore[return-value]


async def post_event(app: Harness, group: int, when: str, reminders: tuple[str, ...] = ()) -> None:
    await app.send(TEACHER, "/post")
    await app.press(TEACHER, "cmp:kind:event")
    await app.press(TEACHER, f"cmp:group:{group}")
    await app.press(TEACHER, "cmp:next:")
    await app.send(TEACHER, "Утренник")
    await app.send(TEACHER, when)
    await app.send(TEACHER, "Музыкальный зал")
    for minutes in reminders:
        await app.press(TEACHER, f"cmp:remind:{minutes}")
    await app.press(TEACHER, "cmp:preview:")
    await app.press(TEACHER, "cmp:send:")
    await app.flush()


def reminder_copies(calls: list) -> list[SendMessage]:
    return [c for c in only(calls, SendMessage) if "Reminder" in c.text or "Напоминание" in c.text]


async def test_event_reminders_fire_at_the_right_local_time_once(app: Harness) -> None:
    a, _b = await school(app)
    await post_event(app, a, "15.01.2099 18:30")  # the default reminders: a day and an hour before
    event = msk(2099, 1, 15, 18, 30)
    assert [(i.kind, i.due_at, i.minutes) for i in await due_items(app)] == [
        ("event_reminder", event - timedelta(days=1), 1440),
        ("event_reminder", event - timedelta(hours=1), 60),
    ]
    assert await app.scheduler.run_due(event - timedelta(days=1, seconds=1)) == 0  # not yet
    assert await app.scheduler.run_due(event - timedelta(days=1) + timedelta(seconds=2)) == 1
    sent = await app.flush()
    got = reminder_copies(sent)
    assert sorted(c.chat_id for c in got) == sorted([P1.id, P2.id, STUDENT.id])
    # The weekday and the month in the reader's language; the prefix says how soon, not the time again.
    english, russian = (next(c for c in got if c.chat_id == who.id).text for who in (P1, P2))
    assert "Thu, 15 January 2099, 18:30" in english and "Утренник" in english and "in 1 day" in english
    assert "чт, 15 января 2099, 18:30" in russian and "через 1 день" in russian
    assert english.count("18:30") == 1
    # Each in the reader's language: P1 reads English, P2 Russian.
    assert "Reminder" in next(c for c in got if c.chat_id == P1.id).text
    assert "Напоминание" in next(c for c in got if c.chat_id == P2.id).text
    # Fired once, however often the clock comes round.
    assert await app.scheduler.run_due(event - timedelta(hours=2)) == 0
    assert reminder_copies(await app.flush()) == []


async def test_moving_an_event_moves_its_reminders_and_withdrawing_cancels_them(app: Harness) -> None:
    a, _b = await school(app)
    await post_event(app, a, "15.01.2099 18:30", reminders=("1440",))  # untick the day: only an hour before
    post = await the_post(app)
    assert [i.minutes for i in await due_items(app)] == [60]
    await app.press(TEACHER, f"pc:time:{post.id}")
    calls = await app.send(TEACHER, "16.01.2099 10:00")
    assert "Fri, 16 January 2099, 10:00" in texts(calls)[-1]
    items = await due_items(app)
    assert [(i.state, i.due_at) for i in items] == [
        ("cancelled", msk(2099, 1, 15, 17, 30)),
        ("pending", msk(2099, 1, 16, 9, 0)),
    ]
    edits = [c for c in await app.flush() if getattr(c, "chat_id", None) == P1.id]
    assert edits and "Fri, 16 January 2099, 10:00" in edits[0].text
    await app.press(TEACHER, f"pc:withdraw_yes:{post.id}")
    assert [i.state for i in await due_items(app)] == ["cancelled", "cancelled"]
    assert await app.scheduler.run_due(msk(2099, 1, 16, 9, 30)) == 0


async def test_restart_catches_up_within_the_grace_period_and_skips_stale(app: Harness, caplog) -> None:  # type: ignore[no-untyped-def]
    a, _b = await school(app)
    await post_event(app, a, "15.01.2099 18:30")
    event = msk(2099, 1, 15, 18, 30)
    # The bot was down from before the day-before reminder until 7 hours after it
    # (stale: skipped) and 2 hours after the hour-before one (within 6 h: sent).
    caplog.set_level(logging.WARNING, "parta.scheduler")
    fired = await app.scheduler.run_due(event - timedelta(days=1) + timedelta(hours=7))
    assert fired == 0
    assert "skipped stale event_reminder" in caplog.text
    assert await app.scheduler.run_due(event - timedelta(hours=1) + timedelta(minutes=50)) == 1
    assert [i.state for i in await due_items(app)] == ["skipped", "done"]
    assert len(reminder_copies(await app.flush())) == 3
    assert await app.scheduler.run_due(event) == 0


async def test_quiet_hours_hold_ordinary_posts_and_release_them_in_the_morning(app: Harness) -> None:
    a, _b = await school(app)
    await set_quiet_hours(app, "21:00", "08:00")
    # A post scheduled for 22:00 local falls in quiet hours: held until 08:00.
    await app.send(TEACHER, "/post")
    await app.press(TEACHER, "cmp:kind:announcement")
    await app.press(TEACHER, f"cmp:group:{a}")
    await app.press(TEACHER, "cmp:next:")
    await app.send(TEACHER, "Ночное объявление")
    await app.press(TEACHER, "cmp:preview:")
    await app.press(TEACHER, "cmp:later:")
    day = (datetime.now(MSK) + timedelta(days=30)).date()
    night, morning_at = msk(day.year, day.month, day.day, 22, 0), msk(day.year, day.month, day.day, 8, 0) + timedelta(days=1)
    calls = await app.send(TEACHER, f"{day:%d.%m.%Y} 22:00")
    from babel.dates import format_date

    assert format_date(day, "d MMMM", locale="en") + ", 22:00" in texts(calls)[-1].replace(f" {day.year},", ",")
    assert await app.scheduler.run_due(night) == 1
    async with app.session_maker() as s:
        held = (await s.scalars(select(Delivery.next_attempt_at).where(Delivery.topic == "post"))).all()
    assert held and set(held) == {morning_at}
    app.outbox.clock = lambda: night + timedelta(hours=1)
    assert [c for c in await app.flush() if getattr(c, "chat_id", None) == P1.id] == []  # still night
    app.outbox.clock = lambda: morning_at + timedelta(seconds=1)
    morning = await app.flush()
    assert sorted({c.chat_id for c in only(morning, SendMessage) if "Ночное" in c.text}) == sorted(
        [P1.id, P2.id, STUDENT.id]
    )


async def test_urgent_posts_ignore_quiet_hours(app: Harness) -> None:
    a, _b = await school(app)
    # Quiet hours around now, whenever the test runs (across midnight too): from an hour ago to an hour ahead.
    # A fixed 00:00-23:59 left a minute a day (23:59 Moscow) in which nothing was held and the test proved nothing.
    now = datetime.now(MSK)
    start, end = f"{now - timedelta(hours=1):%H:%M}", f"{now + timedelta(hours=1):%H:%M}"
    assert quiet_until(Organisation(timezone="Europe/Moscow", quiet_start=start, quiet_end=end), utcnow())
    await set_quiet_hours(app, start, end)
    await app.send(TEACHER, "/post")
    await app.press(TEACHER, "cmp:kind:announcement")
    await app.press(TEACHER, f"cmp:group:{a}")
    await app.press(TEACHER, "cmp:next:")
    await app.send(TEACHER, "Срочно: прорыв трубы")
    await app.press(TEACHER, "cmp:urgent:")
    await app.press(TEACHER, "cmp:preview:")
    await app.press(TEACHER, "cmp:send:")
    sent = await app.flush()
    assert {c.chat_id for c in only(sent, SendMessage) if "трубы" in c.text} >= {P1.id, P2.id}


def test_quiet_hours_across_midnight_and_within_a_day() -> None:
    org = Organisation(timezone="Europe/Moscow", quiet_start="21:00", quiet_end="08:00")
    assert quiet_until(org, msk(2027, 1, 10, 20, 59)) is None
    assert quiet_until(org, msk(2027, 1, 10, 21, 0)) == msk(2027, 1, 11, 8, 0)
    assert quiet_until(org, msk(2027, 1, 11, 3, 0)) == msk(2027, 1, 11, 8, 0)
    assert quiet_until(org, msk(2027, 1, 11, 8, 0)) is None
    day = Organisation(timezone="Europe/Moscow", quiet_start="13:00", quiet_end="15:00")
    assert quiet_until(day, msk(2027, 1, 10, 14, 0)) == msk(2027, 1, 10, 15, 0)
    assert quiet_until(day, msk(2027, 1, 10, 16, 0)) is None


def test_weekly_occurrences_keep_local_time_across_daylight_saving() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    item = WeeklyItem(weekday=1, time_of_day="10:00")  # Tuesdays 10:00
    before = next_weekly(item, "Europe/Berlin", datetime(2027, 3, 22, 12, tzinfo=timezone.utc))
    after = next_weekly(item, "Europe/Berlin", before)
    assert before == datetime(2027, 3, 23, 9, 0, tzinfo=timezone.utc)  # CET, UTC+1
    assert after == datetime(2027, 3, 30, 8, 0, tzinfo=timezone.utc)  # CEST, UTC+2 after 28 March
    assert before.astimezone(berlin).hour == after.astimezone(berlin).hour == 10
    autumn = next_weekly(item, "Europe/Berlin", datetime(2027, 10, 27, tzinfo=timezone.utc))
    assert autumn == datetime(2027, 11, 2, 9, 0, tzinfo=timezone.utc)  # back to CET


async def test_weekly_reminder_fires_each_week_at_local_time_across_dst(app: Harness) -> None:
    a, _b = await school(app)
    async with app.session_maker.begin() as s:
        await s.execute(update(Organisation).values(timezone="Europe/Berlin"))
        item = WeeklyItem(org_id=1, group_id=a, title="Бассейн", weekday=1, time_of_day="10:00", remind_minutes=30)
        s.add(item)
        await s.flush()
        await plan_weekly(Repo(s), item, "Europe/Berlin", datetime(2027, 3, 22, 12, tzinfo=timezone.utc))
    [first] = await due_items(app)
    assert first.due_at == datetime(2027, 3, 23, 8, 30, tzinfo=timezone.utc)  # 09:30 CET
    assert await app.scheduler.run_due(first.due_at) == 1
    sent = await app.flush()
    got = [c for c in only(sent, SendMessage) if "Бассейн" in c.text]
    assert sorted(c.chat_id for c in got) == sorted([P1.id, P2.id, STUDENT.id])
    assert "Tue, 23 March 2027, 10:00" in next(c for c in got if c.chat_id == P1.id).text
    assert "вт, 23 марта 2027, 10:00" in next(c for c in got if c.chat_id == P2.id).text
    nxt = [i for i in await due_items(app) if i.state == "pending"]
    assert [i.due_at for i in nxt] == [datetime(2027, 3, 30, 7, 30, tzinfo=timezone.utc)]  # 09:30 CEST


async def test_scheduled_post_list_change_cancel_and_fire(app: Harness) -> None:
    a, _b = await school(app)
    for text in ("Первое", "Второе"):
        await app.send(TEACHER, "/post")
        await app.press(TEACHER, "cmp:kind:announcement")
        await app.press(TEACHER, f"cmp:group:{a}")
        await app.press(TEACHER, "cmp:next:")
        await app.send(TEACHER, text)
        await app.press(TEACHER, "cmp:preview:")
        await app.press(TEACHER, "cmp:later:")
        calls = await app.send(TEACHER, "01.01.2020 10:00")
        assert "passed" in texts(calls)[0]
        calls = await app.send(TEACHER, "вчера")
        assert "cannot read" in texts(calls)[0]
        await app.send(TEACHER, "10.01.2099 10:00")
    async with app.session_maker() as s:
        first, second = (await s.scalars(select(Post).order_by(Post.id))).all()
    assert first.state == second.state == "scheduled"
    calls = await app.send(TEACHER, "/scheduled")
    assert len(texts(calls)) == 2 and "Sat, 10 January 2099, 10:00" in texts(calls)[0]
    # A parent cannot cancel it with a forged button.
    calls = await app.press(P1, f"sch:cancel:{first.id}")
    assert calls and calls[0].show_alert  # type: ignore[attr-defined]
    await app.press(TEACHER, f"sch:cancel:{first.id}")
    await app.press(TEACHER, f"sch:time:{second.id}")
    await app.send(TEACHER, "11.01.2099 09:00")
    assert await app.scheduler.run_due(msk(2099, 1, 10, 12, 0)) == 0  # first cancelled, second moved
    assert await app.scheduler.run_due(msk(2099, 1, 11, 9, 0)) == 1
    sent = await app.flush()
    assert sorted({c.chat_id for c in only(sent, SendMessage) if "Второе" in c.text and c.chat_id != TEACHER.id}) == sorted(
        [P1.id, P2.id, STUDENT.id]
    )
    assert not [c for c in only(sent, SendMessage) if "Первое" in c.text]
    assert await app.scheduler.run_due(msk(2099, 1, 12, 9, 0)) == 0


async def test_acknowledgement_deadline_reminds_then_tells_the_author(app: Harness) -> None:
    a, _b = await school(app)
    await app.send(TEACHER, "/post")
    await app.press(TEACHER, "cmp:kind:announcement")
    await app.press(TEACHER, f"cmp:group:{a}")
    await app.press(TEACHER, "cmp:next:")
    await app.send(TEACHER, "Подпишите согласие")
    await app.press(TEACHER, "cmp:ack:")
    await app.press(TEACHER, "cmp:ack_days:")  # within 1 day
    await app.press(TEACHER, "cmp:preview:")
    await app.press(TEACHER, "cmp:send:")
    await app.flush()
    post = await the_post(app)
    await app.press(P1, f"p:ack:{post.id}:0")
    reminder, deadline = await due_items(app)
    assert (reminder.kind, deadline.kind) == ("ack_reminder", "ack_deadline")
    assert await app.scheduler.run_due(reminder.due_at) == 1
    sent = await app.flush()
    reminded = sorted({c.chat_id for c in only(sent, SendMessage) if "Подпишите" in c.text and c.chat_id != TEACHER.id})
    assert reminded == sorted([P2.id, STUDENT.id])  # not P1, who acknowledged
    assert await app.scheduler.run_due(deadline.due_at) == 1
    summary = [c for c in only(await app.flush(), SendMessage) if c.chat_id == TEACHER.id]
    assert "1 acknowledged, 2 did not" in summary[-1].text and "Ольга Петрова" in summary[-1].text


async def test_poll_deadline_closes_the_poll_and_sends_the_result(app: Harness) -> None:
    a, _b = await school(app)
    await app.send(TEACHER, "/post")
    await app.press(TEACHER, "cmp:kind:poll")
    await app.press(TEACHER, f"cmp:group:{a}")
    await app.press(TEACHER, "cmp:next:")
    await app.send(TEACHER, "Экскурсия?")
    await app.send(TEACHER, "Да\nНет")
    await app.press(TEACHER, "cmp:deadline:")  # closes in 1 day
    await app.press(TEACHER, "cmp:next:")
    await app.press(TEACHER, "cmp:preview:")
    await app.press(TEACHER, "cmp:send:")
    await app.flush()
    post = await the_post(app)
    [close] = await due_items(app)
    assert close.kind == "poll_close" and abs(close.due_at - (utcnow() + timedelta(days=1))) < timedelta(minutes=1)
    assert await app.scheduler.run_due(close.due_at) == 1
    sent = await app.flush()
    result = [c for c in only(sent, SendMessage) if c.chat_id == TEACHER.id][-1].text
    assert "closed" in result and "Да: 0" in result
    async with app.session_maker() as s:
        assert (await s.get(Post, post.id)).poll_closed_at is not None  # type: ignore[union-attr]
    assert P3  # the other group's parent is never involved


def test_typed_dates_without_a_year_mean_the_next_one_and_29_february_is_read_in_a_leap_year() -> None:
    from datetime import date

    from handlers.family import parse_range
    from bot import dates

    def read(text: str, now: datetime) -> datetime | None:
        return dates.read(text, "Europe/Moscow", now).moment

    november = datetime(2027, 11, 23, 9, 0, tzinfo=timezone.utc)
    assert read("25.12 18:30", november) == msk(2027, 12, 25, 18, 30)
    assert read("25/12, 18:30", november) == msk(2027, 12, 25, 18, 30)
    assert read("05.01 10:00", november) == msk(2028, 1, 5, 10, 0)  # in November, January is next year's
    assert read("29.02 10:00", november) == msk(2028, 2, 29, 10, 0)  # 2028 is a leap year
    # Neither 2026 nor 2027 has one: the next 29 February is in 2028.
    assert read("29.02 10:00", datetime(2026, 11, 23, tzinfo=timezone.utc)) == msk(2028, 2, 29, 10, 0)
    assert read("25.12.2027 18:30", november) == read("2027-12-25 18:30", november) == msk(2027, 12, 25, 18, 30)
    assert read("31.02 10:00", november) is None and read("завтра", november) is None

    assert parse_range("29.02", date(2027, 12, 1)) == (date(2028, 2, 29), date(2028, 2, 29))
    assert parse_range("29.02", date(2028, 9, 1)) is None  # the next one is years away: not a slip to crash on
    assert parse_range("12.03-15.03", date(2026, 11, 23)) == (date(2027, 3, 12), date(2027, 3, 15))
    assert parse_range("31.02", date(2026, 11, 23)) is None
