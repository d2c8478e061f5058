"""Chats: private messages through the bot (/write, Reply, Block, office
hours) and gated Telegram group chats (/link, join requests, removal, the
supergroup migration, /unlink, the bot removed) — and the rights around them."""

from __future__ import annotations

import html
import re
from datetime import datetime, timezone

import pytest
from aiogram.methods import (
    ApproveChatJoinRequest,
    BanChatMember,
    CreateChatInviteLink,
    DeclineChatJoinRequest,
    EditMessageText,
    GetChatMember,
    RevokeChatInviteLink,
    SendMessage,
    SendPhoto,
    UnbanChatMember,
)
from sqlalchemy import func, select, update

from storage.models import (
    AuditEntry,
    Block,
    Delivery,
    LinkedChat,
    Organisation,
    Relay,
)
from storage.models import (
    Person as PersonRow,
)
from tests.conftest import ADMIN
from tests.flows import invite, join, memberships, staff_room_id, to_english
from bot.rights import REFUSED
from tests.harness import BOT_USER, Harness, Person, answers, group_chat, only, texts
from tests.test_posting import P1, P2, P3, STUDENT, TEACHER, school

ADMIN2 = Person(1002, "Борис", "en")
STRANGER = Person(9001, "Чужой", "en")


async def pid(app: Harness, who: Person) -> int:
    async with app.session_maker() as s:
        return (await s.scalars(select(PersonRow.id).where(PersonRow.telegram_id == who.id))).one()


async def office_hours(app: Harness, hours: str | None, person: Person | None = None) -> None:
    async with app.session_maker.begin() as s:
        if person is None:
            await s.execute(update(Organisation).values(office_hours=hours))
        else:
            await s.execute(update(PersonRow).where(PersonRow.telegram_id == person.id).values(office_hours=hours))


async def relays(app: Harness) -> list[Relay]:
    async with app.session_maker() as s:
        return list((await s.scalars(select(Relay).order_by(Relay.id))).all())


async def audit_actions(app: Harness) -> list[str]:
    async with app.session_maker() as s:
        return list((await s.scalars(select(AuditEntry.action).order_by(AuditEntry.id))).all())


def to(calls: list, chat_id: int, kind: type = SendMessage) -> list:
    return [c for c in only(calls, kind) if c.chat_id == chat_id]


async def write(app: Harness, who: Person, data: str, text: str | None = None) -> list:
    """/write, a recipient's button (`data`), then the message (if any); returns the last calls."""
    await app.send(who, "/write")
    calls = await app.press(who, data)
    if text is not None:
        calls = await app.send(who, text)
    return calls


# -- private messages -----------------------------------------------------------------------------


async def test_a_parent_writes_to_the_teacher_who_answers_with_the_reply_button(app: Harness) -> None:
    a, _b = await school(app)
    await office_hours(app, None)  # no office-hours note here: that is the next test
    teacher = await pid(app, TEACHER)
    calls = await app.send(P1, "/write")
    menu = only(calls, SendMessage)[0]
    buttons = [b.callback_data.split("#")[0] for row in menu.reply_markup.inline_keyboard for b in row]
    assert buttons == [f"w:to:{teacher}", "w:admins:0", "dlg:cancel"]  # only the teacher of their class, and the administration
    calls = await app.press_on(P1, menu, f"w:to:{teacher}")
    assert "Send your message to Анна Смирнова" in only(calls, EditMessageText)[0].text
    calls = await app.send(P1, "Петя заболел <сегодня>")
    assert texts(calls) == ["✅ Sent."]
    sent = await app.flush()
    [copy] = to(sent, TEACHER.id)
    assert copy.text == (
        "✉️ <b>Message from Мария Иванова</b>, parent of Петя Иванов (5А)\n\nПетя заболел &lt;сегодня&gt;"
    )
    [relay] = await relays(app)
    assert (relay.sender_id, relay.recipient_id, relay.to_administration) == (await pid(app, P1), teacher, False)
    assert [[b.callback_data for b in row] for row in copy.reply_markup.inline_keyboard] == [
        [f"rl:reply:{relay.id}", f"rl:block:{relay.id}"]
    ]
    assert {c.chat_id for c in only(sent, SendMessage)} == {TEACHER.id}  # nobody else
    # The teacher answers with the Reply button; the parent gets the answer, with buttons of its own.
    calls = await app.press_on(TEACHER, copy, "rl:reply")
    assert texts(calls)[-1] == "Send your answer to Мария Иванова. /cancel stops."
    calls = await app.send(TEACHER, "Выздоравливайте!")
    assert texts(calls) == ["✅ Sent."]
    sent = await app.flush()
    [answer] = to(sent, P1.id)
    assert answer.text == "↩️ <b>Answer from Анна Смирнова</b>\n\nВыздоравливайте!"
    first, second = await relays(app)
    assert (second.sender_id, second.recipient_id, second.reply_to_id) == (teacher, await pid(app, P1), first.id)
    assert f"rl:reply:{second.id}" in str(answer.reply_markup)
    # The parent answers back the same way.
    await app.press_on(P1, answer, "rl:reply")
    await app.send(P1, "Спасибо")
    sent = await app.flush()
    assert to(sent, TEACHER.id)[0].text.startswith("↩️ <b>Answer from Мария Иванова</b>")
    # A photo goes as a photo, with the header as its caption.
    await write(app, P1, f"w:to:{teacher}")
    calls = await app.send_photo(P1)
    assert texts(calls) == ["✅ Sent."]
    sent = await app.flush()
    [photo] = to(sent, TEACHER.id, SendPhoto)
    assert photo.photo == "p" and photo.caption.startswith("✉️ <b>Message from Мария Иванова</b>, parent of")
    assert "rl:reply:" in str(photo.reply_markup)
    async with app.session_maker() as s:
        topics = (await s.scalars(select(Delivery.topic).where(Delivery.topic == "relay"))).all()
        assert len(topics) == 4 and await s.scalar(select(func.count()).select_from(Relay)) == 4


async def test_writing_to_the_administration_reaches_every_admin(app: Harness) -> None:
    await school(app)
    await office_hours(app, None)
    await to_english(app, ADMIN2)
    await join(app, ADMIN2, await invite(app, ADMIN, await staff_room_id(app), "admin"), "Борис Админов")
    await app.flush()
    app.clear()
    calls = await write(app, P2, "w:admins:0", "Когда каникулы?")
    assert texts(calls) == ["✅ Отправлено."]
    sent = await app.flush()
    assert sorted(c.chat_id for c in only(sent, SendMessage)) == sorted([ADMIN.id, ADMIN2.id])
    # Each admin in their own language.
    assert to(sent, ADMIN2.id)[0].text == (
        "✉️ <b>Message from Ольга Петрова</b>, parent of Коля Петров (5А)\n\nКогда каникулы?"
    )
    assert to(sent, ADMIN.id)[0].text.startswith("✉️ <b>Вам пишет Ольга Петрова</b>, родитель: Коля Петров (5А)")
    [relay] = await relays(app)
    assert relay.to_administration and relay.recipient_id is None
    # Any admin may answer it; the parent gets the answer.
    calls = await app.press_on(ADMIN2, to(sent, ADMIN2.id)[0], "rl:reply")
    assert texts(calls)[-1] == "Send your answer to Ольга Петрова. /cancel stops."
    await app.send(ADMIN2, "После 30 октября")
    sent = await app.flush()
    assert [c.chat_id for c in only(sent, SendMessage)] == [P2.id]
    assert "После 30 октября" in only(sent, SendMessage)[0].text
    # A teacher writing to the administration reaches the admins too (not themselves).
    await write(app, TEACHER, "w:admins:0", "Нужен проектор")
    sent = await app.flush()
    assert sorted(c.chat_id for c in only(sent, SendMessage)) == sorted([ADMIN.id, ADMIN2.id])
    assert "Анна Смирнова" in to(sent, ADMIN2.id)[0].text and "teacher" in to(sent, ADMIN2.id)[0].text


async def test_office_hours_tell_the_sender_when_to_expect_an_answer(app: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    await school(app)
    teacher = await pid(app, TEACHER)
    wednesday_noon = datetime(2030, 1, 9, 9, 0, tzinfo=timezone.utc)  # 12:00 in Moscow, a Wednesday
    saturday_noon = datetime(2030, 1, 12, 9, 0, tzinfo=timezone.utc)
    import handlers.messages

    monkeypatch.setattr(handlers.messages, "utcnow", lambda: wednesday_noon)
    await office_hours(app, "08:00-18:00")
    calls = await write(app, P1, f"w:to:{teacher}", "Вопрос")
    assert texts(calls) == ["✅ Sent."]  # within office hours: no note
    await office_hours(app, "00:00-00:01")
    calls = await write(app, P1, f"w:to:{teacher}", "Вопрос")
    assert texts(calls) == [
        "✅ Sent. It is outside office hours (00:00-00:01), so expect an answer on a working day after 00:00."
    ]
    # The teacher's own hours come before the organisation's.
    await office_hours(app, "13:00-15:00", person=TEACHER)
    calls = await write(app, P1, f"w:to:{teacher}", "Вопрос")
    assert "outside office hours (13:00-15:00)" in texts(calls)[0] and "after 13:00" in texts(calls)[0]
    await office_hours(app, "11:00-13:00", person=TEACHER)
    calls = await write(app, P1, f"w:to:{teacher}", "Вопрос")
    assert texts(calls) == ["✅ Sent."]
    # The administration keeps the organisation's hours; a weekend is outside them all day.
    await office_hours(app, "08:00-18:00")
    calls = await write(app, P1, "w:admins:0", "Вопрос")
    assert texts(calls) == ["✅ Sent."]
    monkeypatch.setattr(handlers.messages, "utcnow", lambda: saturday_noon)
    calls = await write(app, P1, "w:admins:0", "Вопрос")
    assert "outside office hours (08:00-18:00)" in texts(calls)[0]
    # An answer through Reply carries no note: it is the staff who answer.
    sent = await app.flush()
    await office_hours(app, "00:00-00:01")
    copy = [c for c in to(sent, TEACHER.id) if "rl:reply" in str(c.reply_markup)][0]
    await app.press_on(TEACHER, copy, "rl:reply")
    calls = await app.send(TEACHER, "Ответ")
    assert texts(calls) == ["✅ Sent."]
    # Every one of these messages was delivered regardless of the hours.
    sent = await app.flush()
    assert len(to(sent, P1.id)) == 1


async def test_a_recipient_blocks_the_sender_who_can_no_longer_write_to_them(app: Harness) -> None:
    await school(app)
    await office_hours(app, None)
    teacher = await pid(app, TEACHER)
    parent = await pid(app, P1)
    await write(app, P1, f"w:to:{teacher}", "Первое")
    [copy] = to(await app.flush(), TEACHER.id)
    # The parent has already chosen the teacher again when the block comes.
    await write(app, P1, f"w:to:{teacher}")
    calls = await app.press_on(TEACHER, copy, "rl:block")
    assert answers(calls)[0].show_alert
    assert answers(calls)[0].text == "Blocked: this sender can no longer write to you. Administrators see blocks."
    calls = await app.press_on(TEACHER, copy, "rl:block")
    assert answers(calls)[0].text == "Already blocked."
    async with app.session_maker() as s:
        [block] = (await s.scalars(select(Block))).all()
        assert (block.blocker_id, block.blocked_id) == (teacher, parent)
    assert "relay.block" in await audit_actions(app)
    # At sending: refused, nothing relayed.
    calls = await app.send(P1, "Второе")
    assert texts(calls) == ["This person does not accept your messages."]
    assert await app.flush() == []
    assert len(await relays(app)) == 1
    # At choosing: refused with an alert, no dialog.
    calls = await write(app, P1, f"w:to:{teacher}")
    assert answers(calls)[0].show_alert and answers(calls)[0].text == "This person does not accept your messages."
    calls = await app.send(P1, "Третье")
    assert "✅" not in " ".join(texts(calls)) and await app.flush() == []
    # Other people still reach the teacher, and the parent still reaches the administration.
    await write(app, P2, f"w:to:{teacher}", "От Ольги")
    await write(app, P1, "w:admins:0", "Учитель меня заблокировал")
    sent = await app.flush()
    assert len(to(sent, TEACHER.id)) == 1 and len(to(sent, ADMIN.id)) == 1
    # The teacher's own answers to the blocked parent still go (the block is on what the parent sends).
    await app.press_on(TEACHER, copy, "rl:reply")
    calls = await app.send(TEACHER, "Ответ")
    assert texts(calls) == ["✅ Sent."]
    [answer] = to(await app.flush(), P1.id)
    # … but the parent cannot get round the block with the Reply button on that answer.
    calls = await app.press_on(P1, answer, "rl:reply")
    assert texts(calls)[-1] == "Send your answer to Анна Смирнова. /cancel stops."
    calls = await app.send(P1, "Через ответ")
    assert texts(calls) == ["This person does not accept your messages."]
    assert not to(await app.flush(), TEACHER.id)
    # Admins see blocks; others may not.
    await to_english(app, ADMIN)
    calls = await app.send(ADMIN, "/members")
    assert "mem:blocks:0:0" in str(only(calls, SendMessage)[0].reply_markup)
    calls = await app.press(ADMIN, "mem:blocks:0:0")
    [shown] = texts(calls)
    assert shown.startswith("<b>Blocks</b>\nАнна Смирнова blocked Мария Иванова on ")
    calls = await app.press(TEACHER, "mem:blocks:0:0")
    assert answers(calls)[0].show_alert and answers(calls)[0].text.startswith("⛔")
    assert not only(calls, SendMessage)


async def test_an_admin_who_blocked_a_sender_gets_none_of_their_messages_to_the_administration(app: Harness) -> None:
    await school(app)
    await office_hours(app, None)
    await to_english(app, ADMIN2)
    await join(app, ADMIN2, await invite(app, ADMIN, await staff_room_id(app), "admin"), "Борис Админов")
    await app.flush()
    await write(app, P1, "w:admins:0", "Первое")
    sent = await app.flush()
    calls = await app.press_on(ADMIN2, to(sent, ADMIN2.id)[0], "rl:block")
    assert answers(calls)[0].text == "Blocked: this sender can no longer write to you. Administrators see blocks."
    calls = await write(app, P1, "w:admins:0", "Второе")
    assert texts(calls) == ["✅ Sent."]  # the administration as a whole still hears the parent
    sent = await app.flush()
    # BUG: handlers/messages.py got_message sends a message to the administration to every admin without
    # checking blocks, so ADMIN2, who was told "this sender can no longer write to you", still gets P1's
    # second message. The admins who blocked the sender should be left out of `chats`.
    assert [c.chat_id for c in only(sent, SendMessage)] == [ADMIN.id]  # only the admin who did not block


async def test_a_message_too_long_for_its_header_is_not_reported_sent_and_lost(app: Harness) -> None:
    await school(app)
    await office_hours(app, None)
    teacher = await pid(app, TEACHER)
    longest = "Очень длинное письмо. " * 186  # 4092 characters: Telegram took it from the parent
    assert len(longest) <= 4096
    calls = await write(app, P1, f"w:to:{teacher}", longest)
    sent = await app.flush()
    if texts(calls) == ["✅ Sent."]:
        [copy] = to(sent, TEACHER.id)
        visible = html.unescape(re.sub(r"<[^>]+>", "", copy.text))
        # BUG: handlers/messages.py got_message checks the length only for captions (CAPTION_ROOM), not for
        # text: the header ("✉️ Message from …, parent of …") is put before a text of up to 4096 characters,
        # so the copy is longer than Telegram's 4096 and sendMessage fails ("message is too long") in the
        # outbox, while the sender was told "✅ Sent.". The text should be limited to 4096 minus room for the
        # header (as posting does with TEXT_LIMIT - HEADER_ROOM), asking the sender to shorten it.
        assert len(visible) <= 4096, len(visible)


async def test_rights_to_write_and_to_the_reply_and_block_buttons(app: Harness) -> None:
    await school(app)
    await office_hours(app, None)
    teacher = await pid(app, TEACHER)
    # A parent of 6Б does not see 5А's teacher and cannot forge the button.
    await to_english(app, P3)
    calls = await app.send(P3, "/write")
    assert f"w:to:{teacher}" not in str(only(calls, SendMessage)[0].reply_markup)
    calls = await app.press(P3, f"w:to:{teacher}")
    assert answers(calls)[0].show_alert and answers(calls)[0].text == REFUSED + "You cannot write to this person."
    calls = await app.send(P3, "Письмо учителю 5А")
    assert "✅" not in " ".join(texts(calls))
    # Nor to another parent.
    calls = await app.press(P1, f"w:to:{await pid(app, P2)}")
    assert answers(calls)[0].text == REFUSED + "You cannot write to this person."
    assert not only(await app.flush(), SendMessage) and await relays(app) == []
    # Someone who is not a member cannot write at all.
    await to_english(app, STRANGER)
    calls = await app.send(STRANGER, "/write")
    assert texts(calls) == [REFUSED + "This is for members of the organisation. Send /start to join."]
    calls = await app.press(STRANGER, "w:admins:0")
    assert answers(calls)[0].show_alert and answers(calls)[0].text == (
        REFUSED + "This is for members of the organisation. Send /start to join.")
    # Reply and Block on a relay addressed to someone else: refused, nothing changes.
    await write(app, P1, f"w:to:{teacher}", "Вопрос")
    await app.flush()
    [relay] = await relays(app)
    await to_english(app, P2)
    for who in (P2, P3, STUDENT):
        for action in ("reply", "block"):
            calls = await app.press(who, f"rl:{action}:{relay.id}")
            assert answers(calls)[0].show_alert
            if who is not STUDENT:
                assert answers(calls)[0].text == REFUSED + "This button is not for you."
    # The sender themselves cannot block or "reply" to their own message either.
    calls = await app.press(P1, f"rl:block:{relay.id}")
    assert answers(calls)[0].text == REFUSED + "This button is not for you."
    # An admin cannot act on a relay addressed to a teacher.
    await to_english(app, ADMIN)
    calls = await app.press(ADMIN, f"rl:block:{relay.id}")
    assert answers(calls)[0].text == REFUSED + "This button is not for you."
    calls = await app.send(P2, "Ответ за учителя")
    assert "✅" not in " ".join(texts(calls))
    assert not only(await app.flush(), SendMessage)
    async with app.session_maker() as s:
        assert await s.scalar(select(func.count()).select_from(Block)) == 0
    assert len(await relays(app)) == 1


async def test_the_sender_who_left_cannot_be_answered(app: Harness) -> None:
    await school(app)
    await office_hours(app, None)
    await write(app, P1, f"w:to:{await pid(app, TEACHER)}", "Вопрос")
    [copy] = to(await app.flush(), TEACHER.id)
    await app.send(P1, "/forget")
    await app.press(P1, "fg:yes")
    calls = await app.press_on(TEACHER, copy, "rl:reply")
    assert answers(calls)[0].show_alert and answers(calls)[0].text == "The sender has left."


# -- gated group chats ----------------------------------------------------------------------------

CHAT = group_chat(-1001, "5А родители")


async def linked(app: Harness) -> list[LinkedChat]:
    async with app.session_maker() as s:
        return list((await s.scalars(select(LinkedChat).order_by(LinkedChat.id))).all())


async def link(app: Harness, who: Person, group: int, chat=CHAT) -> list:  # type: ignore[no-untyped-def]
    calls = await app.send_in_group(who, chat, "/link")
    menu = only(calls, SendMessage)[-1]
    assert f"ch:link:{group}" in str(menu.reply_markup), texts(calls)
    return await app.press_in_group(who, chat, f"ch:link:{group}", message_id=app.session.message_ids[id(menu)])


async def test_admin_links_a_group_chat_and_only_members_of_the_class_get_in(app: Harness) -> None:
    a, b = await school(app)
    await to_english(app, ADMIN)
    staff = await staff_room_id(app)
    calls = await app.send_in_group(ADMIN, CHAT, "/link")
    # Telegram is asked after the commit: is the sender an administrator, may the bot invite?
    sender_check, bot_check = only(calls, GetChatMember)
    assert (sender_check.chat_id, sender_check.user_id) == (CHAT.id, ADMIN.id)
    assert (bot_check.chat_id, bot_check.user_id) == (CHAT.id, BOT_USER.id)
    [menu] = only(calls, SendMessage)
    assert menu.chat_id == CHAT.id and menu.text == "Which group is this chat for?"
    buttons = sorted(b.callback_data for row in menu.reply_markup.inline_keyboard for b in row)
    assert buttons == sorted([f"ch:link:{a}", f"ch:link:{b}", f"ch:link:{staff}"])
    calls = await app.press_in_group(ADMIN, CHAT, f"ch:link:{a}", message_id=app.session.message_ids[id(menu)])
    [create] = only(calls, CreateChatInviteLink)
    assert create.chat_id == CHAT.id and create.creates_join_request is True and create.name == "5А"
    [row] = await linked(app)
    assert (row.group_id, row.chat_id, row.title) == (a, CHAT.id, "5А родители")
    assert row.invite_link and row.invite_link.startswith("https://t.me/+") and row.linked_by_id == await pid(app, ADMIN)
    [edit] = only(calls, EditMessageText)
    assert edit.chat_id == CHAT.id and row.invite_link in edit.text and "5А" in edit.text
    assert "chat.link" in await audit_actions(app)
    # Linked once: a second /link (or a second press) is refused.
    calls = await app.send_in_group(ADMIN, CHAT, "/link")
    assert texts(calls) == ["This chat is already linked. /unlink first to link it elsewhere."]
    calls = await app.press_in_group(ADMIN, CHAT, f"ch:link:{b}")
    assert answers(calls)[0].text == "This chat is already linked. /unlink first to link it elsewhere."
    assert len(only(app.requests, CreateChatInviteLink)) == 1 and len(await linked(app)) == 1
    # Join requests: the class's members are let in …
    app.clear()
    for who in (P1, P2, TEACHER, STUDENT):
        calls = await app.join_request(who, CHAT, row.invite_link)
        assert [(type(c), c.chat_id, c.user_id) for c in calls] == [(ApproveChatJoinRequest, CHAT.id, who.id)]
    # … another class's parent and a stranger are declined and told why in private.
    calls = await app.join_request(P3, CHAT, row.invite_link)
    [decline] = only(calls, DeclineChatJoinRequest)
    assert (decline.chat_id, decline.user_id) == (CHAT.id, P3.id) and not only(calls, ApproveChatJoinRequest)
    [told] = only(calls, SendMessage)
    assert told.chat_id == P3.id and told.text.startswith("Не удалось впустить вас в чат «5А родители»")
    calls = await app.join_request(STRANGER, CHAT, row.invite_link)
    assert [type(c) for c in calls] == [DeclineChatJoinRequest, SendMessage]
    # The stranger's first contact with the bot: told in their Telegram's language.
    assert only(calls, SendMessage)[0].text.startswith("I could not let you into «5А родители»")
    # Telegram may not let the bot write first: the decline stands all the same.
    app.session.fail_next("sendMessage", 403, "Forbidden: bot can't initiate conversation with a user")
    calls = await app.join_request(Person(9002, "Ещё чужой"), CHAT)
    assert [type(c) for c in calls] == [DeclineChatJoinRequest, SendMessage]
    # A chat the bot does not know is not its business.
    calls = await app.join_request(P3, group_chat(-1002, "Чужой чат"))
    assert calls == []


async def test_a_teacher_links_only_their_own_class_and_a_parent_nothing(app: Harness) -> None:
    a, b = await school(app)
    calls = await app.send_in_group(TEACHER, CHAT, "/link")
    [menu] = only(calls, SendMessage)
    assert [b.callback_data for row in menu.reply_markup.inline_keyboard for b in row] == [f"ch:link:{a}"]
    # A forged button for another class, or for the staff room, is refused by the rights check.
    for group in (b, await staff_room_id(app)):
        calls = await app.press_in_group(TEACHER, CHAT, f"ch:link:{group}")
        assert answers(calls)[0].show_alert
        assert answers(calls)[0].text == REFUSED + "Only administrators and the class's verified teacher can link this chat."
    assert not only(app.requests, CreateChatInviteLink) and await linked(app) == []
    # A parent cannot /link, nor press a forged button.
    chat = group_chat(-1003, "Родители 5А")
    calls = await app.send_in_group(P1, chat, "/link")
    # The rights table refuses before anything else (the gate: bot.gates.CommandGate).
    assert texts(calls) == [REFUSED + "This is not available to you. /help lists what you can do."]
    assert not only(calls, GetChatMember)
    calls = await app.press_in_group(P1, chat, f"ch:link:{a}")
    assert answers(calls)[0].text == REFUSED + "This is not available to you. /help lists what you can do."
    assert await linked(app) == []
    # /link in private only explains where to send it.
    calls = await app.send(TEACHER, "/link")
    assert texts(calls)[0].startswith("Send /link in the Telegram group")
    # A ch:link button pressed in a private chat does nothing.
    calls = await app.press(TEACHER, f"ch:link:{a}")
    assert answers(calls)[0].text == "This button works only in a group chat."
    # The teacher links their class.
    calls = await link(app, TEACHER, a)
    assert only(calls, CreateChatInviteLink) and [r.group_id for r in await linked(app)] == [a]


async def test_link_asks_to_make_the_bot_an_administrator_first(app: Harness) -> None:
    a, _b = await school(app)
    await to_english(app, ADMIN)
    refusal = "Make me an administrator of this chat with the right to invite users, then send /link again."
    # Telegram is asked twice: the sender administers the chat (first), then the bot's own rights.
    app.session.chat_member_next("administrator")
    app.session.chat_member_next("member")
    calls = await app.send_in_group(ADMIN, CHAT, "/link")
    assert texts(calls) == [refusal] and only(calls, SendMessage)[0].reply_markup is None
    app.session.chat_member_next("administrator")
    app.session.chat_member_next("administrator", can_invite_users=False)
    calls = await app.send_in_group(ADMIN, CHAT, "/link")
    assert texts(calls) == [refusal]
    app.session.chat_member_next("administrator")
    app.session.chat_member_next("left")
    calls = await app.send_in_group(ADMIN, CHAT, "/link")
    assert texts(calls) == [refusal]
    app.session.chat_member_next("administrator")
    app.session.fail_next("getChatMember", 400, "Bad Request: chat not found")
    calls = await app.send_in_group(ADMIN, CHAT, "/link")
    assert texts(calls) == [refusal]
    assert await linked(app) == [] and not only(app.requests, CreateChatInviteLink)
    # A sender who is an ordinary member of the chat may not link it (issue 10, observation 6).
    app.session.chat_member_next("member")
    calls = await app.send_in_group(ADMIN, CHAT, "/link")
    assert texts(calls) == [REFUSED + "Only an administrator of this Telegram chat can link it. Ask its owner to make you one."]
    # The chat's creator may, and so may an administrator with the right.
    app.session.chat_member_next("administrator")
    app.session.chat_member_next("creator", is_anonymous=False)
    calls = await app.send_in_group(ADMIN, CHAT, "/link")
    assert texts(calls) == ["Which group is this chat for?"]


async def test_a_member_removed_from_the_class_is_taken_out_of_its_chat(app: Harness) -> None:
    a, _b = await school(app)
    await link(app, ADMIN, a)
    app.clear()
    parent = await pid(app, P1)
    await app.press(ADMIN, f"mb:remove:{a}:{parent}:0:0")
    calls = await app.press(ADMIN, f"mb:remove_yes:{a}:{parent}:0:0")
    assert not only(calls, BanChatMember)  # through the outbox, after the commit
    assert await memberships(app, P1.id) == [("5А", "parent", "removed")]
    sent = await app.flush()
    kicks = [c for c in sent if isinstance(c, (BanChatMember, UnbanChatMember))]
    assert [(type(c), c.chat_id, c.user_id) for c in kicks] == [
        (BanChatMember, CHAT.id, P1.id), (UnbanChatMember, CHAT.id, P1.id)
    ]
    assert kicks[1].only_if_banned is True  # a kick, not a ban: a new invitation lets them back
    # And they are no longer let in.
    calls = await app.join_request(P1, CHAT)
    assert only(calls, DeclineChatJoinRequest) and not only(calls, ApproveChatJoinRequest)


async def test_a_parent_who_deletes_their_data_is_taken_out_of_the_class_chat(app: Harness) -> None:
    a, _b = await school(app)
    await link(app, ADMIN, a)
    await app.flush()
    await app.send(P1, "/forget")
    calls = await app.press(P1, "fg:yes")
    assert "🗑" in texts(calls)[-1]
    sent = await app.flush()
    kicks = [(type(c), c.chat_id, c.user_id) for c in sent if isinstance(c, (BanChatMember, UnbanChatMember))]
    assert kicks == [(BanChatMember, CHAT.id, P1.id), (UnbanChatMember, CHAT.id, P1.id)]  # their real id
    # Nobody they could be is let in again.
    calls = await app.join_request(P1, CHAT)
    assert only(calls, DeclineChatJoinRequest) and not only(calls, ApproveChatJoinRequest)


async def test_a_staff_room_chat_and_a_teacher_leaving_the_staff(app: Harness) -> None:
    a, _b = await school(app)
    staff = await staff_room_id(app)
    staff_chat = group_chat(-1005, "Учительская")
    await link(app, ADMIN, a)
    await link(app, ADMIN, staff, chat=staff_chat)
    assert sorted((r.chat_id, r.group_id) for r in await linked(app)) == sorted([(CHAT.id, a), (staff_chat.id, staff)])
    calls = await app.join_request(TEACHER, staff_chat)
    assert [type(c) for c in calls] == [ApproveChatJoinRequest]
    calls = await app.join_request(P1, staff_chat)
    assert [type(c) for c in calls] == [DeclineChatJoinRequest, SendMessage]
    # A teacher removed from the staff room leaves the staff altogether: out of both chats.
    app.clear()
    await app.press(ADMIN, f"mb:remove_yes:{staff}:{await pid(app, TEACHER)}:0:0")
    assert await memberships(app, TEACHER.id) == [("5А", "teacher", "removed"), ("Учительская", "teacher", "removed")]
    sent = await app.flush()
    bans = sorted(c.chat_id for c in sent if isinstance(c, BanChatMember) and c.user_id == TEACHER.id)
    unbans = sorted(c.chat_id for c in sent if isinstance(c, UnbanChatMember) and c.user_id == TEACHER.id)
    assert bans == unbans == sorted([CHAT.id, staff_chat.id])
    calls = await app.join_request(TEACHER, staff_chat)
    assert only(calls, DeclineChatJoinRequest)


async def test_a_parent_who_follows_a_moved_child_is_taken_out_of_the_old_class_chat(app: Harness) -> None:
    a, b = await school(app)
    await link(app, ADMIN, a)
    from storage.models import Pupil

    async with app.session_maker() as s:
        pupil = (await s.scalars(select(Pupil.id).where(Pupil.full_name == "Петя Иванов"))).one()
    parent = await pid(app, P1)
    app.clear()
    await app.press(ADMIN, f"mb:move_yes:{a}:{parent}:{pupil}:{b}")
    assert ("5А", "parent", "removed") in await memberships(app, P1.id)
    calls = await app.join_request(P1, CHAT)
    assert only(calls, DeclineChatJoinRequest)  # no longer let in …
    sent = await app.flush()
    # BUG: handlers/staff.py move() ends the parent's membership in the old class but, unlike remove(),
    # enqueues no BanChatMember/UnbanChatMember for the old class's linked chats, so the parent stays in
    # 5А's gated chat although they are no longer a member of 5А.
    assert [(type(c), c.chat_id, c.user_id) for c in sent if isinstance(c, (BanChatMember, UnbanChatMember))] == [
        (BanChatMember, CHAT.id, P1.id), (UnbanChatMember, CHAT.id, P1.id)
    ]


async def test_migration_unlink_and_the_bot_removed(app: Harness) -> None:
    a, b = await school(app)
    await to_english(app, ADMIN)
    await link(app, ADMIN, a)
    [row] = await linked(app)
    # The group becomes a supergroup: the link follows the new id.
    supergroup = group_chat(-1009000000001, "5А родители", kind="supergroup")
    calls = await app.migrate(ADMIN, CHAT, supergroup.id)
    assert calls == []  # nothing said in the chat
    [moved] = await linked(app)
    assert (moved.id, moved.chat_id, moved.group_id) == (row.id, supergroup.id, a)
    calls = await app.join_request(P1, supergroup)
    assert [(type(c), c.chat_id) for c in calls] == [(ApproveChatJoinRequest, supergroup.id)]
    assert await app.join_request(P1, CHAT) == []  # the old chat is no longer ours
    # /unlink: refused to a parent and to a stranger.
    await to_english(app, P2)
    calls = await app.send_in_group(P2, supergroup, "/unlink")
    assert texts(calls) == [REFUSED + "This is not available to you. /help lists what you can do."]
    await to_english(app, STRANGER)
    calls = await app.send_in_group(STRANGER, supergroup, "/unlink")
    assert texts(calls) == [REFUSED + "This is for members of the organisation. Send /start to join."]
    assert len(await linked(app)) == 1 and not only(app.requests, RevokeChatInviteLink)
    # The class's teacher may; the invite link is revoked and the row is gone.
    calls = await app.send_in_group(TEACHER, supergroup, "/unlink")
    [revoke] = only(calls, RevokeChatInviteLink)
    assert (revoke.chat_id, revoke.invite_link) == (supergroup.id, row.invite_link)
    assert texts(calls) == ["Unlinked: the invite link no longer works."]
    assert await linked(app) == [] and (await audit_actions(app))[-1] == "chat.unlink"
    calls = await app.send_in_group(ADMIN, supergroup, "/unlink")
    assert texts(calls) == ["This chat is not linked."]
    assert await app.join_request(P1, supergroup) == []
    # Unlinking holds even when the link is already gone on Telegram's side.
    await link(app, ADMIN, b, chat=supergroup)
    app.session.fail_next("revokeChatInviteLink", 400, "Bad Request: INVITE_HASH_EXPIRED")
    calls = await app.send_in_group(ADMIN, supergroup, "/unlink")
    assert texts(calls) == ["Unlinked: the invite link no longer works."] and await linked(app) == []
    # The bot removed from a linked chat forgets the link ("left" and "kicked" alike).
    await link(app, ADMIN, a, chat=supergroup)
    other = group_chat(-1004, "6Б")
    await link(app, ADMIN, b, chat=other)
    calls = await app.bot_status_changed(P1, supergroup, "left")
    assert calls == []
    assert [r.chat_id for r in await linked(app)] == [other.id]
    calls = await app.bot_status_changed(ADMIN, other, "kicked")
    assert await linked(app) == [] and (await audit_actions(app))[-2:] == ["chat.lost", "chat.lost"]
    # The bot demoted to a plain member keeps the link (it only loses the power to let people in).
    await link(app, ADMIN, a, chat=supergroup)
    await app.bot_status_changed(ADMIN, supergroup, "member")
    assert len(await linked(app)) == 1


async def test_a_teacher_sets_their_own_office_hours(app: Harness) -> None:
    """A teacher's own office hours win over the organisation's; a parent cannot set any."""
    from handlers.messages import office_note
    from storage.models import Organisation
    from storage.models import Person as PersonRow
    from tests.test_posting import P1, TEACHER, school

    await school(app)
    calls = await app.send(TEACHER, "/settings")
    assert "set:office:1" in str(only(calls, SendMessage)[0].reply_markup)
    await app.press(TEACHER, "set:office:1")  # 08:00-17:00
    calls = await app.press(P1, "set:office:2")
    assert answers(calls)[0].show_alert
    async with app.session_maker() as s:
        hours = dict((await s.execute(select(PersonRow.telegram_id, PersonRow.office_hours))).all())
        org = (await s.scalars(select(Organisation))).one()
    assert hours[TEACHER.id] == "08:00-17:00" and hours[P1.id] is None
    with app.dp["i18n"].context():
        assert office_note("08:00-17:00", org, datetime(2027, 1, 11, 12, 0, tzinfo=timezone.utc)) is None  # Mon 15:00
        assert office_note("08:00-17:00", org, datetime(2027, 1, 11, 15, 0, tzinfo=timezone.utc))  # Mon 18:00 MSK


async def test_an_unverified_teacher_cannot_write_with_a_forged_button_either(app: Harness) -> None:
    a, _b = await school(app)
    newcomer = Person(3009, "Новенький", "en")
    await join(app, newcomer, await invite(app, ADMIN, a, "teacher"), "Пётр Новиков")
    await app.flush()
    calls = await app.press(newcomer, "w:admins:0")
    assert answers(calls)[0].show_alert
    calls = await app.send(newcomer, "Здравствуйте")
    await app.flush()
    assert await relays(app) == []
