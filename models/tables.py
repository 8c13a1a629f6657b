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
    # Delivery channels for this officer's notifications: "email", "inbox" (in-app).
    channels: list[str] = Field(default_factory=lambda: ["email", "inbox"], sa_column=Column(JSON, nullable=False))


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
        # The sweep's claim query reads only running deadlines with something left to fire.
        Index(
            "ix_deadlines_next_alert",
            "next_alert_at",
            sqlite_where=text("status = 'running' AND next_alert_at IS NOT NULL"),
            postgresql_where=text("status = 'running' AND next_alert_at IS NOT NULL"),
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
    responsible: str = Field(default="", max_length=20)  # agency kind that must act
    # The period's end before a rest-day last day is rolled forward: pauses and extensions count from it
    # (CPL art. 208 "at the latest three months" is 3 months from acceptance, not from a rolled end).
    nominal_due_at: datetime | None = None
    # Extension ledger: one entry per granted extension (event, approver, reason, amount, due before/after).
    extensions: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # The sweep's work: the next reminder/miss/auto-listing to fire (NULL when nothing is left or paused).
    next_alert_at: datetime | None = None
    next_alert: str = Field(default="", max_length=80)


class DeadlinePause(SQLModel, table=True):
    """The pause ledger of a deadline: when its clock stopped and restarted, and by how much it moved."""

    __tablename__ = "deadline_pauses"

    id: int | None = Field(default=None, primary_key=True)
    deadline_id: int = Field(foreign_key="deadlines.id", index=True)
    paused_at: datetime
    paused_by: str = Field(max_length=60)  # the event that paused it
    resumed_at: datetime | None = None
    resumed_by: str = Field(default="", max_length=60)
    due_before: datetime | None = None
    due_after: datetime | None = None


class FiredAlert(SQLModel, table=True):
    """One alert that has fired (reminder, miss, auto-listing, supervision escalation): never twice."""

    __tablename__ = "fired_alerts"
    __table_args__ = (UniqueConstraint("subject", "subject_id", "key", name="uq_fired_alert"),)

    id: int | None = Field(default=None, primary_key=True)
    subject: str = Field(max_length=20)  # deadline | supervision
    subject_id: int
    key: str = Field(max_length=120)
    case_id: int = Field(foreign_key="cases.id", index=True)
    fired_at: datetime
    event_seq: int  # the case audit event that records it


class Supervision(SQLModel, table=True):
    """Listed supervision (挂牌督办) of a case: level, due date, reporting interval, reports, result."""

    __tablename__ = "supervisions"
    __table_args__ = (
        Index(
            "ix_supervisions_open_check",
            "next_check_at",
            sqlite_where=text("state != 'delisted'"),
            postgresql_where=text("state != 'delisted'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    level: str = Field(max_length=10)  # county | city | province
    state: str = Field(max_length=20)  # listed | progress_reported | delisted
    reason: str
    listed_by: str = Field(max_length=40)  # a supervisor's username, or "system" (auto-listing)
    listing_agency: str = Field(foreign_key="agencies.code", max_length=40)
    handling_agency: str = Field(foreign_key="agencies.code", max_length=40)
    listed_at: datetime
    due_at: datetime
    report_every_days: int
    next_report_due_at: datetime
    last_report_at: datetime | None = None
    reports: int = 0
    escalations: int = 0
    auto_rule: str = Field(default="", max_length=20)  # the clock rule whose miss listed it
    next_check_at: datetime | None = None
    delisted_at: datetime | None = None
    delisted_by: str = Field(default="", max_length=40)
    result: str = ""


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
    body_html: str = ""  # autoescaped HTML alternative (email), empty for plain-only kinds
    ics: str = ""  # an iCalendar invitation sent with the email (meeting notices), empty for the rest
    template: str = Field(max_length=100)
    template_version: str = Field(max_length=64)
    lang: str = Field(default="zh", max_length=5)
    status: str = Field(default="pending", max_length=10)  # pending | sent | dead
    attempts: int = 0
    next_attempt_at: datetime
    created_at: datetime
    sent_at: datetime | None = None
    last_error: str = ""
    # A relay's claim: who holds the row and until when (a killed relay's claim lapses and the row is retried).
    claimed_by: str = Field(default="", max_length=64)
    claimed_until: datetime | None = None


class DeliveryAttempt(SQLModel, table=True):
    """The delivery audit: one row per attempt to deliver an outbox message, with its outcome."""

    __tablename__ = "delivery_attempts"

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="outbox.id", index=True)
    attempt: int
    at: datetime
    outcome: str = Field(max_length=10)  # sent | failed | dead
    error: str = ""
    relay: str = Field(default="", max_length=64)


class InboxItem(SQLModel, table=True):
    """A notification shown in an officer's in-app inbox (delivered from the outbox's ``inbox`` channel)."""

    __tablename__ = "inbox_items"

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="outbox.id", unique=True)
    username: str = Field(foreign_key="officers.username", index=True, max_length=40)
    case_id: int | None = Field(default=None, foreign_key="cases.id")
    kind: str = Field(max_length=40)
    subject: str
    body: str
    created_at: datetime
    read_at: datetime | None = None


class CaseNumberSequence(SQLModel, table=True):
    """The last case number issued per agency and year."""

    __tablename__ = "case_number_sequences"

    agency_code: str = Field(primary_key=True, foreign_key="agencies.code", max_length=40)
    year: int = Field(primary_key=True)
    last: int = 0


class EvidenceItem(SQLModel, table=True):
    """A piece of evidence of a case: described and hashed, never stored (the trade secret stays out)."""

    __tablename__ = "evidence_items"

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    type: str = Field(max_length=30)
    title: str
    description: str = ""
    location: str = ""  # where the item itself is kept
    file_name: str = ""
    sha256: str = Field(default="", max_length=64)
    collected_by_agency: str = Field(foreign_key="agencies.code", max_length=40)
    collected_by: str = Field(max_length=40)
    collected_at: datetime
    state: str = Field(max_length=30)
    holder_agency: str = Field(foreign_key="agencies.code", max_length=40)  # who has custody now
    resolution_reason: str = ""
    resolved_by: str = Field(default="", max_length=40)
    resolved_at: datetime | None = None
    created_at: datetime


class CustodyEntry(SQLModel, table=True):
    """The custody log of an evidence item: every registration, hand-over and decision, in order."""

    __tablename__ = "custody_entries"

    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="evidence_items.id", index=True)
    action: str = Field(max_length=30)  # registered | handed_over | recollection_required | admitted | ...
    from_agency: str = Field(default="", max_length=40)
    to_agency: str = Field(default="", max_length=40)
    actor: str = Field(max_length=40)
    at: datetime
    seal_no: str = Field(default="", max_length=60)
    note: str = ""


class DocumentNumberSequence(SQLModel, table=True):
    """The last document number (文号) issued per agency and year."""

    __tablename__ = "document_number_sequences"

    agency_code: str = Field(primary_key=True, foreign_key="agencies.code", max_length=40)
    year: int = Field(primary_key=True)
    last: int = 0


class GeneratedDocument(SQLModel, table=True):
    """One version of an official document generated from a case (HTML kept; its hash is the identity).

    The 文号 is issued once per (case, kind, subject) and kept by every later version; a new version is
    stored only when the rendered content changed.
    """

    __tablename__ = "generated_documents"
    __table_args__ = (UniqueConstraint("case_id", "kind", "subject_key", "version", name="uq_document_version"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    kind: str = Field(max_length=40)
    subject_key: str = Field(default="", max_length=40)  # e.g. "supervision:3"; "" for one per case
    version: int
    doc_no: str = Field(max_length=80)
    issuing_agency: str = Field(foreign_key="agencies.code", max_length=40)
    recipient_agency: str = Field(default="", max_length=40)
    title: str
    template_version: str = Field(max_length=64)
    sha256: str = Field(max_length=64, index=True)
    html: str
    generated_by: str = Field(max_length=40)
    generated_at: datetime


class Meeting(SQLModel, table=True):
    """A regular joint meeting (联席会议) or a case consultation (案件会商), with its invitation and minutes."""

    __tablename__ = "meetings"
    __table_args__ = (
        # The preparation flow creates one meeting per schedule and period, however often it runs.
        Index(
            "uq_meeting_period",
            "schedule_id",
            "period_key",
            unique=True,
            sqlite_where=text("period_key != ''"),
            postgresql_where=text("period_key != ''"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=20)  # joint_meeting | consultation
    schedule_id: str = Field(default="", max_length=40)  # the [[meetings.schedules]] id, "" when scheduled by hand
    period_key: str = Field(default="", max_length=20)  # e.g. 2026-Q4; "" for a consultation
    uid: str = Field(unique=True, max_length=80)  # the iCalendar UID
    sequence: int = 0  # the iCalendar SEQUENCE: grows with every move or cancellation
    title: str
    starts_at: datetime = Field(index=True)
    ends_at: datetime
    place: str = ""
    video_link: str = ""
    convening_agency: str = Field(foreign_key="agencies.code", max_length=40)
    invited: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    state: str = Field(index=True, max_length=20)
    attendance: dict[str, list[str]] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    minutes: str = ""
    minutes_by: str = Field(default="", max_length=40)
    minutes_at: datetime | None = None
    cancel_reason: str = ""
    created_by: str = Field(max_length=40)
    created_at: datetime
    updated_at: datetime


class AgendaItem(SQLModel, table=True):
    """One item of a meeting's agenda, often about a case."""

    __tablename__ = "agenda_items"

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="meetings.id", index=True)
    position: int
    kind: str = Field(max_length=30)
    case_id: int | None = Field(default=None, foreign_key="cases.id")
    ref_id: int | None = None  # the consultation request, deadline, supervision or action item it is about
    title: str
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class ConsultationRequest(SQLModel, table=True):
    """A handler's request to consult the other agencies on a case (案件会商申请)."""

    __tablename__ = "consultation_requests"

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    topic: str = Field(max_length=30)
    question: str
    requested_by: str = Field(max_length=40)
    agency_code: str = Field(foreign_key="agencies.code", max_length=40)
    requested_at: datetime
    state: str = Field(index=True, max_length=20)  # open | scheduled | resolved
    meeting_id: int | None = Field(default=None, foreign_key="meetings.id")
    resolution: str = ""
    resolved_at: datetime | None = None


class ActionItem(SQLModel, table=True):
    """A resolution of a meeting that an agency must carry out by a date (议定事项)."""

    __tablename__ = "action_items"
    __table_args__ = (
        Index(
            "ix_action_items_open_due",
            "due_at",
            sqlite_where=text("state = 'open'"),
            postgresql_where=text("state = 'open'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="meetings.id", index=True)
    case_id: int | None = Field(default=None, foreign_key="cases.id", index=True)
    text: str
    owner_agency: str = Field(foreign_key="agencies.code", max_length=40)
    due_at: datetime
    state: str = Field(max_length=10)  # open | done
    escalations: int = 0
    escalated_for: datetime | None = None  # the due date whose miss was escalated (once per due date)
    created_at: datetime
    done_at: datetime | None = None
    done_by: str = Field(default="", max_length=40)
    done_note: str = ""


class Bulletin(SQLModel, table=True):
    """The information bulletin (信息通报) of one month or quarter: its figures, HTML and content hash.

    One row per period; a new ``version`` replaces it only when the content changed (the HTML is a
    function of the data and the template, never of the time it was made, so its SHA-256 identifies it).
    """

    __tablename__ = "bulletins"

    id: int | None = Field(default=None, primary_key=True)
    period: str = Field(unique=True, max_length=10)  # 2026-10 | 2026-Q4
    kind: str = Field(max_length=10)  # monthly | quarterly
    version: int = 1  # grows by one each time the content changes
    figures: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    html: str
    sha256: str = Field(max_length=64)
    template_version: str = Field(max_length=64)
    generated_at: datetime
    generated_by: str = Field(max_length=40)  # an officer's username, or "system"
    notified_at: datetime | None = None  # when this version was queued to the subscribers (None: not yet)


class Credential(SQLModel, table=True):
    """An officer's password for the web pages, as an argon2 hash."""

    __tablename__ = "credentials"

    username: str = Field(primary_key=True, foreign_key="officers.username", max_length=40)
    password_hash: str
    changed_at: datetime


class ApiToken(SQLModel, table=True):
    """A bearer token for another agency's system, acting as one officer; only its SHA-256 is kept."""

    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(foreign_key="officers.username", index=True, max_length=40)
    name: str = Field(max_length=80)
    token_hash: str = Field(unique=True, max_length=64)
    prefix: str = Field(max_length=12)  # the first characters, to recognise a token in lists
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class WebSession(SQLModel, table=True):
    """A signed-in browser: the cookie holds the token, the row its SHA-256 and the form (CSRF) token."""

    __tablename__ = "web_sessions"

    token_hash: str = Field(primary_key=True, max_length=64)
    username: str = Field(foreign_key="officers.username", index=True, max_length=40)
    csrf_token: str = Field(max_length=64)
    created_at: datetime
    expires_at: datetime = Field(index=True)


class LoginAttempt(SQLModel, table=True):
    """A failed sign-in, by username and client address, for rate limiting."""

    __tablename__ = "login_attempts"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(index=True, max_length=80)
    client: str = Field(index=True, max_length=64)
    at: datetime = Field(index=True)


class AccessLog(SQLModel, table=True):
    """Who read a case's evidence or documents, and when (the trade secret's paper trail)."""

    __tablename__ = "access_log"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=40, index=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    resource: str = Field(max_length=40)  # evidence | documents | document
    detail: str = ""
    via: str = Field(max_length=10)  # web | api
    at: datetime
