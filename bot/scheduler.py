"""The clock. The database holds everything that falls due (`DueItem`);
APScheduler 3 only wakes us at the next due moment, so nothing depends on its
in-memory job store, its misfire rules or pickled jobs.

An item is claimed by a compare-and-swap (pending → done) and turned into
outbox rows in the same transaction: it fires once. What fell due while the
bot was down fires at start-up if it is within the grace period, otherwise it
is skipped and logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo
from typing import Any

from aiogram import html
from aiogram.methods import SendMessage
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import async_sessionmaker

from bot import policy, rights
from bot.actor import Actor
from bot.dates import day_label, in_time
from bot.i18n import in_locale
from bot.outbox import enqueue
from bot.posts import (
    DigestCb,
    audience_text,
    broadcast,
    card,
    follow_edit,
    kind_label,
    local,
    notify,
    plain_text,
    publish,
)
from bot.retention import Retention
from bot.timeline import next_weekly_reminder, quiet_until
from storage.models import (
    DeliveryStatus,
    DueItem,
    DueKind,
    DueState,
    PostKind,
    PostState,
    Role,
    utcnow,
)
from storage.repo import Repo

log = logging.getLogger("parta.scheduler")
BATCH = 50  # items per transaction: small, so what fired becomes visible soon
# …then, while a backlog remains (a burst of reminders due at the same
# instant), larger ones: each transaction has a fixed cost (the claim, the
# look-ups, the inserts) that 50 items do not repay (bench/reminders.py).
BURST_BATCH = 400
DIGEST_SIZE = 20  # posts per digest message, well within 4,096 characters


class Scheduler:
    def __init__(
        self,
        session_maker: async_sessionmaker,
        i18n: I18n,
        default_locale: str,
        wake_outbox: Callable[[], None],
        *,
        grace: timedelta = timedelta(hours=6),
        clock: Callable[[], datetime] = utcnow,
        worker: str = "main",
        lease: timedelta = timedelta(seconds=30),
        admin_ids: frozenset[int] = frozenset(),
        retention: Retention | None = None,
        burst_batch: int = BURST_BATCH,
    ) -> None:
        self.admin_ids = admin_ids
        self.session_maker = session_maker
        self.i18n = i18n
        self.default_locale = default_locale
        self.wake_outbox = wake_outbox
        self.grace = grace
        self.clock = clock
        self.aps: AsyncIOScheduler | None = None
        self._lock = asyncio.Lock()
        # Several workers: one of them runs the clock, holding a lease it renews;
        # when it dies the lease runs out and another takes over.
        self.worker = worker
        self.lease = lease
        self.leading = worker == "main"  # alone (tests, benches): always; workers: by lease
        self._cache: _BatchCache | None = None
        self.retention = retention
        self.burst_batch = burst_batch
        self.catching_up: asyncio.Future[None] | None = None  # the catch-up after taking the lease

    # -- the clock --------------------------------------------------------------------

    async def start(self) -> None:
        self.leading = False
        self.aps = AsyncIOScheduler(timezone=timezone.utc)
        self.aps.start()
        # The lease is renewed at a third of its length; a sweep every 30 s is the
        # safety net when the database gains items from elsewhere (another worker, a restore).
        self.aps.add_job(self._lead, IntervalTrigger(seconds=self.lease.total_seconds() / 3), id="lease",
                         coalesce=True, max_instances=1, misfire_grace_time=None)
        self.aps.add_job(self._tick, IntervalTrigger(seconds=30), id="sweep", coalesce=True,
                         max_instances=1, misfire_grace_time=None)
        if self.retention is not None:
            # Once a day, at night in Europe (02:40 UTC).
            self.aps.add_job(self._retain, CronTrigger(hour=2, minute=40, timezone=timezone.utc), id="retention",
                             coalesce=True, max_instances=1, misfire_grace_time=None)
        await self._lead()

    async def _lead(self) -> None:
        """Takes or renews the lease; the first time it is ours, catch up and arm."""
        now = self.clock()
        try:
            async with self.session_maker.begin() as session:
                repo = Repo(session)
                held = await repo.take_lease("scheduler", self.worker, now + self.lease, now)
                if held:
                    await repo.prune_processed_updates(now - timedelta(days=2))
        except Exception:
            log.exception("scheduler: could not renew the lease")
            held = False
        if held and not self.leading:
            log.info("scheduler: %s runs the clock", self.worker)
            self.leading = True
            # Catch up on what fell due while nobody ran it, without holding up the lease job.
            self.catching_up = asyncio.ensure_future(self._tick())
        elif not held and self.leading:
            log.warning("scheduler: %s lost the lease", self.worker)
            self.leading = False

    async def _retain(self) -> None:
        """The daily clean-up, by the worker that runs the clock."""
        if not self.leading or self.retention is None:
            return
        try:
            await self.retention.run()
        except Exception:
            log.exception("scheduler: retention failed; it runs again tomorrow")

    async def stop(self) -> None:
        if self.aps is not None:
            self.aps.shutdown(wait=False)
            self.aps = None

    def wake(self) -> None:
        """After a commit that planned something: re-arm for the earliest item."""
        if self.aps is not None and self.leading:
            asyncio.ensure_future(self.arm())

    async def arm(self) -> None:
        if self.aps is None or not self.leading:
            return
        async with self.session_maker() as session:
            nxt = await Repo(session).next_due_at()
        if nxt is None:
            return
        # max_instances=2: the job re-arms itself from inside its own run.
        self.aps.add_job(self._tick, DateTrigger(run_date=max(nxt, self.clock())), id="next",
                         replace_existing=True, misfire_grace_time=None, coalesce=True, max_instances=2)

    async def _tick(self) -> None:
        """Fires what is due, again while more has fallen due meanwhile, then
        arms for the next moment in the future."""
        while self.leading:
            try:
                await self.run_due()
                async with self.session_maker() as session:
                    nxt = await Repo(session).next_due_at()
            except Exception:
                log.exception("scheduler: run failed")
                nxt = None
            if nxt is None or nxt > self.clock():
                break
        await self.arm()

    # -- firing -------------------------------------------------------------------------

    async def run_due(self, now: datetime | None = None) -> int:
        """Fires everything due by `now`; returns how many items fired."""
        fired = 0
        limit = BATCH
        async with self._lock:
            while True:
                moment = now or self.clock()
                try:
                    count, more = await self._batch(moment, limit)
                except Exception:
                    # One bad item must not hold the others: go one by one.
                    log.exception("scheduler: a batch failed; retrying item by item")
                    count, more = await self._one_by_one(moment)
                fired += count
                if not more:
                    break
                limit = self.burst_batch
        if fired:
            self.wake_outbox()
        return fired

    async def _batch(self, now: datetime, limit: int) -> tuple[int, bool]:
        with self.i18n.context():
            async with self.session_maker.begin() as session:
                repo = Repo(session)
                # Fenced by the lease: a worker that lost it claims nothing.
                if self.worker != "main" and not await repo.take_lease(
                    "scheduler", self.worker, self.clock() + self.lease, self.clock()
                ):
                    self.leading = False
                    return 0, False
                self._cache = _BatchCache(repo)
                items = await repo.claim_due(now, limit)
                weekly = [i for i in items if i.kind == DueKind.WEEKLY_REMINDER and i.due_at >= now - self.grace]
                for item in items:
                    if item not in weekly:
                        await self._fire(repo, item, now)
                await self._weekly_reminders(repo, weekly, now)
        return sum(1 for i in items if i.state == DueState.DONE), len(items) == limit

    async def _one_by_one(self, now: datetime) -> tuple[int, bool]:
        fired = 0
        while True:
            try:
                count, more = await self._batch(now, 1)
            except Exception:
                async with self.session_maker.begin() as session:
                    [item] = await Repo(session).claim_due(now, 1) or [None]
                    if item is not None:
                        item.state = DueState.FAILED.value
                        log.error("scheduler: due item %s (%s) failed and is set aside", item.id, item.kind)
                continue
            fired += count
            if not more:
                return fired, False

    async def _fire(self, repo: Repo, item: DueItem, now: datetime) -> None:
        if item.due_at < now - self.grace:
            item.state = DueState.SKIPPED.value
            log.warning("scheduler: skipped stale %s %s due %s (%s late)", item.kind, item.ref_id,
                        item.due_at.isoformat(), now - item.due_at)
            return
        handler = {
            DueKind.EVENT_REMINDER: self._event_reminder,
            DueKind.SCHEDULED_POST: self._scheduled_post,
            DueKind.ACK_REMINDER: self._ack_reminder,
            DueKind.ACK_DEADLINE: self._ack_deadline,
            DueKind.POLL_CLOSE: self._poll_close,
            DueKind.DIGEST: self._digest,
        }[DueKind(item.kind)]
        await handler(repo, item, now)

    async def _context(self, repo: Repo, post_id: int, what: str) -> tuple[Any, Any, Any] | None:
        """The post, its organisation and its author — if the author may still
        act on it now (bot.rights.may_author): a right is checked when it takes
        effect, not when the item was planned. Otherwise nothing goes out, and
        the author (if still a member) or the admins are told."""
        post = await repo.post(post_id)
        if post is None:
            return None
        org = await repo.organisation(post.org_id)
        author = await repo.person(post.author_id) if post.author_id else None
        if org is None or author is None:
            return None
        author = await repo.person_with_memberships(author.telegram_id) or author
        if not rights.may_author(author, post, self.admin_ids):
            await self._lost_right(repo, post, org, author, what)
            return None
        return post, org, author

    async def _lost_right(self, repo: Repo, post: Any, org: Any, author: Any, what: str) -> None:
        log.warning("scheduler: %s of post %s not sent: its author %s may no longer post there",
                    what, post.id, author.id)
        if what == "scheduled post" and post.state == PostState.SCHEDULED:
            post.state = PostState.CANCELLED.value
        title = html.quote(plain_text(post.text)[:60])
        member = any(m.org_id == org.id for m in Actor.live(author))
        if member:
            chats = {author.telegram_id: author.locale or self.default_locale}
        else:
            chats = {p.telegram_id: p.locale or self.default_locale
                     for p in await repo.people_in_role(org.id, [Role.ADMIN])}
        for chat_id, locale in chats.items():
            with in_locale(locale):
                if member:
                    text = _("«{title}» was not sent: you may no longer post to its groups.").format(title=title)
                else:
                    text = _("«{title}» by {name} was not sent: its author is no longer a member allowed to "
                             "post there.").format(title=title, name=html.quote(author.display_name))
            enqueue(repo, chat_id, SendMessage(chat_id=chat_id, text=text), org_id=org.id, org=org,
                    topic="lost_right", ref_id=post.id)

    async def _event_reminder(self, repo: Repo, item: DueItem, now: datetime) -> None:
        found = await self._context(repo, item.ref_id, "event reminder")
        if found is None:
            return
        post, org, author = found
        if post.state != PostState.SENT or post.event_at is None or post.event_at <= now:
            return
        people = await repo.post_recipients(post, [g.group_id for g in post.groups])
        # The copy under the prefix shows the date and time; the prefix says how soon
        # (bot.policy holds it for quiet hours only if they end well before the event).
        hold = policy.not_before(org, "event_reminder", now=now, event_at=post.event_at)
        left = post.event_at - max(now, hold or now)
        await broadcast(repo, post, people, org=org, author_name=author.display_name,
                        audience=await audience_text(repo, post, org), default_locale=self.default_locale,
                        topic="event_reminder", now=now,
                        prefix=lambda: _("⏰ Reminder: it starts {soon}.").format(soon=in_time(left)))

    async def _scheduled_post(self, repo: Repo, item: DueItem, now: datetime) -> None:
        found = await self._context(repo, item.ref_id, "scheduled post")
        if found is None:
            return
        post, org, author = found
        if post.state != PostState.SCHEDULED:
            return  # cancelled or already sent
        await publish(repo, post, org=org, author=author, audience=await audience_text(repo, post, org),
                      default_locale=self.default_locale, now=now)

    async def _ack_reminder(self, repo: Repo, item: DueItem, now: datetime) -> None:
        found = await self._context(repo, item.ref_id, "acknowledgement reminder")
        if found is None:
            return
        post, org, author = found
        if post.state != PostState.SENT or not post.ask_ack:
            return
        people = await repo.not_acknowledged(post.id)
        deadline = post.ack_due_at
        await broadcast(repo, post, people, org=org, author_name=author.display_name,
                        audience=await audience_text(repo, post, org), default_locale=self.default_locale,
                        topic="post_renotify", now=now,
                        prefix=lambda: _("🔔 Please acknowledge this message by {when}.").format(
                            when=local(deadline, org) if deadline else ""))

    async def _ack_deadline(self, repo: Repo, item: DueItem, now: datetime) -> None:
        found = await self._context(repo, item.ref_id, "acknowledgement summary")
        if found is None:
            return
        post, org, author = found
        if post.state != PostState.SENT:
            return
        missing = await repo.not_acknowledged(post.id)
        acked = await repo.ack_count(post.id)
        with in_locale(author.locale or self.default_locale):
            text = _("⏰ The time to acknowledge «{title}» is over: {acked} acknowledged, {missing} did not.").format(
                title=html.quote(plain_text(post.text)[:60]), acked=acked, missing=len(missing)
            )
            if missing:
                text += "\n" + ", ".join(html.quote(p.display_name) for p in missing[:100])
        enqueue(repo, author.telegram_id, SendMessage(chat_id=author.telegram_id, text=text), org_id=org.id, org=org,
                topic="ack_deadline", ref_id=post.id)

    async def _poll_close(self, repo: Repo, item: DueItem, now: datetime) -> None:
        found = await self._context(repo, item.ref_id, "poll result")
        if found is None:
            return
        post, org, author = found
        if post.kind != PostKind.POLL or post.poll_closed_at is not None or post.state != PostState.SENT:
            return
        post.poll_closed_at = now
        await follow_edit(repo, post, org=org, author_name=author.display_name,
                          audience=await audience_text(repo, post, org), default_locale=self.default_locale)
        with in_locale(author.locale or self.default_locale):
            text, _markup = await card(repo, post, org)
            text = _("📊 The poll has closed. The result:") + "\n\n" + text
        enqueue(repo, author.telegram_id, SendMessage(chat_id=author.telegram_id, text=text), org_id=org.id, org=org,
                topic="poll_result", ref_id=post.id)

    async def _weekly_reminders(self, repo: Repo, items: list[DueItem], now: datetime) -> None:
        """A batch of weekly reminders at once: their items in one query, every
        outbox row in one insert, next week's reminders in one more."""
        if not items:
            return
        weeklies = {w.id: w for w in await repo.weekly_items_by_id(i.ref_id for i in items)}
        rows: list[dict[str, Any]] = []
        following: list[DueItem] = []
        for item in items:
            weekly = weeklies.get(item.ref_id)
            if weekly is None or weekly.archived_at is not None:
                continue
            org = await self._cache.org(weekly.org_id)
            group = await self._cache.group(weekly.org_id, weekly.group_id)
            if org is None or group is None or group.archived_at is not None:
                continue
            people = await self._cache.families(org.id, group.id)
            at = item.due_at + timedelta(minutes=item.minutes or 0)
            # Rendered in each reader's language (the weekday too).
            await notify(repo, people, lambda: _("⏰ {group}: {title} — {when}").format(
                group=html.quote(group.title), title=html.quote(weekly.title), when=local(at, org)),
                org=org, topic="weekly_reminder", ref_id=weekly.id, default_locale=self.default_locale, rows=rows,
                now=now)
            following.append(next_weekly_reminder(weekly, org.timezone, now))
        await repo.add_deliveries(rows)
        await repo.add_due_many([f for f in following if f is not None])

    async def _digest(self, repo: Repo, item: DueItem, now: datetime) -> None:
        """One message with everything held for this reader; each post opens with a button."""
        person = await repo.person(item.ref_id)
        if person is None:
            return
        copies = list(await repo.held_copies(person.id))
        if not copies:
            return
        posts = await repo.posts(c.post_id for c in copies if c.post_id)
        live = [c for c in copies if c.post_id in posts and posts[c.post_id].state == PostState.SENT]
        for c in copies:
            if c not in live:
                c.status = DeliveryStatus.CANCELLED.value
        if not live:
            return
        org = await repo.organisation(item.org_id)
        assert org is not None
        authors = {p.id: p for p in await repo.people_by_ids({p.author_id for p in posts.values() if p.author_id})}
        with in_locale(person.locale or self.default_locale):
            for start in range(0, len(live), DIGEST_SIZE):
                chunk = live[start:start + DIGEST_SIZE]
                lines = [_("📰 <b>Your digest</b> · {date}").format(date=day_label(now.astimezone(ZoneInfo(org.timezone)).date()))]
                kb = InlineKeyboardBuilder()
                for n, c in enumerate(chunk, start + 1):
                    post = posts[c.post_id]
                    author = authors.get(post.author_id or 0)
                    line = f"{n}. {kind_label(post.kind)} · {html.quote(await audience_text(repo, post, org))}"
                    line += "\n" + html.quote(plain_text(post.text)[:160] or "…")
                    if author is not None:
                        line += f" — {html.quote(author.display_name)}"
                    if post.ask_ack:
                        line += "\n" + _("👌 please acknowledge")
                    lines.append(line)
                    kb.button(text=_("📖 Open {n}").format(n=n), callback_data=DigestCb(post_id=post.id))
                kb.adjust(4)
                digest = enqueue(repo, person.telegram_id,
                                 SendMessage(chat_id=person.telegram_id, text="\n\n".join(lines), reply_markup=kb.as_markup()),
                                 org_id=org.id, org=org, topic="digest", ref_id=person.id, person_id=person.id)
                await repo.flush()
                for c in chunk:
                    c.edit_of_id = digest.id  # delivered when, and only when, the digest is


class _BatchCache:
    """What many items of one batch share (an organisation, a group, its
    families): read once per batch, not once per item."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self._orgs: dict[int, Any] = {}
        self._groups: dict[int, Any] = {}
        self._families: dict[int, Any] = {}

    async def org(self, org_id: int) -> Any:
        if org_id not in self._orgs:
            self._orgs[org_id] = await self.repo.organisation(org_id)
        return self._orgs[org_id]

    async def group(self, org_id: int, group_id: int) -> Any:
        if group_id not in self._groups:
            self._groups[group_id] = await self.repo.group(org_id, group_id)
        return self._groups[group_id]

    async def families(self, org_id: int, group_id: int) -> Any:
        if group_id not in self._families:
            self._families[group_id] = await self.repo.people_in_role(
                org_id, [Role.PARENT, Role.STUDENT], group_id=group_id
            )
        return self._families[group_id]
