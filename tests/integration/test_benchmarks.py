"""The benchmark runner (issue 8): its quick mode's table and script line, and the HTTP benchmarks end to end
at a tiny load (figures are not asserted: machines are shared and noisy; errors and the output's shape are)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.common import Row

ROOT = Path(__file__).resolve().parents[2]


def test_quick_prints_every_figure_with_its_target_and_the_ratio_line_for_scripts() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    ratio = re.search(r"^transition_ratio_sqlite=(\d+\.\d+)$", out, re.M)
    assert ratio and float(ratio.group(1)) > 0, out
    assert re.search(r"^figure\s+value unit\s+target\s+met\s+note$", out, re.M), out
    for figure, target in [
        ("transition_ratio_sqlite", ">= 0.35"),
        ("sweep_ratio_sqlite_10k", "<= 2.0"),
        ("dashboard_ratio_sqlite_10k", "<= 2.0"),
        ("import sqlite 2k events/s", ">= 20,000"),
    ]:
        line = next((ln for ln in out.splitlines() if ln.startswith(figure + " ")), None)
        assert line is not None, f"{figure} missing:\n{out}"
        assert re.search(re.escape(target) + r"\s+(yes|NO)\s", line), line
    assert "machine: cpus=" in out
    assert re.search(r"audit chains verify=ok", out)


def _by_name(rows: list[Row]) -> dict[str, Row]:
    return {row.name: row for row in rows}


@pytest.mark.postgres
def test_http_benchmark_reads_and_sends_events_through_real_servers_without_errors(pg_url: str) -> None:
    from benchmarks.http_api import bench_http

    rows = _by_name(bench_http(workers=2, clients=4, seconds=1.0, warmup=1.0, cases=4, paced_fraction=0.5))
    for kind in ("read", "event"):
        assert rows[f"http {kind} errors"].value == 0, rows[f"http {kind} p95"].note
        assert rows[f"http {kind} throughput"].value > 0  # type: ignore[operator]
        assert rows[f"http {kind} p95"].target  # printed beside its target
        assert f"http {kind} paced p95" in rows


@pytest.mark.postgres
def test_http_floor_serves_the_bare_endpoints_with_0_1_and_6_queries(pg_url: str) -> None:
    from benchmarks.http_api import bench_http_floor

    rows = _by_name(bench_http_floor(workers=2, clients=4, seconds=1.0, warmup=0.5))
    for label in ("http floor 0 queries", "http floor 1 query", "http floor 6 queries"):
        assert rows[f"{label} throughput"].value > 0  # type: ignore[operator]
        assert "; 0 errors" in rows[f"{label} p50"].note
