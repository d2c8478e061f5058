"""Configuration: environment variables or a `.env` file, read once in main()."""

from __future__ import annotations

import re
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Annotated

TOKEN_RE = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{20,}$")
LOCALES = ("ru", "en")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    bot_token: SecretStr
    admin_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    database_url: str = "sqlite+aiosqlite:///data/parta.db"
    telegram_api_url: str = "https://api.telegram.org"
    timezone: str = "Europe/Moscow"
    default_locale: str = "ru"
    invitation_days: int = Field(default=14, ge=1, le=365)
    # Personal family codes (printed slips): how long they work, and how many
    # people may use one (the pupil's parents: two by default).
    family_code_days: int = Field(default=30, ge=1, le=365)
    family_code_uses: int = Field(default=2, ge=1, le=10)
    # Messages per second in total (Telegram allows about 30); 0 lifts the limit.
    send_rate: float = Field(default=30.0, ge=0)
    # What fell due while the bot was down is still sent if at most this late.
    grace_hours: float = Field(default=6.0, ge=0)
    # Post copies older than this are folded into per-post counts and deleted
    # from the outbox (bot/retention.py); the figures stay.
    delivery_keep_days: int = Field(default=90, ge=7, le=3650)

    # Large deployments: several webhook workers on PostgreSQL and Redis.
    redis_url: str | None = None  # shared dialog state, rate limits; marks a multi-worker deployment
    webhook_url: str | None = None  # the public HTTPS address Telegram posts updates to; unset: polling
    webhook_secret: SecretStr | None = None  # checked on every request (X-Telegram-Bot-Api-Secret-Token)
    webhook_host: str = "127.0.0.1"  # where this worker listens, behind the reverse proxy
    webhook_port: int = Field(default=8080, ge=1, le=65535)
    worker_name: str | None = None  # in logs and row claims; default host:pid
    sending_lease_seconds: float = Field(default=60.0, gt=0)  # a `sending` row older than this is retried
    scheduler_lease_seconds: float = Field(default=30.0, ge=3)  # another worker takes the clock over after this

    @field_validator("bot_token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        if not TOKEN_RE.match(value.get_secret_value().strip()):
            raise ValueError("does not look like a token from @BotFather (digits:letters)")
        return SecretStr(value.get_secret_value().strip())

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _admin_ids(cls, value: object) -> frozenset[int]:
        if isinstance(value, (int, str)):
            parts = [p for p in re.split(r"[\s,;]+", str(value).strip()) if p]
            try:
                return frozenset(int(p) for p in parts)
            except ValueError:
                raise ValueError("must be Telegram user ids separated by commas") from None
        return frozenset(value)  # type: ignore[arg-type]

    @field_validator("telegram_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL such as https://api.telegram.org")
        return value.strip().rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _db_url(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "must start with sqlite+aiosqlite:// or postgresql+asyncpg://"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone like Europe/Moscow") from None
        return value

    @field_validator("default_locale")
    @classmethod
    def _locale(cls, value: str) -> str:
        if value not in LOCALES:
            raise ValueError(f"must be one of: {', '.join(LOCALES)}")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be the public https URL Telegram will post updates to")
        return value.strip()

    @field_validator("webhook_secret")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value.get_secret_value()):
            raise ValueError("may hold only letters, digits, _ and - (1 to 256 characters)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must look like redis://127.0.0.1:6379/0")
        return value
