"""What joining means, shared by joining by code and by an approved request:
the membership (and the staff-room one for staff), the child's record for a
parent, and the cards that ask admins to verify a new teacher."""

from __future__ import annotations

from aiogram.methods import SendMessage
from aiogram.utils.i18n import gettext as _

from bot.actor import Actor
from bot.i18n import in_locale
from bot.menus import enqueue_menu
from bot.outbox import enqueue
from handlers.keyboards import verify_keyboard
from handlers.texts import q, role_name
from storage.models import (
    VERIFIED_ROLES,
    Group,
    GroupKind,
    Membership,
    MemberState,
    Organisation,
    Person,
    Role,
)
from storage.repo import Repo


async def admit(
    repo: Repo,
    *,
    org: Organisation,
    group: Group,
    person: Person,
    role: str,
    full_name: str,
    child_name: str | None,
    invitation_id: int | None = None,
    verified_by_id: int | None = None,
) -> Membership:
    """Makes the person a member. A teacher or specialist who is not verified
    yet (and not admitted by an admin's decision) starts unverified."""
    person.full_name = full_name
    staff_room = group if group.kind == GroupKind.STAFF else await repo.staff_room(org.id)
    target = staff_room if role in (Role.ADMIN, Role.HEAD) else group
    state = MemberState.ACTIVE
    if role in VERIFIED_ROLES and verified_by_id is None:
        already_verified = any(
            m.role in VERIFIED_ROLES and m.state == MemberState.ACTIVE
            for m in await repo.memberships_of(person.id, org.id)
        )
        state = MemberState.ACTIVE if already_verified else MemberState.UNVERIFIED
    membership = await repo.add_membership(
        org_id=org.id,
        group_id=target.id,
        person_id=person.id,
        role=role,
        state=state,
        invitation_id=invitation_id,
        verified_by_id=verified_by_id,
    )
    if role in VERIFIED_ROLES and target.id != staff_room.id:
        # All staff are in the staff room too, in the same standing.
        existing = await repo.find_membership(staff_room.id, person.id, role)
        if existing is None or existing.state != MemberState.ACTIVE:
            await repo.add_membership(
                org_id=org.id,
                group_id=staff_room.id,
                person_id=person.id,
                role=role,
                state=state,
                verified_by_id=verified_by_id,
            )
    if role == Role.PARENT and child_name:
        pupil = await repo.find_or_add_pupil(org.id, group.id, child_name)
        await repo.link_guardian(org.id, person.id, pupil.id)
    return membership


async def admin_chats(repo: Repo, org: Organisation, admin_ids: frozenset[int], default_locale: str) -> dict[int, str]:
    """Every admin's private chat and language: appointed ones and those from ADMIN_IDS."""
    chats = {p.telegram_id: p.locale or default_locale for p in await repo.people_in_role(org.id, [Role.ADMIN])}
    known = await repo.people_by_telegram_ids(i for i in admin_ids if i not in chats)
    for telegram_id in admin_ids:
        if telegram_id not in chats:
            person = known.get(telegram_id)
            chats[telegram_id] = (person.locale if person else None) or default_locale
    return chats


async def ask_admins_to_verify(
    repo: Repo,
    *,
    org: Organisation,
    membership: Membership,
    person: Person,
    group: Group,
    admin_ids: frozenset[int],
    default_locale: str,
) -> None:
    for chat_id, locale in (await admin_chats(repo, org, admin_ids, default_locale)).items():
        if chat_id == person.telegram_id:
            continue
        with in_locale(locale):
            text = _(
                "🧑‍🏫 <b>{name}</b> joined <b>{group}</b> as {role} by invitation and is waiting for "
                "verification. Until you verify them they cannot post or invite."
            ).format(name=q(person.full_name), group=q(group.title), role=role_name(membership.role))
            enqueue(
                repo,
                chat_id,
                SendMessage(chat_id=chat_id, text=text, reply_markup=verify_keyboard(membership.id)),
                org_id=org.id, org=org,
                topic="verify",
                ref_id=membership.id,
            )


async def refresh_menu_of(repo: Repo, person: Person, admin_ids: frozenset[int], default_locale: str) -> Actor | None:
    """After someone else's roles changed: their menu follows."""
    fresh = await repo.person_with_memberships(person.telegram_id)
    if fresh is None:
        return None
    fallback = await Actor.fallback_org(repo, fresh, admin_ids)
    actor = Actor.build(fresh, fallback, admin_ids, fresh.locale or default_locale)
    await enqueue_menu(repo, actor)
    return actor
