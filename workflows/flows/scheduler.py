"""The embedded scheduler: APScheduler runs the periodic jobs inside one process (``scheduler.mode = "embedded"``).

The jobs: ``deadline_sweep`` (``workflows.deadlines.fire_due_deadlines`` every ``scheduler.sweep_every_seconds``),
``outbox_relay`` (``workflows.outbox.relay_outbox`` every ``notifications.relay_every_seconds``) and
``meeting_preparation`` (``workflows.meetings.prepare_due_meetings`` every ``meetings.prepare_every_seconds``)
and ``information_bulletin`` (``workflows.bulletins.generate_bulletin`` on the 1st at 08:00 Beijing time).
They always run together: a stored job is not dropped by leaving it out of a later start, so neither is optional.

Jobs live in APScheduler's own table ``apscheduler_jobs`` in the application's database, under stable ids,
added with ``replace_existing`` (so each start rewrites the stored job, coalesce and misfire settings
included: STACK-NOTES gotcha 6), ``coalesce`` and ``max_instances=1``. The job function is referenced by
its import path with plain-string arguments, so the stored job can be unpickled by any later process.
Run exactly one embedded scheduler per database (one web worker); a second one would run every job
again, which the sweep's row claims and the relay's leases make harmless but wasteful.

The job store has its own engine on the same URL. On SQLite its transactions begin ``DEFERRED``: with
the application's default ``BEGIN IMMEDIATE`` every read of the job table would take the write lock and
the scheduler thread would queue behind each sweep batch and case transition (measured: a 2 s writer
delays a job lookup by 2 s; up to the 60 s busy timeout, then an error). The store's own writes are
single statements, so they simply wait for the lock. The separate engine also keeps APScheduler's
``engine.dispose()`` on shutdown away from the use cases' connection pool.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, inspect

from app.settings import ConfigError, Settings, load_settings
from models.db import SQLITE_BEGIN, make_engine
from states.calendar import SHANGHAI
from workflows.bulletins import generate_bulletin, previous_period
from workflows.deadlines import fire_due_deadlines
from workflows.flows.runtime import deps_for
from workflows.meetings import prepare_due_meetings
from workflows.outbox import relay_outbox
from workflows.uow import Deps

log = logging.getLogger(__name__)

JOB_TABLE = "apscheduler_jobs"
SWEEP_JOB_ID = "deadline_sweep"
SWEEP_JOB_FUNC = "workflows.flows.scheduler:run_sweep_job"
RELAY_JOB_ID = "outbox_relay"
RELAY_JOB_FUNC = "workflows.flows.scheduler:run_relay_job"
MEETING_JOB_ID = "meeting_preparation"
MEETING_JOB_FUNC = "workflows.flows.scheduler:run_meeting_job"
BULLETIN_JOB_ID = "information_bulletin"
BULLETIN_JOB_FUNC = "workflows.flows.scheduler:run_bulletin_job"
#: The stored jobs' ids, in the order ``jointcase scheduler run`` lists them.
JOB_IDS: tuple[str, ...] = (SWEEP_JOB_ID, RELAY_JOB_ID, MEETING_JOB_ID, BULLETIN_JOB_ID)


def _run_job(
    what: str, work: Callable[[Deps], dict[str, int]], config_path: str | None, busy: str
) -> dict[str, int] | None:
    """Run one job's work with fresh-or-cached deps; log its counts; never raise (the next run retries)."""
    started = time.perf_counter()
    try:
        counts = work(deps_for(config_path))
    except ConfigError as exc:
        log.error("%s: the configuration cannot be used: %s", what, exc.message.replace("\n", "; "))
        return None
    except Exception:
        log.exception("%s failed; the next run tries again", what)
        return None
    log.log(
        logging.INFO if counts[busy] else logging.DEBUG, "%s: %s in %.2f s", what, counts, time.perf_counter() - started
    )
    return counts


def run_sweep_job(config_path: str | None) -> dict[str, int] | None:
    """The embedded sweep job: fire what is due now. Returns the counts, or None when the sweep failed."""
    return _run_job("deadline sweep", lambda deps: fire_due_deadlines(deps).to_dict(), config_path, "fired")


def job_store_engine(deps: Deps) -> Engine:
    """An engine on the deps' database for the job store (SQLite: transactions begin DEFERRED)."""
    url = deps.engine.url.render_as_string(hide_password=False)
    return make_engine(url).execution_options(**{SQLITE_BEGIN: "DEFERRED"})


def run_relay_job(config_path: str | None) -> dict[str, int] | None:
    """The embedded relay job: deliver the outbox rows due now (a failed delivery is retried by the relay's
    own backoff, a failed run by the next run). Returns the counts, or None when the relay failed."""
    return _run_job("outbox relay", lambda deps: relay_outbox(deps).to_dict(), config_path, "claimed")


def run_meeting_job(config_path: str | None) -> dict[str, int] | None:
    """The embedded meeting job: prepare each schedule's next joint meeting once its notice period began."""
    return _run_job("meeting preparation", prepare_due_meetings, config_path, "created")


def _bulletins(deps: Deps) -> dict[str, int]:
    # The month just ended, and on a quarter's first day the quarter just ended too.
    now = deps.now()
    kinds = ["monthly"] + (["quarterly"] if now.astimezone(SHANGHAI).month in (1, 4, 7, 10) else [])
    views = [generate_bulletin(deps, previous_period(now, kind)) for kind in kinds]
    return {"bulletins": len(views), "sent": sum(1 for v in views if v.notified)}


def run_bulletin_job(config_path: str | None) -> dict[str, int] | None:
    """The embedded bulletin job (the 1st at 08:00): generate and send the bulletins of the period ended."""
    return _run_job("information bulletin", _bulletins, config_path, "sent")


def build_scheduler(
    config_path: str | None, deps: Deps, every_seconds: int, relay_every_seconds: int | None = None
) -> BackgroundScheduler:
    """A scheduler (not started) with every job in the database's job store: the deadline sweep every
    ``every_seconds`` and the outbox relay every ``relay_every_seconds`` (default: the deps'
    ``notifications.relay_every_seconds``).

    ``config_path`` is stored with each job: each run builds its deps from it (``runtime.deps_for``).
    """
    store = SQLAlchemyJobStore(engine=job_store_engine(deps), tablename=JOB_TABLE)
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone=SHANGHAI)
    relay_every = deps.notifications.relay_every_seconds if relay_every_seconds is None else relay_every_seconds
    _add_job(scheduler, SWEEP_JOB_ID, SWEEP_JOB_FUNC, "deadline sweep 期限巡检", config_path, every_seconds)
    _add_job(scheduler, RELAY_JOB_ID, RELAY_JOB_FUNC, "outbox relay 通知投递", config_path, relay_every)
    meeting_every = deps.meetings.prepare_every_seconds
    _add_job(scheduler, MEETING_JOB_ID, MEETING_JOB_FUNC, "meeting preparation 会议筹备", config_path, meeting_every)
    scheduler.add_job(
        BULLETIN_JOB_FUNC,
        trigger=CronTrigger(day=1, hour=8, minute=0, timezone=SHANGHAI),
        args=[config_path],
        id=BULLETIN_JOB_ID,
        name="information bulletin 信息通报",
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=None,
    )
    return scheduler


def _add_job(
    scheduler: BackgroundScheduler, job_id: str, func: str, name: str, config_path: str | None, every_seconds: int
) -> None:
    scheduler.add_job(
        func,
        trigger=IntervalTrigger(seconds=every_seconds, timezone=SHANGHAI),
        args=[config_path],
        id=job_id,
        name=name,
        replace_existing=True,
        coalesce=True,  # after a stall, one catch-up run, not one per missed interval
        max_instances=1,  # a run still going when the next is due: skip the next
        misfire_grace_time=None,  # a late run is better than none
    )


def start_embedded(
    settings_or_config: Settings | str | Path | None = None, *, deps: Deps | None = None
) -> BackgroundScheduler | None:
    """Start the embedded scheduler when ``scheduler.mode`` is ``embedded``; else log why not and return None.

    ``settings_or_config``: loaded settings, or a config path (None: ``$JOINTCASE_CONFIG`` or ./config.toml).
    The caller stops it with ``stop_embedded`` (``jointcase serve`` on shutdown, ``jointcase scheduler run``).
    """
    settings = settings_or_config if isinstance(settings_or_config, Settings) else load_settings(settings_or_config)
    mode = settings.scheduler.mode
    if mode == "prefect":
        log.info("scheduler.mode is 'prefect': Prefect deployments run the periodic jobs; none started here")
        return None
    if mode != "embedded":
        log.warning("scheduler.mode is %r: nothing runs the periodic jobs (run `jointcase sweep` by hand)", mode)
        return None
    config_path = str(settings.config_path)
    sweep_every, relay_every = settings.scheduler.sweep_every_seconds, settings.notifications.relay_every_seconds
    scheduler = build_scheduler(config_path, deps or deps_for(config_path), sweep_every, relay_every)
    scheduler.start()
    log.info("embedded scheduler started: deadline sweep every %s s, outbox relay every %s s", sweep_every, relay_every)
    return scheduler


def stop_embedded(scheduler: BackgroundScheduler | None, *, wait: bool = True) -> None:
    """Shut the scheduler down (``wait``: let a running job finish first); None or stopped is fine."""
    if scheduler is not None and scheduler.running:
        scheduler.shutdown(wait=wait)


@dataclass
class StoredJob:
    """One job as stored in ``apscheduler_jobs``."""

    id: str
    name: str
    func: str
    args: list[Any]
    trigger: str
    next_run_time: str | None  # ISO, Beijing time; None when the job is paused
    coalesce: bool
    max_instances: int
    misfire_grace_time: int | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def stored_jobs(deps: Deps) -> list[StoredJob]:
    """The jobs stored in the deps' database, soonest first; empty when no scheduler ever ran there."""
    engine = job_store_engine(deps)
    try:
        if not inspect(engine).has_table(JOB_TABLE):
            return []
        store = SQLAlchemyJobStore(engine=engine, tablename=JOB_TABLE)
        # Jobs are unpickled with a reference to a scheduler; an unstarted one is enough to read them.
        store.start(BackgroundScheduler(timezone=SHANGHAI), "default")
        return [
            StoredJob(
                id=job.id,
                name=job.name,
                func=job.func_ref,
                args=list(job.args),
                trigger=str(job.trigger),
                next_run_time=_iso(job.next_run_time),
                coalesce=job.coalesce,
                max_instances=job.max_instances,
                misfire_grace_time=job.misfire_grace_time,
            )
            for job in store.get_all_jobs()
        ]
    finally:
        engine.dispose()


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(SHANGHAI).isoformat(timespec="seconds") if value else None


__all__ = [
    "JOB_IDS",
    "JOB_TABLE",
    "RELAY_JOB_FUNC",
    "RELAY_JOB_ID",
    "SWEEP_JOB_FUNC",
    "SWEEP_JOB_ID",
    "StoredJob",
    "build_scheduler",
    "run_relay_job",
    "run_sweep_job",
    "start_embedded",
    "stop_embedded",
    "stored_jobs",
]
