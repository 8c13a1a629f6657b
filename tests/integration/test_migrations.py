"""Alembic migrations build exactly the models' schema, on SQLite and PostgreSQL, and re-run safely."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

import models.tables  # noqa: F401
from app.bootstrap import init_database
from app.settings import load_settings
from models.db import make_engine, upgrade_database

HEAD = "0009"  # the newest migration


def _drift(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), SQLModel.metadata))
    finally:
        engine.dispose()


def test_sqlite_schema_matches_models_and_upgrade_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    engine = make_engine(url)
    assert upgrade_database(engine) == HEAD
    assert upgrade_database(engine) == HEAD
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()
    assert _drift(url) == []


@pytest.mark.postgres
def test_postgres_schema_matches_models(pg_url: str) -> None:
    engine = make_engine(pg_url)
    assert upgrade_database(engine) == HEAD
    with engine.connect() as conn:
        indexes = {r[0] for r in conn.execute(text("SELECT indexname FROM pg_indexes WHERE tablename='deadlines'"))}
    engine.dispose()
    assert "ix_deadlines_open_due" in indexes
    assert _drift(pg_url) == []


@pytest.mark.postgres
def test_init_twice_on_postgres_keeps_one_directory(pg_config: Path) -> None:
    from app.bootstrap import build

    settings = load_settings(pg_config, env={})
    deps = build(settings)
    first = init_database(settings, deps)
    second = init_database(settings, deps)
    assert first == second
    with deps.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM officers")).scalar() == len(settings.officers)
    deps.engine.dispose()


@pytest.mark.postgres
def test_postgres_refuses_edits_of_case_events(pg_deps) -> None:  # type: ignore[no-untyped-def]
    import sqlalchemy.exc

    from workflows.cases import open_case

    open_case(pg_deps, agency="sm-amr", title="t", source="report", actor="sm_amr_handler")
    for statement in ("UPDATE case_events SET note = 'x'", "DELETE FROM case_events"):
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only"), pg_deps.engine.begin() as conn:
            conn.execute(text(statement))
