"""``jointcase scheduler``: run the embedded scheduler, list its stored jobs, run a Prefect flow once
(``deadline-sweep`` or ``outbox-relay``).

Prefect is imported only by ``flow-run``, so the rest of the CLI starts without it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from types import FrameType
from typing import Annotated

import typer
from rich.table import Table

from app.cli import JsonOpt, _deps, _emit, _errors, _parse_time, _settings, out
from models.db import has_schema
from states.errors import InvalidInput
from workflows.flows.runtime import deps_for
from workflows.flows.scheduler import JOB_IDS, JOB_TABLE, start_embedded, stop_embedded, stored_jobs

scheduler_app = typer.Typer(
    help="Periodic jobs: the embedded scheduler (deadline sweep, outbox relay) and their Prefect flows. 定时任务",
    no_args_is_help=True,
)

_NOT_INITIALISED = "the database is not initialised; run `jointcase init` first"


@scheduler_app.command("run")
def run() -> None:
    """Run the embedded scheduler in the foreground until Ctrl-C or SIGTERM (scheduler.mode = "embedded")."""
    with _errors(False):
        settings = _settings()
        deps = deps_for(str(settings.config_path))
        if not has_schema(deps.engine):
            raise InvalidInput(_NOT_INITIALISED)
        mode = settings.scheduler.mode
        if mode != "embedded":
            raise InvalidInput(
                f'scheduler.mode is "{mode}" in {settings.config_path}: the embedded scheduler does not run '
                '(set mode = "embedded" to run it here)'
            )
        stop = threading.Event()

        def _request_stop(_signum: int, _frame: FrameType | None) -> None:
            stop.set()

        previous = {sig: signal.signal(sig, _request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        scheduler = None
        try:
            with _log_to_stderr("workflows"):
                scheduler = start_embedded(settings, deps=deps)
                if scheduler is None:  # cannot happen: the mode was checked above
                    raise InvalidInput("the embedded scheduler did not start; see the log")
                lines = [f"embedded scheduler running, jobs stored in {JOB_TABLE} of {deps.engine.url}:"]
                for job_id in JOB_IDS:
                    job = scheduler.get_job(job_id)
                    if job is None:  # cannot happen: start_embedded adds every job
                        raise InvalidInput(f"the embedded scheduler has no job {job_id}; see the log")
                    interval = getattr(job.trigger, "interval", None)
                    every = f"every {int(interval.total_seconds())} s" if interval else f"on {job.trigger}"
                    next_run = job.next_run_time.isoformat(timespec="seconds") if job.next_run_time else "—"
                    lines.append(f"  {job_id} ({job.func_ref}) {every}, next at {next_run}")
                lines.append("Ctrl-C or SIGTERM stops it.")
                out.print("\n".join(lines), highlight=False)
                while not stop.wait(1.0):
                    pass
                out.print("stopping: waiting for a running job to finish…", highlight=False)
                stop_embedded(scheduler, wait=True)
        finally:
            stop_embedded(scheduler, wait=False)  # only if something above failed
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        out.print("embedded scheduler stopped", highlight=False)


@contextmanager
def _log_to_stderr(*names: str) -> Iterator[None]:
    """Show these loggers' INFO lines (each run's counts) on stderr with a timestamp and their level.

    Without this they would reach the CLI's root handler, which prints everything as ``warning: ...``.
    The loggers are put back as they were afterwards (the CLI also runs in-process, in tests).
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    loggers = [logging.getLogger(name) for name in names]
    saved = [(lg.handlers, lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.handlers, lg.propagate = [handler], False
        lg.setLevel(logging.INFO)
    try:
        yield
    finally:
        for lg, (handlers, level, propagate) in zip(loggers, saved, strict=True):
            lg.handlers, lg.propagate = handlers, propagate
            lg.setLevel(level)


@scheduler_app.command("jobs")
def jobs(as_json: JsonOpt = False) -> None:
    """List the jobs stored in the database's job store, with their next run time."""
    with _errors(as_json):
        rows = stored_jobs(_deps())

        def human() -> None:
            if not rows:
                out.print(f"no stored jobs ({JOB_TABLE} is empty or missing: no embedded scheduler ran here)")
                return
            table = Table(title="定时任务 stored jobs")
            for col in ("id", "name", "function", "trigger", "next run", "coalesce", "max instances"):
                table.add_column(col)
            for j in rows:
                table.add_row(
                    j.id, j.name, j.func, j.trigger, j.next_run_time or "paused", str(j.coalesce), str(j.max_instances)
                )
            out.print(table)

        _emit(as_json, [j.to_dict() for j in rows], human)


class FlowName(StrEnum):
    """The Prefect flows ``flow-run`` can run."""

    DEADLINE_SWEEP = "deadline-sweep"
    OUTBOX_RELAY = "outbox-relay"
    MEETING_PREPARATION = "meeting-preparation"


@scheduler_app.command("flow-run")
def flow_run(
    flow: Annotated[
        FlowName, typer.Option("--flow", help="Which flow: deadline-sweep, outbox-relay or meeting-preparation.")
    ] = FlowName.DEADLINE_SWEEP,
    now: Annotated[
        str | None, typer.Option("--now", help="Run as of this time (ISO; default: now). For catching up.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a Prefect flow once (scaled mode): deadline-sweep (default) or outbox-relay. Uses PREFECT_API_URL;
    without it Prefect first starts a temporary local server (about 10 s)."""
    with _errors(as_json):
        settings = _settings()
        config_path = str(settings.config_path)
        if not has_schema(deps_for(config_path).engine):
            raise InvalidInput(_NOT_INITIALISED)
        when = _parse_time(now, "--now")
        at = when.isoformat() if when else None
        # Each flow module imports Prefect: only here.
        started = time.perf_counter()
        with _log_to_stderr("workflows", "prefect"):
            if flow is FlowName.OUTBOX_RELAY:
                from workflows.flows.relay import outbox_relay

                counts = asyncio.run(outbox_relay(config_path=config_path, now=at))
            elif flow is FlowName.MEETING_PREPARATION:
                from workflows.flows.meetings import meeting_preparation

                counts = asyncio.run(meeting_preparation(config_path=config_path, now=at))
            else:
                from workflows.flows.sweep import deadline_sweep

                counts = asyncio.run(deadline_sweep(config_path=config_path, now=at))
        elapsed = time.perf_counter() - started

        def human() -> None:
            if flow is FlowName.MEETING_PREPARATION:
                summary = f"{counts['schedules']} schedule(s), {counts['created']} meeting(s) prepared"
            elif flow is FlowName.OUTBOX_RELAY:
                summary = (
                    f"{counts['claimed']} due, {counts['sent']} sent, {counts['retried']} to retry, "
                    f"{counts['parked']} parked"
                )
            else:
                summary = (
                    f"{counts['cases']} case(s), {counts['reminders']} reminder(s), {counts['missed']} miss(es), "
                    f"{counts['auto_listed']} auto-listing(s), {counts['escalations']} escalation(s), "
                    f"{counts['notifications']} notification(s) queued"
                )
            out.print(f"flow {flow.value} done in {elapsed:.1f} s: {summary}", highlight=False)

        _emit(as_json, counts, human)


# --- the scaled mode ---------------------------------------------------------------------------------------

prefect_app = typer.Typer(
    help="The scaled mode: the periodic jobs as Prefect deployments on a Prefect server. 分布式调度",
    no_args_is_help=True,
)


def _scaled_config() -> str:
    """The config path for the deployments; refuses without a Prefect server to talk to."""
    import os

    if not os.environ.get("PREFECT_API_URL"):
        raise InvalidInput(
            "set PREFECT_API_URL to the Prefect server's API (e.g. http://127.0.0.1:4200/api; "
            "start one with `prefect server start`)"
        )
    settings = _settings()
    if settings.scheduler.mode != "prefect":
        logging.getLogger("jointcase").warning(
            'scheduler.mode is %r: set it to "prefect" so that `jointcase serve` does not run the jobs too',
            settings.scheduler.mode,
        )
    if not has_schema(deps_for(str(settings.config_path)).engine):
        raise InvalidInput(_NOT_INITIALISED)
    return str(settings.config_path)


@prefect_app.command("deploy")
def prefect_deploy(
    work_pool: Annotated[
        str | None,
        typer.Option(
            "--work-pool",
            help="Register them to this work pool (created as a process pool if missing) for "
            "`prefect worker start --pool NAME`; without it `jointcase prefect serve` runs them.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register the deployments (deadline sweep, outbox relay, meeting preparation, bulletins) with their
    schedules from config.toml on the Prefect server; `jointcase prefect serve` or a Prefect worker runs them."""
    with _errors(as_json):
        config_path = _scaled_config()
        from workflows.flows.sweep import ensure_process_pool, scaled_deployments

        rows = []
        with _log_to_stderr("workflows"):
            if work_pool:
                ensure_process_pool(work_pool)
            for deployment in scaled_deployments(config_path):
                # The same deployment either way; with a pool, a worker imports the flow from the installed
                # package (module-path entrypoint, no pull steps) on whichever machine it runs.
                deployment_id = deployment.apply(work_pool_name=work_pool)
                schedules = [
                    str(getattr(s.schedule, "interval", None) or getattr(s.schedule, "cron", ""))
                    for s in deployment.schedules
                ]
                rows.append(
                    {
                        "name": deployment.name,
                        "flow": deployment.flow_name,
                        "id": str(deployment_id),
                        "schedules": schedules,
                        "work_pool": work_pool,
                    }
                )

        def human() -> None:
            where = f"work pool {work_pool}" if work_pool else "for `jointcase prefect serve`"
            table = Table(title=f"Prefect deployments ({where})")
            for col in ("flow/deployment", "schedule", "id"):
                table.add_column(col)
            for row in rows:
                table.add_row(f"{row['flow']}/{row['name']}", ", ".join(row["schedules"]), row["id"])
            out.print(table)

        _emit(as_json, rows, human)


@prefect_app.command("serve")
def prefect_serve() -> None:
    """Serve the deployments: run each flow on its schedule until SIGTERM (one process per machine)."""
    with _errors(False):
        config_path = _scaled_config()
        from workflows.flows.sweep import serve_deployments

        with _log_to_stderr("workflows", "prefect"):
            serve_deployments(config_path)


__all__ = ["prefect_app", "scheduler_app"]
