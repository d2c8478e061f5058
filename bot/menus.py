"""Each person's command menu: exactly what their roles allow, in their language.

Set with setMyCommands for the person's private chat; changed whenever their
roles or language change (through the outbox, like any call about a person).
"""

from __future__ import annotations

from aiogram.methods import SetMyCommands
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllChatAdministrators,
    BotCommandScopeChat,
    BotCommandScopeDefault,
)
from aiogram.utils.i18n import gettext as _

from bot import rights
from bot.actor import Actor
from bot.i18n import in_locale
from bot.outbox import enqueue
from storage.models import Person
from storage.repo import Repo


def _descriptions() -> dict[str, str]:
    return {
        "start": _("Start: what I can do here"),
        "join": _("Join with an invitation code"),
        "help": _("Help on my commands"),
        "language": _("Language / Язык"),
        "cancel": _("Cancel the current action"),
        "groups": _("Groups"),
        "members": _("Members of a group"),
        "invite": _("Create an invitation"),
        "invites": _("My invitations"),
        "requests": _("Join requests waiting for a decision"),
        "post": _("Post to families or staff"),
        "schedule": _("The schedule of my groups"),
        "events": _("Upcoming events, for the calendar"),
        "scheduled": _("My posts scheduled for later"),
        "settings": _("Settings: notifications, quiet hours"),
        "absent": _("Tell the teachers a child will not come"),
        "absences": _("Who is absent today"),
        "write": _("Write to a teacher or the administration"),
        "stats": _("Statistics: do messages reach families"),
        "import": _("Import a class list or a staff list"),
        "families": _("Who is missing: families joined per class, slips"),
        "audit": _("What administrators did"),
        "org": _("Organisations: choose, or add one"),
        "link": _("Tie this chat to a class (chat administrators)"),
        "unlink": _("Untie this chat from its class"),
        "mydata": _("Everything the bot keeps about me"),
        "forget": _("Delete my data"),
    }


BASE = tuple(c.name for c in rights.COMMANDS if c.cap == rights.Cap.EVERYONE)


def command_names(actor: Actor) -> list[str]:
    """Exactly the commands the rights table lets this person use (the gate asks the same table)."""
    return [c.name for c in rights.commands(actor)]


def sections(actor: Actor) -> list[tuple[rights.Section, list[str]]]:
    """The person's commands grouped by what they are for (/help)."""
    out: dict[rights.Section, list[str]] = {}
    for c in rights.commands(actor):
        out.setdefault(c.section, []).append(c.name)
    return list(out.items())


def section_titles() -> dict[rights.Section, str]:
    return {
        rights.Section.START: _("Getting in"),
        rights.Section.EVERYDAY: _("Every day"),
        rights.Section.FAMILY: _("For families"),
        rights.Section.TEACHING: _("Teaching and posting"),
        rights.Section.ADMINISTRATION: _("Administration"),
        rights.Section.ACCOUNT: _("Your account"),
    }


def commands_for(actor: Actor) -> list[BotCommand]:
    """In the current locale."""
    texts = _descriptions()
    return [BotCommand(command=name, description=texts[name]) for name in command_names(actor)]


def section_commands(actor: Actor, section: rights.Section) -> list[BotCommand]:
    """The person's commands of one section, in the current locale (what a newly
    verified teacher may now do: the table decides, as for the menu)."""
    return [c for c in commands_for(actor) if rights.BY_NAME[c.command].section == section]


async def enqueue_menu(repo: Repo, actor: Actor) -> None:
    """Sets the person's menu after the update commits; an older pending one is dropped."""
    await repo.cancel_pending_deliveries("menu", actor.person.id)
    with in_locale(actor.locale):
        commands = commands_for(actor)
    chat_id = actor.person.telegram_id
    enqueue(
        repo,
        chat_id,
        SetMyCommands(commands=commands, scope=BotCommandScopeChat(chat_id=chat_id)),
        org_id=actor.org.id if actor.org else None,
        topic="menu",
        ref_id=actor.person.id,
    )


def default_menus(locales: tuple[str, ...], default_locale: str) -> list[SetMyCommands]:
    """The menu of people the bot does not know yet, per language."""
    methods = []
    for locale in locales:
        with in_locale(locale):
            texts = _descriptions()
            commands = [BotCommand(command=n, description=texts[n]) for n in BASE]
            chat_commands = [BotCommand(command=c.name, description=texts[c.name]) for c in rights.CHAT_COMMANDS]
        language_code = None if locale == default_locale else locale
        methods.append(
            SetMyCommands(commands=commands, scope=BotCommandScopeDefault(), language_code=language_code)
        )
        # Group chats: the chat's administrators see /link and /unlink.
        methods.append(SetMyCommands(
            commands=chat_commands, scope=BotCommandScopeAllChatAdministrators(), language_code=language_code
        ))
    return methods


def person_locale(person: Person | None, default_locale: str) -> str:
    return (person.locale if person is not None else None) or default_locale
