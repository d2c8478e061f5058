"""Retention, run by the scheduler once a day: the settled copies of posts
a day old are counted into per-post counts (/stats reads those); copies older than
`DELIVERY_KEEP_DAYS` are folded into per-post counts and deleted (the card
and /stats keep their figures), other settled outbox rows of that age are
deleted, and each organisation's audit log is cut to the months it chose
(/settings). Small batches, each its own transaction."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import retention
from storage.models import utcnow
from storage.sqlite import OFF_LOOP

log = logging.getLogger("parta.retention")

AUDIT_MONTHS = (6, 12, 18, 24, 36)  # the choices offered in /settings
POSTS_PER_BATCH = 50
ROWS_PER_BATCH = 5000
# A post's copies are counted into the tally once settled and this old (the
# copies stay, for the card's "who has not acknowledged", until folded).
COUNT_AFTER = timedelta(days=1)


def months_before(moment: datetime, months: int) -> datetime:
    """The same day and time `months` calendar months earlier (the 31st becomes the month's last day)."""
    year, month = divmod(moment.year * 12 + moment.month - 1 - months, 12)
    month += 1
    day = moment.day
    while True:
        try:
            return moment.replace(year=year, month=month, day=day)
        except ValueError:
            day -= 1


@dataclass
class Outcome:
    posts_counted: int = 0
    posts_folded: int = 0
    rows_deleted: int = 0
    audit_deleted: int = 0
    per_org: dict[int, int] = field(default_factory=dict)


class Retention:
    def __init__(self, session_maker: async_sessionmaker, *, keep_copies: timedelta,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.session_maker = session_maker
        self.keep_copies = keep_copies
        self.clock = clock

    @asynccontextmanager
    async def _batch(self) -> AsyncIterator[AsyncSession]:
        """One batch, one transaction; on SQLite off the event loop (it writes
        thousands of rows: storage.sqlite.OFF_LOOP)."""
        async with self.session_maker.begin() as session:
            await session.connection(execution_options={OFF_LOOP: True})
            yield session

    async def run(self) -> Outcome:
        now = self.clock()
        cutoff = now - self.keep_copies
        out = Outcome()
        # Settled copies of the last days counted once, for /stats (they stay until folded).
        while True:
            async with self._batch() as session:
                posts = await retention.countable_posts(session, now - COUNT_AFTER, POSTS_PER_BATCH)
                await retention.count_posts(session, posts, now)
            out.posts_counted += len(posts)
            if len(posts) < POSTS_PER_BATCH:
                break
        while True:
            async with self._batch() as session:
                posts = await retention.foldable_posts(session, cutoff, POSTS_PER_BATCH)
                out.rows_deleted += await retention.fold_posts(session, posts, now)
            out.posts_folded += len(posts)
            if len(posts) < POSTS_PER_BATCH:
                break
        # Rows pointing at others go first; what they pointed at goes in the next round.
        while True:
            async with self._batch() as session:
                n = await retention.prune_settled(session, cutoff, ROWS_PER_BATCH)
            out.rows_deleted += n
            if n == 0:
                break
        async with self.session_maker() as session:
            orgs = await retention.audit_cutoffs(session)
        for org_id, months in orgs:
            before = months_before(now, months)
            while True:
                async with self._batch() as session:
                    n = await retention.prune_audit(session, org_id, before, ROWS_PER_BATCH)
                out.audit_deleted += n
                out.per_org[org_id] = out.per_org.get(org_id, 0) + n
                if n < ROWS_PER_BATCH:
                    break
        if out.posts_counted or out.posts_folded or out.rows_deleted or out.audit_deleted:
            log.info("retention: %s post(s) counted, %s folded, %s outbox row(s) and %s audit entr(y/ies) deleted",
                     out.posts_counted, out.posts_folded, out.rows_deleted, out.audit_deleted)
        return out
