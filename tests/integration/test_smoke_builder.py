"""The builder reaches every state of the chart through the real use cases (SQLite)."""

import pytest

from tests.conftest import PATHS, CaseBuilder


@pytest.mark.parametrize("state", sorted(PATHS))
def test_builder_reaches_state(builder: CaseBuilder, state: str) -> None:
    view = builder.to_state(state)
    assert view.state == state
