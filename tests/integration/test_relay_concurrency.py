"""The outbox relay under concurrency and crashes, with real relay processes and a real webhook receiver
(``workflows/outbox.py``, ``notifications/channels.py``).

The issue's acceptance:

* "Two relays at once over 5,000 rows on PostgreSQL: every row delivered, none twice (count the received
  messages)." Two relay processes, released together, claim disjoint batches (``FOR UPDATE SKIP LOCKED``)
  and POST to one receiver that counts requests per ``Idempotency-Key``: 5,000 distinct keys, each received
  exactly once, every row ``sent`` after one attempt, both relays did part of the work.
* "A relay killed between sending and marking: the message is delivered again with the same dedupe key (at
  least once, documented); the webhook receiver sees the same Idempotency-Key." The receiver holds its answer
  to one message; the relay is SIGKILLed while it waits (no transaction open: the claim committed before the
  send). Its claim is respected until the lease (3 s here) lapses; then the next relay sends that message
  again — the receiver sees its key twice — and the rest of the dead relay's batch once. The delivery audit
  holds the one recorded attempt: the lost one was never marked.
* A relay that stalls past its lease (not killed) and then gets its answer records a ``late`` attempt and
  changes nothing; it stops sending from its stale batch (only the message in flight goes twice), since the
  relay that took over delivers the rest.
* The two-relay run on a SQLite file too (``BEGIN IMMEDIATE`` serialises the claims).

Set-up: one real case is opened; the outbox rows are bulk-inserted for it (webhook channel, due a minute ago,
unique dedupe keys) — what ``enqueue`` writes, without 5,000 transitions. The relays are
``tests/integration/procs/relay_worker.py`` (the real clock, their own Deps and ``Channels``, the webhook
secret from their environment); the receiver is ``procs/webhook_receiver.py`` in a thread of this process.
Every child is killed and reaped in ``finally`` (``Children`` of test_concurrency).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from models.tables import OutboxMessage
from notifications.channels import Channels
from tests.conftest import MR, FakeClock, make_deps
from tests.integration.procs._common import load_deps, read_json
from tests.integration.procs.webhook_receiver import WebhookReceiver
from tests.integration.test_concurrency import Children, wait_until
from tests.integration.test_sweep_concurrency import Env
from tests.integration.test_webhook_delivery import SECRET, SECRET_ENV, hook_toml, webhook_config
from workflows.cases import open_case
from workflows.outbox import RelayResult, relay_outbox

HOOK = "bulk-hook"
PG_TOTAL = 5_000  # the number
KILL_TOTAL = 500
SQLITE_TOTAL = 600
BATCH = 50
LEASE = 3  # seconds: the killed relay's claim lapses soon, yet a batch of 50 sends fits in it on a busy machine
RELAY_WAIT = 120.0  # the longest a relay child may run before the test fails instead of hanging


# --- fixtures ---------------------------------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as hook:
        yield hook


@pytest.fixture
def kids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Children]:
    """Children that inherit the webhook secret (the variable named by the hook's ``secret_env``)."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    logs = tmp_path / "logs"
    logs.mkdir()
    children = Children(logs)
    try:
        yield children
    finally:
        children.close()


def _env(tmp_path: Path, url: str, receiver: WebhookReceiver, **replace: str) -> Iterator[Env]:
    config = webhook_config(tmp_path, url, [hook_toml(HOOK, receiver.url("/hooks/bulk"))], **replace)
    _settings, deps = make_deps(config, FakeClock())  # migrate and load the directory once, here
    try:
        yield Env(config, deps, tmp_path)
    finally:
        deps.engine.dispose()


@pytest.fixture
def pg_env(tmp_path: Path, pg_url: str, receiver: WebhookReceiver) -> Iterator[Env]:
    yield from _env(tmp_path, pg_url, receiver)


@pytest.fixture
def pg_short_lease_env(tmp_path: Path, pg_url: str, receiver: WebhookReceiver) -> Iterator[Env]:
    yield from _env(tmp_path, pg_url, receiver, **{r"(?m)^lease_seconds = \d+": f"lease_seconds = {LEASE}"})


@pytest.fixture
def sqlite_env(tmp_path: Path, receiver: WebhookReceiver) -> Iterator[Env]:
    yield from _env(tmp_path, f"sqlite:///{tmp_path / 'jointcase.db'}", receiver)


# --- set-up: many due webhook rows -------------------------------------------------------------------------------


@dataclass
class Seeded:
    """What ``seed_webhook_rows`` made."""

    keys: list[str]  # the dedupe keys, in id (= claim) order
    case_no: str
    seconds: float


def seed_webhook_rows(env: Env, total: int) -> Seeded:
    """Open one real case and queue ``total`` webhook rows for it, all due a minute ago (the real clock)."""
    started = time.monotonic()
    case = open_case(env.deps, agency="sm-amr", title="三明某公司配方泄露案", source="report", actor=MR)
    assert env.scalar("SELECT count(*) FROM outbox") == 0, "open_case queued messages: the counts below assume none"
    case_id = env.scalar("SELECT id FROM cases WHERE case_no = :no", no=case.case_no)
    due = datetime.now(UTC) - timedelta(minutes=1)
    keys = [f"bulk:{i:05d}:webhook:{HOOK}" for i in range(total)]
    rows = [
        {
            "dedupe_key": key,
            "case_id": case_id,
            "kind": "case_event",
            "channel": "webhook",
            "recipient": HOOK,
            "recipient_user": None,
            "subject": f"【案件协作】{case.case_no} 第{i}号通知",
            "body": f"批量通知 {i}：请登录三明市商业秘密保护协作平台查看。",
            "body_html": "",
            "template": "case_event",
            "template_version": "bulk-test",
            "lang": "zh",
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": due,
            "created_at": due,
            "sent_at": None,
            "last_error": "",
            "claimed_by": "",
            "claimed_until": None,
        }
        for i, key in enumerate(keys)
    ]
    with env.deps.engine.begin() as conn:
        conn.execute(insert(OutboxMessage.__table__), rows)  # type: ignore[attr-defined]
    assert env.rows("SELECT dedupe_key FROM outbox ORDER BY id") == [(k,) for k in keys]
    return Seeded(keys, case.case_no, time.monotonic() - started)


# --- the relay children --------------------------------------------------------------------------------------------


def start_relays(env: Env, kids: Children, count: int, batch_size: int) -> list[dict[str, Any]]:
    """Start ``count`` relay processes, release them together, wait for all; their results."""
    start = env.tmp / "start"
    procs, ready, results = [], [], []
    for i in range(count):
        ready.append(env.tmp / f"ready-{i}")
        results.append(env.tmp / f"result-{i}")
        args = [env.config, results[i], "--ready", ready[i], "--start", start, "--batch-size", batch_size]
        procs.append(kids.start("relay_worker", *args, "--relay-id", f"relay-{i}"))
    wait_until(lambda: all(p.exists() for p in ready), "all relays ready", alive=procs, kids=kids)
    start.touch()  # the barrier: every relay is connected and polls for this file
    for proc in procs:
        kids.wait_ok(proc, timeout=RELAY_WAIT)
    return [read_json(path) for path in results]


def relay_here(env: Env, **kwargs: Any) -> RelayResult:
    """A relay in this process with the real clock (the rows' times are real) and the right secret."""
    deps = load_deps(env.config)
    try:
        with Channels(deps.notifications, {SECRET_ENV: SECRET}) as channels:
            return relay_outbox(deps, channels=channels, **kwargs)
    finally:
        deps.engine.dispose()


# --- checks --------------------------------------------------------------------------------------------------------


def assert_received_once_each(receiver: WebhookReceiver, seed: Seeded, *, twice: frozenset[str] = frozenset()) -> None:
    """Every key reached the receiver, signed; exactly once each, except ``twice`` (exactly twice)."""
    got = receiver.received()
    assert all(r.signature_ok and r.status == 200 for r in got)
    counts = Counter(r.key for r in got)
    assert set(counts) == set(seed.keys), (len(counts), len(seed.keys))
    repeated = {key: n for key, n in counts.items() if n != 1}
    assert repeated == dict.fromkeys(twice, 2), dict(list(repeated.items())[:10])
    assert len(got) == len(seed.keys) + len(twice)


def assert_all_sent_once(env: Env, seed: Seeded) -> None:
    """Every row sent after exactly one recorded attempt, released, with one ``sent`` audit row."""
    total = len(seed.keys)
    assert env.rows(
        "SELECT status, attempts, claimed_by, claimed_until IS NULL, count(*) FROM outbox "
        "GROUP BY status, attempts, claimed_by, claimed_until IS NULL"
    ) == [("sent", 1, "", True, total)]
    assert env.scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL OR last_error <> ''") == 0
    assert env.rows(
        "SELECT outcome, attempt, count(*), count(DISTINCT message_id) FROM delivery_attempts "
        "WHERE outcome <> 'late' GROUP BY outcome, attempt"
    ) == [("sent", 1, total, total)]


# --- 1. two relays, 5,000 rows, PostgreSQL ----------------------------------------------------------------------------


def explain_claim(env: Env) -> str:
    """EXPLAIN ANALYZE of the relay's claim query as it runs (rolled back: nothing is claimed)."""
    query = (
        "SELECT outbox.id FROM outbox WHERE outbox.status = 'pending' AND outbox.next_attempt_at <= :now "
        "AND (outbox.claimed_until IS NULL OR outbox.claimed_until < :now) "
        f"ORDER BY outbox.next_attempt_at, outbox.id LIMIT {BATCH} FOR UPDATE SKIP LOCKED"
    )
    return "\n".join(row[0] for row in env.rows(f"EXPLAIN (ANALYZE, BUFFERS) {query}", now=datetime.now(UTC)))


@pytest.mark.postgres
def test_two_relays_deliver_five_thousand_webhooks_exactly_once_on_postgres(
    pg_env: Env, kids: Children, receiver: WebhookReceiver
) -> None:
    seed = seed_webhook_rows(pg_env, PG_TOTAL)
    plan = explain_claim(pg_env)

    started = time.monotonic()
    results = start_relays(pg_env, kids, count=2, batch_size=BATCH)
    elapsed = time.monotonic() - started
    print(f"set-up {seed.seconds:.1f}s; relays {elapsed:.1f}s: {results}\nclaim plan:\n{plan}")

    assert_received_once_each(receiver, seed)
    assert sum(r["claimed"] for r in results) == PG_TOTAL, results
    assert sum(r["sent"] for r in results) == PG_TOTAL, results
    assert sum(r["retried"] + r["parked"] for r in results) == 0, results
    assert all(r["sent"] > 0 for r in results), f"one relay did all the work: {results}"
    assert max(r["t0"] for r in results) < min(r["t1"] for r in results), "the relays did not overlap"
    # Each relay did what it says, and its batches were whole: claims are disjoint.
    by_relay = dict(pg_env.rows("SELECT relay, count(*) FROM delivery_attempts GROUP BY relay"))
    assert by_relay == {r["relay_id"]: r["sent"] for r in results}
    assert sum(r["batches"] for r in results) == PG_TOTAL // BATCH
    # Keep-alive: each relay POSTed over one connection.
    assert len({r.client for r in receiver.received()}) == 2
    assert_all_sent_once(pg_env, seed)
    assert relay_here(pg_env).claimed == 0  # nothing left, nothing sent twice
    assert len(receiver.received()) == PG_TOTAL


# --- 2. a relay killed between sending and marking, PostgreSQL ------------------------------------------------------


@pytest.mark.postgres
def test_a_relay_killed_between_sending_and_marking_sends_again_with_the_same_key(
    pg_short_lease_env: Env, kids: Children, receiver: WebhookReceiver
) -> None:
    env = pg_short_lease_env
    assert env.deps.notifications.lease_seconds == LEASE
    seed = seed_webhook_rows(env, KILL_TOTAL)
    held = 2 * BATCH + 19  # the 20th message of the third batch
    key = seed.keys[held]
    receiver.hold(key)

    ready = env.tmp / "ready"
    proc = kids.start(
        "relay_worker", env.config, env.tmp / "result", "--ready", ready, "--batch-size", BATCH, "--relay-id", "doomed"
    )
    wait_until(receiver.held.is_set, "the receiver to hold the message", alive=[proc], kids=kids)
    backend = read_json(ready)["backend_pid"]
    # The relay waits for the answer outside any transaction: its claim and every earlier mark are committed.
    state = env.scalar("SELECT state FROM pg_stat_activity WHERE pid = :pid", pid=backend)
    assert state == "idle", f"the relay holds a transaction open while it sends: {state}"
    kids.kill(proc)
    receiver.release.set()  # the held answer goes to a dead connection
    assert not (env.tmp / "result").exists()

    # Sent and marked: the first 119; claimed by the dead relay, unmarked: the held message and the rest of its
    # batch (attempts 0, no audit row); never claimed: the rest.
    claimed = env.rows("SELECT dedupe_key FROM outbox WHERE status = 'pending' AND claimed_by = 'doomed' ORDER BY id")
    assert [k for (k,) in claimed] == seed.keys[held : 3 * BATCH]
    assert env.scalar("SELECT count(*) FROM outbox WHERE status = 'sent'") == held
    assert (
        env.scalar("SELECT count(*) FROM outbox WHERE status = 'pending' AND claimed_by = ''") == KILL_TOTAL - 3 * BATCH
    )
    assert env.scalar("SELECT count(*) FROM outbox WHERE attempts > 0") == held
    assert env.rows("SELECT outcome, relay, count(*) FROM delivery_attempts GROUP BY outcome, relay") == [
        ("sent", "doomed", held)
    ]
    assert receiver.counts[key] == 1

    # While the dead relay's lease runs, its rows are left alone: a relay as of that moment sends only the rest.
    lease_end: datetime = env.scalar("SELECT min(claimed_until) FROM outbox WHERE claimed_by = 'doomed'")
    early = relay_here(env, now=lease_end - timedelta(milliseconds=1), relay_id="early")
    assert (early.sent, early.retried, early.parked) == (KILL_TOTAL - 3 * BATCH, 0, 0)
    assert receiver.counts[key] == 1
    assert [k for (k,) in env.rows("SELECT dedupe_key FROM outbox WHERE status = 'pending' ORDER BY id")] == [
        k for (k,) in claimed
    ]

    # After the lease: the next relay sends the held message again, same key, and the rest of that batch once.
    wait_until(lambda: datetime.now(UTC) > lease_end, "the dead relay's lease to lapse")
    after = relay_here(env, relay_id="after")

    assert (after.claimed, after.sent) == (3 * BATCH - held, 3 * BATCH - held)
    assert_received_once_each(receiver, seed, twice=frozenset({key}))
    first, second = receiver.received(key)
    assert first.body == second.body and first.client != second.client
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert first.signature_ok and second.signature_ok  # each send signed for its own moment
    assert_all_sent_once(env, seed)
    # The audit: one attempt of the held message, by the relay that marked it; the lost send left no row.
    message_id = env.scalar("SELECT id FROM outbox WHERE dedupe_key = :k", k=key)
    assert env.rows("SELECT attempt, outcome, relay FROM delivery_attempts WHERE message_id = :m", m=message_id) == [
        (1, "sent", "after")
    ]
    assert dict(env.rows("SELECT relay, count(*) FROM delivery_attempts GROUP BY relay")) == {
        "doomed": held,
        "early": KILL_TOTAL - 3 * BATCH,
        "after": 3 * BATCH - held,
    }


# --- 3. a relay stalled past its lease, PostgreSQL ----------------------------------------------------------------


@pytest.mark.postgres
def test_a_stalled_relay_past_its_lease_records_a_late_attempt_and_changes_nothing(
    pg_short_lease_env: Env, kids: Children, receiver: WebhookReceiver
) -> None:
    env = pg_short_lease_env
    seed = seed_webhook_rows(env, 2 * BATCH)
    held = BATCH - 1  # the last message of the first batch: the stalled relay has nothing else of it to send
    key = seed.keys[held]
    receiver.hold(key)
    result_file = env.tmp / "result"
    proc = kids.start("relay_worker", env.config, result_file, "--batch-size", BATCH, "--relay-id", "stalled")
    wait_until(receiver.held.is_set, "the receiver to hold the message", alive=[proc], kids=kids)
    lease_end: datetime = env.scalar("SELECT claimed_until FROM outbox WHERE dedupe_key = :k", k=key)
    wait_until(lambda: datetime.now(UTC) > lease_end, "the stalled relay's lease to lapse")

    other = relay_here(env, relay_id="other")  # takes the lapsed row over, and the second batch

    assert other.sent == BATCH + 1
    receiver.release.set()  # the stalled relay gets its 200 at last, marks, finds the row no longer its own
    kids.wait_ok(proc, timeout=RELAY_WAIT)
    stalled = read_json(result_file)
    assert (stalled["claimed"], stalled["sent"], stalled["batches"]) == (BATCH, BATCH - 1, 1), stalled
    assert_received_once_each(receiver, seed, twice=frozenset({key}))
    assert_all_sent_once(env, seed)
    message_id = env.scalar("SELECT id FROM outbox WHERE dedupe_key = :k", k=key)
    assert env.rows(
        "SELECT attempt, outcome, error, relay FROM delivery_attempts WHERE message_id = :m ORDER BY id", m=message_id
    ) == [(1, "sent", "", "other"), (1, "late", "lease lapsed", "stalled")]


@pytest.mark.postgres
def test_a_relay_that_lost_its_lease_does_not_send_the_rest_of_its_batch(
    pg_short_lease_env: Env, kids: Children, receiver: WebhookReceiver
) -> None:
    """At least once should mean: the message in flight when the lease lapsed may go twice, not the whole
    rest of the batch. With the defaults (batch_size 100, webhook timeout 5 s, SMTP timeout 10 s, lease 120 s)
    one slow receiver is enough for a batch to outlive its lease while another relay sends its tail."""
    env = pg_short_lease_env
    seed = seed_webhook_rows(env, 2 * BATCH)
    held = 9  # the 10th message of the stalled relay's first batch: 40 more of its batch come after it
    key = seed.keys[held]
    receiver.hold(key)
    result_file = env.tmp / "result"
    proc = kids.start("relay_worker", env.config, result_file, "--batch-size", BATCH, "--relay-id", "stalled")
    wait_until(receiver.held.is_set, "the receiver to hold the message", alive=[proc], kids=kids)
    lease_end: datetime = env.scalar("SELECT claimed_until FROM outbox WHERE dedupe_key = :k", k=key)
    wait_until(lambda: datetime.now(UTC) > lease_end, "the stalled relay's lease to lapse")

    other = relay_here(env, relay_id="other")  # takes over the lapsed claim (rows 9..49) and the second batch

    assert other.sent == 2 * BATCH - held
    assert env.scalar("SELECT count(*) FROM outbox WHERE status = 'sent'") == 2 * BATCH
    receiver.release.set()
    kids.wait_ok(proc, timeout=RELAY_WAIT)
    stalled = read_json(result_file)
    late = env.scalar("SELECT count(*) FROM delivery_attempts WHERE relay = 'stalled' AND outcome = 'late'")
    print(f"stalled relay: {stalled}; its late attempts: {late}")
    assert_all_sent_once(env, seed)  # the rows themselves are right: the late marks change nothing
    # Only the message in flight when the lease lapsed is received twice.
    assert_received_once_each(receiver, seed, twice=frozenset({key}))


# --- 4. two relays on a SQLite file ---------------------------------------------------------------------------------


def test_two_relays_deliver_every_webhook_exactly_once_on_sqlite(
    sqlite_env: Env, kids: Children, receiver: WebhookReceiver
) -> None:
    assert sqlite_env.scalar("PRAGMA journal_mode") == "wal"
    seed = seed_webhook_rows(sqlite_env, SQLITE_TOTAL)

    started = time.monotonic()
    results = start_relays(sqlite_env, kids, count=2, batch_size=BATCH)
    print(f"relays {time.monotonic() - started:.1f}s: {results}")

    assert_received_once_each(receiver, seed)
    assert sum(r["sent"] for r in results) == SQLITE_TOTAL, results
    assert sum(r["retried"] + r["parked"] for r in results) == 0, results
    by_relay = dict(sqlite_env.rows("SELECT relay, count(*) FROM delivery_attempts GROUP BY relay"))
    assert by_relay == {r["relay_id"]: r["sent"] for r in results if r["sent"]}
    assert_all_sent_once(sqlite_env, seed)
    assert relay_here(sqlite_env).claimed == 0
