"""The evidence registry end to end through the CLI on SQLite (issue 4, evidence part).

One case is driven sm-amr → police (start_verification … transfer_to_police, police_file → evidence_handover);
the market regulator registers physical, electronic and witness evidence, hands it over with a seal number,
and the police decide on each item. ``complete_handover`` is refused while any item is unresolved: a witness
statement cannot be admitted as collected (CPL art. 54), it must be re-collected or excluded. Items keep their
SHA-256 and file name only, never the file. ``transfer_to_police`` records the package manifest on its audit
event. Bad input gives one ``error:`` line, the right exit code, and writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from typing import Any

import pytest

from tests.e2e import test_cli as base
from tests.e2e.test_cli import MR, POLICE, Cli

cli = base.cli  # the same fixture: a fresh database from config.toml

OTHER_MR = "mx_amr_handler"  # a market regulator that takes no part in the case
SEAL = "SM-FZ-2026-0042"
PACKAGE = ("transfer_letter", "investigation_report", "items_list")
EXIT_USAGE, EXIT_REFUSED, EXIT_NOT_FOUND, EXIT_DENIED = 2, 3, 4, 6


# --- helpers ----------------------------------------------------------------------------------------


def to_transfer(cli: Cli) -> str:
    """A case of the market regulator, up to ``awaiting_transfer`` (referral approved, nothing attached)."""
    case_no = cli.open()
    cli.advance(case_no, "start_verification", MR)
    cli.advance(case_no, "file_case", MR)
    cli.advance(case_no, "propose_referral", MR, "ground=loss", "loss_amount=500000")
    cli.advance(case_no, "approve_referral", MR)
    return case_no


def to_police_review(cli: Cli) -> str:
    case_no = to_transfer(cli)
    cli.attach_package(case_no)
    assert cli.advance(case_no, "transfer_to_police", MR)["state"] == "police_review"
    return case_no


def to_evidence_handover(cli: Cli) -> str:
    case_no = to_police_review(cli)
    view = cli.advance(case_no, "police_file", POLICE)
    assert (view["phase"], view["state"]) == ("criminal", "evidence_handover")
    return case_no


def add(cli: Cli, case_no: str, kind: str, title: str, *extra: str) -> int:
    """``evidence add`` (plain output): the printed item id."""
    printed = cli("evidence", "add", case_no, "--type", kind, "--title", title, *extra, "--as", MR).stdout
    return int(printed.strip())


def rows(cli: Cli, case_no: str) -> tuple[Any, ...]:
    """Row counts of the evidence tables and the audit log, and the case's version and chain head."""
    with sqlite3.connect(cli.db) as conn:
        counts = tuple(
            conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("evidence_items", "custody_entries", "case_events")
        )
        head = conn.execute("SELECT state, version, last_hash FROM cases WHERE case_no = ?", (case_no,)).fetchone()
    return (*counts, *head)


def db_bytes(cli: Cli) -> bytes:
    """Every byte SQLite keeps for the database: the file and, in WAL mode, its -wal and -shm companions."""
    files = [cli.db, *(cli.db.with_name(cli.db.name + suffix) for suffix in ("-wal", "-shm", "-journal"))]
    return b"".join(path.read_bytes() for path in files if path.exists())


def one_error_line(stderr: str) -> str:
    """The single ``error:`` line of a refusal (warnings aside, e.g. a year without holiday data)."""
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    assert all(line.startswith(("error: ", "warning: ")) for line in lines), stderr
    return errors[0]


def refused(cli: Cli, case_no: str, code: int, *args: str) -> str:
    """Run a command that must fail with ``code``, write nothing and say why in one line."""
    before = rows(cli, case_no)
    line = one_error_line(cli(*args, code=code).stderr)
    assert rows(cli, case_no) == before, (args, "wrote something")
    return line


def guard_message(result: Any) -> str:
    """The message of a ``case advance --json`` refusal (a JSON object on stderr)."""
    error = json.loads(result.stderr)
    assert error["error"] == "guard_failed", error
    return str(error["message"])


# --- 1. the acceptance -----------------------------------------------------------------------


@pytest.mark.parametrize("statement_resolution", ["recollected", "excluded"])
def test_statement_blocks_handover_until_recollected_or_excluded(cli: Cli, statement_resolution: str) -> None:
    case_no = to_evidence_handover(cli)

    # Register: the physical item with its file (hashed, never stored), electronic data, a witness statement.
    marker = f"TRADE-SECRET-{uuid.uuid4().hex}"
    sample = cli.tmp / "配方样品扫描.bin"
    sample.write_bytes(f"{marker}\n配方：聚酰亚胺 42.5% / 固化剂 7.1%\n".encode())
    digest = hashlib.sha256(sample.read_bytes()).hexdigest()
    physical = add(cli, case_no, "physical", "配方样品", "--file", str(sample), "--location", "证物室 A-3")
    electronic = add(
        cli, case_no, "electronic_data", "涉案邮件镜像", "--sha256", "ab" * 32, "--description", "员工邮箱导出"
    )
    statement = add(cli, case_no, "witness_statement", "证人张某询问笔录", "--collected-at", "2026-01-05T09:00")
    assert len({physical, electronic, statement}) == 3

    listed = {item["id"]: item for item in cli.json("evidence", "list", case_no)}
    assert list(listed) == [physical, electronic, statement]
    assert (listed[physical]["sha256"], listed[physical]["file_name"]) == (digest, sample.name)
    assert (listed[electronic]["sha256"], listed[electronic]["file_name"]) == ("ab" * 32, "")
    assert [listed[i]["must_recollect"] for i in listed] == [False, False, True]
    assert all(item["state"] == "registered" and item["holder_agency"] == "sm-amr" for item in listed.values())
    # Only the hash is kept: the file's content is nowhere in the database (file, WAL or shared memory).
    stored = db_bytes(cli)
    assert digest.encode() in stored, "sanity: the hash itself is in the bytes searched"
    assert marker.encode() not in stored
    assert "聚酰亚胺".encode() not in stored

    # Hand over with a seal number: statements need re-collecting at once; custody passes to the police.
    handed = cli.json("evidence", "handover", case_no, "--seal", SEAL, "--as", MR)
    assert {v["id"]: (v["state"], v["holder_agency"]) for v in handed} == {
        physical: ("handed_over", "sm-psb"),
        electronic: ("handed_over", "sm-psb"),
        statement: ("recollection_required", "sm-psb"),
    }

    # complete_handover is refused, naming every unresolved item.
    blocked = guard_message(cli.advance(case_no, "complete_handover", POLICE, code=EXIT_REFUSED))
    for item_id, title in ((physical, "配方样品"), (electronic, "涉案邮件镜像"), (statement, "证人张某询问笔录")):
        assert f"#{item_id} {title}" in blocked
    assert "第五十四条" in blocked

    # A witness statement cannot be admitted as collected (CPL art. 54); nothing is written.
    admit = refused(cli, case_no, EXIT_REFUSED, "evidence", "resolve", str(statement), "admitted", "--as", POLICE)
    assert f"evidence #{statement}" in admit and "刑事诉讼法》第五十四条" in admit

    # The usable items are admitted after review; only the statement still blocks the hand-over.
    for item_id in (physical, electronic):
        view = cli.json("evidence", "resolve", str(item_id), "admitted", "--as", POLICE)
        assert (view["state"], view["resolved_by"]) == ("admitted", POLICE)
    blocked = guard_message(cli.advance(case_no, "complete_handover", POLICE, code=EXIT_REFUSED))
    assert f"#{statement} 证人张某询问笔录 (recollection_required)" in blocked
    assert "配方样品" not in blocked and "涉案邮件镜像" not in blocked

    reason = "证人已出国，无法重新询问" if statement_resolution == "excluded" else ""
    extra = ("--reason", reason) if reason else ()
    view = cli.json("evidence", "resolve", str(statement), statement_resolution, *extra, "--as", POLICE)
    assert (view["state"], view["resolution_reason"]) == (statement_resolution, reason)
    view = cli.advance(case_no, "complete_handover", POLICE)
    assert (view["phase"], view["state"]) == ("criminal", "criminal_investigation")

    # The custody log: every step, in order.
    log = cli.json("evidence", "log", case_no)
    assert [int(e["seq"]) for e in log] == sorted(int(e["seq"]) for e in log)
    assert [(e["action"], e["item"]) for e in log] == [
        ("registered", physical),
        ("registered", electronic),
        ("registered", statement),
        ("handed_over", physical),
        ("handed_over", electronic),
        ("handed_over", statement),
        ("recollection_required", statement),
        ("admitted", physical),
        ("admitted", electronic),
        (statement_resolution, statement),
    ]
    assert all(e["to_agency"] == "sm-amr" and e["actor"] == MR for e in log[:3])
    assert log[0]["note"] == "证物室 A-3"
    for entry in log[3:6]:
        assert (entry["from_agency"], entry["to_agency"], entry["seal_no"], entry["actor"]) == (
            "sm-amr",
            "sm-psb",
            SEAL,
            MR,
        )
    assert "第五十四条" in log[6]["note"]
    assert all(e["actor"] == POLICE for e in log[7:])
    assert log[9]["note"] == reason
    # The same log per item in `evidence list`.
    listed = {item["id"]: item for item in cli.json("evidence", "list", case_no, "--as", POLICE)}
    assert [c["action"] for c in listed[statement]["custody"]] == [
        "registered",
        "handed_over",
        "recollection_required",
        statement_resolution,
    ]

    # The audit log has a record of each step, and its chain is intact.
    history = cli.json("case", "history", case_no)
    events = [e["event"] for e in history]
    assert events[-9:] == [
        "police_file",
        "evidence_registered",
        "evidence_registered",
        "evidence_registered",
        "evidence_handed_over",
        "evidence_resolved",
        "evidence_resolved",
        "evidence_resolved",
        "complete_handover",
    ]
    by_event: dict[str, list[dict[str, Any]]] = {}
    for record in history:
        by_event.setdefault(record["event"], []).append(record["payload"])
    assert by_event["evidence_registered"][0] == {
        "item": physical,
        "type": "physical",
        "title": "配方样品",
        "sha256": digest,
    }
    assert by_event["evidence_handed_over"] == [
        {"items": [physical, electronic, statement], "to_agency": "sm-psb", "seal_no": SEAL}
    ]
    assert by_event["evidence_resolved"] == [
        {"item": physical, "resolution": "admitted", "reason": ""},
        {"item": electronic, "resolution": "admitted", "reason": ""},
        {"item": statement, "resolution": statement_resolution, "reason": reason},
    ]
    statement_record = next(
        r for r in history if r["event"] == "evidence_registered" and r["payload"]["item"] == statement
    )
    assert statement_record["effective_at"] == "2026-01-05T09:00+08:00"  # when it was collected
    assert cli.json("audit", "verify", case_no)["ok"] is True
    assert marker.encode() not in db_bytes(cli)


# --- 2. the transfer package -------------------------------------------------------------------------


def test_transfer_refused_until_the_package_is_attached_and_its_manifest_is_recorded(cli: Cli) -> None:
    case_no = to_transfer(cli)
    before = rows(cli, case_no)
    missing = guard_message(cli.advance(case_no, "transfer_to_police", MR, code=EXIT_REFUSED))
    assert "attach: transfer_letter, investigation_report, items_list" in missing and "第六条" in missing
    cli.attach_package(case_no, "transfer_letter")
    still = guard_message(cli.advance(case_no, "transfer_to_police", MR, code=EXIT_REFUSED))
    assert "attach: investigation_report, items_list" in still and "transfer_letter," not in still
    assert rows(cli, case_no)[:3] == before[:3]  # attaching writes no audit record; the refusals nothing at all

    cli.attach_package(case_no, "investigation_report", "items_list")
    view = cli.advance(case_no, "transfer_to_police", MR)
    assert view["state"] == "police_review" and "sm-psb" in view["participants"]

    expected = sorted(
        (kind, f"{kind}.txt", hashlib.sha256((cli.tmp / f"{kind}.txt").read_bytes()).hexdigest()) for kind in PACKAGE
    )
    transfer = [e for e in cli.json("case", "history", case_no) if e["event"] == "transfer_to_police"]
    assert len(transfer) == 1
    manifest = transfer[0]["payload"]["manifest"]
    assert sorted((m["kind"], m["filename"], m["sha256"]) for m in manifest) == expected
    assert {m["kind"] for m in manifest} == set(PACKAGE)
    assert cli.json("audit", "verify", case_no)["ok"] is True

    # The manifest is inside the hash chain: changing a recorded hash is detected.
    with sqlite3.connect(cli.db) as conn:
        seq, raw = conn.execute(
            "SELECT e.seq, e.payload FROM case_events e JOIN cases c ON c.id = e.case_id "
            "WHERE c.case_no = ? AND e.event = 'transfer_to_police'",
            (case_no,),
        ).fetchone()
        payload = json.loads(raw)
        payload["manifest"][0]["sha256"] = "0" * 64
        conn.execute("DROP TRIGGER case_events_no_update")
        conn.execute("UPDATE case_events SET payload = ? WHERE seq = ?", (json.dumps(payload), seq))
    tampered = cli("audit", "verify", case_no, code=EXIT_REFUSED)
    assert f"event #{seq} (transfer_to_police) was changed" in tampered.stderr


# --- 3. bad input: one clear line, the right exit code, nothing written ------------------------------


def test_handover_before_the_police_filed_is_refused_naming_the_state(cli: Cli) -> None:
    case_no = to_police_review(cli)
    add(cli, case_no, "physical", "样品")
    line = refused(cli, case_no, EXIT_USAGE, "evidence", "handover", case_no, "--seal", SEAL, "--as", MR)
    assert f"case {case_no} is police_review" in line and "evidence_handover" in line


def test_bad_evidence_input(cli: Cli) -> None:
    case_no = to_evidence_handover(cli)
    sample = cli.tmp / "sample.bin"
    sample.write_bytes(b"sample bytes " + uuid.uuid4().bytes)
    digest = hashlib.sha256(sample.read_bytes()).hexdigest()
    first = add(cli, case_no, "physical", "样品", "--file", str(sample))

    def add_refused(*args: str) -> str:
        return refused(cli, case_no, EXIT_USAGE, "evidence", "add", case_no, "--title", "x", *args, "--as", MR)

    line = add_refused("--type", "fingerprint")
    assert "unknown evidence type 'fingerprint'" in line and "witness_statement" in line
    line = add_refused("--type", "physical", "--file", str(cli.tmp / "no-such-file.bin"))
    assert "file not found" in line and "no-such-file.bin" in line
    line = add_refused("--type", "physical", "--file", str(sample), "--sha256", "cd" * 32)
    assert "does not match the declared SHA-256" in line and sample.name in line
    line = add_refused("--type", "physical", "--sha256", "not-a-hash")
    assert "'not-a-hash' is not a SHA-256" in line
    line = add_refused("--type", "physical", "--sha256", digest[:63])
    assert "is not a SHA-256" in line
    line = add_refused("--type", "documentary", "--file", str(sample))
    assert f"already evidence #{first}" in line and digest[:12] in line
    line = add_refused("--type", "documentary", "--sha256", digest.upper())  # the same hash, declared
    assert f"already evidence #{first}" in line

    statement = add(cli, case_no, "witness_statement", "证人李某询问笔录")

    # The hand-over is the market regulator's: the police may not (6); an outside regulator cannot see the case (4).
    line = refused(cli, case_no, EXIT_DENIED, "evidence", "handover", case_no, "--seal", SEAL, "--as", POLICE)
    assert "sm_psb_handler (sm-psb) may not" in line
    line = refused(cli, case_no, EXIT_NOT_FOUND, "evidence", "handover", case_no, "--seal", SEAL, "--as", OTHER_MR)
    assert line == f"error: case {case_no} not found"
    line = refused(cli, case_no, EXIT_USAGE, "evidence", "handover", case_no, "--seal", " ", "--as", MR)
    assert "--seal" in line
    line = refused(
        cli, case_no, EXIT_USAGE, "evidence", "handover", case_no, "--seal", SEAL, "--items", "1,x", "--as", MR
    )
    assert "--items '1,x'" in line

    cli("evidence", "handover", case_no, "--seal", SEAL, "--as", MR)

    line = refused(
        cli, case_no, EXIT_USAGE, "evidence", "handover", case_no, "--seal", "S-2", "--items", str(first), "--as", MR
    )
    assert f"evidence #{first} is handed_over" in line
    line = refused(cli, case_no, EXIT_USAGE, "evidence", "resolve", str(statement), "excluded", "--as", POLICE)
    assert "--reason" in line
    line = refused(cli, case_no, EXIT_DENIED, "evidence", "resolve", str(first), "admitted", "--as", MR)
    assert f"evidence #{first} is held by sm-psb" in line and MR in line
    line = refused(cli, case_no, EXIT_USAGE, "evidence", "resolve", "9999", "admitted", "--as", POLICE)
    assert line == "error: no evidence #9999"
    line = refused(cli, case_no, EXIT_USAGE, "evidence", "resolve", str(first), "maybe", "--as", POLICE)
    assert "unknown resolution 'maybe'" in line
    # An officer who cannot see the case learns nothing about its items either.
    line = refused(cli, case_no, EXIT_USAGE, "evidence", "resolve", str(first), "admitted", "--as", "mx_psb_handler")
    assert line == f"error: no evidence #{first}"
    cli("evidence", "list", case_no, "--as", OTHER_MR, code=EXIT_NOT_FOUND)
    cli("evidence", "log", case_no, "--as", OTHER_MR, code=EXIT_NOT_FOUND)

    # The refusals as JSON objects, for scripts.
    as_json = cli("evidence", "add", case_no, "--type", "bogus", "--title", "x", "--as", MR, "--json", code=EXIT_USAGE)
    assert json.loads(as_json.stderr)["error"] == "invalid_input" and as_json.stdout == ""
    assert [item["state"] for item in cli.json("evidence", "list", case_no)] == ["handed_over", "recollection_required"]


# --- bugs found ---------------------------------------------------------------------------------------


def test_evidence_of_a_closed_case_can_no_longer_change(cli: Cli) -> None:
    case_no = cli.open()
    cli.advance(case_no, "start_verification", MR)
    cli.advance(case_no, "file_case", MR)
    item = add(cli, case_no, "physical", "样品")
    cli.advance(case_no, "notify_penalty", MR)
    assert cli.advance(case_no, "decide_penalty", MR, "fine_amount=100000")["state"] == "closed"
    line = refused(
        cli, case_no, EXIT_USAGE, "evidence", "add", case_no, "--type", "physical", "--title", "y", "--as", MR
    )
    assert "is closed" in line
    # Excluding the still-registered item of the closed case must be refused the same way.
    line = refused(
        cli, case_no, EXIT_USAGE, "evidence", "resolve", str(item), "excluded", "--reason", "补录", "--as", MR
    )
    assert "is closed" in line
