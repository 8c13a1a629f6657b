"""config.toml → Settings: the sample deployment, environment overrides, and every refusal's message."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from app.settings import ConfigError, Settings, load_settings

SAMPLE = Path(__file__).resolve().parents[2] / "config.toml"

CLOCK_IDS = {"A1", "A3", "A7", "T2", "T3", "T5", "T7", "T9", "T10", "T11", "S1", "T12", "C4", "C5", "C6"}
AGENCY_CODES = {
    "fj-amr",
    "sm-amr",
    "sm-psb",
    "sm-procuratorate",
    "sm-court",
    "sm-justice",
    "jl-amr",
    "jl-psb",
    "jl-procuratorate",
    "jl-court",
    "mx-amr",
    "mx-psb",
    "mx-procuratorate",
    "mx-court",
}


@pytest.fixture(scope="module")
def sample() -> Settings:
    return load_settings(SAMPLE, env={})


def _sample_text() -> str:
    return SAMPLE.read_text(encoding="utf-8")


def _write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _edit(old: str, new: str) -> str:
    """The sample config with exactly one occurrence of ``old`` replaced."""
    text = _sample_text()
    assert text.count(old) == 1, old
    return text.replace(old, new)


def _problems(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env=env or {})
    assert caught.value.__cause__ is None  # no chained traceback for the operator
    return caught.value.message.splitlines()


# --- the sample deployment ------------------------------------------------------------------------


def test_sample_agencies(sample: Settings) -> None:
    assert {a.code for a in sample.agencies} == AGENCY_CODES
    province = sample.agency("fj-amr")
    assert (province.level, province.region, province.parent_region) == ("province", "350000", None)
    city = sample.agency("sm-amr")
    assert (city.name, city.kind, city.level, city.region, city.region_name, city.parent_region) == (
        "三明市市场监督管理局",
        "market_regulation",
        "city",
        "350400",
        "三明市",
        "350000",
    )
    assert city.doc_prefix == "明市监"
    assert sample.agency("sm-court").name == "三明市中级人民法院"
    assert sample.agency("jl-psb").region == "350428"
    assert sample.agency("mx-court").region == "350421"
    for agency in sample.agencies:
        assert agency.name_en
        if agency.level == "county":
            assert agency.parent_region == "350400", agency.code
        if agency.level == "city":
            assert agency.parent_region == "350000", agency.code
    with pytest.raises(KeyError):
        sample.agency("xx-amr")


def test_every_agency_has_a_handler_and_a_liaison_with_email(sample: Settings) -> None:
    by_name = {o.username: o for o in sample.officers}
    for agency in sample.agencies:
        stem = agency.code.replace("-", "_")
        handler, liaison = by_name[f"{stem}_handler"], by_name[f"{stem}_liaison"]
        assert (handler.agency, handler.roles, handler.liaison) == (agency.code, ["handler"], False)
        assert (liaison.agency, liaison.roles, liaison.liaison) == (agency.code, [], True)
    for officer in sample.officers:
        assert officer.email == f"{officer.username}@sanming.example"
        assert officer.display_name and officer.active


def test_special_roles(sample: Settings) -> None:
    by_name = {o.username: o for o in sample.officers}
    assert (by_name["sm_amr_secretary"].agency, by_name["sm_amr_secretary"].roles) == ("sm-amr", ["secretary"])
    assert (by_name["sm_amr_supervisor"].agency, by_name["sm_amr_supervisor"].roles) == ("sm-amr", ["supervisor"])
    assert (by_name["fj_amr_supervisor"].agency, by_name["fj_amr_supervisor"].roles) == ("fj-amr", ["supervisor"])
    assert (by_name["admin"].agency, by_name["admin"].roles) == ("sm-amr", ["admin"])


def test_sample_clocks(sample: Settings) -> None:
    assert set(sample.clocks) == CLOCK_IDS
    for rule_id, rule in sample.clocks.items():
        assert rule.id == rule_id
        assert "suspended" in rule.pause_in, rule_id
        assert rule.label and rule.label_en and rule.basis
        assert rule.responsible in {"market_regulation", "police", "procuratorate", "court"}
        if rule.unit in ("days", "months"):
            assert rule.roll_to_workday, rule_id
    a1 = sample.clocks["A1"]
    assert (a1.start_on, a1.active_in, a1.limit, a1.unit) == (["open_case"], ["intake"], 15, "workdays")
    assert [(e.event, e.amount, e.unit, e.max_times) for e in a1.extensions] == [
        ("extend_verification", 15, "workdays", 1)
    ]
    a3 = sample.clocks["A3"]
    assert (a3.limit, a3.unit, a3.pause_in) == (90, "days", ["appraisal", "hearing", "suspended"])
    assert "集体" in a3.note and "第六十条" in a3.basis
    assert (sample.clocks["T3"].limit, sample.clocks["T3"].unit) == (24, "hours")
    assert sample.clocks["T5"].start_on == []
    assert sample.clocks["T7"].start_on == ["transfer_to_police", "forward_jurisdiction"]
    c4 = sample.clocks["C4"]
    assert (c4.limit, c4.unit, c4.responsible) == (1, "months", "procuratorate")
    assert [(e.event, e.amount, e.unit) for e in c4.extensions] == [("extend_review", 15, "days")]
    assert [(e.event, e.amount, e.unit) for e in sample.clocks["C6"].extensions] == [("extend_trial", 1, "months")]


def test_sample_clock_names_exist_in_the_case_chart(sample: Settings) -> None:
    lifecycle = pytest.importorskip("states.lifecycle")
    from states.clocks import validate_rules

    assert validate_rules(sample.clocks, set(lifecycle.STATE_IDS), set(lifecycle.EVENT_IDS)) == []


def test_sample_sections(sample: Settings) -> None:
    assert sample.timezone == "Asia/Shanghai"
    assert sample.database.url == "sqlite:///var/jointcase.db"
    assert sample.database.echo is False
    assert sample.scheduler.mode == "embedded"
    assert sample.case_number.format.format(agency="sm-amr", year=2026, seq=7) == "sm-amr-2026-0007"
    assert (sample.referral.loss_threshold, sample.referral.illegal_gain_threshold) == (300_000, 300_000)
    assert sample.calendar.years == {}
    assert sample.storage.attachments_dir == "var/attachments"
    assert sample.config_path == SAMPLE


def test_calendar_year_is_read(tmp_path: Path) -> None:
    text = _edit("[calendar.years]\n", "[calendar.years.2027]\nholidays = [2027-01-01]\nworkdays = [2027-02-06]\n")
    settings = load_settings(_write(tmp_path, text), env={})
    assert settings.calendar.years[2027].holidays == [date(2027, 1, 1)]
    assert settings.calendar.years[2027].workdays == [date(2027, 2, 6)]


# --- environment overrides ----------------------------------------------------------------------


def test_env_nested_override_wins_over_file(tmp_path: Path) -> None:
    settings = load_settings(SAMPLE, env={"JOINTCASE_DATABASE__URL": "postgresql+psycopg://u@db/jc"})
    assert settings.database.url == "postgresql+psycopg://u@db/jc"
    assert settings.database.echo is False  # the rest of the table still comes from the file


def test_env_short_database_url(tmp_path: Path) -> None:
    settings = load_settings(SAMPLE, env={"JOINTCASE_DATABASE_URL": "postgresql+psycopg://short@db/jc"})
    assert settings.database.url == "postgresql+psycopg://short@db/jc"


def test_env_nested_form_beats_short_form() -> None:
    env = {"JOINTCASE_DATABASE_URL": "sqlite:///short.db", "JOINTCASE_DATABASE__URL": "sqlite:///nested.db"}
    assert load_settings(SAMPLE, env=env).database.url == "sqlite:///nested.db"


def test_env_int_and_rule_overrides() -> None:
    env = {
        "JOINTCASE_REFERRAL__LOSS_THRESHOLD": "500000",
        "JOINTCASE_CLOCKS__T2__UNIT": "workdays",  # table keys match case-insensitively
        "JOINTCASE_CALENDAR__EXTRA_HOLIDAYS": '["2027-01-01"]',
        "JOINTCASE_SCHEDULER__MODE": "off",
    }
    settings = load_settings(SAMPLE, env=env)
    assert settings.referral.loss_threshold == 500_000
    assert settings.referral.illegal_gain_threshold == 300_000
    assert settings.clocks["T2"].unit == "workdays"
    assert settings.clocks["T2"].id == "T2"
    assert settings.calendar.extra_holidays == [date(2027, 1, 1)]
    assert settings.scheduler.mode == "off"


def test_env_config_names_the_file(tmp_path: Path) -> None:
    other = _write(tmp_path, _edit('url = "sqlite:///var/jointcase.db"', 'url = "sqlite:///other.db"'), "site.toml")
    settings = load_settings(env={"JOINTCASE_CONFIG": str(other)})
    assert settings.config_path == other
    assert settings.database.url == "sqlite:///other.db"
    # An explicit path beats the variable.
    assert load_settings(SAMPLE, env={"JOINTCASE_CONFIG": str(other)}).config_path == SAMPLE


def test_default_file_and_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, _sample_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JOINTCASE_CONFIG", raising=False)
    monkeypatch.setenv("JOINTCASE_REFERRAL__ILLEGAL_GAIN_THRESHOLD", "400000")
    settings = load_settings()
    assert settings.config_path == tmp_path / "config.toml"
    assert settings.referral.illegal_gain_threshold == 400_000


def test_unrelated_jointcase_variables_are_ignored() -> None:
    env = {
        "JOINTCASE_TEST_DATABASE_URL": "postgresql://test@localhost/test",
        "JOINTCASE_CONFIG": str(SAMPLE),
        "JOINTCASE_CONFIG_PATH": "/elsewhere.toml",
        "JOINTCASE_SOMETHING_ELSE": "x",
        "DATABASE__URL": "sqlite:///not-ours.db",
    }
    settings = load_settings(SAMPLE, env=env)
    assert settings.database.url == "sqlite:///var/jointcase.db"
    assert settings.config_path == SAMPLE


def test_bad_env_value_names_the_variable() -> None:
    problems = _problems(SAMPLE, {"JOINTCASE_REFERRAL__LOSS_THRESHOLD": "-1"})
    assert problems == [
        "env JOINTCASE_REFERRAL__LOSS_THRESHOLD: referral.loss_threshold: Input should be greater than 0"
    ]
    problems = _problems(SAMPLE, {"JOINTCASE_CALENDAR__EXTRA_HOLIDAYS": "[2027-01-01"})
    assert problems[0].startswith("env JOINTCASE_CALENDAR__EXTRA_HOLIDAYS: calendar.extra_holidays: not valid JSON")
    problems = _problems(SAMPLE, {"JOINTCASE_DATABASE__ULR": "sqlite:///x.db"})
    assert problems == ["env JOINTCASE_DATABASE__ULR: database.ulr: Extra inputs are not permitted"]


# --- refusals: one line per problem, naming the key ------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert _problems(missing) == [f"config file not found: {missing} (set JOINTCASE_CONFIG or pass --config)"]
    assert _problems(Path("nope.toml"), {"JOINTCASE_CONFIG": str(SAMPLE)})[0].startswith("config file not found:")


def test_missing_file_named_by_env(tmp_path: Path) -> None:
    missing = tmp_path / "gone.toml"
    with pytest.raises(ConfigError, match=r"config file not found: .*gone\.toml \(set JOINTCASE_CONFIG"):
        load_settings(env={"JOINTCASE_CONFIG": str(missing)})


def test_toml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, '[database]\nurl = "sqlite:///x.db"\necho = tru e\n')
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}: invalid TOML: line 3, column 8: ")


def test_unknown_agency_kind(tmp_path: Path) -> None:
    path = _write(tmp_path, _edit('kind = "justice"', 'kind = "ministry"'))
    assert _problems(path) == [
        "config.toml: agencies[5].kind: "
        "Input should be 'market_regulation', 'police', 'procuratorate', 'court' or 'justice'"
    ]


def test_officer_with_unknown_agency(tmp_path: Path, sample: Settings) -> None:
    extra = (
        '\n[[officers]]\nusername = "ghost"\ndisplay_name = "某某"\nagency = "xx-amr"\nemail = "g@sanming.example"\n'
    )
    path = _write(tmp_path, _sample_text() + extra)
    assert _problems(path) == [
        f"config.toml: officers[{len(sample.officers)}].agency: unknown agency 'xx-amr' (not a code in [[agencies]])"
    ]


def test_duplicate_agency_code_and_username(tmp_path: Path, sample: Settings) -> None:
    extra = (
        '\n[[agencies]]\ncode = "sm-psb"\nname = "重复"\nname_en = "Duplicate"\nkind = "police"\n'
        'level = "city"\nregion = "350400"\nregion_name = "三明市"\n'
        '\n[[officers]]\nusername = "admin"\ndisplay_name = "重复"\nagency = "sm-amr"\nemail = "a@sanming.example"\n'
    )
    problems = _problems(_write(tmp_path, _sample_text() + extra))
    assert problems == [
        f"config.toml: agencies[{len(sample.agencies)}].code: duplicate agency code 'sm-psb' (also agencies[2])",
        f"config.toml: officers[{len(sample.officers)}].username: duplicate username 'admin' (also officers[7])",
    ]


def test_negative_clock_limit(tmp_path: Path) -> None:
    path = _write(tmp_path, _edit("limit = 15\n", "limit = -15\n"))
    assert _problems(path) == ["config.toml: clocks.A1.limit: Input should be greater than 0"]


def test_unknown_clock_unit(tmp_path: Path) -> None:
    path = _write(tmp_path, _edit('limit = 15\nunit = "workdays"', 'limit = 15\nunit = "weeks"'))
    assert _problems(path) == ["config.toml: clocks.A1.unit: Input should be 'hours', 'days', 'workdays' or 'months'"]


def test_unknown_state_and_event_in_clock_rule(tmp_path: Path) -> None:
    pytest.importorskip("states.lifecycle")
    text = _edit('active_in = ["awaiting_transfer"]', 'active_in = ["awaiting_transfr"]')
    text = text.replace('start_on = ["indict"]', 'start_on = ["indict_now"]')
    assert _problems(_write(tmp_path, text)) == [
        "config.toml: clocks.T3.active_in: unknown state 'awaiting_transfr'",
        "config.toml: clocks.C6.start_on: unknown event 'indict_now'",
    ]


def test_unknown_responsible_kind(tmp_path: Path) -> None:
    path = _write(tmp_path, _edit('responsible = "court"', 'responsible = "judge"'))
    (problem,) = _problems(path)
    assert problem.startswith("config.toml: clocks.C6.responsible: 'judge' is not an agency kind")


def test_malformed_email(tmp_path: Path, sample: Settings) -> None:
    index = [o.username for o in sample.officers].index("sm_psb_handler")
    path = _write(tmp_path, _edit('"sm_psb_handler@sanming.example"', '"sm_psb_handler.sanming.example"'))
    assert _problems(path) == [
        f"config.toml: officers[{index}].email: not a plain email address (one user@domain, no name, list or brackets)"
    ]
    path = _write(tmp_path, _edit('"admin@sanming.example"', '"admin@localhost"'))
    assert _problems(path)[0].startswith("config.toml: officers[7].email: not a plain email address")
    # Addresses a mail parser would read as something else (a list, another mailbox) are refused too.
    for bad in ("zhang;li@sanming.example", "zhang,li@sanming.example", "x@[sanming.example", "x@b..example"):
        path = _write(tmp_path, _edit('"admin@sanming.example"', f'"{bad}"'))
        assert _problems(path)[0].startswith("config.toml: officers[7].email: not a plain email address"), bad


def test_bad_case_number_format(tmp_path: Path) -> None:
    path = _write(tmp_path, _edit('format = "{agency}-{year}-{seq:04d}"', 'format = "{agency}-{month}"'))
    assert _problems(path) == ["config.toml: case_number.format: unknown field(s) month; allowed: agency, year, seq"]
    path = _write(tmp_path, _edit('format = "{agency}-{year}-{seq:04d}"', 'format = "{agency}-{seq:04q}"'))
    assert _problems(path)[0].startswith("config.toml: case_number.format: does not render:")


def test_all_problems_reported_together_with_the_real_file_name(tmp_path: Path) -> None:
    text = _edit("limit = 15\n", "limit = 0\n")
    text = text.replace('mode = "embedded"', 'mode = "cron"')
    text = text.replace('agency = "mx-court"', 'agency = "mx-courts"', 1)
    text = text.replace("[database]", "[databse]")
    problems = _problems(_write(tmp_path, text, "prod.toml"))
    assert "prod.toml: clocks.A1.limit: Input should be greater than 0" in problems
    assert "prod.toml: scheduler.mode: Input should be 'embedded', 'prefect' or 'off'" in problems
    assert "prod.toml: databse: Extra inputs are not permitted" in problems
    assert any(p.startswith("prod.toml: officers[32].agency: unknown agency 'mx-courts'") for p in problems)
    assert len(problems) == 4


def test_required_tables(tmp_path: Path) -> None:
    path = _write(tmp_path, '[database]\nurl = "sqlite:///x.db"\n')
    assert _problems(path) == [
        "config.toml: agencies: Field required",
        "config.toml: officers: Field required",
        "config.toml: clocks: Field required",
    ]


def test_calendar_date_listed_twice(tmp_path: Path) -> None:
    text = _edit("[calendar.years]\n", "[calendar.years.2027]\nholidays = [2027-01-01]\nworkdays = [2027-01-01]\n")
    assert _problems(_write(tmp_path, text)) == [
        "config.toml: calendar.years.2027: listed as both holiday and workday: 2027-01-01"
    ]


def test_email_settings_from_the_environment() -> None:
    env = {
        "JOINTCASE_NOTIFICATIONS__EMAIL__HOST": "smtp.sanming.example",
        "JOINTCASE_NOTIFICATIONS__EMAIL__PORT": "587",
        "JOINTCASE_NOTIFICATIONS__EMAIL__TLS": "starttls",
    }
    email = load_settings(SAMPLE, env=env).notifications.email
    assert (email.host, email.port, email.tls) == ("smtp.sanming.example", 587, "starttls")
    with pytest.raises(ConfigError, match="JOINTCASE_NOTIFICATIONS__EMAIL__PORT"):
        load_settings(SAMPLE, env={"JOINTCASE_NOTIFICATIONS__EMAIL__PORT": "smtp"})
    with pytest.raises(ConfigError, match="tls"):
        load_settings(SAMPLE, env={"JOINTCASE_NOTIFICATIONS__EMAIL__TLS": "maybe"})
