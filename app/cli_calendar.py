"""``jointcase calendar``: China's working-day calendar and deadline arithmetic from the command line.

No database is needed: the calendar is built from the chinese-calendar package plus the years and
single-day corrections declared in config.toml (``--config``).
"""

from __future__ import annotations

from datetime import date, datetime, time
from enum import StrEnum
from typing import Annotated

import typer

from app.bootstrap import build_calendar
from app.cli import JsonOpt, _emit, _errors, _settings, out
from states.calendar import SHANGHAI, WorkCalendar
from states.errors import InvalidInput

calendar_app = typer.Typer(help="Working days and deadline arithmetic. 工作日历", no_args_is_help=True)


class CalendarUnit(StrEnum):
    """Units a period can be counted in (the same as a clock rule's ``unit``)."""

    workdays = "workdays"
    days = "days"
    hours = "hours"
    months = "months"


# About a century in each unit: far beyond any statutory period, and it keeps a typo such as an extra
# digit from looping through thousands of years (each without holiday data) before failing.
MAX_AMOUNT: dict[CalendarUnit, int] = {
    CalendarUnit.hours: 100 * 366 * 24,
    CalendarUnit.days: 100 * 366,
    CalendarUnit.workdays: 100 * 260,
    CalendarUnit.months: 100 * 12,
}

DATE_EXAMPLE = "e.g. 2026-09-30, 2026-09-30T15:00 or 2026-09-30T15:00+08:00"


# (is a workday, is a Saturday/Sunday) -> kind of day; and how each kind is shown.
_DAY_KINDS: dict[tuple[bool, bool], str] = {
    (True, False): "weekday",
    (True, True): "make-up",
    (False, True): "weekend",
    (False, False): "holiday",
}
_DAY_LABELS: dict[str, str] = {
    "weekday": "weekday",
    "make-up": "make-up working day 调休上班",
    "weekend": "weekend",
    "holiday": "holiday",
}


def _parse_start(value: str) -> datetime:
    """ISO date or date-time, aware in Asia/Shanghai; a value without an offset is Beijing time."""
    try:
        parsed = (
            datetime.combine(date.fromisoformat(value), time(0, 0))
            if len(value) == 10
            else datetime.fromisoformat(value)
        )
    except ValueError:
        raise InvalidInput(f"DATE: {value!r} is not an ISO date or date-time ({DATE_EXAMPLE})") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=SHANGHAI)
    return parsed.astimezone(SHANGHAI)


def _parse_day(value: str) -> date:
    """An ISO calendar date such as 2026-10-01."""
    try:
        if len(value) != 10:
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"DATE: {value!r} is not an ISO date (e.g. 2026-10-01)") from None


def _calendar() -> WorkCalendar:
    return build_calendar(_settings())


def _compact_ranges(years: list[int]) -> str:
    """``[2004, 2005, 2006, 2027]`` -> ``2004–2006, 2027``."""
    parts: list[str] = []
    ordered = sorted(set(years))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}–{ordered[j]}")
        i = j + 1
    return ", ".join(parts) or "none"


# ignore_unknown_options: a negative N ("-1") reaches the command as an argument and is refused there
# with one clear line, instead of Click's "No such option: -1".
@calendar_app.command("add", context_settings={"ignore_unknown_options": True})
def add(
    start: Annotated[
        str, typer.Argument(metavar="DATE", help=f"Start, Beijing time unless an offset is given ({DATE_EXAMPLE}).")
    ],
    amount: Annotated[int, typer.Argument(metavar="N", help="How many units, 0 or more (the start is not counted).")],
    unit: Annotated[CalendarUnit, typer.Option("--unit", "-u", help="Unit to count in (required).")],
    roll: Annotated[
        bool, typer.Option("--roll/--no-roll", help="days/months: move a last day on a rest day to the next workday.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Deadline of a period of N units from DATE (起算日不计入; 期满日遇休息日顺延)."""
    with _errors(as_json):
        begin = _parse_start(start)
        if amount < 0:
            raise InvalidInput(f"N must be 0 or more, got {amount}")
        if amount > MAX_AMOUNT[unit]:
            raise InvalidInput(f"N is too large: at most {MAX_AMOUNT[unit]} {unit.value} (~100 years), got {amount}")
        try:
            due = _calendar().add(begin, amount, unit.value, roll_to_workday=roll)
        except (ValueError, OverflowError) as exc:  # e.g. a period running past the year 9999
            raise InvalidInput(f"cannot count {amount} {unit.value} from {begin.date().isoformat()}: {exc}") from None
        due_at = due.due_at.astimezone(SHANGHAI)
        shown = due_at.isoformat() if unit is CalendarUnit.hours else due_at.date().isoformat()
        payload = {
            "start": begin.isoformat(),
            "amount": amount,
            "unit": unit.value,
            "due": shown,
            "due_at": due_at.isoformat(),
            "provisional": due.provisional,
            "reasons": list(due.reasons),
        }

        def human() -> None:
            line = shown
            if due.provisional:
                line += f" provisional ({'; '.join(due.reasons)})"
            out.print(line, markup=False, highlight=False)

        _emit(as_json, payload, human)


@calendar_app.command("is-workday")
def is_workday(
    day: Annotated[str, typer.Argument(metavar="DATE", help="An ISO date, e.g. 2026-10-01.")],
    as_json: JsonOpt = False,
) -> None:
    """Whether DATE is a working day in mainland China, and why (exit 0 either way)."""
    with _errors(as_json):
        d = _parse_day(day)
        cal = _calendar()
        workday = cal.is_workday(d)
        # A weekend day that works is a make-up day; a weekday that rests is a holiday.
        kind = _DAY_KINDS[(workday, d.weekday() >= 5)]
        summary = f"{d.isoformat()} {'workday' if workday else 'rest day'} ({_DAY_LABELS[kind]})"
        covered = cal.covers(d)
        payload = {
            "date": d.isoformat(),
            "workday": workday,
            "kind": kind,
            "provisional": not covered,
            "reason": None if covered else f"no official holiday data for {d.year}",
        }

        def human() -> None:
            out.print(f"{'yes' if workday else 'no'}: {summary}", markup=False, highlight=False)
            if not covered:
                out.print(
                    f"provisional: no official holiday data for {d.year}; Monday-Friday assumed",
                    markup=False,
                    highlight=False,
                )

        _emit(as_json, payload, human)


@calendar_app.command("years")
def years(as_json: JsonOpt = False) -> None:
    """Years with official holiday data: the chinese-calendar package's plus those declared in config.toml."""
    with _errors(as_json):
        settings = _settings()
        covered = build_calendar(settings).covered_years()
        declared = sorted(settings.calendar.years)
        package = WorkCalendar().covered_years()
        payload = {"covered": covered, "declared_in_config": declared}

        def human() -> None:
            for label, values in (
                ("covered", covered),
                ("  from chinese-calendar", package),
                ("  declared in config.toml", declared),
            ):
                out.print(f"{label}: {_compact_ranges(values)}", markup=False, highlight=False)

        _emit(as_json, payload, human)
