"""Meeting preparation as a Prefect flow (scaled mode) — the same use case as ``jointcase meeting prepare``
and the embedded scheduler's ``meeting_preparation`` job.

``meeting_preparation`` with a ``period`` prepares that period's meeting; without one it prepares every
schedule's next meeting whose notice period has begun (``prepare_due_meetings``). Re-running is harmless:
the meetings table holds one meeting per schedule and period. No result caching; retries only for
transient database errors (``retry_transient``), never for domain errors.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from typing import Any

import anyio.to_thread
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.types.entrypoint import EntrypointType

from workflows.flows.runtime import deps_for
from workflows.flows.sweep import parse_now, retry_transient
from workflows.meetings import prepare_due_meetings, prepare_meeting

FLOW_NAME = "meeting-preparation"
DEPLOYMENT_NAME = "meeting-preparation"


def _prepare(config_path: str | None, now: datetime | None, period: str | None, schedule: str | None) -> dict[str, Any]:
    deps = deps_for(config_path)
    if period:
        view = prepare_meeting(deps, period, schedule_id=schedule)
        return {"schedules": 1, "created": int(view.created), "meeting_id": view.id}
    return prepare_due_meetings(deps, now)


@task(
    name="prepare-meetings",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_transient,
)
async def prepare_meetings_task(
    config_path: str | None, now: datetime | None, period: str | None, schedule: str | None
) -> dict[str, Any]:
    """Prepare the meetings in a worker thread (blocking database work); returns the counts."""
    return await anyio.to_thread.run_sync(partial(_prepare, config_path, now, period, schedule))


@flow(name=FLOW_NAME, persist_result=False, retries=0)
async def meeting_preparation(
    config_path: str | None = None, now: str | None = None, period: str | None = None, schedule: str | None = None
) -> dict[str, Any]:
    """Prepare the regular joint meetings due for notice at ``now`` (ISO; default: the real clock), or the
    meeting of ``period`` (e.g. 2026-Q4) of ``schedule``."""
    counts = await prepare_meetings_task(config_path, parse_now(now), period, schedule)
    get_run_logger().info("meeting preparation: %s", counts)
    return counts


def meeting_deployment(config_path: str | None, every_seconds: int) -> RunnerDeployment:
    """Meeting preparation as a deployment that looks every ``every_seconds``, one run at a time."""
    return meeting_preparation.to_deployment(
        name=DEPLOYMENT_NAME,
        interval=timedelta(seconds=every_seconds),
        parameters={"config_path": config_path},
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
        description="jointcase: prepare the regular joint meetings (agenda, notice, invitations) when due.",
        tags=["jointcase"],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


__all__ = ["meeting_deployment", "meeting_preparation", "prepare_meetings_task"]
