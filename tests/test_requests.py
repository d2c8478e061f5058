"""Join requests: asked without a code, decided once by whoever presses first."""

from __future__ import annotations

from aiogram.methods import EditMessageText, SendMessage, SetMyCommands
from sqlalchemy import select

from storage.models import JoinRequest
from tests.conftest import ADMIN
from tests.flows import create_group, invite, join, memberships, setup_org, staff_room_id, to_english
from tests.harness import Harness, Person, answers, button_data, only, texts

ASKER = Person(4001, "Ирина", "en")
ASKER2 = Person(4002, "Павел", "en")
TEACHER = Person(3001, "Анна", "en")
OTHER_TEACHER = Person(3002, "Борис", "en")


async def ask(app: Harness, who: Person, role: str, group: int, name: str, child: str | None = None) -> list:
    if who.language_code == "en":
        await to_english(app, who)
    calls = await app.send(who, "/start")
    calls += await app.press(who, button_data(only(calls, SendMessage)[0].reply_markup, "ask:start"))
    calls += await app.press(who, f"ask:role:{role}:0")
    calls += await app.press(who, f"ask:group::{group}")
    calls += await app.send(who, name)
    if child:
        calls += await app.send(who, child)
    calls += await app.press(who, "ask:confirm::0")
    return calls


async def verified_teacher(app: Harness, who: Person, group: int) -> None:
    code = await invite(app, ADMIN, group, "teacher")
    await to_english(app, who)
    await join(app, who, code, f"{who.first_name} Педагогова")
    cards = [c for c in await app.flush() if isinstance(c, SendMessage) and "ver:yes" in str(c.reply_markup)]
    await app.press_on(ADMIN, cards[-1], "ver:yes")
    await app.flush()


async def requests(app: Harness) -> list[JoinRequest]:
    async with app.session_maker() as s:
        return list((await s.scalars(select(JoinRequest).order_by(JoinRequest.id))).all())


async def test_parent_request_goes_to_admins_and_the_groups_teachers_and_first_decision_wins(app: Harness) -> None:
    await setup_org(app)
    group = await create_group(app, "5А")
    other = await create_group(app, "6Б")
    await verified_teacher(app, TEACHER, group)
    await verified_teacher(app, OTHER_TEACHER, other)
    await to_english(app, ASKER)
    calls = await ask(app, ASKER, "parent", group, "Ирина Ковалёва", "Маша Ковалёва")
    assert "request to join 5А is sent" in texts(calls)[-1]
    [req] = await requests(app)
    assert (req.state, req.role, req.full_name, req.child_name) == ("pending", "parent", "Ирина Ковалёва", "Маша Ковалёва")
    cards = [c for c in await app.flush() if isinstance(c, SendMessage) and "req:approve" in str(c.reply_markup)]
    # Every admin and this group's verified teacher, not the other group's.
    assert sorted(c.chat_id for c in cards) == sorted([ADMIN.id, TEACHER.id])
    teacher_card = next(c for c in cards if c.chat_id == TEACHER.id)
    admin_card = next(c for c in cards if c.chat_id == ADMIN.id)
    # A teacher of another group cannot decide, even with the right data.
    calls = await app.press(OTHER_TEACHER, button_data(teacher_card.reply_markup, "req:approve"))
    assert answers(calls)[0].show_alert
    assert (await requests(app))[0].state == "pending"
    # The teacher approves; the admin's copy follows; the parent is told and joined.
    calls = await app.press_on(TEACHER, teacher_card, "req:approve")
    assert "Approved" in texts(calls)[-1]
    assert await memberships(app, ASKER.id) == [("5А", "parent", "active")]
    sent = await app.flush()
    edits = only(sent, EditMessageText)
    # The admin reads Russian (their language), not the decider's English.
    assert [e.chat_id for e in edits] == [ADMIN.id] and "Одобрил(а): Анна Педагогова" in edits[0].text
    told = [c for c in only(sent, SendMessage) if c.chat_id == ASKER.id]
    assert "approved" in told[0].text
    assert [m for m in only(sent, SetMyCommands) if m.scope.chat_id == ASKER.id]
    # The admin's later press changes nothing and says who decided.
    calls = await app.press(ADMIN, button_data(admin_card.reply_markup, "req:reject"))
    assert "одобрил(а) Анна Педагогова" in answers(calls)[0].text
    assert (await requests(app))[0].state == "approved"
    assert await memberships(app, ASKER.id) == [("5А", "parent", "active")]


async def test_teacher_request_goes_only_to_admins_and_reject_tells_the_requester(app: Harness) -> None:
    await setup_org(app)
    group = await create_group(app, "5А")
    await verified_teacher(app, TEACHER, group)
    await ask(app, ASKER2, "teacher", group, "Павел Учителев")
    cards = [c for c in await app.flush() if isinstance(c, SendMessage) and "req:approve" in str(c.reply_markup)]
    assert [c.chat_id for c in cards] == [ADMIN.id]
    calls = await app.press(TEACHER, button_data(cards[0].reply_markup, "req:approve"))
    assert answers(calls)[0].show_alert  # a teacher does not decide on staff
    await app.press(ADMIN, button_data(cards[0].reply_markup, "req:reject"))
    assert (await requests(app))[0].state == "rejected"
    assert await memberships(app, ASKER2.id) == []
    told = [c for c in only(await app.flush(), SendMessage) if c.chat_id == ASKER2.id]
    assert "not approved" in told[0].text


async def test_approved_teacher_request_is_verified_at_once(app: Harness) -> None:
    await setup_org(app)
    group = await create_group(app, "5А")
    await ask(app, ASKER2, "teacher", group, "Павел Учителев")
    [req] = await requests(app)
    await app.press(ADMIN, f"req:approve:{req.id}")
    assert await memberships(app, ASKER2.id) == sorted([("5А", "teacher", "active"), ("Учительская", "teacher", "active")])


async def test_duplicate_request_and_requests_list(app: Harness) -> None:
    await setup_org(app)
    group = await create_group(app, "5А")
    await ask(app, ASKER, "student", group, "Ирина Ученикова")
    calls = await ask(app, ASKER, "student", group, "Ирина Ученикова")
    assert any("already asked" in t for t in texts(calls))
    assert len(await requests(app)) == 1
    await to_english(app, ADMIN)
    calls = await app.send(ADMIN, "/requests")
    assert "1" in texts(calls)[0] and "Ирина Ученикова" in texts(calls)[1]
    assert "req:approve" in str(only(calls, SendMessage)[1].reply_markup)
    calls = await app.send(ASKER, "/requests")
    assert texts(calls)[0].startswith("⛔")


async def test_forged_request_buttons_change_nothing(app: Harness) -> None:
    await setup_org(app)
    group = await create_group(app, "5А")
    await ask(app, ASKER, "parent", group, "Ирина Ковалёва", "Маша")
    [req] = await requests(app)
    for who in (ASKER, ASKER2):
        calls = await app.press(who, f"req:approve:{req.id}")
        assert answers(calls)[0].show_alert
    calls = await app.press(ADMIN, "req:approve:99999")
    assert answers(calls)[0].show_alert
    calls = await app.press(ADMIN, "req:explode:1")
    assert answers(calls)[0].show_alert  # an unknown button is answered, not ignored
    assert (await requests(app))[0].state == "pending"
    # Asking for a forged role or group is refused too.
    await app.send(ASKER2, "/start")
    await app.press(ASKER2, "ask:start::0")
    calls = await app.press(ASKER2, "ask:role:admin:0")
    assert answers(calls)[0].show_alert
    await app.press(ASKER2, "ask:role:parent:0")
    calls = await app.press(ASKER2, f"ask:group::{await staff_room_id(app)}")
    assert answers(calls)[0].show_alert


async def test_kindergarten_offers_no_student_role(app: Harness) -> None:
    await setup_org(app, kind="kindergarten")
    await create_group(app, "Солнышко")
    calls = await app.send(ASKER, "/start")
    calls = await app.press(ASKER, button_data(only(calls, SendMessage)[0].reply_markup, "ask:start"))
    markup = str(only(calls, SendMessage)[0].reply_markup)
    assert "ask:role:parent" in markup and "ask:role:student" not in markup


async def test_a_second_press_whose_edit_changes_nothing_is_not_an_error(app: Harness) -> None:
    """Telegram refuses an edit that changes nothing; the way out (bot.outbox.send_reply)
    takes it as done. Answers leave after the commit, so no refusal of one can undo
    the update or make it say "Sorry"."""
    await setup_org(app)
    group = await create_group(app, "5А")
    await ask(app, ASKER, "parent", group, "Ирина Ковалёва", "Маша Ковалёва")
    card = [c for c in await app.flush() if isinstance(c, SendMessage) and "req:approve" in str(c.reply_markup)][0]
    await app.press_on(ADMIN, card, "req:approve")
    app.session.fail_next("editMessageText", 400, "Bad Request: message is not modified: specified new message "
                          "content and reply markup are exactly the same as a current content and reply markup "
                          "of the message")
    calls = await app.press_on(ADMIN, card, "req:approve")
    assert not any("Sorry" in t or "Извините" in t for t in texts(calls)), texts(calls)
    assert (await requests(app))[0].state == "approved"
    # Any other refusal is logged: the update has happened, and said so first.
    app.session.fail_next("editMessageText", 400, "Bad Request: message to edit not found")
    calls = await app.press_on(ADMIN, card, "req:approve")
    assert not any("Sorry" in t or "Извините" in t for t in texts(calls)), texts(calls)
    assert [c.method for c in calls if hasattr(c, "method")] or calls
