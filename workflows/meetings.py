"""The liaison mechanism: case consultations (案件会商), regular joint meetings (定期联席) and their resolutions.

A handler requests a consultation on a case; a secretary schedules one meeting for one or more requests
and everyone concerned is invited (notice + iCalendar). Regular joint meetings follow the schedules of
config.toml: ``prepare_meeting`` creates the meeting of a period once (a unique index on schedule and
period makes a second run harmless), builds its agenda from the case record (open consultation requests,
cases under listed supervision, missed and soon-due deadlines, disputed referrals, open action items,
statistics since the last meeting) and notices every invited liaison officer. Meetings move or are
cancelled with everyone told again; attendance makes a meeting held; its minutes turn resolutions into
action items, written back to each case's history, and overdue action items escalate in the sweep.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from statemachine.exceptions import TransitionNotAllowed

from models.db import is_sqlite
from models.tables import (
    ActionItem,
    Agency,
    AgendaItem,
    Case,
    CaseEvent,
    ConsultationRequest,
    Deadline,
    Meeting,
    Officer,
    Supervision,
)
from notifications.ics import Invitee, meeting_ics
from states.calendar import SHANGHAI
from states.errors import InvalidInput, MeetingNotFound, PermissionDenied
from states.lifecycle import CLOSED, state_label
from states.meeting import (
    ACTION_STATE_LABELS,
    AGENDA_KINDS,
    CONSULTATION_TOPICS,
    DISPUTED_STATES,
    MEETING_KINDS,
    MEETING_STATE_LABELS,
    MeetingSchedule,
    action_chart,
    meeting_chart,
    period_bounds,
    period_key,
)
from workflows.cases import _covers, _is_participant, _visible_case
from workflows.clockwork import SYSTEM_ACTOR, Directory, enqueue, holders, local_iso, record_fact
from workflows.uow import Deps, OfficerRow, UnitOfWork

log = logging.getLogger(__name__)

NOTICE_ACTIONS: dict[str, tuple[str, str]] = {
    "notice": ("会议通知", "meeting notice"),
    "moved": ("会议改期", "meeting moved"),
    "cancelled": ("会议取消", "meeting cancelled"),
    "minutes": ("会议纪要及议定事项", "minutes and resolutions"),
}
#: How far ahead the agenda looks for deadlines coming due, counted from the meeting.
SOON_DUE = timedelta(days=14)


# --- views ------------------------------------------------------------------------------------------


@dataclass
class ConsultationView:
    """A consultation request as users see it."""

    id: int
    case_no: str
    case_title: str
    topic: str
    topic_label: str
    question: str
    requested_by: str
    agency: str
    requested_at: str
    state: str
    meeting_id: int | None
    resolution: str
    resolved_at: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass
class ActionItemView:
    """An action item (a meeting's resolution) as users see it."""

    id: int
    meeting_id: int
    case_no: str | None
    text: str
    owner_agency: str
    due_at: str
    state: str
    state_label: str
    overdue: bool
    escalations: int
    done_at: str
    done_by: str
    done_note: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass
class MeetingView:
    """A meeting with its agenda, attendance, requests and resolutions."""

    id: int
    kind: str
    kind_label: str
    title: str
    schedule_id: str
    period_key: str
    state: str
    state_label: str
    starts_at: str
    ends_at: str
    place: str
    video_link: str
    convening_agency: str
    invited: list[str]
    attendance: dict[str, list[str]]
    minutes: str
    sequence: int
    uid: str
    agenda: list[dict[str, Any]] = field(default_factory=list)
    consultations: list[dict[str, Any]] = field(default_factory=list)
    action_items: list[dict[str, Any]] = field(default_factory=list)
    created: bool = False  # this call created it (prepare)
    ics: str = field(default="", repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (without the .ics text)."""
        out = asdict(self)
        out.pop("ics")
        return out


def _consultation_view(row: ConsultationRequest, case: Case) -> ConsultationView:
    return ConsultationView(
        id=row.id or 0,
        case_no=case.case_no,
        case_title=case.title,
        topic=row.topic,
        topic_label=CONSULTATION_TOPICS[row.topic][0],
        question=row.question,
        requested_by=row.requested_by,
        agency=row.agency_code,
        requested_at=local_iso(row.requested_at),
        state=row.state,
        meeting_id=row.meeting_id,
        resolution=row.resolution,
        resolved_at=local_iso(row.resolved_at),
    )


def _action_view(row: ActionItem, case_no: str | None, now: datetime) -> ActionItemView:
    return ActionItemView(
        id=row.id or 0,
        meeting_id=row.meeting_id,
        case_no=case_no,
        text=row.text,
        owner_agency=row.owner_agency,
        due_at=local_iso(row.due_at),
        state=row.state,
        state_label=ACTION_STATE_LABELS[row.state],
        overdue=row.state == "open" and now > row.due_at,
        escalations=row.escalations,
        done_at=local_iso(row.done_at),
        done_by=row.done_by,
        done_note=row.done_note,
    )


def _case_numbers(uow: UnitOfWork, ids: set[int | None]) -> dict[int, str]:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    rows = uow.session.execute(select(Case.id, Case.case_no).where(Case.id.in_(wanted))).all()  # type: ignore[union-attr]
    return {i: no for i, no in rows}


def _meeting_view(
    deps: Deps, uow: UnitOfWork, meeting: Meeting, *, created: bool = False, with_ics: bool = True
) -> MeetingView:
    """The meeting as users see it, with its invitation unless ``with_ics`` is off (lists do not show it)."""
    agenda = list(
        uow.session.execute(
            select(AgendaItem).where(AgendaItem.meeting_id == meeting.id).order_by(AgendaItem.position)
        ).scalars()
    )
    requests = list(
        uow.session.execute(
            select(ConsultationRequest, Case)
            .join(Case, Case.id == ConsultationRequest.case_id)
            .where(ConsultationRequest.meeting_id == meeting.id)
            .order_by(ConsultationRequest.id)
        ).all()
    )
    actions = list(
        uow.session.execute(
            select(ActionItem).where(ActionItem.meeting_id == meeting.id).order_by(ActionItem.id)
        ).scalars()
    )
    numbers = _case_numbers(uow, {a.case_id for a in agenda} | {a.case_id for a in actions})
    now = deps.now()
    return MeetingView(
        id=meeting.id or 0,
        kind=meeting.kind,
        kind_label=MEETING_KINDS[meeting.kind][0],
        title=meeting.title,
        schedule_id=meeting.schedule_id,
        period_key=meeting.period_key,
        state=meeting.state,
        state_label=MEETING_STATE_LABELS[meeting.state],
        starts_at=local_iso(meeting.starts_at),
        ends_at=local_iso(meeting.ends_at),
        place=meeting.place,
        video_link=meeting.video_link,
        convening_agency=meeting.convening_agency,
        invited=list(meeting.invited),
        attendance=dict(meeting.attendance),
        minutes=meeting.minutes,
        sequence=meeting.sequence,
        uid=meeting.uid,
        agenda=[
            {
                "position": a.position,
                "kind": a.kind,
                "kind_label": AGENDA_KINDS[a.kind][0],
                "title": a.title,
                "case_no": numbers.get(a.case_id) if a.case_id else None,
                "detail": a.detail,
            }
            for a in agenda
        ],
        consultations=[_consultation_view(r, c).to_dict() for r, c in requests],
        action_items=[_action_view(a, numbers.get(a.case_id) if a.case_id else None, now).to_dict() for a in actions],
        created=created,
        ics=_ics(deps, uow, meeting, agenda, numbers) if with_ics else "",
    )


# --- helpers ----------------------------------------------------------------------------------------


def _secretary(uow: UnitOfWork, actor: str) -> OfficerRow:
    officer = uow.officer(actor)
    if not {"secretary", "admin"} & set(officer.roles):
        raise PermissionDenied(f"{actor} is not a joint-meeting secretary (role secretary); meetings are theirs")
    return officer


def _move(meeting: Meeting, event: str, what: str) -> None:
    chart = meeting_chart(meeting.state)
    try:
        chart.send(event)
    except TransitionNotAllowed:
        allowed = [e.id for e in chart.allowed_events]
        raise InvalidInput(
            f"meeting #{meeting.id} is {meeting.state} ({MEETING_STATE_LABELS[meeting.state]}); it cannot be "
            f"{what} now (possible: {', '.join(allowed) or 'nothing, it is over'})"
        ) from None
    meeting.state = str(chart.current_state_value)


def _locked_meeting(deps: Deps, uow: UnitOfWork, meeting_id: int) -> Meeting:
    stmt: Any = select(Meeting).where(Meeting.id == meeting_id)
    if not is_sqlite(deps.engine):
        stmt = stmt.with_for_update()
    meeting = uow.session.execute(stmt).scalar_one_or_none()
    if meeting is None:
        raise MeetingNotFound(f"no meeting #{meeting_id}")
    return meeting


def _on_workday(deps: Deps, at: datetime) -> datetime:
    """A meeting time on a rest day (a holiday, a weekend that is not a make-up working day) moves to the
    next working day at the same hour."""
    local = at.astimezone(SHANGHAI)
    for _ in range(31):
        if deps.calendar.is_workday(local.date()):
            return local
        local += timedelta(days=1)
    return at.astimezone(SHANGHAI)


def _liaisons(directory: Directory, agencies: list[str]) -> list[Officer]:
    """The liaison officers of the agencies (each agency's handlers when it has none)."""
    people: list[Officer] = []
    for code in agencies:
        mine = [o for o in directory.officers if o.agency_code == code and o.liaison]
        people += mine or directory.with_role(code, "handler")
    return people


def _ics(deps: Deps, uow: UnitOfWork, meeting: Meeting, agenda: list[AgendaItem], numbers: dict[int, str]) -> str:
    directory = Directory(uow)
    convening = directory.agencies[meeting.convening_agency]
    lines = [
        f"{a.position}. {a.title}" + (f"（案件 {numbers[a.case_id]}）" if a.case_id in numbers else "") for a in agenda
    ]
    return meeting_ics(
        uid=meeting.uid,
        sequence=meeting.sequence,
        title=meeting.title,
        starts_at=meeting.starts_at,
        ends_at=meeting.ends_at,
        stamp=meeting.updated_at,
        location=meeting.place or meeting.video_link,
        description="议程：\n" + "\n".join(lines) if lines else meeting.title,
        organizer_name=convening.name,
        organizer_email=deps.notifications.email.sender,
        invitees=[
            Invitee(o.display_name, o.email, directory.agencies[o.agency_code].name)
            for o in _liaisons(directory, meeting.invited)
            if o.email
        ],
        cancelled=meeting.state == "cancelled",
    )


def _notify(
    deps: Deps,
    uow: UnitOfWork,
    meeting: Meeting,
    action: str,
    *,
    reason: str = "",
    resolutions: list[dict[str, Any]] | None = None,
    extra: list[Officer] | None = None,
) -> int:
    """Tell every invited liaison officer (and ``extra``) about the meeting, with its invitation."""
    uow.session.flush()
    directory = Directory(uow)
    lang = 1 if deps.lang == "en" else 0
    view = _meeting_view(deps, uow, meeting, with_ics=action != "minutes")
    convening = directory.agencies[meeting.convening_agency]
    return enqueue(
        deps,
        uow,
        None,
        _liaisons(directory, meeting.invited) + (extra or []),
        template="meeting_notice",
        dedupe_prefix=f"meeting:{meeting.id}:{meeting.sequence}:{action}",
        at=deps.now(),
        agencies=set(meeting.invited),
        ics=view.ics,
        action_label=NOTICE_ACTIONS[action][lang],
        kind_label=MEETING_KINDS[meeting.kind][lang],
        meeting_title=meeting.title,
        convening_name=convening.name,
        starts_at=local_iso(meeting.starts_at),
        ends_at=local_iso(meeting.ends_at),
        place=meeting.place,
        video_link=meeting.video_link,
        reason=reason,
        agenda=[] if action == "minutes" else view.agenda,
        resolutions=resolutions or [],
        cancelled=meeting.state == "cancelled",
    )


def _requesters(uow: UnitOfWork, meeting: Meeting) -> list[Officer]:
    """Who asked for the consultations this meeting is about (told of every change, like the invitees)."""
    names = set(
        uow.session.execute(
            select(ConsultationRequest.requested_by).where(ConsultationRequest.meeting_id == meeting.id)
        ).scalars()
    )
    return [o for o in Directory(uow).officers if o.username in names]


def _new_meeting(
    deps: Deps,
    *,
    kind: str,
    title: str,
    starts_at: datetime,
    minutes: int,
    place: str,
    video_link: str,
    convening: str,
    invited: list[str],
    actor: str,
    schedule_id: str = "",
    period: str = "",
) -> Meeting:
    now = deps.now()
    return Meeting(
        kind=kind,
        schedule_id=schedule_id,
        period_key=period,
        uid=f"{uuid.uuid4()}@jointcase",
        title=title,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=minutes),
        place=place,
        video_link=video_link,
        convening_agency=convening,
        invited=invited,
        state="planned",
        created_by=actor,
        created_at=now,
        updated_at=now,
    )


def _check_future(deps: Deps, at: datetime, what: str) -> datetime:
    if at.tzinfo is None:
        at = at.replace(tzinfo=SHANGHAI)
    if at <= deps.now():
        raise InvalidInput(f"{what}: {local_iso(at)} is in the past; a meeting is scheduled ahead")
    return at


def _check_place(place: str, video_link: str) -> None:
    if not place.strip() and not video_link.strip():
        raise InvalidInput("a meeting needs a place (--place) or a video link (--video)")


# --- consultations ----------------------------------------------------------------------------------


def request_consultation(deps: Deps, case_no: str, *, actor: str, topic: str, question: str) -> ConsultationView:
    """A handler of an agency taking part in the case asks for a consultation (案件会商) on ``topic``."""
    if topic not in CONSULTATION_TOPICS:
        raise InvalidInput(f"unknown topic {topic!r}; use one of {', '.join(CONSULTATION_TOPICS)}")
    question = (question or "").strip()
    if not question:
        raise InvalidInput("a consultation request needs the question to discuss (--question)")
    with UnitOfWork(deps) as uow:
        case, officer = _visible_case(uow, case_no, actor, lock=True)
        if "handler" not in officer.roles or not _is_participant(uow, case, officer.agency_code):
            raise PermissionDenied(
                f"case {case_no}: consultations are requested by a handler of an agency taking part; "
                f"{actor} ({officer.agency_code}) may not"
            )
        if case.state == CLOSED:
            raise InvalidInput(f"case {case_no} is closed; there is nothing left to consult on")
        now = deps.now()
        row = ConsultationRequest(
            case_id=case.id or 0,
            topic=topic,
            question=question,
            requested_by=actor,
            agency_code=officer.agency_code,
            requested_at=now,
            state="open",
        )
        uow.session.add(row)
        uow.session.flush()
        record_fact(
            uow,
            case,
            "consultation_requested",
            actor=actor,
            actor_agency=officer.agency_code,
            effective=now,
            recorded=now,
            payload={"request": row.id, "topic": topic, "question": question},
        )
        view = _consultation_view(row, case)
        uow.commit()
        return view


def consultation_queue(deps: Deps, *, actor: str | None = None, state: str | None = "open") -> list[ConsultationView]:
    """Consultation requests (open ones by default), oldest first: the secretaries' queue."""
    with UnitOfWork(deps, read_only=True) as uow:
        if actor is not None:
            _secretary(uow, actor)
        stmt: Any = (
            select(ConsultationRequest, Case)
            .join(Case, Case.id == ConsultationRequest.case_id)
            .order_by(ConsultationRequest.requested_at, ConsultationRequest.id)
        )
        if state:
            stmt = stmt.where(ConsultationRequest.state == state)
        return [_consultation_view(r, c) for r, c in uow.session.execute(stmt).all()]


# --- scheduling -------------------------------------------------------------------------------------


def schedule_meeting(
    deps: Deps,
    *,
    actor: str,
    kind: str,
    at: datetime,
    place: str = "",
    video_link: str = "",
    title: str = "",
    requests: list[int] | None = None,
    invited: list[str] | None = None,
    duration_minutes: int | None = None,
) -> MeetingView:
    """A secretary schedules a consultation (for open requests) or a joint meeting; everyone is invited."""
    if kind not in MEETING_KINDS:
        raise InvalidInput(f"unknown meeting kind {kind!r}; use one of {', '.join(MEETING_KINDS)}")
    _check_place(place, video_link)
    at = _check_future(deps, at, "--at")
    minutes = duration_minutes or deps.meetings.consultation_minutes
    if not 15 <= minutes <= 24 * 60:
        raise InvalidInput(f"--minutes {minutes}: a meeting lasts 15 to 1440 minutes")
    with UnitOfWork(deps) as uow:
        officer = _secretary(uow, actor)
        directory = Directory(uow)
        agencies = list(dict.fromkeys(invited or []))
        for code in agencies:
            if code not in directory.agencies:
                raise InvalidInput(f"unknown agency {code!r} in --invite")
        rows: list[tuple[ConsultationRequest, Case]] = []
        if kind == "consultation":
            if not requests:
                raise InvalidInput("a consultation is scheduled for one or more requests (--requests 1,2)")
            stmt: Any = (
                select(ConsultationRequest, Case)
                .join(Case, Case.id == ConsultationRequest.case_id)
                .where(ConsultationRequest.id.in_(requests))  # type: ignore[union-attr]
                .order_by(ConsultationRequest.id)
            )
            if not is_sqlite(deps.engine):
                stmt = stmt.with_for_update(of=ConsultationRequest)
            rows = list(uow.session.execute(stmt).all())
            missing = sorted(set(requests) - {r.id for r, _ in rows})
            if missing:
                raise InvalidInput(f"no consultation request {', '.join(f'#{i}' for i in missing)}")
            taken = [f"#{r.id} ({r.state})" for r, _ in rows if r.state != "open"]
            if taken:
                raise InvalidInput(f"consultation requests {', '.join(taken)} are not open any more")
            for _request, case in rows:
                agencies += [a.code for a in holders(uow, case) if a.code not in agencies]
        elif not agencies:
            raise InvalidInput("a joint meeting needs the agencies to invite (--invite CODE,CODE)")
        if officer.agency_code not in agencies:
            agencies.insert(0, officer.agency_code)
        default_title = (
            "案件会商：" + "、".join(dict.fromkeys(c.case_no for _r, c in rows))
            if kind == "consultation"
            else MEETING_KINDS[kind][0]
        )
        meeting = _new_meeting(
            deps,
            kind=kind,
            title=(title or "").strip() or default_title,
            starts_at=at,
            minutes=minutes,
            place=place.strip(),
            video_link=video_link.strip(),
            convening=officer.agency_code,
            invited=agencies,
            actor=actor,
        )
        uow.session.add(meeting)
        uow.session.flush()
        now = deps.now()
        for position, (request, case) in enumerate(rows, start=1):
            request.state, request.meeting_id = "scheduled", meeting.id
            uow.session.add(
                AgendaItem(
                    meeting_id=meeting.id or 0,
                    position=position,
                    kind="consultation",
                    case_id=case.id,
                    ref_id=request.id,
                    title=f"{CONSULTATION_TOPICS[request.topic][0]}：{request.question}",
                    detail={"requested_by": request.requested_by, "agency": request.agency_code},
                )
            )
            uow.lock(case)
            record_fact(
                uow,
                case,
                "consultation_scheduled",
                actor=actor,
                actor_agency=officer.agency_code,
                effective=now,
                recorded=now,
                payload={"request": request.id, "meeting": meeting.id, "starts_at": meeting.starts_at.isoformat()},
            )
        _move(meeting, "send_notice", "noticed")
        requesters = [o for o in directory.officers if o.username in {r.requested_by for r, _ in rows}]
        _notify(deps, uow, meeting, "notice", extra=requesters)
        view = _meeting_view(deps, uow, meeting)
        uow.commit()
        return view


# --- regular joint meetings ---------------------------------------------------------------------------


def _schedule(deps: Deps, schedule_id: str | None) -> MeetingSchedule:
    schedules = deps.meetings.schedules
    if not schedules:
        raise InvalidInput("no [[meetings.schedules]] in config.toml: no regular joint meeting to prepare")
    if schedule_id is None:
        if len(schedules) > 1:
            raise InvalidInput(
                f"several meeting schedules; name one with --schedule ({', '.join(s.id for s in schedules)})"
            )
        return schedules[0]
    try:
        return deps.meetings.schedule(schedule_id)
    except KeyError as err:
        raise InvalidInput(str(err.args[0])) from None


def prepare_meeting(
    deps: Deps, period: str, *, schedule_id: str | None = None, actor: str = SYSTEM_ACTOR
) -> MeetingView:
    """Create the joint meeting of ``period`` (e.g. ``2026-Q4``) for a schedule, once: build its agenda from
    the case record now, notice every invited liaison officer. Run again, it returns the same meeting."""
    try:
        return _prepare(deps, period, schedule_id=schedule_id, actor=actor)
    except IntegrityError:
        # Another preparer inserted the period's meeting between our look and our insert: theirs stands.
        schedule = _schedule(deps, schedule_id)
        with UnitOfWork(deps, read_only=True) as uow:
            found = _period_meeting(uow, schedule.id, period)
            if found is None:
                raise
            return _meeting_view(deps, uow, found)


def _prepare(deps: Deps, period: str, *, schedule_id: str | None, actor: str) -> MeetingView:
    schedule = _schedule(deps, schedule_id)
    try:
        start, end = period_bounds(period)
    except ValueError as err:
        raise InvalidInput(str(err)) from None
    if (
        period_key(start, schedule.period) != period
        or period_key(end - timedelta(seconds=1), schedule.period) != period
    ):
        raise InvalidInput(
            f"schedule {schedule.id} meets once per {schedule.period}; give a "
            f"{'quarter (e.g. 2026-Q4)' if schedule.period == 'quarter' else 'month (e.g. 2026-10)'}, not {period!r}"
        )
    times = schedule.occurrences(start, end)
    if not times:
        raise InvalidInput(f"schedule {schedule.id} has no meeting in {period}")
    starts_at = _on_workday(deps, times[0])
    with UnitOfWork(deps) as uow:
        existing = _period_meeting(uow, schedule.id, period)
        if existing is not None:
            return _meeting_view(deps, uow, existing)
        if actor != SYSTEM_ACTOR:
            _secretary(uow, actor)
        if starts_at <= deps.now():
            raise InvalidInput(
                f"the {period} meeting of schedule {schedule.id} was due {local_iso(starts_at)}; it is past"
            )
        meeting = _new_meeting(
            deps,
            kind="joint_meeting",
            title=f"{schedule.title}（{period}）",
            starts_at=starts_at,
            minutes=schedule.duration_minutes,
            place=schedule.place,
            video_link=schedule.video_link,
            convening=schedule.convening_agency,
            invited=list(schedule.invited),
            actor=actor,
            schedule_id=schedule.id,
            period=period,
        )
        uow.session.add(meeting)
        uow.session.flush()  # a concurrent preparer's meeting makes this raise IntegrityError (see below)
        _build_agenda(deps, uow, meeting, schedule)
        _move(meeting, "send_notice", "noticed")
        _notify(deps, uow, meeting, "notice")
        view = _meeting_view(deps, uow, meeting, created=True)
        uow.commit()
        log.info("meeting #%s prepared for %s (%s), %s agenda items", meeting.id, period, schedule.id, len(view.agenda))
        return view


def _period_meeting(uow: UnitOfWork, schedule_id: str, period: str) -> Meeting | None:
    return uow.session.execute(
        select(Meeting).where(Meeting.schedule_id == schedule_id, Meeting.period_key == period)
    ).scalar_one_or_none()


def prepare_due_meetings(deps: Deps, now: datetime | None = None) -> dict[str, int]:
    """For every schedule, prepare the next meeting once its notice period has begun (the job and flow).

    "Next" is by the time the meeting is really held: one whose rule time fell on a holiday moves to the
    next working day, and is still ahead while that day has not come.
    """
    now = now or deps.now()
    counts = {"schedules": 0, "created": 0}
    for schedule in deps.meetings.schedules:
        counts["schedules"] += 1
        upcoming = (
            (t, _on_workday(deps, t)) for t in schedule.occurrences(now - timedelta(days=31), now + timedelta(days=800))
        )
        rule_time, held_at = next(((t, held) for t, held in upcoming if held > now), (None, None))
        if rule_time is None or held_at is None or now < held_at - timedelta(days=schedule.notice_days):
            continue
        if prepare_meeting(deps, period_key(rule_time, schedule.period), schedule_id=schedule.id).created:
            counts["created"] += 1
    return counts


def _build_agenda(deps: Deps, uow: UnitOfWork, meeting: Meeting, schedule: MeetingSchedule) -> None:
    """The agenda, from the case record as it is now (see the module docstring for what goes on it)."""
    now = deps.now()
    items: list[AgendaItem] = []

    def add(kind: str, title: str, case_id: int | None = None, ref_id: int | None = None, **detail: Any) -> None:
        items.append(
            AgendaItem(
                meeting_id=meeting.id or 0,
                position=len(items) + 1,
                kind=kind,
                case_id=case_id,
                ref_id=ref_id,
                title=title,
                detail=detail,
            )
        )

    for request, case in uow.session.execute(
        select(ConsultationRequest, Case)
        .join(Case, Case.id == ConsultationRequest.case_id)
        .where(ConsultationRequest.state == "open")
        .order_by(ConsultationRequest.requested_at, ConsultationRequest.id)
    ).all():
        add(
            "consultation",
            f"会商申请（{CONSULTATION_TOPICS[request.topic][0]}）：{request.question}",
            case.id,
            request.id,
        )
    for sup, case in uow.session.execute(
        select(Supervision, Case)
        .join(Case, Case.id == Supervision.case_id)
        .where(Supervision.state != "delisted")
        .order_by(Supervision.listed_at, Supervision.id)
    ).all():
        overdue = "，已逾期" if now > sup.due_at else ""
        add(
            "supervised",
            f"挂牌督办：{case.title}（{local_iso(sup.due_at)[:10]}前办结{overdue}）",
            case.id,
            sup.id,
            level=sup.level,
            handling_agency=sup.handling_agency,
        )
    since = _last_meeting_start(uow, schedule.id, meeting.id) or (now - timedelta(days=92))
    for row, case in uow.session.execute(
        select(Deadline, Case)
        .join(Case, Case.id == Deadline.case_id)
        .where(
            or_(
                (Deadline.status == "running") & (Deadline.due_at < now),
                (Deadline.status == "missed") & (Deadline.due_at >= since),
            )
        )
        .order_by(Deadline.due_at, Deadline.id)
    ).all():
        add(
            "deadline_missed",
            f"期限逾期：{row.rule} {row.label}（{local_iso(row.due_at)} 届满）",
            case.id,
            row.id,
            rule=row.rule,
        )
    for row, case in uow.session.execute(
        select(Deadline, Case)
        .join(Case, Case.id == Deadline.case_id)
        .where(Deadline.status == "running", Deadline.due_at >= now, Deadline.due_at < meeting.starts_at + SOON_DUE)
        .order_by(Deadline.due_at, Deadline.id)
    ).all():
        add(
            "deadline_due",
            f"期限临近：{row.rule} {row.label}（{local_iso(row.due_at)} 届满）",
            case.id,
            row.id,
            rule=row.rule,
        )
    for case in uow.session.execute(
        select(Case).where(Case.state.in_(DISPUTED_STATES)).order_by(Case.updated_at, Case.id)  # type: ignore[attr-defined]
    ).scalars():
        add("disputed_referral", f"移送分歧：{case.title}（{state_label(case.state)}）", case.id, state=case.state)
    for action in uow.session.execute(
        select(ActionItem).where(ActionItem.state == "open").order_by(ActionItem.due_at, ActionItem.id)
    ).scalars():
        late = "，已逾期" if now > action.due_at else ""
        add(
            "action_item",
            f"议定事项：{action.text}（{action.owner_agency}，{local_iso(action.due_at)[:10]}前{late}）",
            action.case_id,
            action.id,
        )
    add("statistics", f"工作统计（{local_iso(since)[:10]} 以来）", None, None, **_statistics(uow, since, now))
    uow.session.add_all(items)


def _last_meeting_start(uow: UnitOfWork, schedule_id: str, this_id: int | None) -> datetime | None:
    return uow.session.execute(
        select(func.max(Meeting.starts_at)).where(
            Meeting.schedule_id == schedule_id, Meeting.id != this_id, Meeting.state != "cancelled"
        )
    ).scalar_one()


#: Events counted in the agenda's statistics (the bulletin has the full figures).
_COUNTED = {
    "open_case": "leads",
    "file_case": "filed",
    "transfer_to_police": "transferred",
    "police_file": "police_filed",
    "police_decline": "police_declined",
    "deadline_missed": "deadlines_missed",
}


def _statistics(uow: UnitOfWork, since: datetime, now: datetime) -> dict[str, int]:
    counts = dict.fromkeys(_COUNTED.values(), 0)
    rows = uow.session.execute(
        select(CaseEvent.event, func.count())
        .where(CaseEvent.event.in_(list(_COUNTED)), CaseEvent.effective_at >= since, CaseEvent.effective_at < now)  # type: ignore[attr-defined]
        .group_by(CaseEvent.event)
    ).all()
    for event, count in rows:
        counts[_COUNTED[event]] = int(count)
    return counts


# --- move, cancel, attend, minutes ----------------------------------------------------------------------


def move_meeting(deps: Deps, meeting_id: int, *, actor: str, to: datetime, reason: str = "") -> MeetingView:
    """Move a meeting that has not been held to a later time; everyone invited is told (new invitation)."""
    to = _check_future(deps, to, "--to")
    with UnitOfWork(deps) as uow:
        _secretary(uow, actor)
        meeting = _locked_meeting(deps, uow, meeting_id)
        _move(meeting, "postpone", "moved")
        requesters = _requesters(uow, meeting)
        length = meeting.ends_at - meeting.starts_at
        meeting.starts_at, meeting.ends_at = to, to + length
        meeting.sequence += 1
        meeting.updated_at = deps.now()
        _notify(deps, uow, meeting, "moved", reason=(reason or "").strip(), extra=requesters)
        view = _meeting_view(deps, uow, meeting)
        uow.commit()
        return view


def cancel_meeting(deps: Deps, meeting_id: int, *, actor: str, reason: str) -> MeetingView:
    """Cancel a meeting that has not been held; everyone is told; its consultation requests reopen."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("cancelling a meeting needs the reason (--reason)")
    with UnitOfWork(deps) as uow:
        officer = _secretary(uow, actor)
        meeting = _locked_meeting(deps, uow, meeting_id)
        _move(meeting, "cancel", "cancelled")
        requesters = _requesters(uow, meeting)  # before their requests reopen
        meeting.sequence += 1
        meeting.cancel_reason = reason
        now = deps.now()
        meeting.updated_at = now
        for request in uow.session.execute(
            select(ConsultationRequest).where(ConsultationRequest.meeting_id == meeting.id)
        ).scalars():
            request.state, request.meeting_id = "open", None
            case = uow.session.get(Case, request.case_id)
            assert case is not None
            uow.lock(case)
            record_fact(
                uow,
                case,
                "consultation_cancelled",
                actor=actor,
                actor_agency=officer.agency_code,
                effective=now,
                recorded=now,
                payload={"request": request.id, "meeting": meeting.id, "reason": reason},
            )
        _notify(deps, uow, meeting, "cancelled", reason=reason, extra=requesters)
        view = _meeting_view(deps, uow, meeting)
        uow.commit()
        return view


def record_attendance(deps: Deps, meeting_id: int, *, actor: str, agency: str, officers: list[str]) -> MeetingView:
    """Record who attended for an invited agency; the first record makes the meeting held."""
    names = [n.strip() for n in officers if n.strip()]
    if not names:
        raise InvalidInput("give the names of those who attended (--officers 张三,李四)")
    with UnitOfWork(deps) as uow:
        _secretary(uow, actor)
        meeting = _locked_meeting(deps, uow, meeting_id)
        if agency not in meeting.invited:
            raise InvalidInput(f"meeting #{meeting_id}: {agency} was not invited ({', '.join(meeting.invited)})")
        if deps.now() < meeting.starts_at - timedelta(hours=1):
            raise InvalidInput(
                f"meeting #{meeting_id} starts {local_iso(meeting.starts_at)}; attendance is recorded at the meeting"
            )
        _move(meeting, "hold", "held")
        meeting.attendance = {**meeting.attendance, agency: names}
        meeting.updated_at = deps.now()
        view = _meeting_view(deps, uow, meeting)
        uow.commit()
        return view


@dataclass(frozen=True)
class Resolution:
    """A resolution of the minutes: what, who, by when, and the case it is about (if any)."""

    text: str
    owner_agency: str
    due: datetime | None = None
    case_no: str | None = None


def parse_resolution(value: str) -> Resolution:
    """``OWNER|DUE|TEXT[|CASE_NO]`` (DUE an ISO date, or empty for the default) from the CLI."""
    parts = [p.strip() for p in value.split("|")]
    if len(parts) not in (3, 4) or not parts[0] or not parts[2]:
        raise InvalidInput(
            f"--resolution {value!r}: write OWNER_AGENCY|DUE_DATE|TEXT[|CASE_NO], "
            "e.g. sm-psb|2026-12-31|补充调取服务器日志|sm-amr-2026-0004"
        )
    due = None
    if parts[1]:
        try:
            due = datetime.fromisoformat(parts[1])
        except ValueError:
            raise InvalidInput(f"--resolution: {parts[1]!r} is not an ISO date (e.g. 2026-12-31)") from None
        if len(parts[1]) == 10:
            due = due.replace(hour=23, minute=59, second=59)
        if due.tzinfo is None:
            due = due.replace(tzinfo=SHANGHAI)
    return Resolution(parts[2], parts[0], due, parts[3] if len(parts) == 4 and parts[3] else None)


def record_minutes(deps: Deps, meeting_id: int, *, actor: str, text: str, resolutions: list[Resolution]) -> MeetingView:
    """Approve the minutes of a held meeting: resolutions become action items on each case's record; a
    consultation's requests are resolved with them; everyone invited receives the minutes."""
    text = (text or "").strip()
    if not text:
        raise InvalidInput("the minutes need their text (--text or --file)")
    with UnitOfWork(deps) as uow:
        officer = _secretary(uow, actor)
        meeting = _locked_meeting(deps, uow, meeting_id)
        if meeting.state != "held":
            raise InvalidInput(
                f"meeting #{meeting_id} is {meeting.state} ({MEETING_STATE_LABELS[meeting.state]}), not held: "
                "minutes are recorded after the meeting (record attendance with `meeting attend` first)"
            )
        now = deps.now()
        agenda_cases = {
            a.case_id
            for a in uow.session.execute(select(AgendaItem).where(AgendaItem.meeting_id == meeting.id)).scalars()
            if a.case_id
        }
        cases: dict[str, Case] = {}
        for res in resolutions:
            if res.owner_agency not in meeting.invited:
                raise InvalidInput(f"resolution owner {res.owner_agency!r} was not invited to meeting #{meeting_id}")
            if res.due is not None and res.due <= now:
                raise InvalidInput(f"resolution due {local_iso(res.due)} is in the past")
            if res.case_no and res.case_no not in cases:
                case = uow.session.execute(select(Case).where(Case.case_no == res.case_no)).scalar_one_or_none()
                if case is None or case.id not in agenda_cases:
                    raise InvalidInput(f"case {res.case_no} is not on the agenda of meeting #{meeting_id}")
                cases[res.case_no] = case
        _move(meeting, "approve_minutes", "given minutes")
        meeting.minutes, meeting.minutes_by, meeting.minutes_at, meeting.updated_at = text, actor, now, now
        summary: list[dict[str, Any]] = []
        written: dict[int, list[str]] = {}
        for res in resolutions:
            case = cases.get(res.case_no or "")
            due = res.due or (now + timedelta(days=deps.meetings.action_item_days))
            item = ActionItem(
                meeting_id=meeting.id or 0,
                case_id=case.id if case else None,
                text=res.text,
                owner_agency=res.owner_agency,
                due_at=due,
                state="open",
                created_at=now,
            )
            uow.session.add(item)
            uow.session.flush()
            summary.append(
                {"text": res.text, "owner": res.owner_agency, "due_at": local_iso(due), "case_no": res.case_no}
            )
            if case is not None:
                uow.lock(case)
                record_fact(
                    uow,
                    case,
                    "meeting_resolution",
                    actor=actor,
                    actor_agency=officer.agency_code,
                    effective=now,
                    recorded=now,
                    payload={
                        "meeting": meeting.id,
                        "action_item": item.id,
                        "text": res.text,
                        "owner_agency": res.owner_agency,
                        "due_at": due.isoformat(),
                    },
                )
                written.setdefault(case.id or 0, []).append(res.text)
        for request in uow.session.execute(
            select(ConsultationRequest).where(ConsultationRequest.meeting_id == meeting.id)
        ).scalars():
            case = uow.session.get(Case, request.case_id)
            assert case is not None
            request.state, request.resolved_at = "resolved", now
            request.resolution = "；".join(written.get(case.id or 0, [])) or text
            uow.lock(case)
            record_fact(
                uow,
                case,
                "consultation_resolved",
                actor=actor,
                actor_agency=officer.agency_code,
                effective=now,
                recorded=now,
                payload={"request": request.id, "meeting": meeting.id, "resolution": request.resolution},
            )
        _notify(deps, uow, meeting, "minutes", resolutions=summary)
        view = _meeting_view(deps, uow, meeting)
        uow.commit()
        return view


# --- reading ------------------------------------------------------------------------------------------


def show_meeting(deps: Deps, meeting_id: int, *, actor: str | None = None) -> MeetingView:
    """One meeting with agenda (each item with its case number), requests and action items."""
    with UnitOfWork(deps, read_only=True) as uow:
        meeting = uow.session.get(Meeting, meeting_id)
        if meeting is None or (actor is not None and not _may_see(uow, meeting, uow.officer(actor))):
            raise MeetingNotFound(f"no meeting #{meeting_id}")
        return _meeting_view(deps, uow, meeting)


def _may_see(uow: UnitOfWork, meeting: Meeting, officer: OfficerRow) -> bool:
    if {"admin", "secretary"} & set(officer.roles) or officer.agency_code in meeting.invited:
        return True
    if "supervisor" in officer.roles:
        mine, convening = (
            uow.session.get(Agency, officer.agency_code),
            uow.session.get(Agency, meeting.convening_agency),
        )
        return bool(mine and convening and _covers(mine, convening))
    return False


def list_meetings(
    deps: Deps, *, actor: str | None = None, state: str | None = None, kind: str | None = None
) -> list[MeetingView]:
    """Meetings by start time (the secretaries' calendar), optionally by state and kind."""
    with UnitOfWork(deps, read_only=True) as uow:
        officer = uow.officer(actor) if actor else None
        stmt: Any = select(Meeting).order_by(Meeting.starts_at, Meeting.id)
        if state:
            stmt = stmt.where(Meeting.state == state)
        if kind:
            stmt = stmt.where(Meeting.kind == kind)
        return [
            _meeting_view(deps, uow, m, with_ics=False)
            for m in uow.session.execute(stmt).scalars()
            if officer is None or _may_see(uow, m, officer)
        ]


# --- action items ---------------------------------------------------------------------------------------


def list_action_items(
    deps: Deps, *, actor: str | None = None, open_only: bool = False, agency: str | None = None
) -> list[ActionItemView]:
    """Action items by due date (an officer sees their agency's; secretaries, supervisors, admins all)."""
    with UnitOfWork(deps, read_only=True) as uow:
        stmt: Any = select(ActionItem).order_by(ActionItem.due_at, ActionItem.id)
        if open_only:
            stmt = stmt.where(ActionItem.state == "open")
        if actor:
            officer = uow.officer(actor)
            if not {"admin", "secretary", "supervisor"} & set(officer.roles):
                agency = officer.agency_code
        if agency:
            stmt = stmt.where(ActionItem.owner_agency == agency)
        rows = list(uow.session.execute(stmt).scalars())
        numbers = _case_numbers(uow, {r.case_id for r in rows})
        now = deps.now()
        return [_action_view(r, numbers.get(r.case_id) if r.case_id else None, now) for r in rows]


def complete_action_item(deps: Deps, item_id: int, *, actor: str, note: str = "") -> ActionItemView:
    """An officer of the owner agency marks an action item done (with what was done)."""
    with UnitOfWork(deps) as uow:
        officer = uow.officer(actor)
        item = uow.session.get(ActionItem, item_id)
        if item is None:
            raise InvalidInput(f"no action item #{item_id}")
        if officer.agency_code != item.owner_agency:
            raise PermissionDenied(f"action item #{item_id} belongs to {item.owner_agency}; {actor} may not close it")
        chart = action_chart(item.state)
        try:
            chart.send("complete")
        except TransitionNotAllowed:
            raise InvalidInput(f"action item #{item_id} is already done") from None
        now = deps.now()
        item.state, item.done_at, item.done_by, item.done_note = (
            str(chart.current_state_value),
            now,
            actor,
            note.strip(),
        )
        case_no = None
        if item.case_id:
            case = uow.session.get(Case, item.case_id)
            assert case is not None
            case_no = case.case_no
            uow.lock(case)
            record_fact(
                uow,
                case,
                "action_item_done",
                actor=actor,
                actor_agency=officer.agency_code,
                effective=now,
                recorded=now,
                payload={"action_item": item.id, "note": item.done_note},
            )
        view = _action_view(item, case_no, now)
        uow.commit()
        return view


def fire_overdue_action_items(deps: Deps, now: datetime | None = None) -> int:
    """Escalate each open action item past its due date once (per due date): a fact on its case, a notice
    to the owner agency and to the supervisors of the convening region. Part of the deadline sweep."""
    now = now or deps.now()
    fired = 0
    with UnitOfWork(deps) as uow:
        stmt: Any = (
            select(ActionItem)
            .where(
                ActionItem.state == "open",
                ActionItem.due_at < now,
                or_(ActionItem.escalated_for.is_(None), ActionItem.escalated_for != ActionItem.due_at),  # type: ignore[union-attr]
            )
            .order_by(ActionItem.due_at, ActionItem.id)
        )
        if not is_sqlite(deps.engine):
            stmt = stmt.with_for_update(skip_locked=True)
        items = list(uow.session.execute(stmt).scalars())
        if not items:
            return 0
        directory = Directory(uow)
        for item in items:
            if item.escalated_for == item.due_at:
                continue  # this due date's miss was escalated already; a new due date may miss again
            key = f"missed:{item.due_at.isoformat()}"
            item.escalated_for = item.due_at
            item.escalations += 1
            meeting = uow.session.get(Meeting, item.meeting_id)
            assert meeting is not None
            case = uow.session.get(Case, item.case_id) if item.case_id else None
            if case is not None:
                uow.lock(case)
                record_fact(
                    uow,
                    case,
                    "action_item_missed",
                    actor=SYSTEM_ACTOR,
                    actor_agency=item.owner_agency,
                    effective=item.due_at,
                    recorded=now,
                    payload={"action_item": item.id, "meeting": meeting.id, "due_at": item.due_at.isoformat()},
                )
            convening = directory.agencies[meeting.convening_agency]
            recipients = _liaisons(directory, [item.owner_agency]) + directory.supervisors_of_region(convening.region)
            enqueue(
                deps,
                uow,
                case,
                recipients,
                template="action_item_missed",
                dedupe_prefix=f"action_item:{item.id}:{key}",
                at=now,
                agencies={item.owner_agency, meeting.convening_agency},
                text=item.text,
                owner=directory.agencies[item.owner_agency].name,
                due_at=local_iso(item.due_at),
                case_no=case.case_no if case else "",
                meeting_title=meeting.title,
                meeting_date=local_iso(meeting.starts_at)[:10],
            )
            fired += 1
        uow.commit()
    return fired
