"""Hot statements on the driver (models.statements): the same SQL, values and rows as through SQLAlchemy."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import bindparam, event, insert, select, text
from sqlalchemy.exc import IntegrityError

from models import statements
from models.statements import Prepared
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
