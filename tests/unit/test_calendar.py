"""Tests for states.calendar: official 2025/2026 holiday data, deadline counting and uncovered years.

Holiday blocks and make-up working days are copied from DOMAIN-RULES §9 (State Council notices for
2025 and 2026); every expected deadline below is worked out by hand in a comment.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from states.calendar import SHANGHAI, Due, WorkCalendar

END = time(23, 59, 59)


def _span(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _sh(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=SHANGHAI)


def _eod(y: int, m: int, d: int) -> datetime:
    return datetime.combine(date(y, m, d), END, tzinfo=SHANGHAI)


# DOMAIN-RULES §9.1 (2025) and §9.2 (2026): every date inside a block is a day off.
HOLIDAY_BLOCKS_2025 = [
    (date(2025, 1, 1), date(2025, 1, 1)),
    (date(2025, 1, 28), date(2025, 2, 4)),
    (date(2025, 4, 4), date(2025, 4, 6)),
    (date(2025, 5, 1), date(2025, 5, 5)),
    (date(2025, 5, 31), date(2025, 6, 2)),
    (date(2025, 10, 1), date(2025, 10, 8)),
]
HOLIDAY_BLOCKS_2026 = [
    (date(2026, 1, 1), date(2026, 1, 3)),
    (date(2026, 2, 15), date(2026, 2, 23)),
    (date(2026, 4, 4), date(2026, 4, 6)),
    (date(2026, 5, 1), date(2026, 5, 5)),
    (date(2026, 6, 19), date(2026, 6, 21)),
    (date(2026, 9, 25), date(2026, 9, 27)),
    (date(2026, 10, 1), date(2026, 10, 7)),
]
DAYS_OFF_2025 = [d for first, last in HOLIDAY_BLOCKS_2025 for d in _span(first, last)]
DAYS_OFF_2026 = [d for first, last in HOLIDAY_BLOCKS_2026 for d in _span(first, last)]
MAKEUP_2025 = [date(2025, 1, 26), date(2025, 2, 8), date(2025, 4, 27), date(2025, 9, 28), date(2025, 10, 11)]
MAKEUP_2026 = [
    date(2026, 1, 4),
    date(2026, 2, 14),
    date(2026, 2, 28),
    date(2026, 5, 9),
    date(2026, 9, 20),
    date(2026, 10, 10),
]

# Ordinary days next to the holidays: plain weekdays work, plain weekends rest.
ORDINARY_WORKDAYS = [
    date(2025, 1, 2),  # Thu after New Year
    date(2025, 1, 27),  # Mon between the make-up Sunday and the Spring Festival eve
    date(2025, 2, 5),  # Wed, first day back after Spring Festival
    date(2025, 10, 9),  # Thu, first day back after National Day
    date(2025, 9, 29),  # Mon
    date(2026, 1, 5),  # Mon after the make-up Sunday
    date(2026, 2, 13),  # Fri before the Spring Festival block
    date(2026, 2, 24),  # Tue, first day back
    date(2026, 10, 8),  # Thu, first day back after National Day
]
ORDINARY_REST_DAYS = [
    date(2025, 1, 4),  # Sat
    date(2025, 2, 9),  # Sun after the make-up Saturday
    date(2025, 9, 27),  # Sat before the make-up Sunday
    date(2025, 10, 12),  # Sun after the make-up Saturday
    date(2026, 1, 10),  # Sat
    date(2026, 3, 1),  # Sun after the make-up Saturday
    date(2026, 9, 19),  # Sat before the make-up Sunday
    date(2026, 10, 11),  # Sun after the make-up Saturday
]


@pytest.fixture
def cal() -> WorkCalendar:
    return WorkCalendar()


# -- official data ------------------------------------------------------------------------------------


def test_table_totals_match_domain_rules() -> None:
    # DOMAIN-RULES §9: 2025 = 28 days off, 5 make-up days; 2026 = 33 days off, 6 make-up days.
    assert (len(DAYS_OFF_2025), len(MAKEUP_2025)) == (28, 5)
    assert (len(DAYS_OFF_2026), len(MAKEUP_2026)) == (33, 6)


@pytest.mark.parametrize("d", DAYS_OFF_2025 + DAYS_OFF_2026, ids=str)
def test_every_holiday_block_day_is_a_rest_day(cal: WorkCalendar, d: date) -> None:
    assert cal.is_rest_day(d)
    assert not cal.is_workday(d)


@pytest.mark.parametrize("d", MAKEUP_2025 + MAKEUP_2026, ids=str)
def test_every_makeup_day_is_a_workday(cal: WorkCalendar, d: date) -> None:
    assert d.weekday() >= 5  # really a weekend day
    assert cal.is_workday(d)
    assert not cal.is_rest_day(d)


@pytest.mark.parametrize("d", ORDINARY_WORKDAYS, ids=str)
def test_ordinary_weekdays_are_workdays(cal: WorkCalendar, d: date) -> None:
    assert d.weekday() < 5
    assert cal.is_workday(d)


@pytest.mark.parametrize("d", ORDINARY_REST_DAYS, ids=str)
def test_ordinary_weekends_are_rest_days(cal: WorkCalendar, d: date) -> None:
    assert d.weekday() >= 5
    assert cal.is_rest_day(d)


@pytest.mark.parametrize("year", [2025, 2026])
def test_tables_are_the_whole_year(cal: WorkCalendar, year: int) -> None:
    # Every day of the year, not only the listed ones: a weekday works unless it is in a holiday block,
    # a weekend day rests unless it is a make-up day. So the tables above are complete, and nothing
    # else in 2025/2026 is a holiday or a make-up day.
    days_off, makeup = set(DAYS_OFF_2025 + DAYS_OFF_2026), set(MAKEUP_2025 + MAKEUP_2026)
    wrong = [
        d
        for d in _span(date(year, 1, 1), date(year, 12, 31))
        if cal.is_workday(d) != (d in makeup or (d.weekday() < 5 and d not in days_off))
    ]
    assert wrong == []


def _at(d: date, hour: int) -> datetime:
    return datetime.combine(d, time(hour), tzinfo=SHANGHAI)


def _end_of(d: date) -> datetime:
    return datetime.combine(d, END, tzinfo=SHANGHAI)


@pytest.mark.parametrize("d", MAKEUP_2025 + MAKEUP_2026, ids=str)
def test_every_makeup_day_counts_as_a_working_day(cal: WorkCalendar, d: date) -> None:
    # One working day from the day before a make-up day is the make-up day itself (never skipped),
    # and a period of days ending on it does not roll.
    day_before = d - timedelta(days=1)
    assert cal.add(_at(day_before, 9), 1, "workdays") == Due(_end_of(d), False, ())
    assert cal.add(_at(day_before, 9), 1, "days") == Due(_end_of(d), False, ())


# Spring Festival and National Day of 2025 and 2026: (first and last day off, last working day
# before, first working day after). In 2026 the make-up Saturday Feb 14 is the last one before.
GOLDEN_WEEKS = {
    "spring-festival-2025": ((date(2025, 1, 28), date(2025, 2, 4)), date(2025, 1, 27), date(2025, 2, 5)),
    "national-day-2025": ((date(2025, 10, 1), date(2025, 10, 8)), date(2025, 9, 30), date(2025, 10, 9)),
    "spring-festival-2026": ((date(2026, 2, 15), date(2026, 2, 23)), date(2026, 2, 14), date(2026, 2, 24)),
    "national-day-2026": ((date(2026, 10, 1), date(2026, 10, 7)), date(2026, 9, 30), date(2026, 10, 8)),
}
_GOLDEN_WEEK_DAYS = [
    pytest.param(d, back, id=f"{name}-{d}")
    for name, ((first, last), _before, back) in GOLDEN_WEEKS.items()
    for d in _span(first, last)
]


@pytest.mark.parametrize(("d", "back"), _GOLDEN_WEEK_DAYS)
def test_days_ending_in_a_golden_week_roll_to_the_first_day_back(cal: WorkCalendar, d: date, back: date) -> None:
    start = d - timedelta(days=3)
    assert cal.add(_at(start, 10), 3, "days") == Due(_end_of(back), False, ())
    assert cal.add(_at(start, 10), 3, "days", roll_to_workday=False).due_at == _end_of(d)


@pytest.mark.parametrize(("block", "before", "back"), list(GOLDEN_WEEKS.values()), ids=list(GOLDEN_WEEKS))
def test_one_workday_jumps_a_golden_week(cal: WorkCalendar, block: tuple[date, date], before: date, back: date) -> None:
    first, last = block
    assert cal.is_workday(before) and cal.is_workday(back)
    assert all(cal.is_rest_day(x) for x in _span(before + timedelta(days=1), back - timedelta(days=1)))
    assert cal.add(_at(before, 17), 1, "workdays") == Due(_end_of(back), False, ())
    assert cal.workdays_between(before, last) == 0
    assert cal.next_workday(first) == back


def test_coverage_comes_from_the_package(cal: WorkCalendar) -> None:
    years = cal.covered_years()
    assert years == sorted(years)
    assert {2024, 2025, 2026} <= set(years)
    assert 2027 not in years
    assert cal.covers(date(2026, 12, 31))
    assert not cal.covers(date(2027, 1, 5))


def test_next_workday(cal: WorkCalendar) -> None:
    assert cal.next_workday(date(2026, 2, 24)) == date(2026, 2, 24)  # already a workday
    assert cal.next_workday(date(2026, 2, 15)) == date(2026, 2, 24)  # Spring Festival block
    assert cal.next_workday(date(2025, 10, 1)) == date(2025, 10, 9)  # National Day block
    assert cal.next_workday(date(2026, 2, 28)) == date(2026, 2, 28)  # make-up Saturday


def test_workdays_between(cal: WorkCalendar) -> None:
    # (Feb 13, Feb 27] 2026: Feb 14 (make-up), Feb 24, 25, 26, 27 -> 5.
    assert cal.workdays_between(date(2026, 2, 13), date(2026, 2, 27)) == 5
    # (Sep 30, Oct 8] 2025: all holidays -> 0.
    assert cal.workdays_between(date(2025, 9, 30), date(2025, 10, 8)) == 0
    assert cal.workdays_between(date(2026, 3, 2), date(2026, 3, 2)) == 0
    assert cal.workdays_between(date(2026, 3, 5), date(2026, 3, 2)) == 0


# -- add: workdays ------------------------------------------------------------------------------------


def test_workdays_across_spring_festival_2026(cal: WorkCalendar) -> None:
    # Start Fri Feb 13, 5 working days: Feb 14 make-up Sat (1); Feb 15-23 off; Feb 24 (2), 25 (3),
    # 26 (4), 27 (5).
    due = cal.add(_sh(2026, 2, 13, 10), 5, "workdays")
    assert due == Due(_eod(2026, 2, 27), False, ())


def test_fifteen_workdays_across_spring_festival_2026(cal: WorkCalendar) -> None:
    # A1-style 15 working days from Tue Feb 10: Feb 11 (1), 12 (2), 13 (3), 14 make-up (4); Feb 15-23
    # off; Feb 24 (5), 25 (6), 26 (7), 27 (8), 28 make-up Sat (9); Mar 1 Sun off; Mar 2 (10), 3 (11),
    # 4 (12), 5 (13), 6 (14); Mar 7-8 weekend; Mar 9 (15).
    assert cal.add(_sh(2026, 2, 10, 9), 15, "workdays").due_at == _eod(2026, 3, 9)


def test_workdays_across_national_day_2025(cal: WorkCalendar) -> None:
    # Start Mon Sep 29, 5 working days: Sep 30 (1); Oct 1-8 off; Oct 9 (2), 10 (3), 11 make-up Sat (4);
    # Oct 12 Sun off; Oct 13 (5).
    assert cal.add(_sh(2025, 9, 29, 15), 5, "workdays").due_at == _eod(2025, 10, 13)
    # A7-style 5 working days from Fri Sep 26: Sep 27 Sat off; Sep 28 make-up Sun (1); Sep 29 (2),
    # 30 (3); Oct 1-8 off; Oct 9 (4), 10 (5).
    assert cal.add(_sh(2025, 9, 26, 11), 5, "workdays").due_at == _eod(2025, 10, 10)


def test_start_is_converted_to_shanghai_before_taking_the_date(cal: WorkCalendar) -> None:
    # 2026-02-13 20:00 UTC is Sat 2026-02-14 04:00 in Shanghai (a make-up workday, not counted as the
    # start day). 1 working day after Feb 14 is Feb 24 (Feb 15-23 off). Using the UTC date (Feb 13)
    # would wrongly give Feb 14.
    due = cal.add(datetime(2026, 2, 13, 20, tzinfo=UTC), 1, "workdays")
    assert due.due_at == _eod(2026, 2, 24)
    assert due.due_at.tzinfo == SHANGHAI


# -- add: days -----------------------------------------------------------------------------------------


def test_days_ending_on_holiday_roll_to_next_workday(cal: WorkCalendar) -> None:
    # Mon 2026-09-28 + 3 days = Thu Oct 1 (National Day); Oct 1-7 off -> Thu Oct 8.
    assert cal.add(_sh(2026, 9, 28, 16), 3, "days").due_at == _eod(2026, 10, 8)
    # Sat 2025-01-25 + 3 days = Tue Jan 28 (Spring Festival eve); Jan 28-Feb 4 off -> Wed Feb 5.
    assert cal.add(_sh(2025, 1, 25, 8), 3, "days").due_at == _eod(2025, 2, 5)
    # Wed 2025-01-01 + 3 days = Sat Jan 4 (plain weekend) -> Mon Jan 6.
    assert cal.add(_sh(2025, 1, 1, 12), 3, "days").due_at == _eod(2025, 1, 6)


def test_days_without_rolling_stay_on_the_holiday(cal: WorkCalendar) -> None:
    due = cal.add(_sh(2026, 9, 28, 16), 3, "days", roll_to_workday=False)
    assert due.due_at == _eod(2026, 10, 1)
    assert not due.provisional


def test_days_ending_on_makeup_saturday_do_not_roll(cal: WorkCalendar) -> None:
    # Wed 2026-02-25 + 3 days = Sat Feb 28, a make-up working day: the period ends there.
    assert cal.add(_sh(2026, 2, 25, 10), 3, "days").due_at == _eod(2026, 2, 28)


def test_days_ending_on_workday_and_end_of_day_precision(cal: WorkCalendar) -> None:
    # Mon 2026-03-02 + 7 days = Mon Mar 9 (workday). Microseconds of the start never leak through.
    due = cal.add(datetime(2026, 3, 2, 13, 45, 12, 987654, tzinfo=SHANGHAI), 7, "days")
    assert due.due_at == _eod(2026, 3, 9)
    assert due.due_at.microsecond == 0


def test_zero_days_and_zero_workdays_end_with_the_start_day(cal: WorkCalendar) -> None:
    # Even on a holiday (Oct 1 2026): a zero period is the end of the start day itself.
    start = _sh(2026, 10, 1, 9)
    assert cal.add(start, 0, "days").due_at == _eod(2026, 10, 1)
    assert cal.add(start, 0, "workdays").due_at == _eod(2026, 10, 1)
    assert cal.add(start, 0, "months").due_at == _eod(2026, 10, 1)
    assert cal.add(start, 0, "hours").due_at == start


# -- add: months ---------------------------------------------------------------------------------------


def test_months_end_of_month_cases(cal: WorkCalendar) -> None:
    # Jan 31 2026 + 1 month: February has no 31st -> Feb 28, a make-up Saturday, so no roll.
    assert cal.add(_sh(2026, 1, 31, 10), 1, "months").due_at == _eod(2026, 2, 28)
    # Jan 31 2024 (leap year) + 1 month -> Thu Feb 29 2024, an ordinary workday.
    assert cal.add(_sh(2024, 1, 31, 10), 1, "months").due_at == _eod(2024, 2, 29)
    # Aug 31 2025 + 1 month -> Sep 30 2025 (Tue, workday).
    assert cal.add(_sh(2025, 8, 31, 10), 1, "months").due_at == _eod(2025, 9, 30)
    # Nov 30 2025 + 3 months -> Feb 28 2026 (across the year end; make-up Saturday).
    assert cal.add(_sh(2025, 11, 30, 10), 3, "months").due_at == _eod(2026, 2, 28)
    # Same day-of-month: Dec 15 2025 + 1 month -> Thu Jan 15 2026.
    assert cal.add(_sh(2025, 12, 15, 10), 1, "months").due_at == _eod(2026, 1, 15)


def test_months_roll_like_days(cal: WorkCalendar) -> None:
    # Mar 31 2025 + 2 months -> May 31 2025 has 31 days -> Sat May 31, Dragon Boat (May 31-Jun 2 off)
    # -> Tue Jun 3. Without rolling it stays on May 31.
    assert cal.add(_sh(2025, 3, 31, 10), 2, "months").due_at == _eod(2025, 6, 3)
    assert cal.add(_sh(2025, 3, 31, 10), 2, "months", roll_to_workday=False).due_at == _eod(2025, 5, 31)


# -- add: hours ----------------------------------------------------------------------------------------


def test_hours_are_exact_across_midnight_and_holidays(cal: WorkCalendar) -> None:
    # 24 hours from Sat 2026-02-14 20:00 end Sun Feb 15 20:00 (a holiday: hours never roll).
    due = cal.add(_sh(2026, 2, 14, 20), 24, "hours")
    assert due == Due(_sh(2026, 2, 15, 20), False, ())
    # 2025-12-31 18:30 UTC = 2026-01-01 02:30 Shanghai; +24 h = 2026-01-02 02:30 Shanghai.
    due = cal.add(datetime(2025, 12, 31, 18, 30, tzinfo=UTC), 24, "hours")
    assert due.due_at == _sh(2026, 1, 2, 2, 30)
    assert due.due_at.utcoffset() == timedelta(hours=8)
    # Odd offsets work too: 23:10 at UTC-05:00 is 12:10 next day in Shanghai; +3 h = 15:10.
    due = cal.add(datetime(2026, 3, 2, 23, 10, tzinfo=timezone(timedelta(hours=-5))), 3, "hours")
    assert due.due_at == _sh(2026, 3, 3, 15, 10)


# -- add: errors ---------------------------------------------------------------------------------------


def test_naive_start_is_refused(cal: WorkCalendar) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.add(datetime(2026, 3, 2, 10), 3, "days")


def test_negative_amount_is_refused(cal: WorkCalendar) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        cal.add(_sh(2026, 3, 2), -1, "days")


def test_unknown_unit_is_refused(cal: WorkCalendar) -> None:
    with pytest.raises(ValueError, match="unknown unit"):
        cal.add(_sh(2026, 3, 2), 1, "weeks")  # type: ignore[arg-type]


# -- years without data --------------------------------------------------------------------------------


def test_2027_is_provisional_and_never_raises(cal: WorkCalendar) -> None:
    assert not cal.covers(date(2027, 1, 5))
    assert cal.is_workday(date(2027, 1, 5))  # Tue: Mon-Fri fallback, no NotImplementedError
    assert cal.is_rest_day(date(2027, 1, 2))  # Sat
    # From Mon 2026-12-28, 10 working days: Dec 29 (1), 30 (2), 31 (3); 2027 has no data, so Fri
    # Jan 1 counts (4); Jan 4 (5) .. Jan 8 (9); Mon Jan 11 (10).
    due = cal.add(_sh(2026, 12, 28, 10), 10, "workdays")
    assert due.due_at == _eod(2027, 1, 11)
    assert due.provisional
    assert len(due.reasons) == 1
    assert "2027" in due.reasons[0]


def test_days_landing_in_2027_are_provisional(cal: WorkCalendar) -> None:
    # Wed 2026-12-30 + 5 days = Mon Jan 4 2027 (weekday under the fallback).
    due = cal.add(_sh(2026, 12, 30, 10), 5, "days")
    assert due.due_at == _eod(2027, 1, 4)
    assert due.provisional
    assert due.reasons == ("no official holiday data for 2027; weekends assumed",)
    # Months too: Dec 5 2026 + 1 month = Tue Jan 5 2027.
    assert cal.add(_sh(2026, 12, 5), 1, "months").provisional


def test_hours_into_2027_examine_no_date_and_are_not_provisional(cal: WorkCalendar) -> None:
    due = cal.add(_sh(2026, 12, 31, 12), 24, "hours")
    assert due.due_at == _sh(2027, 1, 1, 12)
    assert not due.provisional


def test_covered_computation_is_not_provisional(cal: WorkCalendar) -> None:
    due = cal.add(_sh(2026, 12, 1), 10, "workdays")
    assert not due.provisional
    assert due.reasons == ()


def test_uncovered_year_warns_once(cal: WorkCalendar, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="states.calendar"):
        cal.add(_sh(2026, 12, 28), 10, "workdays")
        cal.add(_sh(2026, 12, 30), 5, "days")
        cal.is_workday(date(2027, 6, 1))
    messages = [r.getMessage() for r in caplog.records if r.name == "states.calendar"]
    assert len(messages) == 1
    assert "2027" in messages[0]


def test_declaring_2027_makes_it_covered() -> None:
    cal = WorkCalendar(years={2027: ([date(2027, 1, 1)], [])})
    assert cal.covers(date(2027, 1, 5))
    assert 2027 in cal.covered_years()
    assert cal.is_rest_day(date(2027, 1, 1))
    assert cal.is_workday(date(2027, 1, 4))
    assert cal.is_rest_day(date(2027, 1, 9))  # undeclared Saturday stays a weekend
    # Same start as the provisional case, but Jan 1 is now off: Dec 29, 30, 31 (3), Jan 4..8 (8),
    # Jan 11 (9), Jan 12 (10).
    due = cal.add(_sh(2026, 12, 28, 10), 10, "workdays")
    assert due == Due(_eod(2027, 1, 12), False, ())


def test_declared_makeup_workday() -> None:
    cal = WorkCalendar(years={2027: ([date(2027, 2, 8)], [date(2027, 2, 6)])})
    assert cal.is_workday(date(2027, 2, 6))  # a declared make-up Saturday
    assert cal.is_rest_day(date(2027, 2, 8))


def test_declared_year_replaces_package_data() -> None:
    # A whole-year declaration is authoritative: declaring 2026 with no holidays makes Oct 1 work.
    cal = WorkCalendar(years={2026: ([], [])})
    assert cal.is_workday(date(2026, 10, 1))
    assert cal.is_rest_day(date(2026, 2, 14))  # no longer a make-up day: a plain Saturday


def test_bad_declarations_are_refused() -> None:
    with pytest.raises(ValueError, match="another year"):
        WorkCalendar(years={2027: ([date(2026, 1, 1)], [])})
    with pytest.raises(ValueError, match="both holiday and workday"):
        WorkCalendar(years={2027: ([date(2027, 1, 1)], [date(2027, 1, 1)])})
    with pytest.raises(ValueError, match="both extra holiday and extra workday"):
        WorkCalendar(extra_holidays=[date(2026, 3, 2)], extra_workdays=[date(2026, 3, 2)])


# -- single-day corrections ----------------------------------------------------------------------------


def test_extra_holiday_wins_over_package() -> None:
    cal = WorkCalendar(extra_holidays=[date(2026, 3, 10)])
    assert cal.is_rest_day(date(2026, 3, 10))  # an ordinary Tuesday
    # From Mon Mar 9, 1 working day: Mar 10 is now off -> Wed Mar 11.
    assert cal.add(_sh(2026, 3, 9), 1, "workdays").due_at == _eod(2026, 3, 11)


def test_extra_workday_wins_over_package() -> None:
    cal = WorkCalendar(extra_workdays=[date(2026, 10, 3)])
    assert cal.is_workday(date(2026, 10, 3))  # inside the National Day block
    # Mon 2026-09-28 + 3 days = Oct 1 (off), Oct 2 (off), Oct 3 (corrected to work) -> Oct 3.
    assert cal.add(_sh(2026, 9, 28), 3, "days").due_at == _eod(2026, 10, 3)


def test_extra_corrections_win_over_declared_year() -> None:
    cal = WorkCalendar(
        years={2027: ([date(2027, 1, 1)], [date(2027, 2, 6)])},
        extra_holidays=[date(2027, 2, 6)],
        extra_workdays=[date(2027, 1, 1)],
    )
    assert cal.is_rest_day(date(2027, 2, 6))
    assert cal.is_workday(date(2027, 1, 1))


def test_extra_correction_in_uncovered_year_applies_but_year_stays_uncovered() -> None:
    cal = WorkCalendar(extra_holidays=[date(2027, 1, 1)])
    assert cal.is_rest_day(date(2027, 1, 1))
    assert not cal.covers(date(2027, 1, 1))
    assert cal.add(_sh(2026, 12, 31), 1, "workdays").provisional


# -- shift_for_pause -----------------------------------------------------------------------------------


def test_shift_hours_adds_the_exact_pause(cal: WorkCalendar) -> None:
    due = cal.shift_for_pause(_sh(2026, 2, 14, 20), _sh(2026, 2, 14, 9), _sh(2026, 2, 14, 12, 30), "hours")
    assert due == Due(_sh(2026, 2, 14, 23, 30), False, ())
    # Pause given in UTC: 01:00-05:00 UTC is 4 hours wherever it is shown.
    due = cal.shift_for_pause(
        _sh(2026, 3, 2, 22),
        datetime(2026, 3, 2, 1, tzinfo=UTC),
        datetime(2026, 3, 2, 5, tzinfo=UTC),
        "hours",
    )
    assert due.due_at == _sh(2026, 3, 3, 2)


def test_shift_days_adds_calendar_days_and_rolls(cal: WorkCalendar) -> None:
    # Pause Sep 20 -> Sep 23 2026 = 3 calendar days; due Mon Sep 28 + 3 = Thu Oct 1 (off) -> Oct 8.
    args = (_eod(2026, 9, 28), _sh(2026, 9, 20, 10), _sh(2026, 9, 23, 9))
    assert cal.shift_for_pause(*args, "days").due_at == _eod(2026, 10, 8)
    assert cal.shift_for_pause(*args, "days", roll_to_workday=False).due_at == _eod(2026, 10, 1)


def test_shift_days_counts_dates_not_hours(cal: WorkCalendar) -> None:
    # 23:00 -> 01:00 spans midnight: resumed date - paused date = 1 day. Due Mon Mar 2 + 1 = Tue Mar 3.
    due = cal.shift_for_pause(_eod(2026, 3, 2), _sh(2026, 2, 26, 23), _sh(2026, 2, 27, 1), "days")
    assert due.due_at == _eod(2026, 3, 3)
    # A pause within one day measures 0 days: due unchanged.
    due = cal.shift_for_pause(_eod(2026, 3, 2), _sh(2026, 2, 26, 9), _sh(2026, 2, 26, 17), "days")
    assert due.due_at == _eod(2026, 3, 2)


def test_shift_months_uses_calendar_days(cal: WorkCalendar) -> None:
    # Pause Mar 1 -> Mar 11 2026 = 10 days; due Mon Mar 16 + 10 = Thu Mar 26 (workday).
    due = cal.shift_for_pause(_eod(2026, 3, 16), _sh(2026, 3, 1), _sh(2026, 3, 11), "months")
    assert due.due_at == _eod(2026, 3, 26)


def test_shift_workdays(cal: WorkCalendar) -> None:
    # Paused Mon Feb 9 -> Thu Feb 12 2026: working days in (Feb 9, Feb 12] = Feb 10, 11, 12 = 3.
    # Due Fri Feb 13 + 3 working days: Feb 14 make-up (1); Feb 15-23 off; Feb 24 (2), 25 (3).
    due = cal.shift_for_pause(_eod(2026, 2, 13), _sh(2026, 2, 9, 10), _sh(2026, 2, 12, 16), "workdays")
    assert due.due_at == _eod(2026, 2, 25)
    # Paused Fri Mar 6 18:00 -> Sun Mar 8: no working day in (Mar 6, Mar 8] -> unchanged.
    due = cal.shift_for_pause(_eod(2026, 3, 13), _sh(2026, 3, 6, 18), _sh(2026, 3, 8, 20), "workdays")
    assert due.due_at == _eod(2026, 3, 13)


def test_shift_propagates_provisional(cal: WorkCalendar) -> None:
    # Due Wed Dec 30 2026, paused 10 days -> Sat Jan 9 2027 -> fallback weekend -> Mon Jan 11 2027.
    due = cal.shift_for_pause(_eod(2026, 12, 30), _sh(2026, 6, 1), _sh(2026, 6, 11), "days")
    assert due.due_at == _eod(2027, 1, 11)
    assert due.provisional
    assert "2027" in due.reasons[0]


def test_shift_refuses_bad_input(cal: WorkCalendar) -> None:
    with pytest.raises(ValueError, match="before paused_at"):
        cal.shift_for_pause(_eod(2026, 3, 2), _sh(2026, 3, 2), _sh(2026, 3, 1), "days")
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.shift_for_pause(datetime(2026, 3, 2), _sh(2026, 3, 1), _sh(2026, 3, 2), "days")


# -- properties ----------------------------------------------------------------------------------------

# Up to 40 working days (~8 weeks plus a holiday block) from Oct 31 2026 still ends in 2026, so every
# result stays inside covered data.
_starts = st.dates(min_value=date(2025, 1, 1), max_value=date(2026, 10, 31))
_times = st.times()
_CAL = WorkCalendar()  # module-level: hypothesis forbids function-scoped fixtures in @given tests


@settings(max_examples=200, deadline=None)
@given(start_day=_starts, at=_times, n=st.integers(min_value=0, max_value=40))
def test_workdays_property(start_day: date, at: time, n: int) -> None:
    due = _CAL.add(datetime.combine(start_day, at, tzinfo=SHANGHAI), n, "workdays")
    end_day = due.due_at.date()
    assert due.due_at.timetz() == END.replace(tzinfo=SHANGHAI)
    assert end_day.year <= 2026
    assert not due.provisional
    if n > 0:
        assert _CAL.is_workday(end_day)
    assert _CAL.workdays_between(start_day, end_day) == n


@settings(max_examples=200, deadline=None)
@given(start_day=_starts, n=st.integers(min_value=1, max_value=40))
def test_days_property(start_day: date, n: int) -> None:
    due = _CAL.add(datetime.combine(start_day, time(12), tzinfo=SHANGHAI), n, "days")
    end_day = due.due_at.date()
    last = start_day + timedelta(days=n)
    # Lands on the first working day on or after the nominal last day.
    assert end_day >= last
    assert _CAL.is_workday(end_day)
    assert all(_CAL.is_rest_day(d) for d in _span(last, end_day - timedelta(days=1)))
