"""Seeding a database directly, for delivery tests and benches: an organisation,
one class group, a verified teacher and N parents, and a post from the teacher
to the group's parents — written through storage.repo / storage.models in a few
statements, not walked through the bot (2,000 parents take well under a second).

    engine, session_maker = await create_database(url)      # schema by create_all
    school = await seed_school(session_maker, parents=300)
    code = await seed_invitation(session_maker, school)    # people join with /start <code>
    post_id, n = await enqueue_post(session_maker, school, "Hello")

For the bot process, run `python -m bot migrate` first and only `seed_school`
with the same DATABASE_URL (tests/test_delivery.py does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from aiogram.utils.i18n import I18n

from bot.i18n import create_i18n
from bot.posts import broadcast, send_card
from storage.db import create_engine, create_session_maker
from storage.models import (
    Base,
    MemberState,
    Membership,
    OrgKind,
    Person,
    Post,
    PostGroup,
    PostKind,
    PostState,
    Role,
    utcnow,
)
from storage.repo import Repo

TEACHER_ID = 3001
FIRST_PARENT_ID = 100_000
INVITATION_CODE = "K7M2QX9PRT"  # the alphabet of real codes: no 0/O/1/I/L


@dataclass
class School:
    org_id: int
    group_id: int
    group_title: str
    teacher_tg: int  # the teacher's Telegram id
    teacher_person_id: int
    parent_tgs: list[int] = field(default_factory=list)  # parents' Telegram ids, in order
    parent_person_ids: list[int] = field(default_factory=list)


async def create_database(url: str) -> tuple[AsyncEngine, async_sessionmaker]:
    """An engine and a session maker over a database with every table (create_all)."""
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    return engine, create_session_maker(engine)


async def seed_school(
    session_maker: async_sessionmaker,
    *,
    parents: int,
    org_name: str = "Школа № 1",
    org_kind: str = OrgKind.SCHOOL.value,
    timezone: str = "Europe/Moscow",
    group_title: str = "5А",
    teacher_tg: int = TEACHER_ID,
    teacher_name: str = "Анна Смирнова",
    teacher_locale: str | None = "en",
    first_parent_tg: int = FIRST_PARENT_ID,
    parent_locale: str | None = None,
    quiet_hours: tuple[str, str] | None = None,
) -> School:
    """An organisation (with its staff room), a class group, a verified teacher
    of the group and `parents` active parent members of it (Telegram ids
    first_parent_tg, first_parent_tg + 1, ...).

    No quiet hours unless asked for: a test must not depend on the hour it runs at
    (the product's default, 21:00-08:00, would hold every ordinary post of an
    evening run until the morning)."""
    now = utcnow()
    async with session_maker.begin() as session:
        repo = Repo(session)
        org, _staff = await repo.create_organisation(
            name=org_name, kind=org_kind, timezone=timezone, support_contact=None, staff_title="Staff room"
        )
        org.quiet_start, org.quiet_end = quiet_hours or (None, None)
        group = await repo.add_group(org.id, group_title)
        teacher = Person(telegram_id=teacher_tg, full_name=teacher_name, telegram_name=teacher_name,
                         locale=teacher_locale)
        session.add(teacher)
        await session.flush()
        session.add(Membership(org_id=org.id, group_id=group.id, person_id=teacher.id, role=Role.TEACHER.value,
                               state=MemberState.ACTIVE.value, verified_at=now))
        tgs = [first_parent_tg + i for i in range(parents)]
        if tgs:
            await session.execute(insert(Person), [
                {"telegram_id": t, "full_name": f"Родитель {i + 1}", "telegram_name": f"Parent {i + 1}",
                 "locale": parent_locale, "created_at": now}
                for i, t in enumerate(tgs)
            ])
            rows = await session.execute(select(Person.telegram_id, Person.id).where(Person.telegram_id.in_(tgs)))
            ids = {telegram_id: person_id for telegram_id, person_id in rows}
            await session.execute(insert(Membership), [
                {"org_id": org.id, "group_id": group.id, "person_id": ids[t], "role": Role.PARENT.value,
                 "state": MemberState.ACTIVE.value, "created_at": now}
                for t in tgs
            ])
        else:
            ids = {}
        return School(org_id=org.id, group_id=group.id, group_title=group_title, teacher_tg=teacher_tg,
                      teacher_person_id=teacher.id, parent_tgs=tgs, parent_person_ids=[ids[t] for t in tgs])


async def seed_invitation(
    session_maker: async_sessionmaker,
    school: School,
    *,
    role: str = Role.PARENT.value,
    code: str = INVITATION_CODE,
    max_uses: int | None = None,
    days: int = 14,
) -> str:
    """An invitation to the school's group made by its teacher, as /invite makes
    it (unlimited uses unless `max_uses`): people join with `/start <code>`.
    Returns the code."""
    async with session_maker.begin() as session:
        await Repo(session).add_invitation(
            org_id=school.org_id, group_id=school.group_id, role=role, code=code,
            created_by_id=school.teacher_person_id, expires_at=utcnow() + timedelta(days=days), max_uses=max_uses,
        )
    return code


async def enqueue_post(
    session_maker: async_sessionmaker,
    school: School,
    text: str = "Завтра <b>субботник</b>",
    *,
    kind: str = PostKind.ANNOUNCEMENT.value,
    ask_ack: bool = False,
    card: bool = True,
    default_locale: str = "ru",
) -> tuple[int, int]:
    """What /post → Send does (handlers/posting.send): the post, one outbox row
    per recipient (the group's parents) and, if `card`, the author's card.
    Returns (post id, number of copies)."""
    i18n = I18n.get_current(no_error=True) or create_i18n(default_locale)
    with i18n.context():
        return await _enqueue_post(session_maker, school, text, kind, ask_ack, card, default_locale)


async def _enqueue_post(
    session_maker: async_sessionmaker, school: School, text: str, kind: str, ask_ack: bool, card: bool,
    default_locale: str,
) -> tuple[int, int]:
    async with session_maker.begin() as session:
        repo = Repo(session)
        org = await repo.organisation(school.org_id)
        author = await repo.person(school.teacher_person_id)
        assert org is not None and author is not None
        post = Post(org_id=org.id, author_id=author.id, kind=kind, audience="groups", to_parents=True,
                    to_students=False, text=text, ask_ack=ask_ack, state=PostState.SENT.value, created_at=utcnow())
        post.groups = [PostGroup(org_id=org.id, group_id=school.group_id)]
        post = await repo.add_post(post)
        post = await repo.post(post.id)
        assert post is not None
        people = await repo.post_recipients(post, [school.group_id])
        count = await broadcast(repo, post, people, org=org, author_name=author.display_name,
                                audience=school.group_title, default_locale=default_locale)
        if card:
            await send_card(repo, post, org, author, default_locale)
        return post.id, count
