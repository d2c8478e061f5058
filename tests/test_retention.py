"""Retention: old post copies folded into per-post counts (the author's card
and /stats show the same figures before and after), other old settled outbox
rows deleted, the audit log cut to the organisation's choice, and what stays
still found by /mydata."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

from aiogram.methods import AnswerCallbackQuery, EditMessageText, SendDocument, SendMessage
from sqlalchemy import func, select

from bot.retention import Retention, months_before
from storage.models import AuditEntry, Delivery, DeliveryTally, Organisation, Post, utcnow
from tests.conftest import ADMIN
from tests.flows import to_english
from tests.harness import Harness, only, texts
from tests.test_oversight import poll_vote, post_with_ack
from tests.test_posting import P1, P2, TEACHER, compose, school


async def card_text(app: Harness, post_id: int) -> str:
    """The author's card as Refresh shows it."""
    calls = await app.press(TEACHER, f"pc:refresh:{post_id}")
    [edit] = only(calls, EditMessageText)
    return edit.text


async def stats(app: Harness) -> tuple[str, list[dict[str, str]]]:
    [message] = only(await app.send(ADMIN, "/stats"), SendMessage)
    calls = await app.press_on(ADMIN, message, "st:csv")
    raw = only(calls, SendDocument)[0].document.data  # type: ignore[union-attr]
    return message.text, list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))


async def count(app: Harness, model: type, *where: object) -> int:
    async with app.session_maker() as s:
        return await s.scalar(select(func.count()).select_from(model).where(*where)) or 0


async def a_history(app: Harness) -> list[int]:
    """Posts of every shape: with acknowledgements, one to two groups, a poll,
    one copy that could not be delivered."""
    a, b = await school(app)
    await to_english(app, ADMIN)
    acked = await post_with_ack(app, a)
    await compose(app, TEACHER, "announcement", [a], "Ещё новость", students=False)
    await app.press(TEACHER, "cmp:send:")
    app.session.fail_next("sendMessage", 403, "Forbidden: bot was blocked by the user", chat_id=P1.id)
    await app.flush()
    await compose(app, ADMIN, "announcement", [a, b], "Для двух классов", students=False)
    await app.press(ADMIN, "cmp:send:")
    await app.flush()
    await poll_vote(app, a)
    await app.flush()
    async with app.session_maker() as s:
        posts = list((await s.scalars(select(Post.id).order_by(Post.id))).all())
    assert len(posts) == 4 and posts[0] == acked
    app.clear()
    return posts


async def test_figures_before_and_after_folding_are_equal(app: Harness) -> None:
    posts = await a_history(app)
    teacher_posts = [p for p in posts if p != posts[2]]
    cards = {p: await card_text(app, p) for p in teacher_posts}
    assert "✅ delivered: 2" in cards[posts[0]] and "👌 acknowledged: 1" in cards[posts[0]]
    assert "🚫 not reachable: 1" in cards[posts[1]]
    before = await stats(app)
    assert "not reachable 1" in before[0]
    copies = await count(app, Delivery, Delivery.topic == "post")
    assert copies == 2 + 2 + 3 + 3  # ack post, blocked post, two groups' parents, the poll (with the student)

    # Not yet old: nothing changes.
    assert (await Retention(app.session_maker, keep_copies=timedelta(days=90)).run()).posts_folded == 0
    later = utcnow() + timedelta(days=91)
    outcome = await Retention(app.session_maker, keep_copies=timedelta(days=90), clock=lambda: later).run()
    assert outcome.posts_folded == 4 and outcome.rows_deleted > copies
    assert await count(app, Delivery, Delivery.topic == "post") == 0
    assert await count(app, Delivery, Delivery.post_id.is_not(None)) == 0
    # Only the authors' cards stay (they still follow), and nothing is pending.
    async with app.session_maker() as s:
        left = (await s.execute(select(Delivery.topic, Delivery.status))).all()
    assert {topic for topic, _status in left} == {"post_card"}
    assert await count(app, DeliveryTally) > 0
    assert await count(app, Post, Post.copies_folded_at.is_not(None)) == 4

    assert {p: await card_text(app, p) for p in teacher_posts} == cards
    assert await stats(app) == before
    # Folding again changes nothing.
    again = await Retention(app.session_maker, keep_copies=timedelta(days=90), clock=lambda: later).run()
    assert (again.posts_folded, again.rows_deleted) == (0, 0)
    assert await stats(app) == before

    # A late acknowledgement of an old post still counts, and the card follows.
    async with app.session_maker() as s:
        card = await s.scalar(select(Delivery).where(Delivery.topic == "post_card", Delivery.ref_id == posts[0]))
    calls = await app.press(P2, f"p:ack:{posts[0]}:0")
    assert only(calls, AnswerCallbackQuery)[0].text == "Спасибо! Ознакомление отмечено."
    edits = [c for c in only(await app.flush(), EditMessageText) if c.chat_id == TEACHER.id]
    assert edits and "👌 acknowledged: 2" in edits[-1].text and edits[-1].message_id == card.message_id  # type: ignore[union-attr]
    assert "acknowledged: 100% of those asked" in (await stats(app))[0]
    # Who has not acknowledged is no longer known: said so, not "everyone has".
    calls = await app.press(TEACHER, f"pc:pending:{posts[0]}")
    [alert] = only(calls, AnswerCallbackQuery)
    assert alert.show_alert and "no longer known" in (alert.text or "")
    # Someone who was never in the audience still cannot press it.
    calls = await app.press(ADMIN, f"p:ack:{posts[0]}:0")
    assert only(calls, AnswerCallbackQuery)[0].text == "⛔ This button is not for you."


async def test_settled_copies_are_counted_a_day_later_and_kept_until_folded(app: Harness) -> None:
    posts = await a_history(app)
    teacher_posts = [p for p in posts if p != posts[2]]
    cards = {p: await card_text(app, p) for p in teacher_posts}
    before = await stats(app)
    copies = await count(app, Delivery, Delivery.topic == "post")
    # Today's posts are not counted yet.
    assert (await Retention(app.session_maker, keep_copies=timedelta(days=90)).run()).posts_counted == 0
    assert await count(app, DeliveryTally) == 0
    # Two days on: counted, the copies still there.
    soon = utcnow() + timedelta(days=2)
    outcome = await Retention(app.session_maker, keep_copies=timedelta(days=90), clock=lambda: soon).run()
    assert (outcome.posts_counted, outcome.posts_folded) == (4, 0)
    assert await count(app, Post, Post.copies_counted_at.is_not(None)) == 4
    assert await count(app, Delivery, Delivery.topic == "post") == copies
    tallies = await count(app, DeliveryTally)
    assert tallies > 0
    assert await stats(app) == before
    assert {p: await card_text(app, p) for p in teacher_posts} == cards
    # /stats and the card read the count, not the copies: a copy changed behind
    # their back (nothing in the bot changes a settled copy) does not show.
    async with app.session_maker.begin() as s:
        copy = await s.scalar(select(Delivery).where(Delivery.post_id == posts[0], Delivery.topic == "post",
                                                     Delivery.status == "sent").limit(1))
        copy.status = "unreachable"  # type: ignore[union-attr]
    assert await stats(app) == before
    assert await card_text(app, posts[0]) == cards[posts[0]]
    # Still findable by person while kept: /mydata counts them all, copies and
    # rows about no post (a weekly reminder).
    async with app.session_maker.begin() as s:
        from storage.models import Person as PersonRow

        p1 = (await s.scalars(select(PersonRow.id).where(PersonRow.telegram_id == P1.id))).one()
        org_id = (await s.scalars(select(Organisation.id))).one()
        s.add(Delivery(org_id=org_id, chat_id=P1.id, method="sendMessage", payload='{"text":"⏰"}',
                       topic="weekly_reminder", ref_id=1, person_id=p1, status="sent"))
    mine = await count(app, Delivery, Delivery.person_id == p1)
    assert mine > await count(app, Delivery, Delivery.person_id == p1, Delivery.post_id.is_(None)) == 1
    data = json.loads(only(await app.send(P1, "/mydata"), SendDocument)[0].document.data)  # type: ignore[union-attr]
    assert data["messages_delivered_to_you"] == mine
    # Folded later: not counted twice.
    later = utcnow() + timedelta(days=91)
    outcome = await Retention(app.session_maker, keep_copies=timedelta(days=90), clock=lambda: later).run()
    assert (outcome.posts_counted, outcome.posts_folded) == (0, 4)
    assert await count(app, DeliveryTally) == tallies
    assert await stats(app) == before


async def test_forget_reaches_the_copies_still_kept_and_rows_about_no_post(app: Harness) -> None:
    await a_history(app)
    async with app.session_maker.begin() as s:
        from storage.models import Person as PersonRow

        p2 = (await s.scalars(select(PersonRow.id).where(PersonRow.telegram_id == P2.id))).one()
        org_id = (await s.scalars(select(Organisation.id))).one()
        s.add(Delivery(org_id=org_id, chat_id=P2.id, method="sendMessage", payload='{"text":"⏰"}',
                       topic="weekly_reminder", ref_id=1, person_id=p2, status="sent"))
    assert await count(app, Delivery, Delivery.person_id == p2, Delivery.post_id.is_not(None)) > 0
    await app.send(P2, "/forget")
    await app.press(P2, "fg:yes")
    assert await count(app, Delivery, Delivery.person_id == p2) == 0


async def test_live_and_recent_copies_are_not_folded(app: Harness) -> None:
    posts = await a_history(app)
    # One copy of the first post still waits (a retry): that post is not folded.
    async with app.session_maker.begin() as s:
        copy = await s.scalar(select(Delivery).where(Delivery.post_id == posts[0], Delivery.topic == "post").limit(1))
        copy.status = "pending"  # type: ignore[union-attr]
        copy.next_attempt_at = utcnow() + timedelta(days=365)  # type: ignore[union-attr]
    later = utcnow() + timedelta(days=91)
    outcome = await Retention(app.session_maker, keep_copies=timedelta(days=90), clock=lambda: later).run()
    assert outcome.posts_folded == 3 and outcome.posts_counted == 3
    assert await count(app, Post, Post.id == posts[0], Post.copies_counted_at.is_(None)) == 1
    assert await count(app, Delivery, Delivery.post_id == posts[0]) == 2
    assert await count(app, DeliveryTally, DeliveryTally.post_id == posts[0]) == 0


async def test_the_audit_log_is_kept_as_long_as_the_organisation_chose(app: Harness) -> None:
    await school(app)
    await to_english(app, ADMIN)
    now = utcnow()
    async with app.session_maker.begin() as s:
        org_id = (await s.scalars(select(Organisation.id))).one()
        admin_id = (await s.scalars(select(AuditEntry.actor_id).where(AuditEntry.actor_id.is_not(None)))).first()
        for months, action in ((20, "old.twenty"), (17, "old.seventeen"), (7, "old.seven")):
            s.add(AuditEntry(org_id=org_id, actor_id=admin_id, action=action, created_at=months_before(now, months)))
    total = await count(app, AuditEntry)
    outcome = await Retention(app.session_maker, keep_copies=timedelta(days=90)).run()
    assert outcome.audit_deleted == 1  # the default: 18 months
    assert await count(app, AuditEntry) == total - 1 and await count(app, AuditEntry, AuditEntry.action == "old.twenty") == 0
    # The administrator chooses 6 months in /settings.
    [view] = only(await app.send(ADMIN, "/settings"), SendMessage)
    assert "The audit log is kept for 18 months; older entries are deleted." in view.text
    calls = await app.press_on(ADMIN, view, "set:audit:0")
    assert "The audit log is kept for 6 months; older entries are deleted." in texts(calls)[-1]
    assert "☑️ Audit 6 mo." in str(only(calls, EditMessageText)[-1].reply_markup)
    async with app.session_maker() as s:
        assert (await s.get(Organisation, org_id)).audit_keep_months == 6  # type: ignore[union-attr]
    assert (await Retention(app.session_maker, keep_copies=timedelta(days=90)).run()).audit_deleted == 2
    assert await count(app, AuditEntry, AuditEntry.action.like("old.%")) == 0
    assert await count(app, AuditEntry, AuditEntry.action == "org.audit_keep_months") == 1
    # Not for a parent, even with a forged button.
    calls = await app.press(P1, "set:audit:4")
    assert only(calls, AnswerCallbackQuery)[0].show_alert
    async with app.session_maker() as s:
        assert (await s.get(Organisation, org_id)).audit_keep_months == 6  # type: ignore[union-attr]


async def test_mydata_covers_what_is_kept_and_forget_clears_it(app: Harness) -> None:
    posts = await a_history(app)
    later = utcnow() + timedelta(days=91)
    await Retention(app.session_maker, keep_copies=timedelta(days=90), clock=lambda: later).run()
    # An admin renamed P1 (the audit entry carries both names).
    async with app.session_maker.begin() as s:
        from storage.models import Person as PersonRow

        p1 = (await s.scalars(select(PersonRow.id).where(PersonRow.telegram_id == P1.id))).one()
        org_id = (await s.scalars(select(Organisation.id))).one()
        s.add(AuditEntry(org_id=org_id, actor_id=None, action="member.rename", subject=f"person:{p1}",
                         detail="Мария Иванова → Мария Петрова"))
    data = json.loads(only(await app.send(P1, "/mydata"), SendDocument)[0].document.data)  # type: ignore[union-attr]
    assert [x["post"] for x in data["acknowledged_posts"]] == [posts[0]]
    assert data["audit_entries_about_you"][0]["detail"] == "Мария Иванова → Мария Петрова"
    assert data["messages_delivered_to_you"] == await count(app, Delivery, Delivery.person_id == p1)
    admin_data = json.loads(only(await app.send(ADMIN, "/mydata"), SendDocument)[0].document.data)  # type: ignore[union-attr]
    assert "group.create" in {e["action"] for e in admin_data["admin_actions"]}
    await app.send(P1, "/forget")
    await app.press(P1, "fg:yes")
    async with app.session_maker() as s:
        details = (await s.scalars(select(AuditEntry.detail).where(AuditEntry.subject == f"person:{p1}"))).all()
    assert details and all(d is None for d in details)


async def test_the_scheduler_runs_retention_daily(app: Harness) -> None:
    from bot.scheduler import Scheduler

    posts = await a_history(app)
    later = utcnow() + timedelta(days=91)
    retention = Retention(app.session_maker, keep_copies=timedelta(days=90), clock=lambda: later)
    scheduler = Scheduler(app.session_maker, app.scheduler.i18n, "ru", lambda: None, retention=retention)
    await scheduler.start()
    try:
        if scheduler.catching_up is not None:  # the catch-up shares the test's one connection: let it finish
            await scheduler.catching_up
        assert scheduler.leading
        job = scheduler.aps.get_job("retention")  # type: ignore[union-attr]
        assert job is not None and str(job.trigger) == "cron[hour='2', minute='40']"
        await job.func()  # what the clock runs at 02:40 UTC
    finally:
        await scheduler.stop()
    assert await count(app, Post, Post.copies_folded_at.is_not(None)) == len(posts)


# -- a long history: what the outbox's indexes must give ---------------------------------------


def test_no_outbox_index_is_keyed_by_recipient_alone() -> None:
    """A broadcast's rows go to a thousand people at once: an index led by
    person_id takes a page write per recipient, spread over a year of rows
    (bench/history.py measured the enqueue at 2-3x an empty database's).
    Only the partial index of held copies may lead with it."""
    for index in Delivery.__table__.indexes:
        if [c.name for c in index.columns][0] == "person_id":
            assert index.name == "ix_delivery_held"
            assert str(index.dialect_options["sqlite"]["where"]) == "status = 'held'"
            assert str(index.dialect_options["postgresql"]["where"]) == "status = 'held'"


async def test_the_outbox_statements_read_small_ranges_on_sqlite(app: Harness) -> None:
    """EXPLAIN QUERY PLAN of the statements a long history could slow: each a
    search in an index, none a scan of the outbox."""
    from sqlalchemy.dialects import sqlite

    from bot.outbox import claimable
    from storage.models import DeliveryStatus, status_is
    from storage.repo import _person_rows

    async with app.session_maker() as s:
        if s.bind.dialect.name != "sqlite":
            return  # PostgreSQL's plans depend on its statistics; bench/history.py prints them

        async def plan(stmt: object) -> str:
            compiled = stmt.compile(dialect=sqlite.dialect())  # type: ignore[attr-defined]
            params = tuple(compiled.params[k] for k in compiled.positiontup)  # type: ignore[union-attr]
            conn = await s.connection()
            result = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), params)
            return " / ".join(str(r[-1]) for r in result.all())

        claim = await plan(claimable(utcnow(), 16))
        assert "SEARCH delivery USING INDEX ix_delivery_due (status=? AND next_attempt_at<?)" in claim, claim
        held = await plan(select(Delivery.id).where(Delivery.person_id == 5, status_is(DeliveryStatus.HELD)))
        assert "USING INDEX ix_delivery_held (person_id=?)" in held, held
        for where in _person_rows(5):
            mine = await plan(select(func.count(Delivery.id)).where(where))
            assert "SEARCH delivery USING COVERING INDEX ix_delivery_post_person (post_id=? AND person_id=?)" in mine, mine
            assert "SCAN delivery" not in mine, mine
