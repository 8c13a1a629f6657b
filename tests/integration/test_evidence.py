"""The evidence registry and its conversion at the hand-over (issue 4, evidence part), through the use cases."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from models.tables import CaseEvent, CustodyEntry, EvidenceItem
from states.errors import CaseNotFound, GuardFailed, InvalidInput, PermissionDenied
from workflows.cases import case_history, replay_case, show_case, verify_audit
from workflows.evidence import add_evidence, hand_over, list_evidence, resolve_evidence
from workflows.uow import Deps, UnitOfWork

MR, POLICE = "sm_amr_handler", "sm_psb_handler"


def counts(deps: Deps) -> tuple[int, int, int]:
    with UnitOfWork(deps, read_only=True) as uow:
        return tuple(  # type: ignore[return-value]
            uow.session.execute(select(func.count()).select_from(model)).scalar_one()
            for model in (EvidenceItem, CustodyEntry, CaseEvent)
        )


@pytest.fixture
def handover_case(builder: Any, tmp_path: Path) -> tuple[str, dict[str, int]]:
    """A case whose market regulator registered physical, electronic and witness evidence, now at the hand-over."""
    view = builder.to_state("investigating")
    drawing = tmp_path / "drawing.bin"
    drawing.write_bytes(b"TOP-SECRET-FORMULA-7731")
    ids = {
        "physical": add_evidence(
            builder.deps,
            view.case_no,
            actor=MR,
            type="physical",
            title="涉案图纸U盘",
            location="证物室A-3",
            file=drawing,
        ).id,
        "electronic": add_evidence(
            builder.deps, view.case_no, actor=MR, type="electronic_data", title="服务器日志", location="取证镜像"
        ).id,
        "witness": add_evidence(
            builder.deps, view.case_no, actor=MR, type="witness_statement", title="证人询问笔录"
        ).id,
    }
    for event in ("propose_referral", "approve_referral"):
        builder.send(view.case_no, event)
    builder.attach_package(view.case_no)
    for event in ("transfer_to_police", "police_file"):
        builder.send(view.case_no, event)
    return view.case_no, ids


def test_handover_waits_for_the_witness_statement_and_the_custody_log_is_in_order(
    deps: Deps, builder: Any, handover_case: tuple[str, dict[str, int]]
) -> None:
    case_no, ids = handover_case
    handed = hand_over(deps, case_no, actor=MR, seal_no="三市监封〔2026〕17号")
    assert {v.id: v.state for v in handed} == {
        ids["physical"]: "handed_over",
        ids["electronic"]: "handed_over",
        ids["witness"]: "recollection_required",  # CPL art. 54: statements are taken again by the police
    }
    with pytest.raises(GuardFailed, match="not yet resolved") as refused:
        builder.send(case_no, "complete_handover")
    assert all(f"#{i}" in str(refused.value) for i in ids.values())
    with pytest.raises(GuardFailed, match="第五十四条"):
        resolve_evidence(deps, ids["witness"], "admitted", actor=POLICE)
    resolve_evidence(deps, ids["physical"], "admitted", actor=POLICE)
    resolve_evidence(deps, ids["electronic"], "admitted", actor=POLICE)
    with pytest.raises(GuardFailed) as still:
        builder.send(case_no, "complete_handover")
    assert f"#{ids['witness']}" in str(still.value) and f"#{ids['physical']}" not in str(still.value)
    resolve_evidence(deps, ids["witness"], "recollected", actor=POLICE, reason="侦查人员重新询问证人")
    assert builder.send(case_no, "complete_handover").state == "criminal_investigation"

    items = {v.id: v for v in list_evidence(deps, case_no)}
    log = sorted(
        (int(c["seq"]), v.id, c["action"], c["from_agency"], c["to_agency"], c["seal_no"])
        for v in items.values()
        for c in v.custody
    )
    assert [(i, a) for _s, i, a, *_ in log] == [
        (ids["physical"], "registered"),
        (ids["electronic"], "registered"),
        (ids["witness"], "registered"),
        (ids["physical"], "handed_over"),
        (ids["electronic"], "handed_over"),
        (ids["witness"], "handed_over"),
        (ids["witness"], "recollection_required"),
        (ids["physical"], "admitted"),
        (ids["electronic"], "admitted"),
        (ids["witness"], "recollected"),
    ]
    assert {(f, t, s) for _s, _i, a, f, t, s in log if a == "handed_over"} == {
        ("sm-amr", "sm-psb", "三市监封〔2026〕17号")
    }
    events = [e.event for e in case_history(deps, case_no)]
    assert events.count("evidence_registered") == 3 and "evidence_handed_over" in events
    assert events.count("evidence_resolved") == 3
    assert verify_audit(deps, case_no).problems == []
    assert replay_case(deps, case_no).matches


def test_only_the_hash_of_a_file_is_kept(deps: Deps, handover_case: tuple[str, dict[str, int]]) -> None:
    case_no, ids = handover_case
    item = next(v for v in list_evidence(deps, case_no) if v.id == ids["physical"])
    assert item.sha256 == hashlib.sha256(b"TOP-SECRET-FORMULA-7731").hexdigest() and item.file_name == "drawing.bin"
    db_file = Path(deps.engine.url.database or "")
    deps.engine.dispose()
    blob = db_file.read_bytes() + b"".join(p.read_bytes() for p in db_file.parent.glob(db_file.name + "-*"))
    assert b"TOP-SECRET-FORMULA-7731" not in blob


def test_exclusion_needs_reasons_and_resolves_the_item(deps: Deps, handover_case: tuple[str, dict[str, int]]) -> None:
    case_no, ids = handover_case
    hand_over(deps, case_no, actor=MR, seal_no="封001")
    before = counts(deps)
    with pytest.raises(InvalidInput, match="reasons"):
        resolve_evidence(deps, ids["witness"], "excluded", actor=POLICE)
    assert counts(deps) == before
    view = resolve_evidence(deps, ids["witness"], "excluded", actor=POLICE, reason="证人已无法联系，笔录不作证据使用")
    assert (view.state, view.resolution_reason, view.resolved_by) == (
        "excluded",
        "证人已无法联系，笔录不作证据使用",
        POLICE,
    )


def test_bad_input_writes_nothing(deps: Deps, builder: Any, tmp_path: Path) -> None:
    view = builder.to_state("investigating")
    case_no = view.case_no
    item = tmp_path / "ledger.xlsx"
    item.write_bytes(b"ledger")
    add_evidence(deps, case_no, actor=MR, type="documentary", title="账册", file=item)
    before, version = counts(deps), show_case(deps, case_no).version
    attempts: list[tuple[type[Exception], str, dict[str, Any]]] = [
        (InvalidInput, "unknown evidence type", {"type": "rumour"}),
        (InvalidInput, "file not found", {"file": tmp_path / "missing.bin"}),
        (InvalidInput, "does not match the declared SHA-256", {"file": item, "sha256": "0" * 64}),
        (InvalidInput, "is not a SHA-256", {"sha256": "abc"}),
        (InvalidInput, "already evidence", {"file": item}),
        (InvalidInput, "needs a title", {"title": " "}),
        (PermissionDenied, "registered by a handler of the market regulator", {"actor": "sm_amr_liaison"}),
        (CaseNotFound, "not found", {"actor": "mx_amr_handler"}),
    ]
    for error, message, change in attempts:
        args: dict[str, Any] = {"actor": MR, "type": "physical", "title": "样品", **change}
        with pytest.raises(error, match=message):
            add_evidence(deps, case_no, **args)
    with pytest.raises(InvalidInput, match="state evidence_handover"):
        hand_over(deps, case_no, actor=MR, seal_no="封002")
    with pytest.raises(InvalidInput, match="seal number"):
        hand_over(deps, case_no, actor=MR, seal_no="")
    with pytest.raises(InvalidInput, match="no evidence #999"):
        resolve_evidence(deps, 999, "admitted", actor=POLICE)
    with pytest.raises(InvalidInput, match="unknown resolution"):
        resolve_evidence(deps, 1, "accepted", actor=POLICE)
    assert counts(deps) == before and show_case(deps, case_no).version == version


def test_who_may_hand_over_and_decide(deps: Deps, handover_case: tuple[str, dict[str, int]]) -> None:
    case_no, ids = handover_case
    with pytest.raises(PermissionDenied, match="market regulator"):
        hand_over(deps, case_no, actor=POLICE, seal_no="封003")
    with pytest.raises(CaseNotFound):
        hand_over(deps, case_no, actor="jl_amr_handler", seal_no="封003")
    with pytest.raises(InvalidInput, match="not a police agency taking part"):
        hand_over(deps, case_no, actor=MR, seal_no="封003", to_agency="jl-psb")
    hand_over(deps, case_no, actor=MR, seal_no="封003", item_ids=[ids["physical"]])
    with pytest.raises(PermissionDenied, match="held by sm-psb"):
        resolve_evidence(deps, ids["physical"], "admitted", actor=MR)
    with pytest.raises(PermissionDenied, match="held by sm-amr"):
        resolve_evidence(deps, ids["electronic"], "admitted", actor=POLICE)  # not handed over yet
    resolve_evidence(deps, ids["physical"], "admitted", actor=POLICE)
    with pytest.raises(InvalidInput, match="admitted; exclude is not possible"):
        resolve_evidence(deps, ids["physical"], "excluded", actor=POLICE, reason="再议")  # a decision is final
