"""Hot statements on the driver (models.statements): the same SQL, values and rows as through SQLAlchemy."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import bindparam, event, func, insert, select, text
from sqlalchemy.exc import IntegrityError

from models import statements
from models.statements import Prepared, held_reader
from models.tables import Case, CaseEvent, Deadline, OutboxMessage
from notifications.render import Rendered
from tests.conftest import CaseBuilder, FakeClock, make_deps
from workflows import cases as case_use
from workflows.clockwork import _outbox_row
from workflows.uow import _PARTICIPANTS, Deps, UnitOfWork


@pytest.fixture(params=["sqlite", "postgresql"])
def any_deps(request: pytest.FixtureRequest, clock: FakeClock) -> Any:
    config = request.getfixturevalue("sqlite_config" if request.param == "sqlite" else "pg_config")
    _settings, deps = make_deps(config, clock)
    yield deps
    deps.engine.dispose()


def _case_id(deps: Deps, case_no: str) -> int:
    with deps.engine.connect() as conn:
        return int(conn.execute(select(Case.id).where(Case.case_no == case_no)).scalar_one())


@pytest.mark.parametrize(
    "prepared, params, state",
    [
        (case_use._CASE_DEADLINE_ROWS, {}, "police_review"),  # times (aware UTC), JSON lists, booleans, NULLs
        (case_use._PAUSE_LEDGER, {}, "resumed"),
        (case_use._LIAISONS, {"sender": "sm-amr"}, "police_review"),
        (_PARTICIPANTS, {}, "police_review"),
        (case_use._LAST_EFFECTIVE, {}, "police_review"),
    ],
    ids=["deadlines", "pause_ledger", "liaisons", "participants", "last_effective"],
)
def test_rows_are_what_sqlalchemy_returns(
    any_deps: Deps, clock: FakeClock, tmp_path: Any, prepared: Prepared, params: dict[str, Any], state: str
) -> None:
    builder = CaseBuilder(any_deps, clock, tmp_path)
    if state == "resumed":  # a clock paused and resumed: the pause ledger has an entry
        case_no = builder.to_state("suspended").case_no
        builder.send(case_no, "resume")
    else:
        case_no = builder.to_state(state).case_no
    params = {"case_id": _case_id(any_deps, case_no), **params}
    with UnitOfWork(any_deps, read_only=True) as uow:
        expected = [tuple(row) for row in uow.conn.execute(prepared.stmt, params)]  # type: ignore[call-overload]
        got = statements.rows(uow.conn, prepared, params)
    assert expected, "the case has rows for this statement"
    assert [tuple(row) for row in got] == expected
    assert list(got[0]._fields) == list(prepared.stmt.selected_columns.keys())  # type: ignore[attr-defined]
    times = [v for row in got for v in row if isinstance(v, datetime)]
    assert all(v.tzinfo is not None for v in times)


def test_writes_store_what_sqlalchemy_stores(any_deps: Deps) -> None:
    now = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)
    rendered = Rendered("probe", "v", "zh", "主题", "正文")
    # recipient_user None: NULL, not the string 'None'
    row = _outbox_row(None, "probe", "email", "", "a@example.org", None, rendered, now)
    with UnitOfWork(any_deps) as uow:
        uow.conn.execute(insert(OutboxMessage), [{**row, "dedupe_key": "orm"}])
        statements.write(uow.conn, Prepared(insert(OutboxMessage)), [{**row, "dedupe_key": "driver"}])
        uow.commit()
    columns = [c for c in OutboxMessage.__table__.c if c.name not in ("id", "dedupe_key")]  # type: ignore[attr-defined]
    with any_deps.engine.connect() as conn:
        stored = {
            key: tuple(found)
            for key, *found in conn.execute(select(OutboxMessage.dedupe_key, *columns).order_by(OutboxMessage.id))
        }
        # And as the database holds them (text of the times on SQLite), not only after conversion back.
        raw = conn.execute(text("SELECT next_attempt_at, recipient_user FROM outbox ORDER BY id")).all()
    assert stored["driver"] == stored["orm"]
    assert raw[0] == raw[1]
    assert raw[1][1] is None


def test_listeners_still_see_each_statement(any_deps: Deps, clock: FakeClock, tmp_path: Any) -> None:
    case_id = _case_id(any_deps, CaseBuilder(any_deps, clock, tmp_path).to_state("verifying").case_no)
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append(statement)

    event.listen(any_deps.engine, "before_cursor_execute", record)
    try:
        with UnitOfWork(any_deps, read_only=True) as uow:
            statements.rows(uow.conn, _PARTICIPANTS, {"case_id": case_id})
    finally:
        event.remove(any_deps.engine, "before_cursor_execute", record)
    assert seen == [_PARTICIPANTS.plan(any_deps.engine.dialect).sql]


def test_a_missing_parameter_is_refused_not_sent_as_null(deps: Deps) -> None:
    with UnitOfWork(deps, read_only=True) as uow, pytest.raises(KeyError, match="case_id"):
        statements.rows(uow.conn, _PARTICIPANTS, {})


def test_statements_it_cannot_run_as_compiled_are_refused(deps: Deps) -> None:
    expanding = Prepared(select(Deadline.id).where(Deadline.case_id.in_(bindparam("ids", expanding=True))))  # type: ignore[attr-defined]
    with UnitOfWork(deps) as uow:
        with pytest.raises(ValueError, match="expand"):
            statements.rows(uow.conn, expanding, {"ids": [1]})
        # A column left to its Python-side default would be silently missing from the driver's INSERT.
        with pytest.raises(ValueError, match="every column"):
            statements.write(uow.conn, Prepared(insert(CaseEvent)), {"event_id": "x", "case_id": 1})


def test_driver_errors_surface_as_sqlalchemy_errors(any_deps: Deps) -> None:
    """Callers catch SQLAlchemy's error kinds (the meetings' race, the sweep's retry rule) on either path."""
    rendered = Rendered("probe", "v", "zh", "主题", "正文")
    row = _outbox_row(None, "probe", "email", "same-key", "a@example.org", None, rendered, datetime.now(UTC))
    with UnitOfWork(any_deps) as uow:
        statements.write(uow.conn, Prepared(insert(OutboxMessage)), [row])
        with pytest.raises(IntegrityError):  # dedupe_key is unique
            statements.write(uow.conn, Prepared(insert(OutboxMessage)), [row])


# --- the held connection of a frequent read (the sweep's probe) -------------------------------------------------

_DEADLINES_DUE = Prepared(select(func.count()).select_from(Deadline).where(Deadline.due_at <= bindparam("now")))  # type: ignore[arg-type]
_BACKEND = Prepared(select(func.pg_backend_pid()))


def test_a_held_reader_reads_without_the_pool_and_converts_like_sqlalchemy(
    any_deps: Deps, clock: FakeClock, tmp_path: Any
) -> None:
    CaseBuilder(any_deps, clock, tmp_path).to_state("police_review")
    later = clock.now + timedelta(days=400)
    with any_deps.engine.connect() as conn:
        expected = conn.execute(_DEADLINES_DUE.stmt, {"now": later}).one()  # type: ignore[call-overload]
    checkouts: list[Any] = []
    event.listen(any_deps.engine, "checkout", lambda *args: checkouts.append(args))
    reader = held_reader(any_deps.engine)
    assert held_reader(any_deps.engine) is reader  # one per engine
    for _ in range(5):
        assert tuple(reader.fetchone(any_deps.engine, _DEADLINES_DUE, {"now": later})) == tuple(expected)
    assert expected[0] > 0
    assert len(checkouts) == 1  # the first read took its connection out of the pool; the others reused it
    assert any_deps.engine.pool.checkedout() == 0  # detached: the pool neither counts nor hands it out


@pytest.mark.postgres
def test_a_held_postgres_connection_is_not_left_in_a_transaction_and_is_replaced_when_killed(pg_deps: Deps) -> None:
    reader = held_reader(pg_deps.engine)
    (backend,) = reader.fetchone(pg_deps.engine, _BACKEND, {})
    with pg_deps.engine.connect() as conn:
        state = conn.execute(text("SELECT state FROM pg_stat_activity WHERE pid = :p"), {"p": backend}).scalar_one()
        assert state == "idle"  # autocommit: not "idle in transaction" between reads
        assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": backend}).scalar_one()
    (replacement,) = reader.fetchone(pg_deps.engine, _BACKEND, {})  # the dead one dropped, the read tried again
    assert replacement != backend
    libpq_url = pg_deps.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    pg_deps.engine.dispose()  # closes it
    with psycopg.connect(libpq_url) as admin:
        left = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (replacement,)).fetchone()
    assert left == (0,)


@pytest.mark.postgres
def test_a_forked_child_opens_its_own_held_connection_and_leaves_the_parents_alone(pg_deps: Deps) -> None:
    reader = held_reader(pg_deps.engine)
    (parent,) = reader.fetchone(pg_deps.engine, _BACKEND, {})
    read, write = os.pipe()
    with reader._lock:  # another thread of the parent is mid-read when the fork happens
        pid = os.fork()
        if pid == 0:  # the child: report the backend its read used, exit without cleaning up the parent's objects
            try:
                signal.alarm(20)  # a lock inherited as held would hang here for ever
                (child,) = reader.fetchone(pg_deps.engine, _BACKEND, {})
                os.write(write, str(child).encode())
            finally:
                os._exit(0)
    os.close(write)
    child = int(os.read(read, 100) or 0)
    os.close(read)
    os.waitpid(pid, 0)
    assert child and child != parent
    assert reader.fetchone(pg_deps.engine, _BACKEND, {}) == (parent,)  # the parent's still works, still the same
