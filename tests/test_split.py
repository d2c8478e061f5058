"""Long HTML in parts Telegram accepts (bot/split.py): paragraph boundaries
first, tags never broken and balanced in every part, lengths as Telegram
counts them."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from bot.posts import visible_length
from bot.split import split_html


class _Balance(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.ok = True

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        self.stack.append(tag)

    def handle_endtag(self, tag):  # type: ignore[no-untyped-def]
        if not self.stack or self.stack.pop() != tag:
            self.ok = False


def balanced(part: str) -> bool:
    parser = _Balance()
    parser.feed(part)
    parser.close()
    return parser.ok and not parser.stack and not re.search(r"<[^>]*$", part) and not re.search(r"&[a-z#0-9]*$", part)


def plain(parts: list[str]) -> str:
    from html import unescape

    return unescape(re.sub(r"<[^>]+>", "", "".join(parts)))


def test_a_short_text_is_one_part() -> None:
    assert split_html("<b>Привет</b>", 4096) == ["<b>Привет</b>"]


def test_parts_end_at_paragraph_boundaries() -> None:
    paragraphs = [f"Абзац {i}. " + "слово " * 60 for i in range(12)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    parts = split_html(text, 1000)
    assert len(parts) > 1 and all(visible_length(p) <= 1000 for p in parts)
    assert all(p.startswith("Абзац") and p.endswith("слово") for p in parts)  # whole paragraphs each
    assert "\n\n".join(parts) == text  # nothing lost, nothing added


def test_a_paragraph_longer_than_a_part_is_cut_at_a_line_then_at_a_space() -> None:
    lines = "\n".join("строка " * 10 for _ in range(30))
    parts = split_html(lines, 500)
    assert all(visible_length(p) <= 500 for p in parts) and all(p.endswith("строка") for p in parts)
    words = "слово " * 400
    parts = split_html(words, 500)
    assert all(visible_length(p) <= 500 and not p.startswith(" ") for p in parts)
    assert plain(parts).replace(" ", "") == words.replace(" ", "")
    unbroken = "x" * 1200  # no space at all: cut inside the word
    parts = split_html(unbroken, 500)
    assert "".join(parts) == unbroken and len(parts) == 3 and all(490 <= len(p) <= 500 for p in parts[:2])


def test_tags_are_never_broken_and_are_reopened_in_the_next_part() -> None:
    link = '<a href="https://example.org/?a=1&amp;b=2">ссылка ' + "очень " * 120 + "</a>"
    text = "<b>" + "\n\n".join("жирный абзац " * 25 for _ in range(6)) + "</b> и <i>курсив</i>\n\n" + link
    parts = split_html(text, 400)
    assert len(parts) > 4
    for part in parts:
        assert balanced(part), part
        assert visible_length(part) <= 400
    assert parts[1].startswith("<b>")  # bold across paragraphs is opened again
    linked = [p for p in parts if "очень" in p]
    assert len(linked) > 1 and all(p.startswith('<a href="https://example.org/?a=1&amp;b=2">') for p in linked[1:])


@pytest.mark.parametrize("limit", [40, 47, 53, 100])
def test_entities_and_wide_characters_are_never_cut(limit: int) -> None:
    text = "&lt;тег&gt; " * 20 + "👍" * 30 + " <code>a &amp; b</code>"
    parts = split_html(text, limit)
    assert all(balanced(p) and visible_length(p) <= limit for p in parts)
    assert plain(parts).replace(" ", "") == plain([text]).replace(" ", "")
    assert all("\ud83d" not in p for p in parts)  # no half of an emoji


def test_the_first_part_can_be_shorter_for_a_caption() -> None:
    text = "\n\n".join("абзац " * 50 for _ in range(8))
    parts = split_html(text, 4096, first_limit=1024)
    assert visible_length(parts[0]) <= 1024 and len(parts) == 2
    assert visible_length(parts[1]) <= 4096
