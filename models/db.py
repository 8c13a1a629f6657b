"""The database: engines for SQLite and PostgreSQL, sessions, and migrations (Alembic).

SQLite runs in WAL mode with foreign keys on. Its ``SELECT ... FOR UPDATE`` is a silent no-op, so a
write transaction starts with ``BEGIN IMMEDIATE`` instead: it takes the database's write lock up front,
which serialises writers the way a row lock does on PostgreSQL (STACK-NOTES gotcha 9).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import ColumnElement, Engine, create_engine, event, inspect, literal_column
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from models.statements import driver_error

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BEGIN = "sqlite_begin"  # execution option: "IMMEDIATE" (default) or "DEFERRED" for read-only work


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs (SQLAlchemy's default would be psycopg2)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def is_sqlite(engine: Engine) -> bool:
    """Whether this engine talks to SQLite."""
    return engine.dialect.name == "sqlite"


_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*\Z")


def sql_literals(values: Iterable[str]) -> list[ColumnElement[str]]:
    """Fixed identifiers (state and event ids) as string literals written into the SQL, for ``IN`` lists of
    hot statements: a bound list is expanded into the SQL again on every execution. Anything but a plain
    identifier is refused, so no input can reach the SQL text this way."""
    literals: list[ColumnElement[str]] = []
    for value in values:
        if not _IDENTIFIER.match(value):
            raise ValueError(f"not a plain identifier: {value!r}")
        literals.append(literal_column(f"'{value}'"))
    return literals


def make_engine(url: str, *, echo: bool = False, pool_size: int = 20, max_overflow: int = 10) -> Engine:
    """Create the engine for ``url``; a SQLite file's folder is created if missing. ``pool_size`` and
    ``max_overflow``: PostgreSQL connections kept open, and opened beyond that at a peak."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"timeout": 60})
        _configure_sqlite(engine)
        return engine
    engine = create_engine(url, echo=echo, pool_size=pool_size, max_overflow=max_overflow)
    _ping_after_idle(engine)
    return engine


#: A pooled PostgreSQL connection idle for longer than this is checked before use (seconds).
PING_AFTER_IDLE = 10.0


def _ping_after_idle(engine: Engine) -> None:
    """Check a pooled connection before use only when it sat idle (SQLAlchemy's pessimistic disconnect
    recipe, narrowed). ``pool_pre_ping`` would cost a round trip on every checkout, about a tenth of a read
    request; a connection handed back milliseconds ago is alive, and one that idled across a database
    restart or a dropped link is replaced here instead of failing the request."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE:
            return  # new, or back in the pool only moments ago
        try:
            engine.dialect.do_ping(dbapi_connection)
            dbapi_connection.rollback()  # the ping opened a transaction; the checkout must find none
        except Exception as err:
            # The pool drops this connection and checks out another (a fresh one if none is left).
            log.warning("a pooled database connection was dead after %.0f s idle; replaced", time.monotonic() - since)
            raise DisconnectionError(str(err)) from err


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so that our BEGIN below is the only one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN, "IMMEDIATE")
        # On the driver's connection: a statement through SQLAlchemy costs ~10x the BEGIN itself, and every
        # unit of work on SQLite starts here. (SQLAlchemy's echo does not show it; it shows the others.)
        statement = f"BEGIN {mode}"
        try:
            conn.connection.driver_connection.execute(statement)
        except Exception as err:  # e.g. still locked after busy_timeout: the caller sees SQLAlchemy's error
            raise driver_error(conn, statement, (), err) from err


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (results are returned to callers)."""
    return sessionmaker(bind=engine, class_=Session, expire_on_commit=False, autoflush=False)


def alembic_config(engine: Engine) -> Config:
    """An Alembic configuration for ``engine``, reading migrations from models/migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def upgrade_database(engine: Engine) -> str:
    """Create or upgrade the schema to the newest migration; returns the revision now applied."""
    cfg = alembic_config(engine)
    with engine.connect() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
    with engine.connect() as connection:
        row = connection.exec_driver_sql("SELECT version_num FROM alembic_version").first()
    return str(row[0]) if row else ""


def has_schema(engine: Engine) -> bool:
    """Whether the database has been initialised (``jointcase init`` ran)."""
    return inspect(engine).has_table("cases")
