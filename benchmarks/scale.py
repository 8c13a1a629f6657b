"""The deadline sweep and the supervisor's dashboard at scale, versus the raw SQL on the same data.

Data: ``n`` cases inserted with bulk SQL (not through ``advance_case``) from a fixed seed, owned by the city's
and two counties' market regulators (10 % by the province's, which the city supervisor does not cover), spread
over the phases (20 % closed); each with its owner as participant, one deadline (10 % of the open ones overdue,
the rest due within a year; a police deadline on cases the police received, with the police as participant)
and 1 % under listed supervision (some escalated). Every ``next_alert_at`` and ``next_check_at`` lies after
``NOW``, so the sweep measured is the idle sweep (the scan that finds what is due; at scale nearly every run
finds little), not the firing of alerts.

- sweep: ``fire_due_deadlines(deps, NOW)`` versus the same "is anything due?" read with the bare driver (the
  statement the engine sends, ``workflows.deadlines._PROBE``).
- dashboard: ``workflows.dashboard.figures`` as the city supervisor (cases per phase and state, overdue
  deadlines by the agency that must act, open listings and escalations by handling agency, overdue action
  items, days per stage this quarter: the counts of ``/supervisor``) versus hand-written SQL doing the same
  aggregation with the bare driver.
- overdue list: ``list_deadlines(overdue=True, limit=500)`` as the city supervisor (the dashboard's overdue
  table) versus the same join, visibility and responsible-agency lookup with the bare driver.

Ratios are engine time over raw time (target: within 2x). On PostgreSQL the raw queries are not
server-side prepared: psycopg prepares a query run five times, and the generic plan PostgreSQL may then
choose scans instead of using the partial indexes, which would flatter the ratio.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import Row, make_bench_deps, median, pg_drop, pg_recreate

NOW = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
QUARTER = datetime(2026, 3, 31, 16, 0, tzinfo=UTC)  # 2026-04-01 00:00 Beijing time: the quarter so far
SEED = 8
TARGET = 2.0
SUPERVISOR = "sm_amr_supervisor"  # 三明市: covers the city and its counties, not the province's own cases
CONF = json.dumps(["active", "administrative", "investigating"])
OWNERS = (("sm-amr", "sm-psb", 0.40), ("jl-amr", "jl-psb", 0.65), ("mx-amr", "mx-psb", 0.90), ("fj-amr", "sm-psb", 1.0))
#: (state, phase, cumulative share); the police have received the cases from police_review on
STATES = (
    ("verifying", "intake", 0.15),
    ("investigating", "administrative", 0.50),
    ("referral_review", "referral", 0.58),
    ("police_review", "referral", 0.64),
    ("criminal_investigation", "criminal", 0.72),
    ("trial", "judicial", 0.80),
    ("closed", "closed", 1.0),
)
POLICE_STATES = ("police_review", "criminal_investigation", "trial")

# The sweep's read: the statement the engine sends, compiled for each driver (see Raw).
PROBE = "workflows.deadlines._PROBE"
VISIBLE = (
    "(c.owner_agency IN ({covered}) OR EXISTS (SELECT 1 FROM case_participants vp"
    " WHERE vp.case_id = c.id AND vp.agency_code = 'sm-amr'))"
)
RESPONSIBLE = (
    "coalesce((SELECT p.agency_code FROM case_participants p JOIN agencies a ON a.code = p.agency_code"
    " WHERE p.case_id = d.case_id AND a.kind = d.responsible ORDER BY p.id DESC LIMIT 1), c.owner_agency)"
)
DASHBOARD_SQL = (
    "SELECT c.phase, c.state, count(*) FROM cases c WHERE {visible} GROUP BY c.phase, c.state",
    "SELECT {responsible}, count(*) FROM deadlines d JOIN cases c ON c.id = d.case_id"
    " WHERE d.status = 'running' AND d.due_at < {p} AND {visible} GROUP BY 1",
    "SELECT s.handling_agency, count(*), sum(CASE WHEN s.escalations > 0 THEN 1 ELSE 0 END) FROM supervisions s"
    " JOIN cases c ON c.id = s.case_id WHERE s.state != 'delisted' AND {visible} GROUP BY s.handling_agency",
    "SELECT id, case_id, owner_agency, due_at FROM action_items WHERE state = 'open' ORDER BY due_at, id",
    "SELECT e.case_id, e.event, e.actor_agency, e.effective_at FROM case_events e WHERE e.case_id IN ("
    " SELECT DISTINCT x.case_id FROM case_events x WHERE x.effective_at >= {p} AND x.effective_at < {p}"
    " AND x.event IN ({ends}) AND x.case_id IN (SELECT c.id FROM cases c WHERE {visible}))"
    " AND e.event IN ({events}) AND e.effective_at < {p} ORDER BY e.case_id, e.seq",
)
OVERDUE_SQL = (
    "SELECT c.case_no, c.title, c.owner_agency, c.state, d.rule, d.label, d.status, d.due_at, d.paused_at,"
    " d.provisional, d.responsible, d.basis, {responsible} FROM deadlines d JOIN cases c ON c.id = d.case_id"
    " WHERE d.status IN ('running', 'paused') AND d.status = 'running' AND d.due_at < {p} AND {visible}"
    " ORDER BY d.due_at, d.id LIMIT 500"
)


def _cases(n: int) -> Iterator[dict[str, Any]]:
    """Each case's facts, drawn lazily from the seed (every loader replays the same sequence)."""
    rng = random.Random(SEED)
    for i in range(1, n + 1):
        received = NOW - timedelta(days=rng.randint(1, 365), minutes=rng.randint(0, 1439))
        pick = rng.random()
        owner, police = next((o, p) for o, p, share in OWNERS if pick < share)
        pick = rng.random()
        state, phase = next((s, ph) for s, ph, share in STATES if pick < share)
        overdue = rng.random() < 0.10
        due = NOW - timedelta(days=rng.randint(1, 60)) if overdue else NOW + timedelta(days=rng.randint(1, 365))
        alert = NOW + timedelta(days=rng.randint(1, 30))
        listed = rng.random() < 0.01
        escalations = rng.randint(0, 2)
        yield {
            "id": i,
            "received": received,
            "owner": owner,
            "police": police if state in POLICE_STATES else None,
            "state": state,
            "phase": phase,
            "due": due,
            "alert": alert,
            "listed": listed and state != "closed",
            "escalations": escalations,
        }


def _chunks(n: int, size: int = 50_000) -> Iterator[dict[str, list[tuple[Any, ...]]]]:
    """The rows of each table (cases, deadlines, case_participants, supervisions) for ``n`` cases, ``size`` cases
    at a time: one pass over the seed's draws, and a million cases never in memory at once."""
    chunk: dict[str, list[tuple[Any, ...]]] = {table: [] for table in COLUMNS}
    participant = 0
    for c in _cases(n):
        i, received, closed = c["id"], c["received"], c["state"] == "closed"
        case = (i, f"bench-2026-{i:07d}", f"基准案件 {i}", "report", c["owner"], c["state"], c["phase"], CONF, "{}",
                '{"counters": {}}', 3, received, "sm_amr_handler", received, received, "")  # fmt: skip
        chunk["cases"].append(case)
        kind = "police" if c["police"] else "market_regulation"
        status, alert = ("met", None) if closed else ("running", c["alert"])
        deadline = (i, i, "A2", "立案审查期限", "基准", "days", 30, status, received, c["due"], "file_case", kind,
                    c["due"], "[]", alert, "reminder" if alert else "", 0, False, "")  # fmt: skip
        chunk["deadlines"].append(deadline)
        for code, role in ((c["owner"], "owner"), (c["police"], "receiver")):
            if code:
                participant += 1
                event = "open_case" if role == "owner" else "transfer_to_police"
                chunk["case_participants"].append((participant, i, code, role, received, event))
        if c["listed"]:
            check, due = c["alert"], c["alert"] + timedelta(days=30)
            listing = (i, i, "city", "listed", "基准督办", SUPERVISOR, "sm-amr", c["owner"], received, due, 15, check,
                       0, c["escalations"], "", check, "", "")  # fmt: skip
            chunk["supervisions"].append(listing)
        if i % size == 0 or i == n:
            yield chunk
            chunk = {table: [] for table in COLUMNS}


COLUMNS = {
    "cases": "id, case_no, title, source, owner_agency, state, phase, configuration, history, context, version,"
    " received_at, opened_by, created_at, updated_at, last_hash",
    "deadlines": 'id, case_id, rule, label, basis, unit, "limit", status, started_at, due_at, started_by,'
    " responsible, nominal_due_at, extensions, next_alert_at, next_alert, extensions_used, provisional,"
    " provisional_reason",
    "case_participants": "id, case_id, agency_code, role, added_at, added_by_event",
    "supervisions": "id, case_id, level, state, reason, listed_by, listing_agency, handling_agency, listed_at, due_at,"
    " report_every_days, next_report_due_at, reports, escalations, auto_rule, next_check_at, delisted_by, result",
}


def _ts(value: Any) -> Any:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(value, datetime) else value


def load_sqlite(path: str, n: int) -> None:
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    for chunk in _chunks(n):
        for table, rows in chunk.items():
            cols = COLUMNS[table]
            marks = ", ".join("?" * len(cols.split(",")))
            conn.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", (tuple(map(_ts, r)) for r in rows))
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


def load_postgres(url: Any, n: int) -> None:
    import psycopg

    with psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, dbname=url.database) as conn:
        with conn.cursor() as cur:
            for chunk in _chunks(n):
                for table, rows in chunk.items():
                    with cur.copy(f"COPY {table} ({COLUMNS[table]}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
        conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE")


class Raw:
    """The same work with the bare driver on one open connection."""

    def __init__(self, deps: Any) -> None:
        from models.tables import Agency
        from workflows.bulletins import _STAGE_ENDS, _STAGE_EVENTS
        from workflows.cases import _covers
        from workflows.deadlines import _PROBE
        from workflows.uow import UnitOfWork

        url = deps.engine.url
        self.sqlite = deps.engine.dialect.name == "sqlite"
        if self.sqlite:
            import sqlite3

            self.conn: Any = sqlite3.connect(url.database, isolation_level=None)
            p, self.now, self.start = "?", _ts(NOW), _ts(QUARTER)
        else:
            import psycopg

            self.conn = psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, dbname=url.database)
            p, self.now, self.start = "%s", NOW, QUARTER
        with UnitOfWork(deps, read_only=True) as uow:
            agencies = list(uow.session.query(Agency))
            mine = next(a for a in agencies if a.code == "sm-amr")
            covered = ", ".join(f"'{a.code}'" for a in agencies if _covers(mine, a))
        visible = VISIBLE.format(covered=covered)
        quoted = {
            "ends": ", ".join(f"'{e}'" for e in _STAGE_ENDS),
            "events": ", ".join(f"'{e}'" for e in _STAGE_EVENTS),
        }
        self.dashboard_sql = [q.format(p=p, visible=visible, responsible=RESPONSIBLE, **quoted) for q in DASHBOARD_SQL]
        self.dashboard_params: list[tuple[Any, ...]] = [(), (self.now,), (), (), (self.start, self.now, self.now)]
        self.overdue_sql = OVERDUE_SQL.format(p=p, visible=visible, responsible=RESPONSIBLE)
        probe = _PROBE.plan(deps.engine.dialect)  # the engine's SQL and parameters, as its driver takes them
        self.probe_sql = probe.sql
        self.probe_params: Any = probe.args({"now": NOW})

    def _run(self, statements: list[tuple[str, Any]]) -> int:
        cur = self.conn.cursor()
        if self.sqlite:
            cur.execute("BEGIN")
        found = 0
        for sql, params in statements:
            if self.sqlite:
                cur.execute(sql, params)
            else:
                cur.execute(sql, params, prepare=False)
            found += len(cur.fetchall())
        cur.execute("COMMIT") if self.sqlite else self.conn.commit()
        return found

    def sweep(self) -> int:
        cur = self.conn.cursor()
        if self.sqlite:
            cur.execute(self.probe_sql, self.probe_params)  # autocommit read, as the engine's
        else:
            cur.execute(self.probe_sql, self.probe_params, prepare=False)
        due = cur.fetchone()
        if not self.sqlite:
            self.conn.rollback()
        return sum(map(bool, due))

    def dashboard(self) -> int:
        return self._run(list(zip(self.dashboard_sql, self.dashboard_params, strict=True)))

    def overdue(self) -> int:
        return self._run([(self.overdue_sql, (self.now,))])


def _time(fn: Callable[[], Any], repeat: int = 1) -> float:
    """Seconds per call of ``fn``, timed over ``repeat`` calls (sub-millisecond calls: several per sample)."""
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def bench_scale(backend: str, quick: bool) -> list[Row]:
    sizes = [(10_000, 5)] if quick else [(100_000, 7), (1_000_000, 3)]
    return [row for n, rounds in sizes for row in bench_scale_at(backend, n, rounds)]


def _ratio_rows(what: str, backend: str, size: str, engine: list[float], raw: list[float], note: str) -> list[Row]:
    ratio = median(engine) / median(raw)
    return [
        Row(f"{what} {backend} {size} engine", median(engine) * 1000, "ms", note=note),
        Row(f"{what} {backend} {size} raw SQL", median(raw) * 1000, "ms"),
        Row(f"{what}_ratio_{backend}_{size}", ratio, "x raw time", f"<= {TARGET}", ratio <= TARGET),
    ]


def bench_scale_at(backend: str, n: int, rounds: int) -> list[Row]:
    from tests.conftest import FakeClock
    from workflows.dashboard import figures
    from workflows.deadlines import fire_due_deadlines, list_deadlines

    def sweep() -> Any:
        return fire_due_deadlines(deps, NOW)

    def dashboard() -> Any:
        return figures(deps, actor=SUPERVISOR, stages=(QUARTER, NOW))

    def overdue() -> Any:
        return list_deadlines(deps, actor=SUPERVISOR, overdue=True, limit=500)

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url = f"sqlite:///{workdir / 'scale.db'}" if backend == "sqlite" else pg_recreate()
        try:
            _config, deps = make_bench_deps(workdir, url, FakeClock(NOW))
            t0 = time.perf_counter()
            load_sqlite(deps.engine.url.database, n) if backend == "sqlite" else load_postgres(deps.engine.url, n)
            load_s = time.perf_counter() - t0
            raw = Raw(deps)
            fired = sweep().fired
            board = dashboard()
            shown, raw_shown = len(overdue()), raw.overdue()
            raw.sweep(), raw.dashboard()
            times: dict[str, list[float]] = {k: [] for k in ("es", "rs", "ed", "rd", "eo", "ro")}
            for _ in range(rounds):  # interleaved, so a busy moment of the machine hits both sides
                times["es"].append(_time(sweep, 50))
                times["rs"].append(_time(raw.sweep, 50))
                times["ed"].append(_time(dashboard))
                times["rd"].append(_time(raw.dashboard))
                times["eo"].append(_time(overdue, 5))
                times["ro"].append(_time(raw.overdue, 5))
            raw.conn.close()
            deps.engine.dispose()
        finally:
            if backend != "sqlite":
                pg_drop()
    size = f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k"
    totals = board.totals
    counted = (
        f"{board.cases.total:,} visible cases, {totals['overdue']:,} overdue deadlines, "
        f"{totals['supervised']:,} listings ({totals['escalated']:,} escalated)"
    )
    return [
        *_ratio_rows(
            "sweep",
            backend,
            size,
            times["es"],
            times["rs"],
            f"{n:,} cases loaded in {load_s:.1f} s; fired {fired}; {rounds} interleaved rounds of 50 calls",
        ),
        *_ratio_rows("dashboard", backend, size, times["ed"], times["rd"], counted),
        *_ratio_rows("overdue_list", backend, size, times["eo"], times["ro"], f"{shown} rows (raw {raw_shown})"),
    ]
