"""Several organisations on one bot (a municipal deployment): the platform's
administrator adds one with /org, people who belong to several choose the one
they act in, and nobody reaches an organisation that is not theirs."""

from __future__ import annotations

from aiogram.methods import AnswerCallbackQuery, SendMessage, SetMyCommands
from sqlalchemy import func, select

from storage.models import Group, Membership, Organisation
from storage.models import Person as PersonRow
from tests.conftest import ADMIN
from tests.flows import create_group, invite, join, set_quiet_hours, setup_org
from tests.harness import Harness, Person, button_data, only, texts

PARENT = Person(2001, "Мария")
OTHER = Person(2002, "Олег")


async def add_second_org(app: Harness, name: str = "Школа № 2") -> int:
    """The config admin adds an organisation through /org; returns its id."""
    calls = await app.send(ADMIN, "/org")
    menu = only(calls, SendMessage)[0]
    await app.press_on(ADMIN, menu, "org:new")
    calls = await app.send(ADMIN, name)
    await app.press_on(ADMIN, only(calls, SendMessage)[0], "setup:kind:school")
    calls = await app.send(ADMIN, "Asia/Yekaterinburg")
    calls = await app.press(ADMIN, button_data(only(calls, SendMessage)[0].reply_markup, "no_contact"))
    assert any(name in t and "✅" in t for t in texts(calls)), texts(calls)
    await app.flush()
    await set_quiet_hours(app, None, None)
    async with app.session_maker() as s:
        return (await s.scalars(select(Organisation.id).where(Organisation.name == name))).one()


async def current_org(app: Harness, who: Person) -> int | None:
    async with app.session_maker() as s:
        return await s.scalar(select(PersonRow.current_org_id).where(PersonRow.telegram_id == who.id))


async def test_the_platform_admin_adds_an_organisation_and_switches_between_them(app: Harness) -> None:
    await setup_org(app)
    await create_group(app, "5А")
    calls = await app.send(ADMIN, "/org")
    [menu] = only(calls, SendMessage)
    assert "Школа № 1" in menu.text and "✅ Школа № 1" in str(menu.reply_markup) and "org:new" in str(menu.reply_markup)

    second = await add_second_org(app)
    assert await current_org(app, ADMIN) == second
    async with app.session_maker() as s:
        org = await s.get(Organisation, second)
        assert (org.timezone, org.kind) == ("Asia/Yekaterinburg", "school")
        # Its own staff room, with the admin in it; the first organisation keeps its groups.
        staff = (await s.scalars(select(Group).where(Group.org_id == second))).all()
        assert [g.kind for g in staff] == ["staff"]
        assert await s.scalar(select(func.count()).select_from(Organisation)) == 2
    calls = await app.send(ADMIN, "/start")
    assert "Школа № 2" in texts(calls)[0]
    # Acting in the new one: /groups shows only its staff room, not 5А of the first.
    calls = await app.send(ADMIN, "/groups")
    assert "5А" not in str(only(calls, SendMessage)[0].reply_markup)
    await create_group(app, "1Б")
    async with app.session_maker() as s:
        assert (await s.scalars(select(Group.org_id).where(Group.title == "1Б"))).one() == second

    # Back to the first: its groups again, and the menu is sent again.
    calls = await app.send(ADMIN, "/org")
    [menu] = only(calls, SendMessage)
    assert "✅ Школа № 2" in str(menu.reply_markup)
    calls = await app.press_on(ADMIN, menu, "org:use:1")
    assert "Школа № 1" in texts(calls)[-1]
    assert await current_org(app, ADMIN) == 1
    sent = await app.flush()
    assert any(m.scope.chat_id == ADMIN.id and "org" in [c.command for c in m.commands]
               for m in only(sent, SetMyCommands))
    calls = await app.send(ADMIN, "/groups")
    markup = str(only(calls, SendMessage)[0].reply_markup)
    assert "5А" in markup and "1Б" not in markup
    # The same button again: nothing to do, said so.
    calls = await app.press(ADMIN, "org:use:1")
    assert "already" in texts(calls)[-1] or "уже" in texts(calls)[-1]


async def test_a_parent_in_two_schools_switches_and_sees_only_the_chosen_one(app: Harness) -> None:
    await setup_org(app)
    g1 = await create_group(app, "5А")
    code1 = await invite(app, ADMIN, g1, "parent")
    await join(app, PARENT, code1, "Мария Иванова", "Пётр Иванов")
    calls = await app.send(PARENT, "/org")  # one organisation: nothing to choose, not in the menu
    assert texts(calls)[0].startswith("⛔")
    assert only(calls, SendMessage)[0].reply_markup is None

    second = await add_second_org(app)
    g2 = await create_group(app, "1Б")
    code2 = await invite(app, ADMIN, g2, "parent")
    await join(app, PARENT, code2, "Мария Иванова", "Аня Иванова")
    # Just joined the second school: acting in it, told about /org.
    assert await current_org(app, PARENT) == second
    calls = await app.send(PARENT, "/start")
    assert "Школа № 2" in texts(calls)[0] and "1Б" in texts(calls)[0] and "5А" not in texts(calls)[0]
    assert "/org" in texts(calls)[0]
    sent = await app.flush()
    menus = [m for m in only(sent, SetMyCommands) if m.scope.chat_id == PARENT.id]
    assert menus and "org" in [c.command for c in menus[-1].commands]

    # The same group's code again while acting elsewhere is still "already a member".
    await app.press(PARENT, "org:use:1")
    calls = await app.send(PARENT, f"/join {code2}")
    calls += await app.send(PARENT, "Мария Иванова")
    calls += await app.send(PARENT, "Аня Иванова")
    calls = await app.press_on(PARENT, only(calls, SendMessage)[-1], "join:confirm")
    assert any("already" in t or "уже" in t for t in texts(calls)), texts(calls)
    async with app.session_maker() as s:
        n = await s.scalar(select(func.count()).select_from(Membership).join(PersonRow, PersonRow.id == Membership.person_id)
                           .where(PersonRow.telegram_id == PARENT.id))
        assert n == 2

    # A forged button for an organisation the parent does not belong to changes nothing.
    third = Organisation(name="Чужая школа", kind="school", timezone="Europe/Moscow")
    async with app.session_maker.begin() as s:
        s.add(third)
    calls = await app.press(PARENT, f"org:use:{third.id}")
    [alert] = only(calls, AnswerCallbackQuery)
    assert alert.show_alert and await current_org(app, PARENT) == 1
    # ...and only the platform's administrators add organisations.
    calls = await app.press(PARENT, "org:new")
    [alert] = only(calls, AnswerCallbackQuery)
    assert alert.show_alert
    calls = await app.send(PARENT, "Моя школа")  # not taken as an organisation's name
    async with app.session_maker() as s:
        assert await s.scalar(select(func.count()).select_from(Organisation)) == 3


async def test_a_newcomer_without_membership_is_told_how_to_join(app: Harness) -> None:
    await setup_org(app)
    calls = await app.send(OTHER, "/org")
    assert "invitation" in texts(calls)[0] or "приглашени" in texts(calls)[0]
    assert only(calls, SendMessage)[0].reply_markup is None


async def test_a_card_from_the_other_organisation_says_to_switch_first(app: Harness) -> None:
    from tests.test_requests import ask

    await setup_org(app)
    g1 = await create_group(app, "5А")
    await add_second_org(app)  # the admin now acts in the second school
    await ask(app, OTHER, "parent", g1, "Олег Петров", "Ваня Петров")  # a request to the first one
    sent = await app.flush()
    card = [c for c in only(sent, SendMessage) if c.chat_id == ADMIN.id and "req:approve" in str(c.reply_markup)][-1]
    calls = await app.press_on(ADMIN, card, "req:approve")
    [alert] = only(calls, AnswerCallbackQuery)
    assert alert.show_alert and "/org" in alert.text
    async with app.session_maker() as s:
        assert await s.scalar(select(func.count()).select_from(Membership).join(
            PersonRow, PersonRow.id == Membership.person_id).where(PersonRow.telegram_id == OTHER.id)) == 0
    await app.press(ADMIN, "org:use:1")
    calls = await app.press_on(ADMIN, card, "req:approve")
    assert not any(a.show_alert for a in only(calls, AnswerCallbackQuery))
    async with app.session_maker() as s:
        assert await s.scalar(select(func.count()).select_from(Membership).join(
            PersonRow, PersonRow.id == Membership.person_id).where(PersonRow.telegram_id == OTHER.id)) == 1


async def test_a_newcomer_chooses_the_organisation_to_ask_to_join(app: Harness) -> None:
    from storage.models import JoinRequest
    from tests.test_requests import ask

    await setup_org(app)
    await add_second_org(app)
    g2 = await create_group(app, "1Б")
    calls = await app.send(OTHER, "/start")
    assert "Школа № 1" in texts(calls)[0] and "/org" in texts(calls)[0]
    calls = await app.send(OTHER, "/org")
    [menu] = only(calls, SendMessage)
    assert "Школа № 1" in str(menu.reply_markup) and "Школа № 2" in str(menu.reply_markup)
    assert "org:new" not in str(menu.reply_markup)
    calls = await app.press_on(OTHER, menu, f"org:use:{await current_org(app, ADMIN)}")
    assert "/start" in texts(calls)[-1]
    calls = await ask(app, OTHER, "parent", g2, "Олег Петров", "Ваня Петров")
    async with app.session_maker() as s:
        [request] = (await s.scalars(select(JoinRequest))).all()
        assert request.group_id == g2 and request.org_id == await current_org(app, ADMIN)


async def test_the_only_admin_of_another_organisation_cannot_forget_themselves(app: Harness) -> None:
    from tests.flows import staff_room_id

    await setup_org(app)
    code = await invite(app, ADMIN, await staff_room_id(app), "admin")
    await join(app, OTHER, code, "Олег Админов")  # a second admin in the first school
    await add_second_org(app)  # where ADMIN is the only one
    await app.press(ADMIN, "org:use:1")  # acting where another admin remains
    calls = await app.send(ADMIN, "/forget")
    assert "last administrator" in texts(calls)[0] or "последний администратор" in texts(calls)[0]
    calls = await app.press(ADMIN, "fg:yes")  # nor by the button
    [alert] = only(calls, AnswerCallbackQuery)
    assert alert.show_alert
    async with app.session_maker() as s:
        assert (await s.scalars(select(PersonRow.forgotten_at).where(PersonRow.telegram_id == ADMIN.id))).one() is None
    # The other admin may leave: the first school keeps its first admin.
    calls = await app.send(OTHER, "/forget")
    assert only(calls, SendMessage)[0].reply_markup is not None


async def test_a_member_acting_in_another_school_is_still_let_into_their_class_chat(app: Harness) -> None:
    from aiogram.methods import ApproveChatJoinRequest

    from tests.harness import group_chat
    from tests.test_chats import link, linked

    await setup_org(app)
    g1 = await create_group(app, "5А")
    await join(app, PARENT, await invite(app, ADMIN, g1, "parent"), "Мария Иванова", "Пётр Иванов")
    chat = group_chat(-1001, "5А родители")
    await link(app, ADMIN, g1, chat)
    [row] = await linked(app)
    second = await add_second_org(app)
    g2 = await create_group(app, "1Б")
    await join(app, PARENT, await invite(app, ADMIN, g2, "parent"), "Мария Иванова", "Аня Иванова")
    assert await current_org(app, PARENT) == second
    calls = await app.join_request(PARENT, chat, row.invite_link)
    assert only(calls, ApproveChatJoinRequest), texts(calls)


async def test_memberships_only_in_archived_groups_count_as_none(app: Harness) -> None:
    from sqlalchemy import update

    from storage.models import utcnow

    await setup_org(app)
    g1 = await create_group(app, "5А")
    await join(app, PARENT, await invite(app, ADMIN, g1, "parent"), "Мария Иванова", "Пётр Иванов")
    second = await add_second_org(app)
    async with app.session_maker.begin() as s:
        await s.execute(update(Group).where(Group.id == g1).values(archived_at=utcnow()))
    calls = await app.send(PARENT, "/org")  # like a newcomer: may choose where to ask to join
    calls = await app.press_on(PARENT, only(calls, SendMessage)[0], f"org:use:{second}")
    calls = await app.send(PARENT, "/start")
    assert "Школа № 2" in texts(calls)[0], texts(calls)
