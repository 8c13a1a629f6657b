"""Webhook delivery end to end on a SQLite file: a real case event, the outbox row ``enqueue`` writes for each
subscribed ``[[notifications.webhooks]]`` entry, the relay (``workflows/outbox.py``) and the real
``WebhookChannel`` POSTing to a real HTTP server on 127.0.0.1 (``procs/webhook_receiver.py``).

The issue's acceptance: "A webhook receiver on 127.0.0.1 verifies the HMAC; a 500 from it is retried, a 4xx
parks the row."

* The transfer to the police reaches the receiver as signed JSON (HMAC-SHA256 over ``timestamp.body``, the
  timestamp being the moment of sending), with ``Idempotency-Key`` = the row's dedupe key and the
  Chinese subject and body; the row is ``sent`` with one ``sent`` delivery attempt.
* 5xx, 408, 429, a timeout and a refused connection are retried with backoff (``failed`` attempt, the row
  pending and unclaimed); the repeat carries the same key, body and signature; ``max_attempts`` failures park
  the row.
* Any other 4xx parks the row at once (``dead``, the status named in ``last_error``); so does the receiver's
  401 to a relay signing with the wrong secret. A parked row stays parked until an admin re-queues it.
* The secret's variable unset (or empty): retried with a clear ``last_error``, never sent unsigned.
* ``agencies`` / ``kinds`` filters: only the matching webhooks get a row.

The email channel is disabled in these configs (its rows park at once), so no test depends on an SMTP port.
"""

from __future__ import annotations

import json
import random
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from models.tables import CaseEvent, Deadline, DeliveryAttempt, OutboxMessage
from notifications.channels import Channels, sign, verify
from tests.conftest import CaseBuilder, FakeClock, make_deps, write_config
from tests.integration.procs.webhook_receiver import Received, WebhookReceiver
from workflows.deadlines import fire_due_deadlines
from workflows.outbox import RelayResult, relay_outbox, retry_dead
from workflows.uow import Deps, UnitOfWork

SECRET_ENV = "JC_TEST_HOOK_SECRET"
SECRET = "jc-test-hook-secret-4f1d9c"
HOOK = "psb-system"
ADMIN = "admin"
BASE = 30.0  # backoff_base_seconds of config.toml: the first retry waits 15..30 s (equal jitter)
EMAILS = 1  # email rows of the transfer to the police (the sm-psb liaison): parked by the first pass (disabled)


def hook_toml(
    name: str,
    url: str,
    *,
    agencies: Sequence[str] = (),
    kinds: Sequence[str] = (),
    secret_env: str = SECRET_ENV,
    timeout_seconds: float = 5,
) -> str:
    """One ``[[notifications.webhooks]]`` table."""
    return (
        "\n[[notifications.webhooks]]\n"
        f'name = "{name}"\n'
        f'url = "{url}"\n'
        f'secret_env = "{secret_env}"\n'
        f"agencies = {json.dumps(list(agencies))}\n"
        f"kinds = {json.dumps(list(kinds))}\n"
        f"timeout_seconds = {timeout_seconds}\n"
    )


def webhook_config(directory: Path, database_url: str, hooks: Sequence[str], **replace: str) -> Path:
    """config.toml pointing at ``database_url`` with the email channel off and ``hooks`` appended."""
    path = write_config(directory, database_url, **{r"(?m)^enabled = true": "enabled = false", **replace})
    path.write_text(path.read_text(encoding="utf-8") + "".join(hooks), encoding="utf-8")
    return path


@dataclass
class Setup:
    """A migrated SQLite database with webhooks configured, in-process Deps on a fake clock, a case builder."""

    deps: Deps
    clock: FakeClock
    builder: CaseBuilder


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as hook:
        yield hook


@pytest.fixture
def setup_hooks(tmp_path: Path, clock: FakeClock) -> Iterator[Callable[..., Setup]]:
    made: list[Deps] = []

    def make(hooks: Sequence[str], **replace: str) -> Setup:
        directory = tmp_path / f"db{len(made)}"
        (directory / "files").mkdir(parents=True)
        config = webhook_config(directory, f"sqlite:///{directory / 'jointcase.db'}", hooks, **replace)
        _settings, deps = make_deps(config, clock)
        made.append(deps)
        assert deps.notifications.email.enabled is False, "the email switch of config.toml moved"
        assert deps.notifications.webhooks, "no webhook configured"
        return Setup(deps, clock, CaseBuilder(deps, clock, directory / "files"))

    try:
        yield make
    finally:
        for deps in made:
            deps.engine.dispose()


@pytest.fixture
def psb(setup_hooks: Callable[..., Setup], receiver: WebhookReceiver) -> Setup:
    """One webhook, the police's system: case events of cases sm-psb takes part in."""
    return setup_hooks([hook_toml(HOOK, receiver.url("/hooks/psb"), agencies=["sm-psb"], kinds=["case_event"])])


# --- helpers -----------------------------------------------------------------------------------------------


def relay(deps: Deps, environ: dict[str, str] | None = None, **kwargs: Any) -> RelayResult:
    """One relay pass with real channels whose environment holds ``environ`` (default: the right secret)."""
    env = {SECRET_ENV: SECRET} if environ is None else environ
    with Channels(deps.notifications, env) as channels:
        return relay_outbox(deps, channels=channels, rng=random.Random(6), **kwargs)


def webhook_rows(deps: Deps) -> list[OutboxMessage]:
    """The webhook rows as committed now, detached (leaving the unit of work rolls back and expires)."""
    with UnitOfWork(deps, read_only=True) as uow:
        rows = list(
            uow.session.execute(
                select(OutboxMessage).where(OutboxMessage.channel == "webhook").order_by(OutboxMessage.id)
            ).scalars()
        )
        uow.session.expunge_all()
        return rows


def the_webhook_row(deps: Deps) -> OutboxMessage:
    rows = webhook_rows(deps)
    assert len(rows) == 1, [(r.recipient, r.dedupe_key) for r in rows]
    return rows[0]


def attempts_of(deps: Deps, message_id: int | None) -> list[tuple[int, str, str]]:
    """(attempt, outcome, error) of each delivery attempt of one message, in order."""
    with UnitOfWork(deps, read_only=True) as uow:
        rows = uow.session.execute(
            select(DeliveryAttempt).where(DeliveryAttempt.message_id == message_id).order_by(DeliveryAttempt.id)
        ).scalars()
        return [(a.attempt, a.outcome, a.error) for a in rows]


def event_id_of(deps: Deps, case_no: str, event: str) -> str:
    with UnitOfWork(deps, read_only=True) as uow:
        case = uow.case(case_no)
        return str(
            uow.session.execute(
                select(CaseEvent.event_id).where(CaseEvent.case_id == case.id, CaseEvent.event == event)
            ).scalar_one()
        )


def to_police(setup: Setup) -> str:
    """Drive a new sm-amr case through the transfer to the police (the event that tells sm-psb)."""
    return setup.builder.to_state("police_review").case_no


def assert_retry_pending(row: OutboxMessage, at: datetime, attempts: int, error: str) -> None:
    """A failed delivery: still pending, released (no claim), due again after the backoff."""
    assert (row.status, row.attempts, row.last_error) == ("pending", attempts, error)
    assert (row.claimed_by, row.claimed_until, row.sent_at) == ("", None, None)
    ceiling = BASE * 2 ** (attempts - 1)
    assert at + timedelta(seconds=ceiling / 2) <= row.next_attempt_at <= at + timedelta(seconds=ceiling)


# --- 1. the happy path: a real case event, signed, with the dedupe key ---------------------------------------


def test_the_transfer_to_the_police_reaches_the_receiver_signed_with_its_dedupe_key(
    psb: Setup, receiver: WebhookReceiver
) -> None:
    case_no = to_police(psb)
    row = the_webhook_row(psb.deps)
    event_id = event_id_of(psb.deps, case_no, "transfer_to_police")
    assert row.dedupe_key == f"case_event:{event_id}:webhook:{HOOK}"
    assert (row.kind, row.recipient, row.recipient_user, row.status, row.attempts) == (
        "case_event",
        HOOK,
        None,
        "pending",
        0,
    )
    assert receiver.received() == []  # queued in the transition's transaction, sent only by the relay

    psb.clock.advance(minutes=5)
    result = relay(psb.deps)

    assert result.sent >= 2 and result.retried == 0  # the webhook and the police liaison's inbox item
    [got] = receiver.received()
    assert (got.method, got.path, got.status, got.signature_ok) == ("POST", "/hooks/psb", 200, True)
    # The headers: the dedupe key, the signing time (the moment of sending) and the signature over the raw body.
    assert got.key == row.dedupe_key
    assert got.headers["content-type"] == "application/json; charset=utf-8"
    assert got.headers["user-agent"] == "jointcase-relay"
    timestamp, signature = got.headers["x-jointcase-timestamp"], got.headers["x-jointcase-signature"]
    assert abs(int(timestamp) - time.time()) < 60  # signed when sent (real time), so receivers can refuse stale ones
    assert signature == sign(SECRET.encode(), timestamp, got.body)
    assert signature.startswith("sha256=") and len(signature) == len("sha256=") + 64
    assert verify(SECRET.encode(), timestamp, got.body, signature)
    assert not verify(b"another secret", timestamp, got.body, signature)
    # The body: UTF-8 JSON with the Chinese text as is (not \u escapes).
    assert "移送公安机关".encode() in got.body
    payload = json.loads(got.body.decode("utf-8"))
    assert set(payload) == {"id", "kind", "case_no", "subject", "body", "lang", "created_at"}
    assert payload["id"] == row.dedupe_key
    assert (payload["kind"], payload["case_no"], payload["lang"]) == ("case_event", case_no, "zh")
    assert payload["subject"] == f"【案件协作】{case_no} 移送公安机关" == row.subject
    assert payload["body"] == row.body
    assert "「三明某公司配方泄露案」办理了“移送公安机关”" in payload["body"]
    assert "三明市市场监督管理局" in payload["body"] and "公安审查" in payload["body"]
    assert payload["created_at"] == row.created_at.isoformat()
    assert datetime.fromisoformat(payload["created_at"]).utcoffset() == timedelta(0)

    sent = the_webhook_row(psb.deps)
    assert (sent.status, sent.attempts, sent.last_error, sent.sent_at) == ("sent", 1, "", psb.clock.now)
    assert (sent.claimed_by, sent.claimed_until) == ("", None)
    assert attempts_of(psb.deps, sent.id) == [(1, "sent", "")]

    # Nothing more to do: a second pass, even much later, sends nothing again.
    psb.clock.advance(days=3)
    assert relay(psb.deps).claimed == 0
    assert len(receiver.received()) == 1


# --- 2. retried: 5xx, 408, 429, timeouts, refused connections --------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
def test_a_transient_answer_is_retried_with_backoff_and_the_repeat_is_identical(
    psb: Setup, receiver: WebhookReceiver, status: int
) -> None:
    to_police(psb)
    receiver.answer(status)
    at = psb.clock.advance(minutes=1)

    result = relay(psb.deps)

    assert result.retried == 1
    row = the_webhook_row(psb.deps)
    assert_retry_pending(row, at, 1, f"webhook {HOOK} answered {status}")
    assert attempts_of(psb.deps, row.id) == [(1, "failed", f"webhook {HOOK} answered {status}")]
    # Not due yet: a pass before the backoff ends leaves it alone.
    psb.clock.now = row.next_attempt_at - timedelta(seconds=1)
    assert relay(psb.deps).claimed == 0
    assert len(receiver.received()) == 1

    psb.clock.now = row.next_attempt_at
    again = relay(psb.deps)

    assert (again.sent, again.retried, again.parked) == (1, 0, 0)
    row = the_webhook_row(psb.deps)
    assert (row.status, row.attempts, row.last_error, row.sent_at) == ("sent", 2, "", psb.clock.now)
    assert attempts_of(psb.deps, row.id) == [(1, "failed", f"webhook {HOOK} answered {status}"), (2, "sent", "")]
    first, second = receiver.received()
    assert (first.status, second.status) == (status, 200)
    # The repeat is the same message: same key, same bytes, each send signed for its own moment.
    assert first.key == second.key == row.dedupe_key
    assert first.body == second.body
    assert first.signature_ok and second.signature_ok


def test_max_attempts_failures_park_the_row(setup_hooks: Callable[..., Setup], receiver: WebhookReceiver) -> None:
    setup = setup_hooks(
        [hook_toml(HOOK, receiver.url("/hooks/psb"), agencies=["sm-psb"])],
        **{r"(?m)^max_attempts = \d+": "max_attempts = 3"},
    )
    assert setup.deps.notifications.max_attempts == 3
    receiver.default_status = 500
    to_police(setup)

    outcomes = []
    for attempt in (1, 2, 3):
        row = the_webhook_row(setup.deps)
        setup.clock.now = max(setup.clock.now, row.next_attempt_at)
        result = relay(setup.deps)
        outcomes.append((result.retried, result.parked))
        row = the_webhook_row(setup.deps)
        assert row.attempts == attempt

    assert outcomes == [(1, EMAILS), (1, 0), (0, 1)]
    row = the_webhook_row(setup.deps)
    assert (row.status, row.last_error, row.sent_at) == ("dead", f"webhook {HOOK} answered 500", None)
    error = f"webhook {HOOK} answered 500"
    assert attempts_of(setup.deps, row.id) == [(1, "failed", error), (2, "failed", error), (3, "dead", error)]
    setup.clock.advance(days=1)
    assert relay(setup.deps).claimed == 0
    assert len(receiver.received(row.dedupe_key)) == 3


def test_a_timeout_is_retried_though_the_receiver_got_the_request(
    setup_hooks: Callable[..., Setup], receiver: WebhookReceiver
) -> None:
    """The at-least-once case without a crash: the receiver has the message, the relay never heard back."""
    setup = setup_hooks([hook_toml(HOOK, receiver.url("/hooks/psb"), agencies=["sm-psb"], timeout_seconds=0.3)])
    to_police(setup)
    row = the_webhook_row(setup.deps)
    receiver.hold(row.dedupe_key)
    at = setup.clock.advance(minutes=1)

    assert relay(setup.deps).retried == 1

    assert receiver.held.is_set()
    row = the_webhook_row(setup.deps)
    assert row.last_error.startswith(f"webhook {HOOK} unreachable: ReadTimeout"), row.last_error
    assert_retry_pending(row, at, 1, row.last_error)
    receiver.release.set()
    setup.clock.now = row.next_attempt_at
    assert relay(setup.deps).sent == 1
    assert [r.key for r in receiver.received()] == [row.dedupe_key, row.dedupe_key]
    assert [o for _, o, _ in attempts_of(setup.deps, row.id)] == ["failed", "sent"]


def test_a_refused_connection_is_retried(setup_hooks: Callable[..., Setup]) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on (bound, then closed)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    setup = setup_hooks([hook_toml(HOOK, f"http://127.0.0.1:{port}/hook", agencies=["sm-psb"])])
    to_police(setup)
    at = setup.clock.advance(minutes=1)

    assert relay(setup.deps).retried == 1

    row = the_webhook_row(setup.deps)
    assert row.last_error.startswith(f"webhook {HOOK} unreachable: ConnectError"), row.last_error
    assert_retry_pending(row, at, 1, row.last_error)


# --- 3. parked: other 4xx, a wrong secret ---------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 403, 404, 410, 422])
def test_a_4xx_parks_the_row_at_once_until_an_admin_requeues_it(
    psb: Setup, receiver: WebhookReceiver, status: int
) -> None:
    to_police(psb)
    receiver.answer(status)
    psb.clock.advance(minutes=1)

    result = relay(psb.deps)

    assert (result.parked, result.retried) == (1 + EMAILS, 0)
    row = the_webhook_row(psb.deps)
    error = f"webhook {HOOK} refused the message: {status}"
    assert (row.status, row.attempts, row.last_error, row.sent_at) == ("dead", 1, error, None)
    assert (row.claimed_by, row.claimed_until) == ("", None)
    assert attempts_of(psb.deps, row.id) == [(1, "dead", error)]
    psb.clock.advance(days=7)
    assert relay(psb.deps).claimed == 0
    assert len(receiver.received()) == 1

    # The receiver is fixed; an admin puts the row back; it goes out with the same key.
    assert retry_dead(psb.deps, actor=ADMIN, ids=[row.id or 0]) == 1
    assert relay(psb.deps).sent == 1
    row = the_webhook_row(psb.deps)
    assert (row.status, row.attempts) == ("sent", 1)
    assert [o for _, o, _ in attempts_of(psb.deps, row.id)] == ["dead", "requeued", "sent"]
    assert [r.status for r in receiver.received(row.dedupe_key)] == [status, 200]


def test_a_relay_with_the_wrong_secret_is_refused_401_and_the_row_parks(psb: Setup, receiver: WebhookReceiver) -> None:
    to_police(psb)
    psb.clock.advance(minutes=1)

    result = relay(psb.deps, {SECRET_ENV: "not-the-shared-secret"})

    assert result.parked == 1 + EMAILS
    [got] = receiver.received()
    assert (got.signature_ok, got.status) == (False, 401)
    row = the_webhook_row(psb.deps)
    assert got.key == row.dedupe_key
    error = f"webhook {HOOK} refused the message: 401"
    assert (row.status, row.attempts, row.last_error) == ("dead", 1, error)
    assert attempts_of(psb.deps, row.id) == [(1, "dead", error)]


# --- 4. the secret's variable missing: retried, never sent unsigned ----------------------------------------------


@pytest.mark.parametrize("environ", [{}, {SECRET_ENV: ""}], ids=["unset", "empty"])
def test_a_missing_secret_is_retried_with_a_clear_error_and_nothing_is_sent(
    psb: Setup, receiver: WebhookReceiver, environ: dict[str, str]
) -> None:
    to_police(psb)
    at = psb.clock.advance(minutes=1)

    result = relay(psb.deps, environ)

    assert (result.retried, result.parked) == (1, EMAILS)
    assert receiver.received() == []  # not sent at all, in particular not unsigned
    row = the_webhook_row(psb.deps)
    error = f"webhook {HOOK}: secret variable {SECRET_ENV} is not set"
    assert_retry_pending(row, at, 1, error)
    assert attempts_of(psb.deps, row.id) == [(1, "failed", error)]

    # The operator sets the variable; the next pass after the backoff delivers, signed.
    psb.clock.now = row.next_attempt_at
    assert relay(psb.deps).sent == 1
    [got] = receiver.received()
    assert got.signature_ok and got.key == row.dedupe_key
    assert [o for _, o, _ in attempts_of(psb.deps, row.id)] == ["failed", "sent"]


# --- 5. filters -----------------------------------------------------------------------------------------------


def test_webhooks_get_only_the_kinds_and_agencies_they_subscribe_to(
    setup_hooks: Callable[..., Setup], receiver: WebhookReceiver
) -> None:
    hooks = {
        "everything": {},
        "psb": {"agencies": ["sm-psb"]},
        "amr": {"agencies": ["sm-amr"]},
        "psb-or-court": {"agencies": ["sm-court", "sm-psb"]},
        "court": {"agencies": ["sm-court"]},
        "jl-amr": {"agencies": ["jl-amr"]},
        "psb-events": {"agencies": ["sm-psb"], "kinds": ["case_event"]},
        "reminders": {"kinds": ["deadline_reminder"]},
        "psb-reminders": {"agencies": ["sm-psb"], "kinds": ["deadline_reminder"]},
        "supervision": {"kinds": ["supervision_notice", "deadline_missed"]},
    }
    setup = setup_hooks([hook_toml(name, receiver.url(f"/hooks/{name}"), **f) for name, f in hooks.items()])
    case_no = to_police(setup)

    def queued(kind: str, prefix: str = "") -> dict[str, str]:
        return {
            r.recipient: r.dedupe_key
            for r in webhook_rows(setup.deps)
            if r.kind == kind and r.dedupe_key.startswith(prefix)
        }

    # The market regulator's own steps reach the systems subscribed to its cases too (no officer of
    # another agency is told of them, but a subscribed system is).
    filed = queued("case_event", f"case_event:{event_id_of(setup.deps, case_no, 'file_case')}:")
    assert sorted(filed) == ["amr", "everything"]
    event_id = event_id_of(setup.deps, case_no, "transfer_to_police")
    events = queued("case_event", f"case_event:{event_id}:")
    assert sorted(events) == ["amr", "everything", "psb", "psb-events", "psb-or-court"]
    assert events == {name: f"case_event:{event_id}:webhook:{name}" for name in events}

    # The police review clock's reminder (T7, one day before it ends) is another kind.
    with UnitOfWork(setup.deps, read_only=True) as uow:
        t7 = uow.session.execute(select(Deadline).where(Deadline.rule == "T7")).scalar_one()
        uow.session.expunge_all()
    assert t7.next_alert.startswith("remind:") and t7.next_alert_at is not None
    assert fire_due_deadlines(setup.deps, t7.next_alert_at).reminders == 1
    reminders = queued("deadline_reminder")
    assert sorted(reminders) == ["amr", "everything", "psb", "psb-or-court", "psb-reminders", "reminders"]
    assert all(key.endswith(f":webhook:{name}") for name, key in reminders.items())

    # The relay posts each row to its own webhook's URL, once.
    setup.clock.now = t7.next_alert_at
    result = relay(setup.deps)
    assert result.retried == 0
    got: list[Received] = receiver.received()
    rows = webhook_rows(setup.deps)
    assert sorted((r.path, json.loads(r.body)["kind"]) for r in got) == sorted(
        (f"/hooks/{r.recipient}", r.kind) for r in rows
    )
    assert {r.key for r in got} == {r.dedupe_key for r in rows} >= set(events.values()) | set(reminders.values())
    assert len(got) == len(rows)  # each row posted once
    assert all(r.signature_ok and r.status == 200 for r in got)
    assert {r.status for r in webhook_rows(setup.deps)} == {"sent"}
