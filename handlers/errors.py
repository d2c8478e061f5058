"""Errors the bot causes: logged with context, and the user still gets an answer."""

from __future__ import annotations

import logging
from typing import Any

from aiogram import Router
from aiogram.types import ErrorEvent
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

log = logging.getLogger("parta.errors")


def create_router() -> Router:
    router = Router(name="errors")
    router.errors.register(on_error)
    return router


async def on_error(event: ErrorEvent, **data: Any) -> bool:
    update = event.update
    log.error(
        "update %s failed (%s): %r", update.update_id, update.event_type, event.exception,
        exc_info=event.exception,
    )
    i18n: I18n | None = data.get("i18n")
    locale = data.get("locale")
    if i18n is None:
        return True
    with i18n.context(), i18n.use_locale(locale or i18n.default_locale):
        text = _("Sorry, something went wrong on our side and nothing was changed. Please try again.")
        query, message = update.callback_query, update.message
        try:
            if query is not None:
                try:
                    await query.answer(text, show_alert=True)
                except Exception:  # already answered (or too old): say it in the chat instead
                    if query.message is not None:
                        await query.message.answer(text)
            elif message is not None and message.chat.type == "private":
                await message.answer(text)
        except Exception:  # the answer itself failed: already logged above
            log.warning("could not tell the user about update %s", update.update_id)
    return True
