"""REST API ``/api/v1``: the same use cases as the CLI and the pages, as the calling officer.

Every route acts as the identity of its bearer token or session; what that officer may not see answers
404, what their agency or role may not do 403 (problem details, see ``app.web.problems``). Sending an
event takes an optional ``If-Match`` with the case version (its ``ETag``); a stale one answers 409.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.web.problems import PROBLEM_JSON
from app.web.security import api_identity, deps_of
from states.errors import InvalidInput
from workflows.auth import Identity, log_access
from workflows.cases import (
    advance_case,
    allowed_events,
    case_history,
    list_attachments,
    list_cases,
    open_case,
    show_case,
)
from workflows.dashboard import statistics as case_statistics
from workflows.deadlines import list_deadlines, parse_within
from workflows.documents import generate_document, list_documents, show_document
from workflows.evidence import list_evidence
from workflows.handoffs import case_handoffs
from workflows.meetings import (
    consultation_queue,
    list_action_items,
    list_meetings,
    request_consultation,
    schedule_meeting,
    show_meeting,
)
from workflows.outbox import inbox, mark_read
from workflows.supervision import show_supervision
from workflows.uow import Deps


class Problem(BaseModel):
    """An error (RFC 9457 problem details, ``application/problem+json``); ``code`` is stable for scripts."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["/problems/transition_refused"])
    title: str
    status: int
    code: str = Field(examples=["transition_refused"])
    detail: str
    instance: str | None = None


#: Inline (the model has no references): FastAPI would file a ``model`` under application/json instead.
_PROBLEM = Problem.model_json_schema()


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of these problem statuses."""
    what = {
        401: "Not signed in: no valid bearer token or session (`not_signed_in`).",
        403: "The caller's agency or role may not do this (`permission_denied`, `csrf_refused`).",
        404: "No such case (or meeting), or one the caller may not see: the same answer (`case_not_found`, "
        "`meeting_not_found`).",
        409: "Refused now: the event is not allowed in this state (with `allowed_events`), a guard failed, "
        "or `If-Match` is stale (`concurrent_update`).",
        422: "Bad input: a malformed request (`invalid_request`, with `errors`), bad event data "
        "(`invalid_event_data`) or values (`invalid_input`).",
    }
    content = {PROBLEM_JSON: {"schema": _PROBLEM}}
    return {status: {"description": what[status], "content": content} for status in statuses}


router = APIRouter(prefix="/api/v1", tags=["api"], responses=_problems(401, 403, 422))
#: Routes of one case add 404 (invisible or unknown), writes 409 (refused now).
ON_CASE = _problems(404)
ON_WRITE = _problems(404, 409)


async def _deps(request: Request) -> Deps:
    # Async on purpose: FastAPI runs a sync dependency in the thread pool, and under load every hop there
    # is a wait in the pool's queue and for the GIL (issue 8); this one only reads an attribute.
    return deps_of(request)


Me = Annotated[Identity, Depends(api_identity)]
AppDeps = Annotated[Deps, Depends(_deps)]
CaseNo = Annotated[str, Field(min_length=1, max_length=64)]


def _plausible(value: datetime) -> datetime:
    # Far-off years overflow when shown in Beijing time or stored: refuse them as bad input (422).
    if not 2000 <= value.year <= 2099:
        raise ValueError("give a time between 2000 and 2099 (ISO 8601, e.g. 2026-11-20T09:30+08:00)")
    return value


#: A time a person entered: ISO 8601, with an offset or read as Beijing time, in 2000-2099.
Moment = Annotated[datetime, AfterValidator(_plausible)]
#: Row ids: positive and within a 32-bit integer (a larger one is a bad request, not a database overflow).
RowId = Annotated[int, Field(ge=1, le=2**31 - 1)]
JSON = dict[str, Any]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenCase(_Body):
    """A new lead."""

    agency: str = Field(min_length=1, max_length=40)
    title: str = Field(min_length=1, max_length=500)
    source: str = Field(min_length=1, max_length=40)
    received_at: Moment | None = None
    note: str = Field(default="", max_length=2000)


class SendEvent(_Body):
    """An event for a case: its data keys are those of DOMAIN.md (the CLI's ``--set``)."""

    event: str = Field(min_length=1, max_length=60)
    data: dict[
        Annotated[str, Field(max_length=40)],
        Annotated[str, Field(max_length=2000)]
        | Annotated[int, Field(ge=-(10**15), le=10**15)]
        | Annotated[list[Annotated[str, Field(max_length=60)]], Field(max_length=50)],
    ] = Field(default_factory=dict, max_length=20)
    note: str = Field(default="", max_length=2000)
    effective_at: Moment | None = None


class GenerateDocument(_Body):
    """Generate an official document of the case."""

    kind: str = Field(min_length=1, max_length=40)
    subject_id: RowId | None = None


class RequestConsultation(_Body):
    """A consultation request on a case."""

    topic: str = Field(min_length=1, max_length=30)
    question: str = Field(min_length=1, max_length=2000)


class ScheduleMeeting(_Body):
    """Schedule a consultation (for requests) or a joint meeting."""

    kind: Literal["consultation", "joint_meeting"]
    at: Moment
    place: str = Field(default="", max_length=200)
    video_link: str = Field(default="", max_length=500)
    title: str = Field(default="", max_length=200)
    requests: list[RowId] = Field(default_factory=list, max_length=50)
    invited: list[Annotated[str, Field(max_length=40)]] = Field(default_factory=list, max_length=50)
    duration_minutes: int | None = Field(default=None, ge=15, le=1440)


class MarkRead(_Body):
    """Inbox items to mark read (none: all)."""

    ids: list[RowId] | None = Field(default=None, max_length=500)


def _if_match(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise InvalidInput(f'If-Match {value!r}: give the case version from its ETag, e.g. "7"')
    return int(text)


# --- who am I ---------------------------------------------------------------------------------------------


@router.get("/me")
def me(who: Me) -> JSON:
    """The calling officer: username, agency, roles."""
    return who.to_dict()


# --- cases --------------------------------------------------------------------------------------------------


@router.get("/cases")
def cases(
    who: Me,
    deps: AppDeps,
    state: Annotated[str | None, Query(max_length=40)] = None,
    phase: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> list[JSON]:
    """The cases this officer may see, newest first; filter by state or phase."""
    views = list_cases(deps, actor=who.username, state=state, limit=500 if phase else limit)
    return [v.to_dict() for v in views if phase is None or v.phase == phase][:limit]


@router.post("/cases", status_code=201)
def open_(body: OpenCase, who: Me, deps: AppDeps, response: Response) -> JSON:
    """Register a lead as a new case (a handler of the owning market regulator)."""
    view = open_case(
        deps,
        agency=body.agency,
        title=body.title,
        source=body.source,
        actor=who.username,
        received_at=body.received_at,
        note=body.note,
    )
    response.headers["ETag"] = f'"{view.version}"'
    response.headers["Location"] = f"/api/v1/cases/{view.case_no}"
    return view.to_dict()


@router.get("/cases/{case_no}", responses=ON_CASE)
def case(case_no: CaseNo, who: Me, deps: AppDeps, response: Response) -> JSON:
    """One case with its deadlines; ``ETag`` is its version (send it back as ``If-Match``)."""
    view = show_case(deps, case_no, actor=who.username)
    response.headers["ETag"] = f'"{view.version}"'
    return view.to_dict()


@router.get("/cases/{case_no}/history", responses=ON_CASE)
def history(case_no: CaseNo, who: Me, deps: AppDeps) -> list[JSON]:
    """The case's audit log, oldest first."""
    return [e.to_dict() for e in case_history(deps, case_no, actor=who.username)]


@router.get("/cases/{case_no}/events", responses=ON_CASE)
def events(case_no: CaseNo, who: Me, deps: AppDeps) -> list[JSON]:
    """The events allowed now, with who may send them and the data each takes."""
    return allowed_events(deps, case_no, actor=who.username)


@router.post("/cases/{case_no}/events", responses=ON_WRITE)
def send(
    case_no: CaseNo,
    body: SendEvent,
    who: Me,
    deps: AppDeps,
    response: Response,
    if_match: Annotated[str | None, Header(max_length=40)] = None,
) -> JSON:
    """Send an event; 409 when it is not allowed now or the version in ``If-Match`` is stale."""
    view = advance_case(
        deps,
        case_no,
        body.event,
        actor=who.username,
        data=body.data,
        note=body.note,
        effective_at=body.effective_at,
        expected_version=_if_match(if_match),
    )
    response.headers["ETag"] = f'"{view.version}"'
    return view.to_dict()


@router.get("/cases/{case_no}/handoffs", responses=ON_CASE)
def handoffs(case_no: CaseNo, who: Me, deps: AppDeps) -> list[JSON]:
    """Every hand-off and the answer it waits for."""
    return [h.to_dict() for h in case_handoffs(deps, case_no, actor=who.username)]


@router.get("/cases/{case_no}/evidence", responses=ON_CASE)
def evidence(case_no: CaseNo, who: Me, deps: AppDeps) -> list[JSON]:
    """The evidence and custody log (each read is logged)."""
    views = list_evidence(deps, case_no, actor=who.username)
    log_access(deps, who, case_no, "evidence")
    return [v.to_dict() for v in views]


@router.get("/cases/{case_no}/attachments", responses=ON_CASE)
def attachments(case_no: CaseNo, who: Me, deps: AppDeps) -> list[JSON]:
    """The case file (kinds, names, SHA-256)."""
    items = list_attachments(deps, case_no, actor=who.username)
    log_access(deps, who, case_no, "documents", "attachments")
    return items


@router.get("/cases/{case_no}/documents", responses=ON_CASE)
def documents(case_no: CaseNo, who: Me, deps: AppDeps) -> list[JSON]:
    """Generated documents and their versions (each read is logged)."""
    views = list_documents(deps, case_no, actor=who.username)
    log_access(deps, who, case_no, "documents")
    return [v.to_dict() for v in views]


@router.post("/cases/{case_no}/documents", status_code=201, responses=ON_WRITE)
def generate(case_no: CaseNo, body: GenerateDocument, who: Me, deps: AppDeps) -> JSON:
    """Generate (or find unchanged) an official document, as an officer of its issuing agency."""
    view = generate_document(deps, case_no, body.kind, actor=who.username, subject_id=body.subject_id)
    return view.to_dict()


@router.get("/cases/{case_no}/documents/{kind}", response_class=HTMLResponse, responses=ON_CASE)
def document(
    case_no: CaseNo,
    kind: Annotated[str, Field(max_length=40)],
    who: Me,
    deps: AppDeps,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> HTMLResponse:
    """The stored HTML of a document (the newest version unless ``version``)."""
    view = show_document(deps, case_no, kind, actor=who.username, version=version)
    log_access(deps, who, case_no, "document", f"{kind} v{view.version}")
    return HTMLResponse(
        view.html,
        headers={
            "ETag": f'"{view.sha256}"',
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
        },
    )


@router.get("/cases/{case_no}/supervision", responses=ON_CASE)
def supervision(case_no: CaseNo, who: Me, deps: AppDeps) -> list[JSON]:
    """The case's listed supervisions."""
    return [s.to_dict() for s in show_supervision(deps, case_no, actor=who.username)]


@router.post("/cases/{case_no}/consultations", status_code=201, responses=ON_WRITE)
def consult(case_no: CaseNo, body: RequestConsultation, who: Me, deps: AppDeps) -> JSON:
    """Request a consultation on the case."""
    return request_consultation(deps, case_no, actor=who.username, topic=body.topic, question=body.question).to_dict()


# --- across cases --------------------------------------------------------------------------------------------


@router.get("/deadlines")
def deadlines(
    who: Me,
    deps: AppDeps,
    overdue: bool = False,
    due_within: Annotated[str | None, Query(max_length=10, pattern=r"^\d{1,4}[dhw]$")] = None,
) -> list[JSON]:
    """Open deadlines of the cases this officer may see, nearest first."""
    span = parse_within(due_within) if due_within else None
    return [r.to_dict() for r in list_deadlines(deps, actor=who.username, overdue=overdue, due_within=span)]


@router.get("/consultations")
def consultations(
    who: Me, deps: AppDeps, state: Annotated[Literal["open", "scheduled", "resolved"] | None, Query()] = "open"
) -> list[JSON]:
    """The consultation queue (secretaries)."""
    return [c.to_dict() for c in consultation_queue(deps, actor=who.username, state=state)]


@router.get("/meetings")
def meetings(
    who: Me,
    deps: AppDeps,
    state: Annotated[str | None, Query(max_length=20)] = None,
    kind: Annotated[Literal["joint_meeting", "consultation"] | None, Query()] = None,
) -> list[JSON]:
    """The meetings this officer may see, by start time."""
    return [m.to_dict() for m in list_meetings(deps, actor=who.username, state=state, kind=kind)]


@router.post("/meetings", status_code=201)
def schedule(body: ScheduleMeeting, who: Me, deps: AppDeps) -> JSON:
    """Schedule a consultation or joint meeting (secretaries); invitations go out at once."""
    view = schedule_meeting(
        deps,
        actor=who.username,
        kind=body.kind,
        at=body.at,
        place=body.place,
        video_link=body.video_link,
        title=body.title,
        requests=body.requests,
        invited=body.invited,
        duration_minutes=body.duration_minutes,
    )
    return view.to_dict()


@router.get("/meetings/{meeting_id}", responses=ON_CASE)
def meeting(meeting_id: RowId, who: Me, deps: AppDeps) -> JSON:
    """One meeting with its agenda, requests and action items."""
    return show_meeting(deps, meeting_id, actor=who.username).to_dict()


@router.get("/action-items")
def action_items(who: Me, deps: AppDeps, open_only: bool = False) -> list[JSON]:
    """Action items (an officer sees their agency's)."""
    return [a.to_dict() for a in list_action_items(deps, actor=who.username, open_only=open_only)]


@router.get("/inbox")
def inbox_(who: Me, deps: AppDeps, unread: bool = False) -> JSON:
    """The officer's in-app inbox."""
    items, unread_count = inbox(deps, actor=who.username, unread_only=unread)
    return {"unread": unread_count, "items": [i.to_dict() for i in items]}


@router.post("/inbox/read")
def inbox_read(body: MarkRead, who: Me, deps: AppDeps) -> JSON:
    """Mark inbox items read."""
    return {"marked": mark_read(deps, actor=who.username, ids=body.ids)}


@router.get("/statistics")
def statistics(who: Me, deps: AppDeps) -> JSON:
    """Counts over the cases this officer may see: per phase, per state, the referral funnel, overdue."""
    return case_statistics(deps, actor=who.username)
