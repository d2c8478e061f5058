"""Fast tests: the real Dispatcher, real Updates, a mocked Bot API session.

`MockedSession` follows aiogram's own tests/mocked_bot.py: it records every
request and answers it — by default with a plausible result (a Message with
the next message_id for a send, True for the rest), or with a response a test
queued for the next call of a method (an error, say).
"""

from __future__ import annotations

import itertools
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.base import BaseSession
from aiogram.enums import ParseMode
from aiogram.methods import (
    AnswerCallbackQuery,
    EditMessageReplyMarkup,
    EditMessageText,
    SendMessage,
    SendPhoto,
    TelegramMethod,
)
from aiogram.methods.base import Response
from aiogram.types import (
    CallbackQuery,
    Chat,
    ChatMemberUpdated,
    InlineKeyboardMarkup,
    Message,
    MessageEntity,
    Update,
    User,
)

BOT_USER = User(id=42, is_bot=True, first_name="Parta", username="parta_test_bot")
TOKEN = "42:TEST-TOKEN-for-the-mocked-session"


class MockedSession(BaseSession):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[TelegramMethod[Any]] = []
        self.queued: dict[str, deque[Response[Any]]] = defaultdict(deque)
        self.queued_for: dict[tuple[str, Any], deque[Response[Any]]] = defaultdict(deque)
        self._ids: dict[int, itertools.count[int]] = defaultdict(lambda: itertools.count(1000))
        self.message_ids: dict[int, int] = {}  # id(request) → message_id it produced
        self._links = itertools.count(1)
        self.files: dict[str, bytes] = {}  # file_id → what a person uploaded
        self.downloads: list[str] = []

    def fail_next(self, method: str, error_code: int, description: str, *, chat_id: int | None = None,
                  **parameters: Any) -> None:
        """The next call of `method` (into `chat_id`, if given) gets this Telegram error."""
        response = Response[Any](ok=False, error_code=error_code, description=description,
                                 parameters=parameters or None)
        if chat_id is not None:
            self.queued_for[(method, chat_id)].append(response)
        else:
            self.queued[method].append(response)

    async def make_request(self, bot: Bot, method: TelegramMethod[Any], timeout: int | None = None) -> Any:
        self.requests.append(method)
        queue = self.queued.get(method.__api_method__)
        chat_queue = self.queued_for.get((method.__api_method__, getattr(method, "chat_id", None)))
        if chat_queue:
            response = chat_queue.popleft()
        elif queue:
            response = queue.popleft()
        else:
            response = Response[Any](ok=True, result=self._result(method))
        checked = self.check_response(
            bot=bot, method=method, status_code=response.error_code or 200, content=response.model_dump_json()
        )
        if isinstance(checked.result, Message):
            self.message_ids[id(method)] = checked.result.message_id
        return checked.result

    def _result(self, method: TelegramMethod[Any]) -> Any:
        if isinstance(method, (SendMessage, SendPhoto)):
            chat_id = int(method.chat_id)
            return {
                "message_id": next(self._ids[chat_id]),
                "date": int(datetime.now(timezone.utc).timestamp()),
                "chat": {"id": chat_id, "type": "private"},
                "from": BOT_USER.model_dump(),
                "text": getattr(method, "text", None),
                "caption": getattr(method, "caption", None),
                "reply_markup": method.reply_markup.model_dump() if method.reply_markup else None,
            }
        if isinstance(method, (EditMessageText, EditMessageReplyMarkup)):
            return {
                "message_id": method.message_id,
                "date": int(datetime.now(timezone.utc).timestamp()),
                "chat": {"id": int(method.chat_id or 0), "type": "private"},
                "from": BOT_USER.model_dump(),
                "text": getattr(method, "text", None),
            }
        if method.__api_method__ == "sendMediaGroup":
            chat_id = int(method.chat_id)  # type: ignore[attr-defined]
            return [
                {"message_id": next(self._ids[chat_id]), "date": int(datetime.now(timezone.utc).timestamp()),
                 "chat": {"id": chat_id, "type": "private"}, "from": BOT_USER.model_dump(),
                 "media_group_id": "album", "photo": [{"file_id": str(item.media), "file_unique_id": "u",
                                                        "width": 1, "height": 1}]}
                for item in method.media  # type: ignore[attr-defined]
            ]
        make = self.defaults.get(method.__api_method__)
        if make is not None:
            return make(self, method)
        return True

    # -- group chats and files: results by method name (added for the oversight tests) --

    def answer_next(self, method: str, result: Any) -> None:
        """The next call of `method` gets this (successful) result instead of the default one."""
        self.queued[method].append(Response[Any](ok=True, result=result))

    def chat_member_next(self, status: str, **fields: Any) -> None:
        """The next getChatMember answers with this status for the bot ("member", "left",
        "administrator" with fields such as can_invite_users=False)."""
        if status == "administrator":
            self.answer_next("getChatMember", bot_admin(**fields))
        else:
            self.answer_next("getChatMember", {"status": status, "user": BOT_USER.model_dump(), **fields})

    def _invite_link(self, method: Any) -> dict[str, Any]:
        link = getattr(method, "invite_link", None) or f"https://t.me/+join{next(self._links)}"
        return {
            "invite_link": link, "creator": BOT_USER.model_dump(), "name": getattr(method, "name", None),
            "creates_join_request": bool(getattr(method, "creates_join_request", False)),
            "is_primary": False, "is_revoked": method.__api_method__ == "revokeChatInviteLink",
        }

    def _document(self, method: Any) -> dict[str, Any]:
        chat_id = int(method.chat_id)
        document = method.document
        name = getattr(document, "filename", None)
        return {
            "message_id": next(self._ids[chat_id]),
            "date": int(datetime.now(timezone.utc).timestamp()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
            "from": BOT_USER.model_dump(),
            "document": {"file_id": f"doc{chat_id}", "file_unique_id": f"doc{chat_id}", "file_name": name},
            "caption": getattr(method, "caption", None),
        }

    def _file(self, method: Any) -> dict[str, Any]:
        data = self.files.get(method.file_id)
        if data is None:
            raise AssertionError(f"getFile for an unknown file_id {method.file_id!r}")
        return {"file_id": method.file_id, "file_unique_id": method.file_id, "file_size": len(data),
                "file_path": f"documents/{method.file_id}"}

    defaults: dict[str, Any] = {
        "getFile": _file,
        "getChatMember": lambda self, method: bot_admin(),
        "createChatInviteLink": _invite_link,
        "revokeChatInviteLink": _invite_link,
        "sendDocument": _document,
        # approveChatJoinRequest, declineChatJoinRequest, banChatMember, unbanChatMember: True
    }

    async def close(self) -> None:
        pass

    async def stream_content(self, url: str, *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
        """A file download: the bytes a test put in `files` (Harness.send_document)."""
        self.downloads.append(url)
        yield self.files[url.rsplit("/", 1)[-1]]


def bot_admin(**fields: Any) -> dict[str, Any]:
    """getChatMember's answer for the bot: an administrator who may invite users."""
    rights = dict(
        can_be_edited=False, is_anonymous=False, can_manage_chat=True, can_delete_messages=True,
        can_manage_video_chats=True, can_restrict_members=True, can_promote_members=False, can_change_info=True,
        can_invite_users=True, can_post_stories=False, can_edit_stories=False, can_delete_stories=False,
        can_send_welcome_messages=False,
    )
    rights.update(fields)
    return {"status": "administrator", "user": BOT_USER.model_dump(), **rights}


def make_bot() -> Bot:
    return Bot(TOKEN, session=MockedSession(), default=DefaultBotProperties(parse_mode=ParseMode.HTML))


@dataclass
class Person:
    """A Telegram user in the tests."""

    id: int
    first_name: str
    language_code: str = "ru"

    @property
    def user(self) -> User:
        return User(id=self.id, is_bot=False, first_name=self.first_name, language_code=self.language_code)

    @property
    def chat(self) -> Chat:
        return Chat(id=self.id, type="private", first_name=self.first_name)


@dataclass
class Harness:
    dp: Dispatcher
    bot: Bot
    outbox: Any
    session_maker: Any
    scheduler: Any = None
    _update_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _message_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _query_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def session(self) -> MockedSession:
        return self.bot.session  # type: ignore[return-value]

    @property
    def requests(self) -> list[TelegramMethod[Any]]:
        return self.session.requests

    def clear(self) -> None:
        self.session.requests.clear()

    async def send(
        self, who: Person, text: str, entities: list[MessageEntity] | None = None
    ) -> list[TelegramMethod[Any]]:
        """The person writes `text` (with formatting `entities`) in their private chat;
        returns the calls the update made."""
        if text.startswith("/"):
            length = len(text.split()[0])
            entities = [MessageEntity(type="bot_command", offset=0, length=length)]
        message = Message(
            message_id=next(self._message_ids),
            date=datetime.now(timezone.utc),
            chat=who.chat,
            from_user=who.user,
            text=text,
            entities=entities,
        )
        return await self._feed(Update(update_id=next(self._update_ids), message=message))

    async def send_photo(self, who: Person, caption: str | None = None) -> list[TelegramMethod[Any]]:
        from aiogram.types import PhotoSize

        message = Message(
            message_id=next(self._message_ids),
            date=datetime.now(timezone.utc),
            chat=who.chat,
            from_user=who.user,
            photo=[PhotoSize(file_id="p", file_unique_id="p", width=10, height=10)],
            caption=caption,
        )
        return await self._feed(Update(update_id=next(self._update_ids), message=message))

    async def send_document(
        self, who: Person, data: bytes, file_name: str, file_size: int | None = None
    ) -> list[TelegramMethod[Any]]:
        """The person sends a file (as a document); the bot may download it."""
        from aiogram.types import Document

        file_id = f"file{next(self._message_ids)}"
        self.session.files[file_id] = data
        message = Message(
            message_id=next(self._message_ids), date=datetime.now(timezone.utc), chat=who.chat, from_user=who.user,
            document=Document(file_id=file_id, file_unique_id=file_id, file_name=file_name,
                              file_size=len(data) if file_size is None else file_size),
        )
        return await self._feed(Update(update_id=next(self._update_ids), message=message))
    async def send_album(
        self, who: Person, items: list[tuple[str, str]], caption: str | None = None, group: str = "album-1"
    ) -> list[TelegramMethod[Any]]:
        """The person sends a media group: one update per item (kind, file id), the
        caption on the first, as Telegram delivers it; returns the calls of all of them."""
        from aiogram.types import Document, PhotoSize, Video

        calls: list[TelegramMethod[Any]] = []
        for n, (kind, file_id) in enumerate(items):
            media: dict[str, Any] = {}
            if kind == "photo":
                media["photo"] = [PhotoSize(file_id=file_id, file_unique_id=file_id, width=10, height=10)]
            elif kind == "video":
                media["video"] = Video(file_id=file_id, file_unique_id=file_id, width=10, height=10, duration=1)
            else:
                media["document"] = Document(file_id=file_id, file_unique_id=file_id)
            message = Message(
                message_id=next(self._message_ids), date=datetime.now(timezone.utc), chat=who.chat,
                from_user=who.user, media_group_id=group, caption=caption if n == 0 else None, **media,
            )
            calls += await self._feed(Update(update_id=next(self._update_ids), message=message))
        return calls

    async def press(self, who: Person, data: str, message_id: int = 1, text: str = "…") -> list[TelegramMethod[Any]]:
        """The person presses an inline button carrying `data` (real or forged)."""
        query = CallbackQuery(
            id=str(next(self._query_ids)),
            from_user=who.user,
            chat_instance="ci",
            data=data,
            message=Message(
                message_id=message_id, date=datetime.now(timezone.utc), chat=who.chat, from_user=BOT_USER, text=text
            ),
        )
        return await self._feed(Update(update_id=next(self._update_ids), callback_query=query))

    async def press_on(self, who: Person, sent: SendMessage | EditMessageText, contains: str) -> list[TelegramMethod[Any]]:
        """Presses the button whose data contains `contains` on a message the bot really sent."""
        data = button_data(sent.reply_markup, contains)
        message_id = self.session.message_ids.get(id(sent)) or getattr(sent, "message_id", None) or 1
        return await self.press(who, data, message_id=message_id)

    # -- group chats (added for the gated-chat tests) ------------------------------------------

    async def send_in_group(self, who: Person, chat: Chat, text: str) -> list[TelegramMethod[Any]]:
        """The person writes `text` in a group chat (a /command gets its entity)."""
        entities = None
        if text.startswith("/"):
            entities = [MessageEntity(type="bot_command", offset=0, length=len(text.split()[0]))]
        message = Message(
            message_id=next(self._message_ids), date=datetime.now(timezone.utc), chat=chat,
            from_user=who.user, text=text, entities=entities,
        )
        return await self._feed(Update(update_id=next(self._update_ids), message=message))

    async def press_in_group(self, who: Person, chat: Chat, data: str, message_id: int = 1,
                             text: str = "…") -> list[TelegramMethod[Any]]:
        """The person presses a button carrying `data` on the bot's message in a group chat."""
        query = CallbackQuery(
            id=str(next(self._query_ids)), from_user=who.user, chat_instance=f"ci{chat.id}", data=data,
            message=Message(message_id=message_id, date=datetime.now(timezone.utc), chat=chat,
                            from_user=BOT_USER, text=text),
        )
        return await self._feed(Update(update_id=next(self._update_ids), callback_query=query))

    async def join_request(self, who: Person, chat: Chat, invite_link: str | None = None) -> list[TelegramMethod[Any]]:
        """The person asks to join the group chat through its join-request link."""
        from aiogram.types import ChatInviteLink, ChatJoinRequest

        link = None
        if invite_link is not None:
            link = ChatInviteLink(invite_link=invite_link, creator=BOT_USER, creates_join_request=True,
                                  is_primary=False, is_revoked=False)
        request = ChatJoinRequest(chat=chat, from_user=who.user, user_chat_id=who.id,
                                  date=datetime.now(timezone.utc), invite_link=link)
        return await self._feed(Update(update_id=next(self._update_ids), chat_join_request=request))

    async def migrate(self, who: Person, chat: Chat, new_chat_id: int) -> list[TelegramMethod[Any]]:
        """The group becomes a supergroup: the service message in the old chat."""
        message = Message(
            message_id=next(self._message_ids), date=datetime.now(timezone.utc), chat=chat,
            from_user=who.user, migrate_to_chat_id=new_chat_id,
        )
        return await self._feed(Update(update_id=next(self._update_ids), message=message))

    async def bot_status_changed(self, by: Person, chat: Chat, status: str = "left") -> list[TelegramMethod[Any]]:
        """my_chat_member: `by` changed the bot's status in the chat (removed it: "left" or "kicked")."""
        from aiogram.types import ChatMemberAdministrator, ChatMemberBanned, ChatMemberLeft, ChatMemberMember

        old = ChatMemberAdministrator(**bot_admin())
        new: Any
        if status == "left":
            new = ChatMemberLeft(user=BOT_USER)
        elif status == "kicked":
            new = ChatMemberBanned(user=BOT_USER, until_date=datetime.fromtimestamp(0, timezone.utc))
        elif status == "member":
            new = ChatMemberMember(user=BOT_USER)
        else:
            new = ChatMemberAdministrator(**bot_admin())
        event = ChatMemberUpdated(chat=chat, from_user=by.user, date=datetime.now(timezone.utc),
                                  old_chat_member=old, new_chat_member=new)
        return await self._feed(Update(update_id=next(self._update_ids), my_chat_member=event))

    async def _feed(self, update: Update) -> list[TelegramMethod[Any]]:
        before = len(self.requests)
        await self.dp.feed_update(self.bot, update)
        return self.requests[before:]

    async def flush(self) -> list[TelegramMethod[Any]]:
        """Runs the outbox until nothing is due; returns the calls it made."""
        before = len(self.requests)
        await self.outbox.flush()
        return self.requests[before:]


def group_chat(chat_id: int = -1001, title: str = "5А родители", kind: str = "group") -> Chat:
    """A Telegram group chat (negative id) for the gated-chat tests."""
    assert chat_id < 0
    return Chat(id=chat_id, type=kind, title=title)


def button_data(markup: InlineKeyboardMarkup | None, contains: str) -> str:
    assert markup is not None, "the message has no buttons"
    for row in markup.inline_keyboard:
        for button in row:
            if button.callback_data and contains in button.callback_data:
                return button.callback_data
    raise AssertionError(f"no button with {contains!r} in {[[b.callback_data for b in r] for r in markup.inline_keyboard]}")


def texts(calls: list[TelegramMethod[Any]]) -> list[str]:
    """What the user saw: sent texts, captions, edits and alerts, in order."""
    out = []
    for call in calls:
        for attr in ("text", "caption"):
            value = getattr(call, attr, None)
            if isinstance(value, str):
                out.append(value)
    return out


def only(calls: list[TelegramMethod[Any]], kind: type) -> list[Any]:
    return [c for c in calls if isinstance(c, kind)]


def answers(calls: list[TelegramMethod[Any]]) -> list[AnswerCallbackQuery]:
    return only(calls, AnswerCallbackQuery)
