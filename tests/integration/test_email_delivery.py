"""Notification delivery against a real SMTP server (aiosmtpd on 127.0.0.1): the notice of a transfer, retries
with backoff while the server is down, parking after ``max_attempts`` and the admin's retry, refusals, bad
input at enqueue time, the in-app inbox and the delivery audit.

Every test drives the real use cases (``advance_case`` through ``CaseBuilder``, ``relay_outbox``) on SQLite with
an injected ``FakeClock``; the relay's SMTP channel talks to an aiosmtpd ``Controller`` on an OS-chosen port.
"""

from __future__ import annotations

import email
import email.policy
import logging
import random
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from jinja2 import UndefinedError
from sqlalchemy import select, text

from deploy.processes import free_port
from models.tables import DeliveryAttempt, InboxItem, OutboxMessage
from notifications.channels import message_id
from states.errors import CaseNotFound, InvalidInput, PermissionDenied
from tests.conftest import CaseBuilder, FakeClock, make_deps, write_config
from workflows.clockwork import enqueue
from workflows.outbox import (
    case_deliveries,
    inbox,
    list_outbox,
    mark_read,
    relay_outbox,
    retry_dead,
    show_message,
)
from workflows.uow import Deps, UnitOfWork

LIAISON = "sm_psb_liaison"  # sm-psb's liaison officer: told when a case is transferred to sm-psb
LIAISON_EMAIL = "sm_psb_liaison@sanming.example"
LIAISON_NAME = "杨春燕"
SENDER = "jointcase@sanming.example"
BASE = 30.0  # config.toml [notifications] backoff_base_seconds


# --- a real SMTP server --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Envelope:
    """One message as the SMTP server received it."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class Recorder:
    """aiosmtpd handler: keeps every envelope; ``refuse`` maps a recipient to the SMTP reply refusing it."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.refuse: dict[str, str] = {}
        self._lock = threading.Lock()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.envelopes.append(Envelope(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 Message accepted for delivery"


class SmtpServer:
    """An aiosmtpd server on 127.0.0.1 that can be stopped and started again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.recorder = Recorder()
        self._controller: Controller | None = None

    def start(self) -> None:
        assert self._controller is None
        controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def envelopes(self) -> list[Envelope]:
        return list(self.recorder.envelopes)

    def message_ids(self) -> Counter[str]:
        return Counter(str(e.message["Message-ID"]).strip() for e in self.envelopes)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


def mail_config(directory: Path, port: int, **settings: str) -> Path:
    """config.toml in ``directory`` with SQLite there, the SMTP port ``port`` and ``[notifications]`` overrides."""
    replace = {r"(?m)^port = 1025\b": f"port = {port}", r"(?m)^timeout_seconds = 10\b": "timeout_seconds = 5"}
    for key, value in settings.items():
        replace[rf"(?m)^{key} = \S+"] = f"{key} = {value}"
    return write_config(directory, f"sqlite:///{directory / 'jointcase.db'}", **replace)


@dataclass
class Env:
    deps: Deps
    clock: FakeClock
    builder: CaseBuilder
    smtp: SmtpServer


def make_env(tmp_path: Path, clock: FakeClock, smtp: SmtpServer, **settings: str) -> Iterator[Env]:
    _settings, deps = make_deps(mail_config(tmp_path, smtp.port, **settings), clock)
    assert deps.notifications.email.port == smtp.port
    files = tmp_path / "files"
    files.mkdir()
    yield Env(deps, clock, CaseBuilder(deps, clock, files), smtp)
    deps.engine.dispose()


@pytest.fixture
def env(tmp_path: Path, clock: FakeClock, smtp: SmtpServer) -> Iterator[Env]:
    yield from make_env(tmp_path, clock, smtp)


@pytest.fixture
def env2(tmp_path: Path, clock: FakeClock, smtp: SmtpServer) -> Iterator[Env]:
    """Parks after the second failed attempt."""
    yield from make_env(tmp_path, clock, smtp, max_attempts="2")


@pytest.fixture
def env_capped(tmp_path: Path, clock: FakeClock, smtp: SmtpServer) -> Iterator[Env]:
    """Backoff capped at 100 s."""
    yield from make_env(tmp_path, clock, smtp, backoff_max_seconds="100")


class Jitter(random.Random):
    """A relay's random source with the jitter pinned at ``at`` (0: the lowest wait, 1: the highest)."""

    def __init__(self, at: float) -> None:
        super().__init__(0)
        self.at = at

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.at


def rows(deps: Deps, **where: Any) -> list[OutboxMessage]:
    with UnitOfWork(deps, read_only=True) as uow:
        stmt = select(OutboxMessage).order_by(OutboxMessage.id)  # type: ignore[arg-type]
        for key, value in where.items():
            stmt = stmt.where(getattr(OutboxMessage, key) == value)
        found = list(uow.session.execute(stmt).scalars())
        uow.session.expunge_all()
        return found


def attempts_of(deps: Deps, msg_id: int | None) -> list[tuple[int, str]]:
    with UnitOfWork(deps, read_only=True) as uow:
        found = uow.session.execute(
            select(DeliveryAttempt).where(DeliveryAttempt.message_id == msg_id).order_by(DeliveryAttempt.id)  # type: ignore[arg-type]
        ).scalars()
        return [(a.attempt, a.outcome) for a in found]


def wait_seconds(row: OutboxMessage, now: datetime) -> float:
    return (row.next_attempt_at - now).total_seconds()


# --- 1. the notice of a transfer arrives by SMTP ----------------------------------------------------------


def test_transfer_notice_reaches_a_real_smtp_server(env: Env) -> None:
    title = "三明某公司<b>配方</b>泄露案 & 其他"
    view = env.builder.to_state("police_review", title=title)
    queued = rows(env.deps)
    assert {(r.recipient_user, r.channel, r.status) for r in queued} == {
        (LIAISON, "email", "pending"),
        (LIAISON, "inbox", "pending"),
    }, "only the liaison of the agency that joined is told, on both channels"
    mail_row = rows(env.deps, channel="email")[0]

    result = relay_outbox(env.deps)

    assert (result.claimed, result.sent, result.retried, result.parked) == (2, 2, 0, 0)
    [got] = env.smtp.envelopes
    assert got.mail_from == SENDER and got.rcpt_tos == [LIAISON_EMAIL]
    msg = got.message
    assert msg["To"] == LIAISON_EMAIL and msg["From"] == SENDER
    assert msg["Subject"] == f"【案件协作】{view.case_no} 移送公安机关"
    assert msg["Message-ID"] == message_id(mail_row.dedupe_key)
    assert str(msg["X-Jointcase-Dedupe-Key"]).strip() == mail_row.dedupe_key
    assert parsedate_to_datetime(str(msg["Date"])) == mail_row.created_at
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and html is not None
    body = plain.get_content()
    assert body.startswith(f"{LIAISON_NAME}：")
    assert f"对案件 {view.case_no}「{title}」办理了“移送公安机关”" in body  # plain text is not escaped
    assert "三明市市场监督管理局 陈明辉" in body and "公安审查" in body
    page = html.get_content()
    assert '<html lang="zh-CN">' in page and f"<p>{LIAISON_NAME}：</p>" in page
    assert f"<strong>{view.case_no}</strong>" in page
    assert "三明某公司&lt;b&gt;配方&lt;/b&gt;泄露案 &amp; 其他" in page and "<b>配方" not in page  # autoescaped

    sent = rows(env.deps)
    assert [(r.status, r.attempts, r.last_error) for r in sent] == [("sent", 1, ""), ("sent", 1, "")]
    assert all(r.sent_at == env.clock.now for r in sent)
    assert attempts_of(env.deps, mail_row.id) == [(1, "sent")]
    again = relay_outbox(env.deps)
    assert again.claimed == 0 and len(env.smtp.envelopes) == 1


# --- 2. the server is down: backoff; back up: every message exactly once ---------------------------------


def test_server_down_backs_off_then_each_message_arrives_exactly_once(env: Env) -> None:
    env.smtp.stop()
    cases = [env.builder.to_state("police_review", title=f"配方泄露案{i}").case_no for i in range(3)]
    mails = rows(env.deps, channel="email")
    assert len(mails) == 3 and {r.recipient for r in mails} == {LIAISON_EMAIL}
    expected_ids = {message_id(r.dedupe_key) for r in mails}

    first = relay_outbox(env.deps)
    assert (first.sent, first.retried, first.parked) == (3, 3, 0), "the inbox is delivered, the email retried"
    now = env.clock.now
    for row in rows(env.deps, channel="email"):
        assert (row.status, row.attempts) == ("pending", 1)
        assert f"connection to 127.0.0.1:{env.smtp.port} failed" in row.last_error
        assert BASE / 2 <= wait_seconds(row, now) <= BASE, "first failure: base/2..base"
        assert attempts_of(env.deps, row.id) == [(1, "failed")]
    assert relay_outbox(env.deps).claimed == 0, "nothing is due before the backoff ends"

    env.clock.advance(seconds=BASE + 1)
    second = relay_outbox(env.deps)
    assert (second.claimed, second.retried) == (3, 3)
    now = env.clock.now
    for row in rows(env.deps, channel="email"):
        assert (row.status, row.attempts) == ("pending", 2)
        assert BASE <= wait_seconds(row, now) <= 2 * BASE, "second failure: base..2*base"
        assert attempts_of(env.deps, row.id) == [(1, "failed"), (2, "failed")]

    env.clock.advance(seconds=2 * BASE + 1)
    env.smtp.start()  # a new server on the same port
    third = relay_outbox(env.deps, batch_size=2)
    assert (third.claimed, third.sent, third.retried, third.batches) == (3, 3, 0, 2)
    assert env.smtp.message_ids() == Counter(dict.fromkeys(expected_ids, 1))
    subjects = sorted(str(e.message["Subject"]) for e in env.smtp.envelopes)
    assert subjects == [f"【案件协作】{case_no} 移送公安机关" for case_no in sorted(cases)]
    for row in rows(env.deps, channel="email"):
        assert (row.status, row.attempts, row.last_error) == ("sent", 3, "")
        assert attempts_of(env.deps, row.id) == [(1, "failed"), (2, "failed"), (3, "sent")]

    env.clock.advance(hours=2)
    assert relay_outbox(env.deps).claimed == 0
    assert len(env.smtp.envelopes) == 3


def test_backoff_doubles_with_equal_jitter_up_to_the_cap(env_capped: Env) -> None:
    env = env_capped
    env.smtp.stop()
    env.builder.to_state("police_review")
    # A pass "as of" a later time tries each row once: the retry is due after that time, not the clock's.
    later = env.clock.now + timedelta(hours=1)
    first = relay_outbox(env.deps, now=later, rng=Jitter(0.0))
    assert (first.claimed, first.sent, first.retried) == (2, 1, 1)
    [row] = rows(env.deps, channel="email")
    assert row.attempts == 1 and wait_seconds(row, later) == pytest.approx(BASE / 2)
    # failure n waits min(cap, base * 2**(n-1)) * (1/2 + jitter/2)
    for attempt, jitter, expected in [(2, 1.0, 60), (3, 1.0, 100), (4, 0.0, 50), (5, 0.5, 75)]:
        now = row.next_attempt_at
        assert relay_outbox(env.deps, now=now - timedelta(seconds=1)).claimed == 0, "not due yet"
        result = relay_outbox(env.deps, now=now, rng=Jitter(jitter))
        assert (result.claimed, result.retried) == (1, 1)
        [row] = rows(env.deps, channel="email")
        assert row.attempts == attempt and wait_seconds(row, now) == pytest.approx(expected), attempt
    assert [outcome for _, outcome in attempts_of(env.deps, row.id)] == ["failed"] * 5


# --- 3. max attempts: parked; the admin re-queues ----------------------------------------------------------


def test_max_attempts_parks_then_only_an_admin_requeues(env2: Env, caplog: pytest.LogCaptureFixture) -> None:
    env = env2
    env.smtp.stop()
    case_no = env.builder.to_state("police_review").case_no
    [mail] = rows(env.deps, channel="email")
    assert relay_outbox(env.deps).retried == 1
    env.clock.advance(seconds=BASE + 1)
    with caplog.at_level(logging.WARNING, logger="workflows.outbox"):
        parked = relay_outbox(env.deps)
    assert (parked.claimed, parked.parked, parked.retried) == (1, 1, 0)
    [dead] = rows(env.deps, channel="email")
    assert (dead.status, dead.attempts) == ("dead", 2)
    assert "Connection refused" in dead.last_error
    assert attempts_of(env.deps, mail.id) == [(1, "failed"), (2, "dead")]
    assert any(f"outbox #{mail.id}" in r.getMessage() and "parked" in r.getMessage() for r in caplog.records)
    assert [v.id for v in list_outbox(env.deps, status="dead")] == [mail.id]
    assert [v.id for v in list_outbox(env.deps, status="dead", case_no=case_no)] == [mail.id]
    env.clock.advance(days=1)
    assert relay_outbox(env.deps).claimed == 0, "a parked message is not retried by itself"

    for officer in ("sm_psb_handler", LIAISON, "sm_amr_supervisor"):
        with pytest.raises(PermissionDenied, match="not an admin"):
            retry_dead(env.deps, actor=officer, ids=[mail.id or 0])
    assert rows(env.deps, channel="email")[0].status == "dead"

    env.smtp.start()
    assert retry_dead(env.deps, actor="admin", ids=[mail.id or 0]) == 1
    [queued] = rows(env.deps, channel="email")
    assert (queued.status, queued.attempts, queued.next_attempt_at) == ("pending", 0, env.clock.now)
    with pytest.raises(InvalidInput, match=f"#{mail.id}"):
        retry_dead(env.deps, actor="admin", ids=[mail.id or 0])  # no longer parked

    result = relay_outbox(env.deps)
    assert (result.claimed, result.sent) == (1, 1)
    [got] = env.smtp.envelopes
    assert got.rcpt_tos == [LIAISON_EMAIL] and got.message["Message-ID"] == message_id(mail.dedupe_key)
    shown = show_message(env.deps, mail.id or 0)
    assert shown.status == "sent" and shown.last_error == ""
    assert [h["outcome"] for h in shown.history] == ["failed", "dead", "requeued", "sent"]
    assert shown.history[2]["error"] == "by admin"


def test_smtp_refusals_5xx_park_at_once_4xx_retry(env: Env) -> None:
    env.smtp.recorder.refuse[LIAISON_EMAIL] = "550 5.1.1 mailbox unavailable"
    env.builder.to_state("police_review")
    result = relay_outbox(env.deps)
    assert (result.sent, result.parked, result.retried) == (1, 1, 0)
    [dead] = rows(env.deps, channel="email")
    assert (dead.status, dead.attempts) == ("dead", 1) and "550" in dead.last_error

    env.smtp.recorder.refuse[LIAISON_EMAIL] = "451 4.3.0 try again later"
    env.builder.send(env.builder.to_state("police_review", title="另一案").case_no, "police_file")
    result = relay_outbox(env.deps)
    deferred = [r for r in rows(env.deps, channel="email", recipient=LIAISON_EMAIL) if r.status == "pending"]
    assert result.retried == 1 and len(deferred) == 1
    assert deferred[0].attempts == 1 and "451" in deferred[0].last_error
    assert [e.rcpt_tos for e in env.smtp.envelopes] == [["sm_amr_liaison@sanming.example"]]  # police_file's notice

    del env.smtp.recorder.refuse[LIAISON_EMAIL]
    env.clock.advance(seconds=BASE + 1)
    assert relay_outbox(env.deps).sent == 1
    assert [e.rcpt_tos for e in env.smtp.envelopes][-1] == [LIAISON_EMAIL]


# --- 4. bad input --------------------------------------------------------------------------------------------


def test_missing_template_variable_fails_the_enqueueing_transaction(env: Env) -> None:
    case_no = env.builder.to_state("investigating").case_no
    variables: dict[str, Any] = {
        "actor_name": "陈明辉",
        "actor_agency_name": "三明市市场监督管理局",
        "effective_at": "2026-03-04T12:00+08:00",
        "case_no": case_no,
        "title": "三明某公司配方泄露案",
        "event_label": "立案",
        "phase_label": "行政执法",
        "state_label": "调查取证",
        "note": "",
        "data_items": [],
    }
    incomplete = {k: v for k, v in variables.items() if k != "title"}
    with pytest.raises(UndefinedError, match="'title' is undefined"), UnitOfWork(env.deps) as uow:
        case = uow.case(case_no)
        case.title = "改过的标题"  # the caller's own change in the same transaction
        told = enqueue(
            env.deps,
            uow,
            case,
            [uow.officer(LIAISON)],
            template="case_event",
            dedupe_prefix="test:complete",
            at=env.clock.now,
            **variables,
        )
        assert told == 1
        uow.session.flush()  # the first notice's rows are written in the transaction
        assert len(list(uow.session.execute(select(OutboxMessage)).scalars())) == 2
        enqueue(
            env.deps,
            uow,
            case,
            [uow.officer("sm_procuratorate_liaison")],
            template="case_event",
            dedupe_prefix="test:incomplete",
            at=env.clock.now,
            **incomplete,
        )
        uow.commit()
    assert rows(env.deps) == [], "no outbox row survives the failed transaction"
    with UnitOfWork(env.deps, read_only=True) as uow:
        assert uow.case(case_no).title == "三明某公司配方泄露案", "the caller's change is rolled back too"


def test_officer_without_valid_email_is_reported_not_skipped(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    with env.deps.engine.begin() as conn:
        conn.execute(text("UPDATE officers SET email = '' WHERE username = :u"), {"u": LIAISON})
    with caplog.at_level(logging.WARNING, logger="workflows.clockwork"):
        case_no = env.builder.to_state("police_review").case_no
    reason = f"officer {LIAISON} has no valid email address"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(reason in w and case_no in w for w in warnings), warnings
    [mail] = rows(env.deps, channel="email")
    assert (mail.status, mail.last_error, mail.recipient_user) == ("dead", reason, LIAISON)

    result = relay_outbox(env.deps)
    assert (result.claimed, result.sent) == (1, 1), "the inbox copy is still delivered"
    assert env.smtp.envelopes == []
    items, unread = inbox(env.deps, actor=LIAISON)
    assert unread == 1 and [i.case_no for i in items] == [case_no]

    audit = case_deliveries(env.deps, case_no, actor="sm_amr_handler")
    assert {(v.channel, v.recipient_user, v.status, v.last_error) for v in audit} == {
        ("email", LIAISON, "dead", reason),
        ("inbox", LIAISON, "sent", ""),
    }
    assert [v.id for v in list_outbox(env.deps, status="dead")] == [mail.id]


# --- 5. the in-app inbox ---------------------------------------------------------------------------------


def test_inbox_item_arrives_once_unread_then_read(env: Env) -> None:
    case_no = env.builder.to_state("police_review").case_no
    assert inbox(env.deps, actor=LIAISON) == ([], 0), "nothing before the relay"
    relay_outbox(env.deps)
    items, unread = inbox(env.deps, actor=LIAISON)
    assert unread == 1 and len(items) == 1
    item = items[0]
    assert (item.case_no, item.kind, item.read) == (case_no, "case_event", False)
    assert item.subject == f"【案件协作】{case_no} 移送公安机关" and item.body.startswith(f"{LIAISON_NAME}：")
    assert inbox(env.deps, actor="sm_amr_liaison") == ([], 0), "the sending agency is not told"
    with pytest.raises(InvalidInput):
        mark_read(env.deps, actor="sm_amr_liaison", ids=[item.id])  # not theirs

    assert mark_read(env.deps, actor=LIAISON, ids=[item.id]) == 1
    items, unread = inbox(env.deps, actor=LIAISON)
    assert unread == 0 and [i.read for i in items] == [True]
    assert inbox(env.deps, actor=LIAISON, unread_only=True) == ([], 0)

    env.clock.advance(hours=1)
    assert relay_outbox(env.deps).claimed == 0
    assert len(inbox(env.deps, actor=LIAISON)[0]) == 1
    with UnitOfWork(env.deps, read_only=True) as uow:
        assert len(list(uow.session.execute(select(InboxItem)).scalars())) == 1


# --- 6. the delivery audit -----------------------------------------------------------------------------


def test_case_deliveries_for_handlers_and_supervisors_only(env: Env) -> None:
    case_no = env.builder.to_state("police_review").case_no
    relay_outbox(env.deps)
    for officer in ("sm_amr_handler", "sm_psb_handler", "sm_amr_supervisor", "fj_amr_supervisor", "admin", None):
        views = case_deliveries(env.deps, case_no, actor=officer)
        assert {(v.channel, v.recipient_user, v.status) for v in views} == {
            ("email", LIAISON, "sent"),
            ("inbox", LIAISON, "sent"),
        }, officer
        assert all(v.case_no == case_no and [h["outcome"] for h in v.history] == ["sent"] for v in views)
    with pytest.raises(PermissionDenied, match="handlers and supervisors"):
        case_deliveries(env.deps, case_no, actor=LIAISON)  # a liaison-only officer of a participating agency
    for outsider in ("mx_psb_handler", "jl_amr_liaison"):
        with pytest.raises(CaseNotFound):
            case_deliveries(env.deps, case_no, actor=outsider)


# --- bugs found ------------------------------------------------------------------------------------------


def test_an_unparseable_address_is_parked_not_a_relay_crash(env: Env) -> None:
    with env.deps.engine.begin() as conn:
        conn.execute(text("UPDATE officers SET email = 'x@[sanming.example' WHERE username = :u"), {"u": LIAISON})
    env.builder.to_state("police_review")
    result = relay_outbox(env.deps)  # today: AttributeError: 'InvalidHeaderDefect' object has no attribute ...
    [mail] = rows(env.deps, channel="email")
    assert mail.status == "dead" and mail.last_error
    assert result.sent == 1 and env.smtp.envelopes == []


def test_a_notice_is_never_sent_to_another_address_than_the_stored_one(env: Env) -> None:
    address = "zhang;li@sanming.example"
    with env.deps.engine.begin() as conn:
        conn.execute(text("UPDATE officers SET email = :e WHERE username = :u"), {"e": address, "u": LIAISON})
    env.builder.to_state("police_review")
    relay_outbox(env.deps)
    [mail] = rows(env.deps, channel="email")
    assert mail.recipient == address
    assert all(e.rcpt_tos == [address] for e in env.smtp.envelopes), [e.rcpt_tos for e in env.smtp.envelopes]
    assert mail.status == "dead" or len(env.smtp.envelopes) == 1
