"""Reading a class list or a staff list as a school's register exports it.

An .xlsx (openpyxl) or a .csv (`;` or `,`, UTF-8 or Windows-1251); a header
row in Russian or English somewhere in the first rows; the pupil's full name
(one column, or surname / first name / patronymic apart), the class, and
optionally a date of birth and the parents' names. A list with a role column
is a staff list (name, role, classes).

Nothing here touches the database or Telegram: `read_list` turns bytes into
rows with their line numbers and, for each row, why it is unclear (if it is).
What is new and what is already known is decided against the database by the
caller (bot/onboarding.py).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime

MAX_BYTES = 2 * 1024 * 1024  # a register's export of a whole school is well under this
MAX_ROWS = 5000
HEADER_SEARCH = 10  # the header row is among the first rows (titles may come before it)
EXTENSIONS = (".xlsx", ".csv")


class ListError(Exception):
    """The file cannot be read as a list at all; `code` says why."""

    # wrong_type | too_big | damaged | empty | no_name_column | encoding | too_many_rows
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


# Unclear rows: why, as a code the handler words in the reader's language.
NO_NAME = "no_name"
BAD_NAME = "bad_name"
ONE_WORD = "one_word"
NO_CLASS = "no_class"
BAD_CLASS = "bad_class"
BAD_DATE = "bad_date"
REPEATED = "repeated"
NO_ROLE = "no_role"
BAD_ROLE = "bad_role"


@dataclass
class Row:
    line: int  # as the spreadsheet program numbers it (1-based, the header included)
    name: str = ""
    group: str = ""  # the class's title as written
    birth_date: date | None = None
    parents: str = ""
    role: str = ""  # staff lists: a Role value
    groups: list[str] = field(default_factory=list)  # staff lists: the classes they teach
    problem: str | None = None
    problem_arg: str = ""  # e.g. the line a repeated row repeats

    def as_dict(self) -> dict[str, object]:
        return {
            "line": self.line, "name": self.name, "group": self.group,
            "birth_date": self.birth_date.isoformat() if self.birth_date else None,
            "parents": self.parents, "role": self.role, "groups": self.groups,
            "problem": self.problem, "problem_arg": self.problem_arg,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Row:  # type: ignore[type-arg]
        birth = d.get("birth_date")
        return cls(
            line=int(d["line"]), name=str(d.get("name") or ""), group=str(d.get("group") or ""),
            birth_date=date.fromisoformat(birth) if birth else None, parents=str(d.get("parents") or ""),
            role=str(d.get("role") or ""), groups=list(d.get("groups") or []),
            problem=d.get("problem"), problem_arg=str(d.get("problem_arg") or ""),
        )


@dataclass
class ClassList:
    kind: str  # "pupils" | "staff"
    rows: list[Row]


def _key(header: object) -> str:
    """A header cell as compared: lower case, ё as е, no punctuation or extra spaces."""
    text = str(header or "").casefold().replace("ё", "е")
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


# Header names as registers write them (compared after _key()).
_NAME = {"фио", "ф и о", "фио ученика", "фио учащегося", "фио обучающегося", "фио ребенка", "фио воспитанника",
         "ученик", "учащийся", "обучающийся", "ребенок", "воспитанник", "фамилия имя отчество", "фамилия имя",
         "фамилия и имя", "полное имя", "имя ученика", "name", "full name", "fullname", "pupil", "pupil name",
         "student", "student name", "child", "child name", "фио сотрудника", "сотрудник", "педагог", "фио педагога",
         "staff", "staff member", "employee", "teacher", "person"}
_SURNAME = {"фамилия", "surname", "last name", "family name"}
_FIRST = {"имя", "first name", "given name"}
_PATRONYMIC = {"отчество", "patronymic", "middle name"}
_CLASS = {"класс", "группа", "класс группа", "класс буква", "class", "group", "form", "grade", "class name"}
_BIRTH = {"дата рождения", "др", "д р", "день рождения", "date of birth", "birth date", "birthdate", "birthday",
          "dob", "born"}
_PARENTS = {"родители", "родитель", "фио родителя", "фио родителей", "законный представитель",
            "законные представители", "мать", "отец", "parents", "parent", "parent names", "parents names",
            "guardian", "guardians", "mother", "father"}
_ROLE = {"должность", "роль", "role", "position", "job title", "post"}
_CLASSES = {"классы", "группы", "классное руководство", "классы групп", "classes", "groups", "teaches"}

# A staff member's role as written → a Role value.
_ROLES = [
    (("администратор", "admin"), "admin"),
    (("директор", "завуч", "заместитель", "руководител", "заведующ", "администрац", "head", "principal",
      "deputy"), "head"),
    (("логопед", "психолог", "дефектолог", "специалист", "тьютор", "социальный педагог", "specialist",
      "therapist", "psychologist", "counsel"), "specialist"),
    (("учитель", "педагог", "воспитатель", "классный руководитель", "преподаватель", "teacher", "tutor",
      "educator"), "teacher"),
]


def role_of(text: str) -> str | None:
    value = _key(text)
    if not value:
        return None
    for words, role in _ROLES:
        if any(w in value for w in words):
            return role
    return None


def check_file(file_name: str | None, size: int | None) -> None:
    """What can be told before downloading: the type by its name, and the size."""
    name = (file_name or "").lower()
    if not name.endswith(EXTENSIONS):
        raise ListError("wrong_type")
    if size is not None and size > MAX_BYTES:
        raise ListError("too_big")


def read_list(data: bytes, file_name: str) -> ClassList:
    check_file(file_name, len(data))
    if not data:
        raise ListError("empty")
    table = _xlsx(data) if file_name.lower().endswith(".xlsx") else _csv(data)
    return _rows(table)


# -- the file as a table of (line, cells) ---------------------------------------------


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return " ".join(str(value).split())


def _xlsx(data: bytes) -> list[tuple[int, list[str]]]:
    import openpyxl  # imported here: only an import needs it

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError):
        raise ListError("damaged") from None
    except Exception:  # openpyxl raises its own kinds for files that are not a workbook
        raise ListError("damaged") from None
    try:
        sheet = book.active if book.active is not None else book.worksheets[0]
        table: list[tuple[int, list[str]]] = []
        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            cells = [_cell(v) for v in values]
            if any(cells):
                table.append((number, cells))
            if len(table) > MAX_ROWS + HEADER_SEARCH:
                raise ListError("too_many_rows")
        return table
    finally:
        book.close()


# Bytes that no text in Windows-1251 has (0x98 is unassigned; C0 controls other than tab and line ends).
_NOT_TEXT = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _decode(data: bytes) -> str:
    if _NOT_TEXT.search(data):
        raise ListError("encoding")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("cp1251")
    except UnicodeDecodeError:
        raise ListError("encoding") from None
    # Windows-1251 decodes almost any bytes: what is not letters, digits and
    # ordinary punctuation in such a text means it was something else.
    odd = sum(1 for ch in text if ch in "ЂЃ‚ѓ„…†‡€‰Љ‹ЊЌЋЏђ‘’“”•–—™љ›њќћџЎўЈ¤Ґ¦§Ё©Є«¬®Ї°±Ііґµ¶·ё№є»јЅѕї")
    if odd > max(3, len(text) // 50):
        raise ListError("encoding")
    return text


def _csv(data: bytes) -> list[tuple[int, list[str]]]:
    text = _decode(data)
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise ListError("empty")
    head = next(line for line in lines if line.strip())
    delimiter = ";" if head.count(";") >= head.count(",") and head.count(";") else ","
    if "\t" in head and not head.count(";") and not head.count(","):
        delimiter = "\t"
    table: list[tuple[int, list[str]]] = []
    for number, cells in enumerate(csv.reader(io.StringIO(text), delimiter=delimiter), start=1):
        values = [_cell(c) for c in cells]
        if any(values):
            table.append((number, values))
        if len(table) > MAX_ROWS + HEADER_SEARCH:
            raise ListError("too_many_rows")
    return table


# -- the table as rows -------------------------------------------------------------------


def _columns(cells: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for index, cell in enumerate(cells):
        key = _key(cell)
        for what, names in (("name", _NAME), ("surname", _SURNAME), ("first", _FIRST),
                            ("patronymic", _PATRONYMIC), ("class", _CLASS), ("birth", _BIRTH),
                            ("parents", _PARENTS), ("role", _ROLE), ("classes", _CLASSES)):
            if key in names and what not in found:
                found[what] = index
                break
        else:
            # "ФИО ученика (полностью)" and the like: a header that starts with a known one.
            if "name" not in found and any(key.startswith(n + " ") for n in ("фио", "full name")):
                found["name"] = index
    return found


def _rows(table: list[tuple[int, list[str]]]) -> ClassList:
    if not table:
        raise ListError("empty")
    header_at = None
    columns: dict[str, int] = {}
    for position, (_line, cells) in enumerate(table[:HEADER_SEARCH]):
        columns = _columns(cells)
        if "name" in columns or "surname" in columns:
            header_at = position
            break
    if header_at is None:
        raise ListError("no_name_column")
    body = table[header_at + 1:]
    if not body:
        raise ListError("empty")
    if len(body) > MAX_ROWS:
        raise ListError("too_many_rows")
    kind = "staff" if "role" in columns else "pupils"
    rows = [_row(line, cells, columns, kind) for line, cells in body]
    _mark_repeats(rows, kind)
    return ClassList(kind=kind, rows=rows)


def _get(cells: list[str], columns: dict[str, int], what: str) -> str:
    index = columns.get(what)
    return cells[index].strip() if index is not None and index < len(cells) else ""


_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_DMY_DATE = re.compile(r"(\d{1,2})[./-](\d{1,2})[./-](\d{2}|\d{4})")


def parse_date(text: str) -> date | None:
    """A date of birth as registers write it: 2015-03-12, 12.03.2015, 12.03.15, 12/03/2015."""
    value = text.strip()
    if match := _ISO_DATE.fullmatch(value):
        year, month, day = (int(g) for g in match.groups())
    elif match := _DMY_DATE.fullmatch(value):
        day, month, year = (int(g) for g in match.groups())
        if year < 100:  # 15 → 2015, 98 → 1998
            year += 2000 if year <= date.today().year % 100 else 1900
    else:
        return None
    try:
        parsed = date(year, month, day)
    except ValueError:
        return None
    return parsed if 1900 < parsed.year <= date.today().year else None


def _clean(text: str) -> str:
    if not text.isprintable():
        text = "".join(ch for ch in text if ch.isprintable())
    return " ".join(text.split())


def class_title(text: str) -> str:
    """"5 А", "5а", "5-А класс" → "5А"; other titles (a group's name) as written."""
    value = _clean(text)
    match = re.fullmatch(r"(\d{1,2})\s*[-–]?\s*[«\"']?([A-Za-zА-Яа-яЁё])[»\"']?(?:\s*(?:класс|кл\.?|class))?", value,
                         flags=re.IGNORECASE)
    if match:
        return match.group(1) + match.group(2).upper()
    return value


def _row(line: int, cells: list[str], columns: dict[str, int], kind: str) -> Row:
    name = _get(cells, columns, "name")
    if not name:
        name = " ".join(p for p in (_get(cells, columns, w) for w in ("surname", "first", "patronymic")) if p)
    row = Row(line=line, name=_clean(name))
    if kind == "staff":
        role_text = _get(cells, columns, "role")
        row.role = role_of(role_text) or ""
        row.groups = [class_title(g) for g in re.split(r"[,;/]+", _get(cells, columns, "classes")) if g.strip()]
        if not row.name:
            row.problem = NO_NAME
        elif not _plausible(row.name):
            row.problem = BAD_NAME
        elif not role_text:
            row.problem = NO_ROLE
        elif not row.role:
            row.problem, row.problem_arg = BAD_ROLE, role_text[:40]
        return row
    row.group = class_title(_get(cells, columns, "class"))
    row.parents = _clean(_get(cells, columns, "parents"))[:256]
    birth = _get(cells, columns, "birth")
    if not row.name:
        row.problem = NO_NAME
    elif not _plausible(row.name):
        row.problem = BAD_NAME
    elif len(row.name.split()) < 2:
        row.problem = ONE_WORD
    elif not row.group:
        row.problem = NO_CLASS
    elif len(row.group) > 64 or not any(ch.isalnum() for ch in row.group):
        row.problem = BAD_CLASS
    elif birth and (parsed := parse_date(birth)) is None:
        row.problem, row.problem_arg = BAD_DATE, birth[:20]
    else:
        row.birth_date = parsed if birth else None
    return row


def _plausible(name: str) -> bool:
    return 2 <= len(name) <= 128 and any(ch.isalpha() for ch in name) and not name.startswith("/")


def name_key(name: str) -> str:
    """How two spellings of a name are compared: case, spaces and ё (as storage.repo.normalize_name)."""
    return re.sub(r"\s+", " ", name).strip().casefold().replace("ё", "е")


def _mark_repeats(rows: list[Row], kind: str) -> None:
    seen: dict[tuple[str, str], int] = {}
    for row in rows:
        if row.problem:
            continue
        key = (name_key(row.name), name_key(row.group) if kind == "pupils" else row.role)
        if key in seen:
            row.problem, row.problem_arg = REPEATED, str(seen[key])
        else:
            seen[key] = row.line
