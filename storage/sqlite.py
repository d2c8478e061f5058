"""SQLite under asyncio: aiosqlite's connection, made cheap per statement, and
the one writer's turn, handed out by this process.

aiosqlite runs each call on the connection's own thread: a statement through
SQLAlchemy was four round trips there (making a cursor, the statement, its
rows, closing the cursor), each waiting for the event loop to come round —
behind every other update in flight, and for the GIL. Under a burst of a
hundred presses that was most of what an update cost, and, worse, a writing
transaction held SQLite's one writer through all of them: 10–60 ms a press,
so no more than seventy presses a second could write.

Here (SQLAlchemy's `async_creator_fn` gives it our connection):

- a statement is one round trip: the cursor is made on the loop (it touches
  no file), the statement runs and its first rows are fetched in one call to
  the thread, and closing it is local;
- a transaction that writes runs on the loop itself, without yielding, from
  its first write to its commit (`Connection.inline`, set by OneWriter once it
  has the writer's turn): SQLite's write lock is then this process's to give,
  and each statement takes microseconds. Two things could still make SQLite
  wait, and neither may stop the loop: another process holding the write lock
  (the first write tries without waiting, and if it must wait, waits in the
  thread), and writing the log back to the database file (checkpoints are
  taken off the commits and done in a thread of their own, `Checkpoints`).
  Reads outside a writing transaction, however long, go through the thread,
  and so does a transaction that asks to (`OFF_LOOP`: retention's batches,
  which delete thousands of rows at a time).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import deque
from functools import partial
from typing import Any

import aiosqlite
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_

log = logging.getLogger("parta.sqlite")

# An execution option (Session.connection(execution_options=…)): this transaction
# writes a great deal at once (retention's batches) and stays in the thread.
OFF_LOOP = "parta_off_loop"
WRITER_TIMEOUT = 30.0  # seconds a transaction waits to write, as SQLite's own busy timeout
PREFETCH = 500  # rows fetched with the statement: most results in one round trip, a stream in bounded steps


class Connection(aiosqlite.Connection):
    """aiosqlite's connection with one round trip a statement (`Cursor`), whose
    calls run on the loop itself while `inline` is set."""

    inline = False
    first_write = False  # the next statement is the transaction's first write: it must not wait on the loop

    async def _execute(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.inline and self._running and self._connection is not None:
            return fn(*args, **kwargs)
        return await self._in_thread(fn, *args, **kwargs)

    _in_thread = aiosqlite.Connection._execute

    def cursor(self) -> _Opening:  # type: ignore[override]
        return _Opening(Cursor(self, self._conn.cursor()))

    def write_inline(self) -> None:
        self.inline = self.first_write = True

    def done_writing(self) -> None:
        self.inline = self.first_write = False


class _Opening:
    """What `Connection.cursor()` gives SQLAlchemy: awaited or entered, the cursor."""

    def __init__(self, cursor: Cursor) -> None:
        self.cursor = cursor

    def __await__(self):  # type: ignore[no-untyped-def]
        async def opened() -> Cursor:
            return self.cursor
        return opened().__await__()

    async def __aenter__(self) -> Cursor:
        return self.cursor

    async def __aexit__(self, *exc: object) -> None:
        await self.cursor.close()


class Cursor(aiosqlite.Cursor):
    """The statement and its first PREFETCH rows in one call; the rest, if
    any, all at once when all are asked for, else as many as are asked (a
    stream holds no more than its step)."""

    def __init__(self, conn: Connection, cursor: sqlite3.Cursor) -> None:
        super().__init__(conn, cursor)
        self._rows: deque[Any] = deque()
        self._more = False

    def _run(self, sql: str, parameters: Any) -> tuple[list[Any], bool]:
        self._cursor.execute(sql, parameters)
        if self._cursor.description is None:
            return [], False
        rows = self._cursor.fetchmany(PREFETCH)
        return rows, len(rows) == PREFETCH

    async def execute(self, sql: str, parameters: Any = None) -> Cursor:  # type: ignore[override]
        parameters = [] if parameters is None else parameters
        rows, self._more = await self._call(self._run, sql, parameters)
        self._rows = deque(rows)
        return self

    async def executemany(self, sql: str, parameters: Any) -> Cursor:  # type: ignore[override]
        self._rows, self._more = deque(), False
        await self._call(self._cursor.executemany, sql, parameters)
        return self

    async def _call(self, fn, *args):  # type: ignore[no-untyped-def]
        conn: Connection = self._conn  # type: ignore[assignment]
        if not conn.first_write:
            return await self._execute(fn, *args)
        # The transaction's first write: on the loop if SQLite's write lock is
        # free at once — it is, unless another process holds it; else in the
        # thread, waiting as SQLite's busy handler lets it (the timeout).
        conn.first_write = False
        raw = conn._conn
        raw.execute("PRAGMA busy_timeout = 0")
        try:
            return fn(*args)
        except sqlite3.OperationalError as e:
            if getattr(e, "sqlite_errorcode", 0) & 0xFF != sqlite3.SQLITE_BUSY:
                raise
        finally:
            raw.execute(f"PRAGMA busy_timeout = {int(WRITER_TIMEOUT * 1000)}")
        return await conn._in_thread(fn, *args)

    async def _refill(self, n: int) -> None:
        rows = await self._execute(self._cursor.fetchmany, n)
        self._more = len(rows) == n
        self._rows.extend(rows)

    async def fetchone(self) -> Any:
        if not self._rows and self._more:
            await self._refill(PREFETCH)
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        size = self.arraysize if size is None else size
        if len(self._rows) < size and self._more:
            await self._refill(size - len(self._rows))
        return [self._rows.popleft() for _ in range(min(size, len(self._rows)))]

    async def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        if self._more:
            rows.extend(await self._execute(self._cursor.fetchall))
            self._more = False
        return rows

    async def close(self) -> None:
        self._rows.clear()
        self._more = False
        self._cursor.close()  # local: it only lets go of the statement


def connect(database: str, **kwargs: Any) -> Connection:
    """aiosqlite.connect, with our connection (SQLAlchemy's `async_creator_fn`)."""
    connection = Connection(partial(sqlite3.connect, database, **kwargs), 64)
    connection._thread.daemon = True  # as SQLAlchemy does for aiosqlite's own
    return connection


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
    busy handler stays for other processes (a backup, a migration). With the
    turn, the transaction runs on the loop (`Connection.inline`): it is held
    for as long as the writing takes, not for the loop to come round."""

    KEY = "parta_writer"

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.lock = asyncio.Lock()
        self.checkpoints: Checkpoints | None = None

    def install(self, engine: AsyncEngine) -> None:
        self.checkpoints = Checkpoints(engine.sync_engine.url.database or "")
        event.listen(engine.sync_engine, "connect", self.checkpoints.off_commits)
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
        driver = _driver(conn.connection.dbapi_connection)
        if driver is not None and not conn.get_execution_options().get(OFF_LOOP):
            driver.write_inline()

    def _release(self, dbapi_connection, record) -> None:  # type: ignore[no-untyped-def]
        driver = _driver(dbapi_connection)
        if driver is not None:
            driver.done_writing()
        if record is not None and record.info.pop(self.KEY, False):
            self.lock.release()
            if self.checkpoints is not None:
                self.checkpoints.written()

    def _release_invalidated(self, dbapi_connection, record, exception) -> None:  # type: ignore[no-untyped-def]
        self._release(dbapi_connection, record)


def _driver(dbapi_connection: Any) -> Connection | None:
    driver = getattr(dbapi_connection, "_connection", None)
    return driver if isinstance(driver, Connection) else None


class Checkpoints:
    """SQLite appends what commits to its log (WAL) and, every thousand pages,
    the commit that crosses the mark writes the log back into the database
    file and syncs it to disk: milliseconds on a fast disk, far more on a slow
    card — on the loop, since commits run there. So the pool's connections do
    not checkpoint; every EVERY write transactions one PASSIVE checkpoint runs
    in a thread of its own, on a connection of its own, never waiting for
    readers or the writer (what it cannot copy yet, the next one does). When
    the last connection closes, SQLite checkpoints on its own."""

    EVERY = 200

    def __init__(self, database: str) -> None:
        self.database = database
        self.count = 0
        self.running: asyncio.Task[None] | None = None

    def off_commits(self, dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA wal_autocheckpoint = 0")
        cursor.close()

    def written(self) -> None:
        self.count += 1
        if self.count < self.EVERY or (self.running is not None and not self.running.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a connection let go outside the loop (at exit): SQLite checkpoints at close
            return
        self.count = 0
        self.running = loop.create_task(asyncio.to_thread(self.checkpoint))

    def checkpoint(self) -> None:
        try:
            connection = sqlite3.connect(self.database, timeout=WRITER_TIMEOUT)
            try:
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            finally:
                connection.close()
        except sqlite3.Error as e:  # the next one tries again; the log only grows meanwhile
            log.warning("checkpoint of %s failed: %s", self.database, e)


def pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
