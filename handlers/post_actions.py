"""What happens to a post after it is sent: recipients acknowledge and vote;
the author refreshes the card, sees who has not acknowledged, reminds them,
closes a poll, edits or withdraws. Also /schedule and /events."""

from __future__ import annotations

from datetime import datetime

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import BufferedInputFile, CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot import dates, dialogs, rights
from bot.actor import Actor
from bot.posts import (
    CardCb,
    PostCb,
    audience_text,
    body,
    broadcast,
    card,
    copy_methods,
    follow_edit,
    keyboard,
    kind_label,
    local,
    part_counts,
    plain_text,
    refresh_card,
    withdraw_copies,
)
from bot.replies import card_follows
from bot.settings import Settings
from bot.timeline import plan_post, plan_scheduled_post
from handlers import exports, weekly
from handlers.filters import NOT_A_COMMAND, TEXT_INPUT
from handlers import when
from handlers.keyboards import confirm_keyboard, group_title
from handlers.texts import blank, in_messages, other_org_alert, q, shorten
from handlers.when import WhenCb
from storage.models import DbInt, DueKind, Post, PostKind, PostState, Role, utcnow
from storage.repo import Repo


class EditForm(StatesGroup):
    text = State()
    event_at = State()
    scheduled_at = State()


POST_DUE_KINDS = (DueKind.EVENT_REMINDER, DueKind.ACK_REMINDER, DueKind.ACK_DEADLINE, DueKind.POLL_CLOSE,
                  DueKind.SCHEDULED_POST)


def create_router() -> Router:
    router = Router(name="post_actions")
    router.callback_query.register(acknowledge, PostCb.filter(F.action == "ack"))
    router.callback_query.register(vote, PostCb.filter(F.action == "vote"))
    router.callback_query.register(on_card, CardCb.filter())
    router.message.register(got_edit, StateFilter(EditForm.text), NOT_A_COMMAND)
    router.message.register(got_event_time, StateFilter(EditForm.event_at), TEXT_INPUT)
    router.message.register(scheduled_command, Command("scheduled"))
    router.callback_query.register(on_scheduled, ScheduledCb.filter())
    router.message.register(got_scheduled_time, StateFilter(EditForm.scheduled_at), TEXT_INPUT)
    router.callback_query.register(picked_time, StateFilter(EditForm.event_at, EditForm.scheduled_at), WhenCb.filter())
    router.message.register(schedule_command, Command("schedule"))
    router.message.register(events_command, Command("events"))
    return router


# -- recipients ------------------------------------------------------------------------


async def _recipient_post(query: CallbackQuery, post_id: int, actor: Actor, repo: Repo) -> tuple[Post | None, bool]:
    """The post, if this person is one of its recipients, and whether they have
    acknowledged it; otherwise says why not (and gives None)."""
    if post_id == 0:
        await query.answer(_("This is a preview: recipients will be able to press it."), show_alert=True)
        return None, False
    post, addressee, acknowledged = await repo.post_to(post_id, actor.person.id)
    if post is None or not addressee or not rights.may_respond(actor.person, post):
        await query.answer(rights.REFUSED + _("This button is not for you."), show_alert=True)
        return None, False
    if post.state == PostState.WITHDRAWN:
        await query.answer(_("This message was withdrawn by its author."), show_alert=True)
        return None, False
    return post, acknowledged


async def _author_of(repo: Repo, post: Post):  # type: ignore[no-untyped-def]
    return await repo.person(post.author_id) if post.author_id else None


async def acknowledge(query: CallbackQuery, callback_data: PostCb, actor: Actor, repo: Repo, settings: Settings) -> None:
    post, acknowledged = await _recipient_post(query, callback_data.post_id, actor, repo)
    if post is None or not post.ask_ack:
        if post is not None:
            await query.answer(_("This post does not ask for acknowledgement."), show_alert=True)
        return
    first = not acknowledged and await repo.acknowledge(post.org_id, post.id, actor.person.id)
    await query.answer(_("Thank you! Acknowledged.") if first else _("You have already acknowledged it."))
    if first:
        card_follows(post.id)
    await _mark_own_copy(query, post, repo, actor, acknowledged=True)


async def _mark_own_copy(query: CallbackQuery, post: Post, repo: Repo, actor: Actor, *, acknowledged: bool) -> None:
    """The presser's own copy shows their choice (their own answer, edited directly)."""
    if not isinstance(query.message, Message):
        return
    chosen = await repo.votes_of(post.id, actor.person.id) if post.kind == PostKind.POLL else set()
    try:
        await query.message.edit_reply_markup(reply_markup=keyboard(post, chosen, acknowledged))
    except TelegramBadRequest as e:  # "message is not modified" is not an error
        if "not modified" not in e.message:
            raise


async def vote(query: CallbackQuery, callback_data: PostCb, actor: Actor, repo: Repo, settings: Settings) -> None:
    post, acknowledged = await _recipient_post(query, callback_data.post_id, actor, repo)
    if post is None:
        return
    if post.kind != PostKind.POLL or callback_data.option_id not in {o.id for o in post.options}:
        await query.answer(_("This button is out of date."), show_alert=True)
        return
    if post.poll_closed_at is not None or (post.poll_closes_at is not None and post.poll_closes_at <= utcnow()):
        await query.answer(_("The poll is closed."), show_alert=True)
        return
    chosen = await repo.votes_of(post.id, actor.person.id)
    option = callback_data.option_id
    if post.poll_multiple:
        chosen ^= {option}
    else:
        chosen = set() if chosen == {option} else {option}
    await repo.set_votes(post.org_id, post.id, actor.person.id, chosen)
    await query.answer(_("Your vote is saved.") if chosen else _("Your vote is withdrawn."))
    card_follows(post.id)
    await _mark_own_copy(query, post, repo, actor, acknowledged=acknowledged)


# -- the author -----------------------------------------------------------------------------


async def on_card(
    query: CallbackQuery, callback_data: CardCb, state: FSMContext, actor: Actor, repo: Repo, settings: Settings
) -> None:
    post = await repo.post(callback_data.post_id)
    # The author while they may still post there; an admin may refresh or withdraw anyone's.
    if post is None or not rights.can_manage_post(
        actor, post, [g.group_id for g in post.groups], callback_data.action
    ):
        elsewhere = post is not None and actor.elsewhere(post.org_id)
        await query.answer(other_org_alert() if elsewhere else rights.REFUSED + _("Only the author can do this."),
                           show_alert=True)
        return
    if post.state == PostState.WITHDRAWN and callback_data.action != "refresh":
        await query.answer(_("This post is withdrawn."), show_alert=True)
        return
    org = actor.org
    action = callback_data.action
    if action in ("pending", "renotify") and post.copies_folded_at is not None:
        await query.answer(_("This post is old: its copies are kept only as counts, so who has not acknowledged "
                             "is no longer known."), show_alert=True)
        return
    if action == "pending":
        people = await repo.not_acknowledged(post.id)
        names = ", ".join(p.display_name for p in people[:200]) or _("everyone has acknowledged 🎉")
        await query.answer()
        await query.message.answer(  # type: ignore[union-attr]
            _("Not acknowledged yet ({n}): {names}").format(n=len(people), names=q(names))
        )
        return
    if action == "renotify":
        if not post.ask_ack:
            await query.answer(_("This post does not ask for acknowledgement."), show_alert=True)
            return
        if await repo.pending_copies(post.id, "post_renotify"):  # a second tap: once is enough
            await query.answer(_("The reminders are already on their way."), show_alert=True)
            return
        people = await repo.not_acknowledged(post.id)
        if not people:
            await query.answer(_("Everyone has acknowledged."), show_alert=True)
            return
        label = await audience_text(repo, post, org)
        count = await broadcast(
            repo, post, people, org=org, author_name=actor.person.display_name, audience=label,
            default_locale=settings.default_locale, topic="post_renotify",
            prefix=lambda: _("🔔 Reminder: please acknowledge this message."),
        )
        await query.answer(_("Reminded {n}.").format(n=count), show_alert=True)
        return
    if action == "close":
        if post.kind != PostKind.POLL or post.poll_closed_at is not None:
            await query.answer(_("The poll is closed."), show_alert=True)
            return
        post.poll_closed_at = utcnow()
        label = await audience_text(repo, post, org)
        await follow_edit(repo, post, org=org, author_name=actor.person.display_name, audience=label,
                          default_locale=settings.default_locale)
        await query.answer(_("The poll is closed."))
    elif action == "time":
        if post.kind != PostKind.EVENT:
            await query.answer(_("This button is out of date."), show_alert=True)
            return
        await _ask_about(query, state, EditForm.event_at, post.id,
                         _("Send the new date and time ({examples}). The reminders move with it.").format(
                             examples=dates.examples()),
                         when.days_markup(org.timezone, utcnow()))
        return
    elif action == "edit":
        await _ask_about(query, state, EditForm.text, post.id,
                         _("Send the new text. Every copy already delivered will be changed. /cancel keeps it as it is."))
        return
    elif action == "withdraw":
        await query.answer()
        await query.message.answer(  # type: ignore[union-attr]
            _("Withdraw this post? It disappears from every recipient's chat."),
            reply_markup=confirm_keyboard(CardCb(action="withdraw_yes", post_id=post.id),
                                          CardCb(action="refresh", post_id=post.id), yes_text=_("🗑 Withdraw")),
        )
        return
    elif action == "withdraw_yes":
        post.state = PostState.WITHDRAWN.value
        post.withdrawn_at = utcnow()
        await repo.cancel_due(post.id, [k.value for k in POST_DUE_KINDS])
        n = await withdraw_copies(repo, post, org=org, default_locale=settings.default_locale)
        # The author's card itself no longer offers Refresh / Remind / Edit / Withdraw.
        if (author := await _author_of(repo, post)) is not None:
            await refresh_card(repo, post, org, author, settings.default_locale)
        if post.author_id != actor.person.id:
            repo.audit(org.id, actor.person.id, "post.withdraw", subject=f"post:{post.id}")
        await query.answer(_("Withdrawn from {n} chats.").format(n=n), show_alert=True)
    else:
        await query.answer()
    text, markup = await card(repo, post, org)
    if isinstance(query.message, Message):
        try:
            await query.message.edit_text(text, reply_markup=markup)
        except TelegramBadRequest as e:
            if "not modified" not in e.message and "no text" not in e.message:
                raise


async def _ask_about(query: CallbackQuery, state: FSMContext, step: State, post_id: int, prompt: str,
                     markup: InlineKeyboardMarkup | None = None) -> None:
    """The author's next message answers `step` about this post."""
    token = await dialogs.begin(state, step, post_id=post_id, **{when.PICK_DAY: None})
    await query.answer()
    await query.message.answer(prompt, reply_markup=dialogs.stamp(dialogs.with_cancel(markup), token))  # type: ignore[union-attr]


async def got_edit(message: Message, state: FSMContext, actor: Actor, repo: Repo, settings: Settings) -> None:
    post_id = (await state.get_data()).get("post_id", 0)
    post = await repo.post(post_id)
    if post is None or post.author_id != actor.person.id or post.state == PostState.WITHDRAWN \
            or actor.org is None or post.org_id != actor.org.id:
        await state.clear()
        await message.answer(_("This post can no longer be edited."))
        return
    text = message.html_text if message.text else ""
    if blank(message.text):
        await message.answer(_("Please send the new text as a text message. /cancel keeps it as it is."))
        return
    org = actor.org
    label = await audience_text(repo, post, org)
    edited = Post(**{c: getattr(post, c) for c in ("kind", "media_kind", "urgent", "state", "event_at", "place",
                                                   "poll_multiple", "poll_anonymous", "poll_closed_at",
                                                   "poll_closes_at", "album")}, text=text)
    # A copy keeps its number of messages: an edit cannot add one between those already sent.
    before = part_counts(post, org, actor.person.display_name, label)
    after = part_counts(edited, org, actor.person.display_name, label)
    if after != before:
        await message.answer(_(
            "The post went out as {old} messages; the new text needs {new}. An edit cannot add or remove "
            "messages in people's chats: please send a text of about the same length, or withdraw the post "
            "and send a new one."
        ).format(old=max(before), new=max(after)))
        return
    await state.clear()
    post.text = text
    post.edited_at = utcnow()
    n = await follow_edit(repo, post, org=org, author_name=actor.person.display_name, audience=label,
                          default_locale=settings.default_locale)
    await refresh_card(repo, post, org, actor.person, settings.default_locale)
    await message.answer(_("✏️ Saved. {n} copies will show the new text.").format(n=n))


async def got_event_time(message: Message, state: FSMContext, actor: Actor, repo: Repo, settings: Settings) -> None:
    post = await repo.post((await state.get_data()).get("post_id", 0))
    if post is None or post.author_id != actor.person.id or post.state == PostState.WITHDRAWN or actor.org is None \
            or post.org_id != actor.org.id:
        await state.clear()
        await message.answer(_("This post can no longer be edited."))
        return
    moment, hint = await when.typed(message.text or "", state, actor.org.timezone)
    if moment is None:
        await message.answer(hint or "")
        return
    await _move_event(message, state, actor, repo, settings, post, moment)


async def picked_time(query: CallbackQuery, callback_data: WhenCb, state: FSMContext, actor: Actor, repo: Repo,
                      settings: Settings) -> None:
    """A day and a time pressed for «Change the time» of an event or a scheduled post."""
    if actor.org is None:
        await query.answer(_("This post can no longer be edited."), show_alert=True)
        return
    moment = await when.pressed(query, callback_data, state, actor.org.timezone, utcnow(), [dialogs.cancel_button()])
    if moment is None:
        return
    await query.answer()
    post = await repo.post((await state.get_data()).get("post_id", 0))
    message = query.message
    assert isinstance(message, Message)
    if await state.get_state() == EditForm.scheduled_at.state:
        if post is None or post.state != PostState.SCHEDULED or post.org_id != actor.org.id or not (
            post.author_id == actor.person.id or actor.is_admin
        ):
            await state.clear()
            await message.answer(_("This post is no longer scheduled."))
            return
        await _reschedule(message, state, actor, repo, post, moment)
        return
    if post is None or post.author_id != actor.person.id or post.state == PostState.WITHDRAWN \
            or post.org_id != actor.org.id:
        await state.clear()
        await message.answer(_("This post can no longer be edited."))
        return
    await _move_event(message, state, actor, repo, settings, post, moment)


async def _move_event(message: Message, state: FSMContext, actor: Actor, repo: Repo, settings: Settings, post: Post,
                      moment: datetime) -> None:
    assert actor.org is not None
    await state.clear()
    post.event_at = moment
    post.edited_at = utcnow()
    await repo.cancel_due(post.id, [DueKind.EVENT_REMINDER.value])
    if post.state == PostState.SENT:
        await plan_post(repo, post, utcnow(), only_reminders=True)
    label = await audience_text(repo, post, actor.org)
    n = await follow_edit(repo, post, org=actor.org, author_name=actor.person.display_name, audience=label,
                          default_locale=settings.default_locale, event_moved=True)
    await refresh_card(repo, post, actor.org, actor.person, settings.default_locale)
    await message.answer(_("🕒 Moved to {when}. {n} copies will show it; the reminders follow.").format(
        when=local(moment, actor.org), n=n))


# -- /scheduled ------------------------------------------------------------------------------


class ScheduledCb(CallbackData, prefix="sch"):
    action: str  # cancel | time
    post_id: DbInt


async def scheduled_command(message: Message, actor: Actor, repo: Repo) -> None:
    if actor.org is None or not actor.is_member:
        await message.answer(_("You are not in any group yet. Send /start."))
        return
    posts = await repo.scheduled_posts(actor.org.id, None if actor.is_admin else actor.person.id)
    if not posts:
        await message.answer(_("Nothing is scheduled. In /post, choose «Send later»."))
        return
    for post in posts[:20]:
        kb = InlineKeyboardBuilder()
        kb.button(text=_("🕒 Change the time"), callback_data=ScheduledCb(action="time", post_id=post.id))
        kb.button(text=_("✖️ Cancel it"), callback_data=ScheduledCb(action="cancel", post_id=post.id))
        kb.adjust(2)
        await message.answer(
            _("🕒 {when} — {kind}: {text}").format(
                when=local(post.scheduled_at, actor.org), kind=kind_label(post.kind), text=q(plain_text(post.text)[:100])
            ),
            reply_markup=kb.as_markup(),
        )


async def _own_scheduled(query: CallbackQuery, post_id: int, actor: Actor, repo: Repo) -> Post | None:
    post = await repo.post(post_id)
    if post is None or actor.org is None or post.org_id != actor.org.id or not (
        post.author_id == actor.person.id or actor.is_admin
    ):
        elsewhere = post is not None and actor.elsewhere(post.org_id)
        await query.answer(other_org_alert() if elsewhere else rights.REFUSED + _("Only the author can do this."), show_alert=True)
        return None
    if post.state != PostState.SCHEDULED:
        await query.answer(_("This post is no longer scheduled."), show_alert=True)
        return None
    return post


async def on_scheduled(query: CallbackQuery, callback_data: ScheduledCb, state: FSMContext, actor: Actor, repo: Repo) -> None:
    post = await _own_scheduled(query, callback_data.post_id, actor, repo)
    if post is None:
        return
    if callback_data.action == "cancel":
        post.state = PostState.CANCELLED.value
        await repo.cancel_due(post.id, [DueKind.SCHEDULED_POST.value])
        await query.answer(_("Cancelled. Nothing was sent."))
        await query.message.edit_text(_("✖️ Cancelled: it will not be sent."))  # type: ignore[union-attr]
        return
    token = await dialogs.begin(state, EditForm.scheduled_at, post_id=post.id, **{when.PICK_DAY: None})
    await query.answer()
    markup = when.days_markup(actor.org.timezone, utcnow(), [dialogs.cancel_button()])  # type: ignore[union-attr]
    await query.message.answer(_("Send the new date and time ({examples}).").format(examples=dates.examples()),  # type: ignore[union-attr]
                               reply_markup=dialogs.stamp(markup, token))


async def got_scheduled_time(message: Message, state: FSMContext, actor: Actor, repo: Repo) -> None:
    post = await repo.post((await state.get_data()).get("post_id", 0))
    if post is None or post.state != PostState.SCHEDULED or actor.org is None or post.org_id != actor.org.id or not (
        post.author_id == actor.person.id or actor.is_admin
    ):
        await state.clear()
        await message.answer(_("This post is no longer scheduled."))
        return
    moment, hint = await when.typed(message.text or "", state, actor.org.timezone)
    if moment is None:
        await message.answer(hint or "")
        return
    await _reschedule(message, state, actor, repo, post, moment)


async def _reschedule(message: Message, state: FSMContext, actor: Actor, repo: Repo, post: Post,
                      moment: datetime) -> None:
    await state.clear()
    await repo.cancel_due(post.id, [DueKind.SCHEDULED_POST.value])
    post.scheduled_at = moment
    await plan_scheduled_post(repo, post)
    await message.answer(_("🕒 Scheduled for {when}. /scheduled lists your scheduled posts.").format(
        when=local(moment, actor.org)))


# -- /schedule and /events ---------------------------------------------------------------------


def _my_groups(actor: Actor) -> dict[int, str]:
    return {m.group_id: m.group.title for m in actor.active() if m.group.kind == "class"}


async def schedule_command(message: Message, actor: Actor, repo: Repo) -> None:
    # Every group of theirs, the staff room included (its weekly items: the staff meeting).
    groups = {m.group_id: group_title(m.group) for m in actor.active()}
    if actor.org is not None and (actor.is_admin or actor.is_head):
        groups = {g.id: g.title for g in await repo.groups(actor.org.id, include_staff=False)}
    if actor.org is None or not groups:
        await message.answer(_("You are not in any group yet. Send /start."))
        return
    schedules = await repo.current_schedules(groups)
    authors = {p.id: p for p in await repo.people_by_ids({s.author_id for s in schedules.values() if s.author_id})}
    for group_id, title in groups.items():
        post = schedules.get(group_id)
        if post is None:
            continue
        author = authors.get(post.author_id or 0)
        text = body(post, actor.org, author.display_name if author else "—", title)
        for method in copy_methods(post, message.chat.id, text, None):  # a long one in several messages
            await message.bot(method)  # type: ignore[misc]
    items = list(await repo.weekly_items(groups))
    lines = []
    for group_id, title in groups.items():
        mine = [i for i in items if i.group_id == group_id]
        if mine:
            lines.append(f"<b>{q(title)}</b>")
            lines += ["• " + weekly.describe(i) for i in mine]
    markup = await weekly.manage_keyboard(actor, repo, items)
    if lines:
        await message.answer(_("<b>Every week</b>") + "\n" + "\n".join(lines), reply_markup=markup)
    elif not schedules:
        await message.answer(_("No schedule has been posted for your groups yet."), reply_markup=markup)
    elif markup is not None:
        await message.answer(_("No weekly items yet."), reply_markup=markup)


async def events_command(message: Message, actor: Actor, repo: Repo, bot_username: str) -> None:
    if actor.org is None or not actor.is_member:
        await message.answer(_("You are not in any group yet. Send /start."))
        return
    roles = actor.roles
    wide = {"org"} | ({"staff"} if roles & {Role.ADMIN, Role.HEAD, Role.TEACHER, Role.SPECIALIST} else set()) | (
        {"parents"} if Role.PARENT in roles else set()
    )
    group_ids = list(_my_groups(actor))
    if actor.is_admin or actor.is_head:
        group_ids = [g.id for g in await repo.groups(actor.org.id, include_staff=False)]
    events = await repo.upcoming_events(group_ids, actor.org.id, utcnow(), wide)
    if not events:
        await message.answer(_("No upcoming events."))
        return
    lines = [_("<b>Upcoming events</b>")]
    for post in events:
        title = _first_line(post.text) or kind_title()
        lines.append(f"• {local(post.event_at, actor.org)} — {q(shorten(title, 120))}"
                     + (f" · {q(shorten(post.place, 120))}" if post.place else ""))
    ics = exports.events_calendar(events, actor.org, bot_username,
                                  _("{org}: events").format(org=actor.org.name))
    for part in in_messages(lines):  # many events with long names: more than one message
        await message.answer(part)
    await message.answer_document(
        BufferedInputFile(ics, filename="events.ics"),
        caption=_("Open the file to add these events to your phone's calendar."),
    )


def kind_title() -> str:
    return _("Event")


def _first_line(text: str) -> str:
    return plain_text(text).strip().split("\n", 1)[0][:100]
