"""The person's language: their Telegram's on first contact, their own choice
(/language) over it for good, and everything that reaches them in it — replies,
wizards, their command menu, and what others' updates send them."""

from __future__ import annotations

from aiogram.methods import SendMessage, SetMyCommands
from sqlalchemy import select

from storage.models import Person as PersonRow
from tests.conftest import ADMIN
from tests.flows import create_group, invite, join, setup_org
from tests.harness import Harness, Person, button_data, only, texts

EN = Person(2101, "John", "en")
RU = Person(2102, "Иван", "ru")
DE = Person(2103, "Hans", "de")
EN_GB = Person(2104, "Jane", "en-GB")
NO_CODE = Person(2105, "Nobody", "")


async def stored_locale(app: Harness, who: Person) -> str | None:
    async with app.session_maker() as s:
        return await s.scalar(select(PersonRow.locale).where(PersonRow.telegram_id == who.id))


def own_menus(calls: list, who: Person) -> list[SetMyCommands]:
    return [m for m in only(calls, SetMyCommands) if getattr(m.scope, "chat_id", None) == who.id]


def descriptions(menu: SetMyCommands) -> dict[str, str]:
    return {c.command: c.description for c in menu.commands}


async def first_start(app: Harness, who: Person) -> tuple[str, list[SetMyCommands]]:
    calls = await app.send(who, "/start")
    calls += await app.flush()
    return texts(calls)[0], own_menus(calls, who)


async def test_an_english_telegram_user_is_answered_in_english_and_their_menu_stays_english(app: Harness) -> None:
    await setup_org(app)
    home, menus = await first_start(app, EN)
    assert "closed space for its staff and families" in home
    assert [descriptions(m)["start"] for m in menus] == ["Start: what I can do here"]
    assert await stored_locale(app, EN) == "en"
    # The next /start, and the wizard it offers, stay English; the menu is not set again in Russian.
    calls = await app.send(EN, "/start")
    calls += await app.press(EN, button_data(only(calls, SendMessage)[0].reply_markup, "ask:start"))
    calls += await app.flush()
    assert "closed space" in texts(calls)[0] and "Who are you" in texts(calls)[-1], texts(calls)
    assert all(descriptions(m)["start"] == "Start: what I can do here" for m in own_menus(calls, EN))


async def test_a_russian_telegram_user_is_answered_in_russian(app: Harness) -> None:
    await setup_org(app)
    home, menus = await first_start(app, RU)
    assert "закрытое пространство" in home
    assert [descriptions(m)["start"] for m in menus] == ["Начало: что умеет бот"]
    assert await stored_locale(app, RU) == "ru"


async def test_a_regional_english_code_is_english(app: Harness) -> None:
    await setup_org(app)
    home, menus = await first_start(app, EN_GB)
    assert "closed space" in home and descriptions(menus[0])["help"] == "Help on my commands"


async def test_a_language_the_bot_does_not_speak_gets_the_default_and_is_not_stored(app: Harness) -> None:
    await setup_org(app)
    for who in (DE, NO_CODE):
        home, menus = await first_start(app, who)
        assert "закрытое пространство" in home  # DEFAULT_LOCALE is ru in the tests
        assert descriptions(menus[0])["start"] == "Начало: что умеет бот"
        # Not stored: the deployment's default (DEFAULT_LOCALE) keeps applying to them.
        assert await stored_locale(app, who) is None


async def test_the_language_chosen_with_the_command_survives_later_updates(app: Harness) -> None:
    await setup_org(app)
    await first_start(app, EN)
    calls = await app.send(EN, "/language")
    calls += await app.press_on(EN, only(calls, SendMessage)[0], "lang:ru")
    calls += await app.flush()
    assert descriptions(own_menus(calls, EN)[-1])["start"] == "Начало: что умеет бот"
    # Their Telegram still says English, and later says German: their choice holds.
    for code in ("en", "de"):
        calls = await app.send(Person(EN.id, EN.first_name, code), "/start")
        calls += await app.flush()
        assert "закрытое пространство" in texts(calls)[0]
        assert not own_menus(calls, EN)
    assert await stored_locale(app, EN) == "ru"
    # The other way round: a Russian Telegram user who chose English.
    await first_start(app, RU)
    await app.press(RU, "lang:en")
    calls = await app.send(Person(RU.id, RU.first_name, "ru"), "/help")
    assert "What you can do here" in texts(calls)[0]
    assert await stored_locale(app, RU) == "en"


async def test_an_english_parent_joins_in_english_and_receives_a_post_in_english(app: Harness) -> None:
    """The detected language is stored: what others' updates send them is in it too."""
    await setup_org(app)
    group = await create_group(app, "5А")
    teacher = Person(3101, "Анна", "ru")
    await join(app, teacher, await invite(app, ADMIN, group, "teacher"), "Анна Смирнова")
    card = [c for c in only(await app.flush(), SendMessage) if "ver:yes" in str(c.reply_markup)][0]
    await app.press_on(ADMIN, card, "ver:yes")
    await app.flush()
    code = await invite(app, ADMIN, group, "parent")
    # The join wizard, first contact through the code: English throughout.
    calls = await app.send(EN, f"/start {code}")
    assert "your full name" in texts(calls)[-1].lower(), texts(calls)
    calls = await app.send(EN, "John Smith")
    assert "child" in texts(calls)[-1].lower(), texts(calls)
    calls = await app.send(EN, "Tom Smith")
    calls += await app.press_on(EN, only(calls, SendMessage)[-1], "join:confirm")
    calls += await app.flush()
    assert any("Welcome!" in t for t in texts(calls)), texts(calls)
    assert all(descriptions(m)["start"] == "Start: what I can do here" for m in own_menus(calls, EN))
    assert own_menus(calls, EN)
    # The Russian teacher posts with acknowledgement; the English parent's copy is English.
    await app.send(teacher, "/post")
    await app.press(teacher, "cmp:kind:announcement")
    await app.press(teacher, f"cmp:group:{group}")
    await app.press(teacher, "cmp:next:")
    await app.send(teacher, "Завтра субботник")
    await app.press(teacher, "cmp:ack:")
    calls = await app.press(teacher, "cmp:preview:")
    assert "Отправить" in str(only(calls, SendMessage)[-1].reply_markup)  # the teacher reads Russian
    await app.press(teacher, "cmp:send:")
    sent = await app.flush()
    copy = [c for c in only(sent, SendMessage) if c.chat_id == EN.id][0]
    assert "Завтра субботник" in copy.text and "Acknowledge" in str(copy.reply_markup)


async def test_someone_the_bot_knew_before_keeps_the_language_they_had(app: Harness) -> None:
    """Detection is for first contact only: a person the bot already knew, with no
    language of their own (as everyone was before), is not switched under them."""
    await setup_org(app)
    async with app.session_maker.begin() as s:
        s.add(PersonRow(telegram_id=EN.id, telegram_name=EN.first_name, locale=None))
    home, menus = await first_start(app, EN)
    assert "закрытое пространство" in home and not menus
    assert await stored_locale(app, EN) is None
