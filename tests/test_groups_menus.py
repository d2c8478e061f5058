"""Groups, menus by role, /help, /language, and buttons from people without rights."""

from __future__ import annotations

from aiogram.methods import AnswerCallbackQuery, EditMessageText, SendMessage, SetMyCommands
from sqlalchemy import select

PARENT_MENU = ["absent"]
from storage.models import AuditEntry, Group
from storage.models import Person as PersonRow
from tests.conftest import ADMIN
from tests.flows import (
    create_group,
    group_id,
    invite,
    join,
    memberships,
    setup_org,
    staff_room_id,
    to_english,
)
from tests.harness import Harness, Person, answers, button_data, only, texts

PARENT = Person(2001, "Мария")
TEACHER = Person(3001, "Анна")


async def groups(app: Harness) -> list[tuple[str, str, bool]]:
    async with app.session_maker() as s:
        rows = await s.execute(select(Group.title, Group.kind, Group.archived_at.is_not(None)).order_by(Group.id))
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_admin_creates_renames_and_archives_groups(app: Harness) -> None:
    await setup_org(app)
    await to_english(app, ADMIN)
    g = await create_group(app, "Солнышко")
    calls = await app.send(ADMIN, "/groups")
    await app.press(ADMIN, button_data(only(calls, SendMessage)[0].reply_markup, "grp:new"))
    calls = await app.send(ADMIN, "солнышко")  # the same name, other case
    assert "already a group" in texts(calls)[0]
    calls = await app.send(ADMIN, "x")
    assert "2 to 64" in texts(calls)[0]
    await app.send(ADMIN, "/cancel")
    await app.press(ADMIN, f"grp:open:{g}")
    await app.press(ADMIN, f"grp:rename:{g}")
    calls = await app.send(ADMIN, "Радуга")
    assert "Радуга" in texts(calls)[0]
    calls = await app.press(ADMIN, f"grp:archive:{g}")
    assert "Archive" in texts(calls)[-1]
    assert (await groups(app))[1] == ("Радуга", "class", False)  # only asked
    await app.press(ADMIN, f"grp:archive_yes:{g}")
    assert (await groups(app))[1] == ("Радуга", "class", True)
    # The staff room cannot be archived, even by a forged button.
    calls = await app.press(ADMIN, f"grp:archive_yes:{await staff_room_id(app)}")
    assert answers(calls)[0].show_alert
    assert (await groups(app))[0][2] is False
    async with app.session_maker() as s:
        actions = (await s.scalars(select(AuditEntry.action).order_by(AuditEntry.id))).all()
    assert actions == ["org.setup", "group.create", "group.rename", "group.archive"]


async def test_archived_group_invitations_stop_working(app: Harness) -> None:
    await setup_org(app)
    g = await create_group(app, "Радуга")
    code = await invite(app, ADMIN, g, "parent")
    await app.press(ADMIN, f"grp:archive_yes:{g}")
    await to_english(app, PARENT)
    calls = await app.send(PARENT, f"/start {code}")
    assert "archived" in texts(calls)[0]


async def test_a_parent_cannot_change_groups_with_forged_buttons(app: Harness) -> None:
    await setup_org(app)
    g = await create_group(app, "5А")
    code = await invite(app, ADMIN, g, "parent")
    await join(app, PARENT, code, "Мария Иванова", "Пётр Иванов")
    for data in (f"grp:open:{g}", f"grp:rename:{g}", f"grp:archive_yes:{g}", "grp:new:0"):
        calls = await app.press(PARENT, data)
        assert answers(calls)[0].show_alert, data
    # Even in the rename state (forged), a parent's text renames nothing.
    key = app.dp.fsm.resolve_context(app.bot, PARENT.id, PARENT.id)
    from handlers.groups import GroupForm

    await key.set_state(GroupForm.title)
    await key.update_data(group_id=g)
    await app.send(PARENT, "Взломано")
    assert [t for t, *_ in await groups(app)] == ["Учительская", "5А"]
    calls = await app.send(PARENT, "/groups")
    assert "5А" in texts(calls)[0] and only(calls, SendMessage)[0].reply_markup is None
    for command in ("/invite", "/invites", "/requests", "/members"):
        calls = await app.send(PARENT, command)
        assert texts(calls) and only(calls, SendMessage)[0].reply_markup is None, command


# The menu's order is bot.rights.COMMANDS's.
START = ["start", "join", "help"]
MEMBER = ["schedule", "events", "write", "settings", "groups"]
STAFF = ["post", "scheduled", "invite", "invites", "requests", "absences", "members", "families", "import"]
ACCOUNT = ["language", "cancel", "mydata", "forget"]


async def menu_of(app: Harness, who: Person, sent: list) -> list[str]:
    menus = [m for m in only(sent, SetMyCommands) if m.scope.chat_id == who.id]
    return [c.command for c in menus[-1].commands]


async def test_menus_follow_roles(app: Harness) -> None:
    await setup_org(app)
    g = await create_group(app, "5А")
    admin_menu = await menu_of(app, ADMIN, app.requests)  # everything sent so far
    # The platform's administrator (ADMIN_IDS) also has /org: to add organisations.
    assert admin_menu == [*START, *MEMBER, *STAFF, "stats", "audit", "org", *ACCOUNT]
    code = await invite(app, ADMIN, g, "parent")
    await join(app, PARENT, code, "Мария Иванова", "Пётр Иванов")
    assert await menu_of(app, PARENT, await app.flush()) == [*START, *MEMBER, *PARENT_MENU, *ACCOUNT]
    tcode = await invite(app, ADMIN, g, "teacher")
    await join(app, TEACHER, tcode, "Анна Смирнова")
    sent = await app.flush()
    assert await menu_of(app, TEACHER, sent) == [*START, *ACCOUNT]  # unverified: nothing to do yet
    card = [c for c in only(sent, SendMessage) if "ver:yes" in str(c.reply_markup)][0]
    await app.press_on(ADMIN, card, "ver:yes")
    # A verified teacher: everything for their class (not /stats, /audit, /org).
    assert await menu_of(app, TEACHER, await app.flush()) == [*START, *MEMBER, *STAFF, *ACCOUNT]


async def test_language_switch_is_remembered_and_changes_the_menu(app: Harness) -> None:
    await setup_org(app)
    await app.flush()
    calls = await app.send(ADMIN, "/language")
    assert "lang:en" in str(only(calls, SendMessage)[0].reply_markup)
    calls = await app.press(ADMIN, "lang:en")
    assert only(calls, EditMessageText)[0].text == "Language: English. Your menu is updated."
    sent = await app.flush()
    menu = [m for m in only(sent, SetMyCommands) if m.scope.chat_id == ADMIN.id][-1]
    assert menu.commands[0].description == "Start: what I can do here"
    calls = await app.send(ADMIN, "/help")
    assert "What you can do here" in texts(calls)[0] and "/invite" in texts(calls)[0]
    async with app.session_maker() as s:
        assert (await s.scalars(select(PersonRow.locale).where(PersonRow.telegram_id == ADMIN.id))).one() == "en"
    calls = await app.press(ADMIN, "lang:de")
    assert answers(calls)[0].show_alert
    await app.press(ADMIN, "lang:ru")
    calls = await app.send(ADMIN, "/help")
    assert "/invite" in texts(calls)[0] and "What you can do" not in texts(calls)[0]


async def test_help_shows_the_support_contact_and_only_own_commands(app: Harness) -> None:
    await app.send(ADMIN, "/start")
    calls = await app.send(ADMIN, "Школа")
    await app.press_on(ADMIN, only(calls, SendMessage)[0], "setup:kind:school")
    await app.press(ADMIN, "setup:tz_default:")
    await app.send(ADMIN, "@school_help")
    g = await group_id(app, "Учительская")
    code = await invite(app, ADMIN, await create_group(app, "5А"), "parent")
    await join(app, PARENT, code, "Мария Иванова", "Пётр Иванов")
    await to_english(app, PARENT)
    calls = await app.send(PARENT, "/help")
    help_text = texts(calls)[0]
    assert "@school_help" in help_text and "/invite" not in help_text and "/join" in help_text
    assert g


async def test_unknown_messages_and_buttons_always_get_an_answer(app: Harness) -> None:
    await setup_org(app)
    await to_english(app, PARENT)
    calls = await app.send(PARENT, "hello?")
    assert "/help" in texts(calls)[0]
    calls = await app.press(PARENT, "no-such-button")
    assert answers(calls)[0].show_alert


async def test_stranger_sees_how_to_join(app: Harness) -> None:
    await setup_org(app)
    await to_english(app, PARENT)
    calls = await app.send(PARENT, "/start")
    assert "/join CODE" in texts(calls)[0]
    assert "ask:start" in str(only(calls, SendMessage)[0].reply_markup)


async def test_admin_appoints_another_admin_with_confirmation(app: Harness) -> None:
    await setup_org(app)
    g = await create_group(app, "5А")
    tcode = await invite(app, ADMIN, g, "teacher")
    await join(app, TEACHER, tcode, "Анна Смирнова")
    card = [c for c in only(await app.flush(), SendMessage) if "ver:yes" in str(c.reply_markup)][0]
    await app.press_on(ADMIN, card, "ver:yes")
    staff = await staff_room_id(app)
    calls = await app.send(ADMIN, "/members")
    calls = await app.press(ADMIN, button_data(only(calls, SendMessage)[0].reply_markup, f"mem:group:{staff}"))
    markup = only(calls, EditMessageText)[0].reply_markup
    teacher_card = next(b.callback_data for row in markup.inline_keyboard for b in row if b.text.startswith("Анна"))
    calls = await app.press(ADMIN, teacher_card)
    person_id = int(button_data(only(calls, EditMessageText)[0].reply_markup, "mem:admin").rsplit(":", 1)[1])
    await app.press(ADMIN, f"mem:admin:{staff}:{person_id}")
    assert ("Учительская", "admin", "active") not in await memberships(app, TEACHER.id)  # asked only
    # The teacher cannot appoint themselves or anyone.
    calls = await app.press(TEACHER, f"mem:admin_yes:{staff}:{person_id}")
    assert answers(calls)[0].show_alert
    await app.press(ADMIN, f"mem:admin_yes:{staff}:{person_id}")
    assert ("Учительская", "admin", "active") in await memberships(app, TEACHER.id)
    calls = await app.press(ADMIN, f"mem:admin_yes:{staff}:{person_id}")  # pressed twice
    assert answers(calls)[0].show_alert
    sent = await app.flush()
    assert any(c.chat_id == TEACHER.id for c in only(sent, SendMessage))
    assert "groups" in await menu_of(app, TEACHER, sent)


async def test_parent_cannot_see_members(app: Harness) -> None:
    await setup_org(app)
    g = await create_group(app, "5А")
    code = await invite(app, ADMIN, g, "parent")
    await join(app, PARENT, code, "Мария Иванова", "Пётр Иванов")
    calls = await app.press(PARENT, f"mem:group:{g}:0")
    assert answers(calls)[0].show_alert and answers(calls)[0].text.startswith("⛔")
    assert not only(calls, EditMessageText)


def test_every_filter_and_handler_runs_in_the_event_loop() -> None:
    """aiogram runs a synchronous filter or handler in a worker thread
    (asyncio.to_thread): a bare State or a magic F given as a filter costs a
    thread hop on every check (handlers/filters.py). None may be registered."""
    import handlers

    root = handlers.create_router()
    sync = []
    for router in root.chain_tail:
        for name, observer in router.observers.items():
            for f in observer._handler.filters or []:  # the router-wide filters
                if not f.awaitable:
                    sync.append(f"{router.name}.{name} filter {f.callback!r}")
            for handler in observer.handlers:
                if not handler.awaitable:
                    sync.append(f"{router.name}.{name} handler {handler.callback!r}")
                sync += [f"{router.name}.{name} {handler.callback.__name__}: {f.callback!r}"
                         for f in handler.filters or [] if not f.awaitable]
    assert len(list(root.chain_tail)) > 15
    assert not sync, "\n".join(sync)


async def test_forged_buttons_with_ids_beyond_a_database_integer_are_stale_buttons(app: Harness) -> None:
    """PostgreSQL's INTEGER ends at 2**31 - 1; a bigger id in a forged button must not reach a query."""
    await setup_org(app)
    g = await create_group(app, "5А")
    for data in (f"grp:open:{2**31}", f"p:ack:{2**63}", f"req:approve:{2**31}", f"mem:group:{-2**31 - 1}:0:0",
                 f"inv:group:{g}::{2**40}:0"):
        calls = await app.press(ADMIN, data)
        [alert] = only(calls, AnswerCallbackQuery)
        assert alert.show_alert and "/start" in (alert.text or ""), (data, alert.text)  # "this button no longer works"
        assert not any("Sorry" in t or "Извините" in t for t in texts(calls)), (data, texts(calls))
