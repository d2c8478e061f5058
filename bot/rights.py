"""Rights: the one table that decides what a person may do.

A capability is a function of the person's *live* memberships in the
organisation they act in (removed members and archived groups count for
nothing; a person with no live membership acts in no organisation, the
platform's `ADMIN_IDS` aside). Every question about a right — a command, a
button, a menu entry, an action the scheduler takes later, a delivery to a
person — is answered here, and nowhere else:

- `scope(actor, cap)`: where the person holds the capability — nowhere, in
  some groups, or in the whole organisation;
- `can(actor, cap, group_id=None)`: holds it (in that group);
- `COMMANDS`: each command and the capability it needs (the menus, /help and
  the command gate in `bot/gates.py` are generated from it);
- `BUTTONS`: each kind of inline button (its CallbackData prefix) and the
  capability it needs (the button gate refuses a forged press before any
  handler sees it; handlers check the object the button names with `can`).

Changing one right is one edit in `RULES` plus its row in the tests'
capability matrix (tests/test_rights_matrix.py iterates these tables).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiogram.utils.i18n import gettext as _

from storage.models import FAMILY_ROLES, VERIFIED_ROLES, GroupKind, MemberState, OrgKind, Role

if TYPE_CHECKING:
    from bot.actor import Actor
    from storage.models import Group, Invitation, JoinRequest, Person, Post


class Cap(str, enum.Enum):
    """What a person may do. The value names it in logs and tests."""

    EVERYONE = "everyone"  # /start, /join, /help, /language, /cancel, /mydata, /forget
    MEMBER = "member"  # a live, verified membership: /schedule, /events, /write, /settings
    RECEIVE = "receive"  # posts, reminders and cards may still reach the person
    RESPOND = "respond"  # acknowledge a post, vote in a poll
    ABSENT = "absent"  # tell the teachers a child will not come
    VIEW_GROUPS = "view_groups"
    MANAGE_GROUPS = "manage_groups"
    VIEW_MEMBERS = "view_members"
    MANAGE_MEMBERS = "manage_members"  # rename, remove, move pupils, appoint admins, blocks
    INVITE = "invite"  # create invitations (which roles: `invitable_roles`)
    DECIDE_REQUESTS = "decide_requests"  # which requests: `can_decide`
    VERIFY_STAFF = "verify_staff"
    POST = "post"  # to the groups of the scope
    POST_WIDE = "post_wide"  # the whole organisation, all staff, all parents
    MANAGE_WEEKLY = "manage_weekly"
    SEE_ABSENCES = "see_absences"
    ANSWER_MESSAGES = "answer_messages"  # receives /write, has office hours
    ORG_SETTINGS = "org_settings"  # quiet hours, cut-off, retention
    STATS = "stats"
    AUDIT = "audit"
    SWITCH_ORG = "switch_org"
    LINK_CHAT = "link_chat"


@dataclass(frozen=True)
class Scope:
    """Where a capability holds: the whole organisation, or some groups."""

    everywhere: bool = False
    groups: frozenset[int] = frozenset()

    def __bool__(self) -> bool:
        return self.everywhere or bool(self.groups)

    def __contains__(self, group_id: object) -> bool:
        return self.everywhere or group_id in self.groups

    def only(self, group_ids: Iterable[int]) -> list[int]:
        return [g for g in group_ids if g in self]


NOWHERE = Scope()
EVERYWHERE = Scope(everywhere=True)


def _groups(ids: Iterable[int]) -> Scope:
    ids = frozenset(ids)
    return Scope(groups=ids) if ids else NOWHERE


# -- facts about the person, from their live memberships ----------------------------


def _active(actor: Actor):  # type: ignore[no-untyped-def]
    return [m for m in actor.memberships if m.state == MemberState.ACTIVE]


def is_admin(actor: Actor) -> bool:
    if actor.org is None:
        return False
    return actor.is_config_admin or any(m.role == Role.ADMIN for m in _active(actor))


def is_head(actor: Actor) -> bool:
    return any(m.role == Role.HEAD for m in _active(actor))


def teaching_groups(actor: Actor) -> frozenset[int]:
    """Groups (the staff room included) where the person is a verified teacher or specialist."""
    return frozenset(m.group_id for m in _active(actor) if m.role in VERIFIED_ROLES)


def teaching_classes(actor: Actor) -> frozenset[int]:
    """Classes where the person is a verified teacher or specialist."""
    return frozenset(
        m.group_id for m in _active(actor) if m.role in VERIFIED_ROLES and m.group.kind == GroupKind.CLASS
    )


def member_classes(actor: Actor) -> frozenset[int]:
    """Classes the person belongs to with a live, verified membership."""
    return frozenset(m.group_id for m in _active(actor) if m.group.kind == GroupKind.CLASS)


def awaiting_verification(actor: Actor) -> bool:
    """Joined as teacher or specialist and no admin has confirmed it yet."""
    return any(
        m.state == MemberState.UNVERIFIED and m.role in VERIFIED_ROLES for m in actor.memberships
    ) and not teaching_groups(actor)


def is_member(actor: Actor) -> bool:
    """A live membership in the organisation, verified or still waiting (or an admin of it)."""
    return bool(actor.memberships) or is_admin(actor)


def _staff(actor: Actor) -> bool:
    return is_admin(actor) or is_head(actor)


# -- the table ---------------------------------------------------------------------------

Rule = Callable[["Actor"], Scope]


def _everyone(actor: Actor) -> Scope:
    return EVERYWHERE


def _member(actor: Actor) -> Scope:
    if actor.org is None:
        return NOWHERE
    if _staff(actor):
        return EVERYWHERE
    return _groups(m.group_id for m in _active(actor))


def _parent(actor: Actor) -> Scope:
    if actor.org is None:
        return NOWHERE
    return _groups(m.group_id for m in _active(actor) if m.role == Role.PARENT and m.group.kind == GroupKind.CLASS)


def _admin(actor: Actor) -> Scope:
    return EVERYWHERE if is_admin(actor) else NOWHERE


def _admin_or_head(actor: Actor) -> Scope:
    return EVERYWHERE if _staff(actor) else NOWHERE


def _admin_or_teacher(actor: Actor) -> Scope:
    """Admins everywhere; a verified teacher or specialist in their own classes."""
    if actor.org is None:
        return NOWHERE
    return EVERYWHERE if is_admin(actor) else _groups(teaching_classes(actor))


def _staff_or_teacher(actor: Actor) -> Scope:
    """Admins and the head everywhere; a verified teacher or specialist in their own classes."""
    if actor.org is None:
        return NOWHERE
    return EVERYWHERE if _staff(actor) else _groups(teaching_classes(actor))


def _view_groups(actor: Actor) -> Scope:
    return _member(actor)


def _switch_org(actor: Actor) -> Scope:
    """/org: the platform's administrators (who also add organisations), people
    in several organisations, and newcomers choosing where to ask to join."""
    return EVERYWHERE if actor.is_config_admin or len(actor.org_ids) != 1 else NOWHERE


RULES: dict[Cap, Rule] = {
    Cap.EVERYONE: _everyone,
    Cap.MEMBER: _member,
    Cap.RECEIVE: _member,
    Cap.RESPOND: _member,
    Cap.ABSENT: _parent,
    Cap.VIEW_GROUPS: _view_groups,
    Cap.MANAGE_GROUPS: _admin,
    Cap.VIEW_MEMBERS: _staff_or_teacher,
    Cap.MANAGE_MEMBERS: _admin,
    Cap.INVITE: _admin_or_teacher,
    Cap.DECIDE_REQUESTS: _admin_or_teacher,
    Cap.VERIFY_STAFF: _admin,
    Cap.POST: _staff_or_teacher,
    Cap.POST_WIDE: _admin_or_head,
    Cap.MANAGE_WEEKLY: _admin_or_teacher,
    Cap.SEE_ABSENCES: _staff_or_teacher,
    Cap.ANSWER_MESSAGES: _staff_or_teacher,
    Cap.ORG_SETTINGS: _admin,
    Cap.STATS: _admin_or_head,
    Cap.AUDIT: _admin,
    Cap.SWITCH_ORG: _switch_org,
    Cap.LINK_CHAT: _admin_or_teacher,
}


def scope(actor: Actor, cap: Cap) -> Scope:
    return RULES[cap](actor)


def can(actor: Actor, cap: Cap, group_id: int | None = None) -> bool:
    where = scope(actor, cap)
    return bool(where) if group_id is None else group_id in where


# -- rights over one object ---------------------------------------------------------------


def family_roles(actor: Actor) -> list[Role]:
    org = actor.addressed_org
    if org is None:
        return []
    return [Role.PARENT] if org.kind == OrgKind.KINDERGARTEN else [Role.PARENT, Role.STUDENT]


def invitable_roles(actor: Actor, group: Group) -> list[Role]:
    """The roles this person may invite into the group (empty: none)."""
    if actor.org is None or group.org_id != actor.org.id or group.archived_at is not None:
        return []
    if not can(actor, Cap.INVITE, group.id):
        return []
    if group.kind == GroupKind.STAFF:
        return [Role.ADMIN, Role.HEAD, Role.TEACHER, Role.SPECIALIST] if is_admin(actor) else []
    if is_admin(actor):
        return [*family_roles(actor), Role.TEACHER, Role.SPECIALIST]
    return family_roles(actor)


def invitation_admits(creator: Actor, invitation: Invitation) -> bool:
    """An invitation admits people while its creator may still issue it — except
    an administrator's, which is the organisation's and outlives its creator
    (any admin lists and revokes it)."""
    if invitation.issued_by_admin:
        return True
    return invitation.role in invitable_roles(creator, invitation.group)


def can_manage_invitation(actor: Actor, group_id: int, created_by_id: int) -> bool:
    """Admins manage every invitation; a teacher their own, in their own classes."""
    if is_admin(actor):
        return True
    return can(actor, Cap.INVITE, group_id) and created_by_id == actor.person.id


def can_decide(actor: Actor, request: JoinRequest) -> bool:
    if actor.org is None or request.org_id != actor.org.id:
        return False
    if is_admin(actor):
        return True
    return request.role in FAMILY_ROLES and can(actor, Cap.DECIDE_REQUESTS, request.group_id)


def requestable_roles(actor: Actor) -> list[Role]:
    """The roles a person may ask to join in (the organisation they address)."""
    if actor.addressed_org is None:
        return []
    return [*family_roles(actor), Role.TEACHER, Role.SPECIALIST]


def can_manage_post(actor: Actor, post: Post, group_ids: Iterable[int], action: str) -> bool:
    """The author's card: its author while they may still post to every group
    the post went to (or to the whole organisation, for a wide post); an admin
    may refresh and withdraw anyone's post."""
    if actor.org is None or post.org_id != actor.org.id:
        return False
    if is_admin(actor) and action in ADMIN_CARD_ACTIONS:
        return True
    if post.author_id != actor.person.id:
        return False
    groups = list(group_ids)
    if post.audience != "groups" or not groups:
        return can(actor, Cap.POST_WIDE)
    where = scope(actor, Cap.POST)
    return all(g in where for g in groups)


ADMIN_CARD_ACTIONS = frozenset({"refresh", "withdraw", "withdraw_yes"})


def may_respond(person: Person, post: Post) -> bool:
    """Acknowledge or vote: a live membership in the post's audience, now (in
    whichever organisation the person is acting)."""
    roles = post.audience_roles()
    groups = {g.group_id for g in post.groups}
    return any(
        m.org_id == post.org_id and m.state == MemberState.ACTIVE and m.group.archived_at is None
        and m.role in roles and (post.audience != "groups" or m.group_id in groups)
        for m in person.memberships
    )


def may_author(author: Person, post: Post, admin_ids: frozenset[int] = frozenset()) -> bool:
    """The author may still send this post now (a scheduled post, a reminder, a
    deadline acting in their name): the right to post to every group it names."""
    from bot.actor import Actor

    if author.telegram_id in admin_ids:
        return True
    org = next((m.group.organisation for m in Actor.live(author) if m.org_id == post.org_id), None)
    actor = Actor(person=author, org=org, is_config_admin=False,
                  locale=author.locale or "ru",
                  memberships=[m for m in Actor.live(author) if m.org_id == post.org_id])
    groups = [g.group_id for g in post.groups]
    if post.audience != "groups" or not groups:
        return can(actor, Cap.POST_WIDE)
    where = scope(actor, Cap.POST)
    return all(g in where for g in groups)


def may_receive(actor: Actor, group_ids: Iterable[int] | None = None) -> bool:
    """Posts, reminders and cards may still reach this person (in one of these groups)."""
    where = scope(actor, Cap.RECEIVE)
    if group_ids is None:
        return bool(where)
    return any(g in where for g in group_ids)


# -- commands and buttons -----------------------------------------------------------------


class Section(str, enum.Enum):
    """How /help groups the commands."""

    START = "start"
    EVERYDAY = "everyday"
    FAMILY = "family"
    TEACHING = "teaching"
    ADMINISTRATION = "administration"
    ACCOUNT = "account"


@dataclass(frozen=True)
class Command:
    name: str
    cap: Cap
    section: Section


COMMANDS: tuple[Command, ...] = (
    Command("start", Cap.EVERYONE, Section.START),
    Command("join", Cap.EVERYONE, Section.START),
    Command("help", Cap.EVERYONE, Section.START),
    Command("schedule", Cap.MEMBER, Section.EVERYDAY),
    Command("events", Cap.MEMBER, Section.EVERYDAY),
    Command("write", Cap.MEMBER, Section.EVERYDAY),
    Command("settings", Cap.MEMBER, Section.EVERYDAY),
    Command("groups", Cap.VIEW_GROUPS, Section.EVERYDAY),
    Command("absent", Cap.ABSENT, Section.FAMILY),
    Command("post", Cap.POST, Section.TEACHING),
    Command("scheduled", Cap.POST, Section.TEACHING),
    Command("invite", Cap.INVITE, Section.TEACHING),
    Command("invites", Cap.INVITE, Section.TEACHING),
    Command("requests", Cap.DECIDE_REQUESTS, Section.TEACHING),
    Command("absences", Cap.SEE_ABSENCES, Section.TEACHING),
    Command("members", Cap.VIEW_MEMBERS, Section.TEACHING),
    Command("families", Cap.VIEW_MEMBERS, Section.TEACHING),
    Command("import", Cap.INVITE, Section.TEACHING),
    Command("stats", Cap.STATS, Section.ADMINISTRATION),
    Command("audit", Cap.AUDIT, Section.ADMINISTRATION),
    Command("org", Cap.SWITCH_ORG, Section.ADMINISTRATION),
    Command("language", Cap.EVERYONE, Section.ACCOUNT),
    Command("cancel", Cap.EVERYONE, Section.ACCOUNT),
    Command("mydata", Cap.EVERYONE, Section.ACCOUNT),
    Command("forget", Cap.EVERYONE, Section.ACCOUNT),
)
BY_NAME = {c.name: c for c in COMMANDS}
# Commands of group chats, for the chat's administrators (a menu of their own).
CHAT_COMMANDS: tuple[Command, ...] = (
    Command("link", Cap.LINK_CHAT, Section.ADMINISTRATION),
    Command("unlink", Cap.LINK_CHAT, Section.ADMINISTRATION),
)
CHAT_BY_NAME = {c.name: c for c in CHAT_COMMANDS}

# Each kind of inline button (its CallbackData prefix) and the capability it needs.
# The gate refuses a press without it before any handler runs; the handler then
# checks the object the button names (this group, this post) with `can`.
BUTTONS: dict[str, Cap] = {
    "lang": Cap.EVERYONE,
    "setup": Cap.EVERYONE,  # the set-up dialog checks ADMIN_IDS itself
    "org": Cap.EVERYONE,  # choosing an organisation; adding one checks ADMIN_IDS
    "join": Cap.EVERYONE,
    "ask": Cap.EVERYONE,
    "fg": Cap.EVERYONE,
    "grp": Cap.VIEW_GROUPS,
    "inv": Cap.INVITE,
    "invs": Cap.INVITE,
    "req": Cap.DECIDE_REQUESTS,
    "ver": Cap.VERIFY_STAFF,
    "mem": Cap.VIEW_MEMBERS,
    "mb": Cap.MANAGE_MEMBERS,
    "cmp": Cap.POST,
    "pc": Cap.POST,  # the author's card: `can_manage_post` decides per post
    "sch": Cap.POST,
    "p": Cap.RESPOND,
    "dg": Cap.RECEIVE,
    "wk": Cap.MEMBER,  # viewing; adding and deleting check MANAGE_WEEKLY per group
    "set": Cap.MEMBER,
    "abs": Cap.ABSENT,
    "w": Cap.MEMBER,
    "rl": Cap.MEMBER,
    "st": Cap.STATS,
    "au": Cap.AUDIT,
    "ch": Cap.LINK_CHAT,
    "onb": Cap.INVITE,  # importing a list: which classes, `scope(INVITE)`
    "poster": Cap.INVITE,
    "fam": Cap.VIEW_MEMBERS,  # who is missing; reprinting checks INVITE per class
    "reqb": Cap.DECIDE_REQUESTS,  # approve binding the child to a pupil of the list
    "wh": Cap.POST,  # quick date and time choices while composing or rescheduling
    "dlg": Cap.EVERYONE,  # ✖️ Cancel of any wizard: the dialog gate checks it is the person's current dialog
    "fx": Cap.EVERYONE,  # what to do with a text typed outside a dialog: each choice asks its own right
}


def commands(actor: Actor) -> list[Command]:
    """The commands this person may use now, in menu order."""
    return [c for c in COMMANDS if can(actor, c.cap)]


def refusal(actor: Actor, cap: Cap) -> str:
    """Why the person may not do it, and what to do instead (in the current locale)."""
    if actor.org is None or not is_member(actor):
        if awaiting_verification(actor):
            return REFUSED + _("You are waiting for an administrator to verify you. Until then this is not available.")
        return REFUSED + _("This is for members of the organisation. Send /start to join.")
    if awaiting_verification(actor) and cap in (Cap.POST, Cap.INVITE, Cap.DECIDE_REQUESTS):
        return REFUSED + _("You are waiting for an administrator to verify you. Until then this is not available.")
    return REFUSED + _("This is not available to you. /help lists what you can do.")


# Every refusal starts with this mark: the tests' capability matrix recognises a
# refusal by it, so no handler can refuse in words of its own unnoticed.
REFUSED = "⛔ "
