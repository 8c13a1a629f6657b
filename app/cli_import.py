"""``jointcase import FILE.jsonl``: bring historical cases over from an older platform (issue 8 item 2)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from app.cli import EXIT_USAGE, JsonOpt, _deps, _emit, _errors, err, out
from workflows.imports import ImportProgress, import_cases

#: Rejected lines printed in the human summary (all of them are in --json).
SHOWN_REJECTIONS = 50


def import_file(
    file: Annotated[Path, typer.Argument(help="JSON Lines export: one case with its events per line.")],
    batch: Annotated[int, typer.Option("--batch", help="Cases written per transaction.")] = 500,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=0, help="Processes checking lines while one writes (0: none; default: CPUs)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import historical cases (JSON Lines); resumable: cases already stored are skipped. 历史案件导入

    Exit 0 when every line was imported or skipped, 2 when any line was rejected (its line number and
    reason are printed; nothing of a rejected line is written).
    """
    with _errors(as_json):
        deps = _deps()
        if sys.stderr.isatty() and not as_json:
            with Progress(
                TextColumn("导入 import"),
                BarColumn(),
                DownloadColumn(),
                TextColumn("{task.fields[counts]}"),
                TimeRemainingColumn(),
                console=err,
                transient=False,
            ) as bar:
                task = bar.add_task("import", total=file.stat().st_size if file.is_file() else None, counts="")

                def on_progress(p: ImportProgress) -> None:
                    counts = f"{p.imported} imported, {p.skipped} skipped, {p.rejected} rejected"
                    bar.update(task, completed=p.bytes_read, counts=counts)

                result = import_cases(deps, file, batch_size=batch, progress=on_progress, workers=workers)
        else:

            def on_progress(p: ImportProgress) -> None:
                if not as_json:
                    err.print(
                        f"line {p.lines}: {p.imported} imported, {p.skipped} skipped, {p.rejected} rejected",
                        highlight=False,
                    )

            result = import_cases(deps, file, batch_size=batch, progress=on_progress, workers=workers)

        def human() -> None:
            out.print(
                f"imported {result.imported} case(s) ({result.events} events, "
                f"{result.events_per_second:,.0f} events/s), skipped {result.skipped} already stored, "
                f"rejected {len(result.rejected)}",
                highlight=False,
            )
            for r in result.rejected[:SHOWN_REJECTIONS]:
                err.print(f"line {r.line}: {r.case_no or '?'}: {r.reason}", markup=False, highlight=False)
            if len(result.rejected) > SHOWN_REJECTIONS:
                err.print(f"… and {len(result.rejected) - SHOWN_REJECTIONS} more (see --json)", highlight=False)

        _emit(as_json, result.to_dict(), human)
        if not result.ok:
            raise typer.Exit(EXIT_USAGE)


def register(app: typer.Typer) -> None:
    """Add ``import`` to the main ``jointcase`` app."""
    app.command("import")(import_file)


__all__ = ["register"]
