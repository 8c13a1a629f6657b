"""Bulk import of historical cases (issue 8 item 2): a generated export imports with intact hash chains,
replayable states and the deadlines the live path would compute; bad lines are reported by number and
leave nothing behind; an import killed half-way and run again ends with every case exactly once. The key
tests run on SQLite and on PostgreSQL (``JOINTCASE_TEST_DATABASE_URL``; skipped without it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from app.cli import app
from app.generate import write_export
from models.tables import Case, CaseEvent, Deadline, DeadlinePause
from tests.conftest import REPO_CONFIG, TRANSFER_PACKAGE, FakeClock
from workflows import imports
from workflows.cases import advance_case, attach_file, open_case, replay_case, verify_audit
from workflows.imports import import_cases
from workflows.uow import Deps, UnitOfWork

runner = CliRunner()


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write_lines(path: Path, lines: list[Any]) -> Path:
    path.write_text(
        "".join((x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)) + "\n" for x in lines),
        encoding="utf-8",
    )
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest) -> tuple[Deps, Path]:
    """The dependencies and config file of a fresh database: SQLite, then PostgreSQL (skips without it)."""
    if request.param == "sqlite":
        return request.getfixturevalue("deps"), request.getfixturevalue("sqlite_config")
    return request.getfixturevalue("pg_deps"), request.getfixturevalue("pg_config")


def _count(deps: Deps, stmt: Any) -> int:
    with UnitOfWork(deps, read_only=True) as uow:
        return int(uow.session.execute(stmt).scalar_one())


def test_a_generated_export_imports_with_intact_chains_replayable_states_and_deadlines(
    target: tuple[Deps, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deps = target[0]
    monkeypatch.setattr(imports, "WARM_UP_LINES", 600)  # two batches here, then worker processes check the rest
    path = tmp_path / "export.jsonl"
    write_export(path, cases=2000, seed=3, config=REPO_CONFIG)
    lines = _lines(path)
    seen = []
    result = import_cases(deps, path, batch_size=300, progress=seen.append)

    assert result.ok, result.rejected[:5]
    assert (result.imported, result.skipped, result.lines) == (2000, 0, 2000)
    assert result.events == sum(len(line["events"]) + 1 for line in lines)  # + the open_case record
    assert [p.imported for p in seen] == [300, 600, 900, 1200, 1500, 1800, 2000]
    assert seen[-1].bytes_read == seen[-1].bytes_total == path.stat().st_size

    report = verify_audit(deps)
    assert report.ok, report.problems[:5]
    assert (report.cases, report.events) == (2000, result.events)
    for line in lines:  # the real chart, without the importer's cache, agrees with every stored state
        replay = replay_case(deps, line["case_no"])
        assert replay.matches, replay

    with UnitOfWork(deps, read_only=True) as uow:
        cases = [
            (c.id, c.case_no, c.received_at, c.phase, c.state, c.closed_at)
            for c in uow.session.execute(select(Case)).scalars()
        ]
        open_rules: dict[int, set[str]] = {}
        for row in uow.session.execute(select(Deadline).where(Deadline.status.in_(("running", "paused")))).scalars():
            open_rules.setdefault(row.case_id, set()).add(row.rule)
            assert row.status == "paused" or row.next_alert_at is not None  # the sweep will find it
    by_no = {line["case_no"]: line for line in lines}
    for case_id, case_no, received_at, phase, state, closed_at in cases:
        assert received_at == datetime.fromisoformat(by_no[case_no]["received_at"])
        running = open_rules.get(case_id, set())
        if phase == "intake" and state != "suspended":
            assert "A1" in running, case_no  # verify lead: runs through intake
        if state == "police_review":
            assert "T7" in running, case_no
        if state == "trial":
            assert "C6" in running, case_no
        if state == "closed":
            assert not running and closed_at is not None, case_no


def _deadline_ledger(deps: Deps, case_no: str) -> list[tuple[Any, ...]]:
    with UnitOfWork(deps, read_only=True) as uow:
        case = uow.case(case_no)
        rows = uow.session.execute(select(Deadline).where(Deadline.case_id == case.id).order_by(Deadline.id)).scalars()
        ledger = []
        for r in rows:
            pauses = uow.session.execute(
                select(DeadlinePause).where(DeadlinePause.deadline_id == r.id).order_by(DeadlinePause.id)
            ).scalars()
            ledger.append(
                (
                    r.rule,
                    r.status,
                    r.started_at,
                    r.due_at,
                    r.nominal_due_at,
                    r.ended_at,
                    r.paused_at,
                    r.extensions_used,
                    [(e["approved_by"], e["due_before"], e["due_after"]) for e in r.extensions],
                    r.next_alert_at,
                    r.next_alert,
                    r.started_by,
                    [(p.paused_at, p.paused_by, p.resumed_at, p.resumed_by, p.due_before, p.due_after) for p in pauses],
                )
            )
        return ledger


def test_imported_deadlines_are_those_the_live_transitions_compute(
    target: tuple[Deps, Path], clock: FakeClock, tmp_path: Path
) -> None:
    deps = target[0]
    path = tmp_path / "export.jsonl"
    write_export(path, cases=300, seed=11, config=REPO_CONFIG)
    # The sm-amr cases with the most events and every clock kind among them: entered live, then imported.
    lines = sorted((x for x in _lines(path) if x["agency"] == "sm-amr"), key=lambda x: -len(x["events"]))[:25]
    assert {e["event"] for x in lines for e in x["events"]} >= {"suspend", "resume", "file_case", "propose_referral"}
    result = import_cases(deps, _write_lines(tmp_path / "some.jsonl", lines))
    assert result.ok and result.imported == len(lines), result.rejected
    for line in lines:
        live = open_case(
            deps,
            agency=line["agency"],
            title=line["title"],
            source=line["source"],
            actor="sm_amr_handler",
            received_at=datetime.fromisoformat(line["received_at"]),
        )
        attached = False
        for e in line["events"]:
            if e["event"] == "transfer_to_police" and not attached:  # the live guard wants the package
                attached = True
                for kind in (*TRANSFER_PACKAGE, "appraisal_report"):
                    doc = tmp_path / f"{live.case_no}-{kind}.txt"
                    doc.write_text(kind, encoding="utf-8")
                    attach_file(deps, live.case_no, kind, doc, actor="sm_amr_handler")
            live = advance_case(
                deps,
                live.case_no,
                e["event"],
                actor=e["actor"],
                effective_at=datetime.fromisoformat(e["effective_at"]),
                data=e["data"],
            )
        imported = replay_case(deps, line["case_no"])
        assert imported.stored == replay_case(deps, live.case_no).stored
        mine, theirs = _deadline_ledger(deps, line["case_no"]), _deadline_ledger(deps, live.case_no)
        for a, b in zip(mine, theirs, strict=True):
            assert a == b, (line["case_no"], [(i, x, y) for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y])


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "workers"])
def test_bad_lines_are_reported_by_number_and_leave_nothing_behind(
    target: tuple[Deps, Path], tmp_path: Path, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    deps = target[0]
    monkeypatch.setattr(imports, "WARM_UP_LINES", 0)  # the workers check from the first line
    path = tmp_path / "export.jsonl"
    write_export(path, cases=10, seed=5, config=REPO_CONFIG)
    lines: list[Any] = _lines(path)
    impossible = dict(lines[6])  # line 7: verification, then straight to a penalty notice (no filing)
    impossible["events"] = [
        {"event": "start_verification", "actor": "sm_amr_handler", "effective_at": "2024-03-01T09:00:00+08:00"},
        {"event": "notify_penalty", "actor": "sm_amr_handler", "effective_at": "2024-03-02T09:00:00+08:00"},
    ]
    impossible["agency"] = "sm-amr"
    lines[6] = impossible
    lines[2] = {**lines[2], "agency": "xx-amr"}  # line 3: unknown agency
    lines[4] = "{not json"  # line 5
    lines.append({**lines[0]})  # line 11: the case number of line 1 again
    result = import_cases(deps, _write_lines(path, lines), batch_size=4, workers=workers)

    assert [(r.line, r.case_no) for r in result.rejected] == [
        (3, lines[2]["case_no"]),
        (5, ""),
        (7, impossible["case_no"]),
        (11, lines[0]["case_no"]),
    ]
    assert "unknown agency 'xx-amr'" in result.rejected[0].reason
    assert (
        "event #2 (notify_penalty)" in result.rejected[2].reason
        and "not allowed in state verifying" in result.rejected[2].reason
    )
    assert "already on line 1" in result.rejected[3].reason
    assert result.imported == 7 and not result.ok
    good = [x for i, x in enumerate(lines[:10]) if i not in (2, 4, 6)]
    with UnitOfWork(deps, read_only=True) as uow:
        stored = set(uow.session.execute(select(Case.case_no)).scalars())
        events = uow.session.execute(select(func.count()).select_from(CaseEvent)).scalar_one()
        deadlines = uow.session.execute(select(func.count(func.distinct(Deadline.case_id)))).scalar_one()
    assert stored == {x["case_no"] for x in good}
    assert events == sum(len(x["events"]) + 1 for x in good)  # no event of a rejected line
    assert deadlines <= len(good)
    assert verify_audit(deps).ok


def test_unknown_keys_officers_and_out_of_order_times_are_refused(deps: Deps, tmp_path: Path) -> None:
    base = {
        "case_no": "old-1",
        "agency": "sm-amr",
        "title": "某公司配方泄露案",
        "source": "report",
        "received_at": "2025-03-03T09:00:00+08:00",
    }
    step = {"event": "start_verification", "actor": "sm_amr_handler", "effective_at": "2025-03-04T09:00:00+08:00"}
    lines = [
        {**base, "case_no": "old-1", "events": [{**step, "effective_at": "2025-03-01T09:00:00+08:00"}]},
        {**base, "case_no": "old-2", "events": [{**step, "actor": "sm_psb_handler"}]},
        {**base, "case_no": "old-3", "events": [step], "colour": "red"},
        {**base, "case_no": "old-4", "events": [step, {**step, "event": "file_case", "data": {"reason": "x"}}]},
        {**base, "case_no": "old-5", "received_at": "2027-01-01T00:00:00+08:00"},  # after the clock's now
        {**base, "case_no": "old-6", "events": [step]},
    ]
    result = import_cases(deps, _write_lines(tmp_path / "x.jsonl", lines))
    reasons = {r.case_no: r.reason for r in result.rejected}
    assert set(reasons) == {"old-1", "old-2", "old-3", "old-4", "old-5"} and result.imported == 1
    assert "before the case's last event" in reasons["old-1"]
    assert "only market_regulation officers may" in reasons["old-2"]
    assert "colour" in reasons["old-3"]
    assert "file_case does not take reason" in reasons["old-4"]
    assert "in the future" in reasons["old-5"]


def _cli(config: Path, *args: str, code: int) -> Any:
    result = runner.invoke(app, ["--config", str(config), *args])
    assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr)
    return result


def test_cli_summary_and_exit_codes(deps: Deps, sqlite_config: Path, tmp_path: Path) -> None:
    path = tmp_path / "export.jsonl"
    write_export(path, cases=6, seed=2, config=REPO_CONFIG)
    lines: list[Any] = _lines(path)
    lines[1] = {**lines[1], "source": "rumour"}
    _write_lines(path, lines)

    bad = _cli(sqlite_config, "import", str(path), "--batch", "2", code=2)
    assert "imported 5 case(s)" in bad.stdout and "rejected 1" in bad.stdout
    assert f"line 2: {lines[1]['case_no']}: unknown lead source 'rumour'" in bad.stderr

    again = json.loads(_cli(sqlite_config, "import", str(path), "--json", code=2).stdout)
    assert (again["imported"], again["skipped"]) == (0, 5)
    assert [(r["line"], r["case_no"]) for r in again["rejected"]] == [(2, lines[1]["case_no"])]

    lines[1] = {**lines[1], "source": "report"}
    _write_lines(path, lines)
    fixed = json.loads(_cli(sqlite_config, "import", str(path), "--json", code=0).stdout)
    assert (fixed["imported"], fixed["skipped"], fixed["rejected"], fixed["ok"]) == (1, 5, [], True)

    missing = _cli(sqlite_config, "import", str(tmp_path / "nope.jsonl"), code=2)
    assert "file not found" in missing.stderr


def test_a_100k_case_export_imports_whole_through_the_cli(deps: Deps, sqlite_config: Path, tmp_path: Path) -> None:
    """Issue 8's size: 100,000 cases (about 560,000 audit events) into SQLite as a site runs it."""
    path = tmp_path / "export.jsonl"
    write_export(path, cases=100_000, seed=1, config=REPO_CONFIG)
    summary = json.loads(_cli(sqlite_config, "import", str(path), "--json", code=0).stdout)
    assert (summary["imported"], summary["skipped"], summary["rejected"], summary["ok"]) == (100_000, 0, [], True)
    assert summary["events"] > 500_000
    assert _count(deps, select(func.count()).select_from(Case)) == 100_000
    assert _count(deps, select(func.count()).select_from(CaseEvent)) == summary["events"]
    numbers = [line["case_no"] for line in _lines(path)[::997]]  # a hundred chains from all over the file
    assert all(verify_audit(deps, case_no=n).ok for n in numbers)


def _children(pid: int) -> list[int]:
    return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _alive(pid: int) -> bool:
    try:  # a zombie (exited, not yet reaped by init) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_an_import_killed_half_way_and_run_again_has_every_case_exactly_once(
    target: tuple[Deps, Path], tmp_path: Path
) -> None:
    deps, config = target
    stored = select(func.count()).select_from(Case)
    source = tmp_path / "some.jsonl"
    write_export(source, cases=1500, seed=9, config=REPO_CONFIG)
    lines = _lines(source)
    many = [{**x, "case_no": f"{x['case_no']}-{copy}"} for copy in range(6) for x in lines]  # 9,000 cases
    path = _write_lines(tmp_path / "export.jsonl", many)
    jointcase = str(Path(sys.executable).parent / "jointcase")
    env = {**os.environ, "JOINTCASE_DEBUG": "1"}
    cmd = [jointcase, "--config", str(config), "import", str(path), "--batch", "250"]

    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    limit = time.monotonic() + 120
    while _count(deps, stored) < 2500:  # some batches committed, the workers (after WARM_UP_LINES) at work
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < limit, "the import did not commit a batch in time"
        time.sleep(0.01)
    checkers = _children(child.pid)
    assert checkers, "a file this size is checked by worker processes"
    child.send_signal(signal.SIGKILL)
    child.wait()
    limit = time.monotonic() + 30
    while any(_alive(pid) for pid in checkers):  # they see the pipe close
        assert time.monotonic() < limit, "worker processes outlived the killed import"
        time.sleep(0.05)
    killed_at = _count(deps, stored)
    assert 2500 <= killed_at < len(many), killed_at  # killed half-way, not after the end
    assert killed_at % 250 == 0  # whole batches only

    done = subprocess.run([*cmd, "--json"], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["skipped"], summary["imported"]) == (killed_at, len(many) - killed_at)

    with UnitOfWork(deps, read_only=True) as uow:
        total, distinct = uow.session.execute(text("SELECT count(*), count(DISTINCT case_no) FROM cases")).one()
        events, distinct_events = uow.session.execute(
            text("SELECT count(*), count(DISTINCT CAST(case_id AS TEXT) || ':' || CAST(seq AS TEXT)) FROM case_events")
        ).one()
    assert total == distinct == len(many)
    assert events == distinct_events == sum(len(x["events"]) + 1 for x in many)
    report = verify_audit(deps)
    assert report.ok and report.cases == len(many), report.problems[:5]
