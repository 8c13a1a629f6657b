"""The clock commands end to end on SQLite: ``deadlines``, ``sweep``, ``supervise`` and the deadline columns of
``case show``. The CLI runs on the real clock, so cases are opened with a back-dated ``--received-at``."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from states.calendar import SHANGHAI
from tests.e2e import test_cli as base
from tests.e2e.test_cli import MR, Cli

cli = base.cli  # the same fixture: a fresh database from config.toml


def open_backdated(cli: Cli, days: int, title: str = "三明某公司配方泄露案") -> str:
    received = (datetime.now(SHANGHAI) - timedelta(days=days)).isoformat(timespec="minutes")
    view = cli.json(
        "case",
        "open",
        "--agency",
        "sm-amr",
        "--title",
        title,
        "--source",
        "report",
        "--as",
        MR,
        "--received-at",
        received,
    )
    return str(view["case_no"])


def test_deadlines_lists_overdue_and_due_soon(cli: Cli) -> None:
    late = open_backdated(cli, 40)  # A1 (15 working days) long past
    fresh = open_backdated(cli, 0)
    rows = cli.json("deadlines")
    assert {(r["case_no"], r["rule"]) for r in rows} == {(late, "A1"), (fresh, "A1")}
    overdue = cli.json("deadlines", "--overdue")
    assert [(r["case_no"], r["status"], r["overdue"]) for r in overdue] == [(late, "missed", True)]
    assert [r["case_no"] for r in cli.json("deadlines", "--due-within", "2d")] == [late]
    assert {r["case_no"] for r in cli.json("deadlines", "--due-within", "6w")} == {late, fresh}
    assert cli.json("deadlines", "--as", "mx_amr_handler") == []
    human = cli("deadlines", "--overdue").stdout
    assert "线索核查" in human and late in human and "1 deadline(s)" in human


def test_bad_due_within_is_one_line_exit_2(cli: Cli) -> None:
    result = cli("deadlines", "--due-within", "soon", code=2)
    assert result.stderr.strip().startswith("error: --due-within 'soon'") and "Traceback" not in result.stderr


def test_sweep_fires_once_and_the_history_shows_it(cli: Cli) -> None:
    case_no = open_backdated(cli, 40)
    first = json.loads(cli("sweep", "--json").stdout)
    assert (first["missed"], first["fired"]) == (1, 1) and first["notifications"] >= 2
    again = json.loads(cli("sweep", "--json").stdout)
    assert again["fired"] == 0
    events = [e["event"] for e in cli.json("case", "history", case_no)]
    assert events == ["open_case", "deadline_missed"]
    assert "期限届满未办结" in cli("case", "history", case_no).stdout
    assert "swept 0 case(s)" in cli("sweep").stdout
    assert cli("audit", "verify").exit_code == 0


def test_sweep_as_of_a_later_time_sends_the_reminder(cli: Cli) -> None:
    case_no = open_backdated(cli, 0)
    due = datetime.fromisoformat(cli.json("case", "show", case_no)["deadlines"][0]["due_at"])
    result = json.loads(cli("sweep", "--now", (due - timedelta(hours=12)).isoformat(), "--json").stdout)
    assert (result["reminders"], result["missed"]) == (1, 0)
    shown = cli.json("case", "show", case_no)
    a1 = shown["deadlines"][0]
    # provisional depends on the real date (a case opened in December may run into 2027): only its presence
    assert a1["status"] == "running" and a1["remaining"] and isinstance(a1["provisional"], bool) and a1["basis"]


def test_supervise_list_report_show_delist(cli: Cli) -> None:
    case_no = open_backdated(cli, 1)
    due = (datetime.now(SHANGHAI) + timedelta(days=60)).date().isoformat()
    listed = cli.json(
        "supervise",
        "list",
        case_no,
        "--level",
        "city",
        "--due",
        due,
        "--every",
        "15d",
        "--reason",
        "重点督办",
        "--as",
        "sm_amr_supervisor",
    )
    assert (listed["state"], listed["level"], listed["due_at"][:10]) == ("listed", "city", due)
    reported = cli.json("supervise", "report", case_no, "--text", "已调取证据", "--as", MR)
    assert (reported["state"], reported["reports"]) == ("progress_reported", 1)
    human = cli("supervise", "show", case_no).stdout
    assert "已报告进展" in human and "重点督办" in human
    delisted = cli.json("supervise", "delist", case_no, "--result", "已办结", "--as", "sm_amr_supervisor")
    assert delisted["state"] == "delisted"
    events = [e["event"] for e in cli.json("case", "history", case_no)]
    assert events[-3:] == ["supervision_listed", "supervision_report", "supervision_delisted"]


def test_supervise_refusals_are_one_line_with_exit_codes(cli: Cli) -> None:
    case_no = open_backdated(cli, 1)
    before = cli.counts()
    common = ["--due", "2099-12-31", "--every", "15d", "--reason", "督办"]
    denied = cli("supervise", "list", case_no, "--level", "city", *common, "--as", MR, code=6)
    assert "not a supervisor" in denied.stderr
    bad_level = cli("supervise", "list", case_no, "--level", "national", *common, "--as", "sm_amr_supervisor", code=2)
    assert "unknown supervision level 'national'" in bad_level.stderr
    bad_due = cli(
        "supervise",
        "list",
        case_no,
        "--level",
        "city",
        "--due",
        "31/12",
        "--every",
        "15d",
        "--reason",
        "x",
        "--as",
        "sm_amr_supervisor",
        code=2,
    )
    assert "--due" in bad_due.stderr
    not_listed = cli("supervise", "report", case_no, "--text", "x", "--as", MR, code=2)
    assert "not under listed supervision" in not_listed.stderr
    assert cli("supervise", "show", "sm-amr-2026-9999", code=4).stderr.startswith("error:")
    assert cli.counts() == before


def test_case_handoffs_shows_the_answer_each_hand_off_waits_for(cli: Cli) -> None:
    case_no = cli.open()
    base._to_police_review(cli, case_no)
    [transfer] = cli.json("case", "handoffs", case_no, "--as", MR)
    assert (transfer["rule"], transfer["from_agency"], transfer["to_agency"], transfer["status"]) == (
        "T7",
        "sm-amr",
        "sm-psb",
        "waiting",
    )
    human = cli("case", "handoffs", case_no).stdout
    assert "移送公安机关" in human and "公安立案审查" in human and "waiting" in human
    assert cli("case", "handoffs", case_no, "--as", "mx_amr_handler", code=4).stderr.startswith("error:")
