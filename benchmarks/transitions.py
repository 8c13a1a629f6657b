"""Transition throughput: ``advance_case`` end to end versus the raw driver doing the same reads and writes.

The engine side sends ``request_supplement`` (police_review's internal self-transition, sent by the police
handler) to cases already in police_review, round robin. Per event the engine writes, measured from the
database (see ``count_writes``): one ``case_events`` row (SHA-256 chained), one ``cases`` update (version,
updated_at, last_hash), and two ``outbox`` rows (the liaison notice by email and inbox), no deadline rows;
``statements_per_event`` counts what it sends. The raw side does the same with the bare driver, one
transaction per event: lock the case (``BEGIN IMMEDIATE`` on SQLite, ``SELECT ... FOR UPDATE`` on
PostgreSQL), the engine's reads (the actor with its agency, participants, last effective time,
deadlines, recipients, owner, pause ledger), the chained event, the case update, the two outbox rows (same sizes as the
engine's), commit. A second raw run does the lock and the writes only: the floor, reported beside.
Runs are interleaved (engine, raw, floor, engine, ...) and the ratios are of the medians.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import (
    Row,
    deps_from_config,
    machine_cpu,
    make_bench_deps,
    median,
    pg_drop,
    pg_recreate,
)

EVENT = "request_supplement"
ACTOR = "sm_psb_handler"
TRANSITION_TARGET = 0.35
SCALING_TARGET = 2.5


def _clock(start: datetime) -> Any:
    from tests.conftest import FakeClock

    return FakeClock(start)


def build_cases(deps: Any, clock: Any, workdir: Path, count: int, prefix: str = "bench") -> list[str]:
    """``count`` cases in police_review, built through the real use cases (the path of tests.conftest)."""
    from tests.conftest import CaseBuilder

    files = workdir / f"files-{prefix}"
    files.mkdir(exist_ok=True)
    builder = CaseBuilder(deps, clock, files)
    return [builder.to_state("police_review", title=f"{prefix} {i} 配方泄露案").case_no for i in range(count)]


def count_writes(deps: Any, case_no: str, clock: Any) -> dict[str, int]:
    """Rows added per table by one engine transition (what the raw side must mirror)."""
    from sqlalchemy import inspect, text

    from workflows.cases import advance_case

    tables = inspect(deps.engine).get_table_names()

    def counts() -> dict[str, int]:
        with deps.engine.connect() as conn:
            return {t: int(conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar() or 0) for t in tables}

    before = counts()
    clock.advance(seconds=1)
    advance_case(deps, case_no, EVENT, actor=ACTOR, data={})
    after = counts()
    return {t: after[t] - before[t] for t in tables if after[t] != before[t]}


def run_engine(deps: Any, clock: Any, cases: list[str], n: int) -> float:
    """Transitions per second of ``n`` advance_case calls over ``cases`` round robin."""
    from workflows.cases import advance_case

    started = time.perf_counter()
    for i in range(n):
        clock.advance(seconds=1)
        advance_case(deps, cases[i % len(cases)], EVENT, actor=ACTOR, data={})
    return n / (time.perf_counter() - started)


# --- the raw driver ---------------------------------------------------------------------------------


def _template_rows(deps: Any) -> tuple[list[Any], list[Any]]:
    """The engine's last outbox pair and last event, as models (sizes and texts for the raw side)."""
    from sqlalchemy import select

    from models.tables import CaseEvent, OutboxMessage

    with deps.sessions() as session:
        events = list(session.execute(select(CaseEvent).order_by(CaseEvent.id.desc()).limit(1)).scalars())
        # That event's notice (with several writers, the newest outbox rows may belong to different events).
        key = f"case_event:{events[0].event_id}:%"
        outbox = list(
            session.execute(
                select(OutboxMessage).where(OutboxMessage.dedupe_key.like(key)).order_by(OutboxMessage.id)  # type: ignore[attr-defined]
            ).scalars()
        )
    return outbox, events


class RawDriver:
    """The same reads and writes as one engine transition, with the bare driver (sqlite3 or psycopg).

    ``reads``: also run every read the engine needs for the transition (the actor with its agency,
    participants, the last effective time, the case's deadlines, the notice's recipients, the owner's name, the
    pause ledger), as the engine's statement log shows them; without it only the lock and the writes (the
    physical floor of the writes alone)."""

    def __init__(self, deps: Any, clock: Any, *, reads: bool = True) -> None:
        from states.lifecycle import RECORD_EVENTS

        self.reads = reads
        self.record_events = sorted(RECORD_EVENTS)
        self.clock = clock
        self.sqlite = deps.engine.dialect.name == "sqlite"
        outbox, events = _template_rows(deps)
        self.outbox = [(m.channel, m.recipient, m.recipient_user, m.subject, m.body, m.body_html) for m in outbox]
        self.template_version = outbox[0].template_version
        self.payload = json.dumps(events[0].payload, ensure_ascii=False)
        url = deps.engine.url
        if self.sqlite:
            import sqlite3

            self.conn: Any = sqlite3.connect(url.database, isolation_level=None, timeout=60)
            for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=FULL", "busy_timeout=60000"):
                self.conn.execute(f"PRAGMA {pragma}")
            self.p = "?"
        else:
            import psycopg

            self.conn = psycopg.connect(
                host=url.host or "127.0.0.1", port=url.port or 5432, user=url.username, dbname=url.database
            )
            self.p = "%s"

    def close(self) -> None:
        self.conn.close()

    def _ts(self, value: datetime) -> Any:
        # What SQLAlchemy stores: a naive UTC text on SQLite, a timestamptz on PostgreSQL.
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") if self.sqlite else value

    def transition(self, case_no: str) -> None:
        p, now = self.p, self.clock.advance(seconds=1)
        cur = self.conn.cursor()
        if self.sqlite:
            cur.execute("BEGIN IMMEDIATE")
        lock = "" if self.sqlite else " FOR UPDATE OF cases"
        if self.reads:  # the case with its owner agency (the view shows the owner's name), as the engine
            cur.execute(
                "SELECT cases.id, version, configuration, last_hash, agencies.* FROM cases"
                f" JOIN agencies ON agencies.code = cases.owner_agency WHERE case_no = {p}{lock}",
                (case_no,),
            )
        else:
            cur.execute(
                f"SELECT id, version, configuration, last_hash FROM cases WHERE case_no = {p}{lock}", (case_no,)
            )
        case_id, version, configuration, prev = cur.fetchone()[:4]
        deadline_ids: list[int] = []
        if self.reads:
            deadline_ids = self._reads(cur, case_id)
        conf = json.loads(configuration) if isinstance(configuration, str) else configuration
        version += 1
        event_id = str(uuid.uuid4())
        body = {
            "case_no": case_no,
            "seq": version,
            "event_id": event_id,
            "event": EVENT,
            "actor": ACTOR,
            "actor_agency": "sm-psb",
            "effective_at": now.isoformat(timespec="microseconds"),
            "recorded_at": now.isoformat(timespec="microseconds"),
            "note": "",
            "payload": {},
            "from_configuration": conf,
            "to_configuration": conf,
            "version": version,
            "prev_hash": prev,
        }
        digest = hashlib.sha256(
            json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
        ).hexdigest()
        conf_json = json.dumps(conf)
        ts = self._ts(now)
        cur.execute(
            "INSERT INTO case_events (event_id, case_id, seq, event, actor, actor_agency, effective_at, recorded_at,"
            " note, payload, from_configuration, to_configuration, from_state, to_state, version, prev_hash, hash)"
            f" VALUES ({', '.join([p] * 17)})",
            (
                *(event_id, case_id, version, EVENT, ACTOR, "sm-psb", ts, ts, "", self.payload, conf_json, conf_json),
                *("police_review", "police_review", version, prev, digest),
            ),
        )
        cur.execute(
            f"UPDATE cases SET version = {p}, updated_at = {p}, last_hash = {p}, state = {p}, configuration = {p}"
            f" WHERE id = {p}",
            (version, ts, digest, "police_review", conf_json, case_id),
        )
        cur.executemany(  # as the engine: one executemany for the notice's rows
            "INSERT INTO outbox (dedupe_key, case_id, kind, channel, recipient, recipient_user, subject, body,"
            " body_html, ics, template, template_version, lang, status, attempts, next_attempt_at, created_at,"
            f" last_error, claimed_by) VALUES ({', '.join([p] * 19)})",
            [
                (
                    *(f"case_event:{event_id}:{user}:{channel}", case_id, "case_event", channel, recipient, user),
                    *(subject, text, html, "", "case_event", self.template_version, "zh", "pending", 0, ts, ts, "", ""),
                )
                for channel, recipient, user, subject, text, html in self.outbox
            ],
        )
        if self.reads and deadline_ids:
            cur.execute(
                "SELECT * FROM deadline_pauses WHERE deadline_id IN"
                f" (SELECT id FROM deadlines WHERE case_id = {p}) ORDER BY id",
                (case_id,),
            )
            cur.fetchall()
        if self.sqlite:
            cur.execute("COMMIT")
        else:
            self.conn.commit()
        cur.close()

    def _reads(self, cur: Any, case_id: int) -> list[int]:
        """The engine's reads before its writes; returns the case's deadline ids (for the pause ledger)."""
        p = self.p
        cur.execute(  # the actor with its agency, in one query as the engine
            f"SELECT * FROM officers JOIN agencies ON agencies.code = officers.agency_code WHERE username = {p}",
            (ACTOR,),
        )
        cur.fetchall()
        cur.execute(f"SELECT agency_code, role FROM case_participants WHERE case_id = {p} ORDER BY id", (case_id,))
        cur.fetchall()
        listed = ", ".join(f"'{event}'" for event in self.record_events)  # as the engine: written into the SQL
        cur.execute(
            f"SELECT max(effective_at) FROM case_events WHERE case_id = {p} AND event NOT IN ({listed})", (case_id,)
        )
        cur.fetchall()
        cur.execute(f"SELECT * FROM deadlines WHERE case_id = {p} ORDER BY started_at, id", (case_id,))
        ids = [row[0] for row in cur.fetchall()]
        cur.execute(  # the notice's recipients: liaison officers of the other participating agencies
            "SELECT username, display_name, email, channels FROM officers WHERE agency_code IN"
            f" (SELECT agency_code FROM case_participants WHERE case_id = {p}) AND agency_code != {p}"
            " AND liaison AND active ORDER BY username",
            (case_id, "sm-psb"),
        )
        cur.fetchall()
        return ids

    def run(self, cases: list[str], n: int) -> float:
        started = time.perf_counter()
        for i in range(n):
            self.transition(cases[i % len(cases)])
        return n / (time.perf_counter() - started)


# --- one backend, one writer ------------------------------------------------------------------------


def interleaved(deps: Any, clock: Any, cases: list[str], n: int, rounds: int) -> tuple[float, float, float]:
    """Median transitions/s over ``rounds`` interleaved runs: engine, raw (same reads and writes), raw writes
    only."""
    run_engine(deps, clock, cases, max(5, n // 10))  # warm-up: chart classes, templates, statement cache
    raw, floor = RawDriver(deps, clock), RawDriver(deps, clock, reads=False)
    try:
        raw.run(cases, max(5, n // 10))
        floor.run(cases, max(5, n // 10))
        engine_tps, raw_tps, floor_tps = [], [], []
        for _ in range(rounds):
            engine_tps.append(run_engine(deps, clock, cases, n))
            raw_tps.append(raw.run(cases, n))
            floor_tps.append(floor.run(cases, n))
    finally:
        raw.close()
        floor.close()
    return median(engine_tps), median(raw_tps), median(floor_tps)


def statements_per_event(deps: Any, case_no: str, clock: Any) -> int:
    """SQL statements one engine transition sends (BEGIN and COMMIT not counted)."""
    from sqlalchemy import event

    from workflows.cases import advance_case

    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(deps.engine, "before_cursor_execute", count)
    try:
        clock.advance(seconds=1)
        advance_case(deps, case_no, EVENT, actor=ACTOR, data={})
    finally:
        event.remove(deps.engine, "before_cursor_execute", count)
    return sum(1 for s in seen if not s.lstrip().upper().startswith(("BEGIN", "COMMIT")))


def verify_chains(deps: Any) -> bool:
    from workflows.cases import verify_audit

    return verify_audit(deps).ok


def bench_backend(backend: str, quick: bool) -> list[Row]:
    n, rounds, n_cases = (100, 5, 10) if quick else (300, 7, 20)
    start = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url = f"sqlite:///{workdir / 'bench.db'}" if backend == "sqlite" else pg_recreate()
        clock = _clock(start)
        try:
            _config, deps = make_bench_deps(workdir, url, clock)
            cases = build_cases(deps, clock, workdir, n_cases)
            writes = count_writes(deps, cases[0], clock)
            statements = statements_per_event(deps, cases[0], clock)
            e, r, floor = interleaved(deps, clock, cases, n, rounds)
            chains_ok = verify_chains(deps)
            deps.engine.dispose()
        finally:
            if backend != "sqlite":
                pg_drop()
    ratio = e / r
    met = ratio >= TRANSITION_TARGET
    name = "postgres" if backend != "sqlite" else "sqlite"
    note = (
        f"writes/event {writes}; {statements} statements/event; {rounds}x{n} interleaved; "
        f"audit chains verify={'ok' if chains_ok else 'BROKEN'}"
    )
    return [
        Row(f"transition engine {backend}", e, "transitions/s", note=note),
        Row(
            f"transition raw {backend}",
            r,
            "transitions/s",
            note=f"bare driver, the engine's {statements} reads and writes, 1 tx/event",
        ),
        Row(f"transition_ratio_{name}", ratio, "x raw", f">= {TRANSITION_TARGET}", met),
        Row(
            f"transition raw writes-only {backend}",
            floor,
            "transitions/s",
            note="bare driver, lock + the 4 writes only (the floor)",
        ),
        Row(f"transition_ratio_writes_only_{name}", e / floor, "x raw", note="engine over the writes-only floor"),
    ]


# --- PostgreSQL: 8 processes on distinct cases versus one --------------------------------------------


def _worker(config: str, cases: list[str], n: int, start_iso: str, raw: bool, barrier: Any, out: Any) -> None:
    try:
        _work(config, cases, n, start_iso, raw, barrier, out)
    except BaseException as err:
        barrier.abort()  # the others stop waiting for this one
        out.put(err)  # the parent raises it instead of waiting for a result that never comes
        raise


def _work(config: str, cases: list[str], n: int, start_iso: str, raw: bool, barrier: Any, out: Any) -> None:
    clock = _clock(datetime.fromisoformat(start_iso))
    deps = deps_from_config(Path(config), clock)
    run_engine(deps, clock, cases, 3)  # warm-up (and the outbox rows the raw driver copies)
    driver = RawDriver(deps, clock) if raw else None
    if driver is not None:
        driver.run(cases, 3)
    barrier.wait()
    t0, (busy0, _total) = time.perf_counter(), machine_cpu()
    if driver is not None:
        driver.run(cases, n)
        driver.close()
    else:
        run_engine(deps, clock, cases, n)
    busy1, _total = machine_cpu()
    out.put((t0, time.perf_counter(), n, busy1 - busy0))
    deps.engine.dispose()


def _parallel(config: Path, groups: list[list[str]], n: int, start: datetime, raw: bool = False) -> tuple[float, float]:
    """Aggregate transitions/s of one process per group (the engine's, or the raw driver's same reads and
    writes), and the CPU cores the machine kept busy meanwhile (as the first process saw it: all of them,
    PostgreSQL included)."""
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(len(groups)), ctx.Queue()
    args = [(str(config), g, n, start.isoformat(), raw, barrier, out) for g in groups]
    procs = [ctx.Process(target=_worker, args=a) for a in args]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
    failed = next((r for r in results if isinstance(r, BaseException)), None)
    if failed is not None:
        raise RuntimeError(f"a benchmark process failed: {failed!r}") from failed
    total = sum(r[2] for r in results)
    first = results[0]
    return total / (max(r[1] for r in results) - min(r[0] for r in results)), first[3] / (first[1] - first[0])


def bench_pg_scaling(quick: bool, procs: int = 8) -> list[Row]:
    n, rounds, per = (40, 2, 2) if quick else (150, 3, 3)
    start = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url = pg_recreate()
        clock = _clock(start)
        try:
            config, deps = make_bench_deps(workdir, url, clock)
            cases = build_cases(deps, clock, workdir, procs * per)
            deps.engine.dispose()
            groups = [cases[i * per : (i + 1) * per] for i in range(procs)]
            ones, manys, busy, raw_ones, raw_manys = [], [], [], [], []
            later = clock.now + timedelta(days=1)
            for k in range(rounds):
                at = later + timedelta(hours=4 * k)  # each run in its own hour: event times only go forward
                rate, cores = _parallel(config, groups[:1], n, at)
                ones.append(rate)
                busy.append(cores)
                manys.append(_parallel(config, groups, n, at + timedelta(hours=1))[0])
                raw_ones.append(_parallel(config, groups[:1], n, at + timedelta(hours=2), raw=True)[0])
                raw_manys.append(_parallel(config, groups, n, at + timedelta(hours=3), raw=True)[0])
        finally:
            pg_drop()
    one, many = median(ones), median(manys)
    factor = many / one
    raw_factor = median(raw_manys) / median(raw_ones)
    cpus = os.cpu_count() or 1
    # One writer keeps `cores` busy (itself and its PostgreSQL backend); more writers cannot use more than all.
    ceiling = cpus / median(busy)
    return [
        Row("transition postgres 1 process", one, "transitions/s", note=f"{rounds} runs x {n} events"),
        Row(f"transition postgres {procs} processes", many, "transitions/s", note="distinct cases, aggregate"),
        Row(f"pg_scaling_{procs}_vs_1", factor, "x", f">= {SCALING_TARGET}", factor >= SCALING_TARGET),
        Row(
            "pg_scaling ceiling on this machine",
            ceiling,
            "x",
            note=f"{cpus} CPUs / {median(busy):.2f} cores one writer keeps busy (client + PostgreSQL); "
            f"{procs} processes reach {factor / ceiling:.0%} of it",
        ),
        Row(
            "transition postgres raw 1 process",
            median(raw_ones),
            "transitions/s",
            note="the bare driver, same reads and writes",
        ),
        Row(
            f"transition postgres raw {procs} processes",
            median(raw_manys),
            "transitions/s",
            note="distinct cases, aggregate",
        ),
        Row(
            f"pg_scaling_raw_{procs}_vs_1",
            raw_factor,
            "x",
            note=f"what {procs} bare-driver processes gain here on the same work (the engine's factor is "
            f"{factor / raw_factor:.0%} of it)",
        ),
    ]
