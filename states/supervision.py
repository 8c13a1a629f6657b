"""Listed supervision (挂牌督办): a supervisor lists a case, the handling agency reports progress, and the
listing ends with delisting (摘牌). Escalations for a missed report or due date are recorded facts, not
states: they never change what may happen next."""

from __future__ import annotations

from statemachine import State

from states.clocks import LEVELS, AutoListPolicy, SupervisionPolicy, level_rank, whole_days
from states.lifecycle import StrictChart, chart_in

__all__ = [
    "LEVELS",
    "LEVEL_LABELS",
    "SUPERVISION_STATE_LABELS",
    "AutoListPolicy",
    "SupervisionChart",
    "SupervisionPolicy",
    "level_rank",
    "supervision_chart",
    "whole_days",
]

LEVEL_LABELS: dict[str, tuple[str, str]] = {
    "county": ("县级", "county"),
    "city": ("市级", "city"),
    "province": ("省级", "province"),
}


class SupervisionChart(StrictChart):
    """挂牌督办: listed → progress_reported* → delisted."""

    listed = State("已挂牌", initial=True)
    progress_reported = State("已报告进展")
    delisted = State("已摘牌", final=True)

    report_progress = listed.to(progress_reported) | progress_reported.to.itself(internal=True)
    delist = listed.to(delisted) | progress_reported.to(delisted)


SUPERVISION_STATE_LABELS: dict[str, str] = {state.id: state.name for state in SupervisionChart.states}


def supervision_chart(state: str = "listed") -> SupervisionChart:
    """A chart standing in ``state`` (a bad stored value fails here)."""
    return chart_in(SupervisionChart, state)
