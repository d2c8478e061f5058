"""End to end, the everyday features with the real `python -m bot` process
against the fake Bot API: what fell due while the bot was down goes out when
it starts (a reminder within the grace period — and a stale one does not), a
daily digest and opening a post from it, an absence notice reaching the
teacher, and a private message relayed to a teacher and answered back.

The database is prepared the way an upgrade would leave it: `python -m bot
migrate`, then rows written directly, as if the bot had been running before.

And a teacher and a parent whose Telegram is in English, from their first
contact, through the bot alone: verified, posting, joining, reading dates and
the post in English, acknowledging — with English menus.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

from aiogram.methods import SendMessage
from sqlalchemy import insert

from bot.outbox import dump_method
from storage.db import create_engine, create_session_maker
from storage.models import (
    Delivery,
    DueItem,
    Group,
    Guardianship,
    Membership,
    Organisation,
    Person,
    Post,
    PostGroup,
    Pupil,
    utcnow,
)
from tests.fake_telegram import FakeTelegram
from tests.test_e2e import (
    BOT_USERNAME,
    OVERALL,
    ROOT,
    STARTUP,
    TOKEN,
    Driver,
    clean_env,
    make_invitation,
    running_bot,
)

ADMIN, TEACHER, PARENT, DIGEST_PARENT = 1001, 3001, 2001, 2002


async def migrate(url: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "migrate", cwd=ROOT,
        env=clean_env(BOT_TOKEN=TOKEN, DATABASE_URL=url), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()


async def seed(url: str) -> dict[str, int]:
    """A school as the bot would have left it: a teacher, two parents (one on a
    daily digest), an event whose reminders fell due while the bot was down,
    and an announcement held for the digest."""
    engine = create_engine(url)
    sm = create_session_maker(engine)
    now = utcnow()
    async with sm.begin() as s:
        org = Organisation(name="Школа № 1", kind="school", timezone="Europe/Moscow")
        s.add(org)
        await s.flush()
        # No quiet hours (the test must not depend on the hour it runs at) and no office hours. Set after
        # the INSERT: passed to Organisation(...), None lets the ORM leave the column out, so the
        # defaults (21:00-08:00, 08:00-18:00) were stored instead.
        org.quiet_start = org.quiet_end = org.office_hours = None
        staff = Group(org_id=org.id, title="Учительская", kind="staff")
        group = Group(org_id=org.id, title="5А", kind="class")
        s.add_all([staff, group])
        await s.flush()
        people = {}
        for tg, name, locale, digest in ((ADMIN, "Админ Школы", "en", None), (TEACHER, "Анна Смирнова", "en", None),
                                         (PARENT, "Мария Иванова", "en", None), (DIGEST_PARENT, "Ольга Петрова", "en", "08:00")):
            people[tg] = Person(telegram_id=tg, full_name=name, telegram_name=name, locale=locale, digest_at=digest)
        s.add_all(people.values())
        await s.flush()
        s.add_all([
            Membership(org_id=org.id, group_id=staff.id, person_id=people[ADMIN].id, role="admin", state="active"),
            Membership(org_id=org.id, group_id=staff.id, person_id=people[TEACHER].id, role="teacher", state="active"),
            Membership(org_id=org.id, group_id=group.id, person_id=people[TEACHER].id, role="teacher", state="active"),
            Membership(org_id=org.id, group_id=group.id, person_id=people[PARENT].id, role="parent", state="active"),
            Membership(org_id=org.id, group_id=group.id, person_id=people[DIGEST_PARENT].id, role="parent", state="active"),
        ])
        pupil = Pupil(org_id=org.id, group_id=group.id, full_name="Петя Иванов")
        s.add(pupil)
        await s.flush()
        s.add(Guardianship(org_id=org.id, person_id=people[PARENT].id, pupil_id=pupil.id))
        event = Post(org_id=org.id, author_id=people[TEACHER].id, kind="event", audience="groups", text="Утренник",
                     state="sent", sent_at=now - timedelta(days=2), event_at=now + timedelta(minutes=55),
                     place="Актовый зал", reminder_minutes="1440,60")
        news = Post(org_id=org.id, author_id=people[TEACHER].id, kind="announcement", audience="groups",
                    text="Родительское собрание в четверг", state="sent", sent_at=now - timedelta(hours=3))
        s.add_all([event, news])
        await s.flush()
        s.add_all([PostGroup(org_id=org.id, post_id=event.id, group_id=group.id),
                   PostGroup(org_id=org.id, post_id=news.id, group_id=group.id)])
        # Missed while down: the hour-before reminder (5 minutes late: sent) and the
        # day-before one (23 hours late: stale, skipped).
        s.add_all([
            DueItem(org_id=org.id, kind="event_reminder", ref_id=event.id, minutes=60,
                    due_at=event.event_at - timedelta(minutes=60), key=f"event:{event.id}:60:x"),
            DueItem(org_id=org.id, kind="event_reminder", ref_id=event.id, minutes=1440,
                    due_at=event.event_at - timedelta(minutes=1440), key=f"event:{event.id}:1440:x"),
            DueItem(org_id=org.id, kind="digest", ref_id=people[DIGEST_PARENT].id, due_at=now - timedelta(minutes=2),
                    key=f"digest:{people[DIGEST_PARENT].id}:x"),
        ])
        # The announcement: delivered to one parent, held for the other's digest.
        for tg, status in ((PARENT, "sent"), (DIGEST_PARENT, "held")):
            method = SendMessage(chat_id=tg, text="Родительское собрание в четверг")
            await s.execute(insert(Delivery).values(
                org_id=org.id, chat_id=tg, method="sendMessage", payload=dump_method(method), topic="post",
                ref_id=news.id, post_id=news.id, person_id=people[tg].id, status=status, attempts=0,
                next_attempt_at=now, created_at=now, message_id=1 if status == "sent" else None))
        ids = {"event": event.id, "news": news.id}
    await engine.dispose()
    return ids


async def test_everyday_life_with_the_real_process(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'parta.db'}"
    await migrate(url)
    ids = await seed(url)
    async with FakeTelegram(token=TOKEN, bot_username=BOT_USERNAME) as tg:
        for uid, name in ((ADMIN, "Админ"), (TEACHER, "Anna"), (PARENT, "Maria"), (DIGEST_PARENT, "Olga")):
            tg.add_user(uid, name, language_code="en", started=True)
        async with running_bot(tg, tmp_path) as app:
            async with asyncio.timeout(OVERALL):
                # Start-up (imports, migrations) can take a while on a busy machine.
                await app.until(lambda: tg.calls_to("getUpdates"), "the bot to start polling", STARTUP)
                # == What fell due while the bot was down: the near reminder, once; not the stale one.
                reminder = await app.message(PARENT, contains=("Reminder", "Утренник"))
                await app.message(DIGEST_PARENT, contains=("Reminder", "Утренник"))
                # == The digest, with a button that opens the held announcement.
                digest = await app.message(DIGEST_PARENT, contains=("digest", "Родительское собрание"), button="dg:")
                await app.press(DIGEST_PARENT, digest, f"dg:{ids['news']}")
                await app.message(DIGEST_PARENT, after=digest.message_id, contains="Родительское собрание в четверг")

                # == An absence notice reaches the teacher.
                after = await app.say(PARENT, "/absent")
                ask = await app.message(PARENT, after=after, button="abs:child")
                await app.press(PARENT, ask, "abs:child")
                when = await app.message(PARENT, after=after, button="abs:today")
                await app.press(PARENT, when, "abs:today")
                why = await app.message(PARENT, after=after, button="abs:none")
                await app.press(PARENT, why, "abs:none")
                await app.message(TEACHER, contains=("Петя Иванов", "5А"))

                # == A private message to the teacher, answered with the Reply button.
                after = await app.say(PARENT, "/write")
                choose = await app.message(PARENT, after=after, button="w:to:")
                await app.press(PARENT, choose, "w:to:")
                await app.say(PARENT, "Добрый день! Можно забрать Петю в 15:00?")
                relayed = await app.message(TEACHER, contains=("Мария Иванова", "забрать Петю"), button="rl:reply:")
                await app.press(TEACHER, relayed, "rl:reply:")
                await app.say(TEACHER, "Да, конечно.")
                answer = await app.message(PARENT, contains=("Анна Смирнова", "Да, конечно."), button="rl:reply:")
                assert answer

            # Exactly once: the reminder, and nothing from the stale one.
            reminders = [m for m in tg.bot_messages(PARENT) if "Reminder" in (m.text or "")]
            assert len(reminders) == 1 and reminder.message_id == reminders[0].message_id
            assert "skipped stale event_reminder" in app.log_text()
        assert not tg.internal_errors


def english_menu(tg: FakeTelegram, user: int) -> dict[str, str]:
    """The person's own menu (setMyCommands for their chat), checked to be the
    English texts of its commands, exactly."""
    from aiogram.utils.i18n import I18n

    from bot.i18n import create_i18n
    from bot.menus import _descriptions

    menu = {c["command"]: c["description"] for c in tg.commands({"type": "chat", "chat_id": user})}
    i18n = create_i18n("ru")
    token = I18n.set_current(i18n)
    try:
        with i18n.use_locale("en"):
            english = _descriptions()
    finally:
        I18n.reset_current(token)
    assert menu and all(menu[name] == english[name] for name in menu), menu
    return menu


async def english_walk(app: Driver, tg: FakeTelegram) -> None:  # noqa: PLR0915 — one walk on purpose
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from babel.dates import format_date

    await app.until(lambda: tg.calls_to("getUpdates"), "the bot to start polling", STARTUP)
    # The administrator (Russian) sets the school up and makes a class.
    after = await app.say(ADMIN, "/start")
    await app.message(ADMIN, after=after, contains="1/4")
    after = await app.say(ADMIN, "Школа № 1")
    kinds = await app.message(ADMIN, after=after, button="setup:kind:")
    await app.press(ADMIN, kinds, "setup:kind:school")
    await app.message(ADMIN, after=kinds.message_id, button="setup:tz_default")
    after = await app.say(ADMIN, "Europe/Moscow")
    contact = await app.message(ADMIN, after=after, button="setup:no_contact")
    await app.press(ADMIN, contact, "setup:no_contact")
    await app.set_quiet_hours(ADMIN, "off")  # the verification card and the post must not wait for the morning
    after = await app.say(ADMIN, "/groups")
    groups = await app.message(ADMIN, after=after, button="grp:new")
    await app.press(ADMIN, groups, "grp:new")
    after = await app.say(ADMIN, "5А")
    await app.message(ADMIN, after=after, contains=("✅", "5А"))
    teacher_code = await make_invitation(app, ADMIN, "teacher", 1)

    # == The teacher's first contact: the invitation, in English; verified; told what they may do now.
    after = await app.say(TEACHER, f"/start {teacher_code}")
    await app.message(TEACHER, after=after, contains=("Invitation to", "5А", "full name"))
    after = await app.say(TEACHER, "Anna Smith")
    check = await app.message(TEACHER, after=after, contains=("Please check", "Anna Smith"), button="join:confirm")
    admin_seen = tg.bot_messages(ADMIN)[-1].message_id
    await app.press(TEACHER, check, "join:confirm")
    await app.edited(TEACHER, check, lambda m: "Welcome" in m.content and "verify" in m.content, "the welcome")
    card = await app.message(ADMIN, after=admin_seen, contains="Anna Smith", button="ver:yes:")
    assert "педагог" in card.content and "подтверждения" in card.content, card  # the admin reads Russian
    teacher_seen = tg.bot_messages(TEACHER)[-1].message_id
    await app.press(ADMIN, card, "ver:yes:")
    verified = await app.message(TEACHER, after=teacher_seen, contains=("has verified you", "Now you can"))
    assert "/post — Post to families or staff" in verified.content
    assert "/invite — Create an invitation" in verified.content
    await app.menu(TEACHER, lambda c: "post" in c and "invite" in c, "the verified teacher's menu")
    assert english_menu(tg, TEACHER)["post"] == "Post to families or staff"

    # == The teacher invites the class's parents (the wizard in English).
    parent_code = await make_invitation(app, TEACHER, "parent", 0)

    # == The parent's first contact: the join wizard in English.
    after = await app.say(PARENT, f"/start {parent_code}")
    await app.message(PARENT, after=after, contains=("Invitation to", "5А", "full name"))
    after = await app.say(PARENT, "Mary Brown")
    await app.message(PARENT, after=after, contains="child's full name")
    after = await app.say(PARENT, "Tom Brown")
    check = await app.message(PARENT, after=after, contains=("Please check", "Mary Brown", "Tom Brown"),
                              button="join:confirm")
    await app.press(PARENT, check, "join:confirm")
    await app.edited(PARENT, check, lambda m: "Welcome!" in m.content and "5А" in m.content, "the welcome")
    await app.menu(PARENT, lambda c: "absent" in c, "the parent's menu")
    assert english_menu(tg, PARENT)["absent"] == "Tell the teachers a child will not come"
    assert "post" not in english_menu(tg, PARENT)

    # == The teacher posts an event for tomorrow, with acknowledgement.
    after = await app.say(TEACHER, "/post")
    wizard = await app.message(TEACHER, after=after, contains="New post", button="cmp:kind:")
    await app.press(TEACHER, wizard, "cmp:kind:event")
    await app.edited(TEACHER, wizard, lambda m: "To whom?" in m.content, "the audience step")
    await app.press(TEACHER, wizard, "cmp:group:")
    await app.press(TEACHER, wizard, "cmp:next:")
    await app.edited(TEACHER, wizard, lambda m: "Describe the event" in m.content, "the text step")
    after = await app.say(TEACHER, "Museum trip")
    await app.message(TEACHER, after=after, contains=("When is it?", "tomorrow 18:30"), button="wh:day:")
    tomorrow = (datetime.now(ZoneInfo("Europe/Moscow")) + timedelta(days=1)).date()
    shown = format_date(tomorrow, "EEE, d MMMM", locale="en")  # «Wed, 2 December»
    after = await app.say(TEACHER, "tomorrow 18:30")
    await app.message(TEACHER, after=after, contains=f"{shown}, 18:30")
    where = await app.message(TEACHER, after=after, contains="Where?", button="cmp:no_place")
    await app.press(TEACHER, where, "cmp:no_place")
    options = await app.message(TEACHER, after=where.message_id, contains="Options", button="cmp:ack:")
    await app.press(TEACHER, options, "cmp:ack:")
    await app.edited(TEACHER, options, lambda m: any(d.startswith("cmp:ack_days") for d in m.callback_data),
                     "acknowledgement switched on")
    await app.press(TEACHER, options, "cmp:preview:")
    send = await app.message(TEACHER, after=options.message_id, contains="Send it?", button="cmp:send:")
    await app.press(TEACHER, send, "cmp:send:")
    card = await app.message(TEACHER, after=send.message_id, contains=("Event", "Recipients: 1"),
                             button="pc:refresh:")

    # == The parent receives it in English, with the date's weekday, and acknowledges.
    copy = await app.message(PARENT, contains=("Museum trip", f"{shown}, 18:30", "Anna Smith"), button="p:ack:")
    assert "Event" in copy.content and any("Acknowledge" in t for t in copy.button_texts), copy
    await app.press(PARENT, copy, "p:ack:")
    await app.edited(PARENT, copy, lambda m: any("Acknowledged" in t for t in m.button_texts), "acknowledged")
    await app.edited(TEACHER, card, lambda m: "acknowledged: 1" in m.content,
                     "the card counts the acknowledgement")
    # Their list of events: English dates too.
    after = await app.say(PARENT, "/events")
    await app.message(PARENT, after=after, contains=("Upcoming events", f"{shown}, 18:30 — Museum trip"))
    # Nothing turned the menus Russian on the way.
    assert english_menu(tg, TEACHER)["start"] == english_menu(tg, PARENT)["start"] == "Start: what I can do here"
    assert tg.visible_commands(PARENT) == tg.commands({"type": "chat", "chat_id": PARENT})


async def test_an_english_teacher_and_parent_with_the_real_process(tmp_path: Path) -> None:
    async with FakeTelegram(token=TOKEN, bot_username=BOT_USERNAME) as tg:
        tg.add_user(ADMIN, "Админ")  # Russian, as the fake's users are by default
        tg.add_user(TEACHER, "Anna", language_code="en")
        tg.add_user(PARENT, "Mary", language_code="en")
        async with running_bot(tg, tmp_path) as app:
            async with asyncio.timeout(OVERALL):
                await english_walk(app, tg)
            assert " ERROR " not in app.log_text()
        assert not tg.internal_errors
