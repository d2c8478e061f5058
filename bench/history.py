"""A school year of history: does the bot stay as fast and as small?

Run from the repository root:

    .venv/bin/python bench/history.py                      # full scale, SQLite only
    .venv/bin/python bench/history.py --pg postgresql+asyncpg://postgres@127.0.0.1:5432/<db>
    .venv/bin/python bench/history.py --scale 0.05         # a quick try: 5 % of a year
    .venv/bin/python bench/history.py --no-sqlite --pg ... # PostgreSQL only

The PostgreSQL database given with --pg is WIPED (its public schema dropped).

For each engine two databases are made by the migrations (as at a real
start), both holding the same school — 1,000 families (2 parents each, one
pupil) in 40 classes, 40 teachers, an admin and a head — and one post sent
today to every parent asking for acknowledgement:

* empty: nothing else;
* a year: a school year written in bulk (executemany on SQLite, COPY on
  PostgreSQL; bench only): 3,000 posts (half of them to every parent, half
  to one class; 40 % ask for acknowledgement, 5 % polls, 5 % events with a
  reminder), about 3 million outbox rows (copies, the authors' cards and
  their edits, digests, weekly reminders, private messages), about a million
  acknowledgements, votes, absences, join requests and audit entries.

The same measurements run on both, in the same run: the per-update cost of
/start of a parent and of an Acknowledge press through the real Dispatcher
with a mocked Bot API session; the outbox's claim query while 1,000 copies
wait, and a 1,000-recipient broadcast (enqueued, then drained by the real
Outbox over the mocked session); /stats text, chart and CSV; /members pages;
/mydata of the busiest parent; the database's size. Then the daily job's
count alone (bot/retention.py: settled copies a day old counted for /stats,
nothing old enough to fold — the state of a deployment whose job ran every
night, all its rows still there) and the same measurements again; then the
daily retention (copies older than 90 days folded) runs on the year: its time,
what it deleted, the size after, the same measurements again, and checks that
/stats said the same all along. Last (SQLite): `python -m bot backup` of the year,
restored into a fresh install, must give the same /stats.

EXPLAIN of every query that reads a table growing with history (the outbox,
acknowledgements, votes, the audit log, absences, the tally), captured from
the measured code paths themselves, is printed for the year database.

PostgreSQL is ANALYZEd after the bulk load (autovacuum would do it after such
a load anyway); SQLite is left as a real deployment leaves it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

_T0 = time.perf_counter()
ROOT = Path(__file__).resolve().parent.parent
for p in (str(ROOT), str(ROOT / "bench")):
    if p not in sys.path:
        sys.path.insert(0, p)

from aiogram.methods import AnswerCallbackQuery, EditMessageText, SendDocument, SendMessage, SendPhoto  # noqa: E402
from aiogram.utils.keyboard import InlineKeyboardBuilder  # noqa: E402
from sqlalchemy import event, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bot.app import create_dispatcher  # noqa: E402
from bot.i18n import create_i18n  # noqa: E402
from bot.outbox import Outbox, claimable, dump_method  # noqa: E402
from bot.posts import PostCb, broadcast, progress_hook  # noqa: E402
from bot.retention import Retention  # noqa: E402
from bot.settings import Settings  # noqa: E402
from dispatch import Updates  # noqa: E402
from storage.db import create_engine, create_session_maker  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import Post, PostKind, PostState, utcnow  # noqa: E402
from storage.repo import Repo  # noqa: E402
from tests.harness import BOT_USER, TOKEN, MockedSession, Person, make_bot  # noqa: E402

ADMIN_TG = 1001
HEAD_TG = 1002
TEACHER_TG = 3000
PARENT_TG = 100_000
CLASSES = 40
GROWING = ("delivery", "acknowledgement", "vote", "audit_entry", "absence", "delivery_tally", "relay")
CHUNK = 20_000
READS_GROWING = re.compile(r"\b(FROM|JOIN|UPDATE)\s+(" + "|".join(GROWING) + r")\b", re.IGNORECASE)


# -- seeding ----------------------------------------------------------------------------------


@dataclass
class Ids:
    """Explicit ids, so rows can point at each other without a round trip."""

    counters: dict[str, int] = field(default_factory=dict)

    def next(self, table: str) -> int:
        self.counters[table] = self.counters.get(table, 0) + 1
        return self.counters[table]


class Loader:
    """Bulk rows into one table: executemany on SQLite, COPY on PostgreSQL."""

    def __init__(self, conn: Any, dialect: str) -> None:
        self.conn = conn
        self.pg = dialect == "postgresql"
        self.counts: dict[str, int] = {}

    def ts(self, moment: datetime) -> Any:
        naive = moment.astimezone(timezone.utc).replace(tzinfo=None)
        return naive if self.pg else naive.strftime("%Y-%m-%d %H:%M:%S.%f")

    def day(self, d: date) -> Any:
        return d if self.pg else d.isoformat()

    def flag(self, b: bool) -> Any:
        return b if self.pg else int(b)

    async def load(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
        if not rows:
            return
        self.counts[table] = self.counts.get(table, 0) + len(rows)
        if self.pg:
            raw = await self.conn.get_raw_connection()
            await raw.driver_connection.copy_records_to_table(table, records=rows, columns=list(columns))
        else:
            marks = ", ".join("?" for _ in columns)
            await self.conn.exec_driver_sql(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


DELIVERY_COLUMNS = ("id", "org_id", "chat_id", "method", "payload", "topic", "ref_id", "post_id", "person_id",
                    "edit_of_id", "status", "attempts", "next_attempt_at", "message_id", "created_at", "sent_at")


@dataclass
class School:
    families: int
    org_id: int = 1
    staff_id: int = 1
    class_ids: list[int] = field(default_factory=list)
    admin_id: int = 0
    teacher_ids: list[int] = field(default_factory=list)  # person ids, one per class
    parent_ids: list[int] = field(default_factory=list)  # person ids
    parent_tgs: list[int] = field(default_factory=list)
    parent_class: list[int] = field(default_factory=list)  # index into class_ids
    pupil_ids: list[int] = field(default_factory=list)
    today_post: int = 0
    busiest_tg: int = 0
    acked: int = 0  # parents who pressed Acknowledge on today's post so far
    started: int = 0  # /start updates sent so far (the next parent to send one)


async def seed_school(L: Loader, ids: Ids, families: int, now: datetime, year_start: datetime) -> School:
    s = School(families=families)
    joined = L.ts(year_start - timedelta(days=10))
    await L.load("organisation", ("id", "name", "kind", "timezone", "support_contact", "quiet_start", "quiet_end",
                                  "absence_cutoff", "office_hours", "audit_keep_months", "created_at"),
                 [(1, "Школа № 1", "school", "Europe/Moscow", None, None, None, "09:00", "08:00-18:00", 18, joined)])
    groups = [(ids.next("study_group"), 1, "Учительская", "staff", None, joined)]
    s.staff_id = groups[0][0]
    for c in range(CLASSES):
        gid = ids.next("study_group")
        s.class_ids.append(gid)
        groups.append((gid, 1, f"{1 + c // 4}{'АБВГ'[c % 4]}", "class", None, joined))
    await L.load("study_group", ("id", "org_id", "title", "kind", "archived_at", "created_at"), groups)
    people: list[tuple] = []
    members: list[tuple] = []

    def person(tg: int, name: str, locale: str | None) -> int:
        pid = ids.next("person")
        people.append((pid, tg, name, name, locale, None, None, None, L.ts(now - timedelta(days=pid % 40)),
                       None, joined))
        return pid

    def member(group: int, pid: int, role: str) -> None:
        members.append((ids.next("membership"), 1, group, pid, role, "active", None, None, joined, joined))

    s.admin_id = person(ADMIN_TG, "Админ Админов", "ru")
    member(s.staff_id, s.admin_id, "admin")
    head = person(HEAD_TG, "Завуч Иванова", "ru")
    member(s.staff_id, head, "head")
    for c, gid in enumerate(s.class_ids):
        t = person(TEACHER_TG + c, f"Учитель {c + 1}", "ru" if c % 5 else "en")
        s.teacher_ids.append(t)
        member(s.staff_id, t, "teacher")
        member(gid, t, "teacher")
    pupils: list[tuple] = []
    guardians: list[tuple] = []
    for f in range(families):
        c = f % CLASSES
        pupil = ids.next("pupil")
        s.pupil_ids.append(pupil)
        pupils.append((pupil, 1, s.class_ids[c], f"Ученик {f + 1}", joined))
        for k in range(2):
            tg = PARENT_TG + 2 * f + k
            pid = person(tg, f"Родитель {f + 1}-{k + 1}", "en" if (2 * f + k) % 10 == 3 else None)
            s.parent_ids.append(pid)
            s.parent_tgs.append(tg)
            s.parent_class.append(c)
            member(s.class_ids[c], pid, "parent")
            guardians.append((ids.next("guardianship"), 1, pid, pupil, joined))
    await L.load("person", ("id", "telegram_id", "full_name", "telegram_name", "locale", "digest_at", "office_hours",
                            "current_org_id", "last_seen_at", "forgotten_at", "created_at"), people)
    await L.load("membership", ("id", "org_id", "group_id", "person_id", "role", "state", "invitation_id",
                                "verified_by_id", "verified_at", "created_at"), members)
    await L.load("pupil", ("id", "org_id", "group_id", "full_name", "created_at"), pupils)
    await L.load("guardianship", ("id", "org_id", "person_id", "pupil_id", "created_at"), guardians)
    s.busiest_tg = s.parent_tgs[0]
    return s


def payload_for(text_: str, post_id: int, ack: bool, options: list[int]) -> str:
    kb = InlineKeyboardBuilder()
    for o in options:
        kb.button(text=f"Вариант {o}", callback_data=PostCb(action="vote", post_id=post_id, option_id=o))
    if ack:
        kb.button(text="👌 Ознакомлен(а)", callback_data=PostCb(action="ack", post_id=post_id))
    kb.adjust(1)
    markup = kb.as_markup() if (ack or options) else None
    return dump_method(SendMessage(chat_id=0, text=text_, reply_markup=markup))


POST_COLUMNS = ("id", "org_id", "author_id", "kind", "audience", "to_parents", "to_students", "text", "ask_ack",
                "urgent", "state", "created_at", "sent_at", "poll_multiple", "poll_anonymous", "event_at")


async def seed_today_post(L: Loader, ids: Ids, s: School, now: datetime) -> None:
    """The post of today, in both databases: to every parent, asking for acknowledgement, delivered."""
    pid = ids.next("post")
    s.today_post = pid
    body = "<b>📢 Объявление</b> · Школа № 1\n\nСегодня родительское собрание в 18:00. Пожалуйста, отметьте.\n\n— Админ"
    await L.load("post", POST_COLUMNS, [(pid, 1, s.admin_id, "announcement", "parents", L.flag(True), L.flag(True),
                                         body, L.flag(True), L.flag(False), "sent", L.ts(now), L.ts(now),
                                         L.flag(False), L.flag(False), None)])
    payload = payload_for(body, pid, True, [])
    at = L.ts(now)
    rows = [(ids.next("delivery"), 1, tg, "sendMessage", payload, "post", pid, pid, person, None, "sent", 1, at,
             5000 + i, at, at) for i, (tg, person) in enumerate(zip(s.parent_tgs, s.parent_ids))]
    rows.append((ids.next("delivery"), 1, ADMIN_TG, "sendMessage", "{}", "post_card", pid, None, None, None, "sent",
                 1, at, 900, at, at))
    await L.load("delivery", DELIVERY_COLUMNS, rows)


async def seed_year(L: Loader, ids: Ids, s: School, posts: int, now: datetime, year_start: datetime,
                    rng: random.Random) -> None:
    span = (now - timedelta(days=1) - year_start).total_seconds()
    n_parents = len(s.parent_ids)
    by_class: dict[int, list[int]] = {}
    for i, c in enumerate(s.parent_class):
        by_class.setdefault(c, []).append(i)
    blocked = {i for i in range(n_parents) if i % 50 == 7}  # 2 %: blocked the bot
    digest = {i for i in range(n_parents) if i % 10 == 5}  # 10 %: a daily digest
    digest_rows: dict[tuple[int, int], int] = {}
    deliveries: list[tuple] = []
    acks: list[tuple] = []
    votes: list[tuple] = []
    options: list[tuple] = []
    post_rows: list[tuple] = []
    post_groups: list[tuple] = []

    async def flush(final: bool = False) -> None:
        nonlocal deliveries, acks, votes
        if post_rows and (final or len(deliveries) >= CHUNK):
            await L.load("post", POST_COLUMNS, post_rows)
            await L.load("post_group", ("id", "org_id", "post_id", "group_id"), post_groups)
            await L.load("poll_option", ("id", "org_id", "post_id", "position", "text"), options)
            post_rows.clear(), post_groups.clear(), options.clear()
        if final or len(deliveries) >= CHUNK:
            await L.load("delivery", DELIVERY_COLUMNS, deliveries)
            await L.load("acknowledgement", ("id", "org_id", "post_id", "person_id", "created_at"), acks)
            await L.load("vote", ("id", "org_id", "post_id", "option_id", "person_id", "created_at"), votes)
            deliveries, acks, votes = [], [], []

    for n in range(posts):
        sent = year_start + timedelta(seconds=span * n / posts)
        wide = n % 2 == 0
        c = n % CLASSES
        author = s.admin_id if wide else s.teacher_ids[c]
        author_tg = ADMIN_TG if wide else TEACHER_TG + c
        ask = n % 5 in (1, 3)
        kind = "poll" if n % 20 == 7 else "event" if n % 20 == 11 else "announcement"
        pid = ids.next("post")
        body = (f"<b>📢 Объявление</b> · {'Школа № 1' if wide else 'класс'}\n\nСообщение №{n + 1}: "
                + "завтра занятия по обычному расписанию, не забудьте сменную обувь и дневник. " * 2
                + "\n\n— Автор")
        opts = []
        if kind == "poll":
            for k in range(3):
                oid = ids.next("poll_option")
                opts.append(oid)
                options.append((oid, 1, pid, k, f"Вариант {k + 1}"))
        event_at = L.ts(sent + timedelta(days=3)) if kind == "event" else None
        post_rows.append((pid, 1, author, kind, "parents" if wide else "groups", L.flag(True), L.flag(False), body,
                          L.flag(ask), L.flag(False), "sent", L.ts(sent), L.ts(sent), L.flag(False), L.flag(False),
                          event_at))
        if not wide:
            post_groups.append((ids.next("post_group"), 1, pid, s.class_ids[c]))
        payload = payload_for(body, pid, ask, opts)
        at, done = L.ts(sent), L.ts(sent + timedelta(seconds=70))
        day = (sent - year_start).days
        recipients = range(n_parents) if wide else by_class[c]
        for i in recipients:
            person, tg = s.parent_ids[i], s.parent_tgs[i]
            status, edit_of = "sent", None
            if i in blocked:
                status = "unreachable"
            elif i in digest:
                key = (i, day)
                if key not in digest_rows:
                    digest_rows[key] = d = ids.next("delivery")
                    deliveries.append((d, 1, tg, "sendMessage", '{"text":"📰 Ваша сводка"}', "digest", person, None,
                                       person, None, "sent", 1, done, 7000 + day, done, done))
                status, edit_of = "digested", digest_rows[key]
            deliveries.append((ids.next("delivery"), 1, tg, "sendMessage", payload, "post", pid, pid, person,
                               edit_of, status, 1, at, None if status == "unreachable" else 100 + n, at,
                               None if status == "unreachable" else done))
            if status != "unreachable":
                if ask and rng.random() < 0.85:
                    acks.append((ids.next("acknowledgement"), 1, pid, person,
                                 L.ts(sent + timedelta(hours=rng.random() * 48))))
                if opts and rng.random() < 0.6:
                    votes.append((ids.next("vote"), 1, pid, opts[rng.randrange(3)], person, done))
            if kind == "event":
                deliveries.append((ids.next("delivery"), 1, tg, "sendMessage", payload, "event_reminder", pid, pid,
                                   person, None, "sent", 1, L.ts(sent + timedelta(days=2)), 200 + n,
                                   L.ts(sent + timedelta(days=2)), L.ts(sent + timedelta(days=2))))
        # The author's card and the edits that followed the delivery (all but the last superseded).
        card = ids.next("delivery")
        deliveries.append((card, 1, author_tg, "sendMessage", '{"text":"card"}', "post_card", pid, None, None, None,
                           "sent", 1, at, 300 + n, at, at))
        for k in range(3):
            deliveries.append((ids.next("delivery"), 1, author_tg, "editMessageText", '{"text":"card"}',
                               "post_card-edit", pid, None, None, card, "sent" if k == 2 else "cancelled", 1, done,
                               None, done, done if k == 2 else None))
        await flush()
    await flush(final=True)

    # Weekly reminders: one weekly item per class, 36 school weeks.
    weekly: list[tuple] = []
    due: list[tuple] = []
    rows: list[tuple] = []
    for c, gid in enumerate(s.class_ids):
        wid = ids.next("weekly_item")
        weekly.append((wid, 1, gid, "Бассейн", c % 5, "10:00", 60, s.teacher_ids[c], L.ts(year_start), None))
        payload = dump_method(SendMessage(chat_id=0, text=f"⏰ {c}: Бассейн — 10:00"))
        for w in range(36):
            at = year_start + timedelta(days=7 * w + c % 5, hours=6)
            due.append((ids.next("due_item"), 1, "weekly_reminder", wid, L.ts(at), f"weekly:{wid}:{w}", 60, "done",
                        L.ts(at), L.ts(at)))
            for i in by_class.get(c, []):
                rows.append((ids.next("delivery"), 1, s.parent_tgs[i], "sendMessage", payload, "weekly_reminder",
                             wid, None, s.parent_ids[i], None, "sent", 1, L.ts(at), 400, L.ts(at), L.ts(at)))
        if len(rows) >= CHUNK:
            await L.load("delivery", DELIVERY_COLUMNS, rows)
            rows = []
    await L.load("delivery", DELIVERY_COLUMNS, rows)
    await L.load("weekly_item", ("id", "org_id", "group_id", "title", "weekday", "time_of_day", "remind_minutes",
                                 "created_by_id", "created_at", "archived_at"), weekly)
    await L.load("due_item", ("id", "org_id", "kind", "ref_id", "due_at", "key", "minutes", "state", "created_at",
                              "fired_at"), due)

    # Absences (8 a pupil a year), private messages with their outbox rows, join requests, the audit log.
    absences = []
    for k, pupil in enumerate(s.pupil_ids):
        for a in range(8):
            start = (year_start + timedelta(days=rng.randrange(270))).date()
            absences.append((ids.next("absence"), 1, s.class_ids[k % CLASSES], pupil, s.parent_ids[2 * k], L.day(start),
                             L.day(start + timedelta(days=rng.randrange(3))), "болеет", L.flag(a == 0),
                             L.ts(datetime.combine(start, datetime.min.time(), timezone.utc)), None))
    await L.load("absence", ("id", "org_id", "group_id", "pupil_id", "parent_id", "start_date", "end_date", "reason",
                             "late", "created_at", "withdrawn_at"), absences)
    relays, rows = [], []
    for m in range(2 * s.families):
        i = rng.randrange(n_parents)
        at = L.ts(year_start + timedelta(seconds=rng.random() * span))
        rid = ids.next("relay")
        teacher = s.teacher_ids[s.parent_class[i]]
        relays.append((rid, 1, s.parent_ids[i], teacher, L.flag(False), None, 10 + m, at))
        rows.append((ids.next("delivery"), 1, TEACHER_TG + s.parent_class[i], "copyMessage", "{}", "relay", rid, None,
                     teacher, None, "sent", 1, at, 500 + m, at, at))
    await L.load("relay", ("id", "org_id", "sender_id", "recipient_id", "to_administration", "reply_to_id",
                           "sender_message_id", "created_at"), relays)
    await L.load("delivery", DELIVERY_COLUMNS, rows)
    requests, audit = [], []
    for k, (pid, c) in enumerate(zip(s.parent_ids, s.parent_class)):
        if k % 2:
            continue
        at = L.ts(year_start - timedelta(days=9) + timedelta(hours=k % 200))
        requests.append((ids.next("join_request"), 1, s.class_ids[c], pid, "parent", f"Родитель {k}", f"Ученик {k}",
                         "approved", s.admin_id, at, at))
    await L.load("join_request", ("id", "org_id", "group_id", "person_id", "role", "full_name", "child_name", "state",
                                  "decided_by_id", "decided_at", "created_at"), requests)
    for k in range(5 * s.families):
        at = L.ts(year_start + timedelta(seconds=rng.random() * span))
        audit.append((ids.next("audit_entry"), 1, s.admin_id, "join_request.approved",
                      f"person:{s.parent_ids[k % n_parents]}", None, at))
    await L.load("audit_entry", ("id", "org_id", "actor_id", "action", "subject", "detail", "created_at"), audit)


async def reset_sequences(conn: Any) -> None:
    tables = await conn.execute(text(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' AND column_name = 'id'"))
    for (table,) in tables.all():
        await conn.execute(text(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"))


async def make_database(url: str, families: int, posts: int, with_year: bool) -> tuple[School, dict[str, int], float]:
    """Migrations, then the school (and the year); returns the school, row counts, seconds spent."""
    engine = create_engine(url)
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    await asyncio.to_thread(upgrade, url)
    t0 = time.perf_counter()
    now = utcnow()
    year_start = now - timedelta(days=300)
    rng = random.Random(14)
    ids = Ids()
    try:
        async with engine.begin() as conn:
            L = Loader(conn, engine.dialect.name)
            school = await seed_school(L, ids, families, now, year_start)
            await seed_today_post(L, ids, school, now)
            if with_year:
                await seed_year(L, ids, school, posts, now, year_start, rng)
            if L.pg:
                await reset_sequences(conn)
        if engine.dialect.name == "postgresql":
            async with engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text("ANALYZE"))
        else:
            # The bulk load's gigabytes on disk before anything is measured: else
            # the first measurements' commits wait for their write-back (a
            # deployment never writes a year in one go).
            async with engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            path = make_url(url).database
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return school, L.counts, time.perf_counter() - t0
    finally:
        await engine.dispose()


# -- measuring --------------------------------------------------------------------------------


class Capture:
    """Every statement the measured code runs, with its parameters, for EXPLAIN."""

    def __init__(self, engine: Any) -> None:
        self.on = False
        self.seen: dict[str, tuple[str, Any]] = {}
        event.listen(engine.sync_engine, "before_cursor_execute", self._hook)

    def _hook(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if not self.on or many:
            return
        head = statement.lstrip().split(None, 1)[0].upper()
        if head not in ("SELECT", "UPDATE", "DELETE"):
            return
        if not READS_GROWING.search(statement):
            return
        self.seen.setdefault(self.label + ": " + " ".join(statement.split())[:160], (statement, parameters))

    label = ""


def median_us(times: list[float]) -> float:
    return statistics.median(times) * 1e6


class Bench:
    def __init__(self, url: str, school: School, args: argparse.Namespace) -> None:
        self.url = url
        self.school = school
        self.args = args

    async def __aenter__(self) -> Bench:
        self.settings = Settings(bot_token=TOKEN, admin_ids=frozenset({ADMIN_TG}), database_url=self.url,  # type: ignore[arg-type]
                                 telegram_api_url="http://127.0.0.1:1", timezone="Europe/Moscow",
                                 default_locale="ru", _env_file=None)  # type: ignore[call-arg]
        self.engine = create_engine(self.url)
        self.capture = Capture(self.engine)
        self.session_maker = create_session_maker(self.engine)
        self.bot = make_bot()
        self.i18n = create_i18n("ru")
        self.dp = create_dispatcher(self.settings, self.session_maker, outbox=None,
                                    bot_username=BOT_USER.username or "", i18n=self.i18n)
        self.updates = Updates(self.bot)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.engine.dispose()

    @property
    def session(self) -> MockedSession:
        return self.bot.session  # type: ignore[return-value]

    async def feed(self, update: Any) -> tuple[float, list[Any]]:
        before = len(self.session.requests)
        t0 = time.perf_counter()
        await self.dp.feed_update(self.bot, update)
        took = time.perf_counter() - t0
        calls = self.session.requests[before:]
        return took, calls

    def who(self, tg: int) -> Person:
        return Person(tg, "Родитель")

    async def per_update(self, label: str, make: Callable[[int], Any], n: int, check: Callable[[list[Any]], None],
                         warm: int = 0) -> list[float]:
        """n updates (after `warm` untimed ones); the seconds each took."""
        for i in range(warm):
            _took, calls = await self.feed(make(i))
            check(calls)
        times = []
        self.capture.label, self.capture.on = label, True
        for i in range(warm, warm + n):
            took, calls = await self.feed(make(i))
            self.capture.on = False
            check(calls)
            times.append(took)
        self.session.requests.clear()
        return times

    async def start(self, n: int) -> list[float]:
        tgs = self.school.parent_tgs
        offset = self.school.started
        self.school.started += n

        def check(calls: list[Any]) -> None:
            assert any(isinstance(c, SendMessage) for c in calls), calls

        return await self.per_update(
            "/start", lambda i: self.updates.message(self.who(tgs[(offset + i) % len(tgs)]), "/start"), n, check)

    async def ack(self, n: int) -> list[float]:
        # Every press is somebody's first, in every measurement of the run; the
        # card follows each (its edit is enqueued).
        tgs = self.school.parent_tgs[self.school.acked:]
        post = self.school.today_post
        n = max(1, min(n, len(tgs)))
        self.school.acked += n

        def check(calls: list[Any]) -> None:
            [answer] = [c for c in calls if isinstance(c, AnswerCallbackQuery)]
            assert answer.text in ("Спасибо! Ознакомление отмечено.", "Thank you! Acknowledged."), answer.text

        return await self.per_update(
            "ack", lambda i: self.updates.press(self.who(tgs[i]), PostCb(action="ack", post_id=post).pack()), n, check)

    async def broadcast(self) -> dict[str, float]:
        """A new post to 1,000 parents: enqueued in one transaction, drained by the real outbox."""
        n = min(1000, len(self.school.parent_ids))
        self.capture.label, self.capture.on = "broadcast", True
        t0 = time.perf_counter()
        with self.i18n.context():
            async with self.session_maker.begin() as session:
                repo = Repo(session)
                org = await repo.organisation(1)
                author = await repo.person(self.school.teacher_ids[0])
                post = Post(org_id=1, author_id=author.id, kind=PostKind.ANNOUNCEMENT.value, audience="parents",  # type: ignore[union-attr]
                            text="Рассылка для замера", ask_ack=True, state=PostState.SENT.value, sent_at=utcnow())
                post.groups = []
                await repo.add_post(post)
                post = await repo.post(post.id)
                people = list(await repo.post_recipients(post, []))[:n]  # type: ignore[arg-type]
                await broadcast(repo, post, people, org=org, author_name="Учитель 1", audience="Все родители",  # type: ignore[arg-type]
                                default_locale="ru")
        enqueue = time.perf_counter() - t0
        # The claim query alone, read only, while they wait.
        claim = claimable(utcnow(), 128)  # the sender's own statement (bot/outbox.py), without its row locks
        times = []
        for _ in range(self.args.claims):
            t1 = time.perf_counter()
            async with self.session_maker() as session:
                got = (await session.scalars(claim)).all()
            times.append(time.perf_counter() - t1)
        assert got
        outbox = Outbox(self.session_maker, self.bot, rate=0, per_chat_interval=0)
        outbox.on_progress = progress_hook(self.session_maker, self.i18n, "ru", outbox.wake)
        before = len(self.session.requests)
        t2 = time.perf_counter()
        await outbox.flush()
        await outbox._report_progress(now=True)
        await outbox.flush()
        drain = time.perf_counter() - t2
        self.capture.on = False
        sent = sum(1 for r in self.session.requests[before:] if isinstance(r, SendMessage))
        assert sent >= n, (sent, n)
        self.session.requests.clear()
        return {"enqueue": enqueue * 1000, "claim": median_us(times), "drain": drain * 1000, "copies": n}

    async def stats(self) -> dict[str, Any]:
        """/stats, then its chart and CSV buttons, as an admin uses them."""
        admin = self.who(ADMIN_TG)
        out: dict[str, Any] = {}
        self.capture.label, self.capture.on = "/stats", True
        took, calls = await self.feed(self.updates.message(admin, "/stats"))
        self.capture.on = False
        [message] = [c for c in calls if isinstance(c, SendMessage)]
        out["text"], out["shown"] = took, message.text
        took, calls = await self.feed(self.updates.press(admin, "st:chart"))
        assert any(isinstance(c, SendPhoto) for c in calls)
        out["chart"] = took
        took, calls = await self.feed(self.updates.press(admin, "st:csv"))
        [doc] = [c for c in calls if isinstance(c, SendDocument)]
        out["csv"], out["csv_bytes"] = took, doc.document.data  # type: ignore[union-attr]
        self.session.requests.clear()
        return out

    async def members(self, n: int) -> list[float]:
        admin = self.who(ADMIN_TG)
        gid = self.school.class_ids[0]

        def check(calls: list[Any]) -> None:
            assert any(isinstance(c, EditMessageText) for c in calls), calls

        return await self.per_update("/members", lambda i: self.updates.press(admin, f"mem:group:{gid}:{i % 4}"),
                                     n, check)

    async def mydata(self) -> tuple[float, int]:
        who = self.who(self.school.busiest_tg)
        self.capture.label, self.capture.on = "/mydata", True
        took, calls = await self.feed(self.updates.message(who, "/mydata"))
        self.capture.on = False
        [doc] = [c for c in calls if isinstance(c, SendDocument)]
        self.session.requests.clear()
        return took, len(doc.document.data)  # type: ignore[union-attr]

    async def warm(self) -> None:
        """Untimed once: matplotlib's import and font cache, SQLAlchemy's statement cache."""
        admin = self.who(ADMIN_TG)
        for update in (self.updates.message(admin, "/stats"), self.updates.press(admin, "st:chart"),
                       self.updates.message(self.who(self.school.parent_tgs[-1]), "/start"),
                       self.updates.press(admin, f"mem:group:{self.school.class_ids[0]}:0")):
            await self.feed(update)
        self.session.requests.clear()

    async def size(self) -> int:
        url = make_url(self.url)
        if url.get_backend_name() == "sqlite":
            async with self.engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            return sum(os.path.getsize(p) for p in (url.database, url.database + "-wal") if os.path.exists(p))
        async with self.engine.connect() as conn:
            return int(await conn.scalar(text("SELECT pg_database_size(current_database())")))

    async def explain(self) -> list[str]:
        out = []
        pg = self.engine.dialect.name == "postgresql"
        async with self.engine.connect() as conn:
            for label, (statement, params) in self.capture.seen.items():
                prefix = "EXPLAIN (COSTS OFF) " if pg else "EXPLAIN QUERY PLAN "
                try:
                    result = await conn.exec_driver_sql(prefix + statement, params)
                    rows = result.all()
                except Exception as e:  # a plan we cannot take is said, not hidden
                    out.append(f"{label}\n    (no plan: {type(e).__name__}: {e})")
                    await conn.rollback()
                    continue
                plan = [r[0] for r in rows] if pg else [f"{'  ' * 0}{r[-1]}" for r in rows]
                out.append(label + "\n" + "\n".join("    " + line for line in plan))
            await conn.rollback()
        return out


async def measure(pairs: list[tuple[str, School]], args: argparse.Namespace, *, explain: int | None = None
                  ) -> tuple[list[dict[str, Any]], list[str]]:
    """The same measurements on several databases at once, interleaved round
    by round (the order alternating), so a noisy moment of the machine falls
    on all of them alike. Medians per database; plans of `explain`'s."""
    async with contextlib.AsyncExitStack() as stack:
        benches = [await stack.enter_async_context(Bench(url, school, args)) for url, school in pairs]
        for b in benches:
            await b.warm()
        raw: list[dict[str, list[Any]]] = [{} for _ in benches]
        per = max(1, args.n // args.rounds)
        for r in range(args.rounds):
            order = list(range(len(benches)))
            if r % 2:
                order.reverse()
            for i in order:
                b, out = benches[i], raw[i]
                out.setdefault("start", []).extend(await b.start(per))
                out.setdefault("ack", []).extend(await b.ack(per))
                out.setdefault("members", []).extend(await b.members(max(4, per // 4)))
                for k, v in (await b.broadcast()).items():
                    out.setdefault(f"bc_{k}", []).append(v)
                for k, v in (await b.stats()).items():
                    out.setdefault(f"stats_{k}", []).append(v)
                took, size = await b.mydata()
                out.setdefault("mydata", []).append(took)
                out["mydata_bytes"] = [size]
        figs = []
        for b, out in zip(benches, raw):
            fig: dict[str, Any] = {}
            for k, v in out.items():
                if k in ("stats_shown", "stats_csv_bytes"):
                    fig[k] = v[-1]
                elif k in ("start", "ack", "members", "bc_claim"):
                    fig[k] = statistics.median(v) * (1e6 if k != "bc_claim" else 1)
                elif k.startswith("stats_") or k == "mydata":
                    fig[k] = statistics.median(v) * 1000
                else:
                    fig[k] = statistics.median(v)
            fig["size"] = await b.size()
            figs.append(fig)
        plans = await benches[explain].explain() if explain is not None else []
        return figs, plans


async def stats_text(url: str, school: School, args: argparse.Namespace) -> tuple[str, bytes]:
    async with Bench(url, school, args) as b:
        st = await b.stats()
        return st["shown"], st["csv_bytes"]


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def table(engine: str, cols: list[tuple[str, dict[str, Any], dict[str, Any] | None]]) -> None:
    """cols: (title, figures, the empty database's figures measured alongside, for the ratio)."""
    print(f"\n### {engine}\n")
    print("| measure | " + " | ".join(c for c, _f, _e in cols) + " | " +
          " | ".join(f"{c} ÷ empty" for c, _f, e in cols if e is not None) + " |")
    print("|---|" + "---:|" * (len(cols) + sum(1 for c in cols if c[2] is not None)))

    def row(title: str, key: str, show: Callable[[float], str], digits: int = 2) -> None:
        cells = [show(f[key]) for _c, f, _e in cols]
        ratios = [f"{f[key] / e[key]:.{digits}f}×" if e[key] else "—" for _c, f, e in cols if e is not None]
        print(f"| {title} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")

    us = lambda v: f"{v:,.0f} µs"  # noqa: E731
    ms = lambda v: f"{v:,.0f} ms"  # noqa: E731
    row("/start of a parent, per update", "start", us)
    row("Acknowledge press, per update", "ack", us)
    row("outbox claim query, 1,000 waiting", "bc_claim", us)
    row("1,000-recipient broadcast: enqueue", "bc_enqueue", ms)
    row("1,000-recipient broadcast: drained by the outbox", "bc_drain", ms)
    row("/stats text", "stats_text", ms)
    row("/stats chart", "stats_chart", ms)
    row("/stats CSV", "stats_csv", ms)
    row("/members page, per update", "members", us)
    row("/mydata of the busiest parent", "mydata", ms)
    row("/mydata file of the busiest parent", "mydata_bytes", lambda v: f"{v / 1024:,.0f} KiB", 1)
    row("database size", "size", mib, 0)


async def retain(url: str, keep: timedelta = timedelta(days=90), vacuum: bool = True) -> tuple[Any, float, float]:
    """The daily retention, as the scheduler runs it; then VACUUM. (outcome, seconds, vacuum seconds)."""
    engine = create_engine(url)
    try:
        t0 = time.perf_counter()
        outcome = await Retention(create_session_maker(engine), keep_copies=keep).run()
        took = time.perf_counter() - t0
        if not vacuum:
            return outcome, took, 0.0
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            t1 = time.perf_counter()
            await conn.exec_driver_sql("VACUUM" if engine.dialect.name == "sqlite" else "VACUUM FULL ANALYZE")
            vacuum = time.perf_counter() - t1
        return outcome, took, vacuum
    finally:
        await engine.dispose()


async def run_engine(name: str, empty_url: str, year_url: str, args: argparse.Namespace) -> None:
    families = max(CLASSES, round(1000 * args.scale))
    posts = max(40, round(3000 * args.scale))
    print(f"\n## {name}: {families:,} families, {posts:,} posts in a year (scale {args.scale})", flush=True)
    together = empty_url != year_url  # SQLite: both files at once, measured interleaved
    empty_school, _counts, took = await make_database(empty_url, families, posts, with_year=False)
    print(f"empty: seeded in {took:.1f} s", flush=True)
    if not together:
        [empty], _ = await measure([(empty_url, empty_school)], args)
        print("empty: measured", flush=True)
    school, counts, took = await make_database(year_url, families, posts, with_year=True)
    total = sum(counts.values())
    print(f"a year: {total:,} rows seeded in {took:.1f} s — " + ", ".join(
        f"{t} {n:,}" for t, n in sorted(counts.items(), key=lambda kv: -kv[1])[:8]), flush=True)

    async def measured(title: str) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        """The year in its present state, and the empty database measured alongside it (SQLite)."""
        if together:
            (e, y), shown = await measure([(empty_url, empty_school), (year_url, school)], args, explain=1)
        else:
            [y], shown = await measure([(year_url, school)], args, explain=0)
            e = empty
        print(f"{title}: measured", flush=True)
        return y, e, shown

    year, empty_1, plans = await measured("a year")
    if together:
        empty = empty_1
    # The daily job's first step alone: settled copies a day old counted (a
    # deployment's steady state: the job runs every night), none folded yet.
    counted_text, counted_csv = await stats_text(year_url, school, args)
    outcome_count, took_count, _v = await retain(year_url, keep=timedelta(days=3650), vacuum=False)
    same_counted = (counted_text, counted_csv) == await stats_text(year_url, school, args)
    counted, empty_2, plans_counted = await measured("a year, counted")
    before_text, before_csv = await stats_text(year_url, school, args)
    outcome, took_retain, vacuum = await retain(year_url)
    print("a year: retention done", flush=True)
    after_text, after_csv = await stats_text(year_url, school, args)
    folded, empty_3, plans_folded = await measured("a year, after retention")
    states = [("a year", year, empty), ("a year, counted", counted, empty_2), ("a year, after retention", folded, empty_3)]
    if together:
        table(name, [("empty", empty, None), ("a year", year, empty), ("empty (2)", empty_2, None),
                     ("a year, counted", counted, empty_2), ("empty (3)", empty_3, None),
                     ("a year, after retention", folded, empty_3)])
    else:
        table(name, [("empty", empty, None), ("a year", year, empty), ("a year, counted", counted, empty),
                     ("a year, after retention", folded, empty)])
    print(f"\nCounting (the daily job with nothing old enough to fold): {outcome_count.posts_counted:,} posts "
          f"counted in {took_count:.1f} s; /stats text and CSV the same before and after: {same_counted}")
    print(f"Retention (copies older than 90 days): {outcome.posts_counted:,} posts counted, "
          f"{outcome.posts_folded:,} posts folded, "
          f"{outcome.rows_deleted:,} outbox rows deleted in {took_retain:.1f} s; "
          f"{'VACUUM' if name == 'SQLite' else 'VACUUM FULL ANALYZE'} {vacuum:.1f} s. "
          f"/stats text and CSV the same before and after: {before_text == after_text and before_csv == after_csv}")
    for title, figs, _e in states:
        goal = figs["stats_text"] + figs["stats_chart"] + figs["stats_csv"]
        print(f"/stats text + chart + CSV, {title}: {goal / 1000:.2f} s (goal ≤ 2 s on SQLite)")
    for key, what in (("start", "/start"), ("ack", "Acknowledge"), ("bc_claim", "claim query"),
                      ("bc_enqueue", "broadcast enqueue"), ("bc_drain", "broadcast drain")):
        ratios = [(title, figs[key] / e[key]) for title, figs, e in states]
        print(f"goal ≤ 1.2× empty — {what}: " + ", ".join(
            f"{title} {r:.2f}× ({'met' if r <= 1.2 else 'NOT met'})" for title, r in ratios))
    if args.plans:
        for title, shown in (("a year", plans), ("a year, counted", plans_counted), ("after retention", plans_folded)):
            print(f"\n<details><summary>{name}: plans of the queries that read growing tables ({title})</summary>\n")
            print("```")
            print("\n".join(shown))
            print("```\n</details>")
    if name == "SQLite" and not args.no_backup:
        await backup_check(year_url, school, args)


async def backup_check(url: str, school: School, args: argparse.Namespace) -> None:
    """`python -m bot backup` of the year, restored into a fresh install: the same /stats."""
    source = make_url(url).database
    text_, csv_ = await stats_text(url, school, args)
    with tempfile.TemporaryDirectory(prefix="parta-restore-") as fresh:
        backup = Path(fresh) / "backup" / "parta-backup.db"
        env = {**os.environ, "DATABASE_URL": url, "BOT_TOKEN": "42:" + "x" * 30}
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bot", "backup", str(backup)], cwd=ROOT, env=env, check=True,
                       capture_output=True)
        took = time.perf_counter() - t0
        size = backup.stat().st_size
        # A fresh install: an empty directory, the backup put where DATABASE_URL points, migrations at start.
        data = Path(fresh) / "install" / "data"
        data.mkdir(parents=True)
        shutil.copyfile(backup, data / "parta.db")
        restored = f"sqlite+aiosqlite:///{data / 'parta.db'}"
        t1 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bot", "migrate"], cwd=ROOT, check=True, capture_output=True,
                       env={**env, "DATABASE_URL": restored})
        migrate = time.perf_counter() - t1
        got_text, got_csv = await stats_text(restored, school, args)
        print(f"\nBackup: `python -m bot backup` of the year (after retention, {mib(os.path.getsize(source))}) "
              f"took {took:.1f} s, {mib(size)}; restored into a fresh install (+ migrate {migrate:.1f} s): "
              f"the same /stats text and CSV: {got_text == text_ and got_csv == csv_}")


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="parta-history-") as tmp:
        if not args.no_sqlite:
            await run_engine("SQLite", f"sqlite+aiosqlite:///{tmp}/empty.db", f"sqlite+aiosqlite:///{tmp}/year.db",
                             args)
            for f in Path(tmp).glob("*.db*"):
                f.unlink()
        if args.pg:
            await run_engine("PostgreSQL", args.pg, args.pg, args)
    print(f"\nTotal run time {time.perf_counter() - _T0:.0f} s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=1.0, help="the share of a full year (default 1: 1,000 families, "
                   "3,000 posts, ~3 M outbox rows); e.g. 0.05 for a quick try")
    p.add_argument("--pg", help="a PostgreSQL URL (postgresql+asyncpg://...) to run on as well; it is WIPED")
    p.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    p.add_argument("--no-backup", action="store_true", help="skip the backup and restore check")
    p.add_argument("--no-plans", dest="plans", action="store_false", help="do not print the EXPLAIN plans")
    p.add_argument("-n", type=int, default=200, help="updates per per-update measure and database (default 200)")
    p.add_argument("--rounds", type=int, default=4, help="interleaved rounds (default 4); /stats, the broadcast "
                   "and /mydata run once a round")
    p.add_argument("--claims", type=int, default=50, help="claim queries timed a round (default 50)")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
