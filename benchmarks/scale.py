"""The deadline sweep and the supervisor's overdue-deadline list at scale, versus the raw SQL on the same data.

Data: ``n`` cases with one deadline each, inserted with bulk SQL (not through ``advance_case``) from a fixed
seed: 10 % of the deadlines are overdue (running, due before ``NOW``), the rest due within a year; every
``next_alert_at`` lies after ``NOW``, so the sweep measured here is the idle sweep (the scan that finds what
is due; at scale nearly every run finds little), not the firing of alerts.

- sweep: ``fire_due_deadlines(deps, NOW)`` (claim query over deadlines and supervisions, then the overdue
  action-item query) versus the same two SELECTs with the bare driver.
- dashboard: ``list_deadlines(deps, overdue=True, limit=500)`` (the overdue list of the supervisor's
  dashboard, as the operator: no per-case visibility check) versus the same join with the bare driver.
Ratios are engine time over raw time (target: within 2x).
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import Row, make_bench_deps, median, pg_drop, pg_recreate

NOW = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
SEED = 8
TARGET = 2.0
CONF = json.dumps(["active", "administrative", "investigating"])

CLAIM_SQL = (
    "SELECT cases.id, cases.case_no, cases.version, cases.configuration FROM cases WHERE cases.id IN ("
    " SELECT deadlines.case_id FROM deadlines WHERE deadlines.status = 'running' AND deadlines.next_alert_at IS NOT"
    " NULL AND deadlines.next_alert_at <= {p} UNION SELECT supervisions.case_id FROM supervisions WHERE"
    " supervisions.state != 'delisted' AND supervisions.next_check_at IS NOT NULL AND supervisions.next_check_at"
    " <= {p}) ORDER BY cases.id LIMIT 200"
)
ACTION_SQL = (
    "SELECT id FROM action_items WHERE state = 'open' AND due_at < {p}"
    " AND (escalated_for IS NULL OR escalated_for != due_at) ORDER BY due_at, id"
)
DASHBOARD_SQL = (
    "SELECT d.id, d.rule, d.label, d.status, d.due_at, d.paused_at, d.provisional, d.responsible, d.basis,"
    " c.case_no, c.title, c.owner_agency, c.state FROM deadlines d JOIN cases c ON c.id = d.case_id"
    " WHERE d.status IN ('running', 'paused') AND d.status = 'running' AND d.due_at < {p}"
    " ORDER BY d.due_at, d.id LIMIT 500"
)


def _rows(n: int, which: int) -> Iterator[tuple[Any, ...]]:
    """Case rows (``which`` 0) or deadline rows (1), generated lazily from the seed (1M rows fit in memory)."""
    rng = random.Random(SEED)
    for i in range(1, n + 1):
        received = NOW - timedelta(days=rng.randint(1, 365), minutes=rng.randint(0, 1439))
        overdue = rng.random() < 0.10
        due = NOW - timedelta(days=rng.randint(1, 60)) if overdue else NOW + timedelta(days=rng.randint(1, 365))
        alert = NOW + timedelta(days=rng.randint(1, 30))
        if which == 0:
            yield (
                i,
                f"bench-2026-{i:07d}",
                f"基准案件 {i}",
                "report",
                "sm-amr",
                "investigating",
                "administrative",
                CONF,
                "{}",
                '{"counters": {}}',
                3,
                received,
                "sm_amr_handler",
                received,
                received,
                "",
            )
        else:
            yield (
                i,
                i,
                "A2",
                "立案审查期限",
                "基准",
                "days",
                30,
                "running",
                received,
                due,
                "file_case",
                "market_regulation",
                due,
                "[]",
                alert,
                "reminder",
                0,
                False,
                "",
            )


CASE_COLS = (
    "id, case_no, title, source, owner_agency, state, phase, configuration, history, context, version,"
    " received_at, opened_by, created_at, updated_at, last_hash"
)
DEADLINE_COLS = (
    'id, case_id, rule, label, basis, unit, "limit", status, started_at, due_at, started_by,'
    " responsible, nominal_due_at, extensions, next_alert_at, next_alert, extensions_used, provisional,"
    " provisional_reason"
)


def _ts(value: Any) -> Any:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(value, datetime) else value


def load_sqlite(path: str, n: int) -> None:
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        f"INSERT INTO cases ({CASE_COLS}) VALUES ({', '.join('?' * 16)})", (tuple(map(_ts, r)) for r in _rows(n, 0))
    )
    conn.executemany(
        f"INSERT INTO deadlines ({DEADLINE_COLS}) VALUES ({', '.join('?' * 19)})",
        (tuple(map(_ts, r)) for r in _rows(n, 1)),
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


def load_postgres(url: Any, n: int) -> None:
    import psycopg

    with psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, dbname=url.database) as conn:
        with conn.cursor() as cur:
            with cur.copy(f"COPY cases ({CASE_COLS}) FROM STDIN") as copy:
                for row in _rows(n, 0):
                    copy.write_row(row)
            with cur.copy(f"COPY deadlines ({DEADLINE_COLS}) FROM STDIN") as copy:
                for row in _rows(n, 1):
                    copy.write_row(row)
        conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE")


class Raw:
    def __init__(self, deps: Any) -> None:
        url = deps.engine.url
        self.sqlite = deps.engine.dialect.name == "sqlite"
        if self.sqlite:
            import sqlite3

            self.conn: Any = sqlite3.connect(url.database, isolation_level=None)
            self.p, self.now = "?", _ts(NOW)
        else:
            import psycopg

            self.conn = psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, dbname=url.database)
            self.p, self.now = "%s", NOW

    def sweep(self) -> int:
        cur = self.conn.cursor()
        if self.sqlite:
            cur.execute("BEGIN IMMEDIATE")
        lock = "" if self.sqlite else " FOR UPDATE OF cases SKIP LOCKED"
        cur.execute(CLAIM_SQL.format(p=self.p) + lock, (self.now, self.now))
        found = len(cur.fetchall())
        cur.execute("COMMIT") if self.sqlite else self.conn.commit()
        if self.sqlite:
            cur.execute("BEGIN IMMEDIATE")
        cur.execute(ACTION_SQL.format(p=self.p) + ("" if self.sqlite else " FOR UPDATE SKIP LOCKED"), (self.now,))
        found += len(cur.fetchall())
        cur.execute("COMMIT") if self.sqlite else self.conn.commit()
        return found

    def dashboard(self) -> int:
        cur = self.conn.cursor()
        if self.sqlite:
            cur.execute("BEGIN")
        cur.execute(DASHBOARD_SQL.format(p=self.p), (self.now,))
        rows = cur.fetchall()
        cur.execute("COMMIT") if self.sqlite else self.conn.commit()
        return len(rows)


def _time(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_scale(backend: str, quick: bool) -> list[Row]:
    sizes = [(10_000, 5)] if quick else [(100_000, 7), (1_000_000, 3)]
    return [row for n, rounds in sizes for row in bench_scale_at(backend, n, rounds)]


def bench_scale_at(backend: str, n: int, rounds: int) -> list[Row]:
    from tests.conftest import FakeClock
    from workflows.deadlines import fire_due_deadlines, list_deadlines

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url = f"sqlite:///{workdir / 'scale.db'}" if backend == "sqlite" else pg_recreate()
        try:
            _config, deps = make_bench_deps(workdir, url, FakeClock(NOW))
            t0 = time.perf_counter()
            load_sqlite(deps.engine.url.database, n) if backend == "sqlite" else load_postgres(deps.engine.url, n)
            load_s = time.perf_counter() - t0
            raw = Raw(deps)
            fired = fire_due_deadlines(deps, NOW).fired
            shown = len(list_deadlines(deps, overdue=True, limit=500))
            raw_shown = raw.dashboard()
            raw.sweep()
            es, rs, ed, rd = [], [], [], []
            for _ in range(rounds):
                es.append(_time(lambda: fire_due_deadlines(deps, NOW)))
                rs.append(_time(raw.sweep))
                ed.append(_time(lambda: list_deadlines(deps, overdue=True, limit=500)))
                rd.append(_time(raw.dashboard))
            raw.conn.close()
            deps.engine.dispose()
        finally:
            if backend != "sqlite":
                pg_drop()
    sweep_ratio, dash_ratio = median(es) / median(rs), median(ed) / median(rd)
    size = f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k"
    note = f"{n:,} cases loaded in {load_s:.1f} s; fired {fired}; {rounds} interleaved runs"
    return [
        Row(f"sweep {backend} {size} engine", median(es) * 1000, "ms", note=note),
        Row(f"sweep {backend} {size} raw SQL", median(rs) * 1000, "ms"),
        Row(f"sweep_ratio_{backend}_{size}", sweep_ratio, "x raw time", f"<= {TARGET}", sweep_ratio <= TARGET),
        Row(f"dashboard {backend} {size} engine", median(ed) * 1000, "ms", note=f"{shown} rows (raw {raw_shown})"),
        Row(f"dashboard {backend} {size} raw SQL", median(rd) * 1000, "ms"),
        Row(f"dashboard_ratio_{backend}_{size}", dash_ratio, "x raw time", f"<= {TARGET}", dash_ratio <= TARGET),
    ]
