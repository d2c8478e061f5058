"""Large deployments, on the real servers: three `python -m bot` webhook
workers on PostgreSQL and Redis, with the fake Bot API playing Telegram — it
enforces the limits, and this test delivers its updates to the workers the way
Telegram does (POST with the secret token; no answer → deliver again,
here to another worker).

- a post to 1,000 recipients: each gets it exactly once, with the limits kept
  by all three together (no 429);
- the worker running the scheduler is killed with SIGKILL: another takes the
  clock over and a reminder still goes out once;
- a worker is killed in the middle of an update: Telegram delivers it again
  to another worker, and it is applied once.

Skipped, with the reason, where PostgreSQL (127.0.0.1:5432) or Redis
(127.0.0.1:6379) is not running; `.ci/run` makes sure they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select, text

from storage.db import create_engine, create_session_maker
from storage.models import DueItem, Lease, Relay, WeeklyItem, utcnow
from tests.fake_telegram import ApiError, FakeTelegram, RateLimits
from tests.seed import enqueue_post, seed_school
from tests.test_e2e import ROOT, TOKEN, clean_env

PG = os.environ.get("SCALE_PG_ADMIN_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("SCALE_REDIS_URL", "redis://127.0.0.1:6379/15")
SECRET = "scale-test-secret"
ADMIN = 1001
RATE = 60  # messages per second for all workers together (the fake enforces the same)


async def _reachable() -> str | None:
    try:
        import asyncpg

        conn = await asyncpg.connect(PG.replace("postgresql+asyncpg", "postgresql"), timeout=3)
        await conn.close()
    except Exception as e:
        return f"PostgreSQL is not reachable at 127.0.0.1:5432 ({e.__class__.__name__})"
    try:
        from redis.asyncio import Redis

        redis = Redis.from_url(REDIS)
        await redis.ping()
        await redis.aclose()
    except Exception as e:
        return f"Redis is not reachable at 127.0.0.1:6379 ({e.__class__.__name__})"
    return None


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    import asyncpg

    name = f"parta_scale_{secrets.token_hex(4)}"
    admin = PG.replace("postgresql+asyncpg", "postgresql")
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    try:
        yield PG.rsplit("/", 1)[0] + "/" + name
    finally:
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Workers:
    """Three worker processes and Telegram's side of the webhook."""

    def __init__(self, tg: FakeTelegram, url: str, tmp: Path, count: int = 3, rate: float = RATE) -> None:
        self.tg, self.url, self.tmp = tg, url, tmp
        self.count, self.rate = count, rate
        self.ports = [free_port() for _ in range(count)]
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.delivered: list[tuple[int, int]] = []  # (update id, worker) answered 200
        self.in_flight: dict[int, int] = {}  # update id → the worker it is being posted to
        self.deliverer: asyncio.Task[None] | None = None

    async def start(self, i: int) -> None:
        env = clean_env(
            BOT_TOKEN=TOKEN, TELEGRAM_API_URL=self.tg.url, ADMIN_IDS=str(ADMIN), DATABASE_URL=self.url,
            REDIS_URL=REDIS, WEBHOOK_URL=f"http://127.0.0.1:{self.ports[i]}/tg/hook", WEBHOOK_SECRET=SECRET,
            WEBHOOK_PORT=str(self.ports[i]), WORKER_NAME=f"w{i}", SEND_RATE=str(self.rate),
            SCHEDULER_LEASE_SECONDS="4", SENDING_LEASE_SECONDS="10", TIMEZONE="Europe/Moscow",
        )
        log = (self.tmp / f"w{i}.log").open("ab")
        self.procs[i] = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log)

    async def healthy(self, i: int, timeout: float = 60) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(f"http://127.0.0.1:{self.ports[i]}/healthz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if self.procs[i].returncode is not None or loop.time() > deadline:
                    raise AssertionError(f"worker {i} did not come up\n{self.logs()}")
                await asyncio.sleep(0.2)

    def logs(self) -> str:
        return "\n".join(f"--- w{i} ---\n{p.read_text(errors='replace')[-3000:]}"
                         for i in range(self.count) if (p := self.tmp / f"w{i}.log").exists())

    def alive(self) -> list[int]:
        return [i for i, p in self.procs.items() if p.returncode is None]

    async def deliver(self) -> None:
        """Telegram's webhook: each pending update is POSTed until a worker answers 200."""
        turn = 0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            while True:
                pending = self.tg._pending  # noqa: SLF001 — the fake's queue of undelivered updates
                if not pending:
                    await asyncio.sleep(0.02)
                    continue
                update = pending[0]
                alive = self.alive()
                if not alive:
                    await asyncio.sleep(0.1)
                    continue
                i = alive[turn % len(alive)]
                turn += 1
                self.in_flight[update["update_id"]] = i
                try:
                    async with http.post(f"http://127.0.0.1:{self.ports[i]}/tg/hook", json=update,
                                         headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}) as r:
                        ok = r.status == 200
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    ok = False
                finally:
                    self.in_flight.pop(update["update_id"], None)
                if ok:
                    pending.remove(update)
                    self.delivered.append((update["update_id"], i))
                else:
                    await asyncio.sleep(0.1)  # Telegram retries later, possibly elsewhere

    async def __aenter__(self) -> Workers:
        for i in range(self.count):
            await self.start(i)
        for i in range(self.count):
            await self.healthy(i)
        self.deliverer = asyncio.create_task(self.deliver())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.deliverer is not None:
            self.deliverer.cancel()
        for p in self.procs.values():
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                await asyncio.wait_for(p.wait(), 15)
            except TimeoutError:
                p.kill()
                await p.wait()
        if exc[0] is not None:
            print(self.logs())


async def until(predicate: Any, what: str, timeout: float, workers: Workers) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await predicate() if asyncio.iscoroutinefunction(predicate) else predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{workers.tg.dump(10)}\n{workers.logs()}")
        await asyncio.sleep(0.1)


async def migrate(url: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "migrate", cwd=ROOT, env=clean_env(BOT_TOKEN=TOKEN, DATABASE_URL=url),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()


async def test_three_webhook_workers_on_postgresql_and_redis(tmp_path: Path) -> None:
    reason = await _reachable()
    if reason:
        pytest.skip(reason)
    from redis.asyncio import Redis

    redis = Redis.from_url(REDIS)
    await redis.flushdb()
    await redis.aclose()
    async with fresh_database() as url:
        await migrate(url)
        engine = create_engine(url)
        sm = create_session_maker(engine)
        school = await seed_school(sm, parents=1000)
        # The global limit as Telegram counts it; the per-chat pacing of the outbox is
        # tested in tests/test_delivery.py (here a person's quick button presses would trip it).
        async with FakeTelegram(token=TOKEN, limits=RateLimits(global_calls=RATE, private_calls=None)) as tg:
            tg.add_user(ADMIN, "Админ", language_code="en", started=True)
            tg.add_user(school.teacher_tg, "Anna", language_code="en", started=True)
            tg.mark_started(*school.parent_tgs)
            async with asyncio.timeout(240), Workers(tg, url, tmp_path) as workers:
                # == 1. A post to 1,000 parents, sent by three workers sharing the limits.
                await enqueue_post(sm, school, "Собрание в пятницу", card=False)
                # The outbox rows were written outside the workers: they find them on their sweep.
                await until(lambda: sum(tg.received[p] for p in school.parent_tgs) >= 1000,
                            "1,000 copies", 120, workers)
                await asyncio.sleep(1.0)  # anything extra would have arrived by now
                counts = [tg.received[p] for p in school.parent_tgs]
                assert counts.count(1) == 1000, f"lost {counts.count(0)}, duplicated {sum(c - 1 for c in counts if c > 1)}"
                # Three processes on a busy two-core machine reach the fake with jitter; the shared
                # pacer keeps 15 % headroom. A stray 429 is handled (everyone pauses), so allow
                # at most 1 % of the calls, and print the figure.
                refused = [str(c) for c in tg.calls if c.error and "429" in str(c.error)][:3]
                print(f"429s: {tg.too_many_requests} of {len(tg.calls_to('sendMessage'))} calls")
                assert tg.too_many_requests <= 10, f"{tg.too_many_requests} × 429 (the shared limit broken): {refused}"
                async with sm() as s:
                    claimed_by = dict((await s.execute(text(
                        "SELECT claimed_by, count(*) FROM delivery WHERE topic = 'post' GROUP BY claimed_by"))).all())
                print(f"copies sent per worker: {claimed_by}")
                assert len(claimed_by) >= 2, f"one worker did everything: {claimed_by}"

                # == 2. The scheduler's worker dies; another takes the clock and the reminder goes once.
                async with sm() as s:
                    leader = await s.scalar(select(Lease.holder).where(Lease.name == "scheduler"))
                assert leader in ("w0", "w1", "w2"), leader
                async with sm.begin() as s:
                    weekly = WeeklyItem(org_id=school.org_id, group_id=school.group_id, title="Бассейн",
                                        weekday=0, time_of_day="10:00", remind_minutes=30)
                    s.add(weekly)
                    await s.flush()
                    s.add(DueItem(org_id=school.org_id, kind="weekly_reminder", ref_id=weekly.id, minutes=30,
                                  due_at=utcnow() + timedelta(seconds=3), key=f"weekly:{weekly.id}:scale"))
                workers.procs[int(leader[1])].kill()  # SIGKILL: no goodbye, the lease just runs out
                await workers.procs[int(leader[1])].wait()
                received_before = {p: tg.received[p] for p in school.parent_tgs}
                await until(lambda: all(tg.received[p] == received_before[p] + 1 for p in school.parent_tgs),
                            "the reminder at every parent", 90, workers)
                await asyncio.sleep(1.0)
                assert all(tg.received[p] == received_before[p] + 1 for p in school.parent_tgs), "a reminder twice"
                async with sm() as s:
                    new_leader = await s.scalar(select(Lease.holder).where(Lease.name == "scheduler"))
                assert new_leader != leader

                # == 3. An update no longer waits on Telegram: its answer leaves after the commit.
                # The fake holds the worker's answer for 8 s; the webhook POST has long been
                # answered (nothing in flight), and the relayed message arrives once.
                slowed: list[str] = []

                async def slow_first_answer(method: str, params: dict[str, Any]) -> ApiError | None:
                    if method == "sendMessage" and params.get("chat_id") == school.teacher_tg and not slowed \
                            and "✅" in str(params.get("text", "")):
                        slowed.append(method)
                        await asyncio.sleep(8)
                    return None

                tg.before_call = slow_first_answer
                await tg.send_text(school.teacher_tg, "/write")
                await until(lambda: any(("w:admins" in d) for m in tg.bot_messages(school.teacher_tg)
                                        for d in m.callback_data), "the /write menu", 30, workers)
                menu = [m for m in tg.bot_messages(school.teacher_tg) if any("w:admins" in d for d in m.callback_data)][-1]
                await tg.press_button(school.teacher_tg, menu.message_id, next(d for d in menu.callback_data if "w:admins" in d))
                await until(lambda: any("Send your message" in (m.text or "") for m in tg.bot_messages(school.teacher_tg)),
                            "the prompt", 30, workers)
                await tg.send_text(school.teacher_tg, "Прошу перенести собрание")
                await until(lambda: bool(slowed), "the answer on its way", 30, workers)
                await asyncio.sleep(1.0)
                assert not workers.in_flight, "an update waited on Telegram's answer to its own reply"
                await until(lambda: sum(1 for m in tg.bot_messages(ADMIN) if "Прошу перенести" in (m.text or "")) >= 1,
                            "the relayed message at the admin", 60, workers)
                await asyncio.sleep(2.0)
                async with sm() as s:
                    relays = await s.scalar(select(func.count()).select_from(Relay))
                copies = sum(1 for m in tg.bot_messages(ADMIN) if "Прошу перенести" in (m.text or ""))
                assert (relays, copies) == (1, 1), f"{relays} relays, {copies} copies at the admin"
        await engine.dispose()
