"""Starting and stopping local servers for the smoke test and the integration tests: free loopback ports, child
processes in their own process groups, the Prefect environment of a throw-away server, waiting for health.

Every process is started in a new session, so stopping it (SIGTERM, then SIGKILL) reaches its whole process
group; ``descendants`` finds children that left the group (Prefect starts each flow run in its own session).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now.

    All probe sockets stay bound until every port is chosen: the kernel may hand a port that was just released
    to the next ``bind(0)``, so ports picked one at a time can repeat (CI saw the Prefect server and a web worker
    given the same port)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def start(cmd: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in a new session with its output appended to ``log``."""
    with log.open("ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            list(cmd), env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> int | None:
    """SIGTERM the process group, then SIGKILL it if it lingers; returns the exit code."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    return proc.returncode


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, ...), or None if it is gone."""
    try:
        # The command name is in parentheses and may hold spaces: the fields after the last ")" are fixed.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far (0 when it is gone)."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields else 0.0


def descendants(pid: int) -> set[tuple[int, str]]:
    """Every living process below ``pid`` (read from /proc), whatever its session, as (pid, start time):
    the start time tells a process from a later one that got its pid again."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        fields = _stat(int(entry.name)) if entry.name.isdigit() else None
        if fields:
            children.setdefault(int(fields[1]), []).append((int(entry.name), fields[19]))
    found: set[tuple[int, str]] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child[0])
    return found


def alive(process: tuple[int, str]) -> bool:
    """Whether this process (pid, start time) still runs; a zombie does not."""
    fields = _stat(process[0])
    return fields is not None and fields[19] == process[1] and fields[0] != "Z"


def kill_all(processes: set[tuple[int, str]], timeout: float = 10) -> set[tuple[int, str]]:
    """SIGTERM ``processes`` (from ``descendants``), SIGKILL those still there after ``timeout``; returns those
    that survived both. A pid now held by another process is left alone."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        for process in [p for p in processes if alive(p)]:
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                os.kill(process[0], sig)
        deadline = time.monotonic() + wait
        while any(alive(p) for p in processes) and time.monotonic() < deadline:
            time.sleep(0.2)
    return {p for p in processes if alive(p)}


def prefect_env(
    home: Path, api_url: str | None = None, database_url: str | None = None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a throw-away Prefect server and its clients: its own home and database (SQLite in
    ``home`` unless ``database_url``), no telemetry, and short loops so that schedules act within seconds."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",  # schedule new runs within seconds, not a minute
        PREFECT_RUNNER_POLL_FREQUENCY="2",
        PREFECT_WORKER_QUERY_SECONDS="2",
        PREFECT_API_DATABASE_CONNECTION_URL=database_url or f"sqlite+aiosqlite:///{home / 'prefect.db'}",
    )
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> float:
    """Poll ``url`` until it answers 200; returns the seconds waited. Raises RuntimeError with the log's tail
    if ``proc`` exits first or the time runs out."""
    started = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}:\n{tail(log)}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{url} did not answer within {timeout:.0f} s:\n{tail(log)}")
        time.sleep(0.3)


def tail(log: Path, chars: int = 3000) -> str:
    """The end of a log file (empty if there is none)."""
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


__all__ = [
    "alive",
    "cpu_seconds",
    "descendants",
    "free_port",
    "free_ports",
    "kill_all",
    "prefect_env",
    "start",
    "stop",
    "tail",
    "wait_healthy",
]
