"""The ``jointcase`` command line: a thin edge over the use cases in ``workflows``.

Exit codes (public contract): 0 done; 2 usage or bad input (including a bad config.toml); 3 transition
refused or guard failed; 4 case not found; 5 concurrent update; 6 permission denied; 1 unexpected
error. Errors go to stderr as one line a person can act on; with ``--json`` that line is a JSON object
with ``error`` and ``message``. No traceback unless ``JOINTCASE_DEBUG=1``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from app.bootstrap import build, init_database
from app.settings import ConfigError, Settings, load_settings
from models.db import has_schema
from states.calendar import SHANGHAI
from states.errors import (
    CaseNotFound,
    ConcurrentUpdate,
    DomainError,
    GuardFailed,
    InvalidInput,
    PermissionDenied,
    TransitionRefused,
)
from workflows import cases
from workflows.uow import Deps

EXIT_USAGE, EXIT_REFUSED, EXIT_NOT_FOUND, EXIT_CONFLICT, EXIT_DENIED = 2, 3, 4, 5, 6

app = typer.Typer(
    name="jointcase",
    help="jointcase — 商业秘密案件行刑衔接协作平台 (inter-agency trade-secret case coordination).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
case_app = typer.Typer(help="Open, advance and inspect cases. 案件办理", no_args_is_help=True)
audit_app = typer.Typer(help="Check the audit log. 审计", no_args_is_help=True)
app.add_typer(case_app, name="case")
app.add_typer(audit_app, name="audit")

# Wide tables when piped (rich would fall back to 80 columns and cut the Chinese labels).
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, soft_wrap=True)


class _State:
    config: Path | None = None


_state = _State()

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="config.toml to use (default: $JOINTCASE_CONFIG or ./config.toml)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
AsOpt = Annotated[str, typer.Option("--as", help="Username of the officer acting.")]
AsReadOpt = Annotated[
    str | None, typer.Option("--as", help="Show the case as this officer sees it (default: operator view).")
]


@app.callback()
def _main(config: ConfigOpt = None) -> None:
    _state.config = config
    # Warnings (e.g. a deadline in a year without holiday data) reach the user as one plain line.
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", stream=sys.stderr)


# --- error handling at the edge -------------------------------------------------------------------


def _exit_code(exc: DomainError) -> int:
    if isinstance(exc, CaseNotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, ConcurrentUpdate):
        return EXIT_CONFLICT
    if isinstance(exc, PermissionDenied):
        return EXIT_DENIED
    if isinstance(exc, TransitionRefused | GuardFailed):
        return EXIT_REFUSED
    return EXIT_USAGE


def _fail(code: str, message: str, exit_code: int, as_json: bool) -> NoReturn:
    if as_json:
        err.print(json.dumps({"error": code, "message": message}, ensure_ascii=False), markup=False, highlight=False)
    else:
        err.print(f"error: {message}", markup=False, highlight=False)
    raise typer.Exit(exit_code)


@contextmanager
def _errors(as_json: bool) -> Iterator[None]:
    """Translate domain and configuration errors into one stderr line and an exit code."""
    try:
        yield
    except typer.Exit:
        raise
    except ConfigError as exc:
        _fail("config_error", exc.message, EXIT_USAGE, as_json)
    except DomainError as exc:
        _fail(exc.code, exc.message, _exit_code(exc), as_json)
    except Exception as exc:  # an unexpected failure: a short line, the traceback only on request
        if os.environ.get("JOINTCASE_DEBUG") == "1":
            raise
        _fail("internal_error", f"{type(exc).__name__}: {exc}", 1, as_json)


def _settings() -> Settings:
    return load_settings(_state.config)


def _deps(settings: Settings | None = None, *, need_schema: bool = True) -> Deps:
    deps = build(settings or _settings())
    if need_schema and not has_schema(deps.engine):
        raise InvalidInput("the database is not initialised; run `jointcase init` first")
    return deps


def _parse_time(value: str | None, option: str) -> datetime | None:
    """ISO date or date-time; a time without an offset is Beijing time (Asia/Shanghai)."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            parsed = datetime.combine(date.fromisoformat(value), time(0, 0))
        else:
            parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{option}: {value!r} is not an ISO date or date-time (e.g. 2026-11-20T09:30)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=SHANGHAI)


def _parse_sets(items: list[str] | None) -> dict[str, str]:
    data: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"--set {item!r}: expected KEY=VALUE, e.g. --set reason=证据不足")
        if key.strip() in data:
            raise InvalidInput(f"--set {key.strip()} given twice")
        data[key.strip()] = value
    return data


def _emit(as_json: bool, payload: Any, human: Callable[[], None]) -> None:
    if as_json:
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2, default=str))
    else:
        human()


def _print_case(view: cases.CaseView) -> None:
    out.print(f"[bold]{view.case_no}[/bold]  {view.title}", highlight=False)
    out.print(f"承办机关 agency: {view.agency_name} ({view.agency})   版本 version: {view.version}", highlight=False)
    state_line = f"环节 phase: {view.phase_label} ({view.phase})   状态 state: {view.state_label} ({view.state})"
    if view.suspended_from:
        state_line += f"   中止前 suspended from: {view.suspended_from}"
    if view.outcome:
        state_line += f"   结果 outcome: {view.outcome}"
    out.print(state_line, highlight=False)
    out.print(f"参与机关 participants: {', '.join(view.participants)}", highlight=False)
    out.print(f"可办理事项 allowed events: {', '.join(view.allowed_events) or '—'}", highlight=False)
    if view.deadlines:
        table = Table(title="期限 deadlines", show_lines=False)
        for col in ("rule", "label", "status", "due_at", "remaining", "ledger", "basis"):
            table.add_column(col)
        for d in view.deadlines:
            status = d.status + (" (provisional)" if d.provisional else "")
            style = "red" if d.overdue else None
            ledger = ", ".join(
                part
                for part in (
                    f"延长 extended ×{d.extensions_used}" if d.extensions_used else "",
                    f"暂停 paused ×{len(d.pauses)}" if d.pauses else "",
                )
                if part
            )
            table.add_row(d.rule, d.label, status, d.due_at, d.remaining, ledger, d.basis, style=style)
        out.print(table)


# --- init, diagram --------------------------------------------------------------------------------


@app.command()
def init(
    demo: Annotated[bool, typer.Option("--demo", help="Also create a dozen demo cases (empty database only).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create or migrate the database and load agencies and officers from config.toml."""
    with _errors(as_json):
        settings = _settings()
        deps = _deps(settings, need_schema=False)
        result: dict[str, Any] = init_database(settings, deps)
        if demo:
            from app.demo import load_demo, set_demo_passwords

            result["demo_cases"] = load_demo(deps)
            result["demo_passwords"] = len(set_demo_passwords(deps))
        _emit(
            as_json,
            result,
            lambda: out.print(
                f"database ready at revision {result['revision']}: {result['agencies']} agencies, "
                f"{result['officers']} officers" + (f", {len(result['demo_cases'])} demo cases" if demo else ""),
                highlight=False,
            ),
        )


class DiagramFormat(StrEnum):
    mermaid = "mermaid"
    svg = "svg"


@app.command()
def diagram(
    fmt: Annotated[DiagramFormat, typer.Option("--format", help="mermaid (text) or svg (needs graphviz).")] = (
        DiagramFormat.mermaid
    ),
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
) -> None:
    """Print the case lifecycle statechart, generated from the code."""
    from states.diagram import mermaid, svg

    with _errors(False):
        text = mermaid() if fmt == DiagramFormat.mermaid else svg()
        if output:
            output.write_text(text, encoding="utf-8")
        else:
            typer.echo(text, nl=not text.endswith("\n"))


# --- case commands --------------------------------------------------------------------------------


@case_app.command("open")
def case_open(
    agency: Annotated[str, typer.Option("--agency", help="Code of the market regulator that owns the case.")],
    title: Annotated[str, typer.Option("--title", help="Case title.")],
    source: Annotated[str, typer.Option("--source", help="inspection|complaint|report|transfer|assignment|other")],
    actor: AsOpt,
    received_at: Annotated[str | None, typer.Option("--received-at", help="When the lead was received (ISO).")] = None,
    note: Annotated[str, typer.Option("--note")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Register a lead as a new case. 登记线索"""
    with _errors(as_json):
        view = cases.open_case(
            _deps(),
            agency=agency,
            title=title,
            source=source,
            actor=actor,
            received_at=_parse_time(received_at, "--received-at"),
            note=note,
        )
        _emit(as_json, view.to_dict(), lambda: _print_case(view))


@case_app.command("advance")
def case_advance(
    case_no: str,
    event: str,
    actor: AsOpt,
    at: Annotated[str | None, typer.Option("--at", help="Legal effective time (ISO); default now.")] = None,
    note: Annotated[str, typer.Option("--note")] = "",
    sets: Annotated[list[str] | None, typer.Option("--set", help="Event data KEY=VALUE (repeatable).")] = None,
    expected_version: Annotated[
        int | None, typer.Option("--expect-version", help="Refuse if the case's version differs.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Send an event to a case. 办理"""
    with _errors(as_json):
        data = _parse_sets(sets)
        view = cases.advance_case(
            _deps(),
            case_no,
            event,
            actor=actor,
            effective_at=_parse_time(at, "--at"),
            data=data,
            note=note,
            expected_version=expected_version,
        )
        _emit(as_json, view.to_dict(), lambda: _print_case(view))


@case_app.command("show")
def case_show(case_no: str, actor: AsReadOpt = None, as_json: JsonOpt = False) -> None:
    """Show a case, its state and its deadlines. 查看"""
    with _errors(as_json):
        view = cases.show_case(_deps(), case_no, actor=actor)
        _emit(as_json, view.to_dict(), lambda: _print_case(view))


@case_app.command("list")
def case_list(
    actor: AsReadOpt = None,
    state: Annotated[str | None, typer.Option("--state", help="Only cases in this state.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List cases, newest first. 案件列表"""
    with _errors(as_json):
        views = cases.list_cases(_deps(), actor=actor, state=state)

        def human() -> None:
            table = Table(title="案件 cases")
            for col in ("case_no", "title", "agency", "phase", "state", "outcome", "next due"):
                table.add_column(col)
            for v in views:
                due = min((d.due_at for d in v.deadlines if d.status in ("running", "paused") or d.overdue), default="")
                table.add_row(v.case_no, v.title, v.agency, v.phase, v.state, v.outcome or "", due)
            out.print(table)

        _emit(as_json, [v.to_dict() for v in views], human)


@case_app.command("history")
def case_history(case_no: str, actor: AsReadOpt = None, as_json: JsonOpt = False) -> None:
    """The case's audit log, oldest first. 办理记录"""
    with _errors(as_json):
        events = cases.case_history(_deps(), case_no, actor=actor)

        def human() -> None:
            table = Table(title=f"{case_no} 办理记录 history")
            for col in ("#", "event", "actor", "effective", "recorded", "from → to", "data"):
                table.add_column(col)
            for e in events:
                data = ", ".join(f"{k}={v}" for k, v in e.payload.items())
                table.add_row(
                    str(e.seq),
                    f"{e.label} ({e.event})",
                    f"{e.actor}@{e.actor_agency}",
                    e.effective_at,
                    e.recorded_at,
                    f"{e.from_state or '∅'} → {e.to_state}",
                    data,
                )
            out.print(table)

        _emit(as_json, [e.to_dict() for e in events], human)


@case_app.command("events")
def case_events(case_no: str, actor: AsReadOpt = None, as_json: JsonOpt = False) -> None:
    """Events allowed now, and who may send them. 可办理事项"""
    with _errors(as_json):
        allowed = cases.allowed_events(_deps(), case_no, actor=actor)

        def human() -> None:
            table = Table(title=f"{case_no} 可办理事项 allowed events")
            for col in ("event", "label", "sent by", "you may send"):
                table.add_column(col)
            for item in allowed:
                may = item["you_may_send"]
                table.add_row(
                    item["event"], item["label"], item["sender"], "" if may is None else ("yes" if may else "no")
                )
            out.print(table)

        _emit(as_json, allowed, human)


@case_app.command("attach")
def case_attach(
    case_no: str,
    kind: Annotated[str, typer.Argument(help="transfer_letter|investigation_report|items_list|appraisal_report|other")],
    file: Path,
    actor: AsOpt,
    as_json: JsonOpt = False,
) -> None:
    """Attach a document to the case file (stored by SHA-256). 附件"""
    with _errors(as_json):
        result = cases.attach_file(_deps(), case_no, kind, file, actor=actor)
        _emit(
            as_json,
            result,
            lambda: out.print(
                f"attached {result['kind']} {result['filename']} ({result['size']} bytes, sha256 {result['sha256']})",
                highlight=False,
            ),
        )


# --- audit ----------------------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(case_no: Annotated[str | None, typer.Argument()] = None, as_json: JsonOpt = False) -> None:
    """Recompute the hash chains and report any break (exit 3 when broken)."""
    with _errors(as_json):
        report = cases.verify_audit(_deps(), case_no)
        payload = {"ok": report.ok, "cases": report.cases, "events": report.events, "problems": report.problems}

        def human() -> None:
            if report.ok:
                out.print(f"audit ok: {report.cases} case(s), {report.events} event(s), every chain intact")
            else:
                for problem in report.problems:
                    err.print(f"broken: {problem}", markup=False, highlight=False)

        _emit(as_json, payload, human)
        if not report.ok:
            raise typer.Exit(EXIT_REFUSED)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="jointcase")


if __name__ == "__main__":  # pragma: no cover
    main()


# --- command groups kept in their own modules (registered last: they reuse the helpers above) -------

from app.cli_calendar import calendar_app  # noqa: E402

app.add_typer(calendar_app, name="calendar")

from app.cli_clocks import register as _register_clock_commands  # noqa: E402

_register_clock_commands(app)

from app.cli_scheduler import prefect_app, scheduler_app  # noqa: E402

app.add_typer(scheduler_app, name="scheduler")
app.add_typer(prefect_app, name="prefect")

from app.cli_outbox import register as _register_outbox_commands  # noqa: E402

_register_outbox_commands(app)

from app.cli_evidence import evidence_app  # noqa: E402

app.add_typer(evidence_app, name="evidence")

from app.cli_appraisal import appraisal_app  # noqa: E402

app.add_typer(appraisal_app, name="appraisal")

from app.cli_documents import doc_app  # noqa: E402

app.add_typer(doc_app, name="doc")

from app.cli_meetings import action_app, consult_app, meeting_app  # noqa: E402

app.add_typer(consult_app, name="consult")
app.add_typer(meeting_app, name="meeting")
app.add_typer(action_app, name="action")

from app.cli_bulletins import bulletin_app  # noqa: E402

app.add_typer(bulletin_app, name="bulletin")

from app.cli_web import serve, token_app, user_app  # noqa: E402

app.command("serve")(serve)
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")

from app.cli_import import register as _register_import_command  # noqa: E402

_register_import_command(app)
