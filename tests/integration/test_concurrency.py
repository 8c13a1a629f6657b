"""Concurrency and crash safety of ``advance_case`` with real OS processes (ARCHITECTURE.md, "The
transition: one transaction, all or nothing"; STACK-NOTES gotcha 9).

* Eight processes hammer one case: the lock (PostgreSQL ``SELECT ... FOR UPDATE`` on the case row,
  SQLite ``BEGIN IMMEDIATE``) serialises them, so no update is lost and the audit chain stays
  gap-free; with ``expected_version`` the losers get ``ConcurrentUpdate`` and write nothing.
* A process SIGKILLed inside the commit of a transition leaves none of it, and its lock dies with
  it; one killed just after the commit leaves all of it.
* A second transition of the same case really waits for the first one's lock (on PostgreSQL: its
  server process is seen blocked by the first one's, in the ``SELECT ... FOR UPDATE``).

Every test runs on a SQLite file and on PostgreSQL; the PostgreSQL variants (marked ``postgres``)
skip without JOINTCASE_TEST_DATABASE_URL.

The children are scripts in ``tests/integration/procs`` run with the venv's interpreter from the repo
root; they build their own Deps from the test's config file (the parent migrated it once). Every wait
is bounded, and every child is killed and reaped in ``finally``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from models.db import SQLITE_BEGIN
from tests.conftest import POLICE, REPO, CaseBuilder, FakeClock, actor_for, make_deps
from tests.integration.procs._common import read_json, snapshot
from workflows.cases import case_history, verify_audit
from workflows.uow import Deps

WAIT = 60.0  # the longest any single wait may take before the test fails instead of hanging
PROCESSES = 8
EVENTS_EACH = 15
SELF_EVENT = "request_supplement"  # police_review -> itself; police may send it again and again


# --- child processes ---------------------------------------------------------------------------------


class Children:
    """Starts the helper scripts and guarantees that none outlives the test (SIGKILL, then reap)."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, script: str, *args: object) -> subprocess.Popen[bytes]:
        name = f"{script}-{len(self.procs)}"
        with (self.logs / f"{name}.out").open("wb") as out, (self.logs / f"{name}.err").open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", f"tests.integration.procs.{script}", *map(str, args)],
                cwd=REPO,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        self.procs.append((name, proc))
        return proc

    def stderr(self, proc: subprocess.Popen[bytes]) -> str:
        name = next(n for n, p in self.procs if p is proc)
        return (self.logs / f"{name}.err").read_text(encoding="utf-8", errors="replace")[-3000:]

    def check_alive(self, proc: subprocess.Popen[bytes]) -> None:
        """Fail at once (with its stderr) when a child that should still be running has exited."""
        if proc.poll() is not None:
            pytest.fail(f"child {proc.args} exited early with {proc.returncode}:\n{self.stderr(proc)}")

    def wait_ok(self, proc: subprocess.Popen[bytes], timeout: float = WAIT) -> None:
        """Wait for a child to finish and require exit status 0."""
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"child {proc.args} did not finish within {timeout}s:\n{self.stderr(proc)}")
        assert rc == 0, f"child {proc.args} failed with {rc}:\n{self.stderr(proc)}"

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL one child and reap it (no chance to roll back or close anything)."""
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=WAIT)

    def close(self) -> None:
        for _name, proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for _name, proc in self.procs:
            proc.wait(timeout=WAIT)


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    logs = tmp_path / "logs"
    logs.mkdir()
    kids = Children(logs)
    try:
        yield kids
    finally:
        kids.close()


def wait_until(
    check: Callable[[], Any],
    what: str,
    *,
    alive: Sequence[subprocess.Popen[bytes]] = (),
    kids: Children | None = None,
    timeout: float = WAIT,
    interval: float = 0.01,
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` or when a child in
    ``alive`` dies first."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        for proc in alive:
            assert kids is not None
            kids.check_alive(proc)
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --- the database under test ---------------------------------------------------------------------------


@dataclass
class Env:
    config: Path
    deps: Deps
    builder: CaseBuilder
    tmp: Path

    @property
    def postgres(self) -> bool:
        return self.deps.engine.dialect.name == "postgresql"

    def snapshot(self, case_no: str) -> dict[str, Any]:
        """The case's rows as committed now (DEFERRED: a SQLite reader never waits for the writer)."""
        with self.deps.engine.connect().execution_options(**{SQLITE_BEGIN: "DEFERRED"}) as conn:
            snap = snapshot(conn, case_no)
            conn.rollback()
        return snap

    def sql(self, query: str, **params: Any) -> Any:
        with self.deps.engine.connect() as conn:
            value = conn.execute(text(query), params).scalar()
            conn.rollback()
        return value


def _env(config: Path, clock: FakeClock, tmp_path: Path) -> Iterator[Env]:
    _settings, deps = make_deps(config, clock)  # migrate and load the directory once, here
    files = tmp_path / "files"
    files.mkdir()
    try:
        yield Env(config, deps, CaseBuilder(deps, clock, files), tmp_path)
    finally:
        deps.engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def env(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> Iterator[Env]:
    """The same test on a SQLite file and on PostgreSQL (skipped without JOINTCASE_TEST_DATABASE_URL)."""
    config = request.getfixturevalue("sqlite_config" if request.param == "sqlite" else "pg_config")
    yield from _env(config, clock, tmp_path)


def history_is_gap_free(env: Env, case_no: str, length: int) -> None:
    """``length`` audit rows numbered 1..length, versions 1..length, and an intact hash chain."""
    history = case_history(env.deps, case_no)
    assert [e.seq for e in history] == list(range(1, length + 1))
    assert [e.version for e in history] == list(range(1, length + 1))
    report = verify_audit(env.deps, case_no)
    assert report.ok, report.problems
    assert report.events == length


# --- 1. eight processes, one case --------------------------------------------------------------------


def _hammer(env: Env, kids: Children, case_no: str, *, expected_version: bool) -> list[list[dict[str, Any]]]:
    """Start PROCESSES children that each send EVENTS_EACH ``SELF_EVENT``s, released together."""
    start = env.tmp / "start"
    procs, ready, results = [], [], []
    for i in range(PROCESSES):
        ready.append(env.tmp / f"ready-{i}")
        results.append(env.tmp / f"result-{i}")
        args: list[object] = [env.config, case_no, SELF_EVENT, POLICE, EVENTS_EACH, ready[i], start, results[i]]
        if expected_version:
            args.append("--expected-version")
        procs.append(kids.start("send_events", *args))
    wait_until(lambda: all(p.exists() for p in ready), "all children ready", alive=procs, kids=kids)
    start.touch()  # the barrier: every child is connected and polls for this file
    for proc in procs:
        kids.wait_ok(proc)
    return [read_json(path) for path in results]


def _overlapped(per_process: list[list[dict[str, Any]]]) -> bool:
    """Some moment lies inside every process's run: all of them were sending at the same time."""
    return max(calls[0]["t0"] for calls in per_process) < min(calls[-1]["t1"] for calls in per_process)


def test_eight_processes_lose_no_update(env: Env, children: Children) -> None:
    case_no = env.builder.to_state("police_review").case_no
    before = env.snapshot(case_no)
    start = before["version"]

    per_process = _hammer(env, children, case_no, expected_version=False)

    assert _overlapped(per_process), "the children did not run at the same time"
    calls = [call for calls in per_process for call in calls]
    failed = [call for call in calls if not call["ok"]]
    assert not failed, f"{len(failed)} of {len(calls)} calls failed: " + "; ".join(
        sorted({f"{call['error']}: {call['message'][:160]}" for call in failed})[:3]
    )
    versions = sorted(call["version"] for call in calls)
    total = PROCESSES * EVENTS_EACH
    assert versions == list(range(start + 1, start + total + 1))  # distinct, consecutive, none lost
    for calls_of_one in per_process:  # each process saw its own versions grow
        mine = [call["version"] for call in calls_of_one]
        assert mine == sorted(mine)

    after = env.snapshot(case_no)
    assert after["version"] == start + total
    assert after["state"] == "police_review"
    history_is_gap_free(env, case_no, start + total)
    assert [e[1] for e in after["events"][start:]] == [SELF_EVENT] * total
    # Each event told the market regulator's liaison once per channel, in the same transaction (outbox rows).
    new_notices = after["outbox"][len(before["outbox"]) :]
    assert [user for user, _key in new_notices] == ["sm_amr_liaison"] * total * 2
    assert sum(key.endswith(":email") for _user, key in new_notices) == total
    assert len({key for _user, key in after["outbox"]}) == len(after["outbox"])


def test_eight_processes_with_expected_version(env: Env, children: Children) -> None:
    case_no = env.builder.to_state("police_review").case_no
    start = env.snapshot(case_no)["version"]

    per_process = _hammer(env, children, case_no, expected_version=True)

    assert _overlapped(per_process), "the children did not run at the same time"
    calls = [call for calls in per_process for call in calls]
    won = [call for call in calls if call["ok"]]
    lost = [call for call in calls if not call["ok"]]
    assert {call["error"] for call in lost} <= {"ConcurrentUpdate"}, lost[:3]
    assert lost, "eight racing read-then-write loops never produced a ConcurrentUpdate"
    assert won, "no call succeeded"
    for call in won:  # a success builds on exactly the version its sender read
        assert call["version"] == call["expected"] + 1
    for call in lost:  # a refusal names a version that really moved on
        assert f"expected version {call['expected']}," in call["message"]
    assert sorted(call["version"] for call in won) == list(range(start + 1, start + len(won) + 1))

    after = env.snapshot(case_no)
    assert after["version"] == start + len(won)
    history_is_gap_free(env, case_no, start + len(won))


# --- 2. a process killed inside a transition ----------------------------------------------------------


def _case_awaiting_transfer(env: Env) -> str:
    """A case one step before ``transfer_to_police``, its transfer package attached."""
    case_no = env.builder.to_state("awaiting_transfer").case_no
    env.builder.attach_package(case_no)
    return case_no


def _hang(env: Env, kids: Children, case_no: str, event: str, hook: str, **opts: Path) -> tuple[Any, dict[str, Any]]:
    """Start a child that sends ``event`` and stops in ``hook``; wait for its marker."""
    marker = env.tmp / f"marker-{hook}-{len(kids.procs)}"
    extra: list[object] = [item for name, path in opts.items() for item in (f"--{name}", path)]
    proc = kids.start("hang_in_commit", env.config, case_no, event, actor_for(event), hook, marker, *extra)
    wait_until(marker.exists, f"the child to reach {hook}", alive=[proc], kids=kids)
    return proc, read_json(marker)


def _backend_gone(env: Env, backend_pid: int | None) -> None:
    """On PostgreSQL, wait until the killed client's server process has ended (its transaction with it)."""
    if env.postgres:
        wait_until(
            lambda: not env.sql("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid", pid=backend_pid),
            "the killed child's PostgreSQL backend to end",
            timeout=15,
        )


def test_kill_before_commit_leaves_nothing(env: Env, children: Children) -> None:
    case_no = _case_awaiting_transfer(env)
    before = env.snapshot(case_no)
    assert before["state"] == "awaiting_transfer"

    proc, marker = _hang(env, children, case_no, "transfer_to_police", "before_commit")
    # The child is inside the commit with the whole transition written (flushed, not committed):
    inside = marker["in_transaction"]
    assert inside["state"] == "police_review"
    assert inside["version"] == before["version"] + 1
    assert len(inside["events"]) == len(before["events"]) + 1
    assert len(inside["deadlines"]) > len(before["deadlines"])  # T7 started (and T3 stopped)
    assert len(inside["outbox"]) > len(before["outbox"])  # the police liaison told
    assert "sm-psb" in inside["participants"] and "sm-psb" not in before["participants"]
    assert env.snapshot(case_no) == before  # ... and nobody else sees any of it yet

    children.kill(proc)
    _backend_gone(env, marker.get("backend_pid"))

    assert env.snapshot(case_no) == before  # state, version, events, deadlines, outbox, participants
    assert verify_audit(env.deps, case_no).ok

    # The lock died with the process: the same transition goes through at once, and writes exactly
    # what the killed child had written.
    began = time.monotonic()
    view = env.builder.send(case_no, "transfer_to_police")
    assert time.monotonic() - began < 10
    assert (view.state, view.version) == ("police_review", before["version"] + 1)
    after = env.snapshot(case_no)
    for key in ("state", "phase", "version", "participants"):
        assert after[key] == inside[key], key
    # The same clocks started and stopped (T3 "met" or "missed" depends on each process's clock).
    assert [[rule, status == "running"] for rule, status in after["deadlines"]] == [
        [rule, status == "running"] for rule, status in inside["deadlines"]
    ]
    assert [e[1:] for e in after["events"]] == [e[1:] for e in inside["events"]]
    assert [user for user, _key in after["outbox"]] == [user for user, _key in inside["outbox"]]
    history_is_gap_free(env, case_no, before["version"] + 1)


def test_kill_after_commit_keeps_everything(env: Env, children: Children) -> None:
    case_no = _case_awaiting_transfer(env)
    before = env.snapshot(case_no)

    proc, _marker = _hang(env, children, case_no, "transfer_to_police", "after_commit")
    children.kill(proc)

    after = env.snapshot(case_no)
    assert after["state"] == "police_review"
    assert after["version"] == before["version"] + 1
    assert after["events"] == [*before["events"], [before["version"] + 1, "transfer_to_police", before["version"] + 1]]
    assert after["outbox"][: len(before["outbox"])] == before["outbox"]
    assert [key.rsplit(":", 1)[1] for user, key in after["outbox"][len(before["outbox"]) :]] == ["email", "inbox"]
    assert {user for user, _key in after["outbox"][len(before["outbox"]) :]} == {"sm_psb_liaison"}
    assert ["T7", "running"] in after["deadlines"] and ["T7", "running"] not in before["deadlines"]
    assert ["T3", "running"] in before["deadlines"] and ["T3", "running"] not in after["deadlines"]
    assert "sm-psb" in after["participants"]
    history_is_gap_free(env, case_no, before["version"] + 1)


# --- 3. the lock really blocks --------------------------------------------------------------------------


@pytest.mark.parametrize("first_ends_by", ["kill", "commit"])
def test_second_transition_waits_for_row_lock(env: Env, children: Children, first_ends_by: str) -> None:
    kids = children
    case_no = env.builder.to_state("police_review").case_no
    start = env.snapshot(case_no)["version"]

    # A: inside advance_case, stopped in before_commit, holding the row lock.
    release, result_a = env.tmp / "release", env.tmp / "result-a"
    proc_a, marker = _hang(env, kids, case_no, SELF_EVENT, "before_commit", release=release, result=result_a)
    assert marker["in_transaction"]["version"] == start + 1
    backend_a = marker["backend_pid"]

    # B: the same kind of event on the same case.
    ready, go, result_b = env.tmp / "ready-b", env.tmp / "go-b", env.tmp / "result-b"
    proc_b = kids.start("send_events", env.config, case_no, SELF_EVENT, POLICE, 1, ready, go, result_b)
    wait_until(ready.exists, "B to be ready", alive=[proc_b], kids=kids)
    backend_b = read_json(ready)["backend_pid"]
    go.touch()

    if env.postgres:
        # B's server process waits for a lock held by A's: the SELECT ... FOR UPDATE of the case row.
        wait_until(
            lambda: backend_a in (env.sql("SELECT pg_blocking_pids(:pid)", pid=backend_b) or []),
            "B to wait on A's lock",
            alive=[proc_a, proc_b],
            kids=kids,
        )
        query = env.sql("SELECT lower(query) FROM pg_stat_activity WHERE pid = :pid", pid=backend_b)
        assert "from cases" in query and "for update" in query, query
    # (SQLite: B waits in BEGIN IMMEDIATE for the database's write lock; only time shows it.)
    time.sleep(1.0)
    assert proc_b.poll() is None and not result_b.exists(), "B finished while A held the row lock"

    if first_ends_by == "kill":
        a_ended = time.time()
        kids.kill(proc_a)
        expected_b = start + 1  # A's transition vanished; B builds on the version before it
    else:
        a_ended = time.time()
        release.touch()
        kids.wait_ok(proc_a)
        assert read_json(result_a)["version"] == start + 1
        expected_b = start + 2  # B builds on A's committed version
    kids.wait_ok(proc_b)

    [call] = read_json(result_b)
    assert call["ok"], call
    # B's call was under way well before A ended, and completed only after A ended.
    assert call["t0"] < a_ended - 0.5, "B did not start while A held the lock"
    assert call["t1"] > a_ended, "B completed before A let go of the lock"
    assert call["version"] == expected_b
    after = env.snapshot(case_no)
    assert after["version"] == expected_b
    history_is_gap_free(env, case_no, expected_b)
