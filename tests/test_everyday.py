"""The everyday details, through the real Dispatcher: dates typed as people
type them and quick choices, reminders that can fire, the withdrawn card,
exports a school opens, the calendar file, long texts and albums."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from aiogram.methods import EditMessageText, SendMessage
from sqlalchemy import select

from storage.models import DueItem, Post
from tests.harness import Harness, answers, button_data, only, texts
from tests.test_posting import P1, P2, TEACHER, copies_to, school

MSK = ZoneInfo("Europe/Moscow")


def local_today() -> datetime:
    return datetime.now(MSK)


async def the_post(app: Harness) -> Post:
    async with app.session_maker() as s:
        return (await s.scalars(select(Post).order_by(Post.id.desc()))).first()  # type: ignore[return-value]


async def start_event(app: Harness, group: int, text: str = "Экскурсия") -> list:
    await app.send(TEACHER, "/post")
    await app.press(TEACHER, "cmp:kind:event")
    await app.press(TEACHER, f"cmp:group:{group}")
    await app.press(TEACHER, "cmp:next:")
    return await app.send(TEACHER, text)


async def test_an_event_time_from_the_quick_choices_and_typed_in_words(app: Harness) -> None:
    a, _b = await school(app)
    calls = await start_event(app, a)
    prompt = only(calls, SendMessage)[-1]
    assert "tomorrow 18:30" in prompt.text  # the teacher reads English: English examples
    in_three_days = (local_today() + timedelta(days=3)).date()
    day_button = button_data(prompt.reply_markup, f"wh:day:{in_three_days:%Y%m%d}")
    assert "cmp:cancel" in str(prompt.reply_markup)
    calls = await app.press(TEACHER, day_button)
    times = only(calls, EditMessageText)[-1]
    assert "At what time?" in times.text and "wh:time:1800" in str(times.reply_markup)
    calls = await app.press(TEACHER, "wh:time:1800")
    assert any("18:00" in t for t in texts(calls)) and "Where?" in texts(calls)[-1]
    await app.press(TEACHER, "cmp:no_place:")
    await app.press(TEACHER, "cmp:preview:")
    await app.press(TEACHER, "cmp:send:")
    post = await the_post(app)
    expected = datetime(in_three_days.year, in_three_days.month, in_three_days.day, 18, 0, tzinfo=MSK)
    assert post.event_at.replace(tzinfo=timezone.utc) == expected.astimezone(timezone.utc)
    # Typed in words, in Russian, by a teacher whose interface is English.
    await start_event(app, a, "Родительское собрание")
    calls = await app.send(TEACHER, "31.02 10:00")
    assert "no such date" in texts(calls)[-1]
    calls = await app.send(TEACHER, "25.12")
    assert "at what time" in texts(calls)[-1]
    calls = await app.send(TEACHER, "завтра 18:30")
    assert "Where?" in texts(calls)[-1]
    tomorrow = (local_today() + timedelta(days=1)).date()
    from babel.dates import format_date

    assert format_date(tomorrow, "EEE, d MMMM", locale="en") in texts(calls)[0]


async def test_a_press_out_of_order_or_forged_changes_nothing(app: Harness) -> None:
    a, _b = await school(app)
    await start_event(app, a)
    calls = await app.press(TEACHER, "wh:time:1800")  # no day chosen yet
    assert answers(calls)[0].show_alert and "day first" in answers(calls)[0].text
    calls = await app.press(TEACHER, "wh:day:20200101")  # the past
    assert answers(calls)[0].show_alert
    calls = await app.press(TEACHER, "wh:day:2026abcd")
    assert answers(calls)[0].show_alert
    await app.press(TEACHER, "cmp:cancel:")
    calls = await app.press(TEACHER, "wh:day:20991231")  # a finished dialog
    assert answers(calls)[0].show_alert and "already sent or cancelled" in answers(calls)[0].text


async def test_reminders_that_cannot_fire_are_not_offered(app: Harness) -> None:
    a, _b = await school(app)
    await start_event(app, a)
    soon = local_today() + timedelta(minutes=90)
    calls = await app.send(TEACHER, soon.strftime("%d.%m.%Y %H:%M"))
    calls = await app.press(TEACHER, "cmp:no_place:")
    options = only(calls, SendMessage)[-1]
    markup = str(options.reply_markup)
    # 90 minutes away: "1 hour before" and "15 minutes before" can fire, a day or a week before cannot.
    assert "cmp:remind:60" in markup and "cmp:remind:15" in markup
    assert "cmp:remind:1440" not in markup and "cmp:remind:10080" not in markup
    assert "☑️ ⏰ 1 hour before" in markup  # of the defaults, the hour stays ticked
    calls = await app.press(TEACHER, "cmp:remind:1440")  # forged
    assert answers(calls)[0].show_alert
    await app.press(TEACHER, "cmp:preview:")
    await app.press(TEACHER, "cmp:send:")
    async with app.session_maker() as s:
        assert [i.minutes for i in (await s.scalars(select(DueItem))).all()] == [60]


async def test_send_later_in_words_and_an_acknowledgement_deadline_from_the_calendar(app: Harness) -> None:
    a, _b = await school(app)
    await app.send(TEACHER, "/post")
    await app.press(TEACHER, "cmp:kind:announcement")
    await app.press(TEACHER, f"cmp:group:{a}")
    await app.press(TEACHER, "cmp:next:")
    await app.send(TEACHER, "Сдаём деньги на экскурсию")
    await app.press(TEACHER, "cmp:ack:")
    calls = await app.press(TEACHER, "cmp:due_date:ack")
    assert "Until when" in texts(calls)[-1]
    calls = await app.send(TEACHER, "in a while")
    assert "cannot read" in texts(calls)[-1]
    day = (local_today() + timedelta(days=5)).date()
    calls = await app.send(TEACHER, f"{day:%d.%m} 20:00")
    options = only(calls, SendMessage)[-1]
    assert "Acknowledge: by" in str(options.reply_markup) and "20:00" in str(options.reply_markup)
    await app.press(TEACHER, "cmp:preview:")
    calls = await app.press(TEACHER, "cmp:later:")
    later = only(calls, EditMessageText)[-1]
    assert "cmp:at:" in str(later.reply_markup) and "wh:day:" in str(later.reply_markup)
    calls = await app.send(TEACHER, f"{day + timedelta(days=1):%d.%m} 9:00")  # after the deadline
    assert "after the deadline" in texts(calls)[-1]
    calls = await app.send(TEACHER, "tomorrow 9:00")
    assert "Scheduled for" in texts(calls)[-1]
    post = await the_post(app)
    tomorrow = (local_today() + timedelta(days=1)).date()
    assert post.scheduled_at.replace(tzinfo=timezone.utc) == datetime(
        tomorrow.year, tomorrow.month, tomorrow.day, 9, 0, tzinfo=MSK).astimezone(timezone.utc)
    assert post.ack_due_at.replace(tzinfo=timezone.utc) == datetime(
        day.year, day.month, day.day, 20, 0, tzinfo=MSK).astimezone(timezone.utc)


async def test_a_poll_deadline_typed_by_the_teacher(app: Harness) -> None:
    a, _b = await school(app)
    await app.send(TEACHER, "/post")
    await app.press(TEACHER, "cmp:kind:poll")
    await app.press(TEACHER, f"cmp:group:{a}")
    await app.press(TEACHER, "cmp:next:")
    await app.send(TEACHER, "Когда собрание?")
    await app.send(TEACHER, "Пятница\nСуббота")
    calls = await app.press(TEACHER, "cmp:due_date:ack")  # not a poll's button
    assert answers(calls)[0].show_alert
    await app.press(TEACHER, "cmp:due_date:poll")
    calls = await app.send(TEACHER, "пт 9:00")
    assert "Closes" in str(only(calls, SendMessage)[-1].reply_markup)
    await app.press(TEACHER, "cmp:next:")
    await app.press(TEACHER, "cmp:preview:")
    await app.press(TEACHER, "cmp:send:")
    post = await the_post(app)
    moment = post.poll_closes_at.replace(tzinfo=timezone.utc).astimezone(MSK)
    assert (moment.weekday(), moment.hour, moment.minute) == (4, 9, 0)
    assert moment > datetime.now(timezone.utc)
    sent = await app.flush()
    copy = copies_to(sent, P2.id)[0]
    assert "пт, " in copy.text  # «Открыт до пт, 4 декабря, 09:00» for the Russian reader


async def test_a_withdrawn_posts_card_offers_nothing_more(app: Harness) -> None:
    a, _b = await school(app)
    await app.send(TEACHER, "/post")
    await app.press(TEACHER, "cmp:kind:announcement")
    await app.press(TEACHER, f"cmp:group:{a}")
    await app.press(TEACHER, "cmp:next:")
    await app.send(TEACHER, "Отменяется")
    await app.press(TEACHER, "cmp:ack:")
    await app.press(TEACHER, "cmp:preview:")
    await app.press(TEACHER, "cmp:send:")
    await app.flush()
    post = await the_post(app)
    await app.press(TEACHER, f"pc:withdraw_yes:{post.id}")
    sent = await app.flush()
    card_edits = [c for c in only(sent, EditMessageText) if c.chat_id == TEACHER.id and "Withdrawn" in c.text]
    assert card_edits, "the original card is edited too"
    assert all(c.reply_markup is None or not c.reply_markup.inline_keyboard for c in card_edits)
    assert P1


# -- files for people -----------------------------------------------------------------------


def workbook_rows(data: bytes, sheet: str | None = None) -> list[list]:
    import io

    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(data))
    ws = book[sheet] if sheet else book.worksheets[0]
    return [list(r) for r in ws.iter_rows(values_only=True)]


async def test_stats_and_audit_as_excel_workbooks_in_the_readers_language(app: Harness) -> None:
    from aiogram.methods import SendDocument

    from tests.conftest import ADMIN
    from tests.flows import to_english
    from tests.test_oversight import pid, post_with_ack

    a, _b = await school(app)
    await post_with_ack(app, a)
    parent = await pid(app, P1)
    await app.press(ADMIN, f"mb:rename:{a}:{parent}:0:0")
    await app.send(ADMIN, "Мария Иванова-Смирнова")
    # The admin reads Russian: Russian headers, rates as percentages.
    calls = await app.send(ADMIN, "/stats")
    calls = await app.press_on(ADMIN, only(calls, SendMessage)[0], "st:xlsx")
    [document] = only(calls, SendDocument)
    assert document.document.filename.endswith(".xlsx")  # type: ignore[union-attr]
    rows = workbook_rows(document.document.data)  # type: ignore[union-attr]
    header = rows[0]
    assert header[0] == "Группа" and "Доставлено, %" in header and "Родитель" in header and "Администратор" in header
    by_group = {r[0]: dict(zip(header, r)) for r in rows[1:]}
    assert by_group["5А"]["Родитель"] == 2 and by_group["5А"]["Доставлено, %"] == 1
    assert by_group["5А"]["Ознакомились, %"] == 0.5 and by_group["6Б"]["Доставлено, %"] is None
    summary = workbook_rows(document.document.data, "Сводка")  # type: ignore[union-attr]
    assert summary[1][0] == "Организация" and summary[1][1] == "Школа № 1"
    # The audit in English: local times to the minute, actions and roles in words, names not ids.
    await to_english(app, ADMIN)
    calls = await app.press(ADMIN, "au:xlsx:0")
    [document] = only(calls, SendDocument)
    assert document.document.filename == "audit.xlsx"  # type: ignore[union-attr]
    rows = workbook_rows(document.document.data)  # type: ignore[union-attr]
    assert rows[0] == ["Time (Europe/Moscow)", "Who", "Action", "About", "Details"]
    newest = rows[1]
    assert isinstance(newest[0], datetime) and newest[0].second == 0 and newest[0].microsecond == 0
    now_msk = datetime.now(MSK).replace(tzinfo=None)
    assert abs(now_msk - newest[0]) < timedelta(minutes=2)  # Moscow time, not UTC
    assert newest[1:4] == ["Админ", "Member's name corrected", "Мария Иванова-Смирнова"]
    created = [r for r in rows if r[2] == "Invitation created"]
    assert created and any("; parent;" in r[4] for r in created)
    assert not any(r[2] and "." in r[2] and " " not in r[2] for r in rows[1:])  # no codes like invitation.create
    # The CSV for programs stays as it was (UTC ISO, codes).
    calls = await app.press(ADMIN, "au:csv:0")
    assert b"member.rename" in only(calls, SendDocument)[0].document.data  # type: ignore[union-attr]


async def test_the_calendar_file_has_an_end_a_unique_uid_alarms_and_a_name(app: Harness) -> None:
    from aiogram.methods import SendDocument
    from icalendar import Calendar

    a, _b = await school(app)
    await start_event(app, a, "Праздник осени")
    await app.send(TEACHER, "25.12.2099 18:30")
    await app.send(TEACHER, "Актовый зал")
    await app.press(TEACHER, "cmp:remind:15")  # a day, an hour and 15 minutes before
    await app.press(TEACHER, "cmp:preview:")
    await app.press(TEACHER, "cmp:send:")
    await app.flush()
    post = await the_post(app)
    calls = await app.send(P1, "/events")
    ics = only(calls, SendDocument)[0].document.data  # type: ignore[union-attr]
    calendar = Calendar.from_ical(ics)
    assert str(calendar["x-wr-calname"]) == "Школа № 1: events"
    [event] = calendar.walk("VEVENT")
    assert event.decoded("dtend") - event.decoded("dtstart") == timedelta(hours=1)
    assert str(event["uid"]) == f"post-{post.id}.org-{post.org_id}@parta_test_bot"
    triggers = sorted(alarm.decoded("trigger") for alarm in event.walk("VALARM"))
    assert triggers == [timedelta(days=-1), timedelta(hours=-1), timedelta(minutes=-15)]
    assert all(str(alarm["action"]) == "DISPLAY" for alarm in event.walk("VALARM"))


# -- the chart ---------------------------------------------------------------------------------


def chart_rows(groups: int) -> list[dict]:
    rows = [{"group": "Учительская", "kind": "staff", "members": {"admin": 1, "teacher": 12}, "posts": 0, "copies": 0,
             "delivered": 0, "unreachable": 0, "ack_delivered": 0, "acks": 0, "absences": 0}]
    for i in range(groups):
        copies = 0 if i % 4 == 0 else 20
        rows.append({"group": f"{i + 1}-я группа «Весёлые непоседы из длинного названия»", "kind": "class",
                     "members": {"parent": 20 + i, "teacher": 1}, "posts": 1 if copies else 0, "copies": copies,
                     "delivered": copies if i % 4 != 1 else 0, "unreachable": 0,
                     "ack_delivered": copies, "acks": 0 if i % 4 == 2 else copies // 2, "absences": 0})
    return rows


def test_the_chart_is_legible_with_many_groups_and_tells_0_percent_from_no_posts() -> None:
    import matplotlib.pyplot as plt

    from bot.i18n import create_i18n, in_locale
    from handlers.chart import figure, stats_chart

    rows = chart_rows(24)
    now = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
    with create_i18n("ru").context(), in_locale("en"):
        fig = figure({"rows": rows}, "Школа № 1", now, "Europe/Moscow")
        try:
            members, reach = fig.axes
            texts_of = lambda axis: [t.get_text() for t in axis.texts]  # noqa: E731
            # The period and the date are on the picture.
            assert any("as of Tue, 1 December, 12:00" in t.get_text() for t in fig.texts)
            # Whole numbers on the count axis, a label on every bar.
            ticks = [t for t in members.get_xticks() if t >= 0]
            assert all(float(t).is_integer() for t in ticks)
            assert [t for t in texts_of(members)] == [str(13)] + [str(21 + i) for i in range(24)]
            # The staff room is among members only, not an empty slot among families.
            labels = [t.get_text() for t in reach.get_yticklabels()]
            assert len(labels) == 24 and not any("Учительская" in label for label in labels)
            # Long names are wrapped, not cut off or overlapping.
            assert all("\n" in label for label in labels)
            # 0 % is a labelled bar; a group without posts says so.
            shown = texts_of(reach)
            assert shown.count("no posts yet") == 6 and shown.count("0 %") == 6 + 6
            assert fig.get_size_inches()[1] >= 10  # taller with more groups
            # No legend inside a panel, over bars.
            for axis in fig.axes:
                legend = axis.get_legend()
                assert legend is not None
                fig.canvas.draw()
                box = legend.get_window_extent()
                assert box.y1 <= axis.get_window_extent().y0 + 1
        finally:
            plt.close(fig)
        png = stats_chart({"rows": rows}, "Школа № 1", now, "Europe/Moscow")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


# -- albums ------------------------------------------------------------------------------------


async def test_an_album_becomes_one_post_delivered_as_an_album_with_the_button_after_it(app: Harness) -> None:
    from aiogram.methods import DeleteMessage, DeleteMessages, SendMediaGroup

    a, _b = await school(app)
    await app.send(TEACHER, "/post")
    await app.press(TEACHER, "cmp:kind:announcement")
    await app.press(TEACHER, f"cmp:group:{a}")
    await app.press(TEACHER, "cmp:next:")
    calls = await app.send_album(TEACHER, [("photo", "ph1"), ("photo", "ph2"), ("video", "vi3")],
                                 caption="Экскурсия в музей")
    said = texts(calls)
    # One answer for the album (the options), nothing for items 2 and 3.
    assert len(only(calls, SendMessage)) == 1 and "Options" in said[0], said
    assert not any("buttons above" in t for t in said)
    await app.press(TEACHER, "cmp:ack:")
    calls = await app.press(TEACHER, "cmp:preview:")
    [album] = only(calls, SendMediaGroup)
    assert [m.media for m in album.media] == ["ph1", "ph2", "vi3"] and album.chat_id == TEACHER.id
    await app.press(TEACHER, "cmp:send:")
    sent = await app.flush()
    for parent in (P1, P2):
        mine = [c for c in sent if getattr(c, "chat_id", None) == parent.id and isinstance(c, (SendMediaGroup, SendMessage))]
        assert [type(c) for c in mine] == [SendMediaGroup, SendMessage]
        assert [type(m).__name__ for m in mine[0].media] == ["InputMediaPhoto", "InputMediaPhoto", "InputMediaVideo"]
        assert "Экскурсия в музей" in mine[1].text and "p:ack" in str(mine[1].reply_markup)
    post = await the_post(app)
    card = [c for c in only(sent, EditMessageText) if c.chat_id == TEACHER.id][-1].text
    assert "Recipients: 3" in card and "delivered: 3" in card  # people, not messages
    # Withdrawn: the album's messages and the text go.
    await app.press(TEACHER, f"pc:withdraw_yes:{post.id}")
    sent = await app.flush()
    albums = [c for c in only(sent, DeleteMessages) if c.chat_id == P1.id]
    assert len(albums) == 1 and len(albums[0].message_ids) == 3
    assert albums[0].message_ids == list(range(albums[0].message_ids[0], albums[0].message_ids[0] + 3))
    assert [c for c in only(sent, DeleteMessage) if c.chat_id == P1.id]


async def test_an_album_for_an_event_and_a_second_album_later(app: Harness) -> None:
    a, _b = await school(app)
    await start_event(app, a, "x")  # a text first...
    await app.press(TEACHER, "cmp:cancel:")
    await app.send(TEACHER, "/post")
    await app.press(TEACHER, "cmp:kind:event")
    await app.press(TEACHER, f"cmp:group:{a}")
    await app.press(TEACHER, "cmp:next:")
    calls = await app.send_album(TEACHER, [("document", "d1"), ("document", "d2")], caption=None)
    assert len(only(calls, SendMessage)) == 1 and "When is it?" in texts(calls)[0]
    calls = await app.send_album(TEACHER, [("photo", "x1"), ("photo", "x2")], group="album-2")
    assert len(only(calls, SendMessage)) == 2 and all("not part of the post" in t for t in texts(calls))
    # A poll's question cannot be an album: one answer, not one per item.
    await app.send(TEACHER, "/post")
    await app.press(TEACHER, "cmp:kind:poll")
    await app.press(TEACHER, f"cmp:group:{a}")
    await app.press(TEACHER, "cmp:next:")
    calls = await app.send_album(TEACHER, [("photo", "y1"), ("photo", "y2"), ("photo", "y3")], group="album-3")
    assert len(only(calls, SendMessage)) == 1 and "question is text" in texts(calls)[0]


async def test_a_new_post_begun_in_the_middle_of_another_keeps_its_dialog(app: Harness) -> None:
    """/post during a dialog clears it and begins anew in one update; the next
    press must find the new dialog (the state store once forgot it after the commit)."""
    a, _b = await school(app)
    await start_event(app, a)
    await app.send(TEACHER, "/post")
    calls = await app.press(TEACHER, "cmp:kind:announcement")
    assert "To whom?" in texts(calls)[-1]


# -- long texts --------------------------------------------------------------------------------


async def long_post(app: Harness, group: int, text: str, *, photo: bool = False) -> Post:
    await app.send(TEACHER, "/post")
    await app.press(TEACHER, "cmp:kind:announcement")
    await app.press(TEACHER, f"cmp:group:{group}")
    await app.press(TEACHER, "cmp:next:")
    if photo:
        await app.send_photo(TEACHER, caption=text)
    else:
        await app.send(TEACHER, text)
    await app.press(TEACHER, "cmp:ack:")
    await app.press(TEACHER, "cmp:preview:")
    await app.press(TEACHER, "cmp:send:")
    return await the_post(app)


def paragraphs(n: int, word: str = "слово") -> str:
    return "\n\n".join(f"{i + 1}. " + (word + " ") * 60 for i in range(n)).replace(" \n", "\n").strip()


async def test_a_caption_over_1024_continues_in_a_message_with_the_buttons(app: Harness) -> None:
    from aiogram.methods import SendPhoto

    from bot.posts import visible_length

    a, _b = await school(app)
    await long_post(app, a, paragraphs(3), photo=True)  # about 1,100 characters with the heading
    sent = await app.flush()
    mine = [c for c in sent if getattr(c, "chat_id", None) == P1.id and isinstance(c, (SendPhoto, SendMessage))]
    assert [type(c) for c in mine] == [SendPhoto, SendMessage]
    assert visible_length(mine[0].caption) <= 1024 and mine[0].reply_markup is None
    assert "p:ack" in str(mine[1].reply_markup) and mine[1].text.endswith("Анна Смирнова")


async def test_an_edit_of_a_split_post_changes_every_part_or_says_why_not(app: Harness) -> None:
    from aiogram.methods import DeleteMessage

    a, _b = await school(app)
    text = paragraphs(11) + "\n\n" + "конец " * 10  # 4,090 characters: with the heading, two messages
    from bot.posts import visible_length

    assert visible_length(text) <= 4096
    post = await long_post(app, a, text)
    sent = await app.flush()
    first, last = [c for c in only(sent, SendMessage) if c.chat_id == P1.id]
    assert first.reply_markup is None and "p:ack" in str(last.reply_markup)
    # A text of the same length: every message that changes is edited; the last one (only the
    # signature and the buttons) reads the same and is left alone (Telegram would answer "not modified").
    assert last.text == "— Анна Смирнова"
    await app.press(TEACHER, f"pc:edit:{post.id}")
    calls = await app.send(TEACHER, text.replace("слово", "слава"))
    assert "Saved" in texts(calls)[-1]
    sent = await app.flush()
    edits = [c for c in only(sent, EditMessageText) if c.chat_id == P1.id]
    assert len(edits) == 1 and "слава" in edits[0].text and "слово" not in edits[0].text
    assert edits[0].reply_markup is None and edits[0].message_id == app.session.message_ids[id(first)]
    # A text that needs one message less or more: refused, with the reason, and nothing changes.
    await app.press(TEACHER, f"pc:edit:{post.id}")
    calls = await app.send(TEACHER, "Коротко")
    assert "went out as 2 messages" in texts(calls)[-1]
    assert not [c for c in await app.flush() if isinstance(c, EditMessageText) and c.chat_id == P1.id]
    # Withdrawn: both messages go.
    await app.send(TEACHER, "/cancel")
    await app.press(TEACHER, f"pc:withdraw_yes:{post.id}")
    sent = await app.flush()
    assert len([c for c in only(sent, DeleteMessage) if c.chat_id == P1.id]) == 2


async def test_changing_an_events_time_with_the_quick_choices(app: Harness) -> None:
    a, _b = await school(app)
    await start_event(app, a)
    await app.send(TEACHER, "25.12.2099 18:30")
    await app.press(TEACHER, "cmp:no_place:")
    await app.press(TEACHER, "cmp:preview:")
    await app.press(TEACHER, "cmp:send:")
    await app.flush()
    post = await the_post(app)
    calls = await app.press(TEACHER, f"pc:time:{post.id}")
    assert "wh:day:" in str(only(calls, SendMessage)[-1].reply_markup)
    day = (local_today() + timedelta(days=2)).date()
    await app.press(TEACHER, f"wh:day:{day:%Y%m%d}")
    calls = await app.press(TEACHER, "wh:time:1000")
    assert "Moved to" in texts(calls)[-1]
    post = await the_post(app)
    assert post.event_at.replace(tzinfo=timezone.utc) == datetime(day.year, day.month, day.day, 10, 0,
                                                                 tzinfo=MSK).astimezone(timezone.utc)
    # A scheduled post: a new time typed in words.
    await app.send(TEACHER, "/post")
    await app.press(TEACHER, "cmp:kind:announcement")
    await app.press(TEACHER, f"cmp:group:{a}")
    await app.press(TEACHER, "cmp:next:")
    await app.send(TEACHER, "Позже")
    await app.press(TEACHER, "cmp:preview:")
    await app.press(TEACHER, "cmp:later:")
    await app.send(TEACHER, "25.12.2099 8:00")
    later = await the_post(app)
    await app.press(TEACHER, f"sch:time:{later.id}")
    calls = await app.send(TEACHER, "завтра 7:45")
    assert "Scheduled for" in texts(calls)[-1]
    tomorrow = (local_today() + timedelta(days=1)).date()
    later = await the_post(app)
    assert later.scheduled_at.replace(tzinfo=timezone.utc) == datetime(
        tomorrow.year, tomorrow.month, tomorrow.day, 7, 45, tzinfo=MSK).astimezone(timezone.utc)
