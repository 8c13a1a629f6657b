"""Working-day calendar and statutory deadline arithmetic (Asia/Shanghai).

Counting follows CPL art. 105, Civil Code arts. 201-203 and 行政处罚法 art. 85: the start day (or hour)
is not counted; ``days`` and ``months`` end on a last day that rolls forward when it is a rest day;
``workdays`` count only working days; every day-based deadline ends at 23:59:59 of its last day.

Holiday data comes from ``chinese_calendar`` for the years it ships, from whole years declared in
config.toml (``years``), and from single-day corrections (``extra_holidays`` / ``extra_workdays``).
A date in a year none of these cover is never an error: it falls back to Monday-Friday, and any
deadline that depended on such a date is marked provisional with a reason, so a case handler is told
that the date may move once the State Council publishes that year's notice.
"""

from __future__ import annotations

import calendar as _stdlib_calendar
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache, lru_cache
from zoneinfo import ZoneInfo

import chinese_calendar

from states.clocks import UNITS, Unit

logger = logging.getLogger(__name__)

SHANGHAI: ZoneInfo = ZoneInfo("Asia/Shanghai")

END_OF_DAY: time = time(23, 59, 59)
"""A day-based period ends at the end of its last day (Civil Code art. 203: 24:00), kept inside the day."""

# A rest stretch longer than this can only come from a broken config (every day of a declared year a
# holiday); stop instead of looping for ever. Real holiday blocks are at most 9 days.
_MAX_ROLL_DAYS = 366


@dataclass(frozen=True)
class Due:
    """A computed deadline and whether it rests on assumed (not officially published) holiday data."""

    due_at: datetime  # timezone-aware, in Asia/Shanghai
    provisional: bool  # True when any date examined lies in a year with no holiday data
    reasons: tuple[str, ...]  # human-readable, one per uncovered year


@cache
def _package_years() -> frozenset[int]:
    """Years the installed chinese-calendar release has data for.

    The package itself accepts exactly ``min(holidays).year .. max(holidays).year`` (see its
    ``_validate_date``), so the same span is derived here from its public ``holidays`` mapping
    rather than hard-coding 2004-2026: a new release that adds 2027 is picked up automatically.
    The mapping is only read, never mutated (STACK-NOTES gotcha 13).
    """
    years = [d.year for d in chinese_calendar.holidays]
    if not years:
        return frozenset()
    return frozenset(range(min(years), max(years) + 1))


def _uncovered_reason(year: int) -> str:
    return f"no official holiday data for {year}; weekends assumed"


def _end_of_day(d: date) -> datetime:
    return datetime.combine(d, END_OF_DAY, tzinfo=SHANGHAI)


def _require_aware(value: datetime, name: str) -> datetime:
    """Return ``value`` in Asia/Shanghai; a naive datetime is refused because its instant is unknown."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(SHANGHAI)


def _add_months(d: date, months: int) -> date:
    """Same day-of-month ``months`` later, or that month's last day when it has no such day."""
    index = d.year * 12 + (d.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    last = _stdlib_calendar.monthrange(year, month)[1]
    return date(year, month, min(d.day, last))


class _Examined:
    """Collects the uncovered years met while computing one deadline, in first-seen order."""

    def __init__(self) -> None:
        self.years: list[int] = []

    def note(self, year: int) -> None:
        if year not in self.years:
            self.years.append(year)

    def due(self, due_at: datetime) -> Due:
        return Due(
            due_at=due_at,
            provisional=bool(self.years),
            reasons=tuple(_uncovered_reason(y) for y in self.years),
        )


class WorkCalendar:
    """Which days are working days in mainland China, and deadline arithmetic on top of that."""

    def __init__(
        self,
        years: Mapping[int, tuple[Iterable[date], Iterable[date]]] | None = None,
        extra_holidays: Iterable[date] = (),
        extra_workdays: Iterable[date] = (),
    ) -> None:
        """years: whole years declared in config (holidays, make-up workdays) — e.g. 2027 once the
        State Council publishes it; a declared year counts as covered. extra_*: single-day corrections
        that win over everything else.

        A declared year replaces chinese-calendar's data for that year entirely (it is a whole-year
        declaration); in it, weekends are rest days unless listed as make-up workdays.
        Raises ValueError for a date listed as both holiday and workday, or outside its declared year.
        """
        self._declared_holidays: dict[int, frozenset[date]] = {}
        self._declared_workdays: dict[int, frozenset[date]] = {}
        for year, (holidays, workdays) in (years or {}).items():
            hol, work = frozenset(holidays), frozenset(workdays)
            stray = sorted(d for d in hol | work if d.year != year)
            if stray:
                raise ValueError(f"declared year {year} lists dates of another year: {stray}")
            both = sorted(hol & work)
            if both:
                raise ValueError(f"declared year {year} lists dates as both holiday and workday: {both}")
            self._declared_holidays[year] = hol
            self._declared_workdays[year] = work
        self._extra_holidays = frozenset(extra_holidays)
        self._extra_workdays = frozenset(extra_workdays)
        both = sorted(self._extra_holidays & self._extra_workdays)
        if both:
            raise ValueError(f"dates listed as both extra holiday and extra workday: {both}")
        # Warn once per uncovered year and calendar, not on every date looked at.
        self._warned_years: set[int] = set()

    # -- coverage ---------------------------------------------------------------------------------

    def covered_years(self) -> list[int]:
        """Years with official holiday data: chinese-calendar's years plus declared years, sorted."""
        return sorted(_package_years() | self._declared_holidays.keys())

    def covers(self, d: date) -> bool:
        """True when the year of ``d`` has official holiday data (package or declared)."""
        return d.year in self._declared_holidays or d.year in _package_years()

    def _warn_uncovered(self, year: int) -> None:
        if year not in self._warned_years:
            self._warned_years.add(year)
            logger.warning(
                "no official holiday data for %s; treating Monday-Friday as working days "
                "(declare the year in config.toml once the State Council notice is published)",
                year,
            )

    # -- day classification -----------------------------------------------------------------------

    def _classify(self, d: date, examined: _Examined | None) -> bool:
        """Workday or not; records ``d``'s year in ``examined`` when it has no official data."""
        if not self.covers(d):
            self._warn_uncovered(d.year)
            if examined is not None:
                examined.note(d.year)
        # Single-day corrections are checked first: they win over package and declared data.
        if d in self._extra_workdays:
            return True
        if d in self._extra_holidays:
            return False
        if d.year in self._declared_holidays:
            if d in self._declared_workdays[d.year]:
                return True
            return d.weekday() < 5 and d not in self._declared_holidays[d.year]
        if d.year in _package_years():
            try:
                return _package_is_workday(d)
            except NotImplementedError:
                # Coverage detection and the package disagree (should not happen); never raise here.
                self._warn_uncovered(d.year)
                if examined is not None:
                    examined.note(d.year)
        return d.weekday() < 5

    def is_workday(self, d: date) -> bool:
        """True for a working day; never raises (an uncovered year falls back to Monday-Friday)."""
        return self._classify(d, None)

    def is_rest_day(self, d: date) -> bool:
        """True for a weekend or holiday that is not a make-up working day."""
        return not self._classify(d, None)

    def _roll(self, d: date, examined: _Examined | None) -> date:
        """``d`` itself if it is a workday, else the next one; every day stepped is examined."""
        first = d
        for _ in range(_MAX_ROLL_DAYS):
            if self._classify(d, examined):
                return d
            d += timedelta(days=1)
        raise ValueError(f"no working day within {_MAX_ROLL_DAYS} days from {first}: check holiday config")

    def next_workday(self, d: date) -> date:
        """``d`` itself if it is a working day, otherwise the first working day after it."""
        return self._roll(d, None)

    def _workdays_between(self, start: date, end: date, examined: _Examined | None) -> int:
        count = 0
        d = start
        while d < end:
            d += timedelta(days=1)
            if self._classify(d, examined):
                count += 1
        return count

    def workdays_between(self, start: date, end: date) -> int:
        """Working days in (start, end]: the start day is not counted; 0 when end <= start."""
        return self._workdays_between(start, end, None)

    # -- deadlines --------------------------------------------------------------------------------

    def _add_days(self, start_day: date, amount: int, roll: bool, examined: _Examined) -> datetime:
        last = start_day + timedelta(days=amount)
        return self._finish_last_day(last, amount, roll, examined)

    def _finish_last_day(self, last: date, amount: int, roll: bool, examined: _Examined) -> datetime:
        if amount == 0:
            # A zero period ends with the start day itself; nothing to roll (and a zero pause is a no-op).
            return _end_of_day(last)
        if roll:
            last = self._roll(last, examined)
        else:
            self._classify(last, examined)  # still examined: the caller should know it is a guess
        return _end_of_day(last)

    def _add_workdays(self, start_day: date, amount: int, examined: _Examined) -> datetime:
        d = start_day
        counted = 0
        while counted < amount:
            d += timedelta(days=1)
            if self._classify(d, examined):
                counted += 1
        return _end_of_day(d)

    def add(self, start: datetime, amount: int, unit: Unit, *, roll_to_workday: bool = True) -> Due:
        """Deadline of a period of ``amount`` ``unit`` starting at ``start`` (start day/hour not counted).

        hours: exactly ``amount`` hours later. days: end of start date + amount, rolled to a working
        day if ``roll_to_workday``. workdays: end of the amount-th working day after the start date.
        months: end of the same day-of-month (or that month's last day), rolled like days.
        Raises ValueError for a naive ``start``, a negative ``amount`` or an unknown unit.
        """
        local = _require_aware(start, "start")
        if amount < 0:
            raise ValueError(f"amount must be >= 0, got {amount}")
        if unit not in UNITS:
            raise ValueError(f"unknown unit {unit!r}; expected one of {UNITS}")
        examined = _Examined()
        start_day = local.date()
        if unit == "hours":
            # Through UTC so the result is exact elapsed time whatever the zone's rules.
            return examined.due((local.astimezone(UTC) + timedelta(hours=amount)).astimezone(SHANGHAI))
        if unit == "days":
            return examined.due(self._add_days(start_day, amount, roll_to_workday, examined))
        if unit == "workdays":
            return examined.due(self._add_workdays(start_day, amount, examined))
        last = _add_months(start_day, amount)
        return examined.due(self._finish_last_day(last, amount, roll_to_workday, examined))

    def roll(self, due_at: datetime) -> Due:
        """A day-based end moved to the end of the next working day when its day is a rest day."""
        examined = _Examined()
        last = self._roll(_require_aware(due_at, "due_at").date(), examined)
        return examined.due(_end_of_day(last))

    def shift_for_pause(
        self,
        due_at: datetime,
        paused_at: datetime,
        resumed_at: datetime,
        unit: Unit,
        *,
        roll_to_workday: bool = True,
    ) -> Due:
        """Move ``due_at`` later by a pause, measured in the rule's ``unit``.

        hours: the exact paused duration is added. days and months: whole calendar days
        (resumed date - paused date, in Shanghai) are added as ``days`` from the due date, rolled.
        workdays: ``workdays_between(paused date, resumed date)`` working days are added from the due
        date. A pause that measures 0 in the unit leaves ``due_at`` unchanged (in Shanghai time).
        Raises ValueError for naive datetimes or ``resumed_at`` before ``paused_at``.
        """
        due_local = _require_aware(due_at, "due_at")
        paused = _require_aware(paused_at, "paused_at")
        resumed = _require_aware(resumed_at, "resumed_at")
        if resumed < paused:
            raise ValueError(f"resumed_at {resumed.isoformat()} is before paused_at {paused.isoformat()}")
        if unit not in UNITS:
            raise ValueError(f"unknown unit {unit!r}; expected one of {UNITS}")
        examined = _Examined()
        if unit == "hours":
            return examined.due((due_local.astimezone(UTC) + (resumed - paused)).astimezone(SHANGHAI))
        due_day = due_local.date()
        if unit == "workdays":
            n = self._workdays_between(paused.date(), resumed.date(), examined)
            if n == 0:
                return examined.due(due_local)
            return examined.due(self._add_workdays(due_day, n, examined))
        # days and months alike: a pause is measured in calendar days, not in months.
        n = (resumed.date() - paused.date()).days
        if n == 0:
            return examined.due(due_local)
        return examined.due(self._add_days(due_day, n, roll_to_workday, examined))


@lru_cache(maxsize=1 << 16)
def _package_is_workday(d: date) -> bool:
    """chinese-calendar's answer for one day, cached: the package checks its whole range on every call
    (the cost of a bulk import). Its data never changes in a process; a NotImplementedError is not cached."""
    return bool(chinese_calendar.is_workday(d))
