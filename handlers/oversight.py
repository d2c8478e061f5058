"""/stats and /audit: whether messages reach families (as text, a chart and
CSV), and every admin action, paged and exported."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.types import BufferedInputFile, CallbackQuery, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot import rights
from bot.actor import Actor
from handlers import exports
from handlers.chart import stats_chart
from handlers.texts import local_time, q, role_name
from storage.models import DbInt, DeliveryStatus, Role, utcnow
from storage.repo import Repo

PAGE = 10


class StatsCb(CallbackData, prefix="st"):
    action: str  # chart | csv


class AuditCb(CallbackData, prefix="au"):
    action: str  # page | csv
    offset: DbInt = 0


def create_router() -> Router:
    router = Router(name="oversight")
    router.message.register(stats_command, Command("stats"))
    router.callback_query.register(stats_file, StatsCb.filter())
    router.message.register(audit_command, Command("audit"))
    router.callback_query.register(audit_page, AuditCb.filter(F.action == "page"))
    router.callback_query.register(audit_csv, AuditCb.filter(F.action.in_({"csv", "xlsx"})))
    return router


def may_see_stats(actor: Actor) -> bool:
    return actor.can(rights.Cap.STATS)


def pct(part: int, whole: int) -> str:
    return f"{round(100 * part / whole)}%" if whole else "—"


async def gather(actor: Actor, repo: Repo) -> dict:  # type: ignore[type-arg]
    """Every figure of /stats, per group and in total."""
    org = actor.org
    assert org is not None
    now = utcnow()
    groups = list(await repo.groups(org.id))
    members: dict[int, dict[str, int]] = {}
    for group_id, role, n in await repo.members_by_group_role(org.id):
        members.setdefault(group_id, {})[role] = n
    delivery = await repo.delivery_by_group(org.id)
    absences = await repo.absence_counts(org.id, (now - timedelta(days=30)).date())
    families = await repo.families_joined(org.id)  # pupils on the class list, and those whose family joined
    joins = await repo.join_times(org.id, now - timedelta(weeks=8))
    weeks = [0] * 8
    for moment in joins:
        age = (now - moment).days // 7
        if 0 <= age < 8:
            weeks[7 - age] += 1
    rows = []
    for group in groups:
        d = delivery.get(group.id, {})
        copies = sum(v for k, v in d.items() if k in {s.value for s in DeliveryStatus})
        delivered = d.get(DeliveryStatus.SENT, 0) + d.get(DeliveryStatus.DIGESTED, 0)
        rows.append({
            "group": group.title,
            "kind": group.kind,
            "members": members.get(group.id, {}),
            "posts": d.get("posts", 0),
            "copies": copies,
            "delivered": delivered,
            "unreachable": d.get(DeliveryStatus.UNREACHABLE, 0) + d.get(DeliveryStatus.FAILED, 0),
            "ack_delivered": d.get("ack_delivered", 0),
            "acks": d.get("acks", 0),
            "absences": absences.get(group.id, 0),
            "pupils": families.get(group.id, (0, 0))[0],
            "families": families.get(group.id, (0, 0))[1],
        })
    return {
        "rows": rows,
        "totals": await repo.delivery_totals(org.id),
        "weeks": weeks,
        "active7": await repo.active_people(org.id, now - timedelta(days=7)),
        "active30": await repo.active_people(org.id, now - timedelta(days=30)),
    }


SNAPSHOT_SECONDS = 600


async def stats_command(message: Message, actor: Actor, repo: Repo, state: FSMContext) -> None:
    if not may_see_stats(actor):
        await message.answer(rights.REFUSED + _("Only administrators and the head see statistics."))
        return
    data = await gather(actor, repo)
    # The chart and the CSV buttons show these same figures (a year of history
    # makes gathering them the costly part), unless they are pressed much later.
    await state.update_data(stats_snapshot={"org": actor.org.id, "at": utcnow().timestamp(), "data": data})  # type: ignore[union-attr]
    lines = [_("<b>Statistics of {org}</b>").format(org=q(actor.org.name))]  # type: ignore[union-attr]
    lines.append(_("Active people: {a7} in 7 days, {a30} in 30 days.").format(a7=data["active7"], a30=data["active30"]))
    lines.append(_("Joined per week (8 weeks): {weeks}").format(weeks=" · ".join(str(n) for n in data["weeks"])))
    totals = data["totals"]
    total_copies, total_delivered = totals.get("copies", 0), totals.get("delivered", 0)
    total_ack_delivered, total_acks = totals.get("ack_delivered", 0), totals.get("acks", 0)
    lines.append(_("Delivered: {rate} of {n} copies; acknowledged: {ack} of those asked.").format(
        rate=pct(total_delivered, total_copies), n=total_copies, ack=pct(total_acks, total_ack_delivered)))
    for r in data["rows"]:
        roles = ", ".join(f"{role_name(role)}: {n}" for role, n in sorted(r["members"].items()))
        lines.append("")
        lines.append(f"<b>{q(r['group'])}</b> — " + (roles or _("no members")))
        lines.append(_("posts {posts}, delivered {d}, acknowledged {a}, not reachable {u}, absences (30 days) {abs}").format(
            posts=r["posts"], d=pct(r["delivered"], r["copies"]), a=pct(r["acks"], r["ack_delivered"]),
            u=r["unreachable"], abs=r["absences"]))
        if r["pupils"]:
            lines.append(_("families joined: {joined} of {pupils} (who is missing: /families)").format(
                joined=r["families"], pupils=r["pupils"]))
    kb = InlineKeyboardBuilder()
    kb.button(text=_("📊 Chart"), callback_data=StatsCb(action="chart"))
    kb.button(text=_("📗 Excel"), callback_data=StatsCb(action="xlsx"))
    kb.button(text=_("📄 CSV"), callback_data=StatsCb(action="csv"))
    await message.answer("\n".join(lines), reply_markup=kb.as_markup())


def stats_csv(data: dict) -> bytes:  # type: ignore[type-arg]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    roles = [r.value for r in Role]
    writer.writerow(["group", *roles, "posts", "copies", "delivered", "delivery_rate", "not_reachable",
                     "asked_to_acknowledge", "acknowledged", "acknowledgement_rate", "absences_30_days",
                     "pupils", "families_joined", "families_rate"])
    for r in data["rows"]:
        writer.writerow([
            r["group"], *[r["members"].get(role, 0) for role in roles], r["posts"], r["copies"], r["delivered"],
            f"{r['delivered'] / r['copies']:.3f}" if r["copies"] else "", r["unreachable"], r["ack_delivered"],
            r["acks"], f"{r['acks'] / r['ack_delivered']:.3f}" if r["ack_delivered"] else "", r["absences"],
            r["pupils"], r["families"], f"{r['families'] / r['pupils']:.3f}" if r["pupils"] else "",
        ])
    return buffer.getvalue().encode("utf-8-sig")  # the BOM lets spreadsheet programs read Cyrillic


async def stats_file(query: CallbackQuery, callback_data: StatsCb, actor: Actor, repo: Repo, state: FSMContext) -> None:
    if not may_see_stats(actor):
        await query.answer(rights.REFUSED + _("Only administrators and the head see statistics."), show_alert=True)
        return
    snapshot = (await state.get_data()).get("stats_snapshot") or {}
    fresh = snapshot.get("org") == actor.org.id and utcnow().timestamp() - snapshot.get("at", 0) < SNAPSHOT_SECONDS  # type: ignore[union-attr]
    data = snapshot["data"] if fresh else await gather(actor, repo)
    await query.answer()
    stamp = utcnow().strftime("%Y-%m-%d")
    if callback_data.action == "chart":
        png = stats_chart(data, actor.org.name, utcnow(), actor.org.timezone)  # type: ignore[union-attr]
        await query.message.answer_photo(BufferedInputFile(png, filename=f"stats-{stamp}.png"))  # type: ignore[union-attr]
    elif callback_data.action == "xlsx":
        book = exports.stats_workbook(data, actor.org, utcnow())  # type: ignore[arg-type]
        await query.message.answer_document(BufferedInputFile(book, filename=f"stats-{stamp}.xlsx"))  # type: ignore[union-attr]
    else:
        await query.message.answer_document(BufferedInputFile(stats_csv(data), filename=f"stats-{stamp}.csv"))  # type: ignore[union-attr]


# -- audit ------------------------------------------------------------------------------------


async def _audit_view(actor: Actor, repo: Repo, offset: int):  # type: ignore[no-untyped-def]
    entries, total = await repo.audit_page(actor.org.id, offset, PAGE)  # type: ignore[union-attr]
    lines = [_("<b>Audit log</b> ({first}–{last} of {total})").format(
        first=min(offset + 1, total), last=min(offset + PAGE, total), total=total)]
    names = await exports.subject_names(repo, actor.org.id, [e.subject for e, _who in entries])  # type: ignore[union-attr]
    for entry, who in entries:
        line = f"{local_time(entry.created_at, actor.org)} · {q(who)} · {q(exports.action_name(entry.action))}"
        if entry.subject:
            line += f" · {q(names.get(entry.subject, entry.subject))}"
        if entry.detail:
            line += f" — {q(exports.detail_text(entry.detail)[:80])}"
        lines.append(line)
    kb = InlineKeyboardBuilder()
    if offset > 0:
        kb.button(text="«", callback_data=AuditCb(action="page", offset=max(0, offset - PAGE)))
    if offset + PAGE < total:
        kb.button(text="»", callback_data=AuditCb(action="page", offset=offset + PAGE))
    kb.button(text=_("📗 Excel"), callback_data=AuditCb(action="xlsx"))
    kb.button(text=_("📄 CSV"), callback_data=AuditCb(action="csv"))
    return "\n".join(lines), kb.as_markup()


async def audit_command(message: Message, actor: Actor, repo: Repo) -> None:
    if not actor.is_admin:
        await message.answer(rights.REFUSED + _("Only administrators see the audit log."))
        return
    text, markup = await _audit_view(actor, repo, 0)
    await message.answer(text, reply_markup=markup)


async def audit_page(query: CallbackQuery, callback_data: AuditCb, actor: Actor, repo: Repo) -> None:
    if not actor.is_admin:
        await query.answer(rights.REFUSED + _("Only administrators see the audit log."), show_alert=True)
        return
    text, markup = await _audit_view(actor, repo, max(0, callback_data.offset))
    await query.answer()
    await query.message.edit_text(text, reply_markup=markup)  # type: ignore[union-attr]


async def audit_csv(query: CallbackQuery, callback_data: AuditCb, actor: Actor, repo: Repo) -> None:
    if not actor.is_admin:
        await query.answer(rights.REFUSED + _("Only administrators see the audit log."), show_alert=True)
        return
    entries, _total = await repo.audit_page(actor.org.id, 0, 1_000_000)  # type: ignore[union-attr]
    if callback_data.action == "xlsx":
        book = await exports.audit_workbook(repo, actor.org, entries)  # type: ignore[arg-type]
        await query.answer()
        await query.message.answer_document(BufferedInputFile(book, filename="audit.xlsx"))  # type: ignore[union-attr]
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["time_utc", "who", "action", "subject", "detail"])
    for entry, who in entries:
        writer.writerow([entry.created_at.isoformat(), who, entry.action, entry.subject or "", entry.detail or ""])
    await query.answer()
    await query.message.answer_document(  # type: ignore[union-attr]
        BufferedInputFile(buffer.getvalue().encode("utf-8-sig"), filename="audit.csv")
    )
