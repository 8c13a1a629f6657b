"""The REST API over HTTP: problem details (RFC 9457, ``application/problem+json``) with stable codes, ETag and
If-Match, Location of a new case, the access log of evidence and document reads, no traceback on an unexpected
error, and case text escaped in every notice and document (a title with ``<script>``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import fastapi.dependencies.utils
import fastapi.routing
import httpx
import pytest
from sqlalchemy import select

import app.web.api as api_module
import app.web.pages as pages_module
from models.tables import AccessLog, Case, OutboxMessage
from tests.conftest import EVENT_DATA, TRANSFER_PACKAGE, CaseBuilder, FakeClock
from tests.e2e.web.conftest import LiveApp
from workflows.auth import create_token
from workflows.cases import attach_file, show_case
from workflows.uow import UnitOfWork

PROBLEM = "application/problem+json"
XSS = "<script>alert(1)</script>"
XSS_TITLE = f'三明某公司"配方"泄露案 {XSS} & <img src=x onerror=alert(2)>'


class Api:
    """Clients of the API, one per officer, each with its own bearer token."""

    def __init__(self, live: LiveApp) -> None:
        self.live = live
        self.clients: dict[str, httpx.Client] = {}

    def __call__(self, username: str) -> httpx.Client:
        if username not in self.clients:
            token = create_token(self.live.deps, username, name="test-api")["token"]
            self.clients[username] = httpx.Client(
                base_url=f"{self.live.url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
            )
        return self.clients[username]

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


@pytest.fixture(scope="module")
def api(live_app: LiveApp) -> Iterator[Api]:
    made = Api(live_app)
    yield made
    made.close()


@pytest.fixture(scope="module")
def build(live_app: LiveApp, tmp_path_factory: pytest.TempPathFactory) -> CaseBuilder:
    return CaseBuilder(live_app.deps, FakeClock(), tmp_path_factory.mktemp("files"))


def problem_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The problem body, after checking status, media type and the RFC 9457 members."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == f"/problems/{code}" and body["code"] == code and body["status"] == status
    assert body["title"] and body["detail"] and body["instance"] == response.request.url.path
    return body


def no_traceback(text: str) -> None:
    for leak in ("Traceback", 'File "', ".py", "RuntimeError", "kaboom"):
        assert leak not in text, leak


# --- problem details ------------------------------------------------------------------------------------


def test_a_refused_transition_is_409_with_the_allowed_events(api: Api, build: CaseBuilder) -> None:
    case_no = build.to_state("verifying").case_no
    body = problem_of(api("sm_amr_handler").post(f"/cases/{case_no}/events", json={"event": "notify_penalty"}), 409,
                      "transition_refused")  # fmt: skip
    assert body["case_no"] == case_no and body["state"] == "verifying" and body["event"] == "notify_penalty"
    assert body["allowed_events"] == sorted(
        ["decline_filing", "extend_verification", "file_case", "suspend", "transfer_jurisdiction", "withdraw"]
    )
    assert "notify_penalty" in body["detail"] and "verifying" in body["detail"]
    unknown = problem_of(api("sm_amr_handler").post(f"/cases/{case_no}/events", json={"event": "fly"}), 409,
                         "transition_refused")  # fmt: skip
    assert "fly" in unknown["detail"] and "file_case" in unknown["allowed_events"]


def test_etag_if_match_and_a_stale_version(api: Api, build: CaseBuilder, live_app: LiveApp) -> None:
    mr = api("sm_amr_handler")
    case_no = build.to_state("lead_registered").case_no
    shown = mr.get(f"/cases/{case_no}")
    assert shown.status_code == 200 and shown.headers["etag"] == '"1"' and shown.json()["version"] == 1
    sent = mr.post(f"/cases/{case_no}/events", json={"event": "start_verification"}, headers={"If-Match": '"1"'})
    assert sent.status_code == 200, sent.text
    assert sent.headers["etag"] == '"2"' and sent.json()["state"] == "verifying"
    assert mr.get(f"/cases/{case_no}").headers["etag"] == '"2"'
    stale = mr.post(f"/cases/{case_no}/events", json={"event": "file_case"}, headers={"If-Match": '"1"'})
    body = problem_of(stale, 409, "concurrent_update")
    assert body["case_no"] == case_no and body["expected"] == 1 and body["actual"] == 2
    assert show_case(live_app.deps, case_no).state == "verifying"  # nothing written
    weak = mr.post(f"/cases/{case_no}/events", json={"event": "file_case"}, headers={"If-Match": 'W/"2"'})
    assert weak.status_code == 200 and weak.headers["etag"] == '"3"'
    bad = mr.post(f"/cases/{case_no}/events", json={"event": "notify_penalty"}, headers={"If-Match": "latest"})
    assert "If-Match" in problem_of(bad, 422, "invalid_input")["detail"]


def test_a_read_and_an_event_take_no_thread_pool_hop_for_the_apps_dependencies(
    api: Api, build: CaseBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hops to the thread pool: the caller's identity (its token is looked up in the database), the use case,
    and FastAPI's check of the answer; none to read the app's dependencies (issue 8: each is a wait under load)."""
    hops: list[str] = []
    for module in (fastapi.routing, fastapi.dependencies.utils):
        original = module.run_in_threadpool

        async def counted(func: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            hops.append(getattr(func, "__name__", type(func).__name__))
            return await _original(func, *args, **kwargs)

        monkeypatch.setattr(module, "run_in_threadpool", counted)
    case_no = build.to_state("police_review").case_no
    shown = api("sm_amr_handler").get(f"/cases/{case_no}")
    assert shown.status_code == 200 and shown.json()["state"] == "police_review"
    assert hops == ["api_identity", "_run_sync_endpoint", "validate"]
    hops.clear()
    sent = api("sm_psb_handler").post(
        f"/cases/{case_no}/events", json={"event": "request_supplement"}, headers={"If-Match": shown.headers["etag"]}
    )
    assert sent.status_code == 200, sent.text
    assert sent.json()["version"] == shown.json()["version"] + 1 and sent.headers["etag"] != shown.headers["etag"]
    assert hops == ["api_identity", "_run_sync_endpoint", "validate"]


def test_missing_event_data_is_422_invalid_event_data(api: Api, build: CaseBuilder, live_app: LiveApp) -> None:
    case_no = build.to_state("investigating").case_no
    mr = api("sm_amr_handler")
    body = problem_of(mr.post(f"/cases/{case_no}/events", json={"event": "propose_referral"}), 422,
                      "invalid_event_data")  # fmt: skip
    assert "ground" in body["detail"] and case_no in body["detail"]
    unknown = problem_of(mr.post(f"/cases/{case_no}/events", json={"event": "withdraw", "data": {"why": "x"}}), 422,
                         "invalid_event_data")  # fmt: skip
    assert "why" in unknown["detail"] and "reason" in unknown["detail"]
    assert show_case(live_app.deps, case_no).version == 3


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b"{not json", {"content-type": "application/json"}),
        (b'{"event": ', {"content-type": "application/json"}),
        (b"\xff\xfe\x00garbage", {"content-type": "application/json"}),  # not UTF-8
        (b'["start_verification"]', {"content-type": "application/json"}),
        (b'{"event": "start_verification", "colour": "red"}', {"content-type": "application/json"}),
        (b'{"event": "start_verification", "data": {"reason": {"nested": 1}}}', {"content-type": "application/json"}),
        (b'{"event": "start_verification", "effective_at": "yesterday"}', {"content-type": "application/json"}),
        (b'{"event": "start_verification", "effective_at": "0001-01-01T00:00:00-14:00"}', {}),
        (b'{"event": ""}', {"content-type": "application/json"}),
        (b"event=start_verification", {"content-type": "application/x-www-form-urlencoded"}),
        (b"", {}),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_a_malformed_body_is_422_invalid_request(
    api: Api, build: CaseBuilder, live_app: LiveApp, content: bytes, headers: dict[str, str]
) -> None:
    case_no = build.to_state("lead_registered").case_no
    response = api("sm_amr_handler").post(f"/cases/{case_no}/events", content=content, headers=headers)
    body = problem_of(response, 422, "invalid_request")
    no_traceback(response.text)
    assert isinstance(body.get("errors", []), list)
    assert show_case(live_app.deps, case_no).version == 1


def test_far_off_times_and_huge_numbers_are_422_not_500(api: Api, build: CaseBuilder) -> None:
    mr = api("sm_amr_handler")
    for at in ("0001-01-01T00:00:00-14:00", "0001-01-01T00:00:00", "9999-12-31T23:59:59+14:00"):
        opened = mr.post("/cases", json={"agency": "sm-amr", "title": "t", "source": "report", "received_at": at})
        problem_of(opened, 422, "invalid_request")
    assert problem_of(mr.post("/inbox/read", json={"ids": [2**70]}), 422, "invalid_request")
    case_no = build.to_state("investigating").case_no
    huge = mr.post(f"/cases/{case_no}/events", json={"event": "decide_penalty", "data": {"fine_amount": 10**30}})
    problem_of(huge, 422, "invalid_request")
    assert problem_of(mr.get("/meetings/4294967296"), 422, "invalid_request")
    assert problem_of(mr.get("/deadlines", params={"due_within": "5m"}), 422, "invalid_request")
    assert mr.get("/deadlines", params={"due_within": "2w"}).status_code == 200


def test_an_unknown_or_invisible_case_is_the_same_404(api: Api, build: CaseBuilder) -> None:
    case_no = build.to_state("investigating").case_no  # sm-amr's, never referred
    police = api("sm_psb_handler")
    for path in ("", "/history", "/events", "/evidence", "/documents", "/attachments", "/handoffs", "/supervision"):
        hidden = problem_of(police.get(f"/cases/{case_no}{path}"), 404, "case_not_found")
        missing = problem_of(police.get(f"/cases/sm-amr-2099-0001{path}"), 404, "case_not_found")
        assert set(hidden) == set(missing) == {"type", "title", "status", "code", "detail", "instance"}
        assert (
            hidden["detail"] == f"case {case_no} not found" and missing["detail"] == "case sm-amr-2099-0001 not found"
        )
    refused = police.post(f"/cases/{case_no}/events", json={"event": "police_file"})
    assert problem_of(refused, 404, "case_not_found")["detail"] == f"case {case_no} not found"
    assert problem_of(police.get(f"/cases/{case_no}/documents/transfer_letter"), 404, "case_not_found")


def test_not_signed_in_unknown_route_and_wrong_method_are_problems(live_app: LiveApp, api: Api) -> None:
    with live_app.client() as anonymous:
        unsigned = anonymous.get("/api/v1/cases")
        assert problem_of(unsigned, 401, "not_signed_in")
        assert unsigned.headers["www-authenticate"].startswith("Bearer")
        assert problem_of(anonymous.post("/api/v1/cases", json={}), 401, "not_signed_in")
    assert problem_of(api("admin").get("/nowhere"), 404, "not_found")
    wrong_method = api("admin").delete("/cases")
    assert problem_of(wrong_method, 405, "method_not_allowed")
    assert "GET" in wrong_method.headers["allow"]  # Starlette names the methods of the first matching route
    assert api("admin").get("/consultations").status_code == 200
    assert problem_of(api("sm_psb_handler").get("/consultations"), 403, "permission_denied")


def test_open_case_is_201_with_location_and_etag(api: Api) -> None:
    made = api("sm_amr_handler").post(
        "/cases", json={"agency": "sm-amr", "title": "三明某新开案件", "source": "report"}
    )
    assert made.status_code == 201, made.text
    case_no = made.json()["case_no"]
    assert made.headers["location"] == f"/api/v1/cases/{case_no}" and made.headers["etag"] == '"1"'
    again = api("sm_amr_handler").get(made.headers["location"].removeprefix("/api/v1"))
    assert again.status_code == 200 and again.json()["title"] == "三明某新开案件"
    refused = api("sm_psb_handler").post("/cases", json={"agency": "sm-amr", "title": "越权", "source": "report"})
    assert problem_of(refused, 403, "permission_denied")


def test_an_unexpected_error_answers_500_without_a_traceback(
    api: Api, live_app: LiveApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("kaboom in /srv/jointcase/secret.py")

    monkeypatch.setattr(api_module, "list_cases", explode)
    response = api("admin").get("/cases")
    body = problem_of(response, 500, "internal_error")
    assert body["detail"] == "an unexpected error; it was logged"
    no_traceback(response.text)
    # A page answers with the error page, in words, and no traceback either.
    client = live_app.sign_in("sm_amr_handler")
    monkeypatch.setattr(pages_module, "home_of", explode)
    page = client.get("/")
    assert page.status_code == 500 and "text/html" in page.headers["content-type"]
    no_traceback(page.text)


def test_reads_of_evidence_and_documents_are_logged(api: Api, build: CaseBuilder, live_app: LiveApp) -> None:
    case_no = build.to_state("investigating").case_no
    supervisor = api("sm_amr_supervisor")
    for path in ("/evidence", "/documents", "/attachments"):
        assert supervisor.get(f"/cases/{case_no}{path}").status_code == 200
    with UnitOfWork(live_app.deps, read_only=True) as uow:
        case_id = uow.case(case_no).id
        rows = uow.session.execute(select(AccessLog).where(AccessLog.case_id == case_id)).scalars().all()
        logged = sorted((r.username, r.resource, r.via) for r in rows)
    assert logged == [
        ("sm_amr_supervisor", "documents", "api"),
        ("sm_amr_supervisor", "documents", "api"),
        ("sm_amr_supervisor", "evidence", "api"),
    ]
    assert api("sm_psb_handler").get(f"/cases/{case_no}/evidence").status_code == 404
    with UnitOfWork(live_app.deps, read_only=True) as uow:  # a refused read logs nothing
        assert len(uow.session.execute(select(AccessLog).where(AccessLog.case_id == case_id)).all()) == 3


# --- case text is escaped everywhere -------------------------------------------------------------------


@pytest.fixture(scope="module")
def xss_case(api: Api, live_app: LiveApp, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A case whose title carries markup, opened and moved to the police through the API."""
    mr = api("sm_amr_handler")
    made = mr.post("/cases", json={"agency": "sm-amr", "title": XSS_TITLE, "source": "report", "note": XSS})
    assert made.status_code == 201, made.text
    case_no: str = made.json()["case_no"]
    for event in ("start_verification", "file_case", "propose_referral", "approve_referral"):
        sent = mr.post(
            f"/cases/{case_no}/events", json={"event": event, "data": EVENT_DATA.get(event, {}), "note": XSS}
        )
        assert sent.status_code == 200, sent.text
    files = tmp_path_factory.mktemp("xss")
    for kind in TRANSFER_PACKAGE:
        path = Path(files / f"{kind}.txt")
        path.write_text(f"{kind} {XSS}\n", encoding="utf-8")
        attach_file(live_app.deps, case_no, kind, path, actor="sm_amr_handler")
    for actor, event in (("sm_amr_handler", "transfer_to_police"), ("sm_psb_handler", "police_file")):
        sent = api(actor).post(f"/cases/{case_no}/events", json={"event": event, "note": XSS})
        assert sent.status_code == 200, sent.text
    asked = mr.post(f"/cases/{case_no}/consultations", json={"topic": "evidence_recognition", "question": XSS})
    assert asked.status_code == 201, asked.text
    return case_no


def test_the_api_returns_the_title_as_the_raw_string(api: Api, xss_case: str) -> None:
    response = api("sm_amr_handler").get(f"/cases/{xss_case}")
    assert response.headers["content-type"] == "application/json"
    assert response.json()["title"] == XSS_TITLE  # data, not markup: JSON-escaped, never HTML


def test_every_notice_escapes_the_title(xss_case: str, live_app: LiveApp) -> None:
    with UnitOfWork(live_app.deps, read_only=True) as uow:
        case_id = uow.session.execute(select(Case.id).where(Case.case_no == xss_case)).scalar_one()
        rows = uow.session.execute(select(OutboxMessage).where(OutboxMessage.case_id == case_id)).scalars().all()
        notices = [(r.template, r.channel, r.body_html) for r in rows]
    html = [body for _t, _c, body in notices if body]
    # Each event told the other agency's liaison (email with an HTML part, and the inbox).
    assert {t for t, _c, _b in notices} == {"case_event"} and {c for _t, c, _b in notices} >= {"email", "inbox"}
    assert len(html) >= 2, notices
    for body in html:
        assert "<script" not in body and "<img" not in body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
        assert "&lt;img src=x onerror=alert(2)&gt;" in body


def test_a_generated_document_escapes_the_title(api: Api, xss_case: str) -> None:
    mr = api("sm_amr_handler")
    made = mr.post(f"/cases/{xss_case}/documents", json={"kind": "transfer_letter"})
    assert made.status_code == 201, made.text
    shown = mr.get(f"/cases/{xss_case}/documents/transfer_letter")
    assert shown.status_code == 200 and shown.headers["content-type"].startswith("text/html")
    assert shown.headers["content-security-policy"].startswith("default-src 'none'")
    assert "<script" not in shown.text and "<img" not in shown.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown.text


def test_the_sign_in_and_error_pages_escape_what_they_are_given(live_app: LiveApp) -> None:
    with live_app.client() as client:
        off_site = client.get("/login", params={"next": XSS})
        assert off_site.status_code == 200 and XSS not in off_site.text
        on_site = client.get("/login", params={"next": '/cases"><script>alert(1)</script>'})
        assert on_site.status_code == 200 and "<script>alert(1)" not in on_site.text
        assert "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in on_site.text
    signed_in = live_app.sign_in("sm_amr_handler")
    missing = signed_in.get(f"/cases/{XSS}")
    assert missing.status_code in (404, 422)
    assert "<script>alert(1)" not in missing.text


def test_a_meeting_notice_escapes_the_title(api: Api, xss_case: str, live_app: LiveApp) -> None:
    secretary = api("sm_amr_secretary")
    queued = [c for c in secretary.get("/consultations").json() if c["case_no"] == xss_case]
    assert queued, "the consultation request is in the secretaries' queue"
    at = (live_app.deps.now() + timedelta(days=3)).isoformat()
    made = secretary.post(
        "/meetings",
        json={"kind": "consultation", "at": at, "place": "三明市市场监管局会议室", "requests": [queued[0]["id"]]},
    )
    assert made.status_code == 201, made.text
    with UnitOfWork(live_app.deps, read_only=True) as uow:
        rows = uow.session.execute(select(OutboxMessage).where(OutboxMessage.template == "meeting_notice")).scalars()
        # The plain text (inbox, text/plain email) carries the title as it is; the HTML part escapes it.
        bodies = [r.body_html for r in rows if XSS in r.body and r.body_html]
    assert bodies
    for body in bodies:
        assert "<script" not in body and "<img" not in body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_an_unknown_meeting_is_404_like_an_unknown_case(api: Api) -> None:
    client = api("sm_amr_secretary")
    body = problem_of(client.get("/meetings/99999"), 404, "meeting_not_found")
    assert body["detail"] == "no meeting #99999" and body["instance"] == "/api/v1/meetings/99999"
