"""The outbox: what is sent, what is retried, what is never retried, and the
unit of work that makes a row exist only if its update committed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from aiogram.methods import EditMessageText, SendMessage
from sqlalchemy import select, update

import asyncio

from bot.outbox import MAX_ATTEMPTS, OUTAGE_AFTER, RETRY_DELAYS, LanePacer, enqueue, settle_cards
from storage.models import Delivery, Group, utcnow
from storage.repo import Repo
from tests.conftest import ADMIN
from tests.flows import setup_org, to_english
from tests.harness import Harness, only, texts


async def add(app: Harness, chat_id: int, text: str = "hi", **kw) -> int:  # type: ignore[no-untyped-def]
    async with app.session_maker.begin() as s:
        row = enqueue(Repo(s), chat_id, SendMessage(chat_id=chat_id, text=text), org_id=None, **kw)
        await s.flush()
        return row.id


async def row(app: Harness, row_id: int) -> Delivery:
    async with app.session_maker() as s:
        return await s.get(Delivery, row_id)  # type: ignore[return-value]


async def make_due(app: Harness) -> None:
    async with app.session_maker.begin() as s:
        await s.execute(update(Delivery).values(next_attempt_at=utcnow() - timedelta(seconds=1)))


async def test_sent_rows_record_the_message_id(app: Harness) -> None:
    rid = await add(app, 77)
    calls = await app.flush()
    assert [c.chat_id for c in only(calls, SendMessage)] == [77]
    r = await row(app, rid)
    assert (r.status, r.message_id, r.attempts) == ("sent", 1000, 1)
    assert await app.flush() == []  # sent once, never again


async def test_blocked_user_is_unreachable_and_never_retried(app: Harness) -> None:
    rid = await add(app, 77)
    app.session.fail_next("sendMessage", 403, "Forbidden: bot was blocked by the user")
    await app.flush()
    await make_due(app)
    assert await app.flush() == []
    r = await row(app, rid)
    assert r.status == "unreachable" and "blocked" in (r.error or "")


async def test_chat_not_found_is_unreachable(app: Harness) -> None:
    rid = await add(app, 77)
    app.session.fail_next("sendMessage", 400, "Bad Request: chat not found")
    await app.flush()
    assert (await row(app, rid)).status == "unreachable"


async def test_server_errors_retry_with_backoff_then_fail(app: Harness) -> None:
    rid = await add(app, 77)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        app.session.fail_next("sendMessage", 502, "Bad Gateway")
        await app.flush()
        r = await row(app, rid)
        assert r.attempts == attempt
        if attempt < MAX_ATTEMPTS:
            assert r.status == "pending" and r.next_attempt_at > utcnow()
            assert await app.flush() == []  # not due yet: the backoff holds
            await make_due(app)
    assert (await row(app, rid)).status == "failed"


async def test_the_first_retry_of_a_server_error_comes_soon_and_later_ones_wait_longer(app: Harness) -> None:
    rid = await add(app, 77)
    waits = []
    for _attempt in range(3):
        app.session.fail_next("sendMessage", 502, "Bad Gateway")
        await app.flush()
        r = await row(app, rid)
        waits.append((r.next_attempt_at - utcnow()).total_seconds())
        await make_due(app)
    # half a second (a hiccup), then 2 s, then 8 s: a broadcast does not trail
    # behind a few unlucky copies, and an outage is waited out
    assert 0 < waits[0] <= RETRY_DELAYS[0] < waits[1] <= RETRY_DELAYS[1] < waits[2] <= RETRY_DELAYS[2]
    assert sum(RETRY_DELAYS) >= 10 * 60  # the last attempt is ten minutes or more after the first


async def test_a_retry_goes_before_the_first_attempts_of_its_lane() -> None:
    pacer = LanePacer(rate=50)
    order: list[str] = []

    async def take(name: str, lane: int, retry: bool = False) -> None:
        await pacer.acquire(lane, retry=retry)
        order.append(name)

    first = asyncio.create_task(take("busy", 2))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(take(f"copy{i}", 2)) for i in range(3)]
    await asyncio.sleep(0)
    waiting.append(asyncio.create_task(take("retry", 2, retry=True)))
    waiting.append(asyncio.create_task(take("answer", 0)))
    await asyncio.gather(first, *waiting)
    await pacer.close()
    # the person pressing a button first, then the retried copy, then the rest in order
    assert order == ["busy", "answer", "retry", "copy0", "copy1", "copy2"]


async def test_many_server_errors_in_a_row_pause_every_lane(app: Harness) -> None:
    ids = [await add(app, 100 + i) for i in range(OUTAGE_AFTER - 1)]
    for _ in ids:
        app.session.fail_next("sendMessage", 502, "Bad Gateway")
    await app.flush()
    assert app.outbox.lanes.paused_for() == 0  # a few hiccups: no pause
    assert [(await row(app, i)).status for i in ids] == ["pending"] * len(ids)
    last = await add(app, 200)
    app.session.fail_next("sendMessage", 502, "Bad Gateway")
    await app.flush()
    # that many in a row, none through: Telegram is down, so every lane waits
    assert app.outbox.lanes.paused_for() > 0
    assert (await row(app, last)).status == "pending"


async def test_a_retry_after_succeeds(app: Harness) -> None:
    rid = await add(app, 77)
    app.session.fail_next("sendMessage", 500, "Internal Server Error")
    await app.flush()
    await make_due(app)
    await app.flush()
    r = await row(app, rid)
    assert (r.status, r.attempts, r.error) == ("sent", 2, None)


async def test_429_waits_retry_after_without_spending_an_attempt(app: Harness) -> None:
    rid = await add(app, 77)
    app.session.fail_next("sendMessage", 429, "Too Many Requests: retry after 7", retry_after=7)
    await app.flush()
    r = await row(app, rid)
    assert r.status == "pending" and r.attempts == 0
    assert timedelta(seconds=5) < r.next_attempt_at - utcnow() <= timedelta(seconds=7)


async def test_rows_left_sending_by_a_crash_are_sent_again(app: Harness) -> None:
    rid = await add(app, 77)
    async with app.session_maker.begin() as s:
        await s.execute(update(Delivery).values(status="sending", attempts=1))
    assert await app.flush() == []  # `sending` is never taken for `sent`…
    await app.outbox.recover()  # …and at start-up it is sent again
    await app.flush()
    assert (await row(app, rid)).status == "sent"


async def test_card_edits_wait_for_the_card_and_pending_cards_are_cancelled(app: Harness) -> None:
    sent_card = await add(app, 77, "card", topic="t", ref_id=5)
    await app.flush()
    pending_card = await add(app, 78, "card", topic="t", ref_id=5)
    async with app.session_maker.begin() as s:
        await settle_cards(Repo(s), "t", 5, {77: "decided", 78: "decided"})
    calls = await app.flush()
    assert [(type(c).__name__, c.chat_id) for c in calls] == [("EditMessageText", 77)]
    assert only(calls, EditMessageText)[0].message_id == 1000
    assert (await row(app, pending_card)).status == "cancelled"
    assert (await row(app, sent_card)).status == "sent"


async def test_message_not_modified_counts_as_done(app: Harness) -> None:
    await add(app, 77, "card", topic="t", ref_id=5)
    await app.flush()
    async with app.session_maker.begin() as s:
        await settle_cards(Repo(s), "t", 5, "decided")
    app.session.fail_next("editMessageText", 400, "Bad Request: message is not modified: specified new message content and reply markup are exactly the same")
    await app.flush()
    async with app.session_maker() as s:
        edit = (await s.scalars(select(Delivery).where(Delivery.method == "editMessageText"))).one()
    assert edit.status == "sent"


async def test_an_update_that_fails_leaves_nothing_behind_and_the_user_is_answered(
    app: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await setup_org(app)
    await to_english(app, ADMIN)
    original = Repo.add_group

    async def broken(self: Repo, org_id: int, title: str) -> Group:
        await original(self, org_id, title)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Repo, "add_group", broken)
    await app.send(ADMIN, "/groups")
    await app.press(ADMIN, "grp:new:0")
    calls = await app.send(ADMIN, "Радуга")
    assert "something went wrong" in texts(calls)[0]
    async with app.session_maker() as s:
        assert (await s.scalars(select(Group.title).where(Group.title == "Радуга"))).all() == []


async def test_a_chats_next_message_starts_a_whole_interval_after_telegram_answered_the_last(
    app: Harness, session_maker  # type: ignore[no-untyped-def]
) -> None:
    """Telegram counts a call when it arrives, which may be late after we sent it
    (a busy machine, a slow connection): the interval counts from the answer, so
    a slow first call cannot bring the second within a second of it."""
    from bot.outbox import Outbox

    loop = asyncio.get_running_loop()
    inner = app.session.make_request
    spans: list[tuple[str, float, float]] = []

    async def slow(bot, method, timeout=None):  # type: ignore[no-untyped-def]
        start = loop.time()
        if getattr(method, "text", "") == "first":
            await asyncio.sleep(0.5)  # it took a while to get there
        result = await inner(bot, method, timeout)
        spans.append((method.text, start, loop.time()))  # type: ignore[attr-defined]
        return result

    app.session.make_request = slow  # type: ignore[method-assign]
    outbox = Outbox(session_maker, app.bot, rate=0, per_chat_interval=0.3)
    await add(app, 77, "first")
    await add(app, 77, "second")
    await outbox.flush()
    (_, _, first_answered), (_, second_started, _) = sorted(spans, key=lambda s: s[1])
    assert [s[0] for s in sorted(spans, key=lambda s: s[1])] == ["first", "second"]
    assert second_started - first_answered >= 0.3


async def test_a_row_that_sends_nothing_does_not_reset_its_chats_pace(app: Harness, session_maker) -> None:  # type: ignore[no-untyped-def]
    """An edit whose message was never sent is cancelled without a call; it must
    not make the chat look as if nothing had gone into it lately (an answer just
    sent in lane 0): the next message still keeps the interval."""
    from bot.outbox import Outbox

    loop = asyncio.get_running_loop()
    inner = app.session.make_request
    spans: list[tuple[str, float, float]] = []

    async def timed(bot, method, timeout=None):  # type: ignore[no-untyped-def]
        start = loop.time()
        result = await inner(bot, method, timeout)
        spans.append((method.text, start, loop.time()))  # type: ignore[attr-defined]
        return result

    app.session.make_request = timed  # type: ignore[method-assign]
    outbox = Outbox(session_maker, app.bot, rate=0, per_chat_interval=0.5)
    outbox.say([SendMessage(chat_id=77, text="the answer")])
    while not spans:
        await asyncio.sleep(0.01)
    gone = await add(app, 77, "never sent")
    async with app.session_maker.begin() as s:
        target = await s.get(Delivery, gone)
        target.status = "cancelled"  # type: ignore[union-attr]
        enqueue(Repo(s), 77, EditMessageText(chat_id=77, message_id=0, text="an edit of it"), org_id=None,
                edit_of=target)
    await outbox.flush()  # the edit is cancelled: no call
    assert [s[0] for s in spans] == ["the answer"]
    await add(app, 77, "next")
    await outbox.flush()
    (_, _, answered), (text, started, _) = spans
    assert text == "next" and started - answered >= 0.5
