"""A reproducible JSON Lines export of historical cases, for import tests and benchmarks.

    from app.generate import write_export
    write_export("cases.jsonl", cases=100_000, seed=1)          # agencies and officers of ./config.toml

    python -m app.generate cases.jsonl --cases 100000 --seed 1 [--config config.toml]

Each case walks the real lifecycle chart from intake: at every step an allowed event is picked (weighted,
the sender being a handler of the participating agency of the right kind), with effective times that move
forward by hours to weeks, ending before ``until``. Extensions are asked early in their period (so they are
granted), suspension only in intake and administrative enforcement, at most two supplementary returns;
about a third of the cases are left open. The same seed gives the same file, byte for byte.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from app.settings import Settings, load_settings
from states.calendar import SHANGHAI
from states.events import SENDER_KIND, SUSPENSION_PHASES
from states.lifecycle import CLOSED, phase_of
from workflows.imports import Transitions

DEFAULT_UNTIL = datetime(2026, 1, 1, tzinfo=UTC)  # inside the years with official holiday data
DEFAULT_SINCE = datetime(2020, 1, 1, tzinfo=UTC)

_WEIGHTS: dict[str, float] = {
    "suspend": 0.15,
    "withdraw": 0.1,
    "extend_verification": 0.2,
    "extend_investigation": 0.2,
    "extend_review": 0.2,
    "extend_trial": 0.2,
    "transfer_jurisdiction": 0.2,
    "decline_filing": 0.4,
    "forward_jurisdiction": 0.15,
    "request_supplement": 0.3,
    "drop_investigation": 0.2,
    "refer_back_for_penalty": 0.2,
    "decline_prosecution": 0.3,
    "propose_referral": 1.5,
    "file_case": 3.0,
}
# An extension is asked within this many days of its clock's start (well inside every period).
_EXTENSION_CLOCK = {
    "extend_verification": ("open_case", 5),
    "extend_investigation": ("A3", 20),
    "extend_review": ("C4", 7),
    "extend_trial": ("C6", 15),
}
_A3_STARTS = {
    "file_case",
    "accept_decline",
    "supervision_upholds_decline",
    "drop_investigation",
    "refer_back_for_penalty",
}
_REASONS = ["证据不足", "案情复杂", "当事人下落不明", "不属于商业秘密", "情节轻微", "立案错误", "不构成犯罪"]
_COMPANIES = ["精密机械", "化工", "纺织", "竹木制品", "生物科技", "新材料", "电子", "食品", "医药", "汽车配件"]
_SECRETS = ["生产配方", "工艺参数", "客户名单", "数控图纸", "源代码", "菌种配方", "报价体系"]


@dataclass
class _Region:
    """A market regulator with a handler, and the handlers of the police, procuratorate and court beside it."""

    agency: str
    handlers: dict[str, str]  # agency kind -> handler username
    agencies: dict[str, str]  # agency kind -> agency code
    approvers: dict[str, str]  # extension event -> approver username
    other_amr: str
    other_police: str


def _regions(settings: Settings) -> list[_Region]:
    agencies = {a.code: a for a in settings.agencies}
    handlers: dict[str, str] = {}
    supervisors: dict[str, str] = {}
    for o in settings.officers:
        if "handler" in o.roles:
            handlers.setdefault(o.agency, o.username)
        if "supervisor" in o.roles:
            supervisors.setdefault(o.agency, o.username)

    def approver(code: str) -> str | None:
        own = agencies[code]
        if code in supervisors:
            return supervisors[code]
        for other, name in sorted(supervisors.items()):  # same kind, covering it (cases._covers)
            a = agencies[other]
            if a.kind == own.kind and a.region in (own.region, own.parent_region):
                return name
        return None

    regions = []
    for a in settings.agencies:
        if a.kind != "market_regulation" or a.code not in handlers:
            continue
        beside = {
            b.kind: b.code
            for b in settings.agencies
            if b.region == a.region and b.level == a.level and b.kind in ("police", "procuratorate", "court")
        }
        if set(beside) != {"police", "procuratorate", "court"} or any(c not in handlers for c in beside.values()):
            continue
        approvers = {
            "extend_verification": approver(a.code),
            "extend_investigation": approver(a.code),
            "extend_review": approver(beside["procuratorate"]),
            "extend_trial": approver(beside["court"]),
        }
        other_amr = next(b.code for b in settings.agencies if b.kind == "market_regulation" and b.code != a.code)
        other_police = next(b.code for b in settings.agencies if b.kind == "police" and b.code != beside["police"])
        regions.append(
            _Region(
                agency=a.code,
                handlers={"market_regulation": handlers[a.code], **{k: handlers[c] for k, c in beside.items()}},
                agencies={"market_regulation": a.code, **beside},
                approvers={k: v for k, v in approvers.items() if v},
                other_amr=other_amr,
                other_police=other_police,
            )
        )
    if not regions:
        raise ValueError("config.toml has no market regulator with a handler and police/procuratorate/court beside it")
    return regions


def _data(event: str, region: _Region, rng: random.Random) -> dict[str, Any]:
    reason = rng.choice(_REASONS)
    if event == "propose_referral":
        if rng.random() < 0.7:
            return {"ground": "loss", "loss_amount": rng.randrange(300_000, 5_000_000, 1000)}
        return {"ground": "reasonable_suspicion", "reason": "涉嫌侵犯商业秘密罪，需采取侦查措施"}
    if event in (
        "reject_referral",
        "decline_filing",
        "police_decline",
        "uphold_decline",
        "suspend",
        "withdraw",
        "supervision_upholds_decline",
        "decline_prosecution",
        "drop_investigation",
    ):
        return {"reason": reason}
    if event == "transfer_jurisdiction":
        return {"to_agency": region.other_amr}
    if event == "forward_jurisdiction":
        return {"to_agency": region.other_police}
    if event == "start_joint_investigation":
        return {"agencies": region.agencies["police"]}
    if event == "decide_penalty":
        return {"fine_amount": rng.randrange(10_000, 2_000_000, 1000)}
    if event == "pronounce_judgment":
        return {"outcome": "convicted" if rng.random() < 0.85 else "acquitted", "sentence": "有期徒刑三年"}
    if event == "request_appraisal":
        return {
            "institution": "福建某司法鉴定所",
            "subject": rng.choice(["non_public", "identity"]),
            "questions": "涉案信息是否不为公众所知悉",
        }
    if event == "complete_appraisal":
        return {
            "conclusion": "涉案技术信息不为公众所知悉",
            "opinion_no": f"闽司鉴〔{rng.randint(2019, 2025)}〕{rng.randint(1, 999)}号",
        }
    if event in _EXTENSION_CLOCK:
        return {"approved_by": region.approvers[event], "reason": "案情复杂"}
    return {}


def _gap(state: str, rng: random.Random) -> timedelta:
    if state in ("awaiting_transfer", "referral_review", "police_review", "police_declined", "evidence_handover"):
        return timedelta(hours=rng.uniform(1, 60))
    return timedelta(hours=rng.uniform(2, 24 * 20))


def generate_case(
    number: int, region: _Region, rng: random.Random, since: datetime, until: datetime, chart: Transitions
) -> dict[str, Any]:
    """One case line: a walk along the chart from intake, every time before ``until``."""
    span = (until - since).total_seconds() - 86400 * 30
    at = since + timedelta(seconds=rng.uniform(0, span))
    received = at
    conf, hist, counters, outcome = list(chart.initial), {}, {}, None
    clock_start: dict[str, datetime] = {"open_case": at}
    used: set[str] = set()
    events: list[dict[str, Any]] = []
    length = rng.choice([0, 1, 2, 3, 4, 6, 8, 10, 12, 14, 16, 20, 30, 40])
    while len(events) < length:
        if CLOSED in conf:
            break
        state = conf[-1]
        nxt = at + _gap(state, rng)
        if nxt >= until:
            break
        candidates = []
        for event in chart.allowed(conf, hist):
            if event in ("suspend", "resume") and phase_of(conf, hist) not in SUSPENSION_PHASES:
                continue
            if event in _EXTENSION_CLOCK:
                clock, days = _EXTENSION_CLOCK[event]
                start = clock_start.get(clock)
                if (
                    event not in region.approvers
                    or clock in used
                    or start is None
                    or nxt - start > timedelta(days=days)
                ):
                    continue
            if event == "return_for_supplementary_investigation" and counters.get("supplementary_returns", 0) >= 2:
                continue
            if event == "extend_review" and counters.get("review_extensions", 0) >= 1:
                continue
            candidates.append(event)
        if not candidates:
            break
        event = rng.choices(candidates, weights=[_WEIGHTS.get(e, 1.0) for e in candidates])[0]
        at = nxt
        data = _data(event, region, rng)
        conf, hist, counters, outcome = chart.send("gen", conf, hist, counters, outcome, event, data)
        if event in _EXTENSION_CLOCK:
            used.add(_EXTENSION_CLOCK[event][0])
        if event in _A3_STARTS:
            clock_start["A3"] = at
            used.discard("A3")
        if event in ("submit_for_prosecution", "resubmit"):
            clock_start["C4"] = at
            used.discard("C4")
        if event == "indict":
            clock_start["C6"] = at
        events.append(
            {
                "event": event,
                "actor": region.handlers[SENDER_KIND[event]],
                "effective_at": at.astimezone(SHANGHAI).isoformat(timespec="seconds"),
                "data": data,
                "note": "",
            }
        )
    company = rng.choice(_COMPANIES)
    return {
        "case_no": f"legacy-{region.agency}-{number:07d}",
        "agency": region.agency,
        "title": f"某{company}公司{rng.choice(_SECRETS)}泄露案",
        "source": rng.choice(["report", "complaint", "inspection", "transfer", "assignment"]),
        "received_at": received.astimezone(SHANGHAI).isoformat(timespec="seconds"),
        "events": events,
    }


def write_export(
    path: Path | str,
    *,
    cases: int,
    seed: int = 0,
    settings: Settings | None = None,
    config: Path | str | None = None,
    since: datetime = DEFAULT_SINCE,
    until: datetime = DEFAULT_UNTIL,
) -> int:
    """Write ``cases`` lines to ``path`` (agencies and officers of ``settings``, else of ``config`` or the
    default config.toml); returns the number of lifecycle events written (open_case not counted)."""
    settings = settings or load_settings(Path(config) if config else None, env={})
    regions = _regions(settings)
    rng = random.Random(seed)
    chart = Transitions(settings.referral.loss_threshold, settings.referral.illegal_gain_threshold)
    total = 0
    with Path(path).open("w", encoding="utf-8") as fh:
        for number in range(1, cases + 1):
            line = generate_case(number, rng.choice(regions), rng, since, until, chart)
            total += len(line["events"])
            fh.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
    return total


def main() -> None:
    """``python -m app.generate OUT --cases N --seed S``."""
    parser = argparse.ArgumentParser(description="Write a reproducible JSON Lines export of historical cases.")
    parser.add_argument("output", type=Path)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", type=Path, default=None)
    args = parser.parse_args()
    events = write_export(args.output, cases=args.cases, seed=args.seed, config=args.config)
    print(f"wrote {args.cases} cases, {events} events to {args.output}")


if __name__ == "__main__":  # pragma: no cover
    main()
