"""Everyday family life: absence notices (/absent for parents, /absences for
teachers) and opening a post from the daily digest."""

from __future__ import annotations

import re
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from aiogram import F, Router
from aiogram.filters import Command, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.methods import SendMessage
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot import dialogs, rights
from bot.actor import Actor
from bot.dates import day_label, period
from bot.i18n import in_locale
from bot.outbox import enqueue
from bot.posts import DigestCb, audience_text, body, copy_methods, keyboard
from bot.settings import Settings
from bot.timeline import hhmm
from handlers.filters import TEXT_INPUT
from handlers.texts import plain, q, shorten
from storage.models import Absence, DbInt, PostKind, PostState, Role, utcnow
from storage.repo import Repo

MAX_DAYS = 30
REASONS = ("illness", "family", "vacation", "doctor")


class AbsentForm(StatesGroup):
    child = State()
    day = State()
    range = State()
    reason = State()


class AbsentCb(CallbackData, prefix="abs"):
    action: str  # child | today | tomorrow | range | reason | typed | other | none | withdraw
    value: DbInt = 0
    code: str = ""


def create_router() -> Router:
    router = Router(name="family")
    router.message.register(absent_command, Command("absent"))
    router.callback_query.register(chose_child, AbsentCb.filter(F.action == "child"))
    router.callback_query.register(chose_day, AbsentCb.filter(F.action.in_({"today", "tomorrow"})))
    router.callback_query.register(ask_range, AbsentCb.filter(F.action == "range"))
    router.message.register(got_range, StateFilter(AbsentForm.range), TEXT_INPUT)
    router.callback_query.register(chose_reason, AbsentCb.filter(F.action.in_({"reason", "typed", "none"})))
    router.callback_query.register(ask_reason, AbsentCb.filter(F.action == "other"))
    router.message.register(got_reason, StateFilter(AbsentForm.reason), TEXT_INPUT)
    router.callback_query.register(withdraw, AbsentCb.filter(F.action == "withdraw"))
    router.message.register(absences_command, Command("absences"))
    router.callback_query.register(open_from_digest, DigestCb.filter())
    return router


def reason_label(code: str) -> str:
    return {
        "illness": _("illness"),
        "family": _("family reasons"),
        "vacation": _("vacation"),
        "doctor": _("a doctor's visit"),
    }.get(code, code)


def local_today(actor: Actor) -> date:
    return utcnow().astimezone(ZoneInfo(actor.org.timezone)).date()  # type: ignore[union-attr]


def days_text(start: date, end: date) -> str:
    return period(start, end)


# -- parents ------------------------------------------------------------------------------


REASON_MAX = 200


async def absent_command(message: Message, state: FSMContext, actor: Actor, repo: Repo) -> None:
    await start_absence(message, state, actor, repo)


async def start_absence(message: Message, state: FSMContext, actor: Actor, repo: Repo, typed: str | None = None) -> None:
    """The absence notice; `typed`: what the parent wrote outside a dialog, offered as the reason."""
    if actor.org is None or Role.PARENT not in actor.roles:
        await message.answer(rights.REFUSED + _("Only parents send absence notices."))
        return
    await state.clear()
    children = await repo.children_of(actor.person.id, actor.org.id)
    if not children:
        await message.answer(_("No child is linked to you yet. Ask the group's teacher."))
        return
    mine = await repo.absences_of_parent(actor.org.id, actor.person.id, local_today(actor))  # type: ignore[union-attr]
    for absence in mine:
        kb = InlineKeyboardBuilder()
        if absence.start_date > local_today(actor):
            kb.button(text=_("✖️ Withdraw"), callback_data=AbsentCb(action="withdraw", value=absence.id))
        await message.answer(
            _("📝 {child}: absent {days}").format(child=q(absence.pupil.full_name), days=days_text(absence.start_date, absence.end_date)),
            reply_markup=kb.as_markup() if kb.buttons else None,
        )
    kb = InlineKeyboardBuilder()
    for child in children:
        kb.button(text=child.full_name, callback_data=AbsentCb(action="child", value=child.id))
    kb.adjust(1)
    extra = {"typed": plain(typed)[:REASON_MAX]} if typed and plain(typed) else {}
    token = await dialogs.begin(state, AbsentForm.child, **extra)
    await message.answer(_("<b>Absence notice.</b> Which child will not come?"),
                         reply_markup=dialogs.stamp(dialogs.with_cancel(kb.as_markup()), token))


async def _own_child(query: CallbackQuery, actor: Actor, repo: Repo, pupil_id: int):  # type: ignore[no-untyped-def]
    if actor.org is None:
        await query.answer(rights.REFUSED + _("Only parents send absence notices."), show_alert=True)
        return None
    for child in await repo.children_of(actor.person.id, actor.org.id):
        if child.id == pupil_id:
            return child
    await query.answer(rights.REFUSED + _("This is not your child."), show_alert=True)
    return None


async def _in_dialog(state: FSMContext, step: State) -> None:
    """This step of the absence dialog (a press from an old message without it begins one)."""
    if not (await state.get_state() or "").startswith(AbsentForm.__name__ + ":"):
        await dialogs.begin(state, step)
    await state.set_state(step)


async def chose_child(query: CallbackQuery, callback_data: AbsentCb, state: FSMContext, actor: Actor, repo: Repo) -> None:
    child = await _own_child(query, actor, repo, callback_data.value)
    if child is None:
        return
    await _in_dialog(state, AbsentForm.day)
    await state.update_data(pupil_id=child.id)
    kb = InlineKeyboardBuilder()
    kb.button(text=_("Today"), callback_data=AbsentCb(action="today", value=child.id))
    kb.button(text=_("Tomorrow"), callback_data=AbsentCb(action="tomorrow", value=child.id))
    kb.button(text=_("Several days…"), callback_data=AbsentCb(action="range", value=child.id))
    kb.adjust(2, 1)
    await query.answer()
    await query.message.edit_text(  # type: ignore[union-attr]
        _("{child} will not come — when?").format(child=q(child.full_name)),
        reply_markup=await dialogs.mark(state, dialogs.with_cancel(kb.as_markup())),
    )


async def chose_day(query: CallbackQuery, callback_data: AbsentCb, state: FSMContext, actor: Actor, repo: Repo) -> None:
    child = await _own_child(query, actor, repo, callback_data.value)
    if child is None:
        return
    day = local_today(actor) + timedelta(days=1 if callback_data.action == "tomorrow" else 0)
    await _in_dialog(state, AbsentForm.day)
    await state.update_data(pupil_id=child.id, start=day.isoformat(), end=day.isoformat())
    await query.answer()
    await _ask_reason(query.message, state)  # type: ignore[arg-type]


async def ask_range(query: CallbackQuery, callback_data: AbsentCb, state: FSMContext, actor: Actor, repo: Repo) -> None:
    child = await _own_child(query, actor, repo, callback_data.value)
    if child is None:
        return
    await _in_dialog(state, AbsentForm.range)
    await state.update_data(pupil_id=child.id)
    await query.answer()
    await query.message.edit_text(  # type: ignore[union-attr]
        _("Send the first and the last day, like <code>12.03-15.03</code>."),
        reply_markup=await dialogs.mark(state, dialogs.cancel_markup()),
    )


def parse_range(text: str, today: date) -> tuple[date, date] | None:
    parts = [p for p in re.split(r"\s*[-–—]\s*|\s+по\s+|\s+", text.strip()) if p]
    if len(parts) not in (1, 2):
        return None
    days = []
    for part in parts:
        match = re.fullmatch(r"(\d{1,2})\.(\d{1,2})(?:\.(\d{2,4}))?", part)
        if not match:
            return None
        day, month, year = int(match.group(1)), int(match.group(2)), match.group(3)
        # Without a year: this year's date, or next year's once it is long past (29.02 only in a leap year).
        years = [int(year) + (2000 if len(year) == 2 else 0)] if year else [today.year, today.year + 1]
        for y in years:
            try:
                value = date(y, month, day)
            except ValueError:
                continue
            if year or value >= today - timedelta(days=180):
                days.append(value)
                break
        else:
            return None
    return days[0], days[-1]


async def got_range(message: Message, state: FSMContext, actor: Actor) -> None:
    today = local_today(actor)
    parsed = parse_range(message.text or "", today)
    if parsed is None:
        await message.answer(_("I cannot read these dates. Send them like <code>12.03-15.03</code>."))
        return
    start, end = parsed
    if start < today:
        await message.answer(_("The first day has already passed. Send days from today on."))
        return
    if end < start:
        await message.answer(_("The last day is before the first. Send them like <code>12.03-15.03</code>."))
        return
    if (end - start).days + 1 > MAX_DAYS:
        await message.answer(_("A notice can cover at most {n} days. Send a shorter range.").format(n=MAX_DAYS))
        return
    await state.update_data(start=start.isoformat(), end=end.isoformat())
    await _ask_reason(message, state)


async def _ask_reason(message: Message, state: FSMContext) -> None:
    await state.set_state(AbsentForm.reason)
    kb = InlineKeyboardBuilder()
    typed = (await state.get_data()).get("typed")
    if typed:  # what the parent wrote before choosing the notice: one tap keeps it as the reason
        kb.button(text="📝 «" + shorten(typed, 40) + "»", callback_data=AbsentCb(action="typed"))
    for code in REASONS:
        kb.button(text=reason_label(code).capitalize(), callback_data=AbsentCb(action="reason", code=code))
    kb.button(text=_("Other reason…"), callback_data=AbsentCb(action="other"))
    kb.button(text=_("Without a reason"), callback_data=AbsentCb(action="none"))
    kb.adjust(*([1] if typed else []), 2, 2, 2)
    await message.answer(_("The reason? (optional)"), reply_markup=await dialogs.mark(state, dialogs.with_cancel(kb.as_markup())))


async def chose_reason(query: CallbackQuery, callback_data: AbsentCb, state: FSMContext, actor: Actor, repo: Repo, settings: Settings) -> None:
    if await state.get_state() != AbsentForm.reason.state:
        await query.answer(_("This dialog is already finished."), show_alert=True)
        return
    if callback_data.action == "reason" and callback_data.code not in REASONS:
        await query.answer(_("Please choose one of the buttons."), show_alert=True)
        return
    typed = (await state.get_data()).get("typed")
    if callback_data.action == "typed" and not typed:
        await query.answer(_("Please choose one of the buttons."), show_alert=True)
        return
    reason = reason_label(callback_data.code) if callback_data.action == "reason" else None
    if callback_data.action == "typed":
        reason = typed
    await query.answer()
    await _save(query.message, state, actor, repo, settings, reason)  # type: ignore[arg-type]


async def ask_reason(query: CallbackQuery, state: FSMContext) -> None:
    if await state.get_state() != AbsentForm.reason.state:
        await query.answer(_("This dialog is already finished."), show_alert=True)
        return
    await query.answer()
    await query.message.answer(_("Send the reason in a few words."),  # type: ignore[union-attr]
                               reply_markup=await dialogs.mark(state, dialogs.cancel_markup()))


async def got_reason(message: Message, state: FSMContext, actor: Actor, repo: Repo, settings: Settings) -> None:
    reason = plain(message.text)
    if not 2 <= len(reason) <= 200:
        await message.answer(_("Please send the reason in 2 to 200 characters."))
        return
    await _save(message, state, actor, repo, settings, reason)


async def _save(message: Message, state: FSMContext, actor: Actor, repo: Repo, settings: Settings, reason: str | None) -> None:
    data = await state.get_data()
    await state.clear()
    children = {c.id: c for c in await repo.children_of(actor.person.id, actor.org.id)}  # type: ignore[union-attr]
    child = children.get(data.get("pupil_id", 0))
    if child is None or "start" not in data:
        await message.answer(_("This dialog is already finished."))
        return
    org = actor.org
    assert org is not None
    start, end = date.fromisoformat(data["start"]), date.fromisoformat(data["end"])
    now_local = utcnow().astimezone(ZoneInfo(org.timezone))
    late = start <= now_local.date() and org.absence_cutoff is not None and now_local.time() >= hhmm(org.absence_cutoff)
    absence = Absence(org_id=org.id, group_id=child.group_id, pupil_id=child.id, parent_id=actor.person.id,
                      start_date=start, end_date=end, reason=reason, late=late)
    repo.session.add(absence)
    await repo.flush()
    group = await repo.group(org.id, child.group_id)
    teachers = await repo.people_in_role(org.id, [Role.TEACHER, Role.SPECIALIST], group_id=child.group_id)
    for teacher in teachers:
        with in_locale(teacher.locale or settings.default_locale):
            text = _("📝 <b>{child}</b> ({group}) will not come: {days}.").format(
                child=q(child.full_name), group=q(group.title if group else ""), days=days_text(start, end))
            if reason:
                text += "\n" + _("Reason: {reason}").format(reason=q(reason))
            if late:
                text += "\n" + _("⚠️ Sent after the cut-off.")
            text += "\n" + _("From: {parent}").format(parent=q(actor.person.display_name))
        enqueue(repo, teacher.telegram_id, SendMessage(chat_id=teacher.telegram_id, text=text), org_id=org.id, org=org,
                topic="absence", ref_id=absence.id, person_id=teacher.id)
    answer = _("✅ The teachers are told: {child} will not come {days}.").format(child=q(child.full_name), days=days_text(start, end))
    if late:
        answer += "\n" + _("It was sent after {time}, so it is marked late.").format(time=org.absence_cutoff)
    await message.answer(answer)


async def withdraw(query: CallbackQuery, callback_data: AbsentCb, actor: Actor, repo: Repo, settings: Settings) -> None:
    absence = await repo.session.get(Absence, callback_data.value)
    if absence is None or absence.parent_id != actor.person.id or absence.withdrawn_at is not None:
        await query.answer(_("This notice cannot be withdrawn."), show_alert=True)
        return
    if absence.start_date <= local_today(actor):
        await query.answer(_("The day has already begun: tell the teacher directly."), show_alert=True)
        return
    absence.withdrawn_at = utcnow()
    await query.answer(_("Withdrawn."))
    await query.message.edit_text(_("✖️ Withdrawn."))  # type: ignore[union-attr]


# -- teachers -------------------------------------------------------------------------------


async def absences_command(message: Message, actor: Actor, repo: Repo) -> None:
    if actor.org is None or not (actor.is_admin or actor.is_head or actor.teaching_group_ids()):
        await message.answer(rights.REFUSED + _("Only teachers and the administration see absences."))
        return
    groups = {g.id: g.title for g in await repo.groups(actor.org.id, include_staff=False)}
    if not (actor.is_admin or actor.is_head):
        groups = {gid: t for gid, t in groups.items() if gid in actor.teaching_group_ids()}
    today = local_today(actor)
    absences = await repo.absences_on(list(groups), today)
    lines = [_("<b>Absent today</b>, {day}").format(day=day_label(today, today=today))]
    for group_id, title in groups.items():
        mine = [a for a in absences if a.group_id == group_id]
        lines.append(f"\n<b>{q(title)}</b>: {len(mine)}")
        for a in mine:
            line = f"• {q(a.pupil.full_name)}"
            if a.reason:
                line += f" — {q(a.reason)}"
            if a.end_date > today:
                line += " " + _("(until {day})").format(day=day_label(a.end_date, today=today))
            if a.late:
                line += " ⚠️"
            lines.append(line)
    await message.answer("\n".join(lines))


# -- the digest ------------------------------------------------------------------------------


async def open_from_digest(query: CallbackQuery, callback_data: DigestCb, actor: Actor, repo: Repo) -> None:
    post = await repo.post(callback_data.post_id)
    if post is None or not await repo.is_addressee(post.id, actor.person.id):
        await query.answer(rights.REFUSED + _("This button is not for you."), show_alert=True)
        return
    if post.state != PostState.SENT:
        await query.answer(_("This message was withdrawn by its author."), show_alert=True)
        return
    org = await repo.organisation(post.org_id)
    author = await repo.person(post.author_id) if post.author_id else None
    assert org is not None
    text = body(post, org, author.display_name if author else "—", await audience_text(repo, post, org))
    chosen = await repo.votes_of(post.id, actor.person.id) if post.kind == PostKind.POLL else set()
    acked = post.ask_ack and await repo.acknowledged(post.id, actor.person.id)
    await query.answer()
    for method in copy_methods(post, actor.person.telegram_id, text, keyboard(post, chosen, acked)):
        await query.bot(method)  # type: ignore[union-attr]

