"""The deadline sweep as a Prefect flow, for the scaled mode (a Prefect server owns the schedule).

``deadline_sweep`` is a thin async flow around one task that runs ``workflows.deadlines.fire_due_deadlines``
in a worker thread: on a warm test server an async flow run costs 0.12-0.16 s, a sync one 1.05-1.10 s
(the heartbeat join, STACK-NOTES gotcha 2). No result caching or persistence (the sweep writes; its row
claims and the unique ``fired_alerts`` rows make a repeated run harmless); retries only for transient
database errors, never for domain errors. ``serve_deployments`` serves it, and the outbox relay of
``workflows.flows.relay`` (which reuses ``parse_now``, ``is_transient`` and ``retry_transient`` from here), on
their intervals for a Prefect server; the same deployments go to a work pool (``ensure_process_pool``) for
``prefect worker start`` to run instead.

Like ``runtime``, this module is a process edge and may read the settings (``serve_deployments``).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import anyio.to_thread
from prefect import flow, get_run_logger, serve, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy, TaskRun
from prefect.deployments.runner import RunnerDeployment
from prefect.states import State
from prefect.types.entrypoint import EntrypointType
from sqlalchemy.exc import DBAPIError, OperationalError

from app.settings import load_settings
from states.calendar import SHANGHAI
from states.errors import InvalidInput
from workflows.deadlines import fire_due_deadlines
from workflows.flows.runtime import deps_for

FLOW_NAME = "deadline-sweep"
DEPLOYMENT_NAME = "deadline-sweep"


def parse_now(value: str | None) -> datetime | None:
    """An ISO date or date-time as an aware datetime; without an offset it is Beijing time."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"now: {value!r} is not an ISO date-time (e.g. 2026-11-20T09:30+08:00)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=SHANGHAI)


def is_transient(exc: BaseException | None) -> bool:
    """A database error that a later attempt may not meet: a busy SQLite file, a lost or refused PostgreSQL
    connection, a serialisation failure. SQLite reports a missing table as an OperationalError too; that
    one is permanent."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    if isinstance(exc.orig, sqlite3.OperationalError):
        message = str(exc.orig)
        return "locked" in message or "busy" in message  # SQLITE_BUSY, SQLITE_LOCKED
    return True


def retry_transient(_task: Any, _run: TaskRun, state: State) -> bool:
    """Prefect's retry predicate: retry only ``is_transient`` failures."""
    data = state.data
    return is_transient(data if isinstance(data, BaseException) else None)


def _sweep(config_path: str | None, now: datetime | None) -> dict[str, int]:
    return fire_due_deadlines(deps_for(config_path), now).to_dict()


@task(
    name="fire-due-deadlines",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_transient,
)
async def fire_due_deadlines_task(config_path: str | None, now: datetime | None) -> dict[str, int]:
    """Run the sweep in a worker thread (it is blocking database work) and return its counts."""
    return await anyio.to_thread.run_sync(partial(_sweep, config_path, now))


@flow(name=FLOW_NAME, persist_result=False, retries=0)
async def deadline_sweep(config_path: str | None = None, now: str | None = None) -> dict[str, int]:
    """Fire every reminder, miss, auto-listing and escalation due at ``now`` (ISO; default: the real clock).

    ``config_path``: the deployment's config.toml (default: ``$JOINTCASE_CONFIG`` or ./config.toml).
    """
    when = parse_now(now)
    counts = await fire_due_deadlines_task(config_path, when)
    get_run_logger().info("deadline sweep: %s", counts)
    return counts


def sweep_deployment(config_path: str | None, every_seconds: int) -> RunnerDeployment:
    """The deadline sweep as a deployment that runs every ``every_seconds``, one run at a time."""
    return deadline_sweep.to_deployment(
        name=DEPLOYMENT_NAME,
        interval=timedelta(seconds=every_seconds),
        parameters={"config_path": config_path},
        # Like max_instances=1 with coalesce: a run due while one is still going is cancelled, not queued.
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
        description="jointcase: fire due deadline reminders, misses and supervision escalations.",
        tags=["jointcase"],
        entrypoint_type=EntrypointType.MODULE_PATH,  # the installed package, whatever the working directory
    )


def scaled_deployments(
    config_path: str | None, every_seconds: int | None = None, relay_every_seconds: int | None = None
) -> list[RunnerDeployment]:
    """Every deployment of the scaled mode: the deadline sweep, the outbox relay, meeting preparation and
    the information bulletins, with the schedules of ``config_path``.

    The sweep and relay intervals default to ``[scheduler] sweep_every_seconds`` and ``[notifications]
    relay_every_seconds``; meeting preparation looks every ``[meetings] prepare_every_seconds``; the monthly
    bulletin runs on ``[bulletins] cron`` (default the 1st at 08:00, Beijing) for the month just ended, the
    quarterly one on the 1st of each quarter's first month at 08:00.
    """
    from workflows.flows.bulletin import bulletin_deployment  # these import this module's helpers
    from workflows.flows.meetings import meeting_deployment
    from workflows.flows.relay import relay_deployment

    settings = load_settings(config_path)
    if every_seconds is None:
        every_seconds = settings.scheduler.sweep_every_seconds
    if relay_every_seconds is None:
        relay_every_seconds = settings.notifications.relay_every_seconds
    return [
        sweep_deployment(config_path, every_seconds),
        relay_deployment(config_path, relay_every_seconds),
        meeting_deployment(config_path, settings.meetings.prepare_every_seconds),
        bulletin_deployment(config_path, settings.bulletins.cron, kind="monthly"),
        bulletin_deployment(config_path, kind="quarterly"),
    ]


def ensure_process_pool(name: str) -> str:
    """Create the Prefect work pool ``name`` of type ``process`` unless it exists; returns its type.

    A pool that exists is left as it is (a site may run another worker type), so this is safe to repeat.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            # The process worker's own job template: `prefect worker start --type process` expects it.
            template = ProcessWorker.get_default_base_job_template()
            pool = client.create_work_pool(WorkPoolCreate(name=name, type="process", base_job_template=template))
        except ObjectAlreadyExists:
            pool = client.read_work_pool(name)
    return str(pool.type)


def serve_deployments(
    config_path: str | None, every_seconds: int | None = None, relay_every_seconds: int | None = None
) -> None:
    """Serve every scaled-mode deployment against ``PREFECT_API_URL`` until SIGTERM.

    ``config_path`` must name the config file as this machine sees it; every flow run reads it.
    """
    serve(*scaled_deployments(config_path, every_seconds, relay_every_seconds))


__all__ = [
    "deadline_sweep",
    "ensure_process_pool",
    "fire_due_deadlines_task",
    "is_transient",
    "parse_now",
    "retry_transient",
    "scaled_deployments",
    "serve_deployments",
    "sweep_deployment",
]
