"""Onboarding a whole school: a class list (or a staff list) compared with what
the organisation already has, imported in the update's one transaction;
personal codes issued and reissued; who is still missing.

The handler (handlers/onboarding.py) parses the update, calls these, and
words the result; nothing here talks to Telegram.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from difflib import SequenceMatcher

from bot import rights
from bot.actor import Actor
from bot.classlist import Row, name_key
from storage.models import GroupKind, Group, Invitation, Pupil, Role, utcnow
from storage.repo import Repo

# Unclear for reasons only the database knows.
NOT_YOUR_CLASS = "not_your_class"
OTHER_CLASS = "other_class"  # the same name is already in another class: a move, not a new pupil
NO_SUCH_CLASS = "no_such_class"  # staff lists name existing classes only


@dataclass
class Plan:
    kind: str  # pupils | staff
    new: list[Row] = field(default_factory=list)
    known: list[Row] = field(default_factory=list)
    unclear: list[Row] = field(default_factory=list)
    missing_classes: dict[str, int] = field(default_factory=dict)  # title → pupils in the file
    classes: dict[str, int] = field(default_factory=dict)  # every class title of the new and known rows → pupils

    @property
    def pupils(self) -> int:
        return len(self.new) + len(self.known)

    def new_in_existing(self) -> list[Row]:
        return [r for r in self.new if r.group not in self.missing_classes]


def _titles(groups: list[Group]) -> dict[str, Group]:
    return {name_key(g.title): g for g in groups if g.kind == GroupKind.CLASS}


async def plan_pupils(repo: Repo, actor: Actor, rows: list[Row]) -> Plan:
    assert actor.org is not None
    plan = Plan(kind="pupils")
    groups = _titles(list(await repo.groups(actor.org.id)))
    pupils = await repo.pupils_in_org(actor.org.id)
    where: dict[str, set[int]] = {}
    for pupil in pupils:
        where.setdefault(name_key(pupil.full_name), set()).add(pupil.group_id)
    titles = {g.id: g.title for g in groups.values()}
    teaching = set(actor.scope(rights.Cap.INVITE).groups)  # a teacher's own classes (bot.rights)
    for row in rows:
        if row.problem:
            plan.unclear.append(row)
            continue
        group = groups.get(name_key(row.group))
        if group is not None:
            row.group = group.title  # as the organisation spells it
        if group is None and not actor.is_admin:
            row.problem = NOT_YOUR_CLASS
        elif group is not None and not actor.is_admin and group.id not in teaching:
            row.problem = NOT_YOUR_CLASS
        if row.problem:
            plan.unclear.append(row)
            continue
        in_groups = where.get(name_key(row.name), set())
        if group is not None and group.id in in_groups:
            plan.known.append(row)
        elif in_groups:
            row.problem = OTHER_CLASS
            row.problem_arg = ", ".join(sorted(titles.get(g, "?") for g in in_groups))
            plan.unclear.append(row)
            continue
        else:
            plan.new.append(row)
            if group is None:
                plan.missing_classes[row.group] = plan.missing_classes.get(row.group, 0) + 1
        plan.classes[row.group] = plan.classes.get(row.group, 0) + 1
    return plan


@dataclass
class Imported:
    pupils: int
    created_classes: list[str]
    group_ids: list[int]  # the classes the file filled, for their slips


async def import_pupils(
    repo: Repo, actor: Actor, rows: list[Row], *, create_classes: bool, days: int, uses: int
) -> Imported:
    """In the update's transaction: the missing classes (if asked, admins only),
    the new pupils and a personal family code for each. Known pupils are left as
    they are, so importing the same file again changes nothing."""
    assert actor.org is not None
    org_id = actor.org.id
    plan = await plan_pupils(repo, actor, rows)  # again: the lists may have changed since the preview
    groups = _titles(list(await repo.groups(org_id)))
    created: list[str] = []
    if create_classes and actor.is_admin:
        for title in plan.missing_classes:
            groups[name_key(title)] = await repo.add_group(org_id, title[:64])
            created.append(title)
    rows_to_add = [r for r in plan.new if name_key(r.group) in groups]
    await repo.add_pupils([
        {"org_id": org_id, "group_id": groups[name_key(r.group)].id, "full_name": r.name[:128],
         "birth_date": r.birth_date, "parents_hint": r.parents or None}
        for r in rows_to_add
    ])
    touched = sorted({groups[name_key(r.group)].id for r in rows_to_add + plan.known if name_key(r.group) in groups})
    # Codes for every pupil of these classes who has none that works (the new ones), all at once.
    await issue_codes(repo, actor, list(await repo.pupils_of(*touched)), days=days, uses=uses)
    repo.audit(org_id, actor.person.id, "classlist.import", detail=f"{len(rows_to_add)} pupils; "
               f"classes created: {', '.join(created) or '-'}"[:512])
    return Imported(pupils=len(rows_to_add), created_classes=created, group_ids=touched)


async def _unique_codes(repo: Repo, n: int) -> list[str]:
    from handlers.invites import new_code  # the same alphabet and length as every invitation

    codes: set[str] = set()
    while len(codes) < n:  # 2^49 codes: a clash practically never happens, so this runs once
        batch = {new_code() for _ in range(n - len(codes))} - codes
        codes |= batch - await repo.existing_codes(batch)
    return list(codes)


async def issue_codes(repo: Repo, actor: Actor, pupils: list[Pupil], *, days: int, uses: int) -> int:
    """A personal family code for each pupil who has none that works; how many were issued."""
    now = utcnow()
    have = await repo.pupils_with_codes([p.id for p in pupils], now)
    lacking = [p for p in pupils if p.id not in have]
    if lacking:
        codes = await _unique_codes(repo, len(lacking))
        await repo.add_invitations([
            {"org_id": p.org_id, "group_id": p.group_id, "role": Role.PARENT.value, "code": code,
             "created_by_id": actor.person.id, "expires_at": now + timedelta(days=days), "max_uses": uses,
             "pupil_id": p.id, "needs_approval": False}
            for p, code in zip(lacking, codes)
        ])
    return len(lacking)


async def ensure_codes(
    repo: Repo, actor: Actor, pupils: list[Pupil], *, days: int, uses: int
) -> dict[int, Invitation]:
    """Each pupil's working personal family code, issuing one where there is none."""
    await issue_codes(repo, actor, pupils, days=days, uses=uses)
    return await repo.personal_codes([p.id for p in pupils], utcnow())


async def reissue_code(repo: Repo, actor: Actor, pupil: Pupil, *, days: int, uses: int) -> Invitation:
    """A new personal code for the pupil; every earlier one stops working."""
    now = utcnow()
    await repo.revoke_personal_codes(pupil.id, now)
    [code] = await _unique_codes(repo, 1)
    invitation = await repo.add_invitation(
        org_id=pupil.org_id, group_id=pupil.group_id, role=Role.PARENT.value, code=code,
        created_by_id=actor.person.id, expires_at=now + timedelta(days=days), max_uses=uses,
    )
    invitation.pupil_id = pupil.id
    repo.audit(pupil.org_id, actor.person.id, "family_code.reissue", subject=f"pupil:{pupil.id}")
    return invitation


# -- staff lists ----------------------------------------------------------------------------


async def plan_staff(repo: Repo, actor: Actor, rows: list[Row]) -> Plan:
    assert actor.org is not None
    plan = Plan(kind="staff")
    groups = _titles(list(await repo.groups(actor.org.id)))
    members = await repo.staff_names(actor.org.id)
    codes = {(name_key(i.person_name or ""), i.role) for i in await repo.staff_codes(actor.org.id, utcnow())}
    for row in rows:
        if row.problem is None:
            unknown = [g for g in row.groups if name_key(g) not in groups]
            if unknown:
                row.problem, row.problem_arg = NO_SUCH_CLASS, ", ".join(unknown)[:60]
            else:
                row.groups = [groups[name_key(g)].title for g in row.groups]
        if row.problem:
            plan.unclear.append(row)
        elif (name_key(row.name), row.role) in members | codes:
            plan.known.append(row)
        else:
            plan.new.append(row)
    return plan


async def import_staff(repo: Repo, actor: Actor, rows: list[Row], *, days: int) -> list[Invitation]:
    """A personal staff code for each new person of the list (admins only):
    one use, the person named, verified on joining."""
    assert actor.org is not None and actor.is_admin
    plan = await plan_staff(repo, actor, rows)
    groups = _titles(list(await repo.groups(actor.org.id)))
    staff_room = await repo.staff_room(actor.org.id)
    now = utcnow()
    codes = await _unique_codes(repo, len(plan.new))
    made: list[Invitation] = []
    for row, code in zip(plan.new, codes):
        ids = [groups[name_key(g)].id for g in row.groups]
        # Teachers and specialists join their first class (and the others with the same
        # code); heads and admins, and staff with no class, the staff room.
        first = ids[0] if ids and row.role in (Role.TEACHER, Role.SPECIALIST) else staff_room.id
        invitation = await repo.add_invitation(
            org_id=actor.org.id, group_id=first, role=row.role, code=code, created_by_id=actor.person.id,
            expires_at=now + timedelta(days=days), max_uses=1,
        )
        invitation.person_name = row.name[:128]
        more = ids[1:] if first != staff_room.id else []
        invitation.more_group_ids = ",".join(str(i) for i in more) or None
        made.append(invitation)
    repo.audit(actor.org.id, actor.person.id, "stafflist.import", detail=f"{len(made)} staff codes")
    return made


def more_groups(invitation: Invitation) -> list[int]:
    return [int(i) for i in (invitation.more_group_ids or "").split(",") if i.strip().isdigit()]


# -- who is missing ----------------------------------------------------------------------------


@dataclass
class Coverage:
    group: Group
    pupils: int
    joined: int

    @property
    def missing(self) -> int:
        return self.pupils - self.joined


async def coverage(repo: Repo, actor: Actor, group_ids: set[int] | None = None) -> list[Coverage]:
    """Per class (those given, else every class): pupils on the list and families joined."""
    assert actor.org is not None
    counts = await repo.families_joined(actor.org.id)
    out = []
    for group in await repo.groups(actor.org.id, include_staff=False):
        if group_ids is not None and group.id not in group_ids:
            continue
        pupils, joined = counts.get(group.id, (0, 0))
        out.append(Coverage(group=group, pupils=pupils, joined=joined))
    return out


def count_roles(rows: list[Row]) -> Counter[str]:
    return Counter(r.role for r in rows)


async def class_list_match(repo: Repo, group_id: int, child_name: str) -> tuple[Pupil | None, list[Pupil]]:
    """The pupil of the class list with this name, or (None, the nearest names):
    a typo on a join request must not become a second pupil."""
    pupils = list(await repo.pupils_of(group_id))
    wanted = name_key(child_name)
    for pupil in pupils:
        if name_key(pupil.full_name) == wanted:
            return pupil, []
    scored = sorted(
        ((SequenceMatcher(None, wanted, name_key(p.full_name)).ratio(), p) for p in pupils),
        key=lambda pair: -pair[0],
    )
    return None, [p for score, p in scored[:2] if score >= 0.75]
