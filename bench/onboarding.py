"""Onboarding a whole school: reading the list, importing it, printing slips,
and what the lazy imports keep off the bot's start-up.

    .venv/bin/python bench/onboarding.py          # a school of 1,000 pupils in 40 classes

Prints, in one run on this machine (SQLite in a temporary file):
- reading the list: an .xlsx and a .csv of 1,000 rows, against the floor of
  openpyxl / csv merely iterating the same file's cells;
- the import (plan + pupils + a personal code each, one transaction, as the
  Import button does), against the floor of one bare INSERT of the same
  pupils and codes;
- the slips of one class of 25 (a two-page A4 PDF with QR pictures), against
  the floor of segno making the same 25 PNGs;
- the process RSS after importing the bot (as `python -m bot` does) and after
  also importing fpdf2 and openpyxl, each in a fresh interpreter.
"""

from __future__ import annotations

import asyncio
import csv
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from bot import classlist  # noqa: E402
from bot import onboarding as service  # noqa: E402
from bot.actor import Actor  # noqa: E402
from bot.i18n import create_i18n, in_locale  # noqa: E402
from storage.models import Invitation, Person, Pupil, utcnow  # noqa: E402
from storage.repo import Repo  # noqa: E402
from tests.seed import create_database  # noqa: E402

PUPILS, CLASSES, ROUNDS = 1000, 40, 5


def school_rows() -> list[list[str]]:
    return [["ФИО обучающегося", "Класс", "Дата рождения"]] + [
        [f"Фамилия{i} Имя{i} Отчество{i}", f"{5 + i % 7}{'АБВГДЕ'[i % CLASSES // 7]}", "12.03.2015"]
        for i in range(PUPILS)
    ]


def as_xlsx(rows: list[list[str]]) -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def as_csv(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=";").writerows(rows)
    return buffer.getvalue().encode("cp1251")


def best(fn, rounds: int = ROUNDS) -> float:  # type: ignore[no-untyped-def]
    """The median of `rounds` runs, in ms."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def reading() -> list[tuple[str, float, float]]:
    import openpyxl

    rows = school_rows()
    xlsx, text = as_xlsx(rows), as_csv(rows)

    def floor_xlsx() -> None:
        book = openpyxl.load_workbook(io.BytesIO(xlsx), read_only=True, data_only=True)
        for _ in book.active.iter_rows(values_only=True):
            pass
        book.close()

    def floor_csv() -> None:
        for _ in csv.reader(io.StringIO(text.decode("cp1251")), delimiter=";"):
            pass

    return [
        (f".xlsx, {PUPILS} rows", best(lambda: classlist.read_list(xlsx, "school.xlsx")), best(floor_xlsx)),
        (f".csv (Windows-1251), {PUPILS} rows", best(lambda: classlist.read_list(text, "school.csv")), best(floor_csv)),
    ]


async def importing() -> tuple[float, float]:
    rows = classlist.read_list(as_csv(school_rows()), "school.csv").rows
    ours, floor = [], []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as folder:
            engine, session_maker = await create_database(f"sqlite+aiosqlite:///{folder}/bench.db")
            async with session_maker.begin() as session:
                repo = Repo(session)
                org, _staff = await repo.create_organisation(name="Школа", kind="school", timezone="Europe/Moscow",
                                                             support_contact=None, staff_title="Учительская")
                admin = Person(telegram_id=1, full_name="Админ", telegram_name="a", memberships=[])
                session.add(admin)
                await session.flush()
                org_id, admin_id = org.id, admin.id
            async with session_maker.begin() as session:
                repo = Repo(session)
                actor = Actor(person=await repo.person(admin_id), org=await repo.organisation(org_id),  # type: ignore[arg-type]
                              is_config_admin=True, locale="ru")
                start = time.perf_counter()
                done = await service.import_pupils(repo, actor, [classlist.Row.from_dict(r.as_dict()) for r in rows],
                                                   create_classes=True, days=30, uses=2)
                await session.flush()
            ours.append((time.perf_counter() - start) * 1000)
            assert done.pupils == PUPILS, done
            # The floor: the same pupils and codes in two bare INSERTs.
            async with session_maker.begin() as session:
                repo = Repo(session)
                group = await repo.add_group(org_id, "floor")
                start = time.perf_counter()
                now = utcnow()
                await session.execute(insert(Pupil), [
                    {"org_id": org_id, "group_id": group.id, "full_name": r.name, "created_at": now} for r in rows])
                await session.execute(insert(Invitation), [
                    {"org_id": org_id, "group_id": group.id, "role": "parent", "code": f"F{i:09d}",
                     "created_by_id": admin_id, "expires_at": now, "max_uses": 2, "uses": 0, "created_at": now}
                    for i in range(len(rows))])
                await session.flush()
            floor.append((time.perf_counter() - start) * 1000)
            await engine.dispose()
    return statistics.median(ours), statistics.median(floor)


def printing() -> tuple[float, float, int]:
    from types import SimpleNamespace

    from bot.slips import qr_png, slips_pdf
    from handlers.onboarding import family_slip

    i18n = create_i18n("ru")
    org = SimpleNamespace(name="МБОУ СОШ № 1", timezone="Europe/Moscow")
    group = SimpleNamespace(title="5А")
    codes = [f"K7M2QX9P{i:02d}" for i in range(25)]
    with i18n.context(), in_locale("ru"):
        slips = [family_slip(org, group, SimpleNamespace(full_name=f"Фамилия{i} Имя{i}"),  # type: ignore[arg-type]
                             SimpleNamespace(code=c, expires_at=utcnow()), "parta_bot") for i, c in enumerate(codes)]  # type: ignore[arg-type]
    size = len(slips_pdf(slips, "5А"))
    ours = best(lambda: slips_pdf(slips, "5А"))
    floor = best(lambda: [qr_png(f"https://t.me/parta_bot?start={c}") for c in codes])
    return ours, floor, size


def rss(code: str) -> float:
    """The resident memory (VmRSS, MiB) of a fresh interpreter after running `code`."""
    script = f"import sys; sys.path.insert(0, {str(ROOT)!r}); {code}; " \
             "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS:')))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    return int(out.stdout.strip()) / 1024


def main() -> None:
    print(f"Onboarding a school of {PUPILS} pupils in {CLASSES} classes (medians)\n")
    print("| case | ours, ms | floor, ms | ratio |")
    print("|---|---:|---:|---:|")
    for what, ours, floor in reading():
        print(f"| read {what} (floor: the library iterating the cells) | {ours:.1f} | {floor:.1f} | {ours / floor:.1f}× |")
    ours, floor = asyncio.run(importing())
    print(f"| import {PUPILS} pupils + codes, classes created, one transaction (floor: 2 bare INSERTs) "
          f"| {ours:.0f} | {floor:.0f} | {ours / floor:.2f}× |")
    ours, floor, size = printing()
    print(f"| slips of a class of 25, 2 A4 pages, {size // 1024} KiB (floor: segno's 25 PNGs) "
          f"| {ours:.0f} | {floor:.0f} | {ours / floor:.2f}× |")
    bot_only = rss("import bot.app, handlers")
    with_pdf = rss("import bot.app, handlers, fpdf, openpyxl, bot.slips")
    print(f"\nRSS after importing the bot: {bot_only:.0f} MiB; with fpdf2 and openpyxl too: {with_pdf:.0f} MiB "
          f"(+{with_pdf - bot_only:.0f} MiB kept off start-up by the lazy imports)")


if __name__ == "__main__":
    main()
