"""Each person's command menu: exactly what their roles allow, in their language.

Set with setMyCommands for the person's private chat; changed whenever their
roles or language change (through the outbox, like any call about a person).
"""

from __future__ import annotations

from aiogram.methods import SetMyCommands
from aiogram.types import BotCommand, BotCommandScopeChat, BotCommandScopeDefault
from aiogram.utils.i18n import gettext as _

from bot.actor import Actor
from bot.i18n import in_locale
from bot.outbox import enqueue
from storage.models import Person, Role
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
        "mydata": _("Everything the bot keeps about me"),
        "forget": _("Delete my data"),
    }


BASE = ("start", "join", "help", "language", "cancel")
MEMBER = ("schedule", "events", "write", "settings")
PARENT = ("absent",)
STAFF = ("post", "scheduled", "absences", "invite", "invites", "requests", "groups", "members", "import", "families")
HEAD = ("post", "scheduled", "absences", "groups", "members", "families", "stats")
ADMIN_ONLY = ("stats", "audit")
PRIVACY = ("mydata", "forget")


def command_names(actor: Actor) -> list[str]:
    names: list[str] = list(BASE)
    if actor.is_member and not actor.awaiting_verification:
        names += MEMBER
    if Role.PARENT in actor.roles:
        names += PARENT
    if actor.is_admin or actor.teaching_group_ids():
        names += STAFF
    elif actor.is_head:
        names += HEAD
    if actor.is_admin:
        names += ADMIN_ONLY
    if actor.can_switch_org:
        names.append("org")
    return names + list(PRIVACY)


def commands_for(actor: Actor) -> list[BotCommand]:
    """In the current locale."""
    texts = _descriptions()
    return [BotCommand(command=name, description=texts[name]) for name in command_names(actor)]


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
        methods.append(
            SetMyCommands(
                commands=commands,
                scope=BotCommandScopeDefault(),
                language_code=None if locale == default_locale else locale,
            )
        )
    return methods


def person_locale(person: Person | None, default_locale: str) -> str:
    return (person.locale if person is not None else None) or default_locale
