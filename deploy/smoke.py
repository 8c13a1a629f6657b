"""Smoke test of the scaled topology on one machine, loopback only: ``python -m deploy.smoke``.

It starts what deploy/ describes for several machines — PostgreSQL databases (on an existing server), ``jointcase
init``, N ``jointcase serve`` workers with the scheduler in prefect mode, nginx with deploy/nginx/jointcase.conf in
front of them, a Prefect server on PostgreSQL, ``jointcase prefect deploy --work-pool`` and a Prefect worker —
then checks that requests through nginx reach every worker, that the meeting-preparation deployment runs on its
schedule on the worker to Completed and prepares a meeting in jointcase's database, and that no web worker ran
a job itself. It stops everything it started (SIGTERM, then SIGKILL), drops its databases, checks that no process
is left, prints a report and exits 1 on failure (2 when something it needs is missing).

Needs: nginx (``apt-get install nginx``), a PostgreSQL server whose maintenance URL is ``--pg`` (default
``$JOINTCASE_SMOKE_PG`` or postgres@127.0.0.1:5432) and which lets that user create databases; the databases are
named ``jointcase_smoke_<pid>`` and ``..._prefect``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import psycopg

from deploy.processes import descendants, free_ports, kill_all, prefect_env, start, stop, tail, wait_healthy

REPO = Path(__file__).resolve().parent.parent
DEPLOY = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
DEFAULT_PG = os.environ.get("JOINTCASE_SMOKE_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
DB_PREFIX = "jointcase_smoke"
POOL = "jointcase-smoke"
UPSTREAM_HEADER = "X-Jointcase-Upstream"
# A monthly meeting noticed 60 days ahead is always due for preparation, whatever today's date; the schedule
# looks every few seconds so that the worker gets a run soon after the deployments are registered.
SMOKE_SCHEDULE = {
    "id": "smoke-monthly",
    "rrule": "FREQ=MONTHLY;BYDAY=1TU;BYHOUR=9;BYMINUTE=30",
    "cron": "",
    "period": "month",
    "notice_days": 60,
}
PREPARE_EVERY_SECONDS = 5


class SmokeFailure(Exception):
    """A check of the smoke test failed; the message says which and what was seen."""


class Missing(Exception):
    """Something the smoke test needs is not on this machine (nginx, PostgreSQL)."""


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM (a test's timeout, systemd) stops the smoke test like Ctrl-C: through its teardown."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


@dataclass
class Report:
    """What happened, step by step, with the seconds each took."""

    started: float = field(default_factory=time.monotonic)
    lines: list[str] = field(default_factory=list)

    @contextmanager
    def step(self, name: str) -> Iterator[list[str]]:
        """Time a step; the caller appends details to the yielded list."""
        details: list[str] = []
        began = time.monotonic()
        try:
            yield details
        except BaseException:
            self.lines.append(f"FAIL {name} ({time.monotonic() - began:.1f} s)")
            raise
        suffix = f": {'; '.join(details)}" if details else ""
        self.lines.append(f"ok   {name} ({time.monotonic() - began:.1f} s){suffix}")

    def total(self) -> float:
        return time.monotonic() - self.started


def find_nginx() -> str:
    """The nginx binary (Debian installs it in /usr/sbin, which a non-root PATH may lack)."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not found:
        raise Missing("nginx is not installed (apt-get install -y nginx)")
    return found


def db_url(admin_url: str, name: str, driver: str = "") -> str:
    """The URL of database ``name`` on the server of ``admin_url``, for a SQLAlchemy ``driver`` if given."""
    rest = admin_url.split("://", 1)[1].rsplit("/", 1)[0]
    return f"postgresql{'+' + driver if driver else ''}://{rest}/{name}"


def nginx_config(root: Path, port: int, upstreams: list[str]) -> Path:
    """nginx.conf for a foreground nginx under ``root`` that serves deploy/nginx/jointcase.conf on
    127.0.0.1:``port`` with ``upstreams`` as its workers. Only the listen line of the site differs."""
    site = (DEPLOY / "nginx" / "jointcase.conf").read_text(encoding="utf-8")
    site, found = re.subn(r"(?m)^(\s*)listen 80;", rf"\1listen 127.0.0.1:{port};", site)
    if found != 1:
        raise SmokeFailure("deploy/nginx/jointcase.conf no longer has one `listen 80;` line")
    (root / "jointcase.conf").write_text(site, encoding="utf-8")
    (root / "jointcase-upstream.conf").write_text(
        "".join(f"server {u} max_fails=3 fail_timeout=10s;\n" for u in upstreams), encoding="utf-8"
    )
    temp = {k: root / "temp" / k for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(parents=True, exist_ok=True)
    conf = root / "nginx.conf"
    conf.write_text(
        f"""worker_processes 1;
error_log {root / "error.log"} warn;
pid {root / "nginx.pid"};
events {{ worker_connections 64; }}
http {{
    access_log {root / "access.log"};
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    include {root / "jointcase.conf"};
}}
""",
        encoding="utf-8",
    )
    return conf


def jointcase_env(base: dict[str, str], config: Path, database_url: str, workdir: Path) -> dict[str, str]:
    """The environment every jointcase process gets — the role of /etc/jointcase/jointcase.env: the database,
    prefect mode, and a meeting schedule that is due now."""
    schedules = tomllib.loads(config.read_text(encoding="utf-8"))["meetings"]["schedules"]
    env = {k: v for k, v in base.items() if not k.startswith("JOINTCASE_")}
    env.update(
        JOINTCASE_CONFIG=str(config),
        JOINTCASE_DATABASE__URL=database_url,
        JOINTCASE_SCHEDULER__MODE="prefect",
        JOINTCASE_STORAGE__ATTACHMENTS_DIR=str(workdir / "attachments"),
        JOINTCASE_MEETINGS__PREPARE_EVERY_SECONDS=str(PREPARE_EVERY_SECONDS),
        JOINTCASE_MEETINGS__SCHEDULES=json.dumps([{**schedules[0], **SMOKE_SCHEDULE}], ensure_ascii=False),
    )
    return env


def wait_for(what: str, check: Callable[[], Any], timeout: float, alive: Callable[[], None]) -> Any:
    """Poll ``check`` until it returns something truthy; ``alive`` raises if a needed process died."""
    deadline = time.monotonic() + timeout
    while True:
        alive()
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise SmokeFailure(f"{what}: nothing within {timeout:.0f} s")
        time.sleep(1)


class Topology:
    """The processes and databases of one smoke run; ``teardown`` undoes all of it."""

    def __init__(self, workdir: Path, admin_url: str, workers: int, config: Path) -> None:
        self.workdir = workdir
        self.admin_url = admin_url
        self.workers = workers
        self.config = config
        # Random too: runs on several machines may share one PostgreSQL server.
        self.app_db = f"{DB_PREFIX}_{os.getpid()}_{secrets.token_hex(3)}"
        self.prefect_db = f"{self.app_db}_prefect"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.seen: set[tuple[int, str]] = set()  # every process below ours, collected while they run
        self.created: list[str] = []

    # --- databases --------------------------------------------------------------------------------------

    def _admin(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as err:
            raise Missing(f"PostgreSQL at {self.admin_url} does not answer: {err}".strip()) from None

    def create_databases(self) -> None:
        with self._admin() as conn:
            for name in (self.app_db, self.prefect_db):
                assert name.startswith(DB_PREFIX), name  # never anyone else's database
                conn.execute(f'CREATE DATABASE "{name}"')
                self.created.append(name)

    def drop_databases(self) -> list[str]:
        """Drop what ``create_databases`` made; returns the names still there."""
        if not self.created:
            return []
        with self._admin() as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            rows = conn.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", [self.created]).fetchall()
        return [str(r[0]) for r in rows]

    def app_query(self, sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(db_url(self.admin_url, self.app_db), connect_timeout=5) as conn:
            return list(conn.execute(sql).fetchall())

    # --- processes ----------------------------------------------------------------------------------------

    def launch(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        proc = start(cmd, env, self.log(name), cwd=self.workdir)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def note_children(self) -> None:
        """Remember every process below ours now (flow runs leave the worker's process group)."""
        for proc in self.procs.values():
            if proc.poll() is None:  # an ended one's pid may belong to someone else by now
                self.seen |= descendants(proc.pid)

    def check_alive(self) -> None:
        self.note_children()
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise SmokeFailure(f"{name} exited with {proc.returncode}:\n{tail(self.log(name))}")

    def teardown(self) -> list[str]:
        """Stop every process in the reverse order of their start (the worker first, the Prefect server last),
        then whatever they left behind, and drop the databases; returns what went wrong."""
        problems: list[str] = []
        self.note_children()
        for name in reversed(list(self.procs)):
            code = stop(self.procs[name])
            if code is None:
                problems.append(f"{name} did not stop")
        survivors = kill_all(self.seen)
        if survivors:
            problems.append(f"processes left after SIGKILL: {sorted(pid for pid, _ in survivors)}")
        try:
            left = self.drop_databases()
        except (Missing, psycopg.Error) as err:
            left = self.created
            problems.append(f"dropping the databases: {err}")
        if left:
            problems.append(f"databases left: {left}")
        return problems


def run(topology: Topology, report: Report) -> None:
    """Start the topology and check it; raises SmokeFailure or Missing."""
    t = topology
    nginx = find_nginx()
    jointcase = str(BIN / "jointcase")
    prefect_home = t.workdir / "prefect-home"
    prefect_home.mkdir()
    prefect_port, proxy_port, *web_ports = free_ports(2 + t.workers)
    api = f"http://127.0.0.1:{prefect_port}/api"

    with report.step("databases") as d:
        t.create_databases()
        d.append(f"{t.app_db}, {t.prefect_db}")
    env = jointcase_env(
        prefect_env(prefect_home, api, db_url(t.admin_url, t.prefect_db, "asyncpg")),
        t.config,
        db_url(t.admin_url, t.app_db, "psycopg"),
        t.workdir,
    )
    # The Prefect server migrates its own database first: it starts while jointcase initialises.
    server_cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)]
    server = t.launch("prefect-server", [*server_cmd, "--no-ui"], env)
    server_started = time.monotonic()

    with report.step("jointcase init"):
        done = subprocess.run([jointcase, "init"], env=env, cwd=t.workdir, capture_output=True, timeout=180)
        if done.returncode != 0:
            raise SmokeFailure(f"jointcase init exited with {done.returncode}: {done.stderr.decode()[-2000:]}")

    with report.step(f"{t.workers} web workers behind nginx") as d:
        for i, port in enumerate(web_ports, 1):
            t.launch(f"web-{i}", [jointcase, "serve", "--host", "127.0.0.1", "--port", str(port), "--no-demo"], env)
        root = t.workdir / "nginx"
        root.mkdir()
        conf = nginx_config(root, proxy_port, [f"127.0.0.1:{p}" for p in web_ports])
        tested = subprocess.run([nginx, "-t", "-p", str(root), "-c", str(conf)], capture_output=True, timeout=30)
        if tested.returncode != 0:
            raise SmokeFailure(f"nginx -t: {tested.stderr.decode()}")
        t.launch("nginx", [nginx, "-p", str(root), "-c", str(conf), "-g", "daemon off;"], env)
        token = subprocess.run(
            [jointcase, "token", "create", "--as", "sm_amr_handler", "--name", "smoke", "--json"],
            env=env, cwd=t.workdir, capture_output=True, timeout=120,
        )  # fmt: skip
        if token.returncode != 0:
            raise SmokeFailure(f"jointcase token create: {token.stderr.decode()[-2000:]}")
        bearer = json.loads(token.stdout)["token"]
        for i, port in enumerate(web_ports, 1):
            waited = wait_healthy(f"http://127.0.0.1:{port}/healthz", t.procs[f"web-{i}"], t.log(f"web-{i}"), 120)
            d.append(f"web-{i} on :{port} healthy after {waited:.1f} s")
        wait_healthy(f"http://127.0.0.1:{proxy_port}/healthz", t.procs["nginx"], t.log("nginx"), 30)

    with report.step("requests through nginx") as d:
        expected = {f"127.0.0.1:{p}" for p in web_ports}
        auth = {"Authorization": f"Bearer {bearer}"}
        answered: dict[str, dict[str, int]] = {"/healthz": {}, "/api/v1/me": {}}
        with httpx.Client(base_url=f"http://127.0.0.1:{proxy_port}", timeout=10) as client:
            # nginx takes the workers in turn: a run of each kind of request reaches every one of them.
            for path in ["/healthz"] * (2 * t.workers) + ["/api/v1/me"] * (2 * t.workers):
                response = client.get(path, headers=auth if path == "/api/v1/me" else {})
                if response.status_code != 200:
                    raise SmokeFailure(f"GET {path} through nginx: {response.status_code} {response.text[:300]}")
                if path == "/api/v1/me" and response.json().get("username") != "sm_amr_handler":
                    raise SmokeFailure(f"GET /api/v1/me answered {response.text[:300]}")
                seen = answered[path]
                upstream = response.headers.get(UPSTREAM_HEADER, "?")
                seen[upstream] = seen.get(upstream, 0) + 1
        for path, seen in answered.items():
            if set(seen) != expected:
                raise SmokeFailure(f"GET {path}: {UPSTREAM_HEADER} seen {seen}, expected each of {sorted(expected)}")
        totals = {u: answered["/healthz"][u] + answered["/api/v1/me"][u] for u in sorted(expected)}
        d.append(", ".join(f"{u} answered {n}" for u, n in totals.items()))
        d.append("a token created by the CLI authenticates on every worker")

    with report.step("Prefect server on PostgreSQL") as d:
        wait_healthy(f"{api}/health", server, t.log("prefect-server"), 150)
        d.append(f"{api} healthy {time.monotonic() - server_started:.1f} s after it started")

    with report.step(f"deployments to work pool {POOL}, a worker polling it") as d:
        # The worker starts meanwhile (some seconds of imports); whichever comes first creates the pool.
        t.launch("worker", [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"], env)
        done = subprocess.run(
            [jointcase, "prefect", "deploy", "--work-pool", POOL, "--json"],
            env=env, cwd=t.workdir, capture_output=True, timeout=180,
        )  # fmt: skip
        if done.returncode != 0:
            raise SmokeFailure(f"jointcase prefect deploy: {done.stderr.decode()[-2000:]}")
        rows = json.loads(done.stdout)
        if {r["work_pool"] for r in rows} != {POOL}:
            raise SmokeFailure(f"deployments not in pool {POOL}: {rows}")
        d.append(", ".join(sorted(r["name"] for r in rows)))

    with report.step("a scheduled flow run on the worker") as d:

        def completed_run() -> dict[str, Any] | None:
            deployments = httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()
            ids = [x["id"] for x in deployments if x["name"] == "meeting-preparation"]
            runs = httpx.post(
                f"{api}/flow_runs/filter",
                json={"flow_runs": {"deployment_id": {"any_": ids}, "state": {"type": {"any_": ["COMPLETED"]}}}},
                timeout=10,
            ).json()
            return runs[0] if runs else None

        run_ = wait_for("a Completed meeting-preparation run", completed_run, 90, t.check_alive)
        if run_.get("work_pool_name") != POOL or not run_.get("auto_scheduled"):
            raise SmokeFailure(f"the run did not come from the schedule through pool {POOL}: {run_}")
        d.append(f"flow run {run_['name']} {run_['state_name']} on pool {run_['work_pool_name']}")
        meetings = t.app_query("SELECT schedule_id, period_key, state FROM meetings")
        if [(m[0], m[2]) for m in meetings] != [("smoke-monthly", "noticed")]:
            raise SmokeFailure(f"expected one noticed smoke-monthly meeting in {t.app_db}, found {meetings}")
        d.append(f"meeting {meetings[0][0]} {meetings[0][1]} {meetings[0][2]} in {t.app_db}")
        jobs = t.app_query("SELECT count(*) FROM information_schema.tables WHERE table_name = 'apscheduler_jobs'")[0][0]
        if jobs:
            raise SmokeFailure("a web worker started the embedded scheduler (apscheduler_jobs exists)")
        d.append("no embedded scheduler ran (no apscheduler_jobs table)")
        states: dict[str, int] = {}
        started = {"flow_runs": {"state": {"type": {"not_any_": ["SCHEDULED"]}}}}  # not the runs planned ahead
        for r in httpx.post(f"{api}/flow_runs/filter", json=started, timeout=10).json():
            states[r["state_name"]] = states.get(r["state_name"], 0) + 1
        # Cancelled runs are those due while one ran: each deployment allows one run at a time.
        d.append("flow runs so far: " + ", ".join(f"{n} {state}" for state, n in sorted(states.items())))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.smoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL maintenance URL (default %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="jointcase serve workers (default %(default)s)")
    parser.add_argument("--config", type=Path, default=REPO / "config.toml", help="config.toml (default the repo's)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory with the logs (kept on failure)")
    args = parser.parse_args(argv)
    if args.workers < 2:
        parser.error("--workers must be at least 2: the point is several workers behind one proxy")

    report = Report()
    workdir = Path(tempfile.mkdtemp(prefix="jointcase-smoke-"))
    topology = Topology(workdir, args.pg, args.workers, args.config.resolve())
    code, failure = 0, ""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        run(topology, report)
    except KeyboardInterrupt as err:
        code, failure = 1, f"interrupted ({err or 'SIGINT'})"
    except Missing as err:
        code, failure = 2, f"cannot run: {err}"
    except (SmokeFailure, RuntimeError, subprocess.TimeoutExpired, httpx.HTTPError, psycopg.Error) as err:
        code, failure = 1, f"{type(err).__name__}: {err}"
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the teardown short
        with report.step("stop everything") as d:
            problems = topology.teardown()
            d.append(f"{len(topology.procs)} processes started, {len(topology.seen)} children seen, none left")
        if problems:
            report.lines[-1] = "FAIL stop everything: " + "; ".join(problems)
            code = code or 1
    print(f"jointcase scaled-topology smoke test ({args.workers} web workers, loopback only)")
    print("\n".join(f"  {line}" for line in report.lines))
    if failure:
        print(f"  {failure}")
    keep = args.keep or code == 1  # a failed check leaves its logs; a missing prerequisite has none
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{'PASSED' if code == 0 else 'FAILED'} in {report.total():.1f} s" + (f"; logs in {workdir}" if keep else ""))
    return code


if __name__ == "__main__":
    sys.exit(main())
