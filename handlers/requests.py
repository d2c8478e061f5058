"""Join requests: someone without a code asks (role → group → name → child),
every admin (and for families the group's verified teachers) gets a card
with Approve / Reject; the first decision wins and every copy follows."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.methods import SendMessage
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _

from bot import dialogs, rights
from bot.actor import Actor
from bot.i18n import in_locale
from bot.onboarding import class_list_match
from bot.outbox import enqueue, settle_cards
from bot.settings import Settings
from handlers.admission import admin_chats, admit, refresh_menu_of
from handlers.filters import TEXT_INPUT
from handlers.keyboards import (
    AskCb,
    BindCb,
    DecideCb,
    confirm_keyboard,
    decide_keyboard,
    group_title,
    groups_keyboard,
    roles_keyboard,
)
from handlers.texts import clean_name, other_org_alert, q, role_name
from datetime import timedelta

from bot.posts import local
from storage.models import FAMILY_ROLES, Group, JoinRequest, Organisation, Person, RequestState, Role, utcnow
from storage.repo import Repo

LIST_LIMIT = 10


class AskForm(StatesGroup):
    role = State()
    group = State()
    name = State()
    child = State()
    confirm = State()


def create_router() -> Router:
    router = Router(name="requests")
    router.callback_query.register(ask_start, AskCb.filter(F.action == "start"))
    router.callback_query.register(ask_role, StateFilter(AskForm.role), AskCb.filter(F.action == "role"))
    router.callback_query.register(ask_group, StateFilter(AskForm.group), AskCb.filter(F.action == "group"))
    router.message.register(got_name, StateFilter(AskForm.name), TEXT_INPUT)
    router.message.register(got_child, StateFilter(AskForm.child), TEXT_INPUT)
    router.callback_query.register(send_request, StateFilter(AskForm.confirm), AskCb.filter(F.action == "confirm"))
    router.callback_query.register(ask_cancel, StateFilter(AskForm), AskCb.filter(F.action == "cancel"))
    router.callback_query.register(ask_stale, AskCb.filter())
    router.callback_query.register(decide, DecideCb.filter(F.action.in_({"approve", "reject"})))
    router.callback_query.register(decide, BindCb.filter())
    router.message.register(requests_command, Command("requests"))
    return router


# -- asking ---------------------------------------------------------------------


async def ask_start(query: CallbackQuery, state: FSMContext, actor: Actor) -> None:
    roles = actor.requestable_roles()
    if not roles:
        await query.answer(_("This bot is not set up yet."), show_alert=True)
        return
    token = await dialogs.begin(state, AskForm.role)
    await query.answer()
    await query.message.answer(  # type: ignore[union-attr]
        _("<b>Request to join.</b> Who are you?"),
        reply_markup=dialogs.stamp(_with_cancel(roles_keyboard(roles, AskCb, action="role")), token),
    )


def _with_cancel(markup: InlineKeyboardMarkup | None = None) -> InlineKeyboardMarkup:
    cancel = InlineKeyboardButton(text=_("✖️ Cancel"), callback_data=AskCb(action="cancel").pack())
    return InlineKeyboardMarkup(inline_keyboard=[*(markup.inline_keyboard if markup else []), [cancel]])


async def ask_role(query: CallbackQuery, callback_data: AskCb, state: FSMContext, actor: Actor, repo: Repo) -> None:
    if callback_data.role not in actor.requestable_roles():
        await query.answer(_("Please choose one of the buttons."), show_alert=True)
        return
    groups = await repo.groups(actor.addressed_org.id, include_staff=False)  # type: ignore[union-attr]
    if not groups:
        await state.clear()
        await query.answer()
        await query.message.edit_text(_("There are no groups to join yet. Please ask the administration."))  # type: ignore[union-attr]
        return
    await state.update_data(role=callback_data.role)
    await state.set_state(AskForm.group)
    await query.answer()
    await query.message.edit_text(  # type: ignore[union-attr]
        _("<b>Request to join</b> as {role}. Which group?").format(role=role_name(callback_data.role)),
        reply_markup=await dialogs.mark(state, _with_cancel(groups_keyboard(groups, AskCb, action="group"))),
    )


async def ask_group(query: CallbackQuery, callback_data: AskCb, state: FSMContext, actor: Actor, repo: Repo) -> None:
    group = await repo.group(actor.addressed_org.id, callback_data.group_id)  # type: ignore[union-attr]
    if group is None or group.archived_at is not None or group.kind != "class":
        await query.answer(_("Please choose one of the buttons."), show_alert=True)
        return
    role = (await state.get_data())["role"]
    if actor.membership_in(group.id, role) is not None and role != Role.PARENT:
        await state.clear()
        await query.answer()
        await query.message.edit_text(  # type: ignore[union-attr]
            _("You are already a member of {group} as {role}.").format(group=q(group.title), role=role_name(role))
        )
        return
    if await repo.pending_request(actor.person.id, group.id) is not None:
        await state.clear()
        await query.answer()
        await query.message.edit_text(  # type: ignore[union-attr]
            _("You have already asked to join {group}. Please wait for the decision.").format(group=q(group.title))
        )
        return
    await state.update_data(group_id=group.id)
    await state.set_state(AskForm.name)
    await query.answer()
    await query.message.edit_text(  # type: ignore[union-attr]
        _("<b>Request to join</b> {group} as {role}.\n\nPlease send your full name.").format(
            group=q(group.title), role=role_name(role)
        ),
        reply_markup=await dialogs.mark(state, _with_cancel()),
    )


async def got_name(message: Message, state: FSMContext, actor: Actor, repo: Repo) -> None:
    name = clean_name(message.text)
    if name is None:
        await message.answer(
            _("Please send your full name as text: 2 to 128 characters, letters included. /cancel stops.")
        )
        return
    await state.update_data(full_name=name)
    if (await state.get_data())["role"] == Role.PARENT:
        await state.set_state(AskForm.child)
        await message.answer(_("Thank you. Now send your child's full name (for example: Иванов Пётр)."),
                             reply_markup=await dialogs.mark(state, _with_cancel()))
        return
    await _ask_confirm(message, state, actor, repo)


async def got_child(message: Message, state: FSMContext, actor: Actor, repo: Repo) -> None:
    child = clean_name(message.text)
    if child is None:
        await message.answer(_("Please send the child's full name as text: 2 to 128 characters, letters included."))
        return
    await state.update_data(child_name=child)
    await _ask_confirm(message, state, actor, repo)


async def _ask_confirm(message: Message, state: FSMContext, actor: Actor, repo: Repo) -> None:
    data = await state.get_data()
    org = actor.addressed_org
    group = await repo.group(org.id, data.get("group_id", 0)) if org is not None else None
    if group is None or group.archived_at is not None:
        await state.clear()
        await message.answer(_("This group no longer exists."))
        return
    await state.set_state(AskForm.confirm)
    lines = [
        _("Please check your request:"),
        _("Group: {group}").format(group=q(group_title(group))),
        _("Role: {role}").format(role=role_name(data["role"])),
        _("Your name: {name}").format(name=q(data["full_name"])),
    ]
    if data.get("child_name"):
        lines.append(_("Child: {name}").format(name=q(data["child_name"])))
    await message.answer(
        "\n".join(lines),
        reply_markup=await dialogs.mark(state, confirm_keyboard(AskCb(action="confirm"), AskCb(action="cancel"),
                                                                yes_text=_("📨 Send request"))),
    )


async def deciders(repo: Repo, org: Organisation, request: JoinRequest, settings: Settings) -> dict[int, str]:
    """Who decides on a request, chat id → language: every admin, and for a
    parent or student also the group's verified teachers and specialists."""
    chats = await admin_chats(repo, org, settings.admin_ids, settings.default_locale)
    if request.role in FAMILY_ROLES:
        teachers = await repo.people_in_role(org.id, [Role.TEACHER, Role.SPECIALIST], group_id=request.group_id)
        for teacher in teachers:
            chats.setdefault(teacher.telegram_id, teacher.locale or settings.default_locale)
    return chats


def card_text(request: JoinRequest) -> str:
    text = _("🙋 <b>Request to join</b> {group}\n{name} — {role}").format(
        group=q(request.group.title), name=q(request.full_name), role=role_name(request.role)
    )
    if request.child_name:
        text += "\n" + _("Child: {name}").format(name=q(request.child_name))
    return text


async def render_card(repo: Repo, request: JoinRequest) -> tuple[str, InlineKeyboardMarkup]:
    """The card with what the class list says about the child typed: the pupil
    of that name (Approve binds to them), or the nearest names, one tap each."""
    text, markup = card_text(request), decide_keyboard(request.id)
    if request.role != Role.PARENT or not request.child_name:
        return text, markup
    exact, close = await class_list_match(repo, request.group_id, request.child_name)
    if exact is not None:
        text += "\n" + _("📋 In the class list: {name}. Approve binds the parent to this pupil.").format(
            name=q(exact.full_name))
    elif close:
        text += "\n" + _("📋 No pupil of that name in the class list. Nearest: {names}.").format(
            names=q(", ".join(p.full_name for p in close)))
        rows = [[InlineKeyboardButton(text=_("✅ Approve as {name}").format(name=p.full_name[:40]),
                                      callback_data=BindCb(request_id=request.id, pupil_id=p.id).pack())]
                for p in close]
        markup = InlineKeyboardMarkup(inline_keyboard=rows + markup.inline_keyboard)
    elif await repo.pupils_of(request.group_id):
        text += "\n" + _("📋 No pupil of that name in the class list: Approve adds a new pupil.")
    return text, markup


async def send_cards(repo: Repo, org: Organisation, request: JoinRequest, settings: Settings,
                     skip_chat: int | None = None) -> None:
    """The request's card to everyone who decides on it, each in their language."""
    chats = await deciders(repo, org, request, settings)
    chats.pop(skip_chat, None)  # type: ignore[arg-type]
    for chat_id, locale in chats.items():
        with in_locale(locale):
            text, markup = await render_card(repo, request)
            enqueue(
                repo, chat_id, SendMessage(chat_id=chat_id, text=text, reply_markup=markup),
                org_id=request.org_id, org=org, topic="join_request", ref_id=request.id,
            )


async def send_request(query: CallbackQuery, state: FSMContext, actor: Actor, repo: Repo, settings: Settings) -> None:
    data = await state.get_data()
    await state.clear()
    group = await repo.group(actor.addressed_org.id, data.get("group_id", 0))  # type: ignore[union-attr]
    if group is None or group.archived_at is not None:
        await query.answer(_("This group no longer exists."), show_alert=True)
        return
    outcome = await file_request(repo, actor.addressed_org, group, actor.person, data["role"],  # type: ignore[arg-type]
                                 data["full_name"], data.get("child_name"), settings)
    await query.answer()
    await query.message.edit_text(outcome)  # type: ignore[union-attr]


# After a rejection, the same person may ask for the same group again only after this.
COOL_DOWN = timedelta(hours=24)


async def file_request(
    repo: Repo, org: Organisation, group: Group, person: Person, role: str, full_name: str,
    child_name: str | None, settings: Settings,
) -> str:
    """A join request with a card to every decider; what to tell the person.
    One pending request per person, group and role; a cool-down after a rejection."""
    # One pending request per person and group, whatever the role asked for.
    if await repo.pending_request(person.id, group.id) is not None:
        return _("You have already asked to join {group}. Please wait for the decision.").format(group=q(group.title))
    rejected = await repo.last_rejection(person.id, group.id)
    if rejected is not None and rejected.decided_at is not None and rejected.decided_at > utcnow() - COOL_DOWN:
        return _("Your last request to join {group} was declined. You can ask again after {when}.").format(
            group=q(group.title), when=local(rejected.decided_at + COOL_DOWN, org))
    request = await repo.add_join_request(
        org_id=group.org_id, group_id=group.id, person_id=person.id, role=role,
        full_name=full_name, child_name=child_name,
    )
    request.group = group
    if not person.full_name:
        person.full_name = full_name
    await send_cards(repo, org, request, settings, skip_chat=person.telegram_id)
    return _("📨 Your request to join {group} is sent. You will get the answer here.").format(group=q(group.title))


async def ask_cancel(query: CallbackQuery, state: FSMContext) -> None:
    await state.clear()
    await query.answer()
    await query.message.edit_text(_("Cancelled. Nothing was changed."))  # type: ignore[union-attr]


async def ask_stale(query: CallbackQuery, raw_state: str | None = None) -> None:
    if dialogs.earlier_step(raw_state, AskForm):
        await query.answer(dialogs.earlier_step_text(), show_alert=True)
        return
    await query.answer(_("This dialog is already finished. Send /start to begin again."), show_alert=True)


# -- deciding -----------------------------------------------------------------------


def outcome_text(request: JoinRequest, decider_name: str) -> str:
    if request.state == RequestState.APPROVED:
        verdict = _("✅ Approved by {name}").format(name=q(decider_name))
    else:
        verdict = _("✖️ Rejected by {name}").format(name=q(decider_name))
    return card_text(request) + "\n\n" + verdict


async def decide(
    query: CallbackQuery, callback_data: DecideCb | BindCb, actor: Actor, repo: Repo, settings: Settings
) -> None:
    request = await repo.join_request(callback_data.request_id)
    if request is None or not actor.can_decide(request):
        elsewhere = request is not None and actor.elsewhere(request.org_id)
        await query.answer(other_org_alert() if elsewhere else rights.REFUSED + _("You cannot decide on this request."), show_alert=True)
        return
    # "Approve as <pupil of the class list>": the child typed is bound to that pupil.
    pupil = await repo.pupil(callback_data.pupil_id) if isinstance(callback_data, BindCb) else None
    if isinstance(callback_data, BindCb) and (pupil is None or pupil.group_id != request.group_id):
        await query.answer(_("This pupil is no longer in the class."), show_alert=True)
        return
    approve = isinstance(callback_data, BindCb) or callback_data.action == "approve"
    state = RequestState.APPROVED if approve else RequestState.REJECTED
    if not await repo.decide_join_request(request.id, state.value, actor.person.id):
        request = await repo.join_request(request.id)
        assert request is not None and request.decided_by is not None
        await query.answer(
            _("Already decided: {outcome}").format(
                outcome=(_("approved by {name}") if request.state == RequestState.APPROVED else _("rejected by {name}")).format(
                    name=request.decided_by.display_name
                )
            ),
            show_alert=True,
        )
        if isinstance(query.message, Message):
            await query.message.edit_text(outcome_text(request, request.decided_by.display_name))
        return
    request.state = state.value
    org = actor.org
    assert org is not None
    if approve:
        await admit(
            repo, org=org, group=request.group, person=request.person, role=request.role,
            full_name=request.full_name, child_name=pupil.full_name if pupil else request.child_name,
            verified_by_id=actor.person.id,
        )
    repo.audit(org.id, actor.person.id, f"join_request.{state.value}", subject=f"person:{request.person_id}",
               detail=f"{request.group.title}; {request.role}")
    decider = actor.person.display_name
    # Every other copy of the card, each in its reader's language.
    texts: dict[int, str] = {}
    for chat_id, locale in (await deciders(repo, org, request, settings)).items():
        with in_locale(locale):
            texts[chat_id] = outcome_text(request, decider)
    pressed = (query.message.chat.id, query.message.message_id) if query.message else None
    await settle_cards(repo, "join_request", request.id, texts, skip_message=pressed)
    # The requester hears the answer, and their menu follows.
    requester = request.person
    with in_locale(requester.locale or settings.default_locale):
        if approve:
            answer = _("✅ Your request is approved: you are now in <b>{group}</b> as {role}.\n\nWhat you can do now: /help").format(
                group=q(request.group.title), role=role_name(request.role)
            )
        else:
            answer = _("Your request to join {group} was not approved. For questions, contact the administration.").format(
                group=q(request.group.title)
            )
        enqueue(repo, requester.telegram_id, SendMessage(chat_id=requester.telegram_id, text=answer),
                org_id=org.id, org=org, topic="join_request_answer", ref_id=request.id)
    if approve:
        await refresh_menu_of(repo, requester, settings.admin_ids, settings.default_locale)
    await query.answer(_("Approved.") if approve else _("Rejected."))
    if isinstance(query.message, Message):
        await query.message.edit_text(outcome_text(request, decider))


async def requests_command(message: Message, actor: Actor, repo: Repo) -> None:
    if actor.org is None or not (actor.is_admin or actor.teaching_group_ids()):
        if actor.awaiting_verification:
            await message.answer(_("You are waiting for an administrator to verify you. Until then you cannot decide on requests."))
        else:
            await message.answer(rights.REFUSED + _("Only administrators and verified teachers decide on join requests."))
        return
    if actor.is_admin:
        pending = await repo.pending_requests(actor.org.id)
    else:
        pending = await repo.pending_requests(
            actor.org.id, group_ids=actor.teaching_group_ids(), roles=FAMILY_ROLES
        )
    if not pending:
        await message.answer(_("No requests are waiting. 🎉"))
        return
    await message.answer(_("Requests waiting for a decision: {n}").format(n=len(pending)))
    for request in pending[:LIST_LIMIT]:
        text, markup = await render_card(repo, request)
        await message.answer(text, reply_markup=markup)
    if len(pending) > LIST_LIMIT:
        await message.answer(_("Decide on these, then send /requests again for the rest."))
