"""End to end: a whole class onboarded at one parents' meeting.

The real `python -m bot` process against the fake Bot API (as tests/test_e2e.py):
the admin sends the class list of 25 pupils as an .xlsx, confirms the import,
gets the class's slips as a PDF document, 20 families join with the codes
printed on them, and "who is missing" says 20 of 25 and names the five.
Everything is read from what the bot sent: the codes come out of the PDF.
"""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path

from tests.fake_telegram import FakeTelegram
from tests.test_e2e import ADMIN, BOT_USERNAME, STARTUP, TOKEN, running_bot

SURNAMES = ["Иванов", "Петров", "Сидоров", "Смирнов", "Кузнецов", "Попов", "Васильев", "Соколов", "Михайлов",
            "Новиков", "Фёдоров", "Морозов", "Волков", "Алексеев", "Лебедев", "Семёнов", "Егоров", "Павлов",
            "Козлов", "Степанов", "Николаев", "Орлов", "Андреев", "Макаров", "Никитин"]
PUPILS = [f"{s} {n}" for s, n in zip(SURNAMES, ["Пётр", "Иван", "Олег", "Илья", "Глеб"] * 5)]
FIRST_PARENT = 5000


def class_list() -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Список 5 А класса"])
    sheet.append(["№", "ФИО обучающегося", "Класс", "Дата рождения"])
    for i, name in enumerate(PUPILS, start=1):
        sheet.append([i, name, "5 А", f"{(i % 28) + 1:02d}.04.2015"])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


async def onboarding(app, tg: FakeTelegram) -> None:  # type: ignore[no-untyped-def]
    from pypdf import PdfReader

    await app.until(lambda: tg.calls_to("getUpdates"), "the bot to start polling", STARTUP)
    # The organisation (its four steps).
    after = await app.say(ADMIN, "/start")
    await app.message(ADMIN, after=after, contains="1/4")
    after = await app.say(ADMIN, "Школа № 7")
    kinds = await app.message(ADMIN, after=after, button="setup:kind:")
    await app.press(ADMIN, kinds, "setup:kind:school")
    await app.message(ADMIN, after=kinds.message_id, button="setup:tz_default")
    after = await app.say(ADMIN, "Europe/Moscow")
    contact = await app.message(ADMIN, after=after, button="setup:no_contact")
    await app.press(ADMIN, contact, "setup:no_contact")
    await app.menu(ADMIN, lambda c: "import" in c and "families" in c, "the admin's menu with /import and /families")
    await app.set_quiet_hours(ADMIN, "off")  # nothing here may depend on the hour it runs at

    # == The class list: a preview, then the import (the class is created with it).
    after = await app.say(ADMIN, "/import")
    await app.message(ADMIN, after=after, contains=".xlsx")
    after = (await tg.send_document(ADMIN, class_list(), "5А.xlsx")).message_id
    preview = await app.message(ADMIN, after=after, contains="25", button="onb:import")
    assert "5А (25)" in preview.content and "5А" in preview.content, preview
    await app.press(ADMIN, preview, "onb:import")
    done = await app.edited(ADMIN, preview, lambda m: any(d.startswith("fam:slips:") for d in m.callback_data),
                            "the import with the class's slips button")
    assert "25" in done.content

    # == The slips: one PDF document (not a photo), a slip per pupil with the code.
    seen = tg.bot_messages(ADMIN)[-1].message_id
    await app.press(ADMIN, done, "fam:slips:")
    slips = await app.until(
        lambda: next((m for m in tg.bot_messages(ADMIN) if m.message_id > seen and m.document), None), "the slips PDF")
    assert slips.photo is None and slips.file_name and slips.file_name.endswith(".pdf")
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(slips.document)).pages)
    codes = {}
    for name in PUPILS:
        match = re.search(re.escape(name) + r"\n5А\n([A-Z0-9]{10})", text)
        assert match, (name, text[:500])
        codes[name] = match.group(1)
    assert len(set(codes.values())) == 25

    # == 20 families join with their slips: no child's name typed, the child shown is confirmed.
    for i, name in enumerate(PUPILS[:20]):
        parent = FIRST_PARENT + i
        tg.add_user(parent, f"Родитель {i}")
        after = await app.say(parent, f"/start {codes[name]}")
        await app.message(parent, after=after, contains=name)
        after = await app.say(parent, f"{name.split()[0]}а Мама{i}")
        check = await app.message(parent, after=after, contains=name, button="join:confirm")
        await app.press(parent, check, "join:confirm")
        await app.edited(parent, check, lambda m: "✅" in m.content and not m.buttons, f"family {i} welcomed")

    # == Who is missing: 20 of 25, and the five by name.
    after = await app.say(ADMIN, "/families")
    overview = await app.message(ADMIN, after=after, contains="20", button="fam:open:")
    assert "5А: семей подключилось 20 из 25" in overview.content, overview
    await app.press(ADMIN, overview, "fam:open:")
    view = await app.edited(ADMIN, overview, lambda m: "Нет родителя" in m.content, "the class's missing families")
    for name in PUPILS[20:]:
        assert name in view.content
    for name in PUPILS[:20]:
        assert name not in view.content
    after = await app.say(ADMIN, "/stats")
    await app.message(ADMIN, after=after, contains="семей подключилось: 20 из 25")


async def test_a_class_of_25_onboarded_end_to_end(tmp_path: Path) -> None:
    async with FakeTelegram(token=TOKEN, bot_username=BOT_USERNAME) as tg:
        tg.add_user(ADMIN, "Админ", username="admin")
        async with running_bot(tg, tmp_path) as app:
            async with asyncio.timeout(240):
                await onboarding(app, tg)
            log = app.log_text()
            assert "Traceback" not in log, log
        assert not tg.internal_errors
