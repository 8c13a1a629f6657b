"""``python -m benchmarks [--quick] [--only NAME]``: run the benchmarks and print one table with targets.

Names: transitions_sqlite, transitions_postgres, pg_scaling, scale_sqlite, scale_postgres, import_sqlite,
import_postgres, http_postgres, http_floor.
The line ``transition_ratio_sqlite=<ratio>`` is printed on its own for scripts.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from benchmarks.common import Row, machine, pg_available, settle


def _benches(quick: bool) -> dict[str, tuple[bool, Callable[[], list[Row]]]]:
    from benchmarks import http_api, imports, scale, transitions

    return {
        "transitions_sqlite": (False, lambda: transitions.bench_backend("sqlite", quick)),
        "transitions_postgres": (True, lambda: transitions.bench_backend("postgres", quick)),
        "pg_scaling": (True, lambda: transitions.bench_pg_scaling(quick)),
        "scale_sqlite": (False, lambda: scale.bench_scale("sqlite", quick)),
        "scale_postgres": (True, lambda: scale.bench_scale("postgres", quick)),
        "import_sqlite": (False, lambda: imports.bench_import("sqlite", quick)),
        "import_postgres": (True, lambda: imports.bench_import("postgres", quick)),
        "http_postgres": (True, lambda: http_api.bench_http()),
        "http_floor": (True, lambda: http_api.bench_http_floor()),
    }


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"  # counts (errors), not measurements
    return f"{value:.3f}" if abs(value) < 10 else f"{value:,.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, SQLite figures in under a minute")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this benchmark (repeatable)")
    args = parser.parse_args(argv)
    benches = _benches(args.quick)
    if args.only:
        unknown = set(args.only) - set(benches)
        if unknown:
            parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; choose from {', '.join(benches)}")
    selected = args.only or list(benches)
    if args.quick and not args.only:
        selected = ["transitions_sqlite", "scale_sqlite", "import_sqlite"]
    started = time.perf_counter()
    facts = machine()
    print(f"jointcase benchmarks {'--quick ' if args.quick else ''}{datetime.now(UTC).isoformat(timespec='seconds')}")
    print("machine: " + "; ".join(f"{k}={v}" for k, v in facts.items()))
    pg = pg_available()
    rows: list[Row] = []
    for name in selected:
        needs_pg, bench = benches[name]
        if needs_pg and not pg:
            rows.append(Row(name, None, "", note="skipped: PostgreSQL not reachable"))
            continue
        waited = settle()  # one benchmark's after-effects (checkpoints, deleted files) must not slow the next
        t0 = time.perf_counter()
        try:
            rows.extend(bench())
        except Exception as err:
            rows.append(Row(name, None, "", note=f"FAILED: {type(err).__name__}: {err}"))
        print(f"  ({name}: {time.perf_counter() - t0:.1f} s, after {waited:.1f} s settling)", file=sys.stderr)
    print()
    print(f"{'figure':40} {'value':>12} {'unit':16} {'target':12} {'met':5} note")
    print("-" * 110)
    for row in rows:
        met = "-" if row.met is None else ("yes" if row.met else "NO")
        print(f"{row.name:40} {_fmt(row.value):>12} {row.unit:16} {row.target:12} {met:5} {row.note}")
    print()
    for row in rows:
        if row.name.startswith("transition_ratio_") and row.value is not None:
            print(f"{row.name}={row.value:.3f}")
    print(f"total {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
