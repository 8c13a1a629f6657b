"""Case consultations, joint meetings and action items end to end through the CLI on SQLite
(``jointcase consult …``, ``meeting …``, ``action …``).

The CLI runs on the real clock, so every time here is computed from now (Beijing): a consultation that
starts in 40 minutes can already be attended (attendance opens an hour before the start), one a few days
ahead cannot; the joint meeting prepared is next year's first quarter, always ahead. Bad input gives one
``error:`` line, exit code 2, and writes nothing.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from icalendar import Calendar

from tests.e2e import test_cli as base
from tests.e2e.test_cli import MR, POLICE, Cli, _to_police_review
from tests.e2e.test_evidence_cli import EXIT_DENIED, EXIT_USAGE, one_error_line

cli = base.cli  # the same fixture: a fresh database from config.toml

SHANGHAI = ZoneInfo("Asia/Shanghai")
SECRETARY = "sm_amr_secretary"
QUESTION = "涉案工艺参数是否属于不为公众所知悉的技术信息"
TABLES = ("meetings", "agenda_items", "outbox", "consultation_requests", "action_items", "case_events")


# --- helpers ----------------------------------------------------------------------------------------


def beijing_now() -> datetime:
    return datetime.now(SHANGHAI)


def local(at: datetime) -> str:
    """The form ``--at``/``--to`` take: Beijing time without an offset, to the minute."""
    return at.astimezone(SHANGHAI).strftime("%Y-%m-%dT%H:%M")


def counts(cli: Cli) -> dict[str, int]:
    with sqlite3.connect(cli.db) as conn:
        return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}


def refused(cli: Cli, *args: str, code: int = EXIT_USAGE) -> str:
    """Run a command that must fail with ``code``, say why in one ``error:`` line and write nothing."""
    before = counts(cli)
    line = one_error_line(cli(*args, code=code).stderr)
    assert counts(cli) == before, (args, "wrote something")
    return line


def consultation_case(cli: Cli) -> tuple[str, int]:
    """A case of sm-amr with the police taking part, and a consultation request on it (plain output: the id)."""
    case_no = cli.open()
    _to_police_review(cli, case_no)
    printed = cli(
        "consult", "request", case_no, "--topic", "evidence_recognition", "--question", QUESTION, "--as", MR
    ).stdout
    return case_no, int(printed.strip())


def schedule(cli: Cli, request_id: int, at: datetime) -> Any:
    return cli.json(
        "meeting", "schedule", "--kind", "consultation", "--requests", str(request_id),
        "--at", local(at), "--place", "三明市市场监督管理局 五楼会商室", "--as", SECRETARY,
    )  # fmt: skip


def parse_ics(path: Path) -> Any:
    cal = Calendar.from_ical(path.read_bytes())
    [event] = cal.walk("VEVENT")
    return cal, event


# --- the consultation, from request to action item ---------------------------------------------------


def test_a_consultation_through_the_cli(cli: Cli, tmp_path: Path) -> None:
    case_no, request_id = consultation_case(cli)
    [queued] = cli.json("consult", "queue", "--as", SECRETARY)
    assert (queued["id"], queued["case_no"], queued["question"], queued["state"]) == (
        request_id,
        case_no,
        QUESTION,
        "open",
    )

    start = (beijing_now() + timedelta(minutes=40)).replace(second=0, microsecond=0)
    meeting = schedule(cli, request_id, start)
    assert (meeting["kind"], meeting["state"], meeting["starts_at"]) == (
        "consultation",
        "noticed",
        start.isoformat(timespec="minutes"),
    )
    assert set(meeting["invited"]) == {"sm-amr", "sm-psb"}
    assert cli.json("consult", "queue", "--as", SECRETARY) == []

    ics = tmp_path / "out" / "invite.ics"
    shown = cli.json("meeting", "show", str(meeting["id"]), "--ics", str(ics))
    assert shown["agenda"] and all("case_no" in item for item in shown["agenda"])
    assert [(a["kind"], a["case_no"]) for a in shown["agenda"]] == [("consultation", case_no)]
    assert "ics" not in shown
    cal, event = parse_ics(ics)
    assert str(cal["METHOD"]) == "REQUEST" and str(event["UID"]) == shown["uid"]
    assert event["DTSTART"].params["TZID"] == "Asia/Shanghai" and event["DTSTART"].dt == start
    with sqlite3.connect(cli.db) as conn:
        told = {r[0] for r in conn.execute("SELECT recipient_user FROM outbox WHERE kind = 'meeting_notice'")}
    assert {"sm_amr_liaison", "sm_psb_liaison", MR} <= told

    # Attendance opens an hour before the start: this one can be held now.
    cli("meeting", "attend", str(meeting["id"]), "--agency", "sm-amr", "--officers", "陈明辉,王秀英", "--as", SECRETARY)
    attended = cli.json(
        "meeting", "attend", str(meeting["id"]), "--agency", "sm-psb", "--officers", "吴海涛", "--as", SECRETARY
    )
    assert attended["state"] == "held"
    assert attended["attendance"] == {"sm-amr": ["陈明辉", "王秀英"], "sm-psb": ["吴海涛"]}

    due = (beijing_now() + timedelta(days=20)).date().isoformat()
    text = "调取涉案服务器日志并固定电子数据"
    minuted = cli.json(
        "meeting", "minutes", str(meeting["id"]), "--text", "与会单位一致认为涉案工艺参数属于技术信息。",
        "--resolution", f"sm-psb|{due}|{text}|{case_no}", "--as", SECRETARY,
    )  # fmt: skip
    assert minuted["state"] == "minutes_approved"
    [item] = minuted["action_items"]
    assert (item["owner_agency"], item["case_no"], item["text"], item["state"]) == ("sm-psb", case_no, text, "open")
    assert item["due_at"] == f"{due}T23:59+08:00"

    [listed] = cli.json("action", "list", "--as", POLICE)
    assert (listed["id"], listed["case_no"], listed["overdue"]) == (item["id"], case_no, False)
    assert cli.json("action", "list", "--as", "jl_amr_handler") == []
    [resolved] = cli.json("consult", "queue", "--all", "--as", SECRETARY)
    assert (resolved["state"], resolved["resolution"]) == ("resolved", text)
    history = [e["event"] for e in cli.json("case", "history", case_no)]
    for event_name in ("consultation_requested", "consultation_scheduled", "meeting_resolution"):
        assert event_name in history
    assert history[-1] == "consultation_resolved"
    assert cli.json("audit", "verify", case_no)["ok"] is True

    # Only the owner agency closes it.
    denied = refused(cli, "action", "done", str(item["id"]), "--as", MR, "--note", "越权", code=EXIT_DENIED)
    assert "belongs to sm-psb" in denied
    done = cli.json("action", "done", str(item["id"]), "--as", POLICE, "--note", "已调取")
    assert (done["state"], done["done_by"]) == ("done", POLICE)
    assert cli.json("action", "list", "--open", "--as", SECRETARY) == []
    # The human output prints the meeting with its agenda and action items.
    human = cli("meeting", "show", str(meeting["id"])).stdout
    assert case_no in human and text in human


def test_plain_output_and_listing(cli: Cli) -> None:
    _case_no, request_id = consultation_case(cli)
    meeting = schedule(cli, request_id, beijing_now() + timedelta(days=3))
    listing = cli.json("meeting", "list", "--kind", "consultation")
    assert [m["id"] for m in listing] == [meeting["id"]]
    assert cli.json("meeting", "list", "--kind", "joint_meeting") == []
    assert "会商" in cli("meeting", "list").stdout
    assert QUESTION in cli("consult", "queue", "--all", "--as", SECRETARY).stdout


# --- the regular joint meeting ----------------------------------------------------------------------


def test_prepare_a_future_quarter_twice_gives_the_same_meeting(cli: Cli, tmp_path: Path) -> None:
    period = f"{beijing_now().year + 1}-Q1"
    first = cli.json("meeting", "prepare", "--period", period)
    after = counts(cli)
    second = cli.json("meeting", "prepare", "--period", period, "--schedule", "sm-quarterly")
    assert (first["id"], first["created"]) == (second["id"], True) and second["created"] is False
    assert counts(cli) == after
    assert (first["kind"], first["schedule_id"], first["period_key"], first["state"]) == (
        "joint_meeting",
        "sm-quarterly",
        period,
        "noticed",
    )
    assert first["starts_at"].startswith(f"{beijing_now().year + 1}-01-") and first["starts_at"].endswith(
        "T09:30+08:00"
    )
    assert all("case_no" in item for item in first["agenda"])
    printed = cli("meeting", "prepare", "--period", period).stdout
    assert printed.strip() == str(first["id"])
    ics = tmp_path / "q1.ics"
    cli("meeting", "show", str(first["id"]), "--ics", str(ics))
    cal, event = parse_ics(ics)
    assert str(cal["METHOD"]) == "REQUEST" and len(event.get("ATTENDEE", [])) == 7  # one liaison per agency
    with sqlite3.connect(cli.db) as conn:
        told = {r[0] for r in conn.execute("SELECT recipient_user FROM outbox WHERE kind = 'meeting_notice'")}
    assert told == {
        "sm_amr_liaison",
        "sm_psb_liaison",
        "sm_procuratorate_liaison",
        "sm_court_liaison",
        "sm_justice_liaison",
        "jl_amr_liaison",
        "mx_amr_liaison",
    }


# --- move and cancel ---------------------------------------------------------------------------------


def test_move_and_cancel_through_the_cli(cli: Cli, tmp_path: Path) -> None:
    _case_no, request_id = consultation_case(cli)
    start = (beijing_now() + timedelta(days=3)).replace(hour=14, minute=30, second=0, microsecond=0)
    meeting = schedule(cli, request_id, start)
    later = start + timedelta(days=1)
    moved = cli.json(
        "meeting", "move", str(meeting["id"]), "--to", local(later), "--reason", "时间冲突", "--as", SECRETARY
    )
    assert (moved["state"], moved["sequence"], moved["uid"]) == ("postponed", 1, meeting["uid"])
    ics = tmp_path / "moved.ics"
    cli("meeting", "show", str(meeting["id"]), "--ics", str(ics))
    _cal, event = parse_ics(ics)
    assert (int(event["SEQUENCE"]), event["DTSTART"].dt) == (1, later)
    cancelled = cli.json("meeting", "cancel", str(meeting["id"]), "--reason", "无需会商", "--as", SECRETARY)
    assert (cancelled["state"], cancelled["sequence"]) == ("cancelled", 2)
    cli("meeting", "show", str(meeting["id"]), "--ics", str(ics))
    cal, event = parse_ics(ics)
    assert (str(cal["METHOD"]), str(event["UID"])) == ("CANCEL", meeting["uid"])
    [reopened] = cli.json("consult", "queue", "--as", SECRETARY)
    assert (reopened["id"], reopened["state"], reopened["meeting_id"]) == (request_id, "open", None)


# --- bad input ---------------------------------------------------------------------------------------


def test_bad_input_is_one_error_line_exit_2_and_writes_nothing(cli: Cli) -> None:
    case_no, request_id = consultation_case(cli)
    meeting = schedule(cli, request_id, beijing_now() + timedelta(days=3))
    mid = str(meeting["id"])
    yesterday = local(beijing_now() - timedelta(days=1))

    assert "not held" in refused(cli, "meeting", "minutes", mid, "--text", "纪要", "--as", SECRETARY)
    assert "attendance is recorded at the meeting" in refused(
        cli, "meeting", "attend", mid, "--agency", "sm-amr", "--officers", "陈明辉", "--as", SECRETARY
    )
    assert "sm-court was not invited" in refused(
        cli, "meeting", "attend", mid, "--agency", "sm-court", "--officers", "徐振华", "--as", SECRETARY
    )
    assert "in the past" in refused(cli, "meeting", "move", mid, "--to", yesterday, "--as", SECRETARY)
    assert "not an ISO date" in refused(cli, "meeting", "move", mid, "--to", "next monday", "--as", SECRETARY)
    assert "unknown topic 'weather'" in refused(
        cli, "consult", "request", case_no, "--topic", "weather", "--question", QUESTION, "--as", MR
    )
    for period in ("2026-Q5", "2026-13"):
        assert "neither a quarter" in refused(cli, "meeting", "prepare", "--period", period)
    assert "once per quarter" in refused(cli, "meeting", "prepare", "--period", f"{beijing_now().year + 1}-01")
    assert "it is past" in refused(cli, "meeting", "prepare", "--period", f"{beijing_now().year - 1}-Q4")
    assert "not open any more" in refused(
        cli, "meeting", "schedule", "--kind", "consultation", "--requests", str(request_id),
        "--at", local(beijing_now() + timedelta(days=5)), "--place", "x", "--as", SECRETARY,
    )  # fmt: skip
    assert "give ids separated by commas" in refused(
        cli, "meeting", "schedule", "--kind", "consultation", "--requests", "one",
        "--at", local(beijing_now() + timedelta(days=5)), "--place", "x", "--as", SECRETARY,
    )  # fmt: skip
    assert "not a joint-meeting secretary" in refused(
        cli, "meeting", "schedule", "--kind", "joint_meeting", "--invite", "sm-psb",
        "--at", local(beijing_now() + timedelta(days=5)), "--place", "x", "--as", MR, code=EXIT_DENIED,
    )  # fmt: skip
    assert "--resolution" in refused(
        cli, "meeting", "minutes", mid, "--text", "纪要", "--resolution", "sm-psb|调取日志", "--as", SECRETARY
    )
    assert "--text or --file" in refused(cli, "meeting", "minutes", mid, "--as", SECRETARY)
    assert "no meeting #999" in refused(cli, "meeting", "show", "999")
    json_error = json.loads(
        cli("meeting", "minutes", mid, "--text", "纪要", "--as", SECRETARY, "--json", code=2).stderr
    )
    assert json_error["error"] == "invalid_input" and "not held" in json_error["message"]
