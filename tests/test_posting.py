"""Posting: compose, audience, preview, delivery through the outbox,
acknowledgements, polls, edit and withdraw — and the rights around them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from aiogram.methods import (
    DeleteMessage,
    EditMessageReplyMarkup,
    EditMessageText,
    SendDocument,
    SendMessage,
    SendPhoto,
)
from aiogram.types import MessageEntity
from sqlalchemy import func, select

from storage.models import Acknowledgement, Delivery, Post, Vote
from storage.models import Person as PersonRow
from tests.conftest import ADMIN
from tests.flows import create_group, invite, join, setup_org, to_english
from tests.harness import Harness, Person, answers, button_data, only, texts

TEACHER = Person(3001, "Анна", "en")
P1 = Person(2001, "Мария", "en")
P2 = Person(2002, "Ольга")
P3 = Person(2003, "Ирина")  # another group
STUDENT = Person(5001, "Петя")


async def school(app: Harness) -> tuple[int, int]:
    """Admin, group 5А with a verified teacher, two parents and a student; group 6Б with one parent."""
    await setup_org(app)
    a = await create_group(app, "5А")
    b = await create_group(app, "6Б")
    code = await invite(app, ADMIN, a, "teacher")
    await to_english(app, TEACHER)
    await join(app, TEACHER, code, "Анна Смирнова")
    card = [c for c in only(await app.flush(), SendMessage) if "ver:yes" in str(c.reply_markup)][0]
    await app.press_on(ADMIN, card, "ver:yes")
    pa = await invite(app, ADMIN, a, "parent")
    await to_english(app, P1)
    await join(app, P1, pa, "Мария Иванова", "Петя Иванов")
    await join(app, P2, pa, "Ольга Петрова", "Коля Петров")
    await join(app, P3, await invite(app, ADMIN, b, "parent"), "Ирина Сидорова", "Аня Сидорова")
    await join(app, STUDENT, await invite(app, ADMIN, a, "student"), "Петя Иванов")
    await app.flush()
    app.clear()
    return a, b


async def compose(app: Harness, who: Person, kind: str, groups: list[int], content: str, *,
                  students: bool = True, ack: bool = False, urgent: bool = False,
                  entities: list[MessageEntity] | None = None) -> list:
    await app.send(who, "/post")
    await app.press(who, f"cmp:kind:{kind}")
    for g in groups:
        await app.press(who, f"cmp:group:{g}")
    if not students:
        await app.press(who, "cmp:students:")
    await app.press(who, "cmp:next:")
    await app.send(who, content, entities)
    if ack:
        await app.press(who, "cmp:ack:")
    if urgent:
        await app.press(who, "cmp:urgent:")
    return await app.press(who, "cmp:preview:")


def copies_to(calls: list, chat_id: int) -> list:
    return [c for c in calls if isinstance(c, (SendMessage, SendPhoto, SendDocument)) and c.chat_id == chat_id]


async def test_teacher_posts_an_announcement_to_parents_of_own_group_with_acknowledgement(app: Harness) -> None:
    a, b = await school(app)
    bold = [MessageEntity(type="bold", offset=7, length=9)]  # the author made «субботник» bold
    calls = await compose(app, TEACHER, "announcement", [a], "Завтра субботник <3", students=False, ack=True, entities=bold)
    preview = [c for c in calls if isinstance(c, SendMessage) and c.chat_id == TEACHER.id]
    assert "субботник" in preview[0].text and "p:ack:0" in str(preview[0].reply_markup)
    assert "Send to 2 people" in str(preview[-1].reply_markup)
    calls = await app.press(TEACHER, "cmp:send:")
    assert "Sent to 2 people" in texts(calls)[-1]
    sent = await app.flush()
    # Exactly the parents of 5А: not the student (unticked), not 6Б's parent, not the author.
    recipients = sorted({c.chat_id for c in only(sent, SendMessage) if "p:ack" in str(c.reply_markup)})
    assert recipients == sorted([P1.id, P2.id])
    # The author gets only their card.
    assert ["pc:refresh" in str(c.reply_markup) for c in copies_to(sent, TEACHER.id)] == [True]
    copy = copies_to(sent, P1.id)[0]
    assert "Завтра <b>субботник</b> &lt;3" in copy.text and "Acknowledge" in str(copy.reply_markup)
    assert "Ознакомлен" in str(copies_to(sent, P2.id)[0].reply_markup)  # each in their language
    # The author's card counts delivered copies.
    async with app.session_maker() as s:
        post = (await s.scalars(select(Post))).one()
        statuses = (await s.scalars(select(Delivery.status).where(Delivery.post_id == post.id))).all()
    assert statuses == ["sent", "sent"]
    card_edits = [c for c in only(sent, EditMessageText) if c.chat_id == TEACHER.id]
    assert card_edits and "delivered: 2" in card_edits[-1].text
    # A parent acknowledges; their button changes; the card follows.
    calls = await app.press_on(P1, copy, f"p:ack:{post.id}")
    assert only(calls, EditMessageReplyMarkup) and "Acknowledged" in str(only(calls, EditMessageReplyMarkup)[0].reply_markup)
    calls = await app.press_on(P1, copy, f"p:ack:{post.id}")  # twice: counted once
    assert "already" in answers(calls)[0].text
    sent = await app.flush()
    assert "acknowledged: 1" in [c for c in only(sent, EditMessageText) if c.chat_id == TEACHER.id][-1].text
    async with app.session_maker() as s:
        assert await s.scalar(select(func.count()).select_from(Acknowledgement)) == 1
    # Who has not, and a reminder only to them.
    calls = await app.press(TEACHER, f"pc:pending:{post.id}")
    assert "Ольга Петрова" in texts(calls)[-1] and "Мария" not in texts(calls)[-1]
    await app.press(TEACHER, f"pc:renotify:{post.id}")
    calls = await app.press(TEACHER, f"pc:renotify:{post.id}")  # a double tap: the reminders are on their way
    assert answers(calls)[0].show_alert and "on their way" in answers(calls)[0].text
    sent = await app.flush()
    assert [c.chat_id for c in only(sent, SendMessage) if "p:ack" in str(c.reply_markup)] == [P2.id]
    # Someone who is not a recipient cannot acknowledge, even with the right data.
    calls = await app.press(P3, f"p:ack:{post.id}:0")
    assert answers(calls)[0].show_alert and answers(calls)[0].text in ("⛔ This button is not for you.", "⛔ Эта кнопка не для вас.")


async def test_rights_to_post(app: Harness) -> None:
    a, b = await school(app)
    calls = await app.send(P1, "/post")
    assert texts(calls)[0].startswith("⛔")
    calls = await app.press(P1, "cmp:kind:announcement")
    assert answers(calls)[0].show_alert  # no dialog, no state: a forged button changes nothing
    # A teacher cannot post to another group or to everyone, even by forging buttons.
    await app.send(TEACHER, "/post")
    calls = await app.send(TEACHER, "/post")
    assert f"cmp:group:{b}" not in str(only(calls, SendMessage)[0].reply_markup)
    await app.press(TEACHER, "cmp:kind:announcement")
    calls = await app.press(TEACHER, f"cmp:group:{b}")
    assert answers(calls)[0].show_alert
    calls = await app.press(TEACHER, "cmp:wide:org")
    assert answers(calls)[0].show_alert
    calls = await app.press(TEACHER, "cmp:next:")
    assert answers(calls)[0].show_alert  # nothing chosen yet
    async with app.session_maker() as s:
        assert await s.scalar(select(func.count()).select_from(Post)) == 0


async def test_admin_posts_to_all_parents_urgent(app: Harness) -> None:
    a, b = await school(app)
    await to_english(app, ADMIN)
    await app.send(ADMIN, "/post")
    await app.press(ADMIN, "cmp:kind:announcement")
    await app.press(ADMIN, "cmp:wide:parents")
    await app.press(ADMIN, "cmp:next:")
    await app.send(ADMIN, "Карантин")
    await app.press(ADMIN, "cmp:urgent:")
    await app.press(ADMIN, "cmp:preview:")
    await app.press(ADMIN, "cmp:send:")
    sent = await app.flush()
    got = sorted({c.chat_id for c in only(sent, SendMessage) if "Карантин" in (c.text or "") and c.chat_id != ADMIN.id})
    assert got == sorted([P1.id, P2.id, P3.id])
    assert "Urgent" in copies_to(sent, P1.id)[0].text


async def test_poll_votes_single_choice_live_counts_and_close(app: Harness) -> None:
    a, _b = await school(app)
    await app.send(TEACHER, "/post")
    await app.press(TEACHER, "cmp:kind:poll")
    await app.press(TEACHER, f"cmp:group:{a}")
    await app.press(TEACHER, "cmp:next:")
    await app.send(TEACHER, "Когда собрание?")
    calls = await app.send(TEACHER, "Вторник\nВторник")
    assert "same" in texts(calls)[0]
    calls = await app.send(TEACHER, "Только один")
    assert "2 to 10" in texts(calls)[0]
    await app.send(TEACHER, "Вторник\nСреда\nЧетверг")
    await app.press(TEACHER, "cmp:next:")
    await app.press(TEACHER, "cmp:preview:")
    await app.press(TEACHER, "cmp:send:")
    sent = await app.flush()
    copy = copies_to(sent, P1.id)[0]
    async with app.session_maker() as s:
        post = (await s.scalars(select(Post))).one()
    tue = button_data(copy.reply_markup, f"p:vote:{post.id}:")
    options = [b.callback_data for row in copy.reply_markup.inline_keyboard for b in row]
    await app.press_on(P1, copy, options[0])
    calls = await app.press_on(P1, copy, options[1])  # single choice: the vote moves
    assert "✅ Среда" in str(only(calls, EditMessageReplyMarkup)[0].reply_markup)
    await app.press_on(STUDENT, copies_to(sent, STUDENT.id)[0], options[1])
    async with app.session_maker() as s:
        votes = (await s.scalars(select(Vote.option_id))).all()
    assert len(votes) == 2 and len(set(votes)) == 1
    sent = await app.flush()
    card = [c for c in only(sent, EditMessageText) if c.chat_id == TEACHER.id][-1].text
    assert "Среда: 2" in card and "Мария Иванова" in card  # named poll: the author sees names
    await app.press(TEACHER, f"pc:close:{post.id}")
    calls = await app.press(P2, tue)
    assert "closed" in answers(calls)[0].text.lower() or "закрыт" in answers(calls)[0].text.lower()
    sent = await app.flush()
    edits = [c for c in only(sent, EditMessageText) if c.chat_id == P1.id]
    assert edits and edits[0].reply_markup is None  # closed: the buttons are gone from every copy


async def test_edit_reaches_every_delivered_copy_and_withdraw_deletes_them(app: Harness) -> None:
    a, _b = await school(app)
    await compose(app, TEACHER, "announcement", [a], "Собрание в 18:00")
    await app.press(TEACHER, "cmp:send:")
    await app.flush()
    async with app.session_maker() as s:
        post = (await s.scalars(select(Post))).one()
    await app.press(TEACHER, f"pc:edit:{post.id}")
    calls = await app.send(TEACHER, "Собрание в 19:00")
    assert "3" in texts(calls)[-1]
    sent = await app.flush()
    edited = sorted(c.chat_id for c in only(sent, EditMessageText) if "19:00" in c.text and c.chat_id != TEACHER.id)
    assert edited == sorted([P1.id, P2.id, STUDENT.id])
    # Another teacher's (or a parent's) forged card buttons do nothing.
    calls = await app.press(P1, f"pc:withdraw_yes:{post.id}")
    assert answers(calls)[0].show_alert
    await app.press(TEACHER, f"pc:withdraw:{post.id}")
    await app.press(TEACHER, f"pc:withdraw_yes:{post.id}")
    app.session.fail_next("deleteMessage", 400, "Bad Request: message can't be deleted for everyone")
    sent = await app.flush()
    deletes = only(sent, DeleteMessage)
    assert sorted(d.chat_id for d in deletes) == sorted([P1.id, P2.id, STUDENT.id])
    # The copy Telegram refused to delete is edited to say it was withdrawn instead.
    fallback = [c for c in only(sent, EditMessageText) if "withdrawn" in c.text or "отозвал" in c.text]
    assert len(fallback) == 1
    async with app.session_maker() as s:
        assert (await s.scalars(select(Post.state))).one() == "withdrawn"


async def test_schedule_replaces_the_current_one_and_events_give_an_ics(app: Harness) -> None:
    a, _b = await school(app)
    await compose(app, TEACHER, "schedule", [a], "Пн: математика")
    await app.press(TEACHER, "cmp:send:")
    await compose(app, TEACHER, "schedule", [a], "Пн: русский язык")
    await app.press(TEACHER, "cmp:send:")
    calls = await app.send(P1, "/schedule")
    assert len(texts(calls)) == 1 and "русский" in texts(calls)[0]
    calls = await app.send(P3, "/schedule")
    assert "No schedule" in texts(calls)[0] or "не опубликовано" in texts(calls)[0] or texts(calls)
    # An event.
    await app.send(TEACHER, "/post")
    await app.press(TEACHER, "cmp:kind:event")
    await app.press(TEACHER, f"cmp:group:{a}")
    await app.press(TEACHER, "cmp:next:")
    await app.send(TEACHER, "Праздник осени")
    calls = await app.send(TEACHER, "01.01.2020 10:00")
    assert "passed" in texts(calls)[0]
    calls = await app.send(TEACHER, "когда-нибудь")
    assert "cannot read" in texts(calls)[0]
    await app.send(TEACHER, "25.12.2099 18:30")
    await app.send(TEACHER, "Актовый зал")
    await app.press(TEACHER, "cmp:preview:")
    await app.press(TEACHER, "cmp:send:")
    sent = await app.flush()
    [event_copy] = [c for c in copies_to(sent, P1.id) if "Праздник" in c.text]
    assert "Fri, 25 December 2099, 18:30" in event_copy.text and "Актовый зал" in event_copy.text
    calls = await app.send(P1, "/events")
    assert "Праздник осени" in texts(calls)[0]
    ics = only(calls, SendDocument)[0].document.data  # type: ignore[union-attr]
    from icalendar import Calendar

    [event] = Calendar.from_ical(ics).walk("VEVENT")
    assert str(event["summary"]) == "Праздник осени" and str(event["location"]) == "Актовый зал"
    assert event.decoded("dtstart").isoformat() == "2099-12-25T15:30:00+00:00"  # Moscow 18:30
    calls = await app.send(P3, "/events")
    assert "Праздник" not in " ".join(texts(calls))


async def test_a_blocked_parent_is_reported_not_reachable(app: Harness) -> None:
    a, _b = await school(app)
    await compose(app, TEACHER, "announcement", [a], "Новости", students=False)
    await app.press(TEACHER, "cmp:send:")
    app.session.fail_next("sendMessage", 403, "Forbidden: bot was blocked by the user", chat_id=P1.id)
    sent = await app.flush()
    card = [c for c in only(sent, EditMessageText) if c.chat_id == TEACHER.id][-1].text
    assert "not reachable: 1" in card and "delivered: 1" in card


async def test_sending_later_by_a_typed_time_checks_the_groups_again(app: Harness) -> None:
    """Rights are checked when the post is scheduled, whichever way the time is given."""
    a, _b = await school(app)
    await app.send(TEACHER, "/post")
    await app.press(TEACHER, "cmp:kind:announcement")
    calls = await app.press(TEACHER, "cmp:group:²")  # a forged, unreadable group: not an error
    assert calls and calls[0].show_alert and not any("Sorry" in t for t in texts(calls))  # type: ignore[attr-defined]
    await app.press(TEACHER, f"cmp:group:{a}")
    await app.press(TEACHER, "cmp:next:")
    await app.send(TEACHER, "Собрание")
    await app.press(TEACHER, "cmp:preview:")
    await app.press(TEACHER, "cmp:later:")
    # Meanwhile the admin takes the teacher out of 5А.
    async with app.session_maker() as s:
        teacher = (await s.scalars(select(PersonRow.id).where(PersonRow.telegram_id == TEACHER.id))).one()
    await app.press(ADMIN, f"mb:remove:{a}:{teacher}:0:0")
    await app.press(ADMIN, f"mb:remove_yes:{a}:{teacher}:0:0")
    day = datetime.now(timezone.utc) + timedelta(days=3)
    calls = await app.send(TEACHER, f"{day:%d.%m.%Y} 10:00")
    assert "Scheduled" not in texts(calls)[-1], texts(calls)
    async with app.session_maker() as s:
        assert (await s.scalars(select(Post))).all() == []


async def test_an_old_cancel_button_of_another_dialog_does_not_wipe_the_draft(app: Harness) -> None:
    from handlers.keyboards import AskCb, JoinCb

    a, _b = await school(app)
    await app.send(TEACHER, "/post")
    await app.press(TEACHER, "cmp:kind:announcement")
    await app.press(TEACHER, f"cmp:group:{a}")
    await app.press(TEACHER, "cmp:next:")
    for old in (JoinCb(action="cancel").pack(), AskCb(action="cancel").pack(), "wk:remind:0"):
        calls = await app.press(TEACHER, old)
        assert answers(calls) and answers(calls)[0].show_alert, (old, texts(calls))
    calls = await app.send(TEACHER, "Собрание в пятницу")  # the draft is still there
    assert any("Options" in t for t in texts(calls)), texts(calls)


async def test_a_reminder_to_acknowledge_needs_a_post_that_asks_for_it(app: Harness) -> None:
    a, _b = await school(app)
    await compose(app, TEACHER, "announcement", [a], "Просто новость")
    await app.press(TEACHER, "cmp:send:")
    await app.flush()
    async with app.session_maker() as s:
        post = (await s.scalars(select(Post))).one()
    calls = await app.press(TEACHER, f"pc:renotify:{post.id}")  # forged: the card has no such button
    assert answers(calls)[0].show_alert
    assert not [c for c in only(await app.flush(), SendMessage) if c.chat_id != TEACHER.id]


async def test_a_post_of_spaces_or_invisible_characters_is_refused(app: Harness) -> None:
    a, _b = await school(app)
    await app.send(TEACHER, "/post")
    await app.press(TEACHER, "cmp:kind:poll")
    await app.press(TEACHER, f"cmp:group:{a}")
    await app.press(TEACHER, "cmp:next:")
    for nothing in ("\u200b\u200b", "\u3164\u3164", " \u2060 \ufeff "):
        calls = await app.send(TEACHER, nothing)
        assert "Please send" in texts(calls)[0], (nothing, texts(calls))
    await app.send(TEACHER, "Когда собрание?")
    await app.send(TEACHER, "Пятница\n\u200b\nСуббота")  # an invisible line is no answer
    from aiogram.fsm.storage.base import StorageKey

    draft = await app.dp.fsm.storage.get_data(StorageKey(bot_id=app.bot.id, chat_id=TEACHER.id, user_id=TEACHER.id))
    assert draft["options"] == ["Пятница", "Суббота"], draft


def test_long_lists_are_split_into_messages_telegram_accepts() -> None:
    from handlers.texts import in_messages, shorten

    lines = ["<b>Upcoming events</b>"] + [f"• 25.12.2026 18:30 — {shorten('Ёлка ' * 100, 120)}" for _ in range(60)]
    parts = in_messages(lines)
    assert len(parts) > 1 and all(len(p) <= 4096 for p in parts)
    assert "\n".join(parts).split("\n") == lines  # nothing lost, nothing reordered
    assert all(len(line) < 160 for line in lines[1:]) and lines[1].endswith("…")
    assert in_messages(["x" * 5000]) == ["x" * 4096]


async def test_a_post_whose_copy_is_too_long_for_one_message_goes_out_in_two(app: Harness) -> None:
    """The author's text fits, but with the heading, a long place and the signature
    the copy would not: the preview and every copy come in two messages, split
    between paragraphs, the buttons on the last."""
    a, _b = await school(app)
    await app.send(TEACHER, "/post")
    await app.press(TEACHER, "cmp:kind:event")
    await app.press(TEACHER, f"cmp:group:{a}")
    await app.press(TEACHER, "cmp:next:")
    await app.send(TEACHER, "Ёлка " * 759)  # 3,795 characters: within the text's own limit
    await app.send(TEACHER, f"{datetime.now(timezone.utc) + timedelta(days=3):%d.%m.%Y} 18:30")
    await app.send(TEACHER, "Актовый зал, " * 38)  # 494 characters of place
    await app.press(TEACHER, "cmp:ack:")
    calls = await app.press(TEACHER, "cmp:preview:")
    preview = [c for c in only(calls, SendMessage) if "Ёлка" in c.text or "Актовый" in c.text]
    assert len(preview) == 2 and preview[0].reply_markup is None and preview[1].reply_markup is not None
    assert "2 consecutive messages" in texts(calls)[-2]
    await app.press(TEACHER, "cmp:send:")
    sent = await app.flush()
    mine = copies_to(sent, P1.id)
    assert len(mine) == 2 and mine[0].text.startswith("<b>📅 Event</b>") and mine[0].reply_markup is None
    assert mine[1].text.startswith("📍 Актовый зал") and "Acknowledge" in str(mine[1].reply_markup)  # between paragraphs
    assert mine[0].text.rstrip().endswith("18:30")
    from bot.posts import visible_length

    assert all(visible_length(c.text) <= 4096 for c in mine)
    # The card counts people, not messages.
    card = [c for c in only(sent, EditMessageText) if c.chat_id == TEACHER.id][-1].text
    assert "Recipients: 3" in card and "delivered: 3" in card
    # Escaped characters count once, as Telegram counts them.
    assert visible_length("&lt;" * 1000 + "<b>x</b>") == 1001 and visible_length("👍") == 2
