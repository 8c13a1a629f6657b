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

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable

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
            return tuple([values[name] for name in self.order])
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
