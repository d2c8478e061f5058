"""`python -m bot` runs the bot; `python -m bot migrate` only upgrades the database."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from pydantic import ValidationError

from bot.settings import Settings


def load_settings() -> Settings:
    """Settings, or one clear line per problem and exit code 2 — never a traceback."""
    try:
        return Settings()  # type: ignore[call-arg]
    except ValidationError as e:
        for error in e.errors():
            field = ".".join(str(p) for p in error["loc"]).upper() or "settings"
            if error["type"] == "missing":
                message = "is required (get a token from @BotFather and set BOT_TOKEN)"
            else:
                message = error["msg"].removeprefix("Value error, ")
            print(f"parta: configuration error: {field} {message}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Parta, the school communication bot")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the bot (the default)")
    sub.add_parser("migrate", help="only bring the database schema up to date")
    copy = sub.add_parser("copy-db", help="copy every row of DATABASE_URL into an empty TARGET (e.g. SQLite to PostgreSQL)")
    copy.add_argument("target", help="the target database URL, e.g. postgresql+asyncpg://user@host/parta")
    backup = sub.add_parser("backup", help="an online backup of a SQLite DATABASE_URL into FILE")
    backup.add_argument("file")
    args = parser.parse_args(argv)
    args.command = args.command or "run"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiogram.event").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    if args.command in ("copy-db", "backup"):
        sys.exit(_data_command(args))
    settings = load_settings()

    from storage.migrate import upgrade

    try:
        upgrade(settings.database_url)
    except Exception as e:  # an unreachable database is a configuration problem, said plainly
        print(f"parta: cannot prepare the database at DATABASE_URL: {e}", file=sys.stderr)
        sys.exit(3)
    if args.command == "migrate":
        print("parta: the database is up to date")
        return

    from bot.app import run

    try:
        asyncio.run(run(settings))
    except KeyboardInterrupt:
        pass
    except Exception as e:
        from aiogram.exceptions import TelegramNetworkError, TelegramUnauthorizedError

        if isinstance(e, TelegramUnauthorizedError):
            print("parta: the Bot API refused BOT_TOKEN (unauthorized): check the token", file=sys.stderr)
            sys.exit(2)
        if isinstance(e, TelegramNetworkError):
            print(f"parta: cannot reach the Bot API at TELEGRAM_API_URL ({settings.telegram_api_url}): {e}",
                  file=sys.stderr)
            sys.exit(3)
        raise


def _data_command(args: argparse.Namespace) -> int:
    """copy-db and backup need only DATABASE_URL (no token)."""
    import os

    from storage.transfer import backup_sqlite, copy_database

    source = os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///data/parta.db")
    try:
        if args.command == "backup":
            path = backup_sqlite(source, args.file)
            print(f"parta: backed up to {path}")
            return 0
        counts = asyncio.run(copy_database(source, args.target))
    except Exception as e:
        print(f"parta: {args.command} failed: {e}", file=sys.stderr)
        return 1
    print(f"parta: copied {sum(counts.values())} rows in {len(counts)} tables; the counts match")
    return 0


if __name__ == "__main__":
    main()
