"""Prefect flows and schedulers that trigger the use cases.

``scheduler`` runs the periodic jobs inside one process (APScheduler, job store in our database): the
deadline sweep and the outbox relay; ``sweep`` and ``relay`` hold the Prefect flows for the scaled mode;
``runtime`` builds their dependencies. Only ``sweep`` and ``relay`` import Prefect, so the CLI and the
embedded scheduler never pay for it.

Prefect must never reach the internet: server analytics and client telemetry are switched off here,
before any submodule can import Prefect (a Prefect server started from this process, ephemeral or the
test harness, inherits the environment). A ``prefect server start`` run by operators needs the same
``PREFECT_SERVER_ANALYTICS_ENABLED=false`` in its own environment.
"""

from __future__ import annotations

import os

os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
