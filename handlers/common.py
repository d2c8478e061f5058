"""/start without a code, /help, /language and /cancel: for everyone, in any state."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandStart, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _

from bot import dialogs
from bot.actor import Actor
from bot.i18n import in_locale
from bot.menus import commands_for, enqueue_menu, section_titles, sections
from bot.settings import Settings
from handlers.keyboards import AskCb, LangCb, group_title, language_keyboard, single_button
from handlers.setup import SetupForm
from handlers.texts import q, role_name
from storage.models import Group, MemberState, Role
from storage.repo import Repo


def create_router() -> Router:
    router = Router(name="common")
    router.message.register(cancel, Command("cancel"), StateFilter("*"))
    router.message.register(start, CommandStart())
    router.message.register(help_command, Command("help"))
    router.message.register(language, Command("language"))
    router.callback_query.register(set_language, LangCb.filter())
    return router


async def cancel(message: Message, state: FSMContext) -> None:
    if await state.get_state() is None:
        await message.answer(_("There is nothing to cancel."))
        return
    await state.clear()
    await message.answer(_("Cancelled. Nothing was changed."))


ORG_ROLES = (Role.ADMIN, Role.HEAD)  # held through the staff room, but roles of the whole organisation


def memberships_text(actor: Actor) -> str:
    """Who the person is here: the organisation's roles as sentences, then their
    groups, each with the roles they hold in it (an administrator's seat in the
    staff room is a group, "administrator" is not)."""
    head = []
    if any(m.role == Role.ADMIN for m in actor.active()):
        head.append(_("You are an administrator of the organisation."))
    elif actor.is_config_admin:
        head.append(_("You are an administrator of the platform."))
    if actor.is_head:
        head.append(_("You are the head of the organisation."))
    groups: dict[int, tuple[Group, list[str]]] = {}
    for m in sorted(actor.memberships, key=lambda m: (m.group.kind != "staff", m.group.title)):
        roles = groups.setdefault(m.group_id, (m.group, []))[1]
        if m.role in ORG_ROLES:
            continue
        role = role_name(m.role)
        if m.state == MemberState.UNVERIFIED:
            role += " " + _("(waiting for verification)")
        roles.append(role)
    lines = [
        f"• {q(group_title(group))}" + (f" — {', '.join(roles)}" if roles else "")
        for group, roles in groups.values()
    ]
    parts = [" ".join(head)] if head else []
    if lines:
        parts.append(_("You are in:") + "\n" + "\n".join(lines))
    return "\n".join(parts)


async def start(
    message: Message, state: FSMContext, actor: Actor, repo: Repo, settings: Settings, new_person: bool = False
) -> None:
    await state.clear()
    if new_person:
        await enqueue_menu(repo, actor)
    org = actor.addressed_org
    if org is None:
        if actor.is_config_admin:
            token = await dialogs.begin(state, SetupForm.name)
            await message.answer(
                _(
                    "Hello! Let us set up your organisation — it takes four short steps, "
                    "/cancel stops at any time.\n\n<b>1/4.</b> What is the organisation called? "
                    "For example: Детский сад № 1 «Солнышко»"
                ),
                reply_markup=dialogs.stamp(dialogs.cancel_markup(), token),
            )
        else:
            await message.answer(
                _(
                    "This bot is not set up yet. Please ask your kindergarten's or school's administration.\n\n"
                    "If you are the one running it: add your Telegram id <code>{id}</code> to ADMIN_IDS "
                    "and restart the bot."
                ).format(id=actor.person.telegram_id)
            )
        return
    if actor.is_member:
        text = _("Hello, {name}! This is {org}.").format(
            name=q(actor.person.display_name), org=q(actor.org.name)
        )
        text += "\n\n" + memberships_text(actor)
        if actor.awaiting_verification:
            text += "\n\n" + _(
                "An administrator has to verify you as a teacher before you can post or invite. "
                "You will get a message here."
            )
        if len(actor.org_ids - {actor.org.id}) > 0:
            text += "\n\n" + _("You belong to other organisations too: /org switches between them.")
        text += "\n\n" + _("Your commands: /help")
        await message.answer(text)
        return
    pending = await repo.pending_requests(org.id, person_id=actor.person.id)
    text = _(
        "Hello! This is {org} — a closed space for its staff and families.\n\n"
        "To join, open the invitation link you were given, or send <code>/join CODE</code>.\n"
        "No code? Ask to join, and the administration will decide."
    ).format(org=q(org.name))
    if pending:
        text += "\n\n" + _("Your request to join {group} is waiting for a decision.").format(
            group=q(pending[0].group.title)
        )
    if len(await repo.organisations()) > 1:
        text += "\n\n" + _("This bot serves several organisations: /org to choose another one.")
    await message.answer(text, reply_markup=single_button(_("🙋 Ask to join"), AskCb(action="start")))


async def help_command(message: Message, actor: Actor) -> None:
    texts = {c.command: c.description for c in commands_for(actor)}
    titles = section_titles()
    lines = [_("<b>What you can do here</b>")]
    for section, names in sections(actor):
        lines.append("")
        lines.append(f"<b>{titles[section]}</b>")
        lines += [f"/{name} — {texts[name]}" for name in names]
    if actor.awaiting_verification:
        lines.append("")
        lines.append(_("You are waiting for an administrator to verify you as a teacher."))
    if actor.org is not None and actor.org.support_contact:
        lines.append("")
        lines.append(_("Support: {contact}").format(contact=q(actor.org.support_contact)))
    await message.answer("\n".join(lines))


async def language(message: Message) -> None:
    await message.answer(_("Choose the language / Выберите язык:"), reply_markup=language_keyboard())


async def set_language(query: CallbackQuery, callback_data: LangCb, actor: Actor, repo: Repo, settings: Settings) -> None:
    if callback_data.locale not in ("ru", "en"):
        await query.answer(_("This language is not available."), show_alert=True)
        return
    actor.person.locale = callback_data.locale
    actor.locale = callback_data.locale
    await enqueue_menu(repo, actor)
    with in_locale(callback_data.locale):
        await query.answer()
        if isinstance(query.message, Message):
            await query.message.edit_text(_("Language: English. Your menu is updated."))
