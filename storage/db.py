"""Engine and session factory. The only place that knows about dialects."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool

from storage import sqlite


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
            # A file database: our driver connection (storage.sqlite), one round trip a statement.
            connect_args={"timeout": sqlite.WRITER_TIMEOUT} if in_memory else {
                "timeout": sqlite.WRITER_TIMEOUT, "async_creator_fn": sqlite.connect,
            },
        )
        event.listen(engine.sync_engine, "connect", sqlite.pragmas)
        if not in_memory:
            sqlite.OneWriter(sqlite.WRITER_TIMEOUT).install(engine)
        return engine
    return create_async_engine(url, echo=echo, pool_pre_ping=True)


def create_session_maker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=True)
