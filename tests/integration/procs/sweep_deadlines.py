"""Run the deadline sweep once, at a given moment, and report what it fired.

    python -m tests.integration.procs.sweep_deadlines CONFIG NOW BATCH_SIZE RESULT [--ready FILE] [--start FILE]

Builds its own Deps from CONFIG (the parent migrated and filled the database), opens a connection, writes
READY ({"pid", "backend_pid"}) if given and waits for the START file if given (the parent's barrier),
then calls ``fire_due_deadlines(deps, NOW, batch_size=BATCH_SIZE)``; NOW is an ISO time with an offset.
RESULT gets the SweepResult as a dict plus {"pid", "t0", "t1"} (``time.time()`` around the sweep).
An exception propagates: the process exits non-zero with the traceback on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime

from models.db import SQLITE_BEGIN
from tests.integration.procs._common import backend_pid, load_deps, wait_for_file, write_json
from workflows.deadlines import fire_due_deadlines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("now", type=datetime.fromisoformat)
    parser.add_argument("batch_size", type=int)
    parser.add_argument("result")
    parser.add_argument("--ready")
    parser.add_argument("--start")
    args = parser.parse_args(argv)
    if args.now.tzinfo is None:
        parser.error("NOW needs a UTC offset")

    deps = load_deps(args.config)
    # Warm up: the connection the sweep keeps for its "anything due?" read (a sweep long before anything
    # falls due runs that read alone), then the one pooled connection its batches will reuse. DEFERRED so
    # that on SQLite the warm-up never waits for another sweeper's write lock.
    fire_due_deadlines(deps, datetime(2000, 1, 1, tzinfo=args.now.tzinfo))
    with deps.engine.connect().execution_options(**{SQLITE_BEGIN: "DEFERRED"}) as conn:
        pid = backend_pid(conn)
        conn.rollback()
    if args.ready:
        write_json(args.ready, {"pid": os.getpid(), "backend_pid": pid})
    if args.start:
        wait_for_file(args.start)

    t0 = time.time()
    result = fire_due_deadlines(deps, args.now, batch_size=args.batch_size)
    t1 = time.time()
    write_json(args.result, {**result.to_dict(), "pid": os.getpid(), "backend_pid": pid, "t0": t0, "t1": t1})
    deps.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
