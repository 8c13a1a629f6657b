"""The liaison pages: the joint-meeting secretary's consultation queue, meeting calendar and meeting pages
(agenda, attendance, minutes with resolutions, move, cancel, the .ics invitation), and the supervisor's
dashboard (listed supervision, overdue deadlines and overdue action items by agency and county, charts
drawn as inline SVG on the server, drill-down lists and their Excel export).

Every page calls the use cases as the signed-in officer; every form posts the session's CSRF token; a
refusal of a use case is shown on the page it came from (``role=alert``), never as a traceback.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.web.export import XLSX, workbook
from app.web.pages import Officer, error_page, form_csrf, lang_of, render
from app.web.problems import status_of
from app.web.security import deps_of
from states.calendar import SHANGHAI
from states.errors import DomainError, InvalidInput, PermissionDenied
from states.lifecycle import CLOSED, PHASES, REFERRAL_FUNNEL, funnel_steps, state_label
from states.meeting import period_bounds, period_key
from states.supervision import LEVEL_LABELS
from workflows.auth import Identity
from workflows.bulletins import STAGES, median_days, parse_period
from workflows.dashboard import case_lines, figures, open_listings, overdue_action_items
from workflows.deadlines import list_deadlines
from workflows.meetings import (
    ActionItemView,
    MeetingView,
    Resolution,
    cancel_meeting,
    consultation_queue,
    list_meetings,
    move_meeting,
    prepare_meeting,
    record_attendance,
    record_minutes,
    schedule_meeting,
    show_meeting,
)
from workflows.uow import Deps

router = APIRouter(include_in_schema=False)

SECRETARY_ROLES = frozenset({"secretary", "admin"})
SUPERVISOR_ROLES = frozenset({"supervisor", "admin"})
#: Meeting states in which each form of the meeting page applies (the use case refuses the others anyway).
MOVABLE = ("planned", "noticed", "postponed")
ATTENDABLE = ("noticed", "postponed", "held")
RESOLUTION_ROWS = 3  # blank resolution rows of the minutes form (liaison.js adds more)
RECENT_MEETINGS = 20

#: What a redirect's ``?done=`` says on the page it lands on (fixed texts: nothing of the request is echoed).
DONE: dict[str, tuple[str, str]] = {
    "scheduled": ("会议已安排，通知已发出。", "The meeting is scheduled and the invitations are sent."),
    "prepared": ("本期联席会议已筹备，议程已生成，通知已发出。", "The period's meeting is prepared and noticed."),
    "existing": ("本期联席会议此前已筹备，以下为其议程。", "The period's meeting was prepared before; here it is."),
    "attended": ("出席情况已记录。", "Attendance recorded."),
    "minutes": ("会议纪要已通过，议定事项已分派。", "Minutes approved; the action items are assigned."),
    "moved": ("会议已改期，已重新通知。", "The meeting is moved; everyone is told again."),
    "cancelled": ("会议已取消，已通知各方。", "The meeting is cancelled; everyone is told."),
}


def _t(request: Request) -> Callable[[str, str], str]:
    lang = lang_of(request)
    return lambda zh, en: en if lang == "en" else zh


def _require(request: Request, me: Identity, roles: frozenset[str], page_zh: str, page_en: str) -> None:
    if not roles & set(me.roles):
        t = _t(request)
        need = " / ".join(sorted(roles))
        raise PermissionDenied(
            t(
                f"{page_zh}仅限 {need} 角色；{me.username} 无此角色",
                f"{page_en} is for the roles {need}; not {me.username}",
            )
        )


def _local_input(value: datetime) -> str:
    """An aware time as a ``datetime-local`` value, Beijing time."""
    return value.astimezone(SHANGHAI).strftime("%Y-%m-%dT%H:%M")


def _parse_local(value: str, what: str) -> datetime:
    """A ``datetime-local`` value read as Beijing time."""
    text = (value or "").strip()
    if not text:
        raise InvalidInput(f"{what}: give the date and time (Beijing time)")
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{what}: {text!r} is not a date and time such as 2026-12-15T09:30") from None
    return at if at.tzinfo else at.replace(tzinfo=SHANGHAI)


def _parse_due(value: str) -> datetime | None:
    """A resolution's due date (``YYYY-MM-DD``): the end of that day, Beijing time; empty: the default."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        day = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"resolution due date {text!r} is not a date such as 2026-12-31") from None
    if len(text) == 10:
        day = day.replace(hour=23, minute=59, second=59)
    return day if day.tzinfo else day.replace(tzinfo=SHANGHAI)


def _age(iso: str, now: datetime, t: Callable[[str, str], str]) -> str:
    if not iso:
        return ""
    delta = now - datetime.fromisoformat(iso)
    days, hours = delta.days, delta.seconds // 3600
    if days > 0:
        return t(f"{days} 天", f"{days} d")
    return t(f"{hours} 小时", f"{hours} h")


def _agencies(request: Request) -> dict[str, Any]:
    """The directory's agencies by code (settings: name, kind, region, region_name)."""
    return {a.code: a for a in request.app.state.settings.agencies}


def _safe_link(url: str) -> str:
    """A video link to put in ``href``: only http(s), never ``javascript:``."""
    return url if url.lower().startswith(("https://", "http://")) else ""


# --- the secretary ----------------------------------------------------------------------------------------


def _next_period(deps: Deps, schedule: Any) -> str:
    """The period of the schedule's next meeting ahead (what a secretary would prepare)."""
    from states.meeting import period_key

    now = deps.now()
    ahead = schedule.occurrences(now, now + timedelta(days=800))
    return str(period_key(ahead[0], schedule.period)) if ahead else ""


def _secretary_page(
    request: Request, me: Identity, *, status: int = 200, error: str = "", form: dict[str, Any] | None = None
) -> HTMLResponse:
    deps = deps_of(request)
    t = _t(request)
    now = deps.now()
    agencies = _agencies(request)
    queue = [
        {**c.to_dict(), "agency_name": agencies[c.agency].name if c.agency in agencies else c.agency}
        | {"age": _age(c.requested_at, now, t)}
        for c in consultation_queue(deps, actor=me.username)
    ]
    meetings = list_meetings(deps, actor=me.username)
    upcoming = [m for m in meetings if datetime.fromisoformat(m.ends_at) >= now]
    recent = [m for m in reversed(meetings) if datetime.fromisoformat(m.ends_at) < now][:RECENT_MEETINGS]
    schedules = [
        {"id": s.id, "title": s.title, "period": s.period, "next": _next_period(deps, s)}
        for s in deps.meetings.schedules
    ]
    done = request.query_params.get("done", "")
    return render(
        request,
        "secretary.html.j2",
        status=status,
        queue=queue,
        upcoming=upcoming,
        recent=recent,
        agencies=list(agencies.values()),
        schedules=schedules,
        form=form or {},
        error=error,
        done=t(*DONE[done]) if done in DONE else "",
        min_at=_local_input(now),
        default_minutes=deps.meetings.consultation_minutes,
    )


@router.get("/secretary", response_class=HTMLResponse)
def secretary(request: Request, me: Officer) -> HTMLResponse:
    """The consultation queue, the scheduling forms, the meeting calendar."""
    _require(request, me, SECRETARY_ROLES, "会商与会议页面", "The meetings page")
    return _secretary_page(request, me)


@router.post("/secretary/meetings", response_class=HTMLResponse)
def schedule(
    request: Request,
    me: Officer,
    csrf_token: Annotated[str, Form(max_length=100)] = "",
    kind: Annotated[str, Form(max_length=20)] = "consultation",
    at: Annotated[str, Form(max_length=40)] = "",
    place: Annotated[str, Form(max_length=200)] = "",
    video_link: Annotated[str, Form(max_length=500)] = "",
    title: Annotated[str, Form(max_length=200)] = "",
    duration_minutes: Annotated[str, Form(max_length=6)] = "",
    requests: Annotated[list[str] | None, Form(max_length=50)] = None,
    invited: Annotated[list[str] | None, Form(max_length=50)] = None,
) -> Response:
    """Schedule a consultation for the ticked requests, or a joint meeting for the ticked agencies."""
    form_csrf(me, csrf_token)
    _require(request, me, SECRETARY_ROLES, "安排会议", "Scheduling meetings")
    form = {
        "kind": kind,
        "at": at,
        "place": place,
        "video_link": video_link,
        "title": title,
        "duration_minutes": duration_minutes,
        "requests": list(requests or []),
        "invited": list(invited or []),
    }
    t = _t(request)
    try:
        minutes = None
        if duration_minutes.strip():
            if not duration_minutes.strip().isdigit():
                raise InvalidInput(f"duration {duration_minutes!r}: give whole minutes, e.g. 90")
            minutes = int(duration_minutes)
        ids = []
        for value in form["requests"]:
            if not value.isdigit():
                raise InvalidInput(f"consultation request {value!r} is not a request number")
            ids.append(int(value))
        view = schedule_meeting(
            deps_of(request),
            actor=me.username,
            kind=kind,
            at=_parse_local(at, t("会议时间", "time")),
            place=place,
            video_link=video_link,
            title=title,
            requests=ids,
            invited=form["invited"] if kind == "joint_meeting" else [],
            duration_minutes=minutes,
        )
    except DomainError as exc:
        message = t("无法安排会议：", "Cannot schedule the meeting: ") + exc.message
        return _secretary_page(request, me, status=status_of(exc), error=message, form=form)
    return RedirectResponse(f"/meetings/{view.id}?done=scheduled", status_code=303)


@router.post("/secretary/prepare", response_class=HTMLResponse)
def prepare(
    request: Request,
    me: Officer,
    csrf_token: Annotated[str, Form(max_length=100)] = "",
    period: Annotated[str, Form(max_length=20)] = "",
    schedule_id: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """Prepare the period's regular joint meeting (its agenda is built from the case record now)."""
    form_csrf(me, csrf_token)
    _require(request, me, SECRETARY_ROLES, "筹备联席会议", "Preparing joint meetings")
    t = _t(request)
    try:
        view = prepare_meeting(
            deps_of(request), period.strip(), schedule_id=schedule_id.strip() or None, actor=me.username
        )
    except DomainError as exc:
        message = t("无法筹备联席会议：", "Cannot prepare the joint meeting: ") + exc.message
        return _secretary_page(
            request, me, status=status_of(exc), error=message, form={"period": period, "schedule_id": schedule_id}
        )
    return RedirectResponse(f"/meetings/{view.id}?done={'prepared' if view.created else 'existing'}", status_code=303)


# --- the meeting page -----------------------------------------------------------------------------------------


def _meeting(request: Request, me: Identity, meeting_id: int) -> MeetingView:
    """The meeting as ``me`` may see it; an unknown (or hidden) meeting is a 404 page."""
    try:
        return show_meeting(deps_of(request), meeting_id, actor=me.username)
    except InvalidInput:
        raise _NotFound(meeting_id) from None


class _NotFound(Exception):
    def __init__(self, meeting_id: int) -> None:
        self.meeting_id = meeting_id


def _meeting_page(
    request: Request,
    me: Identity,
    view: MeetingView,
    *,
    status: int = 200,
    error: str = "",
    form: dict[str, Any] | None = None,
) -> HTMLResponse:
    deps = deps_of(request)
    t = _t(request)
    agencies = _agencies(request)
    case_nos = list(dict.fromkeys(a["case_no"] for a in view.agenda if a["case_no"]))
    done = request.query_params.get("done", "")
    return render(
        request,
        "meeting.html.j2",
        status=status,
        m=view,
        names={code: a.name for code, a in agencies.items()},
        case_nos=case_nos,
        video_href=_safe_link(view.video_link),
        may_edit=bool(SECRETARY_ROLES & set(me.roles)),
        movable=view.state in MOVABLE,
        attendable=view.state in ATTENDABLE,
        minutes_due=view.state == "held",
        resolution_rows=RESOLUTION_ROWS,
        min_at=_local_input(deps.now()),
        error=error,
        form=form or {},
        done=t(*DONE[done]) if done in DONE else "",
    )


def _after(
    request: Request,
    me: Identity,
    meeting_id: int,
    action: Callable[[], object],
    *,
    done: str,
    what: tuple[str, str],
    form: dict[str, Any],
) -> Response:
    """Run a meeting use case; on success back to the meeting page, on a refusal the page with the message
    (and what was typed, to correct it)."""
    t = _t(request)
    try:
        action()
    except DomainError as exc:
        view = _meeting(request, me, meeting_id)
        message = t(f"无法{what[0]}：", f"Cannot {what[1]}: ") + exc.message
        return _meeting_page(request, me, view, status=status_of(exc), error=message, form=form)
    return RedirectResponse(f"/meetings/{meeting_id}?done={done}", status_code=303)


@router.get("/meetings/{meeting_id}.ics")
def meeting_ics(request: Request, me: Officer, meeting_id: int) -> Response:
    """The meeting's iCalendar invitation (the same as the one sent with the notice)."""
    view = _checked_meeting(request, me, meeting_id)
    if isinstance(view, Response):
        return view
    return Response(
        view.ics,
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="meeting-{view.id}.ics"'},
    )


@router.get("/meetings/{meeting_id}", response_class=HTMLResponse)
def meeting(request: Request, me: Officer, meeting_id: int) -> Response:
    """A meeting: details, agenda (cases linked), requests, action items; the secretary's forms."""
    view = _checked_meeting(request, me, meeting_id)
    if isinstance(view, Response):
        return view
    return _meeting_page(request, me, view)


def _checked_meeting(request: Request, me: Identity, meeting_id: int) -> MeetingView | Response:
    if not 1 <= meeting_id <= 2**31:
        return _no_meeting(request, meeting_id)
    try:
        return _meeting(request, me, meeting_id)
    except _NotFound:
        return _no_meeting(request, meeting_id)


def _no_meeting(request: Request, meeting_id: int) -> HTMLResponse:
    t = _t(request)
    return error_page(request, 404, t(f"没有第 {meeting_id} 号会议（或您无权查看）", f"no meeting #{meeting_id}"))


def _meeting_post(request: Request, me: Identity, meeting_id: int, csrf_token: str) -> Response | None:
    """The checks every meeting form makes first: CSRF, the secretary's role, the meeting (else a 404 page)."""
    form_csrf(me, csrf_token)
    _require(request, me, SECRETARY_ROLES, "会议操作", "Meeting actions")
    checked = _checked_meeting(request, me, meeting_id)
    return checked if isinstance(checked, Response) else None


@router.post("/meetings/{meeting_id}/attendance", response_class=HTMLResponse)
def attendance(
    request: Request,
    me: Officer,
    meeting_id: int,
    csrf_token: Annotated[str, Form(max_length=100)] = "",
    agency: Annotated[list[str] | None, Form(max_length=50)] = None,
    officers: Annotated[list[str] | None, Form(max_length=50)] = None,
) -> Response:
    """Record who attended, per invited agency (agencies left blank are skipped)."""
    codes, names = list(agency or []), list(officers or [])
    refused = _meeting_post(request, me, meeting_id, csrf_token)
    if refused is not None:
        return refused
    filled = [(code, text) for code, text in zip(codes, names, strict=False) if text.strip()]

    def act() -> None:
        if not filled:
            raise InvalidInput("give the names of those who attended for at least one agency (e.g. 张三，李四)")
        for code, text in filled:
            people = [p.strip() for p in text.replace("，", ",").replace("、", ",").split(",")]
            record_attendance(deps_of(request), meeting_id, actor=me.username, agency=code, officers=people)

    form = {"attendance": dict(zip(codes, names, strict=False))}
    return _after(request, me, meeting_id, act, done="attended", what=("记录出席情况", "record attendance"), form=form)


@router.post("/meetings/{meeting_id}/minutes", response_class=HTMLResponse)
def minutes(
    request: Request,
    me: Officer,
    meeting_id: int,
    csrf_token: Annotated[str, Form(max_length=100)] = "",
    text: Annotated[str, Form(max_length=20000)] = "",
    res_owner: Annotated[list[str] | None, Form(max_length=100)] = None,
    res_due: Annotated[list[str] | None, Form(max_length=100)] = None,
    res_text: Annotated[list[str] | None, Form(max_length=100)] = None,
    res_case: Annotated[list[str] | None, Form(max_length=100)] = None,
) -> Response:
    """Approve the minutes; each filled resolution row becomes an action item (on its case, if one)."""
    owners, dues, texts, cases = (list(v or []) for v in (res_owner, res_due, res_text, res_case))
    width = max(len(owners), len(dues), len(texts), len(cases))
    rows = [
        {
            "owner": _at(owners, i),
            "due": _at(dues, i),
            "text": _at(texts, i),
            "case": _at(cases, i),
        }
        for i in range(width)
    ]
    refused = _meeting_post(request, me, meeting_id, csrf_token)
    if refused is not None:
        return refused

    def act() -> None:
        resolutions = []
        for n, row in enumerate(rows, start=1):
            if not row["text"].strip():
                if row["due"].strip() or row["case"].strip():
                    raise InvalidInput(f"resolution row {n}: write what is to be done")
                continue
            if not row["owner"].strip():
                raise InvalidInput(f"resolution row {n}: choose the agency that owns it")
            resolutions.append(
                Resolution(
                    text=row["text"].strip(),
                    owner_agency=row["owner"].strip(),
                    due=_parse_due(row["due"]),
                    case_no=row["case"].strip() or None,
                )
            )
        record_minutes(deps_of(request), meeting_id, actor=me.username, text=text, resolutions=resolutions)

    form = {"text": text, "resolutions": rows}
    return _after(request, me, meeting_id, act, done="minutes", what=("通过会议纪要", "approve the minutes"), form=form)


def _at(values: Sequence[str], i: int) -> str:
    return values[i] if i < len(values) else ""


@router.post("/meetings/{meeting_id}/move", response_class=HTMLResponse)
def move(
    request: Request,
    me: Officer,
    meeting_id: int,
    csrf_token: Annotated[str, Form(max_length=100)] = "",
    to: Annotated[str, Form(max_length=40)] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Move the meeting to a later time (a new invitation goes out)."""
    refused = _meeting_post(request, me, meeting_id, csrf_token)
    if refused is not None:
        return refused
    t = _t(request)

    def act() -> None:
        when = _parse_local(to, t("改期后的时间", "new time"))
        move_meeting(deps_of(request), meeting_id, actor=me.username, to=when, reason=reason)

    form = {"to": to, "move_reason": reason}
    return _after(request, me, meeting_id, act, done="moved", what=("改期", "move the meeting"), form=form)


@router.post("/meetings/{meeting_id}/cancel", response_class=HTMLResponse)
def cancel(
    request: Request,
    me: Officer,
    meeting_id: int,
    csrf_token: Annotated[str, Form(max_length=100)] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Cancel the meeting (its consultation requests go back to the queue)."""
    refused = _meeting_post(request, me, meeting_id, csrf_token)
    if refused is not None:
        return refused

    def act() -> None:
        cancel_meeting(deps_of(request), meeting_id, actor=me.username, reason=reason)

    form = {"cancel_reason": reason}
    return _after(request, me, meeting_id, act, done="cancelled", what=("取消会议", "cancel the meeting"), form=form)


# --- the supervisor ----------------------------------------------------------------------------------------------

#: The columns of each list: (row key, Chinese header, English header). Page and Excel export share them.
COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    "overdue": [
        ("region_name", "县区", "County"),
        ("agency_name", "责任机关", "Responsible agency"),
        ("case_no", "案件编号", "Case"),
        ("title", "案件名称", "Title"),
        ("state_label", "案件状态", "State"),
        ("rule", "期限规则", "Rule"),
        ("label", "期限", "Deadline"),
        ("due_at", "届满时间", "Due"),
        ("remaining", "剩余（负数为已超期）", "Left (negative: overdue)"),
        ("basis", "法律依据", "Legal basis"),
    ],
    "supervised": [
        ("region_name", "县区", "County"),
        ("agency_name", "承办机关", "Handling agency"),
        ("case_no", "案件编号", "Case"),
        ("title", "案件名称", "Title"),
        ("level_label", "督办级别", "Level"),
        ("sup_state", "督办状态", "Listing state"),
        ("listed_at", "列入督办时间", "Listed"),
        ("due_at", "督办期限", "Due"),
        ("next_report_due_at", "下次报告期限", "Next report due"),
        ("reports", "已报告次数", "Reports"),
        ("escalations", "升级次数", "Escalations"),
        ("overdue", "已逾期", "Overdue"),
    ],
    "action_items": [
        ("region_name", "县区", "County"),
        ("agency_name", "责任机关", "Owner agency"),
        ("id", "事项编号", "Item"),
        ("meeting_id", "会议编号", "Meeting"),
        ("case_no", "案件编号", "Case"),
        ("text", "议定事项", "Action item"),
        ("due_at", "办理期限", "Due"),
        ("escalations", "升级次数", "Escalations"),
    ],
    "cases": [
        ("region_name", "县区", "County"),
        ("agency_name", "承办机关", "Agency"),
        ("case_no", "案件编号", "Case"),
        ("title", "案件名称", "Title"),
        ("phase_label", "阶段", "Phase"),
        ("state_label", "状态", "State"),
        ("received_at", "受理日期", "Received"),
        ("overdue_deadlines", "逾期期限数", "Overdue deadlines"),
        ("supervised", "挂牌督办", "Supervised"),
    ],
}
LISTS: dict[str, tuple[str, str]] = {
    "overdue": ("逾期期限", "Overdue deadlines"),
    "supervised": ("挂牌督办案件", "Cases under listed supervision"),
    "escalated": ("督办升级案件", "Escalated supervisions"),
    "action_items": ("逾期未完成的议定事项", "Overdue open action items"),
    "cases": ("案件", "Cases"),
}


#: Rows of a list on a page, and in an Excel export; the counts above the lists are complete.
LIST_LIMIT = 500
EXPORT_LIMIT = 20_000


class Board:
    """What the supervisor's pages show, read as the officer: counts in SQL, each list its first rows."""

    def __init__(self, request: Request, me: Identity, *, limit: int = LIST_LIMIT) -> None:
        self.request, self.me = request, me
        self.deps = deps_of(request)
        self.agencies = _agencies(request)
        self.lang = lang_of(request)
        self.limit = limit

    def _where(self, code: str) -> dict[str, str]:
        agency = self.agencies.get(code)
        return {
            "agency_code": code,
            "agency_name": agency.name if agency else code,
            "region": agency.region if agency else "",
            "region_name": agency.region_name if agency else "",
        }

    def codes(self, agency: str | None, region: str | None) -> set[str] | None:
        """The agencies a drill-down is about (one agency, the agencies of a county); None: all."""
        if not agency and not region:
            return None
        codes = {agency} if agency else set(self.agencies)
        return {c for c in codes if self._where(c)["region"] == region} if region else codes

    def case_rows(self, agencies: set[str] | None = None, phases: set[str] | None = None) -> list[dict[str, Any]]:
        """The visible cases, newest first (the first ``limit``)."""
        lines, _total = case_lines(
            self.deps, actor=self.me.username, agencies=agencies, phases=phases, limit=self.limit
        )
        return [
            {
                "case_no": c.case_no,
                "title": c.title,
                "phase": c.phase,
                "phase_label": state_label(c.phase, self.lang),
                "state_label": state_label(c.state, self.lang),
                "received_at": c.received_at.astimezone(SHANGHAI).strftime("%Y-%m-%d"),
                "overdue_deadlines": c.overdue_deadlines,
                "supervised": c.supervised,
                **self._where(c.agency),
            }
            for c in lines
        ]

    def supervised(self, agencies: set[str] | None = None, *, escalated: bool = False) -> list[dict[str, Any]]:
        """Open listings of the visible cases, by place."""
        listings = open_listings(
            self.deps, actor=self.me.username, agencies=agencies, escalated=escalated, limit=self.limit
        )
        rows = [
            {
                "case_no": s.case_no,
                "title": title,
                "level_label": LEVEL_LABELS.get(s.level, (s.level, s.level))[self.lang == "en"],
                "sup_state": s.state_label,
                "listed_at": s.listed_at,
                "due_at": s.due_at,
                "next_report_due_at": s.next_report_due_at,
                "reports": s.reports,
                "escalations": s.escalations,
                "overdue": s.overdue,
                **self._where(s.handling_agency),
            }
            for s, title in listings
        ]
        return _by_place(rows)

    def overdue(self, agencies: set[str] | None = None) -> list[dict[str, Any]]:
        """Running deadlines past due (the first ``limit`` by due date), by the agency that must act."""
        rows = [
            {**d.to_dict(), "state_label": state_label(d.state, self.lang), **self._where(d.responsible_agency)}
            for d in list_deadlines(
                self.deps, actor=self.me.username, overdue=True, agencies=agencies, limit=self.limit
            )
        ]
        return _by_place(rows)

    def action_items(self, items: list[ActionItemView] | None = None) -> list[dict[str, Any]]:
        """Open action items past due (those on a case only when the case is visible)."""
        if items is None:
            items = overdue_action_items(self.deps, actor=self.me.username)
        return _by_place([{**a.to_dict(), **self._where(a.owner_agency)} for a in items])

    def rows(
        self, kind: str, *, agency: str | None, region: str | None, phase: str | None, step: str | None
    ) -> list[dict[str, Any]]:
        """A drill-down list: ``kind``'s rows of one agency or county, cases of a phase or funnel step."""
        codes = self.codes(agency, region)
        if kind != "cases":
            if phase or step:
                return []  # only cases have a phase
            if kind == "overdue":
                return self.overdue(codes)
            if kind in ("supervised", "escalated"):
                return self.supervised(codes, escalated=kind == "escalated")
            return [r for r in self.action_items() if codes is None or r["agency_code"] in codes]
        phases = {phase} if phase else None
        if step:
            reaching = {p for p in REFERRAL_FUNNEL if step in funnel_steps(p)}
            phases = phases & reaching if phases is not None else reaching
        return self.case_rows(codes, phases)


def _by_place(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["region"], r["agency_code"], r.get("due_at", ""), r.get("case_no") or ""))


def _groups(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows (sorted by place) in groups of one agency, with their county."""
    groups: list[dict[str, Any]] = []
    for row in rows:
        if not groups or groups[-1]["agency_code"] != row["agency_code"]:
            groups.append({k: row[k] for k in ("agency_code", "agency_name", "region", "region_name")} | {"rows": []})
        groups[-1]["rows"].append(row)
    return groups


def _summary(board: Board, by_agency: dict[str, Counter[str]]) -> list[dict[str, Any]]:
    """Counts per agency, and per county (region), of each list."""
    lines: list[dict[str, Any]] = []
    regions: dict[str, Counter[str]] = defaultdict(Counter)
    for code in sorted(by_agency, key=lambda c: (board._where(c)["region"], c)):
        where = board._where(code)
        lines.append({"level": "agency", **where, **by_agency[code]})
        regions[where["region"]].update(by_agency[code])
    ordered = []
    for region in sorted(regions):
        mine = [line for line in lines if line["region"] == region]
        ordered += mine
        ordered.append(
            {
                "level": "region",
                "agency_code": "",
                "agency_name": "",
                "region": region,
                "region_name": mine[0]["region_name"],
                **regions[region],
            }
        )
    return ordered


def _bars(items: Iterable[tuple[str, float | None, str, str]], *, label_width: int = 170) -> dict[str, Any]:
    """Geometry of a horizontal bar chart: (label, value, value text, href) per bar."""
    items = list(items)
    top = max([v for _l, v, _x, _h in items if v is not None] + [0])
    width, bar_max, row = 720, 440, 30
    rows = []
    for i, (label, value, text, href) in enumerate(items):
        length = round(bar_max * (value or 0) / top) if top else 0
        rows.append(
            {
                "label": label,
                "text": text,
                "href": href,
                "y": 10 + i * row,
                "bar": max(length, 1 if value else 0),
                "text_x": label_width + max(length, 0) + 8,
            }
        )
    return {"width": width, "height": 20 + len(items) * row, "label_width": label_width, "rows": rows}


def _stage_period(deps: Deps, period: str | None) -> tuple[datetime, datetime, str, str]:
    """The span of the days-per-stage chart: a named month or quarter, else this quarter so far."""
    now = deps.now()
    if period:
        p = parse_period(period)
        if p.start > now:
            raise InvalidInput(f"period {p.key} has not begun")
        end = min(p.end, now)
        suffix = ("（至今）", " (so far)") if p.end > now else ("", "")
        return p.start, end, p.label + suffix[0], p.label_en + suffix[1]
    local = now.astimezone(SHANGHAI)
    start, _end = period_bounds(period_key(now, "quarter"))
    zh = f"本季度至今（{start:%Y-%m-%d} 至 {local:%Y-%m-%d}）"
    en = f"this quarter so far ({start:%Y-%m-%d} to {local:%Y-%m-%d})"
    return start, now, zh, en


def _drill(**params: str) -> str:
    return "/supervisor/cases?" + urlencode({k: v for k, v in params.items() if v})


@router.get("/supervisor", response_class=HTMLResponse)
def supervisor(
    request: Request, me: Officer, period: Annotated[str | None, Query(max_length=10)] = None
) -> HTMLResponse:
    """The dashboard: listed supervision, overdue deadlines and action items by agency and county; charts."""
    _require(request, me, SUPERVISOR_ROLES, "督办看板", "The supervision dashboard")
    board = Board(request, me)
    t = _t(request)
    lang = board.lang
    start, end, span_zh, span_en = _stage_period(board.deps, period)
    counts = figures(board.deps, actor=me.username, stages=(start, end))
    phases = counts.cases.per_phase
    phase_chart = _bars(
        (state_label(p, lang), phases.get(p, 0), str(phases.get(p, 0)), _drill(kind="cases", phase=p))
        for p in (*PHASES, CLOSED)
    )
    reached = counts.cases.funnel
    funnel_chart = _bars(
        (state_label(s, lang), reached.get(s, 0), str(reached.get(s, 0)), _drill(kind="cases", step=s))
        for s in REFERRAL_FUNNEL
    )
    durations = counts.stage_days
    medians = {k: median_days(v) for k, v in durations.items()}
    stage_chart = _bars(
        (
            s.label if lang == "zh" else s.label_en,
            medians[s.id],
            (t(f"{medians[s.id]} 天（{len(durations[s.id])} 件）", f"{medians[s.id]} d (n={len(durations[s.id])})"))
            if medians[s.id] is not None
            else t("本期无", "none"),
            "",
        )
        for s in STAGES
    )
    overdue = board.overdue()
    return render(
        request,
        "supervisor.html.j2",
        case_total=counts.cases.total,
        totals=counts.totals,
        summary=_summary(board, counts.by_agency),
        supervised=board.supervised(),
        overdue=overdue,
        overdue_groups=_groups(overdue),
        actions=board.action_items(counts.action_items),
        columns=COLUMNS,
        phase_chart=phase_chart,
        funnel_chart=funnel_chart,
        stage_chart=stage_chart,
        stage_span=t(span_zh, span_en),
        stages_measured=sum(len(v) for v in durations.values()),
        period=period or "",
        drill=_drill,
    )


@router.get("/supervisor/cases", response_class=HTMLResponse)
def supervisor_cases(
    request: Request,
    me: Officer,
    kind: Annotated[str, Query(max_length=20)] = "cases",
    agency: Annotated[str | None, Query(max_length=40)] = None,
    region: Annotated[str | None, Query(max_length=12)] = None,
    phase: Annotated[str | None, Query(max_length=20)] = None,
    step: Annotated[str | None, Query(max_length=20)] = None,
) -> HTMLResponse:
    """A drill-down list: the cases (or deadlines, listings, action items) behind a count of the dashboard."""
    _require(request, me, SUPERVISOR_ROLES, "督办看板", "The supervision dashboard")
    kind = _kind(kind)
    board = Board(request, me)
    rows = board.rows(kind, agency=agency, region=region, phase=phase, step=step)
    t = _t(request)
    what = [t(*LISTS[kind])]
    if agency:
        what.append(board._where(agency)["agency_name"])
    if region:
        what.append(next((a.region_name for a in board.agencies.values() if a.region == region), region))
    if phase:
        what.append(t("阶段：", "phase: ") + state_label(phase, board.lang))
    if step:
        what.append(t("已进入：", "reached: ") + state_label(step, board.lang))
    if len(rows) >= board.limit:
        what.append(t(f"显示前 {board.limit} 项", f"the first {board.limit}"))
    query = {"list": kind, "agency": agency or "", "region": region or "", "phase": phase or "", "step": step or ""}
    return render(
        request,
        "supervisor_cases.html.j2",
        heading=" · ".join(what),
        columns=COLUMNS["supervised" if kind == "escalated" else kind],
        rows=rows,
        export_href="/supervisor/export.xlsx?" + urlencode({k: v for k, v in query.items() if v}),
    )


def _kind(value: str) -> str:
    if value not in LISTS:
        raise InvalidInput(f"unknown list {value!r}; use one of {', '.join(LISTS)}")
    return value


@router.get("/supervisor/export.xlsx")
def supervisor_export(
    request: Request,
    me: Officer,
    list_: Annotated[str, Query(alias="list", max_length=20)] = "overdue",
    agency: Annotated[str | None, Query(max_length=40)] = None,
    region: Annotated[str | None, Query(max_length=12)] = None,
    phase: Annotated[str | None, Query(max_length=20)] = None,
    step: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    """A list of the dashboard as an Excel workbook: the page's columns (Chinese headers) and rows."""
    _require(request, me, SUPERVISOR_ROLES, "督办看板导出", "The dashboard export")
    kind = _kind(list_)
    board = Board(request, me, limit=EXPORT_LIMIT)
    rows = board.rows(kind, agency=agency, region=region, phase=phase, step=step)
    columns = [(key, zh) for key, zh, _en in COLUMNS["supervised" if kind == "escalated" else kind]]
    now = board.deps.now().astimezone(SHANGHAI)
    note = (
        f"导出人：{me.display_name}（{me.agency_code}）；导出时间：{now:%Y-%m-%d %H:%M}（北京时间）；共 {len(rows)} 条"
    )
    content = workbook(LISTS[kind][0], columns, rows, note=note)
    filename = f"jointcase-{kind.replace('_', '-')}-{now:%Y%m%d}.xlsx"
    return Response(content, media_type=XLSX, headers={"Content-Disposition": f'attachment; filename="{filename}"'})
