"""The import's memoised chart (``workflows.imports.Transitions``): a cached answer is reused only where the
counters its guards read agree, and it carries the counters the transition changed. Imported event ids."""

from __future__ import annotations

import uuid

import pytest

from workflows.imports import Refused, Transitions, _event_id

EXTENSION = {"approved_by": "sm_amr_director", "reason": "案情复杂"}


def test_a_cached_transition_still_checks_the_counters_its_guard_reads() -> None:
    chart = Transitions()
    verifying = chart.send("a", list(chart.initial), {}, {}, None, "start_verification", {})
    once = chart.send("a", *verifying, "extend_verification", dict(EXTENSION))
    assert once[2] == {"verification_extensions": 1}

    with pytest.raises(Refused, match="only once"):  # same state and data, but the guard's counter differs
        chart.send("a", *once, "extend_verification", dict(EXTENSION))

    conf, hist, _counters, outcome = verifying
    other = chart.send("b", conf, hist, {"appraisals": 1}, outcome, "extend_verification", dict(EXTENSION))
    assert other[2] == {"appraisals": 1, "verification_extensions": 1}  # a counter the guard ignores is kept


def test_transitions_that_read_no_counter_keep_the_callers_counters() -> None:
    chart = Transitions()
    counters = {"resubmissions": 2}
    first = chart.send("a", list(chart.initial), {}, {}, None, "start_verification", {})
    second = chart.send("b", list(chart.initial), {}, counters, None, "start_verification", {})
    assert first[0] == second[0] == ["active", "intake", "verifying"]
    assert second[2] == counters and first[2] == {}


def test_imported_event_ids_are_ascending_version_7_uuids() -> None:
    ids = [_event_id() for _ in range(2000)]
    parsed = [uuid.UUID(i) for i in ids]
    assert all(str(u) == i and u.version == 7 and u.variant == uuid.RFC_4122 for u, i in zip(parsed, ids, strict=True))
    assert len(set(ids)) == len(ids)
    assert [i[:13] for i in ids] == sorted(i[:13] for i in ids)  # the millisecond prefix never goes back
