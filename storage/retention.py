"""Keeping a school's history small and cheap to read: a post's settled
copies are counted into per-post counts (`DeliveryTally`) a day after it went
out, so /stats reads a few counts instead of every copy; old, settled outbox
rows are folded (counted, if not yet) and deleted; the audit log is kept as
long as the organisation chose. Each function works in the caller's transaction
and does one bounded batch, so a year's backlog never holds the database's
write lock for long (bot/retention.py runs the batches).

The figures stay true: a post is folded whole, only when none of its rows can
still change (nothing pending, sending or held, no reminder or deadline still
ahead), a post is counted only when none of its copies can still change,
and the author's card and /stats read the tally for counted posts and the
outbox for the others (storage/repo.py).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, and_, cast, delete, exists, func, insert, null, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.models import (
    AuditEntry,
    Delivery,
    DeliveryStatus,
    DeliveryTally,
    JoinRequest,
    Membership,
    MemberState,
    Organisation,
    Post,
    PostGroup,
    PostState,
    RequestState,
)

LIVE = (DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value, DeliveryStatus.HELD.value)
SETTLED = tuple(s.value for s in DeliveryStatus if s.value not in LIVE)
# Rows that carry the post's id in `post_id` (bot/posts.broadcast: copies, reminders, renotifications).
COPY_TOPICS = ("post", "post_renotify", "event_reminder")
# Rows about a post that carry its id in `ref_id` (the card, edits, summaries).
POST_TOPICS = ("post", "post_renotify", "event_reminder", "post_edit", "post_withdraw", "post_card",
               "post_card-edit", "ack_deadline", "poll_result")


async def countable_posts(session: AsyncSession, cutoff: datetime, limit: int) -> list[int]:
    """Posts sent before `cutoff`, not yet counted, none of whose copies can still change."""
    live_copy = exists().where(Delivery.topic == "post", Delivery.post_id == Post.id, Delivery.status.in_(LIVE))
    ids = await session.scalars(
        select(Post.id)
        .where(
            Post.copies_counted_at.is_(None),
            Post.state.in_([PostState.SENT.value, PostState.WITHDRAWN.value]),
            Post.sent_at < cutoff,
            ~live_copy,
        )
        .order_by(Post.id)
        .limit(limit)
    )
    return list(ids)


async def count_posts(session: AsyncSession, post_ids: list[int], now: datetime) -> None:
    """Counts the posts' copies into the tally (the copies stay) and marks them counted."""
    if not post_ids:
        return
    copies = and_(Delivery.post_id.in_(post_ids), Delivery.topic == "post")
    # The post's own figures: copies by status.
    await session.execute(insert(DeliveryTally).from_select(
        ["org_id", "post_id", "group_id", "status", "copies"],
        select(Post.org_id, Delivery.post_id, cast(null(), Integer), Delivery.status, func.count(Delivery.id))
        .join(Post, Post.id == Delivery.post_id)
        .where(copies)
        .group_by(Post.org_id, Delivery.post_id, Delivery.status),
    ))
    # Per group, exactly as /stats counts live copies: in the group its
    # recipient belongs to among those the post was addressed to.
    await session.execute(insert(DeliveryTally).from_select(
        ["org_id", "post_id", "group_id", "status", "copies"],
        select(PostGroup.org_id, Delivery.post_id, PostGroup.group_id, Delivery.status,
               func.count(func.distinct(Delivery.id)))
        .select_from(Delivery)
        .join(PostGroup, PostGroup.post_id == Delivery.post_id)
        .join(Membership, and_(Membership.group_id == PostGroup.group_id, Membership.person_id == Delivery.person_id))
        .where(copies)
        .group_by(PostGroup.org_id, Delivery.post_id, PostGroup.group_id, Delivery.status),
    ))
    await session.execute(
        update(Post).where(Post.id.in_(post_ids)).values(copies_counted_at=now)
        .execution_options(synchronize_session=False)
    )


async def foldable_posts(session: AsyncSession, cutoff: datetime, limit: int) -> list[int]:
    """Posts sent before `cutoff` whose copies can no longer change."""
    # (By topic: one seek each in the (topic, post_id, status) index, not every copy's row.)
    live_copy = exists().where(Delivery.topic.in_(COPY_TOPICS), Delivery.post_id == Post.id,
                               Delivery.status.in_(LIVE))
    live_about = exists().where(Delivery.topic.in_(POST_TOPICS), Delivery.ref_id == Post.id,
                                Delivery.status.in_(LIVE))
    ids = await session.scalars(
        select(Post.id)
        .where(
            Post.copies_folded_at.is_(None),
            Post.state.in_([PostState.SENT.value, PostState.WITHDRAWN.value]),
            Post.sent_at < cutoff,
            # Nothing about it still ahead: a deadline, an event's reminders, a poll closing.
            or_(Post.ack_due_at.is_(None), Post.ack_due_at < cutoff),
            or_(Post.event_at.is_(None), Post.event_at < cutoff),
            or_(Post.poll_closes_at.is_(None), Post.poll_closes_at < cutoff),
            ~live_copy,
            ~live_about,
        )
        .order_by(Post.id)
        .limit(limit)
    )
    return list(ids)


async def fold_posts(session: AsyncSession, post_ids: list[int], now: datetime) -> int:
    """Counts the posts' copies into the tally (if not counted yet), deletes
    every outbox row about them, and marks them folded. Returns how many rows
    were deleted."""
    if not post_ids:
        return 0
    # Counted now, unless the daily count did it already (the copies have not changed since).
    uncounted = list(await session.scalars(
        select(Post.id).where(Post.id.in_(post_ids), Post.copies_counted_at.is_(None))))
    await count_posts(session, uncounted, now)
    # One statement for the copies and every row pointing at them (edits, the
    # card's edits): foreign keys are checked at its end. The author's card
    # itself stays (one row a post), so it still follows a late acknowledgement.
    result = await session.execute(
        delete(Delivery)
        .where(or_(Delivery.post_id.in_(post_ids),
                   and_(Delivery.topic.in_(POST_TOPICS), Delivery.ref_id.in_(post_ids))),
               ~and_(Delivery.topic == "post_card", Delivery.edit_of_id.is_(None)))
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(Post).where(Post.id.in_(post_ids)).values(copies_folded_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


async def prune_settled(session: AsyncSession, cutoff: datetime, limit: int) -> int:
    """Deletes up to `limit` settled rows created before `cutoff` that are not
    about a post (answers, reminders, menus, digests) and that nothing still
    needs: no row points at them, and a card to admins is kept while what it
    asks about (a join request, a teacher's verification) is still open."""
    referrer = aliased(Delivery)
    open_request = exists().where(JoinRequest.id == Delivery.ref_id, JoinRequest.state == RequestState.PENDING)
    open_verification = exists().where(Membership.id == Delivery.ref_id,
                                       Membership.state == MemberState.UNVERIFIED)
    ids = list(await session.scalars(
        select(Delivery.id)
        .where(
            Delivery.created_at < cutoff,
            Delivery.status.in_(SETTLED),
            Delivery.post_id.is_(None),
            Delivery.topic.not_in(POST_TOPICS) | Delivery.topic.is_(None),
            ~exists().where(referrer.edit_of_id == Delivery.id),
            ~and_(Delivery.topic == "join_request", open_request),
            ~and_(Delivery.topic == "verify", open_verification),
        )
        .order_by(Delivery.id)
        .limit(limit)
    ))
    if not ids:
        return 0
    result = await session.execute(
        delete(Delivery).where(Delivery.id.in_(ids)).execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


async def audit_cutoffs(session: AsyncSession) -> list[tuple[int, int]]:
    """(organisation, months its audit log is kept)."""
    rows = await session.execute(select(Organisation.id, Organisation.audit_keep_months))
    return [(org_id, months) for org_id, months in rows]


async def prune_audit(session: AsyncSession, org_id: int, before: datetime, limit: int) -> int:
    ids = list(await session.scalars(
        select(AuditEntry.id).where(AuditEntry.org_id == org_id, AuditEntry.created_at < before)
        .order_by(AuditEntry.created_at).limit(limit)
    ))
    if not ids:
        return 0
    result = await session.execute(
        delete(AuditEntry).where(AuditEntry.id.in_(ids)).execution_options(synchronize_session=False)
    )
    return result.rowcount or 0
