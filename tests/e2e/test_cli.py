"""End to end through the CLI on SQLite: the full paths of DOMAIN.md, bad input, exit codes.

Runs the real Typer app in-process (CliRunner) against a config in tmp_path; one test also runs the
installed ``jointcase`` console script as a subprocess.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from app.cli import app
from tests.conftest import write_config

runner = CliRunner()

MR, POLICE, PRO, COURT = "sm_amr_handler", "sm_psb_handler", "sm_procuratorate_handler", "sm_court_handler"


class Cli:
    """Runs ``jointcase --config CFG ...`` and reads the SQLite file behind it."""

    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "jointcase.db"
        self.config = write_config(tmp_path, f"sqlite:///{self.db}")
        self.tmp = tmp_path

    def __call__(self, *args: str, code: int = 0) -> Any:
        result = runner.invoke(app, ["--config", str(self.config), *args])
        assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)

    def open(self, title: str = "三明某新材料公司配方泄露案") -> str:
        view = self.json("case", "open", "--agency", "sm-amr", "--title", title, "--source", "report", "--as", MR)
        return str(view["case_no"])

    def advance(self, case_no: str, event: str, actor: str, *sets: str, code: int = 0) -> Any:
        args = ["case", "advance", case_no, event, "--as", actor, "--json"]
        for item in sets:
            args += ["--set", item]
        result = self(*args, code=code)
        return json.loads(result.stdout) if code == 0 else result

    def attach_package(self, case_no: str, *kinds: str) -> None:
        for kind in kinds or ("transfer_letter", "investigation_report", "items_list"):
            path = self.tmp / f"{kind}.txt"
            path.write_text(f"{case_no} {kind} 材料\n", encoding="utf-8")
            self("case", "attach", case_no, kind, str(path), "--as", MR)

    def counts(self) -> dict[str, int]:
        with sqlite3.connect(self.db) as conn:
            return {
                table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("cases", "case_events", "deadlines", "outbox", "case_participants", "attachments")
            }

    def snapshot(self, case_no: str) -> tuple[Any, ...]:
        with sqlite3.connect(self.db) as conn:
            row = conn.execute(
                "SELECT state, version, last_hash, configuration FROM cases WHERE case_no = ?", (case_no,)
            ).fetchone()
        return (*row, tuple(self.counts().items()))


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    c = Cli(tmp_path)
    c("init")
    return c


def _to_police_review(cli: Cli, case_no: str) -> None:
    cli.advance(case_no, "start_verification", MR)
    cli.advance(case_no, "file_case", MR)
    cli.advance(case_no, "propose_referral", MR, "ground=loss", "loss_amount=800000")
    cli.advance(case_no, "approve_referral", MR)
    cli.attach_package(case_no)
    view = cli.advance(case_no, "transfer_to_police", MR)
    assert view["state"] == "police_review"


def test_administrative_penalty_path(cli: Cli) -> None:
    case_no = cli.open()
    assert case_no == "sm-amr-2026-0001" or case_no.startswith("sm-amr-")
    cli.advance(case_no, "start_verification", MR)
    cli.advance(case_no, "file_case", MR)
    cli.advance(
        case_no,
        "request_appraisal",
        MR,
        "institution=福建某司法鉴定所",
        "subject=non_public",
        "questions=是否不为公众所知悉",
    )
    cli.advance(case_no, "complete_appraisal", MR, "conclusion=不为公众所知悉")
    cli.advance(case_no, "notify_penalty", MR)
    cli.advance(case_no, "request_hearing", MR)
    view = cli.advance(case_no, "decide_penalty", MR, "fine_amount=500000", "confiscated_amount=120000")
    assert (view["state"], view["phase"], view["outcome"]) == ("closed", "closed", "penalized")
    assert view["allowed_events"] == []
    shown = cli.json("case", "show", case_no)
    assert shown["version"] == 8
    assert {d["rule"] for d in shown["deadlines"]} >= {"A1", "A3", "A7"}
    assert all(d["status"] in ("met", "missed", "cancelled") for d in shown["deadlines"])
    history = cli.json("case", "history", case_no)
    assert [e["event"] for e in history] == [
        "open_case",
        "start_verification",
        "file_case",
        "request_appraisal",
        "complete_appraisal",
        "notify_penalty",
        "request_hearing",
        "decide_penalty",
    ]
    assert history[-1]["payload"] == {"fine_amount": 500000, "confiscated_amount": 120000}
    assert cli("audit", "verify", case_no).exit_code == 0


def test_referral_decline_reconsideration_supervision_filing_to_judgment(cli: Cli) -> None:
    case_no = cli.open()
    cli.advance(case_no, "start_verification", MR)
    cli.advance(case_no, "file_case", MR)
    cli.advance(case_no, "propose_referral", MR, "ground=loss", "loss_amount=800000")
    cli.advance(case_no, "approve_referral", MR)
    refused = cli.advance(case_no, "transfer_to_police", MR, code=3)
    assert "transfer_letter, investigation_report, items_list" in refused.stderr
    assert "第六条" in refused.stderr
    cli.attach_package(case_no)
    view = cli.advance(case_no, "transfer_to_police", MR)
    assert view["participants"] == ["sm-amr", "sm-psb"]
    # The police decline; the regulator asks for reconsideration, then for filing supervision.
    cli.advance(case_no, "police_decline", POLICE, "reason=证据不足")
    cli.advance(case_no, "request_reconsideration", MR)
    cli.advance(case_no, "uphold_decline", POLICE, "reason=维持不立案")
    view = cli.advance(case_no, "request_supervision", MR)
    assert view["state"] == "filing_supervision" and "sm-procuratorate" in view["participants"]
    view = cli.advance(case_no, "police_file", POLICE)
    assert (view["phase"], view["state"]) == ("criminal", "evidence_handover")
    cli.advance(case_no, "complete_handover", POLICE)
    view = cli.advance(case_no, "submit_for_prosecution", POLICE)
    assert view["state"] == "prosecution_review"
    for _ in range(2):
        assert cli.advance(case_no, "return_for_supplementary_investigation", PRO)["state"] == (
            "supplementary_investigation"
        )
        assert cli.advance(case_no, "resubmit", POLICE)["state"] == "prosecution_review"
    before = cli.snapshot(case_no)
    third = cli.advance(case_no, "return_for_supplementary_investigation", PRO, code=3)
    assert "第一百七十五条" in third.stderr and case_no in third.stderr
    assert cli.snapshot(case_no) == before
    view = cli.advance(case_no, "indict", PRO)
    assert view["state"] == "trial" and "sm-court" in view["participants"]
    view = cli.advance(case_no, "pronounce_judgment", COURT, "outcome=convicted", "sentence=有期徒刑三年")
    assert (view["state"], view["outcome"]) == ("closed", "convicted")
    history = cli.json("case", "history", case_no)
    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))
    assert history[-1]["actor_agency"] == "sm-court"
    assert cli.json("audit", "verify", case_no)["ok"] is True
    # Every agency that joined was told through its liaison officer (outbox rows, rendered in Chinese).
    with sqlite3.connect(cli.db) as conn:
        rows = conn.execute("SELECT recipient_user, subject, body FROM outbox").fetchall()
    users = {r[0] for r in rows}
    assert {"sm_psb_liaison", "sm_procuratorate_liaison", "sm_court_liaison", "sm_amr_liaison"} <= users
    assert any(case_no in subject and "移送公安机关" in subject for _, subject, _ in rows)


def test_reverse_linkage_back_to_administrative_penalty(cli: Cli) -> None:
    case_no = cli.open()
    _to_police_review(cli, case_no)
    cli.advance(case_no, "police_file", POLICE)
    cli.advance(case_no, "complete_handover", POLICE)
    cli.advance(case_no, "submit_for_prosecution", POLICE)
    view = cli.advance(case_no, "refer_back_for_penalty", PRO)
    assert (view["phase"], view["state"]) == ("administrative", "investigating")
    assert any(d["rule"] == "A3" and d["status"] == "running" for d in view["deadlines"])
    cli.advance(case_no, "notify_penalty", MR)
    view = cli.advance(case_no, "decide_penalty", MR, "fine_amount=300000")
    assert (view["state"], view["outcome"]) == ("closed", "penalized")


def test_suspend_and_resume_return_to_the_same_state(cli: Cli) -> None:
    case_no = cli.open()
    cli.advance(case_no, "start_verification", MR)
    cli.advance(case_no, "file_case", MR)
    cli.advance(
        case_no, "request_appraisal", MR, "institution=福建某司法鉴定所", "subject=identity", "questions=是否同一"
    )
    view = cli.advance(case_no, "suspend", MR, "reason=当事人下落不明")
    assert (view["state"], view["phase"], view["suspended_from"]) == ("suspended", "administrative", "appraisal")
    assert view["allowed_events"] == ["resume"]
    assert cli.advance(case_no, "resume", MR)["state"] == "appraisal"


def test_case_events_lists_who_may_send(cli: Cli) -> None:
    case_no = cli.open()
    _to_police_review(cli, case_no)
    events = cli.json("case", "events", case_no, "--as", POLICE)
    by_event = {e["event"]: e for e in events}
    assert set(by_event) == {"police_file", "police_decline", "forward_jurisdiction", "request_supplement", "suspend"}
    assert by_event["police_file"]["you_may_send"] is True
    assert by_event["suspend"]["you_may_send"] is False


# --- bad input: a clear message, the right exit code, nothing written --------------------------------


def test_unknown_case(cli: Cli) -> None:
    result = cli("case", "show", "sm-amr-2026-9999", code=4)
    assert result.stderr.strip() == "error: case sm-amr-2026-9999 not found"
    before = cli.counts()
    cli("case", "advance", "sm-amr-2026-9999", "file_case", "--as", MR, code=4)
    assert cli.counts() == before


def test_unknown_event_and_event_not_allowed(cli: Cli) -> None:
    case_no = cli.open()
    before = cli.snapshot(case_no)
    unknown = cli.advance(case_no, "fly_to_moon", MR, code=3)
    assert "unknown event 'fly_to_moon'" in unknown.stderr and "start_verification" in unknown.stderr
    not_allowed = json.loads(cli.advance(case_no, "file_case", MR, code=3).stderr)
    assert not_allowed["error"] == "transition_refused"
    assert not_allowed["message"] == (
        f"case {case_no}: event 'file_case' is not allowed in state 'lead_registered'; "
        "allowed now: start_verification, suspend, withdraw"
    )
    plain = cli("case", "advance", case_no, "file_case", "--as", MR, code=3)
    assert plain.stderr.startswith(f"error: case {case_no}: event 'file_case' is not allowed")
    assert cli.snapshot(case_no) == before


def test_missing_guard_data(cli: Cli) -> None:
    case_no = cli.open()
    cli.advance(case_no, "start_verification", MR)
    cli.advance(case_no, "file_case", MR)
    before = cli.snapshot(case_no)
    no_reason = cli.advance(case_no, "withdraw", MR, code=3)
    assert "withdraw needs reason" in no_reason.stderr
    below = cli.advance(case_no, "propose_referral", MR, "ground=loss", "loss_amount=120000", code=3)
    assert "below the filing standard of RMB 300000" in below.stderr
    suspicion = cli.advance(case_no, "propose_referral", MR, "ground=reasonable_suspicion", code=3)
    assert "needs a written reason" in suspicion.stderr and "第三条第二款" in suspicion.stderr
    unknown_key = cli.advance(case_no, "notify_penalty", MR, "fine=1", code=3)
    assert "notify_penalty does not take fine" in unknown_key.stderr
    assert cli.snapshot(case_no) == before


def test_wrong_agency_and_invisible_case(cli: Cli) -> None:
    case_no = cli.open()
    before = cli.snapshot(case_no)
    # The police are not part of this case yet: they cannot see it (404-like), let alone advance it.
    cli("case", "show", case_no, "--as", POLICE, code=4)
    cli.advance(case_no, "start_verification", POLICE, code=4)
    # The court is made a participant only by indict; a procuratorate officer sending a court event is denied.
    _to_police_review(cli, case_no)
    denied = cli.advance(case_no, "police_file", MR, code=6)
    assert "only police officers may" in denied.stderr
    cli.advance(case_no, "police_file", POLICE)
    denied = cli.advance(case_no, "complete_handover", "jl_psb_handler", code=4)
    assert "not found" in denied.stderr
    cli.advance(case_no, "pronounce_judgment", COURT, "outcome=convicted", code=4)
    assert cli.snapshot(case_no)[1] == before[1] + 6  # only the six legitimate transitions were written


def test_malformed_set_bad_time_and_expected_version(cli: Cli) -> None:
    case_no = cli.open()
    before = cli.snapshot(case_no)
    bad = cli("case", "advance", case_no, "start_verification", "--as", MR, "--set", "reason", code=2)
    assert "expected KEY=VALUE" in bad.stderr
    bad_at = cli("case", "advance", case_no, "start_verification", "--as", MR, "--at", "yesterday", code=2)
    assert "not an ISO date" in bad_at.stderr
    future = cli("case", "advance", case_no, "start_verification", "--as", MR, "--at", "2099-01-01", code=2)
    assert "in the future" in future.stderr
    stale = cli("case", "advance", case_no, "start_verification", "--as", MR, "--expect-version", "7", code=5)
    assert "expected version 7, it is now 1" in stale.stderr
    unknown_actor = cli("case", "advance", case_no, "start_verification", "--as", "nobody", code=6)
    assert "unknown or inactive officer 'nobody'" in unknown_actor.stderr
    assert cli.snapshot(case_no) == before


def test_json_errors_are_objects(cli: Cli) -> None:
    result = cli("case", "show", "nope-1", "--json", code=4)
    assert json.loads(result.stderr) == {"error": "case_not_found", "message": "case nope-1 not found"}
    assert result.stdout == ""


def test_effective_time_is_recorded_apart_from_entry_time(cli: Cli) -> None:
    case_no = cli.json(
        "case",
        "open",
        "--agency",
        "sm-amr",
        "--title",
        "纸质通知补录",
        "--source",
        "transfer",
        "--as",
        MR,
        "--received-at",
        "2026-01-05T09:00",
    )["case_no"]
    cli("case", "advance", case_no, "start_verification", "--as", MR, "--at", "2026-01-06T10:30")
    history = cli.json("case", "history", case_no)
    assert history[0]["effective_at"] == "2026-01-05T09:00+08:00"
    assert history[1]["effective_at"] == "2026-01-06T10:30+08:00"
    assert history[1]["recorded_at"] > history[1]["effective_at"]
    earlier = cli("case", "advance", case_no, "file_case", "--as", MR, "--at", "2026-01-05T08:00", code=2)
    assert "before the case's last event" in earlier.stderr


def test_bad_config_is_one_clear_message(tmp_path: Path) -> None:
    bad = write_config(tmp_path, f"sqlite:///{tmp_path / 'x.db'}", **{r'kind = "police"': 'kind = "polis"'})
    result = runner.invoke(app, ["--config", str(bad), "case", "list"])
    assert result.exit_code == 2
    assert "kind" in result.stderr and "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "x.db").exists()
    missing = runner.invoke(app, ["--config", str(tmp_path / "none.toml"), "init"])
    assert missing.exit_code == 2 and "config file not found" in missing.stderr


def test_uninitialised_database_is_reported(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'fresh.db'}")
    result = runner.invoke(app, ["--config", str(config), "case", "list"])
    assert result.exit_code == 2 and "run `jointcase init` first" in result.stderr


# --- audit, demo, diagram ---------------------------------------------------------------------------


def test_audit_verify_detects_changed_and_deleted_rows(cli: Cli) -> None:
    case_no = cli.open()
    for event in ("start_verification", "file_case", "notify_penalty"):
        cli.advance(case_no, event, MR)
    assert cli("audit", "verify").exit_code == 0
    with sqlite3.connect(cli.db) as conn:
        # The database itself refuses edits; a tamperer would first have to drop the triggers.
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE case_events SET note = 'x' WHERE seq = 2")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM case_events WHERE seq = 2")
        conn.execute("DROP TRIGGER case_events_no_update")
        conn.execute("DROP TRIGGER case_events_no_delete")
        conn.execute("UPDATE case_events SET payload = '{\"fine_amount\": 1}' WHERE seq = 2")
    changed = cli("audit", "verify", case_no, code=3)
    assert f"{case_no}: event #2 (start_verification) was changed after it was recorded" in changed.stderr
    with sqlite3.connect(cli.db) as conn:
        conn.execute("UPDATE case_events SET payload = '{}' WHERE seq = 2")
    assert cli("audit", "verify", case_no).exit_code == 0
    with sqlite3.connect(cli.db) as conn:
        conn.execute("DELETE FROM case_events WHERE seq = 3")
    deleted = cli("audit", "verify", case_no, "--json", code=3)
    report = json.loads(deleted.stdout)
    assert report["ok"] is False and any("event #3 is missing" in p for p in report["problems"])
    with sqlite3.connect(cli.db) as conn:
        conn.execute("DELETE FROM case_events WHERE seq = 4")
    tail = cli("audit", "verify", case_no, code=3)
    assert "last recorded event is not the case's last event" in tail.stderr


def test_init_demo_covers_every_phase_and_is_idempotent(cli: Cli) -> None:
    cli("init", "--demo")
    cases = cli.json("case", "list")
    assert len(cases) >= 12
    phases = {c["phase"] for c in cases}
    assert {"intake", "administrative", "referral", "criminal", "judicial", "closed"} <= phases
    assert any(c["state"] == "suspended" for c in cases)
    assert cli.json("audit", "verify")["ok"] is True
    listing = cli("case", "list").stdout
    closed = [line for line in listing.splitlines() if "convicted" in line or "penalized" in line]
    assert closed and not any("+08:00" in line for line in closed), "a closed case shows no next due date"
    again = cli.json("init", "--demo")
    assert again["demo_cases"] == [] and len(cli.json("case", "list")) == len(cases)


def test_installed_console_script(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "jointcase"
    assert exe.exists() or shutil.which("jointcase"), "the jointcase entry point is not installed"
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'j.db'}")
    command = [str(exe if exe.exists() else shutil.which("jointcase")), "--config", str(config)]
    assert subprocess.run([*command, "init"], capture_output=True, text=True, timeout=120).returncode == 0
    result = subprocess.run([*command, "case", "show", "x-1"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 4 and result.stderr.strip() == "error: case x-1 not found"
