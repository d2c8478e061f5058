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


# -- 4. two people deciding the same thing at the same moment ---------------------------------------
#
# The app fixture's in-memory SQLite shares one connection between sessions, so
# two updates could not race there as they do in production. These tests get a
# database of their own: a SQLite file (a connection per session, as deployed),
# or TEST_DATABASE_URL's PostgreSQL. No ADMIN_IDS: the organisation's admins are
# its members, so the "last admin" rule is all that keeps one.

RACER_A = Person(1101, "Алла", "en")
RACER_B = Person(1102, "Белла", "en")


def race_url(tmp_path: Path) -> str:
    import os

    return os.environ.get("TEST_DATABASE_URL") or f"sqlite+aiosqlite:///{tmp_path / 'race.db'}"


@pytest.fixture
async def race(tmp_path: Path) -> AsyncIterator[Harness]:
    from aiogram.fsm.storage.memory import SimpleEventIsolation  # noqa: F401  (the default isolation)

    from bot.app import create_dispatcher
    from bot.fsm import DatabaseStorage
    from bot.i18n import create_i18n
    from bot.outbox import Outbox
    from bot.posts import progress_hook
    from bot.scheduler import Scheduler
    from bot.settings import Settings
    from storage.db import create_engine, create_session_maker
    from storage.models import Base
    from tests.harness import TOKEN, make_bot

    settings = Settings(bot_token=TOKEN, admin_ids=frozenset(), database_url=race_url(tmp_path),  # type: ignore[arg-type]
                        telegram_api_url="http://127.0.0.1:1", timezone="Europe/Moscow", default_locale="ru",
                        _env_file=None)  # type: ignore[call-arg]
    engine = create_engine(settings.database_url)
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await conn.run_sync(Base.metadata.create_all)
    session_maker = create_session_maker(engine)
    bot = make_bot()
    outbox = Outbox(session_maker, bot, rate=0, per_chat_interval=0)  # type: ignore[arg-type]
    i18n = create_i18n(settings.default_locale)
    outbox.on_progress = progress_hook(session_maker, i18n, settings.default_locale, outbox.wake)
    scheduler = Scheduler(session_maker, i18n, settings.default_locale, outbox.wake)  # type: ignore[arg-type]
    dp = create_dispatcher(settings, session_maker, outbox=None, bot_username=BOT_USER.username or "",  # type: ignore[arg-type]
                           scheduler=scheduler, i18n=i18n, storage=DatabaseStorage(session_maker))  # type: ignore[arg-type]
    yield Harness(dp=dp, bot=bot, outbox=outbox, session_maker=session_maker, scheduler=scheduler)
    await engine.dispose()


async def seed_two_admins(app: Harness, a: Person = RACER_A, b: Person = RACER_B, n: int = 0) -> tuple[Any, int]:
    """A school (tests/seed.py; the n-th of several) whose staff room has two admins, a and b."""
    from storage.models import Group, MemberState, Role, utcnow
    from tests.seed import seed_school

    school_ = await seed_school(app.session_maker, parents=2, teacher_locale="en", org_name=f"Школа № {n + 1}",
                                teacher_tg=3001 + 10 * n, first_parent_tg=100_000 + 10 * n)
    async with app.session_maker.begin() as s:
        staff = (await s.scalars(select(Group.id).where(Group.org_id == school_.org_id, Group.kind == "staff"))).one()
        for racer in (a, b):
            person = PersonRow(telegram_id=racer.id, full_name=racer.first_name + " Админова",
                               telegram_name=racer.first_name, locale="en")
            s.add(person)
            await s.flush()
            s.add(Membership(org_id=school_.org_id, group_id=staff, person_id=person.id, role=Role.ADMIN.value,
                             state=MemberState.ACTIVE.value, verified_at=utcnow()))
    return school_, staff


async def seed_unverified_teacher(app: Harness, school_: Any, tg: int) -> int:
    """A teacher who joined the class and waits for verification; returns the membership id."""
    from storage.models import MemberState, Role

    async with app.session_maker.begin() as s:
        person = PersonRow(telegram_id=tg, full_name=f"Учитель {tg}", telegram_name="T", locale="en")
        s.add(person)
        await s.flush()
        membership = Membership(org_id=school_.org_id, group_id=school_.group_id, person_id=person.id,
                                role=Role.TEACHER.value, state=MemberState.UNVERIFIED.value)
        s.add(membership)
        await s.flush()
        return membership.id


# Today the race is lost in about half of the rounds on SQLite and most on
# PostgreSQL: 16 rounds make a false pass of the xfail unlikely (< 1e-4).
ROUNDS = 16
_race_queries = iter(range(900_000, 10**9))


async def press_together(app: Harness, *presses: tuple[Person, str]) -> dict[int, list[AnswerCallbackQuery]]:
    """The people press their buttons at the same moment (one update each, fed
    concurrently: the dispatcher's isolation is per person, so they run side by
    side); returns each person's answers."""
    from datetime import timezone as tz

    from aiogram.types import CallbackQuery, Message, Update

    updates, ids = [], {}
    for who, data in presses:
        qid = str(next(_race_queries))
        ids[qid] = who.id
        query = CallbackQuery(id=qid, from_user=who.user, chat_instance="ci", data=data, message=Message(
            message_id=1, date=datetime.now(tz.utc), chat=who.chat, from_user=BOT_USER, text="…"))
        updates.append(Update(update_id=int(qid), callback_query=query))
    before = len(app.requests)
    await asyncio.gather(*(app.dp.feed_update(app.bot, u) for u in updates))
    got: dict[int, list[AnswerCallbackQuery]] = {who.id: [] for who, _d in presses}
    for call in answers(app.requests[before:]):
        got[ids[call.callback_query_id]].append(call)
    return got


async def test_4_the_race_fixture_really_runs_two_admins_side_by_side(race: Harness) -> None:
    """The premise of the race tests: two different people's updates overlap in
    time (isolation is per person), while one person's updates do not."""
    await seed_two_admins(race)
    spans: list[tuple[str, float, float]] = []
    real_feed = race.dp.feed_update

    async def timed(bot: Any, update: Any, **kw: Any) -> Any:
        start = asyncio.get_running_loop().time()
        await real_feed(bot, update, **kw)
        spans.append((str(update.callback_query.from_user.id), start, asyncio.get_running_loop().time()))

    race.dp.feed_update = timed  # type: ignore[method-assign]
    try:
        from storage.models import Membership as M  # noqa: F401

        # Reading the member list is a few queries: long enough to overlap.
        await press_together(race, (RACER_A, "mem:group:1:0"), (RACER_B, "mem:group:1:0"))
    finally:
        race.dp.feed_update = real_feed  # type: ignore[method-assign]
    (_, a0, a1), (_, b0, b1) = sorted(spans, key=lambda s: s[1])
    assert b0 < a1, "the two admins' updates did not overlap: the race tests would test nothing"


@pytest.mark.xfail(strict=True, reason="issue 10 observation 4")
async def test_4_verify_and_decline_at_the_same_moment_exactly_one_wins(race: Harness) -> None:
    school_, _staff = await seed_two_admins(race)
    outcomes = []
    for i in range(ROUNDS):
        teacher_tg = 3500 + i
        membership_id = await seed_unverified_teacher(race, school_, teacher_tg)
        first, second = (RACER_A, RACER_B) if i % 2 == 0 else (RACER_B, RACER_A)
        got = await press_together(race, (first, f"ver:yes:{membership_id}"), (second, f"ver:no:{membership_id}"))
        said = {who: [a.text for a in calls] for who, calls in got.items()}
        won_yes = said[first.id] == ["Verified."]
        won_no = said[second.id] == ["Declined."]
        sent = await race.flush()
        to_teacher = [c.text for c in only(sent, SendMessage) if c.chat_id == teacher_tg]
        async with race.session_maker() as s:
            state = (await s.get(Membership, membership_id)).state  # type: ignore[union-attr]
        outcomes.append((said, to_teacher, state))
        assert won_yes != won_no, f"round {i}: both or neither won: answers {said}, teacher told {to_teacher}, state {state}"
        assert len(to_teacher) == 1, f"round {i}: the teacher got {len(to_teacher)} messages: {to_teacher}"
        assert state == ("active" if won_yes else "removed"), f"round {i}: {said} but the membership is {state}"


@pytest.mark.xfail(strict=True, reason="issue 10 observation 4")
async def test_4_two_admins_forgetting_themselves_at_once_leave_one_admin(race: Harness) -> None:
    from storage.models import Role

    for n in range(ROUNDS):  # a school of its own each round, with two admins
        a, b = Person(1100 + 2 * n, "Алла", "en"), Person(1101 + 2 * n, "Белла", "en")
        school_, _staff = await seed_two_admins(race, a, b, n)
        for racer in (a, b):  # each is offered the confirmation: another admin remains
            calls = await race.send(racer, "/forget")
            assert "fg:yes" in str(only(calls, SendMessage)[0].reply_markup), texts(calls)
        got = await press_together(race, (a, "fg:yes"), (b, "fg:yes"))
        async with race.session_maker() as s:
            admins = (await s.scalars(select(Membership.person_id).where(
                Membership.org_id == school_.org_id, Membership.role == Role.ADMIN.value,
                Membership.state == "active"))).all()
        said = {who: [(x.text, x.show_alert) for x in calls] for who, calls in got.items()}
        assert admins, f"round {n}: both admins deleted their data at once; the school has no admin left: {said}"
        assert len(admins) == 1, f"round {n}: neither could leave: {said}"


async def test_4_one_admin_after_the_other_keeps_the_last_one(race: Harness) -> None:
    """The same two presses one after the other: the second is refused (the
    premise of the race above; passes today)."""
    school_, _staff = await seed_two_admins(race)
    for racer in (RACER_A, RACER_B):
        await race.send(racer, "/forget")
    await race.press(RACER_A, "fg:yes")
    calls = await race.press(RACER_B, "fg:yes")
    assert refused(calls) and "last administrator" in answers(calls)[0].text, texts(calls)
    assert await memberships(race, RACER_B.id) == [("Staff room", "admin", "active")]
