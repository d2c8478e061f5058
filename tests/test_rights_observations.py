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
    EditMessageText,
    SendDocument,
    SendMessage,
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
from tests.harness import BOT_USER, Harness, Person, answers, bot_admin, button_data, group_chat, only, texts
from tests.test_posting import P1, P2, STUDENT, TEACHER, compose, school

MSK = ZoneInfo("Europe/Moscow")
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


async def try_join(app: Harness, who: Person, code: str, name: str, child: str) -> list:
    """Walks the invitation dialog as far as the bot lets it go: the code, the
    name, the child's name, then Join if offered (a refusal at any step ends it)."""
    calls = await app.send(who, f"/start {code}")
    calls += await app.send(who, name)
    calls += await app.send(who, child)
    confirms = [c for c in only(calls, SendMessage) if "join:confirm" in str(c.reply_markup)]
    if confirms:
        calls += await app.press_on(who, confirms[-1], "join:confirm")
    return calls


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


async def test_2_a_removed_teachers_scheduled_post_is_not_sent_and_an_admin_is_told(app: Harness) -> None:
    a, _b = await school(app)
    await compose(app, TEACHER, "announcement", [a], "Завтрашнее объявление", students=False)
    await app.press(TEACHER, "cmp:later:")
    calls = await app.send(TEACHER, "10.01.2099 10:00")
    assert "10 January 2099, 10:00" in texts(calls)[-1] or "10 января 2099, 10:00" in texts(calls)[-1], texts(calls)
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


async def test_2_a_removed_teachers_reminder_and_deadline_summary_are_not_sent(app: Harness) -> None:
    """"A scheduled post, a reminder or a deadline whose author lost the right is
    not sent": the families are not reminded, and the summary with their names
    does not reach the removed teacher."""
    from storage.models import DueItem

    a, _b = await school(app)
    await app.send(TEACHER, "/post")
    await app.press(TEACHER, "cmp:kind:announcement")
    await app.press(TEACHER, f"cmp:group:{a}")
    await app.press(TEACHER, "cmp:next:")
    await app.send(TEACHER, "Подпишите согласие")
    await app.press(TEACHER, "cmp:ack:")
    await app.press(TEACHER, "cmp:ack_days:")  # within a day: a reminder halfway, a summary at the end
    await app.press(TEACHER, "cmp:preview:")
    await app.press(TEACHER, "cmp:send:")
    await app.flush()
    await remove_everywhere(app, TEACHER)
    async with app.session_maker() as s:
        items = (await s.scalars(select(DueItem).order_by(DueItem.due_at))).all()
    assert [i.kind for i in items] == ["ack_reminder", "ack_deadline"], [i.kind for i in items]
    sent = []
    for item in items:
        await app.scheduler.run_due(item.due_at + timedelta(seconds=1))
        sent += await app.flush()
    reminded = sorted({c.chat_id for c in only(sent, SendMessage) if c.chat_id in (P1.id, P2.id, STUDENT.id)})
    names = [c.text for c in only(sent, SendMessage) if c.chat_id == TEACHER.id
             and ("Ольга" in c.text or "Мария" in c.text)]
    assert not reminded and not names, (
        f"the removed teacher's post still reminded {reminded} and told them who did not acknowledge: {names}")


async def test_2_a_removed_teacher_cannot_move_or_list_their_scheduled_post(app: Harness) -> None:
    a, _b = await school(app)
    await compose(app, TEACHER, "announcement", [a], "Позднее объявление", students=False)
    await app.press(TEACHER, "cmp:later:")
    await app.send(TEACHER, "10.01.2099 10:00")
    post = await last_post(app)
    await remove_everywhere(app, TEACHER)
    listed = texts(await app.send(TEACHER, "/scheduled"))
    calls = await app.press(TEACHER, f"sch:time:{post.id}")
    calls += await app.send(TEACHER, "11.01.2099 09:00")
    moved = (await last_post(app)).scheduled_at
    assert moved == datetime(2099, 1, 10, 10, 0, tzinfo=MSK), f"the removed teacher moved it to {moved}: {texts(calls)}"
    assert not [t for t in listed if "Позднее" in t], f"/scheduled still lists it to the removed teacher: {listed}"


async def test_2_a_removed_teachers_unlimited_invitation_no_longer_admits(app: Harness) -> None:
    a, _b = await school(app)
    code = await invite(app, TEACHER, a, "parent", uses=0)  # no limit on uses
    await remove_everywhere(app, TEACHER)
    calls = await try_join(app, NEWCOMER, code, "Вера Новикова", "Дима Новиков")
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


async def test_3_a_removed_parent_cannot_come_back_alone_with_the_old_class_code(app: Harness) -> None:
    a, _b = await school(app)
    link = await linked_class_chat(app, a)
    code = await invite(app, ADMIN, a, "parent")
    await join(app, NEWCOMER, code, "Вера Новикова", "Дима Новиков")
    calls = await app.join_request(NEWCOMER, CHAT, link)
    assert only(calls, ApproveChatJoinRequest), "setup: the member is let into the class chat"
    await remove_everywhere(app, NEWCOMER)
    calls = await try_join(app, NEWCOMER, code, "Вера Новикова", "Дима Новиков")
    active = [m for m in await memberships(app, NEWCOMER.id) if m[2] != "removed"]
    assert active == [], f"the removed parent is back in the class on their own with the old code: {active}"
    calls = await app.join_request(NEWCOMER, CHAT, link)
    assert not only(calls, ApproveChatJoinRequest), "the removed parent was let into the class chat again"
    assert only(calls, DeclineChatJoinRequest)


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
    """The premise of the race tests: two different people's updates are handled
    at the same time (the dispatcher's isolation is per person, not global), one
    person's one after the other. Measured inside the isolation and the unit of
    work, by an aiogram middleware this test adds, which holds each press 50 ms."""
    await seed_two_admins(race)
    spans: list[tuple[int, float, float]] = []

    async def recorder(handler: Any, event: Any, data: dict[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(0.05)
        try:
            return await handler(event, data)
        finally:
            spans.append((event.from_user.id, start, loop.time()))

    race.dp.callback_query.outer_middleware(recorder)
    await press_together(race, (RACER_A, "mem:group:1:0"), (RACER_B, "mem:group:1:0"))
    (_, _a0, a1), (_, b0, _b1) = sorted(spans, key=lambda s: s[1])
    assert b0 < a1, "two admins' updates did not overlap: the race tests below would test nothing"
    spans.clear()
    await press_together(race, (RACER_A, "mem:group:1:0"), (RACER_A, "mem:group:1:0"))
    (_, _a0, a1), (_, b0, _b1) = sorted(spans, key=lambda s: s[1])
    assert b0 >= a1, "one person's two updates overlapped: the per-person isolation is gone"


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


# -- 5. names in HTML -------------------------------------------------------------------------------

LINK_NAME = '<a href="https://evil.example/">click</a>'
MENTION_NAME = '<a href="tg://user?id=1001">Admin</a>'
CLOSING_NAME = "Ира </b> Ко"


def as_telegram_shows(value: str) -> tuple[str | None, str]:
    """(the plain text Telegram shows, "") or (None, why Telegram refuses it):
    the fake Bot API's port of Telegram's HTML parser (only Telegram's tags,
    balanced, entities valid)."""
    from tests.fake_telegram import HtmlParseError, parse_html

    try:
        plain, entities = parse_html(value)
    except HtmlParseError as e:
        return None, str(e)
    links = [e.get("url") for e in entities if e["type"] == "text_link"]
    return plain, (f"links {links}" if links else "")


async def test_5_the_acknowledgement_deadline_summary_shows_names_as_text(app: Harness) -> None:
    a, _b = await school(app)
    code = await invite(app, ADMIN, a, "parent")
    for i, name in enumerate((LINK_NAME, MENTION_NAME, CLOSING_NAME)):
        await join(app, Person(2600 + i, f"P{i}"), code, name, f"Ребёнок {i} Тестов")
    await app.flush()
    for author in (TEACHER, ADMIN):
        await app.send(author, "/post")
        await app.press(author, "cmp:kind:announcement")
        await app.press(author, f"cmp:group:{a}")
        await app.press(author, "cmp:next:")
        await app.send(author, "Подпишите согласие")
        await app.press(author, "cmp:ack:")
        await app.press(author, "cmp:ack_days:")  # within a day
        await app.press(author, "cmp:preview:")
        await app.press(author, "cmp:send:")
    await app.flush()
    app.clear()
    await app.scheduler.run_due(datetime.now(MSK) + timedelta(days=1, minutes=5))
    sent = await app.flush()
    summaries = [c for c in only(sent, SendMessage) if c.chat_id in (TEACHER.id, ADMIN.id) and "⏰" in c.text]
    assert sorted(c.chat_id for c in summaries) == sorted([TEACHER.id, ADMIN.id]), texts(sent)
    for summary in summaries:
        plain, why = as_telegram_shows(summary.text)
        assert plain is not None, f"Telegram refuses the summary to {summary.chat_id} ({why}): {summary.text!r}"
        assert not why, f"the summary to {summary.chat_id} carries {why}: {summary.text!r}"
        for name in (LINK_NAME, MENTION_NAME, CLOSING_NAME):
            assert name in plain, f"the summary to {summary.chat_id} does not show {name!r}: it shows {plain!r}"


# -- 6. /link -----------------------------------------------------------------------------------


def chat_members(app: Harness, statuses: dict[int, str]) -> None:
    """getChatMember answers by user: the bot is an administrator; the people
    have the statuses given (anyone else: "member")."""

    def answer(session: Any, method: Any) -> dict[str, Any]:
        if method.user_id == BOT_USER.id:
            return bot_admin()
        status = statuses.get(method.user_id, "member")
        user = {"id": method.user_id, "is_bot": False, "first_name": "X"}
        if status == "administrator":
            return {**bot_admin(), "user": user}
        if status == "creator":
            return {"status": "creator", "user": user, "is_anonymous": False}
        return {"status": status, "user": user}

    app.session.defaults = {**app.session.defaults, "getChatMember": answer}  # type: ignore[misc]


async def test_6_a_teacher_who_is_only_a_member_of_the_chat_cannot_link_it(app: Harness) -> None:
    a, _b = await school(app)
    chat_members(app, {TEACHER.id: "member", ADMIN.id: "creator"})
    calls = await app.send_in_group(TEACHER, CHAT, "/link")
    offered = [c for c in only(calls, SendMessage) if "ch:link" in str(c.reply_markup)]
    press = await app.press_in_group(TEACHER, CHAT, f"ch:link:{a}")  # the button, or a forged one
    rows = [(r.group_id, r.linked_by_id) for r in await _linked(app)]
    assert rows == [], f"an ordinary member of the chat linked it to their class: {rows}"
    assert not only(calls + press, CreateChatInviteLink), "an invite link was made for the ordinary member"
    assert refused(press), f"the press was not refused: {texts(press)}"
    assert not offered or refused(press), f"offered the classes: {texts(calls)}"


async def test_6_the_chats_administrator_who_is_the_classes_teacher_links_it(app: Harness) -> None:
    """The same with the teacher an administrator of the chat: linked (passes today)."""
    a, _b = await school(app)
    chat_members(app, {TEACHER.id: "administrator"})
    calls = await app.send_in_group(TEACHER, CHAT, "/link")
    menu = only(calls, SendMessage)[-1]
    await app.press_in_group(TEACHER, CHAT, f"ch:link:{a}", message_id=app.session.message_ids[id(menu)])
    assert [r.group_id for r in await _linked(app)] == [a]


async def _linked(app: Harness) -> list[LinkedChat]:
    async with app.session_maker() as s:
        return list((await s.scalars(select(LinkedChat))).all())


async def test_6_a_chat_linked_by_one_organisation_cannot_be_taken_by_another(app: Harness) -> None:
    """Passes today: a chat is linked once, whatever the organisation."""
    from tests.test_organisations import add_second_org

    a, _b = await school(app)
    chat_members(app, {ADMIN.id: "creator", TEACHER.id: "administrator"})
    await linked_class_chat(app, a)
    second = await add_second_org(app)
    async with app.session_maker() as s:
        acting = await s.scalar(select(PersonRow.current_org_id).where(PersonRow.telegram_id == ADMIN.id))
    assert acting == second, "setup: the admin acts in the second organisation"
    calls = await app.send_in_group(ADMIN, CHAT, "/link")
    calls += await app.send_in_group(ADMIN, CHAT, "/unlink")
    for group in range(1, 12):  # forged presses for any group, of either organisation
        calls += await app.press_in_group(ADMIN, CHAT, f"ch:link:{group}")
    rows = [(r.org_id, r.group_id) for r in await _linked(app)]
    assert rows == [(1, a)], f"another organisation took or unlinked the chat: {rows}; it heard {texts(calls)}"
    assert not only(calls, CreateChatInviteLink)


# -- 7. an unverified teacher and organisation-wide events --------------------------------------------


async def unverified_teacher(app: Harness, group: int, who: Person = UNVERIFIED) -> list:
    code = await invite(app, ADMIN, group, "teacher")
    await to_english(app, who)
    await join(app, who, code, "Стажёр Непроверенный")
    sent = await app.flush()
    assert ("5А", "teacher", "unverified") in await memberships(app, who.id), await memberships(app, who.id)
    return sent


async def wide_event(app: Harness, title: str = "Общешкольный концерт") -> None:
    await app.send(ADMIN, "/post")
    await app.press(ADMIN, "cmp:kind:event")
    await app.press(ADMIN, "cmp:wide:org")
    await app.press(ADMIN, "cmp:next:")
    await app.send(ADMIN, title)
    await app.send(ADMIN, "15.01.2099 18:30")
    await app.send(ADMIN, "Актовый зал")
    await app.press(ADMIN, "cmp:preview:")
    calls = await app.press(ADMIN, "cmp:send:")
    assert any("Sent" in t or "Отправ" in t for t in texts(calls)), texts(calls)
    await app.flush()


async def test_7_an_unverified_teacher_does_not_see_organisation_wide_events(app: Harness) -> None:
    a, _b = await school(app)
    await wide_event(app)
    calls = await app.send(TEACHER, "/events")  # a verified teacher sees it (the control)
    assert any("Общешкольный концерт" in t for t in texts(calls)), texts(calls)
    await unverified_teacher(app, a)
    calls = await app.send(UNVERIFIED, "/events")
    shown = [t for t in texts(calls) if "Общешкольный концерт" in t]
    ics = [d for d in only(calls, SendDocument)]
    in_ics = [d for d in ics if "Общешкольный концерт" in _ics_text(d)]
    assert not shown and not in_ics, (
        f"an unverified teacher sees the organisation-wide event: messages {shown}, .ics files {len(in_ics)}")


def _ics_text(document: SendDocument) -> str:
    data = getattr(document.document, "data", b"")
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)


# -- 8. a block survives /forget and joining again ---------------------------------------------------


async def no_office_hours(app: Harness) -> None:
    from sqlalchemy import update

    from storage.models import Organisation

    async with app.session_maker.begin() as s:
        await s.execute(update(Organisation).values(office_hours=None))


async def write_to(app: Harness, who: Person, data: str, message: str) -> list:
    await app.send(who, "/write")
    calls = await app.press(who, data)
    if not refused(calls):
        calls += await app.send(who, message)
    return calls


async def test_8_a_blocked_sender_stays_blocked_after_forget_and_joining_again(app: Harness) -> None:
    a, _b = await school(app)
    await no_office_hours(app)
    teacher = await pid(app, TEACHER)
    await write_to(app, P1, f"w:to:{teacher}", "Грубое сообщение")
    [copy] = [c for c in only(await app.flush(), SendMessage) if c.chat_id == TEACHER.id]
    await app.press_on(TEACHER, copy, "rl:block")
    assert await count(app, Block) == 1
    await app.send(P1, "/forget")
    calls = await app.press(P1, "fg:yes")
    assert any("deleted" in t for t in texts(calls)), texts(calls)
    code = await invite(app, ADMIN, a, "parent")
    await join(app, P1, code, "Мария Иванова", "Петя Иванов")
    await app.flush()
    app.clear()
    calls = await write_to(app, P1, f"w:to:{teacher}", "Снова я")
    relayed = [c.text for c in only(await app.flush(), SendMessage) if c.chat_id == TEACHER.id]
    assert not relayed, f"the blocked sender reached the teacher again after /forget: {relayed}; they heard {texts(calls)}"
    assert await count(app, Block) >= 1, "the block is gone from the database"
    await to_english(app, ADMIN)
    calls = await app.press(ADMIN, "mem:blocks:0:0")
    assert any("Анна Смирнова blocked" in t for t in texts(calls)), f"the admins' list of blocks: {texts(calls)}"


# -- 9. limits on what reaches other people -----------------------------------------------------------


async def test_9_write_is_limited_per_sender_and_recipient_with_a_time_to_wait(app: Harness) -> None:
    await school(app)
    await no_office_hours(app)
    teacher = await pid(app, TEACHER)
    heard = []
    for i in range(15):
        heard += texts(await write_to(app, P1, f"w:to:{teacher}", f"Сообщение {i}"))
    relayed = [c for c in only(await app.flush(), SendMessage) if c.chat_id == TEACHER.id]
    assert len(relayed) <= 5, f"{len(relayed)} of 15 messages written within seconds reached the teacher"
    # The limit is per recipient: the administration can still be reached.
    calls = await write_to(app, P1, "w:admins:0", "Вопрос администрации")
    assert [c for c in only(await app.flush(), SendMessage) if c.chat_id == ADMIN.id], (
        f"after the limit to the teacher the administration cannot be reached either: {texts(calls)}")
    limit_answers = [t for t in heard if "✅" not in t and re.search(r"\d", t) and
                     not t.startswith(("Send your message", "Напишите"))]
    assert limit_answers, f"the sender was not told when they may write again: {sorted(set(heard))}"


async def ask_to_join(app: Harness, who: Person, role: str, group: int, name: str, child: str | None = None) -> list:
    calls = await app.send(who, "/start")
    start = [c for c in only(calls, SendMessage) if "ask:start" in str(c.reply_markup)]
    if not start:
        return calls
    calls += await app.press(who, button_data(start[0].reply_markup, "ask:start"))
    calls += await app.press(who, f"ask:role:{role}:0")
    calls += await app.press(who, f"ask:group::{group}")
    calls += await app.send(who, name)
    if child:
        calls += await app.send(who, child)
    calls += await app.press(who, "ask:confirm::0")
    return calls


async def test_9_one_pending_join_request_per_person_and_group(app: Harness) -> None:
    a, _b = await school(app)
    await to_english(app, NEWCOMER)
    for role, child in (("parent", "Дима Новиков"), ("student", None), ("teacher", None), ("specialist", None),
                        ("parent", "Маша Новикова"), ("parent", "Оля Новикова")):
        await ask_to_join(app, NEWCOMER, role, a, "Вера Новикова", child)
    sent = await app.flush()
    async with app.session_maker() as s:
        pending = (await s.scalars(select(JoinRequest.role).where(
            JoinRequest.group_id == a, JoinRequest.state == "pending"))).all()
    cards = [c.chat_id for c in only(sent, SendMessage) if "req:approve" in str(c.reply_markup)]
    assert len(pending) == 1, f"one person has {len(pending)} pending requests to one group: {sorted(pending)}"
    assert cards.count(ADMIN.id) <= 1, f"the admin got {cards.count(ADMIN.id)} cards from one person"


async def test_9_asking_again_right_after_a_rejection_is_refused(app: Harness) -> None:
    a, _b = await school(app)
    await to_english(app, NEWCOMER)
    await ask_to_join(app, NEWCOMER, "parent", a, "Вера Новикова", "Дима Новиков")
    async with app.session_maker() as s:
        request = (await s.scalars(select(JoinRequest))).one()
    await app.press(ADMIN, f"req:reject:{request.id}")
    await app.flush()
    app.clear()
    calls = await ask_to_join(app, NEWCOMER, "parent", a, "Вера Новикова", "Дима Новиков")
    sent = await app.flush()
    async with app.session_maker() as s:
        pending = await s.scalar(select(func.count()).select_from(JoinRequest).where(JoinRequest.state == "pending"))
    cards = [c.chat_id for c in only(sent, SendMessage) if "req:approve" in str(c.reply_markup)]
    assert pending == 0 and not cards, (
        f"asking again right after the rejection made {pending} new request(s) and {len(cards)} card(s); "
        f"the asker heard {texts(calls)[-2:]}")
    assert any(re.search(r"\d", t) for t in texts(calls)[-3:]), f"not told when they may ask again: {texts(calls)[-3:]}"


async def test_9_wrong_codes_are_counted_for_the_organisation_across_accounts(app: Harness) -> None:
    """Twenty accounts, four wrong codes each (under the five an account may try),
    all at the one organisation of the deployment: the next account is throttled
    too. The count per organisation assumed here is at most 80 in ten minutes."""
    await school(app)
    # (These accounts' Telegram is in English, so they now read "Too many" where they
    # read Russian before: the organisation's ceiling is reached before the 80th code.)
    throttled_at = None  # the organisation's count of wrong codes when the throttle began
    for n in range(20):
        who = Person(7000 + n, f"Бот {n}", "en")
        for k in range(4):
            calls = await app.send(who, f"/join ZZZZZZZZ{n % 10}{k}")
            refused = any("Too many" in t for t in texts(calls))
            if throttled_at is None and refused:
                throttled_at = 4 * n + k
                assert n > 0, f"account {n} throttled on its own at {k}"
            elif throttled_at is not None:
                assert refused, f"the throttle begun at code {throttled_at} lifted for account {n} at {k}"
    assert throttled_at is not None, "80 wrong codes from 20 accounts were never throttled"
    calls = await app.send(Person(7999, "Ещё один", "en"), "/join ZZZZZZZZZZ")
    assert any("Too many wrong codes" in t or "Слишком много" in t for t in texts(calls)), (
        f"after 80 wrong codes from 20 accounts a 21st is not throttled: {texts(calls)}")


# -- 10. menus and handlers agree --------------------------------------------------------------------


def last_menu(calls: list, who: Person) -> list[str]:
    menus = [m for m in only(calls, SetMyCommands) if m.scope.chat_id == who.id]
    assert menus, f"no menu was set for {who.first_name}"
    return [c.command for c in menus[-1].commands]


async def test_10_a_specialist_only_in_the_staff_room_sees_post_and_invite_only_if_they_work(app: Harness) -> None:
    await school(app)
    staff = await staff_room_id(app)
    code = await invite(app, ADMIN, staff, "specialist")
    await to_english(app, SPECIALIST)
    await join(app, SPECIALIST, code, "Лидия Логопедова")
    sent = await app.flush()
    card = [c for c in only(sent, SendMessage) if "ver:yes" in str(c.reply_markup)][0]
    await app.press_on(ADMIN, card, "ver:yes")
    menu = last_menu(await app.flush(), SPECIALIST)
    disagree = []
    if "post" in menu:
        calls = await app.send(SPECIALIST, "/post")
        if "cmp:kind" not in str([c.reply_markup for c in only(calls, SendMessage)]):
            disagree.append(f"/post in the menu, but it answers {texts(calls)}")
    if "invite" in menu:
        calls = await app.send(SPECIALIST, "/invite")
        if "inv:group" not in str([c.reply_markup for c in only(calls, SendMessage)]):
            disagree.append(f"/invite in the menu, but it answers {texts(calls)}")
    assert not disagree, f"the menu {menu} and the handlers disagree: {disagree}"


async def test_10_an_unverified_teachers_menu_and_groups_agree(app: Harness) -> None:
    a, _b = await school(app)
    menu = last_menu(await unverified_teacher(app, a), UNVERIFIED)
    calls = await app.send(UNVERIFIED, "/groups")
    lists_class = any("5А" in t for t in texts(calls))
    member_commands = {c for c in ("schedule", "write", "events") if c in menu}
    assert lists_class == bool(member_commands) and member_commands in (set(), {"schedule", "write", "events"}), (
        f"/groups {'lists' if lists_class else 'does not list'} the class ({texts(calls)}) while the menu is {menu}")
