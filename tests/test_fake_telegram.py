"""The fake Telegram server answers a real aiogram Bot the way Telegram does.

Every test drives it through aiogram's own HTTP client, so what passes here is
what the bot process will see when pointed at TELEGRAM_API_URL=tg.url.
"""

from __future__ import annotations

import asyncio
import json
import struct
import zlib

import aiohttp
import pytest
import pytest_asyncio
from aiogram import Bot, Dispatcher, F
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.filters import CommandStart
from aiogram.methods import GetUpdates
from aiogram.types import (
    BotCommand,
    BotCommandScopeChat,
    BotCommandScopeDefault,
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)

try:  # works whether or not tests/ becomes a package
    from tests.fake_telegram import ApiError, FakeTelegram, FakeTelegramUsageError
except ImportError:  # pragma: no cover
    from fake_telegram import ApiError, FakeTelegram, FakeTelegramUsageError

pytestmark = pytest.mark.asyncio

TOKEN = "123456:TEST-token"
IVAN = 111
OLGA = 222


def make_bot(tg: FakeTelegram, token: str = TOKEN, **kwargs) -> Bot:
    return Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(tg.url)), **kwargs)


def kb(*buttons: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=t, callback_data=d)] for t, d in buttons]
    )


def tiny_png(width: int = 2, height: int = 3) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@pytest_asyncio.fixture
async def tg():
    async with FakeTelegram(token=TOKEN, bot_username="parta_test_bot") as server:
        server.add_user(IVAN, "Ivan", "Petrov", username="ivan")
        server.add_user(OLGA, "Olga")
        yield server


@pytest_asyncio.fixture
async def bot(tg):
    b = make_bot(tg)
    yield b
    await b.session.close()


async def get_updates(bot: Bot, **kwargs):
    return await bot(GetUpdates(**kwargs), request_timeout=int(kwargs.get("timeout", 0)) + 10)


# ---------------------------------------------------------------- basics


async def test_get_me(tg, bot):
    me = await bot.get_me()
    assert me.id == 123456
    assert me.is_bot
    assert me.username == "parta_test_bot"
    assert tg.calls[-1].method == "getMe" and tg.calls[-1].ok


async def test_wrong_token_is_unauthorized(tg):
    other = make_bot(tg, token="654321:WRONG")
    try:
        with pytest.raises(TelegramUnauthorizedError):
            await other.get_me()
    finally:
        await other.session.close()


async def test_unknown_method_and_raw_envelopes(tg):
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{tg.url}/bot{TOKEN}/noSuchMethod") as r:
            assert r.status == 404
            assert await r.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
        async with http.get(f"{tg.url}/bot000:bad/getMe") as r:
            assert r.status == 401
            assert await r.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
        # Method names are case-insensitive, JSON bodies are accepted.
        async with http.post(f"{tg.url}/bot{TOKEN}/SENDMESSAGE", json={"chat_id": IVAN, "text": "hi"}) as r:
            assert r.status == 403
            assert (await r.json())["description"] == "Forbidden: bot can't initiate conversation with a user"


async def test_json_and_urlencoded_bodies_are_parsed_alike(tg):
    await tg.send_text(IVAN, "hi")
    markup = {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}
    async with aiohttp.ClientSession() as http:
        url = f"{tg.url}/bot{TOKEN}/sendMessage"
        async with http.post(url, json={"chat_id": IVAN, "text": "json", "reply_markup": markup}) as r:
            first = await r.json()
        form = {"chat_id": str(IVAN), "text": "form", "reply_markup": json.dumps(markup)}
        async with http.post(url, data=form) as r:
            second = await r.json()
    assert first["ok"] and second["ok"]
    assert second["result"]["message_id"] == first["result"]["message_id"] + 1
    assert [m.callback_data for m in tg.bot_messages(IVAN)] == [["a"], ["a"]]


# ---------------------------------------------------------------- updates


async def test_long_poll_receives_user_text_and_offset_confirms(tg, bot):
    poll = asyncio.create_task(get_updates(bot, timeout=5))
    await asyncio.sleep(0.1)
    assert not poll.done()  # really waiting
    await tg.send_text(IVAN, "/start ref42")
    updates = await asyncio.wait_for(poll, 3)
    assert len(updates) == 1
    message = updates[0].message
    assert message.text == "/start ref42"
    assert message.from_user.id == IVAN and message.chat.type == "private"
    assert message.entities[0].type == "bot_command" and message.entities[0].length == len("/start")

    # Not confirmed yet: delivered again.
    again = await get_updates(bot)
    assert [u.update_id for u in again] == [updates[0].update_id]

    await tg.send_text(IVAN, "second")
    newer = await get_updates(bot, offset=updates[0].update_id + 1)
    assert [u.message.text for u in newer] == ["second"]
    # The confirmed update is gone for good.
    assert [u.message.text for u in await get_updates(bot)] == ["second"]


async def test_get_updates_limit_and_allowed_updates(tg, bot):
    for i in range(3):
        await tg.send_text(IVAN, f"m{i}")
    assert [u.message.text for u in await get_updates(bot, limit=2)] == ["m0", "m1"]

    first = (await get_updates(bot))[-1].update_id
    await get_updates(bot, offset=first + 1, allowed_updates=["callback_query"])
    await tg.send_text(IVAN, "filtered out")  # a message is not allowed any more
    assert await get_updates(bot, offset=first + 1) == []


async def test_second_poller_terminates_the_first(tg, bot):
    first = asyncio.create_task(get_updates(bot, timeout=5))
    await asyncio.sleep(0.1)
    second = asyncio.create_task(get_updates(bot, timeout=1))
    with pytest.raises(TelegramConflictError):
        await asyncio.wait_for(first, 3)
    assert await second == []


async def test_stop_releases_long_poll():
    tg = FakeTelegram(token=TOKEN)
    await tg.start()
    bot = make_bot(tg)
    try:
        poll = asyncio.create_task(get_updates(bot, timeout=30))
        await asyncio.sleep(0.1)
        await asyncio.wait_for(tg.stop(), 3)
        assert await asyncio.wait_for(poll, 3) == []
    finally:
        await bot.session.close()


# ---------------------------------------------------------------- who can be messaged


async def test_user_who_never_started_cannot_be_messaged(tg, bot):
    with pytest.raises(TelegramForbiddenError, match="bot can't initiate conversation with a user"):
        await bot.send_message(IVAN, "hello")
    await tg.send_text(IVAN, "hi")
    sent = await bot.send_message(IVAN, "hello")
    assert sent.message_id == 2  # the user's message was #1 in this chat


async def test_blocked_user_and_unknown_chat(tg, bot):
    await tg.send_text(IVAN, "hi")
    tg.block(IVAN)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(IVAN, "hello")
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(999, "hello")
    tg.unblock(IVAN)
    await bot.send_message(IVAN, "welcome back")
    kinds = [next(k for k in u if k != "update_id") for u in tg.updates]
    assert kinds == ["message", "my_chat_member", "my_chat_member"]


async def test_message_ids_are_per_chat(tg, bot):
    await tg.send_text(IVAN, "hi")
    await tg.send_text(OLGA, "hi")
    a = await bot.send_message(IVAN, "a")
    b = await bot.send_message(OLGA, "b")
    c = await bot.send_message(IVAN, "c")
    assert (a.message_id, b.message_id, c.message_id) == (2, 2, 3)
    assert [m.text for m in tg.bot_messages(IVAN)] == ["a", "c"]


# ---------------------------------------------------------------- text rules


async def test_html_is_validated_and_kept_as_sent(tg, bot):
    await tg.send_text(IVAN, "hi")
    sent = await bot.send_message(IVAN, "Привет, <b>Иван</b> &amp; co", parse_mode=ParseMode.HTML)
    assert sent.text == "Привет, Иван & co"  # what Telegram returns: plain text + entities
    assert sent.entities[0].type == "bold" and (sent.entities[0].offset, sent.entities[0].length) == (8, 4)
    stored = tg.last_bot_message(IVAN)
    assert stored.text == "Привет, <b>Иван</b> &amp; co"
    assert stored.plain_text == "Привет, Иван & co"

    with pytest.raises(TelegramBadRequest, match="can't parse entities: Can't find end tag"):
        await bot.send_message(IVAN, "<b>bold", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match='Unmatched end tag .* expected "</i>", found "</b>"'):
        await bot.send_message(IVAN, "<b>bold <i>both</b>", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match='Unsupported start tag "br/"'):
        await bot.send_message(IVAN, "line<br/>line", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(IVAN, "1 < 2", parse_mode="HTML")
    # Without parse_mode the same text is fine.
    await bot.send_message(IVAN, "1 < 2")


async def test_text_limits(tg, bot):
    await tg.send_text(IVAN, "hi")
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(IVAN, "<b></b>", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(IVAN, "я" * 4097)
    await bot.send_message(IVAN, "я" * 4096)
    # Tags do not count towards the limit.
    await bot.send_message(IVAN, "<b>" + "я" * 4096 + "</b>", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(IVAN, "x", reply_markup=kb(("A", "d" * 65)))


# ---------------------------------------------------------------- files


async def test_send_photo_upload_keeps_bytes(tg, bot):
    await tg.send_text(IVAN, "hi")
    png = tiny_png(2, 3)
    sent = await bot.send_photo(
        IVAN, BufferedInputFile(png, filename="chart.png"), caption="<i>Chart</i>", parse_mode="HTML"
    )
    assert sent.caption == "Chart"
    assert (sent.photo[-1].width, sent.photo[-1].height) == (2, 3)
    stored = tg.last_bot_message(IVAN)
    assert stored.photo == png
    assert stored.caption == "<i>Chart</i>"
    assert tg.calls_to("sendPhoto")[-1].files  # it really was a multipart upload

    # Resending by file_id works and refers to the same bytes; downloads work too.
    again = await bot.send_photo(IVAN, sent.photo[-1].file_id)
    assert tg.bot_messages(IVAN)[-1].photo == png and again.photo[-1].file_id == sent.photo[-1].file_id
    downloaded = await bot.download(sent.photo[-1].file_id)
    assert downloaded.read() == png

    with pytest.raises(TelegramBadRequest, match="wrong file identifier"):
        await bot.send_photo(IVAN, "no-such-file-id")
    with pytest.raises(TelegramBadRequest, match="message caption is too long"):
        await bot.send_photo(IVAN, BufferedInputFile(png, "x.png"), caption="x" * 1025)


async def test_send_document_keeps_bytes_and_name(tg, bot):
    await tg.send_text(IVAN, "hi")
    data = "дата;сумма\n2024-01-01;100\n".encode()
    sent = await bot.send_document(IVAN, BufferedInputFile(data, filename="report.csv"), caption="Отчёт")
    assert sent.document.file_name == "report.csv"
    assert sent.document.mime_type == "text/csv"
    stored = tg.last_bot_message(IVAN)
    assert stored.document == data and stored.file_name == "report.csv" and stored.caption == "Отчёт"


# ---------------------------------------------------------------- edits & buttons


async def test_edit_then_press_new_button_and_old_button_is_gone(tg, bot):
    await tg.send_text(IVAN, "hi")
    sent = await bot.send_message(IVAN, "Menu", reply_markup=kb(("Open", "menu:open")))
    qid = await tg.press_button(IVAN, sent.message_id, "menu:open")
    assert qid

    await bot.edit_message_text(
        "Opened", chat_id=IVAN, message_id=sent.message_id, reply_markup=kb(("Back", "menu:back"))
    )
    assert tg.last_bot_message(IVAN).text == "Opened"
    await tg.press_button(IVAN, sent.message_id, "menu:back")
    with pytest.raises(FakeTelegramUsageError, match="menu:open"):
        await tg.press_button(IVAN, sent.message_id, "menu:open")

    updates = await get_updates(bot)
    queries = [u.callback_query for u in updates if u.callback_query]
    assert [q.data for q in queries] == ["menu:open", "menu:back"]
    assert queries[1].message.text == "Opened" and queries[1].from_user.id == IVAN

    # Editing text without reply_markup removes the keyboard, as in Telegram.
    await bot.edit_message_text("Plain", chat_id=IVAN, message_id=sent.message_id)
    assert tg.last_bot_message(IVAN).buttons == []


async def test_edit_errors(tg, bot):
    await tg.send_text(IVAN, "hi")
    sent = await bot.send_message(IVAN, "Same", reply_markup=kb(("A", "a")))
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text("Same", chat_id=IVAN, message_id=sent.message_id, reply_markup=kb(("A", "a")))
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_reply_markup(chat_id=IVAN, message_id=sent.message_id, reply_markup=kb(("A", "a")))
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=IVAN, message_id=999)
    with pytest.raises(TelegramBadRequest, match="message can't be edited"):
        await bot.edit_message_text("x", chat_id=IVAN, message_id=1)  # the user's own message

    assert await bot.delete_message(IVAN, sent.message_id) is True
    assert tg.bot_messages(IVAN) == []
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=IVAN, message_id=sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(IVAN, sent.message_id)


async def test_edit_caption_and_markup(tg, bot):
    await tg.send_text(IVAN, "hi")
    sent = await bot.send_photo(IVAN, BufferedInputFile(tiny_png(), "p.png"), caption="old")
    edited = await bot.edit_message_caption(
        chat_id=IVAN, message_id=sent.message_id, caption="new", reply_markup=kb(("Ok", "ok"))
    )
    assert edited.caption == "new" and edited.reply_markup.inline_keyboard[0][0].callback_data == "ok"
    await bot.edit_message_reply_markup(chat_id=IVAN, message_id=sent.message_id)
    stored = tg.last_bot_message(IVAN)
    assert stored.caption == "new" and stored.buttons == [] and stored.edit_count == 2
    with pytest.raises(TelegramBadRequest, match="there is no text in the message to edit"):
        await bot.edit_message_text("x", chat_id=IVAN, message_id=sent.message_id)


async def test_answer_callback_query_only_once(tg, bot):
    await tg.send_text(IVAN, "hi")
    sent = await bot.send_message(IVAN, "Q?", reply_markup=kb(("Yes", "yes")))
    qid = await tg.press_button(IVAN, sent.message_id, "yes")
    assert await bot.answer_callback_query(qid, text="Done", show_alert=True) is True
    answer = tg.callback_answer(qid)
    assert answer.text == "Done" and answer.show_alert and answer.data == "yes"
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(qid)
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query("12345")
    assert len(tg.answered_callbacks) == 1


# ---------------------------------------------------------------- commands & misc


async def test_commands_are_stored_per_scope_and_language(tg, bot):
    default = [BotCommand(command="start", description="Начать")]
    personal = [BotCommand(command="admin", description="Admin panel")]
    await bot.set_my_commands(default)
    await bot.set_my_commands(personal, scope=BotCommandScopeChat(chat_id=IVAN), language_code="en")

    assert tg.commands() == [{"command": "start", "description": "Начать"}]
    assert tg.commands({"type": "chat", "chat_id": IVAN}, "en") == [
        {"command": "admin", "description": "Admin panel"}
    ]
    assert tg.commands({"type": "chat", "chat_id": IVAN}) == []  # other language: not set
    assert tg.commands(BotCommandScopeDefault(), "en") == []

    got = await bot.get_my_commands(scope=BotCommandScopeChat(chat_id=IVAN), language_code="en")
    assert [c.command for c in got] == ["admin"]
    assert [c.command for c in await bot.get_my_commands()] == ["start"]

    tg.users[IVAN].language_code = "en"
    assert [c["command"] for c in tg.visible_commands(IVAN)] == ["admin"]
    assert [c["command"] for c in tg.visible_commands(OLGA)] == ["start"]

    await bot.delete_my_commands(scope=BotCommandScopeChat(chat_id=IVAN), language_code="en")
    assert tg.commands({"type": "chat", "chat_id": IVAN}, "en") == []
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Start", description="x")])


async def test_misc_methods(tg, bot):
    await tg.send_text(IVAN, "hi")
    assert await bot.send_chat_action(IVAN, "typing") is True
    assert tg.chat_actions(IVAN) == ["typing"]
    assert await bot.delete_webhook(drop_pending_updates=True) is True
    assert tg.pending_updates == []
    info = await bot.get_webhook_info()
    assert info.url == "" and info.pending_update_count == 0
    from aiogram.types import MenuButtonCommands

    assert await bot.set_chat_menu_button(chat_id=IVAN, menu_button=MenuButtonCommands()) is True
    assert tg.menu_buttons[IVAN] == {"type": "commands"}
    assert await bot.close() is True
    assert await bot.log_out() is True


async def test_before_call_hook_and_latency(tg, bot):
    tg.latency = 0.05

    async def limiter(method, params):
        if method == "getMe":
            return ApiError.too_many_requests(3)
        return None

    tg.before_call = limiter
    with pytest.raises(TelegramRetryAfter) as exc:
        await bot.get_me()
    assert exc.value.retry_after == 3
    assert tg.calls[-1].error.error_code == 429
    tg.before_call = None
    await bot.get_me()


async def test_wait_for_timeout_explains_what_happened(tg, bot):
    await tg.send_text(IVAN, "hi")
    await bot.send_message(IVAN, "something else")
    with pytest.raises(AssertionError) as exc:
        await tg.wait_for_message(IVAN, contains="never", timeout=0.2)
    text = str(exc.value)
    assert "containing 'never'" in text and "sendMessage" in text and "something else" in text
    with pytest.raises(TelegramNotFound):  # sanity: unknown methods are 404 for aiogram too
        from aiogram.methods import SendPoll

        await bot(SendPoll(chat_id=IVAN, question="q", options=["a", "b"]))


# ---------------------------------------------------------------- end to end


async def test_dispatcher_polling_end_to_end(tg):
    dp = Dispatcher()

    @dp.message(CommandStart())
    async def on_start(message: Message) -> None:
        await message.answer(
            f"Привет, <b>{message.from_user.first_name}</b>!",
            reply_markup=kb(("Меню", "menu")),
        )

    @dp.callback_query(F.data == "menu")
    async def on_menu(query: CallbackQuery) -> None:
        await query.message.edit_text("Меню открыто")
        await query.answer("ok")

    bot = make_bot(tg, default=DefaultBotProperties(parse_mode=ParseMode.HTML))
    polling = asyncio.create_task(dp.start_polling(bot, polling_timeout=1, handle_signals=False))
    try:
        first = await tg.send_text(IVAN, "/start")
        reply = await tg.wait_for_message(IVAN, contains="Привет", after=first)
        assert reply.text == "Привет, <b>Ivan</b>!" and reply.plain_text == "Привет, Ivan!"
        assert reply.parse_mode == "HTML"

        await tg.press_button(IVAN, reply.message_id, "menu")
        await tg.wait_for(lambda: tg.answered_callbacks, timeout=5)
        assert tg.last_bot_message(IVAN).text == "Меню открыто"
        assert tg.answered_callbacks[0].text == "ok"
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(polling, 10)
    assert not tg.internal_errors


# ---------------------------------------------------------------- limits, latency, faults, counters

try:
    from tests.fake_telegram import Faults, RateLimits
except ImportError:  # pragma: no cover
    from fake_telegram import Faults, RateLimits

from aiogram.exceptions import TelegramNetworkError, TelegramServerError  # noqa: E402


async def test_limits_and_faults_are_off_by_default(tg, bot):
    await tg.send_text(IVAN, "/start")
    for i in range(40):
        await bot.send_message(IVAN, f"m{i}")
    assert tg.limits is None and tg.faults is None and tg.latency == 0
    assert tg.too_many_requests == 0 and not tg.faults_injected
    assert tg.received[IVAN] == 40


async def test_default_limits_are_telegrams():
    limits = RateLimits()
    assert (limits.global_calls, limits.global_window) == (30, 1.0)
    assert (limits.private_calls, limits.private_window) == (1, 1.0)
    assert (limits.group_calls, limits.group_window) == (20, 60.0)
    assert "sendMessage" in limits.methods and "editMessageText" in limits.methods
    assert "getMe" not in limits.methods and "answerCallbackQuery" not in limits.methods
    async with FakeTelegram(limits=True) as server:
        assert server.limits == RateLimits()


async def test_global_limit_answers_429_with_retry_after(tg, bot):
    users = list(range(10, 20))
    tg.mark_started(*users)
    tg.limits = RateLimits(global_calls=5, global_window=0.5, private_calls=None)
    for u in users[:5]:
        await bot.send_message(u, "hi")
    with pytest.raises(TelegramRetryAfter) as exc:
        await bot.send_message(users[5], "hi")
    assert exc.value.retry_after == 1  # ceil of the < 0.5 s until the window frees
    assert tg.too_many_requests == 1
    assert users[5] not in tg.received
    # The raw answer is Telegram's envelope.
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{tg.url}/bot{TOKEN}/sendMessage", json={"chat_id": users[6], "text": "x"}) as r:
            assert r.status == 429
            assert await r.json() == {
                "ok": False, "error_code": 429, "description": "Too Many Requests: retry after 1",
                "parameters": {"retry_after": 1},
            }
    assert tg.too_many_requests == 2
    # Other methods are not counted.
    for _ in range(10):
        await bot.get_me()
    await asyncio.sleep(0.55)
    for u in users[5:]:
        await bot.send_message(u, "hi")
    assert sum(tg.received.values()) == 10 and set(tg.received) == set(users)


async def test_retry_after_is_the_ceiling_of_the_time_until_the_window_frees(tg, bot):
    tg.mark_started(IVAN)
    tg.limits = RateLimits(global_calls=None, private_calls=1, private_window=2.5)
    await bot.send_message(IVAN, "one")
    with pytest.raises(TelegramRetryAfter) as exc:
        await bot.send_message(IVAN, "two")
    assert exc.value.retry_after == 3


async def test_per_private_chat_limit_counts_sends_and_edits(tg, bot):
    tg.mark_started(IVAN, OLGA)
    tg.limits = RateLimits(global_calls=None, private_calls=1, private_window=0.4)
    msg = await bot.send_message(IVAN, "one")
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(IVAN, "two")
    with pytest.raises(TelegramRetryAfter):
        await bot.edit_message_text("edited", chat_id=IVAN, message_id=msg.message_id)
    await bot.send_message(OLGA, "another chat is not affected")
    await asyncio.sleep(0.45)
    await bot.edit_message_text("edited", chat_id=IVAN, message_id=msg.message_id)
    await asyncio.sleep(0.45)
    await bot.send_message(IVAN, "two")
    assert tg.received == {IVAN: 2, OLGA: 1}  # edits are not received messages
    assert tg.too_many_requests == 2


async def test_per_group_chat_limit_is_20_a_minute(tg, bot):
    tg.limits = RateLimits()
    group = -1001234567890  # the fake has no group chats: admitted calls answer "chat not found"
    for _ in range(20):
        with pytest.raises(TelegramBadRequest, match="chat not found"):
            await bot.send_message(group, "hi")
    with pytest.raises(TelegramRetryAfter) as exc:
        await bot.send_message(group, "hi")
    assert 59 <= exc.value.retry_after <= 60
    tg.mark_started(IVAN)
    await bot.send_message(IVAN, "private chats are not affected")
    tg.reset_limits()
    with pytest.raises(TelegramBadRequest):
        await bot.send_message(group, "hi")


async def test_limits_can_be_changed_at_run_time(tg, bot):
    tg.mark_started(IVAN)
    tg.limits = RateLimits(private_calls=1, private_window=60)
    await bot.send_message(IVAN, "one")
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(IVAN, "two")
    tg.limits = None
    await bot.send_message(IVAN, "two")
    assert tg.received[IVAN] == 2


async def test_fixed_and_random_latency(tg, bot):
    loop = asyncio.get_running_loop()
    tg.latency = 0.1
    start = loop.time()
    await bot.get_me()
    assert loop.time() - start >= 0.1
    tg.latency = (0.05, 0.15)
    delays = [tg._call_latency() for _ in range(200)]
    assert all(0.05 <= d <= 0.15 for d in delays) and max(delays) - min(delays) > 0.05
    tg.reseed(tg.seed)
    assert [tg._call_latency() for _ in range(200)] == delays  # reproducible


async def test_server_errors_are_500_or_502_and_not_handled(tg, bot):
    tg.mark_started(IVAN)
    tg.faults = Faults(server_error_rate=1.0)
    codes = set()
    for _ in range(20):
        with pytest.raises(TelegramServerError) as exc:
            await bot.send_message(IVAN, "hi")
        codes.add(exc.value.message)
    assert codes == {"Internal Server Error", "Bad Gateway"}
    assert {c.error.error_code for c in tg.calls_to("sendMessage")} == {500, 502}
    assert tg.faults_injected["500"] + tg.faults_injected["502"] == 20
    assert tg.bot_messages(IVAN) == [] and tg.received[IVAN] == 0
    await bot.get_me()  # only message methods by default


async def test_dropped_connection_is_a_network_error_and_nothing_arrives(tg, bot):
    tg.mark_started(IVAN)
    tg.faults = Faults(drop_rate=1.0)
    with pytest.raises(TelegramNetworkError):
        await bot.send_message(IVAN, "hi")
    call = tg.calls_to("sendMessage")[-1]
    assert call.dropped and not call.ok and "dropped" in str(call)
    assert tg.bot_messages(IVAN) == [] and tg.received[IVAN] == 0
    assert tg.faults_injected == {"dropped": 1}
    tg.faults = Faults(drop_rate=1.0, methods=None)  # every method but getUpdates
    with pytest.raises(TelegramNetworkError):
        await bot.get_me()
    assert await get_updates(bot) == []
    tg.faults = None
    await bot.send_message(IVAN, "hi")  # the client recovers: a new connection
    assert tg.received[IVAN] == 1


async def outcomes(seed: int, n: int = 60) -> list[str]:
    async with FakeTelegram(token=TOKEN, seed=seed, faults=Faults(server_error_rate=0.2, drop_rate=0.2)) as server:
        server.mark_started(IVAN)
        b = make_bot(server)
        try:
            result = []
            for _ in range(n):
                try:
                    await b.send_message(IVAN, "hi")
                    result.append("ok")
                except TelegramServerError as e:
                    result.append(e.message)
                except TelegramNetworkError:
                    result.append("dropped")
            assert server.received[IVAN] == result.count("ok")
            assert server.faults_injected["dropped"] == result.count("dropped")
            return result
        finally:
            await b.session.close()


async def test_faults_are_reproducible_with_a_seed():
    first, again, other = await outcomes(7), await outcomes(7), await outcomes(8)
    assert first == again and first != other
    failed = sum(len(r) - r.count("ok") for r in (first, other)) / (len(first) + len(other))
    assert 0.25 <= failed <= 0.55  # 40 % asked for
    assert {"ok", "dropped", "Internal Server Error", "Bad Gateway"} <= set(first + other)


async def test_construction_takes_limits_faults_latency_and_seed():
    async with FakeTelegram(token=TOKEN, limits=RateLimits(global_calls=2), faults=Faults(drop_rate=0.5),
                            latency=(0.0, 0.01), seed=3) as server:
        assert server.limits.global_calls == 2 and server.faults.drop_rate == 0.5
        assert server.latency == (0.0, 0.01) and server.seed == 3


async def test_mark_started_lets_the_bot_write_without_an_update(tg, bot):
    with pytest.raises(TelegramForbiddenError, match="can't initiate"):
        await bot.send_message(OLGA, "hi")
    tg.mark_started(OLGA, 9999)  # an unknown id becomes a user
    await bot.send_message(OLGA, "hi")
    await bot.send_message(9999, "hi")
    assert tg.pending_updates == [] and tg.updates == []
    assert tg.add_user(8888, "Bulk", started=True).started
    assert tg.received == {OLGA: 1, 9999: 1}


async def test_received_counts_only_successful_sends_per_chat(tg, bot):
    tg.mark_started(IVAN, OLGA)
    m = await bot.send_message(IVAN, "a")
    await bot.send_photo(OLGA, BufferedInputFile(tiny_png(), "p.png"), caption="photo")
    await bot.send_document(OLGA, BufferedInputFile(b"doc", "d.txt"))
    await bot.edit_message_text("b", chat_id=IVAN, message_id=m.message_id)
    tg.block(IVAN)
    with pytest.raises(TelegramForbiddenError):
        await bot.send_message(IVAN, "c")
    assert tg.received == {IVAN: 1, OLGA: 2}
    tg.reset_counters()
    assert tg.received == {} and tg.too_many_requests == 0


# ---------------------------------------------------------------- timing (benches and the load test)


async def test_latency_per_method_overrides_the_common_one(tg, bot):
    loop = asyncio.get_running_loop()
    tg.latency = 0.3
    tg.method_latency = {"getMe": 0.0}
    start = loop.time()
    await bot.get_me()
    assert loop.time() - start < 0.25
    start = loop.time()
    await bot.get_my_commands()
    assert loop.time() - start >= 0.3
    tg.method_latency = {"getMe": (0.05, 0.15)}
    delays = [tg._call_latency("getMe") for _ in range(50)]
    assert all(0.05 <= d <= 0.15 for d in delays)
    assert tg._call_latency("sendMessage") == 0.3


async def test_updates_record_when_created_and_when_first_delivered(tg, bot):
    first = await tg.send_text(IVAN, "one")
    await asyncio.sleep(0.2)
    [update] = await get_updates(bot)
    uid = update.update_id
    assert tg.delivered_at[uid] - tg.enqueued_at[uid] >= 0.2
    delivered = tg.delivered_at[uid]
    await asyncio.sleep(0.05)
    again = await get_updates(bot)  # not confirmed yet: delivered again, first time kept
    assert [u.update_id for u in again] == [uid] and tg.delivered_at[uid] == delivered
    await get_updates(bot, offset=uid + 1)
    assert first.text == "one"


async def test_callback_answer_records_press_delivery_and_answer_times(tg, bot):
    await tg.send_text(IVAN, "hi")
    await get_updates(bot)
    sent = await bot.send_message(IVAN, "Q?", reply_markup=kb(("Yes", "yes"), ("No", "no")))
    qid = await tg.press_button(IVAN, sent.message_id, "yes")
    other = await tg.press_button(IVAN, sent.message_id, "no")
    await asyncio.sleep(0.1)
    updates = await get_updates(bot, offset=(await get_updates(bot))[0].update_id + 1)
    assert [u.callback_query.id for u in updates] == [qid, other]
    await asyncio.sleep(0.2)
    assert [(q[0], q[1], q[2]) for q in tg.unanswered_queries()] == [(qid, IVAN, "yes"), (other, IVAN, "no")]
    assert tg.unanswered_queries(older_than=60) == []
    await bot.answer_callback_query(qid)
    answer = tg.callback_answer(qid)
    assert answer.asked_at <= answer.delivered_at <= answer.answered_at  # type: ignore[operator]
    assert answer.delay >= 0.3 and 0.2 <= answer.handling < answer.delay  # type: ignore[operator]
    assert [q[0] for q in tg.unanswered_queries()] == [other]


async def test_server_error_codes_can_be_chosen(tg, bot):
    tg.mark_started(IVAN)
    tg.faults = Faults(server_error_rate=0.5, drop_rate=0.5, server_error_codes=(502,))
    outcomes = []
    for _ in range(40):
        try:
            await bot.send_message(IVAN, "hi")
            outcomes.append("ok")
        except TelegramServerError as e:
            outcomes.append(e.message)
        except TelegramNetworkError:
            outcomes.append("dropped")
    assert set(outcomes) == {"Bad Gateway", "dropped"}
    assert set(tg.faults_injected) == {"502", "dropped"} and sum(tg.faults_injected.values()) == 40
