"""Throughput of the whole bot process, and whether Telegram's latency caps it.

Run from the repository root:

    .venv/bin/python bench/throughput.py                 # 1,000 people, SQLite and PostgreSQL, 0 and 100 ms
    .venv/bin/python bench/throughput.py --people 200    # fewer people (the presses keep their rate: 100/s)
    .venv/bin/python bench/throughput.py --db sqlite --latency 0 --latency 50

What is measured. The real `python -m bot` process (long polling, settings from
the environment, migrations at start-up), pointed with TELEGRAM_API_URL at the
fake Bot API (tests/fake_telegram.py) over HTTP, with the fake's flood limits
off and SEND_RATE=0, so the engine is what is measured; every Bot API call
takes the given latency (getUpdates too, as a round trip to Telegram does).
The fake and the people run in this process; the bot in its own.

Per database and latency, in one run:

1. joins: N people join a seeded school through the real dialog
   (`/start <code>` from the invitation link, the full name, the child's name,
   ✅ Join — four updates each), 32 people at a time (each waits for the bot's
   answer before the next step, as a person does). Updates/s = the updates
   answered / the wall time of the phase (4N when nothing fails); joins/s =
   the people who joined / the same;
2. the teacher posts an announcement asking to acknowledge (the /post dialog
   through the bot) and all N copies arrive;
3. presses: the N people press Acknowledge at an even pace of `--press-rate`
   presses per second (default 100/s: 1,000 presses in 10 s), not waiting for
   each other. Time from a press to its callback answer, as the fake sees them
   (the press is created → answerCallbackQuery reached the fake): p50 / p99
   (Telegram shows an error to the person after about 15 s; goal p99 ≤ 1 s).

Printed: a table per case, the ratio of updates/s at each latency to 0 ms on
the same database (goal ≥ 0.8: latency no longer caps throughput), the bot's
CPU share during the joins (2 cores), and anything that failed (updates the
bot logged as failed, apologies, tracebacks, unanswered steps).

PostgreSQL: BENCH_DATABASE_URL (default the database test_throughput on
127.0.0.1:5432), wiped at the start of each case.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.load import (  # noqa: E402
    apologies,
    BOT_USERNAME,
    TOKEN,
    BotProcess,
    Someone,
    WatchedTelegram,
    percentile,
    post_with_acknowledgement,
    prepare_database,
)
from tests.seed import FIRST_PARENT_ID  # noqa: E402

PG_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test_throughput")
GOAL_RATIO = 0.8
GOAL_P99 = 1.0


@dataclass
class Result:
    db: str
    latency: float
    people: int
    joined: int
    join_wall: float
    join_updates: int
    step_p50: float
    step_p99: float
    bot_cpu_share: float
    press_rate: float
    press_p50: float
    press_p99: float
    press_max: float
    press_handling_p99: float
    press_fetch_p99: float  # press → the bot's getUpdates took it
    press_bot_cpu: float  # the bot's CPU share during the presses
    press_loop_cpu: float  # …of its main thread (the event loop; its database threads are the rest)
    press_bench_cpu: float  # this process's (the fake and the people): it must not be what is measured
    presses_answered: int
    presses_apologised: int  # answered with the apology: the update failed
    presses_per_s: float
    failed_updates: int
    apologies: int
    tracebacks: list[str] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)

    @property
    def updates_per_s(self) -> float:
        return self.join_updates / self.join_wall

    @property
    def joins_per_s(self) -> float:
        return self.joined / self.join_wall


async def every_copy(tg: WatchedTelegram, joined: list[Someone], quiet: float = 20.0) -> list[tuple[Someone, tuple]]:  # type: ignore[type-arg]
    """(person, their copy's Acknowledge button) once everyone who joined has the post,
    or once no new copy arrived for `quiet` seconds (an update that failed leaves someone out)."""
    loop = asyncio.get_running_loop()
    count, changed = -1, loop.time()
    while True:
        found = [(p, b) for p in joined if (b := p.button("p:ack:")) is not None]
        if len(found) != count:
            count, changed = len(found), loop.time()
        if count == len(joined) or loop.time() - changed > quiet:
            return found
        await asyncio.sleep(0.5)


async def run_case(db: str, latency: float, people: int, concurrency: int, press_rate: float, tmp: Path,
                   logs: Path) -> Result:
    url = f"sqlite+aiosqlite:///{tmp}/{db}-{int(latency * 1000)}.sqlite3" if db == "sqlite" else PG_URL
    prepared = await prepare_database(url)
    school, code = prepared.school, prepared.code
    ids = [FIRST_PARENT_ID + i for i in range(people)]
    async with WatchedTelegram(token=TOKEN, bot_username=BOT_USERNAME) as tg:
        tg.add_user(school.teacher_tg, "Anna", language_code="en", started=True)
        for i, uid in enumerate(ids):
            tg.add_user(uid, f"Родитель {i + 1}")
        log = logs / f"bot-{db}-{int(latency * 1000)}.log"
        async with BotProcess(tg, url, log, SEND_RATE="0") as bot:
            tg.latency = latency
            persons = [Someone(tg, uid) for uid in ids]
            unanswered: list[str] = []

            # 1. joins, `concurrency` people at a time
            queue: asyncio.Queue[tuple[int, Someone]] = asyncio.Queue()
            for i, p in enumerate(persons):
                queue.put_nowait((i, p))

            async def joiner() -> None:
                while not queue.empty():
                    i, p = queue.get_nowait()
                    try:
                        await p.join(code, f"Родитель Номер {i + 1}", f"Ребёнок Номер {i + 1}")
                    except TimeoutError as e:
                        unanswered.append(str(e))
                        p.unanswered.append(str(e))

            cpu0, t0 = bot.cpu_seconds(), time.monotonic()
            await asyncio.gather(*(joiner() for _ in range(concurrency)))
            join_wall = time.monotonic() - t0
            cpu_share = (bot.cpu_seconds() - cpu0) / join_wall
            steps = [d for p in persons for _what, d in p.answers]
            joined = [p for p in persons if not p.unanswered]
            print(f"    joins: {len(joined)}/{people} in {join_wall:.1f} s", flush=True)

            # 2. the post, to everyone who joined
            teacher = Someone(tg, school.teacher_tg)
            await post_with_acknowledgement(teacher, "Родительское собрание в пятницу в 18:00. Прочитайте, пожалуйста.")
            with_copy = await every_copy(tg, joined)
            print(f"    the post reached {len(with_copy)} of the {len(joined)} who joined", flush=True)

            # 3. presses at an even pace, not waiting for each other
            for p in persons:
                p.answers.clear()
            step = 1.0 / press_rate
            start = asyncio.get_running_loop().time()
            cpu0, own0, t0 = bot.cpu_seconds(), time.process_time(), time.monotonic()
            loop0 = bot.cpu_seconds(main_thread=True)

            async def presser(k: int, p: Someone, msg_data: tuple) -> None:  # type: ignore[type-arg]
                await asyncio.sleep(max(0.0, start + k * step - asyncio.get_running_loop().time()))
                try:
                    await p.press_on(*msg_data, timeout=900)
                except TimeoutError as e:
                    unanswered.append(str(e))

            await asyncio.gather(*(presser(k, p, c) for k, (p, c) in enumerate(with_copy)))
            press_wall = time.monotonic() - t0
            press_bot_cpu = (bot.cpu_seconds() - cpu0) / press_wall
            press_loop_cpu = (bot.cpu_seconds(main_thread=True) - loop0) / press_wall
            press_bench_cpu = (time.process_time() - own0) / press_wall
            answers = [a for a in tg.answered_callbacks if a.data.startswith("p:ack:")]
            delays = [a.delay for a in answers]
            handling = [a.handling for a in answers if a.handling is not None]
            fetching = [a.delivered_at - a.asked_at for a in answers if a.delivered_at is not None]
            span = max(a.answered_at for a in answers) - min(a.asked_at for a in answers) if answers else float("nan")
            APOLOGIES = apologies()
            sorry = sum(1 for a in answers if a.text and any(s in a.text for s in APOLOGIES))
            apologies_seen = sum(1 for uid in ids for m in tg.bot_messages(uid) if any(m.matches(s) for s in APOLOGIES))
            apologies_seen += sum(1 for a in tg.answered_callbacks if a.text and any(s in a.text for s in APOLOGIES))
            result = Result(
                db=db, latency=latency, people=people, joined=len(joined), join_wall=join_wall,
                join_updates=len(steps),
                step_p50=percentile(steps, 50), step_p99=percentile(steps, 99), bot_cpu_share=cpu_share,
                press_rate=press_rate, press_p50=percentile(delays, 50), press_p99=percentile(delays, 99),
                press_max=max(delays, default=float("nan")), press_handling_p99=percentile(handling, 99),
                press_fetch_p99=percentile(fetching, 99), press_bot_cpu=press_bot_cpu, press_loop_cpu=press_loop_cpu,
                press_bench_cpu=press_bench_cpu,
                presses_answered=len(answers), presses_apologised=sorry, presses_per_s=(len(answers) / span) if answers else 0.0,
                failed_updates=len(bot.failed_updates()), apologies=apologies_seen,
                tracebacks=bot.tracebacks(), unanswered=unanswered,
            )
    return result


def table(results: list[Result]) -> str:
    base = {r.db: r.updates_per_s for r in results if r.latency == 0}
    lines = [
        "| database | API latency | joined | updates/s (joins) | ratio to 0 ms | joins/s | answer p50 / p99 (join steps) "
        "| bot CPU (of 1 core) | presses (of them failed) | press → answer p50 / p99 / max | answered/s "
        "| failed updates | apologies |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ratio = r.updates_per_s / base[r.db] if r.db in base else float("nan")
        mark = "" if r.latency == 0 else (" ✅" if ratio >= GOAL_RATIO else " ❌")
        p99_mark = "✅" if r.press_p99 <= GOAL_P99 else "❌"
        lines.append(
            f"| {r.db} | {r.latency * 1000:.0f} ms | {r.joined}/{r.people} | {r.updates_per_s:.1f} | {ratio:.2f}{mark} "
            f"| {r.joins_per_s:.2f} | {r.step_p50 * 1000:,.0f} / {r.step_p99 * 1000:,.0f} ms | {r.bot_cpu_share:.0%} "
            f"| {r.presses_answered} at {r.press_rate:.0f}/s ({r.presses_apologised}) | {r.press_p50 * 1000:,.0f} / {r.press_p99 * 1000:,.0f} / "
            f"{r.press_max * 1000:,.0f} ms {p99_mark} | {r.presses_per_s:.1f} | {r.failed_updates} | {r.apologies} |"
        )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    import logging

    import aiogram
    import sqlalchemy

    logging.basicConfig(level=logging.ERROR)
    latencies = [ms / 1000 for ms in (args.latency or [0, 100])]
    if 0 not in latencies:
        latencies.insert(0, 0.0)
    dbs = args.db or ["sqlite", "postgresql"]
    print(f"Python {platform.python_version()}, aiogram {aiogram.__version__}, SQLAlchemy {sqlalchemy.__version__}, "
          f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
    print(f"{args.people} people, {args.concurrency} at a time; presses at {args.press_rate:.0f}/s; "
          f"fake flood limits off, SEND_RATE=0; latencies {[int(x * 1000) for x in latencies]} ms\n", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="parta-throughput-") as tmp:
        logs = Path(args.keep_logs) if args.keep_logs else Path(tmp)
        for db in dbs:
            for latency in latencies:
                print(f"  {db}, {latency * 1000:.0f} ms …", flush=True)
                r = await run_case(db, latency, args.people, args.concurrency, args.press_rate, Path(tmp), logs)
                print(f"    {r.updates_per_s:.1f} updates/s, {r.joins_per_s:.2f} joins/s; {r.presses_answered} presses "
                      f"answered, {r.presses_apologised} of them with the apology; p50 "
                      f"{r.press_p50 * 1000:,.0f} ms p99 {r.press_p99 * 1000:,.0f} ms; failed {r.failed_updates}, "
                      f"apologies {r.apologies}, tracebacks {len(r.tracebacks)}, unanswered {len(r.unanswered)}; "
                      f"load average {os.getloadavg()[0]:.1f}", flush=True)
                print(f"    presses: p99 press → fetched by the bot {r.press_fetch_p99 * 1000:,.0f} ms, "
                      f"fetched → answered {r.press_handling_p99 * 1000:,.0f} ms; CPU during the presses: "
                      f"bot {r.press_bot_cpu:.0%} (its event loop {r.press_loop_cpu:.0%}), this process (fake + people) {r.press_bench_cpu:.0%}", flush=True)
                for line, n in Counter(t[:160] for t in r.tracebacks).most_common(3):
                    print(f"      {n} × {line}")
                for line in r.unanswered[:3]:
                    print(f"      {line}")
                results.append(r)
    print()
    print(table(results))
    print(f"\nGoals: updates/s at each latency ≥ {GOAL_RATIO} of 0 ms on the same database; "
          f"press → answer p99 ≤ {GOAL_P99:.0f} s.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=1000, help="how many people join and press (default 1,000)")
    parser.add_argument("--concurrency", type=int, default=32, help="people joining at once (default 32)")
    parser.add_argument("--press-rate", type=float, default=100.0, help="presses per second (default 100)")
    parser.add_argument("--latency", type=int, action="append", metavar="MS",
                        help="API latency in ms (repeatable; default 0 and 100; 0 is always run)")
    parser.add_argument("--db", action="append", choices=["sqlite", "postgresql"], help="default both")
    parser.add_argument("--keep-logs", metavar="DIR", help="copy the bot's logs here")
    asyncio.run(main(parser.parse_args()))
