"""Clock changes made inside the transition, with an injected clock and hand-counted due dates.

T0 is Wednesday 2026-03-04 10:00 in Beijing; no public holiday falls in March 2026.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from models.tables import CaseEvent, Deadline
from states.calendar import SHANGHAI
from states.errors import GuardFailed
from tests.conftest import EVENT_DATA, FakeClock, actor_for
from workflows.cases import CaseView, advance_case, open_case, show_case
from workflows.uow import Deps, UnitOfWork


def send(deps: Deps, clock: FakeClock, case_no: str, event: str, *, days: float = 0, **data: Any) -> CaseView:
    clock.advance(days=days, minutes=1)
    return advance_case(deps, case_no, event, actor=actor_for(event), data={**EVENT_DATA.get(event, {}), **data})


def deadline(view: CaseView, rule: str, index: int = -1) -> Any:
    rows = [d for d in view.deadlines if d.rule == rule]
    assert rows, f"no {rule} deadline in {[d.rule for d in view.deadlines]}"
    return rows[index]


def new_case(deps: Deps) -> CaseView:
    return open_case(deps, agency="sm-amr", title="三明某公司工艺泄露案", source="report", actor="sm_amr_handler")


def test_a1_starts_at_intake_in_working_days(deps: Deps) -> None:
    view = new_case(deps)
    a1 = deadline(view, "A1")
    # 15 working days after Wed 4 March: 5, 6 | 9-13 | 16-20 | 23, 24, 25 March.
    assert (a1.status, a1.due_at, a1.provisional) == ("running", "2026-03-25T23:59+08:00", False)
    assert "第十八条" in a1.basis


def test_suspension_pauses_and_resume_moves_the_due_date(deps: Deps, clock: FakeClock) -> None:
    view = new_case(deps)
    send(deps, clock, view.case_no, "start_verification")
    paused = send(deps, clock, view.case_no, "suspend", days=2)  # Fri 6 March
    assert deadline(paused, "A1").status == "paused"
    resumed = send(deps, clock, view.case_no, "resume", days=5)  # Wed 11 March: 9, 10, 11 were working days
    a1 = deadline(resumed, "A1")
    assert (a1.status, a1.due_at) == ("running", "2026-03-30T23:59+08:00")  # 25 March + 3 working days


def test_verification_extension_once_then_refused(deps: Deps, clock: FakeClock) -> None:
    view = new_case(deps)
    send(deps, clock, view.case_no, "start_verification")
    extended = send(deps, clock, view.case_no, "extend_verification", days=1)
    a1 = deadline(extended, "A1")
    assert (a1.due_at, a1.extensions_used) == ("2026-04-16T23:59+08:00", 1)  # +15 wd, 4-6 April Qingming
    with pytest.raises(GuardFailed, match="only once"):
        send(deps, clock, view.case_no, "extend_verification")
    assert show_case(deps, view.case_no).version == extended.version


def test_investigation_extension_respects_the_rule_limit(deps: Deps, clock: FakeClock) -> None:
    view = new_case(deps)
    send(deps, clock, view.case_no, "start_verification")
    filed = send(deps, clock, view.case_no, "file_case", days=1)
    a3 = deadline(filed, "A3")
    # 90 calendar days from Thu 5 March is Wed 3 June (a working day).
    assert a3.due_at == "2026-06-03T23:59+08:00"
    once = send(deps, clock, view.case_no, "extend_investigation", days=1)
    assert deadline(once, "A3").due_at == "2026-07-03T23:59+08:00"
    with UnitOfWork(deps, read_only=True) as uow:
        events_before = uow.session.execute(select(func.count()).select_from(CaseEvent)).scalar_one()
    with pytest.raises(GuardFailed, match="already extended 1 time"):
        send(deps, clock, view.case_no, "extend_investigation")
    with UnitOfWork(deps, read_only=True) as uow:
        assert uow.session.execute(select(func.count()).select_from(CaseEvent)).scalar_one() == events_before
    assert deadline(show_case(deps, view.case_no), "A3").extensions_used == 1


def test_extension_needs_a_real_approver(deps: Deps, clock: FakeClock) -> None:
    view = new_case(deps)
    send(deps, clock, view.case_no, "start_verification")
    with pytest.raises(Exception, match="unknown or inactive officer 'ghost'"):
        send(deps, clock, view.case_no, "extend_verification", approved_by="ghost")


def test_appraisal_pauses_the_decision_clock(deps: Deps, clock: FakeClock) -> None:
    view = new_case(deps)
    send(deps, clock, view.case_no, "start_verification")
    send(deps, clock, view.case_no, "file_case")
    appraising = send(deps, clock, view.case_no, "request_appraisal", days=1)
    assert deadline(appraising, "A3").status == "paused"
    back = send(deps, clock, view.case_no, "complete_appraisal", days=20)
    a3 = deadline(back, "A3")
    assert a3.status == "running"
    # 90 days from Wed 4 March = Tue 2 June, moved by the 20 paused days = Mon 22 June.
    assert a3.due_at == "2026-06-22T23:59+08:00"


def test_transfer_clock_counts_hours(deps: Deps, clock: FakeClock) -> None:
    view = new_case(deps)
    for event in ("start_verification", "file_case", "propose_referral"):
        send(deps, clock, view.case_no, event)
    approved = send(deps, clock, view.case_no, "approve_referral")
    t3 = deadline(approved, "T3")
    expected = (clock.now + timedelta(hours=24)).astimezone(SHANGHAI)
    assert t3.due_at == expected.isoformat(timespec="minutes")
    assert deadline(approved, "T2").status == "met"


def test_a_clock_stopped_after_its_due_time_is_missed(deps: Deps, clock: FakeClock) -> None:
    view = new_case(deps)
    send(deps, clock, view.case_no, "start_verification")
    late = send(deps, clock, view.case_no, "file_case", days=30)
    assert deadline(late, "A1").status == "missed"
    assert deadline(late, "A3").status == "running"


def test_running_clock_past_due_shows_missed_and_overdue(deps: Deps, clock: FakeClock) -> None:
    view = new_case(deps)
    clock.advance(days=40)
    a1 = deadline(show_case(deps, view.case_no), "A1")
    assert a1.status == "missed" and a1.overdue and a1.remaining.startswith("-")


def test_prosecution_review_restarts_on_resubmission(builder: Any, clock: FakeClock) -> None:
    view = builder.to_state("prosecution_review")
    deps = builder.deps
    send(deps, clock, view.case_no, "return_for_supplementary_investigation", days=10)
    back = send(deps, clock, view.case_no, "resubmit", days=20)
    c4 = [d for d in back.deadlines if d.rule == "C4"]
    c5 = deadline(back, "C5")
    assert [d.status for d in c4] == ["met", "running"]
    assert c5.status == "met"
    with UnitOfWork(deps, read_only=True) as uow:
        rows = uow.session.execute(select(Deadline).where(Deadline.rule == "C4").order_by(Deadline.id)).scalars()
        first, second = [(r.started_by, r.started_at, r.due_at) for r in rows]
    assert first[0] == "submit_for_prosecution" and second[0] == "resubmit"
    assert second[2] > first[2] and second[1] > first[1]


def test_deadline_in_2027_is_provisional_not_a_crash(deps: Deps, clock: FakeClock) -> None:
    clock.now = clock.now.replace(year=2026, month=12, day=20)
    view = new_case(deps)
    a1 = deadline(view, "A1")
    assert a1.provisional and "2027" in a1.provisional_reason
