"""One way out (issue 11): nothing is said while a transaction is open; a
rolled-back update says only its apology; dialogs restart cleanly."""

from __future__ import annotations

import pytest
from aiogram.methods import AnswerCallbackQuery, SendMessage
from sqlalchemy import func, select

from bot.fsm import after_commit
from bot.replies import TelegramInTransaction
from storage.models import FsmState
from tests.conftest import ADMIN
from tests.flows import create_group, invite, setup_org
from tests.harness import Harness, Person, only, texts

PARENT = Person(5101, "Мария", "en")


async def test_no_bot_api_call_while_a_transaction_is_open(app: Harness) -> None:
    """The mocked session records, for every call, whether an update's
    transaction was still open: it never is."""
    seen: list[tuple[str, bool]] = []
    inner = app.session.make_request

    async def spy(bot, method, timeout=None):  # type: ignore[no-untyped-def]
        commit = after_commit.get()
        seen.append((method.__api_method__, commit is not None and commit.open))
        return await inner(bot, method, timeout)

    app.session.make_request = spy  # type: ignore[method-assign]
    await setup_org(app)
    group = await create_group(app, "5А")
    code = await invite(app, ADMIN, group, "parent")
    await app.send(PARENT, f"/start {code}")
    await app.send(PARENT, "Мария Иванова")
    await app.send(PARENT, "Пётр Иванов")
    await app.send(ADMIN, "/help")
    await app.flush()
    assert seen, "no calls were made"
    assert [m for m, open_ in seen if open_] == []


async def test_a_rolled_back_update_sends_only_the_apology(
    app: Harness, settings, session_maker, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    import handlers.common as common
    from bot.app import create_dispatcher
    from bot.fsm import DatabaseStorage
    from tests.harness import BOT_USER

    await setup_org(app)

    async def answers_then_fails(message, actor):  # type: ignore[no-untyped-def]
        await message.answer("Done! Everything is saved.")
        actor.person.full_name = "Changed Name"
        raise RuntimeError("a bug after the answer")

    # A dispatcher whose /help answers, writes, then fails.
    monkeypatch.setattr(common, "help_command", answers_then_fails)
    failing = Harness(
        dp=create_dispatcher(settings, session_maker, outbox=None, bot_username=BOT_USER.username or "",
                             storage=DatabaseStorage(session_maker)),
        bot=app.bot, outbox=app.outbox, session_maker=session_maker,
    )
    failing._update_ids = app._update_ids
    calls = await failing.send(ADMIN, "/help")
    said = texts(calls)
    assert "Done! Everything is saved." not in said
    assert len(said) == 1 and ("Sorry" in said[0] or "Извините" in said[0]), said
    async with app.session_maker() as s:
        from storage.models import Person as Row
        names = (await s.scalars(select(Row.full_name))).all()
    assert "Changed Name" not in names  # the write rolled back with the answer


async def test_a_call_that_returns_data_is_refused_inside_a_transaction(app: Harness) -> None:
    """Asking Telegram for data mid-transaction is a bug the code cannot make quietly."""
    from aiogram.methods import GetChatMember

    from bot.fsm import AfterCommit
    from bot.replies import Collect

    Collect.install(app.bot)
    commit = AfterCommit()
    token = after_commit.set(commit)
    try:
        with pytest.raises(TelegramInTransaction):
            await app.bot(GetChatMember(chat_id=-1, user_id=1))
        assert await app.bot(SendMessage(chat_id=1, text="later")) is None
        assert [m.__api_method__ for m in commit.replies] == ["sendMessage"]
    finally:
        after_commit.reset(token)


async def test_the_invitation_link_twice_and_post_inside_post_start_fresh(app: Harness) -> None:
    await setup_org(app)
    group = await create_group(app, "5А")
    code = await invite(app, ADMIN, group, "parent")
    for _ in range(3):
        calls = await app.send(PARENT, f"/start {code}")
        assert not any("Sorry" in t for t in texts(calls)), texts(calls)
        assert "5А" in texts(calls)[-1]
    calls = await app.send(PARENT, "Мария Иванова")
    assert not any("Sorry" in t for t in texts(calls)), texts(calls)
    for _ in range(3):
        calls = await app.send(ADMIN, "/post")
        assert not any("Sorry" in t or "Извините" in t for t in texts(calls)), texts(calls)
    calls = await app.send(ADMIN, f"/join {code}")  # /join in the middle of /post
    assert not any("Sorry" in t or "Извините" in t for t in texts(calls)), texts(calls)
    async with app.session_maker() as s:
        assert await s.scalar(select(func.count()).select_from(FsmState)) >= 1
    calls = await app.send(ADMIN, "/cancel")
    assert only(calls, SendMessage)
    assert not only(calls, AnswerCallbackQuery)


async def test_counts_are_of_chats_not_of_messages(app: Harness) -> None:
    """Issue 11, point 5: "withdrawn from 3 chats" for 2 chats — a family reminded
    to acknowledge has two copies, and is one chat."""
    from tests.flows import to_english
    from tests.test_oversight import post_with_ack
    from tests.test_posting import P2, TEACHER, school

    a, _b = await school(app)
    post = await post_with_ack(app, a)  # two parents, one has acknowledged
    await app.press(TEACHER, f"pc:renotify:{post}")  # the other gets a second copy
    await app.flush()
    async with app.session_maker() as s:
        from storage.models import Delivery
        copies = (await s.scalars(select(Delivery.chat_id).where(
            Delivery.post_id == post, Delivery.topic.in_(["post", "post_renotify"])))).all()
    assert len(copies) == 3 and len(set(copies)) == 2 and P2.id in copies
    await to_english(app, TEACHER)
    await app.press(TEACHER, f"pc:withdraw:{post}")
    calls = await app.press(TEACHER, f"pc:withdraw_yes:{post}")
    assert "Withdrawn from 2 chats." in texts(calls), texts(calls)


async def test_a_continuations_own_unit_of_work_wakes_the_sender_for_what_it_wrote(session_maker) -> None:  # type: ignore[no-untyped-def]
    """A step after the commit (the class list downloaded, a chat linked) that
    writes deliveries for other people: they go now, not at the sender's next look."""
    from bot.outbox import enqueue
    from bot.replies import Collect, unit_of_work
    from tests.harness import make_bot

    class Sender:
        woken = 0

        def wake(self) -> None:
            self.woken += 1

    bot, sender = make_bot(), Sender()
    Collect.install(bot, sender)  # type: ignore[arg-type]
    async with unit_of_work(session_maker, bot):
        pass
    assert sender.woken == 0  # nothing written, nobody woken
    async with unit_of_work(session_maker, bot) as repo:
        enqueue(repo, 77, SendMessage(chat_id=77, text="The list is imported."), org_id=None)
        assert sender.woken == 0  # not while the transaction is open
    assert sender.woken == 1
