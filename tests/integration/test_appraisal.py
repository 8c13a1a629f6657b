"""Technical appraisal records: request (institution, subject, questions), acceptance, opinion (conclusion,
document hash); the decision clock pauses meanwhile and the transfer package then needs the report."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from states.errors import GuardFailed, InvalidEventData, InvalidInput, PermissionDenied
from tests.conftest import FakeClock
from workflows.appraisal import list_appraisals, record_received
from workflows.cases import advance_case, show_case, verify_audit
from workflows.uow import Deps

MR = "sm_amr_handler"
OPINION = hashlib.sha256("鉴定意见书正文".encode()).hexdigest()


def test_an_appraisal_is_requested_accepted_and_completed(deps: Deps, builder: Any, clock: FakeClock) -> None:
    case_no = builder.to_state("investigating").case_no
    with pytest.raises(InvalidEventData, match="needs institution"):
        advance_case(deps, case_no, "request_appraisal", actor=MR, data={"subject": "non_public", "questions": "?"})
    with pytest.raises(InvalidEventData, match="subject must be one of non_public, identity, loss_valuation"):
        advance_case(
            deps,
            case_no,
            "request_appraisal",
            actor=MR,
            data={"institution": "某鉴定所", "subject": "everything", "questions": "?"},
        )
    builder.send(case_no, "request_appraisal", subject="identity", questions="被诉产品与权利人技术信息是否同一")
    assert show_case(deps, case_no).state == "appraisal"
    [requested] = list_appraisals(deps, case_no)
    assert (requested.status, requested.subject_label, requested.institution) == (
        "requested",
        "同一性",
        "福建某司法鉴定所",
    )
    clock.advance(days=2)
    accepted = record_received(deps, case_no, actor=MR)
    assert accepted.status == "received"
    with pytest.raises(InvalidInput, match="already accepted"):
        record_received(deps, case_no, actor=MR)
    with pytest.raises(PermissionDenied):
        record_received(deps, case_no, actor="sm_amr_liaison")
    with pytest.raises(InvalidEventData, match="SHA-256"):
        builder.send(case_no, "complete_appraisal", opinion_sha256="not-a-hash")
    clock.advance(days=20)
    builder.send(case_no, "complete_appraisal", opinion_sha256=OPINION.upper())
    [done] = list_appraisals(deps, case_no)
    assert (done.status, done.conclusion, done.opinion_sha256) == ("completed", "涉案技术信息不为公众所知悉", OPINION)
    assert done.received_at and done.completed_at
    a3 = next(d for d in show_case(deps, case_no).deadlines if d.rule == "A3")
    assert a3.pauses and a3.pauses[0]["paused_by"] == "request_appraisal"  # the decision clock paused meanwhile
    with pytest.raises(InvalidInput, match="not under appraisal"):
        record_received(deps, case_no, actor=MR)
    assert verify_audit(deps, case_no).problems == []


def test_after_an_appraisal_the_transfer_needs_its_report(builder: Any) -> None:
    case_no = builder.to_state("appraisal").case_no
    for event in ("complete_appraisal", "propose_referral", "approve_referral"):
        builder.send(case_no, event)
    builder.attach_package(case_no)
    with pytest.raises(GuardFailed, match="appraisal_report"):
        builder.send(case_no, "transfer_to_police")
