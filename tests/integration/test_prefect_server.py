"""The scaled mode end to end: a real ``prefect server start`` on 127.0.0.1, ``jointcase prefect deploy``
registers the deployments with the schedules of config.toml, ``jointcase prefect serve`` runs them, and the
meeting-preparation deployment (on a short interval) prepares the next quarter's joint meeting in the
database. Every process the test starts is stopped (SIGTERM, then SIGKILL of its process group).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deploy.processes import free_port, prefect_env, start, stop, wait_healthy
from tests.conftest import write_config

JOINTCASE = [str(Path(sys.executable).parent / "jointcase")]


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    home = tmp_path / "prefect-home"
    home.mkdir()
    port = free_port()
    log = tmp_path / "prefect-server.log"
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"]
    proc = start(cmd, prefect_env(home), log)
    api = f"http://127.0.0.1:{port}/api"
    try:
        try:
            wait_healthy(f"{api}/health", proc, log, timeout=120)
        except RuntimeError as err:
            pytest.fail(f"prefect server: {err}")
        yield api, home
    finally:
        stop(proc)
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

    serve = start([*base, "prefect", "serve"], env, tmp_path / "serve.log")
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
    assert code is not None and serve.poll() is not None
