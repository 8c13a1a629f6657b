"""SQLModel tables. Plain storage: no business rules live here.

Times are aware UTC (SQLModel's ``UTCDateTime``); JSON columns hold statechart configurations and
event payloads. ``case_events`` is append-only: the engine never updates or deletes its rows, and each
row's ``hash`` chains to the previous event of the same case.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel


class Agency(SQLModel, table=True):
    """An agency taking part in the mechanism (market regulator, police, procuratorate, court, justice)."""

    __tablename__ = "agencies"

    code: str = Field(primary_key=True, max_length=40)
    name: str
    name_en: str = ""
    kind: str = Field(index=True, max_length=20)
    level: str = Field(max_length=10)
    region: str = Field(index=True, max_length=12)
    region_name: str = ""
    parent_region: str | None = Field(default=None, max_length=12)
    doc_prefix: str = ""


class Officer(SQLModel, table=True):
    """An officer of one agency, with roles (handler, secretary, supervisor, admin)."""

    __tablename__ = "officers"

    username: str = Field(primary_key=True, max_length=40)
    display_name: str
    agency_code: str = Field(foreign_key="agencies.code", index=True, max_length=40)
    roles: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    email: str = ""
    liaison: bool = False
    active: bool = True


class Case(SQLModel, table=True):
    """A case and its stored statechart configuration. ``version`` grows by one per transition."""

    __tablename__ = "cases"

    id: int | None = Field(default=None, primary_key=True)
    case_no: str = Field(unique=True, max_length=64)
    title: str
    source: str = Field(max_length=40)
    owner_agency: str = Field(foreign_key="agencies.code", index=True, max_length=40)
    state: str = Field(index=True, max_length=40)
    phase: str = Field(index=True, max_length=20)
    configuration: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    history: dict[str, list[str]] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    context: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    outcome: str | None = Field(default=None, max_length=20)
    version: int = 0
    received_at: datetime
    opened_by: str = Field(max_length=40)
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None = None
    last_hash: str = Field(default="", max_length=64)


class CaseParticipant(SQLModel, table=True):
    """An agency a case was referred to or shared with (the owner is a participant too)."""

    __tablename__ = "case_participants"
    __table_args__ = (UniqueConstraint("case_id", "agency_code", name="uq_participant"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    agency_code: str = Field(foreign_key="agencies.code", index=True, max_length=40)
    role: str = Field(max_length=30)
    added_at: datetime
    added_by_event: str = Field(max_length=60)


class CaseEvent(SQLModel, table=True):
    """The append-only audit log: one row per accepted event, hash-chained per case."""

    __tablename__ = "case_events"
    __table_args__ = (UniqueConstraint("case_id", "seq", name="uq_case_event_seq"),)

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(unique=True, max_length=36)
    case_id: int = Field(foreign_key="cases.id", index=True)
    seq: int
    event: str = Field(max_length=60)
    actor: str = Field(max_length=40)
    actor_agency: str = Field(max_length=40)
    effective_at: datetime
    recorded_at: datetime
    note: str = ""
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    from_configuration: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    to_configuration: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    from_state: str = Field(default="", max_length=40)
    to_state: str = Field(max_length=40)
    version: int
    prev_hash: str = Field(default="", max_length=64)
    hash: str = Field(max_length=64)


class Deadline(SQLModel, table=True):
    """One running or finished statutory deadline of a case (a clock rule instance)."""

    __tablename__ = "deadlines"
    __table_args__ = (
        # Partial index on open deadlines only: the sweep and "due soon" lists read just these rows.
        Index(
            "ix_deadlines_open_due",
            "due_at",
            sqlite_where=text("status IN ('running', 'paused')"),
            postgresql_where=text("status IN ('running', 'paused')"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    rule: str = Field(max_length=20)
    label: str
    basis: str
    unit: str = Field(max_length=10)
    limit: int
    status: str = Field(max_length=12)  # running | paused | met | missed | cancelled
    started_at: datetime
    due_at: datetime
    paused_at: datetime | None = None
    ended_at: datetime | None = None
    extensions_used: int = 0
    provisional: bool = False
    provisional_reason: str = ""
    started_by: str = Field(max_length=60)  # the event that started it


class Attachment(SQLModel, table=True):
    """A document in the case file, stored by content hash (the trade secret itself is never stored)."""

    __tablename__ = "attachments"

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    kind: str = Field(max_length=30)
    filename: str
    sha256: str = Field(max_length=64, index=True)
    size: int
    attached_by: str = Field(max_length=40)
    attached_at: datetime


class OutboxMessage(SQLModel, table=True):
    """A notification written in the same transaction as the change it reports; a relay delivers it."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index(
            "ix_outbox_pending",
            "next_attempt_at",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(unique=True, max_length=200)
    case_id: int | None = Field(default=None, foreign_key="cases.id", index=True)
    kind: str = Field(max_length=40)
    channel: str = Field(max_length=20)
    recipient: str = Field(max_length=200)
    recipient_user: str | None = Field(default=None, max_length=40)
    subject: str
    body: str
    template: str = Field(max_length=100)
    template_version: str = Field(max_length=64)
    lang: str = Field(default="zh", max_length=5)
    status: str = Field(default="pending", max_length=10)  # pending | sent | dead
    attempts: int = 0
    next_attempt_at: datetime
    created_at: datetime
    sent_at: datetime | None = None
    last_error: str = ""


class CaseNumberSequence(SQLModel, table=True):
    """The last case number issued per agency and year."""

    __tablename__ = "case_number_sequences"

    agency_code: str = Field(primary_key=True, foreign_key="agencies.code", max_length=40)
    year: int = Field(primary_key=True)
    last: int = 0
