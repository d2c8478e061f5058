"""Gated group chats: a Telegram group where the bot is an admin is linked to
a class or the staff room with /link; its join-request link lets in only
active members of that group and declines everyone else (telling them why in
private when Telegram allows it). /unlink undoes it. A group upgraded to a
supergroup keeps its link; a bot removed from the chat forgets it."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import async_sessionmaker
from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, ChatJoinRequest, ChatMemberUpdated, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot import rights
from bot.actor import Actor
from bot.replies import after_commit_do, unit_of_work
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


async def _sender_administers(bot: Bot, chat_id: int, user_id: int) -> bool:
    """Telegram says the sender is the chat's creator or one of its administrators."""
    try:
        member = await bot.get_chat_member(chat_id, user_id)
    except TelegramAPIError:
        return False
    return member.status in ("creator", "administrator")


async def link_command(message: Message, actor: Actor, repo: Repo, bot: Bot) -> None:
    # The rights table's LINK_CHAT (admins, a class's verified teacher) was checked by the gate.
    if await repo.linked_chat(message.chat.id) is not None:
        await message.answer(_("This chat is already linked. /unlink first to link it elsewhere."))
        return
    allowed = linkable_groups_filter(actor)
    kb = InlineKeyboardBuilder()
    for group in await repo.groups(actor.org.id):  # type: ignore[union-attr]
        if allowed(group):
            kb.button(text=group_title(group), callback_data=ChatCb(action="link", group_id=group.id))
    kb.adjust(2)
    markup = kb.as_markup()
    sender = message.from_user.id if message.from_user else 0
    texts = {
        "not_admin": rights.REFUSED + _("Only an administrator of this Telegram chat can link it. Ask its owner to make you one."),
        "bot_rights": _("Make me an administrator of this chat with the right to invite users, then send /link again."),
        "choose": _("Which group is this chat for?"),
    }

    async def ask_telegram() -> None:
        # Telegram's answers are needed: asked after the commit, outside any transaction.
        if not await _sender_administers(bot, message.chat.id, sender):
            await message.answer(texts["not_admin"])
        elif not await _bot_can_invite(bot, message.chat.id):
            await message.answer(texts["bot_rights"])
        else:
            await message.answer(texts["choose"], reply_markup=markup)

    after_commit_do(ask_telegram)


async def link(query: CallbackQuery, callback_data: ChatCb, actor: Actor, repo: Repo, bot: Bot,
               session_maker: async_sessionmaker) -> None:
    message = query.message
    if not isinstance(message, Message) or message.chat.type not in ("group", "supergroup"):
        await query.answer(_("This button works only in a group chat."), show_alert=True)
        return
    group = await repo.group(actor.org.id, callback_data.group_id) if actor.org else None
    if group is None or group.archived_at is not None or not linkable_groups_filter(actor)(group):
        await query.answer(rights.REFUSED + _("Only administrators and the class's verified teacher can link this chat."),
                           show_alert=True)
        return
    if await repo.linked_chat(message.chat.id) is not None:
        await query.answer(_("This chat is already linked. /unlink first to link it elsewhere."), show_alert=True)
        return
    chat_id, chat_title, person_id = message.chat.id, message.chat.title or "", actor.person.id
    group_id, org_id, title = group.id, group.org_id, group.title
    texts = {
        "not_admin": rights.REFUSED + _("Only an administrator of this Telegram chat can link it. Ask its owner to make you one."),
        "bot_rights": _("Make me an administrator of this chat with the right to invite users, then send /link again."),
        "taken": _("This chat is already linked. /unlink first to link it elsewhere."),
        "done": _("🔗 This chat now belongs to {group}. Share this link: {link}\nI let in only members of {group}; "
                  "everyone else is declined."),
    }
    async def make_link() -> None:
        # Decided when it takes effect: the presser administers the chat now.
        if not await _sender_administers(bot, chat_id, query.from_user.id):
            await query.answer(texts["not_admin"], show_alert=True)
            return
        if not await _bot_can_invite(bot, chat_id):
            await query.answer(texts["bot_rights"], show_alert=True)
            return
        await query.answer()
        invite = await bot.create_chat_invite_link(chat_id, name=title[:32], creates_join_request=True)
        async with unit_of_work(session_maker, bot) as repo2:
            if await repo2.linked_chat(chat_id) is not None:
                taken = True
            else:
                taken = False
                repo2.session.add(LinkedChat(org_id=org_id, group_id=group_id, chat_id=chat_id, title=chat_title,
                                             invite_link=invite.invite_link, linked_by_id=person_id))
                repo2.audit(org_id, person_id, "chat.link", subject=f"group:{group_id}", detail=chat_title)
        if taken:
            await bot.revoke_chat_invite_link(chat_id, invite.invite_link)
            await message.edit_text(texts["taken"])
        else:
            await message.edit_text(texts["done"].format(group=q(title), link=invite.invite_link))

    after_commit_do(make_link)


async def unlink_command(message: Message, actor: Actor, repo: Repo, bot: Bot) -> None:
    linked = await repo.linked_chat(message.chat.id)
    if linked is None:
        await message.answer(_("This chat is not linked."))
        return
    group = await repo.group(linked.org_id, linked.group_id)
    if group is None or actor.org is None or actor.org.id != linked.org_id or not linkable_groups_filter(actor)(group):
        await message.answer(rights.REFUSED + _("Only administrators and the class's verified teacher can unlink this chat."))
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

