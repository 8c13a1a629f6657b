"""Demo data for Sanming: a dozen realistic cases spread over every phase of the lifecycle.

Every case is made through the same use cases a handler uses (``open_case``, ``attach_file``,
``advance_case``) with effective times in the past, so deadlines, the audit chain and the outbox are
exactly what real use would produce. Company names are invented.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from models.tables import Case
from workflows.cases import advance_case, attach_file, open_case
from workflows.uow import Deps, UnitOfWork

Step = tuple[float, str, str, dict[str, Any]]  # (days after intake, event, actor, data)

_PACKAGE = ("transfer_letter", "investigation_report", "items_list")


@dataclass
class DemoCase:
    """One scripted case: where it starts, how far back, and the steps it went through."""

    agency: str
    handler: str
    title: str
    source: str
    days_ago: float
    steps: list[Step] = field(default_factory=list)


def _referral(handler: str, ground: dict[str, Any], start: float) -> list[Step]:
    """Intake, filing and an approved referral, ending in ``awaiting_transfer`` (package attached)."""
    return [
        (start + 0.1, "start_verification", handler, {}),
        (start + 3, "file_case", handler, {}),
        (start + 20, "propose_referral", handler, ground),
        (start + 21, "approve_referral", handler, {}),
        (start + 21.2, "@attach", handler, {}),
    ]


def _police_to_trial(police: str, prosecutor: str, start: float) -> list[Step]:
    return [
        (start, "police_file", police, {}),
        (start + 2, "complete_handover", police, {}),
        (start + 10, "submit_for_prosecution", police, {}),
        (start + 15, "indict", prosecutor, {}),
    ]


def scenarios() -> list[DemoCase]:
    """The scripted demo cases, oldest first."""
    sm, jl, mx = "sm_amr_handler", "jl_amr_handler", "mx_amr_handler"
    psb, jl_psb = "sm_psb_handler", "jl_psb_handler"
    pro, court = "sm_procuratorate_handler", "sm_court_handler"
    loss = {"ground": "loss", "loss_amount": 1_250_000}
    return [
        DemoCase("sm-amr", sm, "三明某精密机械公司数控图纸外泄线索", "report", 1),
        DemoCase(
            "jl-amr",
            jl,
            "将乐某竹木制品公司客户名单被前员工带走",
            "complaint",
            9,
            [(0.2, "start_verification", jl, {})],
        ),
        DemoCase(
            "mx-amr",
            mx,
            "明溪某生物科技公司菌种配方疑遭窃取",
            "complaint",
            40,
            [
                (0.1, "start_verification", mx, {}),
                (5, "file_case", mx, {}),
                (
                    12,
                    "request_appraisal",
                    mx,
                    {
                        "institution": "福建正泰司法鉴定所",
                        "subject": "non_public",
                        "questions": "涉案菌种培养配方是否不为公众所知悉",
                    },
                ),
            ],
        ),
        DemoCase(
            "sm-amr",
            sm,
            "三明某纺织公司工艺参数侵权案",
            "inspection",
            75,
            [
                (0.1, "start_verification", sm, {}),
                (6, "file_case", sm, {}),
                (40, "notify_penalty", sm, {}),
                (42, "request_hearing", sm, {}),
            ],
        ),
        DemoCase(
            "sm-amr",
            sm,
            "三明某化工公司生产配方侵权案",
            "report",
            120,
            [
                (0.1, "start_verification", sm, {}),
                (5, "file_case", sm, {}),
                (50, "notify_penalty", sm, {}),
                (58, "decide_penalty", sm, {"fine_amount": 350_000, "confiscated_amount": 82_000}),
            ],
        ),
        DemoCase(
            "jl-amr",
            jl,
            "将乐某电子公司芯片设计文件泄露案",
            "report",
            30,
            _referral(jl, {"ground": "illegal_gain", "illegal_gain": 460_000}, 0)[:3],
        ),
        DemoCase(
            "sm-amr",
            sm,
            "三明某新材料公司核心配方被竞争对手获取案",
            "complaint",
            45,
            [*_referral(sm, loss, 0), (23, "transfer_to_police", sm, {})],
        ),
        DemoCase(
            "sm-amr",
            sm,
            "三明某汽车零部件公司模具图纸侵权案",
            "transfer",
            80,
            [
                *_referral(
                    sm, {"ground": "reasonable_suspicion", "reason": "涉案数额可能超过立案标准，需公安侦查核实"}, 0
                ),
                (22, "transfer_to_police", sm, {}),
                (24, "police_decline", psb, {"reason": "现有证据不足以证明损失数额"}),
                (26, "request_reconsideration", sm, {}),
                (28, "uphold_decline", psb, {"reason": "维持原决定"}),
                (30, "request_supervision", sm, {}),
            ],
        ),
        DemoCase(
            "jl-amr",
            jl,
            "将乐某林业机械公司经营信息泄露案",
            "report",
            70,
            [
                *_referral(jl, loss, 0),
                (22, "transfer_to_police", jl, {}),
                (24, "police_file", jl_psb, {}),
                (27, "complete_handover", jl_psb, {}),
            ],
        ),
        DemoCase(
            "sm-amr",
            sm,
            "三明某光电公司镀膜技术侵权案",
            "complaint",
            150,
            [
                *_referral(sm, loss, 0),
                (22, "transfer_to_police", sm, {}),
                *_police_to_trial(psb, pro, 24)[:3],
                (60, "return_for_supplementary_investigation", pro, {}),
            ],
        ),
        DemoCase(
            "sm-amr",
            sm,
            "三明某钢铁公司冶炼工艺侵犯商业秘密案",
            "report",
            300,
            [
                *_referral(sm, loss, 0),
                (22, "transfer_to_police", sm, {}),
                *_police_to_trial(psb, pro, 24),
                (120, "pronounce_judgment", court, {"outcome": "convicted", "sentence": "有期徒刑三年，并处罚金"}),
            ],
        ),
        DemoCase(
            "mx-amr",
            mx,
            "明溪某食品公司配方泄露案（当事人下落不明）",
            "inspection",
            50,
            [
                (0.1, "start_verification", mx, {}),
                (4, "file_case", mx, {}),
                (20, "suspend", mx, {"reason": "当事人下落不明，案件无法继续调查"}),
            ],
        ),
        DemoCase(
            "sm-amr",
            sm,
            "三明某医疗器械公司软件源代码侵权案（反向衔接）",
            "report",
            200,
            [
                *_referral(sm, loss, 0),
                (22, "transfer_to_police", sm, {}),
                *_police_to_trial(psb, pro, 24)[:3],
                (50, "refer_back_for_penalty", pro, {}),
            ],
        ),
    ]


def load_demo(deps: Deps) -> list[str]:
    """Create the demo cases in an empty database; returns their case numbers (none if cases exist)."""
    with UnitOfWork(deps, read_only=True) as uow:
        if uow.session.execute(select(func.count()).select_from(Case)).scalar_one():
            return []
    now = deps.now()
    numbers: list[str] = []
    with tempfile.TemporaryDirectory(prefix="jointcase-demo-") as tmp:
        for demo in scenarios():
            received = now - timedelta(days=demo.days_ago)
            view = open_case(
                deps, agency=demo.agency, title=demo.title, source=demo.source, actor=demo.handler, received_at=received
            )
            for days, event, actor, data in demo.steps:
                at = received + timedelta(days=days)
                if event == "@attach":
                    for kind in _PACKAGE:
                        path = Path(tmp) / f"{view.case_no}-{kind}.txt"
                        path.write_text(f"{view.case_no} {demo.title}\n{kind}（演示材料 demo document）\n", "utf-8")
                        attach_file(deps, view.case_no, kind, path, actor=actor)
                    continue
                advance_case(deps, view.case_no, event, actor=actor, effective_at=at, data=data)
            numbers.append(view.case_no)
    return numbers


DEMO_PASSWORD = "jointcase-demo"
"""The password every demo officer gets (printed by ``jointcase serve``); never use it beyond a demo."""


def set_demo_passwords(deps: Deps) -> list[str]:
    """Give every officer without a password the demo password; returns their usernames."""
    from models.tables import Credential, Officer
    from workflows.auth import set_password

    with UnitOfWork(deps, read_only=True) as uow:
        have = set(uow.session.execute(select(Credential.username)).scalars())
        officers = [o.username for o in uow.session.execute(select(Officer).order_by(Officer.username)).scalars()]
    missing = [u for u in officers if u not in have]
    for username in missing:
        set_password(deps, username, DEMO_PASSWORD)
    return missing
