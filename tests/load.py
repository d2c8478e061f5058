"""Driving many people through the real `python -m bot` process, for the load
test (tests/test_load.py) and the throughput bench (bench/throughput.py).

- :class:`WatchedTelegram`: the fake Bot API, waking its waiters after every
  call it handled (no polling loop per person: a thousand waiters cost nothing
  while nothing happens);
- :class:`BotProcess`: the bot started as a deployment starts it (settings from
  the environment only, migrations at start-up, long polling), its log, its CPU;
- :func:`prepare_database`: a wiped database, migrated by `python -m bot
  migrate`, with a school, its verified teacher and an invitation for parents;
- :class:`Someone`: one person who writes and presses buttons that really are
  on the bot's messages, and notes how long each answer took.

Times are the fake's monotonic clock (the fake runs in this process): when the
person acted (the update was created) and when the bot's answer reached the fake.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fake_telegram import CallbackAnswer, FakeTelegram, StoredMessage

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "123456:LOAD-token-for-the-load-tests-abc"
BOT_USERNAME = "parta_load_bot"
ADMIN = 1001
STARTUP = 90.0  # importing aiogram alone takes seconds on a loaded machine

# The apology of handlers/errors.py (what a person sees when their update failed).
APOLOGY = "Sorry, something went wrong on our side and nothing was changed. Please try again."


def apologies() -> tuple[str, ...]:
    """The apology in every catalogue's words."""
    from bot.i18n import create_i18n

    i18n = create_i18n("ru")
    return tuple(sorted({i18n.gettext(APOLOGY, locale=locale) for locale in ("en", "ru")}))


class BotExited(AssertionError):
    pass


class WatchedTelegram(FakeTelegram):
    """FakeTelegram that wakes `until()` waiters after every call it handled.

    A press waits for its own answer instead (`answer_to`): a thousand presses
    in flight would otherwise each look again after every call the bot makes,
    and the fake — in the bench's process — would measure itself."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tick: asyncio.Event | None = None
        self.proc: asyncio.subprocess.Process | None = None  # a dead bot ends every wait
        self._answer_waiters: dict[str, asyncio.Future[None]] = {}

    async def _m_answer_callback_query(self, p: dict[str, Any], files: dict[str, Any]) -> bool:
        result = await super()._m_answer_callback_query(p, files)
        waiter = self._answer_waiters.pop(str(p.get("callback_query_id")), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return result

    async def answer_to(self, query_id: str, timeout: float, what: str) -> CallbackAnswer:
        """The callback answer to one press, woken by that answer alone."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        waiter = self._answer_waiters.setdefault(query_id, loop.create_future())
        try:
            while (answer := self.callback_answer(query_id)) is None:
                if self.internal_errors:
                    raise AssertionError(f"the fake Telegram server crashed: {self.internal_errors[-1]!r}")
                if self.proc is not None and self.proc.returncode is not None:
                    raise BotExited(f"the bot exited with code {self.proc.returncode} while waiting for {what}")
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
                try:
                    await asyncio.wait_for(asyncio.shield(waiter), min(remaining, 1.0))
                except TimeoutError:
                    pass
            return answer
        finally:
            self._answer_waiters.pop(query_id, None)

    def _poke(self) -> None:
        if self._tick is not None:
            self._tick.set()
            self._tick = None

    async def _handle_api(self, request: web.Request) -> web.Response:
        try:
            return await super()._handle_api(request)
        finally:
            self._poke()

    def _enqueue(self, kind: str, payload: dict[str, Any]) -> int | None:
        try:
            return super()._enqueue(kind, payload)
        finally:
            self._poke()

    async def until(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                value = predicate()
            except Exception:  # "not yet"
                value = None
            if value:
                return value
            if self.internal_errors:
                raise AssertionError(f"the fake Telegram server crashed: {self.internal_errors[-1]!r}")
            if self.proc is not None and self.proc.returncode is not None:
                raise BotExited(f"the bot exited with code {self.proc.returncode} while waiting for {what}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
            if self._tick is None:
                self._tick = asyncio.Event()
            try:
                await asyncio.wait_for(self._tick.wait(), min(remaining, 0.5))
            except TimeoutError:
                pass


# -- the bot process -------------------------------------------------------------------------------------


def settings_env(**settings: str) -> dict[str, str]:
    """The environment for the bot: none of the parent's settings leak in."""
    from bot.settings import Settings

    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    env.update(settings)
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def migrate(database_url: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "migrate", cwd=ROOT,
        env=settings_env(BOT_TOKEN=TOKEN, DATABASE_URL=database_url),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"python -m bot migrate failed:\n{out.decode(errors='replace')}")


async def wipe_postgres(database_url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"), timeout=5)
    try:
        await conn.execute("DROP SCHEMA public CASCADE")
        await conn.execute("CREATE SCHEMA public")
    finally:
        await conn.close()


@dataclass
class Prepared:
    url: str
    school: Any  # tests.seed.School
    code: str


async def prepare_database(database_url: str, *, parents: int = 0) -> Prepared:
    """Wiped (PostgreSQL) or new (SQLite file), migrated, seeded: a school with
    one class group and its verified teacher (English), `parents` members, and an
    invitation for parents with unlimited uses."""
    from storage.db import create_engine, create_session_maker
    from tests.seed import seed_invitation, seed_school

    if database_url.startswith("postgresql"):
        await wipe_postgres(database_url)
    await migrate(database_url)
    engine = create_engine(database_url)
    try:
        session_maker = create_session_maker(engine)
        school = await seed_school(session_maker, parents=parents)
        code = await seed_invitation(session_maker, school)
    finally:
        await engine.dispose()
    return Prepared(database_url, school, code)


class BotProcess:
    """`python -m bot` (polling) against the fake; its output goes to `log`."""

    def __init__(self, tg: WatchedTelegram, database_url: str, log: Path, **settings: str) -> None:
        self.tg, self.database_url, self.log = tg, database_url, log
        self.settings = settings
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> BotProcess:
        env = settings_env(
            BOT_TOKEN=TOKEN, TELEGRAM_API_URL=self.tg.url, ADMIN_IDS=str(ADMIN), DATABASE_URL=self.database_url,
            TIMEZONE="Europe/Moscow", DEFAULT_LOCALE="ru", **self.settings,
        )
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", cwd=ROOT, env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
            )
        self.tg.proc = self.proc
        polls = lambda: any(c.method == "getUpdates" for c in self.tg.calls)  # noqa: E731
        await self.tg.until(lambda: polls() and "Parta is running" in self.log_text(), STARTUP,
                            "the bot to start polling")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> int | None:
        """SIGTERM (a clean shutdown), then SIGKILL if it takes more than 15 s."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return proc.returncode if proc else None
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        return proc.returncode

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def cpu_seconds(self, *, main_thread: bool = False) -> float:
        """User + system CPU of the bot process so far (Linux /proc); of its
        main thread alone (the event loop, where Python runs) with `main_thread`."""
        assert self.proc is not None
        where = f"/proc/{self.proc.pid}/task/{self.proc.pid}/stat" if main_thread else f"/proc/{self.proc.pid}/stat"
        try:
            fields = Path(where).read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def failed_updates(self) -> list[str]:
        """The log lines of updates that failed (handlers/errors.py logs each one)."""
        return re.findall(r"^.*update \d+ failed.*$", self.log_text(), flags=re.MULTILINE)

    def tracebacks(self) -> list[str]:
        """Each traceback in the log, as its last line (the exception)."""
        found = []
        lines = self.log_text().splitlines()
        for i, line in enumerate(lines):
            if line.startswith("Traceback (most recent call last)"):
                j = i + 1
                while j < len(lines) and (lines[j].startswith(" ") or lines[j].startswith("Traceback")
                                          or not lines[j].strip() or lines[j].startswith("During handling")
                                          or lines[j].startswith("The above exception")):
                    j += 1
                found.append(lines[j] if j < len(lines) else line)
        return found


# -- people ----------------------------------------------------------------------------------------------


@dataclass
class Someone:
    """One person in their private chat with the bot."""

    tg: WatchedTelegram
    user_id: int
    timeout: float = 120.0
    # (what they did, seconds until the bot's answer reached the fake)
    answers: list[tuple[str, float]] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)

    def newest(self, after: int, contains: str | tuple[str, ...] = (), button: str | None = None
               ) -> StoredMessage | None:
        wanted = (contains,) if isinstance(contains, str) else contains
        for m in reversed(self.tg.bot_messages(self.user_id)):
            if m.message_id <= after:
                return None
            if all(m.matches(s) for s in wanted) and (
                button is None or any(d.startswith(button) for d in m.callback_data)
            ):
                return m
        return None

    async def say(self, text: str, *, contains: str | tuple[str, ...] = (), button: str | None = None,
                  timeout: float | None = None) -> StoredMessage:
        """Writes `text`; waits for the bot's new message after it (containing
        `contains`, with a button starting with `button`, when given)."""
        asked = time.monotonic()
        sent = await self.tg.send_text(self.user_id, text)
        try:
            reply = await self.tg.until(lambda: self.newest(sent.message_id, contains, button),
                                        timeout or self.timeout,
                                        f"an answer to {text!r} in chat {self.user_id}")
        except TimeoutError:
            self.unanswered.append(text)
            raise
        self.answers.append((text, time.monotonic() - asked))
        return reply

    def button(self, prefix: str) -> tuple[StoredMessage, str] | None:
        """The newest bot message with exactly one button starting with `prefix`, and its data."""
        for m in reversed(self.tg.bot_messages(self.user_id)):
            hits = [d for d in m.callback_data if d.startswith(prefix)]
            if len(hits) == 1:
                return m, hits[0]
        return None

    async def press(self, prefix: str, *, timeout: float | None = None) -> CallbackAnswer:
        """Presses the button whose data starts with `prefix` (waiting for it to be
        shown); waits for the callback answer."""
        msg, data = await self.tg.until(lambda: self.button(prefix), timeout or self.timeout,
                                        f"a button {prefix!r} in chat {self.user_id}")
        return await self.press_on(msg, data, timeout=timeout)

    async def press_on(self, msg: StoredMessage, data: str, *, timeout: float | None = None) -> CallbackAnswer:
        qid = await self.tg.press_button(self.user_id, msg.message_id, data)
        try:
            answer = await self.tg.answer_to(qid, timeout or self.timeout,
                                             f"the answer to pressing {data!r} in chat {self.user_id}")
        except TimeoutError:
            self.unanswered.append(data)
            raise
        self.answers.append((data, answer.delay))
        return answer

    async def join(self, code: str, name: str, child: str) -> None:
        """The invitation link, the full name, the child's name, ✅ Join: four updates."""
        await self.say(f"/start {code}", contains="🎫")
        await self.say(name)
        check = await self.say(child, button="join:confirm")
        await self.press_on(check, next(d for d in check.callback_data if d.startswith("join:confirm")))
        try:
            await self.tg.until(lambda: "✅" in self.current(check).content and not self.current(check).buttons,
                                self.timeout, f"the welcome in chat {self.user_id}")
        except TimeoutError:
            self.unanswered.append("the welcome after ✅ Join")
            raise

    def current(self, msg: StoredMessage) -> StoredMessage:
        return next(m for m in self.tg.bot_messages(self.user_id) if m.message_id == msg.message_id)


async def post_with_acknowledgement(teacher: Someone, text: str) -> None:
    """The teacher's /post: announcement → their group → text → ask to
    acknowledge → preview → send, pressing the buttons the bot shows."""
    await teacher.say("/post", button="cmp:kind:")
    await teacher.press("cmp:kind:announcement")
    await teacher.press("cmp:group:")
    await teacher.press("cmp:next:")
    await teacher.say(text, button="cmp:ack:")
    await teacher.press("cmp:ack:")
    await teacher.press("cmp:preview:")
    await teacher.press("cmp:send:")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]
