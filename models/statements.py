"""Hot statements on the driver: compiled once per dialect, run on the DBAPI cursor of the caller's transaction.

SQLAlchemy spends ~25-35 µs of Python on every execution (execution context, parameter processing, result
metadata, events) — more than SQLite takes to run most of the statements a transition sends, ten times what
the bare driver costs. A ``Prepared`` statement keeps what SQLAlchemy would compute anyway (the SQL for the
dialect, each parameter's and each result column's type conversion) and sends it with the driver:

- the same SQL SQLAlchemy sends (compiled by it), on the same connection and transaction;
- parameters and results converted by the columns' own types (times, JSON, booleans), as SQLAlchemy would;
- ``before_cursor_execute`` listeners still see each statement (statement counters, tracing); ``echo`` does not;
- the driver's errors raised as SQLAlchemy's (``IntegrityError``, ``OperationalError``), a lost connection
  invalidated.

Only for the few statements every transition sends; everything else goes through SQLAlchemy. Statements that
need more than this (bound lists expanded per execution, Python-side column defaults) are refused when first
compiled, so a change to one of them cannot silently send something else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import weakref
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable

log = logging.getLogger(__name__)

Processor = Callable[[Any], Any] | None
_REQUIRED = object()  # a parameter without a value of its own: the caller must give it


@dataclass(frozen=True)
class _Plan:
    sql: str
    positional: bool  # SQLite's qmark style; else named (psycopg's pyformat)
    binds: tuple[tuple[str, Any, Processor], ...]  # each parameter once: name, preset value (anonymous), conversion
    order: tuple[str, ...]  # positional: the names in the order the driver takes them (a name may recur)
    row: Any  # a namedtuple class for the selected columns; None for writes
    results: tuple[tuple[int, Callable[[Any], Any]], ...]  # (column index, conversion) where there is one

    def args(self, params: Mapping[str, Any]) -> Any:
        values = {}
        for name, preset, proc in self.binds:
            value = params.get(name, preset)
            if value is _REQUIRED:
                raise KeyError(f"a value is required for the parameter {name!r} of: {self.sql}")
            values[name] = value if proc is None else proc(value)  # None too: a JSON column stores 'null'
        if self.positional:
            return tuple(map(values.__getitem__, self.order))
        return values

    def convert(self, raw: Sequence[Any]) -> Any:
        if not self.results:
            return self.row._make(raw)
        values = list(raw)
        for index, proc in self.results:
            values[index] = proc(values[index])  # None too, as SQLAlchemy does
        return self.row._make(values)


class Prepared:
    """A Core statement to run with ``rows``/``scalar``/``write``. An INSERT or UPDATE without values of its
    own writes the columns it is given, as with SQLAlchemy: compiled once per set of parameter names."""

    def __init__(self, stmt: Executable) -> None:
        self.stmt = stmt
        self._plans: dict[Any, _Plan] = {}

    def plan(self, dialect: Dialect, keys: Sequence[str] | None = None) -> _Plan:
        """The statement compiled for ``dialect`` (once), for writes of the columns ``keys``."""
        key = (dialect.name, dialect.driver, keys)  # SQL and parameter style differ per driver
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._compile(dialect, list(keys) if keys is not None else None)
        return plan

    def _compile(self, dialect: Dialect, keys: list[str] | None) -> _Plan:
        compiled: Any = self.stmt.compile(dialect=dialect, column_keys=keys)
        if compiled.post_compile_params or compiled.literal_execute_params:
            raise ValueError(f"a prepared statement cannot expand parameters per execution: {compiled}")
        if getattr(compiled, "insert_prefetch", None) or getattr(compiled, "update_prefetch", None):
            raise ValueError(f"a prepared statement must be given every column it writes: {compiled}")
        order = tuple(compiled.positiontup) if compiled.positional else ()
        binds = []
        for name in dict.fromkeys(order or compiled.binds):
            bind = compiled.binds[name]
            proc = bind.type.dialect_impl(dialect).bind_processor(dialect)
            binds.append((name, _REQUIRED if bind.required else bind.effective_value, proc))
        row, results = None, ()
        if getattr(self.stmt, "is_select", False):
            columns = list(self.stmt.selected_columns)  # type: ignore[attr-defined]
            # Unlabelled expressions have no usable name: positional names (_0, _1, ...) for those.
            row = namedtuple("Row", self.stmt.selected_columns.keys(), rename=True)  # type: ignore[attr-defined,misc]
            procs = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns]
            results = tuple((index, proc) for index, proc in enumerate(procs) if proc is not None)
        return _Plan(compiled.string, bool(compiled.positional), tuple(binds), order, row, results)


def driver_error(conn: Connection, sql: str, args: Any, err: Exception) -> Exception:
    """``err`` from the driver as SQLAlchemy would raise it (``OperationalError``, ``IntegrityError``, ...), so
    callers catch one kind of error whichever path sent the statement; a lost connection is invalidated, as
    SQLAlchemy does, so the pool does not hand it out again."""
    dialect = conn.dialect
    dbapi = dialect.loaded_dbapi
    if not isinstance(err, dbapi.Error):
        return err
    lost = dialect.is_disconnect(err, conn.connection.dbapi_connection, None)
    if lost:
        conn.invalidate(err)
    return DBAPIError.instance(sql, args, err, dbapi.Error, connection_invalidated=lost, dialect=dialect)


def _cursor(conn: Connection, plan: _Plan, args: Any, many: bool) -> Any:
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    for listener in conn.dispatch.before_cursor_execute:
        listener(conn, cursor, plan.sql, args, None, many)
    return cursor


def rows(conn: Connection, prepared: Prepared, params: Mapping[str, Any]) -> list[Any]:
    """Every row of a prepared SELECT, as named tuples."""
    plan = prepared.plan(conn.dialect)
    args = plan.args(params)
    cursor = _cursor(conn, plan, args, False)
    try:
        cursor.execute(plan.sql, args)
        found = cursor.fetchall()
    except Exception as err:
        raise driver_error(conn, plan.sql, args, err) from err
    finally:
        cursor.close()
    return [plan.convert(raw) for raw in found]


def scalar(conn: Connection, prepared: Prepared, params: Mapping[str, Any]) -> Any:
    """The first column of the first row of a prepared SELECT (None without rows)."""
    found = rows(conn, prepared, params)
    return found[0][0] if found else None


def write(conn: Connection, prepared: Prepared, params: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> None:
    """Run a prepared INSERT or UPDATE once, or once per parameter set (``executemany``)."""
    many = not isinstance(params, Mapping)
    sets: Sequence[Mapping[str, Any]] = params if many else [params]  # type: ignore[assignment,list-item]
    plan = prepared.plan(conn.dialect, tuple(sets[0]))  # every set has the same names (as executemany needs)
    args: Any = [plan.args(p) for p in sets] if many else plan.args(params)  # type: ignore[arg-type]
    cursor = _cursor(conn, plan, args, many)
    try:
        if many:
            cursor.executemany(plan.sql, args)
        else:
            cursor.execute(plan.sql, args)
    except Exception as err:
        raise driver_error(conn, plan.sql, args, err) from err
    finally:
        cursor.close()


# --- a connection kept for one frequent read -------------------------------------------------------------------


class HeldReader:
    """A driver connection of one engine, kept open in autocommit for a tiny read that runs often (the sweep's
    "anything due?"): taking a connection from the pool and giving it back costs more than such a query
    (~7 µs against ~5 µs on SQLite). Callers take turns on it. A read that fails drops the connection and is
    tried once more on a new one (a server restarted since), then raises as SQLAlchemy's error; the engine's
    ``dispose()`` closes it; a forked child opens its own. ``before_cursor_execute`` listeners do not see these
    reads: there is no SQLAlchemy connection to show them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fairy: Any = None  # the pool's wrapper, detached: closing it closes the driver's connection
        self._cursor: Any = None
        self._fork = -1  # _FORKS when it was opened: a forked child finds it changed (no getpid() per read)

    def fetchone(self, engine: Engine, prepared: Prepared, params: Mapping[str, Any]) -> Any:
        """The first row of ``prepared`` (converted by its columns' types), or None."""
        plan = prepared.plan(engine.dialect)
        args = plan.args(params)
        with self._lock:
            try:
                raw = self._cursor_of(engine).execute(plan.sql, args).fetchone()
            except engine.dialect.loaded_dbapi.Error as err:
                self._close()
                log.warning("the held connection for a frequent read failed (%s); opening a new one", err)
                try:
                    raw = self._cursor_of(engine).execute(plan.sql, args).fetchone()
                except engine.dialect.loaded_dbapi.Error as again:
                    self._close()
                    dbapi = engine.dialect.loaded_dbapi
                    raise DBAPIError.instance(plan.sql, args, again, dbapi.Error, dialect=engine.dialect) from again
        return None if raw is None else plan.convert(raw)

    def _cursor_of(self, engine: Engine) -> Any:
        if self._cursor is not None and self._fork == _FORKS[0]:
            return self._cursor
        return self._open(engine)

    def _open(self, engine: Engine) -> Any:
        if self._fairy is not None and self._fork != _FORKS[0]:
            _INHERITED.append(self._fairy)  # the parent's: neither used nor closed here
            self._fairy = None
        self._close()
        fairy = engine.raw_connection()
        driver = fairy.driver_connection  # (None once detached)
        fairy.detach()  # ours now: the pool neither counts it nor hands it out
        if engine.dialect.name != "sqlite":  # SQLite's connections are in autocommit already (models.db)
            driver.autocommit = True  # a read needs no BEGIN/ROLLBACK and must not sit idle in a transaction
            # psycopg would prepare the statement after 5 runs; PostgreSQL's generic plan then scans instead of
            # using the partial indexes the literal values select (7 ms instead of 0.2 ms at 100k cases).
            driver.prepare_threshold = None
        self._fairy, self._cursor, self._fork = fairy, driver.cursor(), _FORKS[0]
        return self._cursor

    def _close(self) -> None:
        fairy, self._fairy, self._cursor = self._fairy, None, None
        if fairy is not None:
            with contextlib.suppress(Exception):  # already broken: nothing more to release
                fairy.close()

    def close(self) -> None:
        """Close the connection (the next read opens another)."""
        with self._lock:
            if self._fork == _FORKS[0]:  # a connection inherited from the parent stays the parent's
                self._close()


_HELD: weakref.WeakKeyDictionary[Engine, HeldReader] = weakref.WeakKeyDictionary()
_HELD_LOCK = threading.Lock()
_INHERITED: list[Any] = []  # connections a forked child found open: closing them would disturb the parent's
_FORKS = [0]  # forks this process descends from: a held connection opened before the last one is a parent's


def _after_fork_in_child() -> None:
    _FORKS[0] += 1
    for reader in list(_HELD.values()):
        # A lock another thread of the parent held at the fork would stay held here for ever.
        reader._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def held_reader(engine: Engine) -> HeldReader:
    """The ``HeldReader`` of ``engine`` (one per engine; closed by ``engine.dispose()``)."""
    reader = _HELD.get(engine)
    if reader is None:
        with _HELD_LOCK:
            reader = _HELD.get(engine)
            if reader is None:
                reader = _HELD[engine] = HeldReader()
                event.listen(engine, "engine_disposed", _close_held)
    return reader


def _close_held(engine: Engine) -> None:
    reader = _HELD.get(engine)
    if reader is not None:
        reader.close()
