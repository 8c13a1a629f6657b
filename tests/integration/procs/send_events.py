"""Send one event to one case COUNT times, as fast as the database lets us, and report each result.

    python -m tests.integration.procs.send_events CONFIG CASE_NO EVENT ACTOR COUNT READY START RESULT
        [--expected-version]

Builds its own Deps, opens a connection, writes READY ({"pid", "backend_pid"}), waits for the START
file (the parent's barrier), then calls ``advance_case`` COUNT times. With ``--expected-version`` each
call first reads the case (``show_case``) and passes the version it saw as ``expected_version``.
RESULT gets one entry per call: {"ok", "version" | "error", "message", "expected", "t0", "t1"}
(``time.time()`` before and after the call). Errors are recorded, never raised.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from models.db import SQLITE_BEGIN
from tests.integration.procs._common import backend_pid, load_deps, wait_for_file, write_json
from workflows.cases import advance_case, show_case


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    for name in ("config", "case_no", "event", "actor"):
        parser.add_argument(name)
    parser.add_argument("count", type=int)
    for name in ("ready", "start", "result"):
        parser.add_argument(name)
    parser.add_argument("--expected-version", action="store_true")
    args = parser.parse_args(argv)

    deps = load_deps(args.config)
    # Warm up: import everything and open the one pooled connection the calls will reuse. DEFERRED so a
    # SQLite warm-up never waits for the write lock.
    with deps.engine.connect().execution_options(**{SQLITE_BEGIN: "DEFERRED"}) as conn:
        pid = backend_pid(conn)
        conn.rollback()
    write_json(args.ready, {"pid": os.getpid(), "backend_pid": pid})
    wait_for_file(args.start)

    results: list[dict[str, Any]] = []
    for _ in range(args.count):
        entry: dict[str, Any] = {"t0": time.time()}
        try:
            expected = None
            if args.expected_version:
                expected = show_case(deps, args.case_no, actor=args.actor).version
                entry["expected"] = expected
            view = advance_case(deps, args.case_no, args.event, actor=args.actor, expected_version=expected)
            entry.update(ok=True, version=view.version)
        except Exception as exc:  # recorded for the parent to judge
            entry.update(ok=False, error=type(exc).__name__, message=str(exc))
        entry["t1"] = time.time()
        results.append(entry)
    write_json(args.result, results)
    deps.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
