"""Wizard buttons belong to the dialog that drew them.

A dialog (a wizard: /post, /invite, joining, /absent…) gets a token when it
begins (`begin`), kept in its FSM data; the buttons it draws carry the token
(`stamp` appends it to their callback data: ``inv:role:5:parent:0:0#Xy3_a9``).
The dialog gate (bot/gates.py) strips it before any filter sees the data and
answers a press whose token is not the person's current dialog's — the
dialog was finished, cancelled with /cancel or a Cancel button, or replaced
by another — with "this dialog is finished", changing nothing. Buttons with
no token (menus, the buttons that begin a dialog) pass as before.

One mechanism for every wizard, whatever its buttons' CallbackData: a
finished dialog has no token (its state is cleared), so none of its old
buttons acts again.
"""

from __future__ import annotations

import secrets

from aiogram.filters.callback_data import MAX_CALLBACK_LENGTH, CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _

KEY = "dialog"  # the token's key in the FSM data
MARK = "#"  # between a button's own data and its dialog's token; never in packed CallbackData here


def new_token() -> str:
    return secrets.token_urlsafe(4)  # 6 characters of [A-Za-z0-9_-]: 32 bits, enough to tell dialogs apart


async def begin(state: FSMContext, step: State, **data: object) -> str:
    """A new dialog at its first step: whatever was going on is over (its buttons go stale)."""
    await state.clear()
    token = new_token()
    await state.set_state(step)
    await state.set_data({KEY: token, **data})
    return token


async def ensure(state: FSMContext) -> str:
    """The current dialog's token, given one if it began without (a step reached from elsewhere)."""
    token = await current(state)
    if token is None:
        token = new_token()
        await state.update_data({KEY: token})
    return token


async def current(state: FSMContext | None) -> str | None:
    if state is None:
        return None
    return (await state.get_data()).get(KEY)


def split(data: str) -> tuple[str, str | None]:
    """(the button's own data, its dialog's token or None)."""
    own, mark, token = data.rpartition(MARK)
    return (own, token) if mark and own else (data, None)


def stamp(markup: InlineKeyboardMarkup | None, token: str | None) -> InlineKeyboardMarkup | None:
    """The markup with every callback button bound to the dialog `token` (none: unchanged)."""
    if markup is None or not token:
        return markup
    rows = []
    for row in markup.inline_keyboard:
        out = []
        for button in row:
            data = button.callback_data
            if data and MARK not in data and len(data) + len(MARK) + len(token) <= MAX_CALLBACK_LENGTH:
                button = button.model_copy(update={"callback_data": data + MARK + token})
            out.append(button)
        rows.append(out)
    return InlineKeyboardMarkup(inline_keyboard=rows)


async def mark(state: FSMContext, markup: InlineKeyboardMarkup | None) -> InlineKeyboardMarkup | None:
    """`stamp` with the person's current dialog."""
    return stamp(markup, await current(state))


class DialogCb(CallbackData, prefix="dlg"):
    """Buttons every wizard shares."""

    action: str  # cancel


def cancel_button() -> InlineKeyboardButton:
    return InlineKeyboardButton(text=_("✖️ Cancel"), callback_data=DialogCb(action="cancel").pack())


def cancel_markup(*rows: list[InlineKeyboardButton]) -> InlineKeyboardMarkup:
    """These rows (if any), then ✖️ Cancel."""
    return InlineKeyboardMarkup(inline_keyboard=[*rows, [cancel_button()]])


def with_cancel(markup: InlineKeyboardMarkup | None) -> InlineKeyboardMarkup:
    """The markup with a ✖️ Cancel row added."""
    rows = list(markup.inline_keyboard) if markup is not None else []
    return InlineKeyboardMarkup(inline_keyboard=[*rows, [cancel_button()]])


def earlier_step(raw_state: str | None, form: type) -> bool:
    """The person is still in this form's dialog: a button of an earlier step was pressed."""
    return bool(raw_state) and raw_state.startswith(form.__name__ + ":")  # type: ignore[union-attr]


def earlier_step_text() -> str:
    return _("Please use the buttons of the last message.")


def finished_text() -> str:
    return _("This dialog is already finished or cancelled: this button changes nothing now.")
