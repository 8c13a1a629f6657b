"""``jointcase outbox``, ``jointcase inbox`` and ``jointcase case deliveries``: notification delivery."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Annotated

import typer
from rich.table import Table

from app.cli import AsOpt, AsReadOpt, JsonOpt, _deps, _emit, _errors, _parse_time, case_app, out
from states.errors import InvalidInput
from workflows.outbox import (
    MessageView,
    case_deliveries,
    inbox,
    list_outbox,
    mark_read,
    relay_outbox,
    retry_dead,
    show_message,
)

outbox_app = typer.Typer(help="The notification outbox: relay, list, show, retry. 通知投递", no_args_is_help=True)
inbox_app = typer.Typer(help="Your in-app inbox. 站内信", invoke_without_command=True)


def _messages_table(views: list[MessageView], title: str) -> None:
    table = Table(title=title)
    for col in ("id", "case_no", "kind", "channel", "to", "status", "attempts", "last_error"):
        table.add_column(col)
    for v in views:
        style = {"dead": "red", "pending": "yellow"}.get(v.status)
        table.add_row(
            str(v.id),
            v.case_no or "",
            v.kind,
            v.channel,
            v.recipient_user or v.recipient,
            v.status,
            str(v.attempts),
            v.last_error,
            style=style,
        )
    out.print(table)


@outbox_app.command("relay")
def relay(
    once: Annotated[bool, typer.Option("--once", help="Deliver what is due now, then stop.")] = False,
    now: Annotated[str | None, typer.Option("--now", help="Relay as of this time (ISO); default now.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Deliver due notifications (email, webhook, inbox); without --once keep relaying until Ctrl-C."""
    with _errors(as_json):
        deps = _deps()
        if once:
            result = relay_outbox(deps, now=_parse_time(now, "--now"))
            _emit(
                as_json,
                result.to_dict(),
                lambda: out.print(
                    f"relayed: {result.sent} sent, {result.retried} to retry, {result.parked} parked",
                    highlight=False,
                ),
            )
            return
        if now is not None:
            raise InvalidInput("--now goes with --once")
        stop = threading.Event()

        def _stop(_signum: int, _frame: FrameType | None) -> None:
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _stop)
        every = deps.notifications.relay_every_seconds
        out.print(f"relaying every {every} s; Ctrl-C stops", highlight=False)
        while not stop.is_set():
            result = relay_outbox(deps)
            if result.claimed:
                out.print(
                    f"relayed: {result.sent} sent, {result.retried} to retry, {result.parked} parked",
                    highlight=False,
                )
            stop.wait(every)


@outbox_app.command("list")
def outbox_list(
    status: Annotated[str | None, typer.Option("--status", help="pending | sent | dead")] = None,
    case_no: Annotated[str | None, typer.Option("--case", help="Only this case's messages.")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 200,
    as_json: JsonOpt = False,
) -> None:
    """Outbox messages, newest first (operator view)."""
    with _errors(as_json):
        views = list_outbox(_deps(), status=status, case_no=case_no, limit=limit)
        _emit(as_json, [v.to_dict() for v in views], lambda: _messages_table(views, "通知 outbox"))


@outbox_app.command("show")
def outbox_show(message_id: int, as_json: JsonOpt = False) -> None:
    """One message: body and every delivery attempt."""
    with _errors(as_json):
        view = show_message(_deps(), message_id)

        def human() -> None:
            _messages_table([view], f"#{view.id}")
            out.print(f"subject: {view.subject}\ndedupe key: {view.dedupe_key}\n\n{view.body}", highlight=False)
            for h in view.history:
                out.print(f"  attempt {h['attempt']} {h['at']} {h['outcome']} {h['error']}", highlight=False)

        _emit(as_json, view.to_dict(), human)


@outbox_app.command("retry")
def outbox_retry(
    actor: AsOpt,
    ids: Annotated[list[int] | None, typer.Argument(help="Message ids to retry.")] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="Retry every parked message.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Put parked (dead) messages back in the queue (admins). 重新投递"""
    with _errors(as_json):
        if not ids and not all_dead:
            raise InvalidInput("name the message ids to retry, or --all-dead")
        if ids and all_dead:
            raise InvalidInput("give message ids or --all-dead, not both")
        count = retry_dead(_deps(), actor=actor, ids=None if all_dead else list(ids or []))
        _emit(as_json, {"requeued": count}, lambda: out.print(f"requeued {count} message(s)", highlight=False))


@inbox_app.callback()
def inbox_list(
    ctx: typer.Context,
    actor: Annotated[str | None, typer.Option("--as", help="Your username.")] = None,
    unread: Annotated[bool, typer.Option("--unread", help="Only unread items.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Your notifications, newest first. 站内信"""
    if ctx.invoked_subcommand is not None:
        return
    with _errors(as_json):
        if not actor:
            raise InvalidInput("whose inbox? give --as USER")
        items, unread_count = inbox(_deps(), actor=actor, unread_only=unread)

        def human() -> None:
            table = Table(title=f"站内信 inbox of {actor}: {unread_count} unread")
            for col in ("id", "", "created_at", "case_no", "subject"):
                table.add_column(col)
            for i in items:
                table.add_row(str(i.id), "" if i.read else "●", i.created_at, i.case_no or "", i.subject)
            out.print(table)

        _emit(as_json, {"unread": unread_count, "items": [i.to_dict() for i in items]}, human)


@inbox_app.command("read")
def inbox_read(
    actor: AsOpt,
    ids: Annotated[list[int] | None, typer.Argument(help="Item ids to mark read.")] = None,
    all_items: Annotated[bool, typer.Option("--all", help="Mark every item read.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Mark inbox items read."""
    with _errors(as_json):
        if not ids and not all_items:
            raise InvalidInput("name the item ids, or --all")
        count = mark_read(_deps(), actor=actor, ids=None if all_items else list(ids or []))
        _emit(as_json, {"read": count}, lambda: out.print(f"marked {count} item(s) read", highlight=False))


def deliveries(case_no: str, actor: AsReadOpt = None, as_json: JsonOpt = False) -> None:
    """The delivery audit of a case: every notice, its channel, status and attempts. 投递记录"""
    with _errors(as_json):
        views = case_deliveries(_deps(), case_no, actor=actor)
        _emit(as_json, [v.to_dict() for v in views], lambda: _messages_table(views, f"{case_no} 投递记录 deliveries"))


def handoffs(case_no: str, actor: AsReadOpt = None, as_json: JsonOpt = False) -> None:
    """Hand-offs of a case and the answers they wait for (移送反馈). 交接与反馈"""
    from workflows.handoffs import case_handoffs

    with _errors(as_json):
        views = case_handoffs(_deps(), case_no, actor=actor)

        def human() -> None:
            table = Table(title=f"{case_no} 交接与反馈 hand-offs")
            for col in ("#", "event", "at", "from", "to", "expects", "status", "due_at", "remaining"):
                table.add_column(col)
            for v in views:
                style = "red" if v.status in ("missed", "answered_late") else None
                table.add_row(
                    str(v.seq),
                    v.label,
                    v.at,
                    v.from_agency,
                    v.to_agency,
                    f"{v.rule} {v.expects}",
                    v.status,
                    v.due_at,
                    v.remaining,
                    style=style,
                )
            out.print(table)

        _emit(as_json, [v.to_dict() for v in views], human)


def register(app: typer.Typer) -> None:
    """Add these commands to the main ``jointcase`` app."""
    app.add_typer(outbox_app, name="outbox")
    app.add_typer(inbox_app, name="inbox")
    case_app.command("deliveries")(deliveries)
    case_app.command("handoffs")(handoffs)
