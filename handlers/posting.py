"""/post: kind → audience → content → options → a preview exactly as
recipients will see it → send now or cancel. /cancel works at every step,
and every step has ✖️ Cancel and (but the first) ◀️ Back, which returns to the
step before with what was entered kept. The dialog's buttons carry its token
(bot/dialogs.py): those of a sent or cancelled post change nothing.

The dialog keeps its draft in the FSM; nothing is written until Send, and Send
re-checks every right (the audience may have been forged or changed meanwhile).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from aiogram import F, Router
from aiogram.filters import Command, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot import dates, dialogs, rights
from bot.actor import Actor
from bot.posts import (
    audience_text,
    body,
    copy_methods,
    keyboard,
    kind_label,
    local,
    publish,
)
from bot.settings import Settings
from bot.timeline import DEFAULT_REMINDERS, REMINDER_CHOICES, plan_scheduled_post, quiet_until
from handlers.filters import IN_ALBUM, NOT_A_COMMAND, TEXT_INPUT
from handlers import when
from handlers.texts import blank, is_number, plain
from handlers.when import WhenCb
from storage.models import (
    Group,
    GroupKind,
    OrgKind,
    PollOption,
    Post,
    PostGroup,
    PostKind,
    PostState,
    utcnow,
)
from storage.repo import Repo

MAX_OPTIONS = 10
LATEST = timedelta(days=366)  # the quick choices of "send later" lie within this
WIDE = ("org", "staff", "parents")


class PostForm(StatesGroup):
    kind = State()
    audience = State()
    content = State()
    event_at = State()
    place = State()
    poll_options = State()
    poll_settings = State()
    options = State()
    confirm = State()
    send_at = State()
    deadline = State()  # a typed or picked date for the acknowledgement or the poll


class ComposeCb(CallbackData, prefix="cmp"):
    action: str
    value: str = ""


def create_router() -> Router:
    router = Router(name="posting")
    router.message.register(post_command, Command("post"))
    router.callback_query.register(choose_kind, StateFilter(PostForm.kind), ComposeCb.filter(F.action == "kind"))
    router.callback_query.register(toggle_audience, StateFilter(PostForm.audience), ComposeCb.filter(F.action.in_({"group", "wide", "parents", "students"})))
    router.callback_query.register(audience_done, StateFilter(PostForm.audience), ComposeCb.filter(F.action == "next"))
    # Items 2..n of an album arrive as updates of their own, whatever step the dialog is at by then.
    router.message.register(album_item, StateFilter(PostForm), IN_ALBUM)
    router.message.register(got_content, StateFilter(PostForm.content), NOT_A_COMMAND)
    router.message.register(got_event_at, StateFilter(PostForm.event_at), TEXT_INPUT)
    router.callback_query.register(picked_event_at, StateFilter(PostForm.event_at), WhenCb.filter())
    router.message.register(got_place, StateFilter(PostForm.place), TEXT_INPUT)
    router.callback_query.register(skip_place, StateFilter(PostForm.place), ComposeCb.filter(F.action == "no_place"))
    router.message.register(got_poll_options, StateFilter(PostForm.poll_options), TEXT_INPUT)
    router.callback_query.register(toggle_poll, StateFilter(PostForm.poll_settings), ComposeCb.filter(F.action.in_({"multiple", "anonymous", "deadline"})))
    router.callback_query.register(poll_done, StateFilter(PostForm.poll_settings), ComposeCb.filter(F.action == "next"))
    router.callback_query.register(toggle_option, StateFilter(PostForm.options), ComposeCb.filter(F.action.in_({"ack", "ack_days", "remind", "urgent"})))
    router.callback_query.register(preview, StateFilter(PostForm.options), ComposeCb.filter(F.action == "preview"))
    router.callback_query.register(send, StateFilter(PostForm.confirm), ComposeCb.filter(F.action == "send"))
    router.callback_query.register(ask_later, StateFilter(PostForm.confirm), ComposeCb.filter(F.action == "later"))
    router.callback_query.register(later_chosen, StateFilter(PostForm.send_at), ComposeCb.filter(F.action == "at"))
    router.message.register(later_typed, StateFilter(PostForm.send_at), TEXT_INPUT)
    router.callback_query.register(later_picked, StateFilter(PostForm.send_at), WhenCb.filter())
    router.callback_query.register(ask_deadline, StateFilter(PostForm.options, PostForm.poll_settings),
                                   ComposeCb.filter(F.action == "due_date"))
    router.message.register(deadline_typed, StateFilter(PostForm.deadline), TEXT_INPUT)
    router.callback_query.register(deadline_picked, StateFilter(PostForm.deadline), WhenCb.filter())
    router.callback_query.register(back, StateFilter(PostForm), ComposeCb.filter(F.action == "back"))
    router.callback_query.register(cancel, StateFilter(PostForm), ComposeCb.filter(F.action == "cancel"))
    router.callback_query.register(stale, ComposeCb.filter())
    # (the edit dialogs of handlers/post_actions.py take their own day and time presses)
    router.callback_query.register(stale, StateFilter(None, PostForm), WhenCb.filter())
    return router


# -- rights ----------------------------------------------------------------------


def refusal(actor: Actor) -> str | None:
    """Why this person may not post now (bot.rights decides), or None."""
    return None if actor.can(rights.Cap.POST) else rights.refusal(actor, rights.Cap.POST)


async def postable_groups(actor: Actor, repo: Repo) -> list[Group]:
    groups = await repo.groups(actor.org.id, include_staff=False)  # type: ignore[union-attr]
    where = actor.scope(rights.Cap.POST)
    return [g for g in groups if g.id in where]


def may_post_wide(actor: Actor) -> bool:
    return actor.can(rights.Cap.POST_WIDE)


# -- the dialog ----------------------------------------------------------------------


async def post_command(message: Message, state: FSMContext, actor: Actor) -> None:
    await start_post(message, state, actor)


async def start_post(message: Message, state: FSMContext, actor: Actor, typed: str | None = None) -> None:
    """/post; `typed`: a text written before (outside a dialog, as HTML), the post's content once the audience is chosen."""
    why = refusal(actor)
    if why:
        await message.answer(why)
        return
    token = await dialogs.begin(state, PostForm.kind, **({"typed": typed} if typed else {}))
    await message.answer(_("<b>New post.</b> What is it? (/cancel stops at any step)"),
                         reply_markup=dialogs.stamp(_kind_markup(), token))


def _kind_markup() -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for kind in PostKind:
        kb.button(text=kind_label(kind), callback_data=ComposeCb(action="kind", value=kind.value))
    kb.button(text=_("✖️ Cancel"), callback_data=ComposeCb(action="cancel"))
    kb.adjust(2)
    return kb.as_markup()


def _back_row(step: str) -> list[InlineKeyboardButton]:
    """◀️ Back to `step` (a PostForm state's name) and ✖️ Cancel."""
    return [InlineKeyboardButton(text=_("◀️ Back"), callback_data=ComposeCb(action="back", value=step).pack()),
            _cancel_button()]


def _back_markup(step: str, markup: InlineKeyboardMarkup | None = None) -> InlineKeyboardMarkup:
    rows = list(markup.inline_keyboard) if markup is not None else []
    return InlineKeyboardMarkup(inline_keyboard=[*rows, _back_row(step)])


async def choose_kind(query: CallbackQuery, callback_data: ComposeCb, state: FSMContext, actor: Actor, repo: Repo) -> None:
    if callback_data.value not in {k.value for k in PostKind} or refusal(actor):
        await query.answer(_("Please choose one of the buttons."), show_alert=True)
        return
    data = await state.get_data()
    if "groups" in data:  # back from a later step: the audience chosen is kept
        data["kind"] = callback_data.value
        if callback_data.value == PostKind.SCHEDULE:
            data["wide"] = None  # a schedule is a group's
    else:
        data.update(kind=callback_data.value, groups=[], wide=None, to_parents=True,
                    to_students=actor.org.kind != OrgKind.KINDERGARTEN)  # type: ignore[union-attr]
    await state.set_data(data)
    await state.set_state(PostForm.audience)
    await query.answer()
    text, markup = await _audience_view(actor, repo, data)
    await query.message.edit_text(text, reply_markup=await dialogs.mark(state, markup))  # type: ignore[union-attr]


async def _audience_view(actor: Actor, repo: Repo, data: dict[str, Any]) -> tuple[str, InlineKeyboardMarkup]:
    kb = InlineKeyboardBuilder()
    chosen = set(data["groups"])
    groups = await postable_groups(actor, repo)
    for group in groups:
        mark = "☑️ " if group.id in chosen else "▫️ "
        kb.button(text=mark + group.title, callback_data=ComposeCb(action="group", value=str(group.id)))
    sizes = [2] * ((len(groups) + 1) // 2)
    if data["kind"] != PostKind.SCHEDULE and may_post_wide(actor):
        labels = {"org": _("the whole organisation"), "staff": _("all staff"), "parents": _("all parents")}
        for wide in WIDE:
            mark = "☑️ " if data["wide"] == wide else "▫️ "
            kb.button(text=mark + labels[wide], callback_data=ComposeCb(action="wide", value=wide))
        sizes += [1, 1, 1]
    kb.button(text=("☑️ " if data["to_parents"] else "▫️ ") + _("parents"), callback_data=ComposeCb(action="parents"))
    if actor.org.kind != OrgKind.KINDERGARTEN:  # type: ignore[union-attr]
        kb.button(text=("☑️ " if data["to_students"] else "▫️ ") + _("students"), callback_data=ComposeCb(action="students"))
        sizes.append(2)
    else:
        sizes.append(1)
    kb.button(text=_("Next →"), callback_data=ComposeCb(action="next"))
    sizes.append(1)
    kb.adjust(*sizes)
    return _("<b>{kind}.</b> To whom? Choose groups (and whom in them), then Next.").format(
        kind=kind_label(data["kind"])
    ), _back_markup("kind", kb.as_markup())


async def toggle_audience(query: CallbackQuery, callback_data: ComposeCb, state: FSMContext, actor: Actor, repo: Repo) -> None:
    data = await state.get_data()
    if callback_data.action == "group":
        allowed = {g.id for g in await postable_groups(actor, repo)}
        if not is_number(callback_data.value) or int(callback_data.value) not in allowed:
            await query.answer(rights.REFUSED + _("You cannot post to this group."), show_alert=True)
            return
        chosen = set(data["groups"]) ^ {int(callback_data.value)}
        data.update(groups=sorted(chosen), wide=None)
    elif callback_data.action == "wide":
        if callback_data.value not in WIDE or not may_post_wide(actor) or data["kind"] == PostKind.SCHEDULE:
            await query.answer(rights.REFUSED + _("Only the head and administrators post to everyone."), show_alert=True)
            return
        data.update(wide=None if data["wide"] == callback_data.value else callback_data.value, groups=[])
    elif callback_data.action == "parents":
        data.update(to_parents=not data["to_parents"])
    else:
        data.update(to_students=not data["to_students"])
    await state.set_data(data)
    await query.answer()
    text, markup = await _audience_view(actor, repo, data)
    await query.message.edit_text(text, reply_markup=await dialogs.mark(state, markup))  # type: ignore[union-attr]


async def audience_done(query: CallbackQuery, state: FSMContext, actor: Actor) -> None:
    data = await state.get_data()
    if not data["wide"] and (not data["groups"] or not (data["to_parents"] or data["to_students"])):
        await query.answer(_("Choose at least one group, and parents or students."), show_alert=True)
        return
    await state.set_state(PostForm.content)
    await query.answer()
    if data.get("typed"):  # written before /post: it is the content (Back to this step asks anew)
        typed = data.pop("typed")
        await state.set_data(data)
        await query.message.edit_text(_("📝 Its content: the message you wrote."))  # type: ignore[union-attr]
        await _content_chosen(query.message, state, actor, data, typed, None, None)  # type: ignore[arg-type]
        return
    await query.message.edit_text(_content_prompt(data), reply_markup=await dialogs.mark(state, _back_markup("audience")))  # type: ignore[union-attr]


def _content_prompt(data: dict[str, Any]) -> str:
    prompts = {
        PostKind.POLL: _("Send the question of the poll."),
        PostKind.EVENT: _("Describe the event: send its text (a photo or document with a caption also works)."),
        PostKind.SCHEDULE: _("Send the schedule: text, or a photo or document of it. It replaces the group's current one."),
    }
    return prompts.get(PostKind(data["kind"]), _("Send the text — formatting and links are kept — or a photo, document or video with a caption."))


def _content_of(message: Message) -> tuple[str, str | None, str | None]:
    """(HTML text, media kind, file id) of what the author sent."""
    if message.photo:
        return message.html_text if message.caption else "", "photo", message.photo[-1].file_id
    if message.document:
        return message.html_text if message.caption else "", "document", message.document.file_id
    if message.video:
        return message.html_text if message.caption else "", "video", message.video.file_id
    if message.text:
        return message.html_text, None, None
    return "", None, None


ALBUM_MAX = 10  # Telegram's own limit for a media group


async def album_item(message: Message, state: FSMContext, actor: Actor) -> None:
    """The first item of an album is the content; the others join it silently."""
    data = await state.get_data()
    if data.get("refused_group") == message.media_group_id:
        return  # its first item was answered already
    if data.get("album_group") == message.media_group_id:
        text, media_kind, file_id = _content_of(message)
        album = data.get("album") or []
        if media_kind and file_id and len(album) < ALBUM_MAX:
            album.append({"kind": media_kind, "file_id": file_id})
        update: dict[str, Any] = {"album": album}
        if text and not data.get("text"):  # the caption may be on any item
            update["text"] = text
        await state.update_data(update)
        return
    if await state.get_state() == PostForm.content.state:
        await got_content(message, state, actor)
        return
    await message.answer(_("This album is not part of the post being written. Please use the buttons above, "
                           "or /cancel and start again."))


async def got_content(message: Message, state: FSMContext, actor: Actor) -> None:
    data = await state.get_data()
    text, media_kind, file_id = _content_of(message)
    if message.media_group_id and file_id and data["kind"] != PostKind.POLL:
        # An album: one post with every item, sent to each family as an album.
        await state.update_data(album_group=message.media_group_id, album=[{"kind": media_kind, "file_id": file_id}])
        media_kind, file_id = None, None
        if blank(text):
            text = ""
    if blank(message.text) and not file_id and not message.media_group_id:  # also spaces or invisible characters only
        await message.answer(_("Please send text, or a photo, document or video. /cancel stops."))
        return
    if data["kind"] == PostKind.POLL and (media_kind or not text):
        if message.media_group_id:
            await state.update_data(refused_group=message.media_group_id)
        await message.answer(_("A poll's question is text. Please send it as a text message."))
        return
    await _content_chosen(message, state, actor, data, text, media_kind, file_id)


async def _content_chosen(message: Message, state: FSMContext, actor: Actor, data: dict[str, Any], text: str,
                          media_kind: str | None, file_id: str | None) -> None:
    # A long text is not refused: its copies are split into several messages (bot/posts.copy_methods).
    await state.update_data(text=text, media_kind=media_kind, media_file_id=file_id)
    if data["kind"] == PostKind.EVENT:
        await state.set_state(PostForm.event_at)
        await state.update_data({when.PICK_DAY: None})
        await message.answer(_("When is it?") + " " + when.typing_hint(),
                             reply_markup=await dialogs.mark(state, _event_at_markup(actor)))
    elif data["kind"] == PostKind.POLL:
        await state.set_state(PostForm.poll_options)
        await message.answer(_("Send the answers, one per line (2 to 10)."),
                             reply_markup=await dialogs.mark(state, _back_markup("content")))
    else:
        await _ask_options(message, state)


def _cancel_button() -> InlineKeyboardButton:
    return InlineKeyboardButton(text=_("✖️ Cancel"), callback_data=ComposeCb(action="cancel").pack())


def _event_at_markup(actor: Actor) -> InlineKeyboardMarkup:
    return when.days_markup(actor.org.timezone, utcnow(), _back_row("content"))  # type: ignore[union-attr]


async def got_event_at(message: Message, state: FSMContext, actor: Actor) -> None:
    moment, hint = await when.typed(message.text or "", state, actor.org.timezone)  # type: ignore[union-attr]
    if moment is None:
        await message.answer(hint or "")
        return
    await _event_at_chosen(message, state, moment, actor)


async def picked_event_at(query: CallbackQuery, callback_data: WhenCb, state: FSMContext, actor: Actor) -> None:
    moment = await when.pressed(query, callback_data, state, actor.org.timezone, utcnow(), _back_row("content"))  # type: ignore[union-attr]
    if moment is not None:
        await query.answer()
        await _event_at_chosen(query.message, state, moment, actor)  # type: ignore[arg-type]


async def _event_at_chosen(message: Message, state: FSMContext, moment: datetime, actor: Actor) -> None:
    await state.update_data({"event_at": moment.isoformat(), when.PICK_DAY: None})
    await message.answer(_("🕒 {when}").format(when=local(moment, actor.org)))  # type: ignore[arg-type]
    await state.set_state(PostForm.place)
    await message.answer(_place_prompt(), reply_markup=await dialogs.mark(state, _place_markup()))


def _place_prompt() -> str:
    return _("Where? Send the place or the online-lesson link, or Skip.")


def _place_markup() -> InlineKeyboardMarkup:
    skip = InlineKeyboardButton(text=_("Skip"), callback_data=ComposeCb(action="no_place").pack())
    return InlineKeyboardMarkup(inline_keyboard=[[skip], _back_row("event_at")])


async def got_place(message: Message, state: FSMContext) -> None:
    place = plain(message.text)
    if not 2 <= len(place) <= 500:
        await message.answer(_("Please send the place as text of 2 to 500 characters, or press Skip."))
        return
    await state.update_data(place=place)
    await _ask_options(message, state)


async def skip_place(query: CallbackQuery, state: FSMContext) -> None:
    await query.answer()
    await state.update_data(place=None)
    await _ask_options(query.message, state)  # type: ignore[arg-type]


async def got_poll_options(message: Message, state: FSMContext) -> None:
    options = [plain(line) for line in (message.text or "").splitlines() if plain(line)]
    if not 2 <= len(options) <= MAX_OPTIONS or any(len(o) > 100 for o in options):
        await message.answer(_("Send 2 to 10 answers, one per line, each up to 100 characters."))
        return
    if len({o.casefold() for o in options}) != len(options):
        await message.answer(_("Two answers are the same. Please send each answer once."))
        return
    await state.update_data(options=options, multiple=False, anonymous=False, deadline_hours=0)
    await state.set_state(PostForm.poll_settings)
    text, markup = _poll_view(await state.get_data())
    await message.answer(text, reply_markup=await dialogs.mark(state, markup))


DEADLINES = (0, 24, 72, 168)


def _poll_view(data: dict[str, Any]) -> tuple[str, InlineKeyboardMarkup]:
    kb = InlineKeyboardBuilder()
    kb.button(text=_("Several answers") if data["multiple"] else _("One answer"), callback_data=ComposeCb(action="multiple"))
    kb.button(text=_("Anonymous") if data["anonymous"] else _("With names"), callback_data=ComposeCb(action="anonymous"))
    hours = data["deadline_hours"]
    label = _("No deadline") if not hours else ngettext("Closes in {n} day", "Closes in {n} days", hours // 24).format(n=hours // 24)
    if data.get("poll_due"):
        label = _("Closes {when}").format(when=when_text(data["poll_due"], data))
    kb.button(text="⏰ " + label, callback_data=ComposeCb(action="deadline"))
    kb.button(text=_("📅 Date…"), callback_data=ComposeCb(action="due_date", value="poll"))
    kb.button(text=_("Next →"), callback_data=ComposeCb(action="next"))
    kb.adjust(2, 2, 1)
    return _("How does the poll work? Press a button to change it."), _back_markup("poll_options", kb.as_markup())


async def toggle_poll(query: CallbackQuery, callback_data: ComposeCb, state: FSMContext) -> None:
    data = await state.get_data()
    if callback_data.action == "multiple":
        data["multiple"] = not data["multiple"]
    elif callback_data.action == "anonymous":
        data["anonymous"] = not data["anonymous"]
    else:
        data["deadline_hours"] = DEADLINES[(DEADLINES.index(data["deadline_hours"]) + 1) % len(DEADLINES)]
        data["poll_due"] = None
    await state.set_data(data)
    await query.answer()
    text, markup = _poll_view(data)
    await query.message.edit_text(text, reply_markup=await dialogs.mark(state, markup))  # type: ignore[union-attr]


async def poll_done(query: CallbackQuery, state: FSMContext) -> None:
    await query.answer()
    await _ask_options(query.message, state)  # type: ignore[arg-type]


async def _ask_options(message: Message, state: FSMContext) -> None:
    data = await state.get_data()
    data.setdefault("ask_ack", False)
    data.setdefault("urgent", False)
    data.setdefault("ack_days", 0)
    data.setdefault("reminders", list(DEFAULT_REMINDERS) if data["kind"] == PostKind.EVENT else [])
    # An event 18 minutes away cannot be reminded of a day or an hour before.
    data["reminders"] = [m for m in data["reminders"] if m in possible_reminders(data)]
    await state.set_data(data)
    await state.set_state(PostForm.options)
    text, markup = _options_view(data)
    await message.answer(text, reply_markup=await dialogs.mark(state, markup))


ACK_DAYS = (0, 1, 3, 7)


def reminder_label(minutes: int) -> str:
    if minutes % 1440 == 0:
        return ngettext("{n} day before", "{n} days before", minutes // 1440).format(n=minutes // 1440)
    if minutes % 60 == 0:
        return ngettext("{n} hour before", "{n} hours before", minutes // 60).format(n=minutes // 60)
    return ngettext("{n} minute before", "{n} minutes before", minutes).format(n=minutes)


def possible_reminders(data: dict[str, Any]) -> list[int]:
    """The offsets that can still fire before the event."""
    if not data.get("event_at"):
        return list(REMINDER_CHOICES)
    left = datetime.fromisoformat(data["event_at"]) - utcnow()
    return [m for m in REMINDER_CHOICES if timedelta(minutes=m) < left]


def _options_view(data: dict[str, Any]) -> tuple[str, InlineKeyboardMarkup]:
    kb = InlineKeyboardBuilder()
    sizes = []
    if data["kind"] != PostKind.POLL:
        kb.button(text=("☑️ " if data["ask_ack"] else "▫️ ") + _("Ask to acknowledge"), callback_data=ComposeCb(action="ack"))
        sizes.append(1)
        if data["ask_ack"]:
            days = data["ack_days"]
            label = _("no deadline") if not days else ngettext("within {n} day", "within {n} days", days).format(n=days)
            if data.get("ack_due"):
                label = _("by {when}").format(when=when_text(data["ack_due"], data))
            kb.button(text="⏰ " + _("Acknowledge: {when}").format(when=label), callback_data=ComposeCb(action="ack_days"))
            kb.button(text=_("📅 Date…"), callback_data=ComposeCb(action="due_date", value="ack"))
            sizes.append(2)
    if data["kind"] == PostKind.EVENT:
        possible = possible_reminders(data)
        for minutes in possible:
            mark = "☑️ " if minutes in data["reminders"] else "▫️ "
            kb.button(text=mark + "⏰ " + reminder_label(minutes), callback_data=ComposeCb(action="remind", value=str(minutes)))
        sizes += [2] * ((len(possible) + 1) // 2)
    kb.button(text=("☑️ " if data["urgent"] else "▫️ ") + _("Urgent"), callback_data=ComposeCb(action="urgent"))
    kb.button(text=_("👁 Preview"), callback_data=ComposeCb(action="preview"))
    sizes += [1, 1]
    kb.adjust(*sizes)
    return _("Options: press to switch them, then Preview."), _back_markup(_before_options(data), kb.as_markup())


def _before_options(data: dict[str, Any]) -> str:
    return {PostKind.EVENT: "place", PostKind.POLL: "poll_settings"}.get(PostKind(data["kind"]), "content")


async def toggle_option(query: CallbackQuery, callback_data: ComposeCb, state: FSMContext) -> None:
    data = await state.get_data()
    action = callback_data.action
    if action in ("ack", "ack_days") and data["kind"] == PostKind.POLL:
        await query.answer(_("Please choose one of the buttons."), show_alert=True)
        return
    if action == "ack":
        data["ask_ack"] = not data["ask_ack"]
    elif action == "ack_days":
        data["ack_days"] = ACK_DAYS[(ACK_DAYS.index(data["ack_days"]) + 1) % len(ACK_DAYS)]
        data["ack_due"] = None
    elif action == "remind":
        if data["kind"] != PostKind.EVENT or not is_number(callback_data.value) \
                or int(callback_data.value) not in possible_reminders(data):
            await query.answer(_("Please choose one of the buttons."), show_alert=True)
            return
        data["reminders"] = sorted(set(data["reminders"]) ^ {int(callback_data.value)}, reverse=True)
    else:
        data["urgent"] = not data["urgent"]
    await state.set_data(data)
    await query.answer()
    text, markup = _options_view(data)
    await query.message.edit_text(text, reply_markup=await dialogs.mark(state, markup))  # type: ignore[union-attr]


# -- preview and send ---------------------------------------------------------------------


def _deadline(data: dict[str, Any], key: str, span: timedelta, now: datetime) -> datetime | None:
    """A date chosen in the calendar, or a span from now (none when zero)."""
    if data.get(key):
        return datetime.fromisoformat(data[key])
    return now + span if span else None


def when_text(iso: str, data: dict[str, Any]) -> str:
    return dates.when(datetime.fromisoformat(iso), data.get("zone"))


async def ask_deadline(query: CallbackQuery, callback_data: ComposeCb, state: FSMContext, actor: Actor) -> None:
    data = await state.get_data()
    if callback_data.value not in ("ack", "poll") or (callback_data.value == "poll") != (data["kind"] == PostKind.POLL):
        await query.answer(_("Please choose one of the buttons."), show_alert=True)
        return
    await state.update_data({"deadline_for": callback_data.value, when.PICK_DAY: None, "zone": actor.org.timezone})  # type: ignore[union-attr]
    await state.set_state(PostForm.deadline)
    await query.answer()
    question = _("Until when can people acknowledge?") if callback_data.value == "ack" else _("When does the poll close?")
    markup = when.days_markup(actor.org.timezone, utcnow(), _deadline_extra(callback_data.value))  # type: ignore[union-attr]
    await query.message.edit_text(question + " " + when.typing_hint(),  # type: ignore[union-attr]
                                  reply_markup=await dialogs.mark(state, markup))


def _deadline_extra(deadline_for: str) -> list[InlineKeyboardButton]:
    return _back_row("poll_settings" if deadline_for == "poll" else "options")


async def deadline_typed(message: Message, state: FSMContext, actor: Actor) -> None:
    moment, hint = await when.typed(message.text or "", state, actor.org.timezone)  # type: ignore[union-attr]
    if moment is None:
        await message.answer(hint or "")
        return
    await _deadline_chosen(message, state, moment)


async def deadline_picked(query: CallbackQuery, callback_data: WhenCb, state: FSMContext, actor: Actor) -> None:
    extra = _deadline_extra((await state.get_data()).get("deadline_for", ""))
    moment = await when.pressed(query, callback_data, state, actor.org.timezone, utcnow(), extra)  # type: ignore[union-attr]
    if moment is not None:
        await query.answer()
        await _deadline_chosen(query.message, state, moment)  # type: ignore[arg-type]


async def _deadline_chosen(message: Message, state: FSMContext, moment: datetime) -> None:
    data = await state.get_data()
    data[when.PICK_DAY] = None
    if data["deadline_for"] == "poll":
        data["poll_due"] = moment.isoformat()
        await state.set_data(data)
        await state.set_state(PostForm.poll_settings)
        text, markup = _poll_view(data)
    else:
        data["ack_due"] = moment.isoformat()
        await state.set_data(data)
        await state.set_state(PostForm.options)
        text, markup = _options_view(data)
    await message.answer(text, reply_markup=await dialogs.mark(state, markup))


def draft_post(data: dict[str, Any], actor: Actor) -> Post:
    """The post as it will be, not added to the database."""
    now = utcnow()
    post = Post(
        id=0, org_id=actor.org.id, author_id=actor.person.id, kind=data["kind"],  # type: ignore[union-attr]
        audience=data["wide"] or "groups", to_parents=data["to_parents"], to_students=data["to_students"],
        text=data.get("text", ""), media_kind=data.get("media_kind"), media_file_id=data.get("media_file_id"),
        ask_ack=data.get("ask_ack", False), urgent=data.get("urgent", False), state=PostState.SENT.value,
        created_at=now, event_at=datetime.fromisoformat(data["event_at"]) if data.get("event_at") else None,
        place=data.get("place"), poll_multiple=data.get("multiple", False),
        poll_anonymous=data.get("anonymous", False),
        poll_closes_at=_deadline(data, "poll_due", timedelta(hours=data.get("deadline_hours") or 0), now)
        if data["kind"] == PostKind.POLL else None,
        ack_due_at=_deadline(data, "ack_due", timedelta(days=data.get("ack_days") or 0), now)
        if data.get("ask_ack") else None,
        reminder_minutes=",".join(str(m) for m in data.get("reminders", [])) or None,
        album=json.dumps(data["album"]) if data.get("album") else None,
    )
    post.options = [PollOption(id=i, position=i, text=t) for i, t in enumerate(data.get("options", []))]
    post.groups = [PostGroup(org_id=actor.org.id, group_id=g) for g in data["groups"]]  # type: ignore[union-attr]
    return post


async def preview(query: CallbackQuery, state: FSMContext, actor: Actor, repo: Repo) -> None:
    data = await state.get_data()
    post = draft_post(data, actor)
    people = await repo.post_recipients(post, data["groups"])
    label = await audience_text(repo, post, actor.org)  # type: ignore[arg-type]
    text = body(post, actor.org, actor.person.display_name, label)  # type: ignore[arg-type]
    await state.set_state(PostForm.confirm)
    await state.update_data(recipients=len(people))
    await query.answer()
    await query.message.edit_text(_("👁 <b>Preview</b> — this is how recipients will see it:"))  # type: ignore[union-attr]
    # The same rendering the recipients get (every message of a long one); its buttons only say it is a preview.
    methods = copy_methods(post, query.from_user.id, text, keyboard(post))
    for method in methods:
        await query.bot(method)  # type: ignore[union-attr]
    if len(methods) > 1:
        await query.message.answer(ngettext(  # type: ignore[union-attr]
            "It is long, so it goes out as {n} consecutive message; the buttons are on the last.",
            "It is long, so it goes out as {n} consecutive messages; the buttons are on the last.",
            len(methods)).format(n=len(methods)))
    note = "" if people else "\n" + _("Nobody is in this audience yet: the post will reach people who join later only through /schedule and /events.")
    await query.message.answer(_("Send it?") + note, reply_markup=await dialogs.mark(state, _confirm_markup(len(people))))  # type: ignore[union-attr]


def _confirm_markup(recipients: int) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(
        text=ngettext("📨 Send to {n} person", "📨 Send to {n} people", recipients).format(n=recipients),
        callback_data=ComposeCb(action="send"),
    )
    kb.button(text=_("🕒 Send later"), callback_data=ComposeCb(action="later"))
    kb.adjust(1)
    return _back_markup("options", kb.as_markup())


async def draft_refusal(data: dict[str, Any], actor: Actor, repo: Repo) -> str | None:
    """Every right again, at the moment of sending or scheduling: the draft may
    be old (rights change meanwhile) or forged."""
    why = refusal(actor)
    allowed = {g.id for g in await postable_groups(actor, repo)}
    if why or not set(data.get("groups", [])) <= allowed or (data.get("wide") and not may_post_wide(actor)):
        return why or rights.REFUSED + _("You cannot post to this group.")
    return None


async def _checked_draft(query: CallbackQuery, data: dict[str, Any], actor: Actor, repo: Repo) -> bool:
    why = await draft_refusal(data, actor, repo)
    if why is not None:
        await query.answer(why, show_alert=True)
        return False
    return True


async def _store(data: dict[str, Any], actor: Actor, repo: Repo, *, scheduled_at: datetime | None = None) -> Post:
    draft = draft_post(data, actor)
    options = [o.text for o in draft.options]
    draft.options = []
    draft.id = None  # type: ignore[assignment]
    if scheduled_at is not None:
        draft.state, draft.scheduled_at = PostState.SCHEDULED.value, scheduled_at
    post = await repo.add_post(draft, options)
    fresh = await repo.post(post.id)  # with its options' ids
    assert fresh is not None
    return fresh


async def send(query: CallbackQuery, state: FSMContext, actor: Actor, repo: Repo, settings: Settings) -> None:
    data = await state.get_data()
    await state.clear()
    if not await _checked_draft(query, data, actor, repo):
        return
    post = await _store(data, actor, repo)
    org = actor.org
    assert org is not None
    count = await publish(repo, post, org=org, author=actor.person, audience=await audience_text(repo, post, org),
                          default_locale=settings.default_locale, now=utcnow())
    text = ngettext("📨 Sent to {n} person. Your card below shows how it is going.",
                    "📨 Sent to {n} people. Your card below shows how it is going.", count).format(n=count)
    if not post.urgent and (until := quiet_until(org, utcnow())) is not None:
        text += "\n" + _("It is quiet hours now: the messages go out at {when}.").format(when=local(until, org))
    await query.answer()
    await query.message.edit_text(text)  # type: ignore[union-attr]


async def ask_later(query: CallbackQuery, state: FSMContext, actor: Actor) -> None:
    zone = ZoneInfo(actor.org.timezone)  # type: ignore[union-attr]
    tomorrow = (utcnow().astimezone(zone) + timedelta(days=1)).date()
    quick = []
    for hour in (8, 18):
        moment = datetime(tomorrow.year, tomorrow.month, tomorrow.day, hour, 0, tzinfo=zone)
        quick.append(InlineKeyboardButton(text=_("Tomorrow at {time}").format(time=f"{hour:02d}:00"),
                                          callback_data=ComposeCb(action="at", value=str(int(moment.timestamp()))).pack()))
    markup = when.days_markup(actor.org.timezone, utcnow(), _back_row("confirm"))  # type: ignore[union-attr]
    markup.inline_keyboard.insert(0, quick)
    await state.set_state(PostForm.send_at)
    await state.update_data({when.PICK_DAY: None})
    await query.answer()
    await query.message.edit_text(_("When should it go out?") + " " + when.typing_hint(),  # type: ignore[union-attr]
                                  reply_markup=await dialogs.mark(state, markup))


async def later_chosen(query: CallbackQuery, callback_data: ComposeCb, state: FSMContext, actor: Actor, repo: Repo) -> None:
    if not is_number(callback_data.value) or int(callback_data.value) > (utcnow() + LATEST).timestamp():
        await query.answer(_("Please choose one of the buttons."), show_alert=True)
        return
    moment = datetime.fromtimestamp(int(callback_data.value), tz=timezone.utc)
    await _schedule(query.message, query, state, actor, repo, moment)  # type: ignore[arg-type]


async def later_typed(message: Message, state: FSMContext, actor: Actor, repo: Repo) -> None:
    moment, hint = await when.typed(message.text or "", state, actor.org.timezone)  # type: ignore[union-attr]
    if moment is None:
        await message.answer(hint or "")
        return
    await _schedule(message, None, state, actor, repo, moment)


async def later_picked(query: CallbackQuery, callback_data: WhenCb, state: FSMContext, actor: Actor, repo: Repo) -> None:
    extra = _back_row("confirm")
    moment = await when.pressed(query, callback_data, state, actor.org.timezone, utcnow(), extra)  # type: ignore[union-attr]
    if moment is not None:
        await _schedule(query.message, query, state, actor, repo, moment)  # type: ignore[arg-type]


async def _schedule(
    message: Message, query: CallbackQuery | None, state: FSMContext, actor: Actor, repo: Repo, moment: datetime
) -> None:
    if moment <= utcnow():
        text = _("This time has already passed. Send a time in the future.")
        if query is not None:
            await query.answer(text, show_alert=True)
        else:
            await message.answer(text)
        return
    data = await state.get_data()
    deadlines = [data[k] for k in ("ack_due", "poll_due") if data.get(k)]
    if any(datetime.fromisoformat(d) <= moment for d in deadlines):
        text = _("That is after the deadline you chose. Choose an earlier time.")
    elif data.get("event_at") and datetime.fromisoformat(data["event_at"]) <= moment:
        text = _("That is after the event itself. Choose an earlier time.")
    else:
        text = ""
    if text:
        if query is not None:
            await query.answer(text, show_alert=True)
        else:
            await message.answer(text)
        return
    await state.clear()
    if query is not None and not await _checked_draft(query, data, actor, repo):
        return
    if query is None and (why := await draft_refusal(data, actor, repo)):
        await message.answer(why)
        return
    post = await _store(data, actor, repo, scheduled_at=moment)
    await plan_scheduled_post(repo, post)
    text = _("🕒 Scheduled for {when}. /scheduled lists your scheduled posts.").format(when=local(moment, actor.org))
    if query is not None:
        await query.answer()
        await message.edit_text(text)
    else:
        await message.answer(text)


# The steps of each kind of post, in order: ◀️ Back goes to an earlier one.
STEPS = {
    PostKind.EVENT: ("kind", "audience", "content", "event_at", "place", "options", "confirm", "send_at"),
    PostKind.POLL: ("kind", "audience", "content", "poll_options", "poll_settings", "options", "confirm", "send_at"),
}
PLAIN_STEPS = ("kind", "audience", "content", "options", "confirm", "send_at")


async def back(query: CallbackQuery, callback_data: ComposeCb, state: FSMContext, actor: Actor, repo: Repo) -> None:
    """Back to an earlier step of this post, with everything entered so far kept."""
    data = await state.get_data()
    steps = STEPS.get(PostKind(data["kind"]), PLAIN_STEPS) if data.get("kind") else ("kind",)
    now = (await state.get_state() or "").rpartition(":")[2]
    if now == "deadline":  # a deadline's calendar was opened from its step: back to that step too
        opened_from = "poll_settings" if data.get("deadline_for") == "poll" else "options"
        earlier = steps[:steps.index(opened_from) + 1] if opened_from in steps else ()
    else:
        earlier = steps[:steps.index(now)] if now in steps else ()
    target = callback_data.value
    if target not in earlier:
        await query.answer(dialogs.earlier_step_text(), show_alert=True)
        return
    await state.set_state(getattr(PostForm, target))
    data[when.PICK_DAY] = None
    await state.set_data(data)
    await query.answer()
    if target == "kind":
        text, markup = _("<b>New post.</b> What is it? (/cancel stops at any step)"), _kind_markup()
    elif target == "audience":
        text, markup = await _audience_view(actor, repo, data)
    elif target == "content":
        text, markup = _content_prompt(data), _back_markup("audience")
    elif target == "event_at":
        text, markup = _("When is it?") + " " + when.typing_hint(), _event_at_markup(actor)
    elif target == "place":
        text, markup = _place_prompt(), _place_markup()
    elif target == "poll_options":
        text, markup = _("Send the answers, one per line (2 to 10)."), _back_markup("content")
    elif target == "poll_settings":
        text, markup = _poll_view(data)
    elif target == "options":
        text, markup = _options_view(data)
    else:  # confirm
        text, markup = _("Send it?"), _confirm_markup(data.get("recipients", 0))
    await query.message.edit_text(text, reply_markup=await dialogs.mark(state, markup))  # type: ignore[union-attr]


async def cancel(query: CallbackQuery, state: FSMContext) -> None:
    await state.clear()
    await query.answer()
    await query.message.edit_text(_("Cancelled. Nothing was sent."))  # type: ignore[union-attr]


async def stale(query: CallbackQuery, raw_state: str | None = None) -> None:
    if dialogs.earlier_step(raw_state, PostForm):
        await query.answer(dialogs.earlier_step_text(), show_alert=True)
        return
    await query.answer(_("This post is already sent or cancelled. Send /post to start a new one."), show_alert=True)
