"""Listed supervision (挂牌督办): list a case, report progress, delist; escalate missed reports and due dates.

Every step is one transaction that locks the case, moves the ``Supervision`` chart, records the step on
the case's audit log and queues the notices. The sweep (``workflows.deadlines.fire_due_deadlines``)
calls ``check_supervision`` for open listings whose next report or due date has passed, and
``auto_list`` when a statutory deadline was missed by the grace of a config policy.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from statemachine.exceptions import TransitionNotAllowed

from models.tables import Agency, Case, Deadline, FiredAlert, Officer, Supervision
from states.clocks import LEVELS, AutoListPolicy, alert_key, level_rank, whole_days
from states.errors import InvalidInput, PermissionDenied, TransitionRefused
from states.lifecycle import CLOSED
from states.supervision import LEVEL_LABELS, SUPERVISION_STATE_LABELS, supervision_chart
from workflows.cases import _covers, _readable_case, _visible_case
from workflows.clockwork import SYSTEM_ACTOR, Directory, enqueue, holders, local_iso, record_fact
from workflows.uow import Deps, OfficerRow, UnitOfWork

log = logging.getLogger(__name__)

ACTION_LABELS: dict[str, tuple[str, str]] = {
    "listed": ("列入督办", "listed"),
    "auto_listed": ("超期自动列入督办", "listed automatically after a missed deadline"),
    "report": ("承办机关报告进展", "progress reported"),
    "report_missed": ("逾期未报告进展，督办升级", "progress report missed: escalated"),
    "due_missed": ("督办期限届满未办结，督办升级", "supervision due date passed: escalated"),
    "delisted": ("摘牌", "delisted"),
}


@dataclass
class SupervisionView:
    """A listing as users see it (times in Asia/Shanghai)."""

    id: int
    case_no: str
    level: str
    state: str
    state_label: str
    reason: str
    listed_by: str
    listing_agency: str
    handling_agency: str
    listed_at: str
    due_at: str
    report_every_days: int
    next_report_due_at: str
    last_report_at: str
    reports: int
    escalations: int
    auto_rule: str
    delisted_at: str
    delisted_by: str
    result: str
    overdue: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def supervision_view(deps: Deps, case: Case, sup: Supervision) -> SupervisionView:
    """A listing as shown to users (also the dashboard's lists)."""
    now = deps.now()
    open_ = sup.state != "delisted"
    return SupervisionView(
        id=sup.id or 0,
        case_no=case.case_no,
        level=sup.level,
        state=sup.state,
        state_label=SUPERVISION_STATE_LABELS[sup.state],
        reason=sup.reason,
        listed_by=sup.listed_by,
        listing_agency=sup.listing_agency,
        handling_agency=sup.handling_agency,
        listed_at=local_iso(sup.listed_at),
        due_at=local_iso(sup.due_at),
        report_every_days=sup.report_every_days,
        next_report_due_at=local_iso(sup.next_report_due_at) if open_ else "",
        last_report_at=local_iso(sup.last_report_at),
        reports=sup.reports,
        escalations=sup.escalations,
        auto_rule=sup.auto_rule,
        delisted_at=local_iso(sup.delisted_at),
        delisted_by=sup.delisted_by,
        result=sup.result,
        overdue=open_ and (now > sup.due_at or now > sup.next_report_due_at),
    )


def _open_listing(uow: UnitOfWork, case: Case) -> Supervision | None:
    return (
        uow.session.execute(
            select(Supervision)
            .where(Supervision.case_id == case.id, Supervision.state != "delisted")
            .order_by(Supervision.id.desc())  # type: ignore[union-attr]
        )
        .scalars()
        .first()
    )


def _locked_listing(uow: UnitOfWork, case_no: str, actor: str) -> tuple[Case, OfficerRow, Supervision]:
    """The case (locked, as ``actor`` may see it) and its open listing."""
    case, officer = _visible_case(uow, case_no, actor, lock=True)
    sup = _open_listing(uow, case)
    if sup is None:
        raise InvalidInput(f"case {case_no} is not under listed supervision")
    return case, officer, sup


def _send(case: Case, sup: Supervision, event: str) -> str:
    """Move the listing's chart; a step not allowed now is refused with the allowed list."""
    chart = supervision_chart(sup.state)
    try:
        chart.send(event)
    except TransitionNotAllowed:
        allowed = [e.id for e in chart.allowed_events]
        raise TransitionRefused(case.case_no, f"supervision:{sup.state}", event, allowed) from None
    return str(chart.current_state_value)


def _schedule_check(sup: Supervision, fired: set[str]) -> None:
    """The next moment the sweep must look at this listing: its next report, or its due date."""
    if sup.state == "delisted":
        sup.next_check_at = None
        return
    times = [sup.next_report_due_at]
    if alert_key("due", sup.due_at) not in fired:
        times.append(sup.due_at)
    sup.next_check_at = min(times)


def _notify(
    deps: Deps,
    uow: UnitOfWork,
    directory: Directory,
    case: Case,
    sup: Supervision,
    recipients: list[Officer],
    *,
    action: str,
    seq: int,
    at: datetime,
    detail: str = "",
) -> None:
    lang = 1 if deps.lang == "en" else 0
    listing = directory.agencies.get(sup.listing_agency)
    handling = directory.agencies.get(sup.handling_agency)
    enqueue(
        deps,
        uow,
        case,
        recipients,
        template="supervision_notice",
        dedupe_prefix=f"supervision:{sup.id}:{seq}",
        at=at,
        case_no=case.case_no,
        title=case.title,
        level_label=LEVEL_LABELS[sup.level][lang],
        action_label=ACTION_LABELS[action][lang],
        listing_agency_name=listing.name if listing else sup.listing_agency,
        handling_agency_name=handling.name if handling else sup.handling_agency,
        due_at=local_iso(sup.due_at),
        every_days=sup.report_every_days,
        next_report_due_at=local_iso(sup.next_report_due_at),
        detail=detail,
        reason=sup.reason if action in ("listed", "auto_listed") else "",
    )


def _payload(sup: Supervision, **extra: Any) -> dict[str, Any]:
    return {
        "supervision_id": sup.id,
        "level": sup.level,
        "due_at": sup.due_at.isoformat(),
        "next_report_due_at": sup.next_report_due_at.isoformat(),
        **extra,
    }


def _check_level(level: str) -> None:
    if level not in LEVELS:
        raise InvalidInput(f"unknown supervision level {level!r}; use one of {', '.join(LEVELS)}")


def _listing_agency_at(directory: Directory, owner: Agency, level: str) -> Agency:
    """The market regulator at ``level`` over ``owner`` (an auto-listing acts in its name)."""
    if level_rank(owner.level) >= level_rank(level):
        return owner
    for agency in directory.agencies.values():
        if agency.kind == "market_regulation" and agency.level == level and _covers(agency, owner):
            return agency
    return owner


def _handling_default(uow: UnitOfWork, directory: Directory, case: Case) -> Agency:
    """The agency that holds the case now: the latest participant, or the owner."""
    return next(iter(holders(uow, case)), directory.agencies[case.owner_agency])


def _create(
    deps: Deps,
    uow: UnitOfWork,
    directory: Directory,
    case: Case,
    *,
    level: str,
    due_at: datetime,
    every_days: int,
    reason: str,
    listed_by: str,
    listing: Agency,
    handling: Agency,
    at: datetime,
    auto_rule: str = "",
) -> Supervision:
    sup = Supervision(
        case_id=case.id or 0,
        level=level,
        state="listed",
        reason=reason,
        listed_by=listed_by,
        listing_agency=listing.code,
        handling_agency=handling.code,
        listed_at=at,
        due_at=due_at,
        report_every_days=every_days,
        next_report_due_at=deps.calendar.add(at, every_days, "days").due_at,
        auto_rule=auto_rule,
    )
    _schedule_check(sup, set())
    uow.session.add(sup)
    uow.session.flush()
    action = "auto_listed" if auto_rule else "listed"
    record = record_fact(
        uow,
        case,
        "supervision_listed",
        actor=listed_by,
        actor_agency=listing.code,
        effective=at,
        recorded=deps.now(),
        payload=_payload(sup, reason=reason, handling_agency=handling.code, every_days=every_days, auto_rule=auto_rule),
    )
    recipients = directory.with_role(handling.code, "handler") + [
        o for o in directory.officers if o.agency_code == handling.code and o.liaison
    ]
    _notify(deps, uow, directory, case, sup, recipients, action=action, seq=record.seq, at=deps.now())
    return sup


# --- use cases --------------------------------------------------------------------------------------


def list_for_supervision(
    deps: Deps,
    case_no: str,
    *,
    actor: str,
    level: str,
    due: datetime,
    every: str,
    reason: str,
    handling_agency: str | None = None,
) -> SupervisionView:
    """A supervisor lists ``case_no`` for supervision (挂牌督办) at ``level``, due ``due``, reports ``every``."""
    _check_level(level)
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("a listing needs a reason (--reason)")
    try:
        every_days = whole_days(every)
    except ValueError as exc:
        raise InvalidInput(f"--every: {exc}") from None
    with UnitOfWork(deps) as uow:
        case, officer = _visible_case(uow, case_no, actor, lock=True)
        directory = Directory(uow)
        mine = directory.agencies[officer.agency_code]
        if "supervisor" not in officer.roles:
            raise PermissionDenied(f"case {case_no}: {actor} is not a supervisor and may not list cases")
        if level_rank(level) > level_rank(mine.level):
            raise PermissionDenied(
                f"case {case_no}: {actor} ({mine.code}, {mine.level} level) may not list a case at {level} level"
            )
        if case.state == CLOSED:
            raise InvalidInput(f"case {case_no} is closed; a closed case cannot be listed for supervision")
        current = _open_listing(uow, case)
        if current is not None:
            raise InvalidInput(
                f"case {case_no} is already under {current.level}-level supervision (#{current.id}, "
                f"listed {local_iso(current.listed_at)}); report progress or delist it first"
            )
        now = deps.now()
        if due.tzinfo is None:
            raise InvalidInput("--due must carry a time zone")
        if due <= now:
            raise InvalidInput(f"--due {local_iso(due)} is not in the future")
        if handling_agency:
            handling = directory.agencies.get(handling_agency)
            if handling is None:
                raise InvalidInput(f"unknown handling agency {handling_agency!r}")
        else:
            handling = _handling_default(uow, directory, case)
        sup = _create(
            deps,
            uow,
            directory,
            case,
            level=level,
            due_at=due,
            every_days=every_days,
            reason=reason,
            listed_by=officer.username,
            listing=mine,
            handling=handling,
            at=now,
        )
        view = supervision_view(deps, case, sup)
        uow.commit()
        log.info("case %s listed for %s-level supervision by %s", case_no, level, actor)
        return view


def report_progress(deps: Deps, case_no: str, *, actor: str, text: str) -> SupervisionView:
    """The handling agency reports progress on a listed case; the next report is due one interval later."""
    text = (text or "").strip()
    if not text:
        raise InvalidInput("a progress report needs its text (--text)")
    with UnitOfWork(deps) as uow:
        case, officer, sup = _locked_listing(uow, case_no, actor)
        if officer.agency_code != sup.handling_agency or "handler" not in officer.roles:
            raise PermissionDenied(
                f"case {case_no}: progress reports come from a handler of {sup.handling_agency}; "
                f"{actor} ({officer.agency_code}) may not file one"
            )
        sup.state = _send(case, sup, "report_progress")
        now = deps.now()
        sup.last_report_at = now
        sup.reports += 1
        sup.next_report_due_at = deps.calendar.add(now, sup.report_every_days, "days").due_at
        _schedule_check(sup, _fired(uow, sup))
        directory = Directory(uow)
        record = record_fact(
            uow,
            case,
            "supervision_report",
            actor=officer.username,
            actor_agency=officer.agency_code,
            effective=now,
            recorded=now,
            payload=_payload(sup, report=text, reports=sup.reports),
        )
        _notify(
            deps,
            uow,
            directory,
            case,
            sup,
            _listers(directory, sup),
            action="report",
            seq=record.seq,
            at=now,
            detail=text,
        )
        view = supervision_view(deps, case, sup)
        uow.commit()
        return view


def delist(deps: Deps, case_no: str, *, actor: str, result: str) -> SupervisionView:
    """A supervisor at the listing's level (or above) ends the listing (摘牌), recording the result."""
    result = (result or "").strip()
    if not result:
        raise InvalidInput("delisting needs the result (--result)")
    with UnitOfWork(deps) as uow:
        case, officer, sup = _locked_listing(uow, case_no, actor)
        directory = Directory(uow)
        mine = directory.agencies[officer.agency_code]
        if "supervisor" not in officer.roles or level_rank(mine.level) < level_rank(sup.level):
            raise PermissionDenied(
                f"case {case_no}: only a supervisor at {sup.level} level or above may delist it; {actor} may not"
            )
        sup.state = _send(case, sup, "delist")
        now = deps.now()
        sup.delisted_at, sup.delisted_by, sup.result = now, officer.username, result
        sup.next_check_at = None
        record = record_fact(
            uow,
            case,
            "supervision_delisted",
            actor=officer.username,
            actor_agency=officer.agency_code,
            effective=now,
            recorded=now,
            payload=_payload(sup, result=result),
        )
        recipients = directory.with_role(sup.handling_agency, "handler") + _listers(directory, sup)
        _notify(deps, uow, directory, case, sup, recipients, action="delisted", seq=record.seq, at=now, detail=result)
        view = supervision_view(deps, case, sup)
        uow.commit()
        return view


def show_supervision(deps: Deps, case_no: str, *, actor: str | None = None) -> list[SupervisionView]:
    """Every listing of a case, newest first (``actor`` None: the operator's view)."""
    with UnitOfWork(deps, read_only=True) as uow:
        case, _officer = _readable_case(uow, case_no, actor)
        rows = uow.session.execute(
            select(Supervision).where(Supervision.case_id == case.id).order_by(Supervision.id.desc())  # type: ignore[union-attr]
        ).scalars()
        return [supervision_view(deps, case, sup) for sup in rows]


# --- the sweep's part ---------------------------------------------------------------------------------


def _fired(uow: UnitOfWork, sup: Supervision) -> set[str]:
    return set(
        uow.session.execute(
            select(FiredAlert.key).where(FiredAlert.subject == "supervision", FiredAlert.subject_id == sup.id)
        ).scalars()
    )


def _listers(directory: Directory, sup: Supervision) -> list[Officer]:
    """Who listed it: the listing officer and the supervisors of the listing agency."""
    people = [o for o in directory.with_role(sup.listing_agency, "supervisor")]
    lister = directory.officer(sup.listed_by) if sup.listed_by != SYSTEM_ACTOR else None
    return ([lister] if lister else []) + people


def _above(directory: Directory, sup: Supervision) -> list[Officer]:
    listing = directory.agencies.get(sup.listing_agency)
    return directory.supervisors_of_region(listing.parent_region if listing else None)


def check_supervision(
    deps: Deps, uow: UnitOfWork, directory: Directory, case: Case, sup: Supervision, now: datetime
) -> int:
    """Escalate, once each, every report missed and a passed due date; returns how many escalations."""
    fired = _fired(uow, sup)
    escalations = 0
    recipients = _listers(directory, sup) + (_above(directory, sup) if deps.supervision.escalate_to_level_above else [])
    # A report is missed once its whole last day has passed; each missed interval escalates once and the
    # next report is then due one interval later (a sweeper that was down catches up period by period).
    for _ in range(1000):
        missed: list[tuple[str, datetime]] = []
        if now >= sup.next_report_due_at:
            missed.append(("report_missed", sup.next_report_due_at))
        if now >= sup.due_at and alert_key("due", sup.due_at) not in fired:
            missed.append(("due_missed", sup.due_at))
        if not missed:
            break
        action, at = min(missed, key=lambda m: m[1])
        key = alert_key("report" if action == "report_missed" else "due", at)
        if key not in fired:
            sup.escalations += 1
            record = record_fact(
                uow,
                case,
                "supervision_escalated",
                actor=SYSTEM_ACTOR,
                actor_agency=sup.listing_agency,
                effective=at,
                recorded=now,
                payload=_payload(sup, reason=action, missed_at=at.isoformat(), escalation=sup.escalations),
            )
            uow.session.add(
                FiredAlert(
                    subject="supervision",
                    subject_id=sup.id or 0,
                    key=key,
                    case_id=case.id or 0,
                    fired_at=now,
                    event_seq=record.seq,
                )
            )
            fired.add(key)
            escalations += 1
            _notify(
                deps,
                uow,
                directory,
                case,
                sup,
                recipients,
                action=action,
                seq=record.seq,
                at=now,
                detail=f"{ACTION_LABELS[action][1 if deps.lang == 'en' else 0]}: {local_iso(at)}",
            )
        if action == "report_missed":
            sup.next_report_due_at = deps.calendar.add(sup.next_report_due_at, sup.report_every_days, "days").due_at
    _schedule_check(sup, fired)
    return escalations


def auto_list(
    deps: Deps,
    uow: UnitOfWork,
    directory: Directory,
    case: Case,
    row: Deadline,
    policy: AutoListPolicy,
    handling: Agency,
    now: datetime,
) -> Supervision | None:
    """List a case whose deadline ``row`` was missed by the policy's grace, unless already listed or closed."""
    if case.state == CLOSED or _open_listing(uow, case) is not None:
        return None
    owner = directory.agencies[case.owner_agency]
    listing = _listing_agency_at(directory, owner, policy.level)
    reason = f"{policy.reason}（{row.rule} {row.label}，应于 {local_iso(row.due_at)} 届满）"
    return _create(
        deps,
        uow,
        directory,
        case,
        level=policy.level,
        due_at=deps.calendar.add(now, whole_days(policy.due_in), "days").due_at,
        every_days=whole_days(policy.every),
        reason=reason,
        listed_by=SYSTEM_ACTOR,
        listing=listing,
        handling=handling,
        at=now,
        auto_rule=row.rule,
    )
