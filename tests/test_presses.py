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
