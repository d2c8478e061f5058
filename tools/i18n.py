"""Keeps the catalogues in step with the code.

    python tools/i18n.py          extract → messages.pot, update ru/en .po, fill en, compile .mo

English is the source language, so the `en` catalogue translates each string
to itself (new entries are filled automatically); `ru` is translated by hand.
tests/test_i18n.py fails while any entry is missing, fuzzy or stale.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
LOCALES = ROOT / "locales"
POT = LOCALES / "messages.pot"
KEYWORDS = ["-k", "_", "-k", "__", "-k", "ngettext:1,2"]


def pybabel(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", *args], check=True, cwd=ROOT)


def extract() -> None:
    pybabel("extract", "-F", str(LOCALES / "babel.cfg"), *KEYWORDS, "--no-location", "--sort-output",
            "-o", str(POT), "--project", "Parta", ".")


def po_path(locale: str) -> Path:
    return LOCALES / locale / "LC_MESSAGES" / "messages.po"


def main() -> None:
    extract()
    for locale in ("ru", "en"):
        pybabel("update", "-i", str(POT), "-d", str(LOCALES), "-D", "messages", "-l", locale,
                "--no-fuzzy-matching", "--ignore-obsolete")
    en = po_path("en")
    with en.open("rb") as f:
        catalog = read_po(f, locale="en")
    for message in catalog:
        if message.id and not message.string or (isinstance(message.string, tuple) and not all(message.string)):
            message.string = message.id
    with en.open("wb") as f:
        write_po(f, catalog, sort_output=True)
    compile_all()


def compile_all() -> None:
    for locale in ("ru", "en"):
        with po_path(locale).open("rb") as f:
            catalog = read_po(f, locale=locale)
        with po_path(locale).with_suffix(".mo").open("wb") as f:
            write_mo(f, catalog)


if __name__ == "__main__":
    main()
