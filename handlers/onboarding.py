"""Onboarding a whole school in one parents' meeting.

/import (or simply sending an .xlsx or .csv file): a class list or a staff
list → a preview (N pupils in M classes; new, known and unclear rows with
their lines and why) → imported on confirmation, in the update's one
transaction. Each pupil gets a personal family code, printed on a slip (one
A4 PDF per class); staff get personal staff codes, printed the same way.

/families: per class, "families joined: 23 of 25", the pupils with no parent
yet, their slips to print again, and a code to reissue (the old one stops).

The PDFs come from bot/slips.py, imported only when one is asked for.
"""

from __future__ import annotations

import io
import re
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import async_sessionmaker
from aiogram import Bot, F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.filters import Command, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import BufferedInputFile, CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot import classlist
from bot import onboarding as service
from bot import dialogs, rights
from bot.actor import Actor
from bot.replies import after_commit_do, unit_of_work
from bot.i18n import in_locale
from bot.settings import Settings
from handlers.filters import DOCUMENT
from handlers.invites import deep_link
from handlers.texts import in_messages, q, role_name
from storage.models import DbInt, Group, Invitation, Organisation, Pupil, Role, utcnow
from storage.repo import Repo

UNCLEAR_SHOWN = 30
REISSUE_BUTTONS = 60


class ImportForm(StatesGroup):
    file = State()  # /import: waiting for the file
    preview = State()  # the parsed rows are in the state; the buttons import them


class OnbCb(CallbackData, prefix="onb"):
    action: str  # import | existing | cancel
    group_id: DbInt = 0


class FamCb(CallbackData, prefix="fam"):
    action: str  # list | open | slips | missing | pick | reissue
    group_id: DbInt = 0
    pupil_id: DbInt = 0


class PosterCb(CallbackData, prefix="poster"):
    action: str  # pdf | approval_on | approval_off
    invitation_id: DbInt


def create_router() -> Router:
    router = Router(name="onboarding")
    router.message.register(import_command, Command("import"))
    router.message.register(got_file, StateFilter(None, ImportForm.file, ImportForm.preview), DOCUMENT)
    router.message.register(not_a_file, StateFilter(ImportForm.file))
    router.callback_query.register(do_import, StateFilter(ImportForm.preview),
                                   OnbCb.filter(F.action.in_({"import", "existing"})))
    router.callback_query.register(cancel_import, StateFilter(ImportForm), OnbCb.filter(F.action == "cancel"))
    router.callback_query.register(stale_import, OnbCb.filter())
    router.message.register(families_command, Command("families"))
    router.callback_query.register(families_list, FamCb.filter(F.action == "list"))
    router.callback_query.register(family_class, FamCb.filter(F.action == "open"))
    router.callback_query.register(class_slips, FamCb.filter(F.action.in_({"slips", "missing"})))
    router.callback_query.register(pick_pupil, FamCb.filter(F.action == "pick"))
    router.callback_query.register(reissue, FamCb.filter(F.action == "reissue"))
    router.callback_query.register(staff_slips, FamCb.filter(F.action == "staff"))
    router.callback_query.register(poster, PosterCb.filter(F.action == "pdf"))
    router.callback_query.register(approval, PosterCb.filter(F.action.in_({"approval_on", "approval_off"})))
    return router


# -- rights -----------------------------------------------------------------------------------


def may_import(actor: Actor) -> bool:
    """Admins (any class, staff lists too) and verified teachers (their own classes): bot.rights."""
    return actor.can(rights.Cap.INVITE)


def may_see_families(actor: Actor) -> bool:
    return actor.can(rights.Cap.VIEW_MEMBERS)


def _scope(actor: Actor) -> set[int] | None:
    """The classes whose families this person sees: all for admins and the head (bot.rights)."""
    where = actor.scope(rights.Cap.VIEW_MEMBERS)
    return None if where.everywhere else set(where.groups)


def refusal(actor: Actor) -> str:
    return rights.refusal(actor, rights.Cap.INVITE)


# -- texts --------------------------------------------------------------------------------------


def list_error(code: str) -> str:
    texts = {
        "wrong_type": _("This is not a class list I can read. Please send an .xlsx (Excel) or .csv file; "
                        "an old .xls can be saved as .xlsx from Excel or LibreOffice."),
        "too_big": _("This file is too big (more than 2 MB). A class list is much smaller: please send the list "
                     "itself, without pictures or other sheets."),
        "damaged": _("I cannot open this file: it is damaged or not really an .xlsx. Please save it again and send it."),
        "empty": _("The list is empty: there are no rows with pupils under the header."),
        "no_name_column": _("I cannot find a column with names. The first rows should have a header such as "
                            "«ФИО» / «Full name» (or «Фамилия», «Имя») and «Класс» / «Class»."),
        "encoding": _("I cannot read the letters in this file: its encoding is broken. Please save it as CSV "
                      "in UTF-8 (or Windows-1251), or as .xlsx."),
        "too_many_rows": _("This list has more than 5,000 rows. Please send one file per part of the school."),
    }
    return texts.get(code, texts["wrong_type"]) + "\n" + _("Nothing was changed.")


def problem_text(row: classlist.Row) -> str:
    texts = {
        classlist.NO_NAME: _("no name"),
        classlist.BAD_NAME: _("the name cannot be read"),
        classlist.ONE_WORD: _("only one word: a surname and a first name are needed"),
        classlist.NO_CLASS: _("no class"),
        classlist.BAD_CLASS: _("the class cannot be read"),
        classlist.BAD_DATE: _("the date of birth «{value}» cannot be read"),
        classlist.REPEATED: _("repeats line {value}"),
        classlist.NO_ROLE: _("no role"),
        classlist.BAD_ROLE: _("the role «{value}» is not known (teacher, specialist, head, administrator)"),
        service.NOT_YOUR_CLASS: _("not one of your classes"),
        service.OTHER_CLASS: _("already in class {value}: moving a pupil is done in /members"),
        service.NO_SUCH_CLASS: _("no class {value} in the organisation: create it with /groups first"),
    }
    return texts.get(row.problem or "", row.problem or "").format(value=q(row.problem_arg))


def _classes_line(classes: dict[str, int]) -> str:
    return ", ".join(f"{q(title)} ({n})" for title, n in sorted(classes.items()))


def line_ranges(rows: list[classlist.Row]) -> str:
    """Line numbers as a reader checks them in the spreadsheet: "2–26, 30, 41–43"."""
    numbers = sorted(r.line for r in rows)
    parts: list[str] = []
    start = prev = numbers[0]
    for n in numbers[1:] + [None]:  # type: ignore[list-item]
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}–{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(parts)


def preview_text(plan: service.Plan, file_name: str) -> list[str]:
    lines = [_("📋 <b>{file}</b>").format(file=q(file_name))]
    if plan.kind == "pupils":
        lines.append(ngettext("{n} pupil", "{n} pupils", plan.pupils).format(n=plan.pupils) + " "
                     + ngettext("in {m} class", "in {m} classes", len(plan.classes)).format(m=len(plan.classes))
                     + (": " + _classes_line(plan.classes) if plan.classes else "."))
        lines.append(_("New: {new}. Already in the lists: {known}. Unclear: {unclear}.").format(
            new=len(plan.new), known=len(plan.known), unclear=len(plan.unclear)))
    else:
        roles = service.count_roles(plan.new + plan.known)
        lines.append(ngettext("{n} staff member", "{n} staff members", plan.pupils).format(n=plan.pupils)
                     + (": " + ", ".join(f"{role_name(r)} {n}" for r, n in sorted(roles.items())) if roles else "."))
        lines.append(_("New: {new}. Already known: {known}. Unclear: {unclear}.").format(
            new=len(plan.new), known=len(plan.known), unclear=len(plan.unclear)))
    if plan.new:
        lines.append(_("New — lines {lines}").format(lines=line_ranges(plan.new)))
    if plan.known:
        lines.append(_("Already known — lines {lines}").format(lines=line_ranges(plan.known)))
    if plan.unclear:
        lines.append("")
        lines.append(_("<b>Unclear rows</b> (not imported; correct the file and send it again if needed):"))
        for row in plan.unclear[:UNCLEAR_SHOWN]:
            who = f" {q(row.name)}" if row.name else ""
            lines.append(_("• line {line}{who}: {why}").format(line=row.line, who=who, why=problem_text(row)))
        if len(plan.unclear) > UNCLEAR_SHOWN:
            lines.append(_("…and {n} more.").format(n=len(plan.unclear) - UNCLEAR_SHOWN))
    if plan.missing_classes:
        lines.append("")
        lines.append(_("Classes that do not exist yet: {classes}.").format(classes=_classes_line(plan.missing_classes)))
    if not plan.new:
        lines.append("")
        lines.append(_("Nothing new to import: everything in this file is already in the lists."))
    return lines


def preview_keyboard(plan: service.Plan) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    if plan.new:
        if plan.missing_classes:
            kb.button(text=ngettext("✅ Import {n} and create {m} class", "✅ Import {n} and create {m} classes",
                                    len(plan.missing_classes)).format(n=len(plan.new), m=len(plan.missing_classes)),
                      callback_data=OnbCb(action="import"))
            existing = len(plan.new_in_existing())
            if existing:
                kb.button(text=_("Import {n} into existing classes only").format(n=existing),
                          callback_data=OnbCb(action="existing"))
        else:
            kb.button(text=_("✅ Import {n}").format(n=len(plan.new)), callback_data=OnbCb(action="import"))
    kb.button(text=_("✖️ Cancel"), callback_data=OnbCb(action="cancel"))
    kb.adjust(1)
    return kb.as_markup()


# -- the organisation's language and the slips --------------------------------------------------


def _date(moment, org: Organisation) -> str:  # type: ignore[no-untyped-def]
    return moment.astimezone(ZoneInfo(org.timezone)).strftime("%d.%m.%Y")


def family_slip(org: Organisation, group: Group, pupil: Pupil, invitation: Invitation, bot_username: str):  # type: ignore[no-untyped-def]
    from bot.slips import Slip

    code = invitation.code
    return Slip(
        org=org.name, group=group.title, name=pupil.full_name, code=code, link=deep_link(bot_username, code),
        until=_("Valid until {date}").format(date=_date(invitation.expires_at, org)),
        heading=_("Personal code for the family of"),
        lines=(
            _("1. Point the phone's camera at the QR code, or open t.me/{bot}.").format(bot=bot_username),
            _("2. Or send the bot the message /join {code}").format(code=code),
            _("3. Check that the child shown is yours and press «Yes»: done."),
        ),
    )


def staff_slip(org: Organisation, invitation: Invitation, classes: list[str], bot_username: str):  # type: ignore[no-untyped-def]
    from bot.slips import Slip

    code = invitation.code
    what = role_name(invitation.role)
    if classes:
        what += ": " + ", ".join(classes)
    return Slip(
        org=org.name, group=what, name=invitation.person_name or "", code=code,
        link=deep_link(bot_username, code), until=_("Valid until {date}").format(date=_date(invitation.expires_at, org)),
        heading=_("Personal code for staff"),
        lines=(
            _("1. Point the phone's camera at the QR code, or open t.me/{bot}.").format(bot=bot_username),
            _("2. Or send the bot the message /join {code}").format(code=code),
            _("3. Check your name and press «Join»: you are verified at once."),
        ),
    )


def _file_name(kind: str, title: str) -> str:
    safe = re.sub(r"[^\w-]+", "_", title, flags=re.UNICODE).strip("_") or "class"
    return f"{kind}-{safe}.pdf"


async def family_slips_pdf(
    repo: Repo, actor: Actor, group: Group, pupils: list[Pupil], settings: Settings, bot_username: str
) -> bytes:
    from bot.slips import slips_pdf

    codes = await service.ensure_codes(repo, actor, pupils, days=settings.family_code_days,
                                       uses=settings.family_code_uses)
    org = actor.org
    assert org is not None
    with in_locale(settings.default_locale):  # printed in the organisation's language
        slips = [family_slip(org, group, p, codes[p.id], bot_username) for p in pupils]
    return slips_pdf(slips, f"{org.name} — {group.title}")


# -- the Telegram call that returns data ---------------------------------------------------------


async def fetch_file(bot: Bot, file_id: str) -> bytes:
    """getFile + the download: the one call here whose answer the handler needs.
    It runs inside the update's transaction (nothing has been written yet:
    the list is only read, and the import happens on a later button)."""
    buffer = io.BytesIO()
    await bot.download(file_id, destination=buffer, timeout=60)
    return buffer.getvalue()


# -- /import ------------------------------------------------------------------------------------------


async def import_command(message: Message, state: FSMContext, actor: Actor) -> None:
    if not may_import(actor):
        await message.answer(refusal(actor))
        return
    token = await dialogs.begin(state, ImportForm.file)
    text = _(
        "<b>Class list.</b> Send the file your school register exports, as .xlsx or .csv (UTF-8 or "
        "Windows-1251, separated by ; or ,). Columns: the pupil's full name (or surname, first name, "
        "patronymic) and the class; a date of birth and the parents' names if you have them.\n\n"
        "A staff list instead has the columns name, role and classes.\n\n"
        "You will see what is in it before anything is imported. /cancel stops."
    )
    if not actor.is_admin:
        text += "\n\n" + _("As a teacher you can import pupils of your own classes.")
    cancel = InlineKeyboardButton(text=_("✖️ Cancel"), callback_data=OnbCb(action="cancel").pack())
    await message.answer(text, reply_markup=dialogs.stamp(InlineKeyboardMarkup(inline_keyboard=[[cancel]]), token))


async def not_a_file(message: Message) -> None:
    await message.answer(_("Please send the list as an .xlsx or .csv file (as a document). /cancel stops."))


async def got_file(
    message: Message, state: FSMContext, actor: Actor, repo: Repo, bot: Bot, session_maker: async_sessionmaker,
    raw_state: str | None = None,
) -> None:
    if not may_import(actor):
        if raw_state is None:
            raise SkipHandler  # a document sent for another reason: not ours
        await message.answer(refusal(actor))
        return
    document = message.document
    assert document is not None
    name = document.file_name or "file"
    try:
        classlist.check_file(name, document.file_size)
    except classlist.ListError as e:
        if raw_state is None and e.code == "wrong_type":
            raise SkipHandler from None  # some other document sent without /import: not a list
        await message.answer(list_error(e.code))
        return
    file_id = document.file_id

    async def read_and_preview() -> None:
        # Downloading needs Telegram's answer: after the commit, outside any transaction.
        data = await fetch_file(bot, file_id)
        try:
            parsed = classlist.read_list(data, name)
        except classlist.ListError as e:
            await message.answer(list_error(e.code))
            return
        if parsed.kind == "staff" and not actor.is_admin:
            await message.answer(_("This is a staff list: only administrators import staff.") + "\n"
                                 + _("Nothing was changed."))
            return
        async with unit_of_work(session_maker, bot) as repo2:
            planner = service.plan_pupils if parsed.kind == "pupils" else service.plan_staff
            plan = await planner(repo2, actor, parsed.rows)
            # The dialog of /import goes on; a list sent without it begins one.
            token = await dialogs.current(state) if raw_state is not None else None
            token = token or dialogs.new_token()
            await state.set_state(ImportForm.preview)
            await state.set_data({dialogs.KEY: token, "kind": parsed.kind, "file": name[:64],
                                  "rows": [r.as_dict() for r in parsed.rows]})
            parts = in_messages(preview_text(plan, name))
            for part in parts[:-1]:
                await message.answer(part)
            await message.answer(parts[-1], reply_markup=dialogs.stamp(preview_keyboard(plan), token))

    after_commit_do(read_and_preview)


async def do_import(
    query: CallbackQuery, callback_data: OnbCb, state: FSMContext, actor: Actor, repo: Repo, settings: Settings,
    bot_username: str,
) -> None:
    data = await state.get_data()
    await state.clear()
    if not may_import(actor) or not data.get("rows"):
        await query.answer(refusal(actor) if not may_import(actor) else _("This list has expired. Send the file again."),
                           show_alert=True)
        return
    rows = [classlist.Row.from_dict(r) for r in data["rows"]]
    if data.get("kind") == "staff":
        await _import_staff(query, actor, repo, rows, settings, bot_username)
        return
    done = await service.import_pupils(
        repo, actor, rows, create_classes=callback_data.action == "import",
        days=settings.family_code_days, uses=settings.family_code_uses,
    )
    lines = [ngettext("✅ Imported {n} pupil.", "✅ Imported {n} pupils.", done.pupils).format(n=done.pupils)]
    if done.created_classes:
        lines.append(_("Classes created: {classes}.").format(classes=q(", ".join(done.created_classes))))
    kb = InlineKeyboardBuilder()
    groups = {g.id: g for g in await repo.groups(actor.org.id, include_staff=False)}  # type: ignore[union-attr]
    for group_id in done.group_ids:
        if group_id in groups:
            kb.button(text=_("🖨 Slips: {group}").format(group=groups[group_id].title),
                      callback_data=FamCb(action="slips", group_id=group_id))
    kb.adjust(2)
    if done.group_ids:
        lines.append(_("Every pupil has a personal family code. Print the slips (one PDF per class) and hand them "
                       "out at the parents' meeting; /families shows who has joined."))
    await query.answer()
    await query.message.edit_text("\n".join(lines), reply_markup=kb.as_markup())  # type: ignore[union-attr]


async def _import_staff(
    query: CallbackQuery, actor: Actor, repo: Repo, rows: list[classlist.Row], settings: Settings, bot_username: str
) -> None:
    if not actor.is_admin:
        await query.answer(_("This is a staff list: only administrators import staff."), show_alert=True)
        return
    made = await service.import_staff(repo, actor, rows, days=settings.family_code_days)
    await query.answer()
    await query.message.edit_text(  # type: ignore[union-attr]
        ngettext("✅ {n} personal staff code issued. Whoever joins with one is verified at once.",
                 "✅ {n} personal staff codes issued. Whoever joins with one is verified at once.",
                 len(made)).format(n=len(made))
    )
    if made:
        await _send_staff_slips(query, actor, repo, made, settings, bot_username)


async def _send_staff_slips(
    query: CallbackQuery, actor: Actor, repo: Repo, codes: list[Invitation], settings: Settings, bot_username: str
) -> None:
    from bot.slips import slips_pdf

    org = actor.org
    assert org is not None
    titles = {g.id: g.title for g in await repo.groups(org.id, include_staff=False)}
    with in_locale(settings.default_locale):
        slips = []
        for invitation in codes:
            ids = [invitation.group_id, *service.more_groups(invitation)]
            slips.append(staff_slip(org, invitation, [titles[i] for i in ids if i in titles], bot_username))
    pdf = slips_pdf(slips, f"{org.name} — staff")
    await query.message.answer_document(  # type: ignore[union-attr]
        BufferedInputFile(pdf, filename="slips-staff.pdf"),
        caption=_("Personal staff codes: cut along the lines and hand each person their slip."),
    )


async def staff_slips(query: CallbackQuery, actor: Actor, repo: Repo, settings: Settings, bot_username: str) -> None:
    """The staff codes of an imported list nobody has used yet, printed again."""
    if not actor.is_admin:
        await query.answer(_("This is a staff list: only administrators import staff."), show_alert=True)
        return
    codes = list(await repo.staff_codes(actor.org.id, utcnow()))  # type: ignore[union-attr]
    if not codes:
        await query.answer(_("There is nobody to print a slip for."), show_alert=True)
        return
    await query.answer()
    await _send_staff_slips(query, actor, repo, codes, settings, bot_username)


async def cancel_import(query: CallbackQuery, state: FSMContext) -> None:
    await state.clear()
    await query.answer()
    await query.message.edit_text(_("Cancelled. Nothing was changed."))  # type: ignore[union-attr]


async def stale_import(query: CallbackQuery) -> None:
    await query.answer(_("This list has expired or was already imported. Send the file again."), show_alert=True)


# -- /families: who is missing ------------------------------------------------------------------------


def coverage_line(c: service.Coverage) -> str:
    return _("{group}: families joined {joined} of {pupils}").format(
        group=q(c.group.title), joined=c.joined, pupils=c.pupils)


async def _overview(actor: Actor, repo: Repo) -> tuple[str, InlineKeyboardMarkup | None]:
    rows = await service.coverage(repo, actor, _scope(actor))
    if not rows:
        return _("There are no classes yet. Create one with /groups."), None
    lines = [_("<b>Who is missing</b> (pupils on the class list whose family has joined)")]
    kb = InlineKeyboardBuilder()
    for c in rows:
        if c.pupils:
            lines.append("• " + coverage_line(c))
        else:
            lines.append("• " + _("{group}: no class list yet (/import)").format(group=q(c.group.title)))
        kb.button(text=f"{c.group.title} · {c.joined}/{c.pupils}", callback_data=FamCb(action="open", group_id=c.group.id))
    sizes = [3] * ((len(rows) + 2) // 3)
    if actor.is_admin and await repo.staff_codes(actor.org.id, utcnow()):  # type: ignore[union-attr]
        kb.button(text=_("🖨 Staff codes not used yet"), callback_data=FamCb(action="staff"))
        sizes.append(1)
    kb.adjust(*sizes)
    return "\n".join(lines), kb.as_markup()


async def families_command(message: Message, actor: Actor, repo: Repo) -> None:
    if not may_see_families(actor):
        await message.answer(_("Only administrators, the head and verified teachers see who is missing."))
        return
    text, markup = await _overview(actor, repo)
    await message.answer(text, reply_markup=markup)


async def families_list(query: CallbackQuery, actor: Actor, repo: Repo) -> None:
    if not may_see_families(actor):
        await query.answer(_("Only administrators, the head and verified teachers see who is missing."), show_alert=True)
        return
    text, markup = await _overview(actor, repo)
    await query.answer()
    await query.message.edit_text(text, reply_markup=markup)  # type: ignore[union-attr]


async def _class(query: CallbackQuery, data: FamCb, actor: Actor, repo: Repo) -> Group | None:
    group = await repo.group(actor.org.id, data.group_id) if may_see_families(actor) else None  # type: ignore[union-attr]
    scope = _scope(actor)
    if group is None or group.archived_at is not None or (scope is not None and group.id not in scope):
        await query.answer(_("You cannot see this class."), show_alert=True)
        return None
    return group


async def family_class(query: CallbackQuery, callback_data: FamCb, actor: Actor, repo: Repo) -> None:
    group = await _class(query, callback_data, actor, repo)
    if group is None:
        return
    [c] = await service.coverage(repo, actor, {group.id})
    missing = list(await repo.pupils_without_family(group.id))
    lines = ["<b>" + coverage_line(c) + "</b>"]
    if missing:
        lines.append(ngettext("No parent yet ({n}):", "No parent yet ({n}):", len(missing)).format(n=len(missing)))
        lines += [f"• {q(p.full_name)}" for p in missing]
    elif c.pupils:
        lines.append(_("Every family has joined. 🎉"))
    else:
        lines.append(_("This class has no class list yet: send it with /import."))
    kb = InlineKeyboardBuilder()
    if actor.can_invite(group, Role.PARENT) and c.pupils:
        kb.button(text=_("🖨 Slips for all {n}").format(n=c.pupils), callback_data=FamCb(action="slips", group_id=group.id))
        if missing:
            kb.button(text=_("🖨 Slips for the {n} missing").format(n=len(missing)),
                      callback_data=FamCb(action="missing", group_id=group.id))
        kb.button(text=_("🔁 Reissue a code"), callback_data=FamCb(action="pick", group_id=group.id))
    kb.button(text=_("« All classes"), callback_data=FamCb(action="list"))
    kb.adjust(1)
    parts = in_messages(lines)
    await query.answer()
    await query.message.edit_text(parts[0], reply_markup=kb.as_markup() if len(parts) == 1 else None)  # type: ignore[union-attr]
    for i, part in enumerate(parts[1:], start=2):
        await query.message.answer(part, reply_markup=kb.as_markup() if i == len(parts) else None)  # type: ignore[union-attr]


async def _printable(query: CallbackQuery, data: FamCb, actor: Actor, repo: Repo) -> Group | None:
    group = await repo.group(actor.org.id, data.group_id) if actor.org is not None else None
    if group is None or not actor.can_invite(group, Role.PARENT):
        await query.answer(rights.REFUSED + _("You cannot print codes for this class."), show_alert=True)
        return None
    return group


async def class_slips(
    query: CallbackQuery, callback_data: FamCb, actor: Actor, repo: Repo, settings: Settings, bot_username: str
) -> None:
    group = await _printable(query, callback_data, actor, repo)
    if group is None:
        return
    if callback_data.action == "missing":
        pupils = list(await repo.pupils_without_family(group.id))
    else:
        pupils = list(await repo.pupils_of(group.id))
    if not pupils:
        await query.answer(_("There is nobody to print a slip for."), show_alert=True)
        return
    pdf = await family_slips_pdf(repo, actor, group, pupils, settings, bot_username)
    await query.answer()
    kind = "slips-missing" if callback_data.action == "missing" else "slips"
    await query.message.answer_document(  # type: ignore[union-attr]
        BufferedInputFile(pdf, filename=_file_name(kind, group.title)),
        caption=ngettext("{group}: {n} slip. Cut along the lines; each family gets its own code.",
                         "{group}: {n} slips. Cut along the lines; each family gets its own code.",
                         len(pupils)).format(group=q(group.title), n=len(pupils)),
    )


async def pick_pupil(query: CallbackQuery, callback_data: FamCb, actor: Actor, repo: Repo) -> None:
    group = await _printable(query, callback_data, actor, repo)
    if group is None:
        return
    pupils = list(await repo.pupils_of(group.id))
    kb = InlineKeyboardBuilder()
    for pupil in pupils[:REISSUE_BUTTONS]:
        kb.button(text=pupil.full_name[:40], callback_data=FamCb(action="reissue", group_id=group.id, pupil_id=pupil.id))
    kb.button(text=_("« Back"), callback_data=FamCb(action="open", group_id=group.id))
    kb.adjust(2)
    await query.answer()
    await query.message.edit_text(  # type: ignore[union-attr]
        _("{group}: whose code is lost? A new one is issued and the old one stops working.").format(group=q(group.title)),
        reply_markup=kb.as_markup(),
    )


async def reissue(
    query: CallbackQuery, callback_data: FamCb, actor: Actor, repo: Repo, settings: Settings, bot_username: str
) -> None:
    group = await _printable(query, callback_data, actor, repo)
    if group is None:
        return
    pupil = await repo.pupil(callback_data.pupil_id)
    if pupil is None or pupil.group_id != group.id:
        await query.answer(_("This pupil is no longer in the class."), show_alert=True)
        return
    invitation = await service.reissue_code(repo, actor, pupil, days=settings.family_code_days,
                                            uses=settings.family_code_uses)
    from bot.slips import slips_pdf

    org = actor.org
    assert org is not None
    with in_locale(settings.default_locale):
        pdf = slips_pdf([family_slip(org, group, pupil, invitation, bot_username)], f"{org.name} — {pupil.full_name}")
    await query.answer(_("A new code is issued; the old one no longer works."))
    await query.message.answer_document(  # type: ignore[union-attr]
        BufferedInputFile(pdf, filename=_file_name("slip", pupil.full_name)),
        caption=_("New personal code for the family of {name} ({group}): <code>{code}</code>. "
                  "The old code no longer works.").format(name=q(pupil.full_name), group=q(group.title),
                                                          code=invitation.code),
    )


# -- a class-wide code: its poster, and approval on or off -------------------------------------------


def invitation_keyboard(invitation: Invitation) -> InlineKeyboardMarkup:
    """Under a new class-wide invitation: the poster, and (for parents) approval."""
    kb = InlineKeyboardBuilder()
    kb.button(text=_("🖨 Poster (PDF)"), callback_data=PosterCb(action="pdf", invitation_id=invitation.id))
    if invitation.role == Role.PARENT and invitation.pupil_id is None:
        if invitation.needs_approval:
            kb.button(text=_("Approval: on — switch off"), callback_data=PosterCb(action="approval_off",
                                                                                   invitation_id=invitation.id))
        else:
            kb.button(text=_("Approval: off — switch on"), callback_data=PosterCb(action="approval_on",
                                                                                  invitation_id=invitation.id))
    kb.adjust(1)
    return kb.as_markup()


def approval_note(invitation: Invitation) -> str:
    if invitation.role != Role.PARENT or invitation.pupil_id is not None:
        return ""
    if invitation.needs_approval:
        return _("Families who join with it are approved by the class's teacher or an administrator.")
    return _("Families who join with it are admitted without approval.")


async def _managed(query: CallbackQuery, data: PosterCb, actor: Actor, repo: Repo) -> Invitation | None:
    invitation = await repo.invitation(data.invitation_id, org_id=actor.org.id) if actor.org else None
    if invitation is None or not actor.can_manage_invitation(invitation.group_id, invitation.created_by_id):
        await query.answer(rights.REFUSED + _("You cannot manage this invitation."), show_alert=True)
        return None
    return invitation


async def poster(
    query: CallbackQuery, callback_data: PosterCb, actor: Actor, repo: Repo, settings: Settings, bot_username: str
) -> None:
    invitation = await _managed(query, callback_data, actor, repo)
    if invitation is None:
        return
    from bot.slips import Poster, poster_pdf

    org = actor.org
    assert org is not None
    with in_locale(settings.default_locale):
        headings = {Role.PARENT: _("Invitation for parents"), Role.STUDENT: _("Invitation for students")}
        heading = headings.get(Role(invitation.role)) or _("Invitation for: {role}").format(role=role_name(invitation.role))
        lines = [
            _("Point the phone's camera at the QR code, or send the bot the message /join {code}").format(
                code=invitation.code),
            _("The bot asks for your name (and a parent for the child's name)."),
        ]
        if invitation.needs_approval:
            lines.append(_("The class's teacher confirms your request: you get a message in the bot."))
        else:
            lines.append(_("Then you are in the group at once."))
        pdf = poster_pdf(Poster(
            org=org.name, group=invitation.group.title, heading=heading, code=invitation.code,
            link=deep_link(bot_username, invitation.code),
            until=_("Valid until {date}").format(date=_date(invitation.expires_at, org)), lines=tuple(lines),
        ))
    await query.answer()
    await query.message.answer_document(  # type: ignore[union-attr]
        BufferedInputFile(pdf, filename=_file_name("poster", invitation.group.title)),
        caption=_("Poster for {group}: print it on A4.").format(group=q(invitation.group.title)),
    )


async def approval(query: CallbackQuery, callback_data: PosterCb, actor: Actor, repo: Repo) -> None:
    invitation = await _managed(query, callback_data, actor, repo)
    if invitation is None:
        return
    if invitation.role != Role.PARENT or invitation.pupil_id is not None:
        await query.answer(_("This invitation does not need approval."), show_alert=True)
        return
    invitation.needs_approval = callback_data.action == "approval_on"
    repo.audit(invitation.org_id, actor.person.id, "invitation.approval", subject=f"invitation:{invitation.id}",
               detail="on" if invitation.needs_approval else "off")
    await query.answer(approval_note(invitation))
    if isinstance(query.message, Message):
        await query.message.edit_reply_markup(reply_markup=invitation_keyboard(invitation))


# -- joining with a personal code, or with a class-wide code that asks approval ----------------------
# Called from handlers/joining.py, which keeps the dialog; these are its onboarding steps.


async def personal_start(
    message: Message, state: FSMContext, actor: Actor, repo: Repo, invitation: Invitation, org: Organisation | None
) -> bool | None:
    """None: not a personal code. True: the dialog goes straight to the
    confirmation (a staff code names the person). False: answered here."""
    from handlers.joining import JoinForm, name_markup

    if invitation.person_name:
        await dialogs.begin(state, JoinForm.confirm, invitation_id=invitation.id, full_name=invitation.person_name)
        return True
    if invitation.pupil_id is None:
        return None
    pupil = await repo.pupil(invitation.pupil_id)
    if pupil is None or pupil.group_id != invitation.group_id:
        await message.answer(_("The pupil of this code is no longer in this class. Ask the class's teacher for a "
                               "new code."))
        return False
    if any(c.id == pupil.id for c in await repo.children_in_group(actor.person.id, pupil.group_id)) and \
            actor.membership_in(pupil.group_id, Role.PARENT) is not None:
        await message.answer(_("You are already in {group} as the parent of {name}.").format(
            group=q(invitation.group.title), name=q(pupil.full_name)))
        return False
    token = await dialogs.begin(state, JoinForm.name, invitation_id=invitation.id, child_name=pupil.full_name,
                                pupil_id=pupil.id)
    text = _(
        "🎫 Personal code of the family of <b>{child}</b>, {group} ({org}).\n\nPlease send your full name, "
        "as the teachers should see it (for example: Иванова Мария Петровна)."
    ).format(child=q(pupil.full_name), group=q(invitation.group.title), org=q(org.name if org else ""))
    await message.answer(text, reply_markup=dialogs.stamp(name_markup(actor), token))
    return False


def confirm_words(invitation: Invitation, lines: list[str]) -> str | None:
    """Adds what this kind of code means to the confirmation; the Yes button's words."""
    if invitation.pupil_id is not None:
        lines.append("")
        lines.append(_("Is this your child? If not, press Cancel and ask the class's teacher."))
        return _("✅ Yes, this is my child")
    if invitation.person_name:
        lines.append(_("The administration listed you by this name: you are verified on joining."))
        return None
    if invitation.needs_approval:
        lines.append("")
        lines.append(_("The class's teacher or an administrator approves your request; the answer comes here."))
        return _("📨 Send the request")
    return None


async def join_by_request(
    query: CallbackQuery, actor: Actor, repo: Repo, settings: Settings, invitation: Invitation, data: dict,  # type: ignore[type-arg]
) -> None:
    from handlers.joining import invitation_problem
    from handlers.requests import send_cards

    group = invitation.group
    if await repo.pending_request(actor.person.id, group.id, invitation.role) is not None:
        await query.answer()
        await query.message.edit_text(  # type: ignore[union-attr]
            _("You have already asked to join {group}. Please wait for the decision.").format(group=q(group.title)))
        return
    problem = invitation_problem(invitation, utcnow())
    if problem is None and not await repo.consume_invitation(invitation.id, utcnow()):
        problem = _("This invitation has already been used up. Ask whoever gave it to you for a new one.")
    if problem is not None:
        await query.answer()
        await query.message.edit_text(problem)  # type: ignore[union-attr]
        return
    org = await repo.organisation(invitation.org_id)
    assert org is not None
    request = await repo.add_join_request(
        org_id=org.id, group_id=group.id, person_id=actor.person.id, role=invitation.role,
        full_name=data["full_name"], child_name=data.get("child_name"),
    )
    request.invitation_id = invitation.id
    request.group = group
    if not actor.person.full_name:
        actor.person.full_name = data["full_name"]
    await send_cards(repo, org, request, settings, skip_chat=actor.person.telegram_id)
    await query.answer()
    await query.message.edit_text(  # type: ignore[union-attr]
        _("📨 Your request to join {group} is sent to the class's teacher. You will get the answer here.").format(
            group=q(group.title))
    )


async def after_personal_join(repo: Repo, org: Organisation, person, invitation: Invitation) -> None:  # type: ignore[no-untyped-def]
    """What a personal code adds to joining: the parent bound to the pupil; the
    staff member in every class of the list."""
    from handlers.admission import admit

    if invitation.pupil_id is not None:
        await repo.link_guardian(org.id, person.id, invitation.pupil_id)
        return
    if not invitation.person_name:
        return
    for group_id in service.more_groups(invitation):
        group = await repo.group(org.id, group_id)
        if group is not None and group.archived_at is None:
            await admit(repo, org=org, group=group, person=person, role=invitation.role,
                        full_name=person.full_name or invitation.person_name, child_name=None,
                        invitation_id=invitation.id, verified_by_id=invitation.created_by_id)
    repo.audit(org.id, person.id, "staff_code.join", subject=f"invitation:{invitation.id}")
