"""/groups: admins create, rename and archive groups; others see their own."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot import dialogs, rights
from bot.actor import Actor
from handlers.filters import TEXT_INPUT
from handlers.keyboards import GroupCb, confirm_keyboard, group_title
from handlers.texts import TITLE_MAX, clean_name, q, role_name
from storage.models import Group, GroupKind, utcnow
from storage.repo import Repo


class GroupForm(StatesGroup):
    title = State()


def create_router() -> Router:
    router = Router(name="groups")
    router.message.register(groups_command, Command("groups"))
    router.callback_query.register(show_list, GroupCb.filter(F.action == "list"))
    router.callback_query.register(show_group, GroupCb.filter(F.action == "open"))
    router.callback_query.register(ask_title, GroupCb.filter(F.action.in_({"new", "rename"})))
    router.message.register(got_title, StateFilter(GroupForm.title), TEXT_INPUT)
    router.callback_query.register(ask_archive, GroupCb.filter(F.action == "archive"))
    router.callback_query.register(archive, GroupCb.filter(F.action == "archive_yes"))
    return router


async def _list(actor: Actor, repo: Repo) -> tuple[str, InlineKeyboardMarkup | None]:
    assert actor.org is not None
    if actor.is_admin:
        groups = await repo.groups(actor.org.id)
        kb = InlineKeyboardBuilder()
        for group in groups:
            kb.button(text=group_title(group), callback_data=GroupCb(action="open", group_id=group.id))
        kb.button(text=_("➕ New group"), callback_data=GroupCb(action="new"))
        kb.adjust(2)
        return _("<b>Groups of {org}</b>\nChoose a group to rename or archive it.").format(
            org=q(actor.org.name)
        ), kb.as_markup()
    lines = [_("<b>Your groups</b>")]
    for m in actor.memberships:
        lines.append(f"• {q(group_title(m.group))} — {role_name(m.role)}")
    return "\n".join(lines), None


async def groups_command(message: Message, actor: Actor, repo: Repo) -> None:
    if actor.org is None or not actor.is_member:
        await message.answer(_("You are not a member of any group yet. Send /start."))
        return
    text, markup = await _list(actor, repo)
    await message.answer(text, reply_markup=markup)


async def _admin_group(query: CallbackQuery, callback_data: GroupCb, actor: Actor, repo: Repo) -> Group | None:
    """The group an admin's button names, or None after telling them why not."""
    if not actor.is_admin or actor.org is None:
        await query.answer(rights.REFUSED + _("Only administrators can change groups."), show_alert=True)
        return None
    group = await repo.group(actor.org.id, callback_data.group_id)
    if group is None or group.archived_at is not None:
        await query.answer(_("This group no longer exists."), show_alert=True)
        return None
    return group


async def show_list(query: CallbackQuery, actor: Actor, repo: Repo) -> None:
    if actor.org is None or not actor.is_member:
        await query.answer(_("You are not a member of any group yet."), show_alert=True)
        return
    text, markup = await _list(actor, repo)
    await query.answer()
    await query.message.edit_text(text, reply_markup=markup)  # type: ignore[union-attr]


async def show_group(query: CallbackQuery, callback_data: GroupCb, actor: Actor, repo: Repo) -> None:
    group = await _admin_group(query, callback_data, actor, repo)
    if group is None:
        return
    kb = InlineKeyboardBuilder()
    kb.button(text=_("✏️ Rename"), callback_data=GroupCb(action="rename", group_id=group.id))
    if group.kind == GroupKind.CLASS:
        kb.button(text=_("🗄 Archive"), callback_data=GroupCb(action="archive", group_id=group.id))
    kb.button(text=_("« Back"), callback_data=GroupCb(action="list"))
    kb.adjust(2)
    text = _("<b>{title}</b>\nMembers: {count}").format(
        title=q(group_title(group)), count=await repo.count_members(group.id)
    )
    await query.answer()
    await query.message.edit_text(text, reply_markup=kb.as_markup())  # type: ignore[union-attr]


async def ask_title(
    query: CallbackQuery, callback_data: GroupCb, state: FSMContext, actor: Actor, repo: Repo
) -> None:
    if callback_data.action == "rename":
        group = await _admin_group(query, callback_data, actor, repo)
        if group is None:
            return
        token = await dialogs.begin(state, GroupForm.title, group_id=group.id)
        prompt = _("Send the new name for «{title}» (/cancel to keep it).").format(title=q(group.title))
    else:
        if not actor.is_admin:
            await query.answer(rights.REFUSED + _("Only administrators can change groups."), show_alert=True)
            return
        token = await dialogs.begin(state, GroupForm.title, group_id=None)
        prompt = _("Send the name of the new group, for example «Солнышко» or «5А» (/cancel to stop).")
    await query.answer()
    await query.message.answer(prompt, reply_markup=dialogs.stamp(dialogs.cancel_markup(), token))  # type: ignore[union-attr]


async def got_title(message: Message, state: FSMContext, actor: Actor, repo: Repo) -> None:
    if not actor.is_admin or actor.org is None:
        await state.clear()
        await message.answer(rights.REFUSED + _("Only administrators can change groups."))
        return
    title = clean_name(message.text, TITLE_MAX)
    if title is None:
        await message.answer(_("A group's name is 2 to 64 characters with at least one letter. Try again."))
        return
    group_id = (await state.get_data()).get("group_id")
    if await repo.group_title_taken(actor.org.id, title, except_id=group_id):
        await message.answer(_("There is already a group «{title}». Send another name.").format(title=q(title)))
        return
    await state.clear()
    if group_id is None:
        group = await repo.add_group(actor.org.id, title)
        repo.audit(actor.org.id, actor.person.id, "group.create", subject=f"group:{group.id}", detail=title)
        await message.answer(
            _("✅ Group «{title}» is created. Invite its teachers and families with /invite.").format(
                title=q(title)
            )
        )
        return
    group = await repo.group(actor.org.id, group_id)
    if group is None or group.archived_at is not None:
        await message.answer(_("This group no longer exists."))
        return
    old = group.title
    group.title = title
    repo.audit(actor.org.id, actor.person.id, "group.rename", subject=f"group:{group.id}", detail=f"{old} → {title}")
    await message.answer(_("✅ «{old}» is now called «{title}».").format(old=q(old), title=q(title)))


async def ask_archive(query: CallbackQuery, callback_data: GroupCb, actor: Actor, repo: Repo) -> None:
    group = await _admin_group(query, callback_data, actor, repo)
    if group is None:
        return
    if group.kind == GroupKind.STAFF:
        await query.answer(_("The staff room cannot be archived."), show_alert=True)
        return
    await query.answer()
    await query.message.edit_text(  # type: ignore[union-attr]
        _(
            "Archive «{title}»? Its members stop getting its messages and its invitations stop "
            "working. The history is kept."
        ).format(title=q(group.title)),
        reply_markup=confirm_keyboard(
            GroupCb(action="archive_yes", group_id=group.id),
            GroupCb(action="open", group_id=group.id),
            yes_text=_("🗄 Archive"),
        ),
    )


async def archive(query: CallbackQuery, callback_data: GroupCb, actor: Actor, repo: Repo) -> None:
    group = await _admin_group(query, callback_data, actor, repo)
    if group is None:
        return
    if group.kind == GroupKind.STAFF:
        await query.answer(_("The staff room cannot be archived."), show_alert=True)
        return
    group.archived_at = utcnow()
    repo.audit(actor.org.id, actor.person.id, "group.archive", subject=f"group:{group.id}", detail=group.title)  # type: ignore[union-attr]
    await query.answer(_("Archived."))
    await query.message.edit_text(_("🗄 «{title}» is archived.").format(title=q(group.title)))  # type: ignore[union-attr]
