"""Replaying a case's event log through a fresh chart reproduces its stored state."""

from __future__ import annotations

from app.demo import load_demo
from tests.conftest import PATHS, CaseBuilder
from workflows.cases import replay_case
from workflows.uow import Deps


def test_replay_reproduces_every_demo_case(deps: Deps) -> None:
    numbers = load_demo(deps)
    assert len(numbers) >= 12
    for case_no in numbers:
        result = replay_case(deps, case_no)
        assert result.matches, result


def test_replay_reproduces_every_state_reached_by_the_builder(builder: CaseBuilder) -> None:
    for state in PATHS:
        view = builder.to_state(state)
        result = replay_case(builder.deps, view.case_no)
        assert result.matches and result.replayed[-1] == state, result


def test_replay_notices_a_stored_state_that_the_log_does_not_explain(builder: CaseBuilder) -> None:
    from sqlalchemy import update

    from models.tables import Case
    from workflows.uow import UnitOfWork

    view = builder.to_state("investigating")
    with UnitOfWork(builder.deps) as uow:
        uow.session.execute(
            update(Case)
            .where(Case.case_no == view.case_no)
            .values(configuration=["active", "administrative", "hearing"], state="hearing")
        )
        uow.commit()
    result = replay_case(builder.deps, view.case_no)
    assert not result.matches and result.replayed[-1] == "investigating" and result.stored[-1] == "hearing"
