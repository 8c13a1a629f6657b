"""The liaison flows under Prefect (the session's ``prefect_test_harness``): meeting preparation and the
information bulletin run as real flow runs and call the same use cases as the CLI; a second run of the
preparation flow creates nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import make_deps
from tests.integration.test_scheduling import prefect_server, sqlite_config  # noqa: F401 (the session harness)
from workflows.flows.runtime import forget_deps


@pytest.mark.usefixtures("prefect_server")
def test_meeting_preparation_and_bulletin_flows_run_under_prefect(tmp_path: Path) -> None:
    from workflows.flows.bulletin import information_bulletin
    from workflows.flows.meetings import meeting_preparation

    # The next quarterly meeting is within 90 days of any day: its notice period has begun.
    config, db = sqlite_config(tmp_path, **{r"(?m)^notice_days = 7": "notice_days = 90"})
    _settings, deps = make_deps(config)
    deps.engine.dispose()
    try:
        state = asyncio.run(meeting_preparation(config_path=str(config), return_state=True))
        assert state.is_completed()
        assert state.result() == {"schedules": 1, "created": 1}
        assert asyncio.run(meeting_preparation(config_path=str(config))) == {"schedules": 1, "created": 0}
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*), min(state) FROM meetings").fetchone() == (1, "noticed")
        summary = asyncio.run(information_bulletin(config_path=str(config), period="2026-10"))
        assert summary["period"] == "2026-10" and summary["version"] == 1
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM bulletins WHERE period = '2026-10'").fetchone() == (1,)
    finally:
        forget_deps()
