"""Bad clock rules and auto-listing policies in config.toml: one clear line per problem, nothing written.

Each case edits one key of a copy of the repo's config.toml (``write_config``) and expects ``ConfigError``
whose lines read ``<file>: <key path>: <problem>``; ``jointcase init`` with such a file exits 2 and creates
no database.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.settings import ConfigError, load_settings
from tests.conftest import write_config

runner = CliRunner()

UNITS_MSG = "Input should be 'hours', 'days', 'workdays' or 'months'"


def sample_text(tmp_path: Path) -> str:
    return write_config(tmp_path, f"sqlite:///{tmp_path / 'jointcase.db'}").read_text(encoding="utf-8")


def edit_rule(text: str, rule: str, old: str, new: str) -> str:
    """Replace ``old`` (which must occur once) inside the ``[clocks.<rule>]`` table only."""
    start = text.index(f"\n[clocks.{rule}]\n")
    end = text.find("\n[", start + 1)
    end = len(text) if end < 0 else end
    body = text[start:end]
    assert body.count(old) == 1, f"[clocks.{rule}] no longer has exactly one {old!r}"
    return text[:start] + body.replace(old, new) + text[end:]


def edit(text: str, old: str, new: str) -> str:
    """Replace ``old``, which must occur exactly once in the whole file."""
    assert text.count(old) == 1, f"config.toml no longer has exactly one {old!r}"
    return text.replace(old, new)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env=env or {})
    error = caught.value
    assert error.message.splitlines() == error.problems  # one line per problem
    assert str(error) == error.message
    return error.problems


def test_the_sample_config_loads(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, sample_text(tmp_path)), env={})
    assert len(settings.clocks) == 15


# (rule, old text in its table, new text, the one expected problem)
RULE_CASES: dict[str, tuple[str, str, str, str]] = {
    "unknown unit": ("A1", 'unit = "workdays"\nroll', 'unit = "weeks"\nroll', f"clocks.A1.unit: {UNITS_MSG}"),
    "unknown extension unit": (
        "A3",
        'unit = "days", max_times',
        'unit = "weeks", max_times',
        f"clocks.A3.extensions[0].unit: {UNITS_MSG}",
    ),
    "unknown state in active_in": (
        "T3",
        'active_in = ["awaiting_transfer"]',
        'active_in = ["awaiting_transfer", "limbo"]',
        "clocks.T3.active_in: unknown state 'limbo'",
    ),
    "unknown state in pause_in": (
        "A3",
        'pause_in = ["appraisal", "hearing", "suspended"]',
        'pause_in = ["apraisal", "hearing", "suspended"]',
        "clocks.A3.pause_in: unknown state 'apraisal'",
    ),
    "empty active_in": (
        "A1",
        'active_in = ["intake"]',
        "active_in = []",
        "clocks.A1.active_in: List should have at least 1 item after validation, not 0",
    ),
    "unknown event in start_on": (
        "C6",
        'start_on = ["indict"]',
        'start_on = ["indict_case"]',
        "clocks.C6.start_on: unknown event 'indict_case'",
    ),
    "unknown event in stop_on": (
        "T2",
        'pause_in = ["suspended"]',
        'pause_in = ["suspended"]\nstop_on = ["approve"]',
        "clocks.T2.stop_on: unknown event 'approve'",
    ),
    "unknown extension event": (
        "C4",
        'event = "extend_review"',
        'event = "extend_reviews"',
        "clocks.C4.extensions: unknown event 'extend_reviews'",
    ),
    "negative limit": ("T7", "limit = 3\n", "limit = -3\n", "clocks.T7.limit: Input should be greater than 0"),
    "zero limit": ("C5", "limit = 1\n", "limit = 0\n", "clocks.C5.limit: Input should be greater than 0"),
    "zero extension amount": (
        "C6",
        "amount = 1,",
        "amount = 0,",
        "clocks.C6.extensions[0].amount: Input should be greater than 0",
    ),
    "zero max_times": (
        "A1",
        "max_times = 1",
        "max_times = 0",
        "clocks.A1.extensions[0].max_times: Input should be greater than or equal to 1",
    ),
    "remind_before not a duration": (
        "S1",
        'remind_before = ["2d"]',
        'remind_before = ["2x"]',
        "clocks.S1.remind_before: '2x' is not a duration; write e.g. 2d, 4h or 1d12h",
    ),
    "remind_before zero": (
        "T9",
        'remind_before = ["1d"]',
        'remind_before = ["0d"]',
        "clocks.T9.remind_before: '0d' must be longer than zero",
    ),
    "remind_before duplicate": (
        "A1",
        'remind_before = ["3d", "1d"]',
        'remind_before = ["3d", "72h"]',  # 72h is 3d again
        "clocks.A1.remind_before: a reminder lead time is listed twice",
    ),
    "unknown approver role": (
        "A1",
        'approver_roles = ["supervisor"]',
        'approver_roles = ["chief"]',
        "clocks.A1.extensions[0].approver_roles: unknown role(s) chief; "
        "roles are handler, secretary, supervisor, admin",
    ),
    "no approver role": (
        "C4",
        'approver_roles = ["supervisor"]',
        "approver_roles = []",
        "clocks.C4.extensions[0].approver_roles: List should have at least 1 item after validation, not 0",
    ),
    "unknown responsible kind": (
        "T12",
        'responsible = "market_regulation"',
        'responsible = "customs"',
        "clocks.T12.responsible: 'customs' is not an agency kind "
        "(market_regulation, police, procuratorate, court, justice) or empty",
    ),
    "misspelt key": ("T10", "limit = 3\n", "limits = 3\n", "clocks.T10.limit: Field required"),
}

#: Cases with a second, separate problem line: a misspelt key is both missing and unknown.
EXTRA_LINES: dict[str, tuple[str, ...]] = {"misspelt key": ("clocks.T10.limits: Extra inputs are not permitted",)}


@pytest.mark.parametrize("case", list(RULE_CASES))
def test_a_bad_clock_rule_is_one_line_naming_file_key_and_problem(case: str, tmp_path: Path) -> None:
    rule, old, new, expected = RULE_CASES[case]
    problems = problems_of(write(tmp_path, edit_rule(sample_text(tmp_path), rule, old, new)))
    assert problems == [f"config.toml: {line}" for line in (expected, *EXTRA_LINES.get(case, ()))]


AUTO_LIST_CASES: dict[str, tuple[str, str, str]] = {
    "unknown rule": (
        'rule = "T7"',
        'rule = "T77"',
        "supervision.auto_list[0].rule: unknown clock rule 'T77' (not a [clocks.*] table)",
    ),
    "bad level": (
        'level = "city"       # 市级督办',
        'level = "nation"',
        "supervision.auto_list[0].level: unknown level 'nation'; use one of county, city, province",
    ),
    "bad missed_by": (
        'missed_by = "2d"',
        'missed_by = "2x"',
        "supervision.auto_list[0].missed_by: '2x' is not a duration; write e.g. 2d, 4h or 1d12h",
    ),
    "due_in not whole days": (
        'due_in = "30d"',
        'due_in = "12h"',
        "supervision.auto_list[0].due_in: '12h': give whole days, e.g. 15d",
    ),
    "zero reporting interval": (
        'every = "15d"',
        'every = "0d"',
        "supervision.auto_list[0].every: '0d' must be longer than zero",
    ),
}


@pytest.mark.parametrize("case", list(AUTO_LIST_CASES))
def test_a_bad_auto_list_policy_is_one_line(case: str, tmp_path: Path) -> None:
    old, new, expected = AUTO_LIST_CASES[case]
    assert problems_of(write(tmp_path, edit(sample_text(tmp_path), old, new))) == [f"config.toml: {expected}"]


def test_problems_in_several_rules_are_all_reported_one_line_each(tmp_path: Path) -> None:
    text = sample_text(tmp_path)
    for case in ("unknown unit", "unknown state in pause_in", "negative limit", "remind_before zero"):
        rule, old, new, _expected = RULE_CASES[case]
        text = edit_rule(text, rule, old, new)
    text = edit(text, *AUTO_LIST_CASES["bad level"][:2])
    problems = problems_of(write(tmp_path, text))
    assert sorted(problems) == sorted(
        [
            f"config.toml: clocks.A1.unit: {UNITS_MSG}",
            "config.toml: clocks.A3.pause_in: unknown state 'apraisal'",
            "config.toml: clocks.T7.limit: Input should be greater than 0",
            "config.toml: clocks.T9.remind_before: '0d' must be longer than zero",
            "config.toml: supervision.auto_list[0].level: unknown level 'nation'; use one of county, city, province",
        ]
    )


def test_the_problem_names_the_real_file(tmp_path: Path) -> None:
    rule, old, new, expected = RULE_CASES["negative limit"]
    path = tmp_path / "prod.toml"
    path.write_text(edit_rule(sample_text(tmp_path), rule, old, new), encoding="utf-8")
    assert problems_of(path) == [f"prod.toml: {expected}"]


def test_two_problems_in_one_rule_are_both_reported(tmp_path: Path) -> None:
    text = edit_rule(sample_text(tmp_path), "A1", 'unit = "workdays"\nroll', 'unit = "weeks"\nroll')
    text = edit_rule(text, "A1", 'active_in = ["intake"]', 'active_in = ["intake", "limbo"]')
    assert sorted(problems_of(write(tmp_path, text))) == [
        "config.toml: clocks.A1.active_in: unknown state 'limbo'",
        f"config.toml: clocks.A1.unit: {UNITS_MSG}",
    ]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"JOINTCASE_CLOCKS__T2__UNIT": "weeks"}, f"env JOINTCASE_CLOCKS__T2__UNIT: clocks.T2.unit: {UNITS_MSG}"),
        (
            {"JOINTCASE_CLOCKS__A1__LIMIT": "-3"},
            "env JOINTCASE_CLOCKS__A1__LIMIT: clocks.A1.limit: Input should be greater than 0",
        ),
        (
            {"JOINTCASE_CLOCKS__A1__ACTIVE_IN": '["nowhere"]'},
            "env JOINTCASE_CLOCKS__A1__ACTIVE_IN: clocks.A1.active_in: unknown state 'nowhere'",
        ),
    ],
)
def test_a_bad_environment_override_names_the_variable(env: dict[str, str], expected: str, tmp_path: Path) -> None:
    assert problems_of(write(tmp_path, sample_text(tmp_path)), env) == [expected]


# --- jointcase init ----------------------------------------------------------------------------------------

CLI_CASES = ["unknown unit", "unknown state in active_in", "unknown event in start_on", "negative limit"]


@pytest.mark.parametrize("case", [*CLI_CASES, "auto_list: bad level"])
@pytest.mark.parametrize("as_json", [False, True])
def test_init_with_a_bad_config_exits_2_and_writes_nothing(case: str, as_json: bool, tmp_path: Path) -> None:
    text = sample_text(tmp_path)
    if case.startswith("auto_list: "):
        old, new, expected = AUTO_LIST_CASES[case.removeprefix("auto_list: ")]
        text = edit(text, old, new)
    else:
        rule, old, new, expected = RULE_CASES[case]
        text = edit_rule(text, rule, old, new)
    config = write(tmp_path, text)
    args = ["--config", str(config), "init", *(["--json"] if as_json else [])]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    if as_json:
        assert json.loads(result.stderr) == {"error": "config_error", "message": f"config.toml: {expected}"}
    else:
        assert result.stderr.strip() == f"error: config.toml: {expected}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]  # no database, no attachments folder


def test_init_with_the_same_config_fixed_creates_the_database(tmp_path: Path) -> None:
    """The control for the test above: the only difference is the bad key."""
    config = write(tmp_path, sample_text(tmp_path))
    result = runner.invoke(app, ["--config", str(config), "init"])
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "jointcase.db").is_file()


def test_two_auto_list_policies_for_one_rule_are_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path, f"sqlite:///{tmp_path / 'x.db'}")
    text = path.read_text(encoding="utf-8")
    start = text.index("[[supervision.auto_list]]")
    end = text.index("\n\n", start)
    path.write_text(text[:end] + "\n\n" + text[start:end] + text[end:], encoding="utf-8")
    with pytest.raises(ConfigError, match="auto_list names rule"):
        load_settings(path, env={})
