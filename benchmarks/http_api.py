"""HTTP latency and throughput of the REST API on PostgreSQL (issue 8): 50 concurrent clients against
several real ``jointcase serve`` processes.

Set-up: a throw-away database (``jointcase_bench_http``), migrated, with the agencies directory and
``CASES`` cases in police_review built through the real use cases, and one API token per acting officer.
``workers`` processes of ``jointcase serve --no-demo`` (scheduler off) listen on loopback ports. A load
generator in its own process keeps ``clients`` keep-alive connections, spread round robin over the servers:

- read: ``GET /api/v1/cases/{no}`` as the market regulator's handler, each client over all the cases;
- event: ``POST /api/v1/cases/{no}/events`` ``request_supplement`` (police_review's internal self-transition,
  sent by the police handler) with ``If-Match`` of the ETag it last saw; each client owns one case, so a
  409/412 conflict can only come from a bug, and any answer other than 2xx is counted as an error.

Closed loop: every client sends its next request as soon as the answer arrives (the issue's figure; by
Little's law p50 is about clients / throughput once the CPUs are saturated). Paced: requests are due at a
fixed rate (half the closed loop's throughput) and latency counts from when each was due, so a queue
in the client counts too (no coordinated omission). The load generator shares the machine's cores with
the servers and PostgreSQL; it is a minimal HTTP/1.1 client on asyncio streams to keep its CPU small, and
the notes print what each side burnt per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import floor_app
from benchmarks.common import (
    PG_ADMIN_URL,
    PG_BENCH_DB,
    Row,
    machine_cpu,
    make_bench_deps,
    pg_drop,
    pg_recreate,
)
from deploy.processes import cpu_seconds, free_ports, start, stop, wait_healthy

DB_NAME = f"{PG_BENCH_DB}_http"
EVENT = "request_supplement"
READER = "sm_amr_handler"
SENDER = "sm_psb_handler"
READ_TARGET_MS = 50.0
EVENT_TARGET_MS = 100.0
JOINTCASE = str(Path(sys.executable).parent / "jointcase")


# --- the servers -----------------------------------------------------------------------------------------


@dataclass
class Server:
    """One ``jointcase serve`` process (leader of its own process group) and its log."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path


def start_servers(
    config: Path, count: int, workdir: Path, *, threads: int | None = None, timeout: float = 90
) -> list[Server]:
    """Start ``count`` ``jointcase serve --no-demo`` processes on ``config`` (scheduler off; ``threads``: their
    ``--threads``) and wait for each ``/healthz``; on failure the ones started are stopped, the log in the error."""
    env = {
        **os.environ,
        "JOINTCASE_CONFIG": str(config),
        "JOINTCASE_SCHEDULER__MODE": "off",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }

    def command(port: int) -> list[str]:
        serve = [JOINTCASE, "serve", "--no-demo", "--host", "127.0.0.1", "--port", str(port)]
        return serve + (["--threads", str(threads)] if threads else [])

    return _serve(command, count, env, workdir, "serve", cwd=workdir, timeout=timeout)


def _serve(
    command: Any, count: int, env: dict[str, str], workdir: Path, name: str, *, cwd: Path, timeout: float
) -> list[Server]:
    """Start ``count`` servers (``command(port)``, logs in ``workdir``) and wait for each ``/healthz``; on failure
    the ones started are stopped, the log in the error."""
    servers: list[Server] = []
    try:
        for i, port in enumerate(free_ports(count)):
            log = workdir / f"{name}-{i}.log"
            servers.append(Server(start(command(port), env, log, cwd=cwd), port, log))
        for server in servers:  # all start at once; then each is waited for
            wait_healthy(f"http://127.0.0.1:{server.port}/healthz", server.proc, server.log, timeout=timeout)
    except BaseException:
        stop_servers(servers)
        raise
    return servers


def stop_servers(servers: list[Server], timeout: float = 20) -> None:
    """SIGTERM each server's process group, then SIGKILL the groups that linger."""
    for server in servers:
        stop(server.proc, timeout=timeout)


# --- the load generator (its own process) ----------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection: a minimal client that reads ``Content-Length`` answers."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        await self.close()
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def request(
        self, method: str, path: str, token: str, body: bytes = b"", extra: str = ""
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request and read the whole answer: (status, lower-cased headers, body)."""
        if self.writer is None or self.reader is None:
            await self.open()
        assert self.writer is not None and self.reader is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nAuthorization: Bearer {token}\r\n"
            f"Accept: application/json\r\n{extra}"
        )
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split(b" ", 2)[1])
        headers: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        payload = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, payload


@dataclass
class LoadSpec:
    """What the load generator does: where, as whom, on which cases, for how long."""

    ports: list[int]
    server_pids: list[int]
    cases: list[str]
    read_token: str
    event_token: str
    clients: int
    seconds: float
    warmup: float
    paced_fraction: float
    kinds: tuple[str, ...] = ("read", "event")


class Client:
    """One client: a connection to one server; for events it owns one case and the version it last saw."""

    def __init__(self, index: int, spec: LoadSpec) -> None:
        self.index = index
        self.spec = spec
        self.conn = Connection(spec.ports[index % len(spec.ports)])
        self.case = spec.cases[index % len(spec.cases)]
        self.version: str | None = None
        self.reads = 0

    async def read(self) -> tuple[int, str]:
        cases = self.spec.cases
        case = cases[(self.index + self.reads) % len(cases)]
        self.reads += 1
        status, _headers, _body = await self.conn.request("GET", f"/api/v1/cases/{case}", self.spec.read_token)
        return status, ""

    async def event(self) -> tuple[int, str]:
        if self.version is None:
            await self.sync()
        body = json.dumps({"event": EVENT, "data": {}, "note": "bench"}).encode()
        status, headers, payload = await self.conn.request(
            "POST", f"/api/v1/cases/{self.case}/events", self.spec.event_token, body, f"If-Match: {self.version}\r\n"
        )
        if 200 <= status < 300:
            self.version = headers.get("etag")
            return status, ""
        self.version = None  # re-read the ETag before the next event
        return status, payload[:300].decode("utf-8", "replace")

    async def sync(self) -> None:
        _status, headers, _body = await self.conn.request("GET", f"/api/v1/cases/{self.case}", self.spec.event_token)
        self.version = headers.get("etag")


@dataclass
class PhaseResult:
    """Latencies (ms) of the answered requests of one phase, what went wrong, and the CPU it took."""

    name: str
    latencies: list[float]
    seconds: float
    statuses: dict[int, int]
    failures: list[str]
    server_cpu: float
    loadgen_cpu: float
    machine_busy: float
    machine_total: float

    @property
    def errors(self) -> int:
        """Answers that were not 2xx, and requests that got no answer (status 0)."""
        return sum(count for status, count in self.statuses.items() if not 200 <= status < 300)

    @property
    def rate(self) -> float:
        """Answered requests per second."""
        return len(self.latencies) / self.seconds if self.seconds else 0.0


async def _call(client: Client, kind: str) -> tuple[int, str]:
    try:
        return await (client.read() if kind == "read" else client.event())
    except (OSError, asyncio.IncompleteReadError, ValueError) as err:
        await client.conn.close()
        return 0, f"{type(err).__name__}: {err}"


async def _closed(clients: list[Client], kind: str, seconds: float) -> tuple[list[float], list[tuple[int, str]], float]:
    """Every client sends its next request when the answer arrives, until ``seconds`` have passed."""
    latencies: list[float] = []
    outcomes: list[tuple[int, str]] = []
    started = time.perf_counter()
    end = started + seconds

    async def loop(client: Client) -> None:
        while (t0 := time.perf_counter()) < end:
            status, why = await _call(client, kind)
            latencies.append((time.perf_counter() - t0) * 1000)
            outcomes.append((status, why))

    await asyncio.gather(*(loop(c) for c in clients))
    return latencies, outcomes, time.perf_counter() - started


async def _paced(
    clients: list[Client], kind: str, seconds: float, rate: float
) -> tuple[list[float], list[tuple[int, str]], float]:
    """Requests due every 1/``rate`` s, each on the next idle client; latency counts from when it was due."""
    latencies: list[float] = []
    outcomes: list[tuple[int, str]] = []
    idle: asyncio.Queue[Client] = asyncio.Queue()
    for client in clients:
        idle.put_nowait(client)
    started = time.perf_counter()

    async def one(due: float) -> None:
        client = await idle.get()
        try:
            status, why = await _call(client, kind)
        finally:
            idle.put_nowait(client)
        latencies.append((time.perf_counter() - due) * 1000)
        outcomes.append((status, why))

    tasks = []
    for k in range(max(1, int(rate * seconds))):
        due = started + k / rate
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    return latencies, outcomes, time.perf_counter() - started


async def _phase(
    name: str, clients: list[Client], kind: str, spec: LoadSpec, seconds: float, rate: float | None = None
) -> PhaseResult:
    # Fresh connections: uvicorn closes idle keep-alive connections after 5 s.
    await asyncio.gather(*(c.conn.open() for c in clients))
    cpu0 = [cpu_seconds(p) for p in spec.server_pids]
    own0, (busy0, total0) = time.process_time(), machine_cpu()
    if rate is None:
        latencies, outcomes, took = await _closed(clients, kind, seconds)
    else:
        latencies, outcomes, took = await _paced(clients, kind, seconds, rate)
    busy1, total1 = machine_cpu()
    server_cpu = sum(cpu_seconds(p) for p in spec.server_pids) - sum(cpu0)
    statuses: dict[int, int] = {}
    failures: list[str] = []
    for status, why in outcomes:
        statuses[status] = statuses.get(status, 0) + 1
        if not 200 <= status < 300 and len(failures) < 5:
            failures.append(f"{status} {why}")
    return PhaseResult(
        name, latencies, took, statuses, failures, server_cpu, time.process_time() - own0, busy1 - busy0,
        total1 - total0,
    )  # fmt: skip


async def _run_load(spec: LoadSpec) -> list[PhaseResult]:
    clients = [Client(i, spec) for i in range(spec.clients)]
    # Warm-up: every server loads its chart classes, templates and statement caches; every client its ETag.
    for kind in spec.kinds:
        await _phase("warmup", clients, kind, spec, spec.warmup / len(spec.kinds))
    results = []
    for kind in spec.kinds:
        closed = await _phase(kind, clients, kind, spec, spec.seconds)
        results.append(closed)
        if spec.paced_fraction > 0 and closed.latencies:
            rate = spec.paced_fraction * len(closed.latencies) / closed.seconds
            results.append(await _phase(f"{kind} paced", clients, kind, spec, spec.seconds, rate))
    await asyncio.gather(*(c.conn.close() for c in clients))
    return results


def _loadgen(spec: LoadSpec, out: Any) -> None:
    """The load generator's process: run the phases and send back the results."""
    try:
        out.put(asyncio.run(_run_load(spec)))
    except BaseException as err:  # the parent must not wait for a result that never comes
        out.put(err)
        raise


def _drive(servers: list[Server], **load: Any) -> list[PhaseResult]:
    """Run the load (``LoadSpec``'s other fields) against ``servers``; their log tails are printed on failures."""
    results = run_load(LoadSpec(ports=[s.port for s in servers], server_pids=[s.proc.pid for s in servers], **load))
    if any(r.failures for r in results):
        _print_server_errors(servers)
    return results


def run_load(spec: LoadSpec) -> list[PhaseResult]:
    """Run the load generator in a process of its own (its CPU is not the servers' event loops)."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_loadgen, args=(spec, out), daemon=True)
    proc.start()
    try:
        result = out.get(timeout=spec.warmup + 4 * spec.seconds + 120)
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
    if isinstance(result, BaseException):
        raise result
    return result  # type: ignore[no-any-return]


# --- set-up and the figures ---------------------------------------------------------------------------------


def prepare(workdir: Path, url: str, cases: int) -> tuple[Path, list[str], dict[str, str]]:
    """Migrate, load the directory, build ``cases`` cases in police_review, create the officers' tokens."""
    from benchmarks.transitions import build_cases
    from tests.conftest import FakeClock
    from workflows.auth import create_token

    # Build in the past (the benchmarks' fixed Wednesday): the statutory clocks stay within the calendar's years.
    clock = FakeClock(datetime(2026, 3, 4, 2, 0, tzinfo=UTC))
    config, deps = make_bench_deps(workdir, url, clock)
    numbers = build_cases(deps, clock, workdir, cases, prefix="http")
    tokens = {who: create_token(deps, who, name=f"bench-{who}")["token"] for who in (READER, SENDER)}
    deps.engine.dispose()
    return config, numbers, tokens


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank (nan when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def rows_of(result: PhaseResult, workers: int, clients: int) -> list[Row]:
    """The table rows of one measured phase (a paced one: its latencies and errors only)."""
    kind, paced = result.name.split(" ")[0], result.name.endswith("paced")
    target = READ_TARGET_MS if kind == "read" else EVENT_TARGET_MS
    n, errors, rps = len(result.latencies), result.errors, result.rate
    label = f"http {kind}{' paced' if paced else ''}"
    shape = f"paced at {rps:.0f}/s over {clients} connections" if paced else f"{clients} clients, closed loop"
    busy = 100 * result.machine_busy / result.machine_total if result.machine_total else float("nan")
    cpu = (
        f"CPU/request: servers {1000 * result.server_cpu / max(n, 1):.1f} ms, load generator "
        f"{1000 * result.loadgen_cpu / max(n, 1):.1f} ms; machine busy {busy:.0f}%"
    )
    what = f"{n} requests in {result.seconds:.1f} s; {errors} errors" + (
        f" {dict(sorted(result.statuses.items()))}: {result.failures}" if errors else ""
    )
    p95 = percentile(result.latencies, 0.95)
    rows = [
        Row(f"{label} p50", percentile(result.latencies, 0.50), "ms", note=f"{shape}, {workers} serve workers"),
        Row(f"{label} p95", p95, "ms", *((f"< {target:.0f}", p95 < target) if not paced else ("", None)), what),
        Row(f"{label} p99", percentile(result.latencies, 0.99), "ms", note=cpu),
    ]
    if not paced:
        cores = f"the load generator shares the {os.cpu_count()} cores"
        rows.append(Row(f"{label} throughput", rps, "requests/s", note=cores))
        rows.append(Row(f"{label} errors", errors, "non-2xx", "0", errors == 0, "a 409/412 conflict counts too"))
    return rows


def _print_server_errors(servers: list[Server], lines: int = 60) -> None:
    """Requests failed: show the servers' own account (their logs go with the temporary folder)."""
    for server in servers:
        text = server.log.read_text(encoding="utf-8", errors="replace").splitlines()
        first = next((i for i, line in enumerate(text) if "Traceback" in line or "ERROR" in line), None)
        if first is not None:
            print(f"--- {server.log.name} (port {server.port}), from its first error:", file=sys.stderr)
            print("\n".join(text[first : first + lines]), file=sys.stderr)


def bench_http(
    workers: int = 2,
    clients: int = 50,
    seconds: float = 10.0,
    warmup: float = 4.0,
    cases: int = 50,
    paced_fraction: float = 0.5,
    kinds: tuple[str, ...] = ("read", "event"),
    threads: int | None = None,
) -> list[Row]:
    """The HTTP figures of issue 8 on PostgreSQL: read and event latency and throughput at ``clients``."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url = pg_recreate(DB_NAME)
        servers: list[Server] = []
        try:
            t0 = time.perf_counter()
            config, numbers, tokens = prepare(workdir, url, cases)
            built = time.perf_counter() - t0
            servers = start_servers(config, workers, workdir, threads=threads)
            results = _drive(
                servers,
                cases=numbers,
                read_token=tokens[READER],
                event_token=tokens[SENDER],
                clients=clients,
                seconds=seconds,
                warmup=warmup,
                paced_fraction=paced_fraction,
                kinds=kinds,
            )
        finally:
            stop_servers(servers)
            pg_drop(DB_NAME)
    rows: list[Row] = []
    for result in results:
        rows.extend(rows_of(result, workers, clients))
    rows[0].note += f" (--threads {threads})" if threads else " (40 threads each)"
    rows[0].note += f"; {cases} cases in police_review built in {built:.0f} s"
    return rows


#: Round trips of the floor endpoints: none (the HTTP stack and the clients alone), one query, and as many as
#: a case read sends (the caller, the officer, the case, participants, deadlines, pause ledger).
FLOOR_QUERIES = (0, 1, 6)


def bench_http_floor(workers: int = 2, clients: int = 50, seconds: float = 10.0, warmup: float = 2.0) -> list[Row]:
    """The same closed loop against ``benchmarks.floor_app`` (bare FastAPI under the same uvicorn, no auth, no
    jointcase) answering with each of ``FLOOR_QUERIES`` PostgreSQL round trips: what these cores allow any
    endpoint at this load."""
    rows: list[Row] = []
    root = Path(__file__).resolve().parent.parent

    def command(port: int) -> list[str]:
        uvicorn = [sys.executable, "-m", "uvicorn", "benchmarks.floor_app:app", "--host", "127.0.0.1"]
        return [*uvicorn, "--port", str(port), "--log-level", "warning", "--no-access-log"]

    for queries in FLOOR_QUERIES:
        env = {**os.environ, floor_app.URL_ENV: PG_ADMIN_URL, floor_app.QUERIES_ENV: str(queries)}
        with tempfile.TemporaryDirectory() as tmp:
            servers: list[Server] = []
            try:
                servers = _serve(command, workers, env, Path(tmp), "floor", cwd=root, timeout=60)
                (result,) = _drive(
                    servers,
                    cases=[f"floor-{i}" for i in range(clients)],
                    read_token="none",
                    event_token="none",
                    clients=clients,
                    seconds=seconds,
                    warmup=warmup,
                    paced_fraction=0,
                    kinds=("read",),
                )
            finally:
                stop_servers(servers)
        label = f"http floor {queries} quer{'y' if queries == 1 else 'ies'}"
        what = f"bare FastAPI + uvicorn, {workers} workers, {clients} clients closed loop; {result.errors} errors"
        rows += [
            Row(f"{label} p50", percentile(result.latencies, 0.50), "ms", note=what),
            Row(f"{label} p95", percentile(result.latencies, 0.95), "ms", note=f"PostgreSQL round trips: {queries}"),
            Row(f"{label} throughput", result.rate, "requests/s"),
        ]
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.http_api [--workers N] [--clients N] [--seconds S]``: only these figures."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.http_api", description=__doc__)
    parser.add_argument("--workers", type=int, default=2, help="jointcase serve processes (default 2)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measured phase")
    parser.add_argument("--paced", type=float, default=0.5, help="paced rate as a fraction of closed loop (0: off)")
    parser.add_argument("--kind", action="append", choices=("read", "event"), help="measure only this (repeatable)")
    parser.add_argument("--threads", type=int, help="jointcase serve --threads (default: its own, 40)")
    parser.add_argument("--floor", action="store_true", help="the bare FastAPI endpoints instead (http_floor)")
    args = parser.parse_args(argv)
    kinds = tuple(args.kind or ("read", "event"))
    if args.floor:
        rows = bench_http_floor(args.workers, args.clients, args.seconds)
    else:
        rows = bench_http(
            args.workers, args.clients, args.seconds, paced_fraction=args.paced, kinds=kinds, threads=args.threads
        )
    for row in rows:
        met = "-" if row.met is None else ("yes" if row.met else "NO")
        value = "-" if row.value is None else f"{row.value:,.1f}"
        print(f"{row.name:30} {value:>10} {row.unit:12} {row.target:8} {met:4} {row.note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
