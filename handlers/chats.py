"""Gated group chats: a Telegram group where the bot is an admin is linked to
a class or the staff room with /link; its join-request link lets in only
active members of that group and declines everyone else (telling them why in
private when Telegram allows it). /unlink undoes it. A group upgraded to a
supergroup keeps its link; a bot removed from the chat forgets it."""

from __future__ import annotations

import logging

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, ChatJoinRequest, ChatMemberUpdated, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.actor import Actor
from handlers.filters import GROUP_CHATS, Migrated
from handlers.keyboards import group_title
from handlers.texts import q
from storage.models import DbInt, GroupKind, LinkedChat, MemberState
from storage.repo import Repo

log = logging.getLogger("parta.chats")


class ChatCb(CallbackData, prefix="ch"):
    action: str  # link
    group_id: DbInt


def create_router() -> Router:
    router = Router(name="chats")
    router.message.register(link_command, Command("link"), GROUP_CHATS)
    router.message.register(unlink_command, Command("unlink"), GROUP_CHATS)
    router.message.register(in_private, Command("link", "unlink"))
    router.callback_query.register(link, ChatCb.filter(F.action == "link"))
    router.chat_join_request.register(join_request)
    router.message.register(migrated, Migrated())
    router.my_chat_member.register(bot_membership)
    return router


def linkable_groups_filter(actor: Actor):  # type: ignore[no-untyped-def]
    """Admins link any group; a verified teacher only their own classes."""
    def allowed(group) -> bool:  # type: ignore[no-untyped-def]
        if actor.is_admin:
            return True
        return group.kind == GroupKind.CLASS and group.id in actor.teaching_group_ids()
    return allowed


async def in_private(message: Message) -> None:
    await message.answer(_("Send /link in the Telegram group you want to tie to a class, after adding me there as an administrator."))


async def _bot_can_invite(bot: Bot, chat_id: int) -> bool:
    try:
        member = await bot.get_chat_member(chat_id, bot.id)
    except TelegramAPIError:
        return False
    return member.status == "creator" or (member.status == "administrator" and bool(getattr(member, "can_invite_users", False)))


async def link_command(message: Message, actor: Actor, repo: Repo, bot: Bot) -> None:
    if actor.org is None or not (actor.is_admin or actor.teaching_group_ids()):
        await message.answer(_("Only administrators and the class's verified teacher can link this chat."))
        return
    if await repo.linked_chat(message.chat.id) is not None:
        await message.answer(_("This chat is already linked. /unlink first to link it elsewhere."))
        return
    if not await _bot_can_invite(bot, message.chat.id):
        await message.answer(_("Make me an administrator of this chat with the right to invite users, then send /link again."))
        return
    allowed = linkable_groups_filter(actor)
    kb = InlineKeyboardBuilder()
    for group in await repo.groups(actor.org.id):
        if allowed(group):
            kb.button(text=group_title(group), callback_data=ChatCb(action="link", group_id=group.id))
    kb.adjust(2)
    await message.answer(_("Which group is this chat for?"), reply_markup=kb.as_markup())


async def link(query: CallbackQuery, callback_data: ChatCb, actor: Actor, repo: Repo, bot: Bot) -> None:
    message = query.message
    if not isinstance(message, Message) or message.chat.type not in ("group", "supergroup"):
        await query.answer(_("This button works only in a group chat."), show_alert=True)
        return
    group = await repo.group(actor.org.id, callback_data.group_id) if actor.org else None
    if group is None or group.archived_at is not None or not linkable_groups_filter(actor)(group):
        await query.answer(_("Only administrators and the class's verified teacher can link this chat."), show_alert=True)
        return
    if await repo.linked_chat(message.chat.id) is not None:
        await query.answer(_("This chat is already linked. /unlink first to link it elsewhere."), show_alert=True)
        return
    invite = await bot.create_chat_invite_link(message.chat.id, name=group.title[:32], creates_join_request=True)
    repo.session.add(LinkedChat(org_id=group.org_id, group_id=group.id, chat_id=message.chat.id,
                                title=message.chat.title or "", invite_link=invite.invite_link, linked_by_id=actor.person.id))
    repo.audit(group.org_id, actor.person.id, "chat.link", subject=f"group:{group.id}", detail=message.chat.title)
    await query.answer()
    await message.edit_text(
        _("🔗 This chat now belongs to {group}. Share this link: {link}\nI let in only members of {group}; "
          "everyone else is declined.").format(group=q(group.title), link=invite.invite_link)
    )


async def unlink_command(message: Message, actor: Actor, repo: Repo, bot: Bot) -> None:
    linked = await repo.linked_chat(message.chat.id)
    if linked is None:
        await message.answer(_("This chat is not linked."))
        return
    group = await repo.group(linked.org_id, linked.group_id)
    if group is None or actor.org is None or actor.org.id != linked.org_id or not linkable_groups_filter(actor)(group):
        await message.answer(_("Only administrators and the class's verified teacher can unlink this chat."))
        return
    if linked.invite_link:
        try:
            await bot.revoke_chat_invite_link(message.chat.id, linked.invite_link)
        except TelegramAPIError as e:  # the link may be gone already; the unlink still holds
            log.info("could not revoke the invite link of chat %s: %s", message.chat.id, e)
    await repo.session.delete(linked)
    repo.audit(linked.org_id, actor.person.id, "chat.unlink", subject=f"group:{linked.group_id}", detail=linked.title)
    await message.answer(_("Unlinked: the invite link no longer works."))


async def join_request(request: ChatJoinRequest, repo: Repo, bot: Bot, actor: Actor | None = None) -> None:
    linked = await repo.linked_chat(request.chat.id)
    if linked is None:
        return  # not ours to decide
    # Any organisation of theirs, not only the one they act in now.
    member = actor is not None and any(
        m.group_id == linked.group_id and m.state == MemberState.ACTIVE for m in Actor.live(actor.person)
    )
    if member:
        await bot.approve_chat_join_request(request.chat.id, request.from_user.id)
        return
    await bot.decline_chat_join_request(request.chat.id, request.from_user.id)
    try:
        await bot.send_message(
            request.user_chat_id,
            _("I could not let you into «{chat}»: it is only for members of its group. "
              "Join the group with an invitation first (/start), then ask again.").format(chat=q(request.chat.title or "")),
        )
    except TelegramAPIError:
        pass  # Telegram does not always let a bot write first; the decline stands


async def migrated(message: Message, repo: Repo) -> None:
    """A group became a supergroup: its link follows the new chat id."""
    linked = await repo.linked_chat(message.chat.id)
    if linked is not None and message.migrate_to_chat_id:
        linked.chat_id = message.migrate_to_chat_id
        log.info("linked chat %s moved to %s", message.chat.id, message.migrate_to_chat_id)


async def bot_membership(event: ChatMemberUpdated, repo: Repo) -> None:
    if event.chat.type not in ("group", "supergroup"):
        return
    if event.new_chat_member.status in ("left", "kicked"):
        linked = await repo.linked_chat(event.chat.id)
        if linked is not None:
            await repo.session.delete(linked)
            repo.audit(linked.org_id, None, "chat.lost", subject=f"group:{linked.group_id}", detail=linked.title)

