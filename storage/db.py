"""Engine and session factory. The only place that knows about dialects."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        in_memory = database in ("", ":memory:")
        if not in_memory:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # SQLite has one writer. With several connections, transactions that write
        # at once meet "database is locked" and SQLite's busy handler, which sleeps
        # and polls (up to 100 ms a try), so the lock passes with gaps and a burst
        # of updates queues for seconds. One connection instead: transactions take
        # their turn in the pool's queue, first come first served, and the next one
        # starts the moment the last commits. (An in-memory database is one shared
        # connection anyway, or each session would see an empty database of its own.)
        pool = {"poolclass": StaticPool} if in_memory else {"pool_size": 1, "max_overflow": 0, "pool_timeout": 60}
        engine = create_async_engine(
            url,
            echo=echo,
            connect_args={"timeout": 30},
            **pool,  # type: ignore[arg-type]
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, echo=echo, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_session_maker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=True)
