"""Quick choices for a date and time: the next seven days as buttons, then
common times as buttons — or the person types it (bot/dates.py reads it).

A dialog step that asks for a moment shows `days_markup()`; a day pressed is
kept in the dialog's data (`pick_day`) and the message turns into
`times_markup()`; from then on a time alone («18:30») is enough.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot import dates, dialogs
from handlers.texts import is_number

DAYS = 7
TIMES = ("08:00", "09:00", "10:00", "12:00", "14:00", "16:00", "17:00", "18:00", "19:00")
PICK_DAY = "pick_day"


class WhenCb(CallbackData, prefix="wh"):
    step: str  # day | time | days (back to the days)
    value: str = ""  # YYYYMMDD or HHMM


def _today(zone_name: str, now: datetime) -> date:
    return now.astimezone(ZoneInfo(zone_name)).date()


def days_markup(zone_name: str, now: datetime, extra: list[InlineKeyboardButton] | None = None) -> InlineKeyboardMarkup:
    today = _today(zone_name, now)
    kb = InlineKeyboardBuilder()
    for offset in range(DAYS):
        day = today + timedelta(days=offset)
        label = {0: _("Today"), 1: _("Tomorrow")}.get(offset) or dates.short_day(day)
        kb.button(text=label, callback_data=WhenCb(step="day", value=day.strftime("%Y%m%d")))
    kb.adjust(2, 3, 2)
    for button in extra or []:
        kb.row(button)
    return kb.as_markup()


def times_markup(extra: list[InlineKeyboardButton] | None = None) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for at in TIMES:
        kb.button(text=at, callback_data=WhenCb(step="time", value=at.replace(":", "")))
    kb.button(text=_("« Another day"), callback_data=WhenCb(step="days"))
    kb.adjust(3, 3, 3, 1)
    for button in extra or []:
        kb.row(button)
    return kb.as_markup()


def typing_hint() -> str:
    return _("Choose a day, or type the day and time ({examples}).").format(examples=dates.examples())


async def chosen_day(state: FSMContext) -> date | None:
    value = (await state.get_data()).get(PICK_DAY)
    return date.fromisoformat(value) if value else None


async def typed(text: str, state: FSMContext, zone_name: str, now: datetime | None = None) -> tuple[datetime | None, str | None]:
    """A typed moment (a time alone is enough once a day was pressed)."""
    return dates.future(text, zone_name, now, day=await chosen_day(state))


async def pressed(
    query: CallbackQuery, callback_data: WhenCb, state: FSMContext, zone_name: str, now: datetime,
    extra: list[InlineKeyboardButton] | None = None,
) -> datetime | None:
    """A day (the message asks for the time) or a time (the moment is returned).
    Says itself what is wrong; None means nothing is chosen yet."""
    if callback_data.step == "days":
        await state.update_data({PICK_DAY: None})
        await query.answer()
        await query.message.edit_text(typing_hint(), reply_markup=await dialogs.mark(state, days_markup(zone_name, now, extra)))  # type: ignore[union-attr]
        return None
    if callback_data.step == "day":
        today = _today(zone_name, now)
        try:
            day = datetime.strptime(callback_data.value, "%Y%m%d").date() if is_number(callback_data.value) else None
        except ValueError:
            day = None
        if day is None or not today <= day <= today + timedelta(days=366):
            await query.answer(_("Please choose one of the buttons."), show_alert=True)
            return None
        await state.update_data({PICK_DAY: day.isoformat()})
        await query.answer()
        await query.message.edit_text(  # type: ignore[union-attr]
            _("<b>{day}</b>. At what time? Choose, or type it like <code>18:30</code>.").format(
                day=dates.day_label(day, today=today)),
            reply_markup=await dialogs.mark(state, times_markup(extra)),
        )
        return None
    day = await chosen_day(state)
    value = callback_data.value
    if callback_data.step != "time" or day is None or not is_number(value) or len(value) != 4:
        await query.answer(_("Please choose a day first."), show_alert=True)
        return None
    moment, hint = dates.future(f"{value[:2]}:{value[2:]}", zone_name, now, day=day)
    if moment is None:
        await query.answer(dates.plain(hint or ""), show_alert=True)
        return None
    return moment
