"""The catalogues: complete in ru and en, nothing fuzzy, in step with the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
LOCALES = ROOT / "locales"


def catalog(locale: str):  # type: ignore[no-untyped-def]
    with (LOCALES / locale / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f, locale=locale)


@pytest.mark.parametrize("locale", ["ru", "en"])
def test_every_entry_is_translated_and_none_is_fuzzy(locale: str) -> None:
    problems = []
    for message in catalog(locale):
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if not all(strings):
            problems.append(f"untranslated: {message.id!r}")
        if message.fuzzy:
            problems.append(f"fuzzy: {message.id!r}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("locale", ["ru", "en"])
def test_translations_keep_placeholders_and_tags(locale: str) -> None:
    problems = []
    for message in catalog(locale):
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        want = set(re.findall(r"\{\w+\}", ids[0]))
        tags = sorted(re.findall(r"</?\w+>", ids[0]))
        for s in strings:
            if set(re.findall(r"\{\w+\}", s)) - want:
                problems.append(f"unknown placeholder in {s!r}")
            if len(strings) == 1 and set(re.findall(r"\{\w+\}", s)) != want:
                problems.append(f"placeholders differ: {message.id!r} → {s!r}")
            if sorted(re.findall(r"</?\w+>", s)) != tags:
                problems.append(f"tags differ: {message.id!r} → {s!r}")
    assert not problems, "\n".join(problems)


def test_catalogues_hold_exactly_the_strings_in_the_code(tmp_path: Path) -> None:
    pot = tmp_path / "messages.pot"
    subprocess.run(
        [sys.executable, "-m", "babel.messages.frontend", "extract", "-F", str(LOCALES / "babel.cfg"),
         "-k", "_", "-k", "__", "-k", "ngettext:1,2", "--no-location", "-o", str(pot), "."],
        check=True, cwd=ROOT, capture_output=True,
    )
    with pot.open("rb") as f:
        in_code = {m.id for m in read_po(f) if m.id}
    for locale in ("ru", "en"):
        in_catalog = {m.id for m in catalog(locale) if m.id}
        missing, stale = in_code - in_catalog, in_catalog - in_code
        assert not missing and not stale, (
            f"{locale}: run `python tools/i18n.py`; missing {sorted(missing)[:5]}, stale {sorted(stale)[:5]}"
        )


@pytest.mark.parametrize("locale", ["ru", "en"])
def test_compiled_catalogues_match_the_sources(locale: str) -> None:
    def key(value: object) -> object:
        return tuple(value) if isinstance(value, (list, tuple)) else value

    with (LOCALES / locale / "LC_MESSAGES" / "messages.mo").open("rb") as f:
        compiled = {key(m.id): key(m.string) for m in read_mo(f) if m.id}
    source = {key(m.id): key(m.string) for m in catalog(locale) if m.id}
    assert compiled == source, "run `python tools/i18n.py` to recompile the .mo files"


def test_no_fstring_inside_gettext() -> None:
    offenders = []
    for path in [*ROOT.glob("bot/**/*.py"), *ROOT.glob("handlers/**/*.py")]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\b_\(\s*f[\"']", line) or re.search(r"ngettext\(\s*f[\"']", line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}")
    assert not offenders, offenders
