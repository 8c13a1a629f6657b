"""PostgreSQL connections: checked after idling instead of on every checkout, readers without BEGIN/ROLLBACK."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text

import models.db
from models.db import make_engine
from models.tables import Officer
from workflows.uow import Deps, UnitOfWork


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    created = make_engine(pg_url)
    yield created
    created.dispose()


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(pg_url: str, pid: int) -> None:
    # From outside the pool, as a database restart or a dropped link would.
    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def _pings(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    real = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda conn: calls.append(conn) or real(conn))
    return calls


def test_a_connection_back_only_moments_ago_is_not_pinged(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    pings = _pings(engine, monkeypatch)
    first = _backend_pid(engine)
    assert [_backend_pid(engine) for _ in range(5)] == [first] * 5  # the same pooled connection
    assert pings == []


def test_a_connection_that_idled_is_pinged_and_a_dead_one_replaced(
    engine: Engine, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings = _pings(engine, monkeypatch)
    dead = _backend_pid(engine)
    _terminate(pg_url, dead)
    monkeypatch.setattr(models.db, "PING_AFTER_IDLE", 0.0)  # everything in the pool counts as idle
    replaced = _backend_pid(engine)  # no error: the dead connection was found and replaced at checkout
    assert replaced != dead
    assert len(pings) == 1
    # The pinged, live connection is handed out outside any transaction (a reader may switch it to autocommit).
    with engine.connect() as conn:
        assert conn.connection.dbapi_connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # type: ignore[union-attr]


def test_without_the_idle_check_a_dead_connection_fails_its_request(
    engine: Engine, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the check prevents: a connection that died while pooled fails the first request that gets it.
    dead = _backend_pid(engine)
    _terminate(pg_url, dead)
    monkeypatch.setattr(models.db, "PING_AFTER_IDLE", 3600.0)
    with pytest.raises(Exception, match=r"(?i)terminat|closed|connection"):
        _backend_pid(engine)
    assert _backend_pid(engine) != dead  # and the pool recovers after that one failure


def test_readers_run_without_a_transaction_and_writers_still_get_one(pg_deps: Deps) -> None:
    with UnitOfWork(pg_deps, read_only=True) as uow:
        uow.officer("sm_amr_handler")
        assert uow.conn.connection.dbapi_connection.autocommit is True  # type: ignore[union-attr]
    # The same pooled connection next serves a writer: back in a transaction, and a failure writes nothing.
    with pytest.raises(RuntimeError), UnitOfWork(pg_deps) as uow:
        assert uow.conn.connection.dbapi_connection.autocommit is False  # type: ignore[union-attr]
        uow.officer("sm_amr_handler")
        uow.session.get(Officer, "sm_amr_handler").display_name = "renamed"  # type: ignore[union-attr]
        uow.session.flush()
        raise RuntimeError("a failure after the write")
    with UnitOfWork(pg_deps, read_only=True) as uow:
        assert uow.session.get(Officer, "sm_amr_handler").display_name != "renamed"  # type: ignore[union-attr]


def test_the_pool_holds_the_configured_connections_and_does_not_churn_under_load(pg_deps: Deps) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import event

    assert pg_deps.engine.pool.size() == 20  # type: ignore[attr-defined]  # config.toml's [database] pool_size
    opened: list[int] = []
    event.listen(pg_deps.engine, "connect", lambda *_args: opened.append(1))

    def reader(i: int) -> None:
        for n in range(15):
            with UnitOfWork(pg_deps, read_only=True) as uow:
                uow.officer("sm_amr_handler")
                uow.conn.execute(text("SELECT pg_sleep(0.002)"))
            time.sleep(0.001 * ((i + n) % 5))  # the rest of a request: how many hold a connection varies

    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(reader, range(20)))
    # 20 requests in flight fit the pool: each connection is opened once and kept (a pool of 5 + 10 overflow
    # would close the extra ones on return and open new ones, hundreds of times over).
    assert 0 < len(opened) <= 20
