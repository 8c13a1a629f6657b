"""``jointcase serve`` as its own process on the embedded default: it migrates, loads the demo data and
passwords, prints the URL and the demo sign-ins, answers /healthz, starts the embedded scheduler once (its
jobs are stored in the same database), lets a demo officer sign in, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import anyio.to_thread
import httpx
import pytest
from fastapi import FastAPI

from app.web.main import THREADS_ENV, app_from_environment, create_app
from deploy.processes import free_port, stop
from tests.conftest import make_deps, write_config

JOINTCASE = str(Path(sys.executable).parent / "jointcase")
ENV = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}


def _serve(tmp_path: Path, config: Path, *args: str, **env: str) -> tuple[subprocess.Popen[bytes], str, IO[str]]:
    """``jointcase serve`` on a free port in its own process group, printing to serve.log."""
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [JOINTCASE, "--config", str(config), "serve", "--port", str(port), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**ENV, **env},
        start_new_session=True,
    )
    return proc, f"http://127.0.0.1:{port}", log


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/healthz", timeout=2).json() == {"status": "ok"}:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.3)


def _stop(proc: subprocess.Popen[bytes], log: IO[str]) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers."""
    try:
        stop(proc, timeout=30)
    finally:
        log.close()


def test_serve_runs_the_app_with_the_demo_and_the_scheduler(tmp_path: Path) -> None:
    db = tmp_path / "serve.db"
    config = write_config(tmp_path, f"sqlite:///{db}")
    proc, url, log = _serve(tmp_path, config)
    try:
        _wait_healthy(proc, url, tmp_path / "serve.log")
        printed = (tmp_path / "serve.log").read_text()
        assert f"jointcase serving at {url}/" in printed
        assert "demo sign-ins (password jointcase-demo)" in printed and "sm_amr_supervisor" in printed
        assert "embedded scheduler started" in printed  # started once, by the app's lifespan
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM cases").fetchone()[0] >= 10  # the demo cases
            jobs = sorted(r[0] for r in conn.execute("SELECT id FROM apscheduler_jobs"))
        assert jobs == ["deadline_sweep", "information_bulletin", "meeting_preparation", "outbox_relay"]
        signed_in = httpx.post(
            f"{url}/login", data={"username": "sm_amr_handler", "password": "jointcase-demo", "next": "/"}
        )
        assert signed_in.status_code == 303 and "jc_session=" in signed_in.headers["set-cookie"]
        assert httpx.get(f"{url}/api/v1/cases").status_code == 401
    finally:
        _stop(proc, log)
    # uvicorn shuts down gracefully, then re-raises the signal it caught, so a clean stop exits by SIGTERM.
    assert proc.returncode in (0, -signal.SIGTERM), (tmp_path / "serve.log").read_text()
    assert "Application shutdown complete" in (tmp_path / "serve.log").read_text()


def test_serve_with_workers_answers_from_several_processes_on_one_port(tmp_path: Path) -> None:
    """``--workers N`` (scaled mode: scheduler off or Prefect) runs N uvicorn workers on one port; in the embedded
    mode it is refused, since every worker would run every job."""
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'serve.db'}")
    refused = subprocess.run(
        [JOINTCASE, "--config", str(config), "serve", "--workers", "2"], capture_output=True, text=True, env=ENV
    )
    assert refused.returncode == 2 and "--workers 2" in refused.stderr and "scheduler" in refused.stderr
    proc, url, log = _serve(tmp_path, config, "--workers", "2", JOINTCASE_SCHEDULER__MODE="off")
    try:
        _wait_healthy(proc, url, tmp_path / "serve.log")
        deadline = time.monotonic() + 60
        while (tmp_path / "serve.log").read_text().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.3)
        signed_in = httpx.post(
            f"{url}/login", data={"username": "sm_amr_handler", "password": "jointcase-demo", "next": "/"}
        )
        assert signed_in.status_code == 303  # the demo data and passwords, loaded once before the workers start
        assert httpx.get(f"{url}/api/v1/cases").status_code == 401
    finally:
        _stop(proc, log)
    printed = (tmp_path / "serve.log").read_text()
    assert printed.count("Started server process") == 2 and "embedded scheduler started" not in printed


def test_threads_sizes_the_thread_pool_of_the_routes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``serve --threads N`` (and each ``--workers`` process) runs the sync routes on N threads, not AnyIO's 40."""
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'web.db'}")
    settings, deps = make_deps(config)

    async def tokens(app: FastAPI) -> float:
        async with app.router.lifespan_context(app):
            return anyio.to_thread.current_default_thread_limiter().total_tokens

    try:
        assert asyncio.run(tokens(create_app(settings, deps, threads=3))) == 3
        assert asyncio.run(tokens(create_app(settings, deps))) == 40
        monkeypatch.setenv("JOINTCASE_CONFIG", str(config))
        monkeypatch.setenv(THREADS_ENV, "5")
        assert asyncio.run(tokens(app_from_environment())) == 5
    finally:
        deps.engine.dispose()
