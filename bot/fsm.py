"""Dialog state that survives restarts: aiogram's FSM kept in our database by
default (SQLite or PostgreSQL), or in Redis with aiogram's RedisStorage when
REDIS_URL is set.

Inside an update the state is read and written through the update's own
session, so a dialog step and its state change commit (or roll back)
together — and SQLite, which has one writer, never waits on itself. Outside
an update (aiogram reads the state before our unit of work begins) each call
is a short transaction of its own."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseEventIsolation, BaseStorage, DefaultKeyBuilder, StorageKey
from aiogram.fsm.storage.memory import SimpleEventIsolation
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import FsmState, utcnow

# The unit of work's session while an update is being handled (set by bot.middlewares).
update_session: ContextVar[AsyncSession | None] = ContextVar("update_session", default=None)


class AfterCommit:
    """What must happen once an update's transaction has committed: hooks to
    run, and the dialog state held back until then (AfterCommitStorage)."""

    def __init__(self) -> None:
        self.hooks: list[Callable[[], Awaitable[None]]] = []
        self.fsm: dict[StorageKey, dict[str, Any]] = {}
        # True while the update's transaction is open: Bot API calls are collected
        # (bot.replies.Collect), in order, and leave after the commit.
        self.open = True
        self.replies: list[Any] = []
        # Steps that need Telegram's answers (bot.replies.after_commit_do).
        self.continuations: list[Callable[[], Awaitable[None]]] = []
        # Posts whose authors' cards are to show new figures (bot.replies.card_follows).
        self.cards: set[int] = set()

    async def run(self) -> None:
        for hook in self.hooks:
            await hook()


# Set by bot.middlewares.UnitOfWork for the length of one update.
after_commit: ContextVar[AfterCommit | None] = ContextVar("after_commit", default=None)


class DatabaseStorage(BaseStorage):
    """For one worker (several share Redis instead): it remembers which people
    have no dialog going, so the common update — someone not in a dialog —
    costs no query for its state. Only what committed is remembered."""

    ABSENT_MAX = 50_000

    def __init__(self, session_maker: async_sessionmaker) -> None:
        self.session_maker = session_maker
        self.keys = DefaultKeyBuilder(with_destiny=True, with_bot_id=True)
        self._absent: set[str] = set()  # keys known to have no row, as committed

    async def _row(self, key: StorageKey) -> FsmState | None:
        session = update_session.get()
        if session is not None:
            return await self._cached(session, self.keys.build(key))
        async with self.session_maker() as own:
            return await own.get(FsmState, self.keys.build(key))

    async def _cached(self, session: AsyncSession, key: str) -> FsmState | None:
        """The row as this transaction knows it — absent ones too, so clearing
        a dialog that was never begun costs no query."""
        known: dict[str, FsmState | None] = session.info.setdefault("fsm_rows", {})
        if key not in known:
            if key in self._absent:
                known[key] = None
            else:
                known[key] = await session.get(FsmState, key)
                if known[key] is None:
                    self._remember_absent(key)
        return known[key]

    def _remember_absent(self, key: str) -> None:
        if len(self._absent) >= self.ABSENT_MAX:
            self._absent.clear()  # a cache, not a record: start again
        self._absent.add(key)

    async def _save(self, key: StorageKey, **values: Any) -> None:
        session = update_session.get()
        if session is not None:
            await self._write(session, self.keys.build(key), values, await self._cached(session, self.keys.build(key)))
            return
        async with self.session_maker.begin() as own:
            name = self.keys.build(key)
            self._absent.discard(name)
            await self._write(own, name, values, await own.get(FsmState, name, with_for_update=True))

    async def _write(self, session: AsyncSession, key: str, values: dict[str, Any], row: FsmState | None) -> None:
        state = values.get("state", row.state if row else None)
        data = values.get("data", row.data if row else "{}")
        known: dict[str, FsmState | None] = session.info.setdefault("fsm_rows", {})
        if state is None and data == "{}":
            if row is not None:
                await session.delete(row)  # an empty state is no state: keep the table small
                await session.flush()  # the key may be written again in this update
                known[key] = None
                commit = after_commit.get()
                if commit is not None:  # absent once this commits (a rollback keeps the row)
                    commit.hooks.append(lambda: self._after_delete(key, known))
            return
        self._absent.discard(key)
        if row is None:
            known[key] = FsmState(key=key, state=state, data=data, updated_at=utcnow())
            session.add(known[key])
        else:
            row.state, row.data, row.updated_at = state, data, utcnow()

    async def _after_delete(self, key: str, known: dict[str, FsmState | None]) -> None:
        # A dialog cleared and begun again in the same update (the invitation link
        # opened twice, /post inside /post) has its row again: not absent.
        if known.get(key) is None:
            self._remember_absent(key)

    async def set_state(self, key: StorageKey, state: str | State | None = None) -> None:
        await self._save(key, state=state.state if isinstance(state, State) else state)

    async def get_state(self, key: StorageKey) -> str | None:
        row = await self._row(key)
        return row.state if row is not None else None

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        await self._save(key, data=json.dumps(dict(data), ensure_ascii=False))

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        row = await self._row(key)
        return json.loads(row.data) if row is not None else {}

    async def close(self) -> None:
        pass


class AfterCommitStorage(BaseStorage):
    """Redis keeps no transaction with the database: a dialog step whose update
    rolled back (or whose worker died before the commit) must not have moved
    the dialog on. So inside an update, writes are held (and read back) here
    and reach Redis only after the update committed."""

    def __init__(self, inner: BaseStorage) -> None:
        self.inner = inner

    def _buffer(self) -> dict[StorageKey, dict[str, Any]] | None:
        commit = after_commit.get()
        if commit is None:
            return None
        if not commit.fsm:
            commit.hooks.append(lambda: self._flush(commit.fsm))
        return commit.fsm

    def _held(self, key: StorageKey) -> dict[str, Any]:
        commit = after_commit.get()
        return commit.fsm.get(key, {}) if commit is not None else {}

    async def _flush(self, held: dict[StorageKey, dict[str, Any]]) -> None:
        for key, values in held.items():
            if "state" in values:
                await self.inner.set_state(key, values["state"])
            if "data" in values:
                await self.inner.set_data(key, values["data"])

    async def set_state(self, key: StorageKey, state: str | State | None = None) -> None:
        held = self._buffer()
        value = state.state if isinstance(state, State) else state
        if held is None:
            await self.inner.set_state(key, value)
        else:
            held.setdefault(key, {})["state"] = value

    async def get_state(self, key: StorageKey) -> str | None:
        held = self._held(key)
        return held["state"] if "state" in held else await self.inner.get_state(key)

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        held = self._buffer()
        if held is None:
            await self.inner.set_data(key, data)
        else:
            held.setdefault(key, {})["data"] = dict(data)

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        held = self._held(key)
        return dict(held["data"]) if "data" in held else await self.inner.get_data(key)

    async def close(self) -> None:
        await self.inner.close()


def create_storage(session_maker: async_sessionmaker, redis_url: str | None) -> tuple[BaseStorage, BaseEventIsolation]:
    """The FSM storage and the isolation that keeps one person's updates in order.

    With Redis, both are shared by every worker; without it, the isolation is
    per process (one worker)."""
    if redis_url:
        from aiogram.fsm.storage.redis import RedisEventIsolation, RedisStorage

        storage = RedisStorage.from_url(redis_url, key_builder=DefaultKeyBuilder(with_destiny=True, with_bot_id=True))
        return AfterCommitStorage(storage), RedisEventIsolation(storage.redis)
    return DatabaseStorage(session_maker), SimpleEventIsolation()

