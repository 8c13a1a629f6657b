"""The handler's pages: the case list (nearest deadline first, coloured by urgency), opening a case, and
the case page (lifecycle, timeline, deadlines, hand-offs, evidence, documents, and a form for each event
the officer's agency may send now).

Every read and write goes through the use cases as the signed-in officer, so access is theirs: a case the
officer may not see answers 404, an event their agency may not send 403. A refused event re-renders the
case page with the engine's message (it names the case, the state and the allowed events), never a
traceback. Reading the case page logs the evidence and document reads (``workflows.auth.log_access``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.web.pages import Officer, error_page, form_csrf, lang_of, render
from app.web.problems import status_of
from app.web.security import CsrfRefused, deps_of
from states.errors import DomainError, InvalidInput
from states.events import EVENT_DATA, GROUNDS, JUDGMENT_OUTCOMES, LEAD_SOURCES, Field
from states.lifecycle import CLOSED, PHASES, SUSPENDED, CaseLifecycle, event_label, state_label
from states.meeting import CONSULTATION_TOPICS
from workflows.auth import Identity, log_access
from workflows.cases import (
    CaseView,
    DeadlineView,
    advance_case,
    allowed_events,
    case_history,
    list_attachments,
    list_cases,
    open_case,
    show_case,
)
from workflows.documents import list_documents, show_document
from workflows.evidence import list_evidence
from workflows.handoffs import case_handoffs
from workflows.meetings import request_consultation

router = APIRouter(include_in_schema=False)

CaseNo = Annotated[str, Path(min_length=1, max_length=64)]

SOON_SECONDS = 3 * 86400  # "due soon": within three days
#: The lifecycle as drawn on the case page: each phase with its states, from the chart itself.
LIFECYCLE: tuple[tuple[str, tuple[str, ...]], ...] = tuple(
    (phase, tuple(s.id for s in CaseLifecycle.states_map[phase].states)) for phase in PHASES
)
FILTER_STATES: tuple[str, ...] = (*(s for _p, states in LIFECYCLE for s in states), SUSPENDED, CLOSED)
FILTER_PHASES: tuple[str, ...] = (*PHASES, CLOSED)

AGENCY_KINDS: dict[str, tuple[str, str]] = {
    "market_regulation": ("市场监管部门", "market regulator"),
    "police": ("公安机关", "police"),
    "procuratorate": ("检察院", "procuratorate"),
    "court": ("法院", "court"),
    "justice": ("司法局", "justice bureau"),
}
DEADLINE_STATUS: dict[str, tuple[str, str]] = {
    "running": ("计时中", "running"),
    "paused": ("已暂停", "paused"),
    "met": ("已按期办结", "met"),
    "missed": ("已超期", "missed"),
    "cancelled": ("已取消", "cancelled"),
}
HANDOFF_STATUS: dict[str, tuple[str, str]] = {
    "waiting": ("等待答复", "waiting"),
    "answered": ("已答复", "answered"),
    "missed": ("超期未答复", "missed"),
    "answered_late": ("逾期答复", "answered late"),
    "withdrawn": ("已撤回", "withdrawn"),
    "paused": ("已暂停", "paused"),
}
ATTACHMENT_LABELS: dict[str, tuple[str, str]] = {
    "transfer_letter": ("移送书", "transfer letter"),
    "investigation_report": ("调查报告", "investigation report"),
    "items_list": ("涉案物品清单", "list of items"),
    "appraisal_report": ("检验报告或鉴定结论", "appraisal report"),
    "other": ("其他材料", "other material"),
}
#: Labels of the event data keys (DOMAIN.md names them; the form shows these).
DATA_LABELS: dict[str, tuple[str, str]] = {
    "reason": ("理由", "Reason"),
    "ground": ("移送依据", "Ground"),
    "loss_amount": ("损失数额（元）", "Loss (RMB)"),
    "illegal_gain": ("违法所得数额（元）", "Illegal gain (RMB)"),
    "fine_paid": ("已缴纳罚款（元）", "Fine already paid (RMB)"),
    "to_agency": ("接收机关代码", "Receiving agency code"),
    "agencies": ("参与机关代码（逗号分隔）", "Agency codes (comma-separated)"),
    "fine_amount": ("罚款数额（元）", "Fine (RMB)"),
    "confiscated_amount": ("没收数额（元）", "Confiscated (RMB)"),
    "outcome": ("判决结果", "Outcome"),
    "sentence": ("刑罚", "Sentence"),
    "institution": ("鉴定机构", "Appraisal institution"),
    "subject": ("鉴定类别", "Appraisal subject"),
    "questions": ("委托鉴定事项", "Questions for the appraisal"),
    "conclusion": ("鉴定意见", "Conclusion"),
    "opinion_no": ("鉴定意见书编号", "Opinion number"),
    "opinion_sha256": ("鉴定意见书 SHA-256", "Opinion SHA-256"),
    "approved_by": ("批准人（用户名）", "Approved by (username)"),
    # keys of audit records that are not event data
    "agency": ("机关", "Agency"),
    "source": ("线索来源", "Source"),
    "topic": ("会商事项", "Topic"),
    "question": ("问题", "Question"),
    "request": ("申请编号", "Request"),
}
OUTCOME_LABELS: dict[str, tuple[str, str]] = {
    "not_filed": ("不予立案", "not filed"),
    "transferred_out": ("移送管辖", "transferred out"),
    "no_violation": ("不构成违法", "no violation"),
    "penalized": ("已作出行政处罚", "penalized"),
    "not_prosecuted": ("不起诉", "not prosecuted"),
    "convicted": ("有罪判决", "convicted"),
    "acquitted": ("无罪判决", "acquitted"),
    "withdrawn": ("撤销", "withdrawn"),
}
CHOICE_LABELS: dict[str, tuple[str, str]] = {
    "loss": ("给权利人造成损失30万元以上", "loss to the right holder"),
    "illegal_gain": ("违法所得30万元以上", "illegal gain"),
    "bankruptcy": ("直接导致破产、倒闭", "bankruptcy or closure"),
    "other_major_loss": ("其他重大损失", "other major loss"),
    "reasonable_suspicion": ("有合理怀疑需公安采取措施", "reasonable suspicion"),
    "convicted": ("有罪", "convicted"),
    "acquitted": ("无罪", "acquitted"),
    "non_public": ("非公知性", "non-public"),
    "identity": ("同一性", "identity"),
    "loss_valuation": ("损失评估", "loss valuation"),
}
assert set(CHOICE_LABELS) >= {*GROUNDS, *JUDGMENT_OUTCOMES}


# --- small helpers ------------------------------------------------------------------------------------------


def _pick(labels: dict[str, tuple[str, str]], key: str, lang: str) -> str:
    zh, en = labels.get(key, (key, key))
    return en if lang == "en" else zh


_LEFT = re.compile(r"^(-?)(\d+)d(\d+)h$|^(-?)(\d+)h(\d+)m$")


def left_seconds(remaining: str) -> int | None:
    """Seconds left on a deadline from the use case's ``remaining`` ("2d3h", "-5h10m"); None if blank."""
    m = _LEFT.match(remaining or "")
    if not m:
        return None
    if m.group(2) is not None:
        sign, seconds = m.group(1), int(m.group(2)) * 86400 + int(m.group(3)) * 3600
    else:
        sign, seconds = m.group(4), int(m.group(5)) * 3600 + int(m.group(6)) * 60
    return -seconds if sign else seconds


def left_text(remaining: str, lang: str) -> str:
    """ "还剩 2天3小时" / "超期 5小时10分" (or English) from the use case's ``remaining``."""
    m = _LEFT.match(remaining or "")
    if not m:
        return remaining
    if m.group(2) is not None:
        late, big, small = bool(m.group(1)), m.group(2), m.group(3)
        span = f"{big}天{small}小时" if lang != "en" else f"{big}d {small}h"
    else:
        late, big, small = bool(m.group(4)), m.group(5), m.group(6)
        span = f"{big}小时{small}分" if lang != "en" else f"{big}h {small}m"
    if lang == "en":
        return f"{span} overdue" if late else f"{span} left"
    return f"超期 {span}" if late else f"还剩 {span}"


def when(value: str) -> str:
    """An ISO time in Beijing time as "2026-11-20 09:30" (all times shown are Asia/Shanghai)."""
    return value[:16].replace("T", " ") if value else ""


def is_open(deadline: DeadlineView) -> bool:
    """A deadline whose clock still runs (or is paused); ``overdue`` is set only on open ones."""
    return deadline.status in ("running", "paused") or deadline.overdue


def urgency(deadline: DeadlineView | None) -> str:
    """The row colour: overdue, due within three days, or in time ("" without an open deadline)."""
    if deadline is None:
        return ""
    seconds = left_seconds(deadline.remaining)
    if deadline.overdue or (seconds is not None and seconds < 0):
        return "urgent-overdue"
    if seconds is not None and seconds <= SOON_SECONDS:
        return "urgent-soon"
    return "urgent-ok"


def nearest_deadline(view: CaseView) -> DeadlineView | None:
    """The open deadline with the least time left (a paused one counts with its frozen time)."""
    open_ = [d for d in view.deadlines if is_open(d)]
    if not open_:
        return None
    return min(open_, key=lambda d: (left_seconds(d.remaining) or 0, d.due_at))


@dataclass
class CaseRow:
    """One row of the case list."""

    view: CaseView
    deadline: DeadlineView | None
    css: str

    @property
    def sort_key(self) -> tuple[int, int, str]:
        if self.deadline is None:
            return (1, 0, self.view.case_no)
        return (0, left_seconds(self.deadline.remaining) or 0, self.view.case_no)


def payload_items(payload: dict[str, Any], lang: str) -> list[tuple[str, str]]:
    """An audit row's data as (label, text) pairs: choices and sources in words, lists joined."""
    items = []
    for key in sorted(payload):
        if key in ("manifest", "title"):
            continue  # the title is the case's; the manifest is listed in the case file
        value = payload[key]
        if isinstance(value, list | tuple):
            text = "、".join(str(v) for v in value)
        elif key == "source":
            text = _pick(LEAD_SOURCES, str(value), lang)
        elif key == "topic":
            text = _pick(CONSULTATION_TOPICS, str(value), lang)
        elif isinstance(value, str) and value in CHOICE_LABELS and key in ("ground", "outcome", "subject"):
            text = _pick(CHOICE_LABELS, value, lang)
        else:
            text = str(value)
        items.append((_pick(DATA_LABELS, key, lang), text))
    return items


def _labels(lang: str) -> dict[str, Callable[..., Any]]:
    """Label functions for the templates, in the page language."""
    return {
        "state_label": lambda s: state_label(s, lang),
        "event_label": lambda e: event_label(e, lang),
        "kind_label": lambda k: _pick(AGENCY_KINDS, k, lang),
        "deadline_status": lambda s: _pick(DEADLINE_STATUS, s, lang),
        "handoff_status": lambda s: _pick(HANDOFF_STATUS, s, lang),
        "attachment_label": lambda k: _pick(ATTACHMENT_LABELS, k, lang),
        "data_label": lambda k: _pick(DATA_LABELS, k, lang),
        "choice_label": lambda c: _pick(CHOICE_LABELS, c, lang),
        "topic_label": lambda c: _pick(CONSULTATION_TOPICS, c, lang),
        "source_label": lambda s: _pick(LEAD_SOURCES, s, lang),
        "outcome_label": lambda o: _pick(OUTCOME_LABELS, o, lang),
        "payload_items": lambda p: payload_items(p, lang),
        "left_text": lambda r: left_text(r, lang),
        "when": when,
    }


def _agencies(request: Request) -> list[Any]:
    """The agencies of the deployment (config.toml), for names, kinds and the agency pickers."""
    settings = getattr(request.app.state, "settings", None)
    return list(settings.agencies) if settings is not None else []


def _agency_kind(request: Request, code: str) -> str:
    return next((a.kind for a in _agencies(request) if a.code == code), "")


def _may_open(request: Request, me: Identity) -> bool:
    return "handler" in me.roles and _agency_kind(request, me.agency_code) == "market_regulation"


async def _form(request: Request) -> dict[str, str]:
    """The posted form's text fields (the event form's data keys vary by event)."""
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


FormFields = Annotated[dict[str, str], Depends(_form)]


def _effective(value: str | None) -> datetime | None:
    text = (value or "").strip()
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)  # a bare local time is read as Beijing time by the use case
    except ValueError:
        raise InvalidInput(f"effective time {text!r}: give a date and time like 2026-11-20T09:30") from None


def _version(value: str | None) -> int | None:
    text = (value or "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise InvalidInput(f"expected version {text!r} is not a number; reload the case")
    return int(text)


def _case_url(case_no: str, **query: str) -> str:
    url = f"/cases/{quote(case_no, safe='')}"
    return url + ("?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items()) if query else "")


# --- the case list ------------------------------------------------------------------------------------------


def _cases_page(
    request: Request,
    me: Identity,
    *,
    state: str = "",
    phase: str = "",
    mine: bool = False,
    status: int = 200,
    error: str = "",
    opened: dict[str, str] | None = None,
) -> HTMLResponse:
    deps = deps_of(request)
    lang = lang_of(request)
    views = list_cases(deps, actor=me.username, state=state or None, limit=500)
    rows = []
    for view in views:
        if phase and view.phase != phase:
            continue
        if mine and me.agency_code not in view.participants:
            continue
        deadline = nearest_deadline(view)
        rows.append(CaseRow(view, deadline, urgency(deadline)))
    rows.sort(key=lambda r: r.sort_key)
    names = {a.code: (a.name_en if lang == "en" else a.name) for a in _agencies(request)}
    own = [a for a in _agencies(request) if a.code == me.agency_code]
    return render(
        request,
        "cases.html.j2",
        status=status,
        rows=rows,
        names=names,
        filters={"state": state, "phase": phase, "mine": mine},
        filter_states=FILTER_STATES,
        filter_phases=FILTER_PHASES,
        may_open=_may_open(request, me),
        open_agencies=own,
        sources=list(LEAD_SOURCES),
        opened=opened or {"agency": me.agency_code, "title": "", "source": ""},
        error=error,
        **_labels(lang),
    )


@router.get("/cases", response_class=HTMLResponse)
def cases(
    request: Request,
    me: Officer,
    state: Annotated[str, Query(max_length=40)] = "",
    phase: Annotated[str, Query(max_length=20)] = "",
    mine: Annotated[str, Query(max_length=5)] = "",
) -> HTMLResponse:
    """My cases and my agency's: nearest deadline first, coloured by urgency; filter by state and phase."""
    return _cases_page(
        request,
        me,
        state=state if state in FILTER_STATES else "",
        phase=phase if phase in FILTER_PHASES else "",
        mine=mine in ("1", "on", "true"),
    )


@router.post("/cases")
def open_(request: Request, me: Officer, form: FormFields) -> Response:
    """Open a case (a handler of a market regulator): on success, off to the new case's page."""
    try:
        form_csrf(me, form.get("csrf_token"))
    except CsrfRefused as exc:
        return error_page(request, 403, exc.message)
    entered = {k: form.get(k, "")[:500] for k in ("agency", "title", "source")}
    try:
        view = open_case(
            deps_of(request),
            agency=entered["agency"],
            title=entered["title"],
            source=entered["source"],
            actor=me.username,
        )
    except DomainError as exc:
        return _cases_page(request, me, status=status_of(exc), error=exc.message, opened=entered)
    return RedirectResponse(_case_url(view.case_no, done="open_case"), status_code=303)


# --- the case page ------------------------------------------------------------------------------------------


def _field_input(key: str, spec: Field) -> dict[str, Any]:
    """How a data key is entered: a select for choices, a number for amounts, text otherwise."""
    if spec.kind == "choice":
        widget = "select"
    elif spec.kind == "amount":
        widget = "number"
    else:
        widget = "text"
    return {"key": key, "widget": widget, "required": spec.required, "choices": spec.choices, "kind": spec.kind}


def _case_page(
    request: Request,
    me: Identity,
    case_no: str,
    *,
    status: int = 200,
    error: str = "",
    done: str = "",
    submitted: dict[str, Any] | None = None,
) -> HTMLResponse:
    deps = deps_of(request)
    lang = lang_of(request)
    view = show_case(deps, case_no, actor=me.username)  # 404 for a case this officer may not see
    events = allowed_events(deps, case_no, actor=me.username)
    history = case_history(deps, case_no, actor=me.username)
    handoffs = case_handoffs(deps, case_no, actor=me.username)
    evidence = list_evidence(deps, case_no, actor=me.username)
    log_access(deps, me, case_no, "evidence")
    documents = list_documents(deps, case_no, actor=me.username)
    attachments = list_attachments(deps, case_no, actor=me.username)
    log_access(deps, me, case_no, "documents", "documents, attachments")

    mine = [e for e in events if e["you_may_send"]]
    others = [e for e in events if not e["you_may_send"]]
    forms = [
        {
            "event": e["event"],
            "label": event_label(e["event"], lang),
            "fields": [_field_input(k, spec) for k, spec in EVENT_DATA.get(e["event"], {}).items()],
        }
        for e in mine
    ]
    visited = {h.to_state for h in history} | {h.from_state for h in history}
    names = {a.code: (a.name_en if lang == "en" else a.name) for a in _agencies(request)}
    my_kind = _agency_kind(request, me.agency_code)
    may_consult = "handler" in me.roles and me.agency_code in view.participants and view.state != CLOSED
    return render(
        request,
        "case.html.j2",
        status=status,
        case=view,
        names=names,
        lifecycle=LIFECYCLE,
        visited=visited,
        forms=forms,
        others=others,
        my_kind=my_kind,
        allowed_now=[e["event"] for e in events],
        history=list(reversed(history)),
        handoffs=handoffs,
        evidence=evidence,
        documents=documents,
        attachments=attachments,
        agency_codes=[a.code for a in _agencies(request)],
        may_consult=may_consult,
        topics=list(CONSULTATION_TOPICS),
        error=error,
        done=done,
        submitted=submitted or {},
        **_labels(lang),
    )


@router.get("/cases/{case_no}", response_class=HTMLResponse)
def case_page(
    request: Request, me: Officer, case_no: CaseNo, done: Annotated[str, Query(max_length=60)] = ""
) -> HTMLResponse:
    """The case: where it stands, what happened, its clocks, hand-offs, evidence, documents — and what I can do."""
    return _case_page(request, me, case_no, done=done)


@router.post("/cases/{case_no}/events")
def send_event(request: Request, me: Officer, case_no: CaseNo, form: FormFields) -> Response:
    """Send one event from its form; a refusal re-renders the case page with the reason."""
    try:
        form_csrf(me, form.get("csrf_token"))
    except CsrfRefused as exc:
        return error_page(request, 403, exc.message)  # nothing written, not even the access log
    event = form.get("event", "").strip()[:60]
    data = {k.removeprefix("data."): v.strip() for k, v in form.items() if k.startswith("data.") and v.strip()}
    note = form.get("note", "").strip()
    submitted = {"event": event, "data": data, "note": note, "effective_at": form.get("effective_at", "")}
    try:
        if len(note) > 2000:
            raise InvalidInput("the note is longer than 2000 characters")
        advance_case(
            deps_of(request),
            case_no,
            event,
            actor=me.username,
            data=data,
            note=note,
            effective_at=_effective(form.get("effective_at")),
            expected_version=_version(form.get("expected_version")),
        )
    except DomainError as exc:
        return _case_page(request, me, case_no, status=status_of(exc), error=exc.message, submitted=submitted)
    return RedirectResponse(_case_url(case_no, done=event), status_code=303)


@router.post("/cases/{case_no}/consultations")
def consult(request: Request, me: Officer, case_no: CaseNo, form: FormFields) -> Response:
    """Ask the joint-meeting secretaries for a consultation on the case."""
    try:
        form_csrf(me, form.get("csrf_token"))
    except CsrfRefused as exc:
        return error_page(request, 403, exc.message)
    topic, question = form.get("topic", "")[:30], form.get("question", "")
    try:
        if len(question) > 2000:
            raise InvalidInput("the question is longer than 2000 characters")
        request_consultation(deps_of(request), case_no, actor=me.username, topic=topic, question=question)
    except DomainError as exc:
        submitted = {"event": "consultation", "topic": topic, "question": question}
        return _case_page(request, me, case_no, status=status_of(exc), error=exc.message, submitted=submitted)
    return RedirectResponse(_case_url(case_no, done="consultation"), status_code=303)


@router.get("/cases/{case_no}/documents/{kind}", response_class=HTMLResponse)
def document(
    request: Request,
    me: Officer,
    case_no: CaseNo,
    kind: Annotated[str, Path(max_length=40)],
    version: Annotated[int | None, Query(ge=1, le=100_000)] = None,
) -> HTMLResponse:
    """A generated document as stored (the newest version unless ``version``); the read is logged."""
    deps = deps_of(request)
    view = show_document(deps, case_no, kind, actor=me.username, version=version)
    log_access(deps, me, case_no, "document", f"{kind} v{view.version}")
    return HTMLResponse(
        view.html,
        headers={
            "ETag": f'"{view.sha256}"',
            # The stored document is our own escaped rendering; still, no script may run in it.
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox",
            "X-Content-Type-Options": "nosniff",
        },
    )
