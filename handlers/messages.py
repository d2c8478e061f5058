"""/write: a parent or student writes to a teacher, a specialist or the
administration through the bot; the recipient answers with a Reply button.
Neither side needs the other's Telegram account. Office hours, and blocking
an abusive sender."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiogram import F, Router
from aiogram.filters import Command, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.methods import SendDocument, SendMessage, SendPhoto, TelegramMethod
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot import dialogs, rights
from bot.actor import Actor
from bot.i18n import in_locale
from bot.outbox import enqueue
from bot.posts import visible_length
from bot.settings import Settings
from bot.throttle import WrongCodeThrottle
from bot.timeline import hhmm
from handlers.admission import admin_chats
from handlers.filters import NOT_A_COMMAND, PRIVATE
from handlers.texts import NAME_MAX, blank, other_org_alert, q, role_name, shorten
from storage.models import Block, DbInt, Organisation, Person, Relay, Role, utcnow
from storage.repo import Repo

# Room left for the "Message from …, parent of …" header.
CAPTION_ROOM = 1024 - 300
TEXT_ROOM = 4096 - 300
RELATION_MAX = 120  # the header's "parent of …": with the name (NAME_MAX), well within the 300 kept


class WriteForm(StatesGroup):
    recipient = State()
    message = State()
    confirm = State()  # a text typed before /write (handlers/fallback.py): sent once confirmed


class WriteCb(CallbackData, prefix="w"):
    action: str  # to | admins | send
    person_id: DbInt = 0


class RelayCb(CallbackData, prefix="rl"):
    action: str  # reply | block
    relay_id: DbInt


def create_router() -> Router:
    router = Router(name="messages")
    router.message.register(write_command, Command("write"), PRIVATE)
    router.callback_query.register(send_typed, StateFilter(WriteForm.confirm), WriteCb.filter(F.action == "send"))
    router.callback_query.register(finished, WriteCb.filter(F.action == "send"))
    router.callback_query.register(chose_recipient, WriteCb.filter())
    router.message.register(got_message, StateFilter(WriteForm.message), NOT_A_COMMAND)
    router.callback_query.register(reply, RelayCb.filter(F.action == "reply"))
    router.callback_query.register(block, RelayCb.filter(F.action == "block"))
    return router


async def recipients(actor: Actor, repo: Repo) -> list[Person]:
    """Whom this person may write to: the teachers and specialists of their groups."""
    if actor.org is None:
        return []
    group_ids = {m.group_id for m in actor.active() if m.group.kind == "class"}
    people: dict[int, Person] = {}
    for group_id in group_ids:
        for p in await repo.people_in_role(actor.org.id, [Role.TEACHER, Role.SPECIALIST], group_id=group_id):
            if p.id != actor.person.id:
                people[p.id] = p
    return sorted(people.values(), key=lambda p: p.display_name)


async def write_command(message: Message, state: FSMContext, actor: Actor, repo: Repo) -> None:
    await start_writing(message, state, actor, repo)


async def start_writing(message: Message, state: FSMContext, actor: Actor, repo: Repo,
                        typed: str | None = None, typed_id: int | None = None, typed_text: str = "") -> None:
    """/write; `typed`: a message already written (outside a dialog), passed on once confirmed."""
    if actor.org is None or not actor.is_member or actor.awaiting_verification:
        await message.answer(rights.REFUSED + _("Only members can write here. Send /start."))
        return
    kb = InlineKeyboardBuilder()
    for person in await recipients(actor, repo):
        kb.button(text=person.display_name, callback_data=WriteCb(action="to", person_id=person.id))
    kb.button(text=_("🏫 The administration"), callback_data=WriteCb(action="admins"))
    kb.adjust(1)
    extra = {"typed": typed, "typed_id": typed_id, "typed_text": typed_text} if typed else {}
    token = await dialogs.begin(state, WriteForm.recipient, **extra)
    await message.answer(_("<b>Write a message.</b> To whom?"),
                         reply_markup=dialogs.stamp(dialogs.with_cancel(kb.as_markup()), token))


async def chose_recipient(query: CallbackQuery, callback_data: WriteCb, state: FSMContext, actor: Actor, repo: Repo) -> None:
    if actor.org is None or not actor.is_member or actor.awaiting_verification:
        await query.answer(rights.REFUSED + _("Only members can write here. Send /start."), show_alert=True)
        return
    if callback_data.action == "to":
        allowed = {p.id: p for p in await recipients(actor, repo)}
        person = allowed.get(callback_data.person_id)
        if person is None:
            await query.answer(rights.REFUSED + _("You cannot write to this person."), show_alert=True)
            return
        if await repo.is_blocked(person.id, actor.person.id):
            await query.answer(_("This person does not accept your messages."), show_alert=True)
            return
        name = person.display_name
        await state.update_data(to=person.id, admins=False, reply_to=None)
    else:
        name = _("the administration")
        await state.update_data(to=None, admins=True, reply_to=None)
    await query.answer()
    data = await state.get_data()
    if data.get("typed"):  # written already: confirm, then it goes
        await state.set_state(WriteForm.confirm)
        send = InlineKeyboardButton(text=_("📨 Send"), callback_data=WriteCb(action="send").pack())
        shown = q(shorten(data.get("typed_text") or "", 1000))  # the confirmation quotes it, plainly
        await query.message.edit_text(  # type: ignore[union-attr]
            _("Send this message to {name}?").format(name=q(name)) + "\n\n" + shown,
            reply_markup=await dialogs.mark(state, dialogs.cancel_markup([send])),
        )
        return
    await state.set_state(WriteForm.message)
    await query.message.edit_text(  # type: ignore[union-attr]
        _("Send your message to {name}: text, a photo or a document. /cancel stops.").format(name=q(name)),
        reply_markup=await dialogs.mark(state, dialogs.cancel_markup()),
    )


def _relation(actor: Actor, children: list[Any]) -> str:
    """How the recipient knows the sender: "parent of Петя Иванов (5А)"."""
    roles = {m.role for m in actor.active()}
    # Bounded, so that the header always leaves the room the message was promised.
    if Role.PARENT in roles and children:
        kids = ", ".join(f"{c.full_name} ({c.group_title})" for c in children)
        return shorten(_("parent of {children}").format(children=kids), RELATION_MAX)
    groups = ", ".join(sorted({m.group.title for m in actor.active()}))
    role = next((r for r in (Role.STUDENT, Role.TEACHER, Role.SPECIALIST, Role.HEAD, Role.ADMIN) if r in roles), None)
    return shorten(", ".join(p for p in (role_name(role) if role else "", groups) if p), RELATION_MAX)


def _copy(chat_id: int, header: str, message: Message | str, markup: InlineKeyboardMarkup) -> TelegramMethod[Any] | None:
    if isinstance(message, str):  # a text typed before /write, as HTML
        return SendMessage(chat_id=chat_id, text=header + "\n\n" + message, reply_markup=markup)
    if message.photo:
        caption = header + ("\n\n" + message.html_text if message.caption else "")
        return SendPhoto(chat_id=chat_id, photo=message.photo[-1].file_id, caption=caption, reply_markup=markup)
    if message.document:
        caption = header + ("\n\n" + message.html_text if message.caption else "")
        return SendDocument(chat_id=chat_id, document=message.document.file_id, caption=caption, reply_markup=markup)
    if message.text:
        return SendMessage(chat_id=chat_id, text=header + "\n\n" + message.html_text, reply_markup=markup)
    return None


def _buttons(relay_id: int) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(text=_("↩️ Reply"), callback_data=RelayCb(action="reply", relay_id=relay_id))
    kb.button(text=_("🚫 Block"), callback_data=RelayCb(action="block", relay_id=relay_id))
    return kb.as_markup()


def office_note(hours: str | None, org: Organisation, now: datetime) -> str | None:
    """When the recipient is outside office hours, when to expect an answer."""
    if not hours or "-" not in hours:
        return None
    start, end = (hhmm(h) for h in hours.split("-"))
    local = now.astimezone(ZoneInfo(org.timezone))
    if local.weekday() < 5 and start <= local.time().replace(tzinfo=None) < end:
        return None
    return _("It is outside office hours ({hours}), so expect an answer on a working day after {start}.").format(
        hours=hours, start=start.strftime("%H:%M"))


async def got_message(message: Message, state: FSMContext, actor: Actor, repo: Repo, settings: Settings,
                      throttle: WrongCodeThrottle) -> None:
    await _pass_on(message, message, message.message_id, state, actor, repo, settings, throttle)


async def send_typed(query: CallbackQuery, state: FSMContext, actor: Actor, repo: Repo, settings: Settings,
                     throttle: WrongCodeThrottle) -> None:
    data = await state.get_data()
    await query.answer()
    await _pass_on(query.message, data.get("typed") or "", data.get("typed_id") or 0,  # type: ignore[arg-type]
                   state, actor, repo, settings, throttle)


async def finished(query: CallbackQuery) -> None:
    await query.answer(dialogs.finished_text(), show_alert=True)


async def _pass_on(message: Message, content: Message | str, message_id: int, state: FSMContext, actor: Actor,
                   repo: Repo, settings: Settings, throttle: WrongCodeThrottle) -> None:
    """Passes `content` (the person's message, or a text they typed before) on; answers in `message`'s chat."""
    data = await state.get_data()
    org = actor.org
    if org is None or not actor.is_member:
        await state.clear()
        return
    media = isinstance(content, Message) and bool(content.photo or content.document)
    html = content if isinstance(content, str) else content.html_text or ""
    if blank(content if isinstance(content, str) else content.text) and not media:
        await message.answer(_("Please send text, a photo or a document. /cancel stops."))
        return
    limit = CAPTION_ROOM if media else TEXT_ROOM
    if visible_length(html) > limit:
        await message.answer(_("This is too long to pass on: at most {limit} characters. Please shorten it.").format(
            limit=limit))
        return
    reply_to = await repo.relay(data["reply_to"]) if data.get("reply_to") else None
    # Where the message goes: a person, or every admin.
    if data.get("admins"):
        chats = await admin_chats(repo, org, settings.admin_ids, settings.default_locale)
        chats.pop(actor.person.telegram_id, None)
        for blocker in await repo.blockers_of(actor.person.id):  # an admin's block holds here too
            chats.pop(blocker.telegram_id, None)
        target = None
        hours = org.office_hours
    else:
        target = await repo.person(data.get("to") or 0)
        if target is None:
            await state.clear()
            await message.answer(rights.REFUSED + _("You cannot write to this person."))
            return
        if await repo.is_blocked(target.id, actor.person.id):
            await state.clear()
            await message.answer(_("This person does not accept your messages."))
            return
        chats = {target.telegram_id: target.locale or settings.default_locale}
        hours = target.office_hours or org.office_hours
    recipient = f"person:{target.id}" if target is not None else f"admins:{org.id}"
    wait = await throttle.write_wait(actor.person.id, recipient)
    if wait:
        await message.answer(_("You have sent several messages in a row. You can write again in {seconds} s; "
                               "this one was not passed on.").format(seconds=wait))
        return
    await state.clear()
    relay = await repo.add_relay(Relay(
        org_id=org.id, sender_id=actor.person.id, recipient_id=target.id if target else None,
        to_administration=target is None, reply_to_id=reply_to.id if reply_to else None,
        sender_message_id=message_id,
    ))
    children = await repo.children_with_groups(actor.person.id, org.id)
    for chat_id, locale in chats.items():
        with in_locale(locale):
            if reply_to is not None:
                header = _("↩️ <b>Answer from {name}</b>").format(name=q(shorten(actor.person.display_name, NAME_MAX)))
            else:
                header = _("✉️ <b>Message from {name}</b>, {relation}").format(
                    name=q(shorten(actor.person.display_name, NAME_MAX)), relation=q(_relation(actor, children)))
            method = _copy(chat_id, header, content, _buttons(relay.id))
        if method is not None:
            enqueue(repo, chat_id, method, org_id=org.id, org=org, topic="relay", ref_id=relay.id)
    answer = _("✅ Sent.")
    if reply_to is None and (note := office_note(hours, org, utcnow())):
        answer += " " + note
    await message.answer(answer)


async def _addressed(query: CallbackQuery, relay_id: int, actor: Actor, repo: Repo) -> Relay | None:
    """The relay, if this person received it."""
    relay = await repo.relay(relay_id)
    if relay is None or actor.org is None or relay.org_id != actor.org.id:
        elsewhere = relay is not None and actor.elsewhere(relay.org_id)
        await query.answer(other_org_alert() if elsewhere else rights.REFUSED + _("This button is not for you."), show_alert=True)
        return None
    if relay.recipient_id == actor.person.id or (relay.to_administration and actor.is_admin):
        return relay
    await query.answer(rights.REFUSED + _("This button is not for you."), show_alert=True)
    return None


async def reply(query: CallbackQuery, callback_data: RelayCb, state: FSMContext, actor: Actor, repo: Repo) -> None:
    relay = await _addressed(query, callback_data.relay_id, actor, repo)
    if relay is None:
        return
    if relay.sender_id is None:
        await query.answer(_("The sender has left."), show_alert=True)
        return
    sender = await repo.person(relay.sender_id)
    token = await dialogs.begin(state, WriteForm.message, to=relay.sender_id, admins=False, reply_to=relay.id)
    await query.answer()
    await query.message.answer(  # type: ignore[union-attr]
        _("Send your answer to {name}. /cancel stops.").format(name=q(sender.display_name if sender else "—")),
        reply_markup=dialogs.stamp(dialogs.cancel_markup(), token),
    )


async def block(query: CallbackQuery, callback_data: RelayCb, actor: Actor, repo: Repo) -> None:
    relay = await _addressed(query, callback_data.relay_id, actor, repo)
    if relay is None or relay.sender_id is None:
        return
    if await repo.is_blocked(actor.person.id, relay.sender_id):
        await query.answer(_("Already blocked."), show_alert=True)
        return
    repo.session.add(Block(org_id=relay.org_id, blocker_id=actor.person.id, blocked_id=relay.sender_id))
    repo.audit(relay.org_id, actor.person.id, "relay.block", subject=f"person:{relay.sender_id}")
    await query.answer(_("Blocked: this sender can no longer write to you. Administrators see blocks."), show_alert=True)
