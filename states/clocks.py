"""Statutory clock rules: the typed shape of a deadline rule and the pure decisions about clocks.

A rule starts a deadline when one of its ``start_on`` events happens (``open_case`` is the pseudo-event
of lead intake), runs while the case is inside one of its ``active_in`` states, pauses while the case is
in one of its ``pause_in`` states, and ends (met, or missed if late) when the case leaves its scope.
Values live in config.toml; this module holds no legal numbers of its own.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Unit = Literal["hours", "days", "workdays", "months"]
UNITS: tuple[str, ...] = ("hours", "days", "workdays", "months")

OPEN_CASE = "open_case"
"""Pseudo-event id for the intake of a lead (the case is created); usable in ``start_on``."""


class Extension(BaseModel):
    """How an extension event lengthens a running deadline of this rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event: str
    amount: int = Field(gt=0)
    unit: Unit | None = None  # None: the rule's own unit
    max_times: int = Field(default=1, ge=1)


class ClockRule(BaseModel):
    """One statutory deadline rule (A1, A3, T2 ...), as configured in ``[clocks.<ID>]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = ""
    label: str
    label_en: str = ""
    start_on: list[str] = Field(default_factory=list)
    active_in: list[str] = Field(min_length=1)
    pause_in: list[str] = Field(default_factory=list)
    limit: int = Field(gt=0)
    unit: Unit
    roll_to_workday: bool = True  # days only: a last day on a rest day rolls to the next working day
    extensions: list[Extension] = Field(default_factory=list)
    responsible: str = ""  # agency kind that must act before the deadline
    basis: str = Field(min_length=1)
    note: str = ""

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
        for field in ("start_on",):
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
            if not in_scope_after:
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
