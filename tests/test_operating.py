"""Operating a deployment, with the commands of docs/operating.md run for real.

- SQLite: `python -m bot backup FILE` taken while the bot runs; the live file
  is lost; the backup is put back and the real bot runs on it.
- PostgreSQL: `pg_dump -Fc`, `pg_restore` into a fresh database, the real bot
  runs on the restored one (ids continue: a new person can be added).
- Moving a school: `python -m bot copy-db postgresql+asyncpg://…` from a
  SQLite database with rows in every table; every row arrives unchanged, the
  bot runs on PostgreSQL and adds rows after the copied ids; a second copy
  into the now non-empty database fails (exit code 1) and changes nothing.

The PostgreSQL tests need a server at 127.0.0.1:5432 where the user
`postgres` may create databases without a password (as .ci/run has), and
pg_dump / pg_restore; otherwise they are skipped, saying why. Each creates
databases named parta_ops_<random> and drops them at the end.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.settings import Settings
from storage.db import create_engine, create_session_maker
from storage.models import (
    Absence,
    Acknowledgement,
    AuditEntry,
    Base,
    Block,
    Delivery,
    DeliveryTally,
    DueItem,
    FsmState,
    Group,
    Guardianship,
    Invitation,
    JoinRequest,
    Lease,
    LinkedChat,
    Membership,
    Person,
    PollOption,
    Post,
    PostGroup,
    ProcessedUpdate,
    Pupil,
    Relay,
    Vote,
    WeeklyItem,
    utcnow,
)
from tests.fake_telegram import FakeTelegram
from tests.seed import FIRST_PARENT_ID, School, seed_school
from tests.test_e2e import BOT_USERNAME, ROOT, STARTUP, TOKEN, Driver

PARENT = FIRST_PARENT_ID  # "Родитель 1", a parent of 5А (tests/seed.py)
ADMIN = 1001
NEWCOMER = 5555
PG_HOST, PG_PORT = "127.0.0.1", 5432
COMMAND_TIMEOUT = 60.0

# Every setting the bot reads (Settings' fields): none may leak in from the
# parent environment (a WEBHOOK_URL or REDIS_URL there would change the mode).
SETTINGS_VARS = {name.upper() for name in Settings.model_fields}


def env_for(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in SETTINGS_VARS}
    env.update(settings, PYTHONUNBUFFERED="1")
    return env


async def run(*argv: str, env: dict[str, str]) -> tuple[int, str, str]:
    """A command to its end: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), COMMAND_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{' '.join(argv)} did not finish in {COMMAND_TIMEOUT}s") from None
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


async def parta(*args: str, **settings: str) -> tuple[int, str, str]:
    """`python -m bot ARGS` as an operator runs it, with exactly these settings."""
    return await run(sys.executable, "-m", "bot", *args, env=env_for(**settings))


async def migrate(url: str) -> None:
    code, out, err = await parta("migrate", BOT_TOKEN=TOKEN, DATABASE_URL=url)
    assert code == 0 and "up to date" in out, out + err


@asynccontextmanager
async def bot_on(tg: FakeTelegram, url: str, log: Path) -> AsyncIterator[Driver]:
    """The real `python -m bot` (polling) on DATABASE_URL=url, stopped with SIGTERM as systemd stops it."""
    polls = len(tg.calls_to("getUpdates"))
    env = env_for(BOT_TOKEN=TOKEN, TELEGRAM_API_URL=tg.url, ADMIN_IDS=str(ADMIN), DATABASE_URL=url,
                  TIMEZONE="Europe/Moscow", DEFAULT_LOCALE="ru")
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=ROOT, env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
        )
    app = Driver(tg, proc, log)
    try:
        await app.until(lambda: len(tg.calls_to("getUpdates")) > polls, "the bot to start polling", STARTUP)
        yield app
    except BaseException:
        print(f"--- bot log ({log}) ---\n{app.log_text()}")
        raise
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def home_screen(app: Driver, user: int, *texts: str) -> None:
    """`/start` from `user` gets the member's home screen naming `texts` (their organisation, group...)."""
    after = await app.say(user, "/start")
    await app.message(user, after=after, contains=texts)


async def seed(url: str, parents: int = 3) -> School:
    engine = create_engine(url)
    try:
        return await seed_school(create_session_maker(engine), parents=parents)
    finally:
        await engine.dispose()


async def table_rows(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, in primary-key order."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return {
                table.name: [dict(r._mapping) for r in await conn.execute(
                    select(table).order_by(*table.primary_key.columns))]
                for table in Base.metadata.sorted_tables
            }
    finally:
        await engine.dispose()


async def counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return {t.name: await conn.scalar(select(func.count()).select_from(t)) or 0
                    for t in Base.metadata.sorted_tables}
    finally:
        await engine.dispose()


async def max_ids(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return {t.name: await conn.scalar(select(func.max(t.c.id))) or 0
                    for t in Base.metadata.sorted_tables if "id" in t.c and t.c.id.primary_key}
    finally:
        await engine.dispose()


# -- PostgreSQL ----------------------------------------------------------------------------


async def pg_admin() -> Any:
    """A connection to the server's `postgres` (or `test`) database as user postgres."""
    import asyncpg

    last: BaseException | None = None
    for database in ("postgres", "test"):
        try:
            return await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="postgres", database=database, timeout=3)
        except Exception as e:  # noqa: PERF203
            last = e
    raise ConnectionError(last)


async def require_postgres() -> None:
    missing = [tool for tool in ("pg_dump", "pg_restore") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (apt-get install postgresql-client)")
    try:
        conn = await pg_admin()
    except Exception as e:
        pytest.skip(f"PostgreSQL at {PG_HOST}:{PG_PORT} is unreachable as user postgres without a password: {e}")
    await conn.close()


@asynccontextmanager
async def fresh_databases(n: int) -> AsyncIterator[list[tuple[str, str]]]:
    """n new empty databases as (DATABASE_URL, libpq URL for pg_dump/pg_restore); dropped afterwards."""
    names = [f"parta_ops_{secrets.token_hex(4)}" for _ in range(n)]
    conn = await pg_admin()
    try:
        for name in names:
            await conn.execute(f'CREATE DATABASE "{name}"')
        yield [(f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}",
                f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{name}") for name in names]
    finally:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


# -- a. SQLite backup and restore ------------------------------------------------------------


async def test_sqlite_backup_while_running_then_restore_and_run_on_it(tmp_path: Path) -> None:
    live = tmp_path / "data" / "parta.db"
    url = f"sqlite+aiosqlite:///{live}"
    backup = tmp_path / "backups" / "parta-monday.db"
    await migrate(url)
    school = await seed(url)
    async with FakeTelegram(token=TOKEN, bot_username=BOT_USERNAME) as tg:
        tg.add_user(PARENT, "Parent", language_code="ru")
        async with bot_on(tg, url, tmp_path / "bot-live.log") as app:
            await home_screen(app, PARENT, "Здравствуйте, Родитель 1", "Школа № 1", "5А")
            # A change the running bot has committed (in SQLite's WAL, not yet in the main file).
            after = await app.say(PARENT, "/language")
            choose = await app.message(PARENT, after=after, button="lang:en")
            await app.press(PARENT, choose, "lang:en")
            await app.edited(PARENT, choose, lambda m: "Language: English" in m.content, "English chosen")

            # The online backup, taken while the bot runs.
            code, out, err = await parta("backup", str(backup), DATABASE_URL=url)
            assert code == 0, out + err
            assert out.strip() == f"parta: backed up to {backup}", out
            await home_screen(app, PARENT, "Hello, Родитель 1")  # the bot did not notice

        with sqlite3.connect(backup) as check:
            assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert check.execute("SELECT locale FROM person WHERE telegram_id = ?", (PARENT,)).fetchone() == ("en",)
            assert check.execute("SELECT version_num FROM alembic_version").fetchone() is not None

        # The disk is lost. Restore: the bot is stopped; the backup is put back in
        # place (with no -wal/-shm left beside it) and the bot started again.
        for leftover in live.parent.iterdir():
            leftover.unlink()
        shutil.copyfile(backup, live)
        async with bot_on(tg, url, tmp_path / "bot-restored.log") as app:
            # The seeded parent, with the language chosen before the backup.
            await home_screen(app, PARENT, "Hello, Родитель 1! This is Школа № 1.", "You are in:", "5А — parent")
            # The teacher too (seeded, never seen by the bot before).
            tg.add_user(school.teacher_tg, "Anna", language_code="en")
            await home_screen(app, school.teacher_tg, "Hello, Анна Смирнова", "5А — teacher")


async def test_backup_of_a_postgres_url_is_refused_and_names_pg_dump(tmp_path: Path) -> None:
    code, out, err = await parta("backup", str(tmp_path / "x.db"),
                                 DATABASE_URL=f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/parta")
    assert code == 1, out + err
    assert err.strip().splitlines()[-1].startswith("parta: backup failed:") and "pg_dump" in err, err
    assert not (tmp_path / "x.db").exists()


async def test_backup_of_a_database_that_does_not_exist_fails_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "data" / "parta.db"  # a mistyped DATABASE_URL, or run from the wrong directory
    missing.parent.mkdir()
    code, out, err = await parta("backup", str(tmp_path / "y.db"), DATABASE_URL=f"sqlite+aiosqlite:///{missing}")
    assert code == 1, f"backing up a database that does not exist succeeded: {out}{err}"
    assert err.strip().splitlines()[-1].startswith(f"parta: backup failed: there is no database at {missing}"), err
    assert not missing.exists(), "the backup created an empty database at DATABASE_URL"
    assert not (tmp_path / "y.db").exists(), "an empty backup was written"


# -- b. PostgreSQL backup and restore --------------------------------------------------------


async def test_postgres_dump_and_restore_into_a_fresh_database(tmp_path: Path) -> None:
    await require_postgres()
    dump = tmp_path / "parta.dump"
    async with fresh_databases(2) as [(url, libpq), (restored_url, restored_libpq)]:
        await migrate(url)
        school = await seed(url)
        before = await table_rows(url)

        code, out, err = await run("pg_dump", "-Fc", "-f", str(dump), libpq, env=env_for())
        assert code == 0 and dump.stat().st_size > 0, out + err
        code, out, err = await run("pg_restore", "--no-owner", "--exit-on-error", "--single-transaction",
                                   "-d", restored_libpq, str(dump), env=env_for())
        assert code == 0, out + err
        assert await table_rows(restored_url) == before

        ids = await max_ids(restored_url)
        async with FakeTelegram(token=TOKEN, bot_username=BOT_USERNAME) as tg:
            tg.add_user(PARENT, "Parent", language_code="ru")
            tg.add_user(NEWCOMER, "Newcomer", language_code="ru")
            async with bot_on(tg, restored_url, tmp_path / "bot.log") as app:
                await home_screen(app, PARENT, "Здравствуйте, Родитель 1", "Школа № 1", "5А — родитель")
                # Someone new: a person row after the restored ones (the sequences came along).
                await home_screen(app, NEWCOMER, "Школа № 1", "/join")
        engine = create_engine(restored_url)
        try:
            async with engine.connect() as conn:
                newcomer = await conn.scalar(select(Person.id).where(Person.telegram_id == NEWCOMER))
        finally:
            await engine.dispose()
        assert newcomer is not None and newcomer > ids["person"] >= max(school.parent_person_ids)


# -- c. SQLite → PostgreSQL ---------------------------------------------------------------


async def seed_everything(url: str) -> School:
    """A school with rows in every table, the awkward values included (Cyrillic,
    64-bit ids, negative chat ids, dates, flags, a delivery editing an earlier
    one, a reply to a relayed message, naive-UTC times)."""
    engine = create_engine(url)
    sm = create_session_maker(engine)
    now = utcnow()
    try:
        school = await seed_school(sm, parents=3)
        org = school.org_id
        async with sm.begin() as s:
            staff = await s.scalar(select(Group.id).where(Group.org_id == org, Group.kind == "staff"))
            parents = school.parent_person_ids
            admin = Person(telegram_id=ADMIN, full_name="Админ Школы", telegram_name="Admin", locale="en",
                           last_seen_at=now)
            asker = Person(telegram_id=8_000_000_001, full_name=None, telegram_name="Ольга 🌸", digest_at="08:00")
            s.add_all([admin, asker])
            await s.flush()
            invitation = Invitation(org_id=org, group_id=school.group_id, role="student", code="ABCDEFGHJK",
                                    created_by_id=admin.id, expires_at=now + timedelta(days=14), max_uses=30, uses=1)
            s.add(invitation)
            await s.flush()
            s.add_all([
                Membership(org_id=org, group_id=staff, person_id=admin.id, role="admin", state="active"),
                Membership(org_id=org, group_id=school.group_id, person_id=asker.id, role="student",
                           state="removed", invitation_id=invitation.id, verified_by_id=admin.id, verified_at=now),
                JoinRequest(org_id=org, group_id=school.group_id, person_id=asker.id, role="parent",
                            full_name="Ольга Петрова", child_name="Вася", state="rejected", decided_by_id=admin.id,
                            decided_at=now),
                AuditEntry(org_id=org, actor_id=admin.id, action="group.create", subject=f"group:{school.group_id}",
                           detail="5А"),
            ])
            pupil = Pupil(org_id=org, group_id=school.group_id, full_name="Петя Иванов")
            poll = Post(org_id=org, author_id=school.teacher_person_id, kind="poll", audience="groups",
                        text="<b>Экскурсия</b>: куда?", ask_ack=True, urgent=True, state="sent", sent_at=now,
                        poll_multiple=True, poll_closes_at=now + timedelta(days=1))
            event = Post(org_id=org, author_id=school.teacher_person_id, kind="event", audience="groups",
                         to_students=False, text="Утренник", state="withdrawn", sent_at=now, withdrawn_at=now,
                         event_at=now + timedelta(days=3), place="Актовый зал", reminder_minutes="1440,60")
            s.add_all([pupil, poll, event])
            await s.flush()
            museum, park = PollOption(org_id=org, post_id=poll.id, position=0, text="Музей"), \
                PollOption(org_id=org, post_id=poll.id, position=1, text="Парк")
            card = Delivery(org_id=org, chat_id=ADMIN, method="sendMessage", payload='{"text":"Заявка"}',
                            topic="join_request", ref_id=1, status="sent", attempts=1, next_attempt_at=now,
                            message_id=42, claimed_by="old-host:1234", claimed_at=now, sent_at=now)
            s.add_all([museum, park, card,
                       Guardianship(org_id=org, person_id=parents[0], pupil_id=pupil.id),
                       PostGroup(org_id=org, post_id=poll.id, group_id=school.group_id),
                       PostGroup(org_id=org, post_id=event.id, group_id=school.group_id)])
            await s.flush()
            s.add_all([
                Delivery(org_id=org, chat_id=ADMIN, method="editMessageText", payload='{"text":"Отклонена"}',
                         topic="join_request-edit", ref_id=1, edit_of_id=card.id, status="cancelled",
                         next_attempt_at=now),
                Delivery(org_id=org, chat_id=PARENT + 1, method="sendMessage", payload='{"text":"Экскурсия"}',
                         topic="post", ref_id=poll.id, post_id=poll.id, person_id=parents[1], status="unreachable",
                         error="Forbidden: bot was blocked by the user", next_attempt_at=now),
                Vote(org_id=org, post_id=poll.id, option_id=museum.id, person_id=parents[0]),
                Vote(org_id=org, post_id=poll.id, option_id=park.id, person_id=parents[0]),
                Acknowledgement(org_id=org, post_id=poll.id, person_id=parents[0]),
                DeliveryTally(org_id=org, post_id=event.id, group_id=school.group_id, status="sent", copies=3),
                DueItem(org_id=org, kind="poll_close", ref_id=poll.id, due_at=now - timedelta(hours=1),
                        key=f"poll:{poll.id}", state="done", fired_at=now),
                DueItem(org_id=org, kind="event_reminder", ref_id=event.id, minutes=60,
                        due_at=now + timedelta(days=3), key=f"event:{event.id}:60", state="cancelled"),
                WeeklyItem(org_id=org, group_id=school.group_id, title="Бассейн", weekday=1, time_of_day="10:00",
                           remind_minutes=30, created_by_id=school.teacher_person_id),
                Absence(org_id=org, group_id=school.group_id, pupil_id=pupil.id, parent_id=parents[0],
                        start_date=date(2026, 12, 1), end_date=date(2026, 12, 3), reason="ОРВИ", late=True),
                Block(org_id=org, blocker_id=school.teacher_person_id, blocked_id=asker.id),
                LinkedChat(org_id=org, group_id=school.group_id, chat_id=-1001234567890, title="5А родители",
                           invite_link="https://t.me/+AbCdEf", linked_by_id=school.teacher_person_id),
                ProcessedUpdate(update_id=9_000_000_123, processed_at=now),
                FsmState(key="fsm:123456:999:999:default", state="Compose:text", data='{"title": "Ёлка"}',
                         updated_at=now),
                Lease(name="scheduler", holder="old-host:1234", expires_at=now - timedelta(hours=1)),
            ])
            question = Relay(org_id=org, sender_id=parents[0], recipient_id=school.teacher_person_id,
                             sender_message_id=7)
            s.add(question)
            await s.flush()
            s.add(Relay(org_id=org, sender_id=school.teacher_person_id, recipient_id=parents[0],
                        reply_to_id=question.id, sender_message_id=8_000_000_000_000))
        return school
    finally:
        await engine.dispose()


async def test_moving_a_school_from_sqlite_to_postgres(tmp_path: Path) -> None:
    await require_postgres()
    source = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'parta.db'}"
    await migrate(source)
    school = await seed_everything(source)
    rows = await table_rows(source)
    empty = sorted(name for name, table in rows.items() if not table)
    assert not empty, f"the seed leaves tables empty: {empty}"

    async with fresh_databases(1) as [(target, _libpq)]:
        code, out, err = await parta("copy-db", target, DATABASE_URL=source)
        total = sum(len(t) for t in rows.values())
        assert code == 0, out + err
        assert out.strip() == f"parta: copied {total} rows in {len(rows)} tables; the counts match", out

        # Every row of every table, value for value.
        copied = await table_rows(target)
        assert {name: len(t) for name, t in copied.items()} == {name: len(t) for name, t in rows.items()}
        for name in rows:
            assert copied[name] == rows[name], name
        # Spot checks of what a dialect change could bend.
        people = {p["telegram_id"]: p for p in copied["person"]}
        assert people[PARENT]["full_name"] == "Родитель 1"
        assert people[8_000_000_001]["telegram_name"] == "Ольга 🌸" and people[8_000_000_001]["full_name"] is None
        [chat] = copied["linked_chat"]
        assert chat["chat_id"] == -1001234567890
        [absence] = copied["absence"]
        assert (absence["start_date"], absence["end_date"]) == (date(2026, 12, 1), date(2026, 12, 3))
        assert absence["late"] is True and absence["reason"] == "ОРВИ"
        edit = next(d for d in copied["delivery"] if d["method"] == "editMessageText")
        assert next(d for d in copied["delivery"] if d["id"] == edit["edit_of_id"])["message_id"] == 42
        reply = next(r for r in copied["relay"] if r["reply_to_id"] is not None)
        assert reply["sender_message_id"] == 8_000_000_000_000
        assert copied["processed_update"][0]["update_id"] == 9_000_000_123
        assert copied["lease"][0]["expires_at"].tzinfo is not None
        ids = await max_ids(target)

        # The bot runs on PostgreSQL: a copied member is at home; new rows get new ids.
        async with FakeTelegram(token=TOKEN, bot_username=BOT_USERNAME) as tg:
            tg.add_user(PARENT, "Parent", language_code="ru")
            tg.add_user(ADMIN, "Admin", language_code="en")
            tg.add_user(NEWCOMER, "Newcomer", language_code="ru")
            async with bot_on(tg, target, tmp_path / "bot.log") as app:
                await home_screen(app, PARENT, "Здравствуйте, Родитель 1", "Школа № 1", "5А — родитель")
                await home_screen(app, NEWCOMER, "Школа № 1", "/join")  # a new person and a menu delivery
                # The copied admin creates a group (a study_group and an audit_entry row).
                after = await app.say(ADMIN, "/groups")
                groups = await app.message(ADMIN, after=after, button="grp:new")
                await app.press(ADMIN, groups, "grp:new")
                await app.message(ADMIN, after=groups.message_id, contains="5А")
                after = await app.say(ADMIN, "6Б")
                await app.message(ADMIN, after=after, contains=("✅", "6Б"))
                # The scheduler took over the copied (expired) lease.
                await app.until(lambda: "runs the clock" in app.log_text(), "the scheduler to lead")

        now_rows = await table_rows(target)
        newcomer = next(p for p in now_rows["person"] if p["telegram_id"] == NEWCOMER)
        group = next(g for g in now_rows["study_group"] if g["title"] == "6Б")
        new_audit = [a for a in now_rows["audit_entry"] if a["action"] == "group.create" and a["detail"] == "6Б"]
        new_deliveries = [d for d in now_rows["delivery"] if d["id"] not in {r["id"] for r in rows["delivery"]}]
        assert newcomer["id"] > ids["person"]
        assert group["id"] > ids["study_group"] and group["org_id"] == school.org_id
        assert len(new_audit) == 1 and new_audit[0]["id"] > ids["audit_entry"]
        assert new_deliveries and min(d["id"] for d in new_deliveries) > ids["delivery"]
        assert now_rows["lease"][0]["holder"] != "old-host:1234"

        # A second copy into the (now non-empty) database: refused, nothing changed.
        before = await table_rows(target)
        code, out, err = await parta("copy-db", target, DATABASE_URL=source)
        assert code == 1, out + err
        assert re.fullmatch(r"parta: copy-db failed: the target is not empty \(table \w+\); copy into a fresh database",
                            err.strip().splitlines()[-1]), err
        assert await table_rows(target) == before
        assert await table_rows(source) == rows
