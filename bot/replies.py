"""One way out: nothing is said while an update's transaction is open.

Handlers keep aiogram's natural style — `message.answer(...)`,
`query.answer(...)`, `message.edit_text(...)` — but those calls do not reach
Telegram from inside the transaction. `Collect`, a request middleware on the
bot that handles updates, takes every call made while the update's unit of
work is open and keeps it, in order, in the update's `AfterCommit`. When the
transaction has committed, the unit of work hands them to the sender
(`Outbox.say`: the fastest lane, under the same global limit and per-chat
pacing as every other call). After a rollback they are dropped: only the
apology of the error handler (which runs outside the unit of work) leaves.

A call whose *result* a handler needs (getChatMember, createChatInviteLink,
getFile) cannot be collected: it is refused inside a transaction, loudly. A
handler that needs one registers a continuation with `after_commit_do(...)`,
which runs once the update has committed, outside any transaction, and may
open a unit of work of its own (`bot.replies.unit_of_work`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware
from aiogram.methods import TelegramMethod

from bot.fsm import AfterCommit, after_commit, update_session
from storage.repo import Repo

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from bot.outbox import Outbox

log = logging.getLogger("parta.replies")

# What an update says: collected, sent after the commit. Everything else returns
# data the handler would wait for, and must not be called inside a transaction.
SAYING = frozenset({
    "sendMessage", "sendPhoto", "sendDocument", "sendVideo", "sendMediaGroup",
    "editMessageText", "editMessageCaption", "editMessageReplyMarkup", "editMessageMedia",
    "deleteMessage", "answerCallbackQuery", "setMyCommands", "deleteMyCommands",
    "approveChatJoinRequest", "declineChatJoinRequest", "banChatMember", "unbanChatMember",
    "revokeChatInviteLink",
})


class TelegramInTransaction(RuntimeError):
    """A handler asked Telegram for data while its transaction was open."""


class Collect(BaseRequestMiddleware):
    """Inside an update's open unit of work: keep the call for after the commit.
    Outside one (the error handler's apology, a continuation): send it now,
    through the sender's fastest lane when there is a sender."""

    MARK = "_parta_collect"

    def __init__(self, outbox: Outbox | None = None) -> None:
        self.outbox = outbox

    async def __call__(self, make_request, bot: Bot, method: TelegramMethod[Any]):  # type: ignore[no-untyped-def]
        commit = after_commit.get()
        if commit is not None and commit.open:
            if method.__api_method__ not in SAYING:
                raise TelegramInTransaction(
                    f"{method.__api_method__} called inside an update's transaction; use after_commit_do()"
                )
            commit.replies.append(method)
            return None
        if self.outbox is not None and method.__api_method__ in SAYING:
            return await self.outbox.call_now(make_request, bot, method)
        return await make_request(bot, method)  # reads (getUpdates, getChatMember) keep no limit

    @classmethod
    def install(cls, bot: Bot, outbox: Outbox | None = None) -> None:
        """Once per bot session (tests build bots of their own)."""
        session = bot.session
        if getattr(session, cls.MARK, None) is None:
            collect = cls(outbox)
            session.middleware(collect)
            setattr(session, cls.MARK, collect)

    @classmethod
    def sender_of(cls, bot: Bot) -> Outbox | None:
        """The sender that this bot's calls go through, if any."""
        collect = getattr(bot.session, cls.MARK, None)
        return collect.outbox if collect is not None else None


def after_commit_do(step: Callable[[], Awaitable[None]]) -> None:
    """Runs `step` once the current update has committed (never after a rollback),
    outside its transaction: the place for calls whose result is needed."""
    commit = after_commit.get()
    if commit is None:
        raise RuntimeError("after_commit_do() outside an update")
    # The step keeps the update's context (its language, above all) but not its
    # transaction: it runs as a task in a copy where nothing is collected.
    context = contextvars.copy_context()

    async def run() -> None:
        after_commit.set(None)
        update_session.set(None)
        await step()

    commit.continuations.append(lambda: asyncio.create_task(run(), context=context))


def card_follows(post_id: int) -> None:
    """The author's card of this post is to show the new figures once the
    current update has committed. The sender refreshes each card from what is
    committed, at most once a second while it is busy (Outbox.cards_changed):
    a burst of a thousand acknowledgements costs a few edits of the card, not a
    thousand renders and edits inside the presses' transactions, each waiting
    for the one before on the card's pending edit. A crash may lose a refresh
    (never a figure): the next one, or the card's 🔄, shows it."""
    commit = after_commit.get()
    if commit is None:
        raise RuntimeError("card_follows() outside an update")
    commit.cards.add(post_id)


@asynccontextmanager
async def unit_of_work(session_maker: async_sessionmaker, bot: Bot) -> AsyncIterator[Repo]:
    """A continuation's own transaction, with the same rule: what it says is
    collected and leaves after its commit (`Collect` sends it then)."""
    commit = AfterCommit()
    token = after_commit.set(commit)
    try:
        async with session_maker() as session:
            async with session.begin():
                s_token = update_session.set(session)
                try:
                    repo = Repo(session)
                    yield repo
                finally:
                    update_session.reset(s_token)
        commit.open = False
    finally:
        after_commit.reset(token)
    await commit.run()
    for method in commit.replies:
        await bot(method)  # outside the transaction now: Collect sends it
    sender = Collect.sender_of(bot)
    if repo.enqueued and sender is not None:
        sender.wake()  # what it wrote for others goes now, not at the sender's next look
