"""Upgrades without loss: a database written by the previous release (the
migrations up to 0007, every table filled with raw SQL) upgrades at start to
the current schema with every row and every value kept."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import text

from storage.db import create_engine
from storage.migrate import upgrade
from tests.test_migrations import url  # noqa: F401  (the fixture: SQLite file, or TEST_DATABASE_URL reset)

PREVIOUS = "0007"
ROWS = 3


def value(column: sa.Column, i: int, fks: dict[str, str]) -> Any:
    """Row i's value for a column: its own number where it is a key, one that
    differs per row elsewhere (unique constraints hold)."""
    if column.name in fks:
        return i  # the i-th row of the table it points at
    kind = column.type
    if isinstance(kind, sa.Boolean):
        return i % 2 == 0
    if isinstance(kind, sa.DateTime):
        return datetime(2026, 1 + i, 10 + i, 8, 30, i)
    if isinstance(kind, sa.Date):
        return date(2026, 1 + i, 10 + i)
    if isinstance(kind, (sa.Integer, sa.BigInteger, sa.SmallInteger)):
        return i if column.primary_key else 1000 * i + 7
    if isinstance(kind, (sa.String, sa.Text)):
        length = getattr(kind, "length", None) or 64
        return f"{column.name[:8]}-{i}"[:length] if length >= 3 else str(i)[:length]
    raise AssertionError(f"no value for {column.table.name}.{column.name} ({kind!r})")


async def fill_previous_release(db_url: str) -> dict[str, list[dict[str, Any]]]:
    """Every table of the old schema gets ROWS rows, by plain INSERT statements; returns what was written."""
    engine = create_engine(db_url)
    written: dict[str, list[dict[str, Any]]] = {}
    try:
        async with engine.begin() as conn:
            meta = sa.MetaData()
            await conn.run_sync(meta.reflect)
            for table in meta.sorted_tables:
                if table.name == "alembic_version":
                    continue
                fks = {fk.parent.name: fk.column.table.name for fk in table.foreign_keys}
                rows = []
                for i in range(1, ROWS + 1):
                    row = {c.name: value(c, i, fks) for c in table.columns}
                    names = ", ".join(f'"{n}"' for n in row)
                    marks = ", ".join(f":{n}" for n in row)
                    await conn.execute(text(f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})'), row)
                    rows.append(row)
                written[table.name] = rows
    finally:
        await engine.dispose()
    return written


async def read_back(db_url: str, written: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    engine = create_engine(db_url)
    out: dict[str, list[dict[str, Any]]] = {}
    try:
        async with engine.connect() as conn:
            meta = sa.MetaData()
            await conn.run_sync(meta.reflect)
            for name, rows in written.items():
                table = meta.tables[name]
                key = list(table.primary_key.columns)
                result = await conn.execute(sa.select(*[table.c[c] for c in rows[0]]).order_by(*key))
                out[name] = [dict(r._mapping) for r in result]
            extra = {
                "audit_keep_months": (await conn.execute(text("SELECT audit_keep_months FROM organisation"))).scalars().all(),
                "copies_folded_at": (await conn.execute(text("SELECT copies_folded_at FROM post"))).scalars().all(),
                "tally": (await conn.execute(text("SELECT count(*) FROM delivery_tally"))).scalar(),
            }
            out["_new"] = [extra]
    finally:
        await engine.dispose()
    return out


def normalise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """SQLite hands datetimes and dates back as they were stored; compare their text."""
    return [{k: (v.isoformat(sep=" ") if isinstance(v, datetime) else v.isoformat() if isinstance(v, date)
                 else int(v) if isinstance(v, bool) else v) for k, v in r.items()} for r in rows]


def test_a_database_of_the_previous_release_upgrades_with_every_row_kept(url: str) -> None:  # noqa: F811
    upgrade(url, PREVIOUS)
    written = asyncio.run(fill_previous_release(url))
    assert len(written) >= 20, sorted(written)  # every table of the release, not a few
    upgrade(url)  # what `python -m bot` does at start
    got = asyncio.run(read_back(url, written))
    for name, rows in written.items():
        assert normalise(got[name]) == normalise(rows), name
    [new] = got["_new"]
    assert new["audit_keep_months"] == [18] * ROWS  # the default for organisations that had none
    assert new["copies_folded_at"] == [None] * ROWS and new["tally"] == 0


def test_posts_folded_before_0012_count_as_counted_and_every_row_is_kept(url: str) -> None:  # noqa: F811
    upgrade(url, "0011")
    written = asyncio.run(fill_previous_release(url))

    async def fold_first() -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE post SET copies_folded_at = NULL WHERE id > 1"))
                await conn.execute(text("UPDATE post SET copies_folded_at = :at WHERE id = 1"),
                                   {"at": datetime(2026, 3, 1, 2, 40)})
        finally:
            await engine.dispose()

    asyncio.run(fold_first())
    for i, row in enumerate(written["post"]):
        row["copies_folded_at"] = datetime(2026, 3, 1, 2, 40) if i == 0 else None
    upgrade(url)
    got = asyncio.run(read_back(url, written))
    for name, rows in written.items():
        assert normalise(got[name]) == normalise(rows), name

    async def counted() -> list[Any]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                return list((await conn.execute(text("SELECT copies_counted_at FROM post ORDER BY id"))).scalars())
        finally:
            await engine.dispose()

    first, *others = asyncio.run(counted())
    assert normalise([{"at": first}]) == normalise([{"at": datetime(2026, 3, 1, 2, 40)}])
    assert others == [None] * (ROWS - 1)
