"""The outbox relay as a Prefect flow, for the scaled mode (a Prefect server owns the schedule).

``outbox_relay`` has the shape of ``sweep.deadline_sweep``: a thin async flow around one task that runs
``workflows.outbox.relay_outbox`` in a worker thread (an async flow run is about a second cheaper than a
sync one). No result caching or persistence: every run must look at the outbox again. Retries only for
transient database errors (``sweep.is_transient``); a failed delivery is not an error of the run, the relay
records it and retries the row itself with backoff. A retried run takes a new relay token, so rows claimed
by the failed attempt wait for their lease (``notifications.lease_seconds``) to lapse, then go out with
their dedupe key: at least once, as ever.

``sweep.scaled_deployments`` / ``sweep.serve_deployments`` serve ``relay_deployment`` with the sweep's.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial

import anyio.to_thread
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.types.entrypoint import EntrypointType

from workflows.flows.runtime import deps_for
from workflows.flows.sweep import parse_now, retry_transient
from workflows.outbox import relay_outbox

FLOW_NAME = "outbox-relay"
DEPLOYMENT_NAME = "outbox-relay"


def _relay(config_path: str | None, now: datetime | None) -> dict[str, int]:
    return relay_outbox(deps_for(config_path), now=now).to_dict()


@task(
    name="relay-outbox",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_transient,
)
async def relay_outbox_task(config_path: str | None, now: datetime | None) -> dict[str, int]:
    """Run the relay in a worker thread (blocking database and network work) and return its counts."""
    return await anyio.to_thread.run_sync(partial(_relay, config_path, now))


@flow(name=FLOW_NAME, persist_result=False, retries=0)
async def outbox_relay(config_path: str | None = None, now: str | None = None) -> dict[str, int]:
    """Deliver every outbox row due at ``now`` (ISO; default: the real clock): email, webhooks, the inbox.

    ``config_path``: the deployment's config.toml (default: ``$JOINTCASE_CONFIG`` or ./config.toml).
    Returns the counts: claimed, sent, retried, parked, batches.
    """
    when = parse_now(now)
    counts = await relay_outbox_task(config_path, when)
    get_run_logger().info("outbox relay: %s", counts)
    return counts


def relay_deployment(config_path: str | None, every_seconds: int) -> RunnerDeployment:
    """The outbox relay as a deployment that runs every ``every_seconds``, one run at a time."""
    return outbox_relay.to_deployment(
        name=DEPLOYMENT_NAME,
        interval=timedelta(seconds=every_seconds),
        parameters={"config_path": config_path},
        # Like max_instances=1 with coalesce: a run due while one is still going is cancelled, not queued.
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
        description="jointcase: deliver due notifications (email, webhooks, in-app inbox) from the outbox.",
        tags=["jointcase"],
        entrypoint_type=EntrypointType.MODULE_PATH,  # the installed package, whatever the working directory
    )


__all__ = ["DEPLOYMENT_NAME", "FLOW_NAME", "outbox_relay", "relay_deployment", "relay_outbox_task"]
