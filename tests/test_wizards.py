"""Every wizard step has ✖️ Cancel (and ◀️ Back where it helps); the buttons
of a finished or cancelled wizard change nothing and say so (issue 13, point 4).

A wizard's buttons carry its dialog's token (bot/dialogs.py); these tests
press the buttons the bot really drew, as a person does."""

from __future__ import annotations

from typing import Any

from aiogram.methods import AnswerCallbackQuery, EditMessageText, SendMessage, SendPhoto
from sqlalchemy import select

from storage import models
from tests.conftest import ADMIN
from tests.flows import create_group, setup_org
from tests.harness import Harness, button_data, only, texts
from tests.test_rights_matrix import snapshot

FINISHED = "This dialog is already finished or cancelled"


def last(calls: list) -> SendMessage | EditMessageText:
    return [c for c in calls if isinstance(c, (SendMessage, EditMessageText))][-1]


def buttons(message: SendMessage | EditMessageText) -> list[str]:
    markup = message.reply_markup
    return [b.text for row in markup.inline_keyboard for b in row] if markup else []  # type: ignore[union-attr]


def alert(calls: list) -> str:
    found = only(calls, AnswerCallbackQuery)
    assert len(found) == 1, texts(calls)
    return found[0].text or ""


async def dialog_state(app: Harness) -> list[Any]:
    async with app.session_maker() as s:
        return list((await s.execute(select(models.FsmState.state))).scalars())


async def english_school(app: Harness) -> int:
    await setup_org(app)
    a = await create_group(app, "5А")
    await app.press(ADMIN, "lang:en")
    return a


# -- the invitation wizard ---------------------------------------------------------------


async def invite_steps(app: Harness, group: int | None = None) -> list[SendMessage | EditMessageText]:
    """/invite → group → role → days → uses: the message of each step, as drawn."""
    steps = [last(await app.send(ADMIN, "/invite"))]
    first = f"inv:group:{group}:" if group else "inv:group:"
    for contains in (first, "inv:role:", "inv:days:"):
        steps.append(last(await app.press_on(ADMIN, steps[-1], contains)))
    return steps


async def test_invitation_wizard_cancel_on_every_step_writes_nothing(app: Harness) -> None:
    await english_school(app)
    for step in range(4):
        before = await snapshot(app)
        steps = await invite_steps(app)
        message = steps[step]
        assert "✖️ Cancel" in buttons(message), (step, buttons(message))
        if step:
            assert "◀️ Back" in buttons(message)
        calls = await app.press_on(ADMIN, message, "dlg:cancel")
        assert "Cancelled" in last(calls).text
        assert await dialog_state(app) == []
        assert await snapshot(app) == before
        # Every button of the cancelled wizard now says so and changes nothing.
        for old in steps:
            for row in old.reply_markup.inline_keyboard:  # type: ignore[union-attr]
                for button in row:
                    calls = await app.press(ADMIN, button.callback_data)  # type: ignore[arg-type]
                    assert FINISHED in alert(calls), (button.callback_data, texts(calls))
                    assert not only(calls, EditMessageText) and not only(calls, SendPhoto)
        assert await snapshot(app) == before


async def test_invitation_wizard_after_slash_cancel_and_after_it_is_made(app: Harness) -> None:
    await english_school(app)
    before = await snapshot(app)
    steps = await invite_steps(app)
    await app.send(ADMIN, "/cancel")
    for message, contains in zip(steps, ("inv:group:", "inv:role:", "inv:days:", "inv:make:")):
        calls = await app.press_on(ADMIN, message, contains)
        assert FINISHED in alert(calls)
    assert await snapshot(app) == before
    steps = await invite_steps(app)
    made = await app.press_on(ADMIN, steps[-1], "inv:make:")
    assert only(made, SendPhoto)
    async with app.session_maker() as s:
        count = len((await s.scalars(select(models.Invitation))).all())
    for message, contains in zip(steps, ("inv:group:", "inv:role:", "inv:days:", "inv:make:")):
        calls = await app.press_on(ADMIN, message, contains)
        assert FINISHED in alert(calls) and not only(calls, SendPhoto)
    async with app.session_maker() as s:
        assert len((await s.scalars(select(models.Invitation))).all()) == count


async def test_invitation_wizard_back_keeps_the_earlier_choices(app: Harness) -> None:
    a = await english_school(app)
    steps = await invite_steps(app, a)
    # From "how many people" back to "how long", for the same group and role.
    calls = await app.press_on(ADMIN, steps[3], "inv:role:")
    days = last(calls)
    assert "5А for a parent. How long" in days.text
    # Back again: whom, for the same group; and back to the groups.
    roles = last(await app.press_on(ADMIN, days, "inv:group:"))
    assert "to 5А. Whom" in roles.text
    groups = last(await app.press_on(ADMIN, roles, "inv:groups:"))
    assert "Which group" in groups.text and f"inv:group:{a}" in str(groups.reply_markup)
    # And forward to the end: one invitation, for the group chosen.
    message = groups
    for contains in (f"inv:group:{a}", "inv:role:", "inv:days:", "inv:make:"):
        calls = await app.press_on(ADMIN, message, contains)
        message = last(calls)
    assert only(calls, SendPhoto)
