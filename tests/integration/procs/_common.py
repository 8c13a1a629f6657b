"""What the child processes and the concurrency tests share: building Deps, files as signals, snapshots.

Children talk to the parent through small JSON files written atomically (write, then rename), so the
parent never reads half a file; the parent talks to them by creating files (start, release).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from app.bootstrap import build
from app.settings import load_settings
from workflows.uow import Deps

#: Nothing a child waits for may take longer than this; then it gives up instead of lingering.
CHILD_WAIT_LIMIT = 120.0


def load_deps(config: str | Path) -> Deps:
    """Deps for ``config`` with the real clock. The parent already migrated the database."""
    return build(load_settings(config, env={}))


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def wait_for_file(path: str | Path, limit: float = CHILD_WAIT_LIMIT, interval: float = 0.002) -> None:
    """Poll until ``path`` exists; a child that waits in vain exits instead of staying behind."""
    deadline = time.monotonic() + limit
    path = Path(path)
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {path}")
        time.sleep(interval)


def backend_pid(conn: Any) -> int | None:
    """The PostgreSQL server process serving ``conn`` (a Connection or Session); None on SQLite."""
    bind = conn.get_bind() if hasattr(conn, "get_bind") else conn
    if bind.dialect.name != "postgresql":
        return None
    return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def snapshot(conn: Any, case_no: str) -> dict[str, Any]:
    """Everything one transition of ``case_no`` may write, read with raw SQL through ``conn``.

    ``conn`` is a Connection or a Session: inside a child's open transaction it shows that
    transaction's own uncommitted writes.
    """
    case = (
        conn.execute(
            text("SELECT id, state, phase, version, last_hash FROM cases WHERE case_no = :no"), {"no": case_no}
        )
        .mappings()
        .one()
    )
    cid = {"cid": case["id"]}
    events = conn.execute(
        text("SELECT seq, event, version FROM case_events WHERE case_id = :cid ORDER BY seq"), cid
    ).all()
    deadlines = conn.execute(text("SELECT rule, status FROM deadlines WHERE case_id = :cid ORDER BY id"), cid).all()
    outbox = conn.execute(
        text("SELECT recipient_user, dedupe_key FROM outbox WHERE case_id = :cid ORDER BY id"), cid
    ).all()
    participants = (
        conn.execute(text("SELECT agency_code FROM case_participants WHERE case_id = :cid ORDER BY agency_code"), cid)
        .scalars()
        .all()
    )
    return {
        "state": case["state"],
        "phase": case["phase"],
        "version": case["version"],
        "last_hash": case["last_hash"],
        "events": [[seq, event, version] for seq, event, version in events],
        "deadlines": [[rule, status] for rule, status in deadlines],
        "outbox": [[user, key] for user, key in outbox],
        "participants": list(participants),
    }
