"""``jointcase evidence``: the evidence registry, the hand-over to the police and the custody log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from app.cli import AsOpt, AsReadOpt, JsonOpt, _deps, _emit, _errors, _parse_time, out
from states.errors import InvalidInput
from workflows.evidence import (
    EvidenceView,
    add_evidence,
    hand_over,
    list_evidence,
    resolve_evidence,
    verify_evidence_file,
)

evidence_app = typer.Typer(
    help="Evidence and its conversion at the hand-over to the police. 证据", no_args_is_help=True
)


def _table(views: list[EvidenceView], title: str) -> None:
    table = Table(title=title)
    for col in ("id", "type", "title", "state", "holder", "sha256", "resolution"):
        table.add_column(col)
    for v in views:
        table.add_row(
            str(v.id),
            f"{v.type_label} ({v.type})",
            v.title,
            f"{v.state_label} ({v.state})",
            v.holder_agency,
            v.sha256[:12] + ("…" if v.sha256 else ""),
            v.resolution_reason,
        )
    out.print(table)


@evidence_app.command("add")
def evidence_add(
    case_no: str,
    evidence_type: Annotated[str, typer.Option("--type", help="physical, documentary, audio_visual, …")],
    title: Annotated[str, typer.Option("--title", help="What the item is.")],
    actor: AsOpt,
    location: Annotated[str, typer.Option("--location", help="Where the item is kept.")] = "",
    description: Annotated[str, typer.Option("--description")] = "",
    file: Annotated[Path | None, typer.Option("--file", help="The item's file: only its SHA-256 is kept.")] = None,
    sha256: Annotated[str | None, typer.Option("--sha256", help="The SHA-256 recorded when collected.")] = None,
    collected_at: Annotated[str | None, typer.Option("--collected-at", help="When it was collected (ISO).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register an evidence item; prints its id. 登记证据"""
    with _errors(as_json):
        view = add_evidence(
            _deps(),
            case_no,
            actor=actor,
            type=evidence_type,
            title=title,
            description=description,
            location=location,
            file=file,
            sha256=sha256,
            collected_at=_parse_time(collected_at, "--collected-at"),
        )
        _emit(as_json, view.to_dict(), lambda: typer.echo(view.id))


@evidence_app.command("handover")
def evidence_handover(
    case_no: str,
    seal: Annotated[str, typer.Option("--seal", help="Seal number of the transfer (封条/移交单号).")],
    actor: AsOpt,
    items: Annotated[str | None, typer.Option("--items", help="Only these item ids, e.g. 1,2,5.")] = None,
    to_agency: Annotated[str | None, typer.Option("--to", help="The police agency (default: the case's).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Hand the registered evidence over to the police. 移交证据"""
    with _errors(as_json):
        ids = None
        if items:
            try:
                ids = [int(i) for i in items.split(",") if i.strip()]
            except ValueError:
                raise InvalidInput(f"--items {items!r}: give item ids separated by commas, e.g. 1,2,5") from None
        views = hand_over(_deps(), case_no, actor=actor, seal_no=seal, item_ids=ids, to_agency=to_agency)
        _emit(as_json, [v.to_dict() for v in views], lambda: _table(views, f"{case_no} 移交 handed over"))


@evidence_app.command("resolve")
def evidence_resolve(
    item_id: int,
    resolution: Annotated[str, typer.Argument(help="admitted | recollected | excluded")],
    actor: AsOpt,
    reason: Annotated[str, typer.Option("--reason", help="Why (required to exclude).")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Record the police decision on a handed-over item. 证据审查"""
    with _errors(as_json):
        view = resolve_evidence(_deps(), item_id, resolution, actor=actor, reason=reason)
        _emit(as_json, view.to_dict(), lambda: _table([view], f"{view.case_no} #{view.id}"))


@evidence_app.command("verify")
def evidence_verify(
    item_id: int,
    file: Annotated[Path, typer.Option("--file", help="The file presented for the item.")],
    actor: AsOpt,
    as_json: JsonOpt = False,
) -> None:
    """Check a file against the item's registered SHA-256 (logged on its custody). 核验"""
    with _errors(as_json):
        view = verify_evidence_file(_deps(), item_id, file, actor=actor)
        _emit(
            as_json, view.to_dict(), lambda: out.print(f"evidence #{view.id}: {file.name} matches sha256 {view.sha256}")
        )


@evidence_app.command("list")
def evidence_list(case_no: str, actor: AsReadOpt = None, as_json: JsonOpt = False) -> None:
    """The case's evidence. 证据清单"""
    with _errors(as_json):
        views = list_evidence(_deps(), case_no, actor=actor)
        _emit(as_json, [v.to_dict() for v in views], lambda: _table(views, f"{case_no} 证据 evidence"))


@evidence_app.command("log")
def evidence_log(case_no: str, actor: AsReadOpt = None, as_json: JsonOpt = False) -> None:
    """The custody log of every item, in order. 保管记录"""
    with _errors(as_json):
        views = list_evidence(_deps(), case_no, actor=actor)
        entries = sorted(
            ({"item": v.id, "title": v.title, **c} for v in views for c in v.custody),
            key=lambda e: int(e["seq"]),
        )

        def human() -> None:
            table = Table(title=f"{case_no} 保管记录 custody log")
            for col in ("at", "item", "action", "from", "to", "actor", "seal", "note"):
                table.add_column(col)
            for e in entries:
                table.add_row(
                    e["at"],
                    f"#{e['item']} {e['title']}",
                    e["action"],
                    e["from_agency"],
                    e["to_agency"],
                    e["actor"],
                    e["seal_no"],
                    e["note"],
                )
            out.print(table)

        _emit(as_json, entries, human)
