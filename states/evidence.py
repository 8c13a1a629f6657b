"""Evidence items (EvidenceItem of DOMAIN.md) and the rule of their conversion at the hand-over to the police.

Physical, documentary, audio-visual, electronic data, appraisal opinions, inspection and on-site records
collected by the market regulator may be used in the criminal case after review; witness and party
statements must be taken again by the police (CPL art. 54; 法发〔2011〕3号 art. 2). The chart:
``registered`` → ``handed_over`` → ``admitted`` | ``recollection_required`` → ``recollected``; any open
state → ``excluded``.
"""

from __future__ import annotations

from statemachine import State

from states.lifecycle import StrictChart, chart_in

EVIDENCE_TYPES: dict[str, tuple[str, str]] = {
    "physical": ("物证", "physical evidence"),
    "documentary": ("书证", "documentary evidence"),
    "audio_visual": ("视听资料", "audio-visual material"),
    "electronic_data": ("电子数据", "electronic data"),
    "appraisal_opinion": ("鉴定意见", "appraisal opinion"),
    "inspection_record": ("勘验、检查笔录", "inspection record"),
    "on_site_record": ("现场笔录", "on-site record"),
    "witness_statement": ("证人证言", "witness statement"),
    "party_statement": ("当事人陈述", "party statement"),
}
MUST_RECOLLECT: frozenset[str] = frozenset({"witness_statement", "party_statement"})
"""Types the police must take again themselves; the rest are usable after review."""

CONVERSION_BASIS = (
    "《刑事诉讼法》第五十四条第二款；《关于办理侵犯知识产权刑事案件适用法律若干问题的意见》（法发〔2011〕3号）第二条"
)

RESOLVED: frozenset[str] = frozenset({"admitted", "recollected", "excluded"})
RESOLUTIONS: tuple[str, ...] = ("admitted", "recollected", "excluded")


class EvidenceChart(StrictChart):
    """证据: registered → handed_over → admitted | recollection_required → recollected; → excluded."""

    registered = State("已登记", initial=True)
    handed_over = State("已移交")
    recollection_required = State("需重新收集")
    admitted = State("经审查采用", final=True)
    recollected = State("已重新收集", final=True)
    excluded = State("已排除", final=True)

    hand_over = registered.to(handed_over)
    require_recollection = handed_over.to(recollection_required)
    admit = handed_over.to(admitted)
    recollect = recollection_required.to(recollected)
    exclude = registered.to(excluded) | handed_over.to(excluded) | recollection_required.to(excluded)


EVIDENCE_STATE_LABELS: dict[str, str] = {state.id: state.name for state in EvidenceChart.states}


def evidence_chart(state: str = "registered") -> EvidenceChart:
    """A chart standing in ``state`` (a bad stored value fails here, not later)."""
    return chart_in(EvidenceChart, state)


def needs_recollection(kind: str) -> bool:
    """Whether the police must take this type of evidence again rather than admit it after review."""
    return kind in MUST_RECOLLECT
