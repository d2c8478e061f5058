"""A burst of acknowledgements: each press is answered from its own short
transaction, and the author's card follows once, from what was committed —
not rendered and replaced inside every press."""

from __future__ import annotations

from aiogram.methods import AnswerCallbackQuery, EditMessageText, SendMessage
from sqlalchemy import func, select

from bot.app import create_dispatcher
from bot.fsm import DatabaseStorage
from storage.models import Delivery, Post
from tests.harness import BOT_USER, Harness, only
from tests.test_posting import P1, P2, TEACHER, compose, copies_to, school


async def test_presses_hand_the_card_to_the_sender_which_refreshes_it_once(app: Harness, settings,  # type: ignore[no-untyped-def]
                                                                          session_maker) -> None:
    a, _ = await school(app)
    await compose(app, TEACHER, "announcement", [a], "Собрание в пятницу", students=False, ack=True)
    await app.press(TEACHER, "cmp:send:")
    sent = await app.flush()
    async with session_maker() as s:
        post = (await s.scalars(select(Post))).one()

    async def card_edits() -> int:
        async with session_maker() as s:
            return await s.scalar(select(func.count()).select_from(Delivery).where(Delivery.topic == "post_card-edit"))

    edits_before = await card_edits()
    # The real process's path: the dispatcher hands what it says, and the cards, to the sender.
    live = Harness(
        dp=create_dispatcher(settings, session_maker, outbox=app.outbox, bot_username=BOT_USER.username or "",
                             i18n=app.dp["i18n"], storage=DatabaseStorage(session_maker)),
        bot=app.bot, outbox=app.outbox, session_maker=session_maker,
    )
    live._update_ids = app._update_ids
    before = len(app.requests)
    await live.press_on(P1, copies_to(sent, P1.id)[0], f"p:ack:{post.id}")
    await live.press_on(P2, copies_to(sent, P2.id)[0], f"p:ack:{post.id}")
    assert await card_edits() == edits_before  # nothing about the card in the presses' transactions
    await app.outbox.stop()  # lets the answers leave and reports progress: the card is rendered once
    assert await card_edits() == edits_before + 1
    calls = app.requests[before:] + await app.flush()
    answered = [c.text for c in only(calls, AnswerCallbackQuery)]
    assert len(answered) == 2 and all("Acknowledged" in t or "Спасибо" in t for t in answered), answered
    card = [c for c in only(calls, EditMessageText) if c.chat_id == TEACHER.id]
    assert len(card) == 1 and "acknowledged: 2" in card[0].text, [c.text for c in card]
    assert not [c for c in only(calls, SendMessage) if c.chat_id == TEACHER.id]


async def test_callback_answers_take_no_slot_of_the_limit_and_wait_for_no_chat(session_maker) -> None:  # type: ignore[no-untyped-def]
    """At 2 calls/s, eight presses are answered at once (Telegram counts no
    message for them, and the 15 s window would not wait for a queue behind the
    limit); the messages of the same updates keep the limit and their chat's pace."""
    import asyncio
    import time

    from aiogram.methods import AnswerCallbackQuery

    from bot.outbox import Outbox
    from tests.harness import make_bot

    bot = make_bot()
    arrived: dict[str, float] = {}
    inner = bot.session.make_request

    async def stamp(b, method, timeout=None):  # type: ignore[no-untyped-def]
        key = method.callback_query_id if isinstance(method, AnswerCallbackQuery) else f"msg {method.chat_id}"
        arrived.setdefault(key, time.monotonic())
        return await inner(b, method, timeout)

    bot.session.make_request = stamp  # type: ignore[method-assign]
    outbox = Outbox(session_maker, bot, rate=2, per_chat_interval=1)
    start = time.monotonic()
    for k in range(8):
        outbox.say([AnswerCallbackQuery(callback_query_id=f"q{k}", text="Thank you!"),
                    EditMessageText(chat_id=100 + k % 2, message_id=1, text=f"copy {k}")])
    await asyncio.wait_for(asyncio.gather(*list(outbox._inflight)), 60)
    answers = [arrived[f"q{k}"] - start for k in range(8)]
    assert max(answers) < 1.0, answers
    # The edits into two chats, four each at 1/s per chat, take their time.
    assert arrived["msg 100"] - start < 1.5 and time.monotonic() - start > 2.5
    await outbox.stop()
