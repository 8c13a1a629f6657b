"""Meetings of the liaison mechanism and their action items (DOMAIN.md "Other machines").

A meeting is a regular joint meeting (联席会议, ``joint_meeting``) or a case consultation (案件会商,
``consultation``): ``planned`` → ``noticed`` → ``held`` → ``minutes_approved``; a planned, noticed or
already postponed meeting can be moved (``postponed``, everyone invited is told again) or ``cancelled``.
An action item (a resolution of a meeting) is ``open`` until ``done``; a missed due date escalates as a
recorded fact, not a state.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, Literal

from cronsim import CronSim, CronSimError
from dateutil.rrule import rrulestr
from pydantic import BaseModel, ConfigDict, Field, model_validator
from statemachine import State

from states.calendar import SHANGHAI
from states.lifecycle import StrictChart, chart_in

MEETING_KINDS: dict[str, tuple[str, str]] = {
    "joint_meeting": ("联席会议", "joint meeting"),
    "consultation": ("案件会商", "case consultation"),
}
CONSULTATION_TOPICS: dict[str, tuple[str, str]] = {
    "evidence_recognition": ("证据认定", "evidence recognition"),
    "legal_application": ("法律适用", "application of law"),
    "appraisal": ("技术鉴定", "technical appraisal"),
    "sentencing": ("量刑", "sentencing"),
    "jurisdiction": ("管辖", "jurisdiction"),
}
AGENDA_KINDS: dict[str, tuple[str, str]] = {
    "consultation": ("会商申请", "consultation request"),
    "supervised": ("挂牌督办案件", "case under listed supervision"),
    "deadline_missed": ("逾期期限", "missed deadline"),
    "deadline_due": ("临近期限", "deadline due soon"),
    "disputed_referral": ("移送分歧", "disputed referral"),
    "action_item": ("未完成议定事项", "open action item"),
    "statistics": ("工作统计", "statistics"),
}
#: Case states where the agencies disagree about a referral (declined, reconsideration, filing supervision).
DISPUTED_STATES: tuple[str, ...] = (
    "police_declined",
    "reconsideration",
    "reconsideration_upheld",
    "filing_supervision",
)


class MeetingChart(StrictChart):
    """会议: planned → noticed → held → minutes_approved; planned|noticed|postponed → postponed | cancelled."""

    planned = State("已安排", initial=True)
    noticed = State("已通知")
    postponed = State("已改期")
    held = State("已召开")
    minutes_approved = State("纪要已通过", final=True)
    cancelled = State("已取消", final=True)

    send_notice = planned.to(noticed)
    postpone = planned.to(postponed) | noticed.to(postponed) | postponed.to.itself(internal=True)
    cancel = planned.to(cancelled) | noticed.to(cancelled) | postponed.to(cancelled)
    hold = noticed.to(held) | postponed.to(held) | held.to.itself(internal=True)
    approve_minutes = held.to(minutes_approved)


class ActionItemChart(StrictChart):
    """议定事项: open → done."""

    open = State("未完成", initial=True)
    done = State("已完成", final=True)

    complete = open.to(done)


MEETING_STATE_LABELS: dict[str, str] = {state.id: state.name for state in MeetingChart.states}
ACTION_STATE_LABELS: dict[str, str] = {state.id: state.name for state in ActionItemChart.states}


def meeting_chart(state: str = "planned") -> MeetingChart:
    """A meeting chart standing in ``state`` (a bad stored value fails here)."""
    return chart_in(MeetingChart, state)


def action_chart(state: str = "open") -> ActionItemChart:
    """An action item chart standing in ``state``."""
    return chart_in(ActionItemChart, state)


# --- periods and schedules --------------------------------------------------------------------------

_PERIOD = re.compile(r"^(?P<year>\d{4})-(?:Q(?P<quarter>[1-4])|(?P<month>0[1-9]|1[0-2]))$")
#: Where an RRULE without its own DTSTART starts counting: the pilot's first day (2023-01-01, Beijing).
RRULE_ANCHOR = datetime(2023, 1, 1, tzinfo=SHANGHAI)


def period_bounds(key: str) -> tuple[datetime, datetime]:
    """``2026-Q4`` or ``2026-10`` → [start, end) in Asia/Shanghai; ValueError naming the expected form."""
    match = _PERIOD.match(key or "")
    if not match:
        raise ValueError(f"period {key!r} is neither a quarter (e.g. 2026-Q4) nor a month (e.g. 2026-10)")
    year = int(match["year"])
    if match["quarter"]:
        first, months = (int(match["quarter"]) - 1) * 3 + 1, 3
    else:
        first, months = int(match["month"]), 1
    start = datetime(year, first, 1, tzinfo=SHANGHAI)
    last = first + months
    end = datetime(year + (last > 12), (last - 1) % 12 + 1, 1, tzinfo=SHANGHAI)
    return start, end


def period_key(at: datetime, granularity: str) -> str:
    """The key of the quarter (``quarter``) or month (``month``) holding ``at`` in Beijing time."""
    local = at.astimezone(SHANGHAI)
    if granularity == "quarter":
        return f"{local.year}-Q{(local.month - 1) // 3 + 1}"
    return f"{local.year}-{local.month:02d}"


class MeetingSchedule(BaseModel):
    """``[[meetings.schedules]]``: a regular joint meeting, by RFC 5545 RRULE or cron, in Asia/Shanghai."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    title: str = Field(min_length=1)
    rrule: str = ""  # e.g. "FREQ=MONTHLY;BYMONTH=1,4,7,10;BYDAY=1TU;BYHOUR=9;BYMINUTE=30"
    cron: str = ""  # e.g. "30 9 * 1,4,7,10 2#1" (minute hour day month weekday; 2#1 = first Tuesday)
    period: Literal["quarter", "month"] = "quarter"  # one meeting per quarter or per month
    duration_minutes: int = Field(default=120, ge=15, le=24 * 60)
    notice_days: int = Field(default=7, ge=1, le=90)  # prepared and noticed this many days ahead
    place: str = ""
    video_link: str = ""
    convening_agency: str = Field(min_length=1)
    invited: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_rule(self) -> MeetingSchedule:
        if bool(self.rrule) == bool(self.cron):
            raise ValueError("give exactly one of rrule or cron")
        if self.rrule:
            try:
                self._rule()
            except (ValueError, TypeError) as err:
                raise ValueError(f"rrule {self.rrule!r} does not parse: {err}") from None
        else:
            try:
                CronSim(self.cron, RRULE_ANCHOR)
            except CronSimError as err:
                raise ValueError(f"cron {self.cron!r} does not parse: {err}") from None
        if not self.place and not self.video_link:
            raise ValueError("give a place or a video_link")
        return self

    def _rule(self) -> Any:
        rule = self.rrule.removeprefix("RRULE:")
        return rrulestr(rule, dtstart=RRULE_ANCHOR) if "DTSTART" not in rule else rrulestr(rule)

    def occurrences(self, start: datetime, end: datetime) -> list[datetime]:
        """The meeting times in [start, end), aware (Asia/Shanghai)."""
        start, end = start.astimezone(SHANGHAI), end.astimezone(SHANGHAI)
        if self.rrule:
            found = self._rule().between(start, end, inc=True)
            return [t.astimezone(SHANGHAI) for t in found if start <= t < end]
        times = []
        for t in CronSim(self.cron, start - timedelta(minutes=1)):
            if t >= end:
                break
            if t >= start:
                times.append(t)
        return times

    def next_after(self, at: datetime, horizon_days: int = 800) -> datetime | None:
        """The first meeting time after ``at`` (within ``horizon_days``)."""
        found = self.occurrences(at + timedelta(seconds=1), at + timedelta(days=horizon_days))
        return found[0] if found else None


class MeetingSettings(BaseModel):
    """``[meetings]``: the regular joint meetings and the defaults of consultations."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schedules: list[MeetingSchedule] = Field(default_factory=list)
    consultation_minutes: int = Field(default=90, ge=15, le=24 * 60)  # default length of a consultation
    action_item_days: int = Field(default=15, ge=1, le=365)  # default due date of a resolution, in days
    prepare_every_seconds: int = Field(default=3600, ge=5, le=86_400)  # how often the job looks

    def schedule(self, schedule_id: str) -> MeetingSchedule:
        """The schedule ``schedule_id``; KeyError naming the known ones."""
        for schedule in self.schedules:
            if schedule.id == schedule_id:
                return schedule
        raise KeyError(
            f"no meeting schedule {schedule_id!r}; known: {', '.join(s.id for s in self.schedules) or 'none'}"
        )
