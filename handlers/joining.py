"""Joining by code: `/start <code>` (the deep link) or `/join <code>`, then
full name (and a parent's child), a confirmation, and the membership.

A wrong, expired, revoked or used-up code changes nothing; repeated wrong
codes are throttled. The invitation is consumed atomically at confirmation.
"""

from __future__ import annotations

from datetime import datetime

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, CommandStart, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _

from bot import dialogs, rights
from bot.actor import Actor
from bot.menus import enqueue_menu
from bot.settings import Settings
from bot.throttle import WrongCodeThrottle
from handlers import onboarding
from handlers.requests import file_request
from handlers.admission import admit, ask_admins_to_verify, refresh_menu_of
from handlers.filters import TEXT_INPUT
from handlers.invites import normalize_code
from handlers.keyboards import JoinCb, confirm_keyboard, group_title
from handlers.texts import clean_name, q, role_name
from storage.models import Invitation, MemberState, Role, utcnow
from storage.repo import Repo, normalize_name


class JoinForm(StatesGroup):
    name = State()
    child = State()
    confirm = State()


def create_router() -> Router:
    router = Router(name="joining")
    router.message.register(start_with_code, CommandStart(deep_link=True))
    router.message.register(join_command, Command("join"))
    router.message.register(got_name, StateFilter(JoinForm.name), TEXT_INPUT)
    router.callback_query.register(keep_name, StateFilter(JoinForm.name), JoinCb.filter(F.action == "keep_name"))
    router.message.register(got_child, StateFilter(JoinForm.child), TEXT_INPUT)
    router.callback_query.register(confirm, StateFilter(JoinForm.confirm), JoinCb.filter(F.action == "confirm"))
    # Only inside its own dialog: an old Cancel must not wipe another one in progress.
    router.callback_query.register(cancel, StateFilter(JoinForm), JoinCb.filter(F.action == "cancel"))
    router.callback_query.register(stale, JoinCb.filter())
    return router


def invitation_problem(invitation: Invitation | None, now: datetime) -> str | None:
    """Why this invitation cannot be used now, in the person's language; None if it can."""
    if invitation is None:
        return _("There is no invitation with this code. Check it — the letters O, I and L are never used.")
    if invitation.revoked_at is not None:
        return _("This invitation was revoked. Ask whoever gave it to you for a new one.")
    if invitation.group.archived_at is not None:
        return _("This invitation's group is archived. Ask whoever gave it to you for a new one.")
    if invitation.expires_at <= now:
        return _("This invitation has expired. Ask whoever gave it to you for a new one.")
    if invitation.max_uses is not None and invitation.uses >= invitation.max_uses:
        return _("This invitation has already been used up. Ask whoever gave it to you for a new one.")
    return None


async def start_with_code(
    message: Message, command: CommandObject, state: FSMContext, actor: Actor, repo: Repo,
    throttle: WrongCodeThrottle, settings: Settings, new_person: bool = False,
) -> None:
    if new_person:
        await enqueue_menu(repo, actor)
    await begin(message, command.args or "", state, actor, repo, throttle, settings)


async def join_command(
    message: Message, command: CommandObject, state: FSMContext, actor: Actor, repo: Repo,
    throttle: WrongCodeThrottle, settings: Settings,
) -> None:
    if not command.args:
        await message.answer(_("Send the code with the command, like this: <code>/join K7M2QX9PRT</code>"))
        return
    await begin(message, command.args, state, actor, repo, throttle, settings)


async def creator_still_admits(repo: Repo, invitation: Invitation, admin_ids: frozenset[int]) -> bool:
    """Decided when the code is used, not when it was made (bot.rights.invitation_admits)."""
    creator = await repo.person_by_id_with_memberships(invitation.created_by_id)
    org = await repo.organisation(invitation.org_id)
    if creator is None or org is None:
        return False
    return rights.invitation_admits(Actor.in_org(creator, org, admin_ids), invitation)


async def begin(
    message: Message, text: str, state: FSMContext, actor: Actor, repo: Repo, throttle: WrongCodeThrottle,
    settings: Settings,
) -> None:
    user_id = actor.person.telegram_id
    org_id = actor.addressed_org.id if actor.addressed_org else None
    wait = await throttle.blocked_for(user_id) or await throttle.org_blocked_for(org_id)
    if wait:
        await message.answer(
            _("Too many wrong codes. Please wait {minutes} min and try again.").format(minutes=wait)
        )
        return
    code = normalize_code(text)
    invitation = await repo.invitation_by_code(code) if code else None
    problem = invitation_problem(invitation, utcnow())
    if problem is not None:
        await throttle.wrong(user_id, org_id)
        await message.answer(problem)
        return
    assert invitation is not None
    if not await creator_still_admits(repo, invitation, settings.admin_ids):
        await message.answer(_("This invitation no longer works: whoever issued it can no longer invite to this "
                               "group. Ask the school for a new one."))
        return
    existing = actor.membership_in(invitation.group_id, invitation.role)
    if existing is not None and invitation.role != Role.PARENT:
        await message.answer(
            _("You are already a member of {group} as {role}.").format(
                group=q(invitation.group.title), role=role_name(invitation.role)
            )
        )
        return
    org = await repo.organisation(invitation.org_id)
    personal = await onboarding.personal_start(message, state, actor, repo, invitation, org)
    if personal is not None:
        if personal:
            await _ask_confirm(message, state, repo)
        return
    token = await dialogs.begin(state, JoinForm.name, invitation_id=invitation.id)
    text = _(
        "🎫 Invitation to <b>{group}</b> ({org}) as {role}.\n\nPlease send your full name, "
        "as the teachers and the administration should see it (for example: Иванова Мария Петровна)."
    ).format(group=q(invitation.group.title), org=q(org.name if org else ""), role=role_name(invitation.role))
    await message.answer(text, reply_markup=dialogs.stamp(name_markup(actor), token))


def _cancel_button() -> InlineKeyboardButton:
    return InlineKeyboardButton(text=_("✖️ Cancel"), callback_data=JoinCb(action="cancel").pack())


def name_markup(actor: Actor) -> InlineKeyboardMarkup:
    """The name step: keep the name the person already has (if any), or cancel."""
    rows = [[_cancel_button()]]
    if actor.person.full_name:
        keep = InlineKeyboardButton(text=_("Keep: {name}").format(name=actor.person.full_name[:40]),
                                    callback_data=JoinCb(action="keep_name").pack())
        rows.insert(0, [keep])
    return InlineKeyboardMarkup(inline_keyboard=rows)


async def _invitation(state: FSMContext, repo: Repo) -> Invitation | None:
    data = await state.get_data()
    if "invitation_id" not in data:
        return None
    return await repo.invitation(data["invitation_id"])


async def got_name(message: Message, state: FSMContext, repo: Repo) -> None:
    name = clean_name(message.text)
    if name is None:
        await message.answer(
            _("Please send your full name as text: 2 to 128 characters, letters included. /cancel stops.")
        )
        return
    await _after_name(message, state, repo, name)


async def keep_name(query: CallbackQuery, state: FSMContext, actor: Actor, repo: Repo) -> None:
    await query.answer()
    await _after_name(query.message, state, repo, actor.person.full_name or "")  # type: ignore[arg-type]


async def _after_name(message: Message, state: FSMContext, repo: Repo, name: str) -> None:
    invitation = await _invitation(state, repo)
    if invitation is None:
        await state.clear()
        await message.answer(_("This dialog has expired. Open the invitation link again."))
        return
    await state.update_data(full_name=name)
    if invitation.pupil_id is not None:  # a personal family code: the child is the one it was issued for
        await _ask_confirm(message, state, repo)
        return
    if invitation.role == Role.PARENT:
        await state.set_state(JoinForm.child)
        await message.answer(_("Thank you. Now send your child's full name (for example: Иванов Пётр)."),
                             reply_markup=await dialogs.mark(state, InlineKeyboardMarkup(inline_keyboard=[[_cancel_button()]])))
        return
    await _ask_confirm(message, state, repo)


async def got_child(message: Message, state: FSMContext, repo: Repo) -> None:
    child = clean_name(message.text)
    if child is None:
        await message.answer(
            _("Please send the child's full name as text: 2 to 128 characters, letters included.")
        )
        return
    await state.update_data(child_name=child)
    await _ask_confirm(message, state, repo)


async def _ask_confirm(message: Message, state: FSMContext, repo: Repo) -> None:
    invitation = await _invitation(state, repo)
    if invitation is None:
        await state.clear()
        await message.answer(_("This dialog has expired. Open the invitation link again."))
        return
    data = await state.get_data()
    await state.set_state(JoinForm.confirm)
    lines = [
        _("Please check:"),
        _("Group: {group}").format(group=q(group_title(invitation.group))),
        _("Role: {role}").format(role=role_name(invitation.role)),
        _("Your name: {name}").format(name=q(data["full_name"])),
    ]
    if data.get("child_name"):
        lines.append(_("Child: {name}").format(name=q(data["child_name"])))
    yes_text = onboarding.confirm_words(invitation, lines)
    await message.answer(
        "\n".join(lines),
        reply_markup=await dialogs.mark(state, confirm_keyboard(JoinCb(action="confirm"), JoinCb(action="cancel"),
                                                                yes_text=yes_text or _("✅ Join"))),
    )


async def confirm(
    query: CallbackQuery, state: FSMContext, actor: Actor, repo: Repo, settings: Settings
) -> None:
    data = await state.get_data()
    invitation = await _invitation(state, repo)
    await state.clear()
    if invitation is None:
        await query.answer(_("This dialog has expired. Open the invitation link again."), show_alert=True)
        return
    child = data.get("child_name")
    if await _already_member(actor, repo, invitation, child):
        await query.answer()
        await query.message.edit_text(  # type: ignore[union-attr]
            _("You are already a member of {group} as {role}.").format(
                group=q(invitation.group.title), role=role_name(invitation.role)
            )
        )
        return
    # A member removed from this group comes back only with a decider's approval.
    if await repo.removed_from(actor.person.id, invitation.group_id):
        org = await repo.organisation(invitation.org_id)
        assert org is not None
        outcome = await file_request(repo, org, invitation.group, actor.person, invitation.role,
                                     data["full_name"], child, settings)
        await query.answer()
        await query.message.edit_text(outcome)  # type: ignore[union-attr]
        return
    if invitation.needs_approval:  # a class-wide family code: a request for the class's teacher
        await onboarding.join_by_request(query, actor, repo, settings, invitation, data)
        return
    # Checked again: it may have expired, been revoked or used up meanwhile.
    problem = invitation_problem(invitation, utcnow())
    if problem is None and not await creator_still_admits(repo, invitation, settings.admin_ids):
        problem = _("This invitation no longer works: whoever issued it can no longer invite to this "
                    "group. Ask the school for a new one.")
    if problem is None and not await repo.consume_invitation(invitation.id, utcnow()):
        problem = _("This invitation has already been used up. Ask whoever gave it to you for a new one.")
    if problem is not None:
        await query.answer()
        await query.message.edit_text(problem)  # type: ignore[union-attr]
        return
    org = await repo.organisation(invitation.org_id)
    assert org is not None
    membership = await admit(
        repo,
        org=org,
        group=invitation.group,
        person=actor.person,
        role=invitation.role,
        full_name=data["full_name"],
        child_name=None if invitation.pupil_id is not None else child,
        invitation_id=invitation.id,
        # A personal staff code: the administration named this person, so they are verified.
        verified_by_id=invitation.created_by_id if invitation.person_name else None,
    )
    await onboarding.after_personal_join(repo, org, actor.person, invitation)
    actor.person.current_org_id = org.id  # act in the organisation just joined (one of several, maybe)
    fresh = await refresh_menu_of(repo, actor.person, settings.admin_ids, settings.default_locale)
    text = _("✅ Welcome! You are now in <b>{group}</b> as {role}.").format(
        group=q(invitation.group.title), role=role_name(invitation.role)
    )
    if membership.state == MemberState.UNVERIFIED:
        await ask_admins_to_verify(
            repo, org=org, membership=membership, person=actor.person, group=invitation.group,
            admin_ids=settings.admin_ids, default_locale=settings.default_locale,
        )
        text += "\n\n" + _(
            "An administrator has to verify you as a teacher before you can post or invite. "
            "You will get a message here."
        )
    elif fresh is not None:
        text += "\n\n" + _("What you can do now: /help")
    if invitation.role in (Role.PARENT, Role.STUDENT):
        text += "\n" + _("Messages from the group's teachers will come to this chat.")
    await query.answer()
    await query.message.edit_text(text)  # type: ignore[union-attr]


async def _already_member(actor: Actor, repo: Repo, invitation: Invitation, child: str | None) -> bool:
    """A parent may join the same group again for another child; nobody else may."""
    # Any live membership of the person, also in an organisation they do not act in now.
    if not any(m.group_id == invitation.group_id and m.role == invitation.role and m.state != MemberState.REMOVED
               for m in actor.person.memberships):
        return False
    if invitation.role != Role.PARENT or not child:
        return True
    if invitation.pupil_id is not None:
        return any(c.id == invitation.pupil_id for c in await repo.children_in_group(actor.person.id, invitation.group_id))
    children = await repo.children_in_group(actor.person.id, invitation.group_id)
    return any(normalize_name(c.full_name) == normalize_name(child) for c in children)


async def cancel(query: CallbackQuery, state: FSMContext) -> None:
    await state.clear()
    await query.answer()
    await query.message.edit_text(_("Cancelled. Nothing was changed."))  # type: ignore[union-attr]


async def stale(query: CallbackQuery, raw_state: str | None = None) -> None:
    if dialogs.earlier_step(raw_state, JoinForm):
        await query.answer(dialogs.earlier_step_text(), show_alert=True)
        return
    await query.answer(_("This dialog is already finished. Open the invitation link again."), show_alert=True)
