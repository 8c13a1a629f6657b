"""Shared mechanics of deadlines and case audit records, used by the transition, the sweep and supervision.

Kept apart from ``workflows.cases`` so the sweep and supervision can record on a case's audit log and
reschedule a deadline's alerts without importing the transition (and without import cycles).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import insert, select

from models import statements
from models.statements import Prepared
from models.tables import Agency, Case, CaseEvent, CaseParticipant, Deadline, FiredAlert, Officer, OutboxMessage
from notifications.channels import valid_address
from notifications.render import render
from states.calendar import SHANGHAI
from states.clocks import alert_schedule, next_alert, parse_duration
from workflows.audit import GENESIS, EventRecord, event_digest
from workflows.uow import AnyCase, Deps, UnitOfWork, keep

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "system"  # the actor of audit records the engine writes by itself (reminders, misses)

_INSERT_EVENT = Prepared(insert(CaseEvent))
_INSERT_OUTBOX = Prepared(insert(OutboxMessage))


def local_iso(value: datetime | None) -> str:
    """An aware time shown in Asia/Shanghai, to the minute."""
    return value.astimezone(SHANGHAI).isoformat(timespec="minutes") if value else ""


def fired_keys(uow: UnitOfWork, subject: str, subject_id: int | None) -> set[str]:
    """The alert keys already fired for one deadline or supervision."""
    if subject_id is None:
        return set()
    return set(
        uow.session.execute(
            select(FiredAlert.key).where(FiredAlert.subject == subject, FiredAlert.subject_id == subject_id)
        ).scalars()
    )


def refresh_next_alert(
    deps: Deps, uow: UnitOfWork, row: Deadline, *, after: datetime, fired: set[str] | None = None
) -> None:
    """Point the deadline at its next reminder, miss or auto-listing (nothing while paused or ended)."""
    if row.status != "running":
        row.next_alert_at, row.next_alert = None, ""
        return
    rule = deps.clock_rules.get(row.rule)
    leads = rule.reminder_leads() if rule else []
    policy = deps.supervision.auto_list_for(row.rule)
    grace = parse_duration(policy.missed_by) if policy else None
    schedule = alert_schedule(row.due_at, leads, grace)
    done = fired if fired is not None else fired_keys(uow, "deadline", row.id)
    alert = next_alert(schedule, row.due_at, after=after, fired=done)
    row.next_alert_at = alert.at if alert else None
    row.next_alert = alert.key(row.due_at) if alert else ""


def append_event(
    uow: UnitOfWork,
    case: AnyCase,
    event: str,
    *,
    actor: str,
    actor_agency: str,
    effective: datetime,
    recorded: datetime,
    note: str,
    payload: dict[str, Any],
    before: list[str],
    after: list[str],
    changes: dict[str, Any],
) -> EventRecord:
    """Append one hash-chained row to the case's audit log and write the case row: ``changes`` (which must
    hold the new ``version``: event #n brings the case to version n) and the new last hash.

    One Core INSERT and one Core UPDATE, sent at once (the ORM's unit of work costs several times the two
    statements); the case object is updated as committed, the returned record is not in the session."""
    for key, value in changes.items():
        keep(case, key, value)
    record = EventRecord(
        event_id=str(uuid.uuid4()),
        case_id=case.id,
        seq=case.version,  # version n is reached by event #n: the chain and the version advance together
        event=event,
        actor=actor,
        actor_agency=actor_agency,
        effective_at=effective,
        recorded_at=recorded,
        note=note or "",
        payload=payload,
        from_configuration=before,
        to_configuration=after,
        from_state=_leaf(before),
        to_state=_leaf(after),
        version=case.version,
        prev_hash=case.last_hash or GENESIS,
    )
    record.hash = event_digest(case.case_no, record)
    statements.write(uow.conn, _INSERT_EVENT, {name: getattr(record, name) for name in EventRecord.__slots__})
    uow.write_case(case, {**changes, "last_hash": record.hash})
    return record


def _leaf(configuration: list[str]) -> str:
    from states.lifecycle import leaf_state  # the chart is built on first use, not at import

    return leaf_state(configuration) if configuration else ""


def record_fact(
    uow: UnitOfWork,
    case: Case,
    event: str,
    *,
    actor: str,
    actor_agency: str,
    effective: datetime,
    recorded: datetime,
    payload: dict[str, Any],
    note: str = "",
) -> EventRecord:
    """Record a fact that does not move the case (a reminder, a miss, a supervision step) on its log.

    It still takes the next version: the case's record changed, and the chain stays one sequence.
    """
    conf = list(case.configuration)
    return append_event(
        uow,
        case,
        event,
        actor=actor,
        actor_agency=actor_agency,
        effective=effective,
        recorded=recorded,
        note=note,
        payload=payload,
        before=conf,
        after=conf,
        changes={"version": case.version + 1, "updated_at": recorded},
    )


# --- who is told ------------------------------------------------------------------------------------


class Directory:
    """Agencies and officers, read once per transaction (small tables) to resolve recipients."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.agencies: dict[str, Agency] = {a.code: a for a in uow.session.execute(select(Agency)).scalars()}
        self.officers: list[Officer] = list(
            uow.session.execute(
                select(Officer).where(Officer.active.is_(True)).order_by(Officer.username)  # type: ignore[attr-defined]
            ).scalars()
        )

    def with_role(self, agency_code: str, role: str) -> list[Officer]:
        """Active officers of one agency holding ``role``."""
        return [o for o in self.officers if o.agency_code == agency_code and role in o.roles]

    def supervisors_of_region(self, region: str | None) -> list[Officer]:
        """Active supervisors of any agency in ``region``."""
        if not region:
            return []
        return [
            o
            for o in self.officers
            if "supervisor" in o.roles and (a := self.agencies.get(o.agency_code)) is not None and a.region == region
        ]

    def officer(self, username: str) -> Officer | None:
        """An active officer by username."""
        return next((o for o in self.officers if o.username == username), None)


def holders(uow: UnitOfWork, case: Case) -> list[Agency]:
    """The agencies taking part in the case, the latest to join first (so the one holding it now leads)."""
    return list(
        uow.session.execute(
            select(Agency)
            .join(CaseParticipant, CaseParticipant.agency_code == Agency.code)
            .where(CaseParticipant.case_id == case.id)
            .order_by(CaseParticipant.id.desc())  # type: ignore[union-attr]
        ).scalars()
    )


def responsible_agency(uow: UnitOfWork, directory: Directory, case: Case, kind: str) -> Agency:
    """The participating agency of ``kind`` that holds the case (the latest to join); else the owner."""
    found = next((a for a in holders(uow, case) if a.kind == kind), None) if kind else None
    return found or directory.agencies[case.owner_agency]


class Recipient(Protocol):
    """What a notice needs of an officer: an ``Officer`` or a row with these columns."""

    @property
    def username(self) -> str: ...
    @property
    def display_name(self) -> str: ...
    @property
    def email(self) -> str: ...
    @property
    def channels(self) -> list[str]: ...


def enqueue(
    deps: Deps,
    uow: UnitOfWork,
    case: AnyCase | None,
    recipients: Sequence[Recipient],
    *,
    template: str,
    dedupe_prefix: str,
    at: datetime,
    agencies: set[str] | None = None,
    ics: str = "",
    **variables: Any,
) -> int:
    """Queue ``template`` for each recipient on each of their channels, rendered now (a missing variable
    fails the caller's transaction), and for each webhook subscribed to this kind and case. Returns how
    many officers were addressed.

    ``case`` is None for a notice about no single case (a meeting, a bulletin): webhooks then match on
    ``agencies`` (the agencies concerned; None: every webhook of the kind). ``ics``: a calendar invitation
    sent with the emails.

    An officer whose email channel has no valid address gets a ``dead`` row saying so (and a warning):
    reported in the delivery audit, never silently skipped. Keys already queued in this transaction
    (two recipient lists of one event) are not queued twice.
    """
    queued: set[str] = uow.session.info.setdefault("queued_dedupe_keys", set())
    addressed: set[str] = set()
    rows: list[dict[str, Any]] = []
    for officer in recipients:
        if officer.username in addressed:
            continue
        addressed.add(officer.username)
        rendered = render(template, deps.lang, recipient_name=officer.display_name, **variables)
        for channel in officer.channels or ["email", "inbox"]:
            key = f"{dedupe_prefix}:{officer.username}:{channel}"
            if key in queued:
                continue
            queued.add(key)
            row = _outbox_row(case, template, channel, key, officer.email, officer.username, rendered, at)
            if channel == "email":
                row["ics"] = ics
            if channel == "email" and not valid_address(officer.email or ""):
                row["status"] = "dead"
                row["last_error"] = f"officer {officer.username} has no valid email address"
                log.warning("%s: %s; %s not sent by email", case.case_no if case else "-", row["last_error"], template)
            rows.append(row)
    # Subscribed systems get every notice of their cases, even one no officer of theirs receives.
    rows += _webhook_rows(deps, uow, case, template, dedupe_prefix, at, queued, variables, agencies)
    if rows:
        # One multi-row INSERT in the caller's transaction; ORM objects would cost more than the rendering.
        statements.write(uow.conn, _INSERT_OUTBOX, rows)
    return len(addressed)


def _webhook_rows(
    deps: Deps,
    uow: UnitOfWork,
    case: AnyCase | None,
    template: str,
    dedupe_prefix: str,
    at: datetime,
    queued: set[str],
    variables: dict[str, Any],
    agencies: set[str] | None = None,
) -> list[dict[str, Any]]:
    hooks = deps.notifications.webhooks
    if not hooks:
        return []
    if case is not None:
        agencies = set(uow.participants(case))
    rows: list[dict[str, Any]] = []
    for hook in hooks:
        if hook.kinds and template not in hook.kinds:
            continue
        if hook.agencies and agencies is not None and not agencies & set(hook.agencies):
            continue
        key = f"{dedupe_prefix}:webhook:{hook.name}"
        if key in queued:
            continue
        queued.add(key)
        rendered = render(template, deps.lang, **{"recipient_name": hook.name, **variables})
        rows.append(_outbox_row(case, template, "webhook", key, hook.name, None, rendered, at))
    return rows


def _outbox_row(
    case: AnyCase | None,
    template: str,
    channel: str,
    key: str,
    recipient: str,
    username: str | None,
    rendered: Any,
    at: datetime,
) -> dict[str, Any]:
    return dict(
        dedupe_key=key,
        case_id=case.id if case else None,
        kind=template,
        channel=channel,
        recipient=recipient,
        recipient_user=username,
        subject=rendered.subject,
        body=rendered.body,
        body_html=rendered.body_html if channel == "email" else "",
        template=rendered.template,
        template_version=rendered.template_version,
        lang=rendered.lang,
        status="pending",
        attempts=0,
        next_attempt_at=at,
        created_at=at,
        ics="",
        last_error="",
        claimed_by="",
    )
