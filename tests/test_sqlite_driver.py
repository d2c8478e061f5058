"""The SQLite driver connection (storage.sqlite): one round trip to its thread
a statement; a writing transaction on the event loop from its first write to
its commit; nothing that may wait on another process or on the disk done on
the loop; retention's batches kept in the thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select, text

from bot.retention import Retention
from storage import sqlite
from storage.db import create_engine, create_session_maker
from storage.models import Base, Person


@pytest.fixture
async def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/driver.sqlite3")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER)"))
    yield engine
    await engine.dispose()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each call made in the connection's thread, by name."""
    seen: list[str] = []
    real = sqlite.Connection._in_thread

    async def counted(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(getattr(fn, "__name__", repr(fn)))
        return await real(self, fn, *args, **kwargs)

    monkeypatch.setattr(sqlite.Connection, "_in_thread", counted)
    return seen


async def test_a_statement_is_one_round_trip_and_a_long_result_comes_in_bounded_steps(
    engine, trips: list[str]  # type: ignore[no-untyped-def]
) -> None:
    session_maker = create_session_maker(engine)
    async with session_maker.begin() as s:
        await s.execute(text("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000) "
                             "INSERT INTO t (n) SELECT x FROM c"))
    async with session_maker() as s:
        trips.clear()
        assert (await s.execute(text("SELECT n FROM t WHERE n <= 3 ORDER BY n"))).scalars().all() == [1, 2, 3]
        assert len(trips) == 1, trips  # aiosqlite's own: a cursor, the statement, its rows, closing it
        trips.clear()
        assert len((await s.execute(text("SELECT n FROM t"))).all()) == 3000
        assert len(trips) == 2, trips  # the statement with its first PREFETCH rows, then the rest
    # A stream holds no more rows at once than it asks for (SQLAlchemy asks up to 1,000), never the whole result.
    buffered: list[int] = []
    real_refill = sqlite.Cursor._refill

    async def watched(self, n: int) -> None:  # type: ignore[no-untyped-def]
        await real_refill(self, n)
        buffered.append(len(self._rows))

    async with engine.connect() as conn:
        sqlite.Cursor._refill = watched  # type: ignore[method-assign]
        try:
            result = await conn.stream(text("SELECT n FROM t ORDER BY n"))
            got = [row.n async for row in result]
        finally:
            sqlite.Cursor._refill = real_refill  # type: ignore[method-assign]
    assert got == list(range(1, 3001))
    assert len(buffered) > 2 and max(buffered) <= 1000


async def test_a_writing_transaction_runs_on_the_loop_from_its_first_write_to_its_commit(
    engine, trips: list[str]  # type: ignore[no-untyped-def]
) -> None:
    session_maker = create_session_maker(engine)
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    running = asyncio.create_task(ticker())
    try:
        async with session_maker() as s:
            async with s.begin():
                await s.execute(text("SELECT count(*) FROM t"))  # a read: in the thread, the loop goes on
                assert trips and ticks > 0
                trips.clear()
                await s.execute(text("INSERT INTO t (n) VALUES (1)"))
                before = ticks
                for n in range(2, 12):
                    await s.execute(text("INSERT INTO t (n) VALUES (:n)"), {"n": n})
                assert (await s.execute(text("SELECT count(*) FROM t"))).scalar() == 11
            # Committed, and nothing of it went round the loop: no other task ran meanwhile.
            assert trips == [] and ticks == before
    finally:
        stop.set()
        await running
    async with session_maker() as s:
        assert await s.scalar(text("SELECT count(*) FROM t")) == 11


async def test_another_process_holding_the_write_lock_makes_the_first_write_wait_in_the_thread(
    engine, tmp_path: Path, trips: list[str]  # type: ignore[no-untyped-def]
) -> None:
    session_maker = create_session_maker(engine)
    other = sqlite3.connect(f"{tmp_path}/driver.sqlite3", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # SQLite's write lock, held by someone else (a shell, a script)
    other.execute("INSERT INTO t (n) VALUES (-1)")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        for _ in range(40):
            ticks += 1
            await asyncio.sleep(0.01)

    async def write() -> None:
        async with session_maker.begin() as s:
            await s.execute(text("INSERT INTO t (n) VALUES (1)"))

    writing = asyncio.create_task(write())
    loop_alive = asyncio.create_task(ticker())
    await asyncio.sleep(0.3)
    assert not writing.done()  # it waits for the lock…
    assert ticks >= 10  # …and the loop goes on meanwhile
    other.execute("COMMIT")
    await asyncio.wait_for(writing, 5)
    await loop_alive
    other.close()
    assert "_run" in trips  # the first write, tried on the loop without waiting, went to the thread to wait
    async with session_maker() as s:
        assert sorted((await s.execute(text("SELECT n FROM t"))).scalars()) == [-1, 1]
        # The connection's own busy timeout is back for what follows.
        raw = (await (await s.connection()).get_raw_connection()).driver_connection
        assert raw._conn.execute("PRAGMA busy_timeout").fetchone()[0] == int(sqlite.WRITER_TIMEOUT * 1000)


async def test_commits_do_not_checkpoint_a_thread_does_every_so_many_writes(
    engine, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setattr(sqlite.Checkpoints, "EVERY", 5)
    where: list[str] = []
    real = sqlite.Checkpoints.checkpoint

    def checkpoint(self) -> None:  # type: ignore[no-untyped-def]
        where.append(threading.current_thread().name)
        real(self)

    monkeypatch.setattr(sqlite.Checkpoints, "checkpoint", checkpoint)
    session_maker = create_session_maker(engine)
    async with session_maker() as s:
        assert await s.scalar(text("PRAGMA wal_autocheckpoint")) == 0
    for n in range(12):
        async with session_maker.begin() as s:
            await s.execute(text("INSERT INTO t (n) VALUES (:n)"), {"n": n})
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    assert len(where) == 2, where  # after the 5th and the 10th write
    assert all(name != threading.current_thread().name for name in where)


async def test_retention_batches_stay_in_the_thread(tmp_path: Path, trips: list[str]) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/retention.sqlite3")
    writes_on_loop: list[str] = []

    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def after(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        driver = conn.connection.dbapi_connection._connection
        if driver.inline:
            writes_on_loop.append(statement.split()[0])

    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        session_maker = create_session_maker(engine)
        async with session_maker.begin() as s:  # an ordinary writer: on the loop after its first write
            s.add(Person(telegram_id=1, telegram_name="x"))
            await s.flush()
            await s.execute(select(Person))
        assert writes_on_loop
        writes_on_loop.clear()
        trips.clear()
        await Retention(session_maker, keep_copies=timedelta(days=90)).run()
        assert writes_on_loop == [] and trips
    finally:
        await engine.dispose()


async def test_the_days_first_update_reads_before_it_writes(app: Any, session_maker: Any) -> None:  # type: ignore[no-untyped-def]
    """The daily "last seen" write is made after the handler: on SQLite the
    writer's turn is then taken at the end, not for the whole update."""
    from datetime import datetime

    from storage.models import utcnow
    from tests.conftest import ADMIN
    from tests.flows import setup_org

    await setup_org(app)
    async with session_maker.begin() as s:
        admin = await s.scalar(select(Person).where(Person.telegram_id == ADMIN.id))
        admin.last_seen_at = utcnow() - timedelta(days=1)
    engine = session_maker.kw["bind"].sync_engine
    statements: list[str] = []
    listener = lambda c, cu, st, p, ctx, em: statements.append(st.split()[0].upper())  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        await app.send(ADMIN, "/start")
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    writes = [i for i, st in enumerate(statements) if st in ("INSERT", "UPDATE", "DELETE")]
    assert writes and statements[writes[0]:] == ["UPDATE"] * len(writes), statements
    async with session_maker() as s:
        seen = await s.scalar(select(Person.last_seen_at).where(Person.telegram_id == ADMIN.id))
    assert isinstance(seen, datetime) and seen.date() == utcnow().date()
