"""Use cases that move cases: open_case, advance_case, allowed_events, show_case, case_history,
attach_file, verify_audit and replay_case.

Each write use case is one transaction (see ``workflows.uow``): it locks the case, checks the actor,
rebuilds the chart from the stored configuration, sends one event, and writes the new configuration
and version, one hash-chained audit row, the clock changes and the rendered outbox rows — then commits.
A refusal at any step raises a domain error and writes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from statemachine.exceptions import TransitionNotAllowed

from models import statements
from models.db import is_sqlite, sql_literals
from models.statements import Prepared
from models.tables import (
    Agency,
    Attachment,
    Case,
    CaseEvent,
    CaseNumberSequence,
    CaseParticipant,
    Deadline,
    DeadlinePause,
    Officer,
)
from states.calendar import SHANGHAI, Due
from states.clocks import OPEN_CASE, ClockAction, ClockRule, plan_clock_actions
from states.errors import (
    CaseNotFound,
    ConcurrentUpdate,
    GuardFailed,
    InvalidInput,
    PermissionDenied,
    TransitionRefused,
)
from states.events import LEAD_SOURCES, RECEIVER_KIND, SENDER_KIND, SUSPENSION_PHASES, parse_event_data
from states.lifecycle import (
    ATTACHMENT_KINDS,
    CLOSED,
    EVENT_IDS,
    HISTORY,
    RECORD_EVENTS,
    CaseContext,
    allowed_in,
    configuration_of,
    event_label,
    leaf_state,
    new_chart,
    phase_of,
    state_label,
    step,
)
from workflows.audit import EventRecord, chain_breaks
from workflows.clockwork import append_event, enqueue, local_iso, refresh_next_alert
from workflows.uow import AGENCY_COLUMNS, AgencyRow, AnyCase, CaseRow, Deps, OfficerRow, UnitOfWork

log = logging.getLogger(__name__)

CLOCK_SKEW = timedelta(minutes=5)  # how far in the future an effective time may be (clock drift)


# --- results returned to the entry points ---------------------------------------------------------


@dataclass
class DeadlineView:
    """A deadline as users see it (times in Asia/Shanghai)."""

    rule: str
    label: str
    status: str
    started_at: str
    due_at: str
    remaining: str
    overdue: bool
    provisional: bool
    provisional_reason: str
    extensions_used: int
    basis: str
    unit: str = ""
    limit: int = 0
    responsible: str = ""
    next_alert_at: str = ""
    pauses: list[dict[str, str]] = field(default_factory=list)
    extensions: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CaseView:
    """A case as the CLI, the API and the pages show it."""

    case_no: str
    title: str
    agency: str
    agency_name: str
    source: str
    state: str
    state_label: str
    phase: str
    phase_label: str
    outcome: str | None
    version: int
    received_at: str
    participants: list[str]
    allowed_events: list[str]
    deadlines: list[DeadlineView] = field(default_factory=list)
    suspended_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass
class EventView:
    """One audit row as shown by ``case history``."""

    seq: int
    event: str
    label: str
    actor: str
    actor_agency: str
    effective_at: str
    recorded_at: str
    from_state: str
    to_state: str
    version: int
    note: str
    payload: dict[str, Any]
    hash: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass
class AuditReport:
    """What ``verify_audit`` found: cases checked, events checked, and every break in words."""

    cases: int
    events: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        """No break found."""
        return not self.problems


# --- helpers --------------------------------------------------------------------------------------

#: A deadline as a plain row (an SQLAlchemy ``Row`` or a prepared statement's named tuple): its columns by name.
PlainDeadline = Any


def clock_left(row: Deadline | PlainDeadline, now: datetime) -> str:
    """Time left on a deadline's clock: frozen at the pause for a paused one (its due time moves on resume)."""
    return _remaining(row.due_at, row.paused_at if row.status == "paused" and row.paused_at else now)


def _remaining(due_at: datetime, now: datetime) -> str:
    delta = due_at - now
    sign = "-" if delta.total_seconds() < 0 else ""
    seconds = abs(int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours = rest // 3600
    return f"{sign}{days}d{hours}h" if days else f"{sign}{hours}h{(rest % 3600) // 60}m"


def _check_effective(deps: Deps, effective_at: datetime | None, not_before: datetime | None, what: str) -> datetime:
    now = deps.now()
    if effective_at is None:
        return now
    if effective_at.tzinfo is None:
        effective_at = effective_at.replace(tzinfo=SHANGHAI)  # a bare local time is read as Beijing time
    if effective_at > now + CLOCK_SKEW:
        raise InvalidInput(f"{what}: the effective time {local_iso(effective_at)} is in the future")
    if not_before is not None and effective_at < not_before:
        raise InvalidInput(
            f"{what}: the effective time {local_iso(effective_at)} is before the case's last event "
            f"({local_iso(not_before)}); events must be entered in the order they happened"
        )
    return effective_at


def _visible(uow: UnitOfWork, case: AnyCase, officer: OfficerRow) -> bool:
    """ARCHITECTURE.md access rule: owner, participants, supervisors whose jurisdiction covers it."""
    if "admin" in officer.roles:
        return True
    if _is_participant(uow, case, officer.agency_code):
        return True
    if "supervisor" in officer.roles:
        mine = uow.agency(officer.agency_code)
        owner = uow.agency(case.owner_agency)
        if mine and owner:
            return _covers(mine, owner)
    return False


class Jurisdiction(Protocol):
    """What the access rule reads of an agency: an ``Agency`` or a row with these columns."""

    @property
    def region(self) -> str: ...
    @property
    def parent_region(self) -> str | None: ...
    @property
    def level(self) -> str: ...


def _covers(supervising: Jurisdiction, owner: Jurisdiction) -> bool:
    """A supervisor's jurisdiction: its own region, the counties under its city, its whole province."""
    if supervising.region in (owner.region, owner.parent_region):
        return True
    # Division codes share the province's first two digits (e.g. 35xxxx is Fujian).
    return supervising.level == "province" and owner.region[:2] == supervising.region[:2]


def _is_participant(uow: UnitOfWork, case: AnyCase, agency_code: str) -> bool:
    return agency_code in uow.participants(case)


def _visible_case(uow: UnitOfWork, case_no: str, actor: str, *, lock: bool = False) -> tuple[Case, OfficerRow]:
    officer = uow.officer(actor)
    return _if_visible(uow, uow.case(case_no, lock=lock), officer), officer


_C = TypeVar("_C", Case, CaseRow)


def _if_visible(uow: UnitOfWork, case: _C, officer: OfficerRow) -> _C:
    if not _visible(uow, case, officer):
        raise CaseNotFound(case.case_no)  # same answer as a missing case, so case numbers do not leak
    return case


def _readable_case(uow: UnitOfWork, case_no: str, actor: str | None) -> tuple[Case, OfficerRow | None]:
    """A case for reading: as ``actor`` sees it, or unrestricted for the operator (``actor`` None)."""
    if actor is None:
        return uow.case(case_no), None
    return _visible_case(uow, case_no, actor)


def _context(deps: Deps, uow: UnitOfWork, case: AnyCase, event: str) -> CaseContext:
    # Only transfer_to_police's guard reads the attachments: no query on every other transition.
    kinds = (
        uow.session.execute(select(Attachment.kind).where(Attachment.case_id == case.id).distinct()).scalars()
        if event == "transfer_to_police"
        else ()
    )
    return CaseContext(
        case_no=case.case_no,
        outcome=case.outcome,
        counters=dict(case.context.get("counters", {})),
        attachment_kinds=frozenset(kinds),
        # Only complete_handover's guard reads it: no evidence query on every other transition.
        unresolved_evidence=_unresolved_evidence(uow, case) if event == "complete_handover" else (),
        loss_threshold=deps.loss_threshold,
        illegal_gain_threshold=deps.illegal_gain_threshold,
    )


def _unresolved_evidence(uow: UnitOfWork, case: AnyCase) -> tuple[str, ...]:
    from workflows.evidence import unresolved_items  # evidence builds on this module's access rules

    return unresolved_items(uow, case)


def _agency(uow: UnitOfWork, code: str, *, kind: str | None = None, what: str = "agency") -> AgencyRow:
    agency = uow.agency(code)
    if agency is None:
        raise InvalidInput(f"unknown {what} {code!r}")
    if kind and agency.kind != kind:
        raise InvalidInput(f"{what} {code!r} is a {agency.kind} agency, not {kind}")
    return agency


def _counterpart(uow: UnitOfWork, sender: AgencyRow, kind: str) -> AgencyRow:
    """The agency of ``kind`` in the sender's region at the sender's level (the default receiver)."""
    stmt = (
        select(*AGENCY_COLUMNS)
        .where(Agency.kind == kind, Agency.region == sender.region, Agency.level == sender.level)
        .order_by(Agency.code)
    )
    found = uow.session.execute(stmt).first()
    if found is None:
        raise InvalidInput(
            f"no {kind} agency is configured for region {sender.region} at {sender.level} level; "
            "give one with --set to_agency=CODE"
        )
    return AgencyRow(*found)


# --- directory ------------------------------------------------------------------------------------


def sync_directory(deps: Deps, agencies: list[dict[str, Any]], officers: list[dict[str, Any]]) -> tuple[int, int]:
    """Create or update agencies and officers from the configuration; officers no longer listed are
    deactivated (never deleted: the audit log names them). Returns (agencies, officers) written."""
    with UnitOfWork(deps) as uow:
        for data in agencies:
            uow.session.merge(Agency(**data))
        uow.session.flush()
        listed = set()
        for data in officers:
            listed.add(data["username"])
            uow.session.merge(
                Officer(
                    username=data["username"],
                    display_name=data["display_name"],
                    agency_code=data["agency"],
                    roles=list(data.get("roles", [])),
                    email=data.get("email", ""),
                    channels=list(data.get("channels", ["email", "inbox"])),
                    liaison=bool(data.get("liaison", False)),
                    active=bool(data.get("active", True)),
                )
            )
        for officer in uow.session.execute(select(Officer)).scalars():
            if officer.username not in listed:
                officer.active = False
        uow.commit()
    return len(agencies), len(officers)


# --- open -----------------------------------------------------------------------------------------


def next_in_sequence(deps: Deps, uow: UnitOfWork, table: Any, agency_code: str, year: int) -> int:
    """The next number of a per-agency, per-year counter table (case numbers, 文号), counted in the caller's
    transaction: the row is created if missing without racing another issuer, then locked (PostgreSQL)."""
    insert = sqlite_insert if is_sqlite(deps.engine) else pg_insert
    uow.session.execute(insert(table).values(agency_code=agency_code, year=year, last=0).on_conflict_do_nothing())
    stmt: Any = select(table).where(table.agency_code == agency_code, table.year == year)
    if not is_sqlite(deps.engine):
        stmt = stmt.with_for_update()
    counter = uow.session.execute(stmt).scalar_one()
    counter.last += 1
    return int(counter.last)


def _next_case_no(deps: Deps, uow: UnitOfWork, agency: AgencyRow, received_at: datetime) -> str:
    year = received_at.astimezone(SHANGHAI).year
    seq = next_in_sequence(deps, uow, CaseNumberSequence, agency.code, year)
    return deps.case_number_format.format(agency=agency.code, year=year, seq=seq)


def open_case(
    deps: Deps,
    *,
    agency: str,
    title: str,
    source: str,
    actor: str,
    received_at: datetime | None = None,
    note: str = "",
) -> CaseView:
    """Register a lead as a new case of ``agency`` (a market regulator), in state ``lead_registered``.

    Writes the case, its owner participation, audit event #1 (``open_case``) and the clocks that start
    at intake (A1), in one transaction. The actor must be a handler of that agency.
    """
    title = (title or "").strip()
    if not title:
        raise InvalidInput("a case needs a title (--title)")
    if source not in LEAD_SOURCES:
        raise InvalidInput(f"unknown lead source {source!r}; use one of {', '.join(LEAD_SOURCES)}")
    with UnitOfWork(deps) as uow:
        officer = uow.officer(actor)
        owner = _agency(uow, agency)
        if owner.kind != "market_regulation":
            raise InvalidInput(f"cases are opened by a market regulator; {agency} is a {owner.kind} agency")
        if officer.agency_code != owner.code or "handler" not in officer.roles:
            raise PermissionDenied(f"officer {actor} is not a handler of {agency} and may not open its cases")
        now = deps.now()
        received = _check_effective(deps, received_at, None, "open_case")
        case_no = _next_case_no(deps, uow, owner, received)
        ctx = CaseContext(case_no=case_no)
        chart = new_chart(ctx)
        conf = configuration_of(chart)
        case = Case(
            case_no=case_no,
            title=title,
            source=source,
            owner_agency=owner.code,
            state=leaf_state(conf),
            phase=phase_of(conf),
            configuration=conf,
            history={},
            context={"counters": {}},
            version=1,
            received_at=received,
            opened_by=actor,
            created_at=now,
            updated_at=now,
        )
        uow.session.add(case)
        uow.session.flush()
        uow.add_participant(case, owner.code, "owner", OPEN_CASE, received)
        payload = {"title": title, "source": source, "agency": owner.code}
        append_event(
            uow,
            case,
            OPEN_CASE,
            actor=officer.username,
            actor_agency=officer.agency_code,
            effective=received,
            recorded=now,
            note=note,
            payload=payload,
            before=[],
            after=conf,
            changes={},
        )
        _apply_clocks(deps, uow, case, OPEN_CASE, [], conf, {}, {}, received)
        # Read the result inside the transaction: nothing may touch the database after the commit, so a
        # committed change can never be reported as failed (SQLite would re-take its write lock to read).
        view = _view(deps, uow, case)
        uow.commit()
        log.info("case opened: %s by %s", case_no, actor)
        return view


# --- advance --------------------------------------------------------------------------------------

#: The time of the case's last event that happened to it (the engine's own records do not count).
_LAST_EFFECTIVE = Prepared(
    select(func.max(CaseEvent.effective_at)).where(
        CaseEvent.case_id == bindparam("case_id"),
        # Written into the SQL (fixed identifiers): a bound list is expanded again on every execution.
        CaseEvent.event.not_in(sql_literals(RECORD_EVENTS)),  # type: ignore[attr-defined]
    )
)


def advance_case(
    deps: Deps,
    case_no: str,
    event: str,
    *,
    actor: str,
    effective_at: datetime | None = None,
    data: Mapping[str, Any] | None = None,
    note: str = "",
    expected_version: int | None = None,
) -> CaseView:
    """Send ``event`` to case ``case_no`` on behalf of ``actor``: the one way a case changes state.

    Locks the case row, checks visibility (else ``CaseNotFound``), the expected version (else
    ``ConcurrentUpdate``), that the event exists and is allowed now (else ``TransitionRefused``), that
    the actor's agency kind and role may send it (else ``PermissionDenied``), the event's data and
    guards (else ``GuardFailed``); then writes state, version, audit row, clocks and outbox rows and
    commits them together.
    """
    with UnitOfWork(deps) as uow:
        officer = uow.officer(actor)
        # A plain row: a transition writes its case only through write_case (in append_event).
        case = _if_visible(uow, uow.case_row(case_no, lock=True), officer)
        if expected_version is not None and case.version != expected_version:
            raise ConcurrentUpdate(case_no, expected_version, case.version)
        ctx = _context(deps, uow, case, event)
        allowed = allowed_in(case.configuration, case.history)
        if event not in EVENT_IDS:
            raise TransitionRefused(case_no, case.state, event, allowed, reason=f"unknown event {event!r}")
        sender_agency = _authorise(uow, case, officer, event)
        if event not in allowed:
            raise TransitionRefused(case_no, case.state, event, allowed)
        _authorise_in_state(case, event)
        try:
            payload = parse_event_data(event, data)
        except GuardFailed as err:
            raise err.bind(case_no=case_no, state=case.state, event=event) from None
        # Only what happened to the case bounds a new event's time; the engine's own records (a reminder
        # fired today) must not stop a handler from recording yesterday's decision.
        last_effective = statements.scalar(uow.conn, _LAST_EFFECTIVE, {"case_id": case.id})
        effective = _check_effective(deps, effective_at, last_effective, f"case {case_no}")
        receivers = _resolve_receivers(uow, event, payload, sender_agency)
        if "approved_by" in payload:
            uow.officer(payload["approved_by"])  # an extension names a real, active approver
        before, history_before = list(case.configuration), dict(case.history)
        try:
            moved = step(ctx, before, history_before, event, payload)
        except GuardFailed as err:
            raise err.bind(case_no=case_no, state=case.state, event=event) from None
        except TransitionNotAllowed:
            raise TransitionRefused(case_no, case.state, event, allowed) from None
        # Copies: the memo's lists are shared, and the ORM must see new objects to write the JSON columns.
        after = list(moved.configuration)
        history_after = {k: list(v) for k, v in moved.history.items()}
        ctx.counters, ctx.outcome = dict(moved.counters), moved.outcome

        now = deps.now()
        deadlines = _apply_clocks(
            deps,
            uow,
            case,
            event,
            before,
            after,
            history_before,
            history_after,
            effective,
            payload=payload,
            sender=sender_agency,
        )
        for agency_code, role in receivers:
            uow.add_participant(case, agency_code, role, event, effective)
        changes: dict[str, Any] = dict(
            context=_updated_context(case.context, ctx, event, payload),
            configuration=after,
            history=history_after,
            state=leaf_state(after),
            phase=phase_of(after, history_after),
            outcome=ctx.outcome,
            version=case.version + 1,
            updated_at=now,
        )
        if CLOSED in after:
            changes["closed_at"] = effective
        changes = {key: value for key, value in changes.items() if getattr(case, key) != value}
        if event == "transfer_to_police":
            # The package as sent (Decree 310 art. 6), on the hash-chained record: what the police received.
            payload["manifest"] = [
                {"kind": kind, "filename": name, "sha256": sha}
                for kind, name, sha in uow.session.execute(
                    select(Attachment.kind, Attachment.filename, Attachment.sha256)
                    .where(Attachment.case_id == case.id)
                    .order_by(Attachment.kind, Attachment.id)
                ).all()
            ]
        record = append_event(
            uow,
            case,
            event,
            actor=officer.username,
            actor_agency=officer.agency_code,
            effective=effective,
            recorded=now,
            note=note,
            payload=payload,
            before=before,
            after=after,
            changes=changes,
        )
        _enqueue_case_notices(deps, uow, case, record, officer)
        view = _view(deps, uow, case, deadlines)  # before the commit: see open_case
        uow.commit()
        log.info("case %s: %s by %s -> %s (v%s)", case_no, event, actor, case.state, case.version)
        return view


def _authorise(uow: UnitOfWork, case: AnyCase, officer: OfficerRow, event: str) -> AgencyRow:
    """Agency kind, role and participation (DOMAIN.md "who may send what"); returns the sender's agency."""
    agency = uow.agency(officer.agency_code)
    assert agency is not None  # officers reference agencies by foreign key
    kind = SENDER_KIND[event]
    if agency.kind != kind:
        raise PermissionDenied(
            f"case {case.case_no}: {officer.username} ({agency.code}, {agency.kind}) may not send {event}; "
            f"only {kind} officers may"
        )
    if "handler" not in officer.roles:
        raise PermissionDenied(f"case {case.case_no}: {officer.username} is not a handler and may not send events")
    if not _is_participant(uow, case, agency.code):
        raise PermissionDenied(
            f"case {case.case_no}: {agency.code} does not take part in this case and may not send {event}"
        )
    return agency


def _authorise_in_state(case: AnyCase, event: str) -> None:
    """The part of "who may send what" that depends on the state (checked once the event is allowed)."""
    if event in ("suspend", "resume") and phase_of(case.configuration, case.history) not in SUSPENSION_PHASES:
        raise PermissionDenied(
            f"case {case.case_no}: the market regulator may {event} a case only while it is in intake or "
            "administrative enforcement"
        )


def _resolve_receivers(
    uow: UnitOfWork, event: str, payload: dict[str, Any], sender: AgencyRow
) -> list[tuple[str, str]]:
    """The agencies an event makes participants, with their role; ``to_agency`` defaults per config."""
    if event == "start_joint_investigation":
        codes = payload["agencies"]
        for code in codes:
            _agency(uow, code, what="agency in agencies")
        return [(code, "joint") for code in codes]
    kind = RECEIVER_KIND.get(event)
    if kind is None:
        return []
    if "to_agency" in payload:
        receiver = _agency(uow, payload["to_agency"], kind=kind, what="to_agency")
    else:
        receiver = _counterpart(uow, sender, kind)
        payload["to_agency"] = receiver.code  # the audit row records who actually received it
    if receiver.code == sender.code:
        raise InvalidInput(f"{event}: to_agency must be another agency than the sender ({sender.code})")
    return [(receiver.code, event)]


def _updated_context(stored: dict[str, Any], ctx: CaseContext, event: str, payload: dict[str, Any]) -> dict[str, Any]:
    context = dict(stored)
    context["counters"] = dict(ctx.counters)
    if event == "propose_referral":
        context["referral"] = dict(payload)
        if "fine_paid" in payload:
            context["fine_paid"] = payload["fine_paid"]  # Decree 310 art. 11: offset later
    elif event == "decide_penalty":
        context["penalty"] = dict(payload)
    elif event == "pronounce_judgment":
        context["judgment"] = dict(payload)
    return context


# --- clocks ---------------------------------------------------------------------------------------

#: All deadlines of a case in the order the view shows them (built once: a transition runs it every time).
_CASE_DEADLINES = (
    select(Deadline).where(Deadline.case_id == bindparam("case_id")).order_by(Deadline.started_at, Deadline.id)
)
#: The same, as plain rows (the view reads them; ORM objects cost more than the rows).
_CASE_DEADLINE_ROWS = Prepared(_CASE_DEADLINES.with_only_columns(*Deadline.__table__.c))  # type: ignore[attr-defined]


def _apply_clocks(
    deps: Deps,
    uow: UnitOfWork,
    case: AnyCase,
    event: str,
    before: list[str],
    after: list[str],
    history_before: dict[str, list[str]],
    history_after: dict[str, list[str]],
    at: datetime,
    *,
    payload: Mapping[str, Any] | None = None,
    sender: Agency | AgencyRow | None = None,
) -> list[Deadline] | list[PlainDeadline]:
    """Start, stop, pause, resume and extend the case's deadlines as the rules say for this transition.

    Pauses are kept in a ledger (``deadline_pauses``); extensions in the deadline's own ledger with
    their approver. Every deadline touched is pointed at its next reminder or miss for the sweep.
    Returns all the case's deadlines, the new ones included (for the view: no second query): plain rows
    when the transition touches no clock, else ``Deadline`` objects.
    """
    # Plain rows first: most transitions touch no clock, and then ORM objects would only cost (about a
    # tenth of a transition on SQLite). Under the case's lock, so the objects read below are the same rows.
    shown = statements.rows(uow.conn, _CASE_DEADLINE_ROWS, {"case_id": case.id})
    actions = plan_clock_actions(
        deps.clock_rules,
        event,
        before,
        after,
        running={row.rule for row in shown if row.status in ("running", "paused")},
        # Only a suspended case is "in" its remembered states; after resume the memory is stale.
        history_before=history_before.get(HISTORY, []) if "suspended" in before else [],
        history_after=history_after.get(HISTORY, []) if "suspended" in after else [],
    )
    if not actions:
        return shown
    rows = list(uow.session.execute(_CASE_DEADLINES, {"case_id": case.id}).scalars())
    open_rows = {row.rule: row for row in rows if row.status in ("running", "paused")}
    for action in actions:
        rule = deps.clock_rules[action.rule]
        row = open_rows.get(action.rule)
        if action.action in ("stop", "restart") and row is not None:
            _close_pause(uow, row, at, event)
            _finish(row, at, "cancelled" if action.action == "restart" else None)
            refresh_next_alert(deps, uow, row, after=at)
        if action.action in ("start", "restart"):
            new = _start(deps, case, rule, action, event, at)
            uow.session.add(new)
            rows.append(new)
            if action.start_paused:
                uow.session.flush()  # the ledger row needs the deadline's id
                uow.session.add(DeadlinePause(deadline_id=new.id, paused_at=at, paused_by=event, due_before=new.due_at))
            refresh_next_alert(deps, uow, new, after=at, fired=set())
        elif action.action == "pause" and row is not None:
            row.status, row.paused_at = "paused", at
            uow.session.add(DeadlinePause(deadline_id=row.id, paused_at=at, paused_by=event, due_before=row.due_at))
            refresh_next_alert(deps, uow, row, after=at)
        elif action.action == "resume" and row is not None and row.paused_at is not None:
            nominal = deps.calendar.shift_for_pause(_nominal(row), row.paused_at, at, rule.unit, roll_to_workday=False)
            _due_from_nominal(deps, rule, row, nominal)
            _close_pause(uow, row, at, event)
            row.status, row.paused_at = "running", None
            refresh_next_alert(deps, uow, row, after=at)
        elif action.action == "extend" and row is not None:
            _extend(deps, uow, case, rule, row, action, event, at, payload or {}, sender)
            refresh_next_alert(deps, uow, row, after=at)
    return rows


def _close_pause(uow: UnitOfWork, row: Deadline, at: datetime, event: str) -> None:
    """Close the open ledger entry of a paused deadline (resumed, or ended while paused)."""
    if row.status != "paused" and row.paused_at is None:
        return
    entry = (
        uow.session.execute(
            select(DeadlinePause)
            .where(DeadlinePause.deadline_id == row.id, DeadlinePause.resumed_at.is_(None))  # type: ignore[union-attr]
            .order_by(DeadlinePause.id.desc())  # type: ignore[union-attr]
        )
        .scalars()
        .first()
    )
    if entry is not None:
        entry.resumed_at, entry.resumed_by, entry.due_after = at, event, row.due_at


def _rolls(rule: ClockRule) -> bool:
    return rule.roll_to_workday and rule.unit in ("days", "months")


def _due_from_nominal(deps: Deps, rule: ClockRule, row: Deadline, nominal: Due) -> None:
    """Set the nominal end and the due time (the nominal end rolled off a rest day when the rule says so)."""
    row.nominal_due_at = nominal.due_at
    _set_due(row, nominal)
    if _rolls(rule):
        _set_due(row, deps.calendar.roll(nominal.due_at))


def _nominal(row: Deadline) -> datetime:
    return row.nominal_due_at or row.due_at  # rows from before migration 0003 have no nominal end


def _start(
    deps: Deps,
    case: AnyCase,
    rule: ClockRule,
    action: ClockAction,
    event: str,
    at: datetime,
    *,
    row_type: Callable[..., Any] = Deadline,
) -> Deadline:
    """A new deadline row for ``rule`` started by ``event`` at ``at``; ``row_type`` lets the bulk import
    build a light stand-in with the same fields (an ORM object costs more than the computation)."""
    nominal = deps.calendar.add(at, rule.limit, rule.unit, roll_to_workday=False)
    row = row_type(
        case_id=case.id,
        rule=rule.id,
        label=rule.label,
        basis=rule.basis,
        unit=rule.unit,
        limit=rule.limit,
        status="paused" if action.start_paused else "running",
        started_at=at,
        due_at=nominal.due_at,
        paused_at=at if action.start_paused else None,
        started_by=event,
        responsible=rule.responsible,
        extensions=[],
    )
    _due_from_nominal(deps, rule, row, nominal)
    return row


def _set_due(row: Deadline, due: Any) -> None:
    row.due_at = due.due_at
    row.provisional = bool(row.provisional or due.provisional)
    if due.reasons:
        row.provisional_reason = "; ".join(dict.fromkeys([*filter(None, [row.provisional_reason]), *due.reasons]))


def _finish(row: Deadline, at: datetime, status: str | None) -> None:
    if status is None:
        # A paused clock is judged on its own time (when it stopped running); otherwise on when the case moved.
        judged_at = row.paused_at if row.status == "paused" and row.paused_at else at
        status = "met" if judged_at <= row.due_at else "missed"
    row.status, row.ended_at, row.paused_at = status, at, None


def _extend(
    deps: Deps,
    uow: UnitOfWork,
    case: AnyCase,
    rule: ClockRule,
    row: Deadline,
    action: ClockAction,
    event: str,
    at: datetime,
    payload: Mapping[str, Any],
    sender: Agency | AgencyRow | None,
) -> None:
    ext = action.extension
    assert ext is not None
    if row.extensions_used >= ext.max_times:
        raise GuardFailed(
            f"deadline {rule.id} ({rule.label}) was already extended {row.extensions_used} time(s); "
            f"at most {ext.max_times} allowed",
            rule=rule.basis,
        ).bind(case_no=case.case_no, state=case.state, event=event)
    approver_name = str(payload.get("approved_by", ""))
    approver = uow.officer(approver_name)
    approver_agency = uow.agency(approver.agency_code)
    may_approve = (
        any(role in approver.roles for role in ext.approver_roles)
        and approver_agency is not None
        and sender is not None
        and (
            approver_agency.code == sender.code
            or (approver_agency.kind == sender.kind and _covers(approver_agency, sender))
        )
    )
    if not may_approve:
        where = sender.code if sender else "the sending agency"
        raise GuardFailed(
            f"{approver_name} may not approve extending {rule.id} ({rule.label}): an approver must be "
            f"{' or '.join(ext.approver_roles)} of {where} or of an agency of its kind above it",
            rule=rule.basis,
        ).bind(case_no=case.case_no, state=case.state, event=event)
    running_until = row.paused_at if row.status == "paused" and row.paused_at else at
    if running_until > row.due_at:
        raise GuardFailed(
            f"deadline {rule.id} ({rule.label}) ran out at {local_iso(row.due_at)}; an extension must be "
            "approved before the period ends",
            rule=rule.basis,
        ).bind(case_no=case.case_no, state=case.state, event=event)
    due_before = row.due_at
    # Counted from the period's nominal end, not from a rest-day end already rolled forward.
    nominal = deps.calendar.add(_nominal(row), ext.amount, ext.unit or rule.unit, roll_to_workday=False)
    _due_from_nominal(deps, rule, row, nominal)
    row.extensions_used += 1
    row.extensions = [
        *row.extensions,
        {
            "event": event,
            "approved_by": approver_name,
            "reason": str(payload.get("reason", "")),
            "amount": ext.amount,
            "unit": ext.unit or rule.unit,
            "at": at.isoformat(),
            "due_before": due_before.isoformat(),
            "due_after": row.due_at.isoformat(),
        },
    ]


# --- outbox ---------------------------------------------------------------------------------------

#: The liaison officers of a case's participating agencies but the sender's, as plain rows with what a
#: notice needs (built once: every transition runs it; a subquery, not a bound list that is expanded again
#: on every execution).
_LIAISONS = Prepared(
    select(Officer.username, Officer.display_name, Officer.email, Officer.channels)
    .where(
        Officer.agency_code.in_(  # type: ignore[attr-defined]
            select(CaseParticipant.agency_code).where(CaseParticipant.case_id == bindparam("case_id"))
        ),
        Officer.agency_code != bindparam("sender"),
        Officer.liaison.is_(True),  # type: ignore[attr-defined]
        Officer.active.is_(True),  # type: ignore[attr-defined]
    )
    .order_by(Officer.username)
)


def _enqueue_case_notices(deps: Deps, uow: UnitOfWork, case: AnyCase, record: EventRecord, actor: OfficerRow) -> None:
    """Tell the liaison officers of every other participating agency (信息通报), rendered now."""
    others = [code for code in uow.participants(case) if code != actor.agency_code]
    recipients = (
        statements.rows(uow.conn, _LIAISONS, {"case_id": case.id, "sender": actor.agency_code}) if others else []
    )
    if not recipients and not deps.notifications.webhooks:
        return
    actor_agency = uow.agency(actor.agency_code)
    phase = phase_of(case.configuration, case.history)
    enqueue(
        deps,
        uow,
        case,
        recipients,
        template="case_event",
        dedupe_prefix=f"case_event:{record.event_id}",
        at=record.recorded_at,
        actor_name=actor.display_name,
        actor_agency_name=actor_agency.name if actor_agency else actor.agency_code,
        effective_at=local_iso(record.effective_at),
        case_no=case.case_no,
        title=case.title,
        event_label=event_label(record.event, deps.lang),
        phase_label=state_label(phase, deps.lang),
        state_label=state_label(case.state, deps.lang),
        note=record.note,
        data_items=sorted(record.payload.items()),
    )


# --- reads ----------------------------------------------------------------------------------------

#: The pause ledger of all of a case's deadlines.
_PAUSE_LEDGER = Prepared(
    select(*DeadlinePause.__table__.c)  # type: ignore[attr-defined]
    .where(
        DeadlinePause.deadline_id.in_(  # type: ignore[attr-defined]
            select(Deadline.id).where(Deadline.case_id == bindparam("case_id"))
        )
    )
    .order_by(DeadlinePause.id)
)


def _view(
    deps: Deps, uow: UnitOfWork, case: AnyCase, deadlines: list[Deadline] | list[PlainDeadline] | None = None
) -> CaseView:
    """The case as shown to users; ``deadlines``: all of the case's, when the caller holds them already."""
    uow.session.flush()  # sessions do not autoflush: make this transaction's own writes visible to the reads
    now = deps.now()
    owner = uow.agency(case.owner_agency)
    participants = list(uow.participants(case))
    rows: list[Deadline] | list[PlainDeadline]
    if deadlines is None:
        rows = statements.rows(uow.conn, _CASE_DEADLINE_ROWS, {"case_id": case.id})  # to show, not to change
    else:
        rows = sorted(deadlines, key=lambda r: (r.started_at, r.id or 0))  # new rows have their id: flushed above
    pauses: dict[int, list[dict[str, str]]] = {}
    if rows:
        ledger = statements.rows(uow.conn, _PAUSE_LEDGER, {"case_id": case.id})
        for entry in ledger:
            pauses.setdefault(entry.deadline_id, []).append(
                {
                    "paused_at": local_iso(entry.paused_at),
                    "paused_by": entry.paused_by,
                    "resumed_at": local_iso(entry.resumed_at),
                    "resumed_by": entry.resumed_by,
                    "due_before": local_iso(entry.due_before),
                    "due_after": local_iso(entry.due_after),
                }
            )
    deadlines = []
    for row in rows:
        open_ = row.status in ("running", "paused")
        overdue = open_ and (row.paused_at if row.status == "paused" and row.paused_at else now) > row.due_at
        deadlines.append(
            DeadlineView(
                rule=row.rule,
                label=row.label,
                status="missed" if overdue and row.status == "running" else row.status,
                started_at=local_iso(row.started_at),
                due_at=local_iso(row.due_at),
                remaining=clock_left(row, now) if open_ else "",
                overdue=overdue,
                provisional=row.provisional,
                provisional_reason=row.provisional_reason,
                extensions_used=row.extensions_used,
                basis=row.basis,
                unit=row.unit,
                limit=row.limit,
                responsible=row.responsible,
                next_alert_at=local_iso(row.next_alert_at),
                pauses=pauses.get(row.id or 0, []),
                extensions=list(row.extensions),
            )
        )
    phase = phase_of(case.configuration, case.history)
    suspended_from = (
        leaf_state(case.history[HISTORY]) if case.state == "suspended" and HISTORY in case.history else None
    )
    return CaseView(
        case_no=case.case_no,
        title=case.title,
        agency=case.owner_agency,
        agency_name=owner.name if owner else "",
        source=case.source,
        state=case.state,
        state_label=state_label(case.state, deps.lang),
        phase=phase,
        phase_label=state_label(phase, deps.lang),
        outcome=case.outcome,
        version=case.version,
        received_at=local_iso(case.received_at),
        participants=participants,
        allowed_events=allowed_in(case.configuration, case.history),
        deadlines=deadlines,
        suspended_from=suspended_from,
    )


def show_case(deps: Deps, case_no: str, *, actor: str | None = None) -> CaseView:
    """The case as ``actor`` may see it (``CaseNotFound`` when they may not); ``None``: the operator."""
    with UnitOfWork(deps, read_only=True) as uow:
        # A plain row: the most frequent read of the API and the UI changes nothing (no ORM object to load).
        case = uow.case_row(case_no)
        if actor is not None:
            case = _if_visible(uow, case, uow.officer(actor))
        return _view(deps, uow, case)


def allowed_events(deps: Deps, case_no: str, *, actor: str | None = None) -> list[dict[str, Any]]:
    """Events allowed in the case's state now, with label, sender kind and whether ``actor`` may send each."""
    with UnitOfWork(deps, read_only=True) as uow:
        case, officer = _readable_case(uow, case_no, actor)
        result = []
        for event in allowed_in(case.configuration, case.history):
            may: bool | None = None
            if officer is not None:
                try:
                    _authorise(uow, case, officer, event)
                    _authorise_in_state(case, event)
                    may = True
                except PermissionDenied:
                    may = False
            result.append(
                {
                    "event": event,
                    "label": event_label(event, deps.lang),
                    "sender": SENDER_KIND[event],
                    "you_may_send": may,
                }
            )
        return result


def case_history(deps: Deps, case_no: str, *, actor: str | None = None) -> list[EventView]:
    """The audit log of a case, oldest first."""
    with UnitOfWork(deps, read_only=True) as uow:
        case, _officer = _readable_case(uow, case_no, actor)
        rows = uow.session.execute(
            select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.seq)
        ).scalars()
        return [
            EventView(
                seq=r.seq,
                event=r.event,
                label=event_label(r.event, deps.lang),
                actor=r.actor,
                actor_agency=r.actor_agency,
                effective_at=local_iso(r.effective_at),
                recorded_at=local_iso(r.recorded_at),
                from_state=r.from_state,
                to_state=r.to_state,
                version=r.version,
                note=r.note,
                payload=r.payload,
                hash=r.hash,
            )
            for r in rows
        ]


def list_cases(deps: Deps, *, actor: str | None = None, state: str | None = None, limit: int = 200) -> list[CaseView]:
    """The cases ``actor`` may see (all for the operator), newest first."""
    from workflows.dashboard import only_visible  # the dashboard's queries build on this module's access rule

    with UnitOfWork(deps, read_only=True) as uow:
        officer = uow.officer(actor) if actor else None
        stmt: Any = select(Case).order_by(Case.id.desc()).limit(limit)  # type: ignore[union-attr]
        if state:
            stmt = stmt.where(Case.state == state)
        # Visibility in the query: the database stops at the limit instead of this loop reading every case.
        stmt = only_visible(stmt, uow, officer)
        return [_view(deps, uow, case) for case in uow.session.execute(stmt).scalars()]


# --- attachments ----------------------------------------------------------------------------------


def attach_file(deps: Deps, case_no: str, kind: str, path: Path, *, actor: str) -> dict[str, Any]:
    """Add a document to the case file, stored once by SHA-256 under the attachments folder.

    The actor's agency must take part in the case. The file is copied before the row commits; a
    failure after the copy leaves only an unreferenced blob, never a row without its file.
    """
    if kind not in ATTACHMENT_KINDS:
        raise InvalidInput(f"unknown attachment kind {kind!r}; use one of {', '.join(ATTACHMENT_KINDS)}")
    if not path.is_file():
        raise InvalidInput(f"file not found: {path}")
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    sha = digest.hexdigest()
    with UnitOfWork(deps) as uow:
        case, officer = _visible_case(uow, case_no, actor, lock=True)
        if not _is_participant(uow, case, officer.agency_code):
            raise PermissionDenied(f"case {case_no}: {officer.agency_code} does not take part in this case")
        if case.state == CLOSED:
            raise InvalidInput(f"case {case_no} is closed; its file can no longer change")
        duplicate = uow.session.execute(
            select(Attachment.id).where(
                Attachment.case_id == case.id, Attachment.sha256 == sha, Attachment.kind == kind
            )
        ).first()
        if duplicate:
            raise InvalidInput(f"case {case_no}: this {kind} (sha256 {sha[:12]}…) is already attached")
        blob = deps.attachments_dir / sha[:2] / sha
        if not blob.exists():
            blob.parent.mkdir(parents=True, exist_ok=True)
            tmp = blob.with_suffix(".tmp")
            shutil.copyfile(path, tmp)
            tmp.replace(blob)
        row = Attachment(
            case_id=case.id,
            kind=kind,
            filename=path.name,
            sha256=sha,
            size=size,
            attached_by=actor,
            attached_at=deps.now(),
        )
        uow.session.add(row)
        uow.commit()
        return {
            "case_no": case_no,
            "kind": kind,
            "filename": path.name,
            "sha256": sha,
            "size": size,
            "attached_by": actor,
            "attached_at": local_iso(row.attached_at),
        }


def list_attachments(deps: Deps, case_no: str, *, actor: str | None = None) -> list[dict[str, Any]]:
    """The case file: every attachment's kind, file name, SHA-256, size, who attached it and when."""
    with UnitOfWork(deps, read_only=True) as uow:
        case, _officer = _readable_case(uow, case_no, actor)
        rows = uow.session.execute(
            select(Attachment).where(Attachment.case_id == case.id).order_by(Attachment.id)
        ).scalars()
        return [
            {
                "id": r.id,
                "kind": r.kind,
                "filename": r.filename,
                "sha256": r.sha256,
                "size": r.size,
                "attached_by": r.attached_by,
                "attached_at": local_iso(r.attached_at),
            }
            for r in rows
        ]


# --- audit ----------------------------------------------------------------------------------------


def verify_audit(deps: Deps, case_no: str | None = None) -> AuditReport:
    """Recompute the hash chain of one case (or all) and report every break."""
    with UnitOfWork(deps, read_only=True) as uow:
        stmt: Any = select(Case).order_by(Case.id)
        if case_no:
            stmt = stmt.where(Case.case_no == case_no)
        cases = list(uow.session.execute(stmt).scalars())
        if case_no and not cases:
            raise CaseNotFound(case_no)
        problems: list[str] = []
        total = 0
        for case in cases:
            events = list(
                uow.session.execute(
                    select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.seq)
                ).scalars()
            )
            total += len(events)
            problems += chain_breaks(case.case_no, events, last_hash=case.last_hash, version=case.version)
        return AuditReport(cases=len(cases), events=total, problems=problems)


@dataclass
class ReplayResult:
    """Whether replaying the event log reproduced the stored configuration."""

    case_no: str
    matches: bool
    stored: list[str]
    replayed: list[str]
    stored_outcome: str | None
    replayed_outcome: str | None


def replay_case(deps: Deps, case_no: str) -> ReplayResult:
    """Send a case's recorded events through a fresh chart and compare with the stored state."""
    with UnitOfWork(deps, read_only=True) as uow:
        case = uow.case(case_no)
        events = uow.session.execute(
            select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.seq)
        ).scalars()
        ctx = CaseContext(case_no=case_no, replaying=True)
        chart = new_chart(ctx)
        for record in events:
            if record.event != OPEN_CASE and record.event not in RECORD_EVENTS:
                chart.send(record.event, data=record.payload)
        replayed = configuration_of(chart)
        return ReplayResult(
            case_no=case_no,
            matches=replayed == case.configuration and ctx.outcome == case.outcome,
            stored=list(case.configuration),
            replayed=replayed,
            stored_outcome=case.outcome,
            replayed_outcome=ctx.outcome,
        )
