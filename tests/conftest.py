"""Fixtures: a database (SQLite in memory, or TEST_DATABASE_URL), settings, and
the real Dispatcher over a mocked Bot API session."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from bot.app import create_dispatcher
from bot.outbox import Outbox
from bot.fsm import DatabaseStorage
from bot.i18n import create_i18n
from bot.posts import CARD_EDIT, card_renderer, progress_hook
from bot.scheduler import Scheduler
from bot.settings import Settings
from storage.db import create_engine, create_session_maker
from storage.models import Base
from tests.harness import BOT_USER, TOKEN, Harness, Person, make_bot

ADMIN = Person(1001, "Админ")
ADMIN_IDS = frozenset({ADMIN.id})


def database_url() -> str:
    return os.environ.get("TEST_DATABASE_URL") or "sqlite+aiosqlite://"


@pytest.fixture
def settings() -> Settings:
    return Settings(
        bot_token=TOKEN,  # type: ignore[arg-type]
        admin_ids=ADMIN_IDS,
        database_url=database_url(),
        telegram_api_url="http://127.0.0.1:1",
        timezone="Europe/Moscow",
        default_locale="ru",
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
async def session_maker(settings: Settings) -> AsyncIterator[object]:
    engine = create_engine(settings.database_url)
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await conn.run_sync(Base.metadata.create_all)
    yield create_session_maker(engine)
    await engine.dispose()


@pytest.fixture
async def app(settings: Settings, session_maker: object) -> AsyncIterator[Harness]:
    bot = make_bot()
    # Limits are measured against the fake Bot API (tests/test_delivery.py); here only logic.
    outbox = Outbox(session_maker, bot, rate=0, per_chat_interval=0)  # type: ignore[arg-type]
    i18n = create_i18n(settings.default_locale)
    outbox.on_progress = progress_hook(session_maker, i18n, settings.default_locale, outbox.wake)
    outbox.renderers[CARD_EDIT] = card_renderer(session_maker, i18n, settings.default_locale)  # as bot.app does
    scheduler = Scheduler(session_maker, i18n, settings.default_locale, outbox.wake,  # type: ignore[arg-type]
                          admin_ids=settings.admin_ids)
    # Dialog state in the database, as in production (bot.fsm).
    dp = create_dispatcher(settings, session_maker, outbox=None, bot_username=BOT_USER.username or "",  # type: ignore[arg-type]
                           scheduler=scheduler, i18n=i18n, storage=DatabaseStorage(session_maker))  # type: ignore[arg-type]
    yield Harness(dp=dp, bot=bot, outbox=outbox, session_maker=session_maker, scheduler=scheduler)
