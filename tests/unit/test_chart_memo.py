"""The memoised chart answers (``states.lifecycle.allowed_in`` and ``step``) equal the real chart's, for every
state and event of the table, build no chart when asked again, and never keep a refusal. Also: a notice's
template version is read again when a template file changes (it is cached per modification time)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from statemachine.exceptions import TransitionNotAllowed

import states.lifecycle as lifecycle
from notifications import render as render_module
from states.errors import GuardFailed
from states.lifecycle import CaseContext, allowed_events_of, allowed_in, configuration_of, history_of, step
from tests.unit.test_lifecycle_table import EXPECTED, PAIRS, STATES, context, payload, restored, stored


@pytest.fixture(autouse=True)
def empty_memo() -> None:
    lifecycle._allowed_memo.clear()
    lifecycle._step_memo.clear()


@pytest.fixture
def charts_built(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the charts the memo builds (one entry per ``new_chart``)."""
    built: list[int] = []
    real = lifecycle.new_chart

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(lifecycle, "new_chart", counting)
    return built


def _stored(state: str) -> tuple[list[str], dict[str, list[str]], dict[str, int]]:
    configuration, history, counters = stored(state)
    return list(configuration), {k: list(v) for k, v in history}, dict(counters)


@pytest.mark.parametrize("state", STATES)
def test_allowed_in_equals_the_chart_and_is_built_once(state: str, charts_built: list[int]) -> None:
    configuration, history, _counters = _stored(state)
    expected = allowed_events_of(restored(state))
    first = allowed_in(configuration, history)
    built = len(charts_built)
    assert first == expected
    first.append("changed by a caller")  # callers get their own list
    assert allowed_in(configuration, history) == expected
    assert len(charts_built) == built  # the second answer came from the memo


@pytest.mark.parametrize(("state", "event"), PAIRS)
def test_step_equals_the_chart(state: str, event: str) -> None:
    configuration, history, counters = _stored(state)
    ctx = context(counters=dict(counters))
    chart = restored(state)
    model: CaseContext = chart.model  # type: ignore[assignment]
    data = payload(event)
    if EXPECTED[state].get(event) is None:
        with pytest.raises(TransitionNotAllowed):
            step(ctx, configuration, history, event, data)
        return
    chart.send(event, data=data)
    for _ in range(2):  # asked, then answered from the memo: the same both times
        moved = step(ctx, configuration, history, event, data)
        assert moved.configuration == configuration_of(chart)
        assert moved.history == history_of(chart)
        assert moved.counters == model.counters
        assert moved.outcome == model.outcome
    assert ctx.counters == counters  # the caller's context is not changed


def test_a_second_identical_step_builds_no_chart(charts_built: list[int]) -> None:
    configuration, history, counters = _stored("police_review")
    ctx = context(counters=counters)
    step(ctx, configuration, history, "request_supplement", {})
    built = len(charts_built)
    step(ctx, configuration, history, "request_supplement", {})
    assert len(charts_built) == built


def test_the_key_holds_the_counters_a_guard_reads() -> None:
    configuration, history, _counters = _stored("verifying")
    data = payload("extend_verification")
    first = step(context(counters={}), configuration, history, "extend_verification", data)
    assert first.counters == {"verification_extensions": 1}
    with pytest.raises(GuardFailed, match="only once"):
        step(context(counters=first.counters), configuration, history, "extend_verification", data)


def test_the_key_holds_the_attachments_and_the_data() -> None:
    configuration, history, counters = _stored("awaiting_transfer")
    data = payload("transfer_to_police")
    bare = context(counters=counters, attachment_kinds=frozenset())
    with pytest.raises(GuardFailed, match="transfer package"):
        step(bare, configuration, history, "transfer_to_police", data)
    assert step(context(counters=counters), configuration, history, "transfer_to_police", data).configuration[-1] == (
        "police_review"
    )
    conf, hist, counters = _stored("investigating")
    low = payload("propose_referral", ground="loss", loss_amount=1000)
    with pytest.raises(GuardFailed, match="below the filing standard"):
        step(context(counters=counters), conf, hist, "propose_referral", low)
    high = payload("propose_referral", ground="loss", loss_amount=500_000)
    assert step(context(counters=counters), conf, hist, "propose_referral", high).configuration[1] == "referral"


def test_a_refusal_is_asked_again_every_time(charts_built: list[int]) -> None:
    configuration, history, counters = _stored("awaiting_transfer")
    ctx = context(counters=counters, attachment_kinds=frozenset())
    for _ in range(2):
        built = len(charts_built)
        with pytest.raises(GuardFailed):
            step(ctx, configuration, history, "transfer_to_police", payload("transfer_to_police"))
        assert len(charts_built) == built + 1


def test_the_memo_starts_over_at_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lifecycle, "MEMO_LIMIT", 2)
    for state in ("verifying", "investigating", "police_review"):
        configuration, history, _counters = _stored(state)
        allowed_in(configuration, history)
    assert len(lifecycle._allowed_memo) <= 2


def test_template_version_follows_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, text in {
        "probe.zh.subject.j2": "主题 {{ x }}",
        "probe.zh.txt.j2": "正文 {{ x }}",
        "_layout.html.j2": "<html>{% block body %}{% endblock %}</html>",
    }.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    monkeypatch.setattr(render_module, "TEMPLATES_DIR", tmp_path)
    render_module.environment.cache_clear()
    try:
        first = render_module.render("probe", "zh", x=1)
        assert first.body == "正文 1" and first.body_html == ""
        assert render_module.render("probe", "zh", x=1).template_version == first.template_version
        body = tmp_path / "probe.zh.txt.j2"
        body.write_text("新正文 {{ x }}", encoding="utf-8")
        stat = body.stat()
        os.utime(body, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a later modification time
        second = render_module.render("probe", "zh", x=1)
        assert second.body == "新正文 1"
        assert second.template_version != first.template_version
    finally:
        render_module.environment.cache_clear()
