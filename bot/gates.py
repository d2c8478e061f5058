"""The gates: every command and every button passes the rights table first.

A command or a press the person has no right to is refused here, in their
language, before any handler (or dialog step) sees it — the same table that
draws their menu decides (`bot/rights.py`). Handlers then check only the
object the button or command names (this group, this post), with `rights.can`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, Message, TelegramObject

from bot import dialogs, rights
from bot.actor import Actor

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


def command_name(message: Message, bot_username: str) -> str | None:
    """`/post@parta_bot args` → "post"; None for a text that is not our command."""
    text = message.text or message.caption or ""
    if not text.startswith("/"):
        return None
    head = text[1:].split(maxsplit=1)[0] if len(text) > 1 else ""
    name, _, mention = head.partition("@")
    if mention and mention.lower() != bot_username.lower():
        return None
    return name.lower() or None


class CommandGate(BaseMiddleware):
    """Private chats: the commands of `rights.COMMANDS`; group chats: `rights.CHAT_COMMANDS`."""

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        actor: Actor | None = data.get("actor")
        if not isinstance(event, Message) or actor is None:
            return await handler(event, data)
        name = command_name(event, data.get("bot_username", ""))
        if name is None:
            return await handler(event, data)
        table = rights.BY_NAME if event.chat.type == "private" else rights.CHAT_BY_NAME
        command = table.get(name)
        if command is None or rights.can(actor, command.cap):
            return await handler(event, data)
        if event.chat.type == "private":
            await event.answer(rights.refusal(actor, command.cap))
        else:
            await event.reply(rights.refusal(actor, command.cap))
        return None


class ButtonGate(BaseMiddleware):
    """Every inline button, by its CallbackData prefix (`rights.BUTTONS`)."""

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        actor: Actor | None = data.get("actor")
        if not isinstance(event, CallbackQuery) or actor is None or not event.data:
            return await handler(event, data)
        cap = rights.BUTTONS.get(event.data.split(":", 1)[0])
        if cap is None or rights.can(actor, cap):
            return await handler(event, data)
        await event.answer(rights.refusal(actor, cap), show_alert=True)
        return None


class DialogGate(BaseMiddleware):
    """A wizard's button carries its dialog's token (bot/dialogs.py): stripped
    here, before any filter reads the data; a press from a dialog that is no
    longer the person's current one is answered and changes nothing."""

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        if not isinstance(event, CallbackQuery) or not event.data:
            return await handler(event, data)
        own, token = dialogs.split(event.data)
        if token is None:
            return await handler(event, data)
        if token != await dialogs.current(data.get("state")):
            await event.answer(dialogs.finished_text(), show_alert=True)
            return None
        return await handler(event.model_copy(update={"data": own}), data)
