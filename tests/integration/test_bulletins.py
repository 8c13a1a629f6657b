"""Information bulletins (信息通报) on SQLite: figures of a fixture month against a count made by hand.

The fixture month is March 2026 (Beijing time). Six cases are driven through the real use cases with the
injected clock set to literal times (each event happens "now"), one of them in the county of 将乐县; the
deadline sweep fires a missed T7 (the police did not decide within 3 days), lists that case for supervision
and later escalates a missed progress report; a supervisor delists it. Events of February and April are on
the record too, and must not count. Every expected figure below is worked out in the comments from the
timeline, not by running the code under test.
"""

from __future__ import annotations

import asyncio
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from app.settings import ConfigError, load_settings
from models.tables import Bulletin, OutboxMessage
from states.calendar import SHANGHAI
from states.errors import InvalidInput, PermissionDenied
from tests.conftest import EVENT_DATA, TRANSFER_PACKAGE, FakeClock, actor_for, make_deps, write_config
from workflows.bulletins import (
    METRIC_IDS,
    METRICS,
    STAGE_IDS,
    STAGES,
    compute_figures,
    generate_bulletin,
    list_bulletins,
    parse_period,
    previous_period,
    show_bulletin,
)
from workflows.cases import advance_case, attach_file, open_case
from workflows.deadlines import fire_due_deadlines
from workflows.supervision import delist
from workflows.uow import Deps, UnitOfWork

MR, JL_MR, JL_POLICE, SUPERVISOR = "sm_amr_handler", "jl_amr_handler", "jl_psb_handler", "sm_amr_supervisor"


def bj(text: str) -> datetime:
    """A literal Beijing time."""
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


class Month:
    """Drives the fixture through the use cases, each step at a literal Beijing time on the FakeClock."""

    def __init__(self, deps: Deps, clock: FakeClock, files: Path) -> None:
        self.deps, self.clock, self.files = deps, clock, files
        self.cases: dict[str, str] = {}

    def at(self, when: str) -> None:
        self.clock.now = bj(when).astimezone(UTC)

    def open(self, name: str, when: str, agency: str = "sm-amr", actor: str = MR) -> None:
        self.at(when)
        view = open_case(self.deps, agency=agency, title=f"{name} 某公司技术秘密案", source="report", actor=actor)
        self.cases[name] = view.case_no

    def send(self, name: str, when: str, event: str, actor: str | None = None, **data: Any) -> None:
        self.at(when)
        payload = {**EVENT_DATA.get(event, {}), **data}
        advance_case(self.deps, self.cases[name], event, actor=actor or actor_for(event), data=payload)

    def transfer(self, name: str, when: str, actor: str = MR) -> None:
        self.at(when)
        for kind in TRANSFER_PACKAGE:
            path = self.files / f"{name}-{kind}.txt"
            path.write_text(f"{name} {kind}\n", encoding="utf-8")
            attach_file(self.deps, self.cases[name], kind, path, actor=actor)
        self.send(name, when, "transfer_to_police", actor=actor)

    def sweep(self, when: str) -> None:
        self.at(when)
        fire_due_deadlines(self.deps)


def build_month(deps: Deps, clock: FakeClock, files: Path) -> Month:
    """The fixture, in time order. Case F and D start in February, E and some steps of A and D are in April."""
    m = Month(deps, clock, files)
    # February (outside March): F received, verified and filed; D received and verification started.
    m.open("F", "2026-02-10T09:00")
    m.send("F", "2026-02-11T09:00", "start_verification")
    m.send("F", "2026-02-12T09:00", "file_case")
    m.open("D", "2026-02-20T09:00")
    m.send("D", "2026-02-24T09:00", "start_verification")
    # March.
    m.send("F", "2026-03-02T09:00", "propose_referral")
    m.send("F", "2026-03-03T09:00", "approve_referral")
    m.transfer("F", "2026-03-03T15:00")
    m.open("A", "2026-03-04T10:00")
    m.send("A", "2026-03-04T11:00", "start_verification")
    m.open("B", "2026-03-04T12:00")
    m.send("B", "2026-03-04T13:00", "start_verification")
    m.open("C", "2026-03-05T09:00")
    m.send("C", "2026-03-05T10:00", "start_verification")
    m.send("B", "2026-03-05T12:00", "file_case")
    m.send("F", "2026-03-05T15:00", "police_file")
    m.send("C", "2026-03-05T15:00", "file_case")
    m.send("F", "2026-03-06T09:00", "complete_handover")
    m.send("A", "2026-03-06T10:00", "file_case")
    m.send("B", "2026-03-06T12:00", "propose_referral")
    m.send("C", "2026-03-06T15:00", "propose_referral")
    m.send("C", "2026-03-07T15:00", "approve_referral")
    m.transfer("C", "2026-03-08T09:00")  # Sunday; T7 (3 days) ends Wed 2026-03-11 23:59:59, and is missed
    m.send("D", "2026-03-09T09:00", "file_case")
    m.send("B", "2026-03-09T12:00", "approve_referral")
    m.transfer("B", "2026-03-09T18:00")
    m.open("J", "2026-03-10T09:00", agency="jl-amr", actor=JL_MR)
    m.send("A", "2026-03-10T10:00", "propose_referral")
    m.send("J", "2026-03-10T10:00", "start_verification", actor=JL_MR)
    m.send("J", "2026-03-11T09:00", "file_case", actor=JL_MR)
    m.send("A", "2026-03-11T10:00", "approve_referral")
    m.transfer("A", "2026-03-11T16:00")
    m.send("B", "2026-03-11T18:00", "police_decline")
    m.send("J", "2026-03-12T09:00", "propose_referral", actor=JL_MR)
    m.send("J", "2026-03-12T15:00", "approve_referral", actor=JL_MR)
    m.send("B", "2026-03-12T18:00", "request_reconsideration")
    m.transfer("J", "2026-03-13T09:00", actor=JL_MR)  # to jl-psb, the police of its county
    m.send("A", "2026-03-13T10:00", "police_file")
    # The sweep: C's T7 miss (at 03-11 23:59:59, to the police) and, 2 days later, the auto-listing (city
    # level, in the name of sm-amr) are due; nothing else is (every other clock is met or runs later).
    m.sweep("2026-03-14T09:00")
    m.send("A", "2026-03-14T10:00", "complete_handover")
    m.send("B", "2026-03-14T18:00", "uphold_decline")
    m.send("J", "2026-03-16T09:00", "police_file", actor=JL_POLICE)
    m.send("A", "2026-03-16T10:00", "submit_for_prosecution")
    m.send("B", "2026-03-16T18:00", "request_supervision")
    m.send("J", "2026-03-17T09:00", "complete_handover", actor=JL_POLICE)
    m.send("A", "2026-03-20T10:00", "indict")
    m.send("B", "2026-03-20T18:00", "supervision_upholds_decline")
    # The listing's first progress report (every 15 days from 03-14: 03-29, a Sunday, rolled to 03-30) is
    # missed: one escalation (at 03-30 23:59:59, in the name of the listing agency sm-amr).
    m.sweep("2026-03-31T09:00")
    m.at("2026-03-31T10:00")
    delist(deps, m.cases["C"], actor=SUPERVISOR, result="公安机关已说明情况，摘牌")
    # April (outside): a new lead, the judgment of A, D's referral proposal.
    m.open("E", "2026-04-01T09:00")
    m.send("E", "2026-04-01T10:00", "start_verification")
    m.send("A", "2026-04-01T11:00", "pronounce_judgment")
    m.send("D", "2026-04-01T12:00", "propose_referral")
    m.at("2026-04-02T09:00")
    return m


@pytest.fixture
def month(deps: Deps, clock: FakeClock, tmp_path: Path) -> Month:
    files = tmp_path / "files"
    files.mkdir()
    return build_month(deps, clock, files)


# --- the figures, by hand ----------------------------------------------------------------------------------

ZERO: dict[str, Any] = {m: 0 for m in METRIC_IDS} | {"police_filing_rate": None}

# March, per agency (the agency that sent each event):
#  sm-amr   leads A B C (F, D in Feb; E in Apr) = 3; file_case B C A D = 4 (F in Feb); propose F B C A = 4;
#           approve F C B A = 4; transfer F C B A = 4; request_reconsideration B; request_supervision B;
#           supervision_listed C (auto, city level = sm-amr); supervision_escalated C; supervision_delisted C.
#  sm-psb   police_file F A = 2; police_decline B = 1 → rate 2/3; uphold_decline B; deadline_missed C (T7).
#  sm-procuratorate  supervision_upholds_decline B.
#  jl-amr   lead, file, propose, approve, transfer J; jl-psb police_file J → rate 1/1.
SM_AMR = ZERO | {
    "leads_received": 3,
    "cases_filed": 4,
    "referrals_proposed": 4,
    "referrals_approved": 4,
    "referrals_transferred": 4,
    "reconsiderations": 1,
    "supervision_requests": 1,
    "supervisions_listed": 1,
    "supervisions_delisted": 1,
    "supervision_escalations": 1,
}
SM_PSB = ZERO | {
    "police_filed": 2,
    "police_declined": 1,
    "police_filing_rate": 0.6667,
    "reconsideration_upheld": 1,
    "deadlines_missed": 1,
}
SM_PROCURATORATE = ZERO | {"supervision_upheld_decline": 1}
JL_AMR = ZERO | {
    "leads_received": 1,
    "cases_filed": 1,
    "referrals_proposed": 1,
    "referrals_approved": 1,
    "referrals_transferred": 1,
}
JL_PSB = ZERO | {"police_filed": 1, "police_filing_rate": 1.0}
SANMING = ZERO | {
    "leads_received": 3,
    "cases_filed": 4,
    "referrals_proposed": 4,
    "referrals_approved": 4,
    "referrals_transferred": 4,
    "police_filed": 2,
    "police_declined": 1,
    "police_filing_rate": 0.6667,
    "reconsiderations": 1,
    "reconsideration_upheld": 1,
    "supervision_requests": 1,
    "supervision_upheld_decline": 1,
    "supervisions_listed": 1,
    "supervisions_delisted": 1,
    "supervision_escalations": 1,
    "deadlines_missed": 1,
}
JIANGLE = ZERO | {
    "leads_received": 1,
    "cases_filed": 1,
    "referrals_proposed": 1,
    "referrals_approved": 1,
    "referrals_transferred": 1,
    "police_filed": 1,
    "police_filing_rate": 1.0,
}
TOTAL = SANMING | {
    "leads_received": 4,
    "cases_filed": 5,
    "referrals_proposed": 5,
    "referrals_approved": 5,
    "referrals_transferred": 5,
    "police_filed": 3,
    "police_filing_rate": 0.75,  # 3 filed of 4 decisions
}

NONE: dict[str, dict[str, Any]] = {s: {"count": 0, "median_days": None} for s in STAGE_IDS}


def st(count: int, median: float) -> dict[str, Any]:
    return {"count": count, "median_days": median}


# Stage times whose end event is in March, in days (median rounded half up to 0.1):
#  verification   A 03-04 10:00→03-06 10:00 = 2; B 03-04 12:00→03-05 12:00 = 1; C 03-05 09:00→15:00 = 0.25;
#                 D 02-20 09:00→03-09 09:00 = 17 → sm-amr median of [0.25, 1, 2, 17] = 1.5; J = 1 (jl-amr).
#                 (F was filed in February: not counted.) All: [0.25, 1, 1, 2, 17] → 1.
#  investigation  F 02-12→03-02 = 18; B 1; C 1; A 03-06→03-10 = 4 → [1, 1, 4, 18] → 2.5; J 1; all → 1.
#  referral_approval  F 1; C 1; B 03-06 12:00→03-09 12:00 = 3; A 1 → 1; J 09:00→15:00 = 0.25 → 0.3; all → 1.
#  transfer       F 0.25; C 03-07 15:00→03-08 09:00 = 0.75; B 0.25; A 0.25 → 0.25 → 0.3; J 0.75 → 0.8; all → 0.3.
#  police_decision (sm-psb)  F 03-03 15:00→03-05 15:00 = 2; B 03-09 18:00→03-11 18:00 = 2 (decline);
#                 A 03-11 16:00→03-13 10:00 = 1.75 → 2; jl-psb J 03-13 09:00→03-16 09:00 = 3; all [1.75, 2, 2, 3] → 2.
#  reconsideration (sm-psb) B 03-12 18:00→03-14 18:00 = 2.
#  filing_supervision (sm-procuratorate) B 03-16 18:00→03-20 18:00 = 4.
#  prosecution_review (sm-procuratorate) A 03-16 10:00→03-20 10:00 = 4.
#  trial          A's judgment is in April: none.
STAGES_SM_AMR = NONE | {
    "verification": st(4, 1.5),
    "investigation": st(4, 2.5),
    "referral_approval": st(4, 1.0),
    "transfer": st(4, 0.3),
}
STAGES_JL_AMR = NONE | {
    "verification": st(1, 1.0),
    "investigation": st(1, 1.0),
    "referral_approval": st(1, 0.3),
    "transfer": st(1, 0.8),
}
STAGES_SM_PSB = NONE | {"police_decision": st(3, 2.0), "reconsideration": st(1, 2.0)}
STAGES_JL_PSB = NONE | {"police_decision": st(1, 3.0)}
STAGES_SM_PROCURATORATE = NONE | {"filing_supervision": st(1, 4.0), "prosecution_review": st(1, 4.0)}
STAGES_TOTAL = NONE | {
    "verification": st(5, 1.0),
    "investigation": st(5, 1.0),
    "referral_approval": st(5, 1.0),
    "transfer": st(5, 0.3),
    "police_decision": st(4, 2.0),
    "reconsideration": st(1, 2.0),
    "filing_supervision": st(1, 4.0),
    "prosecution_review": st(1, 4.0),
}


def test_march_figures_match_the_hand_count(month: Month) -> None:
    figures = compute_figures(month.deps, "2026-03")
    assert (figures.period, figures.kind, figures.label) == ("2026-03", "monthly", "2026年3月")
    assert (figures.start, figures.end) == ("2026-03-01T00:00:00+08:00", "2026-04-01T00:00:00+08:00")
    expected = {
        "sm-amr": (SM_AMR, STAGES_SM_AMR),
        "sm-psb": (SM_PSB, STAGES_SM_PSB),
        "sm-procuratorate": (SM_PROCURATORATE, STAGES_SM_PROCURATORATE),
        "jl-amr": (JL_AMR, STAGES_JL_AMR),
        "jl-psb": (JL_PSB, STAGES_JL_PSB),
    }
    for row in figures.agencies:
        values, stages = expected.get(row.code, (ZERO, NONE))
        assert row.values == values, row.code
        assert row.stages == stages, row.code
    # Every agency of config.toml has a row, grouped by region (county), market regulators first.
    assert [r.code for r in figures.agencies][:6] == [
        "fj-amr",
        "sm-amr",
        "sm-psb",
        "sm-procuratorate",
        "sm-court",
        "sm-justice",
    ]
    assert [(r.code, r.name, r.agencies) for r in figures.regions] == [
        ("350000", "福建省", 1),
        ("350400", "三明市", 5),
        ("350421", "明溪县", 4),
        ("350428", "将乐县", 4),
    ]
    assert figures.region("350400").values == SANMING
    assert figures.region("350428").values == JIANGLE
    assert figures.region("350421").values == ZERO
    assert figures.region("350000").values == ZERO
    assert figures.total.values == TOTAL
    assert figures.total.stages == STAGES_TOTAL
    # A region's stage median pools its agencies' times (never a median of medians).
    assert figures.region("350400").stages["police_decision"] == st(3, 2.0)
    assert figures.region("350428").stages["transfer"] == st(1, 0.8)


def test_quarter_adds_february(month: Month) -> None:
    figures = compute_figures(month.deps, "2026-Q1")
    assert (figures.kind, figures.label, figures.start) == ("quarterly", "2026年第一季度", "2026-01-01T00:00:00+08:00")
    # February adds F and D as leads and F's file_case; F's verification 02-10→02-12 = 2 days joins sm-amr's
    # [0.25, 1, 2, 17] → [0.25, 1, 2, 2, 17], median 2.
    sm_amr = figures.agency("sm-amr")
    assert sm_amr.values == SM_AMR | {"leads_received": 5, "cases_filed": 5}
    assert sm_amr.stages["verification"] == st(5, 2.0)
    assert figures.total.values["leads_received"] == 6
    assert figures.total.values["cases_filed"] == 6


def test_april_events_are_not_in_march_and_april_has_its_own(month: Month) -> None:
    month.at("2026-05-01T00:00")  # April has ended
    april = compute_figures(month.deps, "2026-04")
    # E received; D proposed (its investigation 03-09 09:00→04-01 12:00 = 23.125 days → 23.1); A judged
    # (trial 03-20 10:00→04-01 11:00 = 12.04 days → 12.0, by the court).
    assert april.agency("sm-amr").values == ZERO | {"leads_received": 1, "referrals_proposed": 1}
    assert april.agency("sm-amr").stages["investigation"] == st(1, 23.1)
    assert april.agency("sm-court").stages["trial"] == st(1, 12.0)
    assert april.total.values == ZERO | {"leads_received": 1, "referrals_proposed": 1}
    march = compute_figures(month.deps, "2026-03")
    assert march.total.values == TOTAL
    assert march.total.stages["trial"] == st(0, None)  # type: ignore[arg-type]


# --- storing and sending -----------------------------------------------------------------------------------


def _rows(deps: Deps) -> tuple[list[tuple[str, int, str]], int]:
    with UnitOfWork(deps, read_only=True) as uow:
        bulletins = [
            (b.period, b.version, b.sha256)
            for b in uow.session.execute(select(Bulletin).order_by(Bulletin.period)).scalars()
        ]
        notices = uow.session.execute(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.kind == "bulletin")
        ).scalar_one()
    return bulletins, notices


def _subscriber_rows(deps: Deps) -> int:
    """Outbox rows one bulletin version makes: every subscriber on their channels (config.toml: email + inbox)."""
    return 2 * len(deps.bulletins.subscribers)


def test_same_data_same_bulletin_changed_data_new_version(month: Month, clock: FakeClock) -> None:
    deps = month.deps
    assert len(deps.bulletins.subscribers) >= 2  # config.toml names subscribers
    first = generate_bulletin(deps, "2026-03")
    assert (first.status, first.version, first.notified) == ("new", 1, len(deps.bulletins.subscribers))
    assert first.figures["total"]["values"] == TOTAL
    assert _rows(deps) == ([("2026-03", 1, first.sha256)], _subscriber_rows(deps))

    # Later, and after more April events: the same March figures give the same bytes; nothing is written or sent.
    clock.advance(days=10)
    month.send("E", "2026-04-12T09:00", "file_case")
    again = generate_bulletin(deps, "2026-03", actor="sm_amr_secretary")
    assert (again.status, again.version, again.sha256, again.notified) == ("unchanged", 1, first.sha256, 0)
    assert again.generated_at == first.generated_at and again.generated_by == "system"
    assert again.html == first.html
    assert _rows(deps) == ([("2026-03", 1, first.sha256)], _subscriber_rows(deps))

    # A decision entered late, effective in March (the police declined C on 03-25): a new version, sent again.
    month.at("2026-04-13T09:00")
    advance_case(
        deps,
        month.cases["C"],
        "police_decline",
        actor="sm_psb_handler",
        effective_at=bj("2026-03-25T09:00"),
        data=EVENT_DATA["police_decline"],
    )
    changed = generate_bulletin(deps, "2026-03")
    assert (changed.status, changed.version) == ("changed", 2)
    assert changed.sha256 != first.sha256
    assert changed.figures["total"]["values"]["police_declined"] == 2
    assert changed.figures["total"]["values"]["police_filing_rate"] == 0.6  # 3 of 5
    assert _rows(deps) == ([("2026-03", 2, changed.sha256)], 2 * _subscriber_rows(deps))
    assert show_bulletin(deps, "2026-03").sha256 == changed.sha256
    with UnitOfWork(deps, read_only=True) as uow:
        keys = list(uow.session.execute(select(OutboxMessage.dedupe_key).order_by(OutboxMessage.id)).scalars())
    bulletin_keys = [k for k in keys if k.startswith("bulletin:")]
    assert f"bulletin:2026-03:v1:{first.sha256[:12]}:sm_amr_supervisor:inbox" in bulletin_keys
    assert f"bulletin:2026-03:v2:{changed.sha256[:12]}:sm_amr_supervisor:email" in bulletin_keys


def test_the_same_data_in_another_database_gives_the_same_hash(month: Month, tmp_path: Path) -> None:
    first = generate_bulletin(month.deps, "2026-03", send=False)
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    (other_dir / "files").mkdir()
    clock = FakeClock()
    _settings, other = make_deps(write_config(other_dir, f"sqlite:///{other_dir / 'j.db'}"), clock)
    try:
        build_month(other, clock, other_dir / "files")
        clock.advance(days=30)  # generated a month later: the time of generation is not in the bulletin
        second = generate_bulletin(other, "2026-03", send=False)
    finally:
        other.engine.dispose()
    assert second.sha256 == first.sha256
    assert second.html == first.html


def test_no_send_stores_without_notices_and_a_later_run_sends_once(month: Month) -> None:
    deps = month.deps
    stored = generate_bulletin(deps, "2026-03", send=False)
    assert (stored.status, stored.notified, stored.notified_at) == ("new", 0, "")
    assert _rows(deps)[1] == 0
    sent = generate_bulletin(deps, "2026-03")  # unchanged, never sent: sent now, once
    assert (sent.status, sent.version, sent.notified) == ("unchanged", 1, len(deps.bulletins.subscribers))
    assert sent.notified_at
    assert _rows(deps)[1] == _subscriber_rows(deps)
    assert generate_bulletin(deps, "2026-03").notified == 0
    assert _rows(deps)[1] == _subscriber_rows(deps)


def test_the_notice_carries_the_totals(month: Month) -> None:
    view = generate_bulletin(month.deps, "2026-03")
    with UnitOfWork(month.deps, read_only=True) as uow:
        rows = list(
            uow.session.execute(
                select(OutboxMessage).where(
                    OutboxMessage.kind == "bulletin", OutboxMessage.recipient_user == "sm_psb_liaison"
                )
            ).scalars()
        )
        uow.session.expunge_all()  # keep the loaded rows readable after the transaction
    assert sorted(r.channel for r in rows) == ["email", "inbox"]
    email = next(r for r in rows if r.channel == "email")
    assert email.case_id is None
    assert email.subject == "【信息通报】三明市商业秘密案件行刑衔接工作信息通报（2026年3月）"
    assert "受理线索 4 件" in email.body and "立案率 75.0%" in email.body and "期限超期 1 次" in email.body
    assert "将乐县：线索 1，立案 1，移送公安 1，公安立案 1" in email.body
    assert view.sha256 in email.body
    assert "<table" in email.body_html and "75.0%" in email.body_html


def test_html_has_the_figures_charts_and_no_generation_time(month: Month) -> None:
    view = generate_bulletin(month.deps, "2026-03", send=False)
    html = view.html
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert html.count("<svg") == 3
    assert "2026年3月1日至2026年3月31日" in html
    assert "共受理线索 4 件，行政立案 5 件" in html and "立案率 75.0%" in html
    assert "三明市小计" in html and "将乐县小计" in html
    assert "1.5（4）" in html  # sm-amr's verification median and count
    assert "2026-04-02" not in html and "09:00" not in html  # neither the generation day nor time
    assert "system" not in html
    assert [b.period for b in list_bulletins(month.deps)] == ["2026-03"]


def test_the_workbook_holds_the_same_figures(month: Month, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    path = tmp_path / "out" / "2026-03.xlsx"
    view = generate_bulletin(month.deps, "2026-03", xlsx=path, send=False)
    assert view.xlsx == str(path)
    wb = load_workbook(path)
    assert wb.sheetnames == ["按机关", "按地区", "办理用时", "说明"]
    agencies = wb["按机关"]
    header = [c.value for c in agencies[1]]
    ids = [c.value for c in agencies[2]]
    assert header[:5] == ["机关", "机关代码", "地区", "地区代码", "受理线索"]
    assert ids[4:] == list(METRIC_IDS)
    by_code = {row[1]: row for row in agencies.iter_rows(min_row=3, values_only=True)}
    assert by_code["sm-psb"][0] == "三明市公安局"
    assert dict(zip(METRIC_IDS, by_code["sm-psb"][4:], strict=True)) == SM_PSB
    assert dict(zip(METRIC_IDS, by_code["jl-amr"][4:], strict=True)) == JL_AMR | {"police_filing_rate": "—"}
    regions = {row[1]: row for row in wb["按地区"].iter_rows(min_row=3, values_only=True)}
    assert dict(zip(METRIC_IDS, regions["total"][4:], strict=True)) == TOTAL
    assert dict(zip(METRIC_IDS, regions["350428"][4:], strict=True)) == JIANGLE
    stages = wb["办理用时"]
    stage_ids = [c.value for c in stages[2]][4:]
    assert stage_ids[:2] == ["verification.median_days", "verification.count"]
    stage_rows = {row[1]: row for row in stages.iter_rows(min_row=3, values_only=True)}
    assert dict(zip(stage_ids, stage_rows["sm-amr"][4:], strict=True))["verification.median_days"] == 1.5
    assert dict(zip(stage_ids, stage_rows["total"][4:], strict=True))["police_decision.count"] == 4
    about = {row[0]: row[1] for row in wb["说明"].iter_rows(values_only=True) if row and row[0]}
    assert about["通报 HTML 的 SHA-256"] == view.sha256


@pytest.mark.parametrize(
    ("period", "message"),
    [
        ("2026-13", "there is no month 13"),
        ("2026-Q5", "there is no quarter 5"),
        ("abc", "'abc' is not a month YYYY-MM (e.g. 2026-10) or a quarter YYYY-Qn"),
        ("", "is not a month YYYY-MM"),
        ("2026-04", "has not ended yet: it ends 2026-05-01T00:00+08:00"),
        ("2026-Q2", "has not ended yet"),
        ("2026-05", "is in the future"),
    ],
)
def test_bad_periods_are_refused_and_write_nothing(month: Month, tmp_path: Path, period: str, message: str) -> None:
    xlsx = tmp_path / "bad.xlsx"
    with pytest.raises(InvalidInput, match=re.escape(message)):
        generate_bulletin(month.deps, period, xlsx=xlsx)
    assert _rows(month.deps) == ([], 0)
    assert not xlsx.exists()


def test_a_month_is_refused_until_it_has_ended(month: Month) -> None:
    month.at("2026-03-31T23:59")
    with pytest.raises(InvalidInput, match=re.escape("2026-03 (2026年3月) has not ended yet")):
        compute_figures(month.deps, "2026-03")
    month.at("2026-04-01T00:00")
    assert generate_bulletin(month.deps, "2026-03", send=False).status == "new"


def test_only_a_secretary_supervisor_or_admin_generates_in_their_name(month: Month) -> None:
    with pytest.raises(PermissionDenied, match="sm_amr_handler may not generate bulletins"):
        generate_bulletin(month.deps, "2026-03", actor=MR)
    assert _rows(month.deps) == ([], 0)
    assert generate_bulletin(month.deps, "2026-03", actor="sm_amr_secretary").generated_by == "sm_amr_secretary"


def test_show_of_a_period_never_generated(deps: Deps) -> None:
    with pytest.raises(InvalidInput, match=re.escape("no bulletin for 2026-02 (2026年2月) was generated")):
        show_bulletin(deps, "2026-02")


def test_pdf_is_printed_with_chromium(month: Month, tmp_path: Path) -> None:
    chromium = Path(month.deps.documents.chromium_path)
    if not (chromium.is_file() and os.access(chromium, os.X_OK)):
        if os.environ.get("CI"):
            pytest.fail(f"Chromium not found at {chromium} in CI")
        pytest.skip(f"Chromium not found at {chromium}")
    import pypdfium2

    path = tmp_path / "2026-03.pdf"
    generate_bulletin(month.deps, "2026-03", pdf=path, send=False)
    pdf = pypdfium2.PdfDocument(str(path))
    text = "".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
    assert "信息通报" in text and "2026年3月" in text and "将乐县" in text


# --- pure parts: periods, the contract, config, the flow module --------------------------------------------


def test_periods_are_beijing_calendar_months_and_quarters() -> None:
    october = parse_period("2026-10")
    assert (october.start, october.end) == (bj("2026-10-01T00:00"), bj("2026-11-01T00:00"))
    assert october.start == datetime(2026, 9, 30, 16, 0, tzinfo=UTC)
    q4 = parse_period("2026-q4")
    assert (q4.key, q4.label, q4.end) == ("2026-Q4", "2026年第四季度", bj("2027-01-01T00:00"))
    assert parse_period("2026-1").key == "2026-01"
    assert previous_period(bj("2026-11-01T08:00")) == "2026-10"
    assert previous_period(bj("2026-01-01T08:00")) == "2025-12"
    assert previous_period(datetime(2026, 10, 31, 16, 30, tzinfo=UTC)) == "2026-10"  # 11-01 00:30 in Beijing
    assert previous_period(bj("2026-04-01T08:00"), "quarterly") == "2026-Q1"
    assert previous_period(bj("2026-02-15T08:00"), "quarterly") == "2025-Q4"


def test_metric_and_stage_events_are_events_of_the_record() -> None:
    from states.lifecycle import EVENT_IDS, RECORD_EVENT_LABELS

    known = set(EVENT_IDS) | set(RECORD_EVENT_LABELS)
    assert {e for m in METRICS for e in m.events} <= known
    assert {e for s in STAGES for e in (*s.start, *s.end)} <= known
    assert len(set(METRIC_IDS)) == len(METRIC_IDS) and len(set(STAGE_IDS)) == len(STAGE_IDS)


def test_bulletin_settings_are_checked(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, f"sqlite:///{tmp_path / 'j.db'}"), env={})
    assert settings.bulletins.cron == "0 8 1 * *" and "sm_amr_supervisor" in settings.bulletins.subscribers
    config = write_config(
        tmp_path,
        f"sqlite:///{tmp_path / 'j.db'}",
        **{
            r'"mx_amr_liaison",\n\]': '"mx_amr_liaison", "nobody", "sm_psb_liaison",\n]',
            r'cron = "0 8 1 \* \*"': 'cron = "8 1"',
        },
    )
    with pytest.raises(ConfigError) as raised:
        load_settings(config, env={})
    assert "bulletins.subscribers[10]: unknown officer 'nobody'" in raised.value.message
    assert "bulletins.subscribers: listed twice: sm_psb_liaison" in raised.value.message
    assert "bulletins.cron: a cron expression has five fields" in raised.value.message


def test_the_flow_task_generates_the_bulletin(month: Month, sqlite_config: Path) -> None:
    from workflows.flows import bulletin as flows
    from workflows.flows.runtime import forget_deps

    deployment = flows.bulletin_deployment(str(sqlite_config))
    assert deployment.entrypoint == "workflows.flows.bulletin.information_bulletin"
    assert [(s.schedule.cron, s.schedule.timezone) for s in deployment.schedules] == [("0 8 1 * *", "Asia/Shanghai")]
    quarterly = flows.bulletin_deployment(str(sqlite_config), kind="quarterly")
    assert quarterly.parameters == {"config_path": str(sqlite_config), "kind": "quarterly"}
    try:
        # The task body without Prefect's engine (the lead's harness runs the flow itself); the real clock.
        summary = asyncio.run(flows.generate_bulletin_task.fn(str(sqlite_config), "2026-03"))
    finally:
        forget_deps()
    assert (summary["period"], summary["status"], summary["version"]) == ("2026-03", "new", 1)
    assert summary["total"] == TOTAL
