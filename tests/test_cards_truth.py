"""Issue 11, point 4: cards and copies tell the truth.

An edit keeps each copy's own state (acknowledged stays acknowledged, chosen
options stay chosen, a reminder keeps its reminder line); the author's card
says when the post was really sent; a card refresh never overwrites newer
figures; and no edit is sent that would change nothing.

The database is a file (or TEST_DATABASE_URL), not one shared in-memory
connection, so two transactions can really interleave.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiogram.methods import EditMessageText, SendMessage
from sqlalchemy import select

from bot.i18n import create_i18n, in_locale
from bot.posts import card
from bot.settings import Settings
from storage.models import Delivery, Organisation, Post
from storage.repo import Repo
from tests.conftest import ADMIN_IDS
from tests.harness import TOKEN, Harness, only, texts
from tests.test_posting import P1, P2, STUDENT, TEACHER, compose, copies_to, school
from tests.test_time import msk, post_event, reminder_copies


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        bot_token=TOKEN,  # type: ignore[arg-type]
        admin_ids=ADMIN_IDS,
        database_url=os.environ.get("TEST_DATABASE_URL") or f"sqlite+aiosqlite:///{tmp_path / 'parta.db'}",
        telegram_api_url="http://127.0.0.1:1",
        timezone="Europe/Moscow",
        default_locale="ru",
        _env_file=None,  # type: ignore[call-arg]
    )


async def the_post(app: Harness) -> Post:
    async with app.session_maker() as s:
        return (await s.scalars(select(Post).order_by(Post.id.desc()))).first()  # type: ignore[return-value]


def edits_to(calls: list, chat_id: int) -> list[EditMessageText]:
    return [c for c in only(calls, EditMessageText) if c.chat_id == chat_id]


def buttons(method: Any) -> list[str]:
    markup = method.reply_markup
    return [b.text for row in markup.inline_keyboard for b in row] if markup else []


async def sent_post_with_ack(app: Harness, a: int, text: str = "Собрание в пятницу") -> tuple[Post, list]:
    await compose(app, TEACHER, "announcement", [a], text, students=False, ack=True)
    await app.press(TEACHER, "cmp:send:")
    sent = await app.flush()
    return await the_post(app), sent


async def edit(app: Harness, post: Post, text: str) -> list:
    await app.press(TEACHER, f"pc:edit:{post.id}")
    return await app.send(TEACHER, text)


# -- 1. an edit keeps each copy's own state -------------------------------------------------


async def test_an_edit_keeps_an_acknowledged_copy_acknowledged(app: Harness) -> None:
    a, _b = await school(app)
    post, sent = await sent_post_with_ack(app, a)
    await app.press_on(P1, copies_to(sent, P1.id)[0], f"p:ack:{post.id}")
    await app.flush()
    await edit(app, post, "Собрание в субботу")
    sent = await app.flush()
    [mine] = edits_to(sent, P1.id)
    [theirs] = edits_to(sent, P2.id)
    assert "субботу" in mine.text and "субботу" in theirs.text
    # The button the acknowledgement drew, not the one asking again.
    assert buttons(mine) == ["✅ Acknowledged"], buttons(mine)
    assert buttons(theirs) == ["👌 Ознакомлен(а)"], buttons(theirs)  # P2 has not acknowledged


async def test_an_edit_keeps_a_voters_chosen_option(app: Harness) -> None:
    a, _b = await school(app)
    await app.send(TEACHER, "/post")
    await app.press(TEACHER, "cmp:kind:poll")
    await app.press(TEACHER, f"cmp:group:{a}")
    await app.press(TEACHER, "cmp:next:")
    await app.send(TEACHER, "Когда собрание?")
    await app.send(TEACHER, "Вторник\nСреда\nЧетверг")
    await app.press(TEACHER, "cmp:next:")
    await app.press(TEACHER, "cmp:preview:")
    await app.press(TEACHER, "cmp:send:")
    sent = await app.flush()
    post = await the_post(app)
    copy = copies_to(sent, P1.id)[0]
    options = [b.callback_data for row in copy.reply_markup.inline_keyboard for b in row]
    await app.press_on(P1, copy, options[1])
    await app.flush()
    await edit(app, post, "Когда родительское собрание?")
    sent = await app.flush()
    [mine] = edits_to(sent, P1.id)
    [theirs] = edits_to(sent, P2.id)
    assert "родительское" in mine.text
    assert buttons(mine) == ["Вторник", "✅ Среда", "Четверг"], buttons(mine)
    assert buttons(theirs) == ["Вторник", "Среда", "Четверг"], buttons(theirs)


async def test_an_edit_keeps_the_reminder_line_of_a_reminded_copy(app: Harness) -> None:
    a, _b = await school(app)
    post, sent = await sent_post_with_ack(app, a)
    await app.press_on(P1, copies_to(sent, P1.id)[0], f"p:ack:{post.id}")
    await app.press(TEACHER, f"pc:renotify:{post.id}")  # P2 gets a second copy, with the reminder line
    sent = await app.flush()
    [reminder] = copies_to(sent, P2.id)
    assert reminder.text.startswith("🔔 Напоминание")
    await edit(app, post, "Собрание в субботу")
    sent = await app.flush()
    edited = edits_to(sent, P2.id)
    assert len(edited) == 2 and all("субботу" in e.text for e in edited)
    # The first copy as it was sent, the reminder still a reminder, both still asking.
    assert sorted(e.text.startswith("🔔 Напоминание: пожалуйста, ознакомьтесь") for e in edited) == [False, True]
    assert all(buttons(e) == ["👌 Ознакомлен(а)"] for e in edited)


async def test_an_edit_keeps_the_line_of_the_schedulers_reminder_to_acknowledge(app: Harness) -> None:
    a, _b = await school(app)
    await app.send(TEACHER, "/post")
    await app.press(TEACHER, "cmp:kind:announcement")
    await app.press(TEACHER, f"cmp:group:{a}")
    await app.press(TEACHER, "cmp:next:")
    await app.send(TEACHER, "Подпишите согласие")
    await app.press(TEACHER, "cmp:ack:")
    await app.press(TEACHER, "cmp:ack_days:")  # within 1 day: a reminder before the deadline
    await app.press(TEACHER, "cmp:preview:")
    await app.press(TEACHER, "cmp:send:")
    await app.flush()
    post = await the_post(app)
    async with app.session_maker() as s:
        from storage.models import DueItem

        reminder = (await s.scalars(select(DueItem).where(DueItem.kind == "ack_reminder"))).one()
    assert await app.scheduler.run_due(reminder.due_at) == 1
    [line] = {c.text.split("\n\n")[0] for c in copies_to(await app.flush(), P1.id)}
    assert line.startswith("🔔 Please acknowledge this message by "), line
    await edit(app, post, "Подпишите согласие до пятницы")
    edited = edits_to(await app.flush(), P1.id)
    assert len(edited) == 2 and all("до пятницы" in e.text for e in edited)
    assert sorted(e.text.startswith(line + "\n\n") for e in edited) == [False, True]
    assert all(buttons(e) == ["👌 Acknowledge"] for e in edited)


async def test_an_edit_reaches_an_event_reminder_and_keeps_its_line(app: Harness) -> None:
    a, _b = await school(app)
    await post_event(app, a, "15.01.2099 18:30")
    post = await the_post(app)
    event = msk(2099, 1, 15, 18, 30)
    assert await app.scheduler.run_due(event - timedelta(days=1) + timedelta(seconds=2)) == 1
    [reminder] = [c for c in reminder_copies(await app.flush()) if c.chat_id == P1.id]
    assert reminder.text.startswith("⏰ Reminder: it starts in 1 day.")
    await edit(app, post, "Новогодний утренник")
    sent = await app.flush()
    edited = edits_to(sent, P1.id)
    assert len(edited) == 2 and all("Новогодний утренник" in e.text for e in edited)
    assert sorted(e.text.startswith("⏰ Reminder: it starts in 1 day.\n\n") for e in edited) == [False, True]


async def test_moving_an_event_does_not_leave_a_reminder_saying_it_starts_soon(app: Harness) -> None:
    a, _b = await school(app)
    await post_event(app, a, "15.01.2099 18:30")
    post = await the_post(app)
    event = msk(2099, 1, 15, 18, 30)
    assert await app.scheduler.run_due(event - timedelta(days=1) + timedelta(seconds=2)) == 1
    await app.flush()
    await app.press(TEACHER, f"pc:time:{post.id}")
    await app.send(TEACHER, "22.01.2099 18:30")
    edited = edits_to(await app.flush(), P1.id)
    assert len(edited) == 2 and all("Thu, 22 January 2099, 18:30" in e.text for e in edited)
    post_line, reminder_line = sorted(e.text.split("\n\n")[0] for e in edited)
    # The post as it is; the reminder still a reminder, but no longer «it starts in 1 day».
    assert post_line.startswith("<b>📅 Event</b>") and reminder_line == "⏰ Reminder: the time has changed."
    assert not any("in 1 day" in e.text for e in edited)
    await edit(app, post, "Новогодний утренник")  # and a later edit of the text keeps that line
    edited = edits_to(await app.flush(), P1.id)
    assert sorted(e.text.split("\n\n")[0] for e in edited) == [post_line, reminder_line]


async def test_withdrawing_an_event_takes_its_reminders_back_too(app: Harness) -> None:
    from aiogram.methods import DeleteMessage

    from tests.flows import to_english

    a, _b = await school(app)
    await post_event(app, a, "15.01.2099 18:30")
    post = await the_post(app)
    event = msk(2099, 1, 15, 18, 30)
    assert await app.scheduler.run_due(event - timedelta(days=1) + timedelta(seconds=2)) == 1
    assert len(reminder_copies(await app.flush())) == 3
    await to_english(app, TEACHER)
    calls = await app.press(TEACHER, f"pc:withdraw_yes:{post.id}")
    assert "Withdrawn from 3 chats." in texts(calls), texts(calls)  # chats, not messages
    deleted = [d.chat_id for d in only(await app.flush(), DeleteMessage)]
    # The post and its reminder, in each chat: a withdrawn event leaves no «it starts in 1 day» behind.
    assert sorted(deleted) == sorted([P1.id, P1.id, P2.id, P2.id, STUDENT.id, STUDENT.id]), deleted


# -- 2. "sent" is when it was sent --------------------------------------------------------------


async def test_the_card_of_a_scheduled_post_says_when_it_was_sent(app: Harness) -> None:
    a, _b = await school(app)
    await app.send(TEACHER, "/post")
    await app.press(TEACHER, "cmp:kind:announcement")
    await app.press(TEACHER, f"cmp:group:{a}")
    await app.press(TEACHER, "cmp:next:")
    await app.send(TEACHER, "Собрание")
    await app.press(TEACHER, "cmp:preview:")
    await app.press(TEACHER, "cmp:later:")
    await app.send(TEACHER, "10.01.2099 10:00")
    post = await the_post(app)
    # Not sent yet: the card (as /scheduled or a refresh would draw it) says when it will be.
    with create_i18n("ru").context(), in_locale("en"):
        async with app.session_maker() as s:
            repo = Repo(s)
            org = await s.get(Organisation, post.org_id)
            text, _markup = await card(repo, (await repo.post(post.id)), org)  # type: ignore[arg-type]
    assert text.split("\n")[0] == "📢 Announcement · scheduled for Sat, 10 January 2099, 10:00", text
    assert await app.scheduler.run_due(msk(2099, 1, 10, 10, 1)) == 1
    sent = await app.flush()
    cards = [c for c in sent if isinstance(c, (SendMessage, EditMessageText)) and c.chat_id == TEACHER.id]
    assert cards and all(c.text.split("\n")[0] == "📢 Announcement · sent Sat, 10 January 2099, 10:01" for c in cards), \
        [c.text.split("\n")[0] for c in cards]


# -- 3. a card refresh never overwrites newer figures -----------------------------------------


async def test_a_slow_progress_refresh_does_not_overwrite_a_fast_acknowledgement(
    app: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interleaving seen in the field: the outbox's progress refresh reads
    the figures (0 acknowledged), a parent acknowledges and their update commits
    with its own refresh (1 acknowledged), then the progress refresh writes its
    older text over it. The card stayed at "acknowledged: 0"."""
    a, _b = await school(app)
    post, sent = await sent_post_with_ack(app, a)
    card_before = edits_to(sent, TEACHER.id)[-1].text
    assert "acknowledged: 0" in card_before
    paused, acked = asyncio.Event(), asyncio.Event()
    armed = [True]
    original = Repo.ack_count

    async def slow_ack_count(self: Repo, post_id: int) -> int:
        n = await original(self, post_id)
        if armed and armed.pop():
            paused.set()
            try:  # the acknowledgement gets its chance to commit meanwhile (if nothing holds it back)
                await asyncio.wait_for(acked.wait(), 1.0)
            except TimeoutError:
                pass
        return n

    monkeypatch.setattr(Repo, "ack_count", slow_ack_count)
    refresh = asyncio.create_task(app.outbox.on_progress({post.id}))  # what the outbox does after a batch
    await asyncio.wait_for(paused.wait(), 5)
    calls = await app.press_on(P1, copies_to(sent, P1.id)[0], f"p:ack:{post.id}")
    acked.set()
    await refresh
    assert "Thank you" in texts(calls)[0] or "Спасибо" in texts(calls)[0], texts(calls)
    sent = await app.flush()
    card_now = edits_to(sent, TEACHER.id)
    assert card_now and "acknowledged: 1" in card_now[-1].text, [c.text for c in card_now]


# -- 4. no edit that would change nothing ------------------------------------------------------


async def test_an_edit_to_the_same_text_sends_no_edits(app: Harness) -> None:
    a, _b = await school(app)
    post, sent = await sent_post_with_ack(app, a)
    await app.press_on(P1, copies_to(sent, P1.id)[0], f"p:ack:{post.id}")  # P1's buttons are redrawn
    await app.flush()
    await edit(app, post, "Собрание в субботу")
    sent = await app.flush()
    assert len(edits_to(sent, P1.id)) == len(edits_to(sent, P2.id)) == 1
    calls = await edit(app, post, "Собрание в субботу")  # the same text again
    assert "Saved" in texts(calls)[-1] or "Сохранено" in texts(calls)[-1], texts(calls)
    sent = await app.flush()
    assert edits_to(sent, P1.id) == [] and edits_to(sent, P2.id) == [], [c.text for c in only(sent, EditMessageText)]
    assert edits_to(sent, TEACHER.id) == []  # nor is the card: its figures did not change


async def test_a_card_refresh_with_the_same_figures_sends_nothing(app: Harness) -> None:
    a, _b = await school(app)
    post, sent = await sent_post_with_ack(app, a)
    assert "delivered: 2" in edits_to(sent, TEACHER.id)[-1].text
    await app.outbox.on_progress({post.id})
    assert edits_to(await app.flush(), TEACHER.id) == []
    await app.press_on(P1, copies_to(sent, P1.id)[0], f"p:ack:{post.id}")
    [card_edit] = edits_to(await app.flush(), TEACHER.id)
    assert "acknowledged: 1" in card_edit.text
    await app.outbox.on_progress({post.id})
    assert edits_to(await app.flush(), TEACHER.id) == []
    async with app.session_maker() as s:
        rows = (await s.scalars(select(Delivery.status).where(Delivery.topic == "post_card-edit"))).all()
    assert "pending" not in rows


async def test_an_edit_of_a_long_copy_edits_only_the_message_that_changes(app: Harness) -> None:
    a, _b = await school(app)
    await app.send(TEACHER, "/post")
    await app.press(TEACHER, "cmp:kind:event")
    await app.press(TEACHER, f"cmp:group:{a}")
    await app.press(TEACHER, "cmp:next:")
    await app.send(TEACHER, "Ёлка " * 759)
    await app.send(TEACHER, "15.01.2099 18:30")
    await app.send(TEACHER, "Актовый зал, " * 38)
    await app.press(TEACHER, "cmp:preview:")
    await app.press(TEACHER, "cmp:send:")
    sent = await app.flush()
    assert len(copies_to(sent, P1.id)) == 2
    post = await the_post(app)
    await edit(app, post, "Ёлка " * 758 + "Ёлки")  # the first message changes, the second does not
    sent = await app.flush()
    [edited] = edits_to(sent, P1.id)
    assert edited.text.rstrip().endswith("18:30") and "Ёлки" in edited.text
    assert STUDENT.id in {c.chat_id for c in only(sent, EditMessageText)}


async def test_a_card_edit_is_drawn_when_it_is_sent_and_not_sent_if_it_would_change_nothing(app: Harness) -> None:
    """Whatever figures an edit of the card was written with, it leaves with those of the moment."""
    from aiogram.methods import EditMessageText as Edit

    from bot.outbox import enqueue

    a, _b = await school(app)
    post, sent = await sent_post_with_ack(app, a)
    shown = edits_to(sent, TEACHER.id)[-1].text

    async def stale_edit(text: str) -> None:
        async with app.session_maker.begin() as s:
            repo = Repo(s)
            [card_row] = await repo.deliveries_about("post_card", post.id)
            enqueue(repo, TEACHER.id, Edit(chat_id=TEACHER.id, message_id=0, text=text), org_id=post.org_id,
                    topic="post_card-edit", ref_id=post.id, edit_of=card_row)

    await stale_edit("figures of long ago")
    assert edits_to(await app.flush(), TEACHER.id) == []  # the card shows the figures already
    async with app.session_maker.begin() as s:
        from storage.models import Acknowledgement, Person as PersonRow

        parent = (await s.scalars(select(PersonRow).where(PersonRow.telegram_id == P1.id))).one()
        s.add(Acknowledgement(org_id=post.org_id, post_id=post.id, person_id=parent.id))
    await stale_edit(shown)  # written with the old figures
    [edit_sent] = edits_to(await app.flush(), TEACHER.id)
    assert "acknowledged: 1" in edit_sent.text and "pc:refresh" in str(edit_sent.reply_markup)
    async with app.session_maker() as s:
        rows = (await s.scalars(select(Delivery).where(Delivery.topic == "post_card-edit").order_by(Delivery.id))).all()
    assert rows[-2].status == "cancelled" and rows[-1].status == "sent" and "acknowledged: 1" in rows[-1].payload
