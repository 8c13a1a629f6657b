"""Bulk import (issue 8 item 2): events/s of ``import_cases`` for a generated export into a fresh database.

Data: ``app.generate.write_export`` from seed 1 with the repo's config.toml (20,000 cases, about 112,000 audit
events with the open_case records; 2,000 cases in ``--quick``). Writing the file is not timed. The import runs
as ``jointcase import`` does (batches of 500; one checker process per CPU after the first 1,000 lines; SQLite as
the app configures it: WAL, synchronous=FULL). Events/s counts the audit events written, open_case included.
Afterwards the row counts are checked against the file and a sample of hash chains is verified.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import Row, make_bench_deps, pg_drop, pg_recreate

SEED = 1
TARGET = 20_000  # events/s on SQLite (issue 8)
PG_DB = "jointcase_bench_import"
# The generated histories end before 2026 (app.generate.DEFAULT_UNTIL): the clock stands after them.
NOW = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)


def bench_import(backend: str, quick: bool) -> list[Row]:
    from sqlalchemy import func, select

    from app.generate import write_export
    from models.tables import Case, CaseEvent
    from tests.conftest import REPO_CONFIG, FakeClock
    from workflows.cases import verify_audit
    from workflows.imports import import_cases
    from workflows.uow import UnitOfWork

    cases = 2_000 if quick else 20_000
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        export = workdir / "export.jsonl"
        write_export(export, cases=cases, seed=SEED, config=REPO_CONFIG)
        url = f"sqlite:///{workdir / 'import.db'}" if backend == "sqlite" else pg_recreate(PG_DB)
        try:
            _config, deps = make_bench_deps(workdir, url, FakeClock(NOW))
            result = import_cases(deps, export)
            with UnitOfWork(deps, read_only=True) as uow:
                stored = uow.session.execute(select(func.count()).select_from(Case)).scalar_one()
                events = uow.session.execute(select(func.count()).select_from(CaseEvent)).scalar_one()
            sample = _case_numbers(export)[:: max(1, cases // 200)]
            chains_ok = all(verify_audit(deps, case_no=n).ok for n in sample)
            deps.engine.dispose()
        finally:
            if backend != "sqlite":
                pg_drop(PG_DB)
    if not result.ok or stored != cases or events != result.events or not chains_ok:
        raise RuntimeError(
            f"import incomplete: {result.imported} imported, {len(result.rejected)} rejected, {stored} cases and "
            f"{events} events stored (file {cases} cases, {result.events} events), sampled chains ok={chains_ok}"
        )
    size = f"{cases // 1000}k"
    rate = result.events_per_second
    note = f"{cases:,} cases, {result.events:,} events in {result.seconds:.1f} s; seed {SEED}; {len(sample)} chains ok"
    target, met = (f">= {TARGET:,}", rate >= TARGET) if backend == "sqlite" else ("", None)
    return [
        Row(f"import {backend} {size} events/s", rate, "events/s", target, met, note),
        Row(f"import {backend} {size} total", result.seconds, "s"),
    ]


def _case_numbers(export: Path) -> list[str]:
    with export.open(encoding="utf-8") as fh:
        return [json.loads(line)["case_no"] for line in fh if line.strip()]
