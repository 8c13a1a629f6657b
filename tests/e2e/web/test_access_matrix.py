"""The access matrix of the REST API: every role × agency kind × endpoint answers the status the rules give.

Rules (``../shared/ARCHITECTURE.md`` "Access", ``../shared/DOMAIN.md`` "Who may send what"): a case is
visible to its owning agency, to the agencies it was referred to or shared with, and to supervisors whose
jurisdiction (region) covers it, and to admins; anything else answers 404, exactly as for a case that does not
exist. An event is sent only by a handler of a participating agency of the event's kind (else 403), only in a
state that allows it (else 409).

The expectations below are written out by hand from those rules, never computed by the code under test. The
POSTs that pass access and state are sent with data that is deliberately incomplete (a required ``reason`` or
``outcome`` missing, or an ``indict`` addressed to a market regulator), so they answer 422 and the fixed cases
never move: the matrix can be read in any order.

Officers: one demo officer of config.toml for each role × agency kind that exists there. Combinations with no
officer in config.toml (checked below, so the table grows with the config): secretary of police,
procuratorate, court, justice; supervisor of police, justice; admin of police, procuratorate, court, justice.
Two extra rows: a market-regulation handler of another agency (将乐县, not a participant) and the
province's supervisor (福建省, whose jurisdiction covers every case here).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import load_settings
from tests.conftest import REPO_CONFIG, CaseBuilder, FakeClock
from tests.e2e.web.conftest import LiveApp
from workflows.auth import create_token
from workflows.cases import advance_case, show_case

ROLES = ("handler", "secretary", "supervisor", "admin")
KINDS = ("market_regulation", "police", "procuratorate", "court", "justice")

#: (role, agency kind) → the demo officer who stands for it.
OFFICERS: dict[tuple[str, str], str] = {
    ("handler", "market_regulation"): "sm_amr_handler",
    ("handler", "police"): "sm_psb_handler",
    ("handler", "procuratorate"): "sm_procuratorate_handler",
    ("handler", "court"): "sm_court_handler",
    ("handler", "justice"): "sm_justice_handler",
    ("secretary", "market_regulation"): "sm_amr_secretary",
    ("supervisor", "market_regulation"): "sm_amr_supervisor",
    ("supervisor", "procuratorate"): "sm_procuratorate_chief",
    ("supervisor", "court"): "sm_court_president",
    ("admin", "market_regulation"): "admin",
}
#: Role × kind with no officer in config.toml.
MISSING = {
    ("secretary", "police"),
    ("secretary", "procuratorate"),
    ("secretary", "court"),
    ("secretary", "justice"),
    ("supervisor", "police"),
    ("supervisor", "justice"),
    ("admin", "police"),
    ("admin", "procuratorate"),
    ("admin", "court"),
    ("admin", "justice"),
}
EXTRA = ("jl_amr_handler", "fj_amr_supervisor")
EVERYONE = (*OFFICERS.values(), *EXTRA)

#: The fixed cases, all opened by sm-amr (三明市市场监管局):
#: never_referred  joint investigation with the justice bureau (sm-justice takes part), never near the police;
#: at_police       transferred to the police (sm-psb), police_review;
#: at_prosecution  prosecution_review at sm-procuratorate (police and procuratorate take part);
#: at_trial        indicted, trial at sm-court.
CASES = ("never_referred", "at_police", "at_prosecution", "at_trial")

#: Who sees which case. Supervisors see every case here: their region (三明市 350400, or the province 福建省)
#: covers the owner's, whatever their agency's kind (the rule is by jurisdiction, not by kind).
VISIBLE: dict[str, set[str]] = {
    "sm_amr_handler": set(CASES),  # the owning agency
    "sm_psb_handler": {"at_police", "at_prosecution", "at_trial"},  # referred to the police
    "sm_procuratorate_handler": {"at_prosecution", "at_trial"},
    "sm_court_handler": {"at_trial"},
    "sm_justice_handler": {"never_referred"},  # shared through the joint investigation
    "sm_amr_secretary": set(CASES),  # the owning agency (any role)
    "sm_amr_supervisor": set(CASES),
    "sm_procuratorate_chief": set(CASES),  # supervisor of region 350400
    "sm_court_president": set(CASES),  # supervisor of region 350400
    "admin": set(CASES),
    "jl_amr_handler": set(),  # same kind, another agency that takes no part
    "fj_amr_supervisor": set(CASES),  # the province covers its cities
}

CASE_READS = ("", "/history", "/events", "/evidence", "/documents", "/attachments", "/handoffs", "/supervision")

#: One representative event per agency kind (justice has none: its officers are refused every event), plus
#: ``indict``, which only the procuratorate may send. The data makes a request that passes access and state
#: fail validation (422) instead of moving the case.
EVENTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("withdraw", {}),  # market_regulation; needs reason
    ("police_decline", {}),  # police; needs reason
    ("decline_prosecution", {}),  # procuratorate; needs reason
    ("pronounce_judgment", {}),  # court; needs outcome
    ("indict", {"to_agency": "sm-amr"}),  # procuratorate; to_agency must be a court
)

#: POST /cases/{no}/events: officer → per case (in CASES order) the statuses of EVENTS, in order.
#: 404 invisible · 403 wrong kind, not a handler or not taking part · 409 not allowed in this state ·
#: 422 allowed (got through access and state, refused on the data).
_ALL_403 = "403 403 403 403 403"
_ALL_404 = "404 404 404 404 404"
POSTS: dict[str, tuple[str, str, str, str]] = {
    #                           never_referred         at_police              at_prosecution         at_trial
    "sm_amr_handler": ("422 403 403 403 403", "409 403 403 403 403", "409 403 403 403 403", "409 403 403 403 403"),
    "sm_psb_handler": (_ALL_404, "403 422 403 403 403", "403 409 403 403 403", "403 409 403 403 403"),
    "sm_procuratorate_handler": (_ALL_404, _ALL_404, "403 403 422 403 422", "403 403 409 403 409"),
    "sm_court_handler": (_ALL_404, _ALL_404, _ALL_404, "403 403 403 422 403"),
    "sm_justice_handler": (_ALL_403, _ALL_404, _ALL_404, _ALL_404),
    "sm_amr_secretary": (_ALL_403, _ALL_403, _ALL_403, _ALL_403),
    "sm_amr_supervisor": (_ALL_403, _ALL_403, _ALL_403, _ALL_403),
    "sm_procuratorate_chief": (_ALL_403, _ALL_403, _ALL_403, _ALL_403),
    "sm_court_president": (_ALL_403, _ALL_403, _ALL_403, _ALL_403),
    "admin": (_ALL_403, _ALL_403, _ALL_403, _ALL_403),
    "jl_amr_handler": (_ALL_404, _ALL_404, _ALL_404, _ALL_404),
    "fj_amr_supervisor": (_ALL_403, _ALL_403, _ALL_403, _ALL_403),
}

#: Endpoints across cases: the consultation queue is the secretaries' (and admins'); the rest answer everyone
#: (each filtered to what the officer may see).
ACROSS = ("/consultations", "/meetings", "/deadlines", "/statistics", "/inbox", "/me")
QUEUE_READERS = {"sm_amr_secretary", "admin"}


@pytest.fixture(scope="module")
def cases(live_app: LiveApp, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The four fixed cases (their numbers)."""
    build = CaseBuilder(live_app.deps, FakeClock(), tmp_path_factory.mktemp("files"))
    shared = build.to_state("investigating", title="三明某电子公司芯片版图泄露案（联合调查）").case_no
    advance_case(
        live_app.deps, shared, "start_joint_investigation", actor="sm_amr_handler", data={"agencies": "sm-justice"}
    )
    return {
        "never_referred": shared,
        "at_police": build.to_state("police_review", title="三明某材料公司配方泄露案（移送公安）").case_no,
        "at_prosecution": build.to_state("prosecution_review", title="三明某机械公司图纸侵权案（审查起诉）").case_no,
        "at_trial": build.to_state("trial", title="三明某软件公司源代码侵权案（审判）").case_no,
    }


@pytest.fixture(scope="module")
def clients(live_app: LiveApp) -> Iterator[dict[str, httpx.Client]]:
    """One client per officer, with that officer's API token."""
    made = {}
    for username in EVERYONE:
        token = create_token(live_app.deps, username, name="access-matrix")["token"]
        made[username] = httpx.Client(
            base_url=f"{live_app.url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
    yield made
    for client in made.values():
        client.close()


def test_the_table_has_one_officer_per_role_and_kind_that_config_toml_has(tmp_path: Path) -> None:
    settings = load_settings(REPO_CONFIG, env={})
    kind_of = {a.code: a.kind for a in settings.agencies}
    present = {(role, kind_of[o.agency]) for o in settings.officers if o.active for role in o.roles}
    assert set(OFFICERS) | MISSING == {(r, k) for r in ROLES for k in KINDS}
    assert not set(OFFICERS) & MISSING
    assert set(OFFICERS) == present, "config.toml gained or lost a role × kind: update OFFICERS and MISSING"
    officers = {o.username: o for o in settings.officers}
    for (role, kind), username in OFFICERS.items():
        assert role in officers[username].roles and kind_of[officers[username].agency] == kind
    assert set(VISIBLE) == set(POSTS) == set(EVERYONE)


@pytest.mark.parametrize("username", EVERYONE)
def test_case_reads_answer_200_where_visible_and_404_elsewhere(
    username: str, cases: dict[str, str], clients: dict[str, httpx.Client]
) -> None:
    client = clients[username]
    got, expected = {}, {}
    for key in CASES:
        for read in CASE_READS:
            label = f"GET {key}{read}"
            response = client.get(f"/cases/{cases[key]}{read}")
            got[label] = response.status_code
            expected[label] = 200 if key in VISIBLE[username] else 404
            if response.status_code == 404:
                assert response.headers["content-type"] == "application/problem+json"
                assert response.json()["code"] == "case_not_found"
    assert got == expected


@pytest.mark.parametrize("username", EVERYONE)
def test_events_answer_by_kind_role_participation_and_state(
    username: str, cases: dict[str, str], clients: dict[str, httpx.Client], live_app: LiveApp
) -> None:
    client = clients[username]
    versions = {key: show_case(live_app.deps, no).version for key, no in cases.items()}
    got, expected = {}, {}
    for key, row in zip(CASES, POSTS[username], strict=True):
        for (event, data), status in zip(EVENTS, row.split(), strict=True):
            label = f"POST {key} {event}"
            response = client.post(f"/cases/{cases[key]}/events", json={"event": event, "data": data})
            got[label], expected[label] = response.status_code, int(status)
            assert response.headers["content-type"] == "application/problem+json", (label, response.text)
    assert got == expected
    # Nothing moved: every refusal (even the 422s that passed access and state) wrote nothing.
    assert {key: show_case(live_app.deps, no).version for key, no in cases.items()} == versions


@pytest.mark.parametrize("username", EVERYONE)
def test_endpoints_across_cases(username: str, clients: dict[str, httpx.Client], cases: dict[str, str]) -> None:
    client = clients[username]
    got = {path: client.get(path).status_code for path in ACROSS}
    expected = {path: 200 for path in ACROSS} | {"/consultations": 200 if username in QUEUE_READERS else 403}
    assert got == expected
    assert client.get("/me").json()["username"] == username
    # Lists never name a case the officer may not see.
    listed = {c["case_no"] for c in client.get("/cases").json()}
    hidden = {cases[key] for key in CASES if key not in VISIBLE[username]}
    shown = {cases[key] for key in CASES if key in VISIBLE[username]}
    assert shown <= listed and not hidden & listed
    deadlines = {d["case_no"] for d in client.get("/deadlines").json()}
    assert not hidden & deadlines


def test_the_police_never_see_a_case_not_referred_to_them_and_cannot_indict(
    cases: dict[str, str], clients: dict[str, httpx.Client], live_app: LiveApp
) -> None:
    police = clients["sm_psb_handler"]
    hidden = police.get(f"/cases/{cases['never_referred']}")
    missing = police.get("/cases/sm-amr-2026-9999")
    assert hidden.status_code == missing.status_code == 404
    # The same answer as for a case that does not exist: the body differs only by the number asked for.
    assert set(hidden.json()) == set(missing.json())
    assert hidden.json()["detail"].replace(cases["never_referred"], "X") == missing.json()["detail"].replace(
        "sm-amr-2026-9999", "X"
    )
    for key in ("at_prosecution", "at_trial"):  # a case the police took part in: they still may not indict
        refused = police.post(f"/cases/{cases[key]}/events", json={"event": "indict"})
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "permission_denied"
        assert "indict" in refused.json()["detail"] and "procuratorate" in refused.json()["detail"]
    assert show_case(live_app.deps, cases["at_prosecution"]).state == "prosecution_review"
