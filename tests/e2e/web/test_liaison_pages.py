"""The secretary's and the supervisor's pages end to end: the consultation queue and scheduling, the meeting
page (agenda, attendance, minutes, move, cancel, .ics), the supervision dashboard, its drill-down and its
Excel export — in a real browser (Playwright over Debian's Chromium) and over HTTP, against the live app
with the demo data.

Flows that change something create their own case and consultation request through the use cases (the
module shares one database).
"""

from __future__ import annotations

import io
import re
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from openpyxl import load_workbook

from app.web.export import XLSX
from states.calendar import SHANGHAI
from states.lifecycle import state_label
from tests.e2e.web.conftest import LiveApp, browser_sign_in, screenshot
from workflows.bulletins import STAGES, Period, compute_figures
from workflows.cases import open_case
from workflows.deadlines import list_deadlines
from workflows.meetings import (
    ConsultationView,
    consultation_queue,
    list_action_items,
    list_meetings,
    request_consultation,
    schedule_meeting,
    show_meeting,
)
from workflows.supervision import list_for_supervision

MR = "sm_amr_handler"
PSB = "sm_psb_handler"
SECRETARY = "sm_amr_secretary"
SUPERVISOR = "sm_amr_supervisor"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ALERT = re.compile(r'role="alert">([^<]*)<')
MEETING_URL = re.compile(r"^/meetings/(\d+)\?done=")


def consultation(
    live: LiveApp, title: str, question: str = "涉案配方是否构成商业秘密中的技术信息？"
) -> ConsultationView:
    """A new case of the market regulator's handler with an open consultation request on it."""
    case = open_case(live.deps, agency="sm-amr", title=title, source="report", actor=MR)
    return request_consultation(live.deps, case.case_no, actor=MR, topic="evidence_recognition", question=question)


def ahead(live: LiveApp, days: int = 10) -> datetime:
    """A future meeting time, 09:30 Beijing time."""
    day = (live.deps.now() + timedelta(days=days)).astimezone(SHANGHAI)
    return day.replace(hour=9, minute=30, second=0, microsecond=0)


def local_input(at: datetime) -> str:
    return at.astimezone(SHANGHAI).strftime("%Y-%m-%dT%H:%M")


def csrf_of(client: httpx.Client, path: str = "/secretary") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found, "no form with a CSRF token on " + path
    return found.group(1)


def cells(content: bytes) -> list[list[Any]]:
    sheet = load_workbook(io.BytesIO(content)).active
    assert sheet is not None
    return [list(row) for row in sheet.iter_rows(values_only=True)]


def expect_() -> Any:
    from playwright.sync_api import expect

    return expect


# --- in the browser --------------------------------------------------------------------------------------------


def test_a_secretary_schedules_a_consultation(live_app: LiveApp, page: Any) -> None:
    expect = expect_()
    request = consultation(live_app, "三明某化工公司配方泄露线索（会商）")
    at = ahead(live_app)

    browser_sign_in(page, live_app, SECRETARY)
    expect(page).to_have_url(f"{live_app.url}/secretary")  # a secretary's first page
    queue = page.locator("#schedule-consultation")
    expect(queue.get_by_role("link", name=request.case_no)).to_be_visible()
    screenshot(page, "secretary-queue")

    queue.get_by_label(f"选择会商申请 #{request.id}").check()
    queue.get_by_label("会商时间（北京时间）").fill(local_input(at))
    queue.get_by_label("地点", exact=True).fill("三明市市场监督管理局 三楼会议室")
    queue.get_by_role("button", name="安排会商并发出通知").click()
    page.wait_for_load_state("load")

    found = MEETING_URL.match(page.url.removeprefix(live_app.url))
    assert found, page.url
    expect(page.locator("#meeting-state")).to_have_text("已通知")
    expect(page.locator("#agenda").get_by_role("link", name=request.case_no)).to_have_attribute(
        "href", f"/cases/{request.case_no}"
    )
    expect(page.get_by_role("status")).to_contain_text("会议已安排")
    screenshot(page, "meeting-consultation")

    meeting = show_meeting(live_app.deps, int(found.group(1)))
    assert meeting.kind == "consultation" and meeting.state == "noticed"
    assert [c["id"] for c in meeting.consultations] == [request.id]
    assert meeting.starts_at == at.isoformat(timespec="minutes")
    assert request.id not in {c.id for c in consultation_queue(live_app.deps)}  # no longer waiting


def test_a_supervisor_sees_the_overdue_case_on_the_dashboard_and_exports_it(live_app: LiveApp, page: Any) -> None:
    expect = expect_()
    overdue = list_deadlines(live_app.deps, actor=SUPERVISOR, overdue=True)
    assert overdue, "the demo has overdue deadlines"
    case_no = overdue[0].case_no

    browser_sign_in(page, live_app, SUPERVISOR)
    expect(page).to_have_url(f"{live_app.url}/supervisor")  # a supervisor's first page
    table = page.locator("table#overdue")
    expect(table.get_by_role("link", name=case_no).first).to_have_attribute("href", f"/cases/{case_no}")
    expect(page.locator("#chart-phases svg")).to_be_visible()
    screenshot(page, "supervisor-dashboard")

    with page.expect_download() as info:
        page.locator("#export-overdue").click()
    download = info.value
    assert download.suggested_filename.startswith("jointcase-overdue-")
    assert download.suggested_filename.endswith(".xlsx")
    rows = cells(Path(download.path()).read_bytes())
    assert rows[0][:3] == ["县区", "责任机关", "案件编号"]
    assert case_no in {row[2] for row in rows[1:]}

    page.locator("#by-agency").get_by_role("link").first.click()  # drill down from a count
    page.wait_for_load_state("load")
    assert page.url.startswith(f"{live_app.url}/supervisor/cases?")
    expect(page.locator("table#drill a[href^='/cases/']").first).to_be_visible()
    screenshot(page, "supervisor-drilldown")


def test_a_secretary_records_the_minutes_with_an_added_resolution_row(live_app: LiveApp, page: Any) -> None:
    expect = expect_()
    request = consultation(live_app, "三明某茶业公司拼配工艺泄露线索（纪要，浏览器）")
    meeting = schedule_meeting(
        live_app.deps,
        actor=SECRETARY,
        kind="consultation",
        at=live_app.deps.now() + timedelta(hours=2),
        place="三楼",
        requests=[request.id],
    )
    real_clock = live_app.deps.clock
    live_app.deps.clock = lambda: real_clock() + timedelta(hours=2, minutes=30)  # the meeting is on now
    try:
        browser_sign_in(page, live_app, SECRETARY)
        page.goto(f"{live_app.url}/meetings/{meeting.id}")
        page.get_by_label("三明市市场监督管理局", exact=True).fill("刘婷，王强")
        page.get_by_role("button", name="记录出席").click()
        page.wait_for_load_state("load")
        expect(page.locator("#meeting-state")).to_have_text("已召开")

        form = page.locator("#minutes-form")
        form.get_by_label("纪要正文").fill("会议认定涉案工艺构成技术信息，建议移送。")
        form.get_by_role("button", name="再加一项议定事项").click()  # liaison.js: a fourth row
        form.locator("#res-text-3").fill("补充调取服务器日志")
        form.locator("#res-owner-3").select_option("sm-amr")
        form.locator("#res-case-3").select_option(request.case_no)
        screenshot(page, "meeting-minutes-form")
        form.get_by_role("button", name="通过纪要并分派议定事项").click()
        page.wait_for_load_state("load")
        expect(page.locator("#meeting-state")).to_have_text("纪要已通过")
        expect(page.locator("#action-items").get_by_role("cell", name="补充调取服务器日志")).to_be_visible()
        screenshot(page, "meeting-minutes-approved")
    finally:
        live_app.deps.clock = real_clock
    items = [a for a in list_action_items(live_app.deps) if a.meeting_id == meeting.id]
    assert [(a.text, a.owner_agency, a.case_no) for a in items] == [("补充调取服务器日志", "sm-amr", request.case_no)]


# --- over HTTP ----------------------------------------------------------------------------------------------------


def test_a_handler_may_not_open_the_secretary_or_supervisor_pages(live_app: LiveApp) -> None:
    with closing(live_app.sign_in(PSB)) as client:
        for path in ("/secretary", "/supervisor", "/supervisor/cases?kind=overdue", "/supervisor/export.xlsx"):
            response = client.get(path)
            assert response.status_code == 403, path
            assert response.headers["content-type"].startswith("text/html")
            assert 'role="alert"' in response.text
        before = len(list_meetings(live_app.deps))
        token = csrf_of(client, "/cases")
        response = client.post(
            "/secretary/meetings",
            data={
                "csrf_token": token,
                "kind": "joint_meeting",
                "at": "2030-01-08T09:30",
                "place": "x",
                "invited": "sm-psb",
            },
        )
        assert response.status_code == 403
        assert len(list_meetings(live_app.deps)) == before


def test_scheduling_without_the_csrf_token_is_refused_and_writes_nothing(live_app: LiveApp) -> None:
    request = consultation(live_app, "三明某机械公司图纸泄露线索（无令牌）")
    before = len(list_meetings(live_app.deps))
    with closing(live_app.sign_in(SECRETARY)) as client:
        form = {
            "kind": "consultation",
            "at": local_input(ahead(live_app)),
            "place": "三楼",
            "requests": str(request.id),
        }
        for token in (None, "forged"):
            response = client.post("/secretary/meetings", data=form | ({"csrf_token": token} if token else {}))
            assert response.status_code in (401, 403), response.text
            assert "Traceback" not in response.text
    assert len(list_meetings(live_app.deps)) == before
    assert request.id in {c.id for c in consultation_queue(live_app.deps)}  # still waiting


def test_a_refused_schedule_shows_the_reason_on_the_page(live_app: LiveApp) -> None:
    request = consultation(live_app, "三明某食品公司工艺泄露线索（过去的时间）")
    with closing(live_app.sign_in(SECRETARY)) as client:
        token = csrf_of(client)
        past = local_input(live_app.deps.now() - timedelta(days=1))
        response = client.post(
            "/secretary/meetings",
            data={
                "csrf_token": token,
                "kind": "consultation",
                "at": past,
                "place": "三楼",
                "requests": str(request.id),
            },
        )
        assert response.status_code == 422
        assert "is in the past" in ALERT.search(response.text).group(1)  # type: ignore[union-attr]
        assert f'value="{past}"' in response.text  # what was typed is kept to correct it
        response = client.post(
            "/secretary/meetings",
            data={"csrf_token": token, "kind": "consultation", "at": local_input(ahead(live_app)), "place": "三楼"},
        )
        assert response.status_code == 422
        assert "one or more requests" in ALERT.search(response.text).group(1)  # type: ignore[union-attr]
    assert request.id in {c.id for c in consultation_queue(live_app.deps)}


def test_an_unknown_meeting_is_a_404_page(live_app: LiveApp) -> None:
    with closing(live_app.sign_in(SECRETARY)) as client:
        for path in ("/meetings/987654", "/meetings/987654.ics"):
            response = client.get(path)
            assert response.status_code == 404, path
            assert response.headers["content-type"].startswith("text/html")
            assert "987654" in ALERT.search(response.text).group(1)  # type: ignore[union-attr]
        token = csrf_of(client)
        response = client.post("/meetings/987654/cancel", data={"csrf_token": token, "reason": "x"})
        assert response.status_code == 404


def test_a_meeting_title_and_a_question_with_markup_are_escaped(live_app: LiveApp) -> None:
    evil = "<script>alert(1)</script>"
    request = consultation(live_app, "三明某软件公司源代码泄露线索（转义）", question=f"{evil}是否构成技术信息？")
    meeting = schedule_meeting(
        live_app.deps,
        actor=SECRETARY,
        kind="joint_meeting",
        at=ahead(live_app, 20),
        place="三楼",
        title=evil,
        invited=["sm-psb"],
    )
    with closing(live_app.sign_in(SECRETARY)) as client:
        for path in ("/secretary", f"/meetings/{meeting.id}"):
            body = client.get(path).text
            assert evil not in body, path
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body, path
        assert request.id in {c.id for c in consultation_queue(live_app.deps)}


def test_the_invitation_downloads_as_icalendar(live_app: LiveApp) -> None:
    meeting = schedule_meeting(
        live_app.deps, actor=SECRETARY, kind="joint_meeting", at=ahead(live_app, 21), place="三楼", invited=["sm-psb"]
    )
    with closing(live_app.sign_in(SECRETARY)) as client:
        response = client.get(f"/meetings/{meeting.id}.ics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/calendar")
    assert f'filename="meeting-{meeting.id}.ics"' in response.headers["content-disposition"]
    assert "BEGIN:VCALENDAR" in response.text and f"UID:{meeting.uid}" in response.text


def test_preparing_the_joint_meeting_shows_its_agenda(live_app: LiveApp) -> None:
    request = consultation(live_app, "三明某纺织公司工艺泄露线索（联席会议）")
    with closing(live_app.sign_in(SECRETARY)) as client:
        page = client.get("/secretary").text
        period = re.search(r'id="p-period" name="period"[^>]* value="([^"]+)"', page)
        assert period, "the prepare form suggests the next period"
        token = CSRF.search(page).group(1)  # type: ignore[union-attr]
        response = client.post("/secretary/prepare", data={"csrf_token": token, "period": period.group(1)})
        assert response.status_code == 303, response.text
        assert response.headers["location"].endswith("?done=prepared")
        body = client.get(response.headers["location"]).text
        assert f'<a href="/cases/{request.case_no}">{request.case_no}</a>' in body  # the open request is on it
        assert "工作统计" in body
        again = client.post("/secretary/prepare", data={"csrf_token": token, "period": period.group(1)})
        assert again.headers["location"] == response.headers["location"].replace("prepared", "existing")
        bad = client.post("/secretary/prepare", data={"csrf_token": token, "period": "2027-13"})
        assert bad.status_code == 422
        assert "2027-13" in ALERT.search(bad.text).group(1)  # type: ignore[union-attr]


def test_attendance_and_minutes_turn_resolutions_into_action_items(live_app: LiveApp) -> None:
    request = consultation(live_app, "三明某陶瓷公司釉料配方泄露线索（纪要）")
    start = live_app.deps.now() + timedelta(hours=2)
    meeting = schedule_meeting(
        live_app.deps, actor=SECRETARY, kind="consultation", at=start, place="三楼", requests=[request.id]
    )
    real_clock = live_app.deps.clock
    live_app.deps.clock = lambda: real_clock() + timedelta(hours=2, minutes=30)  # the meeting is on now
    try:
        with closing(live_app.sign_in(SECRETARY)) as client:
            token = csrf_of(client, f"/meetings/{meeting.id}")
            response = client.post(
                f"/meetings/{meeting.id}/attendance",
                data={"csrf_token": token, "agency": ["sm-amr"], "officers": ["张三，李四"]},
            )
            assert response.status_code == 303, response.text
            page = client.get(response.headers["location"]).text
            assert "已召开" in page and 'id="minutes-form"' in page
            due = (live_app.deps.now() + timedelta(days=30)).astimezone(SHANGHAI).date().isoformat()
            form = {
                "csrf_token": token,
                "text": "会议认定涉案配方构成技术信息。",
                "res_text": ["补充调取服务器日志", "", ""],
                "res_owner": ["sm-amr", "", ""],
                "res_due": [due, "", ""],
                "res_case": [request.case_no, "", ""],
            }
            refused = client.post(f"/meetings/{meeting.id}/minutes", data=form | {"res_owner": ["", "", ""]})
            assert refused.status_code == 422
            assert "choose the agency" in ALERT.search(refused.text).group(1)  # type: ignore[union-attr]
            assert "补充调取服务器日志" in refused.text  # the rows typed are kept
            response = client.post(f"/meetings/{meeting.id}/minutes", data=form)
            assert response.status_code == 303, response.text
            page = client.get(response.headers["location"]).text
            assert "纪要已通过" in page and "补充调取服务器日志" in page
    finally:
        live_app.deps.clock = real_clock
    items = [a for a in list_action_items(live_app.deps) if a.meeting_id == meeting.id]
    assert [(a.text, a.owner_agency, a.case_no, a.due_at[:10]) for a in items] == [
        ("补充调取服务器日志", "sm-amr", request.case_no, due)
    ]
    assert show_meeting(live_app.deps, meeting.id).consultations[0]["state"] == "resolved"


def test_a_meeting_is_moved_then_cancelled_and_its_request_goes_back_to_the_queue(live_app: LiveApp) -> None:
    request = consultation(live_app, "三明某电池公司极片工艺泄露线索（改期）")
    meeting = schedule_meeting(
        live_app.deps, actor=SECRETARY, kind="consultation", at=ahead(live_app, 5), place="三楼", requests=[request.id]
    )
    later = ahead(live_app, 12)
    with closing(live_app.sign_in(SECRETARY)) as client:
        token = csrf_of(client, f"/meetings/{meeting.id}")
        response = client.post(
            f"/meetings/{meeting.id}/move", data={"csrf_token": token, "to": local_input(later), "reason": "与庭审冲突"}
        )
        assert response.status_code == 303, response.text
        assert "已改期" in client.get(response.headers["location"]).text
        refused = client.post(f"/meetings/{meeting.id}/cancel", data={"csrf_token": token, "reason": ""})
        assert refused.status_code == 422 and "reason" in ALERT.search(refused.text).group(1)  # type: ignore[union-attr]
        response = client.post(f"/meetings/{meeting.id}/cancel", data={"csrf_token": token, "reason": "当事人已和解"})
        assert response.status_code == 303
        assert "已取消" in client.get(response.headers["location"]).text
    view = show_meeting(live_app.deps, meeting.id)
    assert view.state == "cancelled" and view.starts_at == later.isoformat(timespec="minutes")
    assert request.id in {c.id for c in consultation_queue(live_app.deps)}


def test_the_export_is_an_xlsx_of_the_pages_rows(live_app: LiveApp) -> None:
    with closing(live_app.sign_in(SUPERVISOR)) as client:
        for kind, first in (("overdue", "县区"), ("supervised", "县区"), ("action_items", "县区"), ("cases", "县区")):
            response = client.get(f"/supervisor/export.xlsx?list={kind}")
            assert response.status_code == 200, kind
            assert response.headers["content-type"] == XLSX
            assert re.fullmatch(
                r'attachment; filename="jointcase-[a-z-]+-\d{8}\.xlsx"', response.headers["content-disposition"]
            )
            assert cells(response.content)[0][0] == first
        page = client.get("/supervisor/cases?kind=cases&phase=referral").text
        shown = re.findall(r'<td><a href="/cases/([^"]+)">', page)
        exported = cells(client.get("/supervisor/export.xlsx?list=cases&phase=referral").content)
        assert shown and [row[2] for row in exported[1 : 1 + len(shown)]] == shown
        assert client.get("/supervisor/export.xlsx?list=nonsense").status_code == 422


def test_the_dashboard_groups_overdue_deadlines_by_responsible_agency_and_drills_down(live_app: LiveApp) -> None:
    overdue = list_deadlines(live_app.deps, actor=SUPERVISOR, overdue=True)
    police = {d.case_no for d in overdue if d.responsible == "police"}
    assert police, "the demo has deadlines the police missed"
    with closing(live_app.sign_in(SUPERVISOR)) as client:
        board = client.get("/supervisor").text
        assert "三明市 · 三明市公安局" in board
        drill = client.get("/supervisor/cases?kind=overdue&agency=sm-psb").text
        assert set(re.findall(r'<a href="/cases/([^"]+)">', drill)) == {
            d.case_no for d in overdue if d.responsible == "police" and d.case_no.startswith("sm-")
        }


def test_a_listed_case_shows_on_the_dashboard(live_app: LiveApp) -> None:
    case = open_case(
        live_app.deps, agency="sm-amr", title="三明某药业公司工艺泄露线索（督办）", source="report", actor=MR
    )
    due = (live_app.deps.now() + timedelta(days=60)).astimezone(SHANGHAI)
    list_for_supervision(
        live_app.deps, case.case_no, actor=SUPERVISOR, level="city", due=due, every="15d", reason="社会影响大"
    )
    with closing(live_app.sign_in(SUPERVISOR)) as client:
        board = client.get("/supervisor").text
        table = board[board.index('<table id="supervised"') :]
        assert f'<a href="/cases/{case.case_no}">{case.case_no}</a>' in table[: table.index("</table>")]
        exported = cells(client.get("/supervisor/export.xlsx?list=supervised").content)
        assert case.case_no in {row[2] for row in exported[1:]}


@pytest.mark.parametrize("path", ["/secretary", "/supervisor"])
def test_the_liaison_pages_ask_for_a_sign_in(live_app: LiveApp, path: str) -> None:
    with live_app.client() as client:
        response = client.get(path)
    assert response.status_code == 303 and response.headers["location"] == f"/login?next={path}"


def chart(board: str, chart_id: str) -> dict[str, str]:
    """The bars of a dashboard chart: label → the value written next to the bar."""
    svg = board[board.index(f'<figure class="chart" id="{chart_id}"') :]
    svg = svg[: svg.index("</figure>")]
    bars = re.findall(
        r'<text[^>]*text-anchor="end"[^>]*>([^<]+)</text>\s*<rect[^>]*></rect>\s*<text[^>]*>([^<]+)</text>', svg
    )
    return dict(bars)


def test_the_charts_agree_with_the_statistics_api_and_the_bulletin(live_app: LiveApp) -> None:
    with closing(live_app.sign_in(SUPERVISOR)) as client:
        stats = client.get("/api/v1/statistics").json()
        board = client.get("/supervisor").text
    phases = chart(board, "chart-phases")
    assert {p: int(phases[state_label(p)]) for p in stats["per_phase"]} == stats["per_phase"]
    funnel = chart(board, "chart-funnel")
    assert {s: int(funnel[state_label(s)]) for s in stats["funnel"]} == stats["funnel"]
    # Days per stage: the bulletin's figures for this quarter so far (the supervisor sees every case here).
    now = live_app.deps.now()
    local = now.astimezone(SHANGHAI)
    start = datetime(local.year, (local.month - 1) // 3 * 3 + 1, 1, tzinfo=SHANGHAI)
    assert f"本季度至今（{start:%Y-%m-%d} 至 {local:%Y-%m-%d}）" in board
    figures = compute_figures(live_app.deps, Period("qtd", "quarterly", start, now, "", ""))
    stages = chart(board, "chart-stages")
    expected = {
        s.label: (f"{f['median_days']} 天（{f['count']} 件）" if f["count"] else "本期无")
        for s in STAGES
        for f in [figures.total.stages[s.id]]
    }
    assert stages == expected
    assert any(f["count"] for f in figures.total.stages.values()), "the demo has stages that ended this quarter"
