"""Information bulletins end to end through the CLI on SQLite (``jointcase bulletin …``), with the real clock.

The fixture is October 2026, entered with past effective times (``--received-at``, ``--at``): one case
received, filed, referred and filed by the police in October; one received in September and filed in
October. ``bulletin generate`` prints the key figures (all of them with ``--json``), writes the workbook and
stores the bulletin; a second run finds it unchanged. Bad periods give one ``error:`` line, exit code 2,
and write nothing.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from states.calendar import SHANGHAI
from tests.e2e import test_cli as base
from tests.e2e.test_cli import MR, POLICE, Cli
from tests.e2e.test_evidence_cli import EXIT_USAGE, one_error_line

cli = base.cli  # the same fixture: a fresh database from config.toml


def stored(cli: Cli) -> tuple[Any, ...]:
    """What a bulletin command may write: bulletins and their notices."""
    with sqlite3.connect(cli.db) as conn:
        bulletins = conn.execute("SELECT period, version, sha256 FROM bulletins ORDER BY period").fetchall()
        notices = conn.execute("SELECT count(*) FROM outbox WHERE kind = 'bulletin'").fetchone()[0]
    return tuple(bulletins), notices


@pytest.fixture
def october(cli: Cli) -> Cli:
    def advance(case_no: str, event: str, actor: str, at: str, *sets: str) -> None:
        args = ["case", "advance", case_no, event, "--as", actor, "--at", at, "--json"]
        for item in sets:
            args += ["--set", item]
        cli(*args)

    def open_case(title: str, received: str) -> str:
        view = cli.json(
            "case", "open", "--agency", "sm-amr", "--title", title, "--source", "report", "--as", MR,
            "--received-at", received,
        )  # fmt: skip
        return str(view["case_no"])

    one = open_case("十月线索某公司配方泄露案", "2026-10-05T09:00")
    advance(one, "start_verification", MR, "2026-10-06T09:00")
    advance(one, "file_case", MR, "2026-10-08T09:00")  # verification 3 days
    advance(one, "propose_referral", MR, "2026-10-09T09:00", "ground=loss", "loss_amount=800000")
    advance(one, "approve_referral", MR, "2026-10-10T09:00")
    cli.attach_package(one)
    advance(one, "transfer_to_police", MR, "2026-10-12T09:00")
    advance(one, "police_file", POLICE, "2026-10-14T09:00")  # police decision 2 days
    two = open_case("九月线索某公司客户名单泄露案", "2026-09-28T09:00")
    advance(two, "start_verification", MR, "2026-09-29T09:00")
    advance(two, "file_case", MR, "2026-10-02T09:00")  # verification 4 days
    return cli


# October by hand: lead 1 (the other was received in September), filed 2, proposed/approved/transferred 1,
# police filed 1 of 1 decision; verification [3, 4] → 3.5 days; police decision 2 days.
OCTOBER_TOTAL = {
    "leads_received": 1,
    "cases_filed": 2,
    "referrals_proposed": 1,
    "referrals_approved": 1,
    "referrals_transferred": 1,
    "police_filed": 1,
    "police_declined": 0,
    "police_filing_rate": 1.0,
    "reconsiderations": 0,
    "reconsideration_upheld": 0,
    "supervision_requests": 0,
    "supervision_upheld_decline": 0,
    "supervisions_listed": 0,
    "supervisions_delisted": 0,
    "supervision_escalations": 0,
    "deadlines_missed": 0,
}


def test_generate_show_and_list(october: Cli, tmp_path: Path) -> None:
    cli = october
    xlsx = tmp_path / "out" / "2026-10.xlsx"
    view = cli.json("bulletin", "generate", "--period", "2026-10", "--xlsx", str(xlsx))
    assert (view["period"], view["kind"], view["label"], view["version"], view["status"]) == (
        "2026-10",
        "monthly",
        "2026年10月",
        1,
        "new",
    )
    assert view["figures"]["total"]["values"] == OCTOBER_TOTAL
    assert view["figures"]["total"]["stages"]["verification"] == {"count": 2, "median_days": 3.5}
    assert view["figures"]["total"]["stages"]["police_decision"] == {"count": 1, "median_days": 2.0}
    assert view["notified"] == 10 and view["xlsx"] == str(xlsx)  # config.toml's ten subscribers
    assert "html" not in view

    from openpyxl import load_workbook

    regions = load_workbook(xlsx)["按地区"]
    ids = [c.value for c in regions[2]]
    total = next(row for row in regions.iter_rows(min_row=3, values_only=True) if row[1] == "total")
    assert dict(zip(ids[4:], total[4:], strict=True)) == OCTOBER_TOTAL

    human = cli("bulletin", "generate", "--period", "2026-10").stdout  # the same data: unchanged, not re-sent
    assert "v1 unchanged" in human and view["sha256"] in human
    assert "合计" in human and "三明市" in human and "受理线索" in human and "100.0%" in human
    assert "queued" not in human
    assert stored(cli) == ((("2026-10", 1, view["sha256"]),), 20)

    html = tmp_path / "b.html"
    shown = cli.json("bulletin", "show", "--period", "2026-10", "--html", str(html))
    assert (shown["sha256"], shown["generated_by"], shown["status"]) == (view["sha256"], "system", "stored")
    assert "2026年10月" in html.read_text(encoding="utf-8")
    assert "主要数据" in cli("bulletin", "show", "--period", "2026-10").stdout
    listed = cli.json("bulletin", "list")
    assert [(b["period"], b["version"]) for b in listed] == [("2026-10", 1)]
    assert "figures" not in listed[0]


def test_no_send_and_generating_as_an_officer(october: Cli) -> None:
    view = october.json("bulletin", "generate", "--period", "2026-10", "--no-send", "--as", "sm_amr_supervisor")
    assert (view["notified"], view["generated_by"]) == (0, "sm_amr_supervisor")
    assert stored(october)[1] == 0
    denied = october("bulletin", "generate", "--period", "2026-10", "--as", MR, code=6)
    assert "may not generate bulletins" in one_error_line(denied.stderr)


def _current_month() -> str:
    return datetime.now(SHANGHAI).strftime("%Y-%m")


@pytest.mark.parametrize(
    ("period", "message"),
    [
        ("2026-13", "period '2026-13': there is no month 13"),
        ("2026-Q5", "there is no quarter 5 (Q1–Q4)"),
        ("abc", "period 'abc' is not a month YYYY-MM (e.g. 2026-10) or a quarter YYYY-Qn (e.g. 2026-Q3)"),
        ("2999-01", "is in the future"),
        ("current", "has not ended yet"),
    ],
)
def test_bad_period_one_error_line_exit_2_nothing_written(
    october: Cli, tmp_path: Path, period: str, message: str
) -> None:
    period = _current_month() if period == "current" else period
    xlsx = tmp_path / "bad.xlsx"
    result = october("bulletin", "generate", "--period", period, "--xlsx", str(xlsx), code=EXIT_USAGE)
    assert message in one_error_line(result.stderr)
    assert result.stdout == ""
    assert stored(october) == ((), 0)
    assert not xlsx.exists()


def test_bad_period_as_json_and_show_of_nothing(cli: Cli) -> None:
    result = cli("bulletin", "generate", "--period", "2026-13", "--json", code=EXIT_USAGE)
    error = json.loads(result.stderr)
    assert error["error"] == "invalid_input" and "no month 13" in error["message"]
    missing = cli("bulletin", "show", "--period", "2026-10", code=EXIT_USAGE)
    assert "no bulletin for 2026-10 (2026年10月) was generated" in one_error_line(missing.stderr)
    assert stored(cli) == ((), 0)


def test_an_unwritable_workbook_path_stores_nothing(october: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    result = october("bulletin", "generate", "--period", "2026-10", "--xlsx", str(folder), code=EXIT_USAGE)
    assert "cannot write" in one_error_line(result.stderr) and "nothing stored" in result.stderr
    assert stored(october) == ((), 0)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("a-folder")) == ["a-folder"]
