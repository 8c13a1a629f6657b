"""Official documents generated from a case, end to end through the CLI on SQLite (``jointcase doc …``).

The market regulator drives a case to ``awaiting_transfer`` and generates its 涉嫌犯罪案件移送书 with
``doc render … --attach``: the letter's HTML becomes the case file's ``transfer_letter``, so
``transfer_to_police`` goes through and its manifest on the audit log carries the letter's SHA-256.
Regenerating an unchanged case returns the stored version; 文号 count per agency and year. Bad input
gives one ``error:`` line, the right exit code, and writes nothing. Also ``evidence verify``: a file
presented again is checked against the item's registered SHA-256.

"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tests.e2e import test_cli as base
from tests.e2e.test_cli import MR, POLICE, Cli
from tests.e2e.test_evidence_cli import (
    EXIT_DENIED,
    EXIT_NOT_FOUND,
    EXIT_REFUSED,
    EXIT_USAGE,
    OTHER_MR,
    add,
    guard_message,
    one_error_line,
    to_police_review,
    to_transfer,
)

cli = base.cli  # the same fixture: a fresh database from config.toml

KINDS = (
    "transfer_letter",
    "transfer_receipt",
    "decline_notice",
    "reconsideration_request",
    "supervision_request",
    "evidence_list",
    "supervision_notice",
)


# --- helpers ----------------------------------------------------------------------------------------


def this_year() -> int:
    """The current year in Beijing: 文号 are counted per agency and calendar year there."""
    return datetime.now(ZoneInfo("Asia/Shanghai")).year


def doc_no(prefix: str, seq: int) -> str:
    return f"{prefix}〔{this_year()}〕{seq}号"


def render(cli: Cli, case_no: str, kind: str, actor: str = MR, *extra: str) -> dict[str, Any]:
    """``doc render --json``: the document view (without its HTML)."""
    return dict(cli.json("doc", "render", case_no, kind, *extra, "--as", actor))


def stored(cli: Cli) -> tuple[Any, ...]:
    """Everything a document command may write: documents, 文号 counters, attachments, the audit log."""
    with sqlite3.connect(cli.db) as conn:
        documents = conn.execute(
            "SELECT id, kind, version, doc_no, sha256 FROM generated_documents ORDER BY id"
        ).fetchall()
        counters = conn.execute(
            "SELECT agency_code, year, last FROM document_number_sequences ORDER BY agency_code, year"
        ).fetchall()
        attachments = conn.execute("SELECT count(*) FROM attachments").fetchone()[0]
        events = conn.execute("SELECT count(*) FROM case_events").fetchone()[0]
    return tuple(documents), tuple(counters), attachments, events


def table_count(cli: Cli, table: str) -> int:
    with sqlite3.connect(cli.db) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def doc_refused(cli: Cli, code: int, *args: str) -> str:
    """Run a command that must fail with ``code``: one ``error:`` line, nothing written."""
    before = stored(cli)
    result = cli(*args, code=code)
    line = one_error_line(result.stderr)
    assert result.stdout == "", result.stdout
    assert stored(cli) == before, (args, "wrote something")
    return line


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the transfer letter: generated, attached, sent -----------------------------------------------------


def test_generated_transfer_letter_is_attached_and_its_hash_is_in_the_transfer_manifest(cli: Cli) -> None:
    case_no = to_transfer(cli)
    cli.attach_package(case_no, "investigation_report", "items_list")

    # Without the letter the transfer is refused, naming it (and only it).
    before = stored(cli)
    missing = guard_message(cli.advance(case_no, "transfer_to_police", MR, code=EXIT_REFUSED))
    assert "attach: transfer_letter" in missing and "items_list" not in missing
    assert stored(cli) == before

    letter = render(cli, case_no, "transfer_letter", MR, "--attach")
    assert letter["kind"] == "transfer_letter" and letter["title"] == "涉嫌犯罪案件移送书"
    assert (letter["issuing_agency"], letter["recipient_agency"]) == ("sm-amr", "sm-psb")
    assert (letter["new"], letter["version"], letter["doc_no"]) == (True, 1, doc_no("明市监", 1))
    assert letter["generated_by"] == MR and len(letter["sha256"]) == 64
    assert letter["pdf"] == "" and "html" not in letter
    # No --pdf: the HTML itself is attached, as the case file's transfer_letter, named after the version.
    assert letter["attachment"] == {
        "kind": "transfer_letter",
        "filename": f"{case_no}_transfer_letter_v1.html",
        "sha256": letter["sha256"],
        "new": True,
    }
    blob = cli.tmp / "attachments" / letter["sha256"][:2] / letter["sha256"]
    assert sha256_file(blob) == letter["sha256"], "the attached file is the stored HTML, byte for byte"
    html = blob.read_text(encoding="utf-8")
    assert case_no in html and "三明市市场监督管理局" in html and "三明市公安局" in html
    assert doc_no("明市监", 1) in html
    # The letter lists the rest of the package with each file's SHA-256.
    for kind in ("investigation_report", "items_list"):
        assert f'{kind}.txt，SHA-256 <span class="hash">{sha256_file(cli.tmp / f"{kind}.txt")}</span>' in html

    # Attaching the same version again is a no-op.
    attachments = table_count(cli, "attachments")
    again = render(cli, case_no, "transfer_letter", MR, "--attach")
    assert (again["new"], again["version"], again["sha256"]) == (False, 1, letter["sha256"])
    assert again["attachment"] == {**letter["attachment"], "new": False}
    assert table_count(cli, "attachments") == attachments

    view = cli.advance(case_no, "transfer_to_police", MR)
    assert view["state"] == "police_review" and "sm-psb" in view["participants"]

    [transfer] = [e for e in cli.json("case", "history", case_no) if e["event"] == "transfer_to_police"]
    manifest = {m["kind"]: m for m in transfer["payload"]["manifest"]}
    assert set(manifest) == {"transfer_letter", "investigation_report", "items_list"}
    assert manifest["transfer_letter"]["sha256"] == letter["sha256"]
    assert manifest["transfer_letter"]["filename"] == f"{case_no}_transfer_letter_v1.html"
    # The same, read from the hash-chained row itself.
    with sqlite3.connect(cli.db) as conn:
        (raw,) = conn.execute(
            "SELECT e.payload FROM case_events e JOIN cases c ON c.id = e.case_id "
            "WHERE c.case_no = ? AND e.event = 'transfer_to_police'",
            (case_no,),
        ).fetchone()
    assert {m["kind"]: m["sha256"] for m in json.loads(raw)["manifest"]}["transfer_letter"] == letter["sha256"]
    assert cli.json("audit", "verify", case_no)["ok"] is True

    # The letter as sent does not change by being sent: regenerating it gives the attached version.
    after = render(cli, case_no, "transfer_letter")
    assert (after["new"], after["version"], after["sha256"]) == (False, 1, letter["sha256"])


def test_human_output_of_render_and_attach(cli: Cli) -> None:
    case_no = to_transfer(cli)
    first = cli("doc", "render", case_no, "transfer_letter", "--attach", "--as", MR).stdout
    assert f"涉嫌犯罪案件移送书 {doc_no('明市监', 1)} v1 (new version)" in first
    assert f"attached as transfer_letter: {case_no}_transfer_letter_v1.html" in first
    second = cli("doc", "render", case_no, "transfer_letter", "--attach", "--as", MR).stdout
    assert "(unchanged)" in second
    assert f"already attached as transfer_letter: {case_no}_transfer_letter_v1.html" in second


# --- versions and 文号 ---------------------------------------------------------------------------------


def test_regenerating_is_idempotent_and_numbers_count_per_agency_and_year(cli: Cli) -> None:
    first_case, second_case = to_transfer(cli), to_transfer(cli)

    first = render(cli, first_case, "transfer_letter")
    again = render(cli, first_case, "transfer_letter")
    assert (first["new"], again["new"]) == (True, False)
    for key in ("sha256", "doc_no", "version", "generated_at", "template_version"):
        assert again[key] == first[key], key
    assert first["doc_no"] == doc_no("明市监", 1)
    assert table_count(cli, "generated_documents") == 1

    listed = cli.json("doc", "list", first_case)
    assert len(listed) == 1
    [row] = listed
    assert (row["kind"], row["version"], row["doc_no"], row["sha256"]) == (
        "transfer_letter",
        1,
        first["doc_no"],
        first["sha256"],
    )
    assert (row["issuing_agency"], row["recipient_agency"], row["generated_by"]) == ("sm-amr", "sm-psb", MR)
    assert "html" not in row
    assert cli.json("doc", "list", first_case, "--as", MR) == listed
    assert cli.json("doc", "list", second_case) == []

    # A second case of the same agency gets the next number; the first keeps its own.
    second = render(cli, second_case, "transfer_letter")
    assert (second["new"], second["version"], second["doc_no"]) == (True, 1, doc_no("明市监", 2))
    assert render(cli, first_case, "transfer_letter")["doc_no"] == doc_no("明市监", 1)

    # Another agency counts on its own: the police's first document is their number 1.
    police_case = to_police_review(cli)
    receipt = render(cli, police_case, "transfer_receipt", POLICE)
    assert (receipt["issuing_agency"], receipt["recipient_agency"]) == ("sm-psb", "sm-amr")
    assert receipt["doc_no"] == doc_no("明公", 1)
    assert render(cli, police_case, "transfer_letter")["doc_no"] == doc_no("明市监", 3)
    with sqlite3.connect(cli.db) as conn:
        counters = conn.execute("SELECT agency_code, year, last FROM document_number_sequences ORDER BY 1").fetchall()
    assert counters == [("sm-amr", this_year(), 3), ("sm-psb", this_year(), 1)]


def test_a_changed_case_gives_a_new_version_under_the_same_number(cli: Cli) -> None:
    case_no = to_transfer(cli)
    first = render(cli, case_no, "transfer_letter")
    cli.attach_package(case_no, "investigation_report")  # the letter lists the package: its content changes
    second = render(cli, case_no, "transfer_letter")
    assert (second["new"], second["version"], second["doc_no"]) == (True, 2, first["doc_no"])
    assert second["sha256"] != first["sha256"]
    assert [(d["version"], d["sha256"]) for d in cli.json("doc", "list", case_no)] == [
        (1, first["sha256"]),
        (2, second["sha256"]),
    ]
    with sqlite3.connect(cli.db) as conn:
        assert conn.execute("SELECT last FROM document_number_sequences").fetchall() == [(1,)]
    assert cli.json("doc", "show", case_no, "transfer_letter")["version"] == 2
    assert cli.json("doc", "show", case_no, "transfer_letter", "--version", "1")["sha256"] == first["sha256"]


def test_doc_show_writes_the_stored_html(cli: Cli) -> None:
    case_no = to_transfer(cli)
    rendered = cli.tmp / "out" / "rendered.html"
    letter = render(cli, case_no, "transfer_letter", MR, "--html", str(rendered))
    assert sha256_file(rendered) == letter["sha256"]

    shown_path = cli.tmp / "shown" / "letter.html"
    shown = cli.json("doc", "show", case_no, "transfer_letter", "--html", str(shown_path))
    assert shown_path.read_bytes() == rendered.read_bytes()
    assert sha256_file(shown_path) == shown["sha256"] == letter["sha256"]
    assert (shown["doc_no"], shown["version"], shown["new"]) == (letter["doc_no"], 1, False)
    text = shown_path.read_text(encoding="utf-8")
    assert "涉嫌犯罪案件移送书" in text and letter["doc_no"] in text and case_no in text
    plain = cli("doc", "show", case_no, "transfer_letter").stdout
    assert letter["doc_no"] in plain and letter["sha256"] in plain


def test_doc_kinds_lists_every_generated_kind(cli: Cli) -> None:
    kinds = {k["kind"]: k for k in cli.json("doc", "kinds")}
    assert set(KINDS) <= set(kinds)
    assert kinds["transfer_letter"]["title"] == "涉嫌犯罪案件移送书"
    assert kinds["transfer_letter"]["issuer_kind"] == "market_regulation"
    assert kinds["transfer_receipt"]["issuer_kind"] == kinds["decline_notice"]["issuer_kind"] == "police"
    assert "移送回执" in cli("doc", "kinds").stdout


def test_pdf_without_chromium_is_refused_but_the_version_is_stored(cli: Cli) -> None:
    missing = cli.tmp / "no-browser" / "chromium"
    config = cli.config.read_text(encoding="utf-8")
    patched, found = re.subn(r'(?m)^chromium_path = "[^"]*"', f'chromium_path = "{missing}"', config)
    assert found == 1, "config.toml no longer has a [documents] chromium_path line"
    cli.config.write_text(patched, encoding="utf-8")
    case_no = to_transfer(cli)
    pdf = cli.tmp / "letter.pdf"
    attachments = table_count(cli, "attachments")

    result = cli(
        "doc", "render", case_no, "transfer_letter", "--pdf", str(pdf), "--attach", "--as", MR, code=EXIT_USAGE
    )
    line = one_error_line(result.stderr)
    assert str(missing) in line and "install" in line and "chromium" in line
    assert f"{doc_no('明市监', 1)} v1 is stored" in line
    assert not pdf.exists() and table_count(cli, "attachments") == attachments
    [row] = cli.json("doc", "list", case_no)
    assert (row["version"], row["doc_no"]) == (1, doc_no("明市监", 1))
    # Without --pdf the same version is there, unchanged.
    assert render(cli, case_no, "transfer_letter")["new"] is False


# --- bad input: one clear line, the right exit code, nothing written ----------------------------------


def test_bad_document_requests_write_nothing(cli: Cli) -> None:
    case_no = to_police_review(cli)
    render(cli, case_no, "transfer_letter")  # something stored, so "nothing written" is not trivially true
    assert table_count(cli, "generated_documents") == table_count(cli, "document_number_sequences") == 1

    line = doc_refused(cli, EXIT_USAGE, "doc", "render", case_no, "summons", "--as", MR)
    assert "unknown document kind 'summons'" in line and "transfer_letter" in line

    # The event a kind reports is not on the record: the message names it and the case's state.
    line = doc_refused(cli, EXIT_USAGE, "doc", "render", case_no, "decline_notice", "--as", POLICE)
    assert "police_decline" in line and "police_review" in line and case_no in line
    line = doc_refused(cli, EXIT_USAGE, "doc", "render", case_no, "supervision_request", "--as", MR)
    assert "request_supervision" in line
    line = doc_refused(cli, EXIT_USAGE, "doc", "render", case_no, "evidence_list", "--as", MR)
    assert "evidence_list" in line and "handed over" in line

    # The wrong agency issuing: the police take part in the case but the letter is the regulator's.
    line = doc_refused(cli, EXIT_DENIED, "doc", "render", case_no, "transfer_letter", "--as", POLICE)
    assert "sm-amr" in line and POLICE in line and "may not" in line
    line = doc_refused(cli, EXIT_DENIED, "doc", "render", case_no, "transfer_receipt", "--as", MR)
    assert "sm-psb" in line and MR in line

    # An unknown case, and a case the actor cannot see: the same answer.
    line = doc_refused(cli, EXIT_NOT_FOUND, "doc", "render", "sm-amr-1999-9999", "transfer_letter", "--as", MR)
    assert line == "error: case sm-amr-1999-9999 not found"
    line = doc_refused(cli, EXIT_NOT_FOUND, "doc", "render", case_no, "transfer_letter", "--as", OTHER_MR)
    assert line == f"error: case {case_no} not found"
    line = doc_refused(cli, EXIT_NOT_FOUND, "doc", "list", case_no, "--as", OTHER_MR)
    assert line == f"error: case {case_no} not found"
    line = doc_refused(cli, EXIT_NOT_FOUND, "doc", "show", case_no, "transfer_letter", "--as", OTHER_MR)
    assert line == f"error: case {case_no} not found"
    line = doc_refused(cli, EXIT_NOT_FOUND, "doc", "list", "sm-amr-1999-9999")
    assert line == "error: case sm-amr-1999-9999 not found"
    line = doc_refused(cli, EXIT_DENIED, "doc", "render", case_no, "transfer_letter", "--as", "nobody")
    assert "unknown or inactive officer 'nobody'" in line

    # Showing what was never generated, or a version that does not exist.
    line = doc_refused(cli, EXIT_USAGE, "doc", "show", case_no, "transfer_receipt")
    assert "no transfer_receipt" in line and f"doc render {case_no} transfer_receipt" in line
    line = doc_refused(cli, EXIT_USAGE, "doc", "show", case_no, "transfer_letter", "--version", "7")
    assert "no version 7 of transfer_letter" in line
    shown = cli.tmp / "never.html"
    doc_refused(cli, EXIT_USAGE, "doc", "show", case_no, "transfer_receipt", "--html", str(shown))
    assert not shown.exists()

    # For scripts: a JSON object on stderr, nothing on stdout.
    as_json = cli("doc", "render", case_no, "decline_notice", "--as", POLICE, "--json", code=EXIT_USAGE)
    error = json.loads(as_json.stderr)
    assert error["error"] == "invalid_input" and "police_decline" in error["message"]
    assert as_json.stdout == ""
    denied = cli("doc", "render", case_no, "transfer_letter", "--as", POLICE, "--json", code=EXIT_DENIED)
    assert json.loads(denied.stderr)["error"] == "permission_denied"

    assert table_count(cli, "generated_documents") == table_count(cli, "document_number_sequences") == 1


# --- evidence verify ------------------------------------------------------------------------------------


def test_evidence_verify_logs_a_match_and_refuses_a_different_file(cli: Cli) -> None:
    case_no = cli.open()
    cli.advance(case_no, "start_verification", MR)
    cli.advance(case_no, "file_case", MR)
    sample = cli.tmp / "配方样品扫描.bin"
    sample.write_bytes("配方：聚酰亚胺 42.5% / 固化剂 7.1%\n".encode())
    digest = sha256_file(sample)
    item = add(cli, case_no, "physical", "配方样品", "--file", str(sample))
    statement = add(cli, case_no, "witness_statement", "证人询问笔录")  # registered without a file

    def custody() -> int:
        return table_count(cli, "custody_entries")

    def verify_refused(code: int, *args: str) -> str:
        before = (custody(), stored(cli))
        line = one_error_line(cli("evidence", "verify", *args, code=code).stderr)
        assert (custody(), stored(cli)) == before, (args, "wrote something")
        return line

    # The same bytes under another name are the same evidence.
    copy = cli.tmp / "received" / "copy.bin"
    copy.parent.mkdir()
    copy.write_bytes(sample.read_bytes())
    entries = custody()
    view = cli.json("evidence", "verify", str(item), "--file", str(copy), "--as", MR)
    assert (view["id"], view["sha256"], view["case_no"]) == (item, digest, case_no)
    assert custody() == entries + 1
    log = cli.json("evidence", "log", case_no)
    assert (log[-1]["action"], log[-1]["item"], log[-1]["actor"]) == ("verified", item, MR)
    assert "copy.bin" in log[-1]["note"] and digest in log[-1]["note"]
    assert "verified" in cli("evidence", "log", case_no).stdout
    plain = cli("evidence", "verify", str(item), "--file", str(sample), "--as", MR).stdout
    assert f"evidence #{item}" in plain and "matches" in plain
    assert [e["action"] for e in cli.json("evidence", "log", case_no) if e["item"] == item] == [
        "registered",
        "verified",
        "verified",
    ]

    # A different file: refused with both hashes, nothing written.
    other = cli.tmp / "other.bin"
    other.write_bytes(b"not the formula")
    line = verify_refused(EXIT_USAGE, str(item), "--file", str(other), "--as", MR)
    assert "does not match" in line and f"evidence #{item}" in line and "other.bin" in line
    assert digest[:12] in line and sha256_file(other)[:12] in line

    line = verify_refused(EXIT_USAGE, str(item), "--file", str(cli.tmp / "no-such.bin"), "--as", MR)
    assert "file not found" in line and "no-such.bin" in line
    line = verify_refused(EXIT_USAGE, str(statement), "--file", str(sample), "--as", MR)
    assert f"evidence #{statement}" in line and "without a file hash" in line
    line = verify_refused(EXIT_USAGE, "9999", "--file", str(sample), "--as", MR)
    assert line == "error: no evidence #9999"
    # An officer who cannot see the case learns nothing about its items.
    line = verify_refused(EXIT_USAGE, str(item), "--file", str(sample), "--as", OTHER_MR)
    assert line == f"error: no evidence #{item}"
    as_json = cli("evidence", "verify", str(item), "--file", str(other), "--as", MR, "--json", code=EXIT_USAGE)
    assert json.loads(as_json.stderr)["error"] == "invalid_input" and as_json.stdout == ""
    assert custody() == entries + 2


# --- regressions -------------------------------------------------------------------------------------------


def test_the_sent_transfer_letter_does_not_change_after_the_transfer(cli: Cli) -> None:
    case_no = to_transfer(cli)
    cli.attach_package(case_no, "investigation_report", "items_list")
    letter = render(cli, case_no, "transfer_letter", MR, "--attach")
    cli.advance(case_no, "transfer_to_police", MR)
    cli.advance(case_no, "police_file", POLICE)
    add(cli, case_no, "physical", "配方样品")  # evidence registered at the hand-over, after the letter was sent
    again = render(cli, case_no, "transfer_letter")
    assert (again["new"], again["version"], again["sha256"]) == (False, 1, letter["sha256"])
