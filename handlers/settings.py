"""/settings: everyone's notification mode (instant, or one daily digest at a
time they pick); for admins also the organisation's quiet hours and the
cut-off after which an absence notice for today is marked late."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot import dialogs, rights
from bot.actor import Actor
from bot.retention import AUDIT_MONTHS
from bot.timeline import parse_hhmm
from handlers.filters import TEXT_INPUT
from storage.models import DbInt
from storage.repo import Repo

DIGEST_PRESETS = ("08:00", "12:00", "18:00", "20:00")
QUIET_PRESETS = ("21:00-08:00", "22:00-07:00", "20:00-08:00", "off")
CUTOFF_PRESETS = ("08:00", "09:00", "10:00")
OFFICE_PRESETS = ("", "08:00-17:00", "09:00-18:00", "10:00-19:00")  # "": the organisation's


class QuietForm(StatesGroup):
    typed = State()


class TimeForm(StatesGroup):
    digest = State()


class SettingsCb(CallbackData, prefix="set"):
    action: str  # instant | digest | digest_type | quiet | quiet_type | cutoff | office | audit
    index: DbInt = 0  # which preset (":" cannot travel in callback data)


def create_router() -> Router:
    router = Router(name="settings")
    router.message.register(settings_command, Command("settings"))
    router.callback_query.register(set_instant, SettingsCb.filter(F.action == "instant"))
    router.callback_query.register(set_digest, SettingsCb.filter(F.action == "digest"))
    router.callback_query.register(ask_digest, SettingsCb.filter(F.action == "digest_type"))
    router.message.register(got_digest, StateFilter(TimeForm.digest), TEXT_INPUT)
    router.callback_query.register(set_quiet, SettingsCb.filter(F.action == "quiet"))
    router.callback_query.register(ask_quiet, SettingsCb.filter(F.action == "quiet_type"))
    router.message.register(got_quiet, StateFilter(QuietForm.typed), TEXT_INPUT)
    router.callback_query.register(set_cutoff, SettingsCb.filter(F.action == "cutoff"))
    router.callback_query.register(set_office, SettingsCb.filter(F.action == "office"))
    router.callback_query.register(set_audit_months, SettingsCb.filter(F.action == "audit"))
    return router


def mode_text(digest_at: str | None) -> str:
    if not digest_at:
        return _("Notifications: every message at once.")
    return _(
        "Notifications: one daily digest at {time}. Urgent messages, reminders and answers still come at once."
    ).format(time=digest_at)


def quiet_text(start: str | None, end: str | None) -> str:
    if not start or not end:
        return _("Quiet hours: off — messages go out at any time.")
    return _(
        "Quiet hours: {start}–{end}. Ordinary messages that fall in them wait until {end}; urgent ones go at once."
    ).format(start=start, end=end)


def cutoff_text(cutoff: str | None) -> str:
    return _("Absence notices for today sent after {time} are marked late.").format(time=cutoff or "—")


def audit_text(months: int) -> str:
    return _("The audit log is kept for {n} months; older entries are deleted.").format(n=months)


def _view(actor: Actor) -> tuple[str, InlineKeyboardMarkup]:
    kb = InlineKeyboardBuilder()
    sizes = []
    lines = [_("<b>Settings</b>"), mode_text(actor.person.digest_at)]
    kb.button(text=("☑️ " if not actor.person.digest_at else "") + _("At once"), callback_data=SettingsCb(action="instant"))
    for i, at in enumerate(DIGEST_PRESETS):
        mark = "☑️ " if actor.person.digest_at == at else ""
        kb.button(text=mark + _("Digest at {time}").format(time=at), callback_data=SettingsCb(action="digest", index=i))
    kb.button(text=_("Digest at another time…"), callback_data=SettingsCb(action="digest_type"))
    sizes += [1, 2, 2, 1]
    if _answers_messages(actor) and actor.org is not None:
        own = actor.person.office_hours
        lines += ["", _("Office hours for private messages: {hours}").format(
            hours=own or _("as the organisation's ({hours})").format(hours=actor.org.office_hours or "—"))]
        for i, preset in enumerate(OFFICE_PRESETS):
            mark = "☑️ " if (own or "") == preset else ""
            label = _("As the organisation") if not preset else "🕘 " + preset.replace("-", "–")
            kb.button(text=mark + label, callback_data=SettingsCb(action="office", index=i))
        sizes += [2, 2]
    if actor.is_admin and actor.org is not None:
        lines += ["", _("<b>For the whole organisation</b>"), quiet_text(actor.org.quiet_start, actor.org.quiet_end),
                  cutoff_text(actor.org.absence_cutoff), audit_text(actor.org.audit_keep_months)]
        for i, preset in enumerate(QUIET_PRESETS):
            label = _("Quiet hours off") if preset == "off" else "🌙 " + preset.replace("-", "–")
            kb.button(text=label, callback_data=SettingsCb(action="quiet", index=i))
        kb.button(text=_("Other quiet hours…"), callback_data=SettingsCb(action="quiet_type"))
        for i, cutoff in enumerate(CUTOFF_PRESETS):
            mark = "☑️ " if actor.org.absence_cutoff == cutoff else ""
            kb.button(text=mark + _("Late after {time}").format(time=cutoff), callback_data=SettingsCb(action="cutoff", index=i))
        for i, months in enumerate(AUDIT_MONTHS):
            mark = "☑️ " if actor.org.audit_keep_months == months else ""
            kb.button(text=mark + _("Audit {n} mo.").format(n=months), callback_data=SettingsCb(action="audit", index=i))
        sizes += [2, 2, 1, 3, 3, 2]
    kb.adjust(*sizes)
    return "\n".join(lines), kb.as_markup()


async def settings_command(message: Message, actor: Actor) -> None:
    text, markup = _view(actor)
    await message.answer(text, reply_markup=markup)


async def _refresh(query: CallbackQuery, actor: Actor) -> None:
    text, markup = _view(actor)
    if isinstance(query.message, Message):
        await query.message.edit_text(text, reply_markup=markup)


async def set_instant(query: CallbackQuery, actor: Actor) -> None:
    actor.person.digest_at = None
    await query.answer(_("Every message will come at once."))
    await _refresh(query, actor)


async def set_digest(query: CallbackQuery, callback_data: SettingsCb, actor: Actor) -> None:
    if not 0 <= callback_data.index < len(DIGEST_PRESETS):
        await query.answer(_("Please choose one of the buttons."), show_alert=True)
        return
    actor.person.digest_at = DIGEST_PRESETS[callback_data.index]
    await query.answer(_("A daily digest at {time}.").format(time=actor.person.digest_at))
    await _refresh(query, actor)


async def ask_digest(query: CallbackQuery, state: FSMContext) -> None:
    token = await dialogs.begin(state, TimeForm.digest)
    await query.answer()
    await query.message.answer(_("Send the time for your daily digest, like <code>19:30</code>."),  # type: ignore[union-attr]
                               reply_markup=dialogs.stamp(dialogs.cancel_markup(), token))


async def got_digest(message: Message, state: FSMContext, actor: Actor) -> None:
    at = parse_hhmm(message.text or "")
    if at is None:
        await message.answer(_("Please send a time of day like <code>10:00</code>."))
        return
    await state.clear()
    actor.person.digest_at = at
    await message.answer("✅ " + mode_text(at))


def _answers_messages(actor: Actor) -> bool:
    """Teachers, specialists, the head and admins receive private messages (/write): bot.rights."""
    return actor.can(rights.Cap.ANSWER_MESSAGES)


async def set_office(query: CallbackQuery, callback_data: SettingsCb, actor: Actor) -> None:
    if not _answers_messages(actor):
        await query.answer(_("Office hours are for staff who receive messages."), show_alert=True)
        return
    if not 0 <= callback_data.index < len(OFFICE_PRESETS):
        await query.answer(_("Please choose one of the buttons."), show_alert=True)
        return
    actor.person.office_hours = OFFICE_PRESETS[callback_data.index] or None
    await query.answer()
    await _refresh(query, actor)


# -- the organisation (admins) -------------------------------------------------------------


def _parse_quiet(text: str) -> tuple[str | None, str | None] | None:
    if text.strip().lower() in ("off", "нет", "выкл"):
        return None, None
    parts = [p for p in text.replace("–", "-").replace("—", "-").split("-") if p.strip()]
    if len(parts) != 2:
        return None
    start, end = parse_hhmm(parts[0]), parse_hhmm(parts[1])
    if start is None or end is None or start == end:
        return None
    return start, end


def _save_quiet(actor: Actor, repo: Repo, value: str) -> str | None:
    parsed = _parse_quiet(value)
    if parsed is None or actor.org is None:
        return None
    actor.org.quiet_start, actor.org.quiet_end = parsed
    repo.audit(actor.org.id, actor.person.id, "org.quiet_hours", detail=f"{parsed[0]}-{parsed[1]}")
    return quiet_text(*parsed)


async def _admin(query: CallbackQuery, actor: Actor) -> bool:
    if not actor.is_admin or actor.org is None:
        await query.answer(rights.REFUSED + _("Only administrators change the organisation's settings."), show_alert=True)
        return False
    return True


async def set_quiet(query: CallbackQuery, callback_data: SettingsCb, actor: Actor, repo: Repo) -> None:
    if not await _admin(query, actor):
        return
    if not 0 <= callback_data.index < len(QUIET_PRESETS):
        await query.answer(_("Please choose one of the buttons."), show_alert=True)
        return
    _save_quiet(actor, repo, QUIET_PRESETS[callback_data.index])
    await query.answer()
    await _refresh(query, actor)


async def ask_quiet(query: CallbackQuery, state: FSMContext, actor: Actor) -> None:
    if not await _admin(query, actor):
        return
    token = await dialogs.begin(state, QuietForm.typed)
    await query.answer()
    await query.message.answer(_("Send the quiet hours like <code>21:30-07:30</code>, or <code>off</code>."),  # type: ignore[union-attr]
                               reply_markup=dialogs.stamp(dialogs.cancel_markup(), token))


async def got_quiet(message: Message, state: FSMContext, actor: Actor, repo: Repo) -> None:
    if not actor.is_admin:
        await state.clear()
        await message.answer(rights.REFUSED + _("Only administrators change the organisation's settings."))
        return
    text = _save_quiet(actor, repo, message.text or "")
    if text is None:
        await message.answer(_("Send the quiet hours like <code>21:30-07:30</code>, or <code>off</code>."))
        return
    await state.clear()
    await message.answer("✅ " + text)


async def set_cutoff(query: CallbackQuery, callback_data: SettingsCb, actor: Actor, repo: Repo) -> None:
    if not await _admin(query, actor):
        return
    if not 0 <= callback_data.index < len(CUTOFF_PRESETS):
        await query.answer(_("Please choose one of the buttons."), show_alert=True)
        return
    actor.org.absence_cutoff = CUTOFF_PRESETS[callback_data.index]  # type: ignore[union-attr]
    repo.audit(actor.org.id, actor.person.id, "org.absence_cutoff", detail=actor.org.absence_cutoff)  # type: ignore[union-attr]
    await query.answer()
    await _refresh(query, actor)


async def set_audit_months(query: CallbackQuery, callback_data: SettingsCb, actor: Actor, repo: Repo) -> None:
    if not await _admin(query, actor):
        return
    if not 0 <= callback_data.index < len(AUDIT_MONTHS):
        await query.answer(_("Please choose one of the buttons."), show_alert=True)
        return
    actor.org.audit_keep_months = AUDIT_MONTHS[callback_data.index]  # type: ignore[union-attr]
    repo.audit(actor.org.id, actor.person.id, "org.audit_keep_months", detail=str(actor.org.audit_keep_months))  # type: ignore[union-attr]
    await query.answer()
    await _refresh(query, actor)
