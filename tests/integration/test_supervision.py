"""Listed supervision (挂牌督办): listing, progress reports, escalation exactly once per missed report, delisting,
auto-listing after a missed statutory deadline, and who may do what. Injected clock (T0 = 2026-03-04 10:00)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from models.tables import OutboxMessage
from states.calendar import END_OF_DAY, SHANGHAI
from states.errors import CaseNotFound, InvalidInput, PermissionDenied, TransitionRefused
from tests.conftest import FakeClock
from workflows.cases import case_history, show_case, verify_audit
from workflows.deadlines import fire_due_deadlines
from workflows.supervision import delist, list_for_supervision, report_progress, show_supervision
from workflows.uow import Deps, UnitOfWork

SUPERVISOR = "sm_amr_supervisor"


def day_end(d: str) -> datetime:
    return datetime.combine(datetime.fromisoformat(d).date(), END_OF_DAY, tzinfo=SHANGHAI)


def history(deps: Deps, case_no: str, event: str) -> list[Any]:
    return [e for e in case_history(deps, case_no) if e.event == event]


def mails(deps: Deps, kind: str = "supervision_notice") -> list[tuple[str, str]]:
    with UnitOfWork(deps, read_only=True) as uow:
        rows = uow.session.execute(select(OutboxMessage).where(OutboxMessage.kind == kind)).scalars()
        return [(r.recipient_user or "", r.body) for r in rows]


def listed(deps: Deps, builder: Any, **kwargs: Any) -> str:
    view = builder.to_state("investigating")
    args: dict[str, Any] = {"level": "city", "due": day_end("2026-04-30"), "every": "15d", "reason": "重点案件"}
    list_for_supervision(deps, view.case_no, actor=SUPERVISOR, **{**args, **kwargs})
    return str(view.case_no)


def test_listing_records_notifies_and_schedules(deps: Deps, builder: Any) -> None:
    case_no = listed(deps, builder)
    [sup] = show_supervision(deps, case_no)
    assert (sup.state, sup.level, sup.handling_agency, sup.listed_by) == ("listed", "city", "sm-amr", SUPERVISOR)
    assert sup.next_report_due_at == "2026-03-19T23:59+08:00"  # 15 days after 4 March (+3 hours of building)
    [record] = history(deps, case_no, "supervision_listed")
    assert record.actor == SUPERVISOR and record.payload["reason"] == "重点案件"
    assert any(user == "sm_amr_handler" and "重点案件" in body for user, body in mails(deps))
    assert verify_audit(deps, case_no).problems == []


def test_a_missed_report_escalates_exactly_once_and_shows_in_history(
    deps: Deps, builder: Any, clock: FakeClock
) -> None:
    case_no = listed(deps, builder)
    clock.advance(days=15)  # 2026-03-19 13:00: report still due today
    assert fire_due_deadlines(deps).escalations == 0
    clock.advance(days=1)  # 2026-03-20: the report of the 19th is missed
    assert fire_due_deadlines(deps).escalations == 1
    assert fire_due_deadlines(deps).escalations == 0
    clock.advance(hours=5)
    assert fire_due_deadlines(deps).escalations == 0
    [escalation] = history(deps, case_no, "supervision_escalated")
    assert escalation.actor == "system" and escalation.payload["reason"] == "report_missed"
    assert escalation.label == "督办升级"
    [sup] = show_supervision(deps, case_no)
    assert sup.escalations == 1 and sup.next_report_due_at == "2026-04-03T23:59+08:00"
    told = {user for user, body in mails(deps) if "逾期未报告进展" in body}
    assert {"sm_amr_supervisor", "fj_amr_supervisor"} <= told  # the listing supervisor and the level above
    assert "sm_amr_handler" not in told
    # The next interval missed too: one more escalation, not a repeat of the first.
    clock.advance(days=15)
    assert fire_due_deadlines(deps).escalations == 1
    assert len(history(deps, case_no, "supervision_escalated")) == 2
    assert verify_audit(deps, case_no).problems == []


def test_a_report_in_time_prevents_escalation(deps: Deps, builder: Any, clock: FakeClock) -> None:
    case_no = listed(deps, builder)
    clock.advance(days=10)
    view = report_progress(deps, case_no, actor="sm_amr_handler", text="已完成证据固定，正在委托鉴定")
    assert (view.state, view.reports) == ("progress_reported", 1)
    assert view.next_report_due_at == "2026-03-30T23:59+08:00"  # 14 March + 15 = Sunday 29th, rolled to Monday
    clock.advance(days=8)  # 22 March: the original report date (19th) has passed, the new one not
    assert fire_due_deadlines(deps).escalations == 0
    assert any(user == SUPERVISOR and "已完成证据固定" in body for user, body in mails(deps))
    [record] = history(deps, case_no, "supervision_report")
    assert record.payload["report"] == "已完成证据固定，正在委托鉴定"


def test_the_due_date_passing_escalates_once(deps: Deps, builder: Any, clock: FakeClock) -> None:
    case_no = listed(deps, builder, due=day_end("2026-03-10"), every="30d")
    clock.advance(days=7)  # 11 March
    result = fire_due_deadlines(deps)
    assert result.escalations == 1
    assert fire_due_deadlines(deps).escalations == 0
    [escalation] = history(deps, case_no, "supervision_escalated")
    assert escalation.payload["reason"] == "due_missed"


def test_delisting_ends_the_listing_and_its_escalations(deps: Deps, builder: Any, clock: FakeClock) -> None:
    case_no = listed(deps, builder)
    with pytest.raises(InvalidInput, match="result"):
        delist(deps, case_no, actor=SUPERVISOR, result=" ")
    view = delist(deps, case_no, actor=SUPERVISOR, result="已移送公安机关立案侦查")
    assert (view.state, view.result, view.delisted_by) == ("delisted", "已移送公安机关立案侦查", SUPERVISOR)
    clock.advance(days=60)
    assert fire_due_deadlines(deps).escalations == 0
    assert len(history(deps, case_no, "supervision_delisted")) == 1
    with pytest.raises(InvalidInput, match="not under listed supervision"):
        report_progress(deps, case_no, actor="sm_amr_handler", text="迟到的报告")
    # Listed again later: a new listing, the old one kept.
    list_for_supervision(
        deps, case_no, actor=SUPERVISOR, level="city", due=day_end("2026-06-30"), every="15d", reason="再次督办"
    )
    assert [s.state for s in show_supervision(deps, case_no)] == ["listed", "delisted"]


def test_who_may_list_report_and_delist(deps: Deps, builder: Any) -> None:
    view = builder.to_state("investigating")
    args: dict[str, Any] = {"level": "city", "due": day_end("2026-04-30"), "every": "15d", "reason": "督办"}
    version = show_case(deps, view.case_no).version
    with pytest.raises(PermissionDenied, match="not a supervisor"):
        list_for_supervision(deps, view.case_no, actor="sm_amr_handler", **args)
    with pytest.raises(PermissionDenied, match="province level"):
        list_for_supervision(deps, view.case_no, actor=SUPERVISOR, **{**args, "level": "province"})
    with pytest.raises(InvalidInput, match="unknown supervision level"):
        list_for_supervision(deps, view.case_no, actor=SUPERVISOR, **{**args, "level": "national"})
    with pytest.raises(InvalidInput, match=r"whole days|not a duration"):
        list_for_supervision(deps, view.case_no, actor=SUPERVISOR, **{**args, "every": "36h"})
    with pytest.raises(InvalidInput, match="not in the future"):
        list_for_supervision(deps, view.case_no, actor=SUPERVISOR, **{**args, "due": day_end("2026-03-01")})
    assert show_case(deps, view.case_no).version == version  # refusals write nothing
    list_for_supervision(deps, view.case_no, actor="fj_amr_supervisor", **{**args, "level": "province"})
    with pytest.raises(InvalidInput, match="already under province-level supervision"):
        list_for_supervision(deps, view.case_no, actor=SUPERVISOR, **args)
    with pytest.raises(CaseNotFound):  # the police do not take part in this case: it does not exist for them
        report_progress(deps, view.case_no, actor="sm_psb_handler", text="x")
    with pytest.raises(PermissionDenied, match="handler of sm-amr"):
        report_progress(deps, view.case_no, actor="sm_amr_liaison", text="x")
    with pytest.raises(PermissionDenied, match="province level or above"):
        delist(deps, view.case_no, actor=SUPERVISOR, result="x")
    delist(deps, view.case_no, actor="fj_amr_supervisor", result="办结")


def test_a_missed_police_decision_auto_lists_the_case_once(deps: Deps, builder: Any, clock: FakeClock) -> None:
    view = builder.to_state("police_review")  # T7: 3 days; [[supervision.auto_list]] rule T7 missed_by 2d
    t7 = next(d for d in view.deadlines if d.rule == "T7")
    due = datetime.fromisoformat(t7.due_at)
    clock.advance(seconds=(due - clock()).total_seconds() + 3600)  # one hour past due: missed, not yet listed
    first = fire_due_deadlines(deps)
    assert (first.missed, first.auto_listed) == (1, 0)
    clock.advance(days=2)  # two days after the miss
    second = fire_due_deadlines(deps)
    assert second.auto_listed == 1
    assert fire_due_deadlines(deps, clock() + timedelta(days=1)).auto_listed == 0
    [sup] = show_supervision(deps, view.case_no)
    assert (sup.level, sup.listed_by, sup.auto_rule, sup.handling_agency) == ("city", "system", "T7", "sm-psb")
    assert "T7" in sup.reason
    [record] = history(deps, view.case_no, "supervision_listed")
    assert record.payload["auto_rule"] == "T7"
    assert any(user == "sm_psb_handler" for user, _ in mails(deps))
    assert verify_audit(deps, view.case_no).problems == []


def test_a_chart_refusal_names_the_allowed_steps(deps: Deps, builder: Any) -> None:
    from workflows.supervision import _send

    class _Row:
        state = "delisted"

    class _Case:
        case_no = "X"

    with pytest.raises(TransitionRefused, match="delist"):
        _send(_Case(), _Row(), "delist")  # type: ignore[arg-type]
