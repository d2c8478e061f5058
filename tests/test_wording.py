"""Wording a person reads on the way: an administrator's home screen, a join
request's summary, the message that a teacher is verified."""

from __future__ import annotations

from aiogram.methods import SendMessage

from tests.conftest import ADMIN
from tests.flows import create_group, invite, join, setup_org, staff_room_id
from tests.harness import Harness, Person, button_data, only, texts

SECOND_ADMIN = Person(1002, "Пётр", "en")
TEACHER = Person(3001, "Анна", "en")
ASKER = Person(4001, "Ирина", "en")


async def test_an_administrators_home_screen_names_the_role_of_the_organisation_not_a_group(app: Harness) -> None:
    await setup_org(app)
    a = await create_group(app, "5А")
    await join(app, SECOND_ADMIN, await invite(app, ADMIN, await staff_room_id(app), "admin"), "Пётр Второй")
    [home] = texts(await app.send(SECOND_ADMIN, "/start"))
    assert "You are an administrator of the organisation." in home
    assert "administrator" not in home.split("You are in:")[1], home  # the group list lists groups
    assert "• 🏫 Учительская\n" in home
    # A teacher's groups keep their roles; the waiting is said where it belongs.
    await join(app, TEACHER, await invite(app, ADMIN, a, "teacher"), "Анна Смирнова")
    [home] = texts(await app.send(TEACHER, "/start"))
    assert "administrator of the organisation" not in home
    assert "• 5А — teacher (waiting for verification)" in home
    # The first administrator, in Russian.
    [home] = texts(await app.send(ADMIN, "/start"))
    assert "Вы администратор организации." in home and "• 🏫 Учительская\n" in home
    assert "— администратор" not in home


async def test_a_join_request_says_which_group_to_the_asker_and_to_the_deciders(app: Harness) -> None:
    await setup_org(app)
    await create_group(app, "5А")
    b = await create_group(app, "6Б")
    calls = await app.send(ASKER, "/start")
    await app.press(ASKER, button_data(only(calls, SendMessage)[0].reply_markup, "ask:start"))
    await app.press(ASKER, "ask:role:parent:0")
    await app.press(ASKER, f"ask:group::{b}")
    await app.send(ASKER, "Ирина Петрова")
    calls = await app.send(ASKER, "Петя Петров")
    summary = texts(calls)[-1]
    assert summary.startswith("Please check your request:") and "Group: 6Б" in summary, summary
    assert "5А" not in summary
    await app.press(ASKER, "ask:confirm::0")
    [card] = [c for c in only(await app.flush(), SendMessage) if c.chat_id == ADMIN.id]
    assert "6Б" in card.text and "Ирина Петрова" in card.text and "5А" not in card.text


async def test_a_newly_verified_teacher_is_told_what_they_can_now_do(app: Harness) -> None:
    await setup_org(app)
    a = await create_group(app, "5А")
    await join(app, TEACHER, await invite(app, ADMIN, a, "teacher"), "Анна Смирнова")
    card = [c for c in only(await app.flush(), SendMessage) if "ver:yes" in str(c.reply_markup)][0]
    await app.press_on(ADMIN, card, "ver:yes")
    [told] = [c.text for c in only(await app.flush(), SendMessage) if c.chat_id == TEACHER.id]
    assert "verified you as teacher in 5А" in told
    assert "/post — Post to families or staff" in told and "/invite — Create an invitation" in told, told
    assert "/stats" not in told and "/audit" not in told  # only what the table gives a teacher
    assert told.endswith("All your commands: /help")
    # In Russian for a Russian teacher.
    ru = Person(3002, "Борис", "ru")
    await join(app, ru, await invite(app, ADMIN, a, "teacher"), "Борис Петров")
    card = [c for c in only(await app.flush(), SendMessage) if "ver:yes" in str(c.reply_markup)][-1]
    await app.press_on(ADMIN, card, "ver:yes")
    [told] = [c.text for c in only(await app.flush(), SendMessage) if c.chat_id == ru.id]
    assert "/post — " in told and "Post to families" not in told
