"""A post as its recipients and its author see it, and the one way it reaches
many people: rows in the outbox.

Every copy is rendered in its reader's language at the moment it is enqueued
(or edited, keeping what is its own: the reader's acknowledgement and votes, a
reminder's line); the author's card counts delivered / acknowledged /
unreachable / pending from the outbox itself, and an edit of it is drawn when
it is sent, so the figures cannot drift from the truth. No edit leaves that
would show what the message shows already.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from html import unescape
from typing import Any

from aiogram import html
from aiogram.client.default import Default
from aiogram.filters.callback_data import CallbackData
from aiogram.methods import (
    DeleteMessage,
    DeleteMessages,
    EditMessageCaption,
    EditMessageText,
    SendDocument,
    SendMediaGroup,
    SendMessage,
    SendPhoto,
    SendVideo,
    TelegramMethod,
)
from aiogram.types import InlineKeyboardMarkup, InputMediaDocument, InputMediaPhoto, InputMediaVideo
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.dates import when
from bot.split import split_html
from bot.i18n import in_locale
from bot.outbox import dump_method, enqueue
from bot import policy
from bot.timeline import next_daily, plan_post
from storage.models import (
    DbInt,
    Delivery,
    DeliveryStatus,
    DueItem,
    DueKind,
    Organisation,
    Person,
    Post,
    PostKind,
    PostState,
    utcnow,
)
from storage.repo import Repo

log = logging.getLogger(__name__)

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024


class PostCb(CallbackData, prefix="p"):
    """A recipient's button on a copy: acknowledge or vote."""

    action: str  # ack | vote
    post_id: DbInt
    option_id: DbInt = 0


class DigestCb(CallbackData, prefix="dg"):
    """A reader opens one post of their digest."""

    post_id: DbInt


class CardCb(CallbackData, prefix="pc"):
    """The author's card."""

    action: str  # refresh | renotify | pending | edit | withdraw | withdraw_yes | close
    post_id: DbInt


def kind_label(kind: str) -> str:
    labels = {
        PostKind.ANNOUNCEMENT: _("📢 Announcement"),
        PostKind.SCHEDULE: _("🗓 Schedule"),
        PostKind.MATERIAL: _("📎 Material"),
        PostKind.EVENT: _("📅 Event"),
        PostKind.POLL: _("📊 Poll"),
    }
    return labels.get(PostKind(kind), kind)


def local(moment: Any, org: Organisation) -> str:
    """A moment as the reader reads it: weekday, day and time in the organisation's zone."""
    return when(moment, org.timezone)


def body(post: Post, org: Organisation, author_name: str, audience: str) -> str:
    """The text of a copy, in the current locale."""
    head = kind_label(post.kind)
    if post.urgent:
        head = _("❗ Urgent") + " · " + head
    lines = [f"<b>{head}</b> · {html.quote(audience)}"]
    if post.state == PostState.WITHDRAWN:
        return lines[0] + "\n\n" + _("🗑 This message was withdrawn by its author.")
    if post.text:
        lines.append(post.text)
    if post.kind == PostKind.EVENT and post.event_at is not None:
        lines.append(_("🕒 {when}").format(when=local(post.event_at, org)))
        if post.place:
            lines.append(_("📍 {place}").format(place=html.quote(post.place)))
    if post.kind == PostKind.POLL:
        mode = _("several answers") if post.poll_multiple else _("one answer")
        privacy = _("anonymous") if post.poll_anonymous else _("the author sees names")
        line = f"<i>{mode}, {privacy}</i>"
        if post.poll_closed_at is not None:
            line += "\n" + _("The poll is closed.")
        elif post.poll_closes_at is not None:
            line += "\n" + _("Open until {when}").format(when=local(post.poll_closes_at, org))
        lines.append(line)
    lines.append(f"— {html.quote(author_name)}")
    return "\n\n".join(lines)


def copy_text(post: Post, org: Organisation, author_name: str, audience: str, prefix: str | None = None) -> str:
    """The whole text of one copy: a reminder's line (if any) above the body."""
    text = body(post, org, author_name, audience)
    return prefix + "\n\n" + text if prefix else text


def keyboard(post: Post, chosen: Iterable[int] = (), acknowledged: bool = False) -> InlineKeyboardMarkup | None:
    """A recipient's buttons, in the current locale."""
    if post.state == PostState.WITHDRAWN:
        return None
    kb = InlineKeyboardBuilder()
    if post.kind == PostKind.POLL and post.poll_closed_at is None:
        chosen = set(chosen)
        for option in post.options:
            mark = "✅ " if option.id in chosen else ""
            kb.button(text=mark + option.text, callback_data=PostCb(action="vote", post_id=post.id, option_id=option.id))
    if post.ask_ack:
        if acknowledged:
            kb.button(text=_("✅ Acknowledged"), callback_data=PostCb(action="ack", post_id=post.id))
        else:
            kb.button(text=_("👌 Acknowledge"), callback_data=PostCb(action="ack", post_id=post.id))
    kb.adjust(1)
    markup = kb.as_markup()
    return markup if markup.inline_keyboard else None


def copy_method(post: Post, chat_id: int, text: str, markup: InlineKeyboardMarkup | None) -> TelegramMethod[Any]:
    if post.media_kind == "photo":
        return SendPhoto(chat_id=chat_id, photo=post.media_file_id, caption=text, reply_markup=markup)
    if post.media_kind == "document":
        return SendDocument(chat_id=chat_id, document=post.media_file_id, caption=text, reply_markup=markup)
    if post.media_kind == "video":
        return SendVideo(chat_id=chat_id, video=post.media_file_id, caption=text, reply_markup=markup)
    return SendMessage(chat_id=chat_id, text=text, reply_markup=markup)


PART = "post_part"  # the messages of a copy before its last one (an album, the first parts of a long text)


def text_parts(post: Post, text: str) -> list[str]:
    """The copy's text in the parts it is sent in: a caption takes at most 1,024
    characters, the rest follows in messages of at most 4,096."""
    if post.media_kind:
        return split_html(text, TEXT_LIMIT, first_limit=CAPTION_LIMIT)
    return split_html(text, TEXT_LIMIT)


def copy_methods(post: Post, chat_id: int, text: str, markup: InlineKeyboardMarkup | None) -> list[TelegramMethod[Any]]:
    """Every message of one copy, in order; the buttons are on the last."""
    methods: list[TelegramMethod[Any]] = []
    if album := album_items(post):
        methods.append(SendMediaGroup(chat_id=chat_id, media=album))
    parts = text_parts(post, text)
    for n, part in enumerate(parts):
        last = n == len(parts) - 1
        if n == 0 and post.media_kind:
            methods.append(copy_method(post, chat_id, part, markup if last else None))
        else:
            methods.append(SendMessage(chat_id=chat_id, text=part, reply_markup=markup if last else None))
    return methods


def album_items(post: Post) -> list[Any]:
    """The album of a post made from a media group (photos, videos, documents)."""
    if not post.album:
        return []
    kinds = {"photo": InputMediaPhoto, "video": InputMediaVideo, "document": InputMediaDocument}
    items = []
    for item in json.loads(post.album):
        if item.get("kind") in kinds:
            kind = kinds[item["kind"]]
            # No caption, so none of the bot's caption defaults (they would not survive the outbox's JSON).
            unset = {name: None for name, value in kind(media="x") if isinstance(value, Default)}
            items.append(kind(media=item["file_id"], **unset))
    return items


def edit_method(post: Post, chat_id: int, text: str, markup: InlineKeyboardMarkup | None) -> TelegramMethod[Any]:
    # chat_id and message_id are filled in from the copy when the edit is sent.
    if post.media_kind:
        return EditMessageCaption(chat_id=chat_id, message_id=0, caption=text, reply_markup=markup)
    return EditMessageText(chat_id=chat_id, message_id=0, text=text, reply_markup=markup)


_TAG = re.compile(r"<[^>]*>")


def visible_length(text: str) -> int:
    """What Telegram counts against its limits: the text once its HTML is
    parsed (so "&lt;" is one character), in UTF-16 code units."""
    return len(unescape(_TAG.sub("", text)).encode("utf-16-le")) // 2


async def broadcast(
    repo: Repo,
    post: Post,
    people: Iterable[Person],
    *,
    org: Organisation,
    author_name: str,
    audience: str,
    default_locale: str,
    topic: str = "post",
    prefix: Callable[[], str] | None = None,
    not_before: datetime | None = None,
    now: datetime | None = None,
) -> int:
    """One outbox row per person, each in the person's language; returns how
    many. `not_before` holds the copies; otherwise the delivery policy decides
    (quiet hours at `now`, the scheduler's clock)."""
    rendered: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    rows: list[dict[str, Any]] = []
    digests: list[DueItem] = []
    # The delivery policy (bot.policy): quiet hours, urgency, the family's digest —
    # at the moment the caller acts for (the scheduler's clock); the rows are due
    # from now on, or when quiet hours end.
    at = now or utcnow()
    now = utcnow()
    hold = not_before or policy.not_before(org, topic, now=at, urgent=post.urgent, event_at=post.event_at)
    due = max(now, hold) if hold else now
    for person in people:
        held_until = policy.digest_at(person, org, topic, now=now, urgent=post.urgent)
        if held_until is not None:
            digests.append(DueItem(org_id=org.id, kind=DueKind.DIGEST.value, ref_id=person.id, due_at=held_until,
                                   key=f"digest:{person.id}:{held_until.isoformat()}"))
        locale = person.locale or default_locale
        if locale not in rendered:
            with in_locale(locale):
                text = copy_text(post, org, author_name, audience, prefix() if prefix is not None else None)
                markup = keyboard(post)
            # One payload for every reader of a language; the row carries the chat.
            methods = copy_methods(post, 0, text, markup)
            rendered[locale] = (text, [(m.__api_method__, dump_method(m)) for m in methods])
        text, payloads = rendered[locale]
        *parts, (method_name, payload) = payloads
        if held_until is None:  # a digest opens the whole post by its button; nothing goes ahead of it
            rows += [
                {"org_id": org.id, "chat_id": person.telegram_id, "method": name, "payload": part, "topic": PART,
                 "ref_id": post.id, "post_id": post.id, "person_id": person.id, "attempts": 0, "created_at": now,
                 "status": DeliveryStatus.PENDING.value, "next_attempt_at": due}
                for name, part in parts
            ]
        rows.append(
            {
                "org_id": org.id, "chat_id": person.telegram_id, "method": method_name, "payload": payload,
                "topic": topic, "ref_id": post.id, "post_id": post.id,
                "person_id": person.id, "attempts": 0, "created_at": now,
                "status": (DeliveryStatus.HELD if held_until else DeliveryStatus.PENDING).value,
                "next_attempt_at": held_until or due,
            }
        )
    await repo.add_deliveries(rows)
    await repo.add_due_many(digests)
    return len(rows)


async def publish(
    repo: Repo,
    post: Post,
    *,
    org: Organisation,
    author: Person,
    audience: str,
    default_locale: str,
    now: datetime,
) -> int:
    """Sends a post now (or at the end of quiet hours unless urgent), gives
    the author a card, and plans its reminders and deadlines."""
    group_ids = [g.group_id for g in post.groups]
    people = await repo.post_recipients(post, group_ids)
    post.state = PostState.SENT.value
    post.sent_at = now
    count = await broadcast(repo, post, people, org=org, author_name=author.display_name, audience=audience,
                            default_locale=default_locale, now=now)
    await send_card(repo, post, org, author, default_locale)
    await plan_post(repo, post, now)
    return count


async def audience_text(repo: Repo, post: Post, org: Organisation) -> str:
    """How a copy names its audience: the groups, or the organisation-wide one."""
    if post.audience == "org":
        return org.name
    if post.audience == "staff":
        return _("all staff")
    if post.audience == "parents":
        return _("all parents")
    ids = {g.group_id for g in post.groups}
    return ", ".join(g.title for g in await repo.groups(org.id, include_staff=False) if g.id in ids)


async def notify(
    repo: Repo,
    people: Iterable[Person],
    text: Callable[[], str],
    *,
    org: Organisation,
    topic: str,
    ref_id: int,
    default_locale: str,
    not_before: datetime | None = None,
    rows: list[dict[str, Any]] | None = None,
    now: datetime | None = None,
) -> int:
    """A plain message to many people, each in their language (weekly reminders,
    summaries). With `rows`, the outbox rows are only collected there (the
    caller inserts many at once)."""
    rendered: dict[str, str] = {}
    out: list[dict[str, Any]] = [] if rows is None else rows
    at = now or utcnow()
    now = utcnow()
    hold = not_before or policy.not_before(org, topic, now=at)
    due = max(now, hold) if hold else now
    count = 0
    for person in people:
        locale = person.locale or default_locale
        if locale not in rendered:
            with in_locale(locale):
                # One payload per language; the row carries the chat.
                rendered[locale] = dump_method(SendMessage(chat_id=0, text=text()))
        out.append(
            {
                "org_id": org.id, "chat_id": person.telegram_id, "method": "sendMessage",
                "payload": rendered[locale], "topic": topic, "ref_id": ref_id, "person_id": person.id,
                "status": DeliveryStatus.PENDING.value, "attempts": 0, "next_attempt_at": due, "created_at": now,
            }
        )
        count += 1
    if rows is None:
        await repo.add_deliveries(out)
    return count


COPY_TOPICS = ("post", "post_renotify", "event_reminder")
# Copies sent with a line of their own above the post (bot.scheduler, «🔔 Remind them»).
REMINDER_TOPICS = ("post_renotify", "event_reminder")


async def copies_with_parts(repo: Repo, post_id: int) -> list[tuple[Delivery, list[Delivery]]]:
    """Each copy of a post with the messages sent ahead of it (an album, the
    first parts of a long text): in a chat, the parts before a copy are its own."""
    rows = await repo.post_copies(post_id, topics=(*COPY_TOPICS, PART))
    waiting: dict[int, list[Delivery]] = {}
    out: list[tuple[Delivery, list[Delivery]]] = []
    for row in rows:  # in the order they were written
        if row.topic == PART:
            waiting.setdefault(row.chat_id, []).append(row)
        else:
            out.append((row, waiting.pop(row.chat_id, [])))
    return out


def _edit_of_row(row: Delivery, text: str, markup: InlineKeyboardMarkup | None) -> TelegramMethod[Any]:
    # chat_id and message_id are filled in from the row when the edit is sent.
    if row.method == "sendMessage":
        return EditMessageText(chat_id=row.chat_id, message_id=0, text=text, reply_markup=markup)
    return EditMessageCaption(chat_id=row.chat_id, message_id=0, caption=text, reply_markup=markup)


def _shown(payload: str) -> tuple[str, Any]:
    """The text (or caption) and the buttons a message was sent or edited with."""
    data = json.loads(payload)
    return data.get("text") or data.get("caption") or "", data.get("reply_markup")


def _markup_json(markup: InlineKeyboardMarkup | None) -> Any:
    """Buttons as they are stored in a payload, so the two can be compared."""
    return json.loads(dump_method(EditMessageText(text="", reply_markup=markup))).get("reply_markup")


def sent_prefix(copy: Delivery, first: Delivery, *, event_moved: bool = False) -> str | None:
    """A reminder's line, as its copy shows it: the first paragraph of its first
    message (`first`: that message or its latest edit; the line is one
    paragraph, in the reader's language). It stays
    what it said when it arrived — an edit changes the post, not the reminder;
    but an event's «it starts in 2 hours» is no longer true once the event has
    moved (its new reminders are planned), and says so instead. In the current locale."""
    if copy.topic not in REMINDER_TOPICS:
        return None
    if event_moved and copy.topic == "event_reminder":
        return _("⏰ Reminder: the time has changed.")
    text, _markup = _shown(first.payload)
    line = text.split("\n\n", 1)[0]
    # The post's own first line is its bold heading: then the copy went out without a line of its own.
    return line if line and not line.startswith("<b>") else None


def part_counts(post: Post, org: Organisation, author_name: str, audience: str) -> set[int]:
    """How many messages a copy takes, in each language."""
    counts = set()
    for locale in sorted(I18n.get_current().available_locales):
        with in_locale(locale):
            counts.add(len(copy_methods(post, 0, body(post, org, author_name, audience), None)))
    return counts


async def follow_edit(
    repo: Repo, post: Post, *, org: Organisation, author_name: str, audience: str, default_locale: str,
    event_moved: bool = False,
) -> int:
    """Every copy shows the post as it is now, and keeps what is its own: the
    reader's acknowledgement and chosen options (the buttons the ack and vote
    handlers draw), a reminder's line. Sent copies are edited (every message of
    a long one that changes — none that would show the same), pending ones
    rewritten before they go out. Returns how many chats (families, people)
    were touched: a re-notified family's two copies count once."""
    copies = [(c, parts) for c, parts in await copies_with_parts(repo, post.id)
              if c.status in (DeliveryStatus.PENDING, DeliveryStatus.SENT, DeliveryStatus.SENDING)]
    person_ids = {c.person_id for c, _p in copies if c.person_id}
    people = {p.id: p for p in await repo.people_by_ids(person_ids)}
    acknowledged = await repo.acknowledged_among(post.id, person_ids) if post.ask_ack else set()
    votes = await repo.votes_among(post.id, person_ids) if post.kind == PostKind.POLL else {}
    shown = await repo.latest_edits((row.id for c, parts in copies for row in (*parts, c)), "post_edit")
    touched: set[int] = set()
    for copy, parts in copies:
        person = people.get(copy.person_id or 0)
        locale = (person.locale if person else None) or default_locale
        old = [p for p in parts if p.method != "sendMediaGroup"] + [copy]
        chosen = votes.get(copy.person_id or 0, set())
        acked = (copy.person_id or 0) in acknowledged
        with in_locale(locale):
            prefix = sent_prefix(copy, shown.get(old[0].id) or old[0], event_moved=event_moved)
            text = copy_text(post, org, author_name, audience, prefix)
            markup = keyboard(post, chosen, acked)
        new = [m for m in copy_methods(post, copy.chat_id, text, markup) if not isinstance(m, SendMediaGroup)]
        if len(new) > len(old):
            # Only a change of a line or two gets here (the author's own edits are
            # checked first): the copy keeps its number of messages.
            log.warning("post %s: the edit needs %s messages, copy %s has %s", post.id, len(new), copy.id, len(old))
            new = new[: len(old) - 1] + new[-1:]
        pairs = list(zip(old[: len(new) - 1], new[:-1])) + [(copy, new[-1])]
        for row, method in pairs:
            if row.status == DeliveryStatus.PENDING:
                row.payload = dump_method(method)
            elif row.status in (DeliveryStatus.SENT, DeliveryStatus.SENDING):
                value = getattr(method, "text", None) or getattr(method, "caption", None) or ""
                buttons = getattr(method, "reply_markup", None)
                was_text, was_buttons = _shown((shown.get(row.id) or row).payload)
                # The ack and vote handlers redraw the pressed copy's buttons themselves
                # (their own answer, not a row here): for a reader who pressed, the
                # buttons it shows are the ones drawn now.
                pressed = row is copy and (acked or bool(chosen))
                if was_text == value and (pressed or was_buttons == _markup_json(buttons)):
                    continue  # Telegram would say "message is not modified": not worth a call
                enqueue(repo, row.chat_id, _edit_of_row(row, value, buttons),
                        org_id=org.id, org=org, topic="post_edit", ref_id=post.id, edit_of=row)
        for row in old[len(new) - 1: -1]:  # parts the shorter text no longer needs
            if row.status == DeliveryStatus.PENDING:
                row.status = DeliveryStatus.CANCELLED.value
            elif row.status in (DeliveryStatus.SENT, DeliveryStatus.SENDING):
                enqueue(repo, row.chat_id, DeleteMessage(chat_id=row.chat_id, message_id=0), org_id=org.id,
                        topic="post_edit", ref_id=post.id, edit_of=row)
        touched.add(copy.chat_id)
    return len(touched)


async def withdraw_copies(repo: Repo, post: Post, *, org: Organisation, default_locale: str) -> int:
    """Pending copies never go out; sent ones are deleted (every message of
    them), or — where Telegram no longer allows it (older than 48 hours) —
    edited to say so. Returns how many chats the post is withdrawn from."""
    copies = await copies_with_parts(repo, post.id)
    for topic in (*COPY_TOPICS, PART):
        await repo.cancel_pending_deliveries(topic, post.id)
    people = {p.id: p for p in await repo.people_by_ids({c.person_id for c, _p in copies if c.person_id})}
    touched: set[int] = set()
    for copy, parts in copies:
        if copy.status not in (DeliveryStatus.SENT, DeliveryStatus.SENDING):
            continue
        person = people.get(copy.person_id or 0)
        with in_locale((person.locale if person else None) or default_locale):
            note = _("🗑 This message was withdrawn by its author.")
        for row in [*parts, copy]:
            if row.status not in (DeliveryStatus.SENT, DeliveryStatus.SENDING):
                continue
            if row.method == "sendMediaGroup":
                size = len(json.loads(row.payload).get("media", []))
                method: TelegramMethod[Any] = DeleteMessages(chat_id=row.chat_id, message_ids=[0] * size)
                fallback: TelegramMethod[Any] = EditMessageCaption(chat_id=row.chat_id, message_id=0, caption=note)
            else:
                method = DeleteMessage(chat_id=row.chat_id, message_id=0)
                fallback = _edit_of_row(row, note, None)
            enqueue(repo, row.chat_id, method, org_id=org.id, org=org, topic="post_withdraw", ref_id=post.id,
                    edit_of=row, fallback=fallback)
        touched.add(copy.chat_id)
    return len(touched)


# -- the author's card -----------------------------------------------------------------


async def card(repo: Repo, post: Post, org: Organisation) -> tuple[str, InlineKeyboardMarkup]:
    """The author's view of a post: where it stands, and what they can do."""
    counts = await repo.delivery_counts(post.id)
    total = sum(counts.values())
    delivered = counts.get(DeliveryStatus.SENT, 0) + counts.get(DeliveryStatus.DIGESTED, 0)
    unreachable = counts.get(DeliveryStatus.UNREACHABLE, 0) + counts.get(DeliveryStatus.FAILED, 0)
    held = counts.get(DeliveryStatus.HELD, 0)
    pending = counts.get(DeliveryStatus.PENDING, 0) + counts.get(DeliveryStatus.SENDING, 0) + held
    if post.sent_at is None and post.state == PostState.SCHEDULED and post.scheduled_at is not None:
        head = _("{kind} · scheduled for {when}").format(kind=kind_label(post.kind), when=local(post.scheduled_at, org))
    else:  # when it went out (a scheduled post: when the scheduler sent it, not when it was written)
        head = _("{kind} · sent {when}").format(kind=kind_label(post.kind), when=local(post.sent_at or post.created_at, org))
    lines = [
        head,
        html.quote(plain_text(post.text)[:120]),
        "",
        _("Recipients: {total}").format(total=total),
        _("✅ delivered: {n}").format(n=delivered),
    ]
    if post.ask_ack:
        lines.append(_("👌 acknowledged: {n}").format(n=await repo.ack_count(post.id)))
    lines.append(_("🚫 not reachable: {n}").format(n=unreachable))
    lines.append(_("⏳ pending: {n}").format(n=pending))
    if held:
        lines.append(_("📰 of them waiting for a daily digest: {n}").format(n=held))
    if post.kind == PostKind.POLL:
        results = await repo.poll_results(post.id)
        lines.append("")
        lines.append(_("<b>Votes</b>") + (" — " + _("closed") if post.poll_closed_at else ""))
        for option in post.options:
            voters = results.get(option.id, [])
            line = f"• {html.quote(option.text)}: {len(voters)}"
            if voters and not post.poll_anonymous:
                line += " — " + html.quote(", ".join(voters))
            lines.append(line)
    if post.state == PostState.WITHDRAWN:
        lines.append("")
        lines.append(_("🗑 Withdrawn."))
    kb = InlineKeyboardBuilder()
    if post.state != PostState.WITHDRAWN:
        kb.button(text=_("🔄 Refresh"), callback_data=CardCb(action="refresh", post_id=post.id))
        if post.ask_ack:
            kb.button(text=_("👀 Who has not"), callback_data=CardCb(action="pending", post_id=post.id))
            kb.button(text=_("🔔 Remind them"), callback_data=CardCb(action="renotify", post_id=post.id))
        if post.kind == PostKind.POLL and post.poll_closed_at is None:
            kb.button(text=_("🔒 Close the poll"), callback_data=CardCb(action="close", post_id=post.id))
        if post.kind == PostKind.EVENT:
            kb.button(text=_("🕒 Change the time"), callback_data=CardCb(action="time", post_id=post.id))
        kb.button(text=_("✏️ Edit"), callback_data=CardCb(action="edit", post_id=post.id))
        kb.button(text=_("🗑 Withdraw"), callback_data=CardCb(action="withdraw", post_id=post.id))
        kb.adjust(2)
    return "\n".join(lines), kb.as_markup()


def plain_text(text: str) -> str:
    """A post's HTML as plain text (for a calendar, a card's summary)."""
    return re.sub(r"<[^>]+>", "", text).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


CARD_EDIT = "post_card-edit"


def _same(payload: str, text: str, markup: InlineKeyboardMarkup | None) -> bool:
    was_text, was_buttons = _shown(payload)
    return was_text == text and was_buttons == _markup_json(markup)


async def refresh_card(repo: Repo, post: Post, org: Organisation, author: Person, default_locale: str) -> None:
    """The author's card follows the current figures: one edit at a time (an
    older pending edit is dropped, so a busy broadcast costs one edit at a
    time), none when the card shows these figures already.

    The edit's text is drawn again when it is sent (`card_renderer`): figures
    read here may already be old when a slower transaction commits after a
    faster one (the progress refresh and an acknowledgement), and the edit that
    leaves must carry the newest. So an edit is dropped only for another one."""
    cards = [c for c in await repo.deliveries_about("post_card", post.id) if c.method == "sendMessage"]
    if not cards:
        return
    with in_locale(author.locale or default_locale):
        text, markup = await card(repo, post, org)
    shown = await repo.latest_edits((c.id for c in cards), CARD_EDIT)
    for c in cards:
        if c.status not in (DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.SENT):
            continue  # the author cannot be reached
        if c.status == DeliveryStatus.PENDING and await repo.rewrite_pending(
            c.id, dump_method(SendMessage(chat_id=c.chat_id, text=text, reply_markup=markup))
        ):
            continue  # not sent yet: it goes out with these figures
        if _same((shown.get(c.id) or c).payload, text, markup):
            continue  # shown already, or on its way
        await repo.cancel_pending_edits(c.id, CARD_EDIT)
        enqueue(repo, c.chat_id, EditMessageText(chat_id=c.chat_id, message_id=0, text=text, reply_markup=markup),
                org_id=org.id, org=org, topic=CARD_EDIT, ref_id=post.id, edit_of=c)


def card_renderer(session_maker: Any, i18n: Any, default_locale: str):  # type: ignore[no-untyped-def]
    """For the outbox: an edit of the author's card is drawn with the figures of
    the moment it is sent, and not sent at all if the card shows them already."""

    async def render(row: Delivery, method: TelegramMethod[Any]) -> TelegramMethod[Any] | None:
        if row.ref_id is None or row.edit_of_id is None or not isinstance(method, EditMessageText):
            return method
        with i18n.context():
            async with session_maker() as session:
                repo = Repo(session)
                post = await repo.post(row.ref_id)
                if post is None or post.author_id is None:
                    return method
                org = await repo.organisation(post.org_id)
                author = await repo.person(post.author_id)
                target = await session.get(Delivery, row.edit_of_id)
                if org is None or author is None or target is None:
                    return method
                with in_locale(author.locale or default_locale):
                    text, markup = await card(repo, post, org)
                last = (await repo.latest_edits([target.id], CARD_EDIT, sent_only=True)).get(target.id) or target
                if _same(last.payload, text, markup):
                    return None
        return method.model_copy(update={"text": text, "reply_markup": markup})

    return render


async def send_card(repo: Repo, post: Post, org: Organisation, author: Person, default_locale: str) -> None:
    with in_locale(author.locale or default_locale):
        text, markup = await card(repo, post, org)
    enqueue(repo, author.telegram_id, SendMessage(chat_id=author.telegram_id, text=text, reply_markup=markup),
            org_id=org.id, org=org, topic="post_card", ref_id=post.id)


def progress_hook(session_maker: Any, i18n: Any, default_locale: str, wake: Callable[[], None]):  # type: ignore[no-untyped-def]
    """For the outbox: after copies of these posts changed state, their authors' cards follow."""

    async def refresh(post_ids: set[int]) -> None:
        with i18n.context():
            async with session_maker.begin() as session:
                repo = Repo(session)
                for post_id in sorted(post_ids):
                    post = await repo.post(post_id)
                    if post is None or post.author_id is None:
                        continue
                    org = await repo.organisation(post.org_id)
                    author = await repo.person(post.author_id)
                    if org is not None and author is not None:
                        await refresh_card(repo, post, org, author, default_locale)
        wake()

    return refresh
