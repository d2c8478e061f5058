"""SQLite's one writer, handed out by the process (storage.sqlite.OneWriter):
transactions that write at once take turns in order instead of meeting
"database is locked" and SQLite's sleeping busy handler; reads never wait."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from storage.db import create_engine, create_session_maker
from storage.sqlite import OneWriter


async def _engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/writer.sqlite3")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, who INTEGER)"))
    return engine


async def test_writers_take_turns_and_readers_go_on(tmp_path: Path) -> None:
    engine = await _engine(tmp_path)
    session_maker = create_session_maker(engine)
    writing: list[int] = []
    overlaps: list[tuple[int, int]] = []
    inside_sqlite: list[float] = []  # how long each INSERT took in SQLite, once it had the turn
    started: dict[int, float] = {}

    # Registered after OneWriter's: runs once the turn is taken.
    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def before(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.startswith("INSERT"):
            started[id(conn)] = time.monotonic()

    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def after(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.startswith("INSERT"):
            inside_sqlite.append(time.monotonic() - started.pop(id(conn)))

    async def writer(k: int) -> None:
        async with session_maker.begin() as session:
            await session.execute(text("SELECT count(*) FROM t"))  # reads first, as a handler does
            await session.execute(text("INSERT INTO t (who) VALUES (:k)"), {"k": k})
            if writing:
                overlaps.append((writing[0], k))
            writing.append(k)
            await asyncio.sleep(0.05)  # the turn is held to the commit
            writing.remove(k)

    try:
        # More writers at once than the pool has connections (5 + 10), each holding the turn 50 ms.
        await asyncio.gather(*(writer(k) for k in range(20)))
        assert overlaps == []
        # Nobody waited inside SQLite (its busy handler would hold an INSERT while
        # up to 14 others write: 0.7 s and more).
        assert len(inside_sqlite) == 20 and max(inside_sqlite) < 0.3, sorted(inside_sqlite)[-3:]
        async with session_maker() as session:
            assert await session.scalar(text("SELECT count(*) FROM t")) == 20

        # While one transaction holds the turn, another reads at once.
        async with session_maker.begin() as holder:
            await holder.execute(text("INSERT INTO t (who) VALUES (-1)"))
            async with session_maker() as reader:
                count = await asyncio.wait_for(reader.scalar(text("SELECT count(*) FROM t")), 1)
            assert count == 20  # the writer's row is not committed yet
    finally:
        await engine.dispose()


async def test_a_writer_that_never_gets_its_turn_fails_like_a_locked_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(OneWriter, "__init__", lambda self, timeout: (
        setattr(self, "timeout", 0.2), setattr(self, "lock", asyncio.Lock()))[0])
    engine = await _engine(tmp_path)
    session_maker = create_session_maker(engine)
    try:
        async with session_maker.begin() as holder:
            await holder.execute(text("INSERT INTO t (who) VALUES (1)"))
            with pytest.raises(OperationalError, match="database is locked"):
                async with session_maker.begin() as late:
                    await late.execute(text("INSERT INTO t (who) VALUES (2)"))
        # The turn came back with the holder's commit: the next writer goes on.
        async with session_maker.begin() as next_one:
            await next_one.execute(text("INSERT INTO t (who) VALUES (3)"))
        async with session_maker() as session:
            assert (await session.scalars(text("SELECT who FROM t ORDER BY id"))).all() == [1, 3]
    finally:
        await engine.dispose()
