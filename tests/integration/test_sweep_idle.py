"""The idle sweep: when nothing is due it reads once and takes no write lock, so on SQLite it runs while a
handler's transition holds the database's one write lock; when something falls due it fires as before.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta

from sqlalchemy import event

from tests.conftest import FakeClock
from tests.integration.test_deadlines import new_case
from workflows.deadlines import SweepResult, fire_due_deadlines
from workflows.uow import Deps


def test_an_idle_sweep_runs_beside_a_writer_and_a_due_one_fires(deps: Deps, clock: FakeClock) -> None:
    new_case(deps)  # A1 runs: its first reminder is days away
    writer = sqlite3.connect(str(deps.engine.url.database), isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # a transition in progress holds the write lock
    done: list[SweepResult] = []
    sweeper = threading.Thread(target=lambda: done.append(fire_due_deadlines(deps)), daemon=True)
    try:
        sweeper.start()
        sweeper.join(timeout=10)  # a sweep that asked for the write lock would wait out the 60 s busy timeout
        assert done and done[0].fired == 0 and done[0].batches == 0
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        sweeper.join()
    clock.advance(days=30)
    late = fire_due_deadlines(deps)
    assert late.missed == 1 and late.batches == 1
    clock.advance(hours=1)
    assert fire_due_deadlines(deps).fired == 0
    assert fire_due_deadlines(deps, clock.now + timedelta(days=1)).batches == 0


def test_idle_sweeps_read_on_one_kept_connection_not_one_from_the_pool_each_time(deps: Deps) -> None:
    new_case(deps)
    fire_due_deadlines(deps)  # the first opens it
    checkouts: list[object] = []
    event.listen(deps.engine, "checkout", lambda *args: checkouts.append(args))
    for _ in range(5):
        assert fire_due_deadlines(deps).batches == 0
    assert checkouts == []  # a checkout and return cost more than the query itself (issue 8's sweep ratio)
