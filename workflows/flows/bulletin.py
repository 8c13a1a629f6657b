"""The information bulletin as a Prefect flow: monthly (and quarterly) figures, stored and sent to subscribers.

``information_bulletin`` has the shape of ``sweep.deadline_sweep``: a thin async flow around one task that runs
``workflows.bulletins.generate_bulletin`` in a worker thread. No result caching or persistence (it writes; a
repeated run finds the stored bulletin unchanged and sends nothing); retries only for transient database
errors (``sweep.retry_transient``), never for domain errors (a period that has not ended). The period
defaults to the last full month — or quarter — before now, in Beijing time, so a run on the 1st at 08:00
reports the month just ended. ``bulletin_deployment`` schedules it; the lead wires it into the scheduler.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio.to_thread
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron
from prefect.types.entrypoint import EntrypointType

from workflows.bulletins import generate_bulletin, previous_period
from workflows.flows.runtime import deps_for
from workflows.flows.sweep import retry_transient

FLOW_NAME = "information-bulletin"
DEPLOYMENT_NAMES = {"monthly": "information-bulletin", "quarterly": "information-bulletin-quarterly"}
CRONS = {"monthly": "0 8 1 * *", "quarterly": "0 8 1 1,4,7,10 *"}  # 08:00 Beijing time on the 1st
TIMEZONE = "Asia/Shanghai"


def _generate(config_path: str | None, period: str | None, kind: str) -> dict[str, Any]:
    deps = deps_for(config_path)
    view = generate_bulletin(deps, period or previous_period(deps.now(), kind))
    summary = view.to_dict(figures=False)
    summary["total"] = view.figures["total"]["values"]
    return summary


@task(
    name="generate-bulletin",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=retry_transient,
)
async def generate_bulletin_task(config_path: str | None, period: str | None, kind: str = "monthly") -> dict[str, Any]:
    """Generate (or find unchanged) the bulletin in a worker thread; returns its summary and total figures."""
    return await anyio.to_thread.run_sync(partial(_generate, config_path, period, kind))


@flow(name=FLOW_NAME, persist_result=False, retries=0)
async def information_bulletin(
    config_path: str | None = None, period: str | None = None, kind: str = "monthly"
) -> dict[str, Any]:
    """Generate and send the bulletin of ``period`` (``YYYY-MM`` or ``YYYY-Qn``; default: the last full month,
    or the last full quarter when ``kind`` is ``quarterly``, before now in Beijing time).

    ``config_path``: the deployment's config.toml (default: ``$JOINTCASE_CONFIG`` or ./config.toml).
    """
    summary = await generate_bulletin_task(config_path, period, kind)
    get_run_logger().info(
        "bulletin %s v%s %s; %s subscriber(s) notified",
        summary["period"],
        summary["version"],
        summary["status"],
        summary["notified"],
    )
    return summary


def bulletin_deployment(config_path: str | None, cron: str | None = None, *, kind: str = "monthly") -> RunnerDeployment:
    """The bulletin as a deployment on ``cron`` (Beijing time; default the 1st at 08:00, of each month or of
    each quarter's first month), one run at a time."""
    if kind not in CRONS:
        raise ValueError(f"unknown bulletin kind {kind!r}; use monthly or quarterly")
    return information_bulletin.to_deployment(
        name=DEPLOYMENT_NAMES[kind],
        schedules=[Cron(cron or CRONS[kind], timezone=TIMEZONE)],
        parameters={"config_path": config_path, "kind": kind},
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
        description=f"jointcase: the {kind} information bulletin (信息通报), stored and sent to its subscribers.",
        tags=["jointcase"],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


__all__ = ["bulletin_deployment", "generate_bulletin_task", "information_bulletin"]
