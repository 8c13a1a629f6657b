"""The unit of work: one transaction per use case, nothing after the commit."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from models.db import SQLITE_BEGIN
from tests.conftest import CaseBuilder
from workflows.flows.sweep import is_transient
from workflows.uow import Deps, UnitOfWork


def test_a_transition_is_exactly_one_write_transaction(builder: CaseBuilder) -> None:
    view = builder.to_state("verifying")
    begins: list[str] = []
    commits: list[str] = []
    engine = builder.deps.engine

    def begin(conn) -> None:  # type: ignore[no-untyped-def]
        begins.append(conn.get_execution_options().get(SQLITE_BEGIN, "IMMEDIATE"))

    event.listen(engine, "begin", begin)
    event.listen(engine, "commit", lambda conn: commits.append("COMMIT"))
    try:
        builder.send(view.case_no, "file_case")
    finally:
        event.remove(engine, "begin", begin)
    # Regression: reading the result after the commit re-took SQLite's write lock (BEGIN IMMEDIATE), so a
    # committed transition could still fail with "database is locked" and be retried twice by a client.
    assert begins == ["IMMEDIATE"], begins
    assert commits == ["COMMIT"]


def test_sqlite_transactions_begin_as_their_unit_of_work_asks(builder: CaseBuilder) -> None:
    """What SQLite itself executes (its trace), not what SQLAlchemy sends: the BEGIN goes to the driver."""
    seen: list[str] = []
    with builder.deps.engine.connect() as conn:
        driver = conn.connection.driver_connection
        driver.set_trace_callback(seen.append)
        try:
            conn.execution_options(**{SQLITE_BEGIN: "DEFERRED"}).begin().rollback()
            conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"}).begin().rollback()
        finally:
            driver.set_trace_callback(None)
    assert [s for s in seen if s.startswith("BEGIN")] == ["BEGIN DEFERRED", "BEGIN IMMEDIATE"], seen


def test_the_session_is_closed_for_business_after_commit(builder: CaseBuilder) -> None:
    with UnitOfWork(builder.deps) as uow:
        uow.officer("sm_amr_handler")
        uow.commit()
        with pytest.raises(RuntimeError, match="has committed"):
            uow.officer("sm_amr_handler")


def test_a_busy_database_at_begin_is_a_transient_sqlalchemy_error(deps: Deps) -> None:
    """The BEGIN goes to the driver; a writer still locked out after the busy timeout must get SQLAlchemy's
    OperationalError all the same, which the Prefect sweep retries (``is_transient``)."""
    blocker = sqlite3.connect(deps.engine.url.database, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with deps.engine.connect() as conn:
            conn.connection.driver_connection.execute("PRAGMA busy_timeout=50")
        with pytest.raises(OperationalError) as caught, UnitOfWork(deps):
            pass
    finally:
        blocker.rollback()
        blocker.close()
    assert is_transient(caught.value)
