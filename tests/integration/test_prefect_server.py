"""The scaled mode end to end: a real ``prefect server start`` on 127.0.0.1, ``jointcase prefect deploy``
registers the deployments with the schedules of config.toml, ``jointcase prefect serve`` runs them, and the
meeting-preparation deployment (on a short interval) prepares the next quarter's joint meeting in the
database. Every process the test starts is stopped (SIGTERM, then SIGKILL of its process group).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import write_config

JOINTCASE = [str(Path(sys.executable).parent / "jointcase")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> int | None:
    """SIGTERM the process group, then SIGKILL it if it lingers; returns the exit code."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    return proc.returncode


def prefect_env(home: Path, api_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",  # schedule new runs within seconds, not a minute
        PREFECT_RUNNER_POLL_FREQUENCY="2",
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
    )
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    home = tmp_path / "prefect-home"
    home.mkdir()
    port = free_port()
    log = (tmp_path / "prefect-server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
        env=prefect_env(home),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                tail = (tmp_path / "prefect-server.log").read_text()[-2000:]
                pytest.fail(f"prefect server exited with {proc.returncode}: {tail}")
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("prefect server did not answer /api/health within 120 s")
            time.sleep(0.5)
        yield api, home
    finally:
        stop(proc)
        log.close()
    assert proc.returncode is not None


def meetings(db: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT schedule_id, period_key, state FROM meetings ORDER BY id").fetchall()


def test_deploy_and_serve_prepare_the_meeting_on_a_real_prefect_server(
    tmp_path: Path, prefect_server: tuple[str, Path]
) -> None:
    api, home = prefect_server
    db = tmp_path / "jointcase.db"
    # The next quarterly meeting is at most ~3 months away: a 90-day notice window makes it due now.
    config = write_config(
        tmp_path,
        f"sqlite:///{db}",
        **{
            r"(?m)^notice_days = 7": "notice_days = 90",
            r"(?m)^prepare_every_seconds = \d+": "prepare_every_seconds = 5",
            r'(?m)^mode = "embedded"': 'mode = "prefect"',
        },
    )
    env = prefect_env(home, api)
    base = [*JOINTCASE, "--config", str(config)]
    subprocess.run([*base, "init"], env=env, check=True, capture_output=True, timeout=120)

    deployed = subprocess.run([*base, "prefect", "deploy", "--json"], env=env, capture_output=True, timeout=180)
    assert deployed.returncode == 0, deployed.stderr.decode()
    rows = {row["flow"]: row for row in json.loads(deployed.stdout)}
    assert set(rows) >= {"deadline-sweep", "outbox-relay", "meeting-preparation", "information-bulletin"}
    assert len(json.loads(deployed.stdout)) == 5  # the bulletin twice: monthly and quarterly
    assert rows["meeting-preparation"]["schedules"] == ["0:00:05"]
    registered = httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()
    assert {d["name"] for d in registered} >= {"meeting-preparation", "deadline-sweep"}
    assert meetings(db) == []

    serve_log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [*base, "prefect", "serve"], env=env, stdout=serve_log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 150
        while not meetings(db) and time.monotonic() < deadline:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(1)
        found = meetings(db)
        assert len(found) == 1, (tmp_path / "serve.log").read_text()[-3000:]
        schedule_id, period, state = found[0]
        assert (schedule_id, state) == ("sm-quarterly", "noticed") and period.startswith("202")
        time.sleep(8)  # more runs of the 5-second schedule: still one meeting
        assert len(meetings(db)) == 1
        runs = httpx.post(
            f"{api}/flow_runs/filter",
            json={"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}},
            timeout=10,
        ).json()
        assert sum(1 for r in runs if r["name"]) >= 1
    finally:
        code = stop(serve)
        serve_log.close()
    assert code is not None and serve.poll() is not None
