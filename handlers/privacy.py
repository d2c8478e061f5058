"""/mydata sends a person everything the bot holds about them as JSON;
/forget deletes it after a confirmation. What they wrote for others (posts)
stays, without their name. The last administrator cannot forget themselves."""

from __future__ import annotations

import json

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.methods import DeleteMyCommands
from aiogram.types import BotCommandScopeChat, BufferedInputFile, CallbackQuery, Message
from aiogram.utils.i18n import gettext as _

from bot.actor import Actor
from bot.outbox import enqueue
from bot.settings import Settings
from handlers.filters import PRIVATE
from handlers.keyboards import confirm_keyboard
from handlers.staff import kick_from_chats
from storage.models import person_key, MemberState, Role
from storage.repo import Repo


class ForgetCb(CallbackData, prefix="fg"):
    action: str  # yes | no


def create_router() -> Router:
    router = Router(name="privacy")
    router.message.register(mydata_command, Command("mydata"), PRIVATE)
    router.message.register(forget_command, Command("forget"), PRIVATE)
    router.callback_query.register(forget, ForgetCb.filter(F.action == "yes"))
    router.callback_query.register(keep, ForgetCb.filter(F.action == "no"))
    return router


async def mydata_command(message: Message, actor: Actor, repo: Repo) -> None:
    data = await repo.export_person(actor.person.id)
    data["after_forget"] = _(
        "If you delete your data with /forget, one thing is kept: where someone blocked your messages, a keyed "
        "fingerprint of your Telegram id (not the id itself), so that the block still holds if you come back."
    )
    payload = json.dumps(data, ensure_ascii=False, indent=2, default=str).encode("utf-8")
    await message.answer_document(
        BufferedInputFile(payload, filename="parta-my-data.json"),
        caption=_("Everything this bot keeps about you. /forget deletes it."),
    )


async def _last_admin(actor: Actor, repo: Repo, settings: Settings) -> bool:
    """The only administrator of any of their organisations (not only the one they act in)."""
    if settings.admin_ids - {actor.person.telegram_id}:
        return False  # the platform's administrators remain
    admin_of = {m.org_id for m in Actor.live(actor.person) if m.role == Role.ADMIN and m.state == MemberState.ACTIVE}
    for org_id in admin_of:
        if not [p for p in await repo.people_in_role(org_id, [Role.ADMIN]) if p.id != actor.person.id]:
            return True
    return False


async def forget_command(message: Message, actor: Actor, repo: Repo, settings: Settings) -> None:
    if await _last_admin(actor, repo, settings):
        await message.answer(_("You are the last administrator: appoint another one first (/members), then /forget."))
        return
    await message.answer(
        _(
            "Delete everything this bot keeps about you: your name, memberships, your children's links, "
            "votes, acknowledgements and requests? Posts you wrote stay for their readers, without your name. "
            "This cannot be undone."
        ),
        reply_markup=confirm_keyboard(ForgetCb(action="yes"), ForgetCb(action="no"), yes_text=_("🗑 Delete my data")),
    )


async def forget(query: CallbackQuery, state: FSMContext, actor: Actor, repo: Repo, settings: Settings) -> None:
    # Two admins deleting themselves at the same moment: one after the other, so
    # the second sees the first gone and stays the last admin.
    await repo.lock_organisations(m.org_id for m in Actor.live(actor.person) if m.role == Role.ADMIN)
    if await _last_admin(actor, repo, settings):
        await query.answer(_("You are the last administrator: appoint another one first (/members), then /forget."),
                           show_alert=True)
        return
    chat_id = actor.person.telegram_id
    org_id = actor.org.id if actor.org else None
    # Out of the group chats tied to their groups, while their Telegram id is still known.
    for chat in await repo.linked_chats_of({m.group_id for m in Actor.live(actor.person)}):
        kick_from_chats(repo, [chat], actor.person, chat.org_id)
    await repo.forget_person(actor.person, person_key(chat_id, settings.bot_token.get_secret_value()))
    if org_id is not None:
        repo.audit(org_id, None, "person.forget", subject=f"person:{actor.person.id}")
    await state.clear()
    # The menu goes back to a newcomer's.
    enqueue(repo, chat_id, DeleteMyCommands(scope=BotCommandScopeChat(chat_id=chat_id)), org_id=org_id, topic="menu")
    await query.answer()
    await query.message.edit_text(_("🗑 Done: your data is deleted. Send /start if you ever come back."))  # type: ignore[union-attr]


async def keep(query: CallbackQuery) -> None:
    await query.answer()
    await query.message.edit_text(_("Cancelled. Nothing was changed."))  # type: ignore[union-attr]
