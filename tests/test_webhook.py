"""Webhook mode, fast: the worker's HTTP application checks the secret token,
answers /healthz, answers Telegram only after the update was handled, and a
redelivered update (a lost answer) is not applied twice."""

from __future__ import annotations

from datetime import datetime, timezone

from aiohttp.test_utils import TestClient, TestServer
from aiogram.methods import SendMessage
from aiogram.types import Chat, Message, MessageEntity, Update
from pydantic import SecretStr
from sqlalchemy import func, select

from bot.app import create_dispatcher, webhook_app
from bot.fsm import DatabaseStorage
from bot.settings import Settings
from storage.models import Organisation, ProcessedUpdate
from tests.conftest import ADMIN
from tests.harness import BOT_USER, make_bot, only

SECRET = "s3cret-token_1"


def start_update(update_id: int, text: str = "/start") -> dict:
    message = Message(
        message_id=update_id, date=datetime.now(timezone.utc), chat=Chat(id=ADMIN.id, type="private"),
        from_user=ADMIN.user, text=text, entities=[MessageEntity(type="bot_command", offset=0, length=len(text))],
    )
    return Update(update_id=update_id, message=message).model_dump(mode="json", exclude_none=True, by_alias=True)


async def client_for(settings: Settings, session_maker) -> tuple[TestClient, object]:  # type: ignore[no-untyped-def]
    hooked = settings.model_copy(update={"webhook_url": "https://bot.example/tg/hook", "webhook_secret": SecretStr(SECRET)})
    bot = make_bot()
    dp = create_dispatcher(hooked, session_maker, outbox=None, bot_username=BOT_USER.username or "",
                           storage=DatabaseStorage(session_maker), once=True)
    client = TestClient(TestServer(webhook_app(hooked, dp, bot)))
    await client.start_server()
    return client, bot


async def test_secret_token_health_and_once(settings: Settings, session_maker) -> None:  # type: ignore[no-untyped-def]
    client, bot = await client_for(settings, session_maker)
    try:
        health = await client.get("/healthz")
        assert health.status == 200 and (await health.json()) == {"ok": True}
        # A wrong or missing secret: 401, nothing handled.
        wrong = await client.post("/tg/hook", json=start_update(1), headers={"X-Telegram-Bot-Api-Secret-Token": "no"})
        assert wrong.status == 401
        missing = await client.post("/tg/hook", json=start_update(1))
        assert missing.status == 401
        assert bot.session.requests == []  # type: ignore[attr-defined]
        # The right secret: handled before the answer (the set-up dialog begins).
        headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        ok = await client.post("/tg/hook", json=start_update(2), headers=headers)
        assert ok.status == 200
        assert "1/4" in only(bot.session.requests, SendMessage)[0].text  # type: ignore[attr-defined]
        # Telegram did not get the answer and sends update 2 again: not applied twice.
        again = await client.post("/tg/hook", json=start_update(2), headers=headers)
        assert again.status == 200
        assert len(only(bot.session.requests, SendMessage)) == 1  # type: ignore[attr-defined]
        async with session_maker() as s:
            assert await s.scalar(select(func.count()).select_from(ProcessedUpdate)) == 1
            assert await s.scalar(select(func.count()).select_from(Organisation)) == 0
    finally:
        await client.close()
