"""Invitations and joining by code, with the wrong inputs people really make."""

from __future__ import annotations

import math
from datetime import timedelta

from aiogram.methods import EditMessageText, SendMessage, SendPhoto, SetMyCommands
from sqlalchemy import func, select, update

from handlers.invites import ALPHABET, CODE_LENGTH, new_code, normalize_code, qr_png
from storage.models import Guardianship, Invitation, Pupil, utcnow
from tests.conftest import ADMIN
from tests.flows import create_group, invitation, invite, join, memberships, setup_org, to_english
from tests.harness import Harness, Person, answers, only, texts

PARENT = Person(2001, "Мария", "en")
PARENT2 = Person(2002, "Ольга")
TEACHER = Person(3001, "Анна")


def test_codes_are_unguessable_and_unambiguous() -> None:
    assert CODE_LENGTH * math.log2(len(ALPHABET)) >= 48
    assert not set("0O1IL") & set(ALPHABET)
    assert len({new_code() for _ in range(2000)}) == 2000
    code = new_code()
    assert normalize_code(code.lower()[:5] + " " + code[5:]) == code
    assert normalize_code("O0O0O0O0O0") is None
    assert normalize_code("ABC") is None


async def all_invitations(app: Harness) -> list[Invitation]:
    async with app.session_maker() as s:
        return list((await s.scalars(select(Invitation).order_by(Invitation.id))).all())


async def test_admin_creates_an_invitation_with_link_and_qr(app: Harness) -> None:
    await setup_org(app)
    group = await create_group(app, "5А")
    await to_english(app, ADMIN)
    await app.send(ADMIN, "/invite")
    await app.press(ADMIN, f"inv:group:{group}::0:0")
    await app.press(ADMIN, f"inv:role:{group}:parent:0:0")
    await app.press(ADMIN, f"inv:days:{group}:parent:7:0")
    calls = await app.press(ADMIN, f"inv:make:{group}:parent:7:30")
    photo = only(calls, SendPhoto)[0]
    [inv] = await all_invitations(app)
    assert (inv.role, inv.max_uses, inv.uses, inv.group_id) == ("parent", 30, 0, group)
    assert abs((inv.expires_at - utcnow()) - timedelta(days=7)) < timedelta(minutes=1)
    link = f"https://t.me/parta_test_bot?start={inv.code}"
    assert link in (photo.caption or "") and f"/join {inv.code}" in (photo.caption or "")
    png = photo.photo.data  # type: ignore[union-attr]
    # The picture is a PNG of exactly this link's QR code (segno's encoding is deterministic).
    assert png.startswith(b"\x89PNG") and png == qr_png(link)


async def test_parent_joins_by_deep_link_with_child(app: Harness) -> None:
    await setup_org(app)
    group = await create_group(app, "5А")
    code = await invite(app, ADMIN, group, "parent")
    calls = await join(app, PARENT, code, "Иванова  Мария Петровна", "Иванов Пётр")
    assert "5А" in texts(calls)[0]
    assert await memberships(app, PARENT.id) == [("5А", "parent", "active")]
    async with app.session_maker() as s:
        pupil = (await s.scalars(select(Pupil))).one()
        assert (pupil.full_name, pupil.group_id) == ("Иванов Пётр", group)
        assert (await s.scalars(select(Guardianship))).one().pupil_id == pupil.id
    assert (await invitation(app, code)).uses == 1
    # A second parent of the same child is matched to the same pupil record.
    await join(app, PARENT2, code, "Иванов Сергей", "иванов  петр")
    async with app.session_maker() as s:
        assert await s.scalar(select(func.count()).select_from(Pupil)) == 1
        assert await s.scalar(select(func.count()).select_from(Guardianship)) == 2
    # The parent's menu is set for their chat only.
    sent = await app.flush()
    menus = [m for m in only(sent, SetMyCommands) if m.scope.chat_id == PARENT.id]
    assert menus and "invite" not in [c.command for c in menus[-1].commands]


async def test_join_command_works_like_the_link(app: Harness) -> None:
    await setup_org(app)
    group = await create_group(app, "5А")
    code = await invite(app, ADMIN, group, "student")
    await join(app, PARENT2, code.lower(), "Петров Пётр", via="/join")
    assert await memberships(app, PARENT2.id) == [("5А", "student", "active")]


async def test_wrong_expired_revoked_and_used_up_codes_change_nothing(app: Harness) -> None:
    await setup_org(app)
    group = await create_group(app, "5А")
    await to_english(app, PARENT)
    calls = await app.send(PARENT, "/join ABCDEFGHJK")
    assert "no invitation with this code" in texts(calls)[0]
    calls = await app.send(PARENT, "/join")
    assert "/join" in texts(calls)[0]

    expired = await invite(app, ADMIN, group, "parent")
    async with app.session_maker.begin() as s:
        await s.execute(update(Invitation).where(Invitation.code == expired).values(expires_at=utcnow() - timedelta(seconds=1)))
    calls = await app.send(PARENT, f"/start {expired}")
    assert "expired" in texts(calls)[0]

    revoked = await invite(app, ADMIN, group, "parent")
    await app.send(ADMIN, "/invites")
    inv = await invitation(app, revoked)
    await app.press(ADMIN, f"invs:revoke:{inv.id}")
    calls = await app.send(PARENT, f"/start {revoked}")
    assert "revoked" in texts(calls)[0]

    single = await invite(app, ADMIN, group, "parent", uses=1)
    await join(app, PARENT2, single, "Ольга Иванова", "Иван Иванов")
    calls = await app.send(PARENT, f"/start {single}")
    assert "used up" in texts(calls)[0]
    assert await memberships(app, PARENT.id) == []


async def test_five_wrong_codes_are_throttled(app: Harness) -> None:
    await setup_org(app)
    group = await create_group(app, "5А")
    good = await invite(app, ADMIN, group, "parent")
    await to_english(app, PARENT)
    for _ in range(5):
        calls = await app.send(PARENT, "/join ZZZZZZZZZZ")
        assert "no invitation" in texts(calls)[0]
    calls = await app.send(PARENT, f"/join {good}")  # even a good code waits now
    assert "Too many wrong codes" in texts(calls)[0] and "10 min" in texts(calls)[0]
    # Another person is not affected.
    calls = await app.send(PARENT2, f"/join {good}")
    assert only(calls, SendMessage)[0].reply_markup is None or "join:" in str(only(calls, SendMessage)[0].reply_markup)


async def test_used_up_between_start_and_confirm_changes_nothing(app: Harness) -> None:
    await setup_org(app)
    group = await create_group(app, "5А")
    code = await invite(app, ADMIN, group, "parent", uses=1)
    await to_english(app, PARENT)
    await app.send(PARENT, f"/start {code}")
    await app.send(PARENT, "Мария Иванова")
    calls = await app.send(PARENT, "Пётр Иванов")
    confirm = only(calls, SendMessage)[-1]
    await join(app, PARENT2, code, "Ольга Петрова", "Анна Петрова")  # takes the only use
    calls = await app.press_on(PARENT, confirm, "join:confirm")
    assert "used up" in texts(calls)[-1]
    assert await memberships(app, PARENT.id) == []
    assert (await invitation(app, code)).uses == 1


async def test_joining_twice_says_already_a_member_and_double_press_is_harmless(app: Harness) -> None:
    await setup_org(app)
    group = await create_group(app, "5А")
    code = await invite(app, ADMIN, group, "student", uses=10)
    await to_english(app, PARENT)
    calls = await join(app, PARENT, code, "Мария Иванова")
    confirm = [c for c in calls if isinstance(c, SendMessage)][-1]
    again = await app.press_on(PARENT, confirm, "join:confirm")  # the old button, pressed again
    assert answers(again)[0].show_alert
    calls = await app.send(PARENT, f"/join {code}")
    assert "already a member" in texts(calls)[0]
    assert (await invitation(app, code)).uses == 1


async def test_cancel_and_stray_messages_in_the_join_dialog(app: Harness) -> None:
    await setup_org(app)
    group = await create_group(app, "5А")
    code = await invite(app, ADMIN, group, "parent")
    await to_english(app, PARENT)
    await app.send(PARENT, f"/start {code}")
    calls = await app.send_photo(PARENT)
    assert "full name" in texts(calls)[0] and "/cancel" in texts(calls)[0]
    calls = await app.send(PARENT, "12345")
    assert "full name" in texts(calls)[0]
    calls = await app.send(PARENT, "/help")  # a command mid-dialog is answered, the dialog kept
    assert "/join" in texts(calls)[0]
    await app.send(PARENT, "Мария Иванова")
    calls = await app.send(PARENT, "/cancel")
    assert texts(calls) == ["Cancelled. Nothing was changed."]
    assert await memberships(app, PARENT.id) == []
    assert (await invitation(app, code)).uses == 0


async def test_teacher_invites_only_families_to_own_groups(app: Harness) -> None:
    await setup_org(app)
    mine = await create_group(app, "5А")
    other = await create_group(app, "6Б")
    code = await invite(app, ADMIN, mine, "teacher")
    await to_english(app, TEACHER)
    await join(app, TEACHER, code, "Анна Сергеевна Смирнова")
    # Unverified: no inviting yet.
    calls = await app.send(TEACHER, "/invite")
    assert "verify" in texts(calls)[0]
    calls = await app.press(TEACHER, f"inv:make:{mine}:parent:14:0")
    assert answers(calls)[0].show_alert
    assert len(await all_invitations(app)) == 1
    # Verified by the admin through the card they received.
    cards = [c for c in await app.flush() if isinstance(c, SendMessage) and c.chat_id == ADMIN.id and c.reply_markup]
    await app.press_on(ADMIN, cards[0], "ver:yes")
    calls = await app.send(TEACHER, "/invite")
    buttons = str(only(calls, SendMessage)[0].reply_markup)
    assert f"inv:group:{mine}" in buttons and f"inv:group:{other}" not in buttons
    parent_code = await invite(app, TEACHER, mine, "parent")
    assert parent_code
    # Forged buttons: another group, a staff role.
    for forged in (f"inv:make:{other}:parent:14:0", f"inv:make:{mine}:teacher:14:0", f"inv:make:{mine}:admin:14:0",
                   f"inv:make:{mine}:parent:9999:0", f"inv:make:{mine}:parent:14:7"):
        calls = await app.press(TEACHER, forged)
        assert answers(calls)[0].show_alert, forged
    assert len(await all_invitations(app)) == 2


async def test_invites_lists_uses_and_revokes_all_unused_after_confirmation(app: Harness) -> None:
    await setup_org(app)
    group = await create_group(app, "5А")
    used = await invite(app, ADMIN, group, "parent")
    unused = await invite(app, ADMIN, group, "student")
    await join(app, PARENT2, used, "Ольга Петрова", "Анна Петрова")
    await to_english(app, ADMIN)
    calls = await app.send(ADMIN, "/invites")
    listing = texts(calls)[0]
    assert used in listing and unused in listing and "Ольга Петрова" in listing
    calls = await app.press(ADMIN, "invs:all:0")
    assert "Revoke 1 unused invitation?" in texts(calls)[-1]
    assert (await invitation(app, unused)).revoked_at is None  # nothing yet: only asked
    await app.press(ADMIN, "invs:all_yes:0")
    assert (await invitation(app, unused)).revoked_at is not None
    assert (await invitation(app, used)).revoked_at is None
    # A parent cannot see or revoke invitations, even with a forged button.
    await to_english(app, PARENT2)
    calls = await app.send(PARENT2, "/invites")
    assert texts(calls)[0].startswith("⛔")
    inv = await invitation(app, used)
    calls = await app.press(PARENT2, f"invs:revoke:{inv.id}")
    assert answers(calls)[0].show_alert
    assert (await invitation(app, used)).revoked_at is None


async def test_unverified_teacher_gets_verified_by_first_admin_and_other_cards_follow(app: Harness, settings) -> None:  # type: ignore[no-untyped-def]
    await setup_org(app)
    group = await create_group(app, "5А")
    second_admin = Person(1002, "Второй админ", "en")
    code = await invite(app, ADMIN, await _staff(app), "admin")
    await join(app, second_admin, code, "Пётр Второй")
    tcode = await invite(app, ADMIN, group, "teacher")
    calls = await join(app, TEACHER, tcode, "Анна Смирнова")
    assert await memberships(app, TEACHER.id) == sorted(
        [("5А", "teacher", "unverified"), ("Учительская", "teacher", "unverified")]
    )
    sent = await app.flush()
    cards = [c for c in sent if isinstance(c, SendMessage) and c.reply_markup and "ver:yes" in str(c.reply_markup)]
    assert sorted(c.chat_id for c in cards) == [ADMIN.id, second_admin.id]
    first = next(c for c in cards if c.chat_id == second_admin.id)
    # A parent pressing a forged Verify changes nothing.
    calls = await app.press(PARENT, f"ver:yes:{_membership_id(first)}")
    assert answers(calls)[0].show_alert
    assert ("5А", "teacher", "unverified") in await memberships(app, TEACHER.id)
    await app.press_on(second_admin, first, "ver:yes")
    assert await memberships(app, TEACHER.id) == sorted(
        [("5А", "teacher", "active"), ("Учительская", "teacher", "active")]
    )
    sent = await app.flush()
    edits = only(sent, EditMessageText)
    assert [e.chat_id for e in edits] == [ADMIN.id] and "Пётр Второй" in edits[0].text
    told = [c for c in only(sent, SendMessage) if c.chat_id == TEACHER.id]
    assert told
    menus = [m for m in only(sent, SetMyCommands) if m.scope.chat_id == TEACHER.id]
    assert "invite" in [c.command for c in menus[-1].commands]
    # The other admin presses their (now edited) old button: told, nothing twice.
    other = next(c for c in cards if c.chat_id == ADMIN.id)
    calls = await app.press_on(ADMIN, other, "ver:yes")
    assert answers(calls)[0].show_alert
    async with app.session_maker() as s:
        from storage.models import AuditEntry

        actions = (await s.scalars(select(AuditEntry.action))).all()
        assert actions.count("teacher.verify") == 1


def _membership_id(card: SendMessage) -> int:
    data = card.reply_markup.inline_keyboard[0][0].callback_data  # type: ignore[union-attr]
    return int(data.rsplit(":", 1)[1])


async def _staff(app: Harness) -> int:
    from tests.flows import staff_room_id

    return await staff_room_id(app)


async def test_a_double_tap_on_the_last_invitation_step_makes_one_invitation(app: Harness) -> None:
    from aiogram.methods import AnswerCallbackQuery

    await setup_org(app)
    group = await create_group(app, "5А")
    await invite(app, ADMIN, group, "parent")
    calls = await app.press(ADMIN, f"inv:make:{group}:parent:14:0")  # the same button again
    [alert] = only(calls, AnswerCallbackQuery)
    assert alert.show_alert and not only(calls, SendPhoto)
    async with app.session_maker() as s:
        assert await s.scalar(select(func.count()).select_from(Invitation)) == 1
    await invite(app, ADMIN, group, "parent")  # a new wizard: a new invitation
    async with app.session_maker() as s:
        assert await s.scalar(select(func.count()).select_from(Invitation)) == 2


async def test_names_that_print_as_nothing_are_refused(app: Harness) -> None:
    await setup_org(app)
    group = await create_group(app, "5А")
    code = await invite(app, ADMIN, group, "parent")
    await app.send(PARENT, f"/start {code}")
    for nothing in ("\u3164\u3164", "\u2800\u2800a", "\u200b\u200b\u200b"):
        calls = await app.send(PARENT, nothing)
        assert len(texts(calls)) == 1 and "128" in texts(calls)[0], (nothing, texts(calls))  # the hint again
    calls = await app.send(PARENT, "Мария\u200b Иванова")
    assert "child's full name" in texts(calls)[-1], texts(calls)  # PARENT's Telegram is in English
