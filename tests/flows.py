"""Steps the tests repeat, each done the way a person does it: through the bot."""

from __future__ import annotations

import re

from aiogram.methods import EditMessageText, SendMessage, SendPhoto
from sqlalchemy import select

from storage.models import Group, Invitation, Membership, Person as PersonRow
from tests.conftest import ADMIN
from tests.harness import Harness, Person, button_data, only, texts


async def setup_org(app: Harness, kind: str = "school") -> None:
    await app.send(ADMIN, "/start")
    calls = await app.send(ADMIN, "Школа № 1")
    await app.press_on(ADMIN, only(calls, SendMessage)[0], f"setup:kind:{kind}")
    calls = await app.send(ADMIN, "Europe/Moscow")
    await app.press(ADMIN, button_data(only(calls, SendMessage)[0].reply_markup, "no_contact"))
    await app.flush()
    await set_quiet_hours(app, None, None)  # tests must not depend on the hour they run at


async def set_quiet_hours(app: Harness, start: str | None, end: str | None) -> None:
    from sqlalchemy import update

    from storage.models import Organisation

    async with app.session_maker.begin() as s:
        await s.execute(update(Organisation).values(quiet_start=start, quiet_end=end))


async def to_english(app: Harness, who: Person) -> None:
    await app.press(who, "lang:en")


async def create_group(app: Harness, title: str, who: Person = ADMIN) -> int:
    calls = await app.send(who, "/groups")
    await app.press(who, button_data(only(calls, SendMessage)[0].reply_markup, "grp:new"))
    await app.send(who, title)
    return await group_id(app, title)


async def group_id(app: Harness, title: str) -> int:
    async with app.session_maker() as s:
        return (await s.scalars(select(Group.id).where(Group.title == title))).one()


async def staff_room_id(app: Harness) -> int:
    async with app.session_maker() as s:
        return (await s.scalars(select(Group.id).where(Group.kind == "staff"))).one()


async def invite(
    app: Harness, who: Person, group: int, role: str, days: int = 14, uses: int = 0, approval: bool = False
) -> str:
    """Walks the /invite wizard; returns the code from the QR caption. A parents'
    code asks the teacher's approval by default; unless `approval`, it is switched
    off here with the button under the new invitation, as a teacher would."""
    await app.send(who, "/invite")
    await app.press(who, f"inv:group:{group}::0:0")
    await app.press(who, f"inv:role:{group}:{role}:0:0")
    await app.press(who, f"inv:days:{group}:{role}:{days}:0")
    calls = await app.press(who, f"inv:make:{group}:{role}:{days}:{uses}")
    photos = only(calls, SendPhoto)
    assert photos, texts(calls)
    if role == "parent" and not approval:
        made = only(calls, EditMessageText)[-1]
        await app.press(who, button_data(made.reply_markup, "poster:approval_off"))
    return re.search(r"/join ([A-Z0-9]{10})", photos[0].caption or "").group(1)  # type: ignore[union-attr]


async def join(app: Harness, who: Person, code: str, name: str, child: str | None = None, via: str = "/start") -> list:
    calls = await app.send(who, f"{via} {code}")
    calls += await app.send(who, name)
    if child is not None:
        calls += await app.send(who, child)
    confirm = only(calls, SendMessage)[-1]
    calls += await app.press_on(who, confirm, "join:confirm")
    return calls


async def memberships(app: Harness, telegram_id: int) -> list[tuple[str, str, str]]:
    """(group title, role, state) of a person, sorted."""
    async with app.session_maker() as s:
        rows = await s.execute(
            select(Group.title, Membership.role, Membership.state)
            .join(Membership, Membership.group_id == Group.id)
            .join(PersonRow, PersonRow.id == Membership.person_id)
            .where(PersonRow.telegram_id == telegram_id)
        )
        return sorted(tuple(r) for r in rows)  # type: ignore[misc]


async def invitation(app: Harness, code: str) -> Invitation:
    async with app.session_maker() as s:
        return (await s.scalars(select(Invitation).where(Invitation.code == code))).one()


def last_edit_or_send(calls: list) -> SendMessage | EditMessageText:
    return [c for c in calls if isinstance(c, (SendMessage, EditMessageText))][-1]
