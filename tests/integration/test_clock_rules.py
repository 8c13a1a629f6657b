"""Every statutory clock rule of config.toml, driven through the real transition with an injected clock.

For each rule of the Clocks table (DOMAIN.md): it starts on its event with the due date the calendar gives
(computed here independently with ``WorkCalendar.add`` and hand-counted for a few), it is ``met`` when the case
leaves its scope in time and ``missed`` when it leaves late, it pauses (appraisal, hearing, suspension) with a
ledger, it is extended once with the approver recorded and refused a second time or by a non-approver with
nothing written, and it restarts where the law says the period is counted again.

T0 is Wednesday 2026-03-04 10:00 in Beijing; the ``builder`` sends one event per hour from there, so every
state of ``PATHS`` is reached on 2026-03-04 (``investigating`` at 12:00 ... ``trial`` at 19:00).
2026 holidays used below: Qingming 4-6 April (Sat-Mon), Labour Day 1-5 May (make-up workday Sat 9 May).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from app.settings import load_settings
from models.tables import Case, CaseEvent, Deadline, OutboxMessage
from states.calendar import SHANGHAI, WorkCalendar
from states.clocks import OPEN_CASE, ClockRule
from states.errors import GuardFailed, PermissionDenied
from tests.conftest import PATHS, REPO_CONFIG, CaseBuilder, FakeClock
from workflows.cases import CaseView, DeadlineView, advance_case, show_case
from workflows.uow import Deps, UnitOfWork

CALENDAR = WorkCalendar()  # the sample config declares no extra years or corrections

# --- the table under test ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Where a rule runs: the state its start event leads to (a key of ``PATHS``, whose last step is that
    event) and the steps that take the case out of the rule's ``active_in`` states (``@attach``: the
    transfer package, no event)."""

    state: str
    leave: tuple[str, ...]


SCOPES: dict[str, Scope] = {
    "A1": Scope("lead_registered", ("start_verification", "file_case")),  # still running in verifying
    "A3": Scope("investigating", ("propose_referral", "approve_referral")),  # still running in referral_review
    "A7": Scope("penalty_notice", ("request_hearing",)),
    "T2": Scope("referral_review", ("approve_referral",)),
    "T3": Scope("awaiting_transfer", ("@attach", "transfer_to_police")),
    "T7": Scope("police_review", ("police_file",)),
    "T9": Scope("police_declined", ("request_reconsideration",)),
    "T10": Scope("reconsideration", ("uphold_decline",)),
    "T11": Scope("reconsideration_upheld", ("request_supervision",)),
    "S1": Scope("filing_supervision", ("police_file",)),
    "T12": Scope("evidence_handover", ("complete_handover",)),
    "C4": Scope("prosecution_review", ("indict",)),
    "C5": Scope("supplementary_investigation", ("resubmit",)),
    "C6": Scope("trial", ("pronounce_judgment",)),
}

#: Rules that never start, and why.
NEVER_STARTS: dict[str, str] = {
    # Decree 310 art. 7 runs from "received a case without jurisdiction", a fact the chart has no event for
    # (forward_jurisdiction is the *end* of that period, and restarts T7 for the receiving organ).
    "T5": "start_on = [] — no chart event records that the police received a case outside its jurisdiction",
}

#: Due dates counted by hand for the builder's timing (a check on the calendar itself, not only on the engine).
HAND_COUNTED: dict[str, str] = {
    "A1": "2026-03-25T23:59+08:00",  # 15 workdays from Wed 4 Mar: 5,6 | 9-13 | 16-20 | 23,24,25
    "A3": "2026-06-02T23:59+08:00",  # 4 Mar + 90 days: 27 (Mar) + 30 (Apr) + 31 (May) + 2 → Tue 2 Jun
    "A7": "2026-03-11T23:59+08:00",  # 5 workdays: 5, 6, 9, 10, 11 Mar
    "T2": "2026-03-09T23:59+08:00",  # 4 Mar + 3 = Sat 7 Mar → rolls to Mon 9 Mar
    "T3": "2026-03-05T14:00+08:00",  # approved 4 Mar 14:00 + 24 hours, no rolling
    "T7": "2026-03-09T23:59+08:00",  # Sat 7 Mar → Mon 9 Mar
    "C4": "2026-04-07T23:59+08:00",  # 4 Apr is Qingming (4-6 Apr) → Tue 7 Apr
    "C6": "2026-05-06T23:59+08:00",  # 4 May is Labour Day (1-5 May) → Wed 6 May
}

#: Extension events: rule → (state, event, an approver, a handler of the sending agency, a supervisor of
#: another kind of agency, the refusal a second extension gets).
EXTENSIONS: dict[str, tuple[str, str, str, str, str, str]] = {
    "A1": (
        "verifying",
        "extend_verification",
        "sm_amr_supervisor",
        "sm_amr_handler",
        "sm_procuratorate_chief",
        "may be extended only once",
    ),
    "A3": (
        "investigating",
        "extend_investigation",
        "sm_amr_supervisor",
        "sm_amr_handler",
        "sm_court_president",
        r"already extended 1 time\(s\); at most 1 allowed",
    ),
    "C4": (
        "prosecution_review",
        "extend_review",
        "sm_procuratorate_chief",
        "sm_procuratorate_handler",
        "sm_amr_supervisor",
        "may be extended only once",
    ),
    "C6": (
        "trial",
        "extend_trial",
        "sm_court_president",
        "sm_court_handler",
        "sm_procuratorate_chief",
        r"already extended 1 time\(s\); at most 1 allowed",
    ),
}
SENDING_AGENCY = {"A1": "sm-amr", "A3": "sm-amr", "C4": "sm-procuratorate", "C6": "sm-court"}


# --- helpers ---------------------------------------------------------------------------------------------


def iso(value: datetime) -> str:
    """A time as DeadlineView shows it: Beijing, to the minute."""
    return value.astimezone(SHANGHAI).isoformat(timespec="minutes")


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


def remaining_text(delta: timedelta) -> str:
    """How ``case show`` words a positive time left (``21d13h``, or ``5h30m`` under a day)."""
    days, rest = divmod(int(delta.total_seconds()), 86400)
    return f"{days}d{rest // 3600}h" if days else f"{rest // 3600}h{(rest % 3600) // 60}m"


def rows_of(view: CaseView, rule: str) -> list[DeadlineView]:
    return [d for d in view.deadlines if d.rule == rule]


def only(view: CaseView, rule: str) -> DeadlineView:
    rows = rows_of(view, rule)
    assert len(rows) == 1, (rule, [(d.rule, d.status) for d in view.deadlines])
    return rows[0]


def start_event(state: str) -> str:
    return PATHS[state][-1] if PATHS[state] else OPEN_CASE


def expected_due(rule: ClockRule, start: datetime) -> datetime:
    return CALENDAR.add(start, rule.limit, rule.unit, roll_to_workday=rule.roll_to_workday).due_at


def expected_next_alert(rule: ClockRule, due: datetime, now: datetime) -> datetime:
    """The earliest reminder still ahead, else the due time itself (a miss is never dropped)."""
    ahead = [due - lead for lead in rule.reminder_leads() if due - lead > now]
    return min(ahead) if ahead else due


def step(builder: CaseBuilder, case_no: str, event: str, **data: Any) -> CaseView | None:
    if event == "@attach":
        builder.attach_package(case_no)
        return None
    return builder.send(case_no, event, **data)


def leave(builder: CaseBuilder, case_no: str, rule: str) -> CaseView:
    """Take the case out of ``rule``'s scope; the rule keeps running until the last step."""
    steps = SCOPES[rule].leave
    view: CaseView | None = None
    for i, event in enumerate(steps):
        view = step(builder, case_no, event)
        if view is not None and i < len(steps) - 1:
            assert only(view, rule).status in ("running", "missed"), (rule, event)
    assert view is not None
    return view


def snapshot(deps: Deps, case_no: str) -> tuple[Any, ...]:
    """Everything an event may write for a case: version, hash, audit rows, deadlines, outbox."""
    with UnitOfWork(deps, read_only=True) as uow:
        case = uow.case(case_no)
        events = uow.session.execute(
            select(func.count()).select_from(CaseEvent).where(CaseEvent.case_id == case.id)
        ).scalar_one()
        deadlines = [
            (d.rule, d.status, d.due_at, d.extensions_used, list(d.extensions), d.ended_at)
            for d in uow.session.execute(
                select(Deadline).where(Deadline.case_id == case.id).order_by(Deadline.id)
            ).scalars()
        ]
        outbox = uow.session.execute(select(func.count()).select_from(OutboxMessage)).scalar_one()
        return case.version, case.last_hash, case.state, events, deadlines, outbox


def started_by(deps: Deps, case_no: str, rule: str) -> list[tuple[str, str]]:
    """(started_by, status) of each deadline row of ``rule`` on the case, oldest first."""
    with UnitOfWork(deps, read_only=True) as uow:
        case_id = uow.session.execute(select(Case.id).where(Case.case_no == case_no)).scalar_one()
        rows = uow.session.execute(
            select(Deadline.started_by, Deadline.status)
            .where(Deadline.case_id == case_id, Deadline.rule == rule)
            .order_by(Deadline.id)
        ).all()
        return [(str(a), str(b)) for a, b in rows]


def extend(builder: CaseBuilder, case_no: str, rule: str, approver: str, reason: str = "案情重大复杂") -> CaseView:
    _state, event, *_ = EXTENSIONS[rule]
    return builder.send(case_no, event, approved_by=approver, reason=reason)


# --- the table is the configuration ------------------------------------------------------------------------


def test_the_table_covers_every_rule_of_config_toml() -> None:
    rules = load_settings(REPO_CONFIG, env={}).clocks
    assert set(SCOPES) | set(NEVER_STARTS) == set(rules)
    assert not set(SCOPES) & set(NEVER_STARTS)
    for rule_id, scope in SCOPES.items():
        rule = rules[rule_id]
        assert start_event(scope.state) in rule.start_on, rule_id
    assert {rid for rid, r in rules.items() if r.extensions} == set(EXTENSIONS)
    for rule_id, (_state, event, *_rest) in EXTENSIONS.items():
        assert [e.event for e in rules[rule_id].extensions] == [event]


# --- started, met, missed ------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule_id", list(SCOPES))
def test_rule_starts_on_its_event_with_the_statutory_due_date(rule_id: str, builder: CaseBuilder) -> None:
    rule = builder.deps.clock_rules[rule_id]
    scope = SCOPES[rule_id]
    view = builder.to_state(scope.state)
    start = builder.clock.now
    row = only(view, rule_id)
    due = expected_due(rule, start)
    assert (row.status, row.started_at, row.due_at) == ("running", iso(start), iso(due))
    if rule_id in HAND_COUNTED:
        assert row.due_at == HAND_COUNTED[rule_id]
    assert (row.unit, row.limit, row.responsible, row.basis) == (rule.unit, rule.limit, rule.responsible, rule.basis)
    assert (row.provisional, row.provisional_reason, row.overdue) == (False, "", False)
    assert row.remaining == remaining_text(due - start)
    assert row.next_alert_at == iso(expected_next_alert(rule, due, start))
    assert (row.extensions_used, row.pauses, row.extensions) == (0, [], [])
    assert started_by(builder.deps, view.case_no, rule_id) == [(start_event(scope.state), "running")]
    # case show (a later read) agrees with what the transition returned
    assert only(show_case(builder.deps, view.case_no), rule_id) == row


def test_a1_remaining_and_next_reminder_hand_counted(builder: CaseBuilder) -> None:
    a1 = only(builder.open(), "A1")
    # due 25 Mar 23:59:59 − 4 Mar 10:00 = 21 days 13:59:59; reminders 3d and 1d before → first at 22 Mar.
    assert (a1.remaining, a1.next_alert_at) == ("21d13h", "2026-03-22T23:59+08:00")


@pytest.mark.parametrize("rule_id", list(SCOPES))
def test_rule_is_met_when_the_case_leaves_its_scope_in_time(rule_id: str, builder: CaseBuilder) -> None:
    view = builder.to_state(SCOPES[rule_id].state)
    due = parse(only(view, rule_id).due_at)
    after = leave(builder, view.case_no, rule_id)
    assert builder.clock.now < due
    row = only(after, rule_id)
    assert (row.status, row.overdue, row.remaining, row.next_alert_at) == ("met", False, "", "")
    assert only(show_case(builder.deps, view.case_no), rule_id).status == "met"


@pytest.mark.parametrize("rule_id", list(SCOPES))
def test_rule_is_missed_when_the_case_leaves_after_the_due_time(rule_id: str, builder: CaseBuilder) -> None:
    view = builder.to_state(SCOPES[rule_id].state)
    due = parse(only(view, rule_id).due_at)
    builder.clock.now = due.astimezone(UTC) + timedelta(minutes=1)
    late = only(show_case(builder.deps, view.case_no), rule_id)  # still open: shown missed and overdue
    assert (late.status, late.overdue) == ("missed", True)
    assert late.remaining.startswith("-")
    after = leave(builder, view.case_no, rule_id)
    row = only(after, rule_id)
    assert (row.status, row.overdue, row.remaining, row.next_alert_at) == ("missed", False, "", "")
    assert started_by(builder.deps, view.case_no, rule_id)[-1][1] == "missed"  # stored, not only shown


def test_t5_never_starts(builder: CaseBuilder) -> None:
    assert builder.deps.clock_rules["T5"].start_on == []
    assert "police_review" in builder.deps.clock_rules["T5"].active_in
    view = builder.to_state("police_review")  # T5's scope is entered ...
    view = builder.send(view.case_no, "forward_jurisdiction")  # ... and the case forwarded, its end
    view = builder.send(view.case_no, "police_decline")
    assert rows_of(view, "T5") == []
    assert "T5" in NEVER_STARTS


def test_the_canonical_path_to_trial_starts_exactly_the_rules_on_it(builder: CaseBuilder) -> None:
    view = builder.to_state("trial")
    assert [(d.rule, d.status) for d in view.deadlines] == [
        ("A1", "met"),
        ("A3", "met"),
        ("T2", "met"),
        ("T3", "met"),
        ("T7", "met"),
        ("T12", "met"),
        ("C4", "met"),
        ("C6", "running"),
    ]


def test_a_rejected_referral_keeps_the_same_a3_clock(builder: CaseBuilder) -> None:
    view = builder.to_state("referral_review")
    due = only(view, "A3").due_at
    back = builder.send(view.case_no, "reject_referral")
    assert back.state == "investigating"
    assert (only(back, "A3").status, only(back, "A3").due_at) == ("running", due)
    assert only(back, "T2").status == "met"


# --- pauses ------------------------------------------------------------------------------------------------


def test_appraisal_pauses_a3_and_moves_its_due_date_by_the_paused_days(builder: CaseBuilder) -> None:
    view = builder.to_state("investigating")
    due_before = only(view, "A3").due_at
    builder.clock.advance(days=3)
    paused = builder.send(view.case_no, "request_appraisal")
    paused_at = builder.clock.now
    a3 = only(paused, "A3")
    assert (a3.status, a3.due_at, a3.overdue, a3.next_alert_at) == ("paused", due_before, False, "")
    assert a3.remaining  # an open (paused) clock still shows its time left
    assert a3.pauses == [
        {
            "paused_at": iso(paused_at),
            "paused_by": "request_appraisal",
            "resumed_at": "",
            "resumed_by": "",
            "due_before": due_before,
            "due_after": "",
        }
    ]
    builder.clock.advance(days=20)
    resumed = builder.send(view.case_no, "complete_appraisal")
    resumed_at = builder.clock.now
    a3 = only(resumed, "A3")
    shifted = CALENDAR.shift_for_pause(parse(due_before), paused_at, resumed_at, "days", roll_to_workday=True)
    # Paused Sat 7 Mar 13:00, resumed Fri 27 Mar 14:00: 20 calendar days; Tue 2 Jun + 20 = Mon 22 Jun.
    assert a3.due_at == iso(shifted.due_at) == "2026-06-22T23:59+08:00"
    assert a3.status == "running"
    assert a3.pauses == [
        {
            "paused_at": iso(paused_at),
            "paused_by": "request_appraisal",
            "resumed_at": iso(resumed_at),
            "resumed_by": "complete_appraisal",
            "due_before": due_before,
            "due_after": a3.due_at,
        }
    ]
    assert a3.next_alert_at == iso(expected_next_alert(builder.deps.clock_rules["A3"], parse(a3.due_at), resumed_at))


def test_hearing_pauses_a3_so_a_long_hearing_is_not_a_miss(builder: CaseBuilder) -> None:
    view = builder.to_state("penalty_notice")
    due = only(view, "A3").due_at
    hearing = builder.send(view.case_no, "request_hearing")
    paused_at = builder.clock.now
    assert only(hearing, "A7").status == "met"
    assert only(hearing, "A3").status == "paused"
    builder.clock.now = parse(due).astimezone(UTC) + timedelta(days=30)  # the hearing outlasts the 90 days
    shown = only(show_case(builder.deps, view.case_no), "A3")
    assert (shown.status, shown.overdue, shown.due_at) == ("paused", False, due)
    decided = builder.send(view.case_no, "decide_penalty")
    a3 = only(decided, "A3")
    assert a3.status == "met"  # only ~0 days of its own time were used before the hearing
    assert a3.pauses == [
        {
            "paused_at": iso(paused_at),
            "paused_by": "request_hearing",
            "resumed_at": iso(builder.clock.now),
            "resumed_by": "decide_penalty",
            "due_before": due,
            "due_after": due,
        }
    ]


def test_a_clock_already_missed_before_a_pause_stays_missed(builder: CaseBuilder) -> None:
    view = builder.to_state("investigating")
    due = parse(only(view, "A3").due_at)
    builder.clock.now = due.astimezone(UTC) + timedelta(days=10)  # A3 is 10 days overdue
    notified = builder.send(view.case_no, "notify_penalty")
    assert only(notified, "A3").status == "missed"
    builder.send(view.case_no, "request_hearing")  # the pause starts after the miss
    decided = builder.send(view.case_no, "decide_penalty")
    assert only(decided, "A3").status == "missed"


SUSPENDABLE: dict[str, str] = {"A1": "verifying", "A3": "investigating", "A7": "penalty_notice"}


@pytest.mark.parametrize("rule_id", list(SUSPENDABLE))
def test_suspension_pauses_the_clock_and_resume_moves_it_in_the_rules_unit(rule_id: str, builder: CaseBuilder) -> None:
    rule = builder.deps.clock_rules[rule_id]
    state = SUSPENDABLE[rule_id]
    view = builder.to_state(state)
    running = {d.rule for d in view.deadlines if d.status == "running"}
    assert rule_id in running
    due_before = only(view, rule_id).due_at
    builder.clock.advance(days=2)
    suspended = builder.send(view.case_no, "suspend")
    paused_at = builder.clock.now
    assert (suspended.state, suspended.suspended_from) == ("suspended", state)
    for d in suspended.deadlines:  # every running clock pauses (every rule has "suspended" in pause_in)
        if d.rule in running:
            assert (d.status, d.pauses[-1]["paused_by"]) == ("paused", "suspend"), d.rule
    builder.clock.advance(days=5)
    resumed = builder.send(view.case_no, "resume")
    resumed_at = builder.clock.now
    assert resumed.state == state
    row = only(resumed, rule_id)
    shifted = CALENDAR.shift_for_pause(
        parse(due_before), paused_at, resumed_at, rule.unit, roll_to_workday=rule.roll_to_workday
    )
    assert (row.status, row.due_at) == ("running", iso(shifted.due_at))
    assert row.due_at > due_before
    assert row.pauses == [
        {
            "paused_at": iso(paused_at),
            "paused_by": "suspend",
            "resumed_at": iso(resumed_at),
            "resumed_by": "resume",
            "due_before": due_before,
            "due_after": row.due_at,
        }
    ]


def test_a1_suspension_hand_counted(builder: CaseBuilder) -> None:
    view = builder.to_state("verifying")
    builder.clock.advance(days=2)
    builder.send(view.case_no, "suspend")  # Fri 6 Mar 12:00
    builder.clock.advance(days=5)
    resumed = builder.send(view.case_no, "resume")  # Wed 11 Mar 13:00: 9, 10, 11 Mar were working days
    assert only(resumed, "A1").due_at == "2026-03-30T23:59+08:00"  # Wed 25 Mar + 3 working days


def test_suspension_during_appraisal_is_one_pause_not_two(builder: CaseBuilder) -> None:
    view = builder.to_state("appraisal")
    paused_at = builder.clock.now
    due_before = only(view, "A3").due_at
    builder.clock.advance(days=4)
    builder.send(view.case_no, "suspend")
    builder.clock.advance(days=4)
    back = builder.send(view.case_no, "resume")
    assert (back.state, only(back, "A3").status) == ("appraisal", "paused")
    builder.clock.advance(days=4)
    done = builder.send(view.case_no, "complete_appraisal")
    a3 = only(done, "A3")
    assert len(a3.pauses) == 1
    assert (a3.pauses[0]["paused_by"], a3.pauses[0]["resumed_by"]) == ("request_appraisal", "complete_appraisal")
    shifted = CALENDAR.shift_for_pause(parse(due_before), paused_at, builder.clock.now, "days")
    assert a3.due_at == iso(shifted.due_at)  # 12 days once, not the 4 suspended days counted twice


@pytest.mark.parametrize(("state", "rule_id"), [("referral_review", "T2"), ("prosecution_review", "C4")])
def test_suspension_outside_intake_and_administrative_is_refused(
    state: str, rule_id: str, builder: CaseBuilder
) -> None:
    view = builder.to_state(state)
    before = snapshot(builder.deps, view.case_no)
    with pytest.raises(PermissionDenied, match="only while it is in intake or administrative"):
        builder.send(view.case_no, "suspend")
    assert snapshot(builder.deps, view.case_no) == before
    assert only(show_case(builder.deps, view.case_no), rule_id).status == "running"


# --- extensions --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule_id", list(EXTENSIONS))
def test_one_extension_is_accepted_with_approver_and_reason_recorded(rule_id: str, builder: CaseBuilder) -> None:
    rule = builder.deps.clock_rules[rule_id]
    (ext,) = rule.extensions
    state, event, approver, *_ = EXTENSIONS[rule_id]
    view = builder.to_state(state)
    due_before = only(view, rule_id).due_at
    extended = extend(builder, view.case_no, rule_id, approver, reason="重大复杂，经负责人批准")
    row = only(extended, rule_id)
    # Counted from the period's nominal end (before any rest-day roll), then rolled once.
    nominal = CALENDAR.add(parse(row.started_at), rule.limit, rule.unit, roll_to_workday=False)
    due_after = CALENDAR.add(nominal.due_at, ext.amount, ext.unit or rule.unit, roll_to_workday=rule.roll_to_workday)
    assert (row.status, row.due_at, row.extensions_used) == ("running", iso(due_after.due_at), 1)
    assert extended.state == state and extended.version == view.version + 1
    (entry,) = row.extensions
    assert {k: entry[k] for k in ("event", "approved_by", "reason", "amount", "unit")} == {
        "event": event,
        "approved_by": approver,
        "reason": "重大复杂，经负责人批准",
        "amount": ext.amount,
        "unit": ext.unit or rule.unit,
    }
    assert iso(parse(entry["due_before"])) == due_before and iso(parse(entry["due_after"])) == row.due_at
    assert parse(entry["at"]) == builder.clock.now
    assert only(show_case(builder.deps, view.case_no), rule_id).extensions == row.extensions


@pytest.mark.parametrize(
    ("rule_id", "due_after"),
    [
        ("A1", "2026-04-16T23:59+08:00"),  # 25 Mar + 15 workdays, skipping Qingming 4-6 Apr
        ("A3", "2026-07-02T23:59+08:00"),  # 2 Jun + 30 days
        ("C4", "2026-04-20T23:59+08:00"),  # nominal Sat 4 Apr + 15 days = Sun 19 Apr, rolled to Mon 20 Apr
    ],
)
def test_extension_due_dates_hand_counted(rule_id: str, due_after: str, builder: CaseBuilder) -> None:
    state, _event, approver, *_ = EXTENSIONS[rule_id]
    view = builder.to_state(state)
    assert only(extend(builder, view.case_no, rule_id, approver), rule_id).due_at == due_after


def test_trial_extension_never_exceeds_three_months_from_acceptance(builder: CaseBuilder) -> None:
    view = builder.to_state("trial")  # indicted Wed 4 Mar 2026; 2 months = Mon 4 May (holiday) → Wed 6 May
    assert only(view, "C6").due_at == "2026-05-06T23:59+08:00"
    extended = extend(builder, view.case_no, "C6", "sm_court_president")
    three_months = CALENDAR.add(parse(only(view, "C6").started_at), 3, "months").due_at  # Thu 4 Jun, a workday
    assert only(extended, "C6").due_at == iso(three_months) == "2026-06-04T23:59+08:00"


@pytest.mark.parametrize("rule_id", list(EXTENSIONS))
def test_a_second_extension_is_refused_and_writes_nothing(rule_id: str, builder: CaseBuilder) -> None:
    state, _event, approver, *_rest, refusal = EXTENSIONS[rule_id]
    view = builder.to_state(state)
    extend(builder, view.case_no, rule_id, approver)
    before = snapshot(builder.deps, view.case_no)
    with pytest.raises(GuardFailed, match=refusal):
        extend(builder, view.case_no, rule_id, approver)
    assert snapshot(builder.deps, view.case_no) == before
    row = only(show_case(builder.deps, view.case_no), rule_id)
    assert (row.extensions_used, len(row.extensions)) == (1, 1)


@pytest.mark.parametrize("who", ["handler", "other_kind"])
@pytest.mark.parametrize("rule_id", list(EXTENSIONS))
def test_an_extension_approved_by_a_non_approver_is_refused_and_writes_nothing(
    rule_id: str, who: str, builder: CaseBuilder
) -> None:
    state, _event, _approver, handler, other_kind, _refusal = EXTENSIONS[rule_id]
    approved_by = handler if who == "handler" else other_kind
    view = builder.to_state(state)
    before = snapshot(builder.deps, view.case_no)
    with pytest.raises(GuardFailed) as caught:
        extend(builder, view.case_no, rule_id, approved_by)
    message = str(caught.value)
    assert f"{approved_by} may not approve extending {rule_id}" in message
    assert f"supervisor of {SENDING_AGENCY[rule_id]} or of an agency of its kind above it" in message
    assert snapshot(builder.deps, view.case_no) == before
    row = only(show_case(builder.deps, view.case_no), rule_id)
    assert (row.extensions_used, row.extensions, row.due_at) == (0, [], only(view, rule_id).due_at)


def test_an_extension_after_the_due_time_is_refused_and_writes_nothing(builder: CaseBuilder) -> None:
    view = builder.to_state("verifying")
    builder.clock.now = parse(only(view, "A1").due_at).astimezone(UTC) + timedelta(days=3)  # A1 missed 3 days ago
    before = snapshot(builder.deps, view.case_no)
    with pytest.raises(GuardFailed):
        extend(builder, view.case_no, "A1", "sm_amr_supervisor")
    assert snapshot(builder.deps, view.case_no) == before


def test_a_supervisor_of_the_same_kind_covering_the_agency_may_approve(builder: CaseBuilder) -> None:
    view = builder.to_state("verifying")
    extended = extend(builder, view.case_no, "A1", "fj_amr_supervisor")  # the province covers Sanming
    assert only(extended, "A1").extensions[0]["approved_by"] == "fj_amr_supervisor"


# --- restarts ------------------------------------------------------------------------------------------------


def test_t7_restarts_when_the_police_forward_the_case(builder: CaseBuilder) -> None:
    view = builder.to_state("police_review")
    first = only(view, "T7")
    builder.clock.advance(days=3)
    forwarded = builder.send(view.case_no, "forward_jurisdiction")  # Sat 7 Mar 16:00
    old, new = rows_of(forwarded, "T7")
    assert (old.started_at, old.due_at) == (first.started_at, first.due_at)
    assert (old.status, old.remaining, old.next_alert_at) == ("cancelled", "", "")
    rule = builder.deps.clock_rules["T7"]
    due = expected_due(rule, builder.clock.now)
    assert (new.status, new.started_at, new.due_at) == ("running", iso(builder.clock.now), iso(due))
    assert (old.due_at, new.due_at) == ("2026-03-09T23:59+08:00", "2026-03-10T23:59+08:00")  # Sat 7 + 3 = Tue 10
    assert started_by(builder.deps, view.case_no, "T7") == [
        ("transfer_to_police", "cancelled"),
        ("forward_jurisdiction", "running"),
    ]
    assert "jl-psb" in forwarded.participants


def test_c4_restarts_on_resubmission_after_supplementary_investigation(builder: CaseBuilder) -> None:
    view = builder.to_state("prosecution_review")
    builder.clock.advance(days=10)
    returned = builder.send(view.case_no, "return_for_supplementary_investigation")
    # The return is the procuratorate's decision within its review period: that period ends (met), and
    # the returned case gets C5 for the police.
    assert only(returned, "C4").status == "met"
    assert only(returned, "C5").status == "running"
    builder.clock.advance(days=20)
    back = builder.send(view.case_no, "resubmit")
    old, new = rows_of(back, "C4")
    assert old.status == "met" and old.due_at == only(view, "C4").due_at
    due = expected_due(builder.deps.clock_rules["C4"], builder.clock.now)
    assert (new.status, new.started_at, new.due_at) == ("running", iso(builder.clock.now), iso(due))
    assert new.due_at > old.due_at
    assert only(back, "C5").status == "met"
    assert started_by(builder.deps, view.case_no, "C4") == [("submit_for_prosecution", "met"), ("resubmit", "running")]


def test_c5_runs_once_per_return_and_a_third_return_is_refused(builder: CaseBuilder) -> None:
    view = builder.to_state("prosecution_review")
    for _ in range(2):
        builder.send(view.case_no, "return_for_supplementary_investigation")
        view = builder.send(view.case_no, "resubmit")
    assert [d.status for d in rows_of(view, "C5")] == ["met", "met"]
    assert [d.status for d in rows_of(view, "C4")] == ["met", "met", "running"]
    before = snapshot(builder.deps, view.case_no)
    with pytest.raises(GuardFailed, match="at most 2 returns"):
        builder.send(view.case_no, "return_for_supplementary_investigation")
    assert snapshot(builder.deps, view.case_no) == before


A3_COMEBACKS: dict[str, str] = {
    "accept_decline": "police_declined",
    "supervision_upholds_decline": "filing_supervision",
    "drop_investigation": "criminal_investigation",
    "refer_back_for_penalty": "prosecution_review",
}


def test_a3_comebacks_are_its_start_events() -> None:
    rule = load_settings(REPO_CONFIG, env={}).clocks["A3"]
    assert set(rule.start_on) == {"file_case", *A3_COMEBACKS}


@pytest.mark.parametrize("event", list(A3_COMEBACKS))
def test_a3_restarts_when_the_case_comes_back_to_the_regulator(event: str, builder: CaseBuilder) -> None:
    view = builder.to_state(A3_COMEBACKS[event])
    first = only(view, "A3")
    assert first.status == "met"  # ended when the referral was approved
    builder.clock.advance(days=5)
    back = builder.send(view.case_no, event)
    assert back.state == "investigating"
    old, new = rows_of(back, "A3")
    assert (old.status, old.due_at) == ("met", first.due_at)
    due = expected_due(builder.deps.clock_rules["A3"], builder.clock.now)
    assert (new.status, new.started_at, new.due_at, new.extensions_used) == (
        "running",
        iso(builder.clock.now),
        iso(due),
        0,
    )
    assert started_by(builder.deps, view.case_no, "A3") == [("file_case", "met"), (event, "running")]


# --- provisional -------------------------------------------------------------------------------------------


def test_a_months_rule_reaching_an_uncovered_year_is_provisional(
    deps: Deps, clock: FakeClock, builder: CaseBuilder
) -> None:
    clock.now = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)  # Fri 20 Nov 2026, 10:00 in Beijing
    view = builder.to_state("trial")
    c4, c6 = only(view, "C4"), only(view, "C6")
    assert (c4.provisional, c4.provisional_reason) == (False, "")  # 20 Dec 2026 (Sun) → Mon 21 Dec, covered
    assert c6.provisional and "2027" in c6.provisional_reason  # 20 Jan 2027: no official 2027 data
    assert only(show_case(deps, view.case_no), "C6").provisional
    extended = advance_case(
        deps,
        view.case_no,
        "extend_trial",
        actor="sm_court_handler",
        data={"approved_by": "sm_court_president", "reason": "重大复杂"},
    )
    assert only(extended, "C6").provisional  # 20 Feb 2027: still provisional
