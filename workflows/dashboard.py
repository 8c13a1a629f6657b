"""The supervisor's dashboard and the statistics API, counted in SQL over the cases an officer may see.

The database counts (cases per phase and state, overdue deadlines by the agency that must act, open
listings and escalations by handling agency) and the lists come back with a LIMIT, so a page costs what it
shows, not one read per case. The access rule is ARCHITECTURE.md's as ``workflows.cases`` applies it to
one case: owner and participants, admins, and supervisors whose jurisdiction covers the owning agency
(``workflows.cases._covers``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, cast, exists, func, literal_column, or_, select, text

from models.tables import Agency, Case, CaseParticipant, Deadline, Supervision
from states.lifecycle import PHASES, REFERRAL_FUNNEL, funnel_steps
from workflows.bulletins import STAGES, stage_days
from workflows.cases import _covers
from workflows.meetings import ActionItemView, list_action_items
from workflows.supervision import SupervisionView, supervision_view
from workflows.uow import Deps, OfficerRow, UnitOfWork

#: Literal SQL: a bound parameter would stop SQLite from using the partial indexes on these states.
RUNNING_DEADLINE = text("deadlines.status = 'running'")
OPEN_LISTING = text("supervisions.state != 'delisted'")


# --- who sees what ----------------------------------------------------------------------------------------------


_JURISDICTIONS = select(Agency.code, Agency.region, Agency.parent_region, Agency.level)


def visible_cases(uow: UnitOfWork, officer: OfficerRow) -> ColumnElement[bool] | None:
    """A condition on ``cases`` true for the cases ``officer`` may see; None: every case (an admin).

    ``workflows.cases._visible`` for a whole query: the agencies a supervisor covers are chosen by the same
    ``_covers`` over the (small) agency table and matched by code, so the rule keeps one definition.
    """
    if "admin" in officer.roles:
        return None
    terms: list[ColumnElement[bool]] = []
    if "supervisor" in officer.roles:
        # Plain rows (what ``_covers`` reads): every list and count a supervisor opens runs this.
        agencies = {a.code: a for a in uow.conn.execute(_JURISDICTIONS)}
        mine = agencies.get(officer.agency_code)
        if mine is not None:
            covered = sorted(code for code, owner in agencies.items() if _covers(mine, owner))
            if covered:
                # First: the database stops at a true term, so only the other cases look up participants.
                terms.append(Case.owner_agency.in_(covered))  # type: ignore[attr-defined]
    # SELECT 1, not EXISTS(SELECT *): SQLite then answers from the (case_id, agency_code) index alone, without
    # reading the participant rows (the overdue list at 100k cases: 5.3 -> ~3 ms).
    participates = (
        select(literal_column("1"))
        .where(CaseParticipant.case_id == Case.id, CaseParticipant.agency_code == officer.agency_code)
        .exists()
    )
    terms.append(participates)
    return or_(*terms)


def only_visible(stmt: Select[Any], uow: UnitOfWork, officer: OfficerRow | None) -> Select[Any]:
    """``stmt`` (which reads ``cases``) kept to what ``officer`` may see; None: the operator, everything."""
    where = visible_cases(uow, officer) if officer is not None else None
    return stmt if where is None else stmt.where(where)


def _responsible_agency_code() -> ColumnElement[str]:
    latest = (
        select(CaseParticipant.agency_code)
        .join(Agency, Agency.code == CaseParticipant.agency_code)
        .where(CaseParticipant.case_id == Deadline.case_id, Agency.kind == Deadline.responsible)
        .order_by(CaseParticipant.id.desc())  # type: ignore[union-attr]
        .limit(1)
        .correlate(Deadline)
        .scalar_subquery()
    )
    return func.coalesce(latest, Case.owner_agency)


#: SQL for the agency that must act on a deadline: the participant of the deadline's ``responsible`` kind that
#: joined last, else the owner (``workflows.clockwork.responsible_agency`` for a whole query). Built once.
RESPONSIBLE_AGENCY = _responsible_agency_code()


# --- counts -------------------------------------------------------------------------------------------------------


@dataclass
class CaseCounts:
    """Visible cases by phase and by state (``Case.phase`` is ``phase_of`` the stored configuration)."""

    total: int = 0
    per_phase: Counter[str] = field(default_factory=Counter)
    per_state: Counter[str] = field(default_factory=Counter)

    @property
    def funnel(self) -> dict[str, int]:
        """Cases that reached each step of the referral funnel (``states.lifecycle.funnel_steps``)."""
        reached: Counter[str] = Counter()
        for phase, n in self.per_phase.items():
            for step in funnel_steps(phase):
                reached[step] += n
        return {step: reached.get(step, 0) for step in REFERRAL_FUNNEL}


def _case_counts(uow: UnitOfWork, officer: OfficerRow | None) -> CaseCounts:
    stmt = only_visible(select(Case.phase, Case.state, func.count()).group_by(Case.phase, Case.state), uow, officer)
    counts = CaseCounts()
    for phase, state, n in uow.session.execute(stmt):
        counts.total += n
        counts.per_phase[phase] += n
        counts.per_state[state] += n
    return counts


def _overdue_deadlines(uow: UnitOfWork, officer: OfficerRow | None, now: datetime) -> Select[Any]:
    """Running deadlines past due (``DeadlineView.status == "missed"``) of the visible cases."""
    stmt = (
        select(Deadline.id).join(Case, Case.id == Deadline.case_id).where(RUNNING_DEADLINE, Deadline.due_at < now)  # type: ignore[arg-type]
    )
    return only_visible(stmt, uow, officer)


def _open_listings(uow: UnitOfWork, officer: OfficerRow | None) -> Select[Any]:
    stmt = select(Supervision, Case).join(Case, Case.id == Supervision.case_id).where(OPEN_LISTING)
    return only_visible(stmt, uow, officer)


def statistics(deps: Deps, *, actor: str | None = None) -> dict[str, Any]:
    """``/api/v1/statistics``: counts over the cases ``actor`` may see (the operator: all)."""
    with UnitOfWork(deps, read_only=True) as uow:
        officer = uow.officer(actor) if actor else None
        counts = _case_counts(uow, officer)
        overdue = _overdue_deadlines(uow, officer, deps.now()).with_only_columns(func.count())
        overdue_count = uow.session.execute(overdue).scalar_one()
    return {
        "cases": counts.total,
        "per_phase": {p: counts.per_phase.get(p, 0) for p in PHASES},
        "per_state": dict(sorted(counts.per_state.items())),
        "funnel": counts.funnel,
        "overdue_deadlines": overdue_count,
    }


@dataclass
class Figures:
    """The dashboard's counts: visible cases, and per agency (code → kind → count) the open listings
    (``supervised``), those escalated, the overdue deadlines it must act on and its overdue action items
    (few: listed in full)."""

    cases: CaseCounts
    by_agency: dict[str, Counter[str]]
    stage_days: dict[str, list[float]]
    action_items: list[ActionItemView]

    @property
    def totals(self) -> Counter[str]:
        """The per-agency counts summed."""
        total: Counter[str] = Counter()
        for line in self.by_agency.values():
            total.update(line)
        return total


def figures(deps: Deps, *, actor: str, stages: tuple[datetime, datetime] | None = None) -> Figures:
    """The dashboard's counts for ``actor``; with ``stages`` (start, end), the days of each stage that ended
    then in the visible cases, by the bulletin's rule (``workflows.bulletins``)."""
    now = deps.now()
    actions = overdue_action_items(deps, actor=actor)
    with UnitOfWork(deps, read_only=True) as uow:
        officer = uow.officer(actor)
        counts = _case_counts(uow, officer)
        by_agency: dict[str, Counter[str]] = {}
        agency = RESPONSIBLE_AGENCY
        overdue = _overdue_deadlines(uow, officer, now).with_only_columns(agency, func.count()).group_by(agency)
        for code, n in uow.session.execute(overdue):
            by_agency.setdefault(code, Counter())["overdue"] = n
        listings = _open_listings(uow, officer).with_only_columns(
            Supervision.handling_agency, func.count(), func.sum(cast(Supervision.escalations > 0, Integer))
        )
        for code, n, escalated in uow.session.execute(listings.group_by(Supervision.handling_agency)):
            line = by_agency.setdefault(code, Counter())
            line["supervised"] = n
            if escalated:
                line["escalated"] = int(escalated)
        for item in actions:
            by_agency.setdefault(item.owner_agency, Counter())["action_items"] += 1
        durations: dict[str, list[float]] = {s.id: [] for s in STAGES}
        if stages is not None:
            durations = stage_days(uow, stages[0], stages[1], only_visible(select(Case.id), uow, officer))
    return Figures(counts, by_agency, durations, actions)


# --- lists ----------------------------------------------------------------------------------------------------------


def open_listings(
    deps: Deps, *, actor: str, agencies: Collection[str] | None = None, escalated: bool = False, limit: int = 500
) -> list[tuple[SupervisionView, str]]:
    """Open listings of the visible cases (of these handling ``agencies``; only ``escalated`` ones) with their
    case's title, by the handling agency's region and code, due date and case number; the first ``limit``."""
    with UnitOfWork(deps, read_only=True) as uow:
        stmt = _open_listings(uow, uow.officer(actor)).outerjoin(Agency, Agency.code == Supervision.handling_agency)
        if agencies is not None:
            stmt = stmt.where(Supervision.handling_agency.in_(agencies))  # type: ignore[attr-defined]
        if escalated:
            stmt = stmt.where(Supervision.escalations > 0)  # type: ignore[operator]
        stmt = stmt.order_by(
            Agency.region,
            Supervision.handling_agency,
            Supervision.due_at,
            Case.case_no,
            Supervision.id.desc(),  # type: ignore[union-attr]
        ).limit(limit)
        return [(supervision_view(deps, case, sup), case.title) for sup, case in uow.session.execute(stmt)]


def overdue_action_items(deps: Deps, *, actor: str) -> list[ActionItemView]:
    """Open action items past due that ``actor`` may see (one on a case only when the case is visible)."""
    items = [a for a in list_action_items(deps, actor=actor, open_only=True) if a.overdue]
    on_cases = {a.case_no for a in items if a.case_no}
    if not on_cases:
        return items
    with UnitOfWork(deps, read_only=True) as uow:
        stmt = select(Case.case_no).where(Case.case_no.in_(on_cases))  # type: ignore[attr-defined]
        visible = set(uow.session.execute(only_visible(stmt, uow, uow.officer(actor))).scalars())
    return [a for a in items if a.case_no is None or a.case_no in visible]


@dataclass
class CaseLine:
    """One visible case in the dashboard's case list."""

    case_no: str
    title: str
    agency: str
    phase: str
    state: str
    received_at: datetime
    overdue_deadlines: int
    supervised: bool


def case_lines(
    deps: Deps,
    *,
    actor: str,
    agencies: Collection[str] | None = None,
    phases: Collection[str] | None = None,
    limit: int = 500,
) -> tuple[list[CaseLine], int]:
    """The visible cases (of these owner ``agencies``, in these ``phases``), newest first: the first ``limit``
    and how many there are, each with its overdue deadlines and whether it is under listed supervision."""
    now = deps.now()
    overdue = (
        select(func.count())
        .select_from(Deadline)
        .where(Deadline.case_id == Case.id, RUNNING_DEADLINE, Deadline.due_at < now)  # type: ignore[arg-type]
        .correlate(Case)
        .scalar_subquery()
    )
    listed = exists().where(Supervision.case_id == Case.id, OPEN_LISTING)
    with UnitOfWork(deps, read_only=True) as uow:
        stmt = only_visible(select(Case.id).select_from(Case), uow, uow.officer(actor))  # FROM kept by the count
        if agencies is not None:
            stmt = stmt.where(Case.owner_agency.in_(agencies))  # type: ignore[attr-defined]
        if phases is not None:
            stmt = stmt.where(Case.phase.in_(phases))  # type: ignore[attr-defined]
        total = uow.session.execute(stmt.with_only_columns(func.count())).scalar_one()
        page = stmt.with_only_columns(
            Case.case_no, Case.title, Case.owner_agency, Case.phase, Case.state, Case.received_at, overdue, listed
        ).order_by(Case.id.desc())  # type: ignore[union-attr]
        lines = [CaseLine(*row) for row in uow.session.execute(page.limit(limit))]
    return lines, total
