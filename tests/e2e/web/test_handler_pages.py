"""The handler's pages end to end: the case list, the case page and its event forms, in a real browser
(Playwright over Debian's Chromium) and over HTTP, against the live app with the demo data.

Flows that change a case create their own case through the use cases (the module shares one database).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from states.lifecycle import TRANSFER_PACKAGE
from tests.e2e.web.conftest import LiveApp, browser_sign_in, screenshot
from workflows.auth import access_log
from workflows.cases import advance_case, attach_file, case_history, open_case, show_case
from workflows.documents import generate_document
from workflows.meetings import consultation_queue

MR = "sm_amr_handler"
PSB = "sm_psb_handler"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ROW = re.compile(r'<tr class="([^"]*)" data-case="([^"]+)"')


# --- building cases through the use cases ----------------------------------------------------------------------


def verifying_case(live: LiveApp, title: str) -> str:
    view = open_case(live.deps, agency="sm-amr", title=title, source="report", actor=MR)
    advance_case(live.deps, view.case_no, "start_verification", actor=MR)
    return view.case_no


def awaiting_transfer_case(live: LiveApp, title: str) -> str:
    case_no = verifying_case(live, title)
    advance_case(live.deps, case_no, "file_case", actor=MR)
    advance_case(live.deps, case_no, "propose_referral", actor=MR, data={"ground": "loss", "loss_amount": 500000})
    advance_case(live.deps, case_no, "approve_referral", actor=MR)
    return case_no


def police_review_case(live: LiveApp, title: str, files: Path) -> str:
    case_no = awaiting_transfer_case(live, title)
    for kind in TRANSFER_PACKAGE:  # the transfer package of Decree 310 art. 6, as tests/conftest.py attaches it
        path = files / f"{case_no}-{kind}.txt"
        path.write_text(f"{case_no} {kind}\n", encoding="utf-8")
        attach_file(live.deps, case_no, kind, path, actor=MR)
    advance_case(live.deps, case_no, "transfer_to_police", actor=MR)
    return case_no


def csrf_of(client: httpx.Client, path: str = "/cases") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found, "no form with a CSRF token on " + path
    return found.group(1)


def expect_() -> Any:
    from playwright.sync_api import expect

    return expect


# --- in the browser --------------------------------------------------------------------------------------------


def test_a_handler_signs_in_and_moves_a_case_from_verification_to_filing(live_app: LiveApp, page: Any) -> None:
    expect = expect_()
    case_no = verifying_case(live_app, "三明某电子公司芯片版图泄露线索（浏览器）")

    browser_sign_in(page, live_app, MR)
    page.goto(f"{live_app.url}/cases")
    row = page.locator(f"tr[data-case='{case_no}']")
    expect(row).to_be_visible()
    expect(row).to_contain_text("核查")
    expect(row).to_contain_text("A1")  # its nearest deadline: the verification clock
    expect(row).to_have_class(re.compile(r"urgent-(ok|soon|overdue)"))
    screenshot(page, "handler-cases")

    row.get_by_role("link", name=case_no).click()
    page.wait_for_url(re.compile(rf"/cases/{case_no}$"))
    expect(page.locator("#case-state")).to_contain_text("核查")
    expect(page.locator(".lifecycle [aria-current=step]")).to_have_text("核查")
    screenshot(page, "handler-case-verifying")

    form = page.locator("form[data-event=file_case]")
    note = form.get_by_label("备注")
    note.fill("经核查，涉嫌侵犯商业秘密，予以立案")
    expect(form.get_by_label("生效时间（北京时间，留空为现在）")).to_be_visible()
    # By keyboard: from the note, Tab through the effective time (its date and time parts) to the button, Enter.
    button = form.get_by_role("button", name="立案", exact=True)
    note.press("Tab")
    for _ in range(10):
        if button.evaluate("el => el === document.activeElement"):
            break
        page.keyboard.press("Tab")
    expect(button).to_be_focused()
    page.keyboard.press("Enter")

    page.wait_for_url(re.compile(r"done=file_case"))
    expect(page.get_by_role("status")).to_contain_text("立案")
    expect(page.locator("#case-state")).to_contain_text("立案调查")
    expect(page.locator(".lifecycle [aria-current=step]")).to_have_text("立案调查")
    screenshot(page, "handler-case-filed")

    view = show_case(live_app.deps, case_no)
    assert view.state == "investigating"
    last = case_history(live_app.deps, case_no)[-1]
    assert (last.event, last.actor, last.note) == ("file_case", MR, "经核查，涉嫌侵犯商业秘密，予以立案")


def test_a_police_officer_files_a_transferred_case(live_app: LiveApp, page: Any, tmp_path: Path) -> None:
    expect = expect_()
    case_no = police_review_case(live_app, "三明某新能源公司电池配方侵权案（浏览器）", tmp_path)

    browser_sign_in(page, live_app, PSB)
    page.goto(f"{live_app.url}/cases")
    row = page.locator(f"tr[data-case='{case_no}']")
    expect(row).to_contain_text("公安审查")
    expect(row).to_contain_text("T7")  # the police's filing decision clock
    screenshot(page, "police-cases")
    row.get_by_role("link", name=case_no).click()
    page.wait_for_url(re.compile(rf"/cases/{case_no}$"))

    expect(page.locator("#case-state")).to_contain_text("公安审查")
    # Only the police's events are buttons; the market regulator's are not offered here.
    events = set(page.locator("form.event-form").evaluate_all("forms => forms.map(f => f.dataset.event)"))
    assert events == {"police_file", "police_decline", "forward_jurisdiction", "request_supplement"}
    expect(page.locator("form[data-event=police_decline]").get_by_label("理由")).to_have_attribute("required", "")
    expect(page.locator("form[data-event=forward_jurisdiction]").get_by_label("接收机关代码")).to_be_visible()
    screenshot(page, "police-case-review")

    page.locator("form[data-event=police_file]").get_by_role("button", name="公安立案").click()
    page.wait_for_url(re.compile(r"done=police_file"))
    expect(page.locator("#case-state")).to_contain_text("证据移交与转换")
    expect(page.locator(".lifecycle [aria-current=step]")).to_have_text("证据移交与转换")
    screenshot(page, "police-case-filed")

    view = show_case(live_app.deps, case_no)
    assert (view.state, view.phase) == ("evidence_handover", "criminal")
    assert case_history(live_app.deps, case_no)[-1].actor == PSB


def test_a_refused_event_shows_why_and_changes_nothing(live_app: LiveApp, page: Any) -> None:
    expect = expect_()
    case_no = verifying_case(live_app, "三明某食品公司配方泄露线索（冲突）")
    browser_sign_in(page, live_app, MR)
    page.goto(f"{live_app.url}/cases/{case_no}")
    form = page.locator("form[data-event=decline_filing]")

    # A required reason left empty: the browser keeps the form (nothing is sent) and says what is missing.
    reason = form.get_by_label("理由")
    form.get_by_role("button", name="不予立案").click()
    assert reason.evaluate("el => el.validity.valueMissing") is True
    assert show_case(live_app.deps, case_no).version == 2

    # Someone else files the case meanwhile; this page still shows version 2.
    advance_case(live_app.deps, case_no, "file_case", actor=MR)
    reason.fill("线索不实")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        reason.press("Enter")  # the form submits from its field by keyboard
    assert answer.value.status == 409
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text(case_no)
    expect(alert).to_contain_text("expected version 2")
    expect(alert).to_contain_text("立案调查")  # where the case stands now, and what is allowed
    expect(alert).to_contain_text("propose_referral")
    expect(page.locator("#case-state")).to_contain_text("立案调查")
    screenshot(page, "handler-case-refused")

    view = show_case(live_app.deps, case_no)
    assert (view.state, view.version) == ("investigating", 3)
    assert "decline_filing" not in [e.event for e in case_history(live_app.deps, case_no)]


# --- over HTTP -------------------------------------------------------------------------------------------------


def test_a_case_the_officer_may_not_see_answers_404(live_app: LiveApp) -> None:
    case_no = verifying_case(live_app, "三明某机械公司图纸泄露线索（未移送）")
    police = live_app.sign_in(PSB)
    response = police.get(f"/cases/{case_no}")
    assert response.status_code == 404
    assert "（未移送）" not in response.text and case_no in response.text
    assert case_no not in police.get("/cases").text
    assert police.get(f"/cases/{case_no}/documents/transfer_letter").status_code == 404
    assert live_app.sign_in(MR).get(f"/cases/{case_no}").status_code == 200


def test_an_event_form_without_its_csrf_token_is_refused_and_writes_nothing(live_app: LiveApp) -> None:
    case_no = verifying_case(live_app, "三明某公司客户名单泄露线索（CSRF）")
    client = live_app.sign_in(MR)
    before = len(case_history(live_app.deps, case_no))
    logged = len(access_log(live_app.deps, case_no, actor=MR))
    for token in ({}, {"csrf_token": "forged"}):
        response = client.post(
            f"/cases/{case_no}/events", data={"event": "file_case", "expected_version": "2", **token}
        )
        assert response.status_code == 403
        assert "CSRF" in response.text
    view = show_case(live_app.deps, case_no)
    assert (view.state, view.version) == ("verifying", 2)
    assert len(case_history(live_app.deps, case_no)) == before
    assert len(access_log(live_app.deps, case_no, actor=MR)) == logged
    no_csrf = client.post("/cases", data={"agency": "sm-amr", "title": "无令牌", "source": "report"})
    assert no_csrf.status_code == 403


def test_case_text_is_escaped_on_the_list_and_the_case_page(live_app: LiveApp) -> None:
    client = live_app.sign_in(MR)
    title = "<script>alert(1)</script>三明某公司源代码泄露线索"
    response = client.post(
        "/cases", data={"agency": "sm-amr", "title": title, "source": "report", "csrf_token": csrf_of(client)}
    )
    assert response.status_code == 303
    case_no = response.headers["location"].split("/cases/")[1].split("?")[0]
    assert show_case(live_app.deps, case_no).title == title  # the case was opened by the form
    for path in ("/cases", f"/cases/{case_no}", response.headers["location"]):
        text = client.get(path).text
        assert "<script>alert(1)</script>" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;三明某公司源代码泄露线索" in text
    advance_case(live_app.deps, case_no, "start_verification", actor=MR, note="<img src=x onerror=alert(2)>")
    page = client.get(f"/cases/{case_no}").text
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(2)&gt;" in page


def test_reading_the_case_page_logs_evidence_and_document_reads(live_app: LiveApp, tmp_path: Path) -> None:
    case_no = police_review_case(live_app, "三明某材料公司工艺泄露案（访问日志）", tmp_path)
    generate_document(live_app.deps, case_no, "transfer_letter", actor=MR)
    assert access_log(live_app.deps, case_no, actor=MR) == []

    client = live_app.sign_in(PSB)
    page = client.get(f"/cases/{case_no}")
    assert page.status_code == 200
    reads = {(r["username"], r["resource"], r["via"]) for r in access_log(live_app.deps, case_no, actor=MR)}
    assert reads == {(PSB, "evidence", "web"), (PSB, "documents", "web")}

    link = f"/cases/{case_no}/documents/transfer_letter?version=1"
    assert link in page.text
    document = client.get(link)
    assert document.status_code == 200 and "移送书" in document.text
    assert "sandbox" in document.headers["content-security-policy"]
    details = [(r["resource"], r["detail"]) for r in access_log(live_app.deps, case_no, actor=MR)]
    assert details[0] == ("document", "transfer_letter v1")


def test_the_list_is_sorted_by_the_nearest_deadline_and_coloured_by_urgency(live_app: LiveApp) -> None:
    soon = awaiting_transfer_case(live_app, "三明某公司配方泄露案（24小时内移送）")  # T3: 24 hours
    client = live_app.sign_in(MR)
    rows = ROW.findall(client.get("/cases").text)
    classes = dict((case_no, css) for css, case_no in rows)
    assert classes[soon] == "urgent-soon"
    assert classes["sm-amr-2026-0004"] == "urgent-overdue"  # demo: the police's T7 is long missed
    assert classes["sm-amr-2026-0003"] == ""  # demo: closed, no running deadline
    rank = {"urgent-overdue": 0, "urgent-soon": 1, "urgent-ok": 2, "": 3}
    order = [rank[css] for css, _no in rows]
    assert order == sorted(order), rows

    only = ROW.findall(client.get("/cases", params={"state": "awaiting_transfer"}).text)
    assert soon in [no for _css, no in only]
    assert all(show_case(live_app.deps, no).state == "awaiting_transfer" for _css, no in only)
    police = live_app.sign_in(PSB)
    theirs = [no for _css, no in ROW.findall(police.get("/cases", params={"mine": "1"}).text)]
    assert theirs and all("sm-psb" in show_case(live_app.deps, no).participants for no in theirs)


def test_event_forms_carry_their_data_and_only_the_officers_events(live_app: LiveApp, tmp_path: Path) -> None:
    client = live_app.sign_in(MR)
    case_no = verifying_case(live_app, "三明某公司工艺参数泄露案（表单数据）")
    advance_case(live_app.deps, case_no, "file_case", actor=MR)
    page = client.get(f"/cases/{case_no}").text
    form = page[page.index('data-event="propose_referral"') : page.index("</form>", page.index('"propose_referral"'))]
    assert '<select id="ev-propose_referral-ground" name="data.ground" required>' in form
    assert 'name="data.loss_amount" type="number"' in form
    assert '<label for="ev-propose_referral-loss_amount">' in form

    token = CSRF.search(page).group(1)  # type: ignore[union-attr]
    below = client.post(
        f"/cases/{case_no}/events",
        data={
            "event": "propose_referral",
            "expected_version": "3",
            "csrf_token": token,
            "data.ground": "loss",
            "data.loss_amount": "1000",
        },
    )
    assert below.status_code == 409
    assert "below the filing standard" in below.text and 'role="alert"' in below.text
    assert 'value="1000"' in below.text  # what was entered is kept
    moved = client.post(
        f"/cases/{case_no}/events",
        data={
            "event": "propose_referral",
            "expected_version": "3",
            "csrf_token": token,
            "data.ground": "loss",
            "data.loss_amount": "500000",
            "data.reason": "",
            "effective_at": "",
        },
    )
    assert moved.status_code == 303, moved.text
    assert show_case(live_app.deps, case_no).state == "referral_review"
    assert case_history(live_app.deps, case_no)[-1].payload == {"ground": "loss", "loss_amount": 500000}

    missing = client.post(
        f"/cases/{case_no}/events",
        data={"event": "reject_referral", "expected_version": "4", "csrf_token": token},
    )
    assert missing.status_code == 422
    assert "reject_referral needs reason" in missing.text and "Traceback" not in missing.text
    assert show_case(live_app.deps, case_no).state == "referral_review"

    police_only = client.post(
        f"/cases/{case_no}/events", data={"event": "police_file", "expected_version": "4", "csrf_token": token}
    )
    assert police_only.status_code == 403
    assert "only police officers may" in police_only.text

    review = client.get(f"/cases/{case_no}").text
    assert 'data-event="approve_referral"' in review and 'data-event="police_file"' not in review

    asked = client.post(
        f"/cases/{case_no}/consultations",
        data={"topic": "legal_application", "question": "损失数额如何认定？", "csrf_token": token},
    )
    assert asked.status_code == 303
    queue = consultation_queue(live_app.deps)
    assert any(c.case_no == case_no and c.question == "损失数额如何认定？" for c in queue)


@pytest.mark.parametrize("path", ["/cases", "/cases/sm-amr-2026-0001"])
def test_pages_send_a_stranger_to_sign_in(live_app: LiveApp, path: str) -> None:
    response = live_app.client().get(path)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
