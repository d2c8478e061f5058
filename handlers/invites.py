"""/invite and /invites: codes, deep links and QR pictures; listing and revoking.

The wizard keeps its choices in the buttons (group → role → expiry → limit),
so every press carries them and every press is checked again. Each step has
◀️ Back (the previous step, the choices before it kept) and ✖️ Cancel; its
buttons belong to the dialog (bot/dialogs.py), so after /cancel, Cancel or
the invitation made, none of them acts again.
"""

from __future__ import annotations

import io
import secrets
from datetime import timedelta

from aiogram import F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import BufferedInputFile, CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot import dialogs, rights
from bot.actor import Actor
from bot.settings import Settings
from handlers.keyboards import (
    INVITE_DAYS,
    INVITE_USES,
    InviteCb,
    InvitesCb,
    confirm_keyboard,
    group_title,
    groups_keyboard,
    roles_keyboard,
)
from handlers.texts import local_time, q, role_name
from storage.models import Group, Invitation, Role, utcnow
from storage.repo import Repo

# No 0/O, 1/I/L: a code read off a printed QR poster is typed without doubt.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 10  # 31^10 ≈ 2^49.5: at least 48 bits of randomness
LIST_LIMIT = 20


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(text: str) -> str | None:
    """What a person typed, as a code, or None if it cannot be one."""
    code = "".join(ch for ch in text.upper() if ch not in " -_")
    if len(code) != CODE_LENGTH or any(ch not in ALPHABET for ch in code):
        return None
    return code


def deep_link(bot_username: str, code: str) -> str:
    return f"https://t.me/{bot_username}?start={code}"


def qr_png(link: str) -> bytes:
    import segno  # only when first needed: it weighs on the idle process

    buffer = io.BytesIO()
    segno.make(link, error="m").save(buffer, kind="png", scale=10, border=4)
    return buffer.getvalue()


class InviteForm(StatesGroup):
    wizard = State()  # /invite is open; its buttons carry the choices, the state makes "create" happen once


def create_router() -> Router:
    router = Router(name="invites")
    router.message.register(invite_command, Command("invite"))
    router.callback_query.register(back_to_groups, InviteCb.filter(F.action == "groups"))
    router.callback_query.register(choose_role, InviteCb.filter(F.action == "group"))
    router.callback_query.register(choose_days, InviteCb.filter(F.action == "role"))
    router.callback_query.register(choose_uses, InviteCb.filter(F.action == "days"))
    # The wizard's last button makes one invitation: a second tap finds the wizard closed.
    router.callback_query.register(make_invitation, StateFilter(InviteForm.wizard), InviteCb.filter(F.action == "make"))
    router.callback_query.register(made_already, InviteCb.filter(F.action == "make"))
    router.message.register(invites_command, Command("invites"))
    router.callback_query.register(revoke_one, InvitesCb.filter(F.action == "revoke"))
    router.callback_query.register(ask_revoke_all, InvitesCb.filter(F.action == "all"))
    router.callback_query.register(revoke_all, InvitesCb.filter(F.action == "all_yes"))
    router.callback_query.register(show_list, InvitesCb.filter(F.action == "list"))
    return router


def _refusal(actor: Actor) -> str | None:
    """Why this person cannot invite at all, or None."""
    if actor.org is None or not actor.is_member:
        return rights.REFUSED + _("Only staff can create invitations. Send /start.")
    if actor.is_admin or actor.teaching_group_ids():
        return None
    if actor.awaiting_verification:
        return rights.REFUSED + _("You are waiting for an administrator to verify you. Until then you cannot invite.")
    return rights.REFUSED + _("Only administrators and verified teachers can create invitations.")


async def _invitable_groups(actor: Actor, repo: Repo) -> list[Group]:
    assert actor.org is not None
    return [g for g in await repo.groups(actor.org.id) if actor.invitable_roles(g)]


async def invite_command(message: Message, state: FSMContext, actor: Actor, repo: Repo) -> None:
    refusal = _refusal(actor)
    if refusal:
        await message.answer(refusal)
        return
    groups = await _invitable_groups(actor, repo)
    if not groups:
        await message.answer(_("There are no groups yet. Create one with /groups."))
        return
    token = await dialogs.begin(state, InviteForm.wizard)
    await message.answer(
        _("<b>New invitation.</b> Which group is it for?"),
        reply_markup=dialogs.stamp(dialogs.with_cancel(groups_keyboard(groups, InviteCb, action="group")), token),
    )


def _step(markup: InlineKeyboardMarkup, back: InviteCb) -> InlineKeyboardMarkup:
    """A step's choices, then ◀️ Back and ✖️ Cancel."""
    back_button = InlineKeyboardButton(text=_("◀️ Back"), callback_data=back.pack())
    return InlineKeyboardMarkup(inline_keyboard=[*markup.inline_keyboard, [back_button, dialogs.cancel_button()]])


async def back_to_groups(query: CallbackQuery, callback_data: InviteCb, state: FSMContext, actor: Actor,
                         repo: Repo) -> None:
    if await _checked(query, callback_data, actor, repo) is None:
        return
    await query.answer()
    await query.message.edit_text(  # type: ignore[union-attr]
        _("<b>New invitation.</b> Which group is it for?"),
        reply_markup=await dialogs.mark(
            state, dialogs.with_cancel(groups_keyboard(await _invitable_groups(actor, repo), InviteCb, action="group"))),
    )


async def _checked(query: CallbackQuery, data: InviteCb, actor: Actor, repo: Repo) -> Group | None:
    """The group, if this person may invite into it in the role the button names."""
    refusal = _refusal(actor)
    if refusal:
        await query.answer(refusal, show_alert=True)
        return None
    group = await repo.group(actor.org.id, data.group_id)  # type: ignore[union-attr]
    if group is None or not actor.invitable_roles(group):
        await query.answer(rights.REFUSED + _("You cannot invite to this group."), show_alert=True)
        return None
    if data.role and not actor.can_invite(group, data.role):
        await query.answer(rights.REFUSED + _("You cannot invite people in this role."), show_alert=True)
        return None
    if data.days and data.days not in INVITE_DAYS or data.uses not in INVITE_USES:
        await query.answer(_("This button is out of date. Start again with /invite."), show_alert=True)
        return None
    return group


async def choose_role(query: CallbackQuery, callback_data: InviteCb, state: FSMContext, actor: Actor,
                      repo: Repo) -> None:
    group = await _checked(query, callback_data, actor, repo)
    if group is None:
        return
    await query.answer()
    await query.message.edit_text(  # type: ignore[union-attr]
        _("<b>New invitation</b> to {group}. Whom are you inviting?").format(group=q(group_title(group))),
        reply_markup=await dialogs.mark(state, _step(
            roles_keyboard(actor.invitable_roles(group), InviteCb, action="role", group_id=group.id),
            InviteCb(action="groups", group_id=group.id))),
    )


async def choose_days(
    query: CallbackQuery, callback_data: InviteCb, state: FSMContext, actor: Actor, repo: Repo, settings: Settings
) -> None:
    group = await _checked(query, callback_data, actor, repo)
    if group is None:
        return
    kb = InlineKeyboardBuilder()
    for days in INVITE_DAYS:
        label = ngettext("{n} day", "{n} days", days).format(n=days)
        if days == settings.invitation_days:
            label = "⭐ " + label
        kb.button(text=label, callback_data=callback_data.model_copy(update={"action": "days", "days": days}))
    kb.adjust(4)
    back = InviteCb(action="group", group_id=group.id)
    await query.answer()
    await query.message.edit_text(  # type: ignore[union-attr]
        _("<b>New invitation</b> to {group} for a {role}. How long should it work?").format(
            group=q(group_title(group)), role=role_name(callback_data.role)
        ),
        reply_markup=await dialogs.mark(state, _step(kb.as_markup(), back)),
    )


async def choose_uses(query: CallbackQuery, callback_data: InviteCb, state: FSMContext, actor: Actor,
                      repo: Repo) -> None:
    group = await _checked(query, callback_data, actor, repo)
    if group is None:
        return
    kb = InlineKeyboardBuilder()
    for uses in INVITE_USES:
        label = _("no limit") if uses == 0 else ngettext("{n} person", "{n} people", uses).format(n=uses)
        kb.button(text=label, callback_data=callback_data.model_copy(update={"action": "make", "uses": uses}))
    kb.adjust(3)
    back = InviteCb(action="role", group_id=group.id, role=callback_data.role)
    await query.answer()
    await query.message.edit_text(  # type: ignore[union-attr]
        _("<b>New invitation</b> to {group} for a {role}. How many people may use it?").format(
            group=q(group_title(group)), role=role_name(callback_data.role)
        ),
        reply_markup=await dialogs.mark(state, _step(kb.as_markup(), back)),
    )


def describe(invitation: Invitation, actor: Actor) -> str:
    uses = (
        _("used {uses} of {limit}").format(uses=invitation.uses, limit=invitation.max_uses)
        if invitation.max_uses
        else _("used {uses}, no limit").format(uses=invitation.uses)
    )
    return _("<code>{code}</code> — {group}, {role}; {uses}; until {until}").format(
        code=invitation.code,
        group=q(group_title(invitation.group)),
        role=role_name(invitation.role),
        uses=uses,
        until=local_time(invitation.expires_at, actor.org),
    )


async def made_already(query: CallbackQuery) -> None:
    await query.answer(_("This invitation is already created (its code is above), or the wizard was closed. "
                         "Start again with /invite."), show_alert=True)


async def make_invitation(
    query: CallbackQuery, callback_data: InviteCb, state: FSMContext, actor: Actor, repo: Repo, bot_username: str
) -> None:
    group = await _checked(query, callback_data, actor, repo)
    if group is None or not callback_data.role or not callback_data.days:
        if group is not None:
            await query.answer(_("This button is out of date. Start again with /invite."), show_alert=True)
        return
    await state.clear()
    code = new_code()
    while await repo.code_exists(code):  # 2^49 codes: practically never loops
        code = new_code()
    invitation = await repo.add_invitation(
        org_id=group.org_id,
        group_id=group.id,
        role=callback_data.role,
        code=code,
        created_by_id=actor.person.id,
        expires_at=utcnow() + timedelta(days=callback_data.days),
        max_uses=callback_data.uses or None,
        issued_by_admin=actor.is_admin,
    )
    invitation.group = group
    # A class-wide family code asks the class's teacher to approve each family, unless switched off.
    invitation.needs_approval = callback_data.role == Role.PARENT
    repo.audit(
        group.org_id, actor.person.id, "invitation.create", subject=f"invitation:{invitation.id}",
        detail=f"{group.title}; {callback_data.role}; {callback_data.days}d; {callback_data.uses or '-'}",
    )
    link = deep_link(bot_username, code)
    await query.answer()
    from handlers.onboarding import approval_note, invitation_keyboard

    note = approval_note(invitation)
    await query.message.edit_text(  # type: ignore[union-attr]
        _("✅ Invitation created: {what}").format(what=describe(invitation, actor)) + ("\n" + note if note else ""),
        reply_markup=invitation_keyboard(invitation),
    )
    caption = _(
        "<b>{org}</b>: invitation to {group} for a {role}.\n\n"
        "Open {link}\nor send the bot <code>/join {code}</code>.\n\nValid until {until}."
    ).format(
        org=q(actor.org.name),  # type: ignore[union-attr]
        group=q(group.title),
        role=role_name(invitation.role),
        link=link,
        code=code,
        until=local_time(invitation.expires_at, actor.org),
    )
    await query.message.answer_photo(  # type: ignore[union-attr]
        BufferedInputFile(qr_png(link), filename=f"invitation-{code}.png"), caption=caption
    )


async def _visible(actor: Actor, repo: Repo) -> list[Invitation]:
    assert actor.org is not None
    group_ids = None if actor.is_admin else actor.teaching_group_ids()
    invitations = await repo.live_invitations(actor.org.id, utcnow(), group_ids=group_ids)
    # Personal family codes (printed slips, one per pupil) live in /families, not in this list,
    # and "revoke all unused" must not stop the slips handed out at a parents' meeting.
    return [i for i in invitations if i.pupil_id is None and actor.can_manage_invitation(i.group_id, i.created_by_id)]


async def _list_view(actor: Actor, repo: Repo) -> tuple[str, object]:
    invitations = await _visible(actor, repo)
    if not invitations:
        return _("There are no working invitations. Create one with /invite."), None
    lines = [_("<b>Working invitations</b>")]
    kb = InlineKeyboardBuilder()
    shown = invitations[:LIST_LIMIT]
    joined = await repo.invitation_users(i.id for i in shown)
    for invitation in shown:
        lines.append("• " + describe(invitation, actor))
        users = joined[invitation.id]
        if users:
            lines.append("   " + _("joined: {names}").format(names=q(", ".join(users))))
        kb.button(
            text=_("Revoke {code}").format(code=invitation.code),
            callback_data=InvitesCb(action="revoke", invitation_id=invitation.id),
        )
    if len(invitations) > LIST_LIMIT:
        lines.append(_("…and {n} more.").format(n=len(invitations) - LIST_LIMIT))
    kb.button(text=_("🧹 Revoke all unused"), callback_data=InvitesCb(action="all"))
    kb.adjust(2)
    return "\n".join(lines), kb.as_markup()


async def invites_command(message: Message, actor: Actor, repo: Repo) -> None:
    refusal = _refusal(actor)
    if refusal:
        await message.answer(refusal)
        return
    text, markup = await _list_view(actor, repo)
    await message.answer(text, reply_markup=markup)  # type: ignore[arg-type]


async def show_list(query: CallbackQuery, actor: Actor, repo: Repo) -> None:
    refusal = _refusal(actor)
    if refusal:
        await query.answer(refusal, show_alert=True)
        return
    text, markup = await _list_view(actor, repo)
    await query.answer()
    await query.message.edit_text(text, reply_markup=markup)  # type: ignore[union-attr, arg-type]


async def revoke_one(query: CallbackQuery, callback_data: InvitesCb, actor: Actor, repo: Repo) -> None:
    refusal = _refusal(actor)
    if refusal:
        await query.answer(refusal, show_alert=True)
        return
    invitation = await repo.invitation(callback_data.invitation_id, org_id=actor.org.id)  # type: ignore[union-attr]
    if invitation is None or not actor.can_manage_invitation(invitation.group_id, invitation.created_by_id):
        await query.answer(rights.REFUSED + _("You cannot revoke this invitation."), show_alert=True)
        return
    if await repo.revoke_invitation(invitation.id, utcnow()):
        repo.audit(invitation.org_id, actor.person.id, "invitation.revoke", subject=f"invitation:{invitation.id}")
        await query.answer(_("Invitation {code} is revoked.").format(code=invitation.code))
    else:
        await query.answer(_("Invitation {code} was already revoked.").format(code=invitation.code))
    text, markup = await _list_view(actor, repo)
    await query.message.edit_text(text, reply_markup=markup)  # type: ignore[union-attr, arg-type]


async def ask_revoke_all(query: CallbackQuery, actor: Actor, repo: Repo) -> None:
    refusal = _refusal(actor)
    if refusal:
        await query.answer(refusal, show_alert=True)
        return
    unused = [i for i in await _visible(actor, repo) if i.uses == 0]
    if not unused:
        await query.answer(_("There are no unused invitations."), show_alert=True)
        return
    await query.answer()
    await query.message.edit_text(  # type: ignore[union-attr]
        ngettext(
            "Revoke {n} unused invitation? Codes already used keep working until they expire.",
            "Revoke {n} unused invitations? Codes already used keep working until they expire.",
            len(unused),
        ).format(n=len(unused)),
        reply_markup=confirm_keyboard(InvitesCb(action="all_yes"), InvitesCb(action="list"), yes_text=_("🧹 Revoke")),
    )


async def revoke_all(query: CallbackQuery, actor: Actor, repo: Repo) -> None:
    refusal = _refusal(actor)
    if refusal:
        await query.answer(refusal, show_alert=True)
        return
    count = await repo.revoke_unused_invitations([i.id for i in await _visible(actor, repo)], utcnow())
    repo.audit(actor.org.id, actor.person.id, "invitation.revoke_unused", detail=str(count))  # type: ignore[union-attr]
    await query.answer()
    text, markup = await _list_view(actor, repo)
    done = ngettext("{n} invitation revoked.", "{n} invitations revoked.", count).format(n=count)
    await query.message.edit_text(done + "\n\n" + text, reply_markup=markup)  # type: ignore[union-attr, arg-type]
