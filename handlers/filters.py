"""Filters that run in the event loop.

aiogram runs a plain (synchronous) callable filter in a worker thread
(`asyncio.to_thread`): a magic `F` expression, or a bare `State` given as a
filter, costs a thread hop every time a handler is checked on the way to the
one that matches — several per update. aiogram's own `Command`,
`StateFilter` and `CallbackData.filter()` are coroutines; so are these.
Register dialog steps with `StateFilter(Form.step)`, never the bare state
(tests/test_groups_menus.py checks every registered filter).
"""

from __future__ import annotations

from aiogram.filters import Filter
from aiogram.types import Message


class ChatType(Filter):
    def __init__(self, *types: str) -> None:
        self.types = frozenset(types)

    async def __call__(self, message: Message) -> bool:
        return message.chat.type in self.types


class TextInput(Filter):
    """A dialog step's answer: a text that is not a command."""

    async def __call__(self, message: Message) -> bool:
        return bool(message.text) and not message.text.startswith("/")  # type: ignore[union-attr]


class NotACommand(Filter):
    """Anything but a command (a text, a photo, a document...): a dialog step's content."""

    async def __call__(self, message: Message) -> bool:
        return not (message.text or "").startswith("/")


class HasDocument(Filter):
    """A file sent as a document (a class list, say)."""

    async def __call__(self, message: Message) -> bool:
        return message.document is not None


class Migrated(Filter):
    """The service message of a group that became a supergroup."""

    async def __call__(self, message: Message) -> bool:
        return message.migrate_to_chat_id is not None


PRIVATE = ChatType("private")
GROUP_CHATS = ChatType("group", "supergroup")
TEXT_INPUT = TextInput()
NOT_A_COMMAND = NotACommand()
DOCUMENT = HasDocument()


class InAlbum(Filter):
    """An item of a media group (an album: each item arrives as its own message)."""

    async def __call__(self, message: Message) -> bool:
        return message.media_group_id is not None


IN_ALBUM = InAlbum()
