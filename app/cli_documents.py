"""``jointcase doc``: official documents generated from a case (移送书, 回执, 通知书 …)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from app.cli import AsOpt, AsReadOpt, JsonOpt, _deps, _emit, _errors, out
from states.errors import InvalidInput
from workflows.documents import document_kinds, generate_document, list_documents, show_document

doc_app = typer.Typer(help="Official documents of a case, after GB/T 9704. 文书", no_args_is_help=True)


@doc_app.command("kinds")
def doc_kinds(as_json: JsonOpt = False) -> None:
    """The kinds of documents and which agency kind issues each."""
    kinds = document_kinds()

    def human() -> None:
        table = Table(title="文书种类 document kinds")
        for col in ("kind", "title", "issued by"):
            table.add_column(col)
        for k in kinds:
            table.add_row(k["kind"], k["title"], k["issuer_kind"])
        out.print(table)

    _emit(as_json, kinds, human)


@doc_app.command("render")
def doc_render(
    case_no: str,
    kind: str,
    actor: AsOpt,
    pdf: Annotated[Path | None, typer.Option("--pdf", help="Also print the PDF to this path.")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Also write the HTML to this path.")] = None,
    attach: Annotated[bool, typer.Option("--attach", help="Attach it to the case file (the PDF if printed).")] = False,
    supervision: Annotated[
        int | None, typer.Option("--supervision", help="supervision_notice: which supervision (default: the latest).")
    ] = None,
    meeting: Annotated[
        int | None, typer.Option("--meeting", help="consultation_minutes: which meeting (default: the latest).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Generate a document from the case record, numbered with the issuing agency's 文号."""
    with _errors(as_json):
        if supervision is not None and meeting is not None:
            raise InvalidInput("give --supervision (supervision_notice) or --meeting (consultation_minutes), not both")
        subject = supervision if supervision is not None else meeting
        view = generate_document(_deps(), case_no, kind, actor=actor, subject_id=subject, pdf=pdf, attach=attach)
        if html is not None:
            html.parent.mkdir(parents=True, exist_ok=True)
            html.write_text(view.html, encoding="utf-8")

        def human() -> None:
            state = "new version" if view.new else "unchanged"
            out.print(f"{view.title} {view.doc_no} v{view.version} ({state}) sha256 {view.sha256}")
            if view.pdf:
                out.print(f"PDF: {view.pdf}")
            if html is not None:
                out.print(f"HTML: {html}")
            if view.attachment:
                verb = "attached" if view.attachment["new"] else "already attached"
                out.print(f"{verb} as {view.attachment['kind']}: {view.attachment['filename']}")

        _emit(as_json, view.to_dict(), human)


@doc_app.command("list")
def doc_list(case_no: str, actor: AsReadOpt = None, as_json: JsonOpt = False) -> None:
    """Every generated document of the case, with its versions."""
    with _errors(as_json):
        views = list_documents(_deps(), case_no, actor=actor)

        def human() -> None:
            table = Table(title=f"{case_no} 文书 documents")
            for col in ("kind", "title", "文号", "v", "issued by", "to", "generated", "sha256"):
                table.add_column(col)
            for v in views:
                table.add_row(
                    v.kind,
                    v.title,
                    v.doc_no,
                    str(v.version),
                    v.issuing_agency,
                    v.recipient_agency,
                    v.generated_at,
                    v.sha256[:16],
                )
            out.print(table)

        _emit(as_json, [v.to_dict() for v in views], human)


@doc_app.command("show")
def doc_show(
    case_no: str,
    kind: str,
    actor: AsReadOpt = None,
    version: Annotated[int | None, typer.Option("--version", help="Which version (default: the newest).")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Write the stored HTML to this path.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """A stored document version (metadata; the HTML with --html)."""
    with _errors(as_json):
        view = show_document(_deps(), case_no, kind, actor=actor, version=version)
        if html is not None:
            html.parent.mkdir(parents=True, exist_ok=True)
            html.write_text(view.html, encoding="utf-8")
        _emit(
            as_json,
            view.to_dict(),
            lambda: out.print(
                f"{view.title} {view.doc_no} v{view.version} by {view.generated_by} sha256 {view.sha256}"
            ),
        )
