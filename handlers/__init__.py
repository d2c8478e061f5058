"""Handlers: one router per feature, joined in a deliberate order.

`create_router()` builds fresh routers every time, so each test can have a
Dispatcher of its own. Group chats reach only `chats` (linking, join
requests); every dialog lives in the private chat with the bot.
"""

from __future__ import annotations

from aiogram import Router

from handlers import (
    chats,
    common,
    dialogs,
    errors,
    fallback,
    family,
    groups,
    invites,
    joining,
    messages,
    onboarding,
    oversight,
    post_actions,
    posting,
    privacy,
    requests,
    settings,
    setup,
    staff,
    weekly,
)
from handlers.filters import PRIVATE


def create_router() -> Router:
    private = Router(name="private")
    private.message.filter(PRIVATE)
    private.include_routers(
        # /cancel and /start <code> come before any dialog step, so they work in every state.
        joining.create_router(),
        common.create_router(),
        dialogs.create_router(),
        setup.create_router(),
        groups.create_router(),
        invites.create_router(),
        requests.create_router(),
        staff.create_router(),
        posting.create_router(),
        post_actions.create_router(),
        weekly.create_router(),
        settings.create_router(),
        family.create_router(),
        messages.create_router(),
        onboarding.create_router(),
        oversight.create_router(),
        privacy.create_router(),
    )
    root = Router(name="parta")
    root.include_routers(
        errors.create_router(),
        private,  # first: most updates are private messages and buttons
        chats.create_router(),
        fallback.create_router(),  # last: what nobody else took
    )
    return root
