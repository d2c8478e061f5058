"""The path of an update: unit of work → the acting person → their locale."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.fsm.middleware import FSMContextMiddleware
from aiogram.types import TelegramObject, Update, User
from aiogram.utils.i18n import I18n, I18nMiddleware
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import async_sessionmaker

from bot.actor import Actor
from bot.fsm import AfterCommit, after_commit, update_session
from bot.i18n import telegram_locale
from bot.outbox import Outbox, send_reply
from bot.replies import Collect
from bot.scheduler import Scheduler
from storage.models import person_key, utcnow
from storage.repo import Repo

log = logging.getLogger("parta.updates")
Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class Flood(BaseMiddleware):
    """A person flooding the bot with messages is slowed, alone: past `burst`
    messages in `seconds`, what they send is dropped until they pause, and they
    hear one polite notice per flood — not an answer per message. Nobody else
    waits for them: it is decided before their update takes the isolation lock
    or a transaction. Button presses are not counted (the bot's own answers pace
    them), nor the items of one album after its first."""

    def __init__(self, burst: int = 5, seconds: int = 5) -> None:
        from limits import RateLimitItemPerSecond
        from limits.aio.storage import MemoryStorage
        from limits.aio.strategies import MovingWindowRateLimiter

        self.item = RateLimitItemPerSecond(burst, seconds)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self.flooding: dict[int, float] = {}  # person → when their last dropped message was sent
        self.albums: dict[int, str] = {}  # person → the album whose first item was counted

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        message = event.message if isinstance(event, Update) else None
        user: User | None = data.get("event_from_user")
        if message is None or user is None or user.is_bot or message.chat.type != "private":
            return await handler(event, data)
        if message.media_group_id is not None:
            if self.albums.get(user.id) == message.media_group_id:
                return await handler(event, data)
            self.albums[user.id] = message.media_group_id
        # The flood is measured on Telegram's clock (when the messages were sent), so
        # a pause in our own handling does not end it.
        sent = message.date.timestamp()
        last_drop = self.flooding.get(user.id)
        if last_drop is not None and sent - last_drop < self.item.get_expiry():
            self.flooding[user.id] = max(last_drop, sent)
            return None
        allowed = await self.limiter.hit(self.item, "messages", str(user.id))
        # Looked at again after the await: a message of the same batch may have
        # begun the flood meanwhile (and said so).
        last_drop = self.flooding.get(user.id)
        if last_drop is not None and sent - last_drop < self.item.get_expiry():
            self.flooding[user.id] = max(last_drop, sent)
            return None
        if allowed:
            return await handler(event, data)
        self.flooding[user.id] = sent
        log.info("messages from %s dropped: flooding", user.id)
        await self._notice(data, user)
        if len(self.flooding) > 10_000:  # a cache of who is flooding now, not a record
            self.flooding.clear()
            self.albums.clear()
        return None

    @staticmethod
    async def _notice(data: dict[str, Any], user: User) -> None:
        from aiogram.utils.i18n import gettext as _

        i18n = data.get("i18n")
        chat = data.get("event_chat")
        if i18n is None or chat is None:
            return
        locale = telegram_locale(user.language_code) or i18n.default_locale
        with i18n.context(), i18n.use_locale(locale):
            text = _("You are sending messages very fast. I will answer again once you pause for a few seconds.")
        try:
            await data["bot"].send_message(chat.id, text)
        except Exception:  # a notice is a courtesy
            log.info("could not send the flood notice to %s", user.id)


class Isolation(BaseMiddleware):
    """One update at a time per person and chat, taken before the transaction
    begins (aiogram's events isolation, which its FSM middleware would take
    later: we read the dialog state inside our unit of work instead)."""

    def __init__(self, fsm: FSMContextMiddleware) -> None:
        self.fsm = fsm

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        context = self.fsm.resolve_event_context(data["bot"], data)
        if context is None:
            return await handler(event, data)
        async with self.fsm.events_isolation.lock(key=context.key):
            return await handler(event, data)


class DialogState(BaseMiddleware):
    """aiogram's FSM context and current state, read through the update's own
    session (bot.fsm): no second connection or transaction per update."""

    def __init__(self, fsm: FSMContextMiddleware) -> None:
        self.fsm = fsm

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        data["fsm_storage"] = self.fsm.storage
        context = self.fsm.resolve_event_context(data["bot"], data)
        if context is not None:
            data["state"] = context
            data["raw_state"] = await context.get_state()
        return await handler(event, data)


# How many updates may be in their transactions at once. Beyond it they wait here,
# costing nothing, instead of crowding the database's threads and the event loop.
# A person's own updates wait for each other first, under the isolation lock, so
# one person's backlog never holds the slots.
TRANSACTIONS_AT_ONCE = 8


class UnitOfWork(BaseMiddleware):
    """One transaction per update: it commits or rolls back as a whole.

    The outbox is woken only after the commit, so nothing is sent for an update
    that did not happen.
    """

    def __init__(
        self,
        session_maker: async_sessionmaker,
        outbox: Outbox | None,
        scheduler: Scheduler | None = None,
        *,
        once: bool = False,
    ) -> None:
        self.session_maker = session_maker
        self.outbox = outbox
        self.scheduler = scheduler
        # Webhooks: Telegram delivers an update again when it got no answer; the
        # update's id, written in the same transaction, makes the second one a no-op.
        self.once = once
        self.slots = asyncio.Semaphore(TRANSACTIONS_AT_ONCE)

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        bot = data["bot"]
        Collect.install(bot, self.outbox)
        commit = AfterCommit()
        token = after_commit.set(commit)
        try:
            async with self.slots:
                result = await self._in_transaction(handler, event, data)
        except _AlreadyHandled as e:
            log.info("update %s was handled meanwhile by another delivery; rolled back", e.args[0])
            return None
        finally:
            # Committed or rolled back: from here on nothing is collected. After a
            # rollback the exception leaves with the collected answers unsent.
            commit.open = False
            after_commit.reset(token)
        await commit.run()  # committed: what waited for it (dialog state in Redis)
        if self.outbox is not None:
            self.outbox.say(commit.replies)
            if commit.cards:
                self.outbox.cards_changed(commit.cards)
        else:  # tests without a sender: the same policy, in order, now
            for method in commit.replies:
                await send_reply(bot, method)
            if commit.cards:
                from bot.posts import progress_hook

                refresh = progress_hook(self.session_maker, data["i18n"], data["settings"].default_locale, lambda: None)
                await refresh(commit.cards)
        for step in commit.continuations:
            await step()
        return result

    async def _in_transaction(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        async with self.session_maker() as session:
            async with session.begin():
                repo = data["repo"] = Repo(session)
                token = update_session.set(session)
                once = self.once and isinstance(event, Update)
                try:
                    if once and await repo.handled_before(event.update_id):
                        log.info("update %s was already handled; skipped", event.update_id)
                        return None
                    result = await handler(event, data)
                    # Recorded last. On SQLite a transaction waits for its turn to write at
                    # its first write (storage.sqlite.OneWriter): recorded first, this row would
                    # make every update wait for the writer before reading anything.
                    if once and not await repo.record_handled(event.update_id):
                        raise _AlreadyHandled(event.update_id)
                finally:
                    update_session.reset(token)
        if repo.enqueued and self.outbox is not None:
            self.outbox.wake()
        if repo.planned and self.scheduler is not None:
            self.scheduler.wake()
        return result


class _AlreadyHandled(Exception):
    """Another delivery of the same update committed first: this one rolls back and says nothing."""


class ActorMiddleware(BaseMiddleware):
    """Loads (or creates) the person behind the update with one SELECT."""

    def __init__(self, admin_ids: frozenset[int], default_locale: str, secret: str = "") -> None:
        self.admin_ids = admin_ids
        self.default_locale = default_locale
        self.secret = secret  # keys the hash that lets a block outlive /forget

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        if user is None or user.is_bot:
            return await handler(event, data)
        repo: Repo = data["repo"]
        person = await repo.person_with_memberships(user.id)
        if person is None:
            # First contact: the language their Telegram is in, if we speak it, is
            # stored as theirs — so what others' updates send them is in it too. It is
            # never detected again: from here on only /language changes it.
            person = await repo.add_person(user.id, user.full_name, telegram_locale(user.language_code))
            data["new_person"] = True
            # Someone who used /forget and came back: the blocks placed on them hold.
            await repo.reclaim_blocks(person.id, person_key(user.id, self.secret))
        elif person.telegram_name != user.full_name[:256]:
            person.telegram_name = user.full_name[:256]
        fallback = await Actor.fallback_org(repo, person, self.admin_ids)
        data["actor"] = Actor.build(
            person, fallback, self.admin_ids, person.locale or self.default_locale
        )
        result = await handler(event, data)
        # "Active over 7 / 30 days" needs a day's resolution: one write a day, not one an
        # update — made after the handler, so the day's first update does not write
        # before it reads (on SQLite that would take the writer's turn for all of it).
        today = utcnow().date()
        if (person.last_seen_at is None or person.last_seen_at.date() != today) and sa_inspect(person).persistent:
            person.last_seen_at = utcnow()
        return result


class LocaleMiddleware(I18nMiddleware):
    """The person's language (chosen with /language, else their Telegram's at
    first contact), else the deployment's default."""

    def __init__(self, i18n: I18n) -> None:
        super().__init__(i18n)

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        actor: Actor | None = data.get("actor")
        locale = actor.locale if actor is not None else self.i18n.default_locale
        data["locale"] = locale
        return locale
