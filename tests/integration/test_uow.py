"""The unit of work: one transaction per use case, nothing after the commit."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from tests.conftest import CaseBuilder
from workflows.uow import UnitOfWork


def test_a_transition_is_exactly_one_write_transaction(builder: CaseBuilder) -> None:
    view = builder.to_state("verifying")
    statements: list[str] = []

    def record(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        if statement.startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            statements.append(statement)

    event.listen(builder.deps.engine, "before_cursor_execute", record)
    commits: list[str] = []
    event.listen(builder.deps.engine, "commit", lambda conn: commits.append("COMMIT"))
    try:
        builder.send(view.case_no, "file_case")
    finally:
        event.remove(builder.deps.engine, "before_cursor_execute", record)
    # Regression: reading the result after the commit re-took SQLite's write lock (BEGIN IMMEDIATE), so a
    # committed transition could still fail with "database is locked" and be retried twice by a client.
    assert statements == ["BEGIN IMMEDIATE"], statements
    assert commits == ["COMMIT"]


def test_the_session_is_closed_for_business_after_commit(builder: CaseBuilder) -> None:
    with UnitOfWork(builder.deps) as uow:
        uow.officer("sm_amr_handler")
        uow.commit()
        with pytest.raises(RuntimeError, match="has committed"):
            uow.officer("sm_amr_handler")
