"""Idle memory of the bot process against a bare aiogram bot, in the same run.

Run from the repository root:

    .venv/bin/python bench/memory.py                    # empty school, and a school with a year of history
    .venv/bin/python bench/memory.py --history-scale 0  # the empty school only
    .venv/bin/python bench/memory.py --history-scale 0.2  # a fifth of a year (quicker to seed)

Every process is started as a deployment starts it, against the fake Bot API
(tests/fake_telegram.py) on loopback, one at a time:

* bare aiogram: `Bot` + `Dispatcher` with one /start handler that answers,
  polling the fake (aiogram imports all its types and methods: this is the
  floor of any aiogram bot);
* `python -m bot` on an empty SQLite database (migrations at start, the
  admin's /start answered);
* `python -m bot` on a database holding a school year (seeded by
  bench/history.py: 1,000 families, 3,000 posts, ~3 M outbox rows at scale 1).

Each gets a /start from a user, answers it, and is then left idle; its RSS
(VmRSS in /proc) is read several times over a few seconds and the largest
reading counts. Goals (issue 14): idle RSS ≤ 1.3× the bare bot, and ≤ 50 MiB
more with the history than without. Also shown: which heavy modules
(matplotlib, icalendar, segno, openpyxl, PDF) the idle bot has imported — none
should be, until first needed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (str(ROOT), str(ROOT / "bench")):
    if p not in sys.path:
        sys.path.insert(0, p)

from tests.fake_telegram import FakeTelegram  # noqa: E402

TOKEN = "123456:MEMORY-bench-token-0123456789"
USER = 1001
HEAVY = ("matplotlib", "icalendar", "segno", "openpyxl", "reportlab", "fpdf", "weasyprint", "PIL")

BARE = f"""
import asyncio, sys
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.filters import CommandStart
from aiogram.types import Message

dp = Dispatcher()

@dp.message(CommandStart())
async def start(message: Message) -> None:
    await message.answer("Hello!")

async def main() -> None:
    bot = Bot({TOKEN!r}, session=AiohttpSession(api=TelegramAPIServer.from_base(sys.argv[1])))
    await dp.start_polling(bot, handle_signals=True)

asyncio.run(main())
"""

PROBE = """
import sys
print(",".join(sorted({m.split(".")[0] for m in sys.modules})))
"""


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def heavy_modules(pid: int) -> list[str]:
    """The heavy modules mapped into the process (their shared objects or sources show in /proc/maps)."""
    found = set()
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            for name in HEAVY:
                if f"/{name}/" in line or f"/{name.lower()}/" in line:
                    found.add(name)
    return sorted(found)


async def measure(tg: FakeTelegram, argv: list[str], env: dict[str, str], log: Path, idle: float) -> tuple[float, list[str], float]:
    """Starts the process, has it answer a /start, lets it idle; (RSS MiB, heavy modules, seconds to answer)."""
    before = len(tg.bot_messages(USER))
    polls = len(tg.calls_to("getUpdates"))
    t0 = time.perf_counter()
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(*argv, cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=out, stderr=out)
    try:
        # Polling has begun when the fake sees getUpdates.
        while len(tg.calls_to("getUpdates")) <= polls:
            if proc.returncode is not None:
                raise RuntimeError(f"{argv[-1]} exited: {log.read_text()[-2000:]}")
            await asyncio.sleep(0.1)
        await tg.send_text(USER, "/start")
        while len(tg.bot_messages(USER)) <= before:
            if proc.returncode is not None:
                raise RuntimeError(f"{argv[-1]} exited: {log.read_text()[-2000:]}")
            await asyncio.sleep(0.05)
        answered = time.perf_counter() - t0
        await asyncio.sleep(idle)
        readings = []
        for _ in range(5):
            readings.append(rss_mib(proc.pid))
            await asyncio.sleep(0.5)
        return max(readings), heavy_modules(proc.pid), answered
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def seed_history(url: str, scale: float) -> int:
    from history import make_database  # bench/history.py

    families = max(40, round(1000 * scale))
    posts = max(40, round(3000 * scale))
    _school, counts, _took = await make_database(url, families, posts, with_year=True)
    return sum(counts.values())


async def main(args: argparse.Namespace) -> None:
    results: list[tuple[str, float, list[str], float]] = []
    with tempfile.TemporaryDirectory(prefix="parta-memory-") as tmp:
        base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH")}
        async with FakeTelegram(token=TOKEN, bot_username="parta_memory_bot") as tg:
            tg.add_user(USER, "Admin")
            bare_env = dict(base)
            results.append(("bare aiogram bot (one /start handler, polling)",
                            *await measure(tg, [sys.executable, "-c", BARE, tg.url], bare_env, Path(tmp) / "bare.log",
                                           args.idle)))
            env = {**base, "BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": tg.url, "ADMIN_IDS": str(USER),
                   "TIMEZONE": "Europe/Moscow", "DEFAULT_LOCALE": "ru"}
            empty = f"sqlite+aiosqlite:///{tmp}/empty.db"
            results.append(("python -m bot, empty database",
                            *await measure(tg, [sys.executable, "-m", "bot"], {**env, "DATABASE_URL": empty},
                                           Path(tmp) / "empty.log", args.idle)))
            if args.history_scale > 0:
                year = f"sqlite+aiosqlite:///{tmp}/year.db"
                t0 = time.perf_counter()
                rows = await seed_history(year, args.history_scale)
                print(f"history seeded: {rows:,} rows in {time.perf_counter() - t0:.0f} s (scale {args.history_scale})",
                      file=sys.stderr)
                # The user is a platform admin of a school that already exists: /start shows the home screen.
                results.append((f"python -m bot, a school year ({rows:,} rows)",
                                *await measure(tg, [sys.executable, "-m", "bot"], {**env, "DATABASE_URL": year},
                                               Path(tmp) / "year.log", args.idle)))
    floor = results[0][1]
    print("\n| process | idle RSS | ratio to bare aiogram | heavy modules loaded | first answer after start |")
    print("|---|---:|---:|---|---:|")
    for name, rss, heavy, answered in results:
        print(f"| {name} | {rss:.0f} MiB | {rss / floor:.2f}× | {', '.join(heavy) or 'none'} | {answered:.1f} s |")
    empty_rss = results[1][1]
    print(f"\nGoal: idle RSS ≤ 1.3× bare aiogram — {empty_rss / floor:.2f}×: {'met' if empty_rss <= 1.3 * floor else 'NOT met'}")
    if len(results) > 2:
        more = results[2][1] - empty_rss
        print(f"Goal: ≤ 50 MiB more with a year's history — {more:+.0f} MiB: {'met' if more <= 50 else 'NOT met'}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--history-scale", type=float, default=1.0,
                   help="the year's size for the third process (1: a full year as in bench/history.py; 0: skip)")
    p.add_argument("--idle", type=float, default=5.0, help="seconds idle before RSS is read (default 5)")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
