"""Statutory clock rules: the typed shape of a deadline rule and the pure decisions about clocks.

A rule starts a deadline when one of its ``start_on`` events happens (``open_case`` is the pseudo-event
of lead intake), runs while the case is inside one of its ``active_in`` states, pauses while the case is
in one of its ``pause_in`` states, and ends (met, or missed if late) when the case leaves its scope.
Values live in config.toml; this module holds no legal numbers of its own.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Unit = Literal["hours", "days", "workdays", "months"]
UNITS: tuple[str, ...] = ("hours", "days", "workdays", "months")

OPEN_CASE = "open_case"
"""Pseudo-event id for the intake of a lead (the case is created); usable in ``start_on``."""

ROLES: tuple[str, ...] = ("handler", "secretary", "supervisor", "admin")

_DURATION = re.compile(r"^\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*$")


def parse_duration(text: str) -> timedelta:
    """A lead or grace time such as ``2d``, ``4h`` or ``1d12h`` (days are 24 hours here).

    Raises ValueError naming the expected shape for anything else, including zero.
    """
    match = _DURATION.match(text or "")
    if not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration; write e.g. 2d, 4h or 1d12h")
    days, hours = (int(g) if g else 0 for g in match.groups())
    value = timedelta(days=days, hours=hours)
    if value <= timedelta(0):
        raise ValueError(f"{text!r} must be longer than zero")
    return value


def format_duration(value: timedelta) -> str:
    """The inverse of ``parse_duration`` for whole hours: ``2d``, ``4h``, ``1d12h``."""
    hours = int(value.total_seconds() // 3600)
    days, hours = divmod(hours, 24)
    return (f"{days}d" if days else "") + (f"{hours}h" if hours else "") or "0h"


class Extension(BaseModel):
    """How an extension event lengthens a running deadline of this rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event: str
    amount: int = Field(gt=0)
    unit: Unit | None = None  # None: the rule's own unit
    max_times: int = Field(default=1, ge=1)
    # Who may approve (the agency head, 负责人): an officer with one of these roles, of the sending
    # agency or of an agency of the same kind whose jurisdiction covers it.
    approver_roles: list[str] = Field(default_factory=lambda: ["supervisor"], min_length=1)

    @field_validator("approver_roles")
    @classmethod
    def _known_roles(cls, value: list[str]) -> list[str]:
        unknown = [r for r in value if r not in ROLES]
        if unknown:
            raise ValueError(f"unknown role(s) {', '.join(unknown)}; roles are {', '.join(ROLES)}")
        return value


class ClockRule(BaseModel):
    """One statutory deadline rule (A1, A3, T2 ...), as configured in ``[clocks.<ID>]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = ""
    label: str
    label_en: str = ""
    start_on: list[str] = Field(default_factory=list)
    stop_on: list[str] = Field(default_factory=list)  # events that end it even inside its scope
    active_in: list[str] = Field(min_length=1)
    pause_in: list[str] = Field(default_factory=list)
    limit: int = Field(gt=0)
    unit: Unit
    roll_to_workday: bool = True  # days only: a last day on a rest day rolls to the next working day
    extensions: list[Extension] = Field(default_factory=list)
    responsible: str = ""  # agency kind that must act before the deadline
    remind_before: list[str] = Field(default_factory=list)  # lead times of the reminders, e.g. ["2d", "4h"]
    basis: str = Field(min_length=1)
    note: str = ""

    @field_validator("remind_before")
    @classmethod
    def _durations(cls, value: list[str]) -> list[str]:
        leads = [parse_duration(v) for v in value]  # raises with the offending text
        if len(set(leads)) != len(leads):
            raise ValueError("a reminder lead time is listed twice")
        return value

    def reminder_leads(self) -> list[timedelta]:
        """The reminder lead times, longest first."""
        return sorted((parse_duration(v) for v in self.remind_before), reverse=True)

    @model_validator(mode="after")
    def _extension_events_unique(self) -> ClockRule:
        seen = [e.event for e in self.extensions]
        if len(seen) != len(set(seen)):
            raise ValueError("an extension event is listed twice")
        return self


def validate_rules(rules: dict[str, ClockRule], state_ids: set[str], event_ids: set[str]) -> list[str]:
    """Return one message per state or event that a rule names but the chart lacks (empty: valid)."""
    problems: list[str] = []
    known_events = event_ids | {OPEN_CASE}
    for rule_id, rule in rules.items():
        for field in ("start_on", "stop_on"):
            for ev in getattr(rule, field):
                if ev not in known_events:
                    problems.append(f"clocks.{rule_id}.{field}: unknown event {ev!r}")
        for field in ("active_in", "pause_in"):
            for st in getattr(rule, field):
                if st not in state_ids:
                    problems.append(f"clocks.{rule_id}.{field}: unknown state {st!r}")
        for ext in rule.extensions:
            if ext.event not in event_ids:
                problems.append(f"clocks.{rule_id}.extensions: unknown event {ext.event!r}")
    return problems


# --- what a transition does to the clocks -------------------------------------------------------

ClockActionKind = Literal["start", "restart", "stop", "pause", "resume", "extend"]


class ClockAction(BaseModel):
    """One change a transition makes to one rule's deadline; applied by the use case."""

    model_config = ConfigDict(frozen=True)

    rule: str
    action: ClockActionKind
    extension: Extension | None = None
    start_paused: bool = False


def _effective(configuration: list[str], history: list[str]) -> set[str]:
    # A suspended case is still "in" the states it was suspended from: its clocks are paused there,
    # not stopped, so the rules' scopes are checked against the remembered configuration too.
    return set(configuration) | set(history)


def plan_clock_actions(
    rules: dict[str, ClockRule],
    event: str,
    before: list[str],
    after: list[str],
    *,
    running: set[str],
    history_before: list[str] | None = None,
    history_after: list[str] | None = None,
) -> list[ClockAction]:
    """Decide, for every rule, what the transition ``before --event--> after`` does to its clock.

    ``running`` holds the ids of rules with a running or paused deadline on the case; ``history_*``
    the configuration remembered for ``resume`` (it keeps a suspended case's clocks in scope).
    """
    eff_before = _effective(before, history_before or [])
    eff_after = _effective(after, history_after or [])
    actions: list[ClockAction] = []
    for rule_id, rule in rules.items():
        in_scope_after = bool(eff_after & set(rule.active_in))
        paused_before = bool(eff_before & set(rule.pause_in))
        paused_after = bool(eff_after & set(rule.pause_in))
        if rule_id in running:
            if event in rule.start_on and in_scope_after:
                actions.append(ClockAction(rule=rule_id, action="restart", start_paused=paused_after))
                continue
            if not in_scope_after or event in rule.stop_on:
                actions.append(ClockAction(rule=rule_id, action="stop"))
                continue
            if paused_after and not paused_before:
                actions.append(ClockAction(rule=rule_id, action="pause"))
            elif paused_before and not paused_after:
                actions.append(ClockAction(rule=rule_id, action="resume"))
            for ext in rule.extensions:
                if ext.event == event:
                    actions.append(ClockAction(rule=rule_id, action="extend", extension=ext))
        elif event in rule.start_on and in_scope_after:
            actions.append(ClockAction(rule=rule_id, action="start", start_paused=paused_after))
    return actions


# --- reminders and escalation: when a deadline must speak up ------------------------------------

REMIND = "remind"
MISSED = "missed"
AUTO_LIST = "auto_list"


class Alert(BaseModel):
    """One moment a running deadline fires: a reminder before it is due, the miss, an auto-listing."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["remind", "missed", "auto_list"]
    at: datetime
    lead: str = ""  # reminders: the lead time ("2d"); auto_list: the grace after the miss

    def key(self, due_at: datetime) -> str:
        """Identity of this alert for this due time: an extension or a pause makes new alerts."""
        return alert_key(f"{self.kind}:{self.lead}" if self.lead else self.kind, due_at)


def alert_key(kind: str, at: datetime) -> str:
    """``kind@<UTC stamp>``: the identity of an alert (deadline or supervision) about the moment ``at``."""
    return f"{kind}@{at.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def alert_schedule(due_at: datetime, leads: list[timedelta], auto_list_after: timedelta | None) -> list[Alert]:
    """Every alert of a deadline due at ``due_at``, in time order."""
    alerts = [Alert(kind="remind", at=due_at - lead, lead=format_duration(lead)) for lead in leads]
    alerts.append(Alert(kind="missed", at=due_at))
    if auto_list_after is not None:
        alerts.append(Alert(kind="auto_list", at=due_at + auto_list_after, lead=format_duration(auto_list_after)))
    return sorted(alerts, key=lambda a: (a.at, a.kind != "remind"))


def next_alert(schedule: list[Alert], due_at: datetime, *, after: datetime, fired: set[str]) -> Alert | None:
    """The next alert still to fire. A reminder whose time is already past when asked is dropped
    (nobody needs "due in 2 days" about a 24-hour clock); a miss or an auto-listing never is."""
    for alert in schedule:
        if alert.key(due_at) in fired:
            continue
        if alert.kind == REMIND and alert.at <= after:
            continue
        return alert
    return None


def alerts_to_fire(schedule: list[Alert], due_at: datetime, *, now: datetime, fired: set[str]) -> list[Alert]:
    """What a sweep at ``now`` fires: every due miss or auto-listing; of the due reminders only the
    latest, and none once the deadline itself has passed (a late sweep does not send stale reminders)."""
    due = [a for a in schedule if a.at <= now and a.key(due_at) not in fired]
    hard = [a for a in due if a.kind != REMIND]
    if hard:
        return hard
    reminders = [a for a in due if a.kind == REMIND]
    return reminders[-1:]


# --- listed supervision policy (config.toml [supervision]) -----------------------------------------

LEVELS: tuple[str, ...] = ("county", "city", "province")


def level_rank(level: str) -> int:
    """county 0 < city 1 < province 2."""
    return LEVELS.index(level)


def _duration(value: str) -> str:
    parse_duration(value)  # raises ValueError with the expected shape
    return value


def whole_days(value: str) -> int:
    """A reporting interval or due period in whole days (``15d``); hours are refused here."""
    delta = parse_duration(value)
    if delta % timedelta(days=1):
        raise ValueError(f"{value!r}: give whole days, e.g. 15d")
    return delta.days


class AutoListPolicy(BaseModel):
    """Auto-listing: a clock rule missed by ``missed_by`` lists the case at ``level`` (config.toml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: str
    missed_by: str = "1d"
    level: str = "city"
    due_in: str = "30d"
    every: str = "15d"
    reason: str = Field(min_length=1)

    @field_validator("missed_by")
    @classmethod
    def _grace(cls, value: str) -> str:
        return _duration(value)

    @field_validator("due_in", "every")
    @classmethod
    def _days(cls, value: str) -> str:
        whole_days(value)
        return value

    @field_validator("level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value not in LEVELS:
            raise ValueError(f"unknown level {value!r}; use one of {', '.join(LEVELS)}")
        return value


class SupervisionPolicy(BaseModel):
    """``[supervision]`` of config.toml: escalation reach and the auto-listing policies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    escalate_to_level_above: bool = True
    auto_list: list[AutoListPolicy] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_policy_per_rule(self) -> SupervisionPolicy:
        rules = [p.rule for p in self.auto_list]
        twice = sorted({r for r in rules if rules.count(r) > 1})
        if twice:
            raise ValueError(f"auto_list names rule(s) {', '.join(twice)} more than once")
        return self

    def auto_list_for(self, rule: str) -> AutoListPolicy | None:
        """The auto-listing policy of a clock rule, if any."""
        for policy in self.auto_list:
            if policy.rule == rule:
                return policy
        return None
