"""Send one event, then stop inside the commit so the parent can kill this process there.

    python -m tests.integration.procs.hang_in_commit CONFIG CASE_NO EVENT ACTOR HOOK MARKER
        [--release FILE] [--result FILE]

HOOK is a SQLAlchemy Session event:

* ``before_commit``: the listener first flushes, so every row of the transition has been sent to the
  database inside the still-open transaction, then writes MARKER with ``snapshot`` of the case as this
  transaction sees it (its own uncommitted writes), the server backend pid and ``time.time()``, and
  waits: for the RELEASE file if given (then the commit goes ahead), else until killed.
* ``after_commit``: the listener writes MARKER (time only: no SQL may run there) and waits until killed.

The first commit of the process is the one of ``advance_case`` (the parent migrated the database).
RESULT, if given and the call returns, gets {"version", "state", "t1"}. A child never waits longer than
CHILD_WAIT_LIMIT seconds, so a parent that forgot it cannot leave it running for ever.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from tests.integration.procs._common import (
    CHILD_WAIT_LIMIT,
    backend_pid,
    load_deps,
    snapshot,
    wait_for_file,
    write_json,
)
from workflows.cases import advance_case


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    for name in ("config", "case_no", "event", "actor"):
        parser.add_argument(name)
    parser.add_argument("hook", choices=("before_commit", "after_commit"))
    parser.add_argument("marker")
    parser.add_argument("--release")
    parser.add_argument("--result")
    args = parser.parse_args(argv)

    deps = load_deps(args.config)
    fired = False

    def pause(session: Session) -> None:
        nonlocal fired
        if fired:
            return
        fired = True
        marker: dict[str, Any] = {"pid": os.getpid(), "hook": args.hook}
        if args.hook == "before_commit":
            session.flush()  # everything of the transition is now in the database, uncommitted
            marker["backend_pid"] = backend_pid(session)
            marker["in_transaction"] = snapshot(session, args.case_no)
        marker["t"] = time.time()
        write_json(args.marker, marker)
        if args.release:
            wait_for_file(args.release, interval=0.01)
            return
        time.sleep(CHILD_WAIT_LIMIT)
        os._exit(99)  # never killed: leave without committing

    event.listen(Session, args.hook, pause)
    view = advance_case(deps, args.case_no, args.event, actor=args.actor)
    if args.result:
        write_json(args.result, {"version": view.version, "state": view.state, "t1": time.time()})
    deps.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
