"""Callback data factories and the keyboards built from them.

Callback data carries ids, never payloads (64 bytes). Every handler that
receives one checks the presser's rights again: a client can send any data.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder

from handlers.texts import kind_name, role_name
from storage.models import DbInt, Group, GroupKind, OrgKind, Role


class LangCb(CallbackData, prefix="lang"):
    locale: str


class SetupCb(CallbackData, prefix="setup"):
    action: str  # kind | tz_default | no_contact
    value: str = ""


class OrgCb(CallbackData, prefix="org"):
    action: str  # use | new
    org_id: DbInt = 0


class GroupCb(CallbackData, prefix="grp"):
    action: str  # list | open | new | rename | archive | archive_yes
    group_id: DbInt = 0


class InviteCb(CallbackData, prefix="inv"):
    action: str  # groups | group | role | days | make
    group_id: DbInt = 0
    role: str = ""
    days: DbInt = 0
    uses: DbInt = 0


class InvitesCb(CallbackData, prefix="invs"):
    action: str  # revoke | all | all_yes | list
    invitation_id: DbInt = 0


class JoinCb(CallbackData, prefix="join"):
    action: str  # keep_name | confirm | cancel


class AskCb(CallbackData, prefix="ask"):
    action: str  # start | role | group | confirm | cancel
    role: str = ""
    group_id: DbInt = 0


class DecideCb(CallbackData, prefix="req"):
    action: str  # approve | reject
    request_id: DbInt


class BindCb(CallbackData, prefix="reqb"):
    """Approve a parent's request, binding the child to this pupil of the class list."""

    request_id: DbInt
    pupil_id: DbInt


class VerifyCb(CallbackData, prefix="ver"):
    action: str  # yes | no
    membership_id: DbInt


class MembersCb(CallbackData, prefix="mem"):
    action: str  # group | blocks | admin | admin_yes
    group_id: DbInt = 0
    person_id: DbInt = 0


INVITE_DAYS = (1, 7, 14, 30)
INVITE_USES = (0, 1, 10, 30, 100)  # 0: no limit


def language_keyboard() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text="Русский", callback_data=LangCb(locale="ru").pack()),
                InlineKeyboardButton(text="English", callback_data=LangCb(locale="en").pack()),
            ]
        ]
    )


def org_kind_keyboard() -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for kind in OrgKind:
        kb.button(text=kind_name(kind), callback_data=SetupCb(action="kind", value=kind.value))
    kb.adjust(1)
    return kb.as_markup()


def single_button(text: str, data: CallbackData) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text=text, callback_data=data.pack())]])


def confirm_keyboard(yes: CallbackData, no: CallbackData, yes_text: str | None = None) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text=yes_text or _("✅ Confirm"), callback_data=yes.pack()),
                InlineKeyboardButton(text=_("✖️ Cancel"), callback_data=no.pack()),
            ]
        ]
    )


def group_title(group: Group) -> str:
    if group.kind == GroupKind.STAFF:
        return "🏫 " + group.title
    return group.title


def groups_keyboard(groups: Iterable[Group], make: type[CallbackData], **fields: object) -> InlineKeyboardMarkup:
    """One button per group; `make(group_id=..., **fields)` builds each button's data."""
    kb = InlineKeyboardBuilder()
    for group in groups:
        kb.button(text=group_title(group), callback_data=make(group_id=group.id, **fields))
    kb.adjust(2)
    return kb.as_markup()


def roles_keyboard(roles: Iterable[Role], make: type[CallbackData], **fields: object) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for role in roles:
        kb.button(text=role_name(role).capitalize(), callback_data=make(role=role.value, **fields))
    kb.adjust(2)
    return kb.as_markup()


def decide_keyboard(request_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=_("✅ Approve"), callback_data=DecideCb(action="approve", request_id=request_id).pack()
                ),
                InlineKeyboardButton(
                    text=_("✖️ Reject"), callback_data=DecideCb(action="reject", request_id=request_id).pack()
                ),
            ]
        ]
    )


def verify_keyboard(membership_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=_("✅ Verify"), callback_data=VerifyCb(action="yes", membership_id=membership_id).pack()
                ),
                InlineKeyboardButton(
                    text=_("✖️ Decline"), callback_data=VerifyCb(action="no", membership_id=membership_id).pack()
                ),
            ]
        ]
    )
