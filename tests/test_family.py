"""The daily digest and absence notices, with their bad inputs and rights."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from aiogram.methods import EditMessageText, SendMessage
from sqlalchemy import select, update

from storage.models import Absence, Delivery, DueItem, Organisation, Post
from bot.rights import REFUSED
from tests.conftest import ADMIN
from tests.harness import Harness, answers, button_data, only, texts
from tests.test_posting import P1, P2, P3, STUDENT, TEACHER, compose, school

MSK = ZoneInfo("Europe/Moscow")


def today() -> date:
    return datetime.now(timezone.utc).astimezone(MSK).date()


async def test_digest_collects_ordinary_posts_and_urgent_ones_come_at_once(app: Harness) -> None:
    a, _b = await school(app)
    calls = await app.send(P1, "/settings")
    assert "set:digest:2" in str(only(calls, SendMessage)[0].reply_markup)
    await app.press(P1, "set:digest:2")  # 18:00
    await compose(app, TEACHER, "announcement", [a], "Обычное объявление", ack=True)
    await app.press(TEACHER, "cmp:send:")
    await compose(app, TEACHER, "announcement", [a], "Срочное объявление", urgent=True)
    await app.press(TEACHER, "cmp:send:")
    sent = await app.flush()
    to_p1 = [c.text for c in only(sent, SendMessage) if c.chat_id == P1.id]
    assert any("Срочное" in t for t in to_p1) and not any("Обычное" in t for t in to_p1)
    assert any("Обычное" in c.text for c in only(sent, SendMessage) if c.chat_id == P2.id)  # P2 is instant
    async with app.session_maker() as s:
        ordinary = (await s.scalars(select(Post).where(Post.text == "Обычное объявление"))).one()
        held = (await s.scalars(select(Delivery).where(Delivery.person_id != None, Delivery.status == "held"))).all()  # noqa: E711
        [digest_item] = (await s.scalars(select(DueItem).where(DueItem.kind == "digest"))).all()
    assert len(held) == 1 and held[0].post_id == ordinary.id
    assert digest_item.due_at.astimezone(MSK).strftime("%H:%M") == "18:00"
    # The author's card tells the truth: one copy waits for a digest.
    cards = [c for c in only(sent, EditMessageText) if c.chat_id == TEACHER.id and "Обычное" in c.text]
    assert "waiting for a daily digest: 1" in cards[-1].text
    # The digest goes out at its time, and then the copy counts as delivered.
    assert await app.scheduler.run_due(digest_item.due_at) == 1
    sent = await app.flush()
    [digest] = [c for c in only(sent, SendMessage) if c.chat_id == P1.id]
    assert "digest" in digest.text and "Обычное объявление" in digest.text and "acknowledge" in digest.text
    async with app.session_maker() as s:
        assert (await s.get(Delivery, held[0].id)).status == "digested"  # type: ignore[union-attr]
    # Opening it shows the post with its acknowledgement button, which works.
    calls = await app.press_on(P1, digest, f"dg:{ordinary.id}")
    opened = only(calls, SendMessage)[0]
    assert "Обычное объявление" in opened.text and f"p:ack:{ordinary.id}" in str(opened.reply_markup)
    await app.press_on(P1, opened, f"p:ack:{ordinary.id}")
    card = [c for c in only(await app.flush(), EditMessageText) if c.chat_id == TEACHER.id][-1].text
    assert "acknowledged: 1" in card and "delivered: 3" in card
    # Someone else cannot open it from a forged button.
    calls = await app.press(P3, f"dg:{ordinary.id}")
    assert answers(calls)[0].show_alert


async def test_digest_of_a_withdrawn_post_is_not_sent(app: Harness) -> None:
    a, _b = await school(app)
    await app.press(P1, "set:digest:0")  # 08:00
    await compose(app, TEACHER, "announcement", [a], "Передумали")
    await app.press(TEACHER, "cmp:send:")
    await app.flush()
    async with app.session_maker() as s:
        post = (await s.scalars(select(Post))).one()
        [item] = (await s.scalars(select(DueItem).where(DueItem.kind == "digest"))).all()
    await app.press(TEACHER, f"pc:withdraw_yes:{post.id}")
    await app.scheduler.run_due(item.due_at)
    assert [c for c in only(await app.flush(), SendMessage) if c.chat_id == P1.id] == []


async def test_settings_bad_inputs(app: Harness) -> None:
    await school(app)
    await app.press(P1, "set:digest_type:0")
    calls = await app.send(P1, "25:99")
    assert "10:00" in texts(calls)[0]
    calls = await app.send(P1, "19:30")
    assert "19:30" in texts(calls)[0]
    calls = await app.press(P1, "set:digest:9")  # not offered: forged
    assert answers(calls)[0].show_alert
    calls = await app.press(P1, "set:quiet:3")  # a parent cannot change the organisation
    assert answers(calls)[0].show_alert
    async with app.session_maker() as s:
        assert (await s.scalars(select(Organisation.quiet_start))).one() is None  # as the test set it
    await app.press(ADMIN, "set:quiet:1")  # 22:00-07:00
    async with app.session_maker() as s:
        org = (await s.scalars(select(Organisation))).one()
    assert (org.quiet_start, org.quiet_end) == ("22:00", "07:00")


async def absences(app: Harness) -> list[Absence]:
    async with app.session_maker() as s:
        return list((await s.scalars(select(Absence).order_by(Absence.id))).all())


async def test_parent_tells_the_teachers_a_child_will_not_come(app: Harness) -> None:
    a, _b = await school(app)
    calls = await app.send(P1, "/absent")
    child_button = button_data(only(calls, SendMessage)[-1].reply_markup, "abs:child")
    pupil_id = int(child_button.split(":")[2])
    await app.press(P1, child_button)
    await app.press(P1, f"abs:tomorrow:{pupil_id}:")
    calls = await app.press(P1, "abs:reason:0:illness")
    assert "Петя Иванов" in texts(calls)[-1]
    [notice] = await absences(app)
    assert (notice.start_date, notice.end_date, notice.reason, notice.late) == (
        today() + timedelta(days=1), today() + timedelta(days=1), "illness", False
    )
    sent = await app.flush()
    [told] = [c for c in only(sent, SendMessage) if c.chat_id == TEACHER.id]
    assert "Петя Иванов" in told.text and "5А" in told.text and "illness" in told.text
    # Tomorrow's notice is not in today's list; the parent can still withdraw it.
    calls = await app.send(TEACHER, "/absences")
    assert "Петя" not in texts(calls)[0]
    calls = await app.send(P1, "/absent")
    await app.press(P1, button_data(only(calls, SendMessage)[0].reply_markup, "abs:withdraw"))
    assert (await absences(app))[0].withdrawn_at is not None


async def test_absence_today_after_the_cut_off_is_late_and_listed(app: Harness) -> None:
    a, _b = await school(app)
    async with app.session_maker.begin() as s:
        await s.execute(update(Organisation).values(absence_cutoff="00:00"))  # any time today is after it
    calls = await app.send(P2, "/absent")
    child_button = button_data(only(calls, SendMessage)[-1].reply_markup, "abs:child")
    pupil_id = int(child_button.split(":")[2])
    await app.press(P2, child_button)
    await app.press(P2, f"abs:today:{pupil_id}:")
    await app.press(P2, "abs:other:0:")
    calls = await app.send(P2, "x")
    assert texts(calls)  # too short: a hint
    await app.send(P2, "Температура")
    [notice] = await absences(app)
    assert notice.late and notice.start_date == today()
    calls = await app.send(TEACHER, "/absences")
    assert "Коля Петров" in texts(calls)[0] and "Температура" in texts(calls)[0] and "⚠️" in texts(calls)[0]
    # Started today: it can no longer be withdrawn.
    calls = await app.press(P2, f"abs:withdraw:{notice.id}:")
    assert answers(calls)[0].show_alert
    assert (await absences(app))[0].withdrawn_at is None


async def test_absence_bad_inputs_and_rights(app: Harness) -> None:
    a, _b = await school(app)
    calls = await app.send(P1, "/absent")
    child_button = button_data(only(calls, SendMessage)[-1].reply_markup, "abs:child")
    pupil_id = int(child_button.split(":")[2])
    await app.press(P1, child_button)
    await app.press(P1, f"abs:range:{pupil_id}:")
    calls = await app.send(P1, "01.01.2020-02.01.2020")
    assert "passed" in texts(calls)[0]
    start = today() + timedelta(days=2)
    calls = await app.send(P1, f"{start:%d.%m.%Y}-{start + timedelta(days=40):%d.%m.%Y}")
    assert "30 days" in texts(calls)[0]
    calls = await app.send(P1, f"{start + timedelta(days=3):%d.%m.%Y}-{start:%d.%m.%Y}")
    assert "before the first" in texts(calls)[0]
    calls = await app.send(P1, "когда-нибудь")
    assert "cannot read" in texts(calls)[0]
    await app.send(P1, "/cancel")
    # Someone else's child, by a forged button.
    calls = await app.press(P3, f"abs:child:{pupil_id}:")
    assert answers(calls)[0].show_alert
    calls = await app.press(P3, f"abs:today:{pupil_id}:")
    assert answers(calls)[0].show_alert
    assert await absences(app) == []
    # A parent cannot see the list; a teacher or a student cannot send notices.
    calls = await app.send(P1, "/absences")
    assert texts(calls)[0].startswith(REFUSED)
    calls = await app.send(STUDENT, "/absent")
    assert texts(calls) and not only(calls, SendMessage)[0].reply_markup
    assert P2
