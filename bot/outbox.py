"""The outbox: the one place that sends to other people.

A handler answers its own user directly. Everything else — a join-request
card to every admin, the answer to a requester, an edit of every copy of a
card, another person's command menu — is a `Delivery` row written in the
update's own transaction, so it exists exactly when the update committed. The
sender drains the rows after the commit.

States never lie: a row is `sent` only after Telegram said so; a row found
`sending` at start-up (a crash mid-call) is sent again.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from aiogram import Bot
from aiogram.client.default import Default
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import (
    BanChatMember,
    DeleteMessage,
    DeleteMessages,
    DeleteMyCommands,
    EditMessageCaption,
    EditMessageReplyMarkup,
    EditMessageText,
    SendDocument,
    SendMediaGroup,
    SendMessage,
    SendPhoto,
    SendVideo,
    SetMyCommands,
    TelegramMethod,
    UnbanChatMember,
)
from aiogram.types import Message
from sqlalchemy import Select, or_, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from bot import policy
from storage.models import Delivery, DeliveryStatus, Lane, Organisation, status_is, utcnow
from storage.repo import Repo

log = logging.getLogger(__name__)

METHODS: dict[str, type[TelegramMethod[Any]]] = {
    m.__api_method__: m
    for m in (
        SendMessage, SendPhoto, SendDocument, SendVideo, SendMediaGroup, EditMessageText, EditMessageCaption,
        EditMessageReplyMarkup, DeleteMessage, DeleteMessages, SetMyCommands, DeleteMyCommands, BanChatMember, UnbanChatMember,
    )
}
# A server or network error is usually a moment's hiccup: the first retry goes
# half a second later, at the front of its lane (so a broadcast does not trail
# behind its few unlucky copies); then the waits grow, so that a real outage of
# Telegram (minutes) is waited out rather than failing a school's broadcast.
RETRY_DELAYS = (0.5, 2.0, 8.0, 30.0, 120.0, 300.0, 300.0)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
# This many transient failures in a row, and no success between: Telegram is
# down rather than hiccuping, so every lane pauses instead of spending slots.
OUTAGE_AFTER = 10
# Calls about a chat that are not messages in it: no per-chat pacing.
LOST = "lost"  # an outcome that is not one: the row went to another worker
UNPACED = frozenset({"setMyCommands", "deleteMyCommands", "deleteMessage", "deleteMessages", "banChatMember",
                     "unbanChatMember"})


def claimable(now: datetime, limit: int) -> Select[tuple[int]]:
    """The ids of the next rows due, in claim order. Only waiting rows are
    read, however long the history: PostgreSQL from the partial index of
    pending rows (storage/models.py), in order; SQLite from the pending range
    of (status, next_attempt_at), sorted."""
    return (
        select(Delivery.id)
        .where(status_is(DeliveryStatus.PENDING), Delivery.next_attempt_at <= now)
        .order_by(Delivery.lane, Delivery.id)
        .limit(limit)
    )


def dump_method(method: TelegramMethod[Any]) -> str:
    # Default(...) sentinels (parse_mode and the like) are left out so the bot's
    # defaults apply when the row is sent.
    skip = {name for name, value in method if isinstance(value, Default)}
    return method.model_dump_json(exclude_none=True, exclude=skip)


def enqueue(
    repo: Repo,
    chat_id: int,
    method: TelegramMethod[Any],
    *,
    org_id: int | None,
    topic: str | None = None,
    ref_id: int | None = None,
    edit_of: Delivery | int | None = None,
    post_id: int | None = None,
    person_id: int | None = None,
    fallback: TelegramMethod[Any] | None = None,
    org: Organisation | None = None,
    urgent: bool = False,
) -> Delivery:
    """Adds one call to the outbox in the caller's transaction. With the
    organisation, the delivery policy (bot.policy) decides when it leaves."""
    now = utcnow()
    when = policy.not_before(org, topic, now=now, urgent=urgent) or now
    return repo.add_delivery(
        Delivery(
            org_id=org_id,
            chat_id=chat_id,
            method=method.__api_method__,
            payload=dump_method(method),
            topic=topic,
            ref_id=ref_id,
            post_id=post_id,
            person_id=person_id,
            edit_of_id=edit_of.id if isinstance(edit_of, Delivery) else edit_of,
            fallback_method=fallback.__api_method__ if fallback is not None else None,
            fallback_payload=dump_method(fallback) if fallback is not None else None,
            status=DeliveryStatus.PENDING.value,
            attempts=0,
            next_attempt_at=when,
        )
    )


async def settle_cards(
    repo: Repo,
    topic: str,
    ref_id: int,
    text_for: dict[int, str] | str,
    *,
    skip_message: tuple[int, int] | None = None,
) -> None:
    """Every copy of a card about (topic, ref_id) shows the outcome and loses its buttons.

    Copies not yet sent are cancelled (nobody needs to be asked any more); sent
    ones are edited. `text_for` maps a chat id to the text in its reader's
    language (or is one text for all). The copy the decider pressed is edited
    by the handler itself and skipped here.
    """
    await repo.flush()
    cards = [c for c in await repo.deliveries_about(topic, ref_id) if c.method == "sendMessage"]
    await repo.cancel_pending_deliveries(topic, ref_id)
    for card in cards:
        if card.status not in (DeliveryStatus.SENT, DeliveryStatus.SENDING):
            continue
        if skip_message is not None and (card.chat_id, card.message_id) == skip_message:
            continue
        text = text_for if isinstance(text_for, str) else text_for.get(card.chat_id)
        if text is None:
            continue
        # chat_id and message_id are filled in from the card when the edit is sent.
        edit = EditMessageText(text=text, chat_id=card.chat_id, message_id=card.message_id or 0)
        enqueue(repo, card.chat_id, edit, org_id=card.org_id, topic=f"{topic}-edit", ref_id=ref_id, edit_of=card)


# Calls that put or change a message in a chat: paced per chat.
MESSAGE_METHODS = frozenset({
    "sendMessage", "sendPhoto", "sendDocument", "sendVideo", "sendMediaGroup",
    "editMessageText", "editMessageCaption", "editMessageReplyMarkup", "editMessageMedia",
})
REPLY_ATTEMPTS = 4
# Not messages: outside the global limit and any chat's pace.
UNLIMITED = frozenset({"answerCallbackQuery"})


def _chat_key(method: TelegramMethod[Any]) -> int | str | None:
    chat = getattr(method, "chat_id", None)
    return chat if isinstance(chat, (int, str)) else None


def _harmless(method: TelegramMethod[Any], e: TelegramBadRequest) -> bool:
    """Refusals that leave the person seeing what the handler meant: an edit that
    changes nothing (a second press), a callback query answered too late."""
    text = e.message.lower()
    return "message is not modified" in text or (
        method.__api_method__ == "answerCallbackQuery" and "query is too old" in text
    )


async def send_reply(bot: Bot, method: TelegramMethod[Any], *, pause: Callable[[float], Awaitable[None]] | None = None,
                     before: Callable[[], Awaitable[None]] | None = None,
                     after: Callable[[], None] | None = None, strict: bool = False) -> Any:
    """One answer of an update to its own person, after the commit: a 429 waits
    its turn and tries again (never fails the update), server and network
    errors retry a few times, a harmless refusal is done; anything else is
    logged with its context (the update has already happened). `strict`: a call
    whose caller waits for its result gets the error instead."""
    for attempt in range(1, REPLY_ATTEMPTS + 1):
        try:
            if before is not None:
                await before()
            try:
                return await bot(method)
            finally:
                if after is not None:
                    after()
        except TelegramRetryAfter as e:
            if pause is not None:
                await pause(e.retry_after)
            else:
                await asyncio.sleep(e.retry_after)
        except TelegramBadRequest as e:
            if _harmless(method, e):
                return True
            if strict:
                raise
            log.warning("reply %s to %s refused: %s", method.__api_method__, _chat_key(method), e.message)
            return None
        except TelegramForbiddenError as e:
            if strict:
                raise
            log.info("reply %s to %s: %s", method.__api_method__, _chat_key(method), e.message)
            return None
        except (TelegramNetworkError, TelegramServerError, TimeoutError, OSError) as e:
            if attempt == REPLY_ATTEMPTS:
                if strict:
                    raise
                log.warning("reply %s to %s failed %s times: %s", method.__api_method__, _chat_key(method),
                            attempt, e)
                return None
            await asyncio.sleep(0.2 * 2 ** attempt)
    return None


class LanePacer:
    """One global limit for every call the bot makes, served by lane: a waiter
    of a more urgent lane takes the next slot before any waiter of a later one.
    Slots are evenly spaced (1/rate apart), locally or — several workers — by
    Redis's clock (RedisPacer); a 429 pauses every lane."""

    def __init__(self, rate: float, shared: RedisPacer | None = None) -> None:
        self.step = 1.0 / rate if rate > 0 else 0.0
        self.shared = shared
        self._heap: list[tuple[int, int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._next = 0.0
        self._paused_until = 0.0
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def unlimited(self) -> bool:
        return self.step == 0 and self.shared is None

    async def acquire(self, lane: int, *, retry: bool = False) -> None:
        """Waits for a slot. A `retry` (a call that failed on a server or network
        error) goes before the first attempts of its lane."""
        loop = asyncio.get_running_loop()
        if self.unlimited:
            while (pause := self._paused_until - loop.time()) > 0:
                await asyncio.sleep(pause)
            return
        future: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._heap, (lane, 0 if retry else 1, next(self._seq), future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._serve(), name="lane-pacer")
        self._kick.set()
        await future

    async def unpaced(self) -> None:
        """A call that takes no slot of the limit (a callback answer is not a
        message): it only waits out a pause Telegram asked for."""
        loop = asyncio.get_running_loop()
        while (pause := self._paused_until - loop.time()) > 0:
            await asyncio.sleep(pause)

    async def pause(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        self._paused_until = max(self._paused_until, loop.time() + seconds)
        if self.shared is not None:
            await self.shared.pause(seconds)

    def paused_for(self) -> float:
        return max(0.0, self._paused_until - asyncio.get_running_loop().time())

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._heap:
                self._kick.clear()
                try:
                    await asyncio.wait_for(self._kick.wait(), timeout=30)
                except TimeoutError:
                    if not self._heap:
                        return
            while (pause := self._paused_until - loop.time()) > 0:
                await asyncio.sleep(pause)
            if self.shared is not None:
                await self.shared.global_slot()
            else:
                wait = self._next - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                # Spaced from when the slot was really given, never from when it was
                # due: a late wake-up (a busy machine) must not bunch the next calls.
                self._next = loop.time() + self.step
            while self._heap:
                *_, future = heapq.heappop(self._heap)
                if not future.done():
                    future.set_result(None)
                    break

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None


class Outbox:
    """The sender: drains due rows within Telegram's limits.

    - a global rate (default 30 calls/s, `aiolimiter`'s leaky bucket — a
      maintained library rather than a hand-made one);
    - at most one message per `per_chat_interval` into one chat, in order;
    - enough concurrency to reach the rate at 200 ms latency;
    - a 429 pauses all sending for `retry_after`; 403 and "chat not found"
      mark the recipient unreachable and are never retried; server and network
      errors retry with backoff up to MAX_ATTEMPTS, then the row is failed.

    Outcomes are written in small batches (every 100 ms or 100 rows), so a
    crash can only repeat what was in flight or sent in the last moment.
    """

    def __init__(
        self,
        session_maker: async_sessionmaker,
        bot: Bot,
        *,
        rate: float = 30.0,
        per_chat_interval: float = 1.0,
        concurrency: int = 64,
        write_every: float = 0.1,
        clock: Callable[[], datetime] = utcnow,
        worker: str = "main",
        pacer: RedisPacer | None = None,
        lease: timedelta = timedelta(seconds=60),
        shared: bool = False,
    ) -> None:
        self.session_maker = session_maker
        self.clock = clock  # what "due" means; tests move it
        self.worker = worker
        # Several workers: limits are kept in Redis for all of them, and a
        # `sending` row is taken back only after its lease (its worker may live).
        self.pacer = pacer
        self.lease = lease
        self.shared = shared
        self.bot = bot
        # One call per 1/rate seconds, no bursts: any one-second window then holds
        # at most `rate` calls, which is how Telegram counts.
        self.lanes = LanePacer(rate if pacer is None else 0, pacer)
        self.rate = rate
        self.per_chat_interval = per_chat_interval
        self.concurrency = concurrency
        self.write_every = write_every
        self._slots = asyncio.Semaphore(concurrency)
        self._chats: dict[int, _ChatPace] = {}
        self._last_sent: dict[int, float] = {}  # chat → loop time of its last message
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._outcomes: list[dict[str, Any]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        # Called with the posts whose copies changed state, after they are recorded
        # (the author's card follows the delivery).
        self.on_progress: Callable[[set[int]], Awaitable[None]] | None = None
        self._progressed: set[int] = set()
        # By topic: rows whose text is drawn when they are sent, not when they were
        # written (the author's card: its figures as they are at that moment).
        # Given the row and its call, returns the call to make, or None when it
        # would change nothing.
        self.renderers: dict[str, Callable[[Delivery, TelegramMethod[Any]], Awaitable[TelegramMethod[Any] | None]]] = {}
        self._progress_pending: set[int] = set()  # recorded, the cards not refreshed yet
        self._progress_at = 0.0
        self._failing_in_row = 0  # server and network errors since the last call that got through
        self._unanswered: dict[int, int] = {}  # chat → calls into it not answered yet
        # The fastest lane: what updates say to their own people, per chat, in order.
        self._now: dict[int | str | None, deque[tuple[TelegramMethod[Any], Any, Any, Any]]] = {}
        self._now_workers: dict[int | str | None, asyncio.Task[None]] = {}

    def wake(self) -> None:
        self._wake.set()

    def cards_changed(self, post_ids: set[int]) -> None:
        """Committed updates changed these posts' figures (acknowledgements, votes):
        their authors' cards follow with the next progress report."""
        self._progress_pending |= post_ids

    async def start(self) -> None:
        self._stopping.clear()
        await self.recover()
        self._task = asyncio.create_task(self._run(), name="outbox")

    async def stop(self) -> None:
        """Stops claiming, lets what is in flight finish, records every outcome."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        await self._write()
        await self._report_progress(now=True)
        await self.lanes.close()

    async def recover(self, *, at_start: bool = True) -> int:
        """A row left `sending` by a crash is sent again: it may or may not have arrived.

        Alone, at start every such row is ours from before the crash. Shared
        with other workers, only rows whose lease ran out are taken back."""
        stmt = update(Delivery).where(Delivery.status == DeliveryStatus.SENDING)
        if self.shared or not at_start:
            stmt = stmt.where(or_(Delivery.claimed_at.is_(None), Delivery.claimed_at < self.clock() - self.lease))
        async with self.session_maker.begin() as session:
            result = await session.execute(stmt.values(status=DeliveryStatus.PENDING.value))
        if result.rowcount:
            log.warning("outbox: %s row(s) left `sending` will be sent again", result.rowcount)
        return result.rowcount

    # -- the fastest lane: an update's own answers ----------------------------------

    def say(self, methods: list[TelegramMethod[Any]]) -> None:
        """What an update said to its own person, handed over after its commit:
        sent before any row of the outbox, in order per chat."""
        for method in methods:
            self._now_put(method, None, None, None)

    async def call_now(self, make_request: Any, bot: Bot, method: TelegramMethod[Any]) -> Any:
        """A call made outside any transaction (an apology, a continuation): the
        same lane and limits, and its result."""
        future = asyncio.get_running_loop().create_future()
        self._now_put(method, future, make_request, bot)
        return await future

    async def _chat_turn(self, chat: int) -> None:
        """Right before a message goes into a chat, from either lane: no other
        call into the chat is still unanswered, and at least the per-chat
        interval (and a little room) has passed since Telegram answered the last
        one (`_chat_answered`). Telegram counts a call when it arrives, somewhere
        between our sending it and its answer: counted from the answer, the gap
        holds however long a request took to get there (a busy machine, a slow
        connection). The turn is taken with no await between looking and taking,
        so two lanes never pick the same moment."""
        if self.per_chat_interval <= 0:
            return
        loop = asyncio.get_running_loop()
        gap = self.per_chat_interval + 0.05
        while True:
            pace = self._chats.get(chat)
            last = max(pace.last if pace else -1e9, self._last_sent.get(chat, -1e9))
            wait = last + gap - loop.time()
            if self._unanswered.get(chat):
                wait = max(wait, 0.02)
            if wait <= 0:
                self._last_sent[chat] = loop.time()
                if pace is not None:
                    pace.last = loop.time()
                self._unanswered[chat] = self._unanswered.get(chat, 0) + 1
                return
            await asyncio.sleep(wait)

    def _chat_answered(self, chat: int) -> None:
        """Telegram answered (or the call failed): the chat's interval counts from now."""
        left = self._unanswered.get(chat, 0) - 1
        if left > 0:
            self._unanswered[chat] = left
        else:
            self._unanswered.pop(chat, None)
        now = asyncio.get_running_loop().time()
        self._last_sent[chat] = max(self._last_sent.get(chat, -1e9), now)
        pace = self._chats.get(chat)
        if pace is not None:
            pace.last = max(pace.last, now)

    def _now_put(self, method: TelegramMethod[Any], future: Any, make_request: Any, bot: Any) -> None:
        key = _chat_key(method)
        if key is None or method.__api_method__ not in MESSAGE_METHODS:
            # Callback answers and calls about no chat wait for nobody.
            task = asyncio.create_task(self._say_one(None, method, future, make_request, bot))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            return
        self._now.setdefault(key, deque()).append((method, future, make_request, bot))
        if key not in self._now_workers:
            task = asyncio.create_task(self._now_worker(key))
            self._now_workers[key] = task
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _now_worker(self, key: int | str) -> None:
        queue = self._now[key]
        try:
            while queue:
                method, future, make_request, bot = queue.popleft()
                await self._say_one(key, method, future, make_request, bot)
        finally:
            del self._now_workers[key]
            if not queue:
                self._now.pop(key, None)

    async def _say_one(self, key: int | str | None, method: TelegramMethod[Any], future: Any,
                       make_request: Any, bot: Any) -> None:
        loop = asyncio.get_running_loop()

        chat = None
        if key is not None and (isinstance(key, int) or str(key).lstrip("-").isdigit()):
            chat = int(key)

        turned: list[int] = []  # the chat whose turn this call has taken, until it is answered

        def answered() -> None:
            while turned:
                self._chat_answered(turned.pop())

        async def turn() -> None:
            if method.__api_method__ in UNLIMITED:
                # At once: the person is looking at a spinning button, and Telegram
                # counts no message for it (nor would a slot after 30 others be in time).
                await self.lanes.unpaced()
                return
            if chat is not None:
                pace = self._chats.get(chat)
                last = max(pace.last if pace else -1e9, self._last_sent.get(chat, -1e9))
                wait = last + self.per_chat_interval - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            if key is not None and self.pacer is not None:
                await self.pacer.chat_turn(key)
            # The chat's turn first, the global slot last: a slot is used the moment
            # it is given, never held while the chat's interval runs out (that would
            # bunch calls within a rolling second).
            if chat is not None and self.per_chat_interval > 0:
                await self._chat_turn(chat)
                turned.append(chat)
            try:
                await self.lanes.acquire(Lane.NOW)
            except BaseException:
                answered()
                raise

        async def slow_down(seconds: float) -> None:
            # A 429 on a person's own chat is that chat's limit: only that chat waits.
            if chat is not None:
                self._last_sent[chat] = loop.time() + seconds - self.per_chat_interval
            else:
                await self.lanes.pause(seconds)

        caller = _Direct(make_request, bot) if make_request is not None else self.bot
        try:
            result = await send_reply(caller, method, pause=slow_down, before=turn, after=answered,  # type: ignore[arg-type]
                                      strict=future is not None)
        except Exception as e:
            if future is None:
                log.exception("reply %s failed", method.__api_method__)
            elif not future.done():
                future.set_exception(e)
            return
        if future is not None and not future.done():
            future.set_result(result)

    # -- the loop ----------------------------------------------------------------

    async def _run(self) -> None:
        writer = asyncio.create_task(self._writer(), name="outbox-writer")
        next_sweep = 0.0
        loop = asyncio.get_running_loop()
        try:
            while True:
                if self.shared and loop.time() >= next_sweep:
                    next_sweep = loop.time() + self.lease.total_seconds() / 2
                    try:
                        await self.recover(at_start=False)
                    except Exception:
                        log.exception("outbox: sweep of stale claims failed")
                try:
                    room = self._claim_room()
                    rows = await self._claim(room) if room > 0 else []
                except Exception:  # the loop must survive a database hiccup
                    log.exception("outbox: claim failed")
                    rows = []
                    await asyncio.sleep(1)
                for row in rows:
                    self._spawn(row)
                if rows and len(rows) == room:
                    await self._any_done()
                    continue
                if rows:
                    continue
                self._wake.clear()
                timeout = await self._idle_seconds()
                waiters = [asyncio.ensure_future(self._wake.wait())]
                if self._inflight:
                    waiters.append(asyncio.ensure_future(self._any_done()))
                try:
                    await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                finally:  # also when stop() cancels us here: no waiter is left behind
                    for w in waiters:
                        w.cancel()
        finally:
            # The writer finishes what it is writing and records the rest.
            self._stopping.set()
            await writer

    def _claim_room(self) -> int:
        """How many more rows to take now. Alone: enough to keep every slot busy.
        Sharing the limits with other workers: about a second's worth, so no row
        waits in this worker long enough for its lease to run out."""
        room = self.concurrency * 2 - len(self._inflight)
        if self.shared and self.pacer is not None and self.pacer.rate > 0:
            room = min(room, max(4, int(self.pacer.rate)) - len(self._inflight))
        return room

    def _spawn(self, row: Delivery) -> None:
        task = asyncio.create_task(self._deliver(row))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _any_done(self) -> None:
        if self._inflight:
            await asyncio.wait(set(self._inflight), return_when=asyncio.FIRST_COMPLETED)

    async def _writer(self) -> None:
        """Records outcomes every `write_every`; on stop, once more, never cut off mid-write."""
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=self.write_every)
            except TimeoutError:
                pass
            try:
                await self._write()
            except Exception:
                log.exception("outbox: writing outcomes failed; will try again")

    async def _idle_seconds(self) -> float:
        async with self.session_maker() as session:
            nxt = await session.scalar(
                select(Delivery.next_attempt_at)
                .where(Delivery.status == DeliveryStatus.PENDING)
                .order_by(Delivery.next_attempt_at)
                .limit(1)
            )
        if nxt is None:
            return 60.0
        return min(60.0, max(0.02, (nxt - self.clock()).total_seconds()))

    async def flush(self) -> int:
        """Sends every row that is due now and records the outcomes (tests, shutdown)."""
        done = 0
        while True:
            rows = await self._claim(self.concurrency * 2)
            if not rows:
                await self._write()
                return done
            await asyncio.gather(*(self._deliver(row) for row in rows))
            await self._write()
            done += len(rows)

    # -- claim, call, record ---------------------------------------------------------

    async def _claim(self, limit: int) -> list[Delivery]:
        """Compare-and-swap pending → sending: a row is taken by one sender only.

        On PostgreSQL the rows are locked with SKIP LOCKED, so workers claiming
        at once take different rows instead of waiting for each other."""
        now = self.clock()
        async with self.session_maker.begin() as session:
            ids = (await session.scalars(claimable(now, limit).with_for_update(skip_locked=True))).all()
            if not ids:
                return []
            await session.execute(
                update(Delivery)
                .where(Delivery.id.in_(ids), Delivery.status == DeliveryStatus.PENDING)
                .values(status=DeliveryStatus.SENDING.value, attempts=Delivery.attempts + 1,
                        claimed_by=self.worker, claimed_at=now)
            )
            rows = (
                await session.scalars(
                    select(Delivery)
                    .where(Delivery.id.in_(ids), Delivery.status == DeliveryStatus.SENDING)
                    .order_by(Delivery.lane, Delivery.id)
                )
            ).all()
        return list(rows)

    async def _deliver(self, row: Delivery) -> None:
        pace = self._chats.setdefault(row.chat_id, _ChatPace())
        pace.users += 1
        try:
            # One chat's messages go in order. Waiting for the chat's turn holds
            # no sending slot: only the call itself does.
            async with pace.lock:
                if await self._superseded(row):
                    outcome: dict[str, Any] = {"status": DeliveryStatus.CANCELLED.value}
                else:
                    outcome = await self._send(row, pace)
        finally:
            pace.users -= 1
            if pace.users == 0 and self._chats.get(row.chat_id) is pace:
                # The chat's last message time outlives its lock (pacing holds
                # between batches too); old entries are dropped as they expire.
                del self._chats[row.chat_id]
                # Never back: a row that sent nothing (cancelled, superseded, its
                # target not sent yet) has an old `last`, and lane 0 may have sent since.
                self._last_sent[row.chat_id] = max(self._last_sent.get(row.chat_id, -1e9), pace.last)
                self._forget_old_chats()
        if outcome["status"] == LOST:
            return  # another worker has it now; nothing of ours to record
        outcome["id"] = row.id
        if row.topic == "digest" and outcome["status"] != DeliveryStatus.PENDING:
            outcome["_digest"] = True  # the copies it carries share its fate
        self._outcomes.append(outcome)
        if row.post_id is not None:
            self._progressed.add(row.post_id)

    def _forget_old_chats(self) -> None:
        if len(self._last_sent) < 1024:
            return
        horizon = asyncio.get_running_loop().time() - self.per_chat_interval
        self._last_sent = {chat: at for chat, at in self._last_sent.items() if at > horizon}

    async def _still_ours(self, row: Delivery) -> bool:
        """Right before the call, with other workers around: the row is still
        claimed by this worker (its lease may have run out while it waited, and
        another worker taken it back), and the claim is renewed."""
        async with self.session_maker.begin() as session:
            result = await session.execute(
                update(Delivery)
                .where(Delivery.id == row.id, Delivery.status == DeliveryStatus.SENDING,
                       Delivery.claimed_by == self.worker)
                .values(claimed_at=self.clock())
            )
        return result.rowcount == 1

    async def _superseded(self, row: Delivery) -> bool:
        """An edit of a card that a newer edit of the same card will replace
        (the author's card during a busy broadcast): not worth a call."""
        if row.edit_of_id is None or row.method not in ("editMessageText", "editMessageCaption"):
            return False
        async with self.session_maker() as session:
            newer = await session.scalar(
                select(Delivery.id).where(
                    Delivery.edit_of_id == row.edit_of_id,
                    Delivery.topic == row.topic,
                    Delivery.id > row.id,
                    # A newer edit already sent counts too: this one's figures are older.
                    Delivery.status.in_([DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value,
                                         DeliveryStatus.SENT.value]),
                ).limit(1)
            )
        return newer is not None

    async def _send(self, row: Delivery, pace: _ChatPace) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        try:
            method = await self._prepare(row, row.method, row.payload)
            if method is None:
                return {"status": DeliveryStatus.CANCELLED.value}
            paced = row.method not in UNPACED
            if paced:
                last = max(pace.last, self._last_sent.get(row.chat_id, -1e9))
                wait = last + self.per_chat_interval - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            render = self.renderers.get(row.topic or "")
            if render is not None:
                method = await render(row, method)
                if method is None:
                    return {"status": DeliveryStatus.CANCELLED.value}
            await self._slots.acquire()
            try:
                if self.pacer is not None and paced:
                    await self.pacer.chat_turn(row.chat_id)
                # The chat's turn first, the global slot last (as for the answers in lane 0).
                turned = paced and self.per_chat_interval > 0
                if turned:
                    await self._chat_turn(row.chat_id)
                try:
                    await self.lanes.acquire(row.lane, retry=row.attempts > 1)
                    if self.shared and not await self._still_ours(row):
                        return {"status": LOST}
                    try:
                        result = await self.bot(method)
                    except TelegramBadRequest as e:
                        if row.fallback_method is None or _bad_request(e)["status"] != DeliveryStatus.FAILED:
                            raise
                        # Refused for good (e.g. too old to delete): the fallback instead.
                        fallback = await self._prepare(row, row.fallback_method, row.fallback_payload or "{}")
                        if fallback is None:
                            raise
                        result = await self.bot(fallback)
                finally:
                    if turned:
                        self._chat_answered(row.chat_id)
            finally:
                self._slots.release()
            self._failing_in_row = 0
            outcome: dict[str, Any] = {"status": DeliveryStatus.SENT.value, "sent_at": utcnow(), "error": None}
            if render is not None:
                outcome["payload"] = dump_method(method)  # what the message shows now
            if isinstance(result, Message):
                outcome["message_id"] = result.message_id
            elif isinstance(result, list) and result and isinstance(result[0], Message):
                outcome["message_id"] = result[0].message_id  # an album: its messages follow the first
            return outcome
        except _NotYet:
            return {"status": DeliveryStatus.PENDING.value, "attempts": row.attempts - 1,
                    "next_attempt_at": utcnow() + timedelta(seconds=1)}
        except TelegramRetryAfter as e:
            # Everyone waits: Telegram asked the whole bot to slow down.
            await self.lanes.pause(e.retry_after)
            return {"status": DeliveryStatus.PENDING.value, "attempts": row.attempts - 1,
                    "next_attempt_at": utcnow() + timedelta(seconds=e.retry_after)}
        except TelegramMigrateToChat as e:
            return {"status": DeliveryStatus.PENDING.value, "chat_id": e.migrate_to_chat_id,
                    "attempts": row.attempts - 1}
        except TelegramForbiddenError as e:
            return {"status": DeliveryStatus.UNREACHABLE.value, "error": e.message[:256]}
        except TelegramBadRequest as e:
            return _bad_request(e)
        except (TelegramNetworkError, TelegramServerError, TimeoutError, OSError) as e:
            await self._transient_failure()
            return self._retry(row, str(e))
        except Exception as e:  # never leave a row `sending` because of our own bug
            log.exception("outbox: delivery %s failed", row.id)
            return self._retry(row, repr(e))

    async def _write(self) -> None:
        """Records the outcomes gathered so far in one transaction."""
        if not self._outcomes:
            await self._report_progress()
            return
        # The posts touched go with their outcomes: a refresh after this commit
        # sees every outcome it is told about.
        batch, self._outcomes = self._outcomes, []
        posts, self._progressed = self._progressed, set()
        try:
            async with self.session_maker.begin() as session:
                # One executemany per shape of outcome (ORM bulk UPDATE by primary key).
                shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
                for outcome in batch:
                    values = {k: v for k, v in outcome.items() if k != "_digest"}
                    shapes.setdefault(tuple(sorted(values)), []).append(values)
                for rows in shapes.values():
                    await session.execute(update(Delivery), rows)
                for outcome in batch:
                    values = {k: v for k, v in outcome.items() if k not in ("id", "_digest")}
                    if outcome.get("_digest"):
                        carried = (
                            DeliveryStatus.DIGESTED.value if values["status"] == DeliveryStatus.SENT else values["status"]
                        )
                        await session.execute(
                            update(Delivery)
                            .where(Delivery.edit_of_id == outcome["id"], Delivery.status == DeliveryStatus.HELD)
                            .values(status=carried, sent_at=values.get("sent_at"))
                        )
        except BaseException:  # a cancellation too: kept for the next try; the rows stay `sending`
            self._outcomes[:0] = batch
            self._progressed |= posts
            raise
        if any(o["status"] == DeliveryStatus.PENDING for o in batch):
            self.wake()  # a retry is due soon: the loop may be asleep for a minute
        self._progress_pending |= posts
        await self._report_progress()

    async def _report_progress(self, *, now: bool = False) -> None:
        """The authors' cards follow — at most once a second while a broadcast
        runs (every refresh costs queries and an edit), and at once when the
        sender has nothing left in hand."""
        if not self._progress_pending or self.on_progress is None:
            return
        loop = asyncio.get_running_loop()
        idle = not self._inflight and not self._outcomes
        if not (now or idle or loop.time() - self._progress_at >= 1.0):
            return
        posts, self._progress_pending = self._progress_pending, set()
        self._progress_at = loop.time()
        try:
            await self.on_progress(posts)
        except Exception:
            log.exception("outbox: progress hook failed for posts %s", sorted(posts))

    async def _prepare(self, row: Delivery, name: str, payload: str) -> TelegramMethod[Any] | None:
        # A broadcast's copies share one payload (the chat is the row's): parsed once.
        method = _parsed(name, payload).model_copy()
        if row.edit_of_id is None:
            if hasattr(method, "chat_id"):
                method.chat_id = row.chat_id  # type: ignore[attr-defined]
            return method
        async with self.session_maker() as session:
            target = await session.get(Delivery, row.edit_of_id)
        if target is None or target.status in (
            DeliveryStatus.CANCELLED, DeliveryStatus.FAILED, DeliveryStatus.UNREACHABLE
        ):
            return None
        if target.status != DeliveryStatus.SENT or target.message_id is None:
            raise _NotYet
        method.chat_id = target.chat_id  # type: ignore[attr-defined]
        if isinstance(method, DeleteMessages):  # an album's messages have consecutive ids
            method.message_ids = list(range(target.message_id, target.message_id + len(method.message_ids)))
        else:
            method.message_id = target.message_id  # type: ignore[attr-defined]
        return method

    async def _transient_failure(self) -> None:
        """Counts server and network errors in a row; past OUTAGE_AFTER, every
        lane pauses (growing to a minute) until a call gets through again."""
        self._failing_in_row += 1
        if self._failing_in_row >= OUTAGE_AFTER:
            await self.lanes.pause(min(60.0, 2.0 ** (self._failing_in_row - OUTAGE_AFTER)))

    @staticmethod
    def _retry(row: Delivery, error: str) -> dict[str, Any]:
        if row.attempts >= MAX_ATTEMPTS:
            return {"status": DeliveryStatus.FAILED.value, "error": error[:256]}
        delay = RETRY_DELAYS[max(0, row.attempts - 1)]
        return {"status": DeliveryStatus.PENDING.value, "error": error[:256],
                "next_attempt_at": utcnow() + timedelta(seconds=delay)}


class RedisPacer:
    """The limits shared by every worker, kept in Redis: the global rate as
    evenly spaced slots handed out by one atomic script (so jitter between
    workers cannot bunch calls at a window's edge), one message per second per
    chat (the `limits` library's moving window), and a pause after a 429 that
    all workers observe."""

    PAUSE_KEY = "parta:pause-until"
    SLOT_KEY = "parta:next-slot"
    # The next free slot, by Redis's own clock: (wait in seconds) for the caller.
    SLOT_SCRIPT = """
    local t = redis.call('TIME')
    local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
    local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
    local slot = math.max(now, nxt)
    redis.call('SET', KEYS[1], tostring(slot + tonumber(ARGV[1])), 'EX', 60)
    return tostring(slot - now)
    """

    def __init__(self, url: str, rate: float, *, per_chat_seconds: int = 1) -> None:
        from limits import RateLimitItemPerSecond
        from limits.aio.storage import RedisStorage
        from limits.aio.strategies import MovingWindowRateLimiter
        from redis.asyncio import Redis

        self.redis = Redis.from_url(url)
        self.limiter = MovingWindowRateLimiter(
            RedisStorage("async+" + url, implementation="redispy", key_prefix="parta")
        )
        self.rate = rate
        # 15 % headroom: calls from several workers reach Telegram with some jitter.
        self.step = 1.0 / (rate * 0.85) if rate > 0 else 0.0
        self.chat_limit = RateLimitItemPerSecond(1, per_chat_seconds)
        self._slot = self.redis.register_script(self.SLOT_SCRIPT)

    async def chat_turn(self, chat_id: int | str) -> None:
        """One message per second into one chat, across workers."""
        while not await self.limiter.hit(self.chat_limit, "chat", str(chat_id)):
            await asyncio.sleep(0.05)

    async def global_slot(self) -> None:
        """The next evenly spaced slot of the shared global rate, after any pause."""
        while True:
            until = await self.redis.get(self.PAUSE_KEY)
            wait = float(until) - time.time() if until else 0.0
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        if self.step:
            wait = float(await self._slot(keys=[self.SLOT_KEY], args=[self.step]))
            if wait > 0:
                await asyncio.sleep(wait)

    async def pause(self, seconds: float) -> None:
        await self.redis.set(self.PAUSE_KEY, str(time.time() + seconds), ex=int(seconds) + 1)

    async def close(self) -> None:
        await self.redis.aclose()


@functools.lru_cache(maxsize=256)
def _parsed(name: str, payload: str) -> TelegramMethod[Any]:
    return METHODS[name].model_validate_json(payload)


class _Direct:
    """A call through the request-middleware chain it came from (Collect's pass-through)."""

    __slots__ = ("make_request", "bot")

    def __init__(self, make_request: Any, bot: Bot) -> None:
        self.make_request = make_request
        self.bot = bot

    async def __call__(self, method: TelegramMethod[Any]) -> Any:
        return await self.make_request(self.bot, method)


class _ChatPace:
    """One chat's lock and the time of its last message (loop time)."""

    __slots__ = ("lock", "last", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.last = -1e9
        self.users = 0


class _NotYet(Exception):
    """The message an edit refers to has not been sent yet."""


def _bad_request(e: TelegramBadRequest) -> dict[str, Any]:
    text = e.message.lower()
    if "message is not modified" in text:
        return {"status": DeliveryStatus.SENT.value, "sent_at": utcnow(), "error": None}
    if "chat not found" in text or "user is deactivated" in text:
        return {"status": DeliveryStatus.UNREACHABLE.value, "error": e.message[:256]}
    return {"status": DeliveryStatus.FAILED.value, "error": e.message[:256]}
