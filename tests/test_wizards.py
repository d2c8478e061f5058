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


# -- the post wizard --------------------------------------------------------------------------

from datetime import datetime, timedelta  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

from tests.test_posting import TEACHER, school  # noqa: E402

EVENT_STEPS = ("kind", "audience", "content", "event_at", "place", "options", "confirm", "send_at")
POLL_STEPS = ("kind", "audience", "content", "poll_options", "poll_settings", "options", "confirm", "send_at")


async def post_steps(app: Harness, kind: str, group: int, until: str | None = None) -> list[SendMessage | EditMessageText]:
    """/post of this kind to the group, step by step up to `until`: the message of each step."""
    steps = [last(await app.send(TEACHER, "/post"))]
    names = EVENT_STEPS if kind == "event" else POLL_STEPS

    async def go(calls: list) -> bool:
        steps.append(last(calls))
        return names[len(steps) - 1] == until

    if until == "kind":
        return steps
    audience = last(await app.press_on(TEACHER, steps[0], f"cmp:kind:{kind}"))
    steps.append(audience)
    if until == "audience":
        return steps
    await app.press_on(TEACHER, audience, f"cmp:group:{group}")
    if await go(await app.press(TEACHER, button_data(audience.reply_markup, "cmp:next"))):
        return steps
    if kind == "event":
        if await go(await app.send(TEACHER, "Экскурсия в музей")):
            return steps
        day = (datetime.now(ZoneInfo("Europe/Moscow")) + timedelta(days=3)).date()
        await app.press_on(TEACHER, steps[-1], f"wh:day:{day:%Y%m%d}")
        calls = await app.press(TEACHER, button_data(last(await app.press_on(TEACHER, steps[-1], f"wh:day:{day:%Y%m%d}")).reply_markup, "wh:time:1800"))
        if await go(calls):
            return steps
        if await go(await app.press_on(TEACHER, steps[-1], "cmp:no_place")):
            return steps
    else:
        if await go(await app.send(TEACHER, "Когда собрание?")):
            return steps
        if await go(await app.send(TEACHER, "Вторник\nСреда")):
            return steps
        if await go(await app.press_on(TEACHER, steps[-1], "cmp:next")):
            return steps
    if await go(await app.press_on(TEACHER, steps[-1], "cmp:preview")):
        return steps
    await go(await app.press_on(TEACHER, steps[-1], "cmp:later"))
    return steps


async def test_post_wizard_cancel_on_every_step_writes_nothing(app: Harness) -> None:
    a, _b = await school(app)
    for kind, names in (("event", EVENT_STEPS), ("poll", POLL_STEPS)):
        for name in names:
            before = await snapshot(app)
            steps = await post_steps(app, kind, a, until=name)
            message = steps[-1]
            assert "✖️ Cancel" in buttons(message), (kind, name, buttons(message))
            if name != "kind":
                assert "◀️ Back" in buttons(message), (kind, name, buttons(message))
            calls = await app.press_on(TEACHER, message, "cmp:cancel")
            assert "Cancelled" in last(calls).text, (kind, name)
            assert await dialog_state(app) == [] and await snapshot(app) == before, (kind, name)
            # The buttons of every step of the cancelled post are stale now.
            for old in steps:
                data = old.reply_markup.inline_keyboard[0][0].callback_data  # type: ignore[union-attr]
                calls = await app.press(TEACHER, data)  # type: ignore[arg-type]
                assert FINISHED in alert(calls), (kind, name, data, texts(calls))
            assert await snapshot(app) == before


async def test_post_wizard_buttons_after_slash_cancel_and_after_sending(app: Harness) -> None:
    a, _b = await school(app)
    steps = await post_steps(app, "poll", a, until="confirm")
    await app.send(TEACHER, "/cancel")
    before = await snapshot(app)
    for contains in ("cmp:send", "cmp:later", "cmp:back"):
        assert FINISHED in alert(await app.press_on(TEACHER, steps[-1], contains))
    assert await snapshot(app) == before
    steps = await post_steps(app, "poll", a, until="confirm")
    sent = await app.press_on(TEACHER, steps[-1], "cmp:send")
    assert "Sent to" in last(sent).text
    async with app.session_maker() as s:
        posts = len((await s.scalars(select(models.Post))).all())
    for message in steps:
        for row in message.reply_markup.inline_keyboard:  # type: ignore[union-attr]
            for button in row:
                calls = await app.press(TEACHER, button.callback_data)  # type: ignore[arg-type]
                assert FINISHED in alert(calls), (button.callback_data, texts(calls))
    async with app.session_maker() as s:
        assert len((await s.scalars(select(models.Post))).all()) == posts


async def test_post_wizard_back_returns_to_each_step_keeping_what_was_entered(app: Harness) -> None:
    a, _b = await school(app)
    steps = await post_steps(app, "event", a, until="send_at")
    # send_at → confirm → options → place → event_at → content → audience → kind, one Back at a time.
    message = steps[-1]
    seen = []
    for expected in ("Send it?", "Options:", "Where?", "When is it?", "Describe the event", "To whom?", "What is it?"):
        message = last(await app.press_on(TEACHER, message, "cmp:back"))
        assert expected in message.text, (expected, message.text)
        seen.append(message)
    # The audience chosen is still chosen, and the event's text and time are kept to the end.
    again = last(await app.press_on(TEACHER, message, "cmp:kind:event"))
    assert "☑️ 5А" in buttons(again)
    content = last(await app.press_on(TEACHER, again, "cmp:next"))
    assert "Describe the event" in content.text
    # An earlier message of this very dialog does not act on a later step.
    assert "last message" in alert(await app.press_on(TEACHER, steps[5], "cmp:preview"))
    await app.send(TEACHER, "/cancel")
    # Options → Back → Where? → Skip: the text and the time entered before are still the post's.
    steps = await post_steps(app, "event", a, until="options")
    place = last(await app.press_on(TEACHER, steps[-1], "cmp:back"))
    assert "Where?" in place.text
    options = last(await app.press_on(TEACHER, place, "cmp:no_place"))
    calls = await app.press_on(TEACHER, options, "cmp:preview")
    assert any("Экскурсия в музей" in t and "18:00" in t for t in texts(calls)), texts(calls)
    sent = await app.press_on(TEACHER, last(calls), "cmp:send")
    assert "Sent to" in last(sent).text
    async with app.session_maker() as s:
        post = (await s.scalars(select(models.Post).order_by(models.Post.id.desc()))).first()
        assert post is not None and post.kind == "event" and "Экскурсия в музей" in post.text and post.event_at
        groups = (await s.scalars(select(models.PostGroup.group_id).where(models.PostGroup.post_id == post.id))).all()
    assert list(groups) == [a]


async def test_post_wizard_back_refuses_a_later_step(app: Harness) -> None:
    a, _b = await school(app)
    steps = await post_steps(app, "event", a, until="content")
    # A Back of this dialog pointing forward (an older message's) is not followed.
    data = button_data(steps[-1].reply_markup, "cmp:back").replace("cmp:back:audience", "cmp:back:options")
    calls = await app.press(TEACHER, data)
    assert "last message" in alert(calls) and not only(calls, EditMessageText)
