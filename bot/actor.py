"""Who is acting: the person, their live memberships and the organisation they act in.

Built once per update by the middleware from a single SELECT. What the person
may do is decided by `bot/rights.py` alone; the properties below only ask it
(they are kept so that a handler reads naturally).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot import rights
from storage.models import Group, JoinRequest, Membership, MemberState, Organisation, Person, Role

if TYPE_CHECKING:
    from storage.repo import Repo


@dataclass
class Actor:
    person: Person
    # The organisation the person acts in: one of those where they hold a live
    # membership (the one chosen with /org), or, for the platform's ADMIN_IDS,
    # the one they chose. Nobody else acts in any organisation.
    org: Organisation | None
    is_config_admin: bool
    locale: str
    memberships: list[Membership] = field(default_factory=list)
    # The organisations the person belongs to (several on a municipal deployment).
    org_ids: frozenset[int] = frozenset()
    # A newcomer's (or a removed member's) organisation to ask to join: it grants nothing.
    prospect_org: Organisation | None = None

    @classmethod
    def build(
        cls, person: Person, fallback_org: Organisation | None, admin_ids: frozenset[int], locale: str
    ) -> Actor:
        live = cls.live(person)
        org_ids = frozenset(m.org_id for m in live)
        is_config_admin = person.telegram_id in admin_ids
        chosen = [m for m in live if m.org_id == person.current_org_id]
        prospect = None
        if chosen:
            org = chosen[0].group.organisation
        elif live and not (is_config_admin and fallback_org is not None
                           and fallback_org.id == person.current_org_id):
            org = live[0].group.organisation
        elif is_config_admin:
            org = fallback_org
        else:
            org, prospect = None, fallback_org
        if org is not None:
            live = [m for m in live if m.org_id == org.id]
        return cls(
            person=person,
            org=org,
            is_config_admin=is_config_admin,
            locale=locale,
            memberships=live,
            org_ids=org_ids,
            prospect_org=prospect,
        )

    @classmethod
    def in_org(cls, person: Person, org: Organisation, admin_ids: frozenset[int] = frozenset()) -> Actor:
        """The person as they stand in one organisation now (a creator, an author
        whose right is checked when something of theirs takes effect)."""
        live = [m for m in cls.live(person) if m.org_id == org.id]
        return cls(person=person, org=org, is_config_admin=person.telegram_id in admin_ids,
                   locale=person.locale or "ru", memberships=live,
                   org_ids=frozenset(m.org_id for m in cls.live(person)))

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

    @property
    def addressed_org(self) -> Organisation | None:
        """The organisation the person speaks to: where they act, else where they may ask to join."""
        return self.org or self.prospect_org

    def elsewhere(self, org_id: int | None) -> bool:
        """It belongs to another organisation of this person's: /org switches to it."""
        return org_id is not None and org_id in self.org_ids and (self.org is None or org_id != self.org.id)

    def can(self, cap: rights.Cap, group_id: int | None = None) -> bool:
        return rights.can(self, cap, group_id)

    def scope(self, cap: rights.Cap) -> rights.Scope:
        return rights.scope(self, cap)

    # -- what the table says, read naturally ---------------------------------------

    @property
    def can_switch_org(self) -> bool:
        return rights.can(self, rights.Cap.SWITCH_ORG)

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
        return rights.is_admin(self)

    @property
    def is_head(self) -> bool:
        return rights.is_head(self)

    @property
    def is_member(self) -> bool:
        return rights.is_member(self)

    @property
    def awaiting_verification(self) -> bool:
        return rights.awaiting_verification(self)

    def teaching_group_ids(self) -> set[int]:
        """Groups (the staff room included) where the person is a verified teacher or specialist."""
        return set(rights.teaching_groups(self))

    def membership_in(self, group_id: int, role: str) -> Membership | None:
        for m in self.memberships:
            if m.group_id == group_id and m.role == role:
                return m
        return None

    def invitable_roles(self, group: Group) -> list[Role]:
        return rights.invitable_roles(self, group)

    def can_invite(self, group: Group, role: str) -> bool:
        return role in rights.invitable_roles(self, group)

    def can_manage_invitation(self, group_id: int, created_by_id: int) -> bool:
        return rights.can_manage_invitation(self, group_id, created_by_id)

    def can_decide(self, request: JoinRequest) -> bool:
        return rights.can_decide(self, request)

    def requestable_roles(self) -> list[Role]:
        return rights.requestable_roles(self)
