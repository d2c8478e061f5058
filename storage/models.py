"""What Parta keeps. Every row that belongs to an organisation carries `org_id`.

Times are stored as naive UTC (SQLite has no time zones) and come back aware.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from datetime import date, datetime, timezone
from typing import Annotated

from pydantic import Field
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    literal_column,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# A number that came from outside (a button's callback data) and is used as a
# key or a value in a query: within a 32-bit INTEGER column's range, which is
# PostgreSQL's; a forged button with a larger one is just a stale button.
DbInt = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC without a zone, returns an aware UTC datetime."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


class Code(TypeDecorator[str]):
    """A short code such as a role or a state; enum members are bound as plain strings."""

    impl = String(16)
    cache_ok = True

    def process_bind_param(self, value: object, dialect: object) -> str | None:
        if value is None:
            return None
        return value.value if isinstance(value, enum.Enum) else str(value)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


# Enumerations are stored as plain strings, not native enums: adding a value
# later needs no ALTER TYPE on PostgreSQL.
class StrEnum(str, enum.Enum):
    def __str__(self) -> str:
        return self.value


class OrgKind(StrEnum):
    KINDERGARTEN = "kindergarten"
    SCHOOL = "school"
    CENTRE = "centre"


class GroupKind(StrEnum):
    CLASS = "class"
    STAFF = "staff"


class Role(StrEnum):
    ADMIN = "admin"
    HEAD = "head"
    TEACHER = "teacher"
    SPECIALIST = "specialist"
    PARENT = "parent"
    STUDENT = "student"


STAFF_ROLES = frozenset({Role.ADMIN, Role.HEAD, Role.TEACHER, Role.SPECIALIST})
FAMILY_ROLES = frozenset({Role.PARENT, Role.STUDENT})
VERIFIED_ROLES = frozenset({Role.TEACHER, Role.SPECIALIST})  # need an admin's confirmation


class MemberState(StrEnum):
    UNVERIFIED = "unverified"
    ACTIVE = "active"
    REMOVED = "removed"


class RequestState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    UNREACHABLE = "unreachable"
    FAILED = "failed"
    CANCELLED = "cancelled"
    HELD = "held"  # a post's copy waiting for its reader's daily digest
    DIGESTED = "digested"  # delivered inside a digest that Telegram accepted


class Organisation(Base):
    __tablename__ = "organisation"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(Code())
    timezone: Mapped[str] = mapped_column(String(64))
    support_contact: Mapped[str | None] = mapped_column(String(256))
    # Quiet hours, local "HH:MM"; ordinary deliveries wait for the end of them.
    quiet_start: Mapped[str | None] = mapped_column(String(5), default="21:00")
    quiet_end: Mapped[str | None] = mapped_column(String(5), default="08:00")
    # Absence notices for today sent after this local time are marked late.
    absence_cutoff: Mapped[str | None] = mapped_column(String(5), default="09:00")
    office_hours: Mapped[str | None] = mapped_column(String(11), default="08:00-18:00")
    # How long the audit log is kept, in months (a school year and a half by default).
    audit_keep_months: Mapped[int] = mapped_column(Integer, default=18, server_default="18")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Person(Base):
    """A Telegram user known to the bot (not tied to one organisation)."""

    __tablename__ = "person"

    id: Mapped[int] = mapped_column(primary_key=True)
    telegram_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    full_name: Mapped[str | None] = mapped_column(String(128))
    telegram_name: Mapped[str] = mapped_column(String(256), default="")
    locale: Mapped[str | None] = mapped_column(String(8))
    # None: every post at once; "HH:MM": ordinary posts come in one daily digest then.
    digest_at: Mapped[str | None] = mapped_column(String(5))
    # A teacher's own office hours "HH:MM-HH:MM"; None: the organisation's.
    office_hours: Mapped[str | None] = mapped_column(String(11))
    # Several organisations on one bot (a municipal deployment): the one this
    # person acts in now, chosen with /org; None: the first they belong to.
    current_org_id: Mapped[int | None] = mapped_column(ForeignKey("organisation.id"))
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # at most daily, for "active"
    forgotten_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="person", foreign_keys="Membership.person_id"
    )

    @property
    def display_name(self) -> str:
        return self.full_name or self.telegram_name or str(self.telegram_id)


class Group(Base):
    __tablename__ = "study_group"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), index=True)
    title: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(Code(), default=GroupKind.CLASS)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    organisation: Mapped[Organisation] = relationship()


class Membership(Base):
    """A person in a group in a role. Admins and heads belong to the staff room."""

    __tablename__ = "membership"
    __table_args__ = (UniqueConstraint("group_id", "person_id", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), index=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("study_group.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    role: Mapped[str] = mapped_column(Code())
    state: Mapped[str] = mapped_column(Code(), default=MemberState.ACTIVE)
    invitation_id: Mapped[int | None] = mapped_column(ForeignKey("invitation.id"))
    verified_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    person: Mapped[Person] = relationship(back_populates="memberships", foreign_keys=[person_id])
    group: Mapped[Group] = relationship()


class Pupil(Base):
    __tablename__ = "pupil"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), index=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("study_group.id"), index=True)
    full_name: Mapped[str] = mapped_column(String(128))
    # From the school's register (a class list import), when it gave them.
    birth_date: Mapped[date | None] = mapped_column(Date)
    parents_hint: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Guardianship(Base):
    __tablename__ = "guardianship"
    __table_args__ = (UniqueConstraint("person_id", "pupil_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    pupil_id: Mapped[int] = mapped_column(ForeignKey("pupil.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    pupil: Mapped[Pupil] = relationship()


class Invitation(Base):
    __tablename__ = "invitation"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), index=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("study_group.id"), index=True)
    role: Mapped[str] = mapped_column(Code())
    code: Mapped[str] = mapped_column(String(32), unique=True)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    max_uses: Mapped[int | None] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Issued by an administrator: the organisation's code, it outlives its
    # creator's membership. A teacher's code works only while they may invite.
    issued_by_admin: Mapped[bool] = mapped_column(default=False, server_default=false())
    # A personal family code: joining with it binds the parent to this pupil.
    pupil_id: Mapped[int | None] = mapped_column(ForeignKey("pupil.id"), index=True)
    # A personal staff code: the person the administration named (verified on joining),
    # and the further classes they teach ("12,15").
    person_name: Mapped[str | None] = mapped_column(String(128))
    more_group_ids: Mapped[str | None] = mapped_column(String(256))
    # A class-wide family code: joining with it is a join request for the teacher to approve.
    needs_approval: Mapped[bool] = mapped_column(default=False, server_default=false())

    group: Mapped[Group] = relationship()


class JoinRequest(Base):
    __tablename__ = "join_request"
    __table_args__ = (Index("ix_join_request_org_state", "org_id", "state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), index=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("study_group.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    role: Mapped[str] = mapped_column(Code())
    full_name: Mapped[str] = mapped_column(String(128))
    child_name: Mapped[str | None] = mapped_column(String(128))
    # The class-wide code it came through (None: asked without a code).
    invitation_id: Mapped[int | None] = mapped_column(ForeignKey("invitation.id"))
    state: Mapped[str] = mapped_column(Code(), default=RequestState.PENDING)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    group: Mapped[Group] = relationship()
    person: Mapped[Person] = relationship(foreign_keys=[person_id])
    decided_by: Mapped[Person | None] = relationship(foreign_keys=[decided_by_id])


class Lane(enum.IntEnum):
    """Who waits least for Telegram's limits: the person pressing a button now
    (their own answers, kept in memory by the sender), then cards and notices
    to staff and to one person, then broadcasts and digests."""

    NOW = 0
    PEOPLE = 1
    BULK = 2


# Copies of posts and their edits, reminders to audiences, digests: the bulk lane.
BULK_TOPICS = frozenset({
    "post", "post_edit", "post_withdraw", "post_renotify", "event_reminder", "weekly_reminder", "digest",
})


def lane_for_topic(topic: str | None) -> int:
    return Lane.BULK.value if topic in BULK_TOPICS else Lane.PEOPLE.value


def _lane_default(context) -> int:  # type: ignore[no-untyped-def]
    return lane_for_topic(context.get_current_parameters().get("topic"))


class Delivery(Base):
    """The outbox: one Bot API call to one chat, made by the sender after commit.

    `topic`/`ref_id` name what the message is about (a join request card, a
    verification card) so every copy can be found and edited later; an edit row
    points at the row whose message it edits (`edit_of_id`).
    """

    __tablename__ = "delivery"
    __table_args__ = (
        Index("ix_delivery_due", "status", "next_attempt_at"),
        Index("ix_delivery_topic", "topic", "ref_id"),
        # The sender's claim, in its order (lane, id): only the rows waiting, so a
        # year of sent ones costs it nothing. The statements that must use it say
        # the status in their text (`status_is`), not as a bound parameter.
        Index("ix_delivery_pending", "lane", "id", "next_attempt_at",
              sqlite_where=text("status = 'pending'"), postgresql_where=text("status = 'pending'")),
        # A reader's copies held for the digest. No index on person_id alone: a
        # broadcast would write a page of it per recipient, all over a year of
        # rows (bench/history.py); a person's rows are found through
        # ix_delivery_post_person (post_id IS NULL, or one of the posts).
        Index("ix_delivery_held", "person_id",
              sqlite_where=text("status = 'held'"), postgresql_where=text("status = 'held'")),
        # A post's copies by status (the author's card), and /stats counting every
        # copy by status and recipient, from the index alone (the rows carry payloads).
        Index("ix_delivery_topic_post", "topic", "post_id", "status", "person_id"),
        # Is this person one of the post's recipients (every Acknowledge press)?
        Index("ix_delivery_post_person", "post_id", "person_id"),
        # The edits of one message (is a newer edit on its way?), the copies a digest carries.
        Index("ix_delivery_edit_of", "edit_of_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int | None] = mapped_column(ForeignKey("organisation.id"), index=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    method: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)
    topic: Mapped[str | None] = mapped_column(String(32))
    ref_id: Mapped[int | None] = mapped_column(Integer)
    # Lane.PEOPLE or Lane.BULK, from the topic: claimed in that order.
    lane: Mapped[int] = mapped_column(SmallInteger, default=_lane_default, server_default="1")
    # For a post's copy: which post and which recipient (delivery and
    # acknowledgement rates are counted from these).
    post_id: Mapped[int | None] = mapped_column(ForeignKey("post.id"))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    edit_of_id: Mapped[int | None] = mapped_column(ForeignKey("delivery.id"))
    # Tried instead when Telegram refuses the call for good (a copy too old to
    # delete is edited to say it was withdrawn).
    fallback_method: Mapped[str | None] = mapped_column(String(32))
    fallback_payload: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Code(), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    # Who is sending it and since when: a row stuck in `sending` past its lease
    # (its worker died) is sent again by another worker.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


def status_is(status: DeliveryStatus) -> ColumnElement[bool]:
    """`delivery.status = '<status>'` with the value in the statement's text, so
    that a partial index on it (ix_delivery_pending, ix_delivery_held) serves
    every plan, PostgreSQL's generic plans of prepared statements too."""
    return Delivery.status == literal_column(f"'{DeliveryStatus(status).value}'")


class DeliveryTally(Base):
    """Copies of a post folded out of the outbox once they are old and settled
    (bot/retention.py): how many ended in each status. `group_id` None: the
    post's own figures (the author's card, the totals of /stats); a group: the
    copies whose recipient belonged to it (the per-group rows of /stats)."""

    __tablename__ = "delivery_tally"
    __table_args__ = (UniqueConstraint("post_id", "group_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), index=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("post.id"))
    group_id: Mapped[int | None] = mapped_column(ForeignKey("study_group.id"))
    status: Mapped[str] = mapped_column(Code())
    copies: Mapped[int] = mapped_column(Integer)


class AuditEntry(Base):
    """An admin action: who, what, on whom, when, with an allow-listed detail."""

    __tablename__ = "audit_entry"
    __table_args__ = (Index("ix_audit_entry_org_created", "org_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"))
    # Indexed for /mydata and /forget (what a person did, what was done about them).
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"), index=True)
    action: Mapped[str] = mapped_column(String(48))
    subject: Mapped[str | None] = mapped_column(String(64), index=True)
    detail: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PostKind(StrEnum):
    ANNOUNCEMENT = "announcement"
    SCHEDULE = "schedule"
    MATERIAL = "material"
    EVENT = "event"
    POLL = "poll"


class PostState(StrEnum):
    SCHEDULED = "scheduled"
    SENT = "sent"
    WITHDRAWN = "withdrawn"
    CANCELLED = "cancelled"  # a scheduled post that never went out


class Post(Base):
    """What an author sent to an audience. Its copies are Delivery rows."""

    __tablename__ = "post"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"), index=True)
    kind: Mapped[str] = mapped_column(Code())
    # The audience as chosen: "org", "staff", "parents", or groups with roles.
    audience: Mapped[str] = mapped_column(String(16))
    to_parents: Mapped[bool] = mapped_column(default=True)
    to_students: Mapped[bool] = mapped_column(default=True)
    text: Mapped[str] = mapped_column(Text, default="")  # HTML, as the author formatted it
    media_kind: Mapped[str | None] = mapped_column(String(16))  # photo | document | video
    media_file_id: Mapped[str | None] = mapped_column(String(256))
    # A post made from a media group: JSON [{"kind": "photo", "file_id": "..."}, ...], sent as an album.
    album: Mapped[str | None] = mapped_column(Text)
    ask_ack: Mapped[bool] = mapped_column(default=False)
    urgent: Mapped[bool] = mapped_column(default=False)
    state: Mapped[str] = mapped_column(Code(), default=PostState.SENT)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # "send later"
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ack_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Event
    event_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    place: Mapped[str | None] = mapped_column(String(512))
    reminder_minutes: Mapped[str | None] = mapped_column(String(64))  # "1440,60": before the event
    # Poll
    poll_multiple: Mapped[bool] = mapped_column(default=False)
    poll_anonymous: Mapped[bool] = mapped_column(default=False)
    poll_closes_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    poll_closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Its copies were folded into `delivery_tally` (bot/retention.py): the
    # figures stay, who received which copy is no longer known.
    copies_folded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Its copies, settled, were counted into `delivery_tally` (a day after it
    # went out; the copies themselves stay until folded): /stats reads the
    # tally instead of counting them again every time.
    copies_counted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    groups: Mapped[list[PostGroup]] = relationship(cascade="all, delete-orphan")
    options: Mapped[list[PollOption]] = relationship(order_by="PollOption.position", cascade="all, delete-orphan")

    def audience_roles(self) -> frozenset[str]:
        """The roles the post is for (in its groups, or in the whole organisation)."""
        if self.audience == "org":
            return frozenset(r.value for r in Role)
        if self.audience == "staff":
            return frozenset(r.value for r in STAFF_ROLES)
        if self.audience == "parents":
            return frozenset({Role.PARENT.value})
        return frozenset(([Role.PARENT.value] if self.to_parents else []) + (
            [Role.STUDENT.value] if self.to_students else []))


class PostGroup(Base):
    """A group a post was addressed to (for /schedule, /events and statistics)."""

    __tablename__ = "post_group"
    __table_args__ = (UniqueConstraint("post_id", "group_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), index=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("post.id"), index=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("study_group.id"), index=True)


class PollOption(Base):
    __tablename__ = "poll_option"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), index=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("post.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(String(100))


class Vote(Base):
    __tablename__ = "vote"
    __table_args__ = (UniqueConstraint("option_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), index=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("post.id"), index=True)
    option_id: Mapped[int] = mapped_column(ForeignKey("poll_option.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Acknowledgement(Base):
    __tablename__ = "acknowledgement"
    __table_args__ = (UniqueConstraint("post_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), index=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("post.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DueKind(StrEnum):
    EVENT_REMINDER = "event_reminder"
    SCHEDULED_POST = "scheduled_post"
    ACK_REMINDER = "ack_reminder"
    ACK_DEADLINE = "ack_deadline"
    POLL_CLOSE = "poll_close"
    WEEKLY_REMINDER = "weekly_reminder"
    DIGEST = "digest"


class DueState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    SKIPPED = "skipped"  # fell due while the bot was down for longer than the grace period
    CANCELLED = "cancelled"
    FAILED = "failed"


class DueItem(Base):
    """Anything that must happen at a time. The database is the source of
    truth; the scheduler only drives the clock. `key` makes an item fire once."""

    __tablename__ = "due_item"
    __table_args__ = (Index("ix_due_item_state_due", "state", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), index=True)
    kind: Mapped[str] = mapped_column(Code())
    ref_id: Mapped[int] = mapped_column(Integer, index=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    key: Mapped[str] = mapped_column(String(96), unique=True)
    minutes: Mapped[int | None] = mapped_column(Integer)  # a reminder's offset
    state: Mapped[str] = mapped_column(Code(), default=DueState.PENDING)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WeeklyItem(Base):
    """A weekly recurring schedule item ("Бассейн — вторник 10:00"), local time."""

    __tablename__ = "weekly_item"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), index=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("study_group.id"), index=True)
    title: Mapped[str] = mapped_column(String(128))
    weekday: Mapped[int] = mapped_column(Integer)  # 0 = Monday
    time_of_day: Mapped[str] = mapped_column(String(5))  # "HH:MM"
    remind_minutes: Mapped[int | None] = mapped_column(Integer)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Absence(Base):
    """A parent's notice that a child will not come, for one day or a range."""

    __tablename__ = "absence"
    __table_args__ = (Index("ix_absence_group_dates", "group_id", "start_date", "end_date"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), index=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("study_group.id"), index=True)
    pupil_id: Mapped[int] = mapped_column(ForeignKey("pupil.id"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"), index=True)
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)
    reason: Mapped[str | None] = mapped_column(String(200))
    late: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    pupil: Mapped[Pupil] = relationship()


class Relay(Base):
    """A private message passed through the bot: who wrote to whom, and the
    message ids on both sides, so a Reply finds its way back."""

    __tablename__ = "relay"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), index=True)
    sender_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"), index=True)
    # A person, or None for "the administration" (every admin gets a copy).
    recipient_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"), index=True)
    to_administration: Mapped[bool] = mapped_column(default=False)
    reply_to_id: Mapped[int | None] = mapped_column(ForeignKey("relay.id"))
    sender_message_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


def person_key(telegram_id: int, secret: str) -> str:
    """A keyed hash of a Telegram id: recognises a returning person without keeping the id."""
    return hmac.new(secret.encode(), str(telegram_id).encode(), hashlib.sha256).hexdigest()


class Block(Base):
    """A recipient stopped a sender from writing to them."""

    __tablename__ = "block"
    __table_args__ = (UniqueConstraint("blocker_id", "blocked_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), index=True)
    blocker_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    blocked_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    # Set when the blocked person deletes their data (/forget): a keyed hash of
    # their Telegram id — the minimum that lets the block find them if they come back.
    blocked_key: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LinkedChat(Base):
    """A Telegram group chat tied to a class or the staff room; only verified
    members of that group are let in through its join-request link."""

    __tablename__ = "linked_chat"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), index=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("study_group.id"), index=True)
    chat_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    title: Mapped[str] = mapped_column(String(256), default="")
    invite_link: Mapped[str | None] = mapped_column(String(256))
    linked_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ProcessedUpdate(Base):
    """An update a webhook worker has handled (and committed): Telegram may
    deliver it again when a response is lost, and it must not apply twice."""

    __tablename__ = "processed_update"

    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class FsmState(Base):
    """Dialog state (aiogram FSM) kept in the database, so it survives restarts."""

    __tablename__ = "fsm_state"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    state: Mapped[str | None] = mapped_column(String(255))
    data: Mapped[str] = mapped_column(Text, default="{}")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Lease(Base):
    """A named role only one worker may hold at a time (the scheduler)."""

    __tablename__ = "lease"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
