"""Last in line: a message nobody expected gets a hint, a button nobody
handles says it no longer works. Nothing is left unanswered."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _

from handlers.family import AbsentForm
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
        AbsentForm.range.state: _("Please send the days like 12.03-15.03."),
        AbsentForm.reason.state: _("Please send the reason, or use the buttons above."),
        WriteForm.message.state: _("Please send text, a photo or a document."),
        MemberForm.name.state: _("Please send the full name."),
        "text": text,
    }


def create_router() -> Router:
    router = Router(name="fallback")
    router.message.register(in_dialog, StateFilter("*"), ~StateFilter(None))
    router.message.register(unknown)
    router.callback_query.register(unknown_button)
    return router


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
