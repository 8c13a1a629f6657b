"""Generated official documents (issue 4 item 5), through the use cases on SQLite with an injected clock.

Every kind renders for a case in each state where its record exists and is refused, naming the missing
event, before; the 文号 comes from the issuing agency's sequence; an unchanged case regenerates the same
bytes (same hash, no new row), a changed one a new version under the same 文号; a blank value fails loudly
and writes nothing; only the issuing agency issues; case text is escaped.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from models.tables import Agency, DocumentNumberSequence, GeneratedDocument
from notifications.documents import DOCUMENT_KINDS, MissingField, case_name, check_complete, render_document, sentence
from states.calendar import END_OF_DAY, SHANGHAI
from states.errors import CaseNotFound, InvalidInput, PermissionDenied
from tests.conftest import PATHS, CaseBuilder
from workflows.cases import attach_file
from workflows.documents import generate_document, list_documents, render_case_document, show_document
from workflows.evidence import add_evidence, hand_over
from workflows.supervision import list_for_supervision
from workflows.uow import Deps, UnitOfWork

MR, POLICE, SUPERVISOR = "sm_amr_handler", "sm_psb_handler", "sm_amr_supervisor"
AGENCY = {"sm-amr": "三明市市场监督管理局", "sm-psb": "三明市公安局", "sm-procuratorate": "三明市人民检察院"}

#: kind → (issuing officer, issuing agency, recipient agency, the event it needs, the states it renders in)
AFTER_TRANSFER = [
    "police_review",
    "police_declined",
    "reconsideration",
    "reconsideration_upheld",
    "filing_supervision",
    "evidence_handover",
    "criminal_investigation",
    "prosecution_review",
    "supplementary_investigation",
    "trial",
]
KINDS: dict[str, tuple[str, str, str, str, list[str]]] = {
    "transfer_letter": (MR, "sm-amr", "sm-psb", "approve_referral", ["awaiting_transfer", *AFTER_TRANSFER]),
    "transfer_receipt": (POLICE, "sm-psb", "sm-amr", "transfer_to_police", AFTER_TRANSFER),
    "decline_notice": (
        POLICE,
        "sm-psb",
        "sm-amr",
        "police_decline",
        ["police_declined", "reconsideration", "reconsideration_upheld", "filing_supervision"],
    ),
    "reconsideration_request": (
        MR,
        "sm-amr",
        "sm-psb",
        "request_reconsideration",
        ["reconsideration", "reconsideration_upheld"],
    ),
    "supervision_request": (MR, "sm-amr", "sm-procuratorate", "request_supervision", ["filing_supervision"]),
}
#: A state before each kind's event, where it must be refused.
TOO_EARLY = {
    "transfer_letter": "referral_review",
    "transfer_receipt": "awaiting_transfer",
    "decline_notice": "police_review",
    "reconsideration_request": "police_declined",
    "supervision_request": "reconsideration_upheld",
}
PAIRS = [(kind, state) for kind, spec in KINDS.items() for state in spec[4]]


def rows(deps: Deps) -> tuple[int, int]:
    with UnitOfWork(deps, read_only=True) as uow:
        docs = uow.session.execute(select(func.count()).select_from(GeneratedDocument)).scalar_one()
        issued = uow.session.execute(select(func.coalesce(func.sum(DocumentNumberSequence.last), 0))).scalar_one()
        return docs, issued


@pytest.mark.parametrize(("kind", "state"), PAIRS, ids=[f"{k}@{s}" for k, s in PAIRS])
def test_each_kind_renders_in_each_relevant_state(deps: Deps, builder: CaseBuilder, kind: str, state: str) -> None:
    actor, issuer, recipient, _event, _states = KINDS[kind]
    case = builder.to_state(state, title="三明某公司配方泄露案")
    view = render_case_document(deps, case.case_no, kind, actor=actor)
    assert (view.kind, view.version, view.new, view.issuing_agency, view.recipient_agency) == (
        kind,
        1,
        True,
        issuer,
        recipient,
    )
    prefix = {"sm-amr": "明市监", "sm-psb": "明公"}[issuer]
    assert view.doc_no == f"{prefix}〔2026〕1号"  # the clock is in 2026: the number's year is the issue year
    html = view.html
    for text in (case.case_no, AGENCY[issuer], AGENCY[recipient], view.doc_no, DOCUMENT_KINDS[kind].title):
        assert text in html, text
    assert "三明某公司配方泄露案（案件编号" in html  # a title ending in 案 is not made "…案一案"
    assert "2026年3月" in html  # the issue date, in Beijing time
    assert hashlib.sha256(html.encode()).hexdigest() == view.sha256
    assert "None" not in re.sub(r"<[^>]+>", "", html)


@pytest.mark.parametrize("kind", list(TOO_EARLY))
def test_a_kind_is_refused_before_its_event_naming_it(deps: Deps, builder: CaseBuilder, kind: str) -> None:
    actor, _issuer, _recipient, event, _states = KINDS[kind]
    case = builder.to_state(TOO_EARLY[kind])
    before = rows(deps)
    if kind == "transfer_receipt":  # before the transfer the police do not even see the case
        with pytest.raises(CaseNotFound):
            render_case_document(deps, case.case_no, kind, actor=actor)
    else:
        with pytest.raises(InvalidInput, match=rf"{case.case_no}.*needs {event}.*the case is {TOO_EARLY[kind]}"):
            render_case_document(deps, case.case_no, kind, actor=actor)
    assert rows(deps) == before


def test_the_transfer_letter_states_the_ground_amount_and_deadline(deps: Deps, builder: CaseBuilder) -> None:
    case = builder.to_state("awaiting_transfer")  # propose_referral: ground loss, RMB 500,000
    html = render_case_document(deps, case.case_no, "transfer_letter", actor=MR).html
    assert "给权利人造成损失人民币500,000元" in html
    assert "损失数额人民币300,000元以上" in html  # the configured filing standard
    assert "3日内作出立案或者不予立案的决定" in html  # T7 from config.toml
    assert "2026年3月4日受理" in html


def test_regenerating_an_unchanged_case_gives_the_same_document(deps: Deps, builder: CaseBuilder, clock: Any) -> None:
    case = builder.to_state("awaiting_transfer")
    first = render_case_document(deps, case.case_no, "transfer_letter", actor=MR)
    clock.advance(days=3)  # another day: the document keeps the date it was issued on
    again = render_case_document(deps, case.case_no, "transfer_letter", actor=MR)
    assert (again.sha256, again.doc_no, again.version, again.new) == (first.sha256, first.doc_no, 1, False)
    assert rows(deps) == (1, 1)


def test_a_changed_case_gives_a_new_version_under_the_same_number(
    deps: Deps, builder: CaseBuilder, clock: Any, tmp_path: Path
) -> None:
    case = builder.to_state("awaiting_transfer")
    first = render_case_document(deps, case.case_no, "transfer_letter", actor=MR)
    report = tmp_path / "report.txt"
    report.write_text("调查报告", encoding="utf-8")
    attach_file(deps, case.case_no, "investigation_report", report, actor=MR)
    clock.advance(days=1)
    second = render_case_document(deps, case.case_no, "transfer_letter", actor=MR)
    assert second.new and second.version == 2 and second.doc_no == first.doc_no
    assert second.sha256 != first.sha256 and "report.txt" in second.html
    assert "2026年3月5日" in second.html  # the new version carries its own date
    assert [v.version for v in list_documents(deps, case.case_no)] == [1, 2]
    assert show_document(deps, case.case_no, "transfer_letter", version=1).sha256 == first.sha256
    assert rows(deps) == (2, 1)  # one number issued for both versions


def test_numbers_count_per_issuing_agency(deps: Deps, builder: CaseBuilder) -> None:
    one = builder.to_state("police_declined", title="甲案")
    two = builder.to_state("awaiting_transfer", title="乙案")
    assert render_case_document(deps, one.case_no, "transfer_letter", actor=MR).doc_no == "明市监〔2026〕1号"
    assert render_case_document(deps, two.case_no, "transfer_letter", actor=MR).doc_no == "明市监〔2026〕2号"
    assert render_case_document(deps, one.case_no, "decline_notice", actor=POLICE).doc_no == "明公〔2026〕1号"
    assert render_case_document(deps, one.case_no, "transfer_receipt", actor=POLICE).doc_no == "明公〔2026〕2号"


def test_a_missing_value_fails_loudly_and_writes_nothing(deps: Deps, builder: CaseBuilder) -> None:
    case = builder.to_state("awaiting_transfer")
    del deps.clock_rules["T7"]  # the response period the letter states
    with pytest.raises(InvalidInput, match=r"cannot generate transfer_letter .*no value for response_limit"):
        render_case_document(deps, case.case_no, "transfer_letter", actor=MR)
    assert rows(deps) == (0, 0)  # no document, no number used up


def test_an_agency_without_a_document_prefix_cannot_issue(deps: Deps, builder: CaseBuilder) -> None:
    case = builder.to_state("awaiting_transfer")
    with UnitOfWork(deps) as uow:
        uow.session.execute(update(Agency).where(Agency.code == "sm-amr").values(doc_prefix=""))
        uow.commit()
    with pytest.raises(InvalidInput, match=r"sm-amr .*has no doc_prefix .*config.toml"):
        render_case_document(deps, case.case_no, "transfer_letter", actor=MR)
    assert rows(deps) == (0, 0)


def test_only_the_issuing_agency_issues_and_others_do_not_see_the_case(deps: Deps, builder: CaseBuilder) -> None:
    case = builder.to_state("police_declined")
    with pytest.raises(PermissionDenied, match=r"decline_notice .*issued by 三明市公安局 \(sm-psb\)"):
        render_case_document(deps, case.case_no, "decline_notice", actor=MR)
    with pytest.raises(PermissionDenied, match=r"transfer_letter .*issued by 三明市市场监督管理局"):
        render_case_document(deps, case.case_no, "transfer_letter", actor=POLICE)
    with pytest.raises(CaseNotFound):
        render_case_document(deps, case.case_no, "transfer_letter", actor="mx_amr_handler")
    with pytest.raises(InvalidInput, match=r"unknown document kind 'summons'; use one of transfer_letter"):
        render_case_document(deps, case.case_no, "summons", actor=MR)
    assert rows(deps) == (0, 0)


def test_case_text_is_escaped(deps: Deps, builder: CaseBuilder) -> None:
    case = builder.to_state("police_declined", title="<script>alert(1)</script>配方案")
    for kind, actor in (("transfer_letter", MR), ("decline_notice", POLICE), ("transfer_receipt", POLICE)):
        html = render_case_document(deps, case.case_no, kind, actor=actor).html
        assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;配方案" in html


def test_the_evidence_list_lists_what_was_handed_over(deps: Deps, builder: CaseBuilder, tmp_path: Path) -> None:
    case = builder.to_state("investigating")
    secret = tmp_path / "drawing.bin"
    secret.write_bytes(b"FORMULA")
    add_evidence(deps, case.case_no, actor=MR, type="physical", title="涉案图纸U盘", location="证物室A-3", file=secret)
    add_evidence(deps, case.case_no, actor=MR, type="witness_statement", title="证人询问笔录")
    for step in PATHS["evidence_handover"][len(PATHS["investigating"]) :]:
        if step == "@attach":
            builder.attach_package(case.case_no)
        else:
            builder.send(case.case_no, step)
    with pytest.raises(InvalidInput, match=r"none was handed over yet"):
        render_case_document(deps, case.case_no, "evidence_list", actor=MR)
    hand_over(deps, case.case_no, actor=MR, seal_no="SM-FZ-0042")
    view = render_case_document(deps, case.case_no, "evidence_list", actor=MR)
    assert (view.issuing_agency, view.recipient_agency) == ("sm-amr", "sm-psb")
    html = view.html
    assert "共2项" in html and "涉案图纸U盘" in html and "证人询问笔录" in html and "SM-FZ-0042" in html
    assert hashlib.sha256(b"FORMULA").hexdigest() in html  # the hash, never the content
    assert "FORMULA" not in html.replace(hashlib.sha256(b"FORMULA").hexdigest(), "")
    assert "重新收集" in html and "经审查后使用" in html  # the conversion rule per type (CPL art. 54)


def test_the_supervision_notice_comes_from_the_listing(deps: Deps, builder: CaseBuilder) -> None:
    case = builder.to_state("investigating")
    with pytest.raises(InvalidInput, match=r"needs a listed supervision"):
        render_case_document(deps, case.case_no, "supervision_notice", actor=SUPERVISOR)
    due = datetime.combine(datetime(2026, 4, 30).date(), END_OF_DAY, tzinfo=SHANGHAI)
    sup = list_for_supervision(
        deps, case.case_no, actor=SUPERVISOR, level="city", due=due, every="15d", reason="重点案件，社会关注"
    )
    view = render_case_document(deps, case.case_no, "supervision_notice", actor=SUPERVISOR)
    assert view.issuing_agency == "sm-amr" and view.doc_no == "明市监〔2026〕1号"
    for text in ("市级挂牌督办", "重点案件，社会关注。", "2026年4月30日", "每15日报告"):
        assert text in view.html, text
    assert (
        render_case_document(deps, case.case_no, "supervision_notice", actor=SUPERVISOR, subject_id=sup.id).new is False
    )
    with pytest.raises(InvalidInput, match=rf"needs supervision #{sup.id + 99}"):
        render_case_document(deps, case.case_no, "supervision_notice", actor=SUPERVISOR, subject_id=sup.id + 99)


def test_attach_puts_the_transfer_letter_in_the_package(deps: Deps, builder: CaseBuilder, tmp_path: Path) -> None:
    case = builder.to_state("awaiting_transfer")
    view = generate_document(deps, case.case_no, "transfer_letter", actor=MR, attach=True)
    assert view.attachment == {
        "kind": "transfer_letter",
        "filename": f"{case.case_no}_transfer_letter_v1.html",
        "sha256": view.sha256,  # the stored HTML is what was attached
        "new": True,
    }
    again = generate_document(deps, case.case_no, "transfer_letter", actor=MR, attach=True)
    assert again.attachment is not None and again.attachment["new"] is False


# --- the renderer on its own -------------------------------------------------------------------------


def test_blank_values_are_named_with_their_path() -> None:
    context = {"case": {"case_no": "X-1", "title": " "}, "items": [{"title": "a"}, {"title": None}]}
    with pytest.raises(MissingField) as err:
        check_complete("evidence_list", context)
    assert err.value.fields == ["case.title", "items[1].title"]
    # Declared optional fields may be blank.
    check_complete("evidence_list", {"items": [{"title": "a", "location": "", "seal_no": None}]})


def test_a_template_variable_missing_from_the_context_fails() -> None:
    with pytest.raises(Exception, match="undefined"):
        render_document("decline_notice", {"case": {"case_no": "X-1", "title": "某案"}})


def test_wording_helpers() -> None:
    assert case_name("某公司侵权案") == "某公司侵权案" and case_name("某公司线索") == "某公司线索一案"
    assert sentence("证据不足") == "证据不足。" and sentence("证据不足。") == "证据不足。"
