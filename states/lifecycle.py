"""The case lifecycle statechart (``CaseLifecycle``): phases, states, events and guards of DOMAIN.md.

The chart is pure: it reads what its guards need from a :class:`CaseContext` (the chart's model) and the
event's ``data``, and its actions change only that context. The use case in ``workflows/`` builds the
context from the database, sends one event, and persists what changed.

Every open state sits inside the compound ``active`` so that ``suspend`` can leave from anywhere and
``resume`` can return through a deep history pseudo-state to the exact state it left.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from statemachine import HistoryState, State, StateChart
from statemachine.orderedset import OrderedSet

from states.errors import GuardFailed

# --- constants of the public contract -------------------------------------------------------------

PHASES: tuple[str, ...] = ("intake", "administrative", "referral", "criminal", "judicial")
#: The referral funnel (行刑衔接漏斗): the phases a case passes on its way to court, in order.
REFERRAL_FUNNEL: tuple[str, ...] = ("administrative", "referral", "criminal", "judicial")


def funnel_steps(phase: str) -> tuple[str, ...]:
    """The funnel steps a case now in ``phase`` has reached (none in intake or once closed)."""
    return REFERRAL_FUNNEL[: REFERRAL_FUNNEL.index(phase) + 1] if phase in REFERRAL_FUNNEL else ()


SUSPENDED = "suspended"
CLOSED = "closed"
HISTORY = "active_history"  # the deep-history pseudo-state inside ``active``

OUTCOMES: tuple[str, ...] = (
    "not_filed",
    "transferred_out",
    "no_violation",
    "penalized",
    "not_prosecuted",
    "convicted",
    "acquitted",
    "withdrawn",
)

#: Transfer package of Decree 310 art. 6, as attachment kinds of the case file.
TRANSFER_PACKAGE: tuple[str, ...] = ("transfer_letter", "investigation_report", "items_list")
ATTACHMENT_KINDS: tuple[str, ...] = (
    "transfer_letter",
    "investigation_report",
    "items_list",
    "appraisal_report",
    "other",
)
MAX_SUPPLEMENTARY_RETURNS = 2  # CPL art. 175 ¶3: at most two returns for supplementary investigation

#: Events whose transition ends in ``closed``, with the outcome they record (None: from the data).
CLOSING_OUTCOMES: dict[str, str | None] = {
    "decline_filing": "not_filed",
    "transfer_jurisdiction": "transferred_out",
    "close_no_violation": "no_violation",
    "decide_penalty": "penalized",
    "decline_prosecution": "not_prosecuted",
    "pronounce_judgment": None,
    "withdraw": "withdrawn",
}

STATE_LABELS: dict[str, tuple[str, str]] = {
    "active": ("办理中", "Open"),
    "intake": ("线索受理", "Intake"),
    "lead_registered": ("线索登记", "Lead registered"),
    "verifying": ("核查", "Verifying"),
    "administrative": ("立案查处", "Administrative enforcement"),
    "investigating": ("立案调查", "Investigating"),
    "appraisal": ("技术鉴定", "Technical appraisal"),
    "joint_investigation": ("联合调查", "Joint investigation"),
    "penalty_notice": ("处罚告知", "Penalty notice"),
    "hearing": ("听证", "Hearing"),
    "referral": ("移送公安", "Referral to police"),
    "referral_review": ("移送审批", "Referral review"),
    "awaiting_transfer": ("待移送", "Awaiting transfer"),
    "police_review": ("公安审查", "Police review"),
    "police_declined": ("不予立案", "Police declined"),
    "reconsideration": ("复议", "Reconsideration"),
    "reconsideration_upheld": ("复议维持", "Reconsideration upheld"),
    "filing_supervision": ("立案监督", "Filing supervision"),
    "criminal": ("刑事侦查", "Criminal investigation"),
    "evidence_handover": ("证据移交与转换", "Evidence handover"),
    "criminal_investigation": ("侦查", "Investigation"),
    "judicial": ("审查起诉与审判", "Prosecution and trial"),
    "prosecution_review": ("审查起诉", "Prosecution review"),
    "supplementary_investigation": ("退回补充侦查", "Supplementary investigation"),
    "trial": ("审判", "Trial"),
    "suspended": ("中止", "Suspended"),
    "closed": ("结案", "Closed"),
}

EVENT_LABELS: dict[str, tuple[str, str]] = {
    "start_verification": ("开始核查", "Start verification"),
    "file_case": ("立案", "File case"),
    "decline_filing": ("不予立案", "Decline filing"),
    "transfer_jurisdiction": ("移送管辖", "Transfer jurisdiction"),
    "extend_verification": ("延长核查期限", "Extend verification"),
    "request_appraisal": ("委托技术鉴定", "Request appraisal"),
    "complete_appraisal": ("鉴定完成", "Complete appraisal"),
    "start_joint_investigation": ("启动联合调查", "Start joint investigation"),
    "end_joint_investigation": ("结束联合调查", "End joint investigation"),
    "notify_penalty": ("处罚告知", "Notify penalty"),
    "request_hearing": ("申请听证", "Request hearing"),
    "decide_penalty": ("作出处罚决定", "Decide penalty"),
    "close_no_violation": ("不构成违法结案", "Close: no violation"),
    "propose_referral": ("提出移送", "Propose referral"),
    "extend_investigation": ("延长办案期限", "Extend investigation"),
    "approve_referral": ("批准移送", "Approve referral"),
    "reject_referral": ("不批准移送", "Reject referral"),
    "transfer_to_police": ("移送公安机关", "Transfer to police"),
    "police_file": ("公安立案", "Police file case"),
    "police_decline": ("公安不予立案", "Police decline"),
    "forward_jurisdiction": ("转送有管辖权机关", "Forward jurisdiction"),
    "request_supplement": ("要求补充材料", "Request supplement"),
    "request_reconsideration": ("申请复议", "Request reconsideration"),
    "request_supervision": ("提请立案监督", "Request filing supervision"),
    "accept_decline": ("接受不立案决定", "Accept decline"),
    "uphold_decline": ("复议维持不立案", "Uphold decline"),
    "supervision_upholds_decline": ("监督认可不立案", "Supervision upholds decline"),
    "complete_handover": ("完成证据移交", "Complete handover"),
    "submit_for_prosecution": ("移送审查起诉", "Submit for prosecution"),
    "drop_investigation": ("撤销案件", "Drop investigation"),
    "indict": ("提起公诉", "Indict"),
    "return_for_supplementary_investigation": ("退回补充侦查", "Return for supplementary investigation"),
    "extend_review": ("延长审查起诉期限", "Extend review"),
    "decline_prosecution": ("不起诉", "Decline prosecution"),
    "refer_back_for_penalty": ("反向移送行政处罚", "Refer back for penalty"),
    "resubmit": ("补充侦查后重新移送", "Resubmit"),
    "pronounce_judgment": ("宣判", "Pronounce judgment"),
    "extend_trial": ("延长审理期限", "Extend trial"),
    "suspend": ("中止", "Suspend"),
    "resume": ("恢复", "Resume"),
    "withdraw": ("撤销", "Withdraw"),
}


# --- the chart's model ----------------------------------------------------------------------------


@dataclass
class CaseContext:
    """Everything the chart's guards read and its actions change; no database object.

    ``state`` holds the active configuration as python-statemachine stores it (a value or an
    ``OrderedSet`` of state ids). ``replaying`` turns guards off to rebuild a state from a log whose
    events were already checked when they happened.
    """

    case_no: str = ""
    state: Any = None
    outcome: str | None = None
    counters: dict[str, int] = field(default_factory=dict)
    attachment_kinds: frozenset[str] = frozenset()
    unresolved_evidence: tuple[str, ...] = ()
    loss_threshold: int = 300_000
    illegal_gain_threshold: int = 300_000
    replaying: bool = False


class StrictChart(StateChart):
    """Base class that makes python-statemachine refuse loudly (its 3.x defaults are permissive)."""

    allow_event_without_transition = False  # an event with no transition raises TransitionNotAllowed
    catch_errors_as_events = False  # an error in a guard or action propagates: nothing is persisted
    enable_self_transition_entries = False
    atomic_configuration_update = True


_Chart = TypeVar("_Chart", bound=StrictChart)


def chart_in(cls: type[_Chart], state: str) -> _Chart:
    """A flat chart of ``cls`` standing in the stored ``state``; a value it does not know fails here, not
    later with a KeyError on first use (STACK-NOTES gotcha 8)."""
    if state not in {s.id for s in cls.states}:
        raise ValueError(f"unknown {cls.__name__} state {state!r}")
    chart = cls()
    if chart.current_state_value != state:
        chart.current_state_value = state
    return chart


class CaseLifecycle(StrictChart):
    """案件生命周期: from lead intake to judgment, across market regulation, police, procuratorate and court."""

    class active(State.Compound, name="办理中"):
        class intake(State.Compound, name="线索受理"):
            lead_registered = State("线索登记", initial=True)
            verifying = State("核查")

            start_verification = lead_registered.to(verifying)
            extend_verification = verifying.to.itself(internal=True, validators="check_verification_extension")

        class administrative(State.Compound, name="立案查处"):
            investigating = State("立案调查", initial=True)
            appraisal = State("技术鉴定")
            joint_investigation = State("联合调查")
            penalty_notice = State("处罚告知")
            hearing = State("听证")

            request_appraisal = investigating.to(appraisal)
            complete_appraisal = appraisal.to(investigating, on="count_appraisal")
            start_joint_investigation = investigating.to(joint_investigation)
            end_joint_investigation = joint_investigation.to(investigating)
            notify_penalty = investigating.to(penalty_notice)
            request_hearing = penalty_notice.to(hearing)
            extend_investigation = investigating.to.itself(internal=True)

        class referral(State.Compound, name="移送公安"):
            referral_review = State("移送审批", initial=True)
            awaiting_transfer = State("待移送")
            police_review = State("公安审查")
            police_declined = State("不予立案")
            reconsideration = State("复议")
            reconsideration_upheld = State("复议维持")
            filing_supervision = State("立案监督")

            approve_referral = referral_review.to(awaiting_transfer)
            transfer_to_police = awaiting_transfer.to(police_review, validators="check_transfer_package")
            police_decline = police_review.to(police_declined)
            forward_jurisdiction = police_review.to.itself(internal=True)
            request_supplement = police_review.to.itself(internal=True)
            request_reconsideration = police_declined.to(reconsideration)
            request_supervision = police_declined.to(filing_supervision) | reconsideration_upheld.to(filing_supervision)
            uphold_decline = reconsideration.to(reconsideration_upheld)

        class criminal(State.Compound, name="刑事侦查"):
            evidence_handover = State("证据移交与转换", initial=True)
            criminal_investigation = State("侦查")

            complete_handover = evidence_handover.to(criminal_investigation, validators="check_evidence_resolved")

        class judicial(State.Compound, name="审查起诉与审判"):
            prosecution_review = State("审查起诉", initial=True)
            supplementary_investigation = State("退回补充侦查")
            trial = State("审判")

            indict = prosecution_review.to(trial)
            return_for_supplementary_investigation = prosecution_review.to(
                supplementary_investigation, validators="check_return_limit", on="count_return"
            )
            extend_review = prosecution_review.to.itself(internal=True, validators="check_review_extension")
            resubmit = supplementary_investigation.to(prosecution_review)
            extend_trial = trial.to.itself(internal=True)

        # Transitions that cross phases are declared at this level, where every phase is in scope.
        file_case = intake.verifying.to(administrative)
        propose_referral = administrative.investigating.to(
            referral, validators="check_referral_ground"
        ) | administrative.joint_investigation.to(referral, validators="check_referral_ground")
        reject_referral = referral.referral_review.to(administrative)
        police_file = (
            referral.police_review.to(criminal)
            | referral.reconsideration.to(criminal)
            | referral.filing_supervision.to(criminal)
        )
        accept_decline = referral.police_declined.to(administrative) | referral.reconsideration_upheld.to(
            administrative
        )
        supervision_upholds_decline = referral.filing_supervision.to(administrative)
        submit_for_prosecution = criminal.criminal_investigation.to(judicial)
        drop_investigation = criminal.criminal_investigation.to(administrative)
        refer_back_for_penalty = judicial.prosecution_review.to(administrative)

        active_history = HistoryState(type="deep")

    suspended = State("中止")
    closed = State("结案", final=True)

    suspend = active.to(suspended)
    resume = suspended.to(active.active_history)

    decline_filing = active.intake.verifying.to(closed, on="record_outcome")
    transfer_jurisdiction = active.intake.verifying.to(closed, on="record_outcome")
    close_no_violation = active.administrative.investigating.to(
        closed, on="record_outcome"
    ) | active.administrative.hearing.to(closed, on="record_outcome")
    decide_penalty = active.administrative.penalty_notice.to(closed, on="record_outcome") | (
        active.administrative.hearing.to(closed, on="record_outcome")
    )
    decline_prosecution = active.judicial.prosecution_review.to(closed, on="record_outcome")
    pronounce_judgment = active.judicial.trial.to(closed, on="record_outcome")
    withdraw = active.intake.to(closed, on="record_outcome") | active.administrative.to(closed, on="record_outcome")

    # --- guards: validators raise GuardFailed naming the rule they enforce --------------------------

    @property
    def ctx(self) -> CaseContext:
        return self.model  # type: ignore[return-value]

    def check_verification_extension(self) -> None:
        if not self.ctx.replaying and self.ctx.counters.get("verification_extensions", 0) >= 1:
            raise GuardFailed(
                "the verification period may be extended only once (15 working days)",
                rule="《市场监督管理行政处罚程序规定》第十八条",
            )

    def check_review_extension(self) -> None:
        if not self.ctx.replaying and self.ctx.counters.get("review_extensions", 0) >= 1:
            raise GuardFailed(
                "the prosecution review period may be extended only once (15 days)",
                rule="《刑事诉讼法》第一百七十二条",
            )

    def check_return_limit(self) -> None:
        returns = self.ctx.counters.get("supplementary_returns", 0)
        if not self.ctx.replaying and returns >= MAX_SUPPLEMENTARY_RETURNS:
            raise GuardFailed(
                f"the case was already returned for supplementary investigation {returns} times; "
                f"at most {MAX_SUPPLEMENTARY_RETURNS} returns are allowed — indict or decline prosecution",
                rule="《刑事诉讼法》第一百七十五条",
            )

    def check_transfer_package(self) -> None:
        if self.ctx.replaying:
            return
        missing = missing_transfer_documents(self.ctx)
        if missing:
            raise GuardFailed(
                "the transfer package is incomplete; attach: " + ", ".join(missing),
                rule="《行政执法机关移送涉嫌犯罪案件的规定》第六条",
            )

    def check_evidence_resolved(self) -> None:
        if not self.ctx.replaying and self.ctx.unresolved_evidence:
            raise GuardFailed(
                "evidence items not yet resolved (admitted, re-collected or excluded): "
                + ", ".join(self.ctx.unresolved_evidence),
                rule="《刑事诉讼法》第五十四条; 法发〔2011〕3号 第二条",
            )

    def check_referral_ground(self, data: Mapping[str, Any] | None = None) -> None:
        if not self.ctx.replaying:
            check_referral_ground(data or {}, self.ctx.loss_threshold, self.ctx.illegal_gain_threshold)

    # --- actions: change only the context ---------------------------------------------------------

    def on_extend_verification(self) -> None:
        self._count("verification_extensions")

    def on_extend_review(self) -> None:
        self._count("review_extensions")

    def count_return(self) -> None:
        self._count("supplementary_returns")

    def count_appraisal(self) -> None:
        self._count("appraisals")

    def on_resubmit(self) -> None:
        self._count("resubmissions")

    def record_outcome(self, event: str, data: Mapping[str, Any] | None = None) -> None:
        outcome = CLOSING_OUTCOMES[event]
        if outcome is None:
            outcome = str((data or {}).get("outcome", ""))
            if outcome not in ("convicted", "acquitted"):
                raise GuardFailed("outcome must be convicted or acquitted", rule="pronounce_judgment")
        self.ctx.outcome = outcome

    def _count(self, key: str) -> None:
        self.ctx.counters[key] = self.ctx.counters.get(key, 0) + 1


# --- pure helpers shared by the chart and its callers ---------------------------------------------

STATE_IDS: frozenset[str] = frozenset(s.id for s in CaseLifecycle.states_map.values() if not s.is_history)
EVENT_IDS: frozenset[str] = frozenset(str(e) for e in CaseLifecycle._events)  # the library's event registry
LEAF_STATE_IDS: frozenset[str] = frozenset(
    s.id for s in CaseLifecycle.states_map.values() if not s.is_compound and not s.is_history
)


def missing_transfer_documents(ctx: CaseContext) -> list[str]:
    """Kinds of the transfer package not yet attached (appraisal report too once an appraisal was done)."""
    required = list(TRANSFER_PACKAGE)
    if ctx.counters.get("appraisals", 0) > 0:
        required.append("appraisal_report")
    return [kind for kind in required if kind not in ctx.attachment_kinds]


def check_referral_ground(data: Mapping[str, Any], loss_threshold: int, illegal_gain_threshold: int) -> None:
    """Refuse a referral whose ground does not meet the filing standard (amounts from config)."""
    ground = data.get("ground")
    standard = "立案追诉标准(二)第七十三条(2020年修正)"
    if ground == "loss":
        amount = int(data.get("loss_amount") or 0)
        if amount < loss_threshold:
            raise GuardFailed(
                f"loss_amount {amount} is below the filing standard of RMB {loss_threshold}; "
                "give another ground (e.g. reasonable_suspicion with a reason)",
                rule=standard,
            )
    elif ground == "illegal_gain":
        amount = int(data.get("illegal_gain") or 0)
        if amount < illegal_gain_threshold:
            raise GuardFailed(
                f"illegal_gain {amount} is below the filing standard of RMB {illegal_gain_threshold}; "
                "give another ground (e.g. reasonable_suspicion with a reason)",
                rule=standard,
            )
    elif ground in ("other_major_loss", "reasonable_suspicion") and not str(data.get("reason") or "").strip():
        rule = "《行政执法机关移送涉嫌犯罪案件的规定》第三条第二款" if ground == "reasonable_suspicion" else standard
        raise GuardFailed(f"ground {ground} needs a written reason (--set reason=...)", rule=rule)


def new_chart(
    ctx: CaseContext, configuration: Iterable[str] | None = None, history: Mapping[str, Iterable[str]] | None = None
) -> CaseLifecycle:
    """Build a chart over ``ctx``: a new case (no configuration) or one restored from storage.

    Raises ``ValueError`` for a stored state id the chart does not know (a corrupt or foreign row),
    instead of failing later with a ``KeyError`` (STACK-NOTES gotcha 8).
    """
    if configuration is not None:
        values = list(configuration)
        unknown = [v for v in values if v not in CaseLifecycle.states_map]
        if unknown or not values:
            raise ValueError(f"stored configuration {values!r} has unknown states {unknown!r}")
        ctx.state = OrderedSet(values) if len(values) > 1 else values[0]
    chart = CaseLifecycle(ctx)
    if history:
        for key, values in history.items():
            chart.history_values[key] = [chart.states_map[v] for v in values]
    return chart


def configuration_of(chart: CaseLifecycle) -> list[str]:
    """The active configuration as a list of state ids, outermost first (what is stored)."""
    return [s.id for s in chart.configuration]


def history_of(chart: CaseLifecycle) -> dict[str, list[str]]:
    """The remembered history configurations (what ``resume`` returns to)."""
    return {key: [s.id for s in states] for key, states in chart.history_values.items()}


def leaf_state(configuration: Iterable[str]) -> str:
    """The innermost active state of a stored configuration."""
    leaves = [s for s in configuration if s in LEAF_STATE_IDS]
    return leaves[-1] if leaves else list(configuration)[-1]


def phase_of(configuration: Iterable[str], history: Mapping[str, Iterable[str]] | None = None) -> str:
    """The phase a configuration is in; a suspended case reports the phase it was suspended in."""
    conf = list(configuration)
    for phase in PHASES:
        if phase in conf:
            return phase
    if SUSPENDED in conf and history and HISTORY in history:
        for phase in PHASES:
            if phase in history[HISTORY]:
                return phase
    return conf[-1] if conf else ""


def allowed_events_of(chart: CaseLifecycle) -> list[str]:
    """Events that have a transition from the current configuration (guards not evaluated)."""
    return sorted({e.id for e in chart.allowed_events})


# --- the chart's answers, memoised ----------------------------------------------------------------
#
# Building a python-statemachine chart costs ~0.5 ms, as much as a whole raw-driver transaction. The chart
# is pure over its CaseContext and the event's data, so its answers are kept per process: what is allowed
# from a configuration, and where an event leads from a context with given data. The key holds every field
# a guard or action reads; a refusal is never kept (it is asked again and explained by the real chart).

#: Memo entries kept per process before the memo starts over (a few hundred configurations exist).
MEMO_LIMIT = 20_000


@dataclass(frozen=True)
class Step:
    """Where an event leads: the new configuration and history, and the context's counters and outcome.

    The lists and dicts are shared by every caller of the memo: copy them before changing them."""

    configuration: list[str]
    history: dict[str, list[str]]
    counters: dict[str, int]
    outcome: str | None


_allowed_memo: dict[Any, list[str]] = {}
_step_memo: dict[Any, Step] = {}


def _history_key(history: Mapping[str, Iterable[str]] | None) -> tuple[Any, ...]:
    return tuple(sorted((k, tuple(v)) for k, v in (history or {}).items()))


def _frozen(value: Any) -> Any:
    """A hashable stand-in for event data (lists and dicts nested); ``TypeError`` for anything else."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    hash(value)
    return (type(value).__name__, value)


def allowed_in(configuration: Iterable[str], history: Mapping[str, Iterable[str]] | None = None) -> list[str]:
    """``allowed_events_of`` a chart restored at this configuration and history, memoised (a new list)."""
    conf = tuple(configuration)
    key = (conf, _history_key(history))
    found = _allowed_memo.get(key)
    if found is None:
        if len(_allowed_memo) >= MEMO_LIMIT:
            _allowed_memo.clear()
        found = _allowed_memo[key] = allowed_events_of(new_chart(CaseContext(), conf, history))
    return list(found)


def step(
    ctx: CaseContext,
    configuration: Iterable[str],
    history: Mapping[str, Iterable[str]] | None,
    event: str,
    data: Mapping[str, Any],
) -> Step:
    """Send ``event`` with ``data`` to the chart at ``configuration`` over ``ctx``; memoised.

    Raises what ``chart.send`` raises (``GuardFailed``, ``TransitionNotAllowed``); ``ctx`` is not changed.
    """
    conf = tuple(configuration)
    try:
        key: Any = (
            conf,
            _history_key(history),
            tuple(sorted(ctx.counters.items())),
            ctx.outcome,
            ctx.attachment_kinds,
            ctx.unresolved_evidence,
            ctx.loss_threshold,
            ctx.illegal_gain_threshold,
            ctx.replaying,
            event,
            _frozen(dict(data)),
        )
    except TypeError:
        key = None  # data the memo cannot key on: ask the chart every time
    found = _step_memo.get(key) if key is not None else None
    if found is not None:
        return found
    model = replace(ctx, counters=dict(ctx.counters))  # the chart's actions change the model, not the caller's
    chart = new_chart(model, conf, history)
    chart.send(event, data=dict(data))
    result = Step(configuration_of(chart), history_of(chart), dict(model.counters), model.outcome)
    if key is not None:
        if len(_step_memo) >= MEMO_LIMIT:
            _step_memo.clear()
        _step_memo[key] = result
    return result


def state_label(state_id: str, lang: str = "zh") -> str:
    """A state's label in Chinese (default) or English."""
    zh, en = STATE_LABELS.get(state_id, (state_id, state_id))
    return en if lang == "en" else zh


RECORD_EVENT_LABELS: dict[str, tuple[str, str]] = {
    "open_case": ("登记线索", "Lead registered"),
    "deadline_reminder": ("期限提醒", "Deadline reminder"),
    "deadline_missed": ("期限届满未办结", "Deadline missed"),
    "supervision_listed": ("挂牌督办", "Listed for supervision"),
    "supervision_report": ("督办进展报告", "Supervision progress report"),
    "supervision_escalated": ("督办升级", "Supervision escalated"),
    "supervision_delisted": ("摘牌", "Delisted"),
    "evidence_registered": ("登记证据", "Evidence registered"),
    "evidence_handed_over": ("移交证据", "Evidence handed over"),
    "evidence_resolved": ("证据审查处理", "Evidence decided"),
    "evidence_verified": ("证据文件核验", "Evidence file verified"),
    "appraisal_received": ("鉴定机构受理", "Appraisal accepted by the institution"),
    "consultation_requested": ("申请案件会商", "Consultation requested"),
    "consultation_scheduled": ("会商已安排", "Consultation scheduled"),
    "consultation_cancelled": ("会商取消", "Consultation cancelled"),
    "consultation_resolved": ("会商意见", "Consultation resolved"),
    "meeting_resolution": ("会议议定事项", "Meeting resolution"),
    "action_item_done": ("议定事项完成", "Action item done"),
    "action_item_missed": ("议定事项逾期", "Action item overdue"),
}
"""Audit-log entries that are not chart events: intake, and facts recorded without moving the case."""

RECORD_EVENTS: tuple[str, ...] = tuple(k for k in RECORD_EVENT_LABELS if k != "open_case")


def event_label(event_id: str, lang: str = "zh") -> str:
    """An event's (or audit record's) label in Chinese (default) or English."""
    zh, en = EVENT_LABELS.get(event_id) or RECORD_EVENT_LABELS.get(event_id) or (event_id, event_id)
    return en if lang == "en" else zh


def _label_events() -> None:
    # Give every event its zh-CN label, so generated diagrams and the library's own messages read
    # in the users' language (the library would otherwise humanise the English id).
    for event_id in EVENT_IDS:
        getattr(CaseLifecycle, event_id).name = EVENT_LABELS[event_id][0]


_label_events()
