"""Teacher verification (the card admins received); /members, paged, where an
admin corrects a name, removes a member (history kept, out of the group's
chats too), moves a pupil (the parents follow) and appoints another admin."""

from __future__ import annotations

from collections.abc import Iterable

from aiogram import F, Router
from aiogram.filters import Command, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.methods import BanChatMember, SendMessage, UnbanChatMember
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot import dialogs, rights
from bot.actor import Actor
from bot.i18n import in_locale
from bot.menus import section_commands
from bot.outbox import enqueue, settle_cards
from bot.settings import Settings
from handlers.admission import admin_chats, refresh_menu_of
from handlers.filters import TEXT_INPUT
from handlers.keyboards import MembersCb, VerifyCb, confirm_keyboard, group_title
from handlers.texts import clean_name, local_time, other_org_alert, q, role_name
from storage.models import (
    STAFF_ROLES,
    VERIFIED_ROLES,
    DbInt,
    GroupKind,
    LinkedChat,
    Membership,
    MemberState,
    Person,
    Role,
    utcnow,
)
from storage.repo import Repo


def create_router() -> Router:
    router = Router(name="staff")
    router.callback_query.register(verify, VerifyCb.filter(F.action.in_({"yes", "no"})))
    router.message.register(members_command, Command("members"))
    router.callback_query.register(show_members, MembersCb.filter(F.action == "group"))
    router.callback_query.register(show_blocks, MembersCb.filter(F.action == "blocks"))
    router.callback_query.register(member_card, MemberCb.filter(F.action == "card"))
    router.callback_query.register(ask_rename, MemberCb.filter(F.action == "rename"))
    router.message.register(got_name, StateFilter(MemberForm.name), TEXT_INPUT)
    router.callback_query.register(ask_remove, MemberCb.filter(F.action == "remove"))
    router.callback_query.register(remove, MemberCb.filter(F.action == "remove_yes"))
    router.callback_query.register(ask_move, MemberCb.filter(F.action == "move"))
    router.callback_query.register(move, MemberCb.filter(F.action == "move_yes"))
    router.callback_query.register(ask_appoint, MembersCb.filter(F.action == "admin"))
    router.callback_query.register(appoint, MembersCb.filter(F.action == "admin_yes"))
    return router


# -- verification ------------------------------------------------------------------


def verification_text(membership: Membership, verified: bool, admin_name: str) -> str:
    base = _("🧑‍🏫 <b>{name}</b> — {role}, {group}.").format(
        name=q(membership.person.display_name), role=role_name(membership.role), group=q(membership.group.title)
    )
    verdict = (
        _("✅ Verified by {admin}") if verified else _("✖️ Declined by {admin}")
    ).format(admin=q(admin_name))
    return base + "\n" + verdict


async def verify(query: CallbackQuery, callback_data: VerifyCb, actor: Actor, repo: Repo, settings: Settings) -> None:
    if not actor.is_admin:
        await query.answer(rights.REFUSED + _("Only administrators verify teachers."), show_alert=True)
        return
    membership = await repo.membership(callback_data.membership_id)
    if membership is None or membership.org_id != actor.org.id or membership.role not in VERIFIED_ROLES:  # type: ignore[union-attr]
        elsewhere = membership is not None and actor.elsewhere(membership.org_id)
        await query.answer(other_org_alert() if elsewhere else _("This card is out of date."), show_alert=True)
        return
    accept = callback_data.action == "yes"
    # Compare-and-swap on the card's membership: the first press wins.
    if accept:
        won = await repo.verify_membership(membership.id, actor.person.id)
    else:
        won = await repo.decline_membership(membership.id)
    if not won:
        await repo.session.refresh(membership)
        done = membership.state == MemberState.ACTIVE
        verifier = await repo.person(membership.verified_by_id) if membership.verified_by_id else None
        await query.answer(
            _("Already verified.") if done else _("Already decided."), show_alert=True
        )
        if isinstance(query.message, Message):
            await query.message.edit_text(
                verification_text(membership, done, verifier.display_name if verifier else "—")
            )
        return
    org = actor.org
    assert org is not None
    person = membership.person
    # The same person's other unverified staff memberships (the staff room) follow.
    for other in await repo.memberships_of(person.id, org.id):
        if other.id != membership.id and other.role in VERIFIED_ROLES and other.state == MemberState.UNVERIFIED:
            other.state = MemberState.ACTIVE.value if accept else MemberState.REMOVED.value
            if accept:
                other.verified_by_id, other.verified_at = actor.person.id, utcnow()
    repo.audit(org.id, actor.person.id, "teacher.verify" if accept else "teacher.decline",
               subject=f"person:{person.id}", detail=f"{membership.group.title}; {membership.role}")
    texts: dict[int, str] = {}
    for chat_id, locale in (await admin_chats(repo, org, settings.admin_ids, settings.default_locale)).items():
        with in_locale(locale):
            texts[chat_id] = verification_text(membership, accept, actor.person.display_name)
    pressed = (query.message.chat.id, query.message.message_id) if query.message else None
    await settle_cards(repo, "verify", membership.id, texts, skip_message=pressed)
    fresh = await refresh_menu_of(repo, person, settings.admin_ids, settings.default_locale)
    with in_locale(person.locale or settings.default_locale):
        if accept:
            text = _("✅ An administrator has verified you as {role} in {group}.").format(
                role=role_name(membership.role), group=q(membership.group.title)
            )
            # What they may do now, from the rights table (in this organisation).
            now = Actor.in_org(fresh.person, org, settings.admin_ids) if fresh is not None else None
            teaching = section_commands(now, rights.Section.TEACHING) if now is not None else []
            if teaching:
                text += "\n\n" + _("Now you can:") + "\n" + "\n".join(
                    f"/{c.command} — {c.description}" for c in teaching)
            text += "\n\n" + _("All your commands: /help")
        else:
            text = _("An administrator did not confirm you as {role} in {group}. For questions, contact the administration.").format(
                role=role_name(membership.role), group=q(membership.group.title)
            )
        enqueue(repo, person.telegram_id, SendMessage(chat_id=person.telegram_id, text=text),
                org_id=org.id, org=org, topic="verify_answer", ref_id=membership.id)
    await query.answer(_("Verified.") if accept else _("Declined."))
    if isinstance(query.message, Message):
        await query.message.edit_text(verification_text(membership, accept, actor.person.display_name))


# -- members and admins ----------------------------------------------------------------

PAGE = 15


class MemberForm(StatesGroup):
    name = State()


class MemberCb(CallbackData, prefix="mb"):
    """An admin's action on one member of one group."""

    action: str  # card | rename | remove | remove_yes | move | move_yes
    group_id: DbInt
    person_id: DbInt
    value: DbInt = 0  # a pupil
    target: DbInt = 0  # the group a pupil moves to


def _viewable(actor: Actor) -> bool:
    return actor.can(rights.Cap.VIEW_MEMBERS)


async def members_command(message: Message, actor: Actor, repo: Repo) -> None:
    if not _viewable(actor):
        await message.answer(rights.REFUSED + _("Only administrators, the head and verified teachers see member lists."))
        return
    groups = await repo.groups(actor.org.id)  # type: ignore[union-attr]
    if not (actor.is_admin or actor.is_head):
        groups = [g for g in groups if g.id in actor.teaching_group_ids()]
    kb = InlineKeyboardBuilder()
    for group in groups:
        kb.button(text=group_title(group), callback_data=MembersCb(action="group", group_id=group.id))
    if actor.is_admin:
        kb.button(text=_("🚫 Blocks"), callback_data=MembersCb(action="blocks"))
    kb.adjust(2)
    await message.answer(_("Whose members?"), reply_markup=kb.as_markup())


async def show_members(query: CallbackQuery, callback_data: MembersCb, actor: Actor, repo: Repo) -> None:
    if not _viewable(actor):
        await query.answer(rights.REFUSED + _("Only administrators, the head and verified teachers see member lists."), show_alert=True)
        return
    group = await repo.group(actor.org.id, callback_data.group_id)  # type: ignore[union-attr]
    if group is None or not (actor.is_admin or actor.is_head or group.id in actor.teaching_group_ids()):
        await query.answer(rights.REFUSED + _("You cannot see this group's members."), show_alert=True)
        return
    members = list(await repo.members(group.id))
    pages = max(1, (len(members) + PAGE - 1) // PAGE)
    page = min(max(0, callback_data.person_id), pages - 1)  # person_id carries the page here
    shown = members[page * PAGE:(page + 1) * PAGE]
    children = await repo.children_by_parent(group.id)
    lines = [_("<b>{group}</b>: {n} members").format(group=q(group_title(group)), n=len(members))]
    pupils, joined = (await repo.families_joined(group.org_id)).get(group.id, (0, 0))
    if pupils > joined:  # some families of the class list are still missing: /families has them
        lines.append(_("families joined: {joined} of {pupils} (who is missing: /families)").format(
            joined=joined, pupils=pupils))
    kb = InlineKeyboardBuilder()
    for m in shown:
        line = f"• {q(m.person.display_name)} — {role_name(m.role)}"
        if m.role == Role.PARENT and children.get(m.person_id):
            line += " (" + q(", ".join(children[m.person_id])) + ")"
        if m.state == MemberState.UNVERIFIED:
            line += " " + _("(waiting for verification)")
        lines.append(line)
        if actor.is_admin:
            kb.button(text=m.person.display_name[:30],
                      callback_data=MemberCb(action="card", group_id=group.id, person_id=m.person_id))
    sizes = [2] * ((len(shown) + 1) // 2) if actor.is_admin else []
    nav = 0
    if page > 0:
        kb.button(text="«", callback_data=MembersCb(action="group", group_id=group.id, person_id=page - 1))
        nav += 1
    if page + 1 < pages:
        kb.button(text="»", callback_data=MembersCb(action="group", group_id=group.id, person_id=page + 1))
        nav += 1
    if nav:
        sizes.append(nav)
        lines.append(_("Page {page} of {pages}").format(page=page + 1, pages=pages))
    kb.adjust(*(sizes or [1]))
    await query.answer()
    await query.message.edit_text("\n".join(lines), reply_markup=kb.as_markup())  # type: ignore[union-attr]


async def show_blocks(query: CallbackQuery, actor: Actor, repo: Repo) -> None:
    if not actor.is_admin:
        await query.answer(rights.REFUSED + _("Only administrators see blocks."), show_alert=True)
        return
    blocks = await repo.blocks(actor.org.id)  # type: ignore[union-attr]
    lines = [_("<b>Blocks</b>")] + [
        _("{who} blocked {whom} on {when}").format(who=q(a), whom=q(b), when=local_time(at, actor.org))
        for a, b, at in blocks
    ]
    if not blocks:
        lines.append(_("Nobody has blocked anyone."))
    await query.answer()
    await query.message.answer("\n".join(lines))  # type: ignore[union-attr]


async def _member(query: CallbackQuery, data: MemberCb, actor: Actor, repo: Repo) -> list[Membership] | None:
    """The person's live memberships in the group, if an admin asks."""
    if not actor.is_admin or actor.org is None:
        await query.answer(rights.REFUSED + _("Only administrators change members."), show_alert=True)
        return None
    group = await repo.group(actor.org.id, data.group_id)
    found = [m for m in await repo.members(data.group_id) if m.person_id == data.person_id] if group else []
    if not found:
        await query.answer(_("This person is no longer in the group."), show_alert=True)
        return None
    return found


async def member_card(query: CallbackQuery, callback_data: MemberCb, actor: Actor, repo: Repo) -> None:
    found = await _member(query, callback_data, actor, repo)
    if found is None:
        return
    person = found[0].person
    group_id = callback_data.group_id
    kb = InlineKeyboardBuilder()
    kb.button(text=_("✏️ Correct the name"), callback_data=MemberCb(action="rename", group_id=group_id, person_id=person.id))
    kb.button(text=_("➖ Remove from the group"), callback_data=MemberCb(action="remove", group_id=group_id, person_id=person.id))
    for pupil in await repo.children_in_group(person.id, group_id):
        kb.button(text=_("🔀 Move {child}").format(child=pupil.full_name[:30]),
                  callback_data=MemberCb(action="move", group_id=group_id, person_id=person.id, value=pupil.id))
    group = await repo.group(actor.org.id, group_id)  # type: ignore[union-attr]
    if group is not None and group.kind == GroupKind.STAFF and not any(m.role == Role.ADMIN for m in found) \
            and any(m.state == MemberState.ACTIVE for m in found):
        kb.button(text=_("👑 Make an administrator"), callback_data=MembersCb(action="admin", group_id=group_id,
                                                                               person_id=person.id))
    kb.button(text=_("« Back"), callback_data=MembersCb(action="group", group_id=group_id))
    kb.adjust(1)
    roles = ", ".join(role_name(m.role) for m in found)
    await query.answer()
    await query.message.edit_text(f"<b>{q(person.display_name)}</b> — {roles}", reply_markup=kb.as_markup())  # type: ignore[union-attr]


async def ask_rename(query: CallbackQuery, callback_data: MemberCb, state: FSMContext, actor: Actor, repo: Repo) -> None:
    found = await _member(query, callback_data, actor, repo)
    if found is None:
        return
    token = await dialogs.begin(state, MemberForm.name, person_id=callback_data.person_id,
                                group_id=callback_data.group_id)
    await query.answer()
    await query.message.answer(_("Send the correct full name of {name}.").format(name=q(found[0].person.display_name)),  # type: ignore[union-attr]
                               reply_markup=dialogs.stamp(dialogs.cancel_markup(), token))


async def got_name(message: Message, state: FSMContext, actor: Actor, repo: Repo) -> None:
    data = await state.get_data()
    name = clean_name(message.text)
    if name is None:
        await message.answer(_("Please send a full name: 2 to 128 characters, letters included."))
        return
    await state.clear()
    members = [m for m in await repo.members(data["group_id"]) if m.person_id == data["person_id"]]
    if not actor.is_admin or actor.org is None or not members or members[0].org_id != actor.org.id:
        await message.answer(rights.REFUSED + _("Only administrators change members."))
        return
    person = members[0].person
    old = person.display_name
    person.full_name = name
    repo.audit(actor.org.id, actor.person.id, "member.rename", subject=f"person:{person.id}", detail=f"{old} → {name}")
    await message.answer(_("✅ «{old}» is now «{name}».").format(old=q(old), name=q(name)))


async def ask_remove(query: CallbackQuery, callback_data: MemberCb, actor: Actor, repo: Repo) -> None:
    found = await _member(query, callback_data, actor, repo)
    if found is None:
        return
    await query.answer()
    await query.message.edit_text(  # type: ignore[union-attr]
        _("Remove {name} from this group? Their history stays; they stop getting its messages.").format(
            name=q(found[0].person.display_name)),
        reply_markup=confirm_keyboard(
            MemberCb(action="remove_yes", group_id=callback_data.group_id, person_id=callback_data.person_id),
            MemberCb(action="card", group_id=callback_data.group_id, person_id=callback_data.person_id),
            yes_text=_("➖ Remove"),
        ),
    )


async def remove(query: CallbackQuery, callback_data: MemberCb, actor: Actor, repo: Repo, settings: Settings) -> None:
    # Two admins deciding about members at once (removing each other, the same
    # person twice): one after the other, each seeing what the other did.
    if actor.org is not None:
        await repo.lock_organisations([actor.org.id])
    found = await _member(query, callback_data, actor, repo)
    if found is None:
        return
    org = actor.org
    assert org is not None
    person = found[0].person
    group = await repo.group(org.id, callback_data.group_id)
    assert group is not None
    # Staff leaving the staff room leave the organisation's staff altogether.
    leaving = list(found)
    if group.kind == GroupKind.STAFF:
        leaving = [m for m in await repo.memberships_of(person.id, org.id) if m.role in STAFF_ROLES]
    if any(m.role == Role.ADMIN for m in leaving):
        others = [p for p in await repo.people_in_role(org.id, [Role.ADMIN]) if p.id != person.id]
        if not others and not (settings.admin_ids - {person.telegram_id}):
            await query.answer(_("This is the last administrator: appoint another one first."), show_alert=True)
            return
    leaving = [m for m in leaving if m.state != MemberState.REMOVED]
    if not leaving:
        await query.answer(_("Already removed."), show_alert=True)
        return
    for m in leaving:
        m.state = MemberState.REMOVED.value
    repo.audit(org.id, actor.person.id, "member.remove", subject=f"person:{person.id}", detail=group.title)
    kick_from_chats(repo, await repo.linked_chats_of({m.group_id for m in leaving}), person, org.id)
    await refresh_menu_of(repo, person, settings.admin_ids, settings.default_locale)
    await query.answer(_("Removed."))
    await query.message.edit_text(_("➖ {name} is removed from {group}.").format(name=q(person.display_name), group=q(group.title)))  # type: ignore[union-attr]


def kick_from_chats(repo: Repo, chats: Iterable[LinkedChat], person: Person, org_id: int) -> None:
    """Out of these group chats (banned and unbanned: a kick that lets them back with a new link)."""
    for chat in chats:
        enqueue(repo, chat.chat_id, BanChatMember(chat_id=chat.chat_id, user_id=person.telegram_id), org_id=org_id,
                topic="chat_kick", ref_id=person.id)
        enqueue(repo, chat.chat_id, UnbanChatMember(chat_id=chat.chat_id, user_id=person.telegram_id, only_if_banned=True),
                org_id=org_id, topic="chat_kick", ref_id=person.id)


async def ask_move(query: CallbackQuery, callback_data: MemberCb, actor: Actor, repo: Repo) -> None:
    found = await _member(query, callback_data, actor, repo)
    if found is None:
        return
    pupil = await repo.pupil(callback_data.value)
    if pupil is None or pupil.group_id != callback_data.group_id:
        await query.answer(_("This child is no longer in the group."), show_alert=True)
        return
    kb = InlineKeyboardBuilder()
    for group in await repo.groups(actor.org.id, include_staff=False):  # type: ignore[union-attr]
        if group.id != pupil.group_id:
            kb.button(text=group.title, callback_data=MemberCb(action="move_yes", group_id=callback_data.group_id,
                                                              person_id=callback_data.person_id, value=pupil.id,
                                                              target=group.id))
    kb.adjust(2)
    await query.answer()
    await query.message.edit_text(  # type: ignore[union-attr]
        _("Move {child} to which group? The parents follow the child.").format(child=q(pupil.full_name)),
        reply_markup=kb.as_markup(),
    )


async def move(query: CallbackQuery, callback_data: MemberCb, actor: Actor, repo: Repo, settings: Settings) -> None:
    if actor.org is not None:
        await repo.lock_organisations([actor.org.id])  # two admins moving the same child: one after the other
    found = await _member(query, callback_data, actor, repo)
    if found is None:
        return
    org = actor.org
    assert org is not None
    pupil = await repo.pupil(callback_data.value)
    target = await repo.group(org.id, callback_data.target)
    if pupil is None or pupil.group_id != callback_data.group_id or target is None or target.archived_at is not None \
            or target.kind != GroupKind.CLASS or target.id == pupil.group_id:
        await query.answer(_("This move is no longer possible."), show_alert=True)
        return
    old_group = pupil.group_id
    pupil.group_id = target.id
    await repo.flush()
    # The parents follow — those still active in the old group (one the admin
    # removed stays removed): a parent membership in the new group, and the old
    # one ends, with its chats, unless another of their children is still there.
    old_chats = await repo.linked_chats_of([old_group])
    for parent in await repo.guardians(pupil.id):
        old = await repo.find_membership(old_group, parent.id, Role.PARENT.value)
        if old is None or old.state != MemberState.ACTIVE:
            continue
        await repo.add_membership(org_id=org.id, group_id=target.id, person_id=parent.id, role=Role.PARENT.value,
                                  state=MemberState.ACTIVE.value)
        if not await repo.children_in_group(parent.id, old_group):
            old.state = MemberState.REMOVED.value
            kick_from_chats(repo, old_chats, parent, org.id)
    repo.audit(org.id, actor.person.id, "pupil.move", subject=f"pupil:{pupil.id}", detail=f"{old_group} → {target.title}")
    await query.answer(_("Moved."))
    await query.message.edit_text(_("🔀 {child} is now in {group}; the parents follow.").format(  # type: ignore[union-attr]
        child=q(pupil.full_name), group=q(target.title)))


async def _appointable(query: CallbackQuery, callback_data: MembersCb, actor: Actor, repo: Repo) -> Membership | None:
    if not actor.is_admin:
        await query.answer(rights.REFUSED + _("Only administrators can appoint administrators."), show_alert=True)
        return None
    staff = await repo.staff_room(actor.org.id)  # type: ignore[union-attr]
    candidates = [
        m for m in await repo.members(staff.id)
        if m.person_id == callback_data.person_id and m.state == MemberState.ACTIVE
    ]
    if not candidates:
        await query.answer(rights.REFUSED + _("Only active staff can become administrators."), show_alert=True)
        return None
    if any(m.role == Role.ADMIN for m in candidates):
        await query.answer(_("{name} is already an administrator.").format(name=candidates[0].person.display_name), show_alert=True)
        return None
    return candidates[0]

async def ask_appoint(query: CallbackQuery, callback_data: MembersCb, actor: Actor, repo: Repo) -> None:
    member = await _appointable(query, callback_data, actor, repo)
    if member is None:
        return
    await query.answer()
    await query.message.edit_text(  # type: ignore[union-attr]
        _(
            "Make <b>{name}</b> an administrator? They will be able to change groups, invite anyone, "
            "decide on requests and verify teachers."
        ).format(name=q(member.person.display_name)),
        reply_markup=confirm_keyboard(
            MembersCb(action="admin_yes", group_id=member.group_id, person_id=member.person_id),
            MembersCb(action="group", group_id=member.group_id),
            yes_text=_("✅ Appoint"),
        ),
    )


async def appoint(query: CallbackQuery, callback_data: MembersCb, actor: Actor, repo: Repo, settings: Settings) -> None:
    if actor.org is not None:
        await repo.lock_organisations([actor.org.id])  # two admins appointing at once: one after the other
    member = await _appointable(query, callback_data, actor, repo)
    if member is None:
        return
    org = actor.org
    assert org is not None
    if any(m.role == Role.ADMIN and m.state == MemberState.ACTIVE
           for m in await repo.memberships_of(member.person_id, org.id)):
        await query.answer(_("Already an administrator."), show_alert=True)
        return
    await repo.add_membership(
        org_id=org.id, group_id=member.group_id, person_id=member.person_id, role=Role.ADMIN.value,
        state=MemberState.ACTIVE.value, verified_by_id=actor.person.id,
    )
    repo.audit(org.id, actor.person.id, "admin.appoint", subject=f"person:{member.person_id}")
    person = member.person
    with in_locale(person.locale or settings.default_locale):
        enqueue(
            repo, person.telegram_id,
            SendMessage(chat_id=person.telegram_id, text=_("👑 {admin} appointed you an administrator of {org}. See /help.").format(
                admin=q(actor.person.display_name), org=q(org.name))),
            org_id=org.id, org=org, topic="admin_appointed", ref_id=person.id,
        )
    await refresh_menu_of(repo, person, settings.admin_ids, settings.default_locale)
    await query.answer(_("Done."))
    await query.message.edit_text(  # type: ignore[union-attr]
        _("👑 {name} is now an administrator.").format(name=q(person.display_name))
    )
