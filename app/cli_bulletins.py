"""``jointcase bulletin``: monthly and quarterly information bulletins (信息通报) with their figures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from app.cli import JsonOpt, _deps, _emit, _errors, out
from notifications.bulletins import fmt_value
from workflows.bulletins import BulletinView, generate_bulletin, list_bulletins, show_bulletin

bulletin_app = typer.Typer(help="Monthly and quarterly information bulletins. 信息通报", no_args_is_help=True)

PeriodOpt = Annotated[str, typer.Option("--period", help="A month YYYY-MM (2026-10) or a quarter YYYY-Qn (2026-Q4).")]
HtmlOpt = Annotated[Path | None, typer.Option("--html", help="Also write the bulletin's HTML to this path.")]

# The key figures shown on the terminal (all of them are in --json, the HTML and the workbook).
KEY_FIGURES = (
    "leads_received",
    "cases_filed",
    "referrals_proposed",
    "referrals_approved",
    "referrals_transferred",
    "police_filed",
    "police_declined",
    "police_filing_rate",
    "reconsiderations",
    "supervision_requests",
    "supervisions_listed",
    "deadlines_missed",
)


def _key_figures(view: BulletinView) -> None:
    figures = view.figures
    labels = {m["id"]: m["label"] for m in figures["metrics"]}
    table = Table(title=f"{figures['label']} 主要数据 key figures")
    table.add_column("地区 region")
    for key in KEY_FIGURES:
        table.add_column(labels[key], justify="right")  # the metric ids are in --json

    def add(row: dict[str, Any], style: str | None = None) -> None:
        values = row["values"]
        table.add_row(
            row["name"], *(fmt_value(values[k], rate=k == "police_filing_rate") for k in KEY_FIGURES), style=style
        )

    for region in figures["regions"]:
        add(region)
    add(figures["total"], "bold")
    out.print(table)


def _write_html(view: BulletinView, html: Path | None) -> None:
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(view.html, encoding="utf-8")


@bulletin_app.command("generate")
def bulletin_generate(
    period: PeriodOpt,
    xlsx: Annotated[Path | None, typer.Option("--xlsx", help="Also write the Excel workbook to this path.")] = None,
    pdf: Annotated[Path | None, typer.Option("--pdf", help="Also print the PDF to this path (Chromium).")] = None,
    html: HtmlOpt = None,
    no_send: Annotated[bool, typer.Option("--no-send", help="Store it, but do not notify the subscribers.")] = False,
    actor: Annotated[
        str | None,
        typer.Option("--as", help="Generate as this officer (a secretary, supervisor or admin); default: operator."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compute the period's figures from the audit log, store the bulletin (a new version only when the
    figures changed) and send it to the subscribers of config.toml [bulletins]."""
    with _errors(as_json):
        view = generate_bulletin(_deps(), period, actor=actor, xlsx=xlsx, pdf=pdf, send=not no_send)
        _write_html(view, html)

        def human() -> None:
            out.print(
                f"信息通报 {view.label} ({view.period}, {view.kind}) v{view.version} {view.status}; "
                f"sha256 {view.sha256}",
                highlight=False,
            )
            _key_figures(view)
            if view.notified:
                out.print(f"queued to {view.notified} subscriber(s)")
            if view.unknown_subscribers:
                out.print(f"not sent to (no such active officer): {', '.join(view.unknown_subscribers)}")
            for label, path in (("Excel", view.xlsx), ("PDF", view.pdf), ("HTML", str(html) if html else "")):
                if path:
                    out.print(f"{label}: {path}", highlight=False)

        _emit(as_json, view.to_dict(), human)


@bulletin_app.command("show")
def bulletin_show(period: PeriodOpt, html: HtmlOpt = None, as_json: JsonOpt = False) -> None:
    """The stored bulletin of a period: its key figures (all of them with --json; the HTML with --html)."""
    with _errors(as_json):
        view = show_bulletin(_deps(), period)
        _write_html(view, html)

        def human() -> None:
            out.print(
                f"信息通报 {view.label} ({view.period}) v{view.version} by {view.generated_by} at {view.generated_at}; "
                f"sha256 {view.sha256}; sent {view.notified_at or 'not yet'}",
                highlight=False,
            )
            _key_figures(view)

        _emit(as_json, view.to_dict(), human)


@bulletin_app.command("list")
def bulletin_list(as_json: JsonOpt = False) -> None:
    """Every stored bulletin, newest period first."""
    with _errors(as_json):
        views = list_bulletins(_deps())

        def human() -> None:
            table = Table(title="信息通报 bulletins")
            for col in ("period", "label", "v", "generated", "by", "sent", "sha256"):
                table.add_column(col)
            for v in views:
                table.add_row(
                    v.period, v.label, str(v.version), v.generated_at, v.generated_by, v.notified_at, v.sha256[:16]
                )
            out.print(table)

        _emit(as_json, [v.to_dict(figures=False) for v in views], human)
