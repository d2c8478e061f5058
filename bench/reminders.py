"""Reminders at scale: Parta's scheduler with 10,000 pending weekly reminders.

Run from the repository root:

    .venv/bin/python bench/reminders.py            # full run: 10,000 items
    .venv/bin/python bench/reminders.py --quick    # smoke run: 1,000 items over 5 s
    .venv/bin/python bench/reminders.py --profile  # also where the firing time goes (burst case)
    .venv/bin/python bench/reminders.py --cases burst --max-wait 300

A scheduler that keeps up finishes the full run in well under a minute; one
that does not is given up on --max-wait seconds (default 60) after the last
due moment, so the full run stays within about two and a half minutes, and
what never fired counts as at least that late ("≥" in the table).

Each case gets a fresh SQLite file database (WAL, as `storage.db` sets it up)
seeded through `tests.seed.seed_school`: one organisation (Europe/Moscow, no
quiet hours), one class group, a teacher and 3 active parents (one of them
reads English), and N `WeeklyItem` rows, each with one pending `DueItem` of
kind "weekly_reminder", keyed and timed as `bot.timeline.plan_weekly` would
(the reminder 60 minutes before the occurrence). Firing one runs the real
`Scheduler._weekly_reminder`: one outbox row per parent, rendered per locale,
and the next week's item planned.

Cases:

* spread — N items due uniformly over a window starting a few seconds after
  the scheduler starts;
* burst — of N pending items, B fall due at the same instant, the rest a day
  later (they only weigh on start-up and on every query);
* traced — N pending, one batch's worth due at once, run under tracemalloc
  for the Python heap's peak during the run (a run holds one batch at a time;
  its lateness is shown but is not a result: tracemalloc slows Python down
  several times). The armed `start()` of every case is traced (it is cheap).

Measured:

* start-up — `Scheduler.start()` with the N items pending (none due): the first
  call on a fresh engine, then the median of 5 more (each on a new Scheduler,
  stopped again), then the one that stays armed;
* lateness — with `wake_outbox` a no-op the real scheduler (APScheduler armed by
  `start()`) runs until every item due in the window is done (or --max-wait);
  per item,
  `fired_at − due_at` from the database (the moment of the claim), and
  "visible" lateness: the commit of the transaction that made its outbox rows
  (sqlalchemy `after_commit`) − due_at, when the outbox could first see them;
* correctness — every item done exactly once (state, unique keys, outbox rows
  per reminder = parents), the next week's items planned once each;
* batches — the scheduler's transactions: how many, their size and duration
  (claim moment → commit), busy time and the cost per item; APScheduler's job
  runs and runs it skipped ("maximum number of running instances reached");
  if the scheduler holds a lease (`storage.models.Lease`), how regularly it was
  renewed during the run and whether it ran out.

Nothing is sent: the outbox rows stay pending.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import functools
import importlib.metadata
import inspect
import logging
import os
import platform
import re
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

_T0 = time.perf_counter()
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import apscheduler  # noqa: E402
import sqlalchemy  # noqa: E402
from apscheduler.events import (  # noqa: E402
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
)
from sqlalchemy import event, func, insert, select, update  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from bot.i18n import create_i18n  # noqa: E402
from bot.scheduler import BATCH, BURST_BATCH, Scheduler  # noqa: E402
from storage.models import (  # noqa: E402
    Delivery,
    DueItem,
    DueKind,
    DueState,
    Organisation,
    Person,
    WeeklyItem,
    utcnow,
)
from tests.seed import create_database, seed_school  # noqa: E402

ZONE = "Europe/Moscow"
REMIND = 60  # minutes before the occurrence
PARENTS = 3
GOAL_P99 = 1.0  # seconds
TOPIC = "weekly_reminder"


def _noop() -> None:
    pass


# -- instrumentation -------------------------------------------------------------------


class Commits:
    """Wall-clock moments of every ORM commit while armed (the scheduler's batches)."""

    def __init__(self) -> None:
        self.armed = False
        self.times: list[datetime] = []
        event.listen(Session, "after_commit", self._after_commit)

    def _after_commit(self, _session: Session) -> None:
        if self.armed:
            self.times.append(utcnow())

    def close(self) -> None:
        event.remove(Session, "after_commit", self._after_commit)


class ApsEvents:
    """APScheduler's own account of the jobs it ran, and warnings it logged."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.warnings: list[str] = []

    def listener(self, ev: Any) -> None:
        name = {
            EVENT_JOB_SUBMITTED: "submitted", EVENT_JOB_EXECUTED: "executed", EVENT_JOB_ERROR: "error",
            EVENT_JOB_MAX_INSTANCES: "skipped (max instances)", EVENT_JOB_MISSED: "missed",
        }.get(ev.code, str(ev.code))
        self.counts[(getattr(ev, "job_id", None) or "-", name)] += 1


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class RssSampler:
    """Peak resident set size, sampled from /proc every 20 ms while the loop is free."""

    def __init__(self) -> None:
        self.peak = 0
        self._task: asyncio.Task[None] | None = None
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def rss(self) -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self._page
        except OSError:
            return 0

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self.rss())
            await asyncio.sleep(0.02)

    def start(self) -> None:
        self.peak = self.rss()
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.peak = max(self.peak, self.rss())


class Probe:
    """--profile: wall time inside the firing path's steps and per SQL statement.

    Wraps (in this process only, for the profiled case only) the coroutines a
    weekly reminder goes through, and times every statement at the cursor
    (which, with aiosqlite, includes the hop to its thread and back). Times
    are inclusive: `_batch` contains everything else."""

    STEPS = [
        ("bot.scheduler", "Scheduler", "_batch"),
        ("storage.repo", "Repo", "claim_due"),
        ("sqlalchemy.ext.asyncio.session", "AsyncSession", "get"),
        ("storage.repo", "Repo", "weekly_items_by_id"),
        ("storage.repo", "Repo", "people_in_role"),
        ("bot.scheduler", None, "notify"),
        ("bot.scheduler", None, "next_weekly_reminder"),
        ("storage.repo", "Repo", "add_deliveries"),
        ("storage.repo", "Repo", "add_due_many"),
        ("sqlalchemy.ext.asyncio.session", "AsyncSession", "flush"),
        ("sqlalchemy.ext.asyncio.session", "AsyncSessionTransaction", "commit"),
        ("storage.repo", "Repo", "next_due_at"),
    ]

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.steps: dict[str, list[float]] = {}
        self.sql: dict[str, list[float]] = {}
        self._undo: list[tuple[Any, str, Any]] = []
        self._starts: dict[int, float] = {}

    def _wrap(self, owner: Any, attr: str, label: str) -> None:
        original = getattr(owner, attr)
        probe = self

        @functools.wraps(original)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                probe.steps.setdefault(label, []).append(time.perf_counter() - t)

        @functools.wraps(original)
        def timed_sync(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                probe.steps.setdefault(label, []).append(time.perf_counter() - t)

        setattr(owner, attr, timed if inspect.iscoroutinefunction(original) else timed_sync)
        self._undo.append((owner, attr, original))

    def _before(self, conn: Any, cursor: Any, statement: str, *_a: Any) -> None:
        self._starts[id(cursor)] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        t = self._starts.pop(id(cursor), None)
        if t is None:
            return
        label = re.sub(r"\s+", " ", statement).strip()
        label = re.sub(r"\(\?(, \?)*\)", "(?…)", label)
        label = re.sub(r"^(SELECT) .*? (FROM \w+)", r"\1 … \2", label)
        label = (label[:90] + "…" if len(label) > 90 else label) + (" [executemany]" if executemany else "")
        self.sql.setdefault(label, []).append(time.perf_counter() - t)

    def __enter__(self) -> Probe:
        import importlib
        for module, cls, attr in self.STEPS:
            owner = importlib.import_module(module)
            if cls is not None:
                owner = getattr(owner, cls)
            self._wrap(owner, attr, f"{cls + '.' if cls else ''}{attr}")
        event.listen(self.engine.sync_engine, "before_cursor_execute", self._before)
        event.listen(self.engine.sync_engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *exc: Any) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        event.remove(self.engine.sync_engine, "before_cursor_execute", self._before)
        event.remove(self.engine.sync_engine, "after_cursor_execute", self._after)

    def report(self, items: int, wall: float) -> str:
        lines = [f"Fired {items:,} items in {wall:.2f} s of run time. Steps (wall time, inclusive):", "",
                 "| step | calls | per item | total | mean | share of run |", "|---|---|---|---|---|---|"]
        for label, v in sorted(self.steps.items(), key=lambda kv: -sum(kv[1])):
            lines.append(f"| {label} | {len(v):,} | {len(v) / max(items, 1):.2f} | {sum(v):.2f} s | "
                         f"{statistics.mean(v) * 1000:.2f} ms | {sum(v) / wall:.0%} |")
        lines += ["", "SQL statements (cursor time, incl. the aiosqlite thread hop):", "",
                  "| statement | calls | per item | total | mean |", "|---|---|---|---|---|"]
        total = 0.0
        for label, v in sorted(self.sql.items(), key=lambda kv: -sum(kv[1]))[:14]:
            lines.append(f"| `{label}` | {len(v):,} | {len(v) / max(items, 1):.2f} | {sum(v):.2f} s | "
                         f"{statistics.mean(v) * 1000:.2f} ms |")
        total = sum(sum(v) for v in self.sql.values())
        calls = sum(len(v) for v in self.sql.values())
        lines.append(f"| all statements | {calls:,} | {calls / max(items, 1):.2f} | {total:.2f} s | "
                     f"{total / max(calls, 1) * 1000:.2f} ms |")
        return "\n".join(lines)


class LeaseWatch:
    """If the scheduler holds a lease (storage.models.Lease, "scheduler"), how
    regularly it was renewed during the run: the renewals seen (expires_at
    moving), the longest gap between them, and whether it ever ran out."""

    def __init__(self) -> None:
        try:
            from storage.models import Lease  # type: ignore[attr-defined]
        except ImportError:
            Lease = None  # noqa: N806
        self.model = Lease
        self.seen: list[tuple[datetime, datetime]] = []  # (when seen, expires_at)
        self.expired_for = 0.0
        self._last_poll: datetime | None = None

    async def poll(self, session_maker: Any) -> None:
        if self.model is None:
            return
        async with session_maker() as session:
            expires = await session.scalar(select(self.model.expires_at).where(self.model.name == "scheduler"))
        now = utcnow()
        if expires is None:
            return
        if not self.seen or self.seen[-1][1] != expires:
            self.seen.append((now, expires))
        if expires < now and self._last_poll is not None:
            self.expired_for += (now - max(self._last_poll, expires)).total_seconds()
        self._last_poll = now

    def summary(self) -> str:
        if self.model is None:
            return "no lease"
        if len(self.seen) < 2:
            return f"{max(len(self.seen) - 1, 0)} renewals seen"
        gaps = [(b[1] - a[1]).total_seconds() for a, b in zip(self.seen, self.seen[1:])]
        out = f"{len(gaps)} renewals, longest gap {max(gaps):.1f} s"
        if self.expired_for:
            out += f", **expired for {self.expired_for:.1f} s**"
        return out


def max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


# -- one case -------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    pending: int  # items in the database at start-up
    due: int  # of which fall due during the run
    window: float  # seconds over which they fall due (0: the same instant)
    lead: float  # seconds from the end of seeding to the first due moment
    trace: bool = False  # tracemalloc during the run too
    profile: bool = False
    max_wait: float = 60.0  # seconds after the last due moment before giving up
    burst_batch: int = 0  # the scheduler's batch size while a backlog remains (0: as it is)


@dataclass
class Result:
    case: Case
    seed_s: float = 0.0
    start_first_s: float = 0.0
    start_median_s: float = 0.0
    start_armed_s: float = 0.0
    margin_s: float = 0.0  # from the armed start() returning to the first due moment
    trace_start_peak: int | None = None
    trace_run_peak: int | None = None
    rss_run_peak: int = 0
    max_rss: int = 0
    run_wall_s: float = 0.0
    run_cpu_s: float = 0.0
    timed_out: bool = False
    ended: datetime | None = None
    unfired_lateness: list[float] = field(default_factory=list)  # at least this late: still pending at the end
    states: Counter[str] = field(default_factory=Counter)
    unique_keys: bool = True
    fired_per_item_ok: bool = True
    deliveries: int = 0
    deliveries_expected: int = 0
    refs_with_wrong_count: int = 0
    next_week_items: int = 0
    next_week_duplicates: int = 0
    lateness: list[float] = field(default_factory=list)
    visible: list[float] = field(default_factory=list)
    batches: list[tuple[int, float]] = field(default_factory=list)  # (items, seconds)
    aps: Counter[tuple[str, str]] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    profile_text: str = ""
    lease: str = "—"


async def seed(session_maker: Any, case: Case) -> tuple[datetime, datetime]:
    """The school and the items; returns the first and last due moments of the run."""
    school = await seed_school(session_maker, parents=PARENTS, timezone=ZONE)
    zone = ZoneInfo(ZONE)
    now = utcnow()
    async with session_maker.begin() as session:
        await session.execute(update(Organisation).where(Organisation.id == school.org_id)
                              .values(quiet_start=None, quiet_end=None))
        await session.execute(update(Person).where(Person.id == school.parent_person_ids[-1]).values(locale="en"))
        first = utcnow() + timedelta(seconds=case.lead)
        weekly_rows, due_rows = [], []
        for i in range(case.pending):
            if i < case.due:
                offset = case.window * i / max(case.due - 1, 1) if case.window else 0.0
                due = first + timedelta(seconds=offset)
            else:  # not during this run
                due = first + timedelta(days=1, seconds=i)
            occurrence = due + timedelta(minutes=REMIND)
            local = occurrence.astimezone(zone)
            weekly_rows.append({
                "id": i + 1, "org_id": school.org_id, "group_id": school.group_id, "title": f"Кружок {i + 1}",
                "weekday": local.weekday(), "time_of_day": local.strftime("%H:%M"), "remind_minutes": REMIND,
                "created_by_id": school.teacher_person_id, "created_at": now,
            })
            due_rows.append({
                "org_id": school.org_id, "kind": DueKind.WEEKLY_REMINDER.value, "ref_id": i + 1, "due_at": due,
                "key": f"weekly:{i + 1}:{occurrence.isoformat()}", "minutes": REMIND,
                "state": DueState.PENDING.value, "created_at": now,
            })
        await session.execute(insert(WeeklyItem), weekly_rows)
        await session.execute(insert(DueItem), due_rows)
    last = first + timedelta(seconds=case.window)
    return first, last


async def pending_in_window(session_maker: Any, last: datetime) -> int:
    async with session_maker() as session:
        return await session.scalar(
            select(func.count(DueItem.id)).where(DueItem.state == DueState.PENDING, DueItem.due_at <= last)
        ) or 0


async def run_case(case: Case, tmp: str) -> Result:
    res = Result(case)
    url = f"sqlite+aiosqlite:///{tmp}/{case.name}.sqlite3"
    engine, session_maker = await create_database(url)
    i18n = create_i18n("ru")
    commits = Commits()
    capture = _Capture()
    logging.getLogger().addHandler(capture)
    try:
        t = time.perf_counter()
        first, last = await seed(session_maker, case)
        res.seed_s = time.perf_counter() - t

        # -- start-up with N pending, none due --------------------------------------------
        times = []
        for _ in range(6):
            trial = Scheduler(session_maker, i18n, "ru", _noop)
            t = time.perf_counter()
            await trial.start()
            times.append(time.perf_counter() - t)
            await trial.stop()
        res.start_first_s, res.start_median_s = times[0], statistics.median(times[1:])

        tracemalloc.start()
        scheduler = Scheduler(session_maker, i18n, "ru", _noop)
        if case.burst_batch:
            scheduler.burst_batch = case.burst_batch
        t = time.perf_counter()
        await scheduler.start()
        res.start_armed_s = time.perf_counter() - t
        res.margin_s = (first - utcnow()).total_seconds()
        if res.margin_s <= 0:
            print(f"- case {case.name}: start() ended after the first due moment; raise --lead", file=sys.stderr)
        res.trace_start_peak = tracemalloc.get_traced_memory()[1]
        if case.trace:
            tracemalloc.reset_peak()
        else:
            tracemalloc.stop()
        aps_events = ApsEvents()
        assert scheduler.aps is not None
        scheduler.aps.add_listener(aps_events.listener, EVENT_JOB_SUBMITTED | EVENT_JOB_EXECUTED | EVENT_JOB_ERROR
                                   | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)

        # -- the run: until every item due in the window is done ----------------------------
        sampler = RssSampler()
        sampler.start()
        commits.armed = True
        probe = Probe(engine).__enter__() if case.profile else None
        t, cpu = time.perf_counter(), time.process_time()
        deadline = last + timedelta(seconds=case.max_wait)
        lease = LeaseWatch()
        while True:
            await asyncio.sleep(0.25)
            await lease.poll(session_maker)
            if utcnow() >= first and await pending_in_window(session_maker, last) == 0:
                break
            if utcnow() > deadline:
                res.timed_out = True
                break
        res.run_wall_s = time.perf_counter() - t - max(0.0, res.margin_s)
        res.run_cpu_s = time.process_time() - cpu
        if probe is not None:
            probe.__exit__(None, None, None)
        commits.armed = False
        res.ended = utcnow()
        res.lease = lease.summary()
        res.warnings = [r.getMessage() for r in capture.records]
        # stop() cancels a job under way (a batch, a lease renewal): it rolls back and logs
        # that it was cancelled, which is the bench ending, not a finding.
        logging.disable(logging.CRITICAL)
        await scheduler.stop()
        await asyncio.sleep(0.1)
        logging.disable(logging.NOTSET)
        await sampler.stop()
        res.rss_run_peak, res.max_rss = sampler.peak, max_rss()
        if case.trace:
            res.trace_run_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        res.aps = aps_events.counts

        await collect(res, session_maker, last, commits.times)
        if probe is not None:
            res.profile_text = probe.report(len(res.lateness), res.run_wall_s)
    finally:
        logging.getLogger().removeHandler(capture)
        commits.close()
        await engine.dispose()
    return res


async def collect(res: Result, session_maker: Any, last: datetime, commit_times: list[datetime]) -> None:
    """Correctness and lateness, from the database."""
    async with session_maker() as s:
        items = (await s.execute(
            select(DueItem.id, DueItem.ref_id, DueItem.due_at, DueItem.fired_at, DueItem.state, DueItem.key)
            .where(DueItem.due_at <= last)
        )).all()
        res.states = Counter(i.state for i in items)
        keys = [i.key for i in items]
        res.unique_keys = len(keys) == len(set(keys))
        refs = Counter(i.ref_id for i in items)
        res.fired_per_item_ok = all(c == 1 for c in refs.values()) and len(refs) == res.case.due
        done_refs = {i.ref_id for i in items if i.state == DueState.DONE.value}

        per_ref = dict((await s.execute(
            select(Delivery.ref_id, func.count(Delivery.id)).where(Delivery.topic == TOPIC).group_by(Delivery.ref_id)
        )).all())
        created = dict((await s.execute(
            select(Delivery.ref_id, func.min(Delivery.created_at)).where(Delivery.topic == TOPIC)
            .group_by(Delivery.ref_id)
        )).all())
        res.deliveries = sum(per_ref.values())
        res.deliveries_expected = res.case.due * PARENTS
        # Of the items that fired: exactly one outbox row per parent, and none for the others.
        res.refs_with_wrong_count = sum(1 for r in done_refs if per_ref.get(r, 0) != PARENTS) + sum(
            1 for r in per_ref if r not in done_refs)

        later = (await s.execute(
            select(DueItem.ref_id, func.count(DueItem.id))
            .where(DueItem.due_at > last + timedelta(days=6), DueItem.kind == DueKind.WEEKLY_REMINDER.value)
            .group_by(DueItem.ref_id)
        )).all()
        res.next_week_items = len(later)
        res.next_week_duplicates = sum(c - 1 for _ref, c in later if c > 1)

    commit_times = sorted(commit_times)
    by_moment: dict[datetime, int] = Counter()
    for i in items:
        if i.state == DueState.PENDING.value and res.ended is not None:
            res.unfired_lateness.append((res.ended - i.due_at).total_seconds())
        if i.fired_at is None or i.state != DueState.DONE.value:
            continue
        res.lateness.append((i.fired_at - i.due_at).total_seconds())
        by_moment[i.fired_at] += 1
        made = created.get(i.ref_id)
        if made is not None:
            k = bisect.bisect_left(commit_times, made)
            if k < len(commit_times):
                res.visible.append((commit_times[k] - i.due_at).total_seconds())
    # A batch: the items claimed at one moment; it lasts until the next commit.
    for moment, n in sorted(by_moment.items()):
        k = bisect.bisect_left(commit_times, moment)
        if k < len(commit_times):
            res.batches.append((n, (commit_times[k] - moment).total_seconds()))


# -- report ----------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


def ms(x: float) -> str:
    return f"{x * 1000:,.0f} ms" if x < 10 else f"{x:,.1f} s"


def mib(x: int | None) -> str:
    if x is None:
        return "—"
    return f"{x / 2**20:,.1f} MiB" if x >= 2**20 else f"{x / 1024:,.0f} KiB"


def late(r: Result, q: float | None) -> str:
    """A lateness percentile (None: the max); items never fired count as at least
    as late as the end of the run, and make the figure a lower bound."""
    values = r.lateness + r.unfired_lateness
    if not values:
        return "—"
    v = max(values) if q is None else pct(values, q)
    bound = "≥ " if r.unfired_lateness and v >= min(r.unfired_lateness) else ""
    return bound + ms(v)


def describe(r: Result) -> dict[str, str]:
    c = r.case
    busy = sum(d for _n, d in r.batches)
    fired = len(r.lateness)
    sizes = [n for n, _d in r.batches]
    window = f"{c.window:g} s" if c.window else "one instant"
    aps = r.aps
    max_inst = sum(v for (job, what), v in aps.items() if what == "skipped (max instances)")
    skipped_warn = sum(1 for w in r.warnings if "maximum number of running instances" in w)
    other_warn = len(r.warnings) - skipped_warn
    done = r.states.get(DueState.DONE.value, 0)
    correct = (set(r.states) <= {DueState.DONE.value, DueState.PENDING.value} and r.unique_keys
               and r.fired_per_item_ok and r.refs_with_wrong_count == 0 and r.deliveries == done * PARENTS
               and r.next_week_items == done and r.next_week_duplicates == 0)
    complete = done == c.due and r.deliveries == r.deliveries_expected
    p99 = pct(r.lateness + r.unfired_lateness, 99)
    return {
        "pending at start / due in the run": f"{c.pending:,} / {c.due:,}",
        "due over": f"{window}, first {c.lead:g} s after seeding",
        "seeding": ms(r.seed_s),
        "start(): first call": ms(r.start_first_s),
        "start(): median of 5 more": ms(r.start_median_s),
        "start(): the armed one": ms(r.start_armed_s),
        "margin, start() done → first due": f"{r.margin_s:.1f} s",
        "tracemalloc peak, start()": mib(r.trace_start_peak),
        "tracemalloc peak, run": mib(r.trace_run_peak),
        "RSS peak during run / process max RSS": f"{mib(r.rss_run_peak)} / {mib(r.max_rss)}",
        "run: wall (first due → all done) / CPU": f"{r.run_wall_s:.1f} s / {r.run_cpu_s:.1f} s"
        + (f" **GAVE UP** {c.max_wait:g} s after the last due moment" if r.timed_out else ""),
        "items done / expected": f"{r.states.get(DueState.DONE.value, 0):,} / {c.due:,}"
        + "".join(f", {k} {v}" for k, v in r.states.items() if k != DueState.DONE.value),
        "each fired once (keys unique, one item per ref)": "yes" if r.unique_keys and r.fired_per_item_ok else "**NO**",
        "outbox rows / expected (due × parents)": f"{r.deliveries:,} / {r.deliveries_expected:,}"
        + (f", **{r.refs_with_wrong_count} reminders with a wrong number of rows**" if r.refs_with_wrong_count
           else ""),
        "next week's items planned (duplicates)": f"{r.next_week_items:,} ({r.next_week_duplicates})",
        "all fired / what fired is correct": ("yes" if complete else "**NO**") + " / "
        + ("yes" if correct else "**NO**"),
        "lateness fired_at − due_at: p50": late(r, 50),
        "lateness: p99": late(r, 99) + (" ✅" if p99 <= GOAL_P99 else f" ❌ (goal ≤ {GOAL_P99:g} s)"),
        "lateness: max": late(r, None),
        "visible (commit − due_at): p50 / p99 / max": " / ".join(
            ms(v) for v in (pct(r.visible, 50), pct(r.visible, 99), max(r.visible, default=float("nan"))))
        + ("" if not r.visible else " ✅" if pct(r.visible, 99) <= GOAL_P99 and not r.unfired_lateness else " ❌"),
        "items ≤ 1 s late": f"{sum(1 for x in r.lateness if x <= 1.0) / max(c.due, 1):.1%}",
        "batches (transactions): count, mean / max size": (
            f"{len(r.batches):,}, {statistics.mean(sizes):.1f} / {max(sizes)}" if sizes else "0"),
        "batch duration p50 / max": (
            f"{ms(pct([d for _n, d in r.batches], 50))} / {ms(max(d for _n, d in r.batches))}" if sizes else "—"),
        "busy (Σ batch durations), per item": f"{busy:.1f} s, {busy / max(fired, 1) * 1000:.2f} ms"
        + (f" → {fired / busy:,.0f} items/s" if busy else ""),
        "APScheduler job \"next\": run / skipped (max instances)":
            f"{aps.get(('next', 'submitted'), 0)} / {aps.get(('next', 'skipped (max instances)'), 0)}",
        "APScheduler job \"sweep\": run / skipped (max instances)":
            f"{aps.get(('sweep', 'submitted'), 0)} / {aps.get(('sweep', 'skipped (max instances)'), 0)}",
        "APScheduler warnings \"maximum number of running instances\"": f"{skipped_warn} (events: {max_inst})",
        "scheduler lease during the run": r.lease,
        "other warnings logged": str(other_warn),
    }


def table(results: list[Result]) -> str:
    cols = [describe(r) for r in results]
    head = "| | " + " | ".join(r.case.name for r in results) + " |"
    sep = "|---|" + "---|" * len(results)
    rows = [f"| {k} | " + " | ".join(c[k] for c in cols) + " |" for k in cols[0]]
    return "\n".join([head, sep, *rows])


def versions() -> str:
    def v(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "?"
    return (f"Python {platform.python_version()}, APScheduler {apscheduler.__version__}, "
            f"SQLAlchemy {sqlalchemy.__version__}, aiosqlite {v('aiosqlite')}, aiogram {v('aiogram')}, "
            f"SQLite {__import__('sqlite3').sqlite_version}; {os.cpu_count()} CPUs ({platform.machine()}, "
            f"{platform.system()} {platform.release()}), load average {os.getloadavg()[0]:.2f} at start; "
            f"scheduler batch size {BATCH}, then {BURST_BATCH} while a backlog remains")


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)  # warnings are counted (_Capture), errors printed
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.ERROR)
    n, b = args.n, args.burst
    cases = [
        Case("spread", pending=n, due=n, window=args.window, lead=args.lead, max_wait=args.max_wait),
        # The same burst as before batching grew (every transaction 50 items), in the same run.
        Case(f"burst (before: batches of {BATCH} only)", pending=n, due=b, window=0.0, lead=args.lead,
             max_wait=args.max_wait, burst_batch=BATCH),
        Case("burst", pending=n, due=b, window=0.0, lead=args.lead, profile=args.profile, max_wait=args.max_wait),
    ]
    if "traced" in args.cases:
        traced = min(BATCH, b)
        cases.append(Case(f"traced (burst of {traced:,})", pending=n, due=traced, window=0.0, lead=args.lead,
                          trace=True, max_wait=args.max_wait))
    cases = [c for c in cases if c.name.split()[0] in args.cases]
    print(f"# Reminders: {n:,} pending weekly reminders, {PARENTS} parents each\n")
    print(versions() + f"; RSS after imports {mib(RssSampler().rss())}\n")
    results = []
    with tempfile.TemporaryDirectory(prefix="parta-reminders-") as tmp:
        for case in cases:
            t = time.perf_counter()
            results.append(await run_case(case, tmp))
            print(f"- case {case.name}: {time.perf_counter() - t:.1f} s", file=sys.stderr)
    print(table(results))
    for r in results:
        warnings = Counter(re.sub(r"\d{4}-\d\d-\d\d \S+", "…", w)[:240] for w in r.warnings)
        if warnings:
            print(f"\nWarnings logged in the {r.case.name} case:")
            for w, k in warnings.most_common(5):
                print(f"- {k} × `{w}`")
        if r.profile_text:
            print(f"\nWhere the time goes in the {r.case.name} case (--profile; its numbers above include the "
                  f"probe's overhead):\n\n{r.profile_text}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 1,000 items over 5 s")
    p.add_argument("-n", type=int, help="pending items (default 10,000; quick 1,000)")
    p.add_argument("--window", type=float, help="seconds over which the spread items fall due (default 20; quick 5)")
    p.add_argument("--burst", type=int, help="items due at the same instant in the burst case (default 2,000; quick 200)")
    p.add_argument("--lead", type=float, help="seconds from seeding to the first due moment (default 4; quick 2)")
    p.add_argument("--cases", default="spread,burst,traced",
                   help="which cases, comma-separated (default spread,burst,traced)")
    p.add_argument("--max-wait", type=float, default=60.0,
                   help="give up this many seconds after the last due moment (default 60): the "
                        "lateness percentiles then count what never fired as at least that late")
    p.add_argument("--profile", action="store_true", help="time the firing path's steps and SQL (burst case)")
    args = p.parse_args(argv)
    args.cases = {c.strip() for c in args.cases.split(",") if c.strip()}
    args.n = args.n or (1_000 if args.quick else 10_000)
    args.window = args.window if args.window is not None else (5.0 if args.quick else 20.0)
    args.burst = args.burst or (200 if args.quick else 2_000)
    args.lead = args.lead if args.lead is not None else (2.0 if args.quick else 4.0)
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
    print(f"\nTotal run time {time.perf_counter() - _T0:.1f} s (imports and set-up included)")
