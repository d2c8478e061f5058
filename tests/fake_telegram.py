"""A fake Telegram Bot API server for end-to-end tests of the bot.

The real bot process talks to it over HTTP exactly as it talks to
api.telegram.org: start the bot with ``TELEGRAM_API_URL=tg.url`` and aiogram
sends ``POST {url}/bot{token}/{method}`` and downloads files from
``{url}/file/bot{token}/{path}``.

The server runs inside the test's own event loop (aiohttp.web), so the test
can inspect and drive its state synchronously: ``add_user``, ``send_text``,
``press_button``, ``bot_messages`` ... All state changes happen between
``await`` points of a single loop, so no locks are needed.

Usage::

    async with FakeTelegram(token="123456:TEST-token") as tg:
        tg.add_user(111, "Ivan")
        ...start the bot with TELEGRAM_API_URL=tg.url...
        await tg.send_text(111, "/start")
        msg = await tg.wait_for_message(111, contains="Привет")
        await tg.press_button(111, msg.message_id, "menu:open")

What it imitates: the request formats (JSON, urlencoded, multipart with
``attach://`` files), the response envelope, Telegram's error codes and
description texts, per-chat message ids, "the user must have started the
bot", blocking, edit/delete semantics (including "message is not modified"
and "editing text without reply_markup removes the inline keyboard"),
callback queries answerable once, long-polling getUpdates with offset
confirmation, command scopes, HTML parse mode validation (a port of the rules
of tdlib's HTML parser, with its error texts).

Extension point: ``before_call`` (an async hook called before every method,
which may return or raise an :class:`ApiError`).

Telegram-like limits and faults, all off by default, set at construction or
at any time later by assigning the attribute::

    tg = FakeTelegram(limits=True)                 # 30/s global, 1/s per private chat, 20/min per group
    tg.limits = RateLimits(global_calls=100)       # or any other numbers; None turns one limit off
    tg.latency = 0.05                              # seconds per call, or a random range (0.05, 0.2)
    tg.method_latency = {"getUpdates": 0.0}        # per method, overrides `latency` for those methods
    tg.faults = Faults(server_error_rate=0.05, drop_rate=0.05)   # 500/502 answers, dropped connections
    tg.mark_started(*user_ids)                     # bulk recipients who "pressed Start" long ago

Beyond a limit a message method is answered ``429 Too Many Requests: retry
after N`` with ``parameters.retry_after = N`` (N = the whole seconds until the
window has room again). A dropped call is dropped *before* it is handled: the
client sees a network error and the message did not arrive. Random choices
(faults, a latency range) come from RNGs seeded with ``seed``, so a run that
makes the same calls in the same order gets the same faults. Counters:
``received`` (messages each chat got), ``too_many_requests`` (429s given),
``faults_injected``; ``reset_counters()`` clears them.

Timing, on the fake's monotonic clock (``time.monotonic()``): every call's
``at``/``done_at``; ``enqueued_at[update_id]`` (when the user acted) and
``delivered_at[update_id]`` (when getUpdates first handed the update to the
bot); every :class:`CallbackAnswer` carries ``asked_at``, ``delivered_at`` and
``answered_at`` (``delay`` = answered − asked, what Telegram's window counts);
``unanswered_queries()`` lists the presses still waiting for their answer.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
import math
import mimetypes
import os
import random
import re
import secrets
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

log = logging.getLogger("fake_telegram")

__all__ = [
    "ApiCall",
    "ApiError",
    "CallbackAnswer",
    "FakeTelegram",
    "Faults",
    "FakeTelegramUsageError",
    "FakeUser",
    "HtmlParseError",
    "MESSAGE_METHODS",
    "RateLimits",
    "SEND_METHODS",
    "StoredFile",
    "StoredMessage",
    "UploadedFile",
    "parse_html",
]

# --------------------------------------------------------------------------
# Telegram's error texts (kept verbatim: bot code matches on them)
# --------------------------------------------------------------------------

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply "
    "markup are exactly the same as a current content and reply markup of the message"
)
MESSAGE_TO_EDIT_NOT_FOUND = "Bad Request: message to edit not found"
MESSAGE_TO_DELETE_NOT_FOUND = "Bad Request: message to delete not found"
MESSAGE_CANT_BE_EDITED = "Bad Request: message can't be edited"
NO_TEXT_TO_EDIT = "Bad Request: there is no text in the message to edit"
NO_CAPTION_TO_EDIT = "Bad Request: there is no caption in the message to edit"
BLOCKED = "Forbidden: bot was blocked by the user"
CANT_INITIATE = "Forbidden: bot can't initiate conversation with a user"
CHAT_NOT_FOUND = "Bad Request: chat not found"
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
TEXT_EMPTY = "Bad Request: message text is empty"
TEXT_TOO_LONG = "Bad Request: message is too long"
CAPTION_TOO_LONG = "Bad Request: message caption is too long"
REPLY_NOT_FOUND = "Bad Request: message to be replied not found"
WRONG_FILE_ID = "Bad Request: wrong file identifier/HTTP URL specified"
CONFLICT_OTHER_POLL = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
CONFLICT_WEBHOOK = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_ANSWER = 200

# Update types delivered when allowed_updates is unset or [] (Telegram's default).
_NOT_DEFAULT_UPDATES = {"chat_member", "message_reaction", "message_reaction_count"}

CHAT_ACTIONS = {
    "typing", "upload_photo", "record_video", "upload_video", "record_voice",
    "upload_voice", "upload_document", "choose_sticker", "find_location",
    "record_video_note", "upload_video_note",
}


class ApiError(Exception):
    """A Telegram error response. Raise or return it from ``before_call``."""

    def __init__(
        self,
        error_code: int,
        description: str,
        *,
        retry_after: int | None = None,
        migrate_to_chat_id: int | None = None,
    ) -> None:
        super().__init__(f"{error_code} {description}")
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after
        self.migrate_to_chat_id = migrate_to_chat_id

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.error_code,
            "description": self.description,
        }
        parameters = {}
        if self.retry_after is not None:
            parameters["retry_after"] = self.retry_after
        if self.migrate_to_chat_id is not None:
            parameters["migrate_to_chat_id"] = self.migrate_to_chat_id
        if parameters:
            body["parameters"] = parameters
        return body

    @classmethod
    def too_many_requests(cls, retry_after: int) -> ApiError:
        return cls(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)


def _bad(description: str) -> ApiError:
    return ApiError(400, description if description.startswith("Bad Request") else f"Bad Request: {description}")


# --------------------------------------------------------------------------
# Flood limits and faults (off unless configured)
# --------------------------------------------------------------------------

# Methods that put a message into a chat: what `received` counts.
SEND_METHODS = frozenset({
    "sendMessage", "sendPhoto", "sendDocument", "sendVideo", "sendAudio", "sendVoice",
    "sendAnimation", "sendVideoNote", "sendSticker", "sendMediaGroup", "sendLocation",
    "sendVenue", "sendContact", "sendPoll", "sendDice", "copyMessage", "copyMessages",
    "forwardMessage", "forwardMessages",
})
# Methods that send or change a message: what Telegram's flood limits count.
MESSAGE_METHODS = SEND_METHODS | {
    "editMessageText", "editMessageCaption", "editMessageReplyMarkup", "editMessageMedia",
}


@dataclass
class RateLimits:
    """Telegram's flood limits as sliding windows: at most `*_calls` calls of
    `methods` in any `*_window` seconds. None turns that limit off.

    Private chats have positive ids, groups, supergroups and channels negative
    ones. A call is counted when it is admitted (whatever its outcome, e.g. 403
    for a blocked user); a call answered 429 is not counted.
    """

    global_calls: int | None = 30
    global_window: float = 1.0
    private_calls: int | None = 1
    private_window: float = 1.0
    group_calls: int | None = 20
    group_window: float = 60.0
    methods: frozenset[str] = MESSAGE_METHODS


@dataclass
class Faults:
    """Injected failures, each call drawn from the fake's seeded RNG.

    - `server_error_rate`: the fraction answered 500 "Internal Server Error" or
      502 "Bad Gateway" (one of `server_error_codes` at random) without being handled;
    - `drop_rate`: the fraction whose connection is closed without any answer,
      before the call is handled (so it certainly did not take effect).

    `methods` limits them to some methods (default: the message methods; None:
    every method but getUpdates).
    """

    server_error_rate: float = 0.0
    drop_rate: float = 0.0
    methods: frozenset[str] | None = MESSAGE_METHODS
    # The codes a server error is drawn from (e.g. (502,) for a proxy in front of Telegram).
    server_error_codes: tuple[int, ...] = (500, 502)

    def applies_to(self, method: str) -> bool:
        return method != "getUpdates" if self.methods is None else method in self.methods


_SERVER_ERRORS = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
                  504: "Gateway Timeout"}


def _window_wait(log: deque[float], limit: int, window: float, now: float) -> float:
    """Seconds until a sliding window of `window` seconds holding the times in
    `log` has room for one more call (0 if it has room now). Drops expired times."""
    while log and log[0] <= now - window:
        log.popleft()
    if len(log) < limit:
        return 0.0
    return log[len(log) - limit] + window - now


class _DroppedConnection(Exception):
    """Internal: the connection of this call was closed on purpose."""


class FakeTelegramUsageError(AssertionError):
    """The *test* asked the fake for something impossible (e.g. pressing a
    button that is not on the message). An AssertionError so pytest reports it
    as a failed expectation."""


# --------------------------------------------------------------------------
# HTML parse mode (rules and error texts follow tdlib's parse_html)
# --------------------------------------------------------------------------


class HtmlParseError(ValueError):
    pass


_HTML_TAGS = {
    "b": "bold", "strong": "bold",
    "i": "italic", "em": "italic",
    "u": "underline", "ins": "underline",
    "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough",
    "span": "spoiler", "tg-spoiler": "spoiler",
    "a": "text_link",
    "code": "code", "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
    "tg-time": "date_time",
}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ENTITY_RE = re.compile(r"&(?:#(\d{1,7})|#[xX]([0-9a-fA-F]{1,6})|([a-zA-Z]+));")


def utf16_len(text: str) -> int:
    """Telegram measures entity offsets/lengths in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def _decode_entity(s: str, i: int) -> tuple[str | None, int]:
    """Decode an HTML entity at s[i] == '&'. Unknown ones stay literal (as tdlib)."""
    m = _ENTITY_RE.match(s, i)
    if not m:
        return None, 0
    if m.group(3) is not None:
        ch = _NAMED_ENTITIES.get(m.group(3))
        return (ch, m.end() - i) if ch else (None, 0)
    code = int(m.group(1)) if m.group(1) is not None else int(m.group(2), 16)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None, 0
    return chr(code), m.end() - i


def parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Parse Telegram-HTML into (plain text, entities) or raise HtmlParseError."""

    def at(i: int) -> int:  # errors report UTF-8 byte offsets, like Telegram
        return len(text[:i].encode("utf-8"))

    out: list[str] = []
    pos = 0  # UTF-16 length of `out`
    stack: list[dict[str, Any]] = []
    entities: list[dict[str, Any]] = []
    n = len(text)
    i = 0
    while i < n:
        c = text[i]
        if c == "&":
            ch, used = _decode_entity(text, i)
            if ch is None:
                ch, used = "&", 1
            out.append(ch)
            pos += utf16_len(ch)
            i += used
            continue
        if c != "<":
            out.append(c)
            pos += utf16_len(c)
            i += 1
            continue

        begin = i
        i += 1
        if i < n and text[i] == "/":  # ---- end tag
            i += 1
            if not stack:
                raise HtmlParseError(f"Unexpected end tag at byte offset {at(begin)}")
            j = i
            while i < n and not text[i].isspace() and text[i] != ">":
                i += 1
            name = text[j:i].lower()
            while i < n and text[i].isspace():
                i += 1
            if i >= n or text[i] != ">":
                raise HtmlParseError(f"Unclosed end tag at byte offset {at(begin)}")
            i += 1
            top = stack.pop()
            if name and name != top["tag"]:
                raise HtmlParseError(
                    f'Unmatched end tag at byte offset {at(begin)}, '
                    f'expected "</{top["tag"]}>", found "</{name}>"'
                )
            _close_html_entity(top, pos, "".join(out), stack, entities)
            continue

        # ---- start tag
        j = i
        while i < n and not text[i].isspace() and text[i] != ">":
            i += 1
        if i >= n:
            raise HtmlParseError(f"Unclosed start tag at byte offset {at(begin)}")
        name = text[j:i].lower()
        if name not in _HTML_TAGS:
            raise HtmlParseError(f'Unsupported start tag "{name}" at byte offset {at(begin)}')
        attrs: dict[str, str] = {}
        while True:
            while i < n and text[i].isspace():
                i += 1
            if i >= n:
                raise HtmlParseError(f"Unclosed start tag at byte offset {at(begin)}")
            if text[i] == ">":
                i += 1
                break
            k = i
            while i < n and not text[i].isspace() and text[i] not in "=>":
                i += 1
            attr = text[k:i].lower()
            if not attr:
                raise HtmlParseError(f'Empty attribute name in the tag "{name}" at byte offset {at(begin)}')
            while i < n and text[i].isspace():
                i += 1
            if i >= n:
                raise HtmlParseError(f"Unclosed start tag at byte offset {at(begin)}")
            if text[i] != "=":  # flag attribute, e.g. <blockquote expandable>
                attrs[attr] = ""
                continue
            i += 1
            while i < n and text[i].isspace():
                i += 1
            if i >= n:
                raise HtmlParseError(f"Unclosed start tag at byte offset {at(begin)}")
            if text[i] in "\"'":
                quote = text[i]
                i += 1
                value: list[str] = []
                while i < n and text[i] != quote:
                    if text[i] == "&":
                        ch, used = _decode_entity(text, i)
                        if ch is not None:
                            value.append(ch)
                            i += used
                            continue
                    value.append(text[i])
                    i += 1
                if i >= n:
                    raise HtmlParseError(f"Unclosed start tag at byte offset {at(begin)}")
                i += 1
                attrs[attr] = "".join(value)
            else:
                k = i
                while i < n and (text[i].isalnum() or text[i] in ".-"):
                    i += 1
                if i >= n or (not text[i].isspace() and text[i] != ">"):
                    raise HtmlParseError(f"Unexpected end of name token at byte offset {at(k)}")
                attrs[attr] = text[k:i].lower()

        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise HtmlParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {at(begin)}')
        if name == "tg-emoji" and not attrs.get("emoji-id"):
            raise HtmlParseError(f'Tag "tg-emoji" must have attribute "emoji-id" at byte offset {at(begin)}')
        if name == "tg-time" and not attrs.get("unix", "").isdigit():
            raise HtmlParseError(f'Tag "tg-time" must have attribute "unix" at byte offset {at(begin)}')
        stack.append({"tag": name, "attrs": attrs, "start": pos, "language": None})

    if stack:
        raise HtmlParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1]["tag"]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _close_html_entity(
    top: dict[str, Any], pos: int, plain: str, stack: list[dict[str, Any]], entities: list[dict[str, Any]]
) -> None:
    tag, attrs, start = top["tag"], top["attrs"], top["start"]
    # <pre><code class="language-x">…</code></pre> is one "pre" entity with a language.
    if tag == "code" and stack and stack[-1]["tag"] == "pre":
        cls = attrs.get("class", "") or attrs.get("language", "")
        if cls.startswith("language-"):
            stack[-1]["language"] = cls[len("language-"):]
            return
    length = pos - start
    if length <= 0:  # Telegram drops empty entities
        return
    entity: dict[str, Any] = {"type": _HTML_TAGS[tag], "offset": start, "length": length}
    if tag == "a":
        href = attrs.get("href")
        if not href:  # tdlib uses the link text as the URL
            href = plain.encode("utf-16-le")[start * 2:pos * 2].decode("utf-16-le")
        entity["url"] = href
    elif tag == "pre" and top["language"]:
        entity["language"] = top["language"]
    elif tag == "blockquote" and "expandable" in attrs:
        entity["type"] = "expandable_blockquote"
    elif tag == "tg-emoji":
        entity["custom_emoji_id"] = attrs["emoji-id"]
    elif tag == "tg-time":
        entity["unix_time"] = int(attrs["unix"])
        if attrs.get("format"):
            entity["date_time_format"] = attrs["format"]
    entities.append(entity)


_COMMAND_RE = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?")


def _command_entities(text: str) -> list[dict[str, Any]]:
    """bot_command entities Telegram attaches to a user's text."""
    return [
        {"type": "bot_command", "offset": utf16_len(text[: m.start()]), "length": utf16_len(m.group())}
        for m in _COMMAND_RE.finditer(text)
    ]


# --------------------------------------------------------------------------
# Request parameters
# --------------------------------------------------------------------------

# aiogram (like most clients) sends form fields, so every value arrives as a
# string; Telegram converts them by the declared parameter type. These tables
# are that declaration for the parameters the fake looks at.
_INT_PARAMS = {
    "chat_id", "message_id", "offset", "limit", "timeout", "user_id",
    "reply_to_message_id", "message_thread_id", "cache_time", "max_connections",
    "from_chat_id",
}
_BOOL_PARAMS = {
    "disable_notification", "protect_content", "show_alert", "drop_pending_updates",
    "allow_sending_without_reply", "disable_web_page_preview", "has_spoiler",
    "disable_content_type_detection", "show_caption_above_media", "allow_paid_broadcast",
}
_JSON_PARAMS = {
    "reply_markup", "entities", "caption_entities", "allowed_updates", "commands",
    "scope", "menu_button", "link_preview_options", "reply_parameters", "message_ids",
    "media",
}


@dataclass
class UploadedFile:
    """A file part of a multipart request."""

    data: bytes
    filename: str
    content_type: str

    def __repr__(self) -> str:
        return f"UploadedFile({self.filename!r}, {len(self.data)} bytes)"


def _normalize_params(raw: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, value in raw.items():
        if isinstance(value, str):
            if name in _INT_PARAMS:
                try:
                    value = int(value)
                except ValueError:
                    pass  # e.g. chat_id="@channel": handlers treat it as unknown
            elif name in _BOOL_PARAMS:
                value = value.lower() in ("true", "1")
            elif name in _JSON_PARAMS:
                try:
                    value = json.loads(value)
                except ValueError:
                    what = "reply keyboard markup" if name == "reply_markup" else name
                    raise _bad(f"can't parse {what} JSON object") from None
        params[name] = value
    return params


def _as_int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _json_equal(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


# --------------------------------------------------------------------------
# State objects (what tests inspect)
# --------------------------------------------------------------------------


@dataclass
class FakeUser:
    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = "ru"
    started: bool = False  # has written to the bot at least once
    blocked: bool = False

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            d["last_name"] = self.last_name
        if self.username:
            d["username"] = self.username
        if self.language_code:
            d["language_code"] = self.language_code
        return d

    def chat_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "type": "private", "first_name": self.first_name}
        if self.last_name:
            d["last_name"] = self.last_name
        if self.username:
            d["username"] = self.username
        return d


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    kind: str  # "photo" | "document"
    data: bytes | None  # None when sent by URL (the fake does not download)
    file_name: str | None
    mime_type: str | None
    file_path: str
    width: int = 0
    height: int = 0
    url: str | None = None

    @property
    def size(self) -> int:
        return len(self.data or b"")


@dataclass
class StoredMessage:
    """A message as it currently is in a chat (edits applied)."""

    message_id: int
    chat_id: int
    from_bot: bool
    date: int
    text: str | None = None  # as sent (HTML tags kept)
    plain_text: str | None = None  # as the user sees it (tags parsed away)
    entities: list[dict[str, Any]] = field(default_factory=list)
    caption: str | None = None  # as sent
    plain_caption: str | None = None
    caption_entities: list[dict[str, Any]] = field(default_factory=list)
    parse_mode: str | None = None
    reply_markup: dict[str, Any] | None = None  # as sent, any keyboard type
    file: StoredFile | None = None
    reply_to_message_id: int | None = None
    edit_date: int | None = None
    edit_count: int = 0

    @property
    def content(self) -> str:
        """What the user sees: plain text or plain caption."""
        return self.plain_text if self.plain_text is not None else (self.plain_caption or "")

    @property
    def photo(self) -> bytes | None:
        return self.file.data if self.file and self.file.kind == "photo" else None

    @property
    def document(self) -> bytes | None:
        return self.file.data if self.file and self.file.kind == "document" else None

    @property
    def file_name(self) -> str | None:
        return self.file.file_name if self.file else None

    @property
    def inline_keyboard(self) -> list[list[dict[str, Any]]]:
        if self.reply_markup and "inline_keyboard" in self.reply_markup:
            return self.reply_markup["inline_keyboard"]
        return []

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """All inline buttons, row by row, flattened."""
        return [b for row in self.inline_keyboard for b in row]

    @property
    def button_texts(self) -> list[str]:
        return [b.get("text", "") for b in self.buttons]

    @property
    def callback_data(self) -> list[str]:
        return [b["callback_data"] for b in self.buttons if "callback_data" in b]

    def button(self, text: str) -> dict[str, Any]:
        """The inline button with exactly this text (raises if absent)."""
        for b in self.buttons:
            if b.get("text") == text:
                return b
        raise FakeTelegramUsageError(
            f"message {self.message_id} has no button {text!r}; buttons: {self.button_texts}"
        )

    def matches(self, contains: str) -> bool:
        return any(contains in s for s in (self.text, self.plain_text, self.caption, self.plain_caption) if s)

    def __str__(self) -> str:
        who = "bot" if self.from_bot else "user"
        body = self.text if self.text is not None else f"[{self.file.kind if self.file else '?'}] {self.caption or ''}"
        kb = f" buttons={[(b.get('text'), b.get('callback_data') or b.get('url')) for b in self.buttons]}" if self.buttons else ""
        return f"#{self.message_id} {who}: {body!r}{kb}"


@dataclass
class CallbackAnswer:
    query_id: str
    user_id: int
    message_id: int
    data: str
    text: str | None
    show_alert: bool
    url: str | None
    cache_time: int | None
    # The fake's monotonic clock: the press, the update's first delivery to the
    # bot (None if it never went through getUpdates), the answer.
    asked_at: float = 0.0
    delivered_at: float | None = None
    answered_at: float = 0.0

    @property
    def delay(self) -> float:
        """Seconds from the press to the answer: what Telegram's window (~15 s) counts."""
        return self.answered_at - self.asked_at

    @property
    def handling(self) -> float | None:
        """Seconds from the bot receiving the update to its answer (the bot's own share)."""
        return None if self.delivered_at is None else self.answered_at - self.delivered_at


@dataclass
class ApiCall:
    """One Bot API request as the fake saw it."""

    method: str
    params: dict[str, Any]
    files: dict[str, UploadedFile] = field(default_factory=dict)
    result: Any = None
    error: ApiError | None = None
    at: float = field(default_factory=time.monotonic)  # when the request arrived
    done_at: float | None = None  # when it was handled successfully
    dropped: bool = False  # its connection was closed without an answer (Faults)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.dropped

    def __str__(self) -> str:
        shown = {k: (v if not isinstance(v, str) or len(v) < 120 else v[:117] + "...") for k, v in self.params.items()}
        if self.dropped:
            outcome = "connection dropped"
        elif self.error is not None:
            outcome = f"{self.error.error_code} {self.error.description}"
        elif isinstance(self.result, dict) and "message_id" in self.result:
            outcome = f"ok message_id={self.result['message_id']}"
        elif isinstance(self.result, list):
            outcome = f"ok [{len(self.result)} items]"
        else:
            outcome = f"ok {self.result!r}"[:200]
        return f"{self.method} {shown} -> {outcome}"


@dataclass
class _Chat:
    user: FakeUser
    messages: dict[int, StoredMessage] = field(default_factory=dict)  # insertion = id order
    next_message_id: int = 1
    actions: list[str] = field(default_factory=list)
    chat_instance: str = field(default_factory=lambda: str(secrets.randbits(62)))


@dataclass
class _Query:
    user_id: int
    message_id: int
    data: str
    created: float
    answered: bool = False
    update_id: int | None = None


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------

BeforeCallHook = Callable[[str, dict[str, Any]], Awaitable["ApiError | None"]]


class FakeTelegram:
    def __init__(
        self,
        token: str = "123456:TEST-token",
        bot_username: str = "parta_test_bot",
        bot_first_name: str = "Parta",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float | tuple[float, float] = 0.0,
        first_update_id: int = 1,
        callback_ttl: float | None = None,
        limits: RateLimits | bool | None = None,
        faults: Faults | None = None,
        seed: int = 0,
    ) -> None:
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.host = host
        self.port = port
        # Seconds every API call takes (applied before handling): a number, or a
        # (low, high) range drawn uniformly for each call.
        self.latency: float | tuple[float, float] = latency
        # Per method (canonical name), overriding `latency` for that method.
        self.method_latency: dict[str, float | tuple[float, float]] = {}
        # Flood limits (True = Telegram's defaults); None = no limits.
        self.limits: RateLimits | None = RateLimits() if limits is True else (limits or None)
        self.faults: Faults | None = faults
        self.reseed(seed)
        # Counters (reset_counters() clears them).
        self.received: Counter[int] = Counter()  # chat id -> messages it received
        self.too_many_requests = 0  # 429s given
        self.faults_injected: Counter[str] = Counter()  # "500", "502", "dropped"
        self._global_log: deque[float] = deque()
        self._chat_logs: dict[int, deque[float]] = {}
        # async (method, params) -> ApiError | None; may also raise ApiError.
        self.before_call: BeforeCallHook | None = None
        # If set, a callback query older than this many seconds is "too old".
        self.callback_ttl = callback_ttl

        self.users: dict[int, FakeUser] = {}
        self.calls: list[ApiCall] = []
        self.answered_callbacks: list[CallbackAnswer] = []
        self._answer_of: dict[str, CallbackAnswer] = {}  # query id -> its answer (looked up per waiter)
        self.updates: list[dict[str, Any]] = []  # every update ever enqueued
        self.enqueued_at: dict[int, float] = {}  # update id -> when it was created (monotonic)
        self.delivered_at: dict[int, float] = {}  # update id -> first returned by getUpdates
        self.files: dict[str, StoredFile] = {}
        self.internal_errors: list[BaseException] = []
        self.webhook_url: str = ""
        self.menu_buttons: dict[int | None, dict[str, Any]] = {}
        self.logged_out = False
        self.closed = False

        self._chats: dict[int, _Chat] = {}
        self._pending: list[dict[str, Any]] = []  # not yet confirmed by offset
        self._next_update_id = first_update_id
        self._allowed_updates: set[str] | None = None  # None = Telegram default
        self._queries: dict[str, _Query] = {}
        self._commands: dict[tuple[tuple[Any, ...], str], list[dict[str, str]]] = {}
        self._bot_texts: dict[tuple[str, str], str] = {}  # (kind, lang) -> text
        self._file_seq = itertools.count(1)
        self._poll_generation = 0
        self._wakeup: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._closing = False

        self._methods: dict[str, Callable[..., Awaitable[Any]]] = {}
        self._canonical: dict[str, str] = {}
        for name in (
            "getMe", "logOut", "close",
            "getUpdates", "setWebhook", "deleteWebhook", "getWebhookInfo",
            "sendMessage", "sendPhoto", "sendDocument", "sendChatAction",
            "editMessageText", "editMessageCaption", "editMessageReplyMarkup",
            "deleteMessage", "deleteMessages",
            "answerCallbackQuery",
            "setMyCommands", "getMyCommands", "deleteMyCommands",
            "setChatMenuButton", "getChatMenuButton",
            "setMyDescription", "getMyDescription",
            "setMyShortDescription", "getMyShortDescription",
            "setMyName", "getMyName",
            "getChat", "getFile",
        ):
            # Telegram method names are case-insensitive; calls are logged
            # under the canonical spelling.
            self._methods[name.lower()] = getattr(self, "_m_" + re.sub(r"([A-Z])", r"_\1", name).lower())
            self._canonical[name.lower()] = name

    # ------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._closing = False
        # Telegram accepts uploads up to 50 MB; aiohttp's default is 1 MB.
        app = web.Application(client_max_size=52 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_route("GET", "/file/bot{token}/{path:.+}", self._handle_file)
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown_path)
        # A short shutdown timeout: stop() releases long polls itself.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is None:
            return
        self._closing = True
        self._notify()  # in-flight getUpdates return [] at once
        await asyncio.sleep(0)
        await self._runner.cleanup()
        self._runner = None

    @property
    def url(self) -> str:
        """Base URL for the bot: TelegramAPIServer.from_base(tg.url)."""
        return f"http://{self.host}:{self.port}"

    @property
    def bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    # ------------------------------------------------------------- HTTP layer

    async def _handle_unknown_path(self, request: web.Request) -> web.Response:
        return web.json_response(ApiError(404, "Not Found").to_json(), status=404)

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.json_response(ApiError(401, "Unauthorized").to_json(), status=401)
        path = request.match_info["path"]
        for f in self.files.values():
            if f.file_path == path:
                return web.Response(body=f.data or b"", content_type=f.mime_type or "application/octet-stream")
        return web.json_response(ApiError(404, "Not Found").to_json(), status=404)

    async def _read_params(self, request: web.Request) -> tuple[dict[str, Any], dict[str, UploadedFile]]:
        raw: dict[str, Any] = dict(request.query)
        files: dict[str, UploadedFile] = {}
        if request.method == "POST" and request.body_exists:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    raise _bad("can't parse JSON object") from None
                if not isinstance(body, dict):
                    raise _bad("can't parse JSON object")
                raw.update(body)
            else:  # multipart/form-data or application/x-www-form-urlencoded
                try:
                    form = await request.post()
                except web.HTTPRequestEntityTooLarge:
                    raise ApiError(413, "Request Entity Too Large") from None
                for name, value in form.items():
                    if isinstance(value, web.FileField):
                        files[name] = UploadedFile(value.file.read(), value.filename, value.content_type)
                    else:
                        raw[name] = value if isinstance(value, str) else bytes(value).decode()
        return _normalize_params(raw), files

    async def _handle_api(self, request: web.Request) -> web.Response:
        method_raw = request.match_info["method"]
        handler = self._methods.get(method_raw.lower())
        call = ApiCall(method=self._canonical.get(method_raw.lower(), method_raw), params={})
        self.calls.append(call)
        try:
            if request.match_info["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            if handler is None:
                self._warn_unimplemented(method_raw)
                raise ApiError(404, "Not Found")
            call.params, call.files = await self._read_params(request)
            delay = self._call_latency(call.method)
            if delay > 0:
                await asyncio.sleep(delay)
            self._inject_fault(call)
            limited = self._check_limits(call.method, call.params)
            if limited is not None:
                raise limited
            if self.before_call is not None:
                injected = await self.before_call(call.method, call.params)
                if injected is not None:
                    raise injected
            result = await handler(call.params, call.files)
        except _DroppedConnection:
            call.dropped = True
            # No answer at all: the client sees the connection closed under it.
            if request.transport is not None:
                request.transport.close()
            raise asyncio.CancelledError from None
        except ApiError as e:
            call.error = e
            if e.error_code == 429:
                self.too_many_requests += 1
            return web.json_response(e.to_json(), status=e.error_code)
        except Exception as e:  # a bug in the fake: make it loud in wait_for()
            log.exception("FakeTelegram: %s crashed", call.method)
            self.internal_errors.append(e)
            call.error = ApiError(500, f"Internal Server Error (fake crashed: {e!r})")
            return web.json_response(call.error.to_json(), status=500)
        call.result = result
        call.done_at = time.monotonic()
        if call.method in SEND_METHODS:
            for sent in result if isinstance(result, list) else [result]:
                if isinstance(sent, dict) and isinstance(sent.get("chat"), dict):
                    self.received[sent["chat"]["id"]] += 1
        return web.json_response({"ok": True, "result": result})

    # ------------------------------------------------------------- limits & faults

    def reseed(self, seed: int) -> None:
        """Restart the random sequences of faults and latencies."""
        self.seed = seed
        self._fault_rng = random.Random(f"faults-{seed}")
        self._latency_rng = random.Random(f"latency-{seed}")

    def reset_limits(self) -> None:
        """Forget the calls the limits have counted so far (the windows are empty)."""
        self._global_log.clear()
        self._chat_logs.clear()

    def reset_counters(self) -> None:
        self.received.clear()
        self.too_many_requests = 0
        self.faults_injected.clear()

    def _call_latency(self, method: str | None = None) -> float:
        latency = self.method_latency.get(method, self.latency) if method is not None else self.latency
        if isinstance(latency, tuple):
            low, high = latency
            return self._latency_rng.uniform(low, high)
        return latency

    def _inject_fault(self, call: ApiCall) -> None:
        faults = self.faults
        if faults is None or not faults.applies_to(call.method):
            return
        if not (faults.drop_rate or faults.server_error_rate):
            return
        draw = self._fault_rng.random()
        if draw < faults.drop_rate:
            self.faults_injected["dropped"] += 1
            raise _DroppedConnection
        if draw < faults.drop_rate + faults.server_error_rate:
            code = self._fault_rng.choice(faults.server_error_codes)
            text = _SERVER_ERRORS.get(code, "Internal Server Error")
            self.faults_injected[str(code)] += 1
            raise ApiError(code, text)

    def _check_limits(self, method: str, params: dict[str, Any]) -> ApiError | None:
        """429 if the call does not fit a window; otherwise counts it."""
        limits = self.limits
        if limits is None or method not in limits.methods:
            return None
        now = time.monotonic()
        wait = 0.0
        if limits.global_calls is not None:
            wait = _window_wait(self._global_log, limits.global_calls, limits.global_window, now)
        chat_id = params.get("chat_id")
        chat_log: deque[float] | None = None
        if isinstance(chat_id, int) and chat_id != 0:
            calls, window = (
                (limits.private_calls, limits.private_window) if chat_id > 0
                else (limits.group_calls, limits.group_window)
            )
            if calls is not None:
                chat_log = self._chat_logs.setdefault(chat_id, deque())
                wait = max(wait, _window_wait(chat_log, calls, window, now))
        if wait > 0:
            return ApiError.too_many_requests(max(1, math.ceil(wait)))
        if limits.global_calls is not None:
            self._global_log.append(now)
        if chat_log is not None:
            chat_log.append(now)
        return None

    @staticmethod
    def _warn_unimplemented(method: str) -> None:
        try:
            import aiogram.methods as m

            real = {n.lower() for n in m.__all__}
        except Exception:  # pragma: no cover
            real = set()
        if method.lower() in real:
            log.warning("FakeTelegram: %s is a real Bot API method the fake does not implement", method)

    # ------------------------------------------------------------- updates

    def _notify(self) -> None:
        """Wake every getUpdates waiting on the current event."""
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = asyncio.Event()

    def _enqueue(self, kind: str, payload: dict[str, Any]) -> int | None:
        allowed = self._allowed_updates
        # Like Telegram, allowed_updates is applied when an update is created.
        if (allowed is None and kind in _NOT_DEFAULT_UPDATES) or (allowed is not None and kind not in allowed):
            return None
        update = {"update_id": self._next_update_id, kind: payload}
        self._next_update_id += 1
        self._pending.append(update)
        self.updates.append(update)
        self.enqueued_at[update["update_id"]] = time.monotonic()
        self._notify()
        return update["update_id"]

    async def _m_get_updates(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> list[dict[str, Any]]:
        if self.webhook_url:
            raise ApiError(409, CONFLICT_WEBHOOK)
        offset = _as_int(p.get("offset"), 0)
        limit = min(max(_as_int(p.get("limit"), 100), 1), 100)
        timeout = max(_as_int(p.get("timeout"), 0), 0)
        if isinstance(p.get("allowed_updates"), list):
            self._allowed_updates = set(p["allowed_updates"]) or None
        # Confirmation: everything below `offset` is forgotten for good.
        if offset > 0:
            self._pending = [u for u in self._pending if u["update_id"] >= offset]
        elif offset < 0:
            self._pending = self._pending[offset:]
        # A newer getUpdates terminates an older one (two bot instances).
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            wakeup = self._wakeup
            assert wakeup is not None
            if self._closing:
                return []
            if generation != self._poll_generation:
                raise ApiError(409, CONFLICT_OTHER_POLL)
            batch = self._pending[:limit]
            remaining = deadline - loop.time()
            if batch or remaining <= 0:
                now = time.monotonic()
                for u in batch:
                    self.delivered_at.setdefault(u["update_id"], now)
                return batch
            try:
                await asyncio.wait_for(wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def _m_set_webhook(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> bool:
        url = p.get("url") or ""
        if url and not str(url).startswith("https://"):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        self.webhook_url = url
        if p.get("drop_pending_updates"):
            self._pending.clear()
        return True

    async def _m_delete_webhook(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> bool:
        self.webhook_url = ""
        if p.get("drop_pending_updates"):
            self._pending.clear()
        return True

    async def _m_get_webhook_info(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }
        if self.webhook_url:
            info["max_connections"] = 40
        return info

    # ------------------------------------------------------------- bot info

    async def _m_get_me(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> dict[str, Any]:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _m_log_out(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> bool:
        self.logged_out = True
        return True

    async def _m_close(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> bool:
        self.closed = True
        return True

    # ------------------------------------------------------------- chats & messages

    def _chat_for_send(self, p: dict[str, Any]) -> _Chat:
        """Resolve chat_id the way Telegram does for a bot writing to a user."""
        chat_id = p.get("chat_id")
        if chat_id is None or chat_id == "":
            raise _bad("chat_id is empty")
        user = self.users.get(chat_id) if isinstance(chat_id, int) else None
        if user is None:
            raise ApiError(400, CHAT_NOT_FOUND)
        if user.blocked:
            raise ApiError(403, BLOCKED)
        if not user.started:
            raise ApiError(403, CANT_INITIATE)
        return self._chats[user.id]

    def _format(self, text: str, parse_mode: Any, entities: Any) -> tuple[str, list[dict[str, Any]]]:
        if isinstance(entities, list):  # explicit entities win over parse_mode
            return text, entities
        if not parse_mode:
            return text, []
        mode = str(parse_mode).lower()
        if mode == "html":
            try:
                return parse_html(text)
            except HtmlParseError as e:
                raise _bad(f"can't parse entities: {e}") from None
        if mode in ("markdown", "markdownv2"):
            return text, []  # not validated by the fake
        raise _bad("unsupported parse_mode")

    def _text(self, p: dict[str, Any]) -> tuple[str, str, list[dict[str, Any]]]:
        text = p.get("text")
        if not isinstance(text, str) or not text:
            raise ApiError(400, TEXT_EMPTY)
        plain, entities = self._format(text, p.get("parse_mode"), p.get("entities"))
        if not plain.strip():
            raise ApiError(400, TEXT_EMPTY)
        if len(plain) > MAX_TEXT:
            raise ApiError(400, TEXT_TOO_LONG)
        return text, plain, entities

    def _caption(self, p: dict[str, Any]) -> tuple[str | None, str | None, list[dict[str, Any]]]:
        caption = p.get("caption")
        if not isinstance(caption, str) or not caption:
            return None, None, []
        plain, entities = self._format(caption, p.get("parse_mode"), p.get("caption_entities"))
        if len(plain) > MAX_CAPTION:
            raise ApiError(400, CAPTION_TOO_LONG)
        return caption, plain, entities

    @staticmethod
    def _markup(p: dict[str, Any], *, inline_only: bool = False) -> dict[str, Any] | None:
        markup = p.get("reply_markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            rows = markup["inline_keyboard"]
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise _bad("can't parse reply keyboard markup JSON object")
            actions = (
                "url", "callback_data", "web_app", "login_url", "switch_inline_query",
                "switch_inline_query_current_chat", "switch_inline_query_chosen_chat",
                "copy_text", "callback_game", "pay",
            )
            for button in (b for r in rows for b in r):
                if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                    raise _bad('can\'t parse inline keyboard button: Can\'t find field "text"')
                if not any(a in button for a in actions):
                    raise _bad("can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard")
                if "callback_data" in button:
                    data = button["callback_data"]
                    if not isinstance(data, str) or not 1 <= len(data.encode()) <= 64:
                        raise _bad("BUTTON_DATA_INVALID")
                if "url" in button and not button["url"]:
                    raise _bad("BUTTON_URL_INVALID")
            # An empty inline keyboard is the same as no keyboard.
            return markup if any(rows) else None
        if inline_only:
            raise _bad("inline keyboard expected")
        if not any(k in markup for k in ("keyboard", "remove_keyboard", "force_reply")):
            raise _bad("can't parse reply keyboard markup JSON object")
        return markup

    def _reply_to(self, chat: _Chat, p: dict[str, Any]) -> int | None:
        reply = p.get("reply_parameters")
        if isinstance(reply, dict):
            mid, allow = reply.get("message_id"), bool(reply.get("allow_sending_without_reply"))
        else:
            mid, allow = p.get("reply_to_message_id"), bool(p.get("allow_sending_without_reply"))
        if mid is None:
            return None
        if isinstance(mid, int) and mid in chat.messages:
            return mid
        if allow:
            return None
        raise ApiError(400, REPLY_NOT_FOUND)

    def _new_message(self, chat: _Chat, from_bot: bool, **fields: Any) -> StoredMessage:
        msg = StoredMessage(
            message_id=chat.next_message_id, chat_id=chat.user.id, from_bot=from_bot,
            date=int(time.time()), **fields,
        )
        chat.next_message_id += 1
        chat.messages[msg.message_id] = msg
        return msg

    def message_json(self, msg: StoredMessage, *, with_reply: bool = True) -> dict[str, Any]:
        """The Telegram Message object for a stored message."""
        chat = self._chats[msg.chat_id]
        d: dict[str, Any] = {
            "message_id": msg.message_id,
            "from": self.bot_user if msg.from_bot else chat.user.to_json(),
            "chat": chat.user.chat_json(),
            "date": msg.date,
        }
        if msg.edit_date:
            d["edit_date"] = msg.edit_date
        if with_reply and msg.reply_to_message_id in chat.messages:
            d["reply_to_message"] = self.message_json(chat.messages[msg.reply_to_message_id], with_reply=False)
        if msg.plain_text is not None:
            d["text"] = msg.plain_text
            if msg.entities:
                d["entities"] = msg.entities
        f = msg.file
        if f is not None and f.kind == "photo":
            d["photo"] = [{
                "file_id": f.file_id, "file_unique_id": f.file_unique_id,
                "file_size": f.size, "width": f.width, "height": f.height,
            }]
        elif f is not None:
            doc: dict[str, Any] = {"file_id": f.file_id, "file_unique_id": f.file_unique_id, "file_size": f.size}
            if f.file_name:
                doc["file_name"] = f.file_name
            if f.mime_type:
                doc["mime_type"] = f.mime_type
            d["document"] = doc
        if msg.plain_caption is not None:
            d["caption"] = msg.plain_caption
            if msg.caption_entities:
                d["caption_entities"] = msg.caption_entities
        # Telegram echoes only inline keyboards back in Message.reply_markup.
        if msg.reply_markup and "inline_keyboard" in msg.reply_markup:
            d["reply_markup"] = msg.reply_markup
        return d

    async def _m_send_message(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> dict[str, Any]:
        chat = self._chat_for_send(p)
        text, plain, entities = self._text(p)
        markup = self._markup(p)
        reply_to = self._reply_to(chat, p)
        msg = self._new_message(
            chat, True, text=text, plain_text=plain, entities=entities,
            parse_mode=p.get("parse_mode"), reply_markup=markup, reply_to_message_id=reply_to,
        )
        return self.message_json(msg)

    def _input_file(self, p: dict[str, Any], files: dict[str, UploadedFile], param: str) -> StoredFile:
        """Resolve an InputFile parameter: upload, attach://name, file_id or URL."""
        value = p.get(param)
        upload: UploadedFile | None = None
        if value is None and param in files:
            upload = files[param]
        elif isinstance(value, str) and value.startswith("attach://"):
            upload = files.get(value[len("attach://"):])
            if upload is None:
                raise _bad(f"there is no {param} in the request")
        elif isinstance(value, str) and value:
            if value.startswith(("http://", "https://")):
                return self._store_file(param, None, value.rsplit("/", 1)[-1] or None, None, url=value)
            known = self.files.get(value)
            if known is None:
                raise ApiError(400, WRONG_FILE_ID)
            if known.kind != param:
                raise _bad(f"can't use file of type {known.kind.capitalize()} as {param.capitalize()}")
            return known
        else:
            raise _bad(f"there is no {param} in the request")
        if not upload.data:
            raise _bad("file must be non-empty")
        mime = mimetypes.guess_type(upload.filename)[0] or upload.content_type
        return self._store_file(param, upload.data, upload.filename, mime)

    def _store_file(
        self, kind: str, data: bytes | None, name: str | None, mime: str | None, url: str | None = None
    ) -> StoredFile:
        seq = next(self._file_seq)
        prefix = "AgACAgIAAxkDAAI" if kind == "photo" else "BQACAgIAAxkDAAI"
        ext = ".jpg"
        if kind == "document":
            ext = os.path.splitext(name or "")[1] or mimetypes.guess_extension(mime or "") or ".bin"
        width, height = _image_size(data or b"") if kind == "photo" else (0, 0)
        f = StoredFile(
            file_id=f"{prefix}{seq}{secrets.token_urlsafe(24)}",
            file_unique_id=f"AQAD{seq}{secrets.token_urlsafe(8)}",
            kind=kind, data=data,
            file_name=name if kind == "document" else None,
            mime_type=mime if kind == "document" else "image/jpeg",
            file_path=f"{kind}s/file_{seq}{ext}",
            width=width, height=height, url=url,
        )
        self.files[f.file_id] = f
        return f

    async def _send_media(self, p: dict[str, Any], files: dict[str, UploadedFile], kind: str) -> dict[str, Any]:
        chat = self._chat_for_send(p)
        stored = self._input_file(p, files, kind)
        caption, plain, entities = self._caption(p)
        markup = self._markup(p)
        reply_to = self._reply_to(chat, p)
        msg = self._new_message(
            chat, True, caption=caption, plain_caption=plain, caption_entities=entities,
            parse_mode=p.get("parse_mode"), reply_markup=markup, file=stored, reply_to_message_id=reply_to,
        )
        return self.message_json(msg)

    async def _m_send_photo(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> dict[str, Any]:
        return await self._send_media(p, files, "photo")

    async def _m_send_document(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> dict[str, Any]:
        return await self._send_media(p, files, "document")

    async def _m_send_chat_action(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> bool:
        chat = self._chat_for_send(p)
        action = p.get("action")
        if action not in CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        chat.actions.append(action)
        return True

    # ------------------------------------------------------------- edits & deletes

    def _bot_message_to_edit(self, p: dict[str, Any]) -> StoredMessage:
        if p.get("inline_message_id"):
            raise _bad("MESSAGE_ID_INVALID")  # inline messages are not imitated
        chat = self._chat_for_send(p)
        mid = p.get("message_id")
        if mid is None:
            raise _bad("message identifier is not specified")
        msg = chat.messages.get(mid) if isinstance(mid, int) else None
        if msg is None:
            raise ApiError(400, MESSAGE_TO_EDIT_NOT_FOUND)
        if not msg.from_bot:
            raise ApiError(400, MESSAGE_CANT_BE_EDITED)
        return msg

    def _mark_edited(self, msg: StoredMessage) -> dict[str, Any]:
        msg.edit_date = int(time.time())
        msg.edit_count += 1
        return self.message_json(msg)

    async def _m_edit_message_text(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> dict[str, Any]:
        msg = self._bot_message_to_edit(p)
        text, plain, entities = self._text(p)
        if msg.text is None:
            raise ApiError(400, NO_TEXT_TO_EDIT)
        # No reply_markup in an edit means "no keyboard": Telegram removes it.
        markup = self._markup(p, inline_only=True)
        if plain == msg.plain_text and _json_equal(entities, msg.entities) and _json_equal(markup, _inline(msg)):
            raise ApiError(400, NOT_MODIFIED)
        msg.text, msg.plain_text, msg.entities = text, plain, entities
        msg.parse_mode = p.get("parse_mode")
        _set_inline(msg, markup)
        return self._mark_edited(msg)

    async def _m_edit_message_caption(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> dict[str, Any]:
        msg = self._bot_message_to_edit(p)
        if msg.file is None:
            raise ApiError(400, NO_CAPTION_TO_EDIT)
        caption, plain, entities = self._caption(p)
        markup = self._markup(p, inline_only=True)
        if (
            plain == msg.plain_caption
            and _json_equal(entities, msg.caption_entities)
            and _json_equal(markup, _inline(msg))
        ):
            raise ApiError(400, NOT_MODIFIED)
        msg.caption, msg.plain_caption, msg.caption_entities = caption, plain, entities
        msg.parse_mode = p.get("parse_mode")
        _set_inline(msg, markup)
        return self._mark_edited(msg)

    async def _m_edit_message_reply_markup(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> dict[str, Any]:
        msg = self._bot_message_to_edit(p)
        markup = self._markup(p, inline_only=True)
        if _json_equal(markup, _inline(msg)):
            raise ApiError(400, NOT_MODIFIED)
        _set_inline(msg, markup)
        return self._mark_edited(msg)

    def _chat_for_delete(self, p: dict[str, Any]) -> _Chat:
        chat_id = p.get("chat_id")
        if chat_id is None or chat_id == "":
            raise _bad("chat_id is empty")
        chat = self._chats.get(chat_id) if isinstance(chat_id, int) else None
        if chat is None:
            raise ApiError(400, CHAT_NOT_FOUND)
        return chat

    async def _m_delete_message(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> bool:
        chat = self._chat_for_delete(p)
        mid = p.get("message_id")
        if not isinstance(mid, int) or mid not in chat.messages:
            raise ApiError(400, MESSAGE_TO_DELETE_NOT_FOUND)
        del chat.messages[mid]  # in a private chat the bot may delete both sides
        return True

    async def _m_delete_messages(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> bool:
        chat = self._chat_for_delete(p)
        ids = p.get("message_ids")
        if not isinstance(ids, list) or not ids:
            raise _bad("message identifiers are not specified")
        for mid in ids:  # missing ones are skipped silently, as documented
            chat.messages.pop(mid, None)
        return True

    # ------------------------------------------------------------- callback queries

    async def _m_answer_callback_query(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> bool:
        qid = p.get("callback_query_id")
        query = self._queries.get(str(qid)) if qid is not None else None
        too_old = (
            query is not None
            and self.callback_ttl is not None
            and time.monotonic() - query.created > self.callback_ttl
        )
        if query is None or query.answered or too_old:
            raise ApiError(400, QUERY_TOO_OLD)
        text = p.get("text")
        if isinstance(text, str) and len(text) > MAX_CALLBACK_ANSWER:
            raise _bad("MESSAGE_TOO_LONG")
        query.answered = True
        answer = CallbackAnswer(
            query_id=str(qid), user_id=query.user_id, message_id=query.message_id, data=query.data,
            text=text, show_alert=bool(p.get("show_alert")), url=p.get("url"),
            cache_time=p.get("cache_time"), asked_at=query.created,
            delivered_at=self.delivered_at.get(query.update_id) if query.update_id is not None else None,
            answered_at=time.monotonic(),
        )
        self.answered_callbacks.append(answer)
        self._answer_of[answer.query_id] = answer
        return True

    # ------------------------------------------------------------- commands & menu

    @staticmethod
    def _scope_key(scope: Any) -> tuple[Any, ...]:
        if scope is None:
            return ("default",)
        if hasattr(scope, "model_dump"):  # an aiogram BotCommandScope object
            scope = scope.model_dump(exclude_none=True)
        if not isinstance(scope, dict):
            raise _bad("can't parse BotCommandScope JSON object")
        kind = scope.get("type")
        if kind in ("default", "all_private_chats", "all_group_chats", "all_chat_administrators"):
            return (kind,)
        if kind in ("chat", "chat_administrators"):
            return (kind, _as_chat_id(scope.get("chat_id")))
        if kind == "chat_member":
            return (kind, _as_chat_id(scope.get("chat_id")), _as_int(_maybe_int(scope.get("user_id")), 0))
        raise _bad("wrong bot command scope type specified")

    def _checked_scope_key(self, p: dict[str, Any]) -> tuple[tuple[Any, ...], str]:
        key = self._scope_key(p.get("scope"))
        if len(key) > 1 and key[1] not in self.users:
            raise ApiError(400, CHAT_NOT_FOUND)
        return key, p.get("language_code") or ""

    async def _m_set_my_commands(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> bool:
        commands = p.get("commands", [])
        if not isinstance(commands, list):
            raise _bad("can't parse commands JSON object")
        if len(commands) > 100:
            raise _bad("too many commands specified")
        clean: list[dict[str, str]] = []
        for c in commands:
            if not isinstance(c, dict):
                raise _bad("can't parse BotCommand JSON object")
            for fld in ("command", "description"):
                if not isinstance(c.get(fld), str):
                    raise _bad(f'can\'t parse BotCommand: Can\'t find field "{fld}"')
            if not re.fullmatch(r"[a-z0-9_]{1,32}", c["command"]):
                raise _bad("BOT_COMMAND_INVALID")
            if not c["description"].strip():
                raise _bad("command description must be non-empty")
            if len(c["description"]) > 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
            clean.append({"command": c["command"], "description": c["description"]})
        key = self._checked_scope_key(p)
        if clean:
            self._commands[key] = clean
        else:  # an empty list is a deletion
            self._commands.pop(key, None)
        return True

    async def _m_get_my_commands(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> list[dict[str, str]]:
        # Exactly that (scope, language) — no fallback, as in Telegram.
        return list(self._commands.get(self._checked_scope_key(p), []))

    async def _m_delete_my_commands(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> bool:
        self._commands.pop(self._checked_scope_key(p), None)
        return True

    async def _m_set_chat_menu_button(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> bool:
        chat_id = p.get("chat_id")
        if chat_id is not None and chat_id not in self.users:
            raise ApiError(400, CHAT_NOT_FOUND)
        button = p.get("menu_button") or {"type": "default"}
        if not isinstance(button, dict) or button.get("type") not in ("commands", "web_app", "default"):
            raise _bad("can't parse menu button JSON object")
        if button["type"] == "web_app" and not (button.get("text") and isinstance(button.get("web_app"), dict)):
            raise _bad("can't parse menu button JSON object")
        if button["type"] == "default":
            self.menu_buttons.pop(chat_id, None)
        else:
            self.menu_buttons[chat_id] = button
        return True

    async def _m_get_chat_menu_button(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> dict[str, Any]:
        chat_id = p.get("chat_id")
        if chat_id is not None and chat_id not in self.users:
            raise ApiError(400, CHAT_NOT_FOUND)
        return self.menu_buttons.get(chat_id) or self.menu_buttons.get(None) or {"type": "commands"}

    def _set_bot_text(self, kind: str, p: dict[str, Any], limit: int) -> bool:
        value = p.get(kind) or ""
        if len(value) > limit:
            raise _bad(f"{kind} is too long")
        self._bot_texts[(kind, p.get("language_code") or "")] = value
        return True

    def _get_bot_text(self, kind: str, p: dict[str, Any]) -> dict[str, str]:
        lang = p.get("language_code") or ""
        default = self.bot_first_name if kind == "name" else ""
        return {kind: self._bot_texts.get((kind, lang), self._bot_texts.get((kind, ""), default))}

    async def _m_set_my_description(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> bool:
        return self._set_bot_text("description", p, 512)

    async def _m_get_my_description(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> dict[str, str]:
        return self._get_bot_text("description", p)

    async def _m_set_my_short_description(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> bool:
        return self._set_bot_text("short_description", p, 120)

    async def _m_get_my_short_description(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> dict[str, str]:
        return self._get_bot_text("short_description", p)

    async def _m_set_my_name(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> bool:
        return self._set_bot_text("name", p, 64)

    async def _m_get_my_name(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> dict[str, str]:
        return self._get_bot_text("name", p)

    async def _m_get_chat(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> dict[str, Any]:
        chat_id = p.get("chat_id")
        user = self.users.get(chat_id) if isinstance(chat_id, int) else None
        if user is None:
            raise ApiError(400, CHAT_NOT_FOUND)
        return {
            **user.chat_json(),
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": True, "limited_gifts": True, "unique_gifts": True,
                "premium_subscription": True, "gifts_from_channels": True,
            },
        }

    async def _m_get_file(self, p: dict[str, Any], files: dict[str, UploadedFile]) -> dict[str, Any]:
        f = self.files.get(str(p.get("file_id")))
        if f is None:
            raise _bad("invalid file_id")
        return {"file_id": f.file_id, "file_unique_id": f.file_unique_id, "file_size": f.size, "file_path": f.file_path}

    # ================================================================ control API
    # Called by tests, from the same event loop.

    def add_user(
        self,
        user_id: int,
        first_name: str,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "ru",
        *,
        started: bool = False,
    ) -> FakeUser:
        """A Telegram user the bot can know about. They have not started the bot
        yet, unless `started` (then the bot may write to them at once)."""
        user = self.users.get(user_id)
        if user is None:
            user = self.users[user_id] = FakeUser(user_id, first_name, last_name, username, language_code)
            self._chats[user_id] = _Chat(user)
        else:
            user.first_name, user.last_name = first_name, last_name
            user.username, user.language_code = username, language_code
        if started:
            user.started = True
        return user

    def mark_started(self, *user_ids: int) -> None:
        """These users have started the bot (long ago): the bot may write to them.
        No update is sent. Unknown ids are added as users named after their id."""
        for user_id in user_ids:
            user = self.users.get(user_id) or self.add_user(user_id, f"User {user_id}")
            user.started = True

    def _user(self, user_id: int) -> FakeUser:
        user = self.users.get(user_id)
        if user is None:
            raise FakeTelegramUsageError(f"unknown user {user_id}: call add_user() first")
        return user

    async def send_text(self, user_id: int, text: str) -> StoredMessage:
        """The user writes `text` to the bot. Enqueues a `message` update."""
        user = self._user(user_id)
        if user.blocked:
            raise FakeTelegramUsageError(f"user {user_id} has blocked the bot: call unblock() first")
        user.started = True
        chat = self._chats[user_id]
        msg = self._new_message(chat, False, text=text, plain_text=text, entities=_command_entities(text))
        self._enqueue("message", self.message_json(msg))
        await asyncio.sleep(0)
        return msg

    async def send_document(self, user_id: int, data: bytes, file_name: str, mime_type: str | None = None) -> StoredMessage:
        """The user sends the bot a file (as a document). Enqueues a `message`
        update; the bot can getFile and download it from /file/bot<token>/<path>."""
        user = self._user(user_id)
        if user.blocked:
            raise FakeTelegramUsageError(f"user {user_id} has blocked the bot: call unblock() first")
        user.started = True
        chat = self._chats[user_id]
        stored = self._store_file("document", data, file_name, mime_type or mimetypes.guess_type(file_name)[0])
        msg = self._new_message(chat, False, file=stored)
        self._enqueue("message", self.message_json(msg))
        await asyncio.sleep(0)
        return msg

    async def press_button(self, user_id: int, message_id: int, callback_data: str) -> str:
        """The user presses the inline button carrying `callback_data` on the
        message as it is *now*. Enqueues a `callback_query`; returns its id."""
        user = self._user(user_id)
        if user.blocked:
            raise FakeTelegramUsageError(f"user {user_id} has blocked the bot")
        msg = self._chats[user_id].messages.get(message_id)
        if msg is None or not msg.from_bot:
            raise FakeTelegramUsageError(f"no bot message {message_id} in chat {user_id}")
        if callback_data not in msg.callback_data:
            raise FakeTelegramUsageError(
                f"message {message_id} in chat {user_id} has no button with callback_data "
                f"{callback_data!r}; it has {msg.callback_data}"
            )
        qid = str(secrets.randbits(63))
        query = self._queries[qid] = _Query(user_id, message_id, callback_data, time.monotonic())
        query.update_id = self._enqueue("callback_query", {
            "id": qid,
            "from": user.to_json(),
            "message": self.message_json(msg),
            "chat_instance": self._chats[user_id].chat_instance,
            "data": callback_data,
        })
        await asyncio.sleep(0)
        return qid

    def _my_chat_member(self, user: FakeUser, old: str, new: str) -> None:
        member = {"status": "member", "user": self.bot_user}
        kicked = {"status": "kicked", "user": self.bot_user, "until_date": 0}
        states = {"member": member, "kicked": kicked}
        self._enqueue("my_chat_member", {
            "chat": user.chat_json(), "from": user.to_json(), "date": int(time.time()),
            "old_chat_member": states[old], "new_chat_member": states[new],
        })

    def block(self, user_id: int) -> None:
        """The user blocks the bot (Telegram then sends a my_chat_member update)."""
        user = self._user(user_id)
        if not user.blocked:
            user.blocked = True
            if user.started:
                self._my_chat_member(user, "member", "kicked")

    def unblock(self, user_id: int) -> None:
        user = self._user(user_id)
        if user.blocked:
            user.blocked = False
            if user.started:
                self._my_chat_member(user, "kicked", "member")

    def messages(self, chat_id: int) -> list[StoredMessage]:
        """All live messages in the chat, both sides, in order."""
        chat = self._chats.get(chat_id)
        return list(chat.messages.values()) if chat else []

    def bot_messages(self, chat_id: int) -> list[StoredMessage]:
        """The bot's messages as they are now (edits applied, deleted ones gone)."""
        return [m for m in self.messages(chat_id) if m.from_bot]

    def last_bot_message(self, chat_id: int) -> StoredMessage | None:
        msgs = self.bot_messages(chat_id)
        return msgs[-1] if msgs else None

    def chat_actions(self, chat_id: int) -> list[str]:
        chat = self._chats.get(chat_id)
        return list(chat.actions) if chat else []

    def reply_keyboard(self, chat_id: int) -> dict[str, Any] | None:
        """The reply keyboard the user currently sees (last one sent, unless removed)."""
        for m in reversed(self.bot_messages(chat_id)):
            if m.reply_markup and "keyboard" in m.reply_markup:
                return m.reply_markup
            if m.reply_markup and m.reply_markup.get("remove_keyboard"):
                return None
        return None

    def commands(self, scope: Any = None, language_code: str | None = "") -> list[dict[str, str]]:
        """What setMyCommands last set for exactly this scope (dict or aiogram
        BotCommandScope; None = default) and language ("" = all languages)."""
        return list(self._commands.get((self._scope_key(scope), language_code or ""), []))

    def visible_commands(self, user_id: int) -> list[dict[str, str]]:
        """The command menu a user sees in their private chat, resolved the way
        Telegram documents it (chat → all_private_chats → default, each with the
        user's language first)."""
        lang = self._user(user_id).language_code or ""
        for scope in (("chat", user_id), ("all_private_chats",), ("default",)):
            for code in (lang, ""):
                if (scope, code) in self._commands:
                    return list(self._commands[(scope, code)])
        return []

    def callback_answer(self, query_id: str) -> CallbackAnswer | None:
        return self._answer_of.get(query_id)

    def unanswered_queries(self, older_than: float = 0.0) -> list[tuple[str, int, str, float]]:
        """Presses not answered yet, pressed at least `older_than` seconds ago:
        (query id, user id, callback data, seconds since the press)."""
        now = time.monotonic()
        return [(qid, q.user_id, q.data, now - q.created) for qid, q in self._queries.items()
                if not q.answered and now - q.created >= older_than]

    def calls_to(self, method: str) -> list[ApiCall]:
        return [c for c in self.calls if c.method.lower() == method.lower()]

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates not yet confirmed by the bot (via getUpdates offset)."""
        return list(self._pending)

    def dump(self, last: int = 40) -> str:
        """Human-readable recent state, for assertion messages."""
        interesting = [c for c in self.calls if not (c.method == "getUpdates" and c.ok and not c.result)]
        lines = [f"--- last {min(last, len(interesting))} Bot API calls (empty getUpdates omitted) ---"]
        lines += [f"  {c}" for c in interesting[-last:]] or ["  (none)"]
        lines.append(f"--- pending updates: {len(self._pending)} ---")
        for chat_id, chat in self._chats.items():
            if chat.messages:
                lines.append(f"--- chat {chat_id} ({chat.user.first_name}) ---")
                lines += [f"  {m}" for m in list(chat.messages.values())[-10:]]
        if self.internal_errors:
            lines.append(f"--- fake crashed {len(self.internal_errors)} time(s): {self.internal_errors[-1]!r} ---")
        return "\n".join(lines)

    async def wait_for(
        self, predicate: Callable[..., Any], timeout: float = 10.0, *, what: str | None = None
    ) -> Any:
        """Wait until predicate() (or predicate(tg)) is truthy; return its value.

        Exceptions inside the predicate count as "not yet" (so
        ``lambda: tg.last_bot_message(1).text == "x"`` is fine before any message).
        """
        takes_tg = _takes_argument(predicate)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last_exc: BaseException | None = None
        while True:
            if self.internal_errors:
                raise AssertionError(f"the fake Telegram server crashed\n{self.dump()}") from self.internal_errors[-1]
            try:
                value = predicate(self) if takes_tg else predicate()
                if value:
                    return value
            except Exception as e:
                last_exc = e
            if loop.time() >= deadline:
                desc = what or getattr(predicate, "__name__", repr(predicate))
                extra = f" (last predicate error: {last_exc!r})" if last_exc else ""
                raise AssertionError(f"timed out after {timeout}s waiting for {desc}{extra}\n{self.dump()}")
            await asyncio.sleep(0.02)

    async def wait_for_message(
        self,
        chat_id: int,
        contains: str | None = None,
        *,
        after: int | StoredMessage | None = None,
        timeout: float = 10.0,
    ) -> StoredMessage:
        """Wait for a bot message in the chat (text or caption containing
        `contains`, HTML or plain; newer than message id `after` if given).
        Returns the most recent match."""
        after_id = after.message_id if isinstance(after, StoredMessage) else (after or 0)

        def found() -> StoredMessage | None:
            hits = [
                m for m in self.bot_messages(chat_id)
                if m.message_id > after_id and (contains is None or m.matches(contains))
            ]
            return hits[-1] if hits else None

        what = f"a bot message in chat {chat_id}" + (f" containing {contains!r}" if contains else "")
        if after_id:
            what += f" after #{after_id}"
        return await self.wait_for(found, timeout, what=what)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _inline(msg: StoredMessage) -> dict[str, Any] | None:
    """The message's inline keyboard (the only markup edits can see/change)."""
    return msg.reply_markup if msg.reply_markup and "inline_keyboard" in msg.reply_markup else None


def _set_inline(msg: StoredMessage, markup: dict[str, Any] | None) -> None:
    # A reply keyboard sent with the message belongs to the chat, not to the
    # message: edits neither see nor remove it.
    if markup is not None or _inline(msg) is not None:
        msg.reply_markup = markup


def _maybe_int(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    return value


def _as_chat_id(value: Any) -> Any:
    value = _maybe_int(value)
    if value is None or value == "":
        raise _bad("chat_id is empty")
    return value


def _takes_argument(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty for p in params
    )


def _image_size(data: bytes) -> tuple[int, int]:
    """Width/height of PNG, GIF or JPEG bytes. The fake is lenient: anything
    else is accepted as a photo too (real Telegram would reject it with
    IMAGE_PROCESS_FAILED) and reported as 512x512."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                break
            marker = data[i + 1]
            seg_len = int.from_bytes(data[i + 2:i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
            i += 2 + seg_len
    return 512, 512
