"""Notification delivery end to end through the CLI on SQLite: ``outbox relay/list/show/retry``, ``inbox``,
``inbox read`` and ``case deliveries``, with a real aiosmtpd server on 127.0.0.1 receiving the mail.

The CLI runs on the real clock; a later relay pass is simulated with ``outbox relay --once --now``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from notifications.channels import message_id
from states.calendar import SHANGHAI
from tests.e2e.test_cli import MR, POLICE, Cli, _to_police_review
from tests.integration import test_email_delivery as mail
from tests.integration.test_email_delivery import LIAISON, LIAISON_EMAIL, SmtpServer, mail_config

smtp = mail.smtp  # the same fixture: an aiosmtpd server on a free 127.0.0.1 port

MR_LIAISON, MR_LIAISON_EMAIL = "sm_amr_liaison", "sm_amr_liaison@sanming.example"


@pytest.fixture
def cli(tmp_path: Path, smtp: SmtpServer) -> Cli:
    """A fresh database from config.toml, mail to ``smtp``, parked after two failed attempts."""
    c = Cli(tmp_path)
    c.config = mail_config(tmp_path, smtp.port, max_attempts="2")
    c("init")
    return c


def one_line_error(result: Any, starts: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(starts), result.stderr
    assert "Traceback" not in result.stderr


def test_relay_once_sends_the_transfer_notice_by_smtp_and_to_the_inbox(cli: Cli, smtp: SmtpServer) -> None:
    case_no = cli.open()
    _to_police_review(cli, case_no)
    pending = cli.json("outbox", "list", "--status", "pending")
    assert {(m["recipient_user"], m["channel"], m["case_no"]) for m in pending} == {
        (LIAISON, "email", case_no),
        (LIAISON, "inbox", case_no),
    }
    [email_row] = [m for m in pending if m["channel"] == "email"]
    assert cli.json("outbox", "list", "--status", "sent") == []

    assert cli.json("outbox", "relay", "--once") == {"claimed": 2, "sent": 2, "retried": 0, "parked": 0, "batches": 1}
    [got] = smtp.envelopes
    msg = got.message
    assert got.rcpt_tos == [LIAISON_EMAIL] and msg["To"] == LIAISON_EMAIL
    assert msg["Subject"] == f"【案件协作】{case_no} 移送公安机关"
    assert msg["Message-ID"] == message_id(email_row["dedupe_key"])
    plain = msg.get_body(("plain",))
    assert plain is not None and "杨春燕：" in plain.get_content() and "移送公安机关" in plain.get_content()
    assert "relayed: 0 sent, 0 to retry, 0 parked" in cli("outbox", "relay", "--once").stdout
    assert len(smtp.envelopes) == 1
    assert {m["status"] for m in cli.json("outbox", "list", "--case", case_no)} == {"sent"}

    box = cli.json("inbox", "--as", LIAISON)
    assert box["unread"] == 1 and [(i["case_no"], i["read"]) for i in box["items"]] == [(case_no, False)]
    human = cli("inbox", "--as", LIAISON, "--unread").stdout
    assert "1 unread" in human and f"【案件协作】{case_no} 移送公安机关" in human
    assert "marked 1 item(s) read" in cli("inbox", "read", "--all", "--as", LIAISON).stdout
    assert cli.json("inbox", "--as", LIAISON, "--unread") == {"unread": 0, "items": []}
    assert [i["read"] for i in cli.json("inbox", "--as", LIAISON)["items"]] == [True]
    assert cli.json("inbox", "--as", MR_LIAISON) == {"unread": 0, "items": []}

    audit = cli.json("case", "deliveries", case_no, "--as", POLICE)
    assert {(v["channel"], v["status"], v["attempts"]) for v in audit} == {("email", "sent", 1), ("inbox", "sent", 1)}
    assert all([h["outcome"] for h in v["history"]] == ["sent"] for v in audit)
    assert cli.json("case", "deliveries", case_no, "--as", "sm_amr_supervisor") == audit
    assert "投递记录" in cli("case", "deliveries", case_no).stdout
    one_line_error(cli("case", "deliveries", case_no, "--as", LIAISON, code=6), "error: case ")
    one_line_error(cli("case", "deliveries", case_no, "--as", "mx_psb_handler", code=4), "error: ")


def test_server_down_parks_and_only_an_admin_retries(cli: Cli, smtp: SmtpServer) -> None:
    case_no = cli.open()
    _to_police_review(cli, case_no)
    cli("outbox", "relay", "--once")
    assert [e.rcpt_tos for e in smtp.envelopes] == [[LIAISON_EMAIL]]
    cli.advance(case_no, "police_file", POLICE)  # the regulator's liaison is told now
    smtp.stop()

    first = cli.json("outbox", "relay", "--once")
    assert (first["sent"], first["retried"], first["parked"]) == (1, 1, 0), "inbox delivered, email to retry"
    [waiting] = cli.json("outbox", "list", "--status", "pending")
    assert (waiting["recipient_user"], waiting["attempts"]) == (MR_LIAISON, 1)
    assert "Connection refused" in waiting["last_error"] and waiting["next_attempt_at"]

    later = (datetime.now(SHANGHAI) + timedelta(hours=1)).isoformat(timespec="seconds")
    assert cli.json("outbox", "relay", "--once", "--now", later)["parked"] == 1
    [dead] = cli.json("outbox", "list", "--status", "dead")
    assert (dead["recipient_user"], dead["channel"], dead["attempts"]) == (MR_LIAISON, "email", 2)
    assert cli.json("outbox", "list", "--status", "pending") == []
    human = cli("outbox", "list", "--status", "dead").stdout
    assert "dead" in human and MR_LIAISON in human and case_no in human

    shown = cli.json("outbox", "show", str(dead["id"]))
    assert [h["outcome"] for h in shown["history"]] == ["failed", "dead"]
    assert shown["body"].startswith("王秀英：") and case_no in shown["subject"]
    text = cli("outbox", "show", str(dead["id"])).stdout
    assert f"dedupe key: {dead['dedupe_key']}" in text and "王秀英：" in text
    assert "attempt 1" in text and "attempt 2" in text and "Connection refused" in text

    refused = cli("outbox", "retry", str(dead["id"]), "--as", MR, code=6)
    one_line_error(refused, f"error: {MR} is not an admin")
    one_line_error(cli("outbox", "retry", "--all-dead", "--as", LIAISON, code=6), f"error: {LIAISON} is not an admin")
    assert [m["id"] for m in cli.json("outbox", "list", "--status", "dead")] == [dead["id"]]

    smtp.start()
    assert "requeued 1 message(s)" in cli("outbox", "retry", "--all-dead", "--as", "admin").stdout
    assert cli.json("outbox", "relay", "--once")["sent"] == 1
    _transfer, got = smtp.envelopes
    assert got.rcpt_tos == [MR_LIAISON_EMAIL] and got.message["Message-ID"] == message_id(dead["dedupe_key"])
    assert cli.json("outbox", "list", "--status", "dead") == []
    assert cli.json("outbox", "relay", "--once")["claimed"] == 0 and len(smtp.envelopes) == 2

    audit = cli.json("case", "deliveries", case_no, "--as", MR)
    [row] = [v for v in audit if v["id"] == dead["id"]]
    assert row["status"] == "sent" and [h["outcome"] for h in row["history"]] == ["failed", "dead", "requeued", "sent"]
    assert cli.json("inbox", "--as", MR_LIAISON)["unread"] == 1


def test_bad_input_is_one_line_with_its_exit_code(cli: Cli) -> None:
    result = cli("outbox", "list", "--status", "bogus", code=2)
    one_line_error(result, "error: unknown status 'bogus'; use one of pending, sent, dead")
    as_json = json.loads(cli("outbox", "list", "--status", "bogus", "--json", code=2).stderr)
    assert as_json["error"] == "invalid_input"
    one_line_error(cli("outbox", "show", "999", code=2), "error: no outbox message #999")
    one_line_error(cli("outbox", "retry", "--as", "admin", code=2), "error: name the message ids")
    one_line_error(cli("outbox", "retry", "1", "--all-dead", "--as", "admin", code=2), "error: give message ids")
    one_line_error(
        cli("outbox", "retry", "999", "--as", "admin", code=2), "error: not parked (dead) or not found: #999"
    )
    one_line_error(cli("outbox", "relay", "--once", "--now", "yesterday", code=2), "error: --now: 'yesterday'")
    one_line_error(cli("outbox", "list", "--case", "sm-amr-2026-9999", code=4), "error: ")
    one_line_error(cli("inbox", code=2), "error: whose inbox? give --as USER")
    one_line_error(cli("inbox", "read", "--as", LIAISON, code=2), "error: name the item ids, or --all")
    one_line_error(cli("inbox", "read", "999", "--as", LIAISON, code=2), f"error: not an unread item of {LIAISON}")
    one_line_error(cli("inbox", "--as", "nobody", code=6), "error: ")
    one_line_error(cli("case", "deliveries", "sm-amr-2026-9999", code=4), "error: ")
    assert cli.counts()["outbox"] == 0
