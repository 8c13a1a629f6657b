"""Hand-offs and their expected responses (反馈): what the sender of a hand-off is waiting for.

A hand-off is an event that starts a clock another kind of agency must answer (transfer → police filing
decision T7, decline notice → request for reconsideration T9, reconsideration → T10, supervision request →
S1, return for supplementary investigation → C5, …; the pairs come from the clock rules in config.toml).
Each is listed with the receiving agency, the clock, and its status now — so nobody has to remember to
chase an answer; a missed one escalates through the deadline sweep.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select

from models.tables import Agency, CaseEvent, Deadline
from states.lifecycle import event_label
from workflows.cases import _readable_case, clock_left
from workflows.clockwork import Directory, local_iso, responsible_agency
from workflows.uow import Deps, UnitOfWork


@dataclass
class HandoffView:
    """One hand-off and the response it expects."""

    seq: int
    event: str
    label: str
    at: str
    from_agency: str
    to_agency: str
    rule: str
    expects: str
    status: str  # waiting | answered | missed | answered_late | withdrawn | paused
    due_at: str
    remaining: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


_STATUS = {"met": "answered", "cancelled": "withdrawn"}


def case_handoffs(deps: Deps, case_no: str, *, actor: str | None = None) -> list[HandoffView]:
    """Every hand-off of the case, oldest first, with the state of the answer it expects."""
    now = deps.now()
    with UnitOfWork(deps, read_only=True) as uow:
        case, _officer = _readable_case(uow, case_no, actor)
        directory = Directory(uow)
        deadlines = list(
            uow.session.execute(select(Deadline).where(Deadline.case_id == case.id).order_by(Deadline.id)).scalars()
        )
        events = {
            (e.event, e.effective_at): e
            for e in uow.session.execute(
                select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.seq)
            ).scalars()
        }
        views: list[HandoffView] = []
        for row in deadlines:
            event = events.get((row.started_by, row.started_at))
            if event is None or not row.responsible:
                continue
            sender: Agency | None = directory.agencies.get(event.actor_agency)
            if sender is None or sender.kind == row.responsible:
                continue  # a clock on the sender itself is not a hand-off
            receiver = responsible_agency(uow, directory, case, row.responsible)
            late = now > row.due_at if row.status == "running" else (row.ended_at or now) > row.due_at
            if row.status == "running":
                status = "missed" if late else "waiting"
            elif row.status == "met":
                status = "answered"
            elif row.status == "missed":
                status = "answered_late"
            else:
                status = _STATUS.get(row.status, row.status)
            views.append(
                HandoffView(
                    seq=event.seq,
                    event=event.event,
                    label=event_label(event.event, deps.lang),
                    at=local_iso(event.effective_at),
                    from_agency=sender.code,
                    to_agency=receiver.code,
                    rule=row.rule,
                    expects=row.label,
                    status=status,
                    due_at=local_iso(row.due_at),
                    remaining=clock_left(row, now) if row.status in ("running", "paused") else "",
                )
            )
        return sorted(views, key=lambda v: (v.seq, v.rule))
