"""Who sees a case and who may send what (ARCHITECTURE.md "Access"; DOMAIN.md "who may send what")."""

from __future__ import annotations

import pytest

from states.errors import CaseNotFound, InvalidInput, PermissionDenied, UnknownActor
from tests.conftest import CaseBuilder
from workflows.cases import advance_case, case_history, list_cases, open_case, show_case
from workflows.uow import Deps


def test_visibility_follows_participation_and_supervisory_jurisdiction(deps: Deps) -> None:
    county = open_case(deps, agency="jl-amr", title="将乐某公司客户名单案", source="complaint", actor="jl_amr_handler")
    no = county.case_no
    assert show_case(deps, no, actor="jl_amr_handler").case_no == no  # owner
    assert show_case(deps, no, actor="sm_amr_supervisor").case_no == no  # city supervisor over its county
    assert show_case(deps, no, actor="fj_amr_supervisor").case_no == no  # province supervisor
    assert show_case(deps, no, actor="admin").case_no == no
    for outsider in ("sm_amr_handler", "mx_amr_handler", "jl_psb_handler", "sm_court_handler", "sm_amr_secretary"):
        with pytest.raises(CaseNotFound):
            show_case(deps, no, actor=outsider)
        with pytest.raises(CaseNotFound):
            case_history(deps, no, actor=outsider)
    assert [v.case_no for v in list_cases(deps, actor="mx_amr_handler")] == []
    assert [v.case_no for v in list_cases(deps, actor="sm_amr_supervisor")] == [no]


def test_supervisors_see_but_may_not_send(deps: Deps) -> None:
    view = open_case(deps, agency="sm-amr", title="三明某公司案", source="report", actor="sm_amr_handler")
    with pytest.raises(PermissionDenied, match="not a handler"):
        advance_case(deps, view.case_no, "start_verification", actor="sm_amr_supervisor")


def test_transfer_makes_the_police_a_participant(builder: CaseBuilder) -> None:
    deps = builder.deps
    view = builder.to_state("awaiting_transfer")
    with pytest.raises(CaseNotFound):
        show_case(deps, view.case_no, actor="sm_psb_handler")
    builder.attach_package(view.case_no)
    builder.send(view.case_no, "transfer_to_police")
    assert show_case(deps, view.case_no, actor="sm_psb_handler").state == "police_review"
    # The county police were not involved: still invisible to them.
    with pytest.raises(CaseNotFound):
        show_case(deps, view.case_no, actor="jl_psb_handler")


def test_police_cannot_indict(builder: CaseBuilder) -> None:
    view = builder.to_state("prosecution_review")
    with pytest.raises(PermissionDenied, match="only procuratorate officers may"):
        advance_case(builder.deps, view.case_no, "indict", actor="sm_psb_handler")


def test_only_handlers_of_a_market_regulator_open_cases(deps: Deps) -> None:
    with pytest.raises(PermissionDenied):
        open_case(deps, agency="sm-amr", title="x", source="report", actor="jl_amr_handler")
    with pytest.raises(Exception, match="opened by a market regulator"):
        open_case(deps, agency="sm-psb", title="x", source="report", actor="sm_psb_handler")
    with pytest.raises(UnknownActor):
        open_case(deps, agency="sm-amr", title="x", source="report", actor="nobody")
    with pytest.raises(Exception, match="unknown lead source"):
        open_case(deps, agency="sm-amr", title="x", source="rumour", actor="sm_amr_handler")


def test_routing_to_a_named_agency_of_the_right_kind(builder: CaseBuilder) -> None:
    view = builder.to_state("awaiting_transfer")
    builder.attach_package(view.case_no)
    with pytest.raises(Exception, match="is a procuratorate agency, not police"):
        builder.send(view.case_no, "transfer_to_police", to_agency="sm-procuratorate")
    moved = builder.send(view.case_no, "transfer_to_police", to_agency="jl-psb")
    assert "jl-psb" in moved.participants and "sm-psb" not in moved.participants


def test_suspending_a_closed_case_says_it_is_closed(builder: CaseBuilder) -> None:
    from states.errors import TransitionRefused

    view = builder.to_state("closed")
    with pytest.raises(TransitionRefused, match=r"allowed now: none \(the case is closed\)"):
        advance_case(builder.deps, view.case_no, "suspend", actor="sm_amr_handler", data={"reason": "x"})


def test_suspend_after_referral_is_denied_with_the_rule(builder: CaseBuilder) -> None:
    view = builder.to_state("police_review")
    with pytest.raises(PermissionDenied, match="only while it is in intake or administrative"):
        advance_case(builder.deps, view.case_no, "suspend", actor="sm_amr_handler", data={"reason": "x"})


def test_joint_investigation_with_repeated_or_owner_agencies(builder: CaseBuilder) -> None:
    view = builder.to_state("investigating")
    joint = builder.send(view.case_no, "start_joint_investigation", agencies="sm-psb, sm-psb,sm-amr,sm-justice")
    assert joint.participants == ["sm-amr", "sm-psb", "sm-justice"]
    builder.send(view.case_no, "end_joint_investigation")
    with pytest.raises(InvalidInput, match="unknown agency in agencies 'xx-psb'"):
        builder.send(view.case_no, "start_joint_investigation", agencies="xx-psb")
