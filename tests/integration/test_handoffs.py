"""Hand-offs show the sender the answer they wait for: waiting, answered, missed (issue 4, feedback)."""

from __future__ import annotations

from typing import Any

from tests.conftest import FakeClock
from workflows.deadlines import fire_due_deadlines
from workflows.handoffs import case_handoffs
from workflows.uow import Deps


def test_each_hand_off_shows_its_expected_answer(deps: Deps, builder: Any, clock: FakeClock) -> None:
    case_no = builder.to_state("police_review").case_no
    [transfer] = case_handoffs(deps, case_no, actor="sm_amr_handler")
    assert (transfer.event, transfer.from_agency, transfer.to_agency, transfer.rule, transfer.status) == (
        "transfer_to_police",
        "sm-amr",
        "sm-psb",
        "T7",
        "waiting",
    )
    assert transfer.remaining and transfer.label == "移送公安机关"
    # The police decline: the transfer is answered, and now the market regulator owes an answer (T9).
    builder.send(case_no, "police_decline")
    views = {v.rule: v for v in case_handoffs(deps, case_no)}
    assert views["T7"].status == "answered"
    assert (views["T9"].from_agency, views["T9"].to_agency, views["T9"].status) == ("sm-psb", "sm-amr", "waiting")
    builder.send(case_no, "request_reconsideration")
    clock.advance(days=10)  # the police let T10 run out
    assert {v.rule: v.status for v in case_handoffs(deps, case_no)} == {
        "T7": "answered",
        "T9": "answered",
        "T10": "missed",
    }
    assert fire_due_deadlines(deps).missed == 1  # and the miss escalates through the sweep
    builder.send(case_no, "uphold_decline")
    statuses = {v.rule: v.status for v in case_handoffs(deps, case_no)}
    assert statuses["T10"] == "answered_late" and statuses["T11"] == "waiting"


def test_clocks_on_the_sender_itself_are_not_hand_offs(deps: Deps, builder: Any, clock: FakeClock) -> None:
    case_no = builder.to_state("referral_review").case_no  # A1, A3 and T2 all bind the market regulator
    assert case_handoffs(deps, case_no) == []
    assert case_handoffs(deps, case_no, actor="sm_amr_handler") == []
