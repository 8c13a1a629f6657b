"""The deadline sweep under concurrency and crashes, with real OS processes (workflows/deadlines.py).

The issue's acceptance: "Two sweepers over 10,000 due deadlines on PostgreSQL: every reminder fired
exactly once; a sweeper killed mid-way loses nothing (the rest fire on the next run)."

* Two sweeper processes released together over 10,000 due A1 deadlines (PostgreSQL): ``SELECT ... FOR
  UPDATE SKIP LOCKED`` hands them disjoint batches, both do part of the work, and every reminder is fired,
  recorded on the audit log and queued for the handlers exactly once.
* A sweeper SIGKILLed while a batch transaction is open (PostgreSQL): only whole batches are visible
  afterwards (each batch is one transaction), and the next run fires exactly the rest.
* Two sweeper processes on a SQLite file (``BEGIN IMMEDIATE`` serialises the batches): exactly once too.

Set-up is fast: one real case is opened with ``open_case`` (the A1 clock starts at intake), then cloned
with bulk inserts: the case, its owner participation, its audit event #1 (fresh event id, hash recomputed
for the new case number, so the chains verify) and its deadline. The sweep runs at ``due_at - 12h``: both
the 3-day and the 1-day reminder are past, so each deadline fires exactly one alert, the 1-day reminder
(a sweep sends only the latest due reminder), and none is missed yet.

The children are ``tests/integration/procs/sweep_deadlines.py``; every child is killed and reaped in
``finally`` (``Children`` of test_concurrency).
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, bindparam, insert, select, text
from sqlmodel.sql.sqltypes import UTCDateTime

from models.db import SQLITE_BEGIN
from models.tables import Case, CaseEvent, CaseParticipant, Deadline
from states.clocks import REMIND, alert_schedule, alerts_to_fire
from tests.conftest import MR, FakeClock, make_deps
from tests.integration.procs._common import read_json
from tests.integration.test_concurrency import Children, wait_until
from workflows.audit import chain_breaks, event_digest
from workflows.cases import open_case, verify_audit
from workflows.clockwork import Directory
from workflows.deadlines import fire_due_deadlines
from workflows.uow import Deps, UnitOfWork

PG_TOTAL = 10_000  # the number
KILL_TOTAL = 3_000
SQLITE_TOTAL = 1_000
SWEEP_WAIT = 120.0  # the longest a sweeper child may run before the test fails instead of hanging


# --- fixtures -------------------------------------------------------------------------------------------


@dataclass
class Env:
    """A migrated database, its config file (for the children) and in-process Deps with a fake clock."""

    config: Path
    deps: Deps
    tmp: Path

    def rows(self, query: str, **params: Any) -> list[Any]:
        """All rows of a query, read as committed now (DEFERRED: a SQLite reader never waits for a writer).
        A ``now`` parameter is bound as the tables' time type, so SQLite compares it as stored."""
        stmt = text(query)
        if "now" in params:
            stmt = stmt.bindparams(bindparam("now", type_=UTCDateTime()))
        with self.deps.engine.connect().execution_options(**{SQLITE_BEGIN: "DEFERRED"}) as conn:
            found = [tuple(row) for row in conn.execute(stmt, params)]
            conn.rollback()
        return found

    def scalar(self, query: str, **params: Any) -> Any:
        """The first value of the first row (None if there is none)."""
        found = self.rows(query, **params)
        return found[0][0] if found else None


def _env(config: Path, tmp_path: Path) -> Iterator[Env]:
    _settings, deps = make_deps(config, FakeClock())  # migrate and load the directory once, here
    try:
        yield Env(config, deps, tmp_path)
    finally:
        deps.engine.dispose()


@pytest.fixture
def pg_env(pg_config: Path, tmp_path: Path) -> Iterator[Env]:
    yield from _env(pg_config, tmp_path)


@pytest.fixture
def sqlite_env(sqlite_config: Path, tmp_path: Path) -> Iterator[Env]:
    yield from _env(sqlite_config, tmp_path)


@pytest.fixture
def kids(tmp_path: Path) -> Iterator[Children]:
    logs = tmp_path / "logs"
    logs.mkdir()
    children = Children(logs)
    try:
        yield children
    finally:
        children.close()


# --- set-up: many cases with one due reminder each ------------------------------------------------------


@dataclass
class Seeded:
    """What ``seed_due_cases`` made."""

    total: int  # cases, each with exactly one running deadline that is due
    now: datetime  # the sweep moment: exactly one alert (the 1-day reminder) due per deadline
    key: str  # the ``fired_alerts.key`` every deadline fires
    handlers: int  # outbox rows per reminder (the sm-amr handlers with an e-mail address)
    seconds: float  # how long the set-up took


def _table(model: Any) -> Table:
    return model.__table__  # type: ignore[no-any-return]


def seed_due_cases(deps: Deps, total: int) -> Seeded:
    """Open one real sm-amr case (A1 starts at intake) and clone it into ``total`` cases in bulk."""
    started = time.monotonic()
    view = open_case(deps, agency="sm-amr", title="三明某公司配方泄露案", source="report", actor=MR)
    cases, participants, events, deadlines = map(_table, (Case, CaseParticipant, CaseEvent, Deadline))
    with deps.engine.begin() as conn:
        case = dict(conn.execute(select(cases).where(cases.c.case_no == view.case_no)).mappings().one())
        cid = case["id"]
        owner = [dict(r) for r in conn.execute(select(participants).where(participants.c.case_id == cid)).mappings()]
        first = [dict(r) for r in conn.execute(select(events).where(events.c.case_id == cid)).mappings()]
        clocks = [dict(r) for r in conn.execute(select(deadlines).where(deadlines.c.case_id == cid)).mappings()]
        assert len(first) == 1 and case["version"] == 1, "a new case has exactly its open_case event"
        assert [d["rule"] for d in clocks] == ["A1"] and clocks[0]["status"] == "running"

        def clone(row: dict[str, Any], **changes: Any) -> dict[str, Any]:
            return {**{k: v for k, v in row.items() if k != "id"}, **changes}

        case_rows, event_rows = [], []
        for i in range(1, total):
            case_no = f"{view.case_no}-S{i:05d}"
            record = CaseEvent(**clone(first[0], event_id=str(uuid.uuid4())))
            record.hash = event_digest(case_no, record)  # the genesis event: prev_hash stays ""
            event_rows.append(clone(record.model_dump()))
            case_rows.append(clone(case, case_no=case_no, last_hash=record.hash))
        returning = insert(cases).returning(cases.c.id, sort_by_parameter_order=True)
        ids = list(conn.execute(returning, case_rows).scalars())
        assert len(ids) == total - 1
        for template, table in ((owner, participants), (clocks, deadlines)):
            conn.execute(insert(table), [clone(row, case_id=new) for new in ids for row in template])
        for new, row in zip(ids, event_rows, strict=True):
            row["case_id"] = new
        conn.execute(insert(events), event_rows)

    due_at: datetime = clocks[0]["due_at"]
    now = due_at - timedelta(hours=12)
    # What the sweep will decide, by the same pure functions: one reminder, "1d", nothing missed.
    rule = deps.clock_rules["A1"]
    assert deps.supervision.auto_list_for("A1") is None
    schedule = alert_schedule(due_at, rule.reminder_leads(), None)
    due = alerts_to_fire(schedule, due_at, now=now, fired=set())
    assert [(a.kind, a.lead) for a in due] == [(REMIND, "1d")], due
    assert clocks[0]["next_alert_at"] <= now < due_at
    with UnitOfWork(deps, read_only=True) as uow:
        handlers = {o.username for o in Directory(uow).with_role("sm-amr", "handler") if o.email}
    assert handlers, "sm-amr has no handler with an e-mail address: the reminders would queue nothing"
    return Seeded(total, now, due[0].key(due_at), len(handlers), time.monotonic() - started)


# --- checks -----------------------------------------------------------------------------------------------


def count_fired(env: Env) -> int:
    return int(env.scalar("SELECT count(*) FROM fired_alerts"))


def assert_consistent(env: Env, seed: Seeded, fired: int) -> None:
    """Exactly ``fired`` deadlines fired their one reminder, each exactly once and completely (the audit
    event, the version bump, the fired_alerts row, the outbox rows, the rescheduling); the others untouched."""
    total = seed.total
    assert env.scalar("SELECT count(*) FROM cases") == total
    assert env.scalar("SELECT count(*) FROM deadlines WHERE status = 'running'") == total
    # fired_alerts: one per fired deadline, the predicted key, never two for one deadline.
    assert count_fired(env) == fired
    assert env.scalar("SELECT count(DISTINCT subject_id) FROM fired_alerts") == fired
    assert env.rows("SELECT subject_id FROM fired_alerts GROUP BY subject, subject_id HAVING count(*) > 1") == []
    assert env.rows("SELECT DISTINCT subject, key FROM fired_alerts") == ([("deadline", seed.key)] if fired else [])
    # case_events: one deadline_reminder per fired deadline, on distinct cases, as event #2.
    assert env.scalar("SELECT count(*) FROM case_events WHERE event = 'deadline_reminder'") == fired
    assert env.scalar("SELECT count(DISTINCT case_id) FROM case_events WHERE event = 'deadline_reminder'") == fired
    assert env.scalar("SELECT count(*) FROM case_events WHERE event NOT IN ('open_case', 'deadline_reminder')") == 0
    assert env.rows("SELECT DISTINCT seq FROM case_events WHERE event = 'deadline_reminder'") == (
        [(2,)] if fired else []
    )
    # Every fired alert points at its own audit event, on the deadline's case.
    assert (
        env.scalar(
            "SELECT count(*) FROM fired_alerts f JOIN deadlines d ON d.id = f.subject_id AND d.case_id = f.case_id "
            "JOIN case_events e ON e.case_id = f.case_id AND e.seq = f.event_seq AND e.event = 'deadline_reminder'"
        )
        == fired
    )
    # Every case's version is its number of events and its last event's seq: no half-written batch.
    assert (
        env.scalar(
            "SELECT count(*) FROM cases c WHERE c.version <> (SELECT max(e.seq) FROM case_events e "
            "WHERE e.case_id = c.id) OR c.version <> (SELECT count(*) FROM case_events e WHERE e.case_id = c.id)"
        )
        == 0
    )
    assert env.scalar("SELECT count(*) FROM cases WHERE version = 2") == fired
    # outbox: one message per handler and reminder, no dedupe key twice.
    assert (
        env.scalar("SELECT count(*) FROM outbox WHERE kind = 'deadline_reminder' AND channel = 'email'")
        == fired * seed.handlers
    )
    assert env.scalar("SELECT count(DISTINCT dedupe_key) FROM outbox") == env.scalar("SELECT count(*) FROM outbox")
    assert env.scalar("SELECT count(*) FROM outbox WHERE kind <> 'deadline_reminder'") == 0
    assert (
        env.scalar(
            "SELECT count(*) FROM cases c WHERE (SELECT count(*) FROM outbox o "
            "WHERE o.case_id = c.id AND o.channel = 'email') <> (c.version - 1) * :handlers",
            handlers=seed.handlers,
        )
        == 0
    )
    # Rescheduling: a fired deadline waits for its miss (due_at > now); an unfired one is still due.
    due = env.scalar(
        "SELECT count(*) FROM deadlines WHERE status = 'running' AND next_alert_at IS NOT NULL "
        "AND next_alert_at <= :now",
        now=seed.now,
    )
    assert due == total - fired
    assert (
        env.scalar(
            "SELECT count(*) FROM deadlines d JOIN fired_alerts f ON f.subject_id = d.id "
            "WHERE d.next_alert_at = d.due_at AND d.next_alert LIKE 'missed@%'"
        )
        == fired
    )
    assert_chains_intact(env)


def assert_chains_intact(env: Env) -> None:
    """Every case's hash chain, recomputed (two queries instead of ``verify_audit``'s one per case),
    plus ``verify_audit`` itself on a sample."""
    with UnitOfWork(env.deps, read_only=True) as uow:
        cases = list(uow.session.execute(select(Case).order_by(Case.id)).scalars())
        by_case: dict[int, list[CaseEvent]] = defaultdict(list)
        for record in uow.session.execute(select(CaseEvent).order_by(CaseEvent.case_id, CaseEvent.seq)).scalars():
            by_case[record.case_id].append(record)
        # Inside the unit of work: leaving it rolls back, which expires the loaded rows.
        problems = [
            problem
            for case in cases
            for problem in chain_breaks(
                case.case_no, by_case[case.id or 0], last_hash=case.last_hash, version=case.version
            )
        ]
        case_nos = [case.case_no for case in cases]
    assert problems == [], problems[:5]
    for case_no in case_nos[:: max(1, len(case_nos) // 20)]:
        report = verify_audit(env.deps, case_no)
        assert report.ok, report.problems


# --- the sweeper children ---------------------------------------------------------------------------------


def start_sweepers(env: Env, kids: Children, seed: Seeded, count: int, batch_size: int) -> list[dict[str, Any]]:
    """Start ``count`` sweeper processes, release them together, wait for all; their results."""
    start = env.tmp / "start"
    procs, ready, results = [], [], []
    for i in range(count):
        ready.append(env.tmp / f"ready-{i}")
        results.append(env.tmp / f"result-{i}")
        args = [env.config, seed.now.isoformat(), batch_size, results[i], "--ready", ready[i], "--start", start]
        procs.append(kids.start("sweep_deadlines", *args))
    wait_until(lambda: all(p.exists() for p in ready), "all sweepers ready", alive=procs, kids=kids)
    start.touch()  # the barrier: every sweeper is connected and polls for this file
    for proc in procs:
        kids.wait_ok(proc, timeout=SWEEP_WAIT)
    return [read_json(path) for path in results]


def assert_shared_exactly_once(env: Env, seed: Seeded, results: list[dict[str, Any]], *, both_work: bool) -> None:
    """Together the sweepers, running at the same time, fired every reminder once; with ``both_work``
    each of them fired some."""
    assert sum(r["fired"] for r in results) == seed.total, results
    assert sum(r["reminders"] for r in results) == seed.total, results
    assert sum(r["missed"] + r["auto_listed"] + r["escalations"] for r in results) == 0, results
    assert sum(r["notifications"] for r in results) == seed.total * seed.handlers, results
    if both_work:
        assert all(r["fired"] > 0 for r in results), f"one sweeper did all the work: {results}"
    assert max(r["t0"] for r in results) < min(r["t1"] for r in results), "the sweepers did not overlap"
    assert_consistent(env, seed, seed.total)
    assert fire_due_deadlines(env.deps, seed.now).fired == 0  # nothing left, nothing fires twice


# --- 1. two sweepers, 10,000 deadlines, PostgreSQL --------------------------------------------------------


@pytest.mark.postgres
def test_two_sweepers_fire_ten_thousand_reminders_exactly_once_on_postgres(pg_env: Env, kids: Children) -> None:
    seed = seed_due_cases(pg_env.deps, PG_TOTAL)
    assert pg_env.scalar("SELECT count(*) FROM deadlines WHERE next_alert_at <= :now", now=seed.now) == PG_TOTAL

    results = start_sweepers(pg_env, kids, seed, count=2, batch_size=100)
    print(f"set-up {seed.seconds:.1f}s; sweepers: {results}")

    assert_shared_exactly_once(pg_env, seed, results, both_work=True)
    # SKIP LOCKED: the batches are disjoint, so together they claimed about one case per alert (a case
    # may be claimed twice only when its batch committed between another claim's snapshot and its lock;
    # the second claim then finds nothing due and fires nothing).
    assert sum(r["cases"] for r in results) >= PG_TOTAL


# --- 2. a sweeper killed mid-way, PostgreSQL --------------------------------------------------------------


def _holds_uncommitted_batch(env: Env, backend: int) -> bool:
    """The server process has an open transaction with a transaction id: it has locked or written rows
    (the claim's ``FOR UPDATE`` takes one) and not committed them yet."""
    return bool(env.scalar("SELECT backend_xid IS NOT NULL FROM pg_stat_activity WHERE pid = :pid", pid=backend))


@pytest.mark.postgres
def test_a_killed_sweeper_loses_nothing_and_the_next_run_fires_the_rest(pg_env: Env, kids: Children) -> None:
    seed = seed_due_cases(pg_env.deps, KILL_TOTAL)
    batch = 50
    ready, result = pg_env.tmp / "ready", pg_env.tmp / "result"
    proc = kids.start("sweep_deadlines", pg_env.config, seed.now.isoformat(), batch, result, "--ready", ready)
    backend = wait_until(lambda: ready.exists() and read_json(ready), "sweeper ready", alive=[proc], kids=kids)[
        "backend_pid"
    ]
    # Let ten batches commit, then kill it while its next batch's transaction is open.
    wait_until(lambda: count_fired(pg_env) >= 10 * batch, "ten batches fired", alive=[proc], kids=kids)
    wait_until(lambda: _holds_uncommitted_batch(pg_env, backend), "a batch in flight", alive=[proc], kids=kids)
    kids.kill(proc)
    # Its server process ends (rolling back the open batch) once it notices the client is gone.
    wait_until(
        lambda: not pg_env.scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid", pid=backend),
        "the killed sweeper's backend to end",
    )
    assert not result.exists(), "the sweeper finished before it was killed"

    at_kill = count_fired(pg_env)
    print(f"killed after {at_kill} of {KILL_TOTAL} reminders (set-up {seed.seconds:.1f}s)")
    assert 0 < at_kill < KILL_TOTAL
    assert at_kill % batch == 0, f"{at_kill} fired: a batch is visible only partly"
    assert_consistent(pg_env, seed, at_kill)

    rest = fire_due_deadlines(pg_env.deps, seed.now, batch_size=200)

    assert (rest.reminders, rest.missed, rest.fired) == (KILL_TOTAL - at_kill, 0, KILL_TOTAL - at_kill)
    assert rest.notifications == (KILL_TOTAL - at_kill) * seed.handlers
    assert_consistent(pg_env, seed, KILL_TOTAL)
    assert fire_due_deadlines(pg_env.deps, seed.now).fired == 0


# --- 3. two sweepers on a SQLite file ---------------------------------------------------------------------


def test_two_sweepers_fire_every_reminder_exactly_once_on_sqlite(sqlite_env: Env, kids: Children) -> None:
    seed = seed_due_cases(sqlite_env.deps, SQLITE_TOTAL)
    assert sqlite_env.scalar("PRAGMA journal_mode") == "wal"

    results = start_sweepers(sqlite_env, kids, seed, count=2, batch_size=50)
    print(f"set-up {seed.seconds:.1f}s; sweepers: {results}")

    # Not required here that both fire some: SQLite's busy handler polls (sleeping up to 100 ms) while the
    # sweeper holding the write lock commits a batch and takes the lock again at once, so in practice the
    # first sweeper to get the lock does every batch and the other finds nothing left.
    assert_shared_exactly_once(sqlite_env, seed, results, both_work=False)
