"""Shared fixtures: a config per test (SQLite in tmp_path, or the real PostgreSQL), an injected clock,
ready-to-use use-case dependencies, and builders that move a case along a named path.

PostgreSQL tests read ``JOINTCASE_TEST_DATABASE_URL`` (``.ci/run`` sets it, so there they always run);
without it they skip with a reason.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from app.bootstrap import build, init_database
from app.settings import Settings, load_settings
from models.db import make_engine, normalise_url
from workflows.cases import CaseView, advance_case, attach_file, open_case
from workflows.uow import Deps

REPO = Path(__file__).resolve().parent.parent
REPO_CONFIG = REPO / "config.toml"
PG_ENV = "JOINTCASE_TEST_DATABASE_URL"

# A fixed, ordinary Wednesday in Beijing (2026-03-04 10:00 +08:00): no holiday within two weeks.
T0 = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)


class FakeClock:
    """An injected clock that tests move by hand; always aware UTC."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> datetime:
        """Move forward by ``timedelta(**kwargs)``; returns the new time."""
        self.now = self.now + timedelta(**kwargs)
        return self.now


def write_config(directory: Path, database_url: str, **replace: str) -> Path:
    """A copy of the repo's config.toml in ``directory`` pointing at ``database_url``.

    ``replace`` maps a regex to its replacement in the TOML text (for bad-config tests).
    """
    source = REPO_CONFIG.read_text(encoding="utf-8")
    source, found = re.subn(r'(?m)^url = "[^"]*"', f'url = "{database_url}"', source, count=1)
    source, found_dir = re.subn(
        r'(?m)^attachments_dir = "[^"]*"', f'attachments_dir = "{directory / "attachments"}"', source
    )
    assert found == 1 and found_dir == 1, "config.toml no longer has [database] url / attachments_dir lines"
    for pattern, repl in replace.items():
        source = re.sub(pattern, repl, source)
    path = directory / "config.toml"
    path.write_text(source, encoding="utf-8")
    return path


def reset_postgres(url: str) -> None:
    """Drop everything in the test database's public schema (tests own that database)."""
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sqlite_config(tmp_path: Path) -> Path:
    return write_config(tmp_path, f"sqlite:///{tmp_path / 'jointcase.db'}")


@pytest.fixture
def pg_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{PG_ENV} is not set in CI: the PostgreSQL tests must run there, never skip")
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    url = normalise_url(url)
    reset_postgres(url)
    return url


@pytest.fixture
def pg_config(tmp_path: Path, pg_url: str) -> Path:
    return write_config(tmp_path, pg_url)


def make_deps(config: Path, clock: FakeClock | None = None) -> tuple[Settings, Deps]:
    """Load ``config``, build the dependencies, migrate and load the directory."""
    settings = load_settings(config, env={})
    deps = build(settings, clock=clock) if clock else build(settings)
    init_database(settings, deps)
    return settings, deps


@pytest.fixture
def deps(sqlite_config: Path, clock: FakeClock) -> Iterator[Deps]:
    _settings, d = make_deps(sqlite_config, clock)
    yield d
    d.engine.dispose()


@pytest.fixture
def pg_deps(pg_config: Path, clock: FakeClock) -> Iterator[Deps]:
    _settings, d = make_deps(pg_config, clock)
    yield d
    d.engine.dispose()


# --- building cases along the statechart ------------------------------------------------------------

MR = "sm_amr_handler"
POLICE = "sm_psb_handler"
PROSECUTOR = "sm_procuratorate_handler"
COURT = "sm_court_handler"

#: Valid data for every event that needs some (the same keys as ``--set``).
EVENT_DATA: dict[str, dict[str, Any]] = {
    "propose_referral": {"ground": "loss", "loss_amount": "500000"},
    "reject_referral": {"reason": "证据尚不充分"},
    "decline_filing": {"reason": "不属于商业秘密"},
    "police_decline": {"reason": "证据不足"},
    "uphold_decline": {"reason": "维持"},
    "supervision_upholds_decline": {"reason": "不立案理由成立"},
    "decline_prosecution": {"reason": "情节轻微"},
    "drop_investigation": {"reason": "不构成犯罪"},
    "suspend": {"reason": "当事人下落不明"},
    "withdraw": {"reason": "立案错误"},
    "transfer_jurisdiction": {"to_agency": "jl-amr"},
    "forward_jurisdiction": {"to_agency": "jl-psb"},
    "start_joint_investigation": {"agencies": "sm-psb"},
    "pronounce_judgment": {"outcome": "convicted", "sentence": "有期徒刑三年"},
    "decide_penalty": {"fine_amount": "200000"},
    "request_appraisal": {
        "institution": "福建某司法鉴定所",
        "subject": "non_public",
        "questions": "涉案技术信息是否不为公众所知悉",
    },
    "complete_appraisal": {"conclusion": "涉案技术信息不为公众所知悉", "opinion_no": "闽某司鉴〔2026〕技鉴字第12号"},
    "extend_verification": {"approved_by": "sm_amr_supervisor", "reason": "案情复杂"},
    "extend_investigation": {"approved_by": "sm_amr_supervisor", "reason": "案情复杂"},
    "extend_review": {"approved_by": "sm_procuratorate_chief", "reason": "重大复杂"},
    "extend_trial": {"approved_by": "sm_court_president", "reason": "重大复杂"},
}


#: Which demo officer sends each event on a case owned by sm-amr (by the event's sender kind).
def actor_for(event: str) -> str:
    """The sm-* handler whose agency kind may send ``event``."""
    from states.events import SENDER_KIND

    return {"market_regulation": MR, "police": POLICE, "procuratorate": PROSECUTOR, "court": COURT}[SENDER_KIND[event]]


#: Paths (event lists) from a new case to each state; "@attach" attaches the transfer package.
PATHS: dict[str, list[str]] = {
    "lead_registered": [],
    "verifying": ["start_verification"],
    "investigating": ["start_verification", "file_case"],
}
PATHS["appraisal"] = [*PATHS["investigating"], "request_appraisal"]
PATHS["joint_investigation"] = [*PATHS["investigating"], "start_joint_investigation"]
PATHS["penalty_notice"] = [*PATHS["investigating"], "notify_penalty"]
PATHS["hearing"] = [*PATHS["penalty_notice"], "request_hearing"]
PATHS["referral_review"] = [*PATHS["investigating"], "propose_referral"]
PATHS["awaiting_transfer"] = [*PATHS["referral_review"], "approve_referral"]
PATHS["police_review"] = [*PATHS["awaiting_transfer"], "@attach", "transfer_to_police"]
PATHS["police_declined"] = [*PATHS["police_review"], "police_decline"]
PATHS["reconsideration"] = [*PATHS["police_declined"], "request_reconsideration"]
PATHS["reconsideration_upheld"] = [*PATHS["reconsideration"], "uphold_decline"]
PATHS["filing_supervision"] = [*PATHS["police_declined"], "request_supervision"]
PATHS["evidence_handover"] = [*PATHS["police_review"], "police_file"]
PATHS["criminal_investigation"] = [*PATHS["evidence_handover"], "complete_handover"]
PATHS["prosecution_review"] = [*PATHS["criminal_investigation"], "submit_for_prosecution"]
PATHS["supplementary_investigation"] = [*PATHS["prosecution_review"], "return_for_supplementary_investigation"]
PATHS["trial"] = [*PATHS["prosecution_review"], "indict"]
PATHS["suspended"] = [*PATHS["investigating"], "suspend"]
PATHS["closed"] = [*PATHS["verifying"], "decline_filing"]

TRANSFER_PACKAGE = ("transfer_letter", "investigation_report", "items_list")


@dataclass
class CaseBuilder:
    """Opens sm-amr cases and drives them along ``PATHS`` through the real use cases."""

    deps: Deps
    clock: FakeClock
    files: Path

    def open(self, title: str = "三明某公司配方泄露案") -> CaseView:
        return open_case(self.deps, agency="sm-amr", title=title, source="report", actor=MR)

    def attach_package(self, case_no: str) -> None:
        for kind in TRANSFER_PACKAGE:
            path = self.files / f"{case_no}-{kind}.txt"
            path.write_text(f"{case_no} {kind}\n", encoding="utf-8")
            attach_file(self.deps, case_no, kind, path, actor=MR)

    def send(self, case_no: str, event: str, **data: Any) -> CaseView:
        self.clock.advance(hours=1)
        payload = {**EVENT_DATA.get(event, {}), **data}
        return advance_case(self.deps, case_no, event, actor=actor_for(event), data=payload)

    def to_state(self, state: str, title: str = "三明某公司配方泄露案") -> CaseView:
        view = self.open(title)
        for step in PATHS[state]:
            if step == "@attach":
                self.attach_package(view.case_no)
            else:
                view = self.send(view.case_no, step)
        assert view.state == state, (state, view.state)
        return view


@pytest.fixture
def builder(deps: Deps, clock: FakeClock, tmp_path: Path) -> CaseBuilder:
    files = tmp_path / "files"
    files.mkdir()
    return CaseBuilder(deps, clock, files)
