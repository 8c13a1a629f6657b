"""The dashboard's SQL counts and lists (``workflows.dashboard``, ``list_deadlines``) equal the per-case
computation they replace — every visible case's full view, counted in Python — for every officer of the
directory plus a county supervisor, on the demo data with listings, escalations and missed deadlines, on
SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.demo import load_demo
from models.tables import Agency, Case, Officer
from states.calendar import SHANGHAI
from states.lifecycle import PHASES, REFERRAL_FUNNEL, funnel_steps
from tests.conftest import FakeClock, make_deps
from workflows.cases import CaseView, list_cases
from workflows.dashboard import case_lines, figures, open_listings, overdue_action_items, statistics
from workflows.deadlines import fire_due_deadlines, list_deadlines
from workflows.meetings import list_action_items
from workflows.supervision import list_for_supervision, show_supervision
from workflows.uow import Deps, UnitOfWork

COUNTY_SUPERVISOR = "jl_amr_supervisor"  # added here: the directory has none below the city


@pytest.fixture(params=["sqlite", "postgres"])
def demo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deps]:
    config = request.getfixturevalue("sqlite_config" if request.param == "sqlite" else "pg_config")
    clock = FakeClock()
    _settings, deps = make_deps(config, clock)
    numbers = load_demo(deps)
    with UnitOfWork(deps) as uow:
        uow.session.add(
            Officer(username=COUNTY_SUPERVISOR, display_name="将乐督办", agency_code="jl-amr", roles=["supervisor"])
        )
        uow.commit()
    due = (clock.now + timedelta(days=10)).astimezone(SHANGHAI)
    for case_no in dict.fromkeys(numbers[:2] + [n for n in numbers if n.startswith("jl-")][:1]):
        list_for_supervision(
            deps, case_no, actor="fj_amr_supervisor", level="province", due=due, every="3d", reason="测试"
        )
    clock.advance(days=15)
    fire_due_deadlines(deps)  # missed reports escalate, deadlines are missed
    clock.advance(days=2)
    yield deps
    deps.engine.dispose()


def officers(deps: Deps) -> list[str]:
    with UnitOfWork(deps, read_only=True) as uow:
        return sorted(
            o.username for o in uow.session.execute(select(Officer).where(Officer.active.is_(True))).scalars()
        )


def responsible(view: CaseView, kind: str, kinds: dict[str, str]) -> str:
    """The old page's rule: the latest participant of that kind, else the owner."""
    for code in reversed(view.participants):
        if kind and kinds.get(code) == kind:
            return code
    return view.agency


def reference(deps: Deps, actor: str) -> dict[str, Any]:
    """The figures as computed before: one full view per visible case, counted in Python."""
    with UnitOfWork(deps, read_only=True) as uow:
        kinds = {code: kind for code, kind in uow.session.execute(select(Agency.code, Agency.kind)).all()}
    views = list_cases(deps, actor=actor, limit=100_000)
    phases = Counter(v.phase for v in views)
    by_agency: dict[str, Counter[str]] = {}
    listings = []
    for v in views:
        for s in show_supervision(deps, v.case_no, actor=actor):
            if s.state != "delisted":
                listings.append((s.case_no, s.id))
                line = by_agency.setdefault(s.handling_agency, Counter())
                line["supervised"] += 1
                line["escalated"] += bool(s.escalations)
    # Running and past due (a deadline that ended missed is shown "missed" too, but is not overdue now).
    missed = [(v, d) for v in views for d in v.deadlines if d.overdue and d.status == "missed"]
    for v, d in missed:
        by_agency.setdefault(responsible(v, d.responsible, kinds), Counter())["overdue"] += 1
    visible = {v.case_no for v in views}
    actions = [
        a
        for a in list_action_items(deps, actor=actor, open_only=True)
        if a.overdue and (a.case_no is None or a.case_no in visible)
    ]
    for a in actions:
        by_agency.setdefault(a.owner_agency, Counter())["action_items"] += 1
    return {
        "statistics": {
            "cases": len(views),
            "per_phase": {p: phases.get(p, 0) for p in PHASES},
            "per_state": dict(sorted(Counter(v.state for v in views).items())),
            "funnel": {s: sum(1 for v in views if s in funnel_steps(v.phase)) for s in REFERRAL_FUNNEL},
            "overdue_deadlines": len(missed),
        },
        "phases": phases,
        "by_agency": {code: +line for code, line in by_agency.items()},
        "missed": sorted((v.case_no, d.rule, responsible(v, d.responsible, kinds)) for v, d in missed),
        "listings": sorted(listings),
        "actions": sorted(a.id for a in actions),
        "lines": [
            (
                v.case_no,
                v.phase,
                v.state,
                sum(d.overdue and d.status == "missed" for d in v.deadlines),
                (v.case_no in dict(listings)),
            )
            for v in views
        ],
        "open": sorted(
            (v.case_no, d.rule, d.status, d.due_at, d.remaining, d.overdue)
            for v in views
            for d in v.deadlines
            if d.overdue or d.status in ("running", "paused")
        ),
    }


def test_the_sql_figures_equal_the_per_case_computation(demo: Deps) -> None:
    deps = demo
    assert list_deadlines(deps, overdue=True), "the data has missed deadlines"
    seen_listings = seen_escalated = 0
    for actor in officers(deps):
        ref = reference(deps, actor)
        assert statistics(deps, actor=actor) == ref["statistics"], actor
        fig = figures(deps, actor=actor)
        assert +fig.cases.per_phase == +ref["phases"], actor
        assert {code: +line for code, line in fig.by_agency.items()} == ref["by_agency"], actor
        late = list_deadlines(deps, actor=actor, overdue=True, limit=10_000)
        assert sorted((d.case_no, d.rule, d.responsible_agency) for d in late) == ref["missed"], actor
        listed_open = list_deadlines(deps, actor=actor, limit=10_000)
        assert (
            sorted((d.case_no, d.rule, d.status, d.due_at, d.remaining, d.overdue) for d in listed_open) == ref["open"]
        )
        listed = open_listings(deps, actor=actor)
        assert sorted((s.case_no, s.id) for s, _title in listed) == ref["listings"], actor
        assert sorted(a.id for a in overdue_action_items(deps, actor=actor)) == ref["actions"], actor
        lines, total = case_lines(deps, actor=actor, limit=100_000)
        assert total == ref["statistics"]["cases"]
        assert [(c.case_no, c.phase, c.state, c.overdue_deadlines, c.supervised) for c in lines] == ref["lines"]
        seen_listings += len(listed)
        seen_escalated += fig.totals["escalated"]
    assert seen_listings and seen_escalated, "the data has open and escalated listings"
    assert any(d.status == "paused" for d in list_deadlines(deps)), "the data has paused clocks"


def test_visibility_narrows_the_figures(demo: Deps) -> None:
    everything = statistics(demo)
    county = statistics(demo, actor=COUNTY_SUPERVISOR)
    handler = statistics(demo, actor="mx_amr_handler")
    assert 0 < county["cases"] < everything["cases"] and 0 < handler["cases"] < everything["cases"]
    assert statistics(demo, actor="admin") == everything == statistics(demo, actor="fj_amr_supervisor")
    lines, total = case_lines(demo, actor=COUNTY_SUPERVISOR, limit=1)
    assert len(lines) == 1 and total == county["cases"]


def test_participation_is_answered_from_the_index_alone_on_sqlite(deps: Deps) -> None:
    # EXISTS (SELECT * ...) made SQLite read each participant row; SELECT 1 lets it stop at the
    # (case_id, agency_code) index: the overdue list at 100k cases went from 5.3 to about 3 ms of query.
    from workflows.dashboard import only_visible

    with UnitOfWork(deps, read_only=True) as uow:
        stmt = only_visible(select(Case.id), uow, uow.officer("sm_amr_supervisor"))
        compiled = stmt.compile(deps.engine, compile_kwargs={"render_postcompile": True})
        params = [compiled.params[name] for name in compiled.positiontup or []]
        cursor = uow.conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        plan = [row[-1] for row in cursor.execute("EXPLAIN QUERY PLAN " + str(compiled), params)]
    participants = [step for step in plan if "case_participants" in step]
    assert participants and all("COVERING INDEX" in step for step in participants), plan
