"""The first start of an ADMIN_IDS user: the organisation dialog."""

from __future__ import annotations

from aiogram.methods import AnswerCallbackQuery, SendMessage, SetMyCommands
from sqlalchemy import func, select

from storage.models import Group, Membership, Organisation
from tests.conftest import ADMIN
from tests.harness import Harness, Person, button_data, only, texts


async def count(app: Harness, model: type) -> int:
    async with app.session_maker() as s:
        return await s.scalar(select(func.count()).select_from(model))


async def setup_org(app: Harness, name: str = "Детский сад «Солнышко»", kind: str = "kindergarten") -> None:
    calls = await app.send(ADMIN, "/start")
    assert "1/4" in texts(calls)[0]
    calls = await app.send(ADMIN, name)
    await app.press_on(ADMIN, only(calls, SendMessage)[0], f"setup:kind:{kind}")
    await app.send(ADMIN, "Asia/Yekaterinburg")
    await app.send(ADMIN, "+7 900 000-00-00")


async def test_setup_dialog_creates_the_organisation_and_staff_room(app: Harness) -> None:
    await setup_org(app)
    async with app.session_maker() as s:
        org = (await s.scalars(select(Organisation))).one()
        assert (org.name, org.kind, org.timezone, org.support_contact) == (
            "Детский сад «Солнышко»", "kindergarten", "Asia/Yekaterinburg", "+7 900 000-00-00",
        )
        staff = (await s.scalars(select(Group))).one()
        assert (staff.kind, staff.title, staff.org_id) == ("staff", "Учительская", org.id)
        admin = (await s.scalars(select(Membership))).one()
        assert (admin.role, admin.state, admin.group_id) == ("admin", "active", staff.id)
    # The admin's menu follows their new role.
    sent = await app.flush()
    menus = only(sent, SetMyCommands)
    assert menus and "invite" in [c.command for c in menus[-1].commands]
    assert menus[-1].scope.chat_id == ADMIN.id


async def test_setup_rejects_bad_input_and_unknown_time_zone(app: Harness) -> None:
    await app.send(ADMIN, "/start")
    calls = await app.send(ADMIN, "!!")
    assert "2 to 128" in texts(calls)[0] or "от 2 до 128" in texts(calls)[0]
    calls = await app.send(ADMIN, "Школа № 5")
    kinds = only(calls, SendMessage)[0]
    # A forged kind changes nothing.
    calls = await app.press(ADMIN, "setup:kind:prison")
    assert only(calls, AnswerCallbackQuery)[0].show_alert
    await app.press_on(ADMIN, kinds, "setup:kind:school")
    calls = await app.send(ADMIN, "Mars/Olympus")
    assert "Mars/Olympus" in texts(calls)[0]
    calls = await app.send_photo(ADMIN)
    assert texts(calls)  # a hint, not silence
    calls = await app.send(ADMIN, "europe/moscow")
    await app.press(ADMIN, button_data(only(calls, SendMessage)[0].reply_markup, "no_contact"))
    async with app.session_maker() as s:
        org = (await s.scalars(select(Organisation))).one()
        assert (org.kind, org.timezone, org.support_contact) == ("school", "Europe/Moscow", None)


async def test_cancel_in_setup_changes_nothing(app: Harness) -> None:
    await app.send(ADMIN, "/start")
    await app.send(ADMIN, "Школа")
    calls = await app.send(ADMIN, "/cancel")
    assert "Отменено" in texts(calls)[0]
    assert await count(app, Organisation) == 0
    calls = await app.send(ADMIN, "/cancel")
    assert "нечего" in texts(calls)[0].lower()


async def test_a_stranger_before_setup_is_told_to_wait(app: Harness) -> None:
    calls = await app.send(Person(5, "Гость"), "/start")
    assert "не настроен" in texts(calls)[0]
    assert await count(app, Organisation) == 0
