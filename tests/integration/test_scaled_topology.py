"""The scaled deployment of deploy/ on one machine: ``python -m deploy.smoke`` starts PostgreSQL databases, two
``jointcase serve`` workers behind nginx, a Prefect server on PostgreSQL and a Prefect worker, checks that both
workers answer through nginx and that a scheduled flow completes on the worker, then stops all of it.

It runs against the server of ``JOINTCASE_TEST_DATABASE_URL`` (its own ``jointcase_smoke_*`` databases, never
the tests' database) and needs nginx; without either it skips, except in CI, where both must be there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml

from deploy.smoke import Missing, find_nginx
from tests.conftest import PG_ENV, REPO


def _needs(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: the scaled-topology smoke test must run in CI, never skip")
    pytest.skip(reason)


def admin_url() -> str:
    """The maintenance database of the test server, as a plain libpq URL."""
    url = os.environ.get(PG_ENV)
    if not url:
        _needs(f"the scaled-topology smoke test needs {PG_ENV} (a PostgreSQL server where it may create databases)")
    rest = url.split("://", 1)[1].rsplit("/", 1)[0]
    return f"postgresql://{rest}/postgres"


@pytest.mark.postgres
def test_scaled_topology_serves_through_two_workers_and_runs_a_scheduled_flow() -> None:
    pg = admin_url()
    try:
        find_nginx()
    except Missing as err:
        _needs(str(err))
    smoke = subprocess.Popen(
        [sys.executable, "-m", "deploy.smoke", "--pg", pg, "--workers", "2"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = smoke.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        smoke.terminate()  # the smoke test stops what it started on SIGTERM, then reports
        stdout, stderr = smoke.communicate(timeout=90)
    report = stdout + stderr[-3000:]
    assert smoke.returncode == 0, report
    assert "PASSED" in stdout, report
    for step in ("requests through nginx", "a scheduled flow run on the worker", "stop everything"):
        assert f"ok   {step}" in stdout, report


def test_compose_file_matches_the_systemd_units_and_the_env_sample() -> None:
    """compose.yaml cannot run here (no image pulls): check that it parses and says what the units say."""
    deploy = REPO / "deploy"
    compose = yaml.safe_load((deploy / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"db", "init", "web", "nginx", "prefect-server", "prefect-worker"}
    assert services["db"]["image"] == "postgres:15"
    assert services["web"]["deploy"]["replicas"] >= 2
    env_sample = {
        line.split("=", 1)[0]
        for line in (deploy / "jointcase.env.example").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    }
    for name, service in services.items():
        env = service.get("environment", {})
        unknown = {k for k in env if k.startswith(("JOINTCASE_", "PREFECT_"))} - env_sample
        assert not unknown, f"{name}: {unknown} not in jointcase.env.example"
        if name not in {"db", "nginx"}:
            assert env["JOINTCASE_SCHEDULER__MODE"] == "prefect"
    # The same nginx site file as on hosts, and the commands of the units.
    assert "./nginx/jointcase.conf:/etc/nginx/conf.d/default.conf:ro" in services["nginx"]["volumes"]
    units = {p.name: p.read_text(encoding="utf-8") for p in (deploy / "systemd").iterdir()}
    assert "jointcase serve --host ${JOINTCASE_WEB_HOST} --port %i --no-demo" in units["jointcase-web@.service"]
    assert "--no-demo" in services["web"]["command"]
    assert "prefect deploy --work-pool" in units["jointcase-deploy.service"]
    assert "prefect deploy --work-pool" in " ".join(services["init"]["command"])
    assert "--type process" in units["jointcase-prefect-worker.service"]
    assert "--type process" in " ".join(services["prefect-worker"]["command"])
    for name, text in units.items():  # every ${VAR} a unit uses is in the env sample or set by the unit
        used = set(re.findall(r"\$\{(\w+)\}", text))
        own = set(re.findall(r"(\w+)=", " ".join(re.findall(r"(?m)^Environment=(.*)$", text))))
        assert used <= env_sample | own, f"{name}: {used - env_sample - own} undefined"
