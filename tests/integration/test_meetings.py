"""The liaison mechanism: regular joint meetings (定期联席会议), case consultations (案件会商) and their action items
(议定事项). Injected clock (T0 = 2026-03-04 10:00 Beijing), SQLite.

The 2026-Q2 meeting of ``sm-quarterly`` (config.toml: first Tuesday of Jan/Apr/Jul/Oct 09:30, notice 7 days)
is Tuesday 2026-04-07 09:30: 4-6 April are the Qingming holidays, the 7th is a working day. The 2026-Q4 one
would fall on Tuesday 6 October, inside the National Day holidays (1-7 October), and moves to Thursday the 8th.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from icalendar import Calendar
from sqlalchemy import func, select

from app.settings import ConfigError, load_settings
from models.tables import ActionItem, AgendaItem, ConsultationRequest, Meeting, OutboxMessage
from states.calendar import END_OF_DAY, SHANGHAI
from states.errors import InvalidInput, PermissionDenied
from states.meeting import MeetingSchedule, period_bounds, period_key
from tests.conftest import REPO_CONFIG, CaseBuilder, FakeClock, make_deps, write_config
from workflows.cases import case_history, verify_audit
from workflows.deadlines import fire_due_deadlines
from workflows.documents import render_case_document
from workflows.meetings import (
    Resolution,
    cancel_meeting,
    complete_action_item,
    consultation_queue,
    list_action_items,
    list_meetings,
    move_meeting,
    parse_resolution,
    prepare_due_meetings,
    prepare_meeting,
    record_attendance,
    record_minutes,
    request_consultation,
    schedule_meeting,
    show_meeting,
)
from workflows.supervision import list_for_supervision
from workflows.uow import Deps, UnitOfWork

SECRETARY = "sm_amr_secretary"
HANDLER = "sm_amr_handler"
SUPERVISOR = "sm_amr_supervisor"
QUESTION = "涉案配方是否构成商业秘密中的技术信息"
INVITED = ("sm-amr", "sm-psb", "sm-procuratorate", "sm-court", "sm-justice", "jl-amr", "mx-amr")
LIAISONS = {f"{code.replace('-', '_')}_liaison" for code in INVITED}
TABLES = {
    "meetings": Meeting,
    "agenda_items": AgendaItem,
    "outbox": OutboxMessage,
    "consultation_requests": ConsultationRequest,
    "action_items": ActionItem,
}


# --- helpers ----------------------------------------------------------------------------------------


def beijing(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)  # type: ignore[misc]


def day_end(d: str) -> datetime:
    return datetime.combine(datetime.fromisoformat(d).date(), END_OF_DAY, tzinfo=SHANGHAI)


def set_clock(clock: FakeClock, at: datetime) -> None:
    assert at >= clock.now, "the clock only moves forward"
    clock.now = at


def counts(deps: Deps) -> dict[str, int]:
    with UnitOfWork(deps, read_only=True) as uow:
        return {
            name: uow.session.execute(select(func.count()).select_from(table)).scalar_one()
            for name, table in TABLES.items()
        }


def outbox(deps: Deps, kind: str) -> list[OutboxMessage]:
    with UnitOfWork(deps, read_only=True) as uow:
        rows = list(
            uow.session.execute(
                select(OutboxMessage).where(OutboxMessage.kind == kind).order_by(OutboxMessage.id)
            ).scalars()
        )
        uow.session.expunge_all()
        return rows


def events(deps: Deps, case_no: str) -> list[str]:
    return [e.event for e in case_history(deps, case_no)]


def invitation(ics: str) -> tuple[Calendar, Any]:
    cal = Calendar.from_ical(ics)
    [event] = cal.walk("VEVENT")
    return cal, event


def attendee_emails(event: Any) -> set[str]:
    found = event.get("ATTENDEE", [])
    found = found if isinstance(found, list) else [found]
    return {str(a).removeprefix("mailto:").removeprefix("MAILTO:") for a in found}


def consult(deps: Deps, builder: CaseBuilder, state: str = "police_review", title: str = "三明某公司工艺泄露案") -> Any:
    """A case of sm-amr (with the police taking part) and an open consultation request on it."""
    case = builder.to_state(state, title)
    request = request_consultation(deps, case.case_no, actor=HANDLER, topic="evidence_recognition", question=QUESTION)
    return case, request


def scheduled(deps: Deps, builder: CaseBuilder, at: datetime | None = None) -> tuple[Any, Any, Any]:
    case, request = consult(deps, builder)
    meeting = schedule_meeting(
        deps,
        actor=SECRETARY,
        kind="consultation",
        requests=[request.id],
        at=at or beijing(2026, 3, 10, 14, 30),
        place="三明市市场监督管理局 五楼会商室",
    )
    return case, request, meeting


def held(deps: Deps, clock: FakeClock, meeting_id: int) -> None:
    set_clock(clock, beijing(2026, 3, 10, 14, 35))
    record_attendance(deps, meeting_id, actor=SECRETARY, agency="sm-amr", officers=["陈明辉", "王秀英"])
    view = record_attendance(deps, meeting_id, actor=SECRETARY, agency="sm-psb", officers=["吴海涛"])
    assert view.state == "held"
    assert view.attendance == {"sm-amr": ["陈明辉", "王秀英"], "sm-psb": ["吴海涛"]}


# --- the regular joint meeting of a quarter -----------------------------------------------------------


def agenda_fixture(deps: Deps, builder: CaseBuilder, clock: FakeClock) -> dict[str, str]:
    """Four cases, each of which must reach the 2026-Q2 agenda, by agenda kind."""
    supervised = builder.to_state("investigating", "三明某公司客户名单泄露案")
    list_for_supervision(
        deps, supervised.case_no, actor=SUPERVISOR, level="city", due=day_end("2026-05-29"), every="30d", reason="重点"
    )
    late = builder.to_state("verifying", "三明某公司图纸泄露案")  # A1: 15 working days, due 2026-03-25
    disputed = builder.to_state("police_declined", "三明某公司源代码泄露案")
    asked = builder.to_state("investigating", "三明某公司配方泄露案")
    request_consultation(deps, asked.case_no, actor=HANDLER, topic="legal_application", question=QUESTION)
    # The notice window has not begun (the meeting is 2026-04-07 09:30, notice 7 days): nothing yet.
    set_clock(clock, beijing(2026, 3, 20, 10, 0))
    before = counts(deps)
    assert prepare_due_meetings(deps) == {"schedules": 1, "created": 0}
    assert counts(deps) == before
    set_clock(clock, beijing(2026, 3, 26, 9, 0))  # A1 of the verifying case expired on the 25th at 23:59
    assert fire_due_deadlines(deps).missed >= 1
    assert "deadline_missed" in events(deps, late.case_no)
    return {
        "supervised": supervised.case_no,
        "deadline_missed": late.case_no,
        "disputed_referral": disputed.case_no,
        "consultation": asked.case_no,
    }


def test_the_quarter_meeting_is_prepared_once_in_its_notice_window(
    deps: Deps, builder: CaseBuilder, clock: FakeClock
) -> None:
    cases = agenda_fixture(deps, builder, clock)
    set_clock(clock, beijing(2026, 3, 31, 9, 29))  # one minute before the window (7 days before 04-07 09:30)
    before = counts(deps)
    assert prepare_due_meetings(deps)["created"] == 0
    assert counts(deps) == before

    set_clock(clock, beijing(2026, 4, 1, 10, 0))
    assert prepare_due_meetings(deps) == {"schedules": 1, "created": 1}
    [meeting] = list_meetings(deps)
    assert (meeting.kind, meeting.schedule_id, meeting.period_key) == ("joint_meeting", "sm-quarterly", "2026-Q2")
    assert (meeting.state, meeting.starts_at, meeting.ends_at) == (
        "noticed",
        "2026-04-07T09:30+08:00",
        "2026-04-07T11:30+08:00",
    )
    assert (meeting.convening_agency, meeting.invited) == ("sm-amr", list(INVITED))
    found = {(item["kind"], item["case_no"]) for item in meeting.agenda}
    for kind, case_no in cases.items():
        assert (kind, case_no) in found, (kind, case_no, meeting.agenda)
    [ask] = [item for item in meeting.agenda if item["kind"] == "consultation"]
    assert QUESTION in ask["title"]
    assert meeting.agenda[-1]["kind"] == "statistics" and meeting.agenda[-1]["case_no"] is None
    assert [item["position"] for item in meeting.agenda] == list(range(1, len(meeting.agenda) + 1))

    # Run again, by the job or by hand: the same meeting, nothing new written, nobody told twice.
    after = counts(deps)
    assert prepare_due_meetings(deps) == {"schedules": 1, "created": 0}
    again = prepare_meeting(deps, "2026-Q2")
    assert (again.id, again.created) == (meeting.id, False)
    clock.advance(hours=5)
    assert prepare_due_meetings(deps)["created"] == 0
    assert prepare_meeting(deps, "2026-Q2", schedule_id="sm-quarterly", actor=SECRETARY).id == meeting.id
    assert counts(deps) == after
    assert show_meeting(deps, meeting.id).agenda == meeting.agenda


def test_the_notice_goes_to_every_invited_liaison_with_an_invitation(
    deps: Deps, builder: CaseBuilder, clock: FakeClock
) -> None:
    cases = agenda_fixture(deps, builder, clock)
    set_clock(clock, beijing(2026, 4, 1, 10, 0))
    prepare_due_meetings(deps)
    rows = outbox(deps, "meeting_notice")
    assert {r.recipient_user for r in rows} == LIAISONS
    emails = [r for r in rows if r.channel == "email"]
    assert {r.recipient_user for r in emails} == LIAISONS
    assert all(r.case_id is None and r.status == "pending" for r in rows)
    assert all(r.ics == "" for r in rows if r.channel != "email")
    uids = set()
    for row in emails:
        cal, event = invitation(row.ics)
        assert str(cal["METHOD"]) == "REQUEST"
        start = event["DTSTART"]
        assert start.params["TZID"] == "Asia/Shanghai"
        assert start.dt == beijing(2026, 4, 7, 9, 30)
        assert (start.dt.hour, start.dt.minute, start.dt.utcoffset()) == (9, 30, timedelta(hours=8))
        assert event["DTEND"].dt == beijing(2026, 4, 7, 11, 30)
        assert int(event["SEQUENCE"]) == 0
        assert attendee_emails(event) == {f"{user}@sanming.example" for user in LIAISONS}  # config.toml
        assert cal.walk("VTIMEZONE"), "the invitation carries its time zone"
        uids.add(str(event["UID"]))
        for case_no in cases.values():
            assert case_no in row.body, (case_no, row.body)
            assert case_no in row.body_html
        assert "2026-04-07T09:30+08:00" in row.body
    assert len(uids) == 1


def test_a_meeting_on_a_holiday_moves_to_the_next_working_day(deps: Deps) -> None:
    # First Tuesday of October 2026 = the 6th, inside the National Day holidays (1-7 October).
    view = prepare_meeting(deps, "2026-Q4")
    assert view.created and view.starts_at == "2026-10-08T09:30+08:00"
    assert view.ends_at == "2026-10-08T11:30+08:00"
    _cal, event = invitation(view.ics)
    assert event["DTSTART"].dt == beijing(2026, 10, 8, 9, 30)


def test_a_holiday_meeting_is_prepared_by_the_due_job(deps: Deps, clock: FakeClock) -> None:
    set_clock(clock, beijing(2026, 10, 1, 10, 0))  # within 7 days of both 6 October (the rule) and the 8th
    assert prepare_due_meetings(deps) == {"schedules": 1, "created": 1}
    [q4] = list_meetings(deps)
    assert (q4.period_key, q4.starts_at) == ("2026-Q4", "2026-10-08T09:30+08:00")


def test_a_meeting_moved_off_a_holiday_is_prepared_before_it_starts(deps: Deps, clock: FakeClock) -> None:
    set_clock(clock, beijing(2026, 10, 6, 12, 0))  # the job did not run in the holidays; the meeting is the 8th
    assert prepare_due_meetings(deps)["created"] == 1
    assert [m.period_key for m in list_meetings(deps)] == ["2026-Q4"]


def test_notice_days_zero_is_refused_at_load(tmp_path: Path) -> None:
    # A meeting must be noticed ahead: with 0 days the preparation window would never open before it starts.
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'z.db'}", **{r"notice_days = 7": "notice_days = 0"})
    with pytest.raises(ConfigError) as err:
        load_settings(config, env={})
    assert "meetings.schedules[0].notice_days" in err.value.message


# --- a consultation from request to minutes ----------------------------------------------------------


def test_a_consultation_from_request_to_resolution_and_minutes(
    deps: Deps, builder: CaseBuilder, clock: FakeClock
) -> None:
    case, request = consult(deps, builder)
    assert (request.state, request.case_no, request.requested_by, request.agency) == (
        "open",
        case.case_no,
        HANDLER,
        "sm-amr",
    )
    [queued] = consultation_queue(deps, actor=SECRETARY)
    assert (queued.id, queued.question, queued.topic) == (request.id, QUESTION, "evidence_recognition")
    with pytest.raises(PermissionDenied, match="not a joint-meeting secretary"):
        consultation_queue(deps, actor=HANDLER)

    meeting = schedule_meeting(
        deps,
        actor=SECRETARY,
        kind="consultation",
        requests=[request.id],
        at=beijing(2026, 3, 10, 14, 30),
        place="三明市市场监督管理局 五楼会商室",
    )
    assert (meeting.kind, meeting.state, meeting.convening_agency) == ("consultation", "noticed", "sm-amr")
    assert set(meeting.invited) == {"sm-amr", "sm-psb"}  # the agencies taking part in the case
    assert meeting.starts_at == "2026-03-10T14:30+08:00" and meeting.ends_at == "2026-03-10T16:00+08:00"
    assert case.case_no in meeting.title
    assert [(a["kind"], a["case_no"]) for a in meeting.agenda] == [("consultation", case.case_no)]
    told = {r.recipient_user for r in outbox(deps, "meeting_notice")}
    assert {"sm_amr_liaison", "sm_psb_liaison", HANDLER} <= told
    assert not told & {"sm_procuratorate_liaison", "sm_court_liaison", "jl_amr_liaison"}
    assert show_meeting(deps, meeting.id, actor="sm_psb_handler").id == meeting.id
    with pytest.raises(InvalidInput, match=f"no meeting #{meeting.id}"):
        show_meeting(deps, meeting.id, actor="jl_amr_handler")  # not invited: it does not exist for them
    assert consultation_queue(deps) == []
    [scheduled_request] = consultation_queue(deps, state="scheduled")
    assert scheduled_request.meeting_id == meeting.id

    held(deps, clock, meeting.id)
    due = day_end("2026-03-31")
    text = "由三明市公安局调取涉案服务器日志并固定电子数据"
    minuted = record_minutes(
        deps,
        meeting.id,
        actor=SECRETARY,
        text="与会单位一致认为涉案配方属于技术信息。",
        resolutions=[Resolution(text, "sm-psb", due, case.case_no)],
    )
    assert minuted.state == "minutes_approved"
    [item] = minuted.action_items
    assert (item["text"], item["owner_agency"], item["case_no"], item["state"]) == (
        text,
        "sm-psb",
        case.case_no,
        "open",
    )
    assert item["due_at"] == "2026-03-31T23:59+08:00"
    assert [a.id for a in list_action_items(deps, actor="sm_psb_handler")] == [item["id"]]
    assert list_action_items(deps, actor="jl_amr_handler") == []

    history = events(deps, case.case_no)
    for event in ("consultation_requested", "consultation_scheduled", "consultation_resolved", "meeting_resolution"):
        assert history.count(event) == 1, (event, history)
    assert history.index("consultation_requested") < history.index("consultation_scheduled")
    assert history.index("meeting_resolution") < history.index("consultation_resolved")
    [resolution] = [e for e in case_history(deps, case.case_no) if e.event == "meeting_resolution"]
    assert resolution.payload["action_item"] == item["id"] and resolution.payload["owner_agency"] == "sm-psb"
    [resolved] = consultation_queue(deps, state="resolved")
    assert (resolved.id, resolved.state, resolved.resolution) == (request.id, "resolved", text)
    assert verify_audit(deps, case.case_no).problems == []
    minutes_mail = [r for r in outbox(deps, "meeting_notice") if text in r.body]
    assert {r.recipient_user for r in minutes_mail} >= {"sm_amr_liaison", "sm_psb_liaison"}
    assert all(r.ics == "" for r in minutes_mail)

    doc = render_case_document(deps, case.case_no, "consultation_minutes", actor=SECRETARY, subject_id=meeting.id)
    assert doc.kind == "consultation_minutes" and doc.issuing_agency == "sm-amr"
    for needle in (case.case_no, QUESTION, text, "吴海涛"):
        assert needle in doc.html, needle


def test_the_minutes_document_needs_approved_minutes(deps: Deps, builder: CaseBuilder) -> None:
    case, _request, meeting = scheduled(deps, builder)
    with pytest.raises(InvalidInput, match="consultation_minutes"):
        render_case_document(deps, case.case_no, "consultation_minutes", actor=SECRETARY, subject_id=meeting.id)


# --- action items ------------------------------------------------------------------------------------


def test_a_missed_action_item_escalates_once_and_is_closed_by_its_owner(
    deps: Deps, builder: CaseBuilder, clock: FakeClock
) -> None:
    case, _request, meeting = scheduled(deps, builder)
    held(deps, clock, meeting.id)
    text = "补充调取服务器日志"
    minuted = record_minutes(
        deps,
        meeting.id,
        actor=SECRETARY,
        text="会商纪要",
        resolutions=[Resolution(text, "sm-psb", day_end("2026-03-20"), case.case_no)],
    )
    [item] = minuted.action_items
    set_clock(clock, beijing(2026, 3, 20, 23, 0))
    assert fire_due_deadlines(deps).action_items == 0  # due at the end of the day, not yet missed
    set_clock(clock, beijing(2026, 3, 21, 8, 0))
    assert fire_due_deadlines(deps).action_items == 1
    assert events(deps, case.case_no).count("action_item_missed") == 1
    [missed] = [e for e in case_history(deps, case.case_no) if e.event == "action_item_missed"]
    assert missed.actor == "system" and missed.payload["action_item"] == item["id"]
    rows = outbox(deps, "action_item_missed")
    told = {r.recipient_user for r in rows}
    assert {"sm_psb_liaison", SUPERVISOR} <= told
    assert not told & {HANDLER, "sm_amr_liaison", "jl_amr_liaison"}
    assert all(r.case_id is not None and text in r.body and case.case_no in r.body for r in rows)
    [view] = list_action_items(deps, actor=SUPERVISOR, open_only=True)
    assert (view.overdue, view.escalations) == (True, 1)

    assert fire_due_deadlines(deps).action_items == 0
    clock.advance(days=3)
    assert fire_due_deadlines(deps).action_items == 0
    assert len(outbox(deps, "action_item_missed")) == len(rows)
    assert events(deps, case.case_no).count("action_item_missed") == 1
    [view] = list_action_items(deps, actor=SUPERVISOR, open_only=True)
    assert view.escalations == 1

    with pytest.raises(PermissionDenied, match="belongs to sm-psb"):
        complete_action_item(deps, item["id"], actor=HANDLER, note="越权")
    done = complete_action_item(deps, item["id"], actor="sm_psb_handler", note="已调取并固定日志")
    assert (done.state, done.done_by, done.done_note, done.overdue) == (
        "done",
        "sm_psb_handler",
        "已调取并固定日志",
        False,
    )
    assert "action_item_done" in events(deps, case.case_no)
    assert list_action_items(deps, open_only=True) == []
    with pytest.raises(InvalidInput, match="already done"):
        complete_action_item(deps, item["id"], actor="sm_psb_liaison")
    clock.advance(days=30)
    assert fire_due_deadlines(deps).action_items == 0
    assert verify_audit(deps, case.case_no).problems == []


def test_a_resolution_without_a_due_date_gets_the_default(deps: Deps, builder: CaseBuilder, clock: FakeClock) -> None:
    case, _request, meeting = scheduled(deps, builder)
    held(deps, clock, meeting.id)
    parsed = parse_resolution(f"sm-psb||补充询问证人|{case.case_no}")
    assert (parsed.owner_agency, parsed.due, parsed.case_no) == ("sm-psb", None, case.case_no)
    [item] = record_minutes(deps, meeting.id, actor=SECRETARY, text="纪要", resolutions=[parsed]).action_items
    expected = (clock.now + timedelta(days=deps.meetings.action_item_days)).astimezone(SHANGHAI)
    assert item["due_at"] == expected.isoformat(timespec="minutes")
    assert parse_resolution("sm-psb|2026-04-30|调取日志").due == beijing(2026, 4, 30, 23, 59, 59)


# --- move and cancel ---------------------------------------------------------------------------------


def test_moving_and_cancelling_tell_everyone_with_the_same_uid(
    deps: Deps, builder: CaseBuilder, clock: FakeClock
) -> None:
    _case, request, meeting = scheduled(deps, builder)
    first = [r for r in outbox(deps, "meeting_notice") if r.channel == "email"]
    _cal, original = invitation(first[0].ics)
    uid = str(original["UID"])
    assert uid == meeting.uid and int(original["SEQUENCE"]) == 0
    liaisons = {"sm_amr_liaison", "sm_psb_liaison"}

    clock.advance(hours=2)
    moved = move_meeting(deps, meeting.id, actor=SECRETARY, to=beijing(2026, 3, 12, 9, 0), reason="与庭审时间冲突")
    assert (moved.state, moved.sequence, moved.uid) == ("postponed", 1, uid)
    assert (moved.starts_at, moved.ends_at) == ("2026-03-12T09:00+08:00", "2026-03-12T10:30+08:00")
    second = [r for r in outbox(deps, "meeting_notice") if r.channel == "email" and r.id not in {f.id for f in first}]
    assert liaisons <= {r.recipient_user for r in second}
    for row in second:
        cal, event = invitation(row.ics)
        assert str(cal["METHOD"]) == "REQUEST"
        assert (str(event["UID"]), int(event["SEQUENCE"])) == (uid, 1)
        assert event["DTSTART"].dt == beijing(2026, 3, 12, 9, 0)
        assert "与庭审时间冲突" in row.body

    clock.advance(hours=2)
    cancelled = cancel_meeting(deps, meeting.id, actor=SECRETARY, reason="案件已移送，无需会商")
    assert (cancelled.state, cancelled.sequence) == ("cancelled", 2)
    seen = {r.id for r in first} | {r.id for r in second}
    third = [r for r in outbox(deps, "meeting_notice") if r.channel == "email" and r.id not in seen]
    assert liaisons <= {r.recipient_user for r in third}
    for row in third:
        cal, event = invitation(row.ics)
        assert str(cal["METHOD"]) == "CANCEL"
        assert (str(event["UID"]), int(event["SEQUENCE"]), str(event["STATUS"])) == (uid, 2, "CANCELLED")
    [reopened] = consultation_queue(deps)
    assert (reopened.id, reopened.state, reopened.meeting_id) == (request.id, "open", None)
    assert "consultation_cancelled" in events(deps, reopened.case_no)
    assert verify_audit(deps, reopened.case_no).problems == []
    with pytest.raises(InvalidInput, match="cannot be moved"):
        move_meeting(deps, meeting.id, actor=SECRETARY, to=beijing(2026, 3, 20, 9, 0))


def test_the_requester_invited_to_a_consultation_is_told_when_it_moves(
    deps: Deps, builder: CaseBuilder, clock: FakeClock
) -> None:
    _case, _request, meeting = scheduled(deps, builder)
    invited = {r.recipient_user for r in outbox(deps, "meeting_notice")}
    assert HANDLER in invited
    clock.advance(hours=1)
    move_meeting(deps, meeting.id, actor=SECRETARY, to=beijing(2026, 3, 12, 9, 0))
    moved = {r.recipient_user for r in outbox(deps, "meeting_notice") if f"meeting:{meeting.id}:1:" in r.dedupe_key}
    assert moved == invited


# --- bad input: a clear message and nothing written --------------------------------------------------


def test_bad_input_is_refused_and_writes_nothing(deps: Deps, builder: CaseBuilder, clock: FakeClock) -> None:
    case, request, meeting = scheduled(deps, builder)
    other_case, _other = consult(deps, builder, "investigating", "三明某公司设备图纸泄露案")
    before = counts(deps)

    with pytest.raises(InvalidInput, match="in the past"):
        move_meeting(deps, meeting.id, actor=SECRETARY, to=beijing(2026, 3, 1, 9, 0))
    with pytest.raises(InvalidInput, match="not held"):
        record_minutes(deps, meeting.id, actor=SECRETARY, text="纪要", resolutions=[])
    with pytest.raises(InvalidInput, match="attendance is recorded at the meeting"):
        record_attendance(deps, meeting.id, actor=SECRETARY, agency="sm-amr", officers=["陈明辉"])
    with pytest.raises(InvalidInput, match="sm-court was not invited"):
        record_attendance(deps, meeting.id, actor=SECRETARY, agency="sm-court", officers=["徐振华"])
    with pytest.raises(InvalidInput, match="unknown topic 'weather'"):
        request_consultation(deps, case.case_no, actor=HANDLER, topic="weather", question=QUESTION)
    with pytest.raises(InvalidInput, match="needs the question"):
        request_consultation(deps, case.case_no, actor=HANDLER, topic="appraisal", question="  ")
    with pytest.raises(PermissionDenied):
        request_consultation(deps, case.case_no, actor="sm_amr_liaison", topic="appraisal", question=QUESTION)
    for period in ("2026-Q5", "2026-13", "2026-Q0", "26-Q2", ""):
        with pytest.raises(InvalidInput, match="neither a quarter"):
            prepare_meeting(deps, period)
    with pytest.raises(InvalidInput, match="once per quarter"):
        prepare_meeting(deps, "2026-04")
    with pytest.raises(InvalidInput, match="it is past"):
        prepare_meeting(deps, "2026-Q1")  # 2026-01-06 09:30, before T0
    with pytest.raises(InvalidInput, match="no meeting schedule 'nope'"):
        prepare_meeting(deps, "2026-Q2", schedule_id="nope")
    with pytest.raises(PermissionDenied, match="not a joint-meeting secretary"):
        prepare_meeting(deps, "2026-Q2", actor=HANDLER)
    with pytest.raises(PermissionDenied, match="not a joint-meeting secretary"):
        schedule_meeting(
            deps, actor=HANDLER, kind="consultation", requests=[request.id], at=beijing(2026, 3, 11, 9), place="x"
        )
    with pytest.raises(InvalidInput, match=rf"#{request.id} \(scheduled\) are not open"):
        schedule_meeting(
            deps, actor=SECRETARY, kind="consultation", requests=[request.id], at=beijing(2026, 3, 11, 9), place="x"
        )
    with pytest.raises(InvalidInput, match="no consultation request #999"):
        schedule_meeting(
            deps, actor=SECRETARY, kind="consultation", requests=[999], at=beijing(2026, 3, 11, 9), place="x"
        )
    with pytest.raises(InvalidInput, match="in the past"):
        schedule_meeting(deps, actor=SECRETARY, kind="consultation", requests=[1], at=beijing(2026, 3, 1), place="x")
    with pytest.raises(InvalidInput, match="needs a place"):
        schedule_meeting(deps, actor=SECRETARY, kind="consultation", requests=[1], at=beijing(2026, 3, 11, 9))
    with pytest.raises(InvalidInput, match="unknown meeting kind"):
        schedule_meeting(deps, actor=SECRETARY, kind="party", at=beijing(2026, 3, 11, 9), place="x")
    with pytest.raises(InvalidInput, match="needs the agencies"):
        schedule_meeting(deps, actor=SECRETARY, kind="joint_meeting", at=beijing(2026, 3, 11, 9), place="x")
    with pytest.raises(InvalidInput, match="unknown agency 'sm-pbs'"):
        schedule_meeting(
            deps, actor=SECRETARY, kind="joint_meeting", invited=["sm-pbs"], at=beijing(2026, 3, 11, 9), place="x"
        )
    with pytest.raises(InvalidInput, match="reason"):
        cancel_meeting(deps, meeting.id, actor=SECRETARY, reason=" ")
    with pytest.raises(InvalidInput, match="no meeting #999"):
        move_meeting(deps, 999, actor=SECRETARY, to=beijing(2026, 3, 20, 9))
    with pytest.raises(PermissionDenied):
        move_meeting(deps, meeting.id, actor=HANDLER, to=beijing(2026, 3, 20, 9))
    for bad in ("sm-psb|调取日志", "|2026-04-30|调取日志", "sm-psb|next week|调取日志"):
        with pytest.raises(InvalidInput, match="--resolution"):
            parse_resolution(bad)
    assert counts(deps) == before

    # Held now: minutes whose resolutions are wrong are refused as a whole.
    held(deps, clock, meeting.id)
    before = counts(deps)
    ok = Resolution("调取日志", "sm-psb", day_end("2026-04-30"), case.case_no)
    wrong = [
        (Resolution("调取日志", "sm-court", day_end("2026-04-30"), case.case_no), "'sm-court' was not invited"),
        (Resolution("调取日志", "sm-psb", day_end("2026-03-01"), case.case_no), "in the past"),
        (Resolution("调取日志", "sm-psb", day_end("2026-04-30"), other_case.case_no), "is not on the agenda"),
    ]
    for resolution, message in wrong:
        with pytest.raises(InvalidInput, match=message):
            record_minutes(deps, meeting.id, actor=SECRETARY, text="纪要", resolutions=[ok, resolution])
    with pytest.raises(InvalidInput, match="need their text"):
        record_minutes(deps, meeting.id, actor=SECRETARY, text=" ", resolutions=[ok])
    assert counts(deps) == before
    assert show_meeting(deps, meeting.id).state == "held"


# --- configuration -----------------------------------------------------------------------------------


def test_a_schedule_that_does_not_parse_is_a_config_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    broken = write_config(tmp_path, url, **{r'rrule = "FREQ=MONTHLY;[^"]*"': 'rrule = "FREQ=FORTNIGHTLY;BYDAY=1TU"'})
    with pytest.raises(ConfigError) as err:
        load_settings(broken, env={})
    assert "meetings.schedules[0]" in err.value.message and "does not parse" in err.value.message
    assert "FORTNIGHTLY" in err.value.message

    cron = write_config(tmp_path, url, **{r'rrule = "FREQ=MONTHLY;[^"]*"': 'cron = "30 9 * 1,4,7,10 2#9"'})
    with pytest.raises(ConfigError, match=r"meetings\.schedules\[0\].*cron .* does not parse"):
        load_settings(cron, env={})

    unknown = write_config(tmp_path, url, **{r'invited = \["sm-amr", "sm-psb"': 'invited = ["sm-amr", "sm-pbs"'})
    with pytest.raises(ConfigError) as err:
        load_settings(unknown, env={})
    assert "meetings.schedules[0].invited[1]" in err.value.message and "unknown agency 'sm-pbs'" in err.value.message

    convening = write_config(tmp_path, url, **{r'convening_agency = "sm-amr"': 'convening_agency = "sm-xyz"'})
    with pytest.raises(ConfigError, match="unknown agency 'sm-xyz'"):
        load_settings(convening, env={})


def test_the_schedule_may_be_given_as_cron(tmp_path: Path, clock: FakeClock) -> None:
    config = write_config(
        tmp_path,
        f"sqlite:///{tmp_path / 'c.db'}",
        **{r'rrule = "FREQ=MONTHLY;[^"]*"': 'cron = "30 9 * 1,4,7,10 2#1"'},
    )
    _settings, deps = make_deps(config, clock)
    try:
        assert deps.meetings.schedules[0].cron
        view = prepare_meeting(deps, "2026-Q2")
        assert view.starts_at == "2026-04-07T09:30+08:00"
        assert prepare_meeting(deps, "2026-Q4").starts_at == "2026-10-08T09:30+08:00"
    finally:
        deps.engine.dispose()


# --- unit: schedules and periods --------------------------------------------------------------------


def schedule(**rule: str) -> MeetingSchedule:
    return MeetingSchedule(
        id="q", title="联席会议", place="三明", convening_agency="sm-amr", invited=["sm-amr"], **rule
    )


def test_rrule_and_cron_give_the_same_occurrences() -> None:
    by_rrule = schedule(rrule="FREQ=MONTHLY;BYMONTH=1,4,7,10;BYDAY=1TU;BYHOUR=9;BYMINUTE=30")
    by_cron = schedule(cron="30 9 * 1,4,7,10 2#1")
    year = (beijing(2026, 1, 1), beijing(2027, 1, 1))
    expected = [beijing(2026, 1, 6, 9, 30), beijing(2026, 4, 7, 9, 30), beijing(2026, 7, 7, 9, 30)]
    expected.append(beijing(2026, 10, 6, 9, 30))
    assert by_rrule.occurrences(*year) == expected
    assert by_cron.occurrences(*year) == expected
    assert all(t.utcoffset() == timedelta(hours=8) for t in by_cron.occurrences(*year))
    assert by_rrule.next_after(beijing(2026, 4, 7, 9, 30)) == beijing(2026, 7, 7, 9, 30)
    assert by_cron.next_after(beijing(2026, 4, 7, 9, 29)) == beijing(2026, 4, 7, 9, 30)
    # [start, end): an occurrence exactly at the end is outside.
    assert by_rrule.occurrences(beijing(2026, 4, 1), beijing(2026, 4, 7, 9, 30)) == []
    assert by_cron.occurrences(beijing(2026, 4, 1), beijing(2026, 4, 7, 9, 30)) == []
    with pytest.raises(ValueError, match="exactly one of rrule or cron"):
        schedule(rrule="FREQ=MONTHLY", cron="30 9 * * *")
    with pytest.raises(ValueError, match="does not parse"):
        schedule(cron="61 9 * * *")


def test_period_bounds_and_keys() -> None:
    assert period_bounds("2026-Q2") == (beijing(2026, 4, 1), beijing(2026, 7, 1))
    assert period_bounds("2026-Q4") == (beijing(2026, 10, 1), beijing(2027, 1, 1))
    assert period_bounds("2026-12") == (beijing(2026, 12, 1), beijing(2027, 1, 1))
    assert period_bounds("2026-02") == (beijing(2026, 2, 1), beijing(2026, 3, 1))
    for bad in ("2026-Q5", "2026-13", "2026-00", "2026Q1", "2026-4"):
        with pytest.raises(ValueError, match="neither a quarter"):
            period_bounds(bad)
    # Beijing time decides: 2026-03-31 16:30 UTC is already 1 April in Sanming.
    late = beijing(2026, 4, 1, 0, 30)
    assert period_key(late, "quarter") == "2026-Q2" and period_key(late, "month") == "2026-04"
    assert period_key(beijing(2026, 12, 31, 23, 59), "quarter") == "2026-Q4"


def test_the_sample_config_declares_the_quarterly_meeting() -> None:
    settings = load_settings(REPO_CONFIG, env={})
    [quarterly] = settings.meetings.schedules
    assert (quarterly.id, quarterly.period, quarterly.notice_days, quarterly.convening_agency) == (
        "sm-quarterly",
        "quarter",
        7,
        "sm-amr",
    )
    assert quarterly.invited == list(INVITED)


def test_minutes_with_several_entries_on_one_case_keep_its_chain_on_postgres(
    pg_deps: Deps, clock: FakeClock, tmp_path: Path
) -> None:
    # Two resolutions and the resolved request all land on one case in one transaction: each re-lock of the
    # case row must keep the version and hash this transaction already moved (a refresh used to drop them).
    files = tmp_path / "files"
    files.mkdir()
    case = CaseBuilder(pg_deps, clock, files).to_state("investigating")
    request = request_consultation(pg_deps, case.case_no, actor=HANDLER, topic="evidence_recognition", question="q")
    meeting = schedule_meeting(
        pg_deps,
        actor=SECRETARY,
        kind="consultation",
        at=clock.now + timedelta(days=2),
        place="三楼",
        requests=[request.id],
    )
    clock.advance(days=2)
    record_attendance(pg_deps, meeting.id, actor=SECRETARY, agency="sm-amr", officers=["张三"])
    record_minutes(
        pg_deps,
        meeting.id,
        actor=SECRETARY,
        text="纪要",
        resolutions=[
            Resolution("补充证据", "sm-amr", None, case.case_no),
            Resolution("再次会商", "sm-amr", None, case.case_no),
        ],
    )
    events = [e.event for e in case_history(pg_deps, case.case_no)]
    assert events.count("meeting_resolution") == 2 and events.count("consultation_resolved") == 1
    assert verify_audit(pg_deps, case.case_no).problems == []
