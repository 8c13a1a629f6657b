"""The outbox relay on a schedule, for real: the embedded APScheduler job and the Prefect flow deliver a notice
to a real SMTP server (aiosmtpd on 127.0.0.1, a port the OS chooses), and the CLI lists and runs them.

No mocks. The notice comes from a real case event: a case driven to ``transfer_to_police`` queues an email
and an inbox item for the police liaison. The case is built with an injected clock a day in the past, so
the rows are due for the relay's real clock (``runtime.deps_for``) and no statutory deadline is missed yet.
The Prefect test server is the session-wide one of test_scheduling.py (imported, not started twice).
"""

from __future__ import annotations

import asyncio
import email
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from app.settings import load_settings
from notifications.channels import message_id
from tests.conftest import CaseBuilder, FakeClock, make_deps
from tests.integration.test_scheduling import (  # noqa: F401 (pytest fixtures: used by name)
    _forget_cached_deps,
    cli,
    job_rows,
    prefect_server,
    sqlite_config,
    wait_for,
)
from workflows.flows.scheduler import (
    BULLETIN_JOB_FUNC,
    BULLETIN_JOB_ID,
    JOB_IDS,
    MEETING_JOB_FUNC,
    MEETING_JOB_ID,
    RELAY_JOB_FUNC,
    RELAY_JOB_ID,
    SWEEP_JOB_FUNC,
    SWEEP_JOB_ID,
    run_relay_job,
    start_embedded,
    stop_embedded,
    stored_jobs,
)
from workflows.uow import Deps

LIAISON = "sm_psb_liaison@sanming.example"
NOTHING = {"claimed": 0, "sent": 0, "retried": 0, "parked": 0, "batches": 0}


# --- a real SMTP server ------------------------------------------------------------------------------------


class Mailbox:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        parsed = email.message_from_bytes(content, _class=EmailMessage, policy=policy.default)
        with self._lock:
            self._messages.append((list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[tuple[list[str], EmailMessage]]:
        with self._lock:
            return list(self._messages)


class LoopbackSMTP(Controller):
    """aiosmtpd's threaded controller on a port the OS chooses (``port=0``); ``port`` is then the real one.

    aiosmtpd connects once to the configured port to check the server is up; with 0 it must be told the port
    the listening socket got first.
    """

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@pytest.fixture
def smtp() -> Iterator[tuple[LoopbackSMTP, Mailbox]]:
    mailbox = Mailbox()
    controller = LoopbackSMTP(mailbox, hostname="127.0.0.1", port=0)
    controller.start()
    try:
        yield controller, mailbox
    finally:
        controller.stop()


# --- helpers -----------------------------------------------------------------------------------------------


def relay_config(directory: Path, smtp_port: int, **replace: str) -> tuple[Path, Path]:
    """A SQLite config whose email channel points at ``smtp_port`` on 127.0.0.1; returns (config, db)."""
    config, db = sqlite_config(directory, **{r"(?m)^port = 1025\b": f"port = {smtp_port}", **replace})
    email_settings = load_settings(config, env={}).notifications.email
    assert (email_settings.host, email_settings.port, email_settings.enabled) == ("127.0.0.1", smtp_port, True)
    return config, db


def transfer_case(config: Path, directory: Path) -> tuple[Deps, str]:
    """Migrated deps (clock a day back) and a case transferred to the police: notices for the police liaison."""
    clock = FakeClock(start=datetime.now(UTC) - timedelta(days=1))
    _settings, deps = make_deps(config, clock)
    files = directory / "files"
    files.mkdir()
    view = CaseBuilder(deps, clock, files).to_state("police_review")
    return deps, view.case_no


def outbox_rows(db: Path) -> list[tuple[str, str, str, int, str]]:
    """(channel, recipient, status, attempts, dedupe_key) of every outbox row, oldest first."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT channel, recipient, status, attempts, dedupe_key FROM outbox ORDER BY id")
        return [tuple(row) for row in rows]  # type: ignore[misc]


def inbox_items(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT username FROM inbox_items ORDER BY id")]


def delivered(db: Path) -> bool:
    return all(status == "sent" for _channel, _to, status, _attempts, _key in outbox_rows(db))


def assert_notice(mailbox: Mailbox, db: Path, case_no: str) -> None:
    """Exactly one email, to the police liaison, about ``case_no``, with the row's stable Message-ID."""
    [(email_key,)] = [(key,) for channel, _to, _status, _attempts, key in outbox_rows(db) if channel == "email"]
    [(rcpt_tos, msg)] = mailbox.messages
    assert rcpt_tos == [LIAISON] and msg["To"] == LIAISON
    assert case_no in str(msg["Subject"]) and "移送公安机关" in str(msg["Subject"])
    assert msg["Message-ID"] == message_id(email_key)
    # The key is longer than a header line: it is folded onto the next line, and Python's parser keeps the
    # folding space ("X-Jointcase-Dedupe-Key:\n case_event:..."), so compare without it.
    assert str(msg["X-Jointcase-Dedupe-Key"]).strip() == email_key
    assert [status for _c, _t, status, _a, _k in outbox_rows(db)] == ["sent", "sent"]
    assert [attempts for _c, _t, _s, attempts, _k in outbox_rows(db)] == [1, 1]
    assert inbox_items(db) == ["sm_psb_liaison"]


# --- the embedded scheduler --------------------------------------------------------------------------------


def test_embedded_scheduler_relays_a_case_notice_to_smtp(tmp_path: Path, smtp: tuple[LoopbackSMTP, Mailbox]) -> None:
    controller, mailbox = smtp
    config, db = relay_config(
        tmp_path, controller.port, **{r"(?m)^relay_every_seconds = \d+": "relay_every_seconds = 1"}
    )
    deps, case_no = transfer_case(config, tmp_path)
    assert [(c, to, s) for c, to, s, _a, _k in outbox_rows(db)] == [
        ("email", LIAISON, "pending"),
        ("inbox", LIAISON, "pending"),
    ]
    started = time.monotonic()
    scheduler = start_embedded(config)
    try:
        assert scheduler is not None and scheduler.running
        assert wait_for(lambda: delivered(db), timeout=15), f"the relay job never delivered: {outbox_rows(db)}"
        delivery_seconds = time.monotonic() - started
        time.sleep(2.2)  # two more runs of the job: nothing goes out twice
    finally:
        stop_embedded(scheduler)
    assert scheduler is not None and not scheduler.running
    assert delivery_seconds < 8, delivery_seconds  # the first run is one interval (1 s) after the start, not 30 s
    assert_notice(mailbox, db, case_no)
    deps.engine.dispose()


def test_both_jobs_are_stored_once_under_stable_ids(tmp_path: Path) -> None:
    """Two starts (the second with other intervals) leave each job stored once, rewritten by the second."""
    deps: Deps | None = None
    for sweep_every, relay_every in ((3600, 900), (1800, 45)):
        config, db = relay_config(
            tmp_path,
            1025,
            **{
                r"(?m)^sweep_every_seconds = \d+": f"sweep_every_seconds = {sweep_every}",
                r"(?m)^relay_every_seconds = \d+": f"relay_every_seconds = {relay_every}",
            },
        )
        if deps is None:
            deps, _case_no = transfer_case(config, tmp_path)
        scheduler = start_embedded(config)
        assert scheduler is not None
        assert sorted(j.id for j in scheduler.get_jobs()) == sorted(JOB_IDS)
        stop_embedded(scheduler)
    assert deps is not None
    assert job_rows(db) == sorted(JOB_IDS)
    assert sorted(JOB_IDS) == ["deadline_sweep", "information_bulletin", "meeting_preparation", "outbox_relay"]
    jobs = {j.id: j for j in stored_jobs(deps)}
    for job_id, func, trigger in (
        (SWEEP_JOB_ID, SWEEP_JOB_FUNC, "interval[0:30:00]"),
        (RELAY_JOB_ID, RELAY_JOB_FUNC, "interval[0:00:45]"),
        (MEETING_JOB_ID, MEETING_JOB_FUNC, "interval[1:00:00]"),  # [meetings] prepare_every_seconds
    ):
        job = jobs[job_id]
        assert (job.func, job.args, job.trigger) == (func, [str(config)], trigger)
        assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, None)
        assert job.next_run_time and job.next_run_time.endswith("+08:00")
    assert [status for _c, _t, status, _a, _k in outbox_rows(db)] == ["pending", "pending"]  # never ran
    deps.engine.dispose()


def test_the_relay_job_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config, _db = sqlite_config(tmp_path)  # never initialised: no tables
    with caplog.at_level("ERROR", logger="workflows.flows.scheduler"):
        assert run_relay_job(str(tmp_path / "missing.toml")) is None
        assert run_relay_job(str(config)) is None
    assert "outbox relay: the configuration cannot be used" in caplog.text
    assert "outbox relay failed" in caplog.text


def test_the_relay_job_retries_an_unreachable_smtp_server_later(tmp_path: Path) -> None:
    """No server on the port: the email row waits for its backoff; the inbox item is delivered anyway."""
    with socket.socket() as bound:  # bound, never listening: a connection is refused, and the port stays ours
        bound.bind(("127.0.0.1", 0))
        config, db = relay_config(tmp_path, bound.getsockname()[1])
        deps, _case_no = transfer_case(config, tmp_path)
        counts = run_relay_job(str(config))
        assert counts == {"claimed": 2, "sent": 1, "retried": 1, "parked": 0, "batches": 1}
        assert [(c, s, a) for c, _t, s, a, _k in outbox_rows(db)] == [("email", "pending", 1), ("inbox", "sent", 1)]
        assert run_relay_job(str(config)) == NOTHING  # the retry is not due yet
    deps.engine.dispose()


# --- the Prefect flow --------------------------------------------------------------------------------------


@pytest.mark.usefixtures("prefect_server")
def test_prefect_flow_relays_to_smtp_once(tmp_path: Path, smtp: tuple[LoopbackSMTP, Mailbox]) -> None:
    from workflows.flows.relay import outbox_relay

    controller, mailbox = smtp
    config, db = relay_config(tmp_path, controller.port)
    deps, case_no = transfer_case(config, tmp_path)
    before = (deps.now() - timedelta(days=1)).isoformat()  # before the case was opened: nothing is due
    assert asyncio.run(outbox_relay(config_path=str(config), now=before)) == NOTHING
    assert mailbox.messages == []
    first = asyncio.run(outbox_relay(config_path=str(config)))
    assert first == {"claimed": 2, "sent": 2, "retried": 0, "parked": 0, "batches": 1}
    assert_notice(mailbox, db, case_no)
    state = asyncio.run(outbox_relay(config_path=str(config), return_state=True))
    assert state.is_completed()
    again = asyncio.run(outbox_relay(config_path=str(config)))  # not cached: it ran and found nothing
    assert again == NOTHING
    assert len(mailbox.messages) == 1
    deps.engine.dispose()


def test_scaled_deployments_serve_the_sweep_and_the_relay(tmp_path: Path) -> None:
    from workflows.flows.sweep import scaled_deployments

    config, _db = sqlite_config(tmp_path)
    by_name = {d.name: d for d in scaled_deployments(str(config))}  # intervals from config.toml: 60 s and 30 s
    assert sorted(by_name) == [
        "deadline-sweep",
        "information-bulletin",
        "information-bulletin-quarterly",
        "meeting-preparation",
        "outbox-relay",
    ]
    meetings = by_name["meeting-preparation"]
    assert meetings.entrypoint == "workflows.flows.meetings.meeting_preparation"
    assert [s.schedule.interval for s in meetings.schedules] == [timedelta(seconds=3600)]
    relay = by_name["outbox-relay"]
    assert (relay.flow_name, relay.parameters) == ("outbox-relay", {"config_path": str(config)})
    assert relay.entrypoint == "workflows.flows.relay.outbox_relay"
    assert [s.schedule.interval for s in relay.schedules] == [timedelta(seconds=30)]
    assert [s.schedule.interval for s in by_name["deadline-sweep"].schedules] == [timedelta(seconds=60)]
    assert relay.concurrency_limit == 1
    explicit = scaled_deployments(str(config), 300, 5)
    assert [[s.schedule.interval for s in d.schedules] for d in explicit[:2]] == [
        [timedelta(seconds=300)],
        [timedelta(seconds=5)],
    ]


# --- the CLI -----------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("prefect_server")
def test_cli_lists_both_jobs_and_runs_the_relay_flow(tmp_path: Path, smtp: tuple[LoopbackSMTP, Mailbox]) -> None:
    controller, mailbox = smtp
    config, db = relay_config(tmp_path, controller.port)
    deps, case_no = transfer_case(config, tmp_path)
    stop_embedded(start_embedded(config))
    listed = json.loads(cli(config, "scheduler", "jobs", "--json").stdout)
    assert sorted((j["id"], j["func"], j["trigger"]) for j in listed) == [
        (SWEEP_JOB_ID, SWEEP_JOB_FUNC, "interval[0:01:00]"),
        (BULLETIN_JOB_ID, BULLETIN_JOB_FUNC, "cron[day='1', hour='8', minute='0']"),
        (MEETING_JOB_ID, MEETING_JOB_FUNC, "interval[1:00:00]"),
        (RELAY_JOB_ID, RELAY_JOB_FUNC, "interval[0:00:30]"),
    ]
    human = cli(config, "scheduler", "jobs").stdout
    assert SWEEP_JOB_ID in human and RELAY_JOB_ID in human
    counts: dict[str, Any] = json.loads(cli(config, "scheduler", "flow-run", "--flow", "outbox-relay", "--json").stdout)
    assert counts == {"claimed": 2, "sent": 2, "retried": 0, "parked": 0, "batches": 1}
    assert_notice(mailbox, db, case_no)
    again = cli(config, "scheduler", "flow-run", "--flow", "outbox-relay").stdout
    assert "flow outbox-relay done" in again and "0 due, 0 sent" in again
    cli(config, "scheduler", "flow-run", "--flow", "outbox-sweep", code=2)  # not a flow
    deps.engine.dispose()
