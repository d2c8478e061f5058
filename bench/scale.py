"""Webhook workers on PostgreSQL and Redis: 1 worker against 3.

    .venv/bin/python bench/scale.py            # 600 updates, 900 copies per case
    .venv/bin/python bench/scale.py --quick

Prints, in one run on this machine: updates per second through 1 and 3
`python -m bot` webhook workers (each update a member's /start, posted the way
Telegram posts them, many at once), and broadcast throughput with 1 and 3
workers sharing one limit (SEND_RATE, enforced by the fake Bot API too). The
workers are real processes; the fake and the load generator share one more.
Needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from storage.db import create_engine, create_session_maker  # noqa: E402
from tests.fake_telegram import FakeTelegram, RateLimits  # noqa: E402
from tests.seed import enqueue_post, seed_school  # noqa: E402
from tests.test_scale import SECRET, TOKEN, Workers, _reachable, fresh_database, migrate  # noqa: E402

RATE = 60


async def updates_per_second(workers: Workers, senders: list[int], n: int, concurrency: int = 24) -> float:
    """n updates (/start of members), POSTed concurrently round-robin; rate of 200s."""
    tg = workers.tg
    updates = []
    for i in range(n):
        uid = senders[i % len(senders)]
        await tg.send_text(uid, "/start")
        updates.append(tg._pending.pop())  # noqa: SLF001 — we deliver them ourselves, timed
    queue: asyncio.Queue[dict] = asyncio.Queue()
    for u in updates:
        queue.put_nowait(u)
    done = 0

    async def poster(k: int) -> None:
        nonlocal done
        async with aiohttp.ClientSession() as http:
            while not queue.empty():
                update = queue.get_nowait()
                port = workers.ports[(k + done) % workers.count]
                async with http.post(f"http://127.0.0.1:{port}/tg/hook", json=update,
                                     headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}) as r:
                    assert r.status == 200, r.status
                done += 1

    start = time.perf_counter()
    await asyncio.gather(*(poster(k) for k in range(concurrency)))
    return n / (time.perf_counter() - start)


async def broadcast_rate(workers: Workers, sm, school, copies: int) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    tg = workers.tg
    await asyncio.sleep(2)  # the /start answers of the first part are out of the window
    tg.received.clear()
    tg.too_many_requests = 0  # count the broadcast's own
    before = len(tg.calls_to("sendMessage"))
    await enqueue_post(sm, school, "Собрание", card=False)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + copies / RATE * 3 + 60
    while sum(tg.received[p] for p in school.parent_tgs[:copies]) < copies:
        if loop.time() > deadline:
            raise SystemExit(f"broadcast did not finish\n{workers.logs()}")
        await asyncio.sleep(0.05)
    calls = [c for c in tg.calls_to("sendMessage")[before:] if c.ok]
    span = calls[-1].at - calls[0].at if len(calls) > 1 else 1.0
    return (len(calls) - 1) / span, tg.too_many_requests


async def case(count: int, n_updates: int, copies: int, tmp: Path) -> tuple[float, float, int]:
    async with fresh_database() as url:
        await migrate(url)
        engine = create_engine(url)
        sm = create_session_maker(engine)
        school = await seed_school(sm, parents=copies)
        from redis.asyncio import Redis

        redis = Redis.from_url("redis://127.0.0.1:6379/15")
        await redis.flushdb()
        await redis.aclose()
        async with FakeTelegram(token=TOKEN, limits=RateLimits(global_calls=RATE, private_calls=None)) as tg:
            tg.mark_started(*school.parent_tgs)
            async with Workers(tg, url, tmp / f"{count}", count=count, rate=RATE) as workers:
                ups = await updates_per_second(workers, school.parent_tgs, n_updates)
                rate, refused = await broadcast_rate(workers, sm, school, copies)
        await engine.dispose()
    return ups, rate, refused


async def main(args: argparse.Namespace) -> None:
    reason = await _reachable()
    if reason:
        raise SystemExit(f"scale bench needs the servers: {reason}")
    n_updates, copies = (150, 240) if args.quick else (600, 900)
    import aiogram
    import sqlalchemy

    print(f"Python {sys.version.split()[0]}, aiogram {aiogram.__version__}, SQLAlchemy {sqlalchemy.__version__}; "
          f"PostgreSQL + Redis on loopback; shared limit {RATE} msg/s; {n_updates} updates, {copies} copies")
    rows = []
    with tempfile.TemporaryDirectory(prefix="parta-scale-") as tmp:
        for count in (1, 3):
            (Path(tmp) / f"{count}").mkdir(exist_ok=True)
            rows.append((count, *await case(count, n_updates, copies, Path(tmp))))
    base_u, base_b = rows[0][1], rows[0][2]
    print("\n| workers | updates/s | ratio | broadcast msg/s (limit 60) | ratio | 429s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for count, ups, rate, refused in rows:
        print(f"| {count} | {ups:.0f} | {ups / base_u:.2f}× | {rate:.1f} | {rate / base_b:.2f}× | {refused} |")
    print("\nUpdates: more workers, more throughput (until the database or the 2 cores are the limit);"
          " broadcasts: the same shared limit, whatever the number of workers.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main(parser.parse_args()))
