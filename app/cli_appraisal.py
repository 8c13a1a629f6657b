"""``jointcase appraisal``: the technical appraisals of a case."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from app.cli import AsOpt, AsReadOpt, JsonOpt, _deps, _emit, _errors, _parse_time, out
from workflows.appraisal import list_appraisals, record_received

appraisal_app = typer.Typer(help="Technical appraisals of a case. 技术鉴定", no_args_is_help=True)


@appraisal_app.command("list")
def appraisal_list(case_no: str, actor: AsReadOpt = None, as_json: JsonOpt = False) -> None:
    """Every appraisal of the case: institution, questions, acceptance, conclusion."""
    with _errors(as_json):
        views = list_appraisals(_deps(), case_no, actor=actor)

        def human() -> None:
            table = Table(title=f"{case_no} 技术鉴定 appraisals")
            for col in ("#", "status", "institution", "subject", "requested", "received", "completed", "conclusion"):
                table.add_column(col)
            for v in views:
                table.add_row(
                    str(v.number),
                    v.status,
                    v.institution,
                    v.subject_label,
                    v.requested_at,
                    v.received_at,
                    v.completed_at,
                    v.conclusion,
                )
            out.print(table)

        _emit(as_json, [v.to_dict() for v in views], human)


@appraisal_app.command("received")
def appraisal_received(
    case_no: str,
    actor: AsOpt,
    at: Annotated[str | None, typer.Option("--at", help="When the institution accepted it (ISO).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record that the appraisal institution accepted the request. 鉴定受理"""
    with _errors(as_json):
        view = record_received(_deps(), case_no, actor=actor, at=_parse_time(at, "--at"))
        _emit(as_json, view.to_dict(), lambda: out.print(f"appraisal #{view.number} accepted {view.received_at}"))
