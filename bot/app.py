"""Building the bot and its dispatcher, and running them.

`create_dispatcher` is what tests use too: the same middlewares, routers and
dependencies as the real process, with whatever Bot session the test wants.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import signal
import socket
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.fsm.storage.base import BaseEventIsolation, BaseStorage
from aiogram.fsm.storage.memory import SimpleEventIsolation
from aiogram.methods import DeleteWebhook, GetUpdates, SetWebhook
from aiogram.types import Update
from aiogram.utils.i18n import I18n
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

import handlers
from bot.fsm import DatabaseStorage, create_storage
from bot.gates import ButtonGate, CommandGate, DialogGate
from bot.i18n import create_i18n
from bot.menus import default_menus
from bot.middlewares import ActorMiddleware, DialogState, Flood, Isolation, LocaleMiddleware, UnitOfWork
from bot.outbox import Outbox, RedisPacer
from bot.posts import CARD_EDIT, card_renderer, progress_hook
from bot.retention import Retention
from bot.scheduler import Scheduler
from bot.settings import LOCALES, Settings
from bot.throttle import WrongCodeThrottle
from storage.db import create_engine, create_session_maker

log = logging.getLogger("parta")


class PeekUpdates(GetUpdates):
    """getUpdates whose answer stays JSON objects: while updates are unconfirmed
    Telegram sends them again with every answer, and only new ones are worth
    parsing into Updates (`poll`)."""

    __returning__ = list[dict[str, Any]]


_RESPONSES: list[type] = []
BATCH = 100  # the most updates one getUpdates answer holds (Telegram's default limit)


def keep_response_types() -> None:
    """aiogram parses every answer as `Response[<the method's result type>]`, a
    parametrised pydantic generic, and pydantic caches those weakly: once the
    garbage collector has taken one, the next call of that method builds its
    schema again (a millisecond or more, on every update's answers, seen in the
    profile of a burst of presses). Held here, once, for every method."""
    if _RESPONSES:
        return
    import aiogram.methods
    from aiogram.methods.base import Response, TelegramMethod

    results = {repr(PeekUpdates.__returning__): PeekUpdates.__returning__}
    for name in aiogram.methods.__all__:
        method = getattr(aiogram.methods, name)
        if isinstance(method, type) and issubclass(method, TelegramMethod) and method is not TelegramMethod:
            results.setdefault(repr(method.__returning__), method.__returning__)
    _RESPONSES.extend(Response[result] for result in results.values())  # type: ignore[misc]


def create_bot(settings: Settings, session: AiohttpSession | None = None) -> Bot:
    keep_response_types()
    if session is None:
        session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url))
    return Bot(
        token=settings.bot_token.get_secret_value(),
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML),
    )


def create_dispatcher(
    settings: Settings,
    session_maker: async_sessionmaker,
    *,
    outbox: Outbox | None,
    bot_username: str,
    storage: BaseStorage | None = None,
    isolation: BaseEventIsolation | None = None,
    throttle: WrongCodeThrottle | None = None,
    scheduler: Scheduler | None = None,
    i18n: I18n | None = None,
    once: bool = False,
    flood: Flood | None = None,
) -> Dispatcher:
    i18n = i18n or create_i18n(settings.default_locale)
    dp = Dispatcher(
        storage=storage or DatabaseStorage(session_maker),
        # One update at a time per person: a double press cannot race itself.
        events_isolation=isolation or SimpleEventIsolation(),
        # aiogram's FSM middleware is replaced by Isolation + DialogState around our unit of work.
        disable_fsm=True,
        settings=settings,
        bot_username=bot_username,
        throttle=throttle or WrongCodeThrottle(),
        outbox=outbox,
        session_maker=session_maker,  # for continuations that open a unit of work of their own
    )
    if flood is not None:
        dp.update.outer_middleware(flood)  # a flooder waits alone, before taking anything
    dp.update.outer_middleware(Isolation(dp.fsm))
    dp.update.outer_middleware(UnitOfWork(session_maker, outbox, scheduler, once=once))
    dp.update.outer_middleware(DialogState(dp.fsm))
    dp.update.outer_middleware(ActorMiddleware(settings.admin_ids, settings.default_locale,
                                                 settings.bot_token.get_secret_value()))
    dp.update.outer_middleware(LocaleMiddleware(i18n))
    # Rights first: a command or a button the person may not use never reaches a handler.
    dp.message.outer_middleware(CommandGate())
    dp.callback_query.outer_middleware(ButtonGate())
    dp.callback_query.outer_middleware(DialogGate())  # a finished wizard's buttons act no more
    dp.include_router(handlers.create_router())
    dp["i18n"] = i18n
    return dp


async def _optional(bot: Bot, what: str, call: object) -> None:
    """A start-up call the bot can live without: logged, never fatal."""
    try:
        await bot(call)  # type: ignore[arg-type]
    except Exception as e:
        log.warning("start-up call %s failed, going on without it: %s", what, e)


def worker_name(settings: Settings) -> str:
    return settings.worker_name or f"{socket.gethostname()}:{os.getpid()}"


async def run(settings: Settings) -> None:
    """One process: polling by default, or a webhook worker when WEBHOOK_URL is set."""
    engine: AsyncEngine = create_engine(settings.database_url)
    session_maker = create_session_maker(engine)
    # Two Bots over the same API: updates are handled with `bot`, whose calls are
    # collected while a transaction is open (bot.replies.Collect) and handed to
    # the sender; the sender calls Telegram with `sender`, and nothing else does.
    bot = create_bot(settings)
    sender = create_bot(settings)
    name = worker_name(settings)
    storage, isolation = create_storage(session_maker, settings.redis_url)
    pacer = RedisPacer(settings.redis_url, settings.send_rate) if settings.redis_url else None
    try:
        me = await bot.get_me()
        i18n = create_i18n(settings.default_locale)
        outbox = Outbox(session_maker, sender, rate=settings.send_rate, worker=name, pacer=pacer,
                        lease=timedelta(seconds=settings.sending_lease_seconds),
                        shared=settings.redis_url is not None)
        outbox.on_progress = progress_hook(session_maker, i18n, settings.default_locale, outbox.wake)
        outbox.renderers[CARD_EDIT] = card_renderer(session_maker, i18n, settings.default_locale)
        scheduler = Scheduler(session_maker, i18n, settings.default_locale, outbox.wake, admin_ids=settings.admin_ids,
                              grace=timedelta(hours=settings.grace_hours), worker=name,
                              lease=timedelta(seconds=settings.scheduler_lease_seconds),
                              retention=Retention(session_maker, keep_copies=timedelta(days=settings.delivery_keep_days)))
        dp = create_dispatcher(settings, session_maker, outbox=outbox, bot_username=me.username or "",
                               scheduler=scheduler, i18n=i18n, storage=storage, isolation=isolation,
                               once=True, flood=Flood())
        with dp["i18n"].context():
            menus = default_menus(LOCALES, settings.default_locale)
        for method in menus:
            await _optional(bot, "setMyCommands", method)
        # Everything built so far lives as long as the process: the modules, the
        # catalogues, the dispatcher, SQLAlchemy's and pydantic's set-ups. Frozen,
        # Python's full collections no longer walk it (a quarter of a second each,
        # every few seconds under a burst of presses: a stall for everyone).
        gc.collect()
        gc.freeze()
        await outbox.start()
        await scheduler.start()
        log.info("Parta is running as @%s (%s, worker %s)", me.username,
                 "webhook" if settings.webhook_url else "polling", name)
        try:
            if settings.webhook_url:
                await serve_webhook(settings, dp, bot)
            else:
                await _optional(bot, "deleteWebhook", DeleteWebhook(drop_pending_updates=False))
                await poll(dp, bot)
        finally:
            await scheduler.stop()
            await outbox.stop()
    finally:
        await storage.close()
        if pacer is not None:
            await pacer.close()
        await bot.session.close()
        await sender.session.close()
        await engine.dispose()


async def poll(dp: Dispatcher, bot: Bot, *, timeout: int = 30, stop: asyncio.Event | None = None,
               settle: float = 0.05) -> None:
    """Long polling that confirms to Telegram only what was handled, and fetches
    on while updates are being handled.

    aiogram's own polling moves the offset on as soon as updates are fetched,
    so an update that was being handled when the process died is lost. Here the
    offset given to Telegram is the lowest update still in flight (or one past
    the newest, when none is), so nothing is confirmed before it was handled.
    Telegram then hands the unconfirmed updates back with every answer: those
    already in flight, or handled while a lower one still runs, are skipped,
    and only new ones start (concurrently; one person's updates stay in order
    under the isolation lock); the ones sent again are not even parsed. While
    updates are unconfirmed Telegram answers at once, so the next fetch waits
    `settle` seconds (or for the stop): a new update waits at most that long,
    never for a slow one before it — unless a hundred (Telegram's most for one
    answer) are unconfirmed behind the lowest: then it waits for that one. Each update's id is recorded in its own
    transaction, so an update fetched again after a crash is applied once."""
    own_stop = stop is None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if own_stop:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    allowed = dp.resolve_used_update_types()
    in_flight: dict[int, asyncio.Task[object]] = {}
    handled: set[int] = set()  # handled, not confirmed yet: an update below them is still in flight
    newest: int | None = None  # one past the newest update seen
    backoff = 1.0

    def finished(update_id: int, task: asyncio.Task[object]) -> None:
        del in_flight[update_id]
        handled.add(update_id)
        if not task.cancelled() and task.exception() is not None:
            log.error("update %s failed outside its handler: %r", update_id, task.exception())

    async def until_stop_or(task: asyncio.Task[object]) -> None:
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()

    async def until_stop(seconds: float | None) -> None:
        try:
            await asyncio.wait_for(stop.wait(), seconds)
        except TimeoutError:
            pass

    try:
        while not stop.is_set():
            offset = min(in_flight) if in_flight else newest
            if not in_flight:
                handled.clear()  # everything up to `newest` is confirmed by this fetch
            fetch = asyncio.ensure_future(bot(PeekUpdates(offset=offset, timeout=0 if in_flight else timeout,
                                                          allowed_updates=allowed)))
            stopping = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if fetch not in done:
                fetch.cancel()
                break
            stopping.cancel()
            try:
                updates = fetch.result()
            except Exception as e:  # the network, Telegram: wait and ask again
                log.warning("getUpdates failed: %s; again in %.0f s", e, backoff)
                await until_stop(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 1.0
            ids = [raw["update_id"] for raw in updates]
            fresh = [Update.model_validate(raw, context={"bot": bot}) for raw, update_id in zip(updates, ids)
                     if update_id not in in_flight and update_id not in handled]
            for update in fresh:
                task = asyncio.create_task(dp.feed_update(bot, update), name=f"update-{update.update_id}")
                in_flight[update.update_id] = task
                task.add_done_callback(functools.partial(finished, update.update_id))
            if ids:
                newest = max(newest or 0, ids[-1] + 1)
            if offset is not None:
                handled.difference_update([i for i in handled if i < offset])
            if in_flight and not fresh and len(ids) >= BATCH:
                # A full answer and nothing new in it: what follows cannot show
                # before the lowest update in flight is done and confirmed.
                await until_stop_or(in_flight[min(in_flight)])
            elif in_flight:
                await until_stop(settle)
    finally:
        if in_flight:  # what was taken is finished (its commit is what confirms it next time)
            await asyncio.gather(*in_flight.values(), return_exceptions=True)
        if own_stop:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


def webhook_app(settings: Settings, dp: Dispatcher, bot: Bot):  # type: ignore[no-untyped-def]
    """The worker's aiohttp application: Telegram's POSTs at the webhook path
    (a wrong secret token gets 401), and GET /healthz for the proxy."""
    from aiogram.webhook.aiohttp_server import SimpleRequestHandler
    from aiohttp import web

    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    app = web.Application()
    SimpleRequestHandler(dispatcher=dp, bot=bot, secret_token=secret, handle_in_background=False).register(
        app, path=urlsplit(settings.webhook_url or "").path or "/"
    )

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.router.add_get("/healthz", healthz)
    return app


async def serve_webhook(settings: Settings, dp: Dispatcher, bot: Bot) -> None:
    """An aiohttp server for Telegram's POSTs, behind the reverse proxy, until SIGINT/SIGTERM.

    Each update is answered only after it was handled (and committed), so a
    worker that dies mid-update leaves Telegram to deliver it again; the update
    id recorded in the same transaction keeps it from applying twice."""
    from aiohttp import web

    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    path = urlsplit(settings.webhook_url or "").path or "/"
    app = webhook_app(settings, dp, bot)
    await _optional(bot, "setWebhook", SetWebhook(
        url=settings.webhook_url or "", secret_token=secret, allowed_updates=dp.resolve_used_update_types(),
        drop_pending_updates=False,
    ))
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.webhook_host, settings.webhook_port)
    await site.start()
    log.info("webhook worker listening on %s:%s%s", settings.webhook_host, settings.webhook_port, path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
