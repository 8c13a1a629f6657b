"""``jointcase deadlines``, ``jointcase sweep`` and ``jointcase supervise``: the statutory clocks at work."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import typer
from rich.table import Table

from app.cli import AsOpt, AsReadOpt, JsonOpt, _deps, _emit, _errors, _parse_time, out
from states.calendar import END_OF_DAY, SHANGHAI
from states.errors import InvalidInput
from workflows.deadlines import fire_due_deadlines, list_deadlines, parse_within
from workflows.supervision import SupervisionView, delist, list_for_supervision, report_progress, show_supervision

supervise_app = typer.Typer(help="Listed supervision (挂牌督办): list, report, delist, show.", no_args_is_help=True)


def deadlines(
    actor: AsReadOpt = None,
    overdue: Annotated[bool, typer.Option("--overdue", help="Only running deadlines already past due.")] = False,
    due_within: Annotated[
        str | None, typer.Option("--due-within", help="Only deadlines due within this span, e.g. 3d, 12h, 2w.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Open statutory deadlines, nearest first. 期限"""
    with _errors(as_json):
        span = parse_within(due_within) if due_within is not None else None
        rows = list_deadlines(_deps(), actor=actor, overdue=overdue, due_within=span)

        def human() -> None:
            table = Table(title="期限 deadlines")
            for col in ("case_no", "rule", "label", "status", "due_at", "remaining", "responsible"):
                table.add_column(col)
            for r in rows:
                status = r.status + (" (provisional)" if r.provisional else "")
                table.add_row(
                    r.case_no,
                    r.rule,
                    r.label,
                    status,
                    r.due_at,
                    r.remaining,
                    r.responsible,
                    style="red" if r.overdue else None,
                )
            out.print(table)
            out.print(f"{len(rows)} deadline(s)", highlight=False)

        _emit(as_json, [r.to_dict() for r in rows], human)


def sweep(
    now: Annotated[
        str | None, typer.Option("--now", help="Sweep as of this time (ISO; default: now). For catching up.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Fire due reminders, misses, auto-listings and supervision escalations once. 期限巡检"""
    with _errors(as_json):
        result = fire_due_deadlines(_deps(), _parse_time(now, "--now"))
        _emit(
            as_json,
            result.to_dict(),
            lambda: out.print(
                f"swept {result.cases} case(s): {result.reminders} reminder(s), {result.missed} miss(es), "
                f"{result.auto_listed} auto-listing(s), {result.escalations} escalation(s), "
                f"{result.notifications} notification(s) queued",
                highlight=False,
            ),
        )


def _due(value: str) -> datetime:
    """A due date: a plain date means the end of that day in Beijing."""
    if len(value) == 10:
        try:
            return datetime.combine(date.fromisoformat(value), END_OF_DAY, tzinfo=SHANGHAI)
        except ValueError:
            raise InvalidInput(f"--due: {value!r} is not an ISO date (e.g. 2026-12-31)") from None
    parsed = _parse_time(value, "--due")
    assert parsed is not None
    return parsed


def _print_supervision(view: SupervisionView) -> None:
    out.print(
        f"[bold]{view.case_no}[/bold] 挂牌督办 #{view.id}  {view.level}  {view.state_label} ({view.state})",
        highlight=False,
    )
    out.print(f"督办 listed by {view.listed_by} ({view.listing_agency}) at {view.listed_at}", highlight=False)
    out.print(f"承办 handling agency: {view.handling_agency}   事由 reason: {view.reason}", highlight=False)
    line = f"期限 due: {view.due_at}   报告 reports: {view.reports}, every {view.report_every_days}d"
    if view.next_report_due_at:
        line += f", next by {view.next_report_due_at}"
    out.print(line + f"   升级 escalations: {view.escalations}", highlight=False, style="red" if view.overdue else None)
    if view.state == "delisted":
        out.print(f"摘牌 delisted by {view.delisted_by} at {view.delisted_at}: {view.result}", highlight=False)


@supervise_app.command("list")
def supervise_list(
    case_no: str,
    level: Annotated[str, typer.Option("--level", help="county | city | province")],
    due: Annotated[str, typer.Option("--due", help="Due date (ISO date: the end of that day, Beijing time).")],
    every: Annotated[str, typer.Option("--every", help="Reporting interval in days, e.g. 15d.")],
    reason: Annotated[str, typer.Option("--reason", help="Why the case is listed.")],
    actor: AsOpt,
    agency: Annotated[
        str | None, typer.Option("--agency", help="Handling agency (default: the agency that holds the case now).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List a case for supervision (挂牌督办)."""
    with _errors(as_json):
        view = list_for_supervision(
            _deps(),
            case_no,
            actor=actor,
            level=level,
            due=_due(due),
            every=every,
            reason=reason,
            handling_agency=agency,
        )
        _emit(as_json, view.to_dict(), lambda: _print_supervision(view))


@supervise_app.command("report")
def supervise_report(
    case_no: str,
    text: Annotated[str, typer.Option("--text", help="The progress report.")],
    actor: AsOpt,
    as_json: JsonOpt = False,
) -> None:
    """File a progress report on a listed case (the handling agency). 报告进展"""
    with _errors(as_json):
        view = report_progress(_deps(), case_no, actor=actor, text=text)
        _emit(as_json, view.to_dict(), lambda: _print_supervision(view))


@supervise_app.command("delist")
def supervise_delist(
    case_no: str,
    result: Annotated[str, typer.Option("--result", help="The result of the supervision.")],
    actor: AsOpt,
    as_json: JsonOpt = False,
) -> None:
    """End a listing (摘牌), recording its result."""
    with _errors(as_json):
        view = delist(_deps(), case_no, actor=actor, result=result)
        _emit(as_json, view.to_dict(), lambda: _print_supervision(view))


@supervise_app.command("show")
def supervise_show(case_no: str, actor: AsReadOpt = None, as_json: JsonOpt = False) -> None:
    """Every listing of a case, newest first. 督办情况"""
    with _errors(as_json):
        views = show_supervision(_deps(), case_no, actor=actor)

        def human() -> None:
            if not views:
                out.print(f"{case_no}: never listed for supervision", highlight=False)
            for view in views:
                _print_supervision(view)

        _emit(as_json, [v.to_dict() for v in views], human)


def register(app: typer.Typer) -> None:
    """Add these commands to the main ``jointcase`` app."""
    app.command("deadlines")(deadlines)
    app.command("sweep")(sweep)
    app.add_typer(supervise_app, name="supervise")


__all__ = ["register"]
