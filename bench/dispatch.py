"""Per-update cost of Parta's dispatcher against a floor of bare aiogram.

Run from the repository root:

    .venv/bin/python bench/dispatch.py            # full run: 5 rounds x 250 updates per case
    .venv/bin/python bench/dispatch.py --quick    # smoke run, a few seconds
    .venv/bin/python bench/dispatch.py --memory   # SQLite in memory instead of a file

The floor is "bare aiogram + one SELECT + one sendMessage": a fresh
`aiogram.Dispatcher()` with one message handler that SELECTs the person row by
Telegram id through an async SQLAlchemy session on the same engine and calls
`message.answer(...)`. Both the floor and Parta's dispatcher (built by
`bot.app.create_dispatcher`, exactly as tests/conftest.py does) run against the
same database, over the tests' `MockedSession`, interleaved round by round in
the same process, in short blocks whose order rotates. A case's time is the
median over rounds of the round's median time per update; its ratio is the
median over rounds of (case ÷ floor of the same round). Medians and pairing,
as the machine is assumed noisy.

Only `Dispatcher.feed_update` is timed. Updates are built beforehand, already
mounted on the bot (as polling does), so neither their construction nor
aiogram's JSON round trip for unmounted updates is counted; any state a case
needs before its step (the join dialog's FSM state) is set outside the timing.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

_T0 = time.perf_counter()  # before the heavy imports (aiogram's alone take seconds)
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiogram  # noqa: E402
import sqlalchemy  # noqa: E402
from aiogram import Bot, Dispatcher  # noqa: E402
from aiogram.filters import Command  # noqa: E402
from aiogram.fsm.storage.base import StorageKey  # noqa: E402
from aiogram.methods import AnswerCallbackQuery, EditMessageText, SendMessage  # noqa: E402
from aiogram.types import Message, Update  # noqa: E402
from sqlalchemy import delete, select  # noqa: E402

from bot.app import create_dispatcher  # noqa: E402
from bot.outbox import Outbox  # noqa: E402
from bot.settings import Settings  # noqa: E402
from handlers.joining import JoinForm  # noqa: E402
from storage.db import create_engine, create_session_maker  # noqa: E402
from storage.models import Base, Delivery, DeliveryStatus  # noqa: E402
from storage.models import Person as PersonRow  # noqa: E402
from tests.conftest import ADMIN, ADMIN_IDS  # noqa: E402
from tests.flows import create_group, invite, join, setup_org  # noqa: E402
from tests.harness import BOT_USER, TOKEN, Harness, MockedSession, Person, make_bot  # noqa: E402

GOAL = 1.5  # a simple command should cost at most this many floors

PARENT = Person(2001, "Мария", "en")  # joins 5А: the member of cases (a) and (c')
NEWCOMER = Person(2002, "Ольга")  # stays in the join dialog: case (b)
FULL_NAME = "Петрова Ольга Ивановна"


# -- updates, built outside the timing and mounted on the bot -----------------------------------


class Updates:
    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        self.update_id = 10_000
        self.message_id = 10_000

    def _mount(self, raw: dict[str, Any]) -> Update:
        self.update_id += 1
        raw["update_id"] = self.update_id
        # What polling does: the update and everything in it know their bot, so
        # feed_update does not re-create it through a JSON round trip.
        return Update.model_validate(raw, context={"bot": self.bot})

    def message(self, who: Person, text: str) -> Update:
        self.message_id += 1
        raw: dict[str, Any] = {
            "message_id": self.message_id,
            "date": int(datetime.now(timezone.utc).timestamp()),
            "chat": who.chat.model_dump(exclude_none=True),
            "from": who.user.model_dump(exclude_none=True),
            "text": text,
        }
        if text.startswith("/"):
            raw["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return self._mount({"message": raw})

    def press(self, who: Person, data: str, message_id: int = 1) -> Update:
        return self._mount(
            {
                "callback_query": {
                    "id": str(self.update_id + 1),
                    "from": who.user.model_dump(exclude_none=True),
                    "chat_instance": "ci",
                    "data": data,
                    "message": {
                        "message_id": message_id,
                        "date": int(datetime.now(timezone.utc).timestamp()),
                        "chat": who.chat.model_dump(exclude_none=True),
                        "from": BOT_USER.model_dump(exclude_none=True),
                        "text": "…",
                    },
                }
            }
        )


# -- cases ------------------------------------------------------------------------------------


@dataclass
class Case:
    key: str
    title: str
    dp: Dispatcher
    make: Callable[[int], Update]  # i → the update of the i-th iteration
    expect: dict[type, int]  # Bot API calls each update must make
    before: Callable[[int], Awaitable[None]] | None = None  # untimed, before each update
    check: Callable[[], Awaitable[None]] | None = None  # once per block, after it
    shows: str | None = None  # every sent or edited text must contain this


async def run_block(case: Case, bot: Bot, n: int) -> list[float]:
    """n updates of one case; returns the time of each in µs."""
    session: MockedSession = bot.session  # type: ignore[assignment]
    session.requests.clear()
    session.message_ids.clear()
    feed = case.dp.feed_update
    before = case.before
    make = case.make
    clock = time.perf_counter_ns
    times = []
    for i in range(n):
        update = make(i)
        if before is not None:
            await before(i)
        t0 = clock()
        await feed(bot, update)
        times.append((clock() - t0) / 1000)
    # The bench must not silently time a no-op: every update made its calls.
    counts = {kind: sum(isinstance(r, kind) for r in session.requests) for kind in case.expect}
    wanted = {kind: per * n for kind, per in case.expect.items()}
    assert counts == wanted, f"{case.key}: Bot API calls {counts}, expected {wanted}"
    if case.shows is not None:
        shown = [r.text for r in session.requests if isinstance(r, (SendMessage, EditMessageText))]
        assert all(case.shows in (t or "") for t in shown), f"{case.key}: {shown[:1]}"
    if case.check is not None:
        await case.check()
    # The recorded requests must not grow over the run.
    session.requests.clear()
    session.message_ids.clear()
    return times


# -- the floor ----------------------------------------------------------------------------------


def floor_dispatcher(session_maker: Any) -> Dispatcher:
    dp = Dispatcher()

    async def hello(message: Message) -> None:
        async with session_maker() as s:
            person = await s.scalar(
                select(PersonRow).where(PersonRow.telegram_id == message.from_user.id)  # type: ignore[union-attr]
            )
        await message.answer(f"Hello, {person.display_name if person else 'stranger'}!")

    dp.message.register(hello, Command("start"))
    return dp


# -- main ---------------------------------------------------------------------------------------


async def prepare(settings: Settings, session_maker: Any) -> tuple[Harness, int]:
    """The data, made the way people make it: through the bot's own dialogs."""
    bot = make_bot()
    outbox = Outbox(session_maker, bot, per_chat_interval=0)  # as tests/conftest.py
    dp = create_dispatcher(settings, session_maker, outbox=None, bot_username=BOT_USER.username or "")
    app = Harness(dp=dp, bot=bot, outbox=outbox, session_maker=session_maker)
    await setup_org(app)
    group = await create_group(app, "5А")
    code = await invite(app, ADMIN, group, "parent")
    await join(app, PARENT, code, "Иванова Мария Петровна", "Иванов Пётр")
    # The newcomer opens the invitation and is asked for their full name.
    calls = await app.send(NEWCOMER, f"/start {code}")
    assert any(isinstance(c, SendMessage) and "5А" in (c.text or "") for c in calls), calls
    assert await dp.fsm.storage.get_state(key_of(bot, NEWCOMER)) == JoinForm.name.state
    await app.flush()  # the outbox's menus, so nothing is pending
    app.clear()
    app.session.message_ids.clear()
    return app, group


def key_of(bot: Bot, who: Person) -> StorageKey:
    return StorageKey(bot_id=bot.id, chat_id=who.id, user_id=who.id)


async def drop_cancelled_deliveries(session_maker: Any) -> None:
    """Case (c') leaves a cancelled menu delivery per press; keep the table steady."""
    async with session_maker() as s, s.begin():
        await s.execute(delete(Delivery).where(Delivery.status == DeliveryStatus.CANCELLED.value))


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="parta-bench-") as tmp:
        url = "sqlite+aiosqlite://" if args.memory else f"sqlite+aiosqlite:///{tmp}/bench.sqlite3"
        settings = Settings(
            bot_token=TOKEN,  # type: ignore[arg-type]
            admin_ids=ADMIN_IDS,
            database_url=url,
            telegram_api_url="http://127.0.0.1:1",
            timezone="Europe/Moscow",
            default_locale="ru",
            _env_file=None,  # type: ignore[call-arg]
        )
        engine = create_engine(settings.database_url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            session_maker = create_session_maker(engine)
            await bench(args, settings, session_maker)
        finally:
            await engine.dispose()


async def bench(args: argparse.Namespace, settings: Settings, session_maker: Any) -> None:
    app, group = await prepare(settings, session_maker)
    bot, dp = app.bot, app.dp
    updates = Updates(bot)
    storage = dp.fsm.storage
    newcomer_key = key_of(bot, NEWCOMER)

    async def back_to_name(i: int) -> None:
        await storage.set_state(newcomer_key, JoinForm.name)

    async def asked_for_child() -> None:
        assert await storage.get_state(newcomer_key) == JoinForm.child.state
        data = await storage.get_data(newcomer_key)
        assert data.get("full_name") == FULL_NAME and "invitation_id" in data, data

    locales = ("ru", "en")
    floor = Case(
        "floor", "floor: bare aiogram + 1 SELECT + sendMessage", floor_dispatcher(session_maker),
        lambda i: updates.message(PARENT, "/start"), {SendMessage: 1}, shows="Иванова",
    )
    cases = [
        floor,
        Case(
            "a", "(a) /start of a member (parent in 5А)", dp,
            lambda i: updates.message(PARENT, "/start"), {SendMessage: 1}, shows="5А",
        ),
        Case(
            "b", "(b) join dialog: full name in JoinForm.name", dp,
            lambda i: updates.message(NEWCOMER, FULL_NAME), {SendMessage: 1},
            before=back_to_name, check=asked_for_child,
        ),
        Case(
            "c", "(c) button: admin opens a group (grp:open)", dp,
            lambda i: updates.press(ADMIN, f"grp:open:{group}"), {AnswerCallbackQuery: 1, EditMessageText: 1},
            shows="5А",
        ),
        Case(
            "c2", "(c') button: member toggles language (lang:ru/en, writes)", dp,
            lambda i: updates.press(PARENT, f"lang:{locales[i % 2]}"), {AnswerCallbackQuery: 1, EditMessageText: 1},
            check=lambda: drop_cancelled_deliveries(session_maker),
        ),
    ]
    # Warm-up: SQLAlchemy's compiled-statement cache, pydantic's and aiogram's lazy set-ups,
    # the interpreter's specialisation — everything once, untimed.
    for case in cases:
        await run_block(case, bot, args.warmup)

    started = time.perf_counter()
    rounds: dict[str, list[float]] = {case.key: [] for case in cases}  # per-round medians
    everything: dict[str, list[float]] = {case.key: [] for case in cases}
    block = min(args.block, args.n)
    for r in range(args.rounds):
        times: dict[str, list[float]] = {case.key: [] for case in cases}
        done = 0
        b = 0
        while done < args.n:
            size = min(block, args.n - done)
            # Interleaved in short blocks, the order rotating, so a noisy moment of the
            # machine falls on the floor and on the cases alike.
            shift = (r + b) % len(cases)
            for case in cases[shift:] + cases[:shift]:
                times[case.key] += await run_block(case, bot, size)
            done += size
            b += 1
        for key, ts in times.items():
            rounds[key].append(statistics.median(ts))
            everything[key] += ts
    elapsed = time.perf_counter() - started

    def ratio(key: str) -> float:
        """Median over rounds of (case ÷ floor) in the same round: the pairing cancels drift."""
        return statistics.median(c / f for c, f in zip(rounds[key], rounds[floor.key]))

    print()
    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"aiogram {aiogram.__version__}, SQLAlchemy {sqlalchemy.__version__}, "
        f"aiosqlite {importlib.metadata.version('aiosqlite')}, pydantic {importlib.metadata.version('pydantic')}; "
        f"{platform.machine()}, {os.cpu_count()} CPUs"
    )
    where = "SQLite in memory (StaticPool)" if args.memory else "SQLite file in a temp dir (WAL)"
    print(f"Database: {where}, the same engine for the floor and Parta")
    print(
        f"{args.rounds} rounds x {args.n} updates per case, interleaved in blocks of {block} "
        f"(after {args.warmup} warm-up updates each); timed part {elapsed:.1f} s"
    )
    print(
        "µs/update: median over rounds of each round's median time of one feed_update; "
        "ratio: median over rounds of (case ÷ floor of the same round)"
    )
    print()
    print("| case | µs/update | ratio to floor | per-round medians (µs) | mean µs |")
    print("|---|---:|---:|---|---:|")
    for case in cases:
        med = statistics.median(rounds[case.key])
        spread = ", ".join(f"{x:.0f}" for x in rounds[case.key])
        mean = statistics.fmean(everything[case.key])
        print(f"| {case.title} | {med:.0f} | {ratio(case.key):.2f}× | {spread} | {mean:.0f} |")
    print()
    a = ratio("a")
    print(
        f"Goal: a simple command — /start of a member, case (a) — at most {GOAL}× the floor. "
        f"Now {a:.2f}×: {'met' if a <= GOAL else 'NOT met'}."
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="few iterations: a smoke run of a few seconds")
    p.add_argument("--rounds", type=int, help="rounds per case (default 5, quick 2)")
    p.add_argument("-n", type=int, help="updates per case per round (default 250, quick 30)")
    p.add_argument("--warmup", type=int, help="untimed updates per case first (default 100, quick 10)")
    p.add_argument("--block", type=int, default=50, help="updates per case before switching case (default 50)")
    p.add_argument("--memory", action="store_true", help="SQLite in memory instead of a file")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.n = args.n or (30 if args.quick else 250)
    args.warmup = args.warmup or (10 if args.quick else 100)
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
    print(f"Total run time {time.perf_counter() - _T0:.1f} s (imports and set-up included)")
