"""``jointcase consult``, ``meeting`` and ``action``: case consultations, joint meetings and their resolutions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from app.cli import AsOpt, AsReadOpt, JsonOpt, _deps, _emit, _errors, _parse_time, out
from states.errors import InvalidInput
from workflows.meetings import (
    ActionItemView,
    MeetingView,
    cancel_meeting,
    complete_action_item,
    consultation_queue,
    list_action_items,
    list_meetings,
    move_meeting,
    parse_resolution,
    prepare_meeting,
    record_attendance,
    record_minutes,
    request_consultation,
    schedule_meeting,
    show_meeting,
)

consult_app = typer.Typer(help="Case consultations. 案件会商", no_args_is_help=True)
meeting_app = typer.Typer(help="Joint meetings and consultations. 联席会议", no_args_is_help=True)
action_app = typer.Typer(help="Action items decided by meetings. 议定事项", no_args_is_help=True)


def _ids(value: str | None, option: str) -> list[int]:
    if not value:
        return []
    try:
        return [int(i) for i in value.split(",") if i.strip()]
    except ValueError:
        raise InvalidInput(f"{option} {value!r}: give ids separated by commas, e.g. 1,2") from None


def _codes(value: str | None) -> list[str]:
    return [c.strip() for c in (value or "").split(",") if c.strip()]


def _required_time(value: str, option: str) -> object:
    parsed = _parse_time(value, option)
    assert parsed is not None
    return parsed


def _meeting(view: MeetingView) -> None:
    out.print(
        f"#{view.id} {view.kind_label} {view.title} — {view.state_label} ({view.state})\n"
        f"  {view.starts_at} → {view.ends_at}  {view.place or view.video_link}\n"
        f"  召集 convening: {view.convening_agency}; 邀请 invited: {', '.join(view.invited)}"
    )
    if view.agenda:
        table = Table(title="议程 agenda")
        for col in ("#", "kind", "item", "case_no"):
            table.add_column(col)
        for item in view.agenda:
            table.add_row(str(item["position"]), item["kind_label"], item["title"], item["case_no"] or "")
        out.print(table)
    for agency, names in view.attendance.items():
        out.print(f"  出席 {agency}: {'、'.join(names)}")
    if view.minutes:
        out.print(f"纪要 minutes: {view.minutes}")
    if view.action_items:
        _actions([ActionItemView(**a) for a in view.action_items], "议定事项 action items")


def _actions(views: list[ActionItemView], title: str) -> None:
    table = Table(title=title)
    for col in ("#", "meeting", "case_no", "owner", "due", "state", "text"):
        table.add_column(col)
    for v in views:
        state = f"{v.state_label}{' 逾期' if v.overdue else ''}"
        table.add_row(str(v.id), f"#{v.meeting_id}", v.case_no or "", v.owner_agency, v.due_at, state, v.text)
    out.print(table)


# --- consult ------------------------------------------------------------------------------------------


@consult_app.command("request")
def consult_request(
    case_no: str,
    topic: Annotated[
        str, typer.Option("--topic", help="evidence_recognition|legal_application|appraisal|sentencing|jurisdiction")
    ],
    question: Annotated[str, typer.Option("--question", help="What the agencies should discuss.")],
    actor: AsOpt,
    as_json: JsonOpt = False,
) -> None:
    """Ask the joint-meeting secretaries for a consultation on a case. 申请会商"""
    with _errors(as_json):
        view = request_consultation(_deps(), case_no, actor=actor, topic=topic, question=question)
        _emit(as_json, view.to_dict(), lambda: typer.echo(view.id))


@consult_app.command("queue")
def consult_queue(
    actor: AsReadOpt = None,
    all_: Annotated[bool, typer.Option("--all", help="Also scheduled and resolved requests.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The consultation requests waiting for a meeting (the secretaries' queue). 会商队列"""
    with _errors(as_json):
        views = consultation_queue(_deps(), actor=actor, state=None if all_ else "open")

        def human() -> None:
            table = Table(title="会商申请 consultation requests")
            for col in ("#", "case_no", "topic", "question", "by", "at", "state", "meeting"):
                table.add_column(col)
            for v in views:
                table.add_row(
                    str(v.id), v.case_no, v.topic_label, v.question, f"{v.requested_by} ({v.agency})",
                    v.requested_at, v.state, f"#{v.meeting_id}" if v.meeting_id else "",
                )  # fmt: skip
            out.print(table)

        _emit(as_json, [v.to_dict() for v in views], human)


# --- meeting ------------------------------------------------------------------------------------------


@meeting_app.command("prepare")
def meeting_prepare(
    period: Annotated[str, typer.Option("--period", help="The quarter or month, e.g. 2026-Q4 or 2026-10.")],
    schedule: Annotated[str | None, typer.Option("--schedule", help="Which [[meetings.schedules]] id.")] = None,
    actor: Annotated[str | None, typer.Option("--as", help="The secretary preparing it (default: system).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Prepare the period's joint meeting now (agenda, notice, invitations); prints the meeting id."""
    with _errors(as_json):
        kwargs = {"actor": actor} if actor else {}
        view = prepare_meeting(_deps(), period, schedule_id=schedule, **kwargs)
        _emit(as_json, view.to_dict(), lambda: typer.echo(view.id))


@meeting_app.command("show")
def meeting_show(
    meeting_id: int,
    actor: AsReadOpt = None,
    ics: Annotated[Path | None, typer.Option("--ics", help="Write the iCalendar invitation here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """One meeting: agenda (with case numbers), attendance, minutes, action items."""
    with _errors(as_json):
        view = show_meeting(_deps(), meeting_id, actor=actor)
        if ics is not None:
            ics.parent.mkdir(parents=True, exist_ok=True)
            ics.write_bytes(view.ics.encode("utf-8"))
        _emit(as_json, view.to_dict(), lambda: _meeting(view))


@meeting_app.command("list")
def meeting_list(
    actor: AsReadOpt = None,
    state: Annotated[str | None, typer.Option("--state", help="Only meetings in this state.")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="joint_meeting | consultation")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Meetings by start time (the meeting calendar). 会议日程"""
    with _errors(as_json):
        views = list_meetings(_deps(), actor=actor, state=state, kind=kind)

        def human() -> None:
            table = Table(title="会议 meetings")
            for col in ("#", "kind", "title", "starts", "place", "state", "agenda"):
                table.add_column(col)
            for v in views:
                table.add_row(
                    str(v.id), v.kind_label, v.title, v.starts_at, v.place or v.video_link, v.state_label,
                    str(len(v.agenda)),
                )  # fmt: skip
            out.print(table)

        _emit(as_json, [v.to_dict() for v in views], human)


@meeting_app.command("schedule")
def meeting_schedule(
    kind: Annotated[str, typer.Option("--kind", help="consultation | joint_meeting")],
    at: Annotated[str, typer.Option("--at", help="Start, ISO (Beijing time without an offset).")],
    actor: AsOpt,
    requests: Annotated[str | None, typer.Option("--requests", help="Consultation request ids, e.g. 1,2.")] = None,
    invite: Annotated[str | None, typer.Option("--invite", help="Agencies to invite, e.g. sm-psb,sm-court.")] = None,
    place: Annotated[str, typer.Option("--place", help="Where.")] = "",
    video: Annotated[str, typer.Option("--video", help="A video-conference link.")] = "",
    title: Annotated[str, typer.Option("--title", help="Title (default from the cases).")] = "",
    minutes: Annotated[int | None, typer.Option("--minutes", help="Length in minutes.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Schedule a consultation (for queued requests) or a joint meeting; invitations go out at once."""
    with _errors(as_json):
        view = schedule_meeting(
            _deps(),
            actor=actor,
            kind=kind,
            at=_required_time(at, "--at"),  # type: ignore[arg-type]
            place=place,
            video_link=video,
            title=title,
            requests=_ids(requests, "--requests"),
            invited=_codes(invite),
            duration_minutes=minutes,
        )
        _emit(as_json, view.to_dict(), lambda: _meeting(view))


@meeting_app.command("move")
def meeting_move(
    meeting_id: int,
    to: Annotated[str, typer.Option("--to", help="The new start, ISO.")],
    actor: AsOpt,
    reason: Annotated[str, typer.Option("--reason", help="Why it moves (told to everyone).")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Move a meeting; everyone invited gets the new time and an updated invitation. 改期"""
    with _errors(as_json):
        view = move_meeting(_deps(), meeting_id, actor=actor, to=_required_time(to, "--to"), reason=reason)  # type: ignore[arg-type]
        _emit(as_json, view.to_dict(), lambda: _meeting(view))


@meeting_app.command("cancel")
def meeting_cancel(
    meeting_id: int,
    reason: Annotated[str, typer.Option("--reason", help="Why (told to everyone).")],
    actor: AsOpt,
    as_json: JsonOpt = False,
) -> None:
    """Cancel a meeting; everyone invited is told; its consultation requests go back to the queue."""
    with _errors(as_json):
        view = cancel_meeting(_deps(), meeting_id, actor=actor, reason=reason)
        _emit(as_json, view.to_dict(), lambda: _meeting(view))


@meeting_app.command("attend")
def meeting_attend(
    meeting_id: int,
    agency: Annotated[str, typer.Option("--agency", help="The invited agency.")],
    officers: Annotated[str, typer.Option("--officers", help="Who attended, e.g. 张三,李四.")],
    actor: AsOpt,
    as_json: JsonOpt = False,
) -> None:
    """Record an agency's attendance; the meeting is then held. 签到"""
    with _errors(as_json):
        view = record_attendance(_deps(), meeting_id, actor=actor, agency=agency, officers=officers.split(","))
        _emit(as_json, view.to_dict(), lambda: _meeting(view))


@meeting_app.command("minutes")
def meeting_minutes(
    meeting_id: int,
    actor: AsOpt,
    text: Annotated[str | None, typer.Option("--text", help="The minutes.")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="Read the minutes from a UTF-8 text file.")] = None,
    resolution: Annotated[
        list[str] | None,
        typer.Option("--resolution", help="OWNER_AGENCY|DUE_DATE|TEXT[|CASE_NO]; repeat for each resolution."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve a held meeting's minutes; each resolution becomes an action item. 会议纪要"""
    with _errors(as_json):
        if (text is None) == (file is None):
            raise InvalidInput("give the minutes with --text or --file (one of them)")
        if file is not None:
            if not file.is_file():
                raise InvalidInput(f"file not found: {file}")
            text = file.read_text(encoding="utf-8")
        parsed = [parse_resolution(r) for r in resolution or []]
        view = record_minutes(_deps(), meeting_id, actor=actor, text=text or "", resolutions=parsed)
        _emit(as_json, view.to_dict(), lambda: _meeting(view))


# --- action -------------------------------------------------------------------------------------------


@action_app.command("list")
def action_list(
    actor: AsReadOpt = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only open items.")] = False,
    agency: Annotated[str | None, typer.Option("--agency", help="Only this owner agency.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Action items by due date (overdue ones marked). 议定事项"""
    with _errors(as_json):
        views = list_action_items(_deps(), actor=actor, open_only=open_only, agency=agency)
        _emit(as_json, [v.to_dict() for v in views], lambda: _actions(views, "议定事项 action items"))


@action_app.command("done")
def action_done(
    item_id: int,
    actor: AsOpt,
    note: Annotated[str, typer.Option("--note", help="What was done.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Mark an action item of your agency done."""
    with _errors(as_json):
        view = complete_action_item(_deps(), item_id, actor=actor, note=note)
        _emit(as_json, view.to_dict(), lambda: _actions([view], f"#{view.id}"))
