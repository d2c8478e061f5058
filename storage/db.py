"""Engine and session factory. The only place that knows about dialects."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool
from sqlalchemy.util import await_


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        in_memory = database in ("", ":memory:")
        if not in_memory:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url,
            echo=echo,
            # One shared connection for an in-memory database, or each session
            # would see an empty database of its own.
            poolclass=StaticPool if in_memory else None,
            connect_args={"timeout": WRITER_TIMEOUT},
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        if not in_memory:
            OneWriter(WRITER_TIMEOUT).install(engine)
        return engine
    return create_async_engine(url, echo=echo, pool_pre_ping=True)


WRITER_TIMEOUT = 30.0  # seconds a transaction waits to write, as SQLite's own busy timeout


class OneWriter:
    """SQLite has one writer; this process hands the turn out itself.

    Left to SQLite, transactions that write at once meet "database is locked"
    and its busy handler, which sleeps and tries again (up to 100 ms a try):
    the lock passes with gaps, and a burst of a hundred updates queues for
    seconds. Here a transaction takes an asyncio lock right before its first
    write (an INSERT, UPDATE, DELETE — where the driver begins SQLite's
    transaction) and gives it back when its connection returns to the pool,
    after the commit or rollback. Waiters are served in order, each the moment
    the last one is done; reads never wait (WAL), and everything a transaction
    reads before it writes overlaps with the writer of the moment. SQLite's
    busy handler stays for other processes (a backup, a migration)."""

    KEY = "parta_writer"

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.lock = asyncio.Lock()

    def install(self, engine: AsyncEngine) -> None:
        event.listen(engine.sync_engine, "before_cursor_execute", self._before_execute)
        event.listen(engine.sync_engine.pool, "checkin", self._release)
        event.listen(engine.sync_engine.pool, "invalidate", self._release_invalidated)

    async def _acquire(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await self.lock.acquire()
        except TimeoutError:
            raise OperationalError("waiting to write", None,
                                   Exception(f"database is locked (no turn to write in {self.timeout:.0f} s)")) from None

    def _before_execute(self, conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        info = conn.info  # the pooled connection's own: it outlives this checkout
        if info.get(self.KEY) or statement.lstrip()[:6].upper() in ("SELECT", "PRAGMA"):
            return
        await_(self._acquire())  # inside SQLAlchemy's greenlet: the driver awaits the same way
        info[self.KEY] = True

    def _release(self, dbapi_connection, record) -> None:  # type: ignore[no-untyped-def]
        if record is not None and record.info.pop(self.KEY, False):
            self.lock.release()

    def _release_invalidated(self, dbapi_connection, record, exception) -> None:  # type: ignore[no-untyped-def]
        self._release(dbapi_connection, record)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_session_maker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=True)
