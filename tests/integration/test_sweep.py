"""The deadline sweep: reminders before, the miss at the due time, supervisors told, audit records, once only.

Injected clock; T0 is Wednesday 2026-03-04 10:00 in Beijing (no public holiday in March 2026).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from models.tables import CaseEvent, Deadline, FiredAlert, OutboxMessage
from tests.conftest import FakeClock
from tests.integration.test_deadlines import new_case, send
from workflows.cases import advance_case, case_history, replay_case, show_case, verify_audit
from workflows.deadlines import fire_due_deadlines, list_deadlines, parse_within
from workflows.uow import Deps, UnitOfWork


def outbox(deps: Deps) -> list[dict[str, Any]]:
    with UnitOfWork(deps, read_only=True) as uow:
        rows = uow.session.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars()
        return [r.model_dump() for r in rows]


def records(deps: Deps, case_no: str, event: str) -> list[Any]:
    return [e for e in case_history(deps, case_no) if e.event == event]


def to_police_review(deps: Deps, clock: FakeClock, builder: Any) -> str:
    view = builder.to_state("police_review")
    return view.case_no


def test_reminders_then_miss_fire_once_each_with_audit_and_notices(deps: Deps, clock: FakeClock) -> None:
    view = new_case(deps)  # A1: 15 workdays, due 2026-03-25 23:59; reminders 3d and 1d before
    assert fire_due_deadlines(deps).fired == 0
    clock.advance(days=18)  # 2026-03-22 10:00: the 3-day reminder is due at 03-22 23:59:59, not yet
    assert fire_due_deadlines(deps).fired == 0
    clock.advance(days=1)  # 2026-03-23 10:00: inside the 3-day window only
    first = fire_due_deadlines(deps)
    assert (first.reminders, first.missed) == (1, 0)
    assert fire_due_deadlines(deps).fired == 0  # the same moment again: nothing new
    clock.advance(days=1, hours=15)  # 2026-03-25 01:00: inside the 1-day window
    assert fire_due_deadlines(deps).reminders == 1
    clock.advance(days=1)  # 2026-03-26 01:00: past due
    late = fire_due_deadlines(deps)
    assert (late.reminders, late.missed) == (0, 1)
    clock.advance(days=5)
    assert fire_due_deadlines(deps).fired == 0
    reminders = records(deps, view.case_no, "deadline_reminder")
    missed = records(deps, view.case_no, "deadline_missed")
    assert [r.payload["lead"] for r in reminders] == ["3d", "1d"]
    assert len(missed) == 1 and missed[0].actor == "system" and missed[0].payload["rule"] == "A1"
    mails = outbox(deps)
    to = [(m["kind"], m["recipient_user"]) for m in mails if m["channel"] == "email"]
    assert sorted(to) == sorted((m["kind"], m["recipient_user"]) for m in mails if m["channel"] == "inbox")
    assert to.count(("deadline_reminder", "sm_amr_handler")) == 2
    assert ("deadline_missed", "sm_amr_handler") in to
    assert ("deadline_missed", "sm_amr_supervisor") in to  # the supervisors of the agency's region
    missed_mail = next(m for m in mails if m["kind"] == "deadline_missed" and m["recipient_user"] == "sm_amr_handler")
    assert "线索核查" in missed_mail["subject"] and view.case_no in missed_mail["body"]
    assert verify_audit(deps, view.case_no).problems == []
    assert replay_case(deps, view.case_no).matches
    shown = show_case(deps, view.case_no)
    assert shown.version == 4 and [d.status for d in shown.deadlines if d.rule == "A1"] == ["missed"]


def test_a_late_sweep_sends_no_stale_reminders(deps: Deps, clock: FakeClock) -> None:
    view = new_case(deps)
    clock.advance(days=30)
    result = fire_due_deadlines(deps)
    assert (result.reminders, result.missed) == (0, 1)
    assert records(deps, view.case_no, "deadline_reminder") == []


def test_a_met_deadline_never_fires(deps: Deps, clock: FakeClock) -> None:
    view = new_case(deps)
    send(deps, clock, view.case_no, "start_verification")
    send(deps, clock, view.case_no, "file_case", days=3)  # leaves intake: A1 met
    clock.advance(days=40)
    result = fire_due_deadlines(deps)
    assert "A1" not in {r.payload.get("rule") for r in records(deps, view.case_no, "deadline_missed")}
    assert result.fired >= 0


def test_backdated_event_after_a_reminder_is_still_accepted(deps: Deps, clock: FakeClock) -> None:
    view = new_case(deps)
    send(deps, clock, view.case_no, "start_verification")
    clock.advance(days=19)
    assert fire_due_deadlines(deps).reminders == 1
    # The handler records today a decision taken yesterday, before the reminder fired.
    advanced = advance_case(
        deps, view.case_no, "file_case", actor="sm_amr_handler", effective_at=clock() - timedelta(days=1)
    )
    assert advanced.state == "investigating"


def test_pause_stops_alerts_and_resume_reschedules(deps: Deps, clock: FakeClock) -> None:
    view = new_case(deps)
    send(deps, clock, view.case_no, "start_verification")
    send(deps, clock, view.case_no, "suspend", days=1)
    clock.advance(days=40)
    assert fire_due_deadlines(deps).fired == 0  # a paused clock never fires
    resumed = send(deps, clock, view.case_no, "resume")
    a1 = next(d for d in resumed.deadlines if d.rule == "A1")
    assert a1.status == "running" and a1.pauses and a1.pauses[0]["resumed_by"] == "resume"
    assert a1.next_alert_at  # rescheduled from the new due time


def test_due_within_and_overdue_lists(deps: Deps, clock: FakeClock) -> None:
    view = new_case(deps)
    assert [r.rule for r in list_deadlines(deps, due_within=parse_within("30d"))] == ["A1"]
    assert list_deadlines(deps, due_within=parse_within("3d")) == []
    assert list_deadlines(deps, overdue=True) == []
    clock.advance(days=30)
    late = list_deadlines(deps, overdue=True)
    assert [(r.case_no, r.rule, r.status) for r in late] == [(view.case_no, "A1", "missed")]
    assert list_deadlines(deps, actor="mx_amr_handler") == []  # another county's officer sees none


def test_firing_counts_are_exact_in_the_database(deps: Deps, clock: FakeClock) -> None:
    for _ in range(5):
        new_case(deps)
    clock.advance(days=60)
    assert fire_due_deadlines(deps, batch_size=2).missed == 5
    with UnitOfWork(deps, read_only=True) as uow:
        assert uow.session.execute(select(func.count()).select_from(FiredAlert)).scalar_one() == 5
        open_alerts = uow.session.execute(
            select(func.count()).select_from(Deadline).where(Deadline.next_alert_at.is_not(None))  # type: ignore[union-attr]
        ).scalar_one()
        assert open_alerts == 0
        assert (
            uow.session.execute(
                select(func.count()).select_from(CaseEvent).where(CaseEvent.event == "deadline_missed")
            ).scalar_one()
            == 5
        )


@pytest.mark.parametrize("text", ["3x", "", "d"])
def test_bad_due_within(text: str) -> None:
    from states.errors import InvalidInput

    with pytest.raises(InvalidInput):
        parse_within(text)
