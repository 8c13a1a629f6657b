"""Technical appraisal (技术鉴定: 非公知性, 同一性, loss valuation) of a case, read from its audit log.

The chart's ``request_appraisal`` (institution, subject, questions) and ``complete_appraisal``
(conclusion, opinion number and document hash) carry the record; the institution's acceptance is a fact
recorded in between (``appraisal_received``). The case's clocks pause while it is in ``appraisal``
(config.toml ``pause_in``), and a transfer package must then include the appraisal report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from models.tables import CaseEvent
from states.errors import InvalidInput, PermissionDenied
from states.events import APPRAISAL_SUBJECTS
from workflows.cases import _readable_case, _visible_case
from workflows.clockwork import local_iso, record_fact
from workflows.uow import Deps, UnitOfWork

SUBJECT_LABELS: dict[str, str] = {"non_public": "非公知性", "identity": "同一性", "loss_valuation": "损失数额"}
assert set(SUBJECT_LABELS) == set(APPRAISAL_SUBJECTS)


@dataclass
class AppraisalView:
    """One appraisal of a case: requested, accepted by the institution, completed."""

    number: int
    status: str  # requested | received | completed
    institution: str
    subject: str
    subject_label: str
    questions: str
    requested_at: str
    requested_by: str
    received_at: str = ""
    conclusion: str = ""
    opinion_no: str = ""
    opinion_sha256: str = ""
    completed_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _appraisals(events: list[CaseEvent]) -> list[AppraisalView]:
    found: list[AppraisalView] = []
    for e in events:
        if e.event == "request_appraisal":
            subject = str(e.payload.get("subject", ""))
            found.append(
                AppraisalView(
                    number=len(found) + 1,
                    status="requested",
                    institution=str(e.payload.get("institution", "")),
                    subject=subject,
                    subject_label=SUBJECT_LABELS.get(subject, subject),
                    questions=str(e.payload.get("questions", "")),
                    requested_at=local_iso(e.effective_at),
                    requested_by=e.actor,
                )
            )
        elif e.event == "appraisal_received" and found:
            found[-1].status, found[-1].received_at = "received", local_iso(e.effective_at)
        elif e.event == "complete_appraisal" and found:
            last = found[-1]
            last.status, last.completed_at = "completed", local_iso(e.effective_at)
            last.conclusion = str(e.payload.get("conclusion", ""))
            last.opinion_no = str(e.payload.get("opinion_no", ""))
            last.opinion_sha256 = str(e.payload.get("opinion_sha256", ""))
    return found


def _events(uow: UnitOfWork, case_id: int | None) -> list[CaseEvent]:
    return list(
        uow.session.execute(
            select(CaseEvent)
            .where(
                CaseEvent.case_id == case_id,
                CaseEvent.event.in_(("request_appraisal", "appraisal_received", "complete_appraisal")),  # type: ignore[attr-defined]
            )
            .order_by(CaseEvent.seq)
        ).scalars()
    )


def list_appraisals(deps: Deps, case_no: str, *, actor: str | None = None) -> list[AppraisalView]:
    """Every appraisal of the case, oldest first."""
    with UnitOfWork(deps, read_only=True) as uow:
        case, _officer = _readable_case(uow, case_no, actor)
        return _appraisals(_events(uow, case.id))


def record_received(deps: Deps, case_no: str, *, actor: str, at: datetime | None = None) -> AppraisalView:
    """Record that the institution accepted the current appraisal (its acceptance notice, 受理通知)."""
    with UnitOfWork(deps) as uow:
        case, officer = _visible_case(uow, case_no, actor, lock=True)
        if case.state != "appraisal":
            raise InvalidInput(f"case {case_no} is {case.state}, not under appraisal")
        if officer.agency_code != case.owner_agency or "handler" not in officer.roles:
            raise PermissionDenied(f"case {case_no}: only a handler of {case.owner_agency} records the appraisal")
        current = _appraisals(_events(uow, case.id))[-1]
        if current.status != "requested":
            raise InvalidInput(
                f"case {case_no}: appraisal #{current.number} was already accepted ({current.received_at})"
            )
        now = deps.now()
        when = at or now
        if when.tzinfo is None or when > now:
            raise InvalidInput("--at must be a past time with a time zone")
        record_fact(
            uow,
            case,
            "appraisal_received",
            actor=actor,
            actor_agency=officer.agency_code,
            effective=when,
            recorded=now,
            payload={"appraisal": current.number, "institution": current.institution},
        )
        current.status, current.received_at = "received", local_iso(when)
        uow.commit()
        return current
