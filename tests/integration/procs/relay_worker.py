"""Run the outbox relay once, as its own process, and report what it did.

    python -m tests.integration.procs.relay_worker CONFIG RESULT [--ready FILE] [--start FILE]
        [--batch-size N] [--max-batches N] [--relay-id ID]

Builds its own Deps from CONFIG (the real clock; the parent migrated and filled the database) and its own
``Channels`` with this process's environment, so the webhook secrets are the variables the parent set for
it (``secret_env`` of each ``[[notifications.webhooks]]``). Opens a database connection, writes READY
({"pid", "backend_pid"}) if given and waits for the START file if given (the parent's barrier), then calls
``relay_outbox`` until nothing is due. RESULT gets the RelayResult as a dict plus {"pid", "relay_id",
"backend_pid", "t0", "t1"} (``time.time()`` around the relay). An exception propagates: the process exits
non-zero with the traceback on stderr. A test may SIGKILL it at any moment.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid

from models.db import SQLITE_BEGIN
from notifications.channels import Channels
from tests.integration.procs._common import backend_pid, load_deps, wait_for_file, write_json
from workflows.outbox import relay_outbox


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("result")
    parser.add_argument("--ready")
    parser.add_argument("--start")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--max-batches", type=int)
    parser.add_argument("--relay-id", default="")
    args = parser.parse_args(argv)

    deps = load_deps(args.config)
    relay_id = args.relay_id or f"relay-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    # Warm up: open the one pooled connection the relay will reuse. DEFERRED so that on SQLite the warm-up
    # never waits for another relay's write lock.
    with deps.engine.connect().execution_options(**{SQLITE_BEGIN: "DEFERRED"}) as conn:
        pid = backend_pid(conn)
        conn.rollback()
    if args.ready:
        write_json(args.ready, {"pid": os.getpid(), "backend_pid": pid, "relay_id": relay_id})
    if args.start:
        wait_for_file(args.start)

    with Channels(deps.notifications, dict(os.environ)) as channels:
        t0 = time.time()
        result = relay_outbox(
            deps, channels=channels, batch_size=args.batch_size, max_batches=args.max_batches, relay_id=relay_id
        )
        t1 = time.time()
    write_json(
        args.result,
        {**result.to_dict(), "pid": os.getpid(), "relay_id": relay_id, "backend_pid": pid, "t0": t0, "t1": t1},
    )
    deps.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
