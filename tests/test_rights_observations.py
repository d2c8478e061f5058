"""Issue 10's ten observations, each a regression test of the behaviour the
issue asks for ("What it must show").

Black-box on purpose, so that they survive the redesign of rights: every test
acts through real Updates fed to the real Dispatcher (commands, dialogs, real
and forged button presses), runs the outbox and the scheduler, and looks only
at the Bot API calls made and at the database. Nothing here calls a function
of bot/ or handlers/.

A test marked xfail(strict=True) fails on the code as it was when the issue was
filed; its reason names the observation. When the fix lands the test passes,
strict xfail turns that into a failure, and the mark is to be removed.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiogram.methods import (
    AnswerCallbackQuery,
    ApproveChatJoinRequest,
    CreateChatInviteLink,
    DeclineChatJoinRequest,
    EditMessageReplyMarkup,
    EditMessageText,
    SendDocument,
    SendMessage,
    SendPhoto,
    SetMyCommands,
)
from sqlalchemy import func, select, text

from storage.models import (
    Acknowledgement,
    Block,
    JoinRequest,
    LinkedChat,
    Membership,
    PollOption,
    Post,
    Vote,
)
from storage.models import Person as PersonRow
from tests.conftest import ADMIN
from tests.flows import invite, join, memberships, staff_room_id, to_english
from tests.harness import BOT_USER, Harness, Person, answers, bot_admin, group_chat, only, texts
from tests.test_posting import P1, P2, P3, STUDENT, TEACHER, compose, copies_to, school

MSK = ZoneInfo("Europe/Moscow")
ADMIN2 = Person(1002, "Борис", "en")
NEWCOMER = Person(6001, "Новенький", "en")
SPECIALIST = Person(3101, "Логопед", "en")
UNVERIFIED = Person(3201, "Стажёр", "en")
CHAT = group_chat(-1001, "5А родители")


# -- helpers: only updates and the database ---------------------------------------------------


async def pid(app: Harness, who: Person) -> int:
    async with app.session_maker() as s:
        return (await s.scalars(select(PersonRow.id).where(PersonRow.telegram_id == who.id))).one()


async def last_post(app: Harness) -> Post:
    async with app.session_maker() as s:
        return (await s.scalars(select(Post).order_by(Post.id.desc()))).first()  # type: ignore[return-value]


async def count(app: Harness, model: type, *where: Any) -> int:
    async with app.session_maker() as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def remove_everywhere(app: Harness, who: Person) -> None:
    """An admin removes the person from every group they belong to (/members → remove → yes)."""
    person = await pid(app, who)
    async with app.session_maker() as s:
        groups = (await s.scalars(select(Membership.group_id).where(Membership.person_id == person))).all()
    for group in sorted(set(groups), reverse=True):  # the class first, the staff room last
        calls = await app.press(ADMIN, f"mb:remove_yes:{group}:{person}:0:0")
        assert answers(calls) and not answers(calls)[0].show_alert, texts(calls)
    assert all(state == "removed" for _g, _r, state in await memberships(app, who.id)), await memberships(app, who.id)
    await app.flush()
    app.clear()


def sent_to(calls: list, chat_id: int) -> list:
    """Everything the bot sent or edited in this person's chat."""
    return [c for c in calls if isinstance(c, (SendMessage, SendPhoto, SendDocument, EditMessageText,
                                                 EditMessageReplyMarkup)) and c.chat_id == chat_id]


def refused(calls: list) -> bool:
    """The press got an alert (a refusal), not a silent answer followed by the action."""
    return bool(answers(calls)) and bool(answers(calls)[0].show_alert)


async def post_with_ack(app: Harness, group: int, content: str = "Собрание в пятницу") -> Post:
    await compose(app, TEACHER, "announcement", [group], content, students=False, ack=True)
    await app.press(TEACHER, "cmp:send:")
    await app.flush()
    app.clear()
    return await last_post(app)


async def first_option(app: Harness, post_id: int) -> int:
    async with app.session_maker() as s:
        return (await s.scalars(select(PollOption.id).where(PollOption.post_id == post_id)
                                .order_by(PollOption.position))).first()  # type: ignore[return-value]


async def post_poll(app: Harness, who: Person, group: int, question: str = "Экскурсия?") -> Post:
    await app.send(who, "/post")
    await app.press(who, "cmp:kind:poll")
    await app.press(who, f"cmp:group:{group}")
    await app.press(who, "cmp:next:")
    await app.send(who, question)
    await app.send(who, "Да\nНет")
    await app.press(who, "cmp:next:")
    await app.press(who, "cmp:preview:")
    await app.press(who, "cmp:send:")
    await app.flush()
    app.clear()
    return await last_post(app)


# -- 1. a removed teacher and the card of their old post ------------------------------------------


@pytest.mark.xfail(strict=True, reason="issue 10 observation 1")
async def test_1_a_removed_teacher_cannot_edit_their_old_post(app: Harness) -> None:
    a, _b = await school(app)
    post = await post_with_ack(app, a)
    await remove_everywhere(app, TEACHER)
    calls = await app.press(TEACHER, f"pc:edit:{post.id}")
    prompt = [t for t in texts(calls) if "Send the new text" in t]
    calls += await app.send(TEACHER, "Срочно переведите 500 ₽ на карту 2200 0000 0000 0000")
    sent = await app.flush()
    changed = [c.text for c in sent if isinstance(c, (SendMessage, EditMessageText))
               and c.chat_id in (P1.id, P2.id) and "2200" in c.text]
    assert not changed, f"the families' copies were changed by a removed teacher: {changed}"
    async with app.session_maker() as s:
        assert "2200" not in (await s.get(Post, post.id)).text, "the post's text in the database was changed"  # type: ignore[union-attr]
    assert not prompt and refused(calls), (
        f"the Edit press was not refused; the removed teacher saw {texts(calls)}")


@pytest.mark.xfail(strict=True, reason="issue 10 observation 1")
async def test_1_a_removed_teacher_sees_no_names_and_reminds_nobody(app: Harness) -> None:
    a, _b = await school(app)
    post = await post_with_ack(app, a)
    await remove_everywhere(app, TEACHER)
    calls = await app.press(TEACHER, f"pc:pending:{post.id}")
    names = [t for t in texts(calls) if "Мария" in t or "Ольга" in t]
    assert not names, f"a removed teacher read the parents' names: {names}"
    assert refused(calls), f"'who has not acknowledged' was not refused: {texts(calls)}"
    calls = await app.press(TEACHER, f"pc:renotify:{post.id}")
    sent = await app.flush()
    reminded = [c.chat_id for c in sent if isinstance(c, SendMessage) and c.chat_id in (P1.id, P2.id)]
    assert not reminded, f"a removed teacher's Remind reached {reminded}"
    assert refused(calls), f"Remind was not refused: {texts(calls)}"


@pytest.mark.xfail(strict=True, reason="issue 10 observation 1")
async def test_1_a_removed_teacher_cannot_close_their_poll(app: Harness) -> None:
    a, _b = await school(app)
    poll = await post_poll(app, TEACHER, a)
    await remove_everywhere(app, TEACHER)
    calls = await app.press(TEACHER, f"pc:close:{poll.id}")
    async with app.session_maker() as s:
        closed = (await s.get(Post, poll.id)).poll_closed_at  # type: ignore[union-attr]
    assert closed is None, f"a removed teacher closed their poll (answer: {texts(calls)})"
    assert refused(calls), f"Close was not refused: {texts(calls)}"


# -- 2. a removed teacher's later actions and invitations ------------------------------------------


@pytest.mark.xfail(strict=True, reason="issue 10 observation 2")
async def test_2_a_removed_teachers_scheduled_post_is_not_sent_and_an_admin_is_told(app: Harness) -> None:
    a, _b = await school(app)
    await compose(app, TEACHER, "announcement", [a], "Завтрашнее объявление", students=False)
    await app.press(TEACHER, "cmp:later:")
    calls = await app.send(TEACHER, "10.01.2099 10:00")
    assert "10.01.2099 10:00" in texts(calls)[-1], texts(calls)
    await remove_everywhere(app, TEACHER)
    when = datetime(2099, 1, 10, 10, 1, tzinfo=MSK)
    await app.scheduler.run_due(when)
    sent = await app.flush()
    copies = [c.chat_id for c in sent if isinstance(c, SendMessage) and "Завтрашнее" in (c.text or "")
              and c.chat_id not in (ADMIN.id, TEACHER.id)]
    assert not copies, f"the removed teacher's scheduled post went out to {copies}"
    assert (await last_post(app)).state != "sent", "the post is recorded as sent"
    told = [c.text for c in only(sent, SendMessage) if c.chat_id == ADMIN.id]
    assert told, "no administrator was told that the scheduled post was not sent"


@pytest.mark.xfail(strict=True, reason="issue 10 observation 2")
async def test_2_a_removed_teachers_unlimited_invitation_no_longer_admits(app: Harness) -> None:
    a, _b = await school(app)
    code = await invite(app, TEACHER, a, "parent", uses=0)  # no limit on uses
    await remove_everywhere(app, TEACHER)
    calls = await join(app, NEWCOMER, code, "Вера Новикова", "Дима Новиков")
    assert await memberships(app, NEWCOMER.id) == [], (
        f"the removed teacher's code still admits: {await memberships(app, NEWCOMER.id)}; the newcomer saw "
        f"{texts(calls)[-1:]}")


# -- 3. a removed parent ------------------------------------------------------------------------


async def linked_class_chat(app: Harness, group: int) -> str:
    """The admin links CHAT to the class; returns its join-request link."""
    calls = await app.send_in_group(ADMIN, CHAT, "/link")
    menu = only(calls, SendMessage)[-1]
    await app.press_in_group(ADMIN, CHAT, f"ch:link:{group}", message_id=app.session.message_ids[id(menu)])
    async with app.session_maker() as s:
        return (await s.scalars(select(LinkedChat.invite_link))).one()


@pytest.mark.xfail(strict=True, reason="issue 10 observation 3")
async def test_3_a_removed_parent_cannot_come_back_alone_with_the_old_class_code(app: Harness) -> None:
    a, _b = await school(app)
    link = await linked_class_chat(app, a)
    code = await invite(app, ADMIN, a, "parent")
    await join(app, NEWCOMER, code, "Вера Новикова", "Дима Новиков")
    calls = await app.join_request(NEWCOMER, CHAT, link)
    assert only(calls, ApproveChatJoinRequest), "setup: the member is let into the class chat"
    await remove_everywhere(app, NEWCOMER)
    calls = await join(app, NEWCOMER, code, "Вера Новикова", "Дима Новиков")
    active = [m for m in await memberships(app, NEWCOMER.id) if m[2] != "removed"]
    assert active == [], f"the removed parent is back in the class on their own with the old code: {active}"
    calls = await app.join_request(NEWCOMER, CHAT, link)
    assert not only(calls, ApproveChatJoinRequest), "the removed parent was let into the class chat again"
    assert only(calls, DeclineChatJoinRequest)


@pytest.mark.xfail(strict=True, reason="issue 10 observation 3")
async def test_3_a_removed_parent_cannot_acknowledge_or_vote(app: Harness) -> None:
    a, _b = await school(app)
    post = await post_with_ack(app, a)
    poll = await post_poll(app, TEACHER, a)
    option = await first_option(app, poll.id)
    await remove_everywhere(app, P2)
    ack = await app.press(P2, f"p:ack:{post.id}:0")
    vote = await app.press(P2, f"p:vote:{poll.id}:{option}")
    acks = await count(app, Acknowledgement, Acknowledgement.post_id == post.id)
    votes = await count(app, Vote, Vote.post_id == poll.id)
    assert (acks, votes) == (0, 0), (
        f"a removed parent acknowledged ({acks}) / voted ({votes}); answers: {texts(ack)} {texts(vote)}")
    assert refused(ack) and refused(vote)
