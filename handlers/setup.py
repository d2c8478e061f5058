"""Organisations. The first start of an ADMIN_IDS user with no organisation:
name, kind, time zone, support contact — then the organisation and its staff
room exist. /org: the same dialog adds another organisation (ADMIN_IDS users
only: a municipal deployment serves several from one bot), and whoever
belongs to several chooses the one they act in."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from aiogram import F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot import dialogs, rights
from bot.actor import Actor
from bot.menus import enqueue_menu
from bot.settings import Settings
from handlers.admission import refresh_menu_of
from handlers.filters import TEXT_INPUT
from handlers.keyboards import OrgCb, SetupCb, org_kind_keyboard, single_button
from handlers.texts import clean_name, kind_name, plain, q
from storage.models import MemberState, Organisation, OrgKind, Role
from storage.repo import Repo


class SetupForm(StatesGroup):
    name = State()
    kind = State()
    timezone = State()
    contact = State()


def create_router() -> Router:
    router = Router(name="setup")
    router.message.register(got_name, StateFilter(SetupForm.name), TEXT_INPUT)
    router.callback_query.register(got_kind, StateFilter(SetupForm.kind), SetupCb.filter(F.action == "kind"))
    router.message.register(got_timezone, StateFilter(SetupForm.timezone), TEXT_INPUT)
    router.callback_query.register(default_timezone, StateFilter(SetupForm.timezone), SetupCb.filter(F.action == "tz_default"))
    router.message.register(got_contact, StateFilter(SetupForm.contact), TEXT_INPUT)
    router.callback_query.register(no_contact, StateFilter(SetupForm.contact), SetupCb.filter(F.action == "no_contact"))
    router.message.register(org_command, Command("org"))
    router.callback_query.register(use_org, OrgCb.filter(F.action == "use"))
    router.callback_query.register(new_org, OrgCb.filter(F.action == "new"))
    return router


def find_timezone(text: str) -> str | None:
    """Accepts 'Europe/Moscow' in any case; None when it is not a known zone."""
    wanted = text.strip().replace(" ", "_")
    for name in available_timezones():
        if name.lower() == wanted.lower():
            try:
                ZoneInfo(name)
            except ZoneInfoNotFoundError:
                return None
            return name
    return None


async def got_name(message: Message, state: FSMContext, actor: Actor) -> None:
    if not actor.is_config_admin:  # the state can only be reached by one, but check anyway
        await state.clear()
        return
    name = clean_name(message.text)
    if name is None:
        await message.answer(_("Please send the organisation's name as text, 2 to 128 characters."))
        return
    await state.update_data(name=name)
    await state.set_state(SetupForm.kind)
    token = await dialogs.ensure(state)  # the dialog began in /start (or in "New organisation")
    await message.answer(_("<b>2/4.</b> What kind of organisation is it?"),
                         reply_markup=dialogs.stamp(dialogs.with_cancel(org_kind_keyboard()), token))


async def got_kind(query: CallbackQuery, callback_data: SetupCb, state: FSMContext, settings: Settings) -> None:
    if callback_data.value not in {k.value for k in OrgKind}:
        await query.answer(_("Please choose one of the buttons."), show_alert=True)
        return
    await state.update_data(kind=callback_data.value)
    await state.set_state(SetupForm.timezone)
    await query.answer()
    await query.message.edit_text(  # type: ignore[union-attr]
        _("<b>2/4.</b> Kind: {kind}").format(kind=kind_name(callback_data.value))
    )
    await query.message.answer(  # type: ignore[union-attr]
        _(
            "<b>3/4.</b> Which time zone is it in? Send its name, like <code>Asia/Yekaterinburg</code>, "
            "or keep {zone}."
        ).format(zone=settings.timezone),
        reply_markup=await dialogs.mark(state, dialogs.with_cancel(
            single_button(_("Keep {zone}").format(zone=settings.timezone), SetupCb(action="tz_default")))),
    )


async def got_timezone(message: Message, state: FSMContext) -> None:
    zone = find_timezone(message.text or "")
    if zone is None:
        await message.answer(
            _("I do not know the time zone «{text}». Send a name like <code>Europe/Moscow</code>.").format(
                text=q((message.text or "")[:64])
            )
        )
        return
    await _ask_contact(message, state, zone)


async def default_timezone(query: CallbackQuery, state: FSMContext, settings: Settings) -> None:
    await query.answer()
    await _ask_contact(query.message, state, settings.timezone)  # type: ignore[arg-type]


async def _ask_contact(message: Message, state: FSMContext, zone: str) -> None:
    await state.update_data(timezone=zone)
    await state.set_state(SetupForm.contact)
    await message.answer(
        _(
            "Time zone: {zone}.\n\n<b>4/4.</b> Who should people contact for help? "
            "Send a phone, an e-mail or @username — /help will show it."
        ).format(zone=zone),
        reply_markup=await dialogs.mark(state, dialogs.with_cancel(single_button(_("Skip"), SetupCb(action="no_contact")))),
    )


async def got_contact(message: Message, state: FSMContext, actor: Actor, repo: Repo, settings: Settings) -> None:
    contact = plain(message.text)
    if not 3 <= len(contact) <= 256:
        await message.answer(_("Please send a contact of 3 to 256 characters, or press Skip."))
        return
    await _finish(message, state, actor, repo, settings, contact)


async def no_contact(query: CallbackQuery, state: FSMContext, actor: Actor, repo: Repo, settings: Settings) -> None:
    await query.answer()
    await _finish(query.message, state, actor, repo, settings, None)  # type: ignore[arg-type]


async def _finish(
    message: Message, state: FSMContext, actor: Actor, repo: Repo, settings: Settings, contact: str | None
) -> None:
    data = await state.get_data()
    await state.clear()
    if not actor.is_config_admin or (not data.get("another") and await repo.first_organisation() is not None):
        # Someone else set the first one up meanwhile: not twice.
        await message.answer(_("The organisation is already set up. Send /start."))
        return
    org, staff = await repo.create_organisation(
        name=data["name"],
        kind=data["kind"],
        timezone=data["timezone"],
        support_contact=contact,
        staff_title=_("Staff room"),
    )
    await repo.add_membership(
        org_id=org.id, group_id=staff.id, person_id=actor.person.id, role=Role.ADMIN.value,
        state=MemberState.ACTIVE.value,
    )
    repo.audit(org.id, actor.person.id, "org.setup", subject=f"org:{org.id}", detail=org.name)
    if data.get("another"):
        actor.person.current_org_id = org.id  # acting in the new one from now on
        await refresh_menu_of(repo, actor.person, settings.admin_ids, settings.default_locale)
    else:
        actor.org = org
        await enqueue_menu(repo, actor)
    await message.answer(
        _(
            "✅ <b>{name}</b> is set up, with its staff room «{staff}».\n\n"
            "Next: create groups with /groups, then invitations with /invite."
        ).format(name=q(org.name), staff=q(staff.title))
    )


# -- several organisations ----------------------------------------------------------


async def _choosable(repo: Repo, actor: Actor) -> list[Organisation]:
    """Where this person may act: every organisation for a config admin and for
    a newcomer (who chooses where to ask to join), else their own."""
    return list(await repo.organisations(None if actor.is_config_admin or not actor.org_ids else actor.org_ids))


def _orgs_keyboard(orgs: list[Organisation], actor: Actor) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for org in orgs:
        mark = "✅ " if actor.org is not None and org.id == actor.org.id else ""
        kb.button(text=mark + org.name[:60], callback_data=OrgCb(action="use", org_id=org.id))
    if actor.is_config_admin:
        kb.button(text=_("➕ New organisation"), callback_data=OrgCb(action="new"))
    kb.adjust(1)
    return kb.as_markup()


async def org_command(message: Message, actor: Actor, repo: Repo) -> None:
    if not actor.org_ids and not actor.is_config_admin:
        orgs = await _choosable(repo, actor)
        if len(orgs) > 1:  # a newcomer on a bot of several: where to ask to join
            await message.answer(
                _("This bot serves several organisations. Choose yours, then ask to join it with /start "
                  "— or open the invitation link you were given."),
                reply_markup=_orgs_keyboard(orgs, actor),
            )
            return
        # One organisation and no membership (the gate lets newcomers in): how to join.
        await message.answer(_("You do not belong to any organisation yet. Join one with its invitation code."))
        return
    orgs = await _choosable(repo, actor)
    text = _("<b>Organisations.</b> You act in: {org}.").format(org=q(actor.org.name) if actor.org else "—")
    text += "\n" + _("Choose the one to act in — your menu and lists follow it.")
    if actor.is_config_admin:
        text += "\n" + _("As the platform's administrator you can also add a new one.")
    await message.answer(text, reply_markup=_orgs_keyboard(orgs, actor))


async def use_org(
    query: CallbackQuery, callback_data: OrgCb, actor: Actor, repo: Repo, state: FSMContext, settings: Settings
) -> None:
    chosen = next((o for o in await _choosable(repo, actor) if o.id == callback_data.org_id), None)
    if chosen is None:
        await query.answer(_("This organisation is not available to you."), show_alert=True)
        return
    await query.answer()
    if actor.org is not None and actor.org.id == chosen.id:
        await query.message.edit_text(_("You already act in {org}.").format(org=q(chosen.name)))  # type: ignore[union-attr]
        return
    await state.clear()  # a half-finished dialog belonged to the other organisation
    actor.person.current_org_id = chosen.id
    if not actor.org_ids and not actor.is_config_admin:
        await query.message.edit_text(  # type: ignore[union-attr]
            _("✅ <b>{org}</b>. Send /start to ask to join it.").format(org=q(chosen.name))
        )
        return
    await refresh_menu_of(repo, actor.person, settings.admin_ids, settings.default_locale)
    await query.message.edit_text(  # type: ignore[union-attr]
        _("✅ You now act in <b>{org}</b>. Your menu is updated: /help").format(org=q(chosen.name))
    )


async def new_org(query: CallbackQuery, actor: Actor, state: FSMContext) -> None:
    if not actor.is_config_admin:
        await query.answer(rights.REFUSED + _("Only the platform's administrators (ADMIN_IDS) add organisations."), show_alert=True)
        return
    await query.answer()
    token = await dialogs.begin(state, SetupForm.name, another=True)
    await query.message.edit_text(  # type: ignore[union-attr]
        _(
            "A new organisation — four short steps, /cancel stops at any time.\n\n"
            "<b>1/4.</b> What is it called? For example: Школа № 2"
        ),
        reply_markup=dialogs.stamp(dialogs.cancel_markup(), token),
    )
