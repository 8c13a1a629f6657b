"""Sign-in, sessions, CSRF and API tokens, over HTTP against the live app and through the CLI.

- The session cookie is HttpOnly and SameSite=Lax; a state-changing request made with it needs the session's
  CSRF token (form field or ``X-CSRF-Token``), else 403 ``csrf_refused`` and nothing is written.
- A wrong password answers 401 and is recorded; five failures for a username in 15 minutes refuse the sixth
  try (429) even with the right password, without locking out the other officers on the same address.
- Passwords have at least 8 characters; setting one signs the officer out everywhere.
- API tokens are shown once and stored as their SHA-256 only; a revoked token answers 401.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select
from typer.testing import CliRunner

from app.cli import app as cli_app
from app.demo import DEMO_PASSWORD
from models.tables import ApiToken, Case, LoginAttempt
from states.errors import InvalidInput
from tests.conftest import CaseBuilder, FakeClock, make_deps, write_config
from tests.e2e.web.conftest import LiveApp
from workflows.auth import (
    MAX_FAILURES,
    create_token,
    list_tokens,
    revoke_token,
    session_identity,
    set_password,
    sign_in,
    token_identity,
)
from workflows.cases import show_case
from workflows.uow import UnitOfWork

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(client: httpx.Client) -> str:
    """The session's CSRF token, as a browser finds it: in a form of any page (here the sign-out form)."""
    page = client.get("/cases")
    assert page.status_code == 200, page.text
    found = CSRF_INPUT.search(page.text)
    assert found, "no CSRF token in the page's forms"
    return found.group(1)


def attempts(live: LiveApp, username: str) -> int:
    with UnitOfWork(live.deps, read_only=True) as uow:
        return int(
            uow.session.execute(
                select(func.count()).select_from(LoginAttempt).where(LoginAttempt.username == username)
            ).scalar_one()
        )


def login(live: LiveApp, username: str, password: str) -> httpx.Response:
    with live.client() as client:
        return client.post("/login", data={"username": username, "password": password, "next": "/"})


@pytest.fixture(scope="module")
def case_no(live_app: LiveApp, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A case of sm-amr at verifying: sm_amr_handler may send file_case."""
    return CaseBuilder(live_app.deps, FakeClock(), tmp_path_factory.mktemp("files")).to_state("verifying").case_no


# --- the session cookie and CSRF ------------------------------------------------------------------------


def test_the_session_cookie_is_httponly_and_samesite_lax(live_app: LiveApp) -> None:
    response = login(live_app, "sm_amr_handler", DEMO_PASSWORD)
    assert response.status_code == 303 and response.headers["location"] == "/cases"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("jc_session=")
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]}
    assert "httponly" in attributes
    assert attributes["samesite"].lower() == "samesite=lax"
    assert attributes["path"] == "Path=/"
    assert "secure" not in attributes  # plain http on loopback; https sets Secure


def test_an_api_write_with_the_session_needs_the_csrf_token(live_app: LiveApp, case_no: str) -> None:
    client = live_app.sign_in("sm_amr_handler")
    before = show_case(live_app.deps, case_no).version
    body = {"event": "file_case"}
    for headers in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": ""}):
        refused = client.post(f"/api/v1/cases/{case_no}/events", json=body, headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "csrf_refused"
    # A token with characters outside ASCII is refused the same way (it once made the comparison raise: 500).
    odd = client.post(f"/api/v1/cases/{case_no}/events", json=body, headers=[(b"X-CSRF-Token", "é".encode("latin-1"))])
    assert odd.status_code == 403 and odd.json()["code"] == "csrf_refused"
    opened = client.post("/api/v1/cases", json={"agency": "sm-amr", "title": "无令牌", "source": "report"})
    assert opened.status_code == 403
    assert show_case(live_app.deps, case_no).version == before  # nothing written
    with UnitOfWork(live_app.deps, read_only=True) as uow:
        assert not uow.session.execute(select(Case).where(Case.title == "无令牌")).first()
    # Reads need no token; the right token lets the write through.
    assert client.get(f"/api/v1/cases/{case_no}").status_code == 200
    done = client.post(f"/api/v1/cases/{case_no}/events", json=body, headers={"X-CSRF-Token": csrf_of(client)})
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "investigating"
    assert show_case(live_app.deps, case_no).version == before + 1


def test_a_bearer_token_needs_no_csrf_token(live_app: LiveApp) -> None:
    token = create_token(live_app.deps, "sm_amr_handler", name="csrf-free")["token"]
    with live_app.client() as client:
        made = client.post(
            "/api/v1/cases",
            json={"agency": "sm-amr", "title": "接口开案", "source": "report"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert made.status_code == 201, made.text


def test_a_form_post_without_the_token_is_refused(live_app: LiveApp, case_no: str) -> None:
    client = live_app.sign_in("sm_amr_handler")
    before = show_case(live_app.deps, case_no).version
    refused = client.post(f"/cases/{case_no}/events", data={"event": "close_no_violation"})
    assert refused.status_code == 403
    assert "text/html" in refused.headers["content-type"]
    assert show_case(live_app.deps, case_no).version == before


def test_logout_needs_the_token_and_ends_the_session(live_app: LiveApp) -> None:
    client = live_app.sign_in("sm_amr_secretary")
    assert client.post("/logout").status_code == 403
    assert client.post("/logout", data={"csrf_token": "forged"}).status_code == 403
    assert client.get("/api/v1/me").status_code == 200  # still signed in
    raw = client.cookies.get("jc_session")
    out = client.post("/logout", data={"csrf_token": csrf_of(client)})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert 'jc_session=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]
    with live_app.client() as stale:  # the old cookie no longer works, even if a browser kept it
        stale.cookies.set("jc_session", raw or "")
        gone = stale.get("/api/v1/me")
    assert gone.status_code == 401
    assert gone.json()["code"] == "not_signed_in"


# --- sign-in ----------------------------------------------------------------------------------------------


def test_a_wrong_password_answers_401_and_is_recorded(live_app: LiveApp) -> None:
    before = attempts(live_app, "sm_court_handler")
    response = login(live_app, "sm_court_handler", "not-the-password")
    assert response.status_code == 401
    assert "用户名或密码错误" in response.text and "jc_session" not in response.headers.get("set-cookie", "")
    assert attempts(live_app, "sm_court_handler") == before + 1
    # An unknown username gets the very same answer (usernames do not leak).
    unknown = login(live_app, "no_such_officer", "not-the-password")
    assert unknown.status_code == 401 and "用户名或密码错误" in unknown.text
    assert login(live_app, "sm_court_handler", DEMO_PASSWORD).status_code == 303


def test_the_sixth_try_after_five_failures_is_429_even_with_the_right_password(live_app: LiveApp) -> None:
    username = "jl_court_handler"
    for _ in range(MAX_FAILURES):
        assert login(live_app, username, "wrong-password").status_code == 401
    blocked = login(live_app, username, DEMO_PASSWORD)
    assert blocked.status_code == 429
    assert "jc_session" not in blocked.headers.get("set-cookie", "")
    # The limit is per username: colleagues signing in from the same address are not locked out.
    assert login(live_app, "jl_procuratorate_handler", DEMO_PASSWORD).status_code == 303


def test_failures_older_than_the_window_do_not_count(live_app: LiveApp) -> None:
    username = "mx_court_handler"
    old = live_app.deps.now() - timedelta(minutes=16)
    with UnitOfWork(live_app.deps) as uow:
        for _ in range(MAX_FAILURES + 2):
            uow.session.add(LoginAttempt(username=username, client="127.0.0.1", at=old))
        uow.commit()
    assert login(live_app, username, DEMO_PASSWORD).status_code == 303


def test_a_password_has_at_least_8_characters_and_setting_one_signs_out(live_app: LiveApp) -> None:
    with pytest.raises(InvalidInput, match="at least 8 characters"):
        set_password(live_app.deps, "mx_procuratorate_handler", "short7!")
    client = live_app.sign_in("mx_procuratorate_handler")
    assert client.get("/api/v1/me").status_code == 200
    set_password(live_app.deps, "mx_procuratorate_handler", "a-new-password")
    assert client.get("/api/v1/me").status_code == 401  # the old session ended
    assert login(live_app, "mx_procuratorate_handler", DEMO_PASSWORD).status_code == 401
    assert login(live_app, "mx_procuratorate_handler", "a-new-password").status_code == 303


# --- API tokens -------------------------------------------------------------------------------------------


def test_an_api_token_is_shown_once_stored_hashed_used_and_revoked(live_app: LiveApp) -> None:
    made = create_token(live_app.deps, "sm_psb_handler", name="sm-psb-system")
    raw = made["token"]
    assert raw.startswith("jc_") and len(raw) > 40
    with UnitOfWork(live_app.deps, read_only=True) as uow:
        row = uow.session.get(ApiToken, made["id"])
        assert row is not None
        stored = row.model_dump()
    assert stored["token_hash"] == hashlib.sha256(raw.encode()).hexdigest()
    assert not any(isinstance(v, str) and raw in v for v in stored.values())  # never the token itself
    assert stored["prefix"] == raw[:10] and stored["last_used_at"] is None
    listed = [t for t in list_tokens(live_app.deps, "sm_psb_handler") if t["id"] == made["id"]]
    assert listed and "token" not in listed[0] and raw not in json.dumps(listed)

    with live_app.client() as client:
        me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {raw}"})
        assert me.status_code == 200
        assert me.json() == {
            "username": "sm_psb_handler",
            "display_name": "吴海涛",
            "agency_code": "sm-psb",
            "roles": ["handler"],
            "via": "api",
        }
        assert list_tokens(live_app.deps, "sm_psb_handler")[0]["last_used_at"]
        revoke_token(live_app.deps, made["id"])
        revoked = client.get("/api/v1/me", headers={"Authorization": f"Bearer {raw}"})
        assert revoked.status_code == 401
        assert revoked.headers["content-type"] == "application/problem+json"
        assert revoked.json()["code"] == "not_signed_in"
        for header in (f"Bearer {raw[:-1]}x", "Bearer jc_", "Bearer x", f"Basic {raw}", raw):
            assert client.get("/api/v1/me", headers={"Authorization": header}).status_code == 401
        assert client.get("/api/v1/me").status_code == 401


# --- the CLI ----------------------------------------------------------------------------------------------

runner = CliRunner()


class Jointcase:
    """``jointcase --config CFG ...`` in-process on a SQLite file of its own (like tests/e2e/test_cli.py)."""

    def __init__(self, tmp_path: Path) -> None:
        self.config = write_config(tmp_path, f"sqlite:///{tmp_path / 'jointcase.db'}")

    def __call__(self, *args: str, code: int = 0, stdin: str | None = None) -> Any:
        result = runner.invoke(cli_app, ["--config", str(self.config), *args], input=stdin)
        assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr)
        return result


def test_a_token_or_a_session_and_its_officer_are_read_in_one_query(live_app: LiveApp) -> None:
    """Every API request and page first asks who is calling (issue 8: one round trip less per request)."""
    deps = live_app.deps
    token = create_token(deps, "sm_amr_handler", name="one-query")["token"]
    session, _identity = sign_in(deps, "sm_amr_handler", DEMO_PASSWORD, client="one-query")
    assert token_identity(deps, token) is not None  # the first use records last_used_at: a write, not measured
    selects: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    event.listen(deps.engine, "before_cursor_execute", record)
    try:
        by_token, by_session = token_identity(deps, token), session_identity(deps, session)
    finally:
        event.remove(deps.engine, "before_cursor_execute", record)
    assert by_token is not None and by_token.username == "sm_amr_handler" and by_token.via == "api"
    assert by_session is not None and by_session.username == "sm_amr_handler" and by_session.csrf_token
    assert len(selects) == 2, selects


def test_cli_tokens_create_list_revoke(tmp_path: Path) -> None:
    cli = Jointcase(tmp_path)
    cli("init")
    made = json.loads(cli("token", "create", "--as", "sm_psb_handler", "--name", "sm-psb-system", "--json").stdout)
    assert made["username"] == "sm_psb_handler" and made["name"] == "sm-psb-system"
    raw = made["token"]
    listed = json.loads(cli("token", "list", "--json").stdout)
    assert [(t["id"], t["prefix"], t["revoked_at"]) for t in listed] == [(made["id"], raw[:10], "")]
    assert raw not in cli("token", "list").stdout and raw not in json.dumps(listed)
    _settings, deps = make_deps(cli.config)
    try:
        assert token_identity(deps, raw) is not None
        assert "revoked" in cli("token", "revoke", str(made["id"])).stdout
        assert token_identity(deps, raw) is None
        assert json.loads(cli("token", "list", "--user", "sm_psb_handler", "--json").stdout)[0]["revoked_at"]
    finally:
        deps.engine.dispose()
    assert "no API token #99" in cli("token", "revoke", "99", code=2).stderr
    cli("token", "create", "--as", "nobody", code=6)


def test_cli_set_password_from_stdin(tmp_path: Path) -> None:
    cli = Jointcase(tmp_path)
    cli("init")
    result = cli("user", "set-password", "sm_amr_handler", "--password-stdin", stdin="correct-horse\n")
    assert "password set for sm_amr_handler" in result.stdout
    short = cli("user", "set-password", "sm_amr_handler", "--password-stdin", stdin="short\n", code=2)
    assert "at least 8 characters" in short.stderr
    cli("user", "set-password", "nobody", "--password-stdin", stdin="long-enough\n", code=6)
    _settings, deps = make_deps(cli.config)
    try:
        _raw, identity = sign_in(deps, "sm_amr_handler", "correct-horse", client="cli-test")
        assert identity.username == "sm_amr_handler" and identity.via == "web"
    finally:
        deps.engine.dispose()


def test_an_api_request_does_not_wait_for_sqlites_write_lock(deps: Any, clock: FakeClock) -> None:
    """Asking who calls is a read: it must not queue behind a writer (it took BEGIN IMMEDIATE before)."""
    import sqlite3
    import threading

    token = create_token(deps, "sm_amr_handler", name="reader")["token"]
    assert token_identity(deps, token) is not None  # records last_used_at (a write of its own)
    first_use = list_tokens(deps, "sm_amr_handler")[0]["last_used_at"]
    writer = sqlite3.connect(deps.engine.url.database, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process is writing (busy_timeout would make us wait 60 s)
    answers: list[Any] = []
    try:
        reader = threading.Thread(target=lambda: answers.append(token_identity(deps, token)))
        reader.start()
        reader.join(timeout=15)
        assert not reader.is_alive(), "token_identity waited for the write lock"
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert answers and answers[0] is not None and answers[0].username == "sm_amr_handler"
    clock.advance(minutes=2)  # a minute later the token's last use is recorded again
    assert token_identity(deps, token) is not None
    assert list_tokens(deps, "sm_amr_handler")[0]["last_used_at"] != first_use
