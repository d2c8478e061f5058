"""Moving and keeping a school's data: copying a database to another (SQLite
to PostgreSQL), and an online backup of a SQLite file. The only module that
speaks a dialect's own language (sequence resets, SQLite's backup API)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url

from storage.db import create_engine
from storage.migrate import upgrade
from storage.models import Base

CHUNK = 1000


async def copy_database(source_url: str, target_url: str) -> dict[str, int]:
    """Copies every row of every table; the target is migrated first and must be empty.

    Returns the row count per table, checked to be equal on both sides."""
    import asyncio

    await asyncio.to_thread(upgrade, target_url)
    source, target = create_engine(source_url), create_engine(target_url)
    counts: dict[str, int] = {}
    try:
        async with target.connect() as tconn:
            for table in Base.metadata.sorted_tables:
                if await tconn.scalar(select(func.count()).select_from(table)):
                    raise RuntimeError(f"the target is not empty (table {table.name}); copy into a fresh database")
        async with source.connect() as sconn, target.begin() as tconn:
            # Parents before children (sorted_tables), each in id order, so every
            # foreign key, including a delivery's reference to an earlier one, holds.
            for table in Base.metadata.sorted_tables:
                result = await sconn.stream(select(table).order_by(*table.primary_key.columns))
                n = 0
                async for chunk in result.partitions(CHUNK):
                    await tconn.execute(insert(table), [dict(row._mapping) for row in chunk])
                    n += len(chunk)
                counts[table.name] = n
            if target.dialect.name == "postgresql":
                # Rows came with their ids: the id sequences must continue after them.
                for table in Base.metadata.sorted_tables:
                    if "id" in table.columns and table.columns["id"].primary_key:
                        await tconn.execute(text(
                            f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                            f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"
                        ))
        async with target.connect() as tconn:
            for table in Base.metadata.sorted_tables:
                copied = await tconn.scalar(select(func.count()).select_from(table))
                if copied != counts[table.name]:
                    raise RuntimeError(f"{table.name}: {counts[table.name]} rows read, {copied} in the target")
    finally:
        await source.dispose()
        await target.dispose()
    return counts


def backup_sqlite(database_url: str, destination: str) -> Path:
    """A consistent copy of a live SQLite database (the backup API, safe while the bot runs)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        raise ValueError("`backup` copies a SQLite file; for PostgreSQL use pg_dump (see docs/operating.md)")
    source = Path(url.database)
    if not source.is_file():
        raise FileNotFoundError(f"there is no database at {source} (check DATABASE_URL and the working directory)")
    target = Path(destination)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Read-only: a mistyped path must not create an empty database.
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return target
