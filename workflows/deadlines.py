"""The deadline sweep and deadline lists.

``fire_due_deadlines(deps, now)`` fires what is due: reminders before a deadline, the miss when it
passes (to the responsible handlers and the supervisors of their region), auto-listing for supervision
when a policy says so, and the escalations of listed supervision. Work is claimed a batch of cases at a
time: on PostgreSQL with ``SELECT ... FOR UPDATE SKIP LOCKED`` on the case rows, so two sweepers take
disjoint cases and never wait on each other; on SQLite the batch's ``BEGIN IMMEDIATE`` serialises them.
Each batch commits on its own: a sweeper killed mid-way loses only its open batch, which the next run
fires. Every firing is recorded on the case's audit log and in ``fired_alerts`` (unique per deadline
and alert), so nothing fires twice.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, Select, bindparam, exists, or_, select, text, type_coerce, union

from models.db import is_sqlite
from models.statements import Prepared, held_reader
from models.tables import ActionItem, Agency, Case, Deadline, FiredAlert, Supervision
from states.clocks import AUTO_LIST, MISSED, alert_schedule, alerts_to_fire, parse_duration
from states.errors import InvalidInput
from states.lifecycle import state_label
from workflows.cases import _remaining
from workflows.clockwork import (
    SYSTEM_ACTOR,
    Directory,
    enqueue,
    fired_keys,
    local_iso,
    record_fact,
    refresh_next_alert,
    responsible_agency,
)
from workflows.dashboard import RESPONSIBLE_AGENCY, RUNNING_DEADLINE, only_visible
from workflows.meetings import fire_overdue_action_items
from workflows.supervision import auto_list, check_supervision
from workflows.uow import Deps, UnitOfWork

log = logging.getLogger(__name__)

SQLITE_BATCH_GAP = 0.05  # seconds; SQLite's busy handler polls waiting writers every few to 100 ms

# Literal SQL for the status tests: a bound parameter would stop SQLite from using the partial indexes.
_RUNNING_WITH_ALERT = text("deadlines.status = 'running' AND deadlines.next_alert_at IS NOT NULL")
_OPEN_LISTING = text("supervisions.state != 'delisted' AND supervisions.next_check_at IS NOT NULL")
_OPEN_ACTION = text("action_items.state = 'open'")

_NOW = bindparam("now", type_=Deadline.__table__.c.due_at.type)  # type: ignore[attr-defined]
#: Is anything due? (cases with a due alert or listing, overdue action items): one read before any write
#: transaction, so an idle sweep — nearly every run at scale — takes no write lock and loads no objects.
_PROBE = Prepared(
    select(
        or_(
            exists().where(_RUNNING_WITH_ALERT, Deadline.next_alert_at <= _NOW),  # type: ignore[operator]
            exists().where(_OPEN_LISTING, Supervision.next_check_at <= _NOW),  # type: ignore[operator]
        ),
        # The condition of workflows.meetings.fire_overdue_action_items, which does the work.
        exists().where(
            _OPEN_ACTION,
            ActionItem.due_at < _NOW,  # type: ignore[operator]
            or_(ActionItem.escalated_for.is_(None), ActionItem.escalated_for != ActionItem.due_at),  # type: ignore[union-attr]
        ),
    )
)


@dataclass
class SweepResult:
    """What one sweep fired."""

    reminders: int = 0
    missed: int = 0
    auto_listed: int = 0
    escalations: int = 0
    action_items: int = 0  # overdue meeting resolutions escalated
    notifications: int = 0
    cases: int = 0
    batches: int = 0

    @property
    def fired(self) -> int:
        """Every alert fired."""
        return self.reminders + self.missed + self.auto_listed + self.escalations + self.action_items

    def to_dict(self) -> dict[str, int]:
        """A JSON-ready dict."""
        return {**asdict(self), "fired": self.fired}


def _claim(uow: UnitOfWork, now: datetime, batch_size: int) -> list[Case]:
    due_deadlines = select(Deadline.case_id).where(_RUNNING_WITH_ALERT, Deadline.next_alert_at <= now)  # type: ignore[operator]
    due_listings = select(Supervision.case_id).where(_OPEN_LISTING, Supervision.next_check_at <= now)  # type: ignore[operator]
    stmt: Select[Any] = (
        select(Case)
        .where(Case.id.in_(union(due_deadlines, due_listings)))  # type: ignore[union-attr]
        .order_by(Case.id)
        .limit(batch_size)
    )
    if not is_sqlite(uow.session.get_bind()):
        # Lock the cases we take; skip those another sweeper (or a handler's transition) holds.
        stmt = stmt.with_for_update(skip_locked=True, of=Case)
    return list(uow.session.execute(stmt).scalars())


def _due_work(deps: Deps, now: datetime) -> tuple[bool, bool]:
    """(any case to claim, any overdue action item) at ``now``: one read on the engine's held connection.

    No session, no transaction of ours, no pool checkout and, on SQLite, no write lock: the idle sweep costs
    about what the bare query costs (its SQL is compiled once per dialect). Finding work here and none in the
    claim (another sweeper was faster) is harmless; work that falls due after this read is the next run's.
    """
    cases_due, actions_due = held_reader(deps.engine).fetchone(deps.engine, _PROBE, {"now": now})
    return bool(cases_due), bool(actions_due)


def fire_due_deadlines(
    deps: Deps, now: datetime | None = None, *, batch_size: int = 200, max_batches: int | None = None
) -> SweepResult:
    """Fire every reminder, miss, auto-listing and supervision escalation due at ``now`` (default: the clock).

    The one sweep behind the embedded scheduler job, the Prefect flow and ``jointcase sweep``.
    """
    now = now or deps.now()
    cases_due, actions_due = _due_work(deps, now)
    result = SweepResult()
    if not (cases_due or actions_due):
        return result  # the idle sweep: nearly every run at scale
    sqlite = is_sqlite(deps.engine)
    while cases_due and (max_batches is None or result.batches < max_batches):
        with UnitOfWork(deps) as uow:
            cases = _claim(uow, now, batch_size)
            if not cases:
                break
            directory = Directory(uow)
            for case in cases:
                before = result.fired
                _fire_case(deps, uow, directory, case, now, result)
                # A case another sweeper finished while our claim ran is claimed but fires nothing.
                result.cases += result.fired > before
            uow.commit()
        result.batches += 1
        if sqlite and len(cases) == batch_size:
            # SQLite has one writer: leave a gap between batches so a handler's transition waiting on the
            # lock gets in, instead of a long sweep holding it batch after batch.
            time.sleep(SQLITE_BATCH_GAP)
    # Meeting resolutions have due dates too: a missed one escalates like a statutory deadline.
    if actions_due:
        result.action_items = fire_overdue_action_items(deps, now)
    if result.fired:
        log.info(
            "sweep: %s reminder(s), %s miss(es), %s auto-listing(s), %s escalation(s) on %s case(s), "
            "%s overdue action item(s)",
            result.reminders,
            result.missed,
            result.auto_listed,
            result.escalations,
            result.cases,
            result.action_items,
        )
    return result


def _fire_case(
    deps: Deps, uow: UnitOfWork, directory: Directory, case: Case, now: datetime, result: SweepResult
) -> None:
    rows = uow.session.execute(
        select(Deadline)
        .where(Deadline.case_id == case.id, _RUNNING_WITH_ALERT, Deadline.next_alert_at <= now)  # type: ignore[operator]
        .order_by(Deadline.due_at, Deadline.id)
    ).scalars()
    for row in rows:
        rule = deps.clock_rules.get(row.rule)
        policy = deps.supervision.auto_list_for(row.rule)
        schedule = alert_schedule(
            row.due_at,
            rule.reminder_leads() if rule else [],
            parse_duration(policy.missed_by) if policy else None,
        )
        fired = fired_keys(uow, "deadline", row.id)
        agency = responsible_agency(uow, directory, case, row.responsible)
        for alert in alerts_to_fire(schedule, row.due_at, now=now, fired=fired):
            key = alert.key(row.due_at)
            seq = case.version
            if alert.kind == AUTO_LIST:
                assert policy is not None
                if auto_list(deps, uow, directory, case, row, policy, agency, now) is not None:
                    result.auto_listed += 1
                    seq = case.version
            else:
                seq = _record_alert(
                    deps, uow, directory, case, row, agency, alert.kind, alert.lead, alert.at, now, result
                )
            uow.session.add(
                FiredAlert(
                    subject="deadline",
                    subject_id=row.id or 0,
                    key=key,
                    case_id=case.id or 0,
                    fired_at=now,
                    event_seq=seq,
                )
            )
            fired.add(key)
        refresh_next_alert(deps, uow, row, after=now, fired=fired)
        if row.next_alert_at is not None and row.next_alert_at <= now:
            # Cannot happen by construction (fired keys are excluded); never let a sweep spin on a row.
            log.error("deadline %s of %s would fire again at once; parked", row.id, case.case_no)
            row.next_alert_at, row.next_alert = None, ""
    listings = uow.session.execute(
        select(Supervision).where(Supervision.case_id == case.id, _OPEN_LISTING, Supervision.next_check_at <= now)  # type: ignore[operator]
    ).scalars()
    for sup in listings:
        result.escalations += check_supervision(deps, uow, directory, case, sup, now)


def _record_alert(
    deps: Deps,
    uow: UnitOfWork,
    directory: Directory,
    case: Case,
    row: Deadline,
    agency: Agency,
    kind: str,
    lead: str,
    at: datetime,
    now: datetime,
    result: SweepResult,
) -> int:
    missed = kind == MISSED
    event = "deadline_missed" if missed else "deadline_reminder"
    payload: dict[str, Any] = {
        "deadline_id": row.id,
        "rule": row.rule,
        "label": row.label,
        "due_at": row.due_at.isoformat(),
        "responsible_agency": agency.code,
    }
    if lead:
        payload["lead"] = lead
    record = record_fact(
        uow, case, event, actor=SYSTEM_ACTOR, actor_agency=agency.code, effective=at, recorded=now, payload=payload
    )
    handlers = directory.with_role(agency.code, "handler")
    common: dict[str, Any] = {
        "case_no": case.case_no,
        "title": case.title,
        "rule": row.rule,
        "label": row.label,
        "due_at": local_iso(row.due_at),
        "basis": row.basis,
        "agency_name": agency.name,
        "state_label": state_label(case.state, deps.lang),
    }
    prefix = f"deadline:{row.id}:{record.seq}"
    if missed:
        result.missed += 1
        result.notifications += enqueue(
            deps,
            uow,
            case,
            handlers,
            template="deadline_missed",
            dedupe_prefix=prefix,
            at=now,
            supervisor=False,
            **common,
        )
        supervisors = directory.supervisors_of_region(agency.region) or directory.supervisors_of_region(
            agency.parent_region
        )
        result.notifications += enqueue(
            deps,
            uow,
            case,
            [s for s in supervisors if s not in handlers],
            template="deadline_missed",
            dedupe_prefix=prefix,
            at=now,
            supervisor=True,
            **common,
        )
    else:
        result.reminders += 1
        result.notifications += enqueue(
            deps,
            uow,
            case,
            handlers,
            template="deadline_reminder",
            dedupe_prefix=prefix,
            at=now,
            remaining=_remaining(row.due_at, now),
            provisional=row.provisional,
            provisional_reason=row.provisional_reason,
            **common,
        )
    return record.seq


# --- lists ----------------------------------------------------------------------------------------------

_WITHIN = re.compile(r"^\s*(\d+)\s*([dhw])\s*$")


def parse_within(value: str) -> timedelta:
    """``3d``, ``12h`` or ``2w`` as a time span (for ``deadlines --due-within``)."""
    match = _WITHIN.match(value or "")
    if not match:
        raise InvalidInput(f"--due-within {value!r}: write a span such as 3d, 12h or 2w")
    amount, unit = int(match.group(1)), match.group(2)
    return {"d": timedelta(days=amount), "h": timedelta(hours=amount), "w": timedelta(weeks=amount)}[unit]


@dataclass
class DeadlineRow:
    """One open deadline in a list, with its case."""

    case_no: str
    title: str
    agency: str
    state: str
    rule: str
    label: str
    status: str
    due_at: str
    remaining: str
    overdue: bool
    provisional: bool
    responsible: str
    basis: str
    responsible_agency: str = ""  # the agency that must act: the latest participant of kind ``responsible``
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


#: Open deadlines with their case and the agency that must act, nearest first (built once: a list is read often).
_OPEN_DEADLINES: Select[Any] = (
    select(
        Case.case_no,
        Case.title,
        Case.owner_agency,
        Case.state,
        Deadline.rule,
        Deadline.label,
        Deadline.status,
        # The driver's own datetimes (naive UTC on SQLite): SQLModel's UTC type costs three Python calls per
        # value, and the rows below share due times, so each distinct one is made aware once.
        type_coerce(Deadline.due_at, DateTime()).label("due_at"),
        type_coerce(Deadline.paused_at, DateTime()).label("paused_at"),
        Deadline.provisional,
        Deadline.responsible,
        Deadline.basis,
        RESPONSIBLE_AGENCY,
    )
    .join(Case, Case.id == Deadline.case_id)
    .where(text("deadlines.status IN ('running', 'paused')"))
    .order_by(Deadline.due_at, Deadline.id)
)


def _utc(value: datetime) -> datetime:
    """A stored time as aware UTC (SQLite gives it back without its offset)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def list_deadlines(
    deps: Deps,
    *,
    actor: str | None = None,
    overdue: bool = False,
    due_within: timedelta | None = None,
    limit: int = 500,
    agencies: Collection[str] | None = None,
) -> list[DeadlineRow]:
    """Open deadlines (running or paused), nearest first; ``overdue``: only running ones past due;
    ``due_within``: only those due before now + span; ``agencies``: only those these agencies must act on.
    ``actor``: only cases that officer may see. The first ``limit``."""
    now = deps.now()
    stmt = _OPEN_DEADLINES.limit(limit)  # visibility is part of the query: the database stops at the limit
    if overdue:
        stmt = stmt.where(RUNNING_DEADLINE, Deadline.due_at < now)  # type: ignore[arg-type]
    if due_within is not None:
        stmt = stmt.where(Deadline.due_at <= now + due_within)  # type: ignore[arg-type]
    if agencies is not None:
        stmt = stmt.where(RESPONSIBLE_AGENCY.in_(agencies))
    with UnitOfWork(deps, read_only=True) as uow:
        stmt = only_visible(stmt, uow, uow.officer(actor) if actor else None)
        found = uow.session.connection().execute(stmt).all()
    # Plain rows, not ORM objects: a list of hundreds costs what formatting them costs. Day-based deadlines end
    # at the end of a day, so neighbours in this due-date order often share a due time: format it once.
    rows = []
    last: tuple[datetime, datetime, str, str] | None = None
    for case_no, title, owner, state, rule, label, status, stored, paused_at, provisional, kind, basis, agency in found:
        if last is None or last[0] != stored:
            due = _utc(stored)
            last = (stored, due, local_iso(due), _remaining(due, now))
        _stored, due_at, due_text, left = last
        if status == "paused" and paused_at:
            left = _remaining(due_at, _utc(paused_at))  # clock_left: frozen at the pause
        late = status == "running" and now > due_at
        rows.append(
            DeadlineRow(
                case_no=case_no,
                title=title,
                agency=owner,
                state=state,
                rule=rule,
                label=label,
                status="missed" if late else status,
                due_at=due_text,
                remaining=left,
                overdue=late,
                provisional=provisional,
                responsible=kind,
                basis=basis,
                responsible_agency=agency,
            )
        )
    return rows


__all__ = ["DeadlineRow", "SweepResult", "fire_due_deadlines", "list_deadlines", "parse_within"]
