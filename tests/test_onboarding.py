"""Onboarding a whole school: class lists in, personal family codes, printed
slips, approval of class-wide codes, who is missing, staff by list."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from aiogram.methods import EditMessageText, SendDocument, SendMessage
from sqlalchemy import func, select, update

from bot import classlist
from storage.models import Group, Guardianship, Invitation, JoinRequest, Membership, Person as PersonRow, Pupil, utcnow
from tests.conftest import ADMIN
from tests.flows import create_group, invite, join, memberships, setup_org, to_english
from tests.harness import Harness, Person, answers, button_data, only, texts

TEACHER = Person(3001, "Анна", "en")
MOTHER = Person(2001, "Мария", "en")
FATHER = Person(2002, "Сергей", "en")
THIRD = Person(2003, "Тётя", "en")
PARENT = Person(2004, "Ольга", "en")

NAMES_5A = ["Иванов Пётр Сергеевич", "Петрова Анна Ивановна", "Сидоров Миша", "Ёлкина Алёна"]


def xlsx(rows: list[list[object]], title_rows: int = 0) -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    for _ in range(title_rows):
        sheet.append(["Список обучающихся МБОУ СОШ № 1 на 01.09.2026"])
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def csv_bytes(rows: list[list[str]], delimiter: str = ";", encoding: str = "utf-8") -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter).writerows(rows)
    return buffer.getvalue().encode(encoding)


async def count(app: Harness, model: type) -> int:
    async with app.session_maker() as s:
        return await s.scalar(select(func.count()).select_from(model)) or 0


async def pupils(app: Harness) -> list[tuple[str, str]]:
    async with app.session_maker() as s:
        rows = await s.execute(select(Group.title, Pupil.full_name).join(Group, Group.id == Pupil.group_id))
        return sorted(tuple(r) for r in rows)  # type: ignore[misc]


async def family_codes(app: Harness) -> dict[str, Invitation]:
    """Pupil's name → their working personal code."""
    async with app.session_maker() as s:
        rows = await s.execute(
            select(Pupil.full_name, Invitation).join(Invitation, Invitation.pupil_id == Pupil.id)
            .where(Invitation.revoked_at.is_(None)).order_by(Invitation.id)
        )
        return {name: inv for name, inv in rows}


async def school(app: Harness) -> int:
    await setup_org(app)
    for who in (ADMIN, TEACHER, MOTHER, FATHER, THIRD, PARENT):
        await to_english(app, who)
    return await create_group(app, "5А")


async def import_file(app: Harness, who: Person, data: bytes, name: str, press: str | None = "onb:import") -> list:
    calls = await app.send(who, "/import")
    calls += await app.send_document(who, data, name)
    if press:
        preview = only(calls, SendMessage)[-1]
        calls += await app.press_on(who, preview, press)
    return calls


def class_5a() -> bytes:
    return xlsx([["№", "ФИО ученика", "Класс", "Дата рождения", "Родители"],
                 *[[i + 1, n, "5 А", "12.03.2015", "Иванова Мария"] for i, n in enumerate(NAMES_5A)]],
                title_rows=2)


# -- reading lists ---------------------------------------------------------------------------------


def test_headers_in_russian_and_english_separators_and_encodings() -> None:
    ru = csv_bytes([["Фамилия", "Имя", "Отчество", "Класс", "Дата рождения"],
                    ["Иванов", "Пётр", "Сергеевич", "5а", "2015-03-12"]], ";", "cp1251")
    parsed = classlist.read_list(ru, "список.csv")
    [row] = parsed.rows
    assert (parsed.kind, row.name, row.group, str(row.birth_date), row.problem) == (
        "pupils", "Иванов Пётр Сергеевич", "5А", "2015-03-12", None)
    en = csv_bytes([["Full name", "Class", "Date of birth", "Parents"],
                    ["Smith John", "5B", "12.03.2015", "Mary Smith"]], ",", "utf-8-sig")
    [row] = classlist.read_list(en, "list.csv").rows
    assert (row.name, row.group, row.parents) == ("Smith John", "5B", "Mary Smith")
    staff = csv_bytes([["ФИО", "Должность", "Классы"], ["Орлова Анна", "Учитель математики", "5А, 6Б"]])
    parsed = classlist.read_list(staff, "staff.csv")
    assert parsed.kind == "staff" and (parsed.rows[0].role, parsed.rows[0].groups) == ("teacher", ["5А", "6Б"])


def test_unclear_rows_say_why_with_their_line() -> None:
    data = csv_bytes([["ФИО", "Класс", "Дата рождения"],
                      ["Иванов Пётр", "5А", ""],  # line 2: fine
                      ["", "5А", ""],  # 3: no name
                      ["Петров", "5А", ""],  # 4: one word
                      ["Сидоров Миша", "", ""],  # 5: no class
                      ["Орлов Коля", "5А", "32.13.2015"],  # 6: bad date
                      ["иванов  петр", "5а", ""]])  # 7: repeats line 2
    rows = classlist.read_list(data, "x.csv").rows
    assert [(r.line, r.problem, r.problem_arg) for r in rows] == [
        (2, None, ""), (3, "no_name", ""), (4, "one_word", ""), (5, "no_class", ""),
        (6, "bad_date", "32.13.2015"), (7, "repeated", "2")]


@pytest.mark.parametrize(("data", "name", "code"), [
    (b"%PDF-1.4 ...", "list.pdf", "wrong_type"),
    (b"\xd0\xcf\x11\xe0 old excel", "list.xls", "wrong_type"),
    (b"not a zip at all", "list.xlsx", "damaged"),
    (b"", "list.csv", "empty"),
    (b"\n\n  \n", "list.csv", "empty"),
    ("ФИО;Класс\n".encode(), "list.csv", "empty"),
    ("Номер;Буква\n1;А\n".encode(), "list.csv", "no_name_column"),
    (b"\x98\x98\x98\x01\x02binary\xff", "list.csv", "encoding"),
    (bytes(range(128, 256)) * 20, "list.csv", "encoding"),
])
def test_lists_that_cannot_be_read(data: bytes, name: str, code: str) -> None:
    with pytest.raises(classlist.ListError) as error:
        classlist.read_list(data, name)
    assert error.value.code == code


def test_an_empty_sheet_and_a_sheet_without_names() -> None:
    with pytest.raises(classlist.ListError, match="empty"):
        classlist.read_list(xlsx([]), "a.xlsx")
    with pytest.raises(classlist.ListError, match="no_name_column"):
        classlist.read_list(xlsx([["Класс", "Дата"], ["5А", "01.01.2015"]]), "a.xlsx")


# -- the import dialog -------------------------------------------------------------------------------


async def test_every_bad_input_gets_a_clear_answer_and_changes_nothing(app: Harness) -> None:
    await school(app)
    cases = [
        (b"%PDF", "list.pdf", None, "not a class list I can read"),
        (b"x" * 10, "list.csv", 3 * 1024 * 1024, "too big"),
        (xlsx([["ФИО", "Класс"]]), "list.xlsx", None, "The list is empty"),
        (xlsx([["Класс", "Буква"], ["5", "А"]]), "list.xlsx", None, "cannot find a column with names"),
        (b"\x98\x01\x02\x03garbage", "list.csv", None, "encoding is broken"),
        (b"PK\x03\x04broken", "list.xlsx", None, "damaged"),
    ]
    for data, name, size, expected in cases:
        await app.send(ADMIN, "/import")
        calls = await app.send_document(ADMIN, data, name, file_size=size)
        [answer] = texts(calls)
        assert expected in answer and "Nothing was changed." in answer, answer
        assert not any(b.callback_data.startswith("onb:import") for m in only(calls, SendMessage)
                       if m.reply_markup for row in m.reply_markup.inline_keyboard for b in row)
    # The file that was too big was not even downloaded.
    assert not any("file" in url and url.endswith("file2") for url in app.session.downloads)
    assert len(app.session.downloads) == 4  # wrong type and too big were refused before downloading
    assert (await count(app, Pupil), await count(app, Invitation)) == (0, 0)
    assert [g for g in await groups(app)] == ["5А"]


async def groups(app: Harness) -> list[str]:
    async with app.session_maker() as s:
        return list((await s.scalars(select(Group.title).where(Group.kind == "class").order_by(Group.title))).all())


async def test_preview_then_import_in_one_go_and_the_same_file_twice_changes_nothing(app: Harness) -> None:
    await school(app)
    data = xlsx([["ФИО", "Класс"], *[[n, "5А"] for n in NAMES_5A], ["Новиков Илья", "5Б"], ["Орлов", "5Б"],
                 ["Кузнецова Вера", "5Б"]])
    calls = await import_file(app, ADMIN, data, "классы.xlsx", press=None)
    preview = only(calls, SendMessage)[-1]
    assert "6 pupils in 2 classes: 5А (4), 5Б (2)" in preview.text
    assert "New: 6. Already in the lists: 0. Unclear: 1." in preview.text
    assert "New — lines 2–6, 8" in preview.text
    assert "• line 7 Орлов: only one word" in preview.text
    assert "Classes that do not exist yet: 5Б (2)." in preview.text
    assert await count(app, Pupil) == 0  # a preview changes nothing
    labels = [b.text for row in preview.reply_markup.inline_keyboard for b in row]  # type: ignore[union-attr]
    assert labels == ["✅ Import 6 and create 1 class", "Import 4 into existing classes only", "✖️ Cancel"]
    calls = await app.press_on(ADMIN, preview, "onb:import")
    done = only(calls, EditMessageText)[-1]
    assert "Imported 6 pupils." in done.text and "Classes created: 5Б." in done.text
    assert await groups(app) == ["5А", "5Б"]
    assert len(await pupils(app)) == 6
    codes = await family_codes(app)
    assert len(codes) == 6 and all(c.max_uses == 2 and not c.needs_approval for c in codes.values())
    assert all(abs(c.expires_at - utcnow() - timedelta(days=30)) < timedelta(minutes=1) for c in codes.values())
    # The same file again: everything known, nothing to import, nothing changes — even if forced.
    before = (await pupils(app), await count(app, Invitation), await count(app, Group))
    calls = await import_file(app, ADMIN, data, "классы.xlsx", press=None)
    preview = only(calls, SendMessage)[-1]
    assert "New: 0. Already in the lists: 6. Unclear: 1." in preview.text
    assert "Already known — lines 2–6, 8" in preview.text and "New — lines" not in preview.text
    assert "Nothing new to import" in preview.text
    assert [b.text for row in preview.reply_markup.inline_keyboard for b in row] == ["✖️ Cancel"]  # type: ignore[union-attr]
    await app.press(ADMIN, "onb:import:0")  # a forged button: the plan is made again and has nothing new
    assert (await pupils(app), await count(app, Invitation), await count(app, Group)) == before


async def test_importing_only_into_existing_classes_creates_none(app: Harness) -> None:
    await school(app)
    data = csv_bytes([["ФИО", "Класс"], ["Иванов Пётр", "5А"], ["Новиков Илья", "5Б"]], ",")
    await import_file(app, ADMIN, data, "list.csv", press="onb:existing")
    assert await pupils(app) == [("5А", "Иванов Пётр")] and await groups(app) == ["5А"]


async def test_a_teacher_imports_only_their_own_class_and_no_staff(app: Harness) -> None:
    group = await school(app)
    other = await create_group(app, "6Б")
    await teacher_of(app, group)
    data = csv_bytes([["ФИО", "Класс"], ["Иванов Пётр", "5А"], ["Новиков Илья", "6Б"], ["Кто-то Новый", "7В"]])
    calls = await import_file(app, TEACHER, data, "list.csv", press=None)
    preview = only(calls, SendMessage)[-1].text
    assert "New: 1." in preview and "line 3 Новиков Илья: not one of your classes" in preview
    assert "line 4 Кто-то Новый: not one of your classes" in preview
    await app.press_on(TEACHER, only(calls, SendMessage)[-1], "onb:import")
    assert await pupils(app) == [("5А", "Иванов Пётр")] and await groups(app) == ["5А", "6Б"]
    assert other
    staff = csv_bytes([["ФИО", "Должность"], ["Орлова Анна", "учитель"]])
    calls = await import_file(app, TEACHER, staff, "staff.csv", press=None)
    assert "only administrators import staff" in texts(calls)[-1]
    # A parent cannot import at all.
    calls = await app.send(PARENT, "/import")
    assert texts(calls)[0].startswith("⛔")


async def teacher_of(app: Harness, group: int) -> None:
    """A verified teacher of the class (the verification itself is tested elsewhere)."""
    code = await invite(app, ADMIN, group, "teacher")
    await join(app, TEACHER, code, "Анна Смирнова")
    async with app.session_maker.begin() as s:
        await s.execute(update(Membership).values(state="active"))
    assert ("5А", "teacher", "active") in await memberships(app, TEACHER.id)


# -- personal family codes ---------------------------------------------------------------------------


async def join_with(app: Harness, who: Person, code: str, name: str) -> list:
    calls = await app.send(who, f"/start {code}")
    calls += await app.send(who, name)
    confirm = only(calls, SendMessage)[-1]
    calls += await app.press_on(who, confirm, "join:confirm")
    return calls


async def guardians(app: Harness) -> list[tuple[str, str]]:
    async with app.session_maker() as s:
        rows = await s.execute(
            select(PersonRow.full_name, Pupil.full_name)
            .join(Guardianship, Guardianship.person_id == PersonRow.id).join(Pupil, Pupil.id == Guardianship.pupil_id)
        )
        return sorted(tuple(r) for r in rows)  # type: ignore[misc]


async def test_a_personal_code_binds_the_right_pupil_and_two_parents_share_it(app: Harness) -> None:
    await school(app)
    await import_file(app, ADMIN, class_5a(), "5a.xlsx")
    codes = await family_codes(app)
    code = codes["Петрова Анна Ивановна"].code
    calls = await app.send(MOTHER, f"/start {code}")
    assert "Personal code of the family of <b>Петрова Анна Ивановна</b>, 5А" in texts(calls)[0]
    calls = await app.send(MOTHER, "Петрова Мария")
    confirm = only(calls, SendMessage)[-1]
    assert "Child: Петрова Анна Ивановна" in confirm.text and "Is this your child?" in confirm.text
    assert "Yes, this is my child" in confirm.reply_markup.inline_keyboard[0][0].text  # type: ignore[union-attr]
    calls = await app.press_on(MOTHER, confirm, "join:confirm")
    assert "Welcome" in texts(calls)[-1]
    assert await memberships(app, MOTHER.id) == [("5А", "parent", "active")]
    # The second parent, the same code; no second pupil was made.
    await join_with(app, FATHER, code, "Петров Сергей")
    assert await guardians(app) == [("Петров Сергей", "Петрова Анна Ивановна"), ("Петрова Мария", "Петрова Анна Ивановна")]
    assert await count(app, Pupil) == len(NAMES_5A)
    # The limit (two) is reached: a third person is refused and nothing changes.
    calls = await app.send(THIRD, f"/start {code}")
    assert "used up" in texts(calls)[0]
    assert await memberships(app, THIRD.id) == []
    # The same parent again is told they are already there; the code is not used up further.
    calls = await app.send(MOTHER, f"/join {codes['Иванов Пётр Сергеевич'].code}")
    assert "Personal code of the family of" in texts(calls)[0]


async def test_a_reissued_code_stops_the_old_one(app: Harness) -> None:
    group = await school(app)
    await import_file(app, ADMIN, class_5a(), "5a.xlsx")
    old = (await family_codes(app))["Сидоров Миша"]
    calls = await app.press(ADMIN, f"fam:pick:{group}:0")
    picker = only(calls, EditMessageText)[0]
    calls = await app.press(ADMIN, button_data(picker.reply_markup, f"fam:reissue:{group}:{old.pupil_id}"))
    [document] = only(calls, SendDocument)
    new = (await family_codes(app))["Сидоров Миша"]
    assert new.code != old.code and new.code in (document.caption or "")
    calls = await app.send(MOTHER, f"/start {old.code}")
    assert "revoked" in texts(calls)[0]
    await join_with(app, MOTHER, new.code, "Сидорова Ольга")
    assert await guardians(app) == [("Сидорова Ольга", "Сидоров Миша")]
    # A parent cannot reissue codes.
    calls = await app.press(PARENT, f"fam:reissue:{group}:{old.pupil_id}")
    assert answers(calls)[0].show_alert


# -- class-wide codes go through approval --------------------------------------------------------------


async def test_a_class_wide_code_becomes_a_request_the_teacher_approves_binding_the_listed_pupil(app: Harness) -> None:
    group = await school(app)
    await teacher_of(app, group)
    await import_file(app, ADMIN, class_5a(), "5a.xlsx")
    code = await invite(app, ADMIN, group, "parent", approval=True)
    async with app.session_maker() as s:
        assert (await s.scalars(select(Invitation).where(Invitation.code == code))).one().needs_approval
    await app.send(PARENT, f"/start {code}")
    await app.send(PARENT, "Иванова Ольга")
    calls = await app.send(PARENT, "Иванов Петр Сергеевич")  # typed with е for ё: the same pupil
    confirm = only(calls, SendMessage)[-1]
    assert "approves your request" in confirm.text
    app.clear()
    calls = await app.press_on(PARENT, confirm, "join:confirm")
    assert "request to join 5А is sent" in texts(calls)[-1]
    assert await memberships(app, PARENT.id) == []  # not in until approved
    cards = [c for c in only(await app.flush(), SendMessage) if c.chat_id in (ADMIN.id, TEACHER.id)]
    assert {c.chat_id for c in cards} == {ADMIN.id, TEACHER.id}
    teacher_card = next(c for c in cards if c.chat_id == TEACHER.id)
    assert "Иванова Ольга" in teacher_card.text and "In the class list: Иванов Пётр Сергеевич" in teacher_card.text
    await app.press_on(TEACHER, teacher_card, "req:approve")
    assert await memberships(app, PARENT.id) == [("5А", "parent", "active")]
    assert await guardians(app) == [("Иванова Ольга", "Иванов Пётр Сергеевич")]
    assert await count(app, Pupil) == len(NAMES_5A)


async def test_a_typo_in_the_childs_name_is_offered_the_nearest_pupil(app: Harness) -> None:
    group = await school(app)
    await import_file(app, ADMIN, class_5a(), "5a.xlsx")
    code = await invite(app, ADMIN, group, "parent", approval=True)
    await app.send(PARENT, f"/start {code}")
    await app.send(PARENT, "Петрова Ольга")
    calls = await app.send(PARENT, "Петрова Ана Ивановна")
    await app.press_on(PARENT, only(calls, SendMessage)[-1], "join:confirm")
    async with app.session_maker() as s:
        request = (await s.scalars(select(JoinRequest))).one()
        assert request.invitation_id is not None
    calls = await app.send(ADMIN, "/requests")
    card = only(calls, SendMessage)[-1]
    assert "No pupil of that name in the class list. Nearest: Петрова Анна Ивановна" in card.text
    calls = await app.press_on(ADMIN, card, "reqb:")
    assert await guardians(app) == [("Петрова Ольга", "Петрова Анна Ивановна")]
    assert await count(app, Pupil) == len(NAMES_5A)  # no second pupil from the typo


async def test_approval_can_be_switched_off_per_invitation(app: Harness) -> None:
    group = await school(app)
    code = await invite(app, ADMIN, group, "parent")  # flows.invite switches it off with the button
    async with app.session_maker() as s:
        assert not (await s.scalars(select(Invitation).where(Invitation.code == code))).one().needs_approval
    await app.send(PARENT, f"/start {code}")
    await app.send(PARENT, "Иванова Ольга")
    calls = await app.send(PARENT, "Иванов Пётр")
    await app.press_on(PARENT, only(calls, SendMessage)[-1], "join:confirm")
    assert await memberships(app, PARENT.id) == [("5А", "parent", "active")]
    assert await count(app, JoinRequest) == 0


# -- who is missing ---------------------------------------------------------------------------------------


async def test_coverage_per_class_in_families_and_stats(app: Harness) -> None:
    group = await school(app)
    await import_file(app, ADMIN, class_5a(), "5a.xlsx")
    codes = await family_codes(app)
    await join_with(app, MOTHER, codes["Петрова Анна Ивановна"].code, "Петрова Мария")
    await join_with(app, FATHER, codes["Петрова Анна Ивановна"].code, "Петров Сергей")  # the same family
    await join_with(app, THIRD, codes["Ёлкина Алёна"].code, "Ёлкина Вера")
    calls = await app.send(ADMIN, "/families")
    assert "5А: families joined 2 of 4" in texts(calls)[0]
    calls = await app.press(ADMIN, f"fam:open:{group}:0")
    view = only(calls, EditMessageText)[0]
    assert "No parent yet (2):\n• Иванов Пётр Сергеевич\n• Сидоров Миша" in view.text
    calls = await app.press_on(ADMIN, view, "fam:missing")
    [document] = only(calls, SendDocument)
    text = pdf_text(document.document.data)  # type: ignore[union-attr]
    assert "Иванов Пётр Сергеевич" in text and "Сидоров Миша" in text and "Петрова" not in text
    calls = await app.press(ADMIN, f"mem:group:{group}:0")  # /members says it too, and where to look
    assert "families joined: 2 of 4 (who is missing: /families)" in only(calls, EditMessageText)[0].text
    calls = await app.send(ADMIN, "/stats")
    assert "families joined: 2 of 4" in texts(calls)[0]
    calls = await app.press(ADMIN, "st:csv")
    raw = only(calls, SendDocument)[0].document.data  # type: ignore[union-attr]
    [row] = [r for r in csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))) if r["group"] == "5А"]
    assert (row["pupils"], row["families_joined"], row["families_rate"]) == ("4", "2", "0.500")
    calls = await app.press(ADMIN, "st:chart")
    assert calls  # the chart draws the families' bars too (its own test looks at it)
    # A parent sees no coverage.
    calls = await app.send(MOTHER, "/families")
    assert texts(calls)[0].startswith("⛔")


# -- the PDFs ------------------------------------------------------------------------------------------------


def pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def pdf_qr_codes(data: bytes) -> list[str]:
    import zxingcpp
    from pypdf import PdfReader

    found = []
    for page in PdfReader(io.BytesIO(data)).pages:
        for image in page.images:
            found += [r.text for r in zxingcpp.read_barcodes(image.image.convert("L"))]
    return found


async def test_the_class_slips_have_each_name_and_code_and_qrs_of_the_deep_links(app: Harness) -> None:
    group = await school(app)
    names = [f"Ученик{i} Фамилия{i}" for i in range(10)]  # two pages
    await import_file(app, ADMIN, csv_bytes([["ФИО", "Класс"], *[[n, "5А"] for n in names]]), "5a.csv")
    calls = await app.press(ADMIN, f"fam:slips:{group}:0")
    [document] = only(calls, SendDocument)
    data = document.document.data  # type: ignore[union-attr]
    assert data.startswith(b"%PDF") and document.document.filename == "slips-5А.pdf"  # type: ignore[union-attr]
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages) == 2
    assert [round(float(x)) for x in reader.pages[0].mediabox[2:]] == [595, 842]  # A4 in points
    text = pdf_text(data)
    codes = await family_codes(app)
    for name in names:
        assert name in text and codes[name].code in text
    assert "Школа № 1" in text and "5А" in text
    assert "Valid until" in text or "Действует до" in text
    links = sorted(f"https://t.me/parta_test_bot?start={codes[n].code}" for n in names)
    assert sorted(pdf_qr_codes(data)) == links
    # Printing again issues no new codes.
    await app.press(ADMIN, f"fam:slips:{group}:0")
    assert {n: c.code for n, c in (await family_codes(app)).items()} == {n: c.code for n, c in codes.items()}


async def test_the_slips_are_in_the_organisations_language(app: Harness) -> None:
    group = await school(app)  # the admin reads English; the school's language is Russian
    await import_file(app, ADMIN, csv_bytes([["ФИО", "Класс"], ["Иванов Пётр", "5А"]]), "5a.csv")
    calls = await app.press(ADMIN, f"fam:slips:{group}:0")
    text = pdf_text(only(calls, SendDocument)[0].document.data)  # type: ignore[union-attr]
    assert "Действует до" in text and "Наведите камеру" in text


async def test_a_poster_for_a_class_wide_code(app: Harness) -> None:
    group = await school(app)
    await app.send(ADMIN, "/invite")
    await app.press(ADMIN, f"inv:group:{group}::0:0")
    await app.press(ADMIN, f"inv:role:{group}:parent:0:0")
    await app.press(ADMIN, f"inv:days:{group}:parent:14:0")
    calls = await app.press(ADMIN, f"inv:make:{group}:parent:14:0")
    made = only(calls, EditMessageText)[-1]
    assert "approved by the class's teacher" in made.text
    calls = await app.press_on(ADMIN, made, "poster:pdf")
    [document] = only(calls, SendDocument)
    async with app.session_maker() as s:
        code = (await s.scalars(select(Invitation.code))).one()
    data = document.document.data  # type: ignore[union-attr]
    text = pdf_text(data)
    assert code in text and "5А" in text and "Школа № 1" in text and "учитель" in text.lower()
    assert pdf_qr_codes(data) == [f"https://t.me/parta_test_bot?start={code}"]
    # Someone else cannot make its poster.
    calls = await app.press(PARENT, made.reply_markup.inline_keyboard[0][0].callback_data)  # type: ignore[union-attr, arg-type]
    assert answers(calls)[0].show_alert and not only(calls, SendDocument)


# -- staff by list -------------------------------------------------------------------------------------------


async def test_staff_imported_get_personal_codes_and_are_verified_on_joining(app: Harness) -> None:
    await school(app)
    await create_group(app, "6Б")
    data = csv_bytes([["ФИО", "Должность", "Классы"],
                      ["Орлова Анна Петровна", "Учитель", "5А, 6Б"],
                      ["Кузнецов Иван", "Завуч", ""],
                      ["Белова Ирина", "вахтёр", ""],
                      ["Смирнов Олег", "Учитель", "9Я"]])
    calls = await import_file(app, ADMIN, data, "staff.csv", press=None)
    preview = only(calls, SendMessage)[-1].text
    assert "2 staff members" in preview and "New: 2." in preview
    assert "line 4 Белова Ирина: the role «вахтёр» is not known" in preview
    assert "line 5 Смирнов Олег: no class 9Я" in preview
    calls = await app.press_on(ADMIN, only(calls, SendMessage)[-1], "onb:import")
    [document] = only(calls, SendDocument)
    text = pdf_text(document.document.data)  # type: ignore[union-attr]
    async with app.session_maker() as s:
        staff = {i.person_name: i for i in (await s.scalars(select(Invitation))).all()}
    assert set(staff) == {"Орлова Анна Петровна", "Кузнецов Иван"}
    for name, invitation in staff.items():
        assert name in text and invitation.code in text and invitation.max_uses == 1
    calls = await app.send(ADMIN, "/families")
    calls = await app.press_on(ADMIN, only(calls, SendMessage)[0], "fam:staff")
    again = pdf_text(only(calls, SendDocument)[0].document.data)  # type: ignore[union-attr]
    assert all(name in again and invitation.code in again for name, invitation in staff.items())
    # Joining with it: no name to type, verified at once, in both classes and the staff room.
    calls = await app.send(TEACHER, f"/start {staff['Орлова Анна Петровна'].code}")
    confirm = only(calls, SendMessage)[-1]
    assert "Орлова Анна Петровна" in confirm.text and "verified on joining" in confirm.text
    calls = await app.press_on(TEACHER, confirm, "join:confirm")
    assert "verify" not in texts(calls)[-1]
    assert await memberships(app, TEACHER.id) == [("5А", "teacher", "active"), ("6Б", "teacher", "active"),
                                                  ("Учительская", "teacher", "active")]
    await app.send(PARENT, f"/start {staff['Кузнецов Иван'].code}")
    await app.press(PARENT, "join:confirm")
    assert await memberships(app, PARENT.id) == [("Учительская", "head", "active")]
    # Codes nobody has used yet are printed again from /families; once used, there is nothing to print.
    calls = await app.send(ADMIN, "/families")
    assert not any("fam:staff" in b.callback_data for row in only(calls, SendMessage)[0].reply_markup.inline_keyboard  # type: ignore[union-attr]
                   for b in row)
    # The same list again: both are known, nothing new.
    calls = await import_file(app, ADMIN, data, "staff.csv", press=None)
    assert "New: 0. Already known: 2." in only(calls, SendMessage)[-1].text


async def test_a_personal_code_expires_and_stays_out_of_the_invitations_list(app: Harness) -> None:
    group = await school(app)
    await import_file(app, ADMIN, class_5a(), "5a.xlsx")
    codes = await family_codes(app)
    calls = await app.send(ADMIN, "/invites")
    assert not any(c.code in texts(calls)[0] for c in codes.values())  # the slips are in /families
    assert "no working invitations" in texts(calls)[0]
    await app.press(ADMIN, "invs:all_yes")  # "revoke all unused" leaves the printed slips alone
    assert len(await family_codes(app)) == len(NAMES_5A)
    code = codes["Сидоров Миша"].code
    async with app.session_maker.begin() as s:
        await s.execute(update(Invitation).where(Invitation.code == code).values(expires_at=utcnow() - timedelta(seconds=1)))
    calls = await app.send(MOTHER, f"/start {code}")
    assert "expired" in texts(calls)[0]
    assert await memberships(app, MOTHER.id) == []
    # Printing the class again gives that pupil a fresh code; the others keep theirs.
    calls = await app.press(ADMIN, f"fam:slips:{group}:0")
    fresh = await family_codes(app)
    assert fresh["Сидоров Миша"].code != code and fresh["Сидоров Миша"].code in pdf_text(
        only(calls, SendDocument)[0].document.data)  # type: ignore[union-attr]
    assert all(fresh[n].code == codes[n].code for n in NAMES_5A if n != "Сидоров Миша")


async def test_the_import_is_one_transaction(app: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure after the classes and pupils were written (issuing the codes) leaves nothing behind."""
    from storage.repo import Repo

    await school(app)
    data = csv_bytes([["ФИО", "Класс"], ["Иванов Пётр", "5А"], ["Новиков Илья", "5Б"]])
    calls = await import_file(app, ADMIN, data, "list.csv", press=None)

    async def broken(self: Repo, rows: list) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(Repo, "add_invitations", broken)
    calls = await app.press_on(ADMIN, only(calls, SendMessage)[-1], "onb:import")
    assert "nothing was changed" in answers(calls)[0].text  # type: ignore[operator]
    assert (await pupils(app), await groups(app), await count(app, Invitation)) == ([], ["5А"], 0)
    monkeypatch.undo()
    # The dialog state was rolled back with the rest: the preview's button works again.
    await app.press(ADMIN, "onb:import:0")
    assert await pupils(app) == [("5А", "Иванов Пётр"), ("5Б", "Новиков Илья")]


async def test_other_documents_are_not_taken_for_lists(app: Harness) -> None:
    await school(app)
    calls = await app.send_document(ADMIN, b"%PDF-1.4", "minutes.pdf")  # no /import: not a list, not ours
    assert texts(calls) and "not a class list" not in texts(calls)[0]
    calls = await app.send_document(PARENT, csv_bytes([["ФИО", "Класс"], ["Иванов Пётр", "5А"]]), "list.csv")
    assert texts(calls) and "Import" not in texts(calls)[0]  # a parent's file is not an import either
    assert not app.session.downloads and await count(app, Pupil) == 0
    # Inside /import, anything but a file gets a hint.
    await app.send(ADMIN, "/import")
    calls = await app.send(ADMIN, "here it is")
    assert "as an .xlsx or .csv file" in texts(calls)[0]


async def test_a_teacher_forging_another_classs_slips_or_the_admins_poster_is_refused_with_the_mark(app: Harness) -> None:
    group = await school(app)
    other = await create_group(app, "6Б")
    await app.send(ADMIN, "/invite")
    await app.press(ADMIN, f"inv:group:{other}::0:0")
    await app.press(ADMIN, f"inv:role:{other}:parent:0:0")
    await app.press(ADMIN, f"inv:days:{other}:parent:14:0")
    made = only(await app.press(ADMIN, f"inv:make:{other}:parent:14:0"), EditMessageText)[-1]
    poster = button_data(made.reply_markup, "poster:pdf")
    await teacher_of(app, group)
    for data in (f"fam:slips:{other}:0", poster):
        calls = await app.press(TEACHER, data)
        [answer] = answers(calls)
        # the teacher of 5А may print neither 6Б's slips nor an administrator's poster
        assert answer.text.startswith("⛔") and answer.show_alert and not only(calls, SendDocument)
