"""Under load, with Telegram's flood limits on, nobody is failed or forgotten.

The real `python -m bot` process (polling, SEND_RATE as deployed: 30/s)
against the fake Bot API enforcing Telegram's limits (30 messages/s for the
bot, 1/s per private chat, 429 beyond them). For about a minute:

- forty people at a human pace — a message or a press every 2–5 s each —
  join a school through the real dialog (invitation link, full name, child's
  name, ✅ Join), then open the home screen, ask for help, switch the language
  with its buttons, and press Acknowledge on the post the teacher sends
  meanwhile (the teacher walks /post through its buttons too);
- one person floods the bot with 20 messages a second.

What must hold: no update fails (no apology, nothing logged as failed, no
traceback in the process's log); Telegram refuses no call (0 answered 429);
every callback query is answered well within Telegram's window (≤ 10 s; the
real one is about 15 s); every message of the forty gets an answer; the
flooder gets at most a few answers and one polite notice, and does not slow
the others down.

Today's code fails this (issue #11, point 3: handlers answer outside the
limiter, so the flood's answers meet 429s and updates fail): marked xfail
until the one-way-out redesign lands.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.fake_telegram import RateLimits
from tests.load import (
    BOT_USERNAME,
    TOKEN,
    BotProcess,
    Someone,
    WatchedTelegram,
    apologies,
    percentile,
    post_with_acknowledgement,
    prepare_database,
)
from tests.seed import FIRST_PARENT_ID

PEOPLE = 40
FIRST_PERSON = 200_000
DURATION = 60.0  # seconds of load
PACE = (2.0, 5.0)  # seconds between one person's actions
FLOOD_RATE = 20.0  # the flooder's messages per second
FLOODER_MAX_MESSAGES = 6  # "a few answers plus one polite notice"
CALLBACK_WINDOW = 10.0  # seconds; Telegram's own is about 15
ANSWER_TIMEOUT = 30.0  # how long a person waits for an answer before counting it as missing
POST_AT = 25.0  # when the teacher starts their /post (most people have joined by then)


def database_url(tmp_path: Path) -> str:
    url = os.environ.get("TEST_DATABASE_URL") or ""
    return url if url.startswith("postgresql") else f"sqlite+aiosqlite:///{tmp_path / 'load.sqlite3'}"


def examples(items: list, n: int = 5) -> str:
    return "; ".join(str(i) for i in items[:n]) + (f" … and {len(items) - n} more" if len(items) > n else "")


async def person_at_human_pace(p: Someone, code: str, k: int, end: float, rng: random.Random,
                               missing: list[str]) -> None:
    loop = asyncio.get_running_loop()

    async def pause() -> None:
        await asyncio.sleep(rng.uniform(*PACE))

    async def step(what: str, action) -> None:  # type: ignore[no-untyped-def]
        try:
            await action
        except TimeoutError as e:
            missing.append(f"person {p.user_id} ({what}): {e}")

    await asyncio.sleep(rng.uniform(0, PACE[1]))  # people do not start in step
    # The join dialog: each step needs the previous one's answer.
    try:
        await p.say(f"/start {code}", contains="🎫", timeout=ANSWER_TIMEOUT)
        await pause()
        await p.say(f"Родитель Номер {k + 1}", timeout=ANSWER_TIMEOUT)
        await pause()
        check = await p.say(f"Ребёнок Номер {k + 1}", button="join:confirm", timeout=ANSWER_TIMEOUT)
        await pause()
        await p.press_on(check, next(d for d in check.callback_data if d.startswith("join:confirm")),
                         timeout=ANSWER_TIMEOUT)
    except TimeoutError as e:
        missing.append(f"person {p.user_id} (joining): {e}")
        return
    acknowledged = False
    while loop.time() < end:
        await pause()
        if loop.time() >= end:
            break
        copy = p.button("p:ack:")
        choice = rng.random()
        if copy is not None and not acknowledged:
            acknowledged = True
            await step("acknowledge", p.press_on(*copy, timeout=ANSWER_TIMEOUT))
        elif choice < 0.35:
            await step("/start", p.say("/start", timeout=ANSWER_TIMEOUT))
        elif choice < 0.65:
            await step("/help", p.say("/help", timeout=ANSWER_TIMEOUT))
        else:
            try:
                await p.say("/language", button="lang:", timeout=ANSWER_TIMEOUT)
            except TimeoutError as e:
                missing.append(f"person {p.user_id} (/language): {e}")
                continue
            await pause()
            await step("language button", p.press(f"lang:{rng.choice(['en', 'ru'])}", timeout=ANSWER_TIMEOUT))


async def flood(tg: WatchedTelegram, user_id: int, end: float) -> int:
    loop = asyncio.get_running_loop()
    sent = 0
    start = loop.time()
    while loop.time() < end:
        sent += 1
        await tg.send_text(user_id, f"Спам {sent}")
        await asyncio.sleep(max(0.0, start + sent / FLOOD_RATE - loop.time()))
    return sent


async def test_forty_people_and_a_flooder_under_telegrams_limits(tmp_path: Path) -> None:
    prepared = await prepare_database(database_url(tmp_path), parents=1)
    school, code = prepared.school, prepared.code
    flooder = FIRST_PARENT_ID  # a parent of the school already
    ids = [FIRST_PERSON + i for i in range(PEOPLE)]
    async with WatchedTelegram(token=TOKEN, bot_username=BOT_USERNAME, limits=RateLimits()) as tg:
        tg.add_user(school.teacher_tg, "Anna", language_code="en", started=True)
        tg.add_user(flooder, "Флудер", started=True)
        for i, uid in enumerate(ids):
            tg.add_user(uid, f"Родитель {i + 1}")
        log = tmp_path / "bot.log"
        async with BotProcess(tg, prepared.url, log) as bot:
            tg.reset_counters()  # what start-up did (menus) is not the load's
            tg.calls.clear()
            loop = asyncio.get_running_loop()
            end = loop.time() + DURATION
            people = [Someone(tg, uid, timeout=ANSWER_TIMEOUT) for uid in ids]
            teacher = Someone(tg, school.teacher_tg, timeout=ANSWER_TIMEOUT)
            missing: list[str] = []

            async def teacher_posts() -> None:
                await asyncio.sleep(POST_AT)
                try:
                    await post_with_acknowledgement(teacher, "Собрание в пятницу в 18:00. Отметьте, что прочитали.")
                except TimeoutError as e:
                    missing.append(f"the teacher (/post): {e}")

            started = time.monotonic()
            flood_task = asyncio.create_task(flood(tg, flooder, end))
            await asyncio.gather(
                teacher_posts(),
                *(person_at_human_pace(p, code, k, end, random.Random(k), missing) for k, p in enumerate(people)),
            )
            flood_sent = await flood_task
            # Whatever is still owed gets a moment to arrive (a press answered later still counts as late).
            await asyncio.sleep(3)
            elapsed = time.monotonic() - started
            log_text = bot.log_text()
            failed = bot.failed_updates()
            tracebacks = bot.tracebacks()
        code_at_exit = bot.proc.returncode if bot.proc else None

        # -- what the people saw
        texts = apologies()
        everyone = [*ids, flooder, school.teacher_tg]
        apologised = [(uid, m.plain_text or m.text) for uid in everyone for m in tg.bot_messages(uid)
                      if any(m.matches(t) for t in texts)]
        apologised += [(a.user_id, a.text) for a in tg.answered_callbacks
                       if a.text and any(t in a.text for t in texts)]
        refused = [c for c in tg.calls if c.error is not None and c.error.error_code == 429]
        not_modified = [c for c in tg.calls if c.error is not None and "not modified" in c.error.description]
        late = sorted((a for a in tg.answered_callbacks if a.delay > CALLBACK_WINDOW), key=lambda a: -a.delay)
        never = tg.unanswered_queries()
        delays = [a.delay for a in tg.answered_callbacks]
        # What the flooder was told in answer to their own messages (the school's
        # posts and their cards reach them too, as a parent: not answers).
        to_flooder = [m for m in tg.bot_messages(flooder) if '"p:' not in json.dumps(m.reply_markup or {})]
        actions = sum(len(p.answers) for p in people)
        answer_delays = [d for p in people for _what, d in p.answers]
        summary = (
            f"{PEOPLE} people made {actions} answered actions in {elapsed:.0f} s (answer p50 "
            f"{percentile(answer_delays, 50):.2f} s, p99 {percentile(answer_delays, 99):.2f} s); "
            f"callback answers: {len(delays)}, p99 {percentile(delays, 99):.2f} s, max {max(delays, default=0):.2f} s; "
            f"the flooder sent {flood_sent} and got {len(to_flooder)} messages; 429s: {len(refused)}; "
            f"'not modified' edits: {len(not_modified)}; failed updates: {len(failed)}; tracebacks: {len(tracebacks)}; "
            f"bot exit code {code_at_exit}"
        )
        print(summary)
        problems = []
        if failed or apologised:
            problems.append(f"{len(failed)} update(s) logged as failed and {len(apologised)} apology(ies) shown, "
                            f"e.g. {examples(failed or apologised, 3)}")
        if tracebacks:
            problems.append(f"{len(tracebacks)} traceback(s) in the bot's log, e.g. {examples(tracebacks, 3)}")
        if refused:
            who = {flooder: "the flooder", school.teacher_tg: "the teacher"}
            counts = Counter(f"{c.method} to {who.get(c.params.get('chat_id'), c.params.get('chat_id'))}"
                             for c in refused)
            problems.append(f"{len(refused)} call(s) refused with 429: "
                            f"{examples([f'{k} ×{n}' for k, n in counts.most_common()], 6)}")
        if late or never:
            problems.append(
                f"{len(late)} callback answer(s) later than {CALLBACK_WINDOW:.0f} s and {len(never)} never answered, "
                f"e.g. {examples([f'{a.data!r} by {a.user_id} after {a.delay:.1f} s' for a in late], 3)} "
                f"{examples([f'{q[2]!r} by {q[1]} waiting {q[3]:.0f} s' for q in never], 3)}"
            )
        if missing:
            problems.append(f"{len(missing)} action(s) of the {PEOPLE} people got no answer within "
                            f"{ANSWER_TIMEOUT:.0f} s: {examples(missing, 4)}")
        if len(to_flooder) > FLOODER_MAX_MESSAGES or not to_flooder:
            problems.append(f"the flooder got {len(to_flooder)} message(s) for {flood_sent} sent (expected 1 to "
                            f"{FLOODER_MAX_MESSAGES}: a few answers and one notice), e.g. "
                            f"{examples([m.plain_text for m in to_flooder], 3)}")
        worrying = [line for line in log_text.splitlines() if " WARNING " in line or " ERROR " in line]
        assert not problems, "\n- ".join([summary, *problems]) + (
            f"\n--- the bot's warnings and errors ({len(worrying)}, the last 20) ---\n" + "\n".join(worrying[-20:]))
        assert not tg.internal_errors
