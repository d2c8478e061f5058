"""Long HTML texts in parts Telegram accepts.

A part ends at a paragraph boundary where one lies in reach, else at a line
break, else after a space, else anywhere between characters; never inside a
tag or an entity (`&amp;`). A tag open at the cut (<b> around two paragraphs,
a link) is closed at the end of the part and opened again, with the same
attributes, at the start of the next, so every part is valid HTML on its own.
Lengths are what Telegram counts: the text once parsed, in UTF-16 code units.
"""

from __future__ import annotations

import re
from html import unescape

# A tag, an entity, one blank, a piece of a word (a cut inside a word, only when a word
# is longer than a part, falls between pieces), or a stray "<" or "&".
_UNIT = re.compile(r"<[^>]*>|&(?:#\d+|#x[0-9a-fA-F]+|[A-Za-z]+);|\s|[^\s<&]{1,8}|[<&]")
_TAG = re.compile(r"<[^>]*>")
_TAG_NAME = re.compile(r"</?\s*([A-Za-z][\w-]*)")
# A break is not taken in the first quarter of a part when a later one exists:
# parts of a few words each are worse than a cut at a space.
MIN_FILL = 0.25


# A unit: (raw text, UTF-16 code units once parsed — 0 for a tag, the tag's name or None, whether it closes).
_Unit = tuple[str, int, "str | None", bool]
RAW, WIDTH, TAG, CLOSING = range(4)
_ASTRAL = re.compile("[\U00010000-\U0010FFFF]")  # two UTF-16 code units each


def _units(text: str) -> list[_Unit]:
    out = []
    for raw in _UNIT.findall(text):
        first = raw[0]
        if first == "<" and (name := _TAG_NAME.match(raw)):
            out.append((raw, 0, name.group(1).lower(), raw.startswith("</")))
        elif first == "&" and len(raw) > 1:
            out.append((raw, len(unescape(raw).encode("utf-16-le")) // 2, None, False))
        elif raw.isascii():  # a word's piece or a blank: no entity in it
            out.append((raw, len(raw), None, False))
        else:
            out.append((raw, len(raw) + len(_ASTRAL.findall(raw)), None, False))
    return out


def _width(text: str) -> int:
    return len(unescape(_TAG.sub("", text)).encode("utf-16-le")) // 2


def _after(stack: list[_Unit], unit: _Unit) -> list[_Unit]:
    if unit[TAG] is None or unit[RAW].endswith("/>"):
        return stack
    if not unit[CLOSING]:
        return [*stack, unit]
    for i in range(len(stack) - 1, -1, -1):
        if stack[i][TAG] == unit[TAG]:
            return stack[:i] + stack[i + 1:]
    return stack


def _closers(stack: list[_Unit]) -> str:
    return "".join(f"</{u[TAG]}>" for u in reversed(stack))


def _priority(units: list[_Unit], end: int) -> int:
    """How good a cut before units[end] is: 3 a paragraph, 2 a line, 1 a space, 0 anywhere."""
    last = units[end - 1][RAW] if end > 0 else ""
    before = units[end - 2][RAW] if end > 1 else ""
    if last == "\n" and before == "\n":
        return 3
    if last == "\n":
        return 2
    if last in (" ", "\u00a0", "\t"):
        return 1
    return 0


def split_html(text: str, limit: int, first_limit: int | None = None) -> list[str]:
    """The text in parts of at most `limit` (the first at most `first_limit`)."""
    if _width(text) <= (first_limit if first_limit is not None else limit):
        return [text]  # the common case: it fits
    units = _units(text)
    parts: list[str] = []
    stack: list[_Unit] = []  # tags open at the start of the current part
    i, n = 0, len(units)
    while i < n:
        if parts:  # a part does not start with the blank that ended the last
            while i < n and units[i][TAG] is None and units[i][RAW].isspace():
                i += 1
            if i >= n:
                break
        budget = first_limit if (first_limit is not None and not parts) else limit
        width, j, current = 0, i, list(stack)
        latest: dict[int, tuple[int, list[_Unit], int]] = {}  # priority → (end, stack there, width)
        while j < n:
            unit = units[j]
            if unit[TAG] is None and width + unit[WIDTH] > budget:
                break
            width += unit[WIDTH]
            current = _after(current, unit)
            j += 1
            if j < n and not units[j][CLOSING]:  # not between a word and its closing tag
                latest[_priority(units, j)] = (j, current, width)
        if j >= n:
            end, end_stack = n, current
        elif latest:
            good = [p for p, (_e, _s, w) in latest.items() if w >= budget * MIN_FILL]
            end, end_stack, _w = latest[max(good or latest)]
        else:  # nothing fits before a closing tag: cut where the budget ends
            end, end_stack = max(j, i + 1), current
        body = "".join(u[RAW] for u in units[i:end]).rstrip()
        parts.append("".join(u[RAW] for u in stack) + body + _closers(end_stack))
        stack, i = end_stack, end
    return [p for p in parts if p.strip()] or [text]


def parts_needed(text: str, limit: int, first_limit: int | None = None) -> int:
    return len(split_html(text, limit, first_limit))
