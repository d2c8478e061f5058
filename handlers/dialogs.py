"""The buttons every wizard shares (bot/dialogs.py): ✖️ Cancel ends the
dialog it was drawn for — the dialog gate has already checked it is the
person's current one — and nothing the dialog gathered is kept."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _

from bot.dialogs import DialogCb


def create_router() -> Router:
    router = Router(name="dialogs")
    router.callback_query.register(cancel, DialogCb.filter(F.action == "cancel"))
    return router


async def cancel(query: CallbackQuery, state: FSMContext) -> None:
    if await state.get_state() is None:  # an unstamped (old or forged) Cancel: there is nothing to end
        await query.answer(_("There is nothing to cancel."), show_alert=True)
        return
    await state.clear()
    await query.answer()
    if isinstance(query.message, Message):
        await query.message.edit_text(_("Cancelled. Nothing was changed."))
