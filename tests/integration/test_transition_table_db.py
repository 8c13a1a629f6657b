"""The hand-written transition table of DOMAIN.md through ``advance_case`` on SQLite.

Acceptance point: a table-driven test over every (state, event) pair of the chart — the target state,
or a refusal that leaves the case, its version and its history unchanged.

``EXPECTED`` comes from ``tests/unit/test_lifecycle_table.py`` (the pure-chart test of the same table).
Each event is sent as ``actor_for(event)``: an officer of the agency kind DOMAIN.md lets send it.
``advance_case`` checks visibility and permission *before* the state (docs/decisions.md, "Check order"),
so two kinds of pairs are refused before they reach the statechart:

* the sender's agency does not take part in the case yet (e.g. a police event on an intake case:
  sm-psb joins only with ``transfer_to_police``; the procuratorate with ``request_supervision`` or
  ``submit_for_prosecution``; the court with ``indict``). Such an officer may not even see the case, so
  the answer is ``CaseNotFound`` (ARCHITECTURE.md "Access": 404, not 403, so case numbers do not leak);
* ``suspend`` from the referral, criminal and judicial states, which the chart allows but DOMAIN.md gives
  only to the market regulator while the case is in intake or administrative enforcement:
  ``PermissionDenied`` (that rule is looked at once the event is allowed, so ``suspend`` on a closed
  case is a plain ``TransitionRefused``).

Those pairs are asserted as that refusal with nothing changed; their statechart refusal (or transition)
is covered by the unit test.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from states.errors import CaseNotFound, DomainError, PermissionDenied, TransitionRefused
from states.lifecycle import EVENT_IDS
from tests.conftest import COURT, EVENT_DATA, MR, POLICE, PROSECUTOR, CaseBuilder, actor_for
from tests.unit.test_lifecycle_table import EXPECTED, PHASE
from workflows.cases import advance_case, case_history, show_case
from workflows.uow import Deps

#: The agency of each demo officer ``actor_for`` picks (config.toml).
AGENCY_OF = {MR: "sm-amr", POLICE: "sm-psb", PROSECUTOR: "sm-procuratorate", COURT: "sm-court"}
#: DOMAIN.md: the market regulator may suspend/resume "while the case is in intake or administrative".
SUSPENSION_PHASES = ("intake", "administrative")

STATES = sorted(EXPECTED)

#: Agencies taking part in a case driven along conftest.PATHS to each state, by hand from DOMAIN.md
#: (owner sm-amr; transfer_to_police adds the police, request_supervision and submit_for_prosecution the
#: procuratorate, indict the court; start_joint_investigation the agencies named, here sm-psb).
_AMR, _PSB, _PROC, _COURT = "sm-amr", "sm-psb", "sm-procuratorate", "sm-court"
PARTICIPANTS: dict[str, set[str]] = {
    state: {_AMR}
    for state in (
        "lead_registered",
        "verifying",
        "investigating",
        "appraisal",
        "penalty_notice",
        "hearing",
        "referral_review",
        "awaiting_transfer",
        "suspended",
        "closed",
    )
}
PARTICIPANTS["joint_investigation"] = {_AMR, _PSB}
PARTICIPANTS.update(
    {
        state: {_AMR, _PSB}
        for state in (
            "police_review",
            "police_declined",
            "reconsideration",
            "reconsideration_upheld",
            "evidence_handover",
            "criminal_investigation",
        )
    }
)
PARTICIPANTS["filing_supervision"] = {_AMR, _PSB, _PROC}
PARTICIPANTS["prosecution_review"] = PARTICIPANTS["supplementary_investigation"] = {_AMR, _PSB, _PROC}
PARTICIPANTS["trial"] = {_AMR, _PSB, _PROC, _COURT}
#: The phase the suspend/resume rule looks at: a suspended case's remembered phase (PATHS suspends it
#: while investigating); a closed case is in no phase.
RULE_PHASE = {**PHASE, "suspended": "administrative", "closed": "closed"}
ALLOWED_PAIRS = [(state, event) for state in STATES for event in sorted(EXPECTED[state])]


@dataclass(frozen=True)
class Snapshot:
    """What a refusal must leave untouched."""

    state: str
    suspended_from: str | None
    version: int
    outcome: str | None
    rows: int
    last_hash: str
    last_event: str


def snapshot(deps: Deps, case_no: str) -> Snapshot:
    view = show_case(deps, case_no)
    history = case_history(deps, case_no)
    return Snapshot(
        view.state, view.suspended_from, view.version, view.outcome, len(history), history[-1].hash, history[-1].event
    )


def access_refusal(state: str, event: str) -> tuple[type[DomainError], str] | None:
    """The refusal access rules give ``actor_for(event)`` at ``state``.

    Participation is checked before the state; the suspend/resume phase rule only for events the chart
    allows in that state (a closed case answers "not allowed", not "only in intake").
    """
    agency = AGENCY_OF[actor_for(event)]
    if agency not in PARTICIPANTS[state]:
        return CaseNotFound, f"{agency} does not take part in the case, so it may not see it"
    if event in ("suspend", "resume") and event in EXPECTED[state] and RULE_PHASE[state] not in SUSPENSION_PHASES:
        return PermissionDenied, f"{event} outside intake/administrative (phase {RULE_PHASE[state]})"
    return None


def case_at(builder: CaseBuilder, deps: Deps, state: str) -> str:
    """A new case driven to ``state``, checked to have the participants and phase the table assumes."""
    view = builder.to_state(state)
    assert set(view.participants) == PARTICIPANTS[state], (state, view.participants)
    assert view.phase == RULE_PHASE[state], (state, view.phase)
    return view.case_no


@pytest.mark.parametrize("state", STATES)
def test_refused_events_leave_the_case_unchanged(builder: CaseBuilder, deps: Deps, state: str) -> None:
    case_no = case_at(builder, deps, state)
    before = snapshot(deps, case_no)
    allowed = sorted(EXPECTED[state])
    assert show_case(deps, case_no).allowed_events == allowed
    failures: list[str] = []
    counts = {"refused": 0, "access": 0}
    for event in sorted(EVENT_IDS - set(allowed)):
        denial = access_refusal(state, event)
        try:
            advance_case(deps, case_no, event, actor=actor_for(event), data=EVENT_DATA.get(event, {}))
        except TransitionRefused as err:
            counts["refused"] += 1
            if denial:
                failures.append(f"{event}: expected {denial[0].__name__} ({denial[1]}), got TransitionRefused: {err}")
            if err.allowed != allowed:
                failures.append(f"{event}: refusal lists {err.allowed}, chart allows {allowed}")
            if case_no not in err.message or repr(state) not in err.message or event not in err.message:
                failures.append(f"{event}: message does not name the case, state and event: {err.message}")
            if (err.case_no, err.state, err.event) != (case_no, state, event):
                failures.append(f"{event}: refusal carries {(err.case_no, err.state, err.event)}")
        except (CaseNotFound, PermissionDenied) as err:
            counts["access"] += 1
            if not denial:
                failures.append(f"{event}: expected TransitionRefused, got {type(err).__name__}: {err}")
            elif type(err) is not denial[0]:
                failures.append(
                    f"{event}: expected {denial[0].__name__} ({denial[1]}), got {type(err).__name__}: {err}"
                )
            elif case_no not in err.message:
                failures.append(f"{event}: {type(err).__name__} does not name the case: {err.message}")
        except DomainError as err:
            failures.append(f"{event}: unexpected {type(err).__name__}: {err}")
        else:
            failures.append(f"{event}: was accepted in {state}, DOMAIN.md does not allow it")
            break  # the case moved; later checks would only repeat this failure
        after = snapshot(deps, case_no)
        if after != before:
            failures.append(f"{event}: refusal changed the case: {before} -> {after}")
    assert not failures, f"{state}:\n" + "\n".join(failures)
    assert counts["refused"] >= 1  # every state has at least one market-regulation refusal by the chart
    assert sum(counts.values()) == len(EVENT_IDS) - len(allowed)


@pytest.mark.parametrize(("state", "event"), ALLOWED_PAIRS)
def test_allowed_event_reaches_the_target(builder: CaseBuilder, deps: Deps, state: str, event: str) -> None:
    case_no = case_at(builder, deps, state)
    if event == "transfer_to_police":
        builder.attach_package(case_no)  # the guard of DOMAIN.md's Decree 310 art. 6 (unit-tested)
    before = snapshot(deps, case_no)
    denial = access_refusal(state, event)
    if denial:
        # Allowed by the chart, but no officer may send it now (see the module docstring).
        with pytest.raises(denial[0], match=case_no):
            builder.send(case_no, event)
        assert snapshot(deps, case_no) == before
        return
    view = builder.send(case_no, event)
    target = EXPECTED[state][event]
    assert view.state == target
    assert show_case(deps, case_no).state == target
    assert view.version == before.version + 1
    history = case_history(deps, case_no)
    assert len(history) == before.rows + 1
    last = history[-1]
    assert (last.event, last.from_state, last.to_state, last.version) == (event, state, target, view.version)
    assert last.hash != before.last_hash
    if target == "closed":
        assert view.outcome is not None and view.allowed_events == []
    else:
        assert view.allowed_events == sorted(EXPECTED[target])


def test_unknown_event_is_refused_with_the_allowed_list(builder: CaseBuilder, deps: Deps) -> None:
    case_no = builder.to_state("verifying").case_no
    before = snapshot(deps, case_no)
    with pytest.raises(TransitionRefused, match="unknown event") as err:
        advance_case(deps, case_no, "reopen", actor=MR)
    assert err.value.allowed == sorted(EXPECTED["verifying"])
    assert snapshot(deps, case_no) == before
