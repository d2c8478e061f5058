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


# -- every other wizard: Cancel on each step, stale buttons afterwards ------------------------------

from collections.abc import Awaitable, Callable  # noqa: E402

from tests.flows import invite  # noqa: E402
from tests.harness import Person  # noqa: E402
from tests.test_onboarding import class_5a  # noqa: E402
from tests.test_posting import P1  # noqa: E402

Walk = Callable[[int], Awaitable[list[SendMessage | EditMessageText]]]


def stepper(app: Harness, who: Person, actions: list[tuple[str, str]]) -> Walk:
    """A walk through a wizard: ("send", text) or ("press", data contained in the last step's buttons);
    the first action opens it. Returns the message of each step, up to step k."""

    async def walk(k: int) -> list[SendMessage | EditMessageText]:
        steps: list[SendMessage | EditMessageText] = []
        for kind, value in actions[: k + 1]:
            if kind == "send":
                calls = await app.send(who, value)
            elif kind == "press":
                calls = await app.press_on(who, steps[-1], value)
            else:  # "data": a button found elsewhere (an entry point)
                calls = await app.press(who, value)
            steps.append(last(calls))
        return steps

    return walk


async def cancel_on_each_step(app: Harness, who: Person, walk: Walk, count: int, *, start: int = 0,
                              cancel: str = ":cancel", done: str = "Cancelled") -> None:
    """Steps `start`..`count - 1` of the walk are the wizard's (those before open it: a menu)."""
    for k in range(start, count):
        before = await snapshot(app)
        steps = await walk(k)
        message = steps[-1]
        assert any(b.startswith("✖️") for b in buttons(message)), (k, message.text, buttons(message))
        calls = await app.press_on(who, message, cancel)
        assert done in last(calls).text, (k, texts(calls))
        assert await snapshot(app) == before, k  # the dialog's state gone too: nothing written
        await stale_after(app, who, steps[start:])


async def stale_after(app: Harness, who: Person, steps: list[SendMessage | EditMessageText]) -> None:
    """Every button of these (finished) steps says so and changes nothing."""
    before = await snapshot(app)
    for old in steps:
        for row in (old.reply_markup.inline_keyboard if old.reply_markup else []):  # type: ignore[union-attr]
            for button in row:
                calls = await app.press(who, button.callback_data)  # type: ignore[arg-type]
                assert FINISHED in alert(calls), (button.callback_data, texts(calls))
    assert await snapshot(app) == before


async def test_join_dialog_cancel_on_each_step_and_stale_buttons(app: Harness) -> None:
    a = await english_school(app)
    code = await invite(app, ADMIN, a, "parent")
    parent = Person(2101, "Нина", "en")
    await app.press(parent, "lang:en")
    walk = stepper(app, parent, [("send", f"/start {code}"), ("send", "Нина Орлова"), ("send", "Оля Орлова")])
    await cancel_on_each_step(app, parent, walk, 3)
    steps = await walk(2)
    await app.send(parent, "/cancel")
    await stale_after(app, parent, steps)
    steps = await walk(2)
    joined = await app.press_on(parent, steps[-1], "join:confirm")
    assert "Welcome" in last(joined).text
    await stale_after(app, parent, steps)


async def test_join_request_dialog_cancel_on_each_step(app: Harness) -> None:
    a = await english_school(app)
    asker = Person(4101, "Ирина", "en")
    await app.press(asker, "lang:en")
    walk = stepper(app, asker, [("data", "ask:start::0"), ("press", "ask:role:parent"), ("press", f"ask:group::{a}"),
                                ("send", "Ирина Петрова"), ("send", "Коля Петров")])
    await cancel_on_each_step(app, asker, walk, 5)
    steps = await walk(4)
    await app.press_on(asker, steps[-1], "ask:confirm")
    await stale_after(app, asker, steps)


async def test_group_settings_and_organisation_wizards_cancel_on_each_step(app: Harness) -> None:
    await english_school(app)
    # /groups: the name of a new group, and a rename.
    await cancel_on_each_step(app, ADMIN, stepper(app, ADMIN, [("send", "/groups"), ("press", "grp:new")]), 2, start=1)
    steps = await stepper(app, ADMIN, [("send", "/groups"), ("press", "grp:new"), ("send", "7В")])(2)
    assert "created" in steps[-1].text
    await stale_after(app, ADMIN, steps[1:2])
    # /settings: a digest time and quiet hours typed.
    for press in ("set:digest_type", "set:quiet_type"):
        await cancel_on_each_step(app, ADMIN, stepper(app, ADMIN, [("send", "/settings"), ("press", press)]), 2, start=1)
    # /org → a new organisation: name, kind, time zone, contact.
    walk = stepper(app, ADMIN, [("send", "/org"), ("press", "org:new"), ("send", "Школа № 2"),
                                ("press", "setup:kind:school"), ("send", "Europe/Samara")])
    await cancel_on_each_step(app, ADMIN, walk, 5, start=1)


async def test_import_absence_write_and_weekly_wizards_cancel_on_each_step(app: Harness) -> None:
    a, _b = await school(app)
    await app.press(ADMIN, "lang:en")
    # /import: waiting for the file, and the preview.
    async def import_walk(k: int) -> list[SendMessage | EditMessageText]:
        steps = [last(await app.send(ADMIN, "/import"))]
        if k:
            steps.append(last(await app.send_document(ADMIN, class_5a(), "5a.xlsx")))
        return steps
    await cancel_on_each_step(app, ADMIN, import_walk, 2)
    # /absent: the child, the day, several days, the reason.
    today = datetime.now(ZoneInfo("Europe/Moscow"))
    days = f"{today:%d.%m}-{today + timedelta(days=1):%d.%m}"
    walk = stepper(app, P1, [("send", "/absent"), ("press", "abs:child:"), ("press", "abs:range:"), ("send", days),
                             ("press", "abs:other")])
    await cancel_on_each_step(app, P1, walk, 5)
    steps = await walk(3)
    saved = await app.press_on(P1, steps[-1], "abs:reason:0:illness")
    assert "teachers are told" in last(saved).text
    await stale_after(app, P1, steps)
    # /write: to whom, then the message.
    await cancel_on_each_step(app, P1, stepper(app, P1, [("send", "/write"), ("press", "w:to:")]), 2)
    # A weekly item: group, name, day, time, reminder.
    walk = stepper(app, TEACHER, [("data", "wk:new:0"), ("press", f"wk:group:{a}"), ("send", "Бассейн"),
                                  ("press", "wk:day:2"), ("send", "10:00")])
    await cancel_on_each_step(app, TEACHER, walk, 5)


# -- a text typed outside a dialog gets what the person can do with it (issue 13, point 5) ----------

from tests.test_posting import STUDENT  # noqa: E402

SICK = "Миша заболел, не придёт"


async def test_a_parent_typing_gets_an_absence_notice_with_the_text_as_its_reason(app: Harness) -> None:
    await school(app)
    calls = await app.send(P1, SICK)
    offer = last(calls)
    assert "What should I do with your message?" in offer.text
    assert buttons(offer) == ["📝 Absence notice", "✉️ Message to the teacher", "✖️ Cancel"]
    children = last(await app.press_on(P1, offer, "fx:absent"))
    assert "Which child" in children.text
    day = last(await app.press_on(P1, children, "abs:child:"))
    reason = last(await app.press_on(P1, day, "abs:today:"))
    assert buttons(reason)[0] == f"📝 «{SICK}»"
    saved = await app.press_on(P1, reason, "abs:typed")
    assert "teachers are told" in last(saved).text
    async with app.session_maker() as s:
        absence = (await s.scalars(select(models.Absence))).one()
    assert absence.reason == SICK
    notices = [t for t in texts(await app.flush()) if "will not come" in t]
    assert notices and SICK in notices[0]
    # The offer's buttons belonged to that dialog: pressed again, they change nothing.
    await stale_after(app, P1, [offer])


async def test_a_parent_typing_gets_a_message_to_the_teacher_after_a_confirmation(app: Harness) -> None:
    await school(app)
    await app.flush()
    offer = last(await app.send(P1, SICK))
    recipients = last(await app.press_on(P1, offer, "fx:write"))
    assert "To whom?" in recipients.text
    confirm = last(await app.press_on(P1, recipients, "w:to:"))
    assert "Send this message to Анна Смирнова?" in confirm.text and SICK in confirm.text
    async with app.session_maker() as s:
        assert not (await s.scalars(select(models.Relay))).all()  # nothing passed on before the confirmation
    sent = await app.press_on(P1, confirm, "w:send")
    assert "Sent" in last(sent).text
    delivered = [c for c in only(await app.flush(), SendMessage) if c.chat_id == TEACHER.id]
    assert len(delivered) == 1 and SICK in delivered[0].text and "Message from" in delivered[0].text
    await stale_after(app, P1, [offer, recipients, confirm])
    # Cancelled at the confirmation instead: nothing passed on.
    before = await snapshot(app)
    offer = last(await app.send(P1, "Можно забрать его в 12?"))
    confirm = last(await app.press_on(P1, last(await app.press_on(P1, offer, "fx:write")), "w:to:"))
    assert "Cancelled" in last(await app.press_on(P1, confirm, "dlg:cancel")).text
    assert await snapshot(app) == before


async def test_a_teacher_typing_gets_a_post_with_the_text(app: Harness) -> None:
    a, _b = await school(app)
    offer = last(await app.send(TEACHER, "Завтра собрание в 18:00, приходите все"))
    assert buttons(offer) == ["📣 Post it", "✖️ Cancel"]
    kinds = last(await app.press_on(TEACHER, offer, "fx:post"))
    audience = last(await app.press_on(TEACHER, kinds, "cmp:kind:announcement"))
    await app.press_on(TEACHER, audience, f"cmp:group:{a}")
    calls = await app.press(TEACHER, button_data(audience.reply_markup, "cmp:next"))
    assert "Its content: the message you wrote" in texts(calls)[-2]  # the content step takes the text
    options = last(calls)
    assert "Options:" in options.text
    confirm = last(await app.press_on(TEACHER, options, "cmp:preview"))
    await app.press_on(TEACHER, confirm, "cmp:send")
    async with app.session_maker() as s:
        post = (await s.scalars(select(models.Post))).one()
    assert post.text == "Завтра собрание в 18:00, приходите все" and post.kind == "announcement"


async def test_others_typing_get_their_main_commands_or_what_fits(app: Harness) -> None:
    await school(app)
    await app.press(STUDENT, "lang:en")
    offer = last(await app.send(STUDENT, "Когда контрольная?"))
    assert buttons(offer) == ["✉️ Message to the teacher", "✖️ Cancel"]  # a student sends no absence notice
    # Typed again while the offer stands: an offer for the new text; the old one is finished.
    again = last(await app.send(STUDENT, "Когда контрольная по математике?"))
    assert buttons(again) == buttons(offer)
    assert FINISHED in alert(await app.press_on(STUDENT, offer, "fx:write"))
    assert "Cancelled" in last(await app.press_on(STUDENT, again, "dlg:cancel")).text
    assert await dialog_state(app) == []
    # Someone who belongs nowhere: how to join, and no buttons.
    stranger = Person(9101, "Чужой", "en")
    await app.press(stranger, "lang:en")
    calls = await app.send(stranger, "hello?")
    assert "I did not understand" in last(calls).text and "/join" in last(calls).text
    assert last(calls).reply_markup is None and await dialog_state(app) == []
    # A forged offer button outside any offer changes nothing.
    assert FINISHED in alert(await app.press(stranger, "fx:absent"))


async def test_the_author_s_edit_dialogs_cancel_and_go_stale(app: Harness) -> None:
    a, _b = await school(app)
    await app.press_on(TEACHER, (await post_steps(app, "event", a, until="confirm"))[-1], "cmp:send")
    async with app.session_maker() as s:
        post = (await s.scalars(select(models.Post))).one()
    for action in ("edit", "time"):
        before = await snapshot(app)
        steps = [last(await app.press(TEACHER, f"pc:{action}:{post.id}"))]
        if action == "time":  # a day pressed: the times, still with Cancel
            day = (datetime.now(ZoneInfo("Europe/Moscow")) + timedelta(days=2)).date()
            steps.append(last(await app.press_on(TEACHER, steps[-1], f"wh:day:{day:%Y%m%d}")))
        assert "✖️ Cancel" in buttons(steps[-1]), (action, buttons(steps[-1]))
        assert "Cancelled" in last(await app.press_on(TEACHER, steps[-1], "dlg:cancel")).text
        assert await snapshot(app) == before
        await stale_after(app, TEACHER, steps)


async def test_a_newcomer_typing_a_code_without_join_is_joining(app: Harness) -> None:
    a = await english_school(app)
    code = await invite(app, ADMIN, a, "parent")
    newcomer = Person(2201, "Вика", "en")
    await app.press(newcomer, "lang:en")
    calls = await app.send(newcomer, code.lower()[:5] + " " + code.lower()[5:])  # as typed off a slip
    assert "Invitation to <b>5А</b>" in last(calls).text


async def test_the_first_start_s_set_up_has_cancel_from_its_first_step(app: Harness) -> None:
    """The platform's administrator's very first /start begins the set-up with a Cancel too."""
    await app.press(ADMIN, "lang:en")
    walk = stepper(app, ADMIN, [("send", "/start"), ("send", "Школа № 1"), ("press", "setup:kind:school"),
                                ("send", "Europe/Moscow")])
    await cancel_on_each_step(app, ADMIN, walk, 4)
    async with app.session_maker() as s:
        assert (await s.scalars(select(models.Organisation))).all() == []
