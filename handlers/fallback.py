"""Last in line: a message nobody expected gets a hint, a button nobody
handles says it no longer works. Nothing is left unanswered.

A text typed outside any dialog («Миша заболел, не придёт») is not lost: the
person is offered what they may do with it, from the rights table — a
parent an absence notice (the text offered as its reason) or a message to
the teacher (the text itself, after a confirmation); whoever may post, a
post with the text as its content; anyone else their main commands."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, Message
from aiogram.utils.i18n import gettext as _

from bot import dialogs, rights
from bot.actor import Actor
from bot.settings import Settings
from bot.throttle import WrongCodeThrottle
from handlers import family, joining, messages, posting
from handlers.invites import normalize_code
from handlers.family import AbsentForm
from handlers.filters import TEXT_INPUT
from handlers.groups import GroupForm
from handlers.joining import JoinForm
from handlers.messages import WriteForm
from handlers.onboarding import ImportForm
from handlers.post_actions import EditForm
from handlers.posting import PostForm
from handlers.requests import AskForm
from handlers.settings import QuietForm, TimeForm
from handlers.setup import SetupForm
from handlers.staff import MemberForm
from handlers.weekly import WeeklyForm
from storage.repo import Repo


class FreeForm(StatesGroup):
    offer = State()  # a text typed outside a dialog is kept until the person chooses what it is for


class FreeCb(CallbackData, prefix="fx"):
    action: str  # absent | write | post


def _hints() -> dict[str, str]:
    text = _("Please send it as a text message.")
    buttons = _("Please use the buttons above.")
    return {
        SetupForm.name.state: _("Please send the organisation's name."),
        SetupForm.kind.state: buttons,
        SetupForm.timezone.state: _("Please send a time zone like Europe/Moscow, or press the button above."),
        SetupForm.contact.state: _("Please send a contact, or press Skip above."),
        GroupForm.title.state: _("Please send the group's name."),
        JoinForm.name.state: _("Please send your full name."),
        JoinForm.child.state: _("Please send your child's full name."),
        JoinForm.confirm.state: buttons,
        ImportForm.file.state: _("Please send the list as an .xlsx or .csv file (as a document). /cancel stops."),
        ImportForm.preview.state: buttons,
        AskForm.role.state: buttons,
        AskForm.group.state: buttons,
        AskForm.name.state: _("Please send your full name."),
        AskForm.child.state: _("Please send your child's full name."),
        AskForm.confirm.state: buttons,
        PostForm.kind.state: buttons,
        PostForm.audience.state: buttons,
        PostForm.content.state: _("Please send the text, or a photo, document or video."),
        PostForm.event_at.state: _("Please send the date and time, like 25.12 18:30."),
        PostForm.place.state: _("Please send the place or link, or press Skip above."),
        PostForm.poll_options.state: _("Please send the answers, one per line."),
        PostForm.poll_settings.state: buttons,
        PostForm.options.state: buttons,
        PostForm.confirm.state: buttons,
        EditForm.text.state: _("Please send the new text."),
        EditForm.event_at.state: _("Please send the date and time, like 25.12 18:30."),
        EditForm.scheduled_at.state: _("Please send the date and time, like 25.12 18:30."),
        PostForm.send_at.state: _("Please send the date and time, like 25.12 18:30."),
        WeeklyForm.title.state: _("Please send what it is, for example: Бассейн."),
        WeeklyForm.time.state: _("Please send a time of day like 10:00."),
        QuietForm.typed.state: _("Please send the quiet hours like 21:30-07:30, or off."),
        TimeForm.digest.state: _("Please send a time of day like 10:00."),
        AbsentForm.child.state: buttons,
        AbsentForm.day.state: buttons,
        AbsentForm.range.state: _("Please send the days like 12.03-15.03."),
        AbsentForm.reason.state: _("Please send the reason, or use the buttons above."),
        WriteForm.recipient.state: buttons,
        WriteForm.message.state: _("Please send text, a photo or a document."),
        WriteForm.confirm.state: buttons,
        WeeklyForm.group.state: buttons,
        PostForm.deadline.state: _("Please send the date and time, like 25.12 18:30."),
        MemberForm.name.state: _("Please send the full name."),
        FreeForm.offer.state: buttons,
        "text": text,
    }


def create_router() -> Router:
    router = Router(name="fallback")
    # Another text while the offer stands: an offer for the new one.
    router.message.register(free_text, StateFilter(None, FreeForm.offer), TEXT_INPUT)
    router.message.register(in_dialog, StateFilter("*"), ~StateFilter(None))
    router.message.register(unknown)
    router.callback_query.register(offer_chosen, StateFilter(FreeForm.offer), FreeCb.filter())
    router.callback_query.register(offer_gone, FreeCb.filter())
    router.callback_query.register(unknown_button)
    return router


def _offers(actor: Actor) -> list[tuple[str, str]]:
    """(action, label) of what this person may do with a text they typed: asked of bot.rights."""
    out = []
    if actor.can(rights.Cap.ABSENT):
        out.append(("absent", _("📝 Absence notice")))
    if actor.can(rights.Cap.POST):
        out.append(("post", _("📣 Post it")))
    elif actor.can(rights.Cap.MEMBER) and not actor.awaiting_verification:
        out.append(("write", _("✉️ Message to the teacher")))
    return out


def main_commands(actor: Actor) -> str:
    """The person's everyday commands (the table's), for a reply that offers no button."""
    everyday = (rights.Section.EVERYDAY, rights.Section.FAMILY, rights.Section.TEACHING)
    names = [c.name for c in rights.commands(actor) if c.section in everyday][:8]
    if not names:
        if actor.awaiting_verification:
            return _("You are waiting for an administrator to verify you. Meanwhile: /help")
        return _("To join your school or kindergarten, open the invitation link you were given, "
                 "or send /join with its code. /help lists what you can do.")
    return _("What you can do: {commands}. All of it: /help").format(commands=" ".join("/" + n for n in names))


async def free_text(message: Message, state: FSMContext, actor: Actor, repo: Repo, throttle: WrongCodeThrottle,
                    settings: Settings) -> None:
    if message.chat.type != "private":
        return  # group chats are not ours to chatter in
    if not actor.is_member and normalize_code(message.text or "") is not None:
        # A newcomer typing the code from a slip or a poster, without /join: it is one.
        await joining.begin(message, message.text or "", state, actor, repo, throttle, settings)
        return
    offers = _offers(actor)
    if not offers:
        if await state.get_state() is not None:
            await state.clear()
        await message.answer(_("I did not understand that.") + " " + main_commands(actor))
        return
    token = await dialogs.begin(state, FreeForm.offer, text=message.text or "", html=message.html_text or "",
                                message_id=message.message_id)
    rows = [[InlineKeyboardButton(text=label, callback_data=FreeCb(action=action).pack())] for action, label in offers]
    await message.answer(_("What should I do with your message?"),
                         reply_markup=dialogs.stamp(dialogs.cancel_markup(*rows), token))


async def offer_chosen(query: CallbackQuery, callback_data: FreeCb, state: FSMContext, actor: Actor,
                       repo: Repo) -> None:
    """The chosen action begins with the text carried into it (each asks its own right again)."""
    allowed = dict(_offers(actor))
    if callback_data.action not in allowed:
        cap = {"absent": rights.Cap.ABSENT, "post": rights.Cap.POST}.get(callback_data.action, rights.Cap.MEMBER)
        await query.answer(rights.refusal(actor, cap), show_alert=True)
        return
    data = await state.get_data()
    await query.answer()
    message = query.message
    assert isinstance(message, Message)
    await message.edit_text(allowed[callback_data.action])
    if callback_data.action == "absent":
        await family.start_absence(message, state, actor, repo, typed=data.get("text"))
    elif callback_data.action == "write":
        await messages.start_writing(message, state, actor, repo, typed=data.get("html"),
                                     typed_id=data.get("message_id"), typed_text=data.get("text") or "")
    else:
        await posting.start_post(message, state, actor, typed=data.get("html"))


async def offer_gone(query: CallbackQuery) -> None:
    await query.answer(dialogs.finished_text(), show_alert=True)


async def in_dialog(message: Message, state: FSMContext) -> None:
    if message.chat.type != "private":
        return
    current = await state.get_state()
    hint = _hints().get(current or "", _hints()["text"])
    await message.answer(hint + " " + _("Or send /cancel to stop."))


async def unknown(message: Message) -> None:
    if message.chat.type != "private":
        return  # group chats are not ours to chatter in
    await message.answer(_("I did not understand that. Send /help to see what you can do."))


async def unknown_button(query: CallbackQuery) -> None:
    await query.answer(_("This button no longer works. Send /start to begin again."), show_alert=True)
