"""Shared set-up of the benchmarks: machine facts, throw-away databases, case building, medians."""

from __future__ import annotations

import os
import platform
import sqlite3
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

warnings.filterwarnings("ignore")

PG_ADMIN_URL = os.environ.get("JOINTCASE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
# Several people benchmarking on one PostgreSQL server each give their own database name.
PG_BENCH_DB = os.environ.get("JOINTCASE_BENCH_DB", "jointcase_bench")
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Row:
    """One line of the result table: a figure, its unit, the target and whether it is met."""

    name: str
    value: float | None
    unit: str
    target: str = ""
    met: bool | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def pg_version() -> str:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else "?"
    except Exception as err:
        return f"unavailable ({type(err).__name__})"


def machine() -> dict[str, str]:
    return {
        "cpus": str(os.cpu_count()),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": pg_version(),
        "os": platform.platform(),
    }


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, summed over its CPUs."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK, sum(values[:8]) / CLK_TCK


def settle(limit: float = 20.0, quiet: float = 0.25) -> float:
    """Let the previous benchmark's after-effects pass before the next one starts: PostgreSQL writes out what a
    loaded and dropped database left (CHECKPOINT), then wait until the machine is under ``quiet`` busy over half
    a second, at most ``limit`` seconds. Returns the seconds waited."""
    started = time.perf_counter()
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
    except Exception:  # no server, or not allowed: the wait below still applies
        pass
    while time.perf_counter() - started < limit:
        busy0, total0 = machine_cpu()
        time.sleep(0.5)
        busy1, total1 = machine_cpu()
        if total1 > total0 and (busy1 - busy0) / (total1 - total0) < quiet:
            break
    return time.perf_counter() - started


def pg_available() -> bool:
    return not pg_version().startswith("unavailable")


def pg_bench_url(name: str = PG_BENCH_DB) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def pg_recreate(name: str = PG_BENCH_DB) -> str:
    """Drop and create our own benchmark database (never the tests' ``test`` database)."""
    import psycopg

    assert name.startswith("jointcase_bench"), name
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg_bench_url(name)


def pg_drop(name: str = PG_BENCH_DB) -> None:
    import psycopg

    assert name.startswith("jointcase_bench"), name
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlalchemy_url(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1] if url.startswith("postgresql://") else url


def make_bench_deps(workdir: Path, url: str, clock: Any) -> tuple[Path, Any]:
    """Write a config for ``url`` in ``workdir``, migrate, load the directory; returns (config path, deps)."""
    from tests.conftest import make_deps, write_config

    config = write_config(workdir, sqlalchemy_url(url))
    _settings, deps = make_deps(config, clock)
    return config, deps


def deps_from_config(config: Path, clock: Any) -> Any:
    """Dependencies for an already initialised database (child processes: no migration, no directory sync)."""
    from app.bootstrap import build
    from app.settings import load_settings

    return build(load_settings(config, env={}), clock=clock)
