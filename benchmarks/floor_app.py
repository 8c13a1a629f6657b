"""The HTTP stack's floor on this machine (issue 8): a bare FastAPI app under the same uvicorn, answering the
read benchmark's path with ``JOINTCASE_FLOOR_QUERIES`` PostgreSQL round trips and no other work.

Not part of jointcase: ``benchmarks.http_api.bench_http_floor`` serves it beside the real servers' figures, so
the table shows what the closed loop of 50 clients costs any endpoint here (the HTTP stack, the load generator,
PostgreSQL's round trips on the same 2 cores) before jointcase does anything of its own.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import psycopg
from fastapi import FastAPI

URL_ENV = "JOINTCASE_FLOOR_URL"
QUERIES_ENV = "JOINTCASE_FLOOR_QUERIES"

app = FastAPI()
_local = threading.local()
_QUERIES = int(os.environ.get(QUERIES_ENV, "1"))
# About the size of a case's JSON in the read benchmark.
_BODY = {"title": "x" * 300, "deadlines": [{"rule": "police_review", "due_at": "2026-03-07T10:00:00+08:00"}] * 4}


def _connection() -> psycopg.Connection[Any]:
    # One connection per worker thread, as a pool would hand out; autocommit: no BEGIN/ROLLBACK round trips.
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = _local.conn = psycopg.connect(os.environ[URL_ENV], autocommit=True)
    return conn


@app.get("/healthz")
def healthz() -> dict[str, str]:
    """Ready."""
    return {"status": "ok"}


@app.get("/api/v1/cases/{case_no}")
def case(case_no: str) -> dict[str, Any]:
    """The read path's shape with nothing behind it but ``_QUERIES`` round trips (a sync route, as jointcase's)."""
    value = case_no
    if _QUERIES:
        cur = _connection().cursor()
        for _ in range(_QUERIES):
            cur.execute("SELECT %s::text", (case_no,), prepare=False)
            value = cur.fetchone()[0]  # type: ignore[index]
    return {"case_no": value, **_BODY}
