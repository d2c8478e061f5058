"""Texts: aiogram's gettext i18n over the Babel catalogues in locales/.

Inside an update the locale is the person's; outside one (the outbox, cards to
other people) a text is rendered with `in_locale(person_locale)`. A person's
locale is the one they chose with /language, else the one their Telegram said
on first contact (`telegram_locale`), else the deployment's DEFAULT_LOCALE.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiogram.utils.i18n import I18n

from bot.settings import LOCALES

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "messages"


def telegram_locale(language_code: str | None) -> str | None:
    """The catalogue for a Telegram user's language ("en", "en-GB", "ru"), if we have one."""
    if not language_code:
        return None
    base = language_code.split("-")[0].split("_")[0].lower()
    return base if base in LOCALES else None


def create_i18n(default_locale: str) -> I18n:
    return I18n(path=LOCALES_DIR, default_locale=default_locale, domain=DOMAIN)


@contextmanager
def in_locale(locale: str) -> Iterator[None]:
    """Render texts for someone else (an admin's card, a requester's answer)."""
    i18n = I18n.get_current()
    with i18n.use_locale(locale if locale in i18n.available_locales else i18n.default_locale):
        yield
