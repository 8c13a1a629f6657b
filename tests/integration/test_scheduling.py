"""Scheduling for real: the embedded APScheduler job on a SQLite file, the Prefect flow on a test server, the CLI.

No mocks. The scheduler job and the flow build their own deps with the real clock (``runtime.deps_for``),
so each case is opened with an injected clock 40 days in the past: its A1 deadline (15 working days) is
already missed in real time, and the first real sweep fires ``deadline_missed``. One Prefect test server
serves the whole session (starting one costs 6-10 s); PREFECT_HOME is a temporary folder, analytics off.
The embedded scheduler also stores the outbox relay job; its delivery is tested in test_relay_scheduling.py,
which shares this module's Prefect server and helpers.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from app.cli import app
from states.errors import InvalidInput
from tests.conftest import FakeClock, make_deps, write_config
from workflows.cases import open_case, verify_audit
from workflows.flows.runtime import deps_for, forget_deps
from workflows.flows.scheduler import (
    JOB_IDS,
    JOB_TABLE,
    RELAY_JOB_ID,
    SWEEP_JOB_FUNC,
    SWEEP_JOB_ID,
    build_scheduler,
    run_sweep_job,
    start_embedded,
    stop_embedded,
    stored_jobs,
)
from workflows.uow import Deps

runner = CliRunner()
PAST = timedelta(days=40)


@pytest.fixture(autouse=True)
def _forget_cached_deps() -> Iterator[None]:
    """Each test's flow runs and jobs build deps for its own config; close their engines afterwards."""
    yield
    forget_deps()


#: Whether a ``prefect_server`` fixture has the server running. Other test modules import the fixture, and
#: pytest then holds one session fixture per importing module: the first to run starts the server, the rest
#: reuse it (they are torn down first, in reverse order of set-up, so the owner stops it last).
_prefect_running: list[bool] = []


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A temporary Prefect API server on loopback for the whole session, with its home in a tmp folder.

    Shared: ``from tests.integration.test_scheduling import prefect_server`` in another module reuses it.
    """
    if _prefect_running:
        yield
        return
    env = pytest.MonkeyPatch()
    env.setenv("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect-home")))
    env.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setenv("DO_NOT_TRACK", "1")
    for name in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE"):
        env.delenv(name, raising=False)
    import prefect.context
    from prefect.testing.utilities import prefect_test_harness

    prefect.context.refresh_global_settings_context()  # in case Prefect was imported before the env changed
    _prefect_running.append(True)
    try:
        with prefect_test_harness(server_startup_timeout=60):
            yield
    finally:
        env.undo()
        prefect.context.refresh_global_settings_context()
        _prefect_running.clear()


def sqlite_config(directory: Path, **replace: str) -> tuple[Path, Path]:
    """A config.toml in ``directory`` on the SQLite file ``directory/jointcase.db``; returns (config, db)."""
    db = directory / "jointcase.db"
    return write_config(directory, f"sqlite:///{db}", **replace), db


def past_deps(config: Path) -> Deps:
    """Migrated deps whose clock stands 40 days before the real time."""
    _settings, deps = make_deps(config, FakeClock(start=datetime.now(UTC) - PAST))
    return deps


def open_overdue_case(deps: Deps) -> str:
    """A new case whose A1 deadline passed weeks ago in real time."""
    view = open_case(deps, agency="sm-amr", title="三明某公司工艺泄露案", source="report", actor="sm_amr_handler")
    return view.case_no


def count_missed(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM case_events WHERE event = 'deadline_missed'").fetchone()[0])


def job_rows(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute(f"SELECT id FROM {JOB_TABLE} ORDER BY id")]


def has_job_table(db: Path) -> bool:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (JOB_TABLE,)).fetchone() is not None


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def start(scheduler: BackgroundScheduler) -> BackgroundScheduler:
    scheduler.start()
    return scheduler


def cli(config: Path, *args: str, code: int = 0) -> Any:
    result = runner.invoke(app, ["--config", str(config), *args])
    assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr)
    return result


# --- the embedded scheduler --------------------------------------------------------------------------------


def test_embedded_scheduler_fires_a_missed_deadline_once(tmp_path: Path) -> None:
    config, db = sqlite_config(tmp_path, **{r"(?m)^sweep_every_seconds = \d+": "sweep_every_seconds = 1"})
    deps = past_deps(config)
    case_no = open_overdue_case(deps)
    assert count_missed(db) == 0
    scheduler = start_embedded(config)
    try:
        assert scheduler is not None and scheduler.running
        assert wait_for(lambda: count_missed(db) >= 1, timeout=15), "the sweep job never fired the miss"
        time.sleep(2.5)  # two more runs of the job: nothing fires twice
    finally:
        stop_embedded(scheduler)
    assert scheduler is not None and not scheduler.running
    assert count_missed(db) == 1
    assert verify_audit(deps, case_no).problems == []
    deps.engine.dispose()


def test_the_sweep_job_is_stored_once_under_a_stable_id(tmp_path: Path) -> None:
    config, db = sqlite_config(tmp_path)
    deps = past_deps(config)
    for every in (3600, 1800):  # a restart with another interval rewrites the stored job
        scheduler = build_scheduler(str(config), deps, every)
        scheduler.start()
        assert sorted(j.id for j in scheduler.get_jobs()) == sorted(JOB_IDS)
        stop_embedded(scheduler)
    assert job_rows(db) == sorted(JOB_IDS)  # the relay job rides along; test_relay_scheduling checks it
    [job] = [j for j in stored_jobs(deps) if j.id == SWEEP_JOB_ID]
    assert (job.id, job.func, job.args) == (SWEEP_JOB_ID, SWEEP_JOB_FUNC, [str(config)])
    assert job.trigger == "interval[0:30:00]"
    assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, None)
    assert job.next_run_time and job.next_run_time.endswith("+08:00")
    deps.engine.dispose()


def test_job_store_reads_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    """The job store begins DEFERRED on SQLite: a writer holding the lock (a sweep batch) does not block it."""
    config, db = sqlite_config(tmp_path)
    deps = past_deps(config)
    stop_embedded(start(build_scheduler(str(config), deps, 3600)))
    writer = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    release = threading.Timer(2.0, lambda: writer.execute("COMMIT"))
    release.start()
    try:
        started = time.monotonic()
        assert sorted(j.id for j in stored_jobs(deps)) == sorted(JOB_IDS)
        assert time.monotonic() - started < 1.0
    finally:
        release.join()
        writer.close()
        deps.engine.dispose()


@pytest.mark.parametrize("mode", ["off", "prefect"])
def test_start_embedded_starts_nothing_in_other_modes(
    tmp_path: Path, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    config, db = sqlite_config(tmp_path, **{r'(?m)^mode = "embedded"': f'mode = "{mode}"'})
    past_deps(config).engine.dispose()
    with caplog.at_level("INFO", logger="workflows.flows.scheduler"):
        assert start_embedded(config) is None
    assert f"scheduler.mode is {mode!r}" in caplog.text
    assert not has_job_table(db)
    cli(config, "scheduler", "run", code=2)  # the foreground scheduler refuses too


def test_the_job_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config, _db = sqlite_config(tmp_path)  # never initialised: no tables
    with caplog.at_level("ERROR", logger="workflows.flows.scheduler"):
        assert run_sweep_job(str(tmp_path / "missing.toml")) is None
        assert run_sweep_job(str(config)) is None
    assert "configuration cannot be used" in caplog.text and "deadline sweep failed" in caplog.text


def test_foreground_scheduler_runs_until_sigterm(tmp_path: Path) -> None:
    """``jointcase scheduler run`` as its own process: it fires the miss, then stops cleanly on SIGTERM."""
    config, db = sqlite_config(tmp_path, **{r"(?m)^sweep_every_seconds = \d+": "sweep_every_seconds = 1"})
    deps = past_deps(config)
    open_overdue_case(deps)
    deps.engine.dispose()
    exe = Path(sys.executable).parent / "jointcase"
    proc = subprocess.Popen(
        [str(exe), "--config", str(config), "scheduler", "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"},
    )
    try:
        assert wait_for(lambda: count_missed(db) == 1, timeout=20), "the foreground scheduler never swept"
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert f"{SWEEP_JOB_ID} ({SWEEP_JOB_FUNC}) every 1 s" in stdout
    assert f"{RELAY_JOB_ID} (workflows.flows.scheduler:run_relay_job) every 30 s" in stdout  # config.toml's
    assert "embedded scheduler stopped" in stdout
    assert "deadline sweep: {" in stderr and "'missed': 1" in stderr


# --- the Prefect flow --------------------------------------------------------------------------------------


def test_prefect_flow_fires_due_deadlines_once(prefect_server: None, tmp_path: Path) -> None:
    from workflows.flows.sweep import deadline_sweep

    config, db = sqlite_config(tmp_path)
    deps = past_deps(config)
    open_overdue_case(deps)
    early = (deps.now() + timedelta(days=1)).isoformat()  # the day after intake: nothing is due yet
    assert asyncio.run(deadline_sweep(config_path=str(config), now=early))["fired"] == 0
    first = asyncio.run(deadline_sweep(config_path=str(config)))
    assert (first["reminders"], first["missed"], first["cases"]) == (0, 1, 1)
    assert count_missed(db) == 1
    state = asyncio.run(deadline_sweep(config_path=str(config), return_state=True))
    assert state.is_completed()
    again = asyncio.run(deadline_sweep(config_path=str(config)))  # not cached: it ran and found nothing
    assert (again["fired"], again["batches"]) == (0, 0)
    assert count_missed(db) == 1
    deps.engine.dispose()


def test_prefect_flow_refuses_a_bad_time_without_retrying(prefect_server: None, tmp_path: Path) -> None:
    from workflows.flows.sweep import deadline_sweep, is_transient

    config, _db = sqlite_config(tmp_path)
    past_deps(config).engine.dispose()
    with pytest.raises(InvalidInput):
        asyncio.run(deadline_sweep(config_path=str(config), now="yesterday"))
    assert not is_transient(InvalidInput("bad"))
    assert is_transient(OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked")))
    assert not is_transient(OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: cases")))


def test_sweep_deployment_for_the_scaled_mode(tmp_path: Path) -> None:
    from workflows.flows.sweep import sweep_deployment

    config, _db = sqlite_config(tmp_path)
    deployment = sweep_deployment(str(config), 300)
    assert (deployment.name, deployment.flow_name, deployment.parameters) == (
        "deadline-sweep",
        "deadline-sweep",
        {"config_path": str(config)},
    )
    assert deployment.entrypoint == "workflows.flows.sweep.deadline_sweep"
    assert [s.schedule.interval for s in deployment.schedules] == [timedelta(seconds=300)]


# --- the CLI -----------------------------------------------------------------------------------------------


def test_cli_jobs_and_flow_run(prefect_server: None, tmp_path: Path) -> None:
    config, db = sqlite_config(tmp_path)
    deps = past_deps(config)
    open_overdue_case(deps)
    assert json.loads(cli(config, "scheduler", "jobs", "--json").stdout) == []
    assert "no stored jobs" in cli(config, "scheduler", "jobs").stdout
    stop_embedded(start(build_scheduler(str(config), deps_for(str(config)), 600)))
    jobs = {j["id"]: j for j in json.loads(cli(config, "scheduler", "jobs", "--json").stdout)}
    assert sorted(jobs) == sorted(JOB_IDS)
    job = jobs[SWEEP_JOB_ID]
    assert (job["id"], job["func"], job["trigger"], job["max_instances"]) == (
        SWEEP_JOB_ID,
        SWEEP_JOB_FUNC,
        "interval[0:10:00]",
        1,
    )
    assert SWEEP_JOB_ID in cli(config, "scheduler", "jobs").stdout
    counts = json.loads(cli(config, "scheduler", "flow-run", "--json").stdout)
    assert (counts["missed"], counts["fired"] >= 1) == (1, True)
    assert count_missed(db) == 1
    human = cli(config, "scheduler", "flow-run").stdout
    assert "flow deadline-sweep done" in human and "0 miss(es)" in human
    bad = cli(config, "scheduler", "flow-run", "--now", "soon", "--json", code=2)
    assert json.loads(bad.stderr)["error"] == "invalid_input"
    deps.engine.dispose()
