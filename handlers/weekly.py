"""Weekly recurring schedule items ("Бассейн — вторник 10:00") with an
optional reminder before each occurrence."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot import dialogs, rights
from bot.actor import Actor
from bot.timeline import parse_hhmm, plan_weekly
from handlers.filters import TEXT_INPUT
from handlers.posting import postable_groups, refusal
from handlers.texts import TITLE_MAX, clean_name, q
from storage.models import DbInt, DueKind, WeeklyItem, utcnow
from storage.repo import Repo

REMIND_CHOICES = (0, 15, 30, 60, 120)


class WeeklyForm(StatesGroup):
    group = State()
    title = State()
    time = State()


class WeeklyCb(CallbackData, prefix="wk"):
    action: str  # new | group | day | remind | del
    value: DbInt = 0


def weekday_name(day: int) -> str:
    return (_("Monday"), _("Tuesday"), _("Wednesday"), _("Thursday"), _("Friday"), _("Saturday"), _("Sunday"))[day]


def create_router() -> Router:
    router = Router(name="weekly")
    router.callback_query.register(new_item, WeeklyCb.filter(F.action == "new"))
    router.callback_query.register(chose_group, WeeklyCb.filter(F.action == "group"))
    router.message.register(got_title, StateFilter(WeeklyForm.title), TEXT_INPUT)
    router.callback_query.register(chose_day, WeeklyCb.filter(F.action == "day"))
    router.message.register(got_time, StateFilter(WeeklyForm.time), TEXT_INPUT)
    router.callback_query.register(chose_remind, StateFilter(WeeklyForm.time), WeeklyCb.filter(F.action == "remind"))
    router.callback_query.register(delete_item, WeeklyCb.filter(F.action == "del"))
    return router


def describe(item: WeeklyItem) -> str:
    text = _("every {day} at {time} — {title}").format(
        day=weekday_name(item.weekday), time=item.time_of_day, title=q(item.title)
    )
    if item.remind_minutes:
        text += " " + _("(reminder {n} min before)").format(n=item.remind_minutes)
    return text


async def manage_keyboard(actor: Actor, repo: Repo, items: list[WeeklyItem]):  # type: ignore[no-untyped-def]
    """Buttons for someone who may change the weekly items of these groups."""
    if refusal(actor) is not None:
        return None
    allowed = {g.id for g in await postable_groups(actor, repo)}
    kb = InlineKeyboardBuilder()
    for item in items:
        if item.group_id in allowed:
            kb.button(text="🗑 " + item.title[:30], callback_data=WeeklyCb(action="del", value=item.id))
    if allowed:
        kb.button(text=_("➕ Weekly item"), callback_data=WeeklyCb(action="new"))
    kb.adjust(1)
    markup = kb.as_markup()
    return markup if markup.inline_keyboard else None


async def _allowed_group(query: CallbackQuery, actor: Actor, repo: Repo, group_id: int) -> bool:
    why = refusal(actor)
    if why is not None or group_id not in {g.id for g in await postable_groups(actor, repo)}:
        await query.answer(why or rights.REFUSED + _("You cannot post to this group."), show_alert=True)
        return False
    return True


async def new_item(query: CallbackQuery, state: FSMContext, actor: Actor, repo: Repo) -> None:
    why = refusal(actor)
    if why is not None:
        await query.answer(why, show_alert=True)
        return
    kb = InlineKeyboardBuilder()
    for group in await postable_groups(actor, repo):
        kb.button(text=group.title, callback_data=WeeklyCb(action="group", value=group.id))
    kb.adjust(2)
    token = await dialogs.begin(state, WeeklyForm.group)
    await query.answer()
    await query.message.answer(_("<b>New weekly item.</b> For which group?"),  # type: ignore[union-attr]
                               reply_markup=dialogs.stamp(dialogs.with_cancel(kb.as_markup()), token))


async def chose_group(query: CallbackQuery, callback_data: WeeklyCb, state: FSMContext, actor: Actor, repo: Repo) -> None:
    if not await _allowed_group(query, actor, repo, callback_data.value):
        return
    await state.set_state(WeeklyForm.title)
    await state.update_data(group_id=callback_data.value)
    await query.answer()
    await query.message.edit_text(_("What is it? For example: Бассейн. (/cancel stops)"),  # type: ignore[union-attr]
                                  reply_markup=await dialogs.mark(state, dialogs.cancel_markup()))


async def got_title(message: Message, state: FSMContext) -> None:
    title = clean_name(message.text, TITLE_MAX)
    if title is None:
        await message.answer(_("Please send a name of 2 to 64 characters with at least one letter."))
        return
    await state.update_data(title=title)
    kb = InlineKeyboardBuilder()
    for day in range(7):
        kb.button(text=weekday_name(day), callback_data=WeeklyCb(action="day", value=day))
    kb.adjust(4, 3)
    await message.answer(_("On which day of the week?"), reply_markup=await dialogs.mark(state, dialogs.with_cancel(kb.as_markup())))


async def chose_day(query: CallbackQuery, callback_data: WeeklyCb, state: FSMContext) -> None:
    data = await state.get_data()
    if await state.get_state() != WeeklyForm.title.state or "title" not in data or not 0 <= callback_data.value <= 6:
        await query.answer(_("This dialog is already finished."), show_alert=True)
        return
    await state.update_data(weekday=callback_data.value)
    await state.set_state(WeeklyForm.time)
    await query.answer()
    await query.message.edit_text(  # type: ignore[union-attr]
        _("{day}. At what time? Send it like <code>10:00</code>.").format(day=weekday_name(callback_data.value)),
        reply_markup=await dialogs.mark(state, dialogs.cancel_markup()),
    )


async def got_time(message: Message, state: FSMContext) -> None:
    at = parse_hhmm(message.text or "")
    if at is None:
        await message.answer(_("Please send a time of day like <code>10:00</code>."))
        return
    await state.update_data(time_of_day=at)
    kb = InlineKeyboardBuilder()
    for minutes in REMIND_CHOICES:
        label = _("No reminder") if not minutes else _("Remind {n} min before").format(n=minutes)
        kb.button(text=label, callback_data=WeeklyCb(action="remind", value=minutes))
    kb.adjust(1, 2, 2)
    await message.answer(_("Remind the families before each time?"),
                         reply_markup=await dialogs.mark(state, dialogs.with_cancel(kb.as_markup())))


async def chose_remind(query: CallbackQuery, callback_data: WeeklyCb, state: FSMContext, actor: Actor, repo: Repo) -> None:
    data = await state.get_data()
    await state.clear()
    if "time_of_day" not in data or callback_data.value not in REMIND_CHOICES:
        await query.answer(_("This dialog is already finished."), show_alert=True)
        return
    if not await _allowed_group(query, actor, repo, data["group_id"]):
        return
    item = WeeklyItem(
        org_id=actor.org.id, group_id=data["group_id"], title=data["title"], weekday=data["weekday"],  # type: ignore[union-attr]
        time_of_day=data["time_of_day"], remind_minutes=callback_data.value or None, created_by_id=actor.person.id,
    )
    repo.session.add(item)
    await repo.flush()
    await plan_weekly(repo, item, actor.org.timezone, utcnow())  # type: ignore[union-attr]
    await query.answer()
    await query.message.edit_text(_("✅ Added: {item}. /schedule shows it.").format(item=describe(item)))  # type: ignore[union-attr]


async def delete_item(query: CallbackQuery, callback_data: WeeklyCb, actor: Actor, repo: Repo) -> None:
    item = await repo.session.get(WeeklyItem, callback_data.value)
    if item is None or actor.org is None or item.org_id != actor.org.id or item.archived_at is not None:
        await query.answer(_("This item no longer exists."), show_alert=True)
        return
    if not await _allowed_group(query, actor, repo, item.group_id):
        return
    item.archived_at = utcnow()
    await repo.cancel_due(item.id, [DueKind.WEEKLY_REMINDER.value])
    await query.answer(_("Removed: {title}").format(title=item.title), show_alert=True)
