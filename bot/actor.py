"""Who is acting and what they may do: the one place rights are decided.

Built once per update by the middleware from a single SELECT; handlers ask it
before they act, for commands and for buttons alike (a client can send any
callback data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from storage.models import (
    FAMILY_ROLES,
    VERIFIED_ROLES,
    Group,
    GroupKind,
    JoinRequest,
    Membership,
    MemberState,
    Organisation,
    OrgKind,
    Person,
    Role,
)

if TYPE_CHECKING:
    from storage.repo import Repo


@dataclass
class Actor:
    person: Person
    org: Organisation | None
    is_config_admin: bool
    locale: str
    memberships: list[Membership] = field(default_factory=list)
    # The organisations the person belongs to (several on a municipal deployment).
    org_ids: frozenset[int] = frozenset()

    @classmethod
    def build(
        cls, person: Person, fallback_org: Organisation | None, admin_ids: frozenset[int], locale: str
    ) -> Actor:
        live = cls.live(person)
        org_ids = frozenset(m.org_id for m in live)
        # The organisation is the one the person chose with /org among those they
        # belong to, else the first of them; config admins with no membership
        # there act in the one they chose, else the first organisation.
        chosen = [m for m in live if m.org_id == person.current_org_id]
        if chosen:
            org = chosen[0].group.organisation
        elif fallback_org is not None and (not live or fallback_org.id == person.current_org_id):
            org = fallback_org
        else:
            org = live[0].group.organisation if live else None
        if org is not None:
            live = [m for m in live if m.org_id == org.id]
        return cls(
            person=person,
            org=org,
            is_config_admin=person.telegram_id in admin_ids,
            locale=locale,
            memberships=live,
            org_ids=org_ids,
        )

    @staticmethod
    def live(person: Person) -> list[Membership]:
        """Memberships that count, in every organisation: not removed, group not archived."""
        return [m for m in person.memberships if m.state != MemberState.REMOVED and m.group.archived_at is None]

    @classmethod
    async def fallback_org(cls, repo: Repo, person: Person, admin_ids: frozenset[int]) -> Organisation | None:
        """The organisation to act in when the memberships do not give it: for a
        config admin or a newcomer, the one they chose with /org; else, for a
        newcomer, the first one."""
        live = cls.live(person)
        chosen = person.current_org_id
        if chosen is not None and (person.telegram_id in admin_ids or not live) and not any(
            m.org_id == chosen for m in live
        ):
            org = await repo.organisation(chosen)
            if org is not None:
                return org
        return None if live else await repo.first_organisation()

    def elsewhere(self, org_id: int | None) -> bool:
        """It belongs to another organisation of this person's: /org switches to it."""
        return org_id is not None and org_id in self.org_ids and (self.org is None or org_id != self.org.id)

    @property
    def can_switch_org(self) -> bool:
        """/org: more than one organisation to act in, or a config admin (who may add one)."""
        return self.is_config_admin or len(self.org_ids) > 1

    # -- roles -------------------------------------------------------------

    def active(self) -> list[Membership]:
        return [m for m in self.memberships if m.state == MemberState.ACTIVE]

    @property
    def roles(self) -> frozenset[Role]:
        roles = {Role(m.role) for m in self.active()}
        if self.is_admin:
            roles.add(Role.ADMIN)
        return frozenset(roles)

    @property
    def is_admin(self) -> bool:
        if self.org is None:
            return False
        return self.is_config_admin or any(m.role == Role.ADMIN for m in self.active())

    @property
    def is_head(self) -> bool:
        return any(m.role == Role.HEAD for m in self.active())

    @property
    def is_member(self) -> bool:
        return bool(self.memberships) or self.is_admin

    @property
    def awaiting_verification(self) -> bool:
        """Joined as teacher or specialist and no admin has confirmed it yet."""
        return any(
            m.state == MemberState.UNVERIFIED and m.role in VERIFIED_ROLES for m in self.memberships
        ) and not self.teaching_group_ids()

    def teaching_group_ids(self) -> set[int]:
        """Groups where the person is a verified teacher or specialist."""
        return {m.group_id for m in self.active() if m.role in VERIFIED_ROLES}

    def membership_in(self, group_id: int, role: str) -> Membership | None:
        for m in self.memberships:
            if m.group_id == group_id and m.role == role:
                return m
        return None

    # -- rights --------------------------------------------------------------

    def invitable_roles(self, group: Group) -> list[Role]:
        """The roles this person may invite into the group (empty: none)."""
        if self.org is None or group.org_id != self.org.id or group.archived_at is not None:
            return []
        if group.kind == GroupKind.STAFF:
            staff = [Role.ADMIN, Role.HEAD, Role.TEACHER, Role.SPECIALIST]
            return staff if self.is_admin else []
        family = [Role.PARENT] if self.org.kind == OrgKind.KINDERGARTEN else [Role.PARENT, Role.STUDENT]
        if self.is_admin:
            return [*family, Role.TEACHER, Role.SPECIALIST]
        if group.id in self.teaching_group_ids():
            return family
        return []

    def can_invite(self, group: Group, role: str) -> bool:
        return role in self.invitable_roles(group)

    def can_manage_invitation(self, group_id: int, created_by_id: int) -> bool:
        return self.is_admin or (
            group_id in self.teaching_group_ids() and created_by_id == self.person.id
        )

    def can_decide(self, request: JoinRequest) -> bool:
        if self.org is None or request.org_id != self.org.id:
            return False
        if self.is_admin:
            return True
        return request.role in FAMILY_ROLES and request.group_id in self.teaching_group_ids()

    def requestable_roles(self) -> list[Role]:
        if self.org is None:
            return []
        family = [Role.PARENT] if self.org.kind == OrgKind.KINDERGARTEN else [Role.PARENT, Role.STUDENT]
        return [*family, Role.TEACHER, Role.SPECIALIST]
