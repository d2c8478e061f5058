"""Repositories behind one facade. They read and write inside the caller's
transaction and never commit: the unit of work belongs to the update."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, contains_eager, joinedload, selectinload

from storage.models import (
    STAFF_ROLES,
    Absence,
    Acknowledgement,
    Base,
    AuditEntry,
    Block,
    Delivery,
    DeliveryStatus,
    DeliveryTally,
    DueItem,
    DueState,
    Group,
    GroupKind,
    Guardianship,
    Invitation,
    JoinRequest,
    Lease,
    LinkedChat,
    Membership,
    MemberState,
    Organisation,
    Person,
    PollOption,
    Post,
    PostGroup,
    PostKind,
    PostState,
    ProcessedUpdate,
    Pupil,
    Relay,
    RequestState,
    Role,
    Vote,
    WeeklyItem,
    status_is,
    utcnow,
)


def normalize_name(name: str) -> str:
    """How two spellings of a child's name are compared: case, spaces and ё."""
    return re.sub(r"\s+", " ", name).strip().casefold().replace("ё", "е")


# Built once: this runs on every update, and building a four-table statement
# costs more than running it (bench/dispatch.py).
_PERSON_WITH_MEMBERSHIPS = (
    select(Person)
    .outerjoin(
        Membership,
        and_(Membership.person_id == Person.id, Membership.state != MemberState.REMOVED),
    )
    .outerjoin(Group, Group.id == Membership.group_id)
    .outerjoin(Organisation, Organisation.id == Group.org_id)
    .options(
        contains_eager(Person.memberships).contains_eager(Membership.group).contains_eager(Group.organisation)
    )
    .where(Person.telegram_id == bindparam("telegram_id"))
    .execution_options(populate_existing=True)
)
_FIRST_ORGANISATION = select(Organisation).order_by(Organisation.id).limit(1)


def _person_rows(person_id: int) -> tuple[Any, Any]:
    """Every outbox row for a person, as two conditions that each search
    ix_delivery_post_person: the rows about no post, and the copies of posts
    (there is no index on person_id alone: bulk copies would scatter over it)."""
    return (
        and_(Delivery.post_id.is_(None), Delivery.person_id == person_id),
        and_(Delivery.post_id.in_(select(Post.id)), Delivery.person_id == person_id),
    )


def _chunks(ids: list[int], size: int = 500) -> Iterable[list[int]]:
    """Ids in slices small enough for one IN (...) on any database."""
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


class Repo:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.enqueued = False  # the unit of work wakes the outbox after commit
        self.planned = False  # …and the scheduler

    async def flush(self) -> None:
        await self.session.flush()

    # -- people -------------------------------------------------------------

    async def person_with_memberships(self, telegram_id: int) -> Person | None:
        """One SELECT: the person, their live memberships, groups and organisations."""
        result = await self.session.execute(_PERSON_WITH_MEMBERSHIPS, {"telegram_id": telegram_id})
        return result.unique().scalar_one_or_none()

    async def add_person(self, telegram_id: int, telegram_name: str, locale: str | None = None) -> Person:
        person = Person(telegram_id=telegram_id, telegram_name=telegram_name[:256], locale=locale, memberships=[])
        self.session.add(person)
        await self.session.flush()
        return person

    async def person(self, person_id: int) -> Person | None:
        return await self.session.get(Person, person_id)

    async def people_by_ids(self, person_ids: Iterable[int]) -> Sequence[Person]:
        ids = list(person_ids)
        if not ids:
            return []
        return (await self.session.scalars(select(Person).where(Person.id.in_(ids)))).all()

    async def people_by_telegram_ids(self, telegram_ids: Iterable[int]) -> dict[int, Person]:
        ids = list(telegram_ids)
        if not ids:
            return {}
        rows = await self.session.scalars(select(Person).where(Person.telegram_id.in_(ids)))
        return {p.telegram_id: p for p in rows}

    # -- organisations and groups ---------------------------------------------

    async def first_organisation(self) -> Organisation | None:
        return await self.session.scalar(_FIRST_ORGANISATION)

    async def organisation(self, org_id: int) -> Organisation | None:
        return await self.session.get(Organisation, org_id)

    async def organisations(self, org_ids: Iterable[int] | None = None) -> Sequence[Organisation]:
        """All organisations (or those of `org_ids`), by name."""
        stmt = select(Organisation).order_by(Organisation.name, Organisation.id)
        if org_ids is not None:
            stmt = stmt.where(Organisation.id.in_(list(org_ids)))
        return (await self.session.scalars(stmt)).all()

    async def create_organisation(
        self, *, name: str, kind: str, timezone: str, support_contact: str | None, staff_title: str
    ) -> tuple[Organisation, Group]:
        org = Organisation(name=name, kind=kind, timezone=timezone, support_contact=support_contact)
        self.session.add(org)
        await self.session.flush()
        staff = Group(org_id=org.id, title=staff_title, kind=GroupKind.STAFF.value)
        self.session.add(staff)
        await self.session.flush()
        return org, staff

    async def groups(self, org_id: int, *, include_staff: bool = True) -> Sequence[Group]:
        stmt = select(Group).where(Group.org_id == org_id, Group.archived_at.is_(None))
        if not include_staff:
            stmt = stmt.where(Group.kind == GroupKind.CLASS.value)
        # The staff room first, then classes by title.
        stmt = stmt.order_by(Group.kind.desc(), Group.title)
        return (await self.session.scalars(stmt)).all()

    async def group(self, org_id: int, group_id: int) -> Group | None:
        group = await self.session.get(Group, group_id)
        return group if group is not None and group.org_id == org_id else None

    async def staff_room(self, org_id: int) -> Group:
        return (
            await self.session.scalars(
                select(Group).where(Group.org_id == org_id, Group.kind == GroupKind.STAFF.value)
            )
        ).one()

    async def group_title_taken(self, org_id: int, title: str, *, except_id: int | None = None) -> bool:
        # Compared in Python: SQLite's lower() knows only ASCII, and titles are Cyrillic.
        rows = await self.session.execute(
            select(Group.id, Group.title).where(Group.org_id == org_id, Group.archived_at.is_(None))
        )
        wanted = normalize_name(title)
        return any(normalize_name(t) == wanted and gid != except_id for gid, t in rows)

    async def add_group(self, org_id: int, title: str) -> Group:
        group = Group(org_id=org_id, title=title, kind=GroupKind.CLASS.value)
        self.session.add(group)
        await self.session.flush()
        return group

    async def count_members(self, group_id: int) -> int:
        return await self.session.scalar(
            select(func.count(Membership.id)).where(
                Membership.group_id == group_id, Membership.state != MemberState.REMOVED
            )
        ) or 0

    # -- memberships ----------------------------------------------------------

    async def membership(self, membership_id: int) -> Membership | None:
        return await self.session.scalar(
            select(Membership)
            .options(joinedload(Membership.person), joinedload(Membership.group))
            .where(Membership.id == membership_id)
        )

    async def find_membership(self, group_id: int, person_id: int, role: str) -> Membership | None:
        return await self.session.scalar(
            select(Membership).where(
                Membership.group_id == group_id,
                Membership.person_id == person_id,
                Membership.role == role,
            )
        )

    async def add_membership(
        self,
        *,
        org_id: int,
        group_id: int,
        person_id: int,
        role: str,
        state: str,
        invitation_id: int | None = None,
        verified_by_id: int | None = None,
    ) -> Membership:
        """Adds the membership, or brings a removed one back."""
        existing = await self.find_membership(group_id, person_id, role)
        now = utcnow() if state == MemberState.ACTIVE else None
        if existing is not None:
            existing.state = state
            existing.invitation_id = invitation_id
            existing.verified_by_id = verified_by_id
            existing.verified_at = now if verified_by_id else None
            return existing
        membership = Membership(
            org_id=org_id,
            group_id=group_id,
            person_id=person_id,
            role=role,
            state=state,
            invitation_id=invitation_id,
            verified_by_id=verified_by_id,
            verified_at=now if verified_by_id else None,
        )
        self.session.add(membership)
        await self.session.flush()
        return membership

    async def verify_membership(self, membership_id: int, by_person_id: int) -> bool:
        """Compare-and-swap: True only for the press that actually verified."""
        result = await self.session.execute(
            update(Membership)
            .where(Membership.id == membership_id, Membership.state == MemberState.UNVERIFIED)
            .values(state=MemberState.ACTIVE.value, verified_by_id=by_person_id, verified_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    async def decline_membership(self, membership_id: int) -> bool:
        """Compare-and-swap: True only for the press that actually declined."""
        result = await self.session.execute(
            update(Membership)
            .where(Membership.id == membership_id, Membership.state == MemberState.UNVERIFIED)
            .values(state=MemberState.REMOVED.value)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    async def lock_organisations(self, org_ids: Iterable[int]) -> None:
        """Serialises decisions about these organisations' last admins: a write
        that takes SQLite's write lock and PostgreSQL's row locks, so the reads
        after it see every decision committed before."""
        ids = sorted(set(org_ids))
        if ids:
            await self.session.execute(
                update(Organisation).where(Organisation.id.in_(ids)).values(id=Organisation.id)
                .execution_options(synchronize_session=False)
            )

    async def members(self, group_id: int) -> Sequence[Membership]:
        return (
            await self.session.scalars(
                select(Membership)
                .join(Person, Person.id == Membership.person_id)
                .options(contains_eager(Membership.person))
                .where(Membership.group_id == group_id, Membership.state != MemberState.REMOVED)
                .order_by(Membership.role, Person.full_name)
            )
        ).all()

    async def people_in_role(
        self, org_id: int, roles: Iterable[str], *, group_id: int | None = None
    ) -> Sequence[Person]:
        """Active members of the organisation (or of one group) in the given roles."""
        stmt = (
            select(Person)
            .join(Membership, Membership.person_id == Person.id)
            .where(
                Membership.org_id == org_id,
                Membership.role.in_([str(r) for r in roles]),
                Membership.state == MemberState.ACTIVE,
            )
            .distinct()
        )
        if group_id is not None:
            stmt = stmt.where(Membership.group_id == group_id)
        return (await self.session.scalars(stmt)).all()

    async def memberships_of(self, person_id: int, org_id: int) -> Sequence[Membership]:
        return (
            await self.session.scalars(
                select(Membership)
                .options(joinedload(Membership.group))
                .where(
                    Membership.person_id == person_id,
                    Membership.org_id == org_id,
                    Membership.state != MemberState.REMOVED,
                )
            )
        ).all()

    # -- pupils ----------------------------------------------------------------

    async def find_or_add_pupil(self, org_id: int, group_id: int, full_name: str) -> Pupil:
        wanted = normalize_name(full_name)
        for pupil in await self.session.scalars(select(Pupil).where(Pupil.group_id == group_id)):
            if normalize_name(pupil.full_name) == wanted:
                return pupil
        pupil = Pupil(org_id=org_id, group_id=group_id, full_name=full_name)
        self.session.add(pupil)
        await self.session.flush()
        return pupil

    async def link_guardian(self, org_id: int, person_id: int, pupil_id: int) -> bool:
        """True if the link is new."""
        exists = await self.session.scalar(
            select(Guardianship.id).where(
                Guardianship.person_id == person_id, Guardianship.pupil_id == pupil_id
            )
        )
        if exists is not None:
            return False
        self.session.add(Guardianship(org_id=org_id, person_id=person_id, pupil_id=pupil_id))
        await self.session.flush()
        return True

    async def pupil(self, pupil_id: int) -> Pupil | None:
        return await self.session.get(Pupil, pupil_id)

    async def guardians(self, pupil_id: int) -> Sequence[Person]:
        return (
            await self.session.scalars(
                select(Person).join(Guardianship, Guardianship.person_id == Person.id)
                .where(Guardianship.pupil_id == pupil_id)
            )
        ).all()

    async def children_by_parent(self, group_id: int) -> dict[int, list[str]]:
        """Parent's person id → their children's names in this group."""
        rows = await self.session.execute(
            select(Guardianship.person_id, Pupil.full_name)
            .join(Pupil, Pupil.id == Guardianship.pupil_id)
            .where(Pupil.group_id == group_id)
            .order_by(Pupil.full_name)
        )
        out: dict[int, list[str]] = {}
        for person_id, name in rows:
            out.setdefault(person_id, []).append(name)
        return out

    async def children_in_group(self, person_id: int, group_id: int) -> Sequence[Pupil]:
        return (
            await self.session.scalars(
                select(Pupil)
                .join(Guardianship, Guardianship.pupil_id == Pupil.id)
                .where(Guardianship.person_id == person_id, Pupil.group_id == group_id)
            )
        ).all()

    async def children_of(self, person_id: int, org_id: int) -> Sequence[Pupil]:
        """A parent's children in groups that are not archived."""
        return (
            await self.session.scalars(
                select(Pupil)
                .join(Guardianship, Guardianship.pupil_id == Pupil.id)
                .join(Group, Group.id == Pupil.group_id)
                .where(Guardianship.person_id == person_id, Pupil.org_id == org_id, Group.archived_at.is_(None))
                .order_by(Pupil.full_name)
            )
        ).all()

    async def children_with_groups(self, person_id: int, org_id: int) -> list[Any]:
        """A parent's children with their groups' titles (`full_name`, `group_title`)."""
        rows = await self.session.execute(
            select(Pupil.full_name, Group.title.label("group_title"))
            .join(Guardianship, Guardianship.pupil_id == Pupil.id)
            .join(Group, Group.id == Pupil.group_id)
            .where(Guardianship.person_id == person_id, Pupil.org_id == org_id, Group.archived_at.is_(None))
            .order_by(Pupil.full_name)
        )
        return list(rows)

    # -- conversations --------------------------------------------------------------

    async def add_relay(self, relay: Relay) -> Relay:
        self.session.add(relay)
        await self.session.flush()
        return relay

    async def relay(self, relay_id: int) -> Relay | None:
        return await self.session.get(Relay, relay_id)

    async def reclaim_blocks(self, person_id: int, key: str) -> int:
        """A person who deleted their data and came back: the blocks on them hold again."""
        result = await self.session.execute(
            update(Block).where(Block.blocked_key == key).values(blocked_id=person_id)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount

    async def is_blocked(self, blocker_id: int, blocked_id: int) -> bool:
        return (
            await self.session.scalar(
                select(Block.id).where(Block.blocker_id == blocker_id, Block.blocked_id == blocked_id)
            )
        ) is not None

    async def blockers_of(self, person_id: int) -> Sequence[Person]:
        return (
            await self.session.scalars(
                select(Person).join(Block, Block.blocker_id == Person.id).where(Block.blocked_id == person_id)
            )
        ).all()

    async def blocks(self, org_id: int) -> list[tuple[str, str, datetime]]:
        """(who blocked, whom, when) for the administration."""
        blocker = aliased(Person)
        blocked = aliased(Person)
        rows = await self.session.execute(
            select(blocker, blocked, Block.created_at)
            .join(blocker, blocker.id == Block.blocker_id)
            .join(blocked, blocked.id == Block.blocked_id)
            .where(Block.org_id == org_id)
            .order_by(Block.created_at.desc())
        )
        return [(a.display_name, b.display_name, at) for a, b, at in rows]

    async def linked_chat(self, chat_id: int) -> LinkedChat | None:
        return await self.session.scalar(select(LinkedChat).where(LinkedChat.chat_id == chat_id))

    async def linked_chats_of(self, group_ids: Iterable[int]) -> Sequence[LinkedChat]:
        return (await self.session.scalars(select(LinkedChat).where(LinkedChat.group_id.in_(list(group_ids))))).all()

    # -- absences -----------------------------------------------------------------

    async def absences_of_parent(self, org_id: int, person_id: int, today: date) -> Sequence[Absence]:
        return (
            await self.session.scalars(
                select(Absence)
                .options(joinedload(Absence.pupil))
                .where(Absence.org_id == org_id, Absence.parent_id == person_id, Absence.withdrawn_at.is_(None),
                       Absence.end_date >= today)
                .order_by(Absence.start_date)
            )
        ).all()

    async def absences_on(self, group_ids: Iterable[int], day: date) -> Sequence[Absence]:
        return (
            await self.session.scalars(
                select(Absence)
                .options(joinedload(Absence.pupil))
                .where(
                    Absence.group_id.in_(list(group_ids)),
                    Absence.withdrawn_at.is_(None),
                    Absence.start_date <= day,
                    Absence.end_date >= day,
                )
                .order_by(Absence.group_id, Absence.id)
            )
        ).all()

    # -- invitations -----------------------------------------------------------

    async def existing_codes(self, codes: Iterable[str]) -> set[str]:
        """Those of these codes some invitation already has (one query for a whole class list)."""
        wanted = list(codes)
        found: set[str] = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            found |= set(await self.session.scalars(select(Invitation.code).where(Invitation.code.in_(chunk))))
        return found

    async def code_exists(self, code: str) -> bool:
        return (await self.session.scalar(select(Invitation.id).where(Invitation.code == code))) is not None

    async def add_invitation(
        self,
        *,
        org_id: int,
        group_id: int,
        role: str,
        code: str,
        created_by_id: int,
        expires_at: datetime,
        max_uses: int | None,
        issued_by_admin: bool = False,
    ) -> Invitation:
        invitation = Invitation(
            issued_by_admin=issued_by_admin,
            org_id=org_id,
            group_id=group_id,
            role=role,
            code=code,
            created_by_id=created_by_id,
            expires_at=expires_at,
            max_uses=max_uses,
            uses=0,
        )
        self.session.add(invitation)
        await self.session.flush()
        return invitation

    async def invitation_by_code(self, code: str) -> Invitation | None:
        return await self.session.scalar(
            select(Invitation).options(joinedload(Invitation.group)).where(Invitation.code == code)
        )

    async def invitation(self, invitation_id: int, *, org_id: int | None = None) -> Invitation | None:
        """By id; with `org_id`, only if it belongs to that organisation."""
        invitation = await self.session.scalar(
            select(Invitation)
            .options(joinedload(Invitation.group))
            .where(Invitation.id == invitation_id)
        )
        if invitation is None or (org_id is not None and invitation.org_id != org_id):
            return None
        return invitation

    async def consume_invitation(self, invitation_id: int, now: datetime) -> bool:
        """Takes one use atomically: never more uses than the limit, whatever arrives at once."""
        result = await self.session.execute(
            update(Invitation)
            .where(
                Invitation.id == invitation_id,
                Invitation.revoked_at.is_(None),
                Invitation.expires_at > now,
                or_(Invitation.max_uses.is_(None), Invitation.uses < Invitation.max_uses),
            )
            .values(uses=Invitation.uses + 1)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    async def live_invitations(
        self, org_id: int, now: datetime, *, group_ids: Iterable[int] | None = None
    ) -> Sequence[Invitation]:
        stmt = (
            select(Invitation)
            .options(joinedload(Invitation.group))
            .where(
                Invitation.org_id == org_id,
                Invitation.revoked_at.is_(None),
                Invitation.expires_at > now,
                or_(Invitation.max_uses.is_(None), Invitation.uses < Invitation.max_uses),
            )
            .order_by(Invitation.created_at.desc(), Invitation.id.desc())
        )
        if group_ids is not None:
            stmt = stmt.where(Invitation.group_id.in_(list(group_ids)))
        return (await self.session.scalars(stmt)).all()

    async def revoke_invitation(self, invitation_id: int, now: datetime) -> bool:
        result = await self.session.execute(
            update(Invitation)
            .where(Invitation.id == invitation_id, Invitation.revoked_at.is_(None))
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    async def revoke_unused_invitations(self, invitation_ids: Iterable[int], now: datetime) -> int:
        """Revokes those of the given invitations nobody has used yet; returns how many."""
        result = await self.session.execute(
            update(Invitation)
            .where(
                Invitation.id.in_(list(invitation_ids)),
                Invitation.revoked_at.is_(None),
                Invitation.uses == 0,
            )
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount

    async def invitation_users(self, invitation_ids: Iterable[int]) -> dict[int, list[str]]:
        """Who joined with each invitation, by invitation id."""
        ids = list(invitation_ids)
        users: dict[int, list[str]] = {i: [] for i in ids}
        if not ids:
            return users
        rows = await self.session.execute(
            select(Membership.invitation_id, Person)
            .join(Person, Person.id == Membership.person_id)
            .where(Membership.invitation_id.in_(ids))
            .order_by(Membership.id)
        )
        for invitation_id, person in rows:
            users[invitation_id].append(person.display_name)
        return users

    # -- join requests -----------------------------------------------------------

    async def add_join_request(
        self,
        *,
        org_id: int,
        group_id: int,
        person_id: int,
        role: str,
        full_name: str,
        child_name: str | None,
    ) -> JoinRequest:
        request = JoinRequest(
            org_id=org_id,
            group_id=group_id,
            person_id=person_id,
            role=role,
            full_name=full_name,
            child_name=child_name,
            state=RequestState.PENDING.value,
        )
        self.session.add(request)
        await self.session.flush()
        return request

    async def pending_request(self, person_id: int, group_id: int, role: str | None = None) -> JoinRequest | None:
        """The person's pending request to this group (in this role, or in any)."""
        stmt = select(JoinRequest).where(
            JoinRequest.person_id == person_id,
            JoinRequest.group_id == group_id,
            JoinRequest.state == RequestState.PENDING,
        )
        if role is not None:
            stmt = stmt.where(JoinRequest.role == role)
        return await self.session.scalar(stmt.limit(1))

    async def join_request(self, request_id: int) -> JoinRequest | None:
        return await self.session.scalar(
            select(JoinRequest)
            .options(
                joinedload(JoinRequest.group),
                joinedload(JoinRequest.person),
                joinedload(JoinRequest.decided_by),
            )
            .where(JoinRequest.id == request_id)
            .execution_options(populate_existing=True)
        )

    async def removed_from(self, person_id: int, group_id: int) -> bool:
        """The person was a member of this group and was removed."""
        return (await self.session.scalar(
            select(Membership.id).where(Membership.person_id == person_id, Membership.group_id == group_id,
                                        Membership.state == MemberState.REMOVED).limit(1)
        )) is not None

    async def last_rejection(self, person_id: int, group_id: int) -> JoinRequest | None:
        return await self.session.scalar(
            select(JoinRequest).where(JoinRequest.person_id == person_id, JoinRequest.group_id == group_id,
                                      JoinRequest.state == RequestState.REJECTED)
            .order_by(JoinRequest.decided_at.desc()).limit(1)
        )

    async def person_by_id_with_memberships(self, person_id: int) -> Person | None:
        person = await self.session.get(Person, person_id)
        return await self.person_with_memberships(person.telegram_id) if person is not None else None

    async def decide_join_request(self, request_id: int, state: str, by_person_id: int) -> bool:
        """Compare-and-swap: the first decision wins."""
        result = await self.session.execute(
            update(JoinRequest)
            .where(JoinRequest.id == request_id, JoinRequest.state == RequestState.PENDING)
            .values(state=state, decided_by_id=by_person_id, decided_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    async def pending_requests(
        self,
        org_id: int,
        *,
        group_ids: Iterable[int] | None = None,
        roles: Iterable[str] | None = None,
        person_id: int | None = None,
    ) -> Sequence[JoinRequest]:
        stmt = (
            select(JoinRequest)
            .options(joinedload(JoinRequest.group), joinedload(JoinRequest.person))
            .where(JoinRequest.org_id == org_id, JoinRequest.state == RequestState.PENDING)
            .order_by(JoinRequest.created_at, JoinRequest.id)
        )
        if group_ids is not None:
            stmt = stmt.where(JoinRequest.group_id.in_(list(group_ids)))
        if roles is not None:
            stmt = stmt.where(JoinRequest.role.in_([str(r) for r in roles]))
        if person_id is not None:
            stmt = stmt.where(JoinRequest.person_id == person_id)
        return (await self.session.scalars(stmt)).all()

    # -- outbox -------------------------------------------------------------------

    def add_delivery(self, delivery: Delivery) -> Delivery:
        self.session.add(delivery)
        self.enqueued = True
        return delivery

    async def deliveries_about(self, topic: str, ref_id: int) -> Sequence[Delivery]:
        return (
            await self.session.scalars(
                select(Delivery).where(
                    Delivery.topic == topic, Delivery.ref_id == ref_id, Delivery.edit_of_id.is_(None)
                )
            )
        ).all()

    async def cancel_pending_deliveries(self, topic: str, ref_id: int) -> None:
        """Rows about (topic, ref_id) that have not gone out never will."""
        await self.session.execute(
            update(Delivery)
            .where(
                Delivery.topic == topic,
                Delivery.ref_id == ref_id,
                Delivery.status.in_([DeliveryStatus.PENDING.value, DeliveryStatus.HELD.value]),
            )
            .values(status=DeliveryStatus.CANCELLED.value)
            .execution_options(synchronize_session=False)
        )

    async def latest_edits(self, message_ids: Iterable[int], topic: str, *, sent_only: bool = False
                           ) -> dict[int, Delivery]:
        """For each message (a delivery row), its newest edit of `topic` that is
        or will be shown (pending, sending or sent; or only sent): what the
        message says now."""
        statuses = [DeliveryStatus.SENT.value] if sent_only else [
            DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value, DeliveryStatus.SENT.value]
        ids = sorted(set(message_ids))
        latest: dict[int, Delivery] = {}
        for start in range(0, len(ids), 500):
            rows = await self.session.scalars(
                select(Delivery)
                .where(
                    Delivery.edit_of_id.in_(ids[start:start + 500]),
                    Delivery.topic == topic,
                    Delivery.method.in_(["editMessageText", "editMessageCaption"]),
                    Delivery.status.in_(statuses),
                )
                .order_by(Delivery.id)
            )
            for row in rows:
                latest[row.edit_of_id] = row  # type: ignore[index]
        return latest

    async def cancel_pending_edits(self, message_id: int, topic: str) -> None:
        """Edits of `topic` of this message (a delivery row) that have not gone out never will."""
        await self.session.execute(
            update(Delivery)
            .where(Delivery.edit_of_id == message_id, Delivery.topic == topic,
                   Delivery.status == DeliveryStatus.PENDING)
            .values(status=DeliveryStatus.CANCELLED.value)
            .execution_options(synchronize_session=False)
        )

    async def rewrite_pending(self, delivery_id: int, payload: str) -> bool:
        """A row not yet taken by the sender goes out with this payload instead
        (compare-and-swap: False if the sender has it already)."""
        result = await self.session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.status == DeliveryStatus.PENDING)
            .values(payload=payload)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    # -- posts ---------------------------------------------------------------------

    async def add_post(self, post: Post, options: Iterable[str] = ()) -> Post:
        """Adds the post with its groups (`post.groups`) and poll options."""
        self.session.add(post)
        await self.session.flush()
        for position, text in enumerate(options):
            self.session.add(PollOption(org_id=post.org_id, post_id=post.id, position=position, text=text))
        await self.session.flush()
        return post

    async def post(self, post_id: int) -> Post | None:
        return await self.session.scalar(
            select(Post)
            .options(selectinload(Post.groups), selectinload(Post.options))
            .where(Post.id == post_id)
            .execution_options(populate_existing=True)
        )

    async def post_to(self, post_id: int, person_id: int) -> tuple[Post | None, bool, bool]:
        """A press on a copy, in one SELECT: the post with its groups and options,
        whether this person was one of its recipients (a copy was made for them,
        or — its copies folded into counts — they were in its audience when it
        was sent), and whether they have acknowledged it."""
        has_copy = select(Delivery.id).where(Delivery.post_id == Post.id, Delivery.person_id == person_id).exists()
        acked = select(Acknowledgement.id).where(
            Acknowledgement.post_id == Post.id, Acknowledgement.person_id == person_id
        ).exists()
        row = (
            await self.session.execute(
                select(Post, has_copy, acked)
                .options(joinedload(Post.groups), joinedload(Post.options))
                .where(Post.id == post_id)
                .execution_options(populate_existing=True)
            )
        ).unique().first()
        if row is None:
            return None, False, False
        post, addressee, acknowledged = row
        if not addressee and post.copies_folded_at is not None:
            addressee = await self._was_in_audience(post, person_id)
        return post, bool(addressee), bool(acknowledged)

    async def posts(self, post_ids: Iterable[int]) -> dict[int, Post]:
        ids = list(set(post_ids))
        if not ids:
            return {}
        rows = await self.session.scalars(
            select(Post).options(selectinload(Post.groups), selectinload(Post.options)).where(Post.id.in_(ids))
        )
        return {p.id: p for p in rows}

    async def post_recipients(
        self, post: Post, group_ids: Iterable[int], *, person_id: int | None = None
    ) -> Sequence[Person]:
        """Everyone a post is for, once each, never its author (with `person_id`:
        that person if they are one, a member since before it was sent)."""
        roles = list(post.audience_roles())
        stmt = (
            select(Person)
            .join(Membership, Membership.person_id == Person.id)
            .join(Group, Group.id == Membership.group_id)
            .where(
                Membership.org_id == post.org_id,
                Membership.state == MemberState.ACTIVE,
                Membership.role.in_(roles),
                Group.archived_at.is_(None),
            )
            .distinct()
            .order_by(Person.id)
        )
        if post.audience == "groups":
            stmt = stmt.where(Membership.group_id.in_(list(group_ids)))
        if post.author_id is not None:
            stmt = stmt.where(Person.id != post.author_id)
        if person_id is not None:
            stmt = stmt.where(Person.id == person_id)
            if post.sent_at is not None:
                stmt = stmt.where(Membership.created_at <= post.sent_at)
        return (await self.session.scalars(stmt)).all()

    async def add_deliveries(self, rows: list[dict]) -> None:
        """Many outbox rows in one statement (a post to a whole school)."""
        if rows:
            await self.session.execute(insert(Delivery), rows)
            self.enqueued = True

    async def pending_copies(self, post_id: int, topic: str) -> int:
        """Copies of a post with this topic that have not gone out yet."""
        return await self.session.scalar(
            select(func.count()).select_from(Delivery).where(
                Delivery.post_id == post_id, Delivery.topic == topic,
                Delivery.status.in_([DeliveryStatus.PENDING.value, DeliveryStatus.HELD.value]),
            )
        ) or 0

    async def post_copies(self, post_id: int, *, topics: Iterable[str] = ("post", "post_renotify")) -> Sequence[Delivery]:
        return (
            await self.session.scalars(
                select(Delivery)
                .where(Delivery.post_id == post_id, Delivery.topic.in_(list(topics)))
                .order_by(Delivery.id)
            )
        ).all()

    async def delivery_counts(self, post_id: int) -> dict[str, int]:
        """A post's copies by status: from the tally once they are counted
        (bot/retention.py), from the outbox before."""
        counted = await self.session.scalar(select(Post.copies_counted_at).where(Post.id == post_id))
        if counted is None:
            rows = await self.session.execute(
                select(Delivery.status, func.count())
                .where(Delivery.post_id == post_id, Delivery.topic == "post")
                .group_by(Delivery.status)
            )
        else:
            rows = await self.session.execute(
                select(DeliveryTally.status, DeliveryTally.copies)
                .where(DeliveryTally.post_id == post_id, DeliveryTally.group_id.is_(None))
            )
        counts: dict[str, int] = {}
        for status, n in rows:
            counts[status] = counts.get(status, 0) + n
        return counts

    async def acknowledged_among(self, post_id: int, person_ids: Iterable[int]) -> set[int]:
        """Which of these people have acknowledged the post."""
        ids = sorted(set(person_ids))
        found: set[int] = set()
        for start in range(0, len(ids), 500):
            found |= set(await self.session.scalars(
                select(Acknowledgement.person_id).where(
                    Acknowledgement.post_id == post_id, Acknowledgement.person_id.in_(ids[start:start + 500])
                )
            ))
        return found

    async def votes_among(self, post_id: int, person_ids: Iterable[int]) -> dict[int, set[int]]:
        """Person → the options they chose, for these people."""
        ids = sorted(set(person_ids))
        chosen: dict[int, set[int]] = {}
        for start in range(0, len(ids), 500):
            rows = await self.session.execute(
                select(Vote.person_id, Vote.option_id).where(
                    Vote.post_id == post_id, Vote.person_id.in_(ids[start:start + 500])
                )
            )
            for person_id, option_id in rows:
                chosen.setdefault(person_id, set()).add(option_id)
        return chosen

    async def ack_count(self, post_id: int) -> int:
        return await self.session.scalar(
            select(func.count()).select_from(Acknowledgement).where(Acknowledgement.post_id == post_id)
        ) or 0

    async def is_addressee(self, post_id: int, person_id: int) -> bool:
        if (
            await self.session.scalar(
                select(Delivery.id).where(Delivery.post_id == post_id, Delivery.person_id == person_id).limit(1)
            )
        ) is not None:
            return True
        post = await self.session.get(Post, post_id)
        return post is not None and post.copies_folded_at is not None and await self._was_in_audience(post, person_id)

    async def _was_in_audience(self, post: Post, person_id: int) -> bool:
        """An old post's copies are folded into counts: whoever was in its
        audience when it was sent is one of its recipients."""
        group_ids = await self.session.scalars(select(PostGroup.group_id).where(PostGroup.post_id == post.id))
        return bool(await self.post_recipients(post, list(group_ids), person_id=person_id))

    async def acknowledge(self, org_id: int, post_id: int, person_id: int) -> bool:
        """True if this is the person's first acknowledgement of the post. One
        statement: INSERT … ON CONFLICT DO NOTHING (a second press, or two at
        once, find the row there and add none)."""
        return await self._insert_new(Acknowledgement, ("post_id", "person_id"), org_id=org_id, post_id=post_id,
                                      person_id=person_id, created_at=utcnow())

    async def _insert_new(self, model: type[Base], unique: tuple[str, ...], **values: Any) -> bool:
        """INSERT … ON CONFLICT (unique) DO NOTHING, SQLite and PostgreSQL alike:
        True if the row is new."""
        table = model.__table__
        insert_ = sqlite_insert if self.session.get_bind().dialect.name == "sqlite" else postgresql_insert
        result = await self.session.execute(
            insert_(table).values(**values).on_conflict_do_nothing(index_elements=[table.c[c] for c in unique])
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def acknowledged(self, post_id: int, person_id: int) -> bool:
        return (
            await self.session.scalar(
                select(Acknowledgement.id).where(
                    Acknowledgement.post_id == post_id, Acknowledgement.person_id == person_id
                )
            )
        ) is not None

    async def not_acknowledged(self, post_id: int) -> Sequence[Person]:
        """Recipients whose copy arrived and who have not acknowledged."""
        acked = select(Acknowledgement.person_id).where(Acknowledgement.post_id == post_id)
        return (
            await self.session.scalars(
                select(Person)
                .join(Delivery, Delivery.person_id == Person.id)
                .where(
                    Delivery.post_id == post_id,
                    Delivery.topic == "post",
                    Delivery.status == DeliveryStatus.SENT,
                    Person.id.not_in(acked),
                )
                .distinct()
                .order_by(Person.full_name)
            )
        ).all()

    async def votes_of(self, post_id: int, person_id: int) -> set[int]:
        return set(
            await self.session.scalars(
                select(Vote.option_id).where(Vote.post_id == post_id, Vote.person_id == person_id)
            )
        )

    async def set_votes(self, org_id: int, post_id: int, person_id: int, option_ids: set[int]) -> None:
        await self.session.execute(delete(Vote).where(Vote.post_id == post_id, Vote.person_id == person_id))
        for option_id in sorted(option_ids):
            self.session.add(Vote(org_id=org_id, post_id=post_id, option_id=option_id, person_id=person_id))
        await self.session.flush()

    async def poll_results(self, post_id: int) -> dict[int, list[str]]:
        """Option id → the voters' names."""
        rows = await self.session.execute(
            select(Vote.option_id, Person)
            .join(Person, Person.id == Vote.person_id)
            .where(Vote.post_id == post_id)
            .order_by(Vote.id)
        )
        results: dict[int, list[str]] = {}
        for option_id, person in rows:
            results.setdefault(option_id, []).append(person.display_name)
        return results

    async def current_schedules(self, group_ids: Iterable[int]) -> dict[int, Post]:
        """The newest schedule of each group (a new one replaces the old)."""
        rows = await self.session.execute(
            select(PostGroup.group_id, Post)
            .join(Post, Post.id == PostGroup.post_id)
            .where(
                PostGroup.group_id.in_(list(group_ids)),
                Post.kind == PostKind.SCHEDULE,
                Post.state == PostState.SENT,
            )
            .order_by(Post.created_at, Post.id)
        )
        return {group_id: post for group_id, post in rows}

    async def upcoming_events(
        self, group_ids: Iterable[int], org_id: int, now: datetime, wide: Iterable[str] = ("org",)
    ) -> Sequence[Post]:
        """Events of these groups and of the organisation-wide audiences in `wide`, from now on."""
        in_groups = select(PostGroup.post_id).where(PostGroup.group_id.in_(list(group_ids)))
        return (
            await self.session.scalars(
                select(Post)
                .where(
                    Post.org_id == org_id,
                    Post.kind == PostKind.EVENT,
                    Post.state == PostState.SENT,
                    Post.event_at >= now,
                    or_(Post.id.in_(in_groups), Post.audience.in_(list(wide))),
                )
                .order_by(Post.event_at)
                .limit(50)
            )
        ).all()

    # -- webhooks and workers ------------------------------------------------------------

    async def handled_before(self, update_id: int) -> bool:
        return await self.session.get(ProcessedUpdate, update_id) is not None

    async def record_handled(self, update_id: int) -> bool:
        """Marks an update as handled (the row commits with the update); False if
        another delivery of it got there first. One statement: INSERT … ON
        CONFLICT DO NOTHING (SQLite and PostgreSQL alike), no savepoint."""
        await self.session.flush()  # what the update changed first: its own errors stay its own
        return await self._insert_new(ProcessedUpdate, ("update_id",), update_id=update_id, processed_at=utcnow())

    async def take_lease(self, name: str, holder: str, until: datetime, now: datetime) -> bool:
        """Takes or renews a lease that is free, expired or already ours."""
        lease = await self.session.get(Lease, name, with_for_update=True)
        if lease is None:
            self.session.add(Lease(name=name, holder=holder, expires_at=until))
            try:
                async with self.session.begin_nested():
                    await self.session.flush()
            except IntegrityError:
                return False
            return True
        if lease.holder != holder and lease.expires_at > now:
            return False
        lease.holder, lease.expires_at = holder, until
        return True

    async def prune_processed_updates(self, before: datetime) -> None:
        await self.session.execute(delete(ProcessedUpdate).where(ProcessedUpdate.processed_at < before))

    # -- due items ---------------------------------------------------------------------

    async def add_due(self, item: DueItem) -> DueItem | None:
        """Adds an item unless one with its key exists (it then fires once)."""
        if await self.session.scalar(select(DueItem.id).where(DueItem.key == item.key)) is not None:
            return None
        self.session.add(item)
        await self.session.flush()
        self.planned = True
        return item

    async def add_due_many(self, items: list[DueItem]) -> int:
        """Adds those of the items whose keys are new, with one look-up."""
        if not items:
            return 0
        keys = {i.key for i in items}
        existing = set(await self.session.scalars(select(DueItem.key).where(DueItem.key.in_(keys))))
        fresh = {i.key: i for i in items if i.key not in existing}
        if fresh:
            # One statement for all (a burst of weekly reminders plans as many):
            # the ORM would insert them one by one to learn each id.
            now = utcnow()
            await self.session.execute(insert(DueItem), [
                {"org_id": i.org_id, "kind": i.kind, "ref_id": i.ref_id, "due_at": i.due_at, "key": i.key,
                 "minutes": i.minutes, "state": i.state or DueState.PENDING.value, "created_at": now}
                for i in fresh.values()
            ])
            self.planned = True
        return len(fresh)

    async def held_copies(self, person_id: int) -> Sequence[Delivery]:
        """A reader's post copies waiting for the digest, oldest first."""
        return (
            await self.session.scalars(
                select(Delivery)
                .where(
                    Delivery.person_id == person_id,
                    status_is(DeliveryStatus.HELD),
                    Delivery.edit_of_id.is_(None),
                )
                .order_by(Delivery.id)
            )
        ).all()

    async def cancel_due(self, ref_id: int, kinds: Iterable[str]) -> int:
        result = await self.session.execute(
            update(DueItem)
            .where(DueItem.ref_id == ref_id, DueItem.kind.in_(list(kinds)), DueItem.state == DueState.PENDING)
            .values(state=DueState.CANCELLED.value)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount

    async def next_due_at(self) -> datetime | None:
        return await self.session.scalar(
            select(func.min(DueItem.due_at)).where(DueItem.state == DueState.PENDING)
        )

    async def claim_due(self, now: datetime, limit: int) -> list[DueItem]:
        """Items due by `now`, taken by a compare-and-swap so each fires once:
        only the rows this UPDATE changed (RETURNING) are fired here."""
        ids = (
            await self.session.scalars(
                select(DueItem.id)
                .where(DueItem.state == DueState.PENDING, DueItem.due_at <= now)
                .order_by(DueItem.due_at, DueItem.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        if not ids:
            return []
        won = set(
            await self.session.scalars(
                update(DueItem)
                .where(DueItem.id.in_(ids), DueItem.state == DueState.PENDING)
                .values(state=DueState.DONE.value, fired_at=now)
                .returning(DueItem.id)
                .execution_options(synchronize_session=False)
            )
        )
        items = (
            await self.session.scalars(
                select(DueItem).where(DueItem.id.in_(won)).order_by(DueItem.due_at, DueItem.id)
                .execution_options(populate_existing=True)
            )
        ).all()
        return list(items)

    async def scheduled_posts(self, org_id: int, author_id: int | None) -> Sequence[Post]:
        stmt = select(Post).where(Post.org_id == org_id, Post.state == PostState.SCHEDULED).order_by(Post.scheduled_at)
        if author_id is not None:
            stmt = stmt.where(Post.author_id == author_id)
        return (await self.session.scalars(stmt)).all()

    async def weekly_items_by_id(self, ids: Iterable[int]) -> Sequence[WeeklyItem]:
        wanted = list(set(ids))
        if not wanted:
            return []
        return (await self.session.scalars(select(WeeklyItem).where(WeeklyItem.id.in_(wanted)))).all()

    async def weekly_items(self, group_ids: Iterable[int]) -> Sequence[WeeklyItem]:
        return (
            await self.session.scalars(
                select(WeeklyItem)
                .where(WeeklyItem.group_id.in_(list(group_ids)), WeeklyItem.archived_at.is_(None))
                .order_by(WeeklyItem.weekday, WeeklyItem.time_of_day)
            )
        ).all()

    # -- privacy ------------------------------------------------------------------------

    async def export_person(self, person_id: int) -> dict[str, Any]:
        """Everything stored about a person, as plain data (/mydata)."""
        person = await self.session.get(Person, person_id)
        assert person is not None

        async def rows(stmt: Any) -> list[Any]:
            return list((await self.session.execute(stmt)).all())

        return {
            "person": {
                "telegram_id": person.telegram_id, "full_name": person.full_name, "telegram_name": person.telegram_name,
                "language": person.locale, "daily_digest_at": person.digest_at, "office_hours": person.office_hours,
                "first_seen": person.created_at, "last_seen": person.last_seen_at,
            },
            "memberships": [
                {"group": title, "role": role, "state": state, "since": since}
                for title, role, state, since in await rows(
                    select(Group.title, Membership.role, Membership.state, Membership.created_at)
                    .join(Group, Group.id == Membership.group_id).where(Membership.person_id == person_id))
            ],
            "children": [
                {"name": name, "group": title}
                for name, title in await rows(
                    select(Pupil.full_name, Group.title).join(Guardianship, Guardianship.pupil_id == Pupil.id)
                    .join(Group, Group.id == Pupil.group_id).where(Guardianship.person_id == person_id))
            ],
            "join_requests": [
                {"group": title, "role": role, "name": name, "child": child, "state": state, "at": at}
                for title, role, name, child, state, at in await rows(
                    select(Group.title, JoinRequest.role, JoinRequest.full_name, JoinRequest.child_name,
                           JoinRequest.state, JoinRequest.created_at)
                    .join(Group, Group.id == JoinRequest.group_id).where(JoinRequest.person_id == person_id))
            ],
            "posts_written": [
                {"id": pid, "kind": kind, "text": text, "at": at}
                for pid, kind, text, at in await rows(
                    select(Post.id, Post.kind, Post.text, Post.created_at).where(Post.author_id == person_id))
            ],
            "acknowledged_posts": [
                {"post": pid, "at": at}
                for pid, at in await rows(select(Acknowledgement.post_id, Acknowledgement.created_at)
                                          .where(Acknowledgement.person_id == person_id))
            ],
            "votes": [
                {"post": pid, "answer": text}
                for pid, text in await rows(select(Vote.post_id, PollOption.text)
                                            .join(PollOption, PollOption.id == Vote.option_id)
                                            .where(Vote.person_id == person_id))
            ],
            "absence_notices": [
                {"child": name, "from": start, "to": end, "reason": reason}
                for name, start, end, reason in await rows(
                    select(Pupil.full_name, Absence.start_date, Absence.end_date, Absence.reason)
                    .join(Pupil, Pupil.id == Absence.pupil_id).where(Absence.parent_id == person_id))
            ],
            "admin_actions": [
                {"action": action, "subject": subject, "detail": detail, "at": at}
                for action, subject, detail, at in await rows(
                    select(AuditEntry.action, AuditEntry.subject, AuditEntry.detail, AuditEntry.created_at)
                    .where(AuditEntry.actor_id == person_id).order_by(AuditEntry.created_at))
            ],
            "audit_entries_about_you": [
                {"action": action, "detail": detail, "at": at}
                for action, detail, at in await rows(
                    select(AuditEntry.action, AuditEntry.detail, AuditEntry.created_at)
                    .where(AuditEntry.subject == f"person:{person_id}").order_by(AuditEntry.created_at))
            ],
            "messages_sent": await self.session.scalar(
                select(func.count(Relay.id)).where(Relay.sender_id == person_id)),
            "messages_received": await self.session.scalar(
                select(func.count(Relay.id)).where(Relay.recipient_id == person_id)),
            "messages_delivered_to_you": sum([
                await self.session.scalar(select(func.count(Delivery.id)).where(where)) or 0
                for where in _person_rows(person_id)
            ]),
        }

    async def forget_person(self, person: Person, key: str | None = None) -> None:
        """Deletes a person's data; what they wrote for others stays, unsigned.
        Blocks others placed on them stay, holding `key` (bot: a keyed hash of their
        Telegram id) so that they hold again if the person comes back."""
        pid = person.id
        if key is not None:
            await self.session.execute(
                update(Block).where(Block.blocked_id == pid).values(blocked_key=key)
                .execution_options(synchronize_session=False)
            )
        # Nothing more goes to them.
        await self.session.execute(
            update(Delivery)
            .where(
                or_(Delivery.chat_id == person.telegram_id, Delivery.person_id == pid),
                Delivery.status.in_([DeliveryStatus.PENDING.value, DeliveryStatus.HELD.value]),
            )
            .values(status=DeliveryStatus.CANCELLED.value)
            .execution_options(synchronize_session=False)
        )
        for model, column in (
            (Membership, Membership.person_id), (Guardianship, Guardianship.person_id),
            (Vote, Vote.person_id), (Acknowledgement, Acknowledgement.person_id),
            (JoinRequest, JoinRequest.person_id), (Block, Block.blocker_id),
        ):
            await self.session.execute(delete(model).where(column == pid).execution_options(synchronize_session=False))
        for stmt in (
            update(Post).where(Post.author_id == pid).values(author_id=None),
            update(Absence).where(Absence.parent_id == pid).values(parent_id=None),
            update(Relay).where(Relay.sender_id == pid).values(sender_id=None),
            update(Relay).where(Relay.recipient_id == pid).values(recipient_id=None),
            update(JoinRequest).where(JoinRequest.decided_by_id == pid).values(decided_by_id=None),
            update(Membership).where(Membership.verified_by_id == pid).values(verified_by_id=None),
            *(update(Delivery).where(where).values(person_id=None, chat_id=0) for where in _person_rows(pid)),
            # The audit log keeps that something was done, not their name (a rename's old and new).
            update(AuditEntry).where(AuditEntry.subject == f"person:{pid}").values(detail=None),
        ):
            await self.session.execute(stmt.execution_options(synchronize_session=False))
        # The row stays (invitations and the audit log point at it) but says nothing.
        person.telegram_id = -pid
        person.full_name = None
        person.telegram_name = ""
        person.locale = person.digest_at = person.office_hours = None
        person.current_org_id = None
        person.last_seen_at = None
        person.forgotten_at = utcnow()

    # -- statistics ------------------------------------------------------------------

    async def members_by_group_role(self, org_id: int) -> list[tuple[int, str, int]]:
        rows = await self.session.execute(
            select(Membership.group_id, Membership.role, func.count(Membership.id))
            .join(Group, Group.id == Membership.group_id)
            .where(Membership.org_id == org_id, Membership.state == MemberState.ACTIVE, Group.archived_at.is_(None))
            .group_by(Membership.group_id, Membership.role)
        )
        return [(g, r, n) for g, r, n in rows]

    async def join_times(self, org_id: int, since: datetime) -> Sequence[datetime]:
        return (
            await self.session.scalars(
                select(Membership.created_at).where(Membership.org_id == org_id, Membership.created_at >= since)
            )
        ).all()

    async def active_people(self, org_id: int, since: datetime) -> int:
        return await self.session.scalar(
            select(func.count(func.distinct(Person.id)))
            .join(Membership, Membership.person_id == Person.id)
            .where(Membership.org_id == org_id, Membership.state == MemberState.ACTIVE, Person.last_seen_at >= since)
        ) or 0

    async def delivery_by_group(self, org_id: int) -> dict[int, dict[str, int]]:
        """Per group: posts addressed to it, and its members' copies by status,
        copies asking acknowledgement, acknowledgements — each copy counted
        once, in the group its recipient belongs to (a post to several groups
        is not counted again in each)."""
        out: dict[int, dict[str, int]] = {}
        posts = await self.session.execute(
            select(PostGroup.group_id, func.count(func.distinct(Post.id)))
            .join(Post, Post.id == PostGroup.post_id)
            .where(Post.org_id == org_id, Post.state.in_([PostState.SENT.value, PostState.WITHDRAWN.value]))
            .group_by(PostGroup.group_id)
        )
        for group_id, n in posts:
            out.setdefault(group_id, {})["posts"] = n
        # The recipient's group among the groups the post was addressed to. Counted
        # here from three plain reads, each an index range (a join of the copies
        # with memberships makes the database visit every copy's recipient: a
        # year of a school's copies took SQLite many seconds, bench/history.py).
        addressed: dict[int, list[int]] = {}
        asks: dict[int, bool] = {}
        for post_id, group_id, ask_ack in await self.session.execute(
            select(PostGroup.post_id, PostGroup.group_id, Post.ask_ack)
            .join(Post, Post.id == PostGroup.post_id)
            .where(Post.org_id == org_id, Post.copies_counted_at.is_(None))
        ):
            addressed.setdefault(post_id, []).append(group_id)
            asks[post_id] = bool(ask_ack)
        members = {(g, p) for g, p in await self.session.execute(
            select(Membership.group_id, Membership.person_id).where(Membership.org_id == org_id))}
        counted: dict[tuple[int, str, bool], int] = {}
        for chunk in _chunks(sorted(addressed)):
            for post_id, person_id, status in await self.session.execute(
                select(Delivery.post_id, Delivery.person_id, Delivery.status)
                .where(Delivery.topic == "post", Delivery.post_id.in_(chunk))
            ):
                for group_id in addressed[post_id]:
                    if (group_id, person_id) in members:
                        key = (group_id, status, asks[post_id])
                        counted[key] = counted.get(key, 0) + 1
        copies = [(g, status, ask, n) for (g, status, ask), n in counted.items()]
        # Settled copies counted into the tally (bot/retention.py), attributed the same way when counted.
        folded = await self.session.execute(
            select(DeliveryTally.group_id, DeliveryTally.status, Post.ask_ack, func.sum(DeliveryTally.copies))
            .join(Post, Post.id == DeliveryTally.post_id)
            .where(DeliveryTally.org_id == org_id, DeliveryTally.group_id.is_not(None))
            .group_by(DeliveryTally.group_id, DeliveryTally.status, Post.ask_ack)
        )
        for group_id, status, ask_ack, n in [*copies, *folded]:
            n = int(n)
            row = out.setdefault(group_id, {})
            row[status] = row.get(status, 0) + n
            if ask_ack and status in (DeliveryStatus.SENT, DeliveryStatus.DIGESTED):
                row["ack_delivered"] = row.get("ack_delivered", 0) + n
        acks = await self.session.execute(
            select(PostGroup.group_id, func.count(func.distinct(Acknowledgement.id)))
            .select_from(Acknowledgement)
            .join(PostGroup, PostGroup.post_id == Acknowledgement.post_id)
            .join(Membership, and_(Membership.group_id == PostGroup.group_id,
                                   Membership.person_id == Acknowledgement.person_id))
            .where(PostGroup.org_id == org_id)
            .group_by(PostGroup.group_id)
        )
        for group_id, n in acks:
            out.setdefault(group_id, {})["acks"] = n
        return out

    async def delivery_totals(self, org_id: int) -> dict[str, int]:
        """All post copies of the organisation (groups and everyone-posts alike), once each."""
        totals: dict[str, int] = {}
        # Per post from the (topic, post_id, status) index, then by kind here.
        asks = {pid: bool(ask) for pid, ask in await self.session.execute(
            select(Post.id, Post.ask_ack).where(Post.org_id == org_id, Post.copies_counted_at.is_(None)))}
        by_kind: dict[tuple[str, bool], int] = {}
        for chunk in _chunks(sorted(asks)):
            for post_id, status, n in await self.session.execute(
                select(Delivery.post_id, Delivery.status, func.count())
                .where(Delivery.topic == "post", Delivery.post_id.in_(chunk))
                .group_by(Delivery.post_id, Delivery.status)
            ):
                by_kind[(status, asks[post_id])] = by_kind.get((status, asks[post_id]), 0) + n
        rows = [(status, ask, n) for (status, ask), n in by_kind.items()]
        folded = await self.session.execute(
            select(DeliveryTally.status, Post.ask_ack, func.sum(DeliveryTally.copies))
            .join(Post, Post.id == DeliveryTally.post_id)
            .where(DeliveryTally.org_id == org_id, DeliveryTally.group_id.is_(None))
            .group_by(DeliveryTally.status, Post.ask_ack)
        )
        for status, ask_ack, n in [*rows, *folded]:
            n = int(n)
            totals["copies"] = totals.get("copies", 0) + n
            if status in (DeliveryStatus.SENT, DeliveryStatus.DIGESTED):
                totals["delivered"] = totals.get("delivered", 0) + n
                if ask_ack:
                    totals["ack_delivered"] = totals.get("ack_delivered", 0) + n
        totals["acks"] = await self.session.scalar(
            select(func.count(Acknowledgement.id)).where(Acknowledgement.org_id == org_id)
        ) or 0
        return totals

    async def absence_counts(self, org_id: int, since: date) -> dict[int, int]:
        rows = await self.session.execute(
            select(Absence.group_id, func.count(Absence.id))
            .where(Absence.org_id == org_id, Absence.withdrawn_at.is_(None), Absence.end_date >= since)
            .group_by(Absence.group_id)
        )
        return {g: n for g, n in rows}

    async def audit_page(self, org_id: int, offset: int, limit: int) -> tuple[list[tuple[AuditEntry, str]], int]:
        total = await self.session.scalar(select(func.count(AuditEntry.id)).where(AuditEntry.org_id == org_id)) or 0
        rows = await self.session.execute(
            select(AuditEntry, Person)
            .outerjoin(Person, Person.id == AuditEntry.actor_id)
            .where(AuditEntry.org_id == org_id)
            .order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())
            .offset(offset)
            .limit(limit)
        )
        return [(entry, person.display_name if person else "—") for entry, person in rows], total

    # -- onboarding: class lists, personal codes, who is missing ------------------------

    async def pupils_in_org(self, org_id: int) -> Sequence[Pupil]:
        """Every pupil of the organisation's classes that are not archived."""
        return (
            await self.session.scalars(
                select(Pupil).join(Group, Group.id == Pupil.group_id)
                .where(Pupil.org_id == org_id, Group.archived_at.is_(None))
                .order_by(Pupil.group_id, Pupil.full_name)
            )
        ).all()

    async def pupils_of(self, *group_ids: int) -> Sequence[Pupil]:
        """The pupils of these classes, by name."""
        if not group_ids:
            return []
        return (
            await self.session.scalars(
                select(Pupil).where(Pupil.group_id.in_(group_ids)).order_by(Pupil.full_name, Pupil.id)
            )
        ).all()

    async def add_pupils(self, rows: list[dict[str, Any]]) -> None:
        """Many pupils in one INSERT (a class list)."""
        if rows:
            now = utcnow()
            await self.session.execute(insert(Pupil), [{"created_at": now, **r} for r in rows])

    def _live_code(self, now: datetime) -> Any:
        return and_(
            Invitation.revoked_at.is_(None),
            Invitation.expires_at > now,
            or_(Invitation.max_uses.is_(None), Invitation.uses < Invitation.max_uses),
        )

    async def personal_codes(self, pupil_ids: Iterable[int], now: datetime) -> dict[int, Invitation]:
        """The newest working personal family code of each of these pupils."""
        ids = list(pupil_ids)
        if not ids:
            return {}
        rows = await self.session.scalars(
            select(Invitation).join(Pupil, Pupil.id == Invitation.pupil_id)
            # A code issued before the pupil moved to another class is not theirs any more.
            .where(Invitation.pupil_id.in_(ids), Invitation.group_id == Pupil.group_id, self._live_code(now))
            .order_by(Invitation.id)
        )
        return {i.pupil_id: i for i in rows if i.pupil_id is not None}

    async def pupils_with_codes(self, pupil_ids: Iterable[int], now: datetime) -> set[int]:
        """Those of these pupils who have a working personal code (ids only: a class list's import)."""
        ids = list(pupil_ids)
        if not ids:
            return set()
        rows = await self.session.scalars(
            select(Invitation.pupil_id).join(Pupil, Pupil.id == Invitation.pupil_id)
            .where(Invitation.pupil_id.in_(ids), Invitation.group_id == Pupil.group_id, self._live_code(now))
        )
        return {i for i in rows if i is not None}

    async def revoke_personal_codes(self, pupil_id: int, now: datetime) -> int:
        """A reissue: every earlier code of this pupil stops working."""
        result = await self.session.execute(
            update(Invitation)
            .where(Invitation.pupil_id == pupil_id, Invitation.revoked_at.is_(None))
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount

    async def add_invitations(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            now = utcnow()
            await self.session.execute(insert(Invitation), [{"created_at": now, "uses": 0, **r} for r in rows])

    async def families_joined(self, org_id: int) -> dict[int, tuple[int, int]]:
        """Per class: (pupils, pupils with at least one parent who is a member of the class)."""
        joined = (
            select(Guardianship.pupil_id)
            .join(Membership, and_(Membership.person_id == Guardianship.person_id,
                                   Membership.role == Role.PARENT.value,
                                   Membership.state == MemberState.ACTIVE.value))
            .where(Membership.group_id == Pupil.group_id, Guardianship.pupil_id == Pupil.id)
            .exists()
        )
        rows = await self.session.execute(
            select(Pupil.group_id, func.count(Pupil.id), func.sum(case((joined, 1), else_=0)))
            .where(Pupil.org_id == org_id)
            .group_by(Pupil.group_id)
        )
        return {g: (n, int(j or 0)) for g, n, j in rows}

    async def pupils_without_family(self, group_id: int) -> Sequence[Pupil]:
        joined = (
            select(Guardianship.id)
            .join(Membership, and_(Membership.person_id == Guardianship.person_id,
                                   Membership.role == Role.PARENT.value,
                                   Membership.state == MemberState.ACTIVE.value,
                                   Membership.group_id == group_id))
            .where(Guardianship.pupil_id == Pupil.id)
            .exists()
        )
        return (
            await self.session.scalars(
                select(Pupil).where(Pupil.group_id == group_id, ~joined).order_by(Pupil.full_name, Pupil.id)
            )
        ).all()

    async def staff_codes(self, org_id: int, now: datetime) -> Sequence[Invitation]:
        """Working personal staff codes (an imported staff list)."""
        return (
            await self.session.scalars(
                select(Invitation).options(joinedload(Invitation.group))
                .where(Invitation.org_id == org_id, Invitation.person_name.is_not(None), self._live_code(now))
                .order_by(Invitation.id)
            )
        ).all()

    async def staff_names(self, org_id: int) -> set[tuple[str, str]]:
        """(normalized name, role) of the organisation's live staff members."""
        rows = await self.session.execute(
            select(Person.full_name, Membership.role)
            .join(Membership, Membership.person_id == Person.id)
            .where(Membership.org_id == org_id, Membership.state != MemberState.REMOVED,
                   Membership.role.in_([r.value for r in STAFF_ROLES]))
        )
        return {(normalize_name(name or ""), role) for name, role in rows}

    # -- audit -----------------------------------------------------------------------

    def audit(
        self, org_id: int, actor_id: int | None, action: str, subject: str | None = None,
        detail: str | None = None,
    ) -> None:
        self.session.add(
            AuditEntry(org_id=org_id, actor_id=actor_id, action=action, subject=subject, detail=detail)
        )


__all__ = ["Repo", "normalize_name", "Role"]
