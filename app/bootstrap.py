"""The composition root: settings in, ready-to-use use-case dependencies out.

The only place that reads settings, builds the engine and the calendar, and chooses the real clock.
Relative paths in config.toml (a SQLite file, the attachments folder) are taken relative to the
config file's folder, so the same deployment works from any working directory.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from app.settings import Settings
from models.db import make_engine, normalise_url, upgrade_database
from states.calendar import WorkCalendar
from workflows.cases import sync_directory
from workflows.uow import Deps, utc_now


def database_url(settings: Settings) -> str:
    """The database URL with a relative SQLite path resolved against the config file's folder."""
    url = normalise_url(settings.database.url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database).expanduser()
        if not path.is_absolute():
            path = settings.config_path.parent / path
            url = parsed.set(database=str(path)).render_as_string(hide_password=False)
    return url


def build_calendar(settings: Settings) -> WorkCalendar:
    """China's working-day calendar with the years and corrections declared in config.toml."""
    cal = settings.calendar
    return WorkCalendar(
        years={year: (decl.holidays, decl.workdays) for year, decl in cal.years.items()},
        extra_holidays=cal.extra_holidays,
        extra_workdays=cal.extra_workdays,
    )


def build(settings: Settings, *, clock: Callable[[], datetime] = utc_now) -> Deps:
    """Everything the use cases need, built once per process."""
    attachments = Path(settings.storage.attachments_dir).expanduser()
    if not attachments.is_absolute():
        attachments = settings.config_path.parent / attachments
    return Deps(
        engine=make_engine(
            database_url(settings),
            echo=settings.database.echo,
            pool_size=settings.database.pool_size,
            max_overflow=settings.database.max_overflow,
        ),
        calendar=build_calendar(settings),
        clock_rules=dict(settings.clocks),
        clock=clock,
        case_number_format=settings.case_number.format,
        loss_threshold=settings.referral.loss_threshold,
        illegal_gain_threshold=settings.referral.illegal_gain_threshold,
        attachments_dir=attachments,
        supervision=settings.supervision,
        notifications=settings.notifications,
        documents=settings.documents,
        meetings=settings.meetings,
        bulletins=settings.bulletins,
    )


def init_database(settings: Settings, deps: Deps) -> dict[str, object]:
    """Create or migrate the schema and load agencies and officers from config.toml."""
    revision = upgrade_database(deps.engine)
    agencies, officers = sync_directory(
        deps,
        [a.model_dump() for a in settings.agencies],
        [o.model_dump() for o in settings.officers],
    )
    return {"revision": revision, "agencies": agencies, "officers": officers}
