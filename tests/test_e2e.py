"""End to end: the real `python -m bot` process against the fake Telegram server.

The bot is started exactly as a deployment starts it (a subprocess, settings
from the environment, migrations at start-up, long polling) and is driven only
through FakeTelegram's control API: people type text and press buttons that
really are on the bot's messages. Nothing is forged and the database is never
touched from here — every check is something a person would see: messages,
photos, edits, callback answers and command menus.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tests.fake_telegram import FakeTelegram, StoredMessage

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "123456:TEST-token-for-e2e-abcdefghij"
BOT_USERNAME = "parta_e2e_bot"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

WAIT = 15.0  # seconds for any single thing to happen
STARTUP = 45.0  # importing aiogram alone takes seconds (pydantic builds its models)
OVERALL = 90.0  # the whole scenario; in practice it takes a few seconds

ADMIN = 1001
PARENT = 2001
ASKER = 2002
TEACHER = 3001

# What /settings says of the organisation's quiet hours (handlers/settings.py quiet_text), in the admin's language.
QUIET_OFF = {"ru": "Тихие часы отключены", "en": "Quiet hours: off"}
QUIET_HOURS = {"ru": "Тихие часы: {start}–{end}.", "en": "Quiet hours: {start}–{end}."}

# Every setting the bot reads; the parent environment's values must not leak in.
SETTINGS_VARS = {"BOT_TOKEN", "ADMIN_IDS", "DATABASE_URL", "TELEGRAM_API_URL", "TIMEZONE", "DEFAULT_LOCALE",
                 "INVITATION_DAYS"}


def clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in SETTINGS_VARS}
    env.update(settings)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def names(commands: list[dict[str, str]]) -> list[str]:
    return [c["command"] for c in commands]


class Driver:
    """The running bot process plus the fake, with waits that notice a dead process."""

    def __init__(self, tg: FakeTelegram, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.tg = tg
        self.proc = proc
        self.log = log

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def until(self, predicate: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last_exc: BaseException | None = None
        while True:
            if self.tg.internal_errors:
                raise AssertionError(f"the fake Telegram server crashed\n{self.tg.dump()}") from self.tg.internal_errors[-1]
            try:
                value = predicate()
                if value:
                    return value
            except Exception as e:  # "not yet"
                last_exc = e
            if self.proc.returncode is not None:
                raise AssertionError(
                    f"the bot exited with code {self.proc.returncode} while we waited for {what}\n"
                    f"{self.tg.dump()}\n--- bot log ---\n{self.log_text()}"
                )
            if loop.time() >= deadline:
                extra = f" (last predicate error: {last_exc!r})" if last_exc else ""
                raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}\n{self.tg.dump()}")
            await asyncio.sleep(0.02)

    async def message(
        self, chat: int, *, after: int = 0, contains: str | tuple[str, ...] = (), button: str | None = None
    ) -> StoredMessage:
        """The newest bot message in `chat` newer than `after`, containing every
        string of `contains` and (if given) a button whose data starts with `button`."""
        wanted = (contains,) if isinstance(contains, str) else contains

        def found() -> StoredMessage | None:
            hits = [
                m for m in self.tg.bot_messages(chat)
                if m.message_id > after
                and all(m.matches(s) for s in wanted)
                and (button is None or any(d.startswith(button) for d in m.callback_data))
            ]
            return hits[-1] if hits else None

        what = f"a bot message in chat {chat} after #{after}"
        if wanted:
            what += f" containing {wanted!r}"
        if button:
            what += f" with a button {button!r}…"
        return await self.until(found, what)

    async def say(self, user: int, text: str) -> int:
        """The user writes; returns the id of their message (bot replies come after it)."""
        return (await self.tg.send_text(user, text)).message_id

    async def press(
        self, user: int, msg: StoredMessage, prefix: str, *, text: str | None = None,
        where: Callable[[str], bool] | None = None,
    ) -> str:
        """Press the one button on `msg` whose data starts with `prefix` (and whose
        label is `text` / whose data satisfies `where`, when given). Waits for the
        bot to answer the callback query and checks it was not an error alert."""
        current = next(m for m in self.tg.bot_messages(user) if m.message_id == msg.message_id)
        candidates = [
            b for b in current.buttons
            if b.get("callback_data", "").startswith(prefix)
            and (text is None or b.get("text") == text)
            and (where is None or where(b["callback_data"]))
        ]
        assert len(candidates) == 1, f"expected one button {prefix!r} text={text!r} on {current}"
        data = candidates[0]["callback_data"]
        qid = await self.tg.press_button(user, msg.message_id, data)
        answer = await self.until(lambda: self.tg.callback_answer(qid), f"the answer to pressing {data!r}")
        assert not answer.show_alert, f"pressing {data!r} got an alert: {answer.text!r}\n{self.tg.dump()}"
        return data

    async def edited(self, chat: int, msg: StoredMessage, check: Callable[[StoredMessage], bool], what: str) -> StoredMessage:
        """Wait until the message `msg` (as it is now) satisfies `check`."""

        def now() -> StoredMessage | None:
            m = next((m for m in self.tg.bot_messages(chat) if m.message_id == msg.message_id), None)
            return m if m is not None and check(m) else None

        return await self.until(now, f"message #{msg.message_id} in chat {chat}: {what}")

    async def set_quiet_hours(self, admin: int, hours: str, *, locale: str = "ru") -> None:
        """The admin sets the organisation's quiet hours as a school would: /settings →
        «Other quiet hours…» → types `hours` ("21:30-07:30", or "off"). Checks that the
        bot confirmed exactly these hours and that /settings shows them afterwards.

        A new organisation gets quiet hours 21:00–08:00, and in them ordinary messages
        to other people (join requests, verification cards, posts...) wait until the
        morning: a test that leaves them on passes by day and fails in the evening. So
        every organisation made through the setup wizard has them set (usually "off")
        right after it."""
        if hours == "off":
            shown = QUIET_OFF[locale]
        else:
            start, end = hours.split("-")
            shown = QUIET_HOURS[locale].format(start=start, end=end)
        after = await self.say(admin, "/settings")
        settings = await self.message(admin, after=after, button="set:quiet_type")
        await self.press(admin, settings, "set:quiet_type")
        prompt = await self.message(admin, after=settings.message_id, contains="21:30-07:30")
        after = await self.say(admin, hours)
        assert after > prompt.message_id
        await self.message(admin, after=after, contains=("✅", shown))
        # Saved, not only said: a new /settings reads the organisation again.
        after = await self.say(admin, "/settings")
        await self.message(admin, after=after, contains=shown, button="set:quiet_type")

    async def menu(self, user: int, check: Callable[[list[str]], bool], what: str) -> list[str]:
        """The user's own (chat-scoped) command menu, once it satisfies `check`."""
        scope = {"type": "chat", "chat_id": user}
        return await self.until(
            lambda: check(names(self.tg.commands(scope))) and names(self.tg.commands(scope)),
            f"the menu of {user}: {what}",
        )


@asynccontextmanager
async def running_bot(tg: FakeTelegram, tmp_path: Path) -> AsyncIterator[Driver]:
    log = tmp_path / "bot.log"
    env = clean_env(
        BOT_TOKEN=TOKEN,
        TELEGRAM_API_URL=tg.url,
        ADMIN_IDS=str(ADMIN),
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'parta.db'}",
        TIMEZONE="Europe/Moscow",
        DEFAULT_LOCALE="ru",
    )
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=ROOT, env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
        )
    driver = Driver(tg, proc, log)
    try:
        yield driver
    except BaseException:
        print(f"--- bot log ({log}) ---\n{driver.log_text()}")
        raise
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def make_invitation(app: Driver, who: int, role: str, uses: int, group: str = "5А") -> str:
    """Walks the /invite wizard as `who` (group → role → days → uses); returns the code
    read from the QR picture's caption. A parents' code is switched to admit at once."""
    after = await app.say(who, "/invite")
    wizard = await app.message(who, after=after, button="inv:group:")
    assert group in wizard.button_texts
    await app.press(who, wizard, "inv:group:", text=group)
    await app.edited(who, wizard, lambda m: any(d.startswith("inv:role:") for d in m.callback_data), "roles")
    await app.press(who, wizard, "inv:role:", where=lambda d: d.split("#")[0].split(":")[3] == role)
    await app.edited(who, wizard, lambda m: any(d.startswith("inv:days:") for d in m.callback_data), "days")
    await app.press(who, wizard, "inv:days:", where=lambda d: d.split("#")[0].split(":")[4] == "14")
    await app.edited(who, wizard, lambda m: any(d.startswith("inv:make:") for d in m.callback_data), "uses")
    await app.press(who, wizard, "inv:make:", where=lambda d: d.split("#")[0].split(":")[5] == str(uses))
    photo = await app.message(who, after=wizard.message_id, contains=f"https://t.me/{BOT_USERNAME}?start=")
    assert photo.photo is not None and photo.photo.startswith(PNG_SIGNATURE), photo
    assert photo.file is not None and photo.file.width > 100 and photo.file.height > 100
    caption = photo.plain_caption or ""
    match = re.search(rf"https://t\.me/{BOT_USERNAME}\?start=([A-Z0-9]{{10}})", caption)
    assert match, caption
    code = match.group(1)
    assert f"/join {code}" in caption and group in caption and "Школа № 1" in caption
    # The wizard message now names the code; its buttons are the poster (and, for parents, approval).
    await app.edited(who, wizard, lambda m: code in m.content and m.callback_data
                     and all(d.startswith("poster:") for d in m.callback_data), "the created invitation")
    if role == "parent":  # asks the teacher's approval by default: this school admits its parents at once
        await app.press(who, wizard, "poster:approval_off")
        await app.edited(who, wizard, lambda m: any(d.startswith("poster:approval_on") for d in m.callback_data),
                         "approval switched off")
    return code


async def scenario(app: Driver, tg: FakeTelegram) -> None:  # noqa: PLR0915 — one long walk on purpose
    # -- start-up: migrations ran, the default menus are set, long polling began.
    await app.until(lambda: tg.calls_to("getUpdates"), "the bot to start polling", STARTUP)
    assert names(tg.commands()) == ["start", "join", "help", "language", "cancel", "mydata", "forget"]
    assert names(tg.commands(None, "en")) == ["start", "join", "help", "language", "cancel", "mydata", "forget"]
    assert "Parta is running as @" + BOT_USERNAME in app.log_text()

    # == 1. The admin sets the organisation up (4 steps).
    after = await app.say(ADMIN, "/start")
    await app.message(ADMIN, after=after, contains="1/4")
    after = await app.say(ADMIN, "Школа № 1")
    kinds = await app.message(ADMIN, after=after, contains="2/4", button="setup:kind:")
    await app.press(ADMIN, kinds, "setup:kind:school")
    await app.edited(ADMIN, kinds, lambda m: not m.buttons, "the kind buttons are gone")
    tz = await app.message(ADMIN, after=kinds.message_id, contains="3/4", button="setup:tz_default")
    after = await app.say(ADMIN, "europe/moscow")  # any case is accepted
    contact = await app.message(ADMIN, after=after, contains=("Europe/Moscow", "4/4"), button="setup:no_contact")
    assert contact.message_id > tz.message_id
    after = await app.say(ADMIN, "help@school1.example")
    done = await app.message(ADMIN, after=after, contains=("✅", "Школа № 1", "/groups", "/invite"))
    assert not done.buttons
    # Off, through /settings: in an evening run the join request and the verification card below
    # would otherwise wait for the morning.
    await app.set_quiet_hours(ADMIN, "off")
    # The organisation exists: the admin's own menu now has the staff commands.
    menu = await app.menu(ADMIN, lambda c: "groups" in c, "staff commands after set-up")
    assert {"invite", "invites", "requests", "groups", "members"} <= set(menu)
    assert names(tg.visible_commands(ADMIN)) == menu
    # ...and /start greets them as a member of it.
    after = await app.say(ADMIN, "/start")
    await app.message(ADMIN, after=after, contains="Школа № 1")

    # == 2. A group.
    after = await app.say(ADMIN, "/groups")
    groups = await app.message(ADMIN, after=after, button="grp:new")
    await app.press(ADMIN, groups, "grp:new")
    prompt = await app.message(ADMIN, after=groups.message_id, contains="5А")  # "…for example «5А»…"
    after = await app.say(ADMIN, "5А")
    assert after > prompt.message_id
    created = await app.message(ADMIN, after=after, contains=("✅", "5А", "/invite"))
    assert not created.buttons
    after = await app.say(ADMIN, "/groups")
    groups = await app.message(ADMIN, after=after, button="grp:new")
    assert "5А" in groups.button_texts, groups

    # == 3. An invitation for parents: group → role → days → uses → QR photo.
    parent_code = await make_invitation(app, ADMIN, "parent", 0)

    # == 4. A parent opens the deep link.
    after = await app.say(PARENT, f"/start {parent_code}")
    await app.message(PARENT, after=after, contains=("🎫", "5А", "Школа № 1"))
    after = await app.say(PARENT, "Петрова Анна Сергеевна")
    child_prompt = await app.message(PARENT, after=after)
    after = await app.say(PARENT, "Петров Миша")
    assert after > child_prompt.message_id
    check = await app.message(PARENT, after=after, contains=("Петрова Анна Сергеевна", "Петров Миша", "5А"),
                              button="join:confirm")
    await app.press(PARENT, check, "join:confirm")
    welcome = await app.edited(PARENT, check, lambda m: "✅" in m.content and not m.buttons, "the welcome")
    assert "5А" in welcome.content
    parent_menu = await app.menu(PARENT, lambda c: "start" in c, "a member's menu")
    assert "invite" not in parent_menu and "requests" not in parent_menu
    assert names(tg.visible_commands(PARENT)) == parent_menu
    # The code was for a parent: their /start now greets them as a member.
    after = await app.say(PARENT, "/start")
    await app.message(PARENT, after=after, contains=("Петрова Анна Сергеевна", "5А"))

    # == 5. Someone without a code asks to join; the admin approves the real card.
    after = await app.say(ASKER, "/start")
    hello = await app.message(ASKER, after=after, contains="Школа № 1", button="ask:start")
    await app.press(ASKER, hello, "ask:start")
    roles = await app.message(ASKER, after=hello.message_id, button="ask:role:")
    await app.press(ASKER, roles, "ask:role:parent")
    await app.edited(ASKER, roles, lambda m: any(d.startswith("ask:group:") for d in m.callback_data), "groups")
    await app.press(ASKER, roles, "ask:group:", text="5А")
    await app.edited(ASKER, roles, lambda m: "5А" in m.content and [b["text"] for b in m.buttons] == ["✖️ Отмена"], "the name prompt")
    after = await app.say(ASKER, "Сидоров Павел Ильич")
    await app.message(ASKER, after=after)
    after = await app.say(ASKER, "Сидорова Маша")
    request = await app.message(ASKER, after=after, contains=("Сидоров Павел Ильич", "Сидорова Маша"),
                                button="ask:confirm")
    admin_seen = tg.bot_messages(ADMIN)[-1].message_id
    await app.press(ASKER, request, "ask:confirm")
    await app.edited(ASKER, request, lambda m: "📨" in m.content and "5А" in m.content and not m.buttons, "sent")
    card = await app.message(ADMIN, after=admin_seen, contains=("Сидоров Павел Ильич", "Сидорова Маша", "5А"),
                             button="req:approve:")
    assert any(d.startswith("req:reject:") for d in card.callback_data)
    asker_seen = tg.bot_messages(ASKER)[-1].message_id
    await app.press(ADMIN, card, "req:approve:")
    decided = await app.edited(ADMIN, card, lambda m: not m.buttons and m.edit_count > 0, "the decided card")
    assert "Сидоров Павел Ильич" in decided.content and "✅" in decided.content
    told = await app.message(ASKER, after=asker_seen, contains=("✅", "5А"))
    assert not told.buttons
    asker_menu = await app.menu(ASKER, lambda c: "start" in c, "an approved parent's menu")
    assert "invite" not in asker_menu
    after = await app.say(ASKER, "/start")
    await app.message(ASKER, after=after, contains=("Сидоров Павел Ильич", "5А"))

    # == 6. A teacher joins by code in English, waits for verification, is verified.
    teacher_code = await make_invitation(app, ADMIN, "teacher", 1)
    after = await app.say(TEACHER, "/language")
    languages = await app.message(TEACHER, after=after, button="lang:en")
    await app.press(TEACHER, languages, "lang:en")
    await app.edited(TEACHER, languages, lambda m: "English" in m.content and not m.buttons, "language set")
    after = await app.say(TEACHER, f"/start {teacher_code}")
    await app.message(TEACHER, after=after, contains=("Invitation to", "5А", "full name"))
    after = await app.say(TEACHER, "Иван Учителев")
    check = await app.message(TEACHER, after=after, contains=("Please check", "Иван Учителев"), button="join:confirm")
    admin_seen = tg.bot_messages(ADMIN)[-1].message_id
    await app.press(TEACHER, check, "join:confirm")
    welcome = await app.edited(TEACHER, check, lambda m: "Welcome" in m.content and not m.buttons, "the welcome")
    assert "verify" in welcome.content and "5А" in welcome.content
    # Not verified yet: no staff commands, and /invite is refused.
    teacher_menu = await app.menu(TEACHER, lambda c: "start" in c, "the unverified teacher's menu")
    assert "invite" not in teacher_menu
    assert teacher_menu[0] == "start" and tg.commands({"type": "chat", "chat_id": TEACHER})[2]["description"] \
        == "Help on my commands"  # in English
    after = await app.say(TEACHER, "/invite")
    refused = await app.message(TEACHER, after=after, contains="waiting for an administrator to verify you")
    assert not refused.buttons
    # The admin's verification card (Russian: the admin's language).
    card = await app.message(ADMIN, after=admin_seen, contains=("Иван Учителев", "5А"), button="ver:yes:")
    teacher_seen = tg.bot_messages(TEACHER)[-1].message_id
    await app.press(ADMIN, card, "ver:yes:")
    await app.edited(ADMIN, card, lambda m: not m.buttons and "Иван Учителев" in m.content and "✅" in m.content,
                     "the verified card")
    await app.message(TEACHER, after=teacher_seen, contains=("has verified you", "5А"))
    teacher_menu = await app.menu(TEACHER, lambda c: "invite" in c, "the verified teacher's menu")
    assert {"invite", "invites", "requests", "members"} <= set(teacher_menu)
    assert names(tg.visible_commands(TEACHER)) == teacher_menu
    # The rights really changed: /invite offers the teacher's group.
    after = await app.say(TEACHER, "/invite")
    wizard = await app.message(TEACHER, after=after, button="inv:group:")
    assert "5А" in wizard.button_texts
    # The parents' menus did not gain anything meanwhile.
    assert "invite" not in names(tg.visible_commands(PARENT))
    assert "invite" not in names(tg.visible_commands(ASKER))


async def test_the_bot_process_end_to_end(tmp_path: Path) -> None:
    async with FakeTelegram(token=TOKEN, bot_username=BOT_USERNAME) as tg:
        tg.add_user(ADMIN, "Админ", username="admin")
        tg.add_user(PARENT, "Анна")
        tg.add_user(ASKER, "Павел")
        tg.add_user(TEACHER, "Ivan", language_code="en")
        async with running_bot(tg, tmp_path) as app:
            async with asyncio.timeout(OVERALL):
                await scenario(app, tg)

            # == 7. SIGTERM: a clean shutdown, exit code 0, no traceback.
            app.proc.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.wait_for(app.proc.wait(), 10)
            except TimeoutError:
                raise AssertionError("the bot did not stop within 10 s of SIGTERM") from None
            assert code == 0, f"exit code {code}"
            log = app.log_text()
            assert "Traceback" not in log, log
            assert " ERROR " not in log, log
        assert not tg.internal_errors


async def test_missing_token_is_one_clear_line_and_exit_code_2(tmp_path: Path) -> None:
    # cwd is an empty directory so that a developer's .env cannot supply a token;
    # the code is found through PYTHONPATH instead.
    env = clean_env(DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'parta.db'}")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 15)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stderr = err.decode(errors="replace")
    assert proc.returncode == 2, (proc.returncode, stderr)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "BOT_TOKEN" in lines[0] and "Traceback" not in stderr, stderr
    assert not (tmp_path / "parta.db").exists()  # nothing was touched
