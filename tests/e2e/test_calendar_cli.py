"""End to end through ``jointcase calendar``: deadline arithmetic, working-day questions, covered years.

Runs the real Typer app in-process (CliRunner) with a config in tmp_path; the calendar needs no
database. Expected dates are the State Council holiday notices for 2025 and 2026 (DOMAIN-RULES §9),
which chinese-calendar 1.11 ships: National Day 2026 Oct 1-7 (make-up Sun Sep 20, Sat Oct 10);
Spring Festival 2026 Feb 15-23 (make-up Sat Feb 14, Sat Feb 28); Spring Festival 2025 Jan 28-Feb 4
(make-up Sun Jan 26, Sat Feb 8); National Day 2025 Oct 1-8 (make-up Sun Sep 28, Sat Oct 11).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from app.cli import app
from tests.conftest import write_config

runner = CliRunner()

DECLARED_2027 = """

[calendar.years.2027]
holidays = [2027-01-01]
workdays = []
"""


class CalendarCli:
    """Runs ``jointcase --config CFG calendar ...`` in-process."""

    def __init__(self, config: Path) -> None:
        self.config = config

    def __call__(self, *args: str, code: int = 0) -> Any:
        result = runner.invoke(app, ["--config", str(self.config), "calendar", *args])
        assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr
        return result

    def line(self, *args: str) -> str:
        """The single line a successful command prints on stdout."""
        lines = self(*args).stdout.splitlines()
        assert len(lines) == 1, lines
        return lines[0]

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)


@pytest.fixture
def cal(tmp_path: Path) -> CalendarCli:
    return CalendarCli(write_config(tmp_path, f"sqlite:///{tmp_path / 'jointcase.db'}"))


@pytest.fixture
def cal_2027(tmp_path: Path) -> CalendarCli:
    """A config that declares 2027 (only New Year's Day off) in ``[calendar.years.2027]``."""
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'jointcase.db'}")
    text = config.read_text(encoding="utf-8")
    assert "2027" not in tomllib.loads(text)["calendar"]["years"], "the repo config declares 2027 now: adapt this"
    config.write_text(text + DECLARED_2027, encoding="utf-8")
    return CalendarCli(config)


# -- add: days ------------------------------------------------------------------------------------------


def test_days_roll_past_national_day_2026(cal: CalendarCli) -> None:
    # Wed 2026-09-30 + 3 days = Sat Oct 3, inside the Oct 1-7 holiday -> first working day Thu Oct 8.
    assert cal.line("add", "2026-09-30", "3", "--unit", "days") == "2026-10-08"
    # --no-roll: the period ends on the holiday itself.
    assert cal.line("add", "2026-09-30", "3", "--unit", "days", "--no-roll") == "2026-10-03"


def test_days_roll_past_national_day_2025(cal: CalendarCli) -> None:
    # Tue 2025-09-30 + 1 day = Oct 1; Oct 1-8 off -> Thu Oct 9.
    assert cal.line("add", "2025-09-30", "1", "--unit", "days") == "2025-10-09"


def test_days_ending_on_makeup_saturday_do_not_roll(cal: CalendarCli) -> None:
    # Wed 2026-02-25 + 3 days = Sat Feb 28, a make-up working day.
    assert cal.line("add", "2026-02-25", "3", "--unit", "days") == "2026-02-28"


# -- add: workdays --------------------------------------------------------------------------------------


def test_workdays_across_spring_festival_2026(cal: CalendarCli) -> None:
    # Fri Feb 13: Feb 14 make-up Sat (1); Feb 15-23 off; Feb 24 (2), 25 (3), 26 (4), 27 (5).
    assert cal.line("add", "2026-02-13", "5", "--unit", "workdays") == "2026-02-27"


def test_workdays_across_spring_festival_2025(cal: CalendarCli) -> None:
    # Fri Jan 24: Jan 25 Sat off; Jan 26 make-up Sun (1); Jan 27 (2); Jan 28-Feb 4 off; Feb 5 (3).
    assert cal.line("add", "2025-01-24", "3", "--unit", "workdays") == "2025-02-05"
    # From Tue Feb 4 (last holiday): Feb 5 (1), 6 (2), 7 (3), Sat Feb 8 make-up (4).
    assert cal.line("add", "2025-02-04", "4", "--unit", "workdays") == "2025-02-08"


def test_workdays_count_national_day_makeup_days(cal: CalendarCli) -> None:
    # Fri 2026-09-18: Sep 19 Sat off; Sun Sep 20 make-up (1); Mon Sep 21 (2).
    assert cal.line("add", "2026-09-18", "2", "--unit", "workdays") == "2026-09-21"
    # Wed 2026-09-30: Oct 1-7 off; Oct 8 (1), 9 (2), Sat Oct 10 make-up (3).
    assert cal.line("add", "2026-09-30", "3", "--unit", "workdays") == "2026-10-10"
    # Wed 2025-10-08 (last holiday): Oct 9 (1), 10 (2), Sat Oct 11 make-up (3).
    assert cal.line("add", "2025-10-08", "3", "--unit", "workdays") == "2025-10-11"


# -- add: hours -----------------------------------------------------------------------------------------


def test_hours_are_exact_across_midnight(cal: CalendarCli) -> None:
    # 22:00 Beijing + 3 hours = 01:00 next day, on a holiday (hours never roll).
    assert cal.line("add", "2026-09-30T22:00", "3", "--unit", "hours") == "2026-10-01T01:00:00+08:00"
    # An offset is honoured: 15:00 UTC is 23:00 in Beijing; + 10 hours = 09:00 next day.
    assert cal.line("add", "2026-09-30T15:00+00:00", "10", "--unit", "hours") == "2026-10-01T09:00:00+08:00"
    # A bare date starts at 00:00 Beijing time.
    assert cal.line("add", "2026-02-14", "24", "--unit", "hours") == "2026-02-15T00:00:00+08:00"


# -- add: months ----------------------------------------------------------------------------------------


def test_months_at_month_end(cal: CalendarCli) -> None:
    # Jan 31 2026 + 1 month -> Feb 28 (no Feb 31), a make-up Saturday: no roll.
    assert cal.line("add", "2026-01-31", "1", "--unit", "months") == "2026-02-28"
    # Apr 30 2026 + 1 month -> Sat May 30 (plain weekend) -> Mon Jun 1.
    assert cal.line("add", "2026-04-30", "1", "--unit", "months") == "2026-06-01"
    # Mar 31 2025 + 2 months -> Sat May 31 (Dragon Boat, May 31-Jun 2 off) -> Tue Jun 3; or stays.
    assert cal.line("add", "2025-03-31", "2", "--unit", "months") == "2025-06-03"
    assert cal.line("add", "2025-03-31", "2", "--unit", "months", "--no-roll") == "2025-05-31"


# -- add: years without data and JSON -------------------------------------------------------------------


def test_2027_is_provisional_and_exits_zero(cal: CalendarCli) -> None:
    # Wed 2026-12-30 + 5 days = Mon 2027-01-04 under the Monday-Friday fallback.
    line = cal.line("add", "2026-12-30", "5", "--unit", "days")
    assert line == "2027-01-04 provisional (no official holiday data for 2027; weekends assumed)"
    payload = cal.json("add", "2027-03-01", "10", "--unit", "workdays")
    assert payload["provisional"] is True
    assert payload["reasons"] == ["no official holiday data for 2027; weekends assumed"]
    assert payload["due"] == "2027-03-15"


def test_declared_2027_is_no_longer_provisional(cal_2027: CalendarCli) -> None:
    # Thu 2026-12-31 + 1 day = Fri Jan 1 2027, declared a holiday -> Mon Jan 4; official now.
    assert cal_2027.line("add", "2026-12-31", "1", "--unit", "days") == "2027-01-04"


def test_add_json_parses(cal: CalendarCli) -> None:
    assert cal.json("add", "2026-09-30", "3", "--unit", "days") == {
        "start": "2026-09-30T00:00:00+08:00",
        "amount": 3,
        "unit": "days",
        "due": "2026-10-08",
        "due_at": "2026-10-08T23:59:59+08:00",
        "provisional": False,
        "reasons": [],
    }
    hours = cal.json("add", "2026-09-30T15:00", "24", "--unit", "hours")
    assert hours["due"] == hours["due_at"] == "2026-10-01T15:00:00+08:00"
    assert hours["start"] == "2026-09-30T15:00:00+08:00"


# -- is-workday -----------------------------------------------------------------------------------------

MAKEUP_DAYS = ["2025-01-26", "2025-02-08", "2025-09-28", "2025-10-11", "2026-02-14", "2026-02-28", "2026-09-20"]


@pytest.mark.parametrize("day", [*MAKEUP_DAYS, "2026-10-10"])
def test_is_workday_makeup_weekend_day(cal: CalendarCli, day: str) -> None:
    assert cal.line("is-workday", day) == f"yes: {day} workday (make-up working day 调休上班)"


@pytest.mark.parametrize("day", ["2026-10-01", "2026-10-07", "2026-02-23", "2025-01-28", "2025-10-08"])
def test_is_workday_holiday_weekday(cal: CalendarCli, day: str) -> None:
    assert cal.line("is-workday", day) == f"no: {day} rest day (holiday)"


def test_is_workday_ordinary_days(cal: CalendarCli) -> None:
    assert cal.line("is-workday", "2026-11-28") == "no: 2026-11-28 rest day (weekend)"
    assert cal.line("is-workday", "2026-10-11") == "no: 2026-10-11 rest day (weekend)"  # Sun after make-up Sat
    assert cal.line("is-workday", "2026-10-08") == "yes: 2026-10-08 workday (weekday)"


def test_is_workday_json(cal: CalendarCli) -> None:
    assert cal.json("is-workday", "2026-02-14") == {
        "date": "2026-02-14",
        "workday": True,
        "kind": "make-up",
        "provisional": False,
        "reason": None,
    }
    assert cal.json("is-workday", "2026-10-01")["kind"] == "holiday"


def test_is_workday_in_2027_is_provisional(cal: CalendarCli) -> None:
    result = cal("is-workday", "2027-01-01")
    assert result.stdout.splitlines() == [
        "yes: 2027-01-01 workday (weekday)",
        "provisional: no official holiday data for 2027; Monday-Friday assumed",
    ]
    payload = cal.json("is-workday", "2027-01-02")
    assert (payload["workday"], payload["kind"], payload["provisional"]) == (False, "weekend", True)
    assert payload["reason"] == "no official holiday data for 2027"


def test_is_workday_in_declared_2027(cal_2027: CalendarCli) -> None:
    assert cal_2027.line("is-workday", "2027-01-01") == "no: 2027-01-01 rest day (holiday)"


# -- years ----------------------------------------------------------------------------------------------


def test_years_from_the_package(cal: CalendarCli) -> None:
    lines = cal("years").stdout.splitlines()
    assert lines == [
        "covered: 2004–2026",
        "  from chinese-calendar: 2004–2026",
        "  declared in config.toml: none",
    ]
    payload = cal.json("years")
    assert payload["covered"] == list(range(2004, 2027))
    assert payload["declared_in_config"] == []


def test_years_with_a_declared_year(cal_2027: CalendarCli) -> None:
    lines = cal_2027("years").stdout.splitlines()
    assert lines[0] == "covered: 2004–2027"
    assert lines[2] == "  declared in config.toml: 2027"
    payload = cal_2027.json("years")
    assert 2026 in payload["covered"] and 2027 in payload["covered"]
    assert payload["declared_in_config"] == [2027]


# -- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "2026-02-30", "3", "--unit", "days"], "'2026-02-30' is not an ISO date or date-time"),
        (["add", "next monday", "3", "--unit", "days"], "'next monday' is not an ISO date or date-time"),
        (["add", "2026-09-30", "-1", "--unit", "days"], "N must be 0 or more, got -1"),
        (["add", "2026-09-30", "99999", "--unit", "months"], "N is too large"),
        (["is-workday", "2026-9-30"], "'2026-9-30' is not an ISO date"),
        (["is-workday", "2026-09-30T10:00"], "is not an ISO date"),
    ],
)
def test_bad_input_is_one_line_exit_2(cal: CalendarCli, args: list[str], message: str) -> None:
    result = cal(*args, code=2)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and message in lines[0]


def test_bad_input_with_json_is_one_json_line(cal: CalendarCli) -> None:
    result = cal("add", "2026-09-30", "-5", "--unit", "days", "--json", code=2)
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == {"error": "invalid_input", "message": "N must be 0 or more, got -5"}


def test_unknown_unit_is_a_usage_error(cal: CalendarCli) -> None:
    # The unit is a Typer enum: Click refuses it before the command runs (exit 2, no traceback).
    result = cal("add", "2026-09-30", "3", "--unit", "weeks", code=2)
    assert result.stdout == ""
    assert "'weeks' is not one of" in result.stderr
    assert "workdays" in result.stderr and "months" in result.stderr


def test_missing_unit_is_a_usage_error(cal: CalendarCli) -> None:
    result = cal("add", "2026-09-30", "3", code=2)
    assert "--unit" in result.stderr
