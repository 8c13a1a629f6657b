"""The case lifecycle chart against a hand-written transition table (DOMAIN.md), without a database.

``EXPECTED`` is written by hand from DOMAIN.md "The case lifecycle statechart", never computed from the
chart: for every stable state (every leaf state of the phases, plus ``suspended`` and ``closed``) it maps
each event DOMAIN.md allows there to the leaf state the case ends in. Every (state, event) pair of
``EXPECTED`` x ``EVENT_IDS`` is sent to a chart restored at that state: allowed pairs must reach the
expected leaf, all others must raise ``TransitionNotAllowed`` and leave the configuration unchanged.

``tests/integration/test_transition_table_db.py`` imports ``EXPECTED`` and runs the same table through
``advance_case`` on SQLite.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
from statemachine.exceptions import TransitionNotAllowed

from states.errors import GuardFailed
from states.events import parse_event_data
from states.lifecycle import (
    EVENT_IDS,
    LEAF_STATE_IDS,
    CaseContext,
    CaseLifecycle,
    allowed_events_of,
    configuration_of,
    history_of,
    leaf_state,
    new_chart,
)
from tests.conftest import EVENT_DATA, PATHS

# --- the table, by hand from DOMAIN.md --------------------------------------------------------------

SUSPEND = {"suspend": "suspended"}  # "Any open state → suspend"
WITHDRAW = {"withdraw": "closed"}  # "Any state of intake or administrative → withdraw"

#: state -> {event: target leaf state}. ``suspended`` is the one PATHS reaches (suspended while
#: ``investigating``), so its ``resume`` returns there; other round trips are tested below.
EXPECTED: dict[str, dict[str, str]] = {
    # intake 线索受理
    "lead_registered": {"start_verification": "verifying", **SUSPEND, **WITHDRAW},
    "verifying": {
        "file_case": "investigating",  # to administrative: its initial state
        "decline_filing": "closed",
        "transfer_jurisdiction": "closed",
        "extend_verification": "verifying",
        **SUSPEND,
        **WITHDRAW,
    },
    # administrative 立案查处
    "investigating": {
        "request_appraisal": "appraisal",
        "start_joint_investigation": "joint_investigation",
        "notify_penalty": "penalty_notice",
        "close_no_violation": "closed",
        "propose_referral": "referral_review",  # to referral: its initial state
        "extend_investigation": "investigating",
        **SUSPEND,
        **WITHDRAW,
    },
    "appraisal": {"complete_appraisal": "investigating", **SUSPEND, **WITHDRAW},
    "joint_investigation": {
        "end_joint_investigation": "investigating",
        "propose_referral": "referral_review",
        **SUSPEND,
        **WITHDRAW,
    },
    "penalty_notice": {"request_hearing": "hearing", "decide_penalty": "closed", **SUSPEND, **WITHDRAW},
    "hearing": {"decide_penalty": "closed", "close_no_violation": "closed", **SUSPEND, **WITHDRAW},
    # referral 移送公安 (no withdraw: not intake or administrative)
    "referral_review": {"approve_referral": "awaiting_transfer", "reject_referral": "investigating", **SUSPEND},
    "awaiting_transfer": {"transfer_to_police": "police_review", **SUSPEND},
    "police_review": {
        "police_file": "evidence_handover",  # to criminal: its initial state
        "police_decline": "police_declined",
        "forward_jurisdiction": "police_review",
        "request_supplement": "police_review",
        **SUSPEND,
    },
    "police_declined": {
        "request_reconsideration": "reconsideration",
        "request_supervision": "filing_supervision",
        "accept_decline": "investigating",
        **SUSPEND,
    },
    "reconsideration": {"police_file": "evidence_handover", "uphold_decline": "reconsideration_upheld", **SUSPEND},
    "reconsideration_upheld": {
        "request_supervision": "filing_supervision",
        "accept_decline": "investigating",
        **SUSPEND,
    },
    "filing_supervision": {
        "police_file": "evidence_handover",
        "supervision_upholds_decline": "investigating",
        **SUSPEND,
    },
    # criminal 刑事侦查
    "evidence_handover": {"complete_handover": "criminal_investigation", **SUSPEND},
    "criminal_investigation": {
        "submit_for_prosecution": "prosecution_review",  # to judicial: its initial state
        "drop_investigation": "investigating",
        **SUSPEND,
    },
    # judicial 审查起诉与审判
    "prosecution_review": {
        "indict": "trial",
        "return_for_supplementary_investigation": "supplementary_investigation",
        "extend_review": "prosecution_review",
        "decline_prosecution": "closed",
        "refer_back_for_penalty": "investigating",
        **SUSPEND,
    },
    "supplementary_investigation": {"resubmit": "prosecution_review", **SUSPEND},
    "trial": {"pronounce_judgment": "closed", "extend_trial": "trial", **SUSPEND},
    # outside the phases
    "suspended": {"resume": "investigating"},
    "closed": {},
}

#: The phase each leaf state belongs to (DOMAIN.md headings); ``None``: outside ``active``.
PHASE: dict[str, str | None] = {
    "lead_registered": "intake",
    "verifying": "intake",
    "investigating": "administrative",
    "appraisal": "administrative",
    "joint_investigation": "administrative",
    "penalty_notice": "administrative",
    "hearing": "administrative",
    "referral_review": "referral",
    "awaiting_transfer": "referral",
    "police_review": "referral",
    "police_declined": "referral",
    "reconsideration": "referral",
    "reconsideration_upheld": "referral",
    "filing_supervision": "referral",
    "evidence_handover": "criminal",
    "criminal_investigation": "criminal",
    "prosecution_review": "judicial",
    "supplementary_investigation": "judicial",
    "trial": "judicial",
    "suspended": None,
    "closed": None,
}

#: Outcome recorded by each closing event (DOMAIN.md), and where each can be sent from.
CLOSING: list[tuple[str, str, dict[str, Any], str]] = [
    ("verifying", "decline_filing", {}, "not_filed"),
    ("verifying", "transfer_jurisdiction", {}, "transferred_out"),
    ("investigating", "close_no_violation", {}, "no_violation"),
    ("hearing", "close_no_violation", {}, "no_violation"),
    ("penalty_notice", "decide_penalty", {}, "penalized"),
    ("hearing", "decide_penalty", {}, "penalized"),
    ("prosecution_review", "decline_prosecution", {}, "not_prosecuted"),
    ("trial", "pronounce_judgment", {"outcome": "convicted"}, "convicted"),
    ("trial", "pronounce_judgment", {"outcome": "acquitted"}, "acquitted"),
    ("lead_registered", "withdraw", {}, "withdrawn"),
    ("verifying", "withdraw", {}, "withdrawn"),
    ("appraisal", "withdraw", {}, "withdrawn"),
    ("hearing", "withdraw", {}, "withdrawn"),
]

STATES = sorted(EXPECTED)
PAIRS = [(state, event) for state in STATES for event in sorted(EVENT_IDS)]
FULL_PACKAGE = frozenset({"transfer_letter", "investigation_report", "items_list", "appraisal_report"})


# --- helpers ----------------------------------------------------------------------------------------


def payload(event: str, **extra: Any) -> dict[str, Any]:
    """Valid data for ``event`` (conftest.EVENT_DATA), normalised as ``advance_case`` does."""
    return parse_event_data(event, {**EVENT_DATA.get(event, {}), **extra})


def context(**kwargs: Any) -> CaseContext:
    """A context whose guards pass: the whole transfer package attached, no open evidence items."""
    kwargs.setdefault("attachment_kinds", FULL_PACKAGE)
    return CaseContext(case_no="TEST-1", **kwargs)


def drive(ctx: CaseContext, events: list[str]) -> CaseLifecycle:
    """A fresh chart over ``ctx`` sent along ``events`` (PATHS' "@attach" steps are the context's)."""
    chart = new_chart(ctx)
    for event in events:
        if event != "@attach":
            chart.send(event, data=payload(event))
    return chart


@cache
def stored(state: str) -> tuple[tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...], tuple[tuple[str, int], ...]]:
    """What storage holds for a case at ``state``: configuration, history and counters (driven once)."""
    ctx = context()
    chart = drive(ctx, PATHS[state])
    history = tuple((key, tuple(values)) for key, values in history_of(chart).items())
    return tuple(configuration_of(chart)), history, tuple(ctx.counters.items())


def restored(state: str, **kwargs: Any) -> CaseLifecycle:
    """A chart restored from storage at ``state``, as ``advance_case`` builds it."""
    configuration, history, counters = stored(state)
    kwargs.setdefault("counters", dict(counters))
    return new_chart(context(**kwargs), list(configuration), {k: list(v) for k, v in history})


def at(events: list[str], **kwargs: Any) -> tuple[CaseLifecycle, CaseContext]:
    ctx = context(**kwargs)
    return drive(ctx, events), ctx


# --- the table itself -------------------------------------------------------------------------------


def test_table_covers_every_leaf_state_and_every_event() -> None:
    assert set(EXPECTED) == set(LEAF_STATE_IDS) == set(PHASE)
    used = {event for row in EXPECTED.values() for event in row}
    assert used == set(EVENT_IDS), (
        f"events in the table but not the chart: {sorted(used - EVENT_IDS)}; "
        f"events of the chart not in the table: {sorted(EVENT_IDS - used)}"
    )
    assert len(EVENT_IDS) == 41
    targets = {target for row in EXPECTED.values() for target in row.values()}
    assert targets <= set(EXPECTED)


@pytest.mark.parametrize("state", STATES)
def test_stored_configuration_is_the_state_in_its_phase(state: str) -> None:
    configuration, history, _counters = stored(state)
    expected = [state] if PHASE[state] is None else ["active", PHASE[state], state]
    assert list(configuration) == expected
    assert leaf_state(configuration) == state
    if state == "suspended":
        assert dict(history)["active_history"] == ("administrative", "investigating")


@pytest.mark.parametrize("state", STATES)
def test_allowed_events_agree_with_table(state: str) -> None:
    chart = restored(state)
    assert set(allowed_events_of(chart)) == set(EXPECTED[state]), (
        f"{state}: chart allows {sorted(set(allowed_events_of(chart)) - set(EXPECTED[state]))} beyond DOMAIN.md, "
        f"misses {sorted(set(EXPECTED[state]) - set(allowed_events_of(chart)))}"
    )


@pytest.mark.parametrize(("state", "event"), PAIRS)
def test_every_state_event_pair(state: str, event: str) -> None:
    chart = restored(state)
    ctx: CaseContext = chart.model  # type: ignore[assignment]
    before = configuration_of(chart)
    target = EXPECTED[state].get(event)
    if target is None:
        counters_before = dict(ctx.counters)
        with pytest.raises(TransitionNotAllowed):
            chart.send(event, data=payload(event))
        assert configuration_of(chart) == before
        assert ctx.outcome is None
        assert ctx.counters == counters_before
        return
    chart.send(event, data=payload(event))
    after = configuration_of(chart)
    assert leaf_state(after) == target, (state, event, after)
    if target == state:  # a self transition keeps the configuration
        assert after == before
    if target == "closed":
        assert after == ["closed"]
        assert ctx.outcome is not None
    else:
        assert ctx.outcome is None


# --- guards -----------------------------------------------------------------------------------------


def test_transfer_to_police_needs_the_package() -> None:
    chart = restored("awaiting_transfer", attachment_kinds=frozenset({"transfer_letter", "other"}))
    before = configuration_of(chart)
    with pytest.raises(GuardFailed) as err:
        chart.send("transfer_to_police", data=payload("transfer_to_police"))
    assert "第六条" in err.value.rule
    assert "investigation_report" in str(err.value) and "items_list" in str(err.value)
    assert "transfer_letter" not in err.value.detail.split("attach:")[1]
    assert configuration_of(chart) == before

    chart.model.attachment_kinds = frozenset({"transfer_letter", "investigation_report", "items_list"})
    chart.send("transfer_to_police", data=payload("transfer_to_police"))
    assert leaf_state(configuration_of(chart)) == "police_review"


def test_appraisal_report_required_after_an_appraisal() -> None:
    package = frozenset({"transfer_letter", "investigation_report", "items_list"})
    path = [*PATHS["appraisal"], "complete_appraisal", "propose_referral", "approve_referral"]
    chart, ctx = at(path, attachment_kinds=package)
    assert ctx.counters["appraisals"] == 1
    before = configuration_of(chart)
    with pytest.raises(GuardFailed) as err:
        chart.send("transfer_to_police", data=payload("transfer_to_police"))
    assert "appraisal_report" in str(err.value)
    assert "第六条" in err.value.rule
    assert configuration_of(chart) == before

    ctx.attachment_kinds = package | {"appraisal_report"}
    chart.send("transfer_to_police", data=payload("transfer_to_police"))
    assert leaf_state(configuration_of(chart)) == "police_review"

    # Without an appraisal the three documents are enough.
    chart, _ctx = at(PATHS["awaiting_transfer"], attachment_kinds=package)
    chart.send("transfer_to_police", data=payload("transfer_to_police"))
    assert leaf_state(configuration_of(chart)) == "police_review"


def test_at_most_two_returns_for_supplementary_investigation() -> None:
    chart, ctx = at(PATHS["prosecution_review"])
    for _ in range(2):
        chart.send("return_for_supplementary_investigation")
        assert leaf_state(configuration_of(chart)) == "supplementary_investigation"
        chart.send("resubmit")
    assert ctx.counters["supplementary_returns"] == 2
    before = configuration_of(chart)
    with pytest.raises(GuardFailed) as err:
        chart.send("return_for_supplementary_investigation")
    assert "第一百七十五条" in err.value.rule
    assert configuration_of(chart) == before == ["active", "judicial", "prosecution_review"]
    assert ctx.counters["supplementary_returns"] == 2
    chart.send("indict")  # the other ways out stay open
    assert leaf_state(configuration_of(chart)) == "trial"


@pytest.mark.parametrize(
    ("state", "event", "counter", "article"),
    [
        ("verifying", "extend_verification", "verification_extensions", "第十八条"),
        ("prosecution_review", "extend_review", "review_extensions", "第一百七十二条"),
    ],
)
def test_extension_only_once(state: str, event: str, counter: str, article: str) -> None:
    chart, ctx = at(PATHS[state])
    chart.send(event, data=payload(event))
    assert ctx.counters[counter] == 1
    assert leaf_state(configuration_of(chart)) == state
    before = configuration_of(chart)
    with pytest.raises(GuardFailed) as err:
        chart.send(event, data=payload(event))
    assert article in err.value.rule
    assert configuration_of(chart) == before
    assert ctx.counters[counter] == 1


def test_extend_investigation_and_trial_have_no_chart_limit() -> None:
    # DOMAIN.md marks only extend_verification and extend_review "once"; further limits are clock rules.
    chart, _ctx = at(PATHS["investigating"])
    for _ in range(3):
        chart.send("extend_investigation", data=payload("extend_investigation"))
    assert leaf_state(configuration_of(chart)) == "investigating"
    chart, _ctx = at(PATHS["trial"])
    for _ in range(3):
        chart.send("extend_trial", data=payload("extend_trial"))
    assert leaf_state(configuration_of(chart)) == "trial"


def test_complete_handover_needs_every_evidence_item_resolved() -> None:
    chart, ctx = at(PATHS["evidence_handover"], unresolved_evidence=("E-1", "E-7"))
    before = configuration_of(chart)
    with pytest.raises(GuardFailed) as err:
        chart.send("complete_handover")
    assert "E-1" in str(err.value) and "E-7" in str(err.value)
    assert "第五十四条" in err.value.rule
    assert configuration_of(chart) == before
    ctx.unresolved_evidence = ()
    chart.send("complete_handover")
    assert leaf_state(configuration_of(chart)) == "criminal_investigation"


@pytest.mark.parametrize("state", ["investigating", "joint_investigation"])
@pytest.mark.parametrize(
    ("data", "refused", "rule_part"),
    [
        ({"ground": "loss", "loss_amount": "299999"}, True, "第七十三条"),
        ({"ground": "loss", "loss_amount": "300000"}, False, ""),
        ({"ground": "loss"}, True, "第七十三条"),
        ({"ground": "illegal_gain", "illegal_gain": "1000"}, True, "第七十三条"),
        ({"ground": "illegal_gain", "illegal_gain": "300000"}, False, ""),
        ({"ground": "bankruptcy"}, False, ""),
        ({"ground": "other_major_loss"}, True, "第七十三条"),
        ({"ground": "other_major_loss", "reason": "客户流失严重"}, False, ""),
        ({"ground": "reasonable_suspicion"}, True, "第三条第二款"),
        ({"ground": "reasonable_suspicion", "reason": "  "}, True, "第三条第二款"),
        ({"ground": "reasonable_suspicion", "reason": "需采取侦查措施固定电子数据"}, False, ""),
    ],
)
def test_propose_referral_ground(state: str, data: dict[str, Any], refused: bool, rule_part: str) -> None:
    chart, _ctx = at(PATHS[state])
    before = configuration_of(chart)
    # Straight to the chart (not parse_event_data, which would drop the blank reason itself).
    if refused:
        with pytest.raises(GuardFailed) as err:
            chart.send("propose_referral", data=data)
        assert rule_part in err.value.rule
        assert configuration_of(chart) == before
    else:
        chart.send("propose_referral", data=data)
        assert configuration_of(chart) == ["active", "referral", "referral_review"]


def test_referral_threshold_comes_from_the_context() -> None:
    chart, _ctx = at(PATHS["investigating"], loss_threshold=1_000_000)
    with pytest.raises(GuardFailed, match="1000000"):
        chart.send("propose_referral", data={"ground": "loss", "loss_amount": 500_000})


def test_replaying_turns_guards_off() -> None:
    chart, _ctx = at(PATHS["awaiting_transfer"], attachment_kinds=frozenset(), replaying=True)
    chart.send("transfer_to_police")
    assert leaf_state(configuration_of(chart)) == "police_review"


@pytest.mark.parametrize(("state", "event", "extra", "outcome"), CLOSING)
def test_closing_events_record_their_outcome(state: str, event: str, extra: dict[str, Any], outcome: str) -> None:
    chart = restored(state)
    chart.send(event, data=payload(event, **extra))
    assert configuration_of(chart) == ["closed"]
    assert chart.model.outcome == outcome
    assert allowed_events_of(chart) == []


def test_every_closing_event_is_covered() -> None:
    closing = {event for row in EXPECTED.values() for event, target in row.items() if target == "closed"}
    assert closing == {event for _state, event, _extra, _outcome in CLOSING}


# --- suspend / resume -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "state",
    [
        "verifying",
        "appraisal",
        "hearing",
        "police_review",
        "filing_supervision",
        "criminal_investigation",
        "supplementary_investigation",
        "trial",
    ],
)
def test_suspend_resume_returns_to_the_same_configuration(state: str) -> None:
    chart, ctx = at(PATHS[state])
    before, counters = configuration_of(chart), dict(ctx.counters)
    chart.send("suspend", data=payload("suspend"))
    assert configuration_of(chart) == ["suspended"]
    assert allowed_events_of(chart) == ["resume"]
    chart.send("resume")
    assert configuration_of(chart) == before
    assert ctx.counters == counters

    # The same through storage: suspend, store configuration and history, restore, resume.
    chart.send("suspend", data=payload("suspend"))
    stored_conf, stored_history = configuration_of(chart), history_of(chart)
    again = new_chart(context(counters=dict(ctx.counters)), stored_conf, stored_history)
    again.send("resume")
    assert configuration_of(again) == before


# --- strictness -------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [{}, {"outcome": "guilty"}, {"outcome": ""}])
def test_an_error_inside_an_action_propagates(data: dict[str, Any]) -> None:
    chart = restored("trial")
    before = configuration_of(chart)
    with pytest.raises(GuardFailed, match="convicted or acquitted"):
        chart.send("pronounce_judgment", data=data)
    assert configuration_of(chart) == before
    assert chart.model.outcome is None


@pytest.mark.parametrize("configuration", [["active", "intake", "triage"], ["archived"], []])
def test_new_chart_refuses_an_unknown_stored_state(configuration: list[str]) -> None:
    with pytest.raises(ValueError, match="unknown states"):
        new_chart(CaseContext(), configuration)
