"""Long polling (bot.app.poll): it fetches on while updates are handled, so a
slow update holds nobody up, and still confirms to Telegram only what was
handled, feeding each update once although Telegram sends the unconfirmed
ones again with every answer."""

from __future__ import annotations

import asyncio
from typing import Any

from aiogram.methods import GetUpdates
from aiogram.types import Update

from bot.app import PeekUpdates, poll


def raw_update(update_id: int, user: int) -> dict[str, Any]:
    return {"update_id": update_id, "message": {
        "message_id": update_id, "date": 0, "chat": {"id": user, "type": "private"},
        "from": {"id": user, "is_bot": False, "first_name": "P"}, "text": f"text {update_id}",
    }}


class Telegram:
    """getUpdates as Telegram answers it: everything from `offset` on (at most
    100), below it forgotten for good; a long poll waits for a new update."""

    def __init__(self) -> None:
        self.pending: list[dict[str, Any]] = []
        self.offsets: list[int | None] = []
        self.new = asyncio.Event()

    def add(self, update_id: int, user: int) -> None:
        self.pending.append(raw_update(update_id, user))
        self.new.set()

    async def __call__(self, method: Any) -> Any:
        assert isinstance(method, GetUpdates)
        self.offsets.append(method.offset)
        if method.offset is not None:
            self.pending = [u for u in self.pending if u["update_id"] >= method.offset]
        if not self.pending and method.timeout:
            self.new.clear()
            try:
                await asyncio.wait_for(self.new.wait(), method.timeout)
            except TimeoutError:
                pass
        batch = self.pending[:100]
        return batch if isinstance(method, PeekUpdates) else [Update.model_validate(u) for u in batch]


class Dispatcher:
    """Feeds updates to handlers a test holds back: update `n` runs until `release[n]` is set."""

    def __init__(self, held: set[int]) -> None:
        self.fed: list[int] = []
        self.done: list[int] = []
        self.release = {n: asyncio.Event() for n in held}

    def resolve_used_update_types(self) -> list[str]:
        return ["message"]

    async def feed_update(self, bot: Any, update: Update) -> None:
        self.fed.append(update.update_id)
        if update.update_id in self.release:
            await self.release[update.update_id].wait()
        self.done.append(update.update_id)


async def until(predicate: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_a_slow_update_holds_nobody_up_and_is_confirmed_only_once_handled() -> None:
    tg, dp, stop = Telegram(), Dispatcher(held={1}), asyncio.Event()
    tg.add(1, user=10)  # slow: handled until the test releases it
    tg.add(2, user=20)
    runner = asyncio.create_task(poll(dp, tg, timeout=1, stop=stop, settle=0.01))  # type: ignore[arg-type]
    await until(lambda: dp.done == [2])
    tg.add(3, user=30)  # arrives while 1 is still being handled
    await until(lambda: dp.done == [2, 3])
    await asyncio.sleep(0.1)
    # Fetched again and again meanwhile, and never confirmed past the update in flight.
    assert len(tg.offsets) > 3
    assert all(offset is None or offset <= 1 for offset in tg.offsets)
    assert [u["update_id"] for u in tg.pending] == [1, 2, 3]
    dp.release[1].set()
    await until(lambda: tg.offsets[-1] == 4)  # everything handled: confirmed
    tg.add(4, user=10)
    await until(lambda: dp.done == [2, 3, 1, 4])
    stop.set()
    await asyncio.wait_for(runner, 5)
    # Each update fed once, although Telegram sent 1, 2 and 3 again with every answer.
    assert sorted(dp.fed) == [1, 2, 3, 4] and len(dp.fed) == 4


async def test_stopping_lets_the_updates_in_flight_finish_and_confirms_none_of_them_early() -> None:
    tg, dp, stop = Telegram(), Dispatcher(held={1, 2}), asyncio.Event()
    tg.add(1, user=10)
    tg.add(2, user=20)
    tg.add(3, user=30)
    runner = asyncio.create_task(poll(dp, tg, timeout=1, stop=stop, settle=0.01))  # type: ignore[arg-type]
    await until(lambda: dp.done == [3])
    stop.set()
    await asyncio.sleep(0.05)
    assert not runner.done()  # waits for 1 and 2 to finish
    dp.release[2].set()
    dp.release[1].set()
    await asyncio.wait_for(runner, 5)
    assert sorted(dp.done) == [1, 2, 3] and len(dp.fed) == 3
    # Nothing was confirmed past 1 while it ran: after a crash all three come back
    # (and the update ids recorded in their transactions make them no-ops).
    assert all(offset is None or offset <= 1 for offset in tg.offsets)


async def test_two_deliveries_of_one_update_at_once_apply_it_once(tmp_path: Any) -> None:
    """The update's id is recorded at the end of its transaction (on SQLite the
    turn to write is then taken late): a delivery that finds it taken by one
    that committed meanwhile rolls back everything it did and says nothing."""
    from aiogram.methods import SendMessage
    from sqlalchemy import func, select

    from bot.middlewares import UnitOfWork
    from storage.db import create_engine, create_session_maker
    from storage.models import Base, ProcessedUpdate
    from tests.harness import make_bot

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/once.sqlite3")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    session_maker = create_session_maker(engine)
    bot = make_bot()
    update = Update.model_validate(raw_update(7, user=10))

    async def handler(event: Any, data: dict[str, Any]) -> str:
        data["repo"].session.add(ProcessedUpdate(update_id=1000))  # what this delivery changes
        await bot(SendMessage(chat_id=10, text="Done"))  # collected, for after the commit
        async with session_maker.begin() as other:  # meanwhile the other delivery commits
            other.add(ProcessedUpdate(update_id=7))
        return "handled"

    try:
        assert await UnitOfWork(session_maker, None, once=True)(handler, update, {"bot": bot}) is None
        assert bot.session.requests == []  # type: ignore[attr-defined]
        async with session_maker() as s:
            assert (await s.scalars(select(ProcessedUpdate.update_id))).all() == [7]
        # Delivered once more later: skipped before the handler runs.
        ran: list[int] = []

        async def counting(event: Any, data: dict[str, Any]) -> None:
            ran.append(event.update_id)

        assert await UnitOfWork(session_maker, None, once=True)(counting, update, {"bot": bot}) is None
        assert ran == []
        async with session_maker() as s:
            assert await s.scalar(select(func.count()).select_from(ProcessedUpdate)) == 1
    finally:
        await engine.dispose()


async def test_with_a_full_window_behind_a_slow_update_it_waits_for_that_one() -> None:
    """Telegram answers with at most 100 updates from the offset: when they are
    all in flight or handled, asking again cannot show anything new."""
    tg, dp, stop = Telegram(), Dispatcher(held={1}), asyncio.Event()
    for n in range(1, 151):
        tg.add(n, user=n)
    runner = asyncio.create_task(poll(dp, tg, timeout=1, stop=stop, settle=0.01))  # type: ignore[arg-type]
    await until(lambda: len(dp.done) == 99)  # 2…100
    await asyncio.sleep(0.3)
    assert len(tg.offsets) <= 3  # not one fetch per 10 ms of the 300
    dp.release[1].set()
    await until(lambda: len(dp.done) == 150)
    stop.set()
    await asyncio.wait_for(runner, 5)
    assert sorted(dp.fed) == list(range(1, 151))


async def test_no_more_than_so_many_updates_are_in_their_transactions_at_once(tmp_path: Any) -> None:
    """Past TRANSACTIONS_AT_ONCE, an update waits for a slot before its
    transaction begins (a burst does not crowd the database's threads and the
    loop); each slot is given back when its transaction ends, also by a failure."""
    from bot.middlewares import TRANSACTIONS_AT_ONCE, UnitOfWork
    from storage.db import create_engine, create_session_maker
    from tests.harness import make_bot

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/slots.sqlite3")
    unit = UnitOfWork(create_session_maker(engine), None)
    bot = make_bot()
    inside: list[int] = []
    release = asyncio.Event()

    async def handler(event: Any, data: dict[str, Any]) -> None:
        inside.append(event.update_id)
        await release.wait()
        if event.update_id == 0:
            raise RuntimeError("a failing update")

    n = TRANSACTIONS_AT_ONCE + 3
    tasks = [asyncio.create_task(unit(handler, Update.model_validate(raw_update(i, user=100 + i)), {"bot": bot}))
             for i in range(n)]
    try:
        for _ in range(50):
            await asyncio.sleep(0.01)
        assert len(inside) == TRANSACTIONS_AT_ONCE
        release.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert sorted(inside) == list(range(n))
        assert [type(r) for r in results].count(RuntimeError) == 1
        assert unit.slots._value == TRANSACTIONS_AT_ONCE  # every slot given back
    finally:
        await engine.dispose()
