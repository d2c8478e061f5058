"""Alembic: every migration up and down (the stairway), and the migrated schema
is exactly the models' — so a model change without a migration fails here."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from storage.db import create_engine
from storage.migrate import alembic_config, downgrade, upgrade
from storage.models import Base


@pytest.fixture
def url(tmp_path: Path) -> str:
    pg = os.environ.get("TEST_DATABASE_URL")
    if pg:
        async def reset() -> None:
            engine = create_engine(pg)
            async with engine.begin() as conn:
                await conn.execute(text("DROP SCHEMA public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
            await engine.dispose()

        asyncio.run(reset())
        return pg
    return f"sqlite+aiosqlite:///{tmp_path}/stairway.db"


def revisions(url: str) -> list[str]:
    script = ScriptDirectory.from_config(alembic_config(url))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def schema_diff(url: str) -> list:
    async def diff() -> list:
        engine = create_engine(url)
        async with engine.connect() as conn:
            result = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata)
            )
        await engine.dispose()
        return result

    return asyncio.run(diff())


def test_stairway_every_migration_up_and_down(url: str) -> None:
    revs = revisions(url)
    assert revs, "no migrations found"
    for i, rev in enumerate(revs):
        upgrade(url, rev)
        downgrade(url, revs[i - 1] if i else "base")
        upgrade(url, rev)
    downgrade(url, "base")
    upgrade(url, "head")


def test_migrated_schema_matches_the_models(url: str) -> None:
    upgrade(url, "head")
    assert schema_diff(url) == []
