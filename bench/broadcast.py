"""Broadcast throughput of the outbox against Telegram's limits.

Run from the repository root:

    .venv/bin/python bench/broadcast.py            # 2,000 recipients per case (about 5 minutes)
    .venv/bin/python bench/broadcast.py --quick    # 300 recipients, a smoke run
    .venv/bin/python bench/broadcast.py --profile  # also profile the lifted case (cProfile)

What is measured. A seeded school (tests/seed.py: one group, a teacher, N
parents) in a SQLite file in a temporary directory; one post to all parents,
enqueued as /post → Send enqueues it (bot.posts.broadcast + the author's card,
through tests/seed.enqueue_post); the Outbox in this process with a real aiogram
Bot whose HTTP session points at tests/fake_telegram.py. The fake runs in a
child process (this script with --serve-fake) so that its own CPU does not
slow the engine down; it enforces Telegram's limits (30 messages/s in any
rolling second, 1/s per chat) and adds a fixed latency to every call.

- "copies": the outbox sends only the post's copies (no author's card);
- "as /post": the copies plus the author's card, with the progress hook that
  edits the card as copies go out (exactly what the bot process runs).

Per case: copies/s from the first copy the fake accepted to the last one (the
rate at which parents got the post), its ratio to the 30/s limit (goal ≥ 0.95),
lost (parents without the post), duplicated (extra copies), the 429s the fake
gave, and the card edits made. "lifted": outbox rate=0, the fake's limits off
and latency 0 (goal ≥ 1,000 copies/s). "10 % failing": the copies at 50 ms
with one call in ten failing before the fake handles it — half answered 502
Bad Gateway, half a dropped connection — so every copy still arrives, later
(goal ≥ 0.85 of the limit); printed under it: every attempt's rate, the
attempts per copy, and how long the last copies trailed behind.

The outbox's steps are timed by wrapping the methods of the one Outbox
instance (claim, send, write: printed under each case); bot/outbox.py itself is
not changed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TOKEN = "123456:BENCH-token-for-the-broadcast-bench"
LIMIT = 30.0  # Telegram's global limit, messages per second
GOAL_RATIO = 0.95
GOAL_FAILING = 0.85  # with 10 % of calls failing (502 or a dropped connection)
FAILING = 0.10
GOAL_LIFTED = 1000.0


# -- the fake, in a child process ------------------------------------------------------------------------


async def serve_fake(config: dict[str, Any]) -> None:
    """Child: runs FakeTelegram; prints its URL; on "stats" prints its counters as JSON."""
    from tests.fake_telegram import SEND_METHODS, FakeTelegram, Faults, RateLimits

    limits = RateLimits() if config["limits"] else None
    faults = None
    if config.get("failing"):
        half = config["failing"] / 2
        faults = Faults(server_error_rate=half, drop_rate=half, server_error_codes=(502,))
    async with FakeTelegram(token=TOKEN, limits=limits, latency=config["latency"], faults=faults) as tg:
        tg.mark_started(*config["users"])
        print(f"URL {tg.url}", flush=True)
        cpu0 = time.process_time()
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line or line.strip() == "quit":
                return
            copies = sorted(c.done_at for c in tg.calls if c.ok and c.method in SEND_METHODS
                            and c.params.get("chat_id") != config["author"] and c.done_at is not None)
            edits = sum(1 for c in tg.calls if c.method.startswith("edit"))
            attempts = sorted(c.at for c in tg.calls if c.method in SEND_METHODS
                              and c.params.get("chat_id") != config["author"])
            print(json.dumps({
                "received": {str(k): v for k, v in tg.received.items()},
                "first": copies[0] if copies else None, "last": copies[-1] if copies else None,
                "copies": len(copies), "too_many": tg.too_many_requests, "edits": edits,
                "calls": len(tg.calls), "cpu": time.process_time() - cpu0,
                "attempts": len(attempts), "attempts_first": attempts[0] if attempts else None,
                "attempts_last": attempts[-1] if attempts else None, "faults": dict(tg.faults_injected),
                # successful copies per whole second since the first one (to see gaps and the tail)
                "per_second": _per_second(copies),
            }), flush=True)


def _per_second(times: list[float]) -> list[int]:
    if not times:
        return []
    counts = [0] * (int(times[-1] - times[0]) + 1)
    for t in times:
        counts[int(t - times[0])] += 1
    return counts


class FakeProcess:
    def __init__(self, proc: asyncio.subprocess.Process, url: str) -> None:
        self.proc, self.url = proc, url

    @classmethod
    async def start(cls, *, limits: bool, latency: float, users: list[int], author: int,
                    failing: float = 0.0) -> FakeProcess:
        config = json.dumps({"limits": limits, "latency": latency, "users": users, "author": author,
                             "failing": failing})
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).resolve()), "--serve-fake", config, cwd=ROOT,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
        assert line.startswith("URL "), line
        return cls(proc, line[4:])

    async def stats(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"stats\n")
        await self.proc.stdin.drain()
        return json.loads(await asyncio.wait_for(self.proc.stdout.readline(), 60))

    async def stop(self) -> None:
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"quit\n")
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


# -- one case ---------------------------------------------------------------------------------------------


class Phases:
    """Where the outbox's wall time goes: its claim, send and write steps, timed
    by wrapping the methods of one Outbox instance (bot/outbox.py is not changed)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.rows: dict[str, int] = {}

    def add(self, phase: str, seconds: float, rows: int) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds
        self.calls[phase] = self.calls.get(phase, 0) + 1
        self.rows[phase] = self.rows.get(phase, 0) + rows

    def install(self, outbox: Any) -> None:
        claim, write, send = outbox._claim, outbox._write, outbox._send

        async def timed_claim(limit: int) -> Any:
            t = time.perf_counter()
            rows = await claim(limit)
            self.add("claim", time.perf_counter() - t, len(rows))
            return rows

        async def timed_write() -> None:
            n = len(outbox._outcomes)
            t = time.perf_counter()
            await write()
            if n:
                self.add("write", time.perf_counter() - t, n)

        async def timed_send(row: Any, pace: Any) -> Any:
            t = time.perf_counter()
            try:
                return await send(row, pace)
            finally:
                self.add("send", time.perf_counter() - t, 1)

        outbox._claim, outbox._write, outbox._send = timed_claim, timed_write, timed_send

    def summary(self, wall: float) -> str:
        parts = []
        for phase in ("claim", "send", "write"):
            n = self.calls.get(phase, 0)
            if n:
                parts.append(f"{phase}: {n} × {self.seconds[phase] / n * 1000:.1f} ms "
                             f"({self.rows[phase] / n:.1f} rows each, busy {self.seconds[phase] / wall:.0%} of the wall"
                             f"{' summed over concurrent sends' if phase == 'send' else ''})")
        return "; ".join(parts)



@dataclass
class Result:
    case: str
    latency: float
    limited: bool
    recipients: int
    copies_per_s: float
    lost: int
    duplicated: int
    too_many: int
    card_edits: int
    wall: float
    statuses: dict[str, int]
    engine_cpu: float
    fake_cpu: float
    phases: str = ""
    failing: float = 0.0
    attempts: int = 0
    attempts_per_s: float = float("nan")
    faults: dict[str, int] | None = None
    per_second: list[int] | None = None
    by_attempts: dict[int, int] | None = None  # copies by the number of attempts they took

    @property
    def ratio(self) -> float:
        return self.copies_per_s / LIMIT


async def run_case(case: str, *, recipients: int, latency: float, limited: bool, card: bool,
                   profile: Any = None, failing: float = 0.0) -> Result:
    from aiogram import Bot
    from aiogram.client.default import DefaultBotProperties
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.enums import ParseMode
    from sqlalchemy import func, select

    from bot.i18n import create_i18n
    from bot.outbox import Outbox
    from bot.posts import progress_hook
    from storage.models import Delivery, DeliveryStatus
    from tests.seed import create_database, enqueue_post, seed_school

    with tempfile.TemporaryDirectory(prefix="parta-broadcast-") as tmp:
        engine, session_maker = await create_database(f"sqlite+aiosqlite:///{tmp}/bench.sqlite3")
        school = await seed_school(session_maker, parents=recipients)
        post_id, n = await enqueue_post(session_maker, school, "Родительское собрание в пятницу в 18:00", card=card)
        assert n == recipients
        fake = await FakeProcess.start(limits=limited, latency=latency,
                                       users=[school.teacher_tg, *school.parent_tgs], author=school.teacher_tg,
                                       failing=failing)
        bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(fake.url)),
                  default=DefaultBotProperties(parse_mode=ParseMode.HTML))
        outbox = Outbox(session_maker, bot, rate=LIMIT if limited else 0.0, per_chat_interval=1.0)
        if card:
            outbox.on_progress = progress_hook(session_maker, create_i18n("ru"), "ru", outbox.wake)
        phases = Phases()
        phases.install(outbox)
        open_statuses = (DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value)

        async def open_copies() -> int:
            async with session_maker() as s:
                return await s.scalar(select(func.count()).select_from(Delivery).where(
                    Delivery.topic == "post", Delivery.status.in_(open_statuses))) or 0

        try:
            cpu0, t0 = time.process_time(), time.perf_counter()
            if profile is not None:
                profile.enable()
            await outbox.start()
            try:
                while await open_copies():
                    await asyncio.sleep(0.1)
                    if time.perf_counter() - t0 > recipients / (LIMIT if limited else 100) * (1 + failing * 3) + 120:
                        raise RuntimeError(f"{case}: not done after {time.perf_counter() - t0:.0f} s")
            finally:
                await outbox.stop()
                if profile is not None:
                    profile.disable()
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            stats = await fake.stats()
            async with session_maker() as s:
                rows = await s.execute(select(Delivery.status, func.count())
                                       .where(Delivery.topic == "post").group_by(Delivery.status))
                statuses = {status: count for status, count in rows}
                rows = await s.execute(select(Delivery.attempts, func.count())
                                       .where(Delivery.topic == "post").group_by(Delivery.attempts))
                by_attempts = {attempts: count for attempts, count in rows}
        finally:
            await bot.session.close()
            await fake.stop()
            await engine.dispose()
    received = {int(k): v for k, v in stats["received"].items()}
    span = (stats["last"] - stats["first"]) if stats["copies"] > 1 else float("nan")
    return Result(
        case=case, latency=latency, limited=limited, recipients=recipients,
        copies_per_s=(stats["copies"] - 1) / span if span and span == span else float("nan"),
        lost=sum(1 for t in school.parent_tgs if not received.get(t)),
        duplicated=sum(max(0, received.get(t, 0) - 1) for t in school.parent_tgs),
        too_many=stats["too_many"], card_edits=stats["edits"], wall=wall, statuses=statuses,
        engine_cpu=cpu, fake_cpu=stats["cpu"], phases=phases.summary(wall), failing=failing,
        attempts=stats["attempts"], faults=stats["faults"], per_second=stats["per_second"], by_attempts=by_attempts,
        attempts_per_s=(stats["attempts"] - 1) / (stats["attempts_last"] - stats["attempts_first"])
        if stats["attempts"] > 1 else float("nan"),
    )


# -- report -------------------------------------------------------------------------------------------------


def table(results: list[Result]) -> str:
    lines = [
        "| case | limits (fake / outbox) | latency | recipients | copies/s (first→last) | ratio to 30/s "
        "| lost | duplicated | 429s | card edits | wall s | engine CPU | fake CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        limits = "30/s + 1/s/chat / 30/s" if r.limited else "off / rate=0"
        if r.limited:
            goal = GOAL_FAILING if r.failing else GOAL_RATIO
            ratio = f"{r.ratio:.3f} {'✅' if r.ratio >= goal else '❌'}"
        else:
            ratio = f"— ({'✅' if r.copies_per_s >= GOAL_LIFTED else '❌'} goal ≥ {GOAL_LIFTED:.0f}/s)"
        lines.append(
            f"| {r.case} | {limits} | {r.latency * 1000:.0f} ms | {r.recipients} | {r.copies_per_s:,.1f} | {ratio} "
            f"| {r.lost} | {r.duplicated} | {r.too_many} | {r.card_edits} | {r.wall:.1f} "
            f"| {r.engine_cpu / r.wall:.0%} | {r.fake_cpu / r.wall:.0%} |"
        )
    return "\n".join(lines)


def profile_report(profile: Any, top: int = 25) -> str:
    """Where the engine process spent its CPU: by package, then the top functions."""
    import pstats

    stats = pstats.Stats(profile)
    by_package: dict[str, float] = {}
    total = 0.0
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        total += tottime
        path = filename.replace("\\", "/")
        if "epoll" in name or "select" == name:
            package = "idle: waiting in epoll (the database thread, the fake, timers)"
        elif "site-packages/" in path:
            package = path.split("site-packages/")[1].split("/")[0]
        elif "/work/" in path or str(ROOT) in path:
            package = "parta: " + path.split(str(ROOT) + "/")[-1]
        elif path.startswith("~") or path.startswith("<"):
            package = "builtins"
        else:
            package = "stdlib: " + Path(path).name
        by_package[package] = by_package.get(package, 0.0) + tottime
    lines = ["", "Engine CPU by package (cProfile own time; aiosqlite's worker thread is not included):", "",
             "| package / module | s | share |", "|---|---|---|"]
    for package, seconds in sorted(by_package.items(), key=lambda kv: -kv[1])[:15]:
        lines.append(f"| {package} | {seconds:.2f} | {seconds / total:.0%} |")
    lines += ["", f"Top {top} functions by cumulative time:", "", "```"]
    import io

    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(top)
    lines += [line for line in out.getvalue().splitlines() if line.strip()][-top - 2:]
    lines.append("```")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    import logging

    import aiogram
    import aiohttp
    import sqlalchemy

    logging.basicConfig(level=logging.ERROR)
    n = 300 if args.quick else args.recipients
    print(f"Python {platform.python_version()}, aiogram {aiogram.__version__}, aiohttp {aiohttp.__version__}, "
          f"SQLAlchemy {sqlalchemy.__version__}, {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"{n} recipients per case; SQLite file database; the fake Bot API in a child process; "
          f"load average before: {os.getloadavg()[0]:.1f}\n", flush=True)
    cases: list[tuple[str, float, bool, bool, float]] = []  # (case, latency, limited, card, failing)
    for latency in (0.05, 0.2):
        cases.append(("copies", latency, True, False, 0.0))
        if not args.quick:
            cases.append(("as /post", latency, True, True, 0.0))
    cases.append(("copies, 10 % failing", 0.05, True, False, FAILING))
    cases.append(("lifted, copies", 0.0, False, False, 0.0))
    cases.append(("lifted, as /post", 0.0, False, True, 0.0))
    if args.only:
        cases = [c for c in cases if args.only in c[0]]
    results = []
    for case, latency, limited, card, failing in cases:
        r = await run_case(case, recipients=n, latency=latency, limited=limited, card=card, failing=failing)
        print(f"  {case}, {latency * 1000:.0f} ms: {r.copies_per_s:,.1f} copies/s, lost {r.lost}, "
              f"duplicated {r.duplicated}, 429s {r.too_many}, statuses {r.statuses}; "
              f"load average {os.getloadavg()[0]:.1f}\n    {r.phases}", flush=True)
        if failing:
            seconds = r.per_second or []
            full = [c for c in seconds if c >= LIMIT * 0.8]
            print(f"    faults injected {r.faults}; {r.attempts} attempts for {r.recipients} copies "
                  f"({r.attempts / r.recipients:.3f} per copy); every attempt: {r.attempts_per_s:.1f}/s "
                  f"({r.attempts_per_s / LIMIT:.3f} of the limit); copies/s over its {len(seconds)} s: "
                  f"{len(full)} s at ≥ 80 % of the limit, the last 10 s {seconds[-10:]}; "
                  f"copies by attempts taken {dict(sorted((r.by_attempts or {}).items()))}", flush=True)
        results.append(r)
    print()
    print(table(results))
    weak = [r for r in results if (r.limited and not r.failing and r.ratio < GOAL_RATIO)
            or (not r.limited and r.copies_per_s < GOAL_LIFTED)]
    if args.profile or weak:
        import cProfile

        print("\nProfiling the lifted case (copies only)…", flush=True)
        profile = cProfile.Profile()
        r = await run_case("lifted, copies (profiled)", recipients=n, latency=0.0, limited=False, card=False,
                           profile=profile)
        print(f"profiled run: {r.copies_per_s:,.1f} copies/s (cProfile slows it down)")
        print(profile_report(profile))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 recipients, the 'copies' cases only")
    parser.add_argument("--recipients", type=int, default=2000)
    parser.add_argument("--profile", action="store_true", help="profile the lifted case even if it meets its goal")
    parser.add_argument("--only", metavar="TEXT", help="run only the cases whose name contains TEXT")
    parser.add_argument("--serve-fake", metavar="CONFIG", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve_fake:
        asyncio.run(serve_fake(json.loads(arguments.serve_fake)))
    else:
        asyncio.run(main(arguments))
