"""The outbox relay and what users see of delivery: ``relay_outbox`` (one way to deliver, behind the CLI,
the embedded scheduler job and the Prefect flow), the in-app inbox, the delivery audit, and retrying parked
messages.

Claims: a relay takes due rows in a short transaction — ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the
``BEGIN IMMEDIATE`` write lock on SQLite — and stamps them with its token and a lease (``claimed_until``).
It delivers outside any transaction, then marks each row in its own short transaction. A relay killed
between sending and marking leaves a claimed row whose lease lapses; the next relay sends it again with
the same dedupe key: delivery is at least once, and the dedupe key (email Message-ID, webhook
Idempotency-Key) lets the receiver drop the repeat.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select, text, update

from models.db import is_sqlite
from models.tables import Case, DeliveryAttempt, InboxItem, Officer, OutboxMessage
from notifications.channels import Channels, DeliveryError, Outgoing, PermanentError, TransientError, backoff
from states.errors import InvalidInput, PermissionDenied
from workflows.clockwork import local_iso
from workflows.uow import Deps, UnitOfWork

log = logging.getLogger(__name__)

STATUSES: tuple[str, ...] = ("pending", "sent", "dead")
LEASE_SAFETY = 0.5  # fraction of the lease after which a relay stops sending from its batch


@dataclass
class RelayResult:
    """What one relay pass did."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    parked: int = 0
    batches: int = 0

    def to_dict(self) -> dict[str, int]:
        """A JSON-ready dict."""
        return asdict(self)


# Literal status tests: the partial index ix_outbox_pending serves the claim on SQLite too.
_DUE = text("outbox.status = 'pending'")


def _claim(deps: Deps, token: str, now: datetime, batch_size: int) -> list[Outgoing]:
    """Take up to ``batch_size`` due rows for this relay (short transaction)."""
    lease_until = now + timedelta(seconds=deps.notifications.lease_seconds)
    with UnitOfWork(deps) as uow:
        stmt: Select[Any] = (
            select(OutboxMessage.id)
            .where(
                _DUE,
                OutboxMessage.next_attempt_at <= now,  # type: ignore[arg-type]
                (OutboxMessage.claimed_until.is_(None)) | (OutboxMessage.claimed_until < now),  # type: ignore[union-attr,operator]
            )
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(batch_size)
        )
        if not is_sqlite(deps.engine):
            stmt = stmt.with_for_update(skip_locked=True)
        ids = list(uow.session.execute(stmt).scalars())
        if not ids:
            return []
        uow.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids))  # type: ignore[union-attr]
            .values(claimed_by=token, claimed_until=lease_until)
        )
        rows = uow.session.execute(
            select(OutboxMessage, Case.case_no)
            .outerjoin(Case, Case.id == OutboxMessage.case_id)
            .where(OutboxMessage.id.in_(ids))  # type: ignore[union-attr]
            .order_by(OutboxMessage.id)
        ).all()
        claimed = [
            Outgoing(
                id=row.id or 0,
                dedupe_key=row.dedupe_key,
                kind=row.kind,
                channel=row.channel,
                recipient=row.recipient,
                recipient_user=row.recipient_user,
                case_no=case_no,
                subject=row.subject,
                body=row.body,
                body_html=row.body_html,
                ics=row.ics,
                lang=row.lang,
                created_at=row.created_at,
                attempts=row.attempts,
            )
            for row, case_no in rows
        ]
        uow.commit()
        return claimed


def _release(deps: Deps, token: str, ids: list[int]) -> None:
    """Give rows we claimed but did not try back to the queue at once."""
    with UnitOfWork(deps) as uow:
        uow.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids), OutboxMessage.claimed_by == token)  # type: ignore[union-attr]
            .values(claimed_by="", claimed_until=None)
        )
        uow.commit()


def _mark(
    deps: Deps,
    token: str,
    msg: Outgoing,
    error: DeliveryError | None,
    rng: random.Random,
    result: RelayResult,
    not_before: datetime,
) -> None:
    """Record the outcome of one delivery in its own short transaction."""
    # Never earlier than the pass's own "now": a retried row is then due only after this pass, so one pass
    # tries each row once even when run "as of" a later time.
    now = max(deps.now(), not_before)
    with UnitOfWork(deps) as uow:
        stmt: Any = select(OutboxMessage).where(OutboxMessage.id == msg.id)
        if not is_sqlite(deps.engine):
            stmt = stmt.with_for_update()
        row = uow.session.execute(stmt).scalar_one()
        if row.status != "pending" or row.claimed_by != token:
            # Our lease lapsed and another relay took the row (or an admin changed it): the delivery
            # above was a repeat that the dedupe key lets the receiver drop. Record it, change nothing.
            uow.session.add(
                DeliveryAttempt(
                    message_id=msg.id, attempt=row.attempts, at=now, outcome="late", error="lease lapsed", relay=token
                )
            )
            uow.commit()
            return
        row.attempts += 1
        row.claimed_by, row.claimed_until = "", None
        if error is None:
            row.status, row.sent_at, row.last_error = "sent", now, ""
            outcome = "sent"
            result.sent += 1
        elif isinstance(error, PermanentError) or row.attempts >= deps.notifications.max_attempts:
            row.status, row.last_error = "dead", str(error)
            outcome = "dead"
            result.parked += 1
            log.warning("outbox #%s (%s to %s) parked: %s", row.id, row.kind, row.recipient, error)
        else:
            row.last_error = str(error)
            row.next_attempt_at = now + timedelta(seconds=backoff(row.attempts, deps.notifications, rng))
            outcome = "failed"
            result.retried += 1
        uow.session.add(
            DeliveryAttempt(
                message_id=msg.id,
                attempt=row.attempts,
                at=now,
                outcome=outcome,
                error="" if error is None else str(error),
                relay=token,
            )
        )
        uow.commit()


def _deliver_inbox(deps: Deps, token: str, msg: Outgoing, result: RelayResult) -> None:
    """The in-app inbox: write the item and mark the row sent in one transaction (exactly once)."""
    now = deps.now()
    with UnitOfWork(deps) as uow:
        row = uow.session.get(OutboxMessage, msg.id)
        if row is None or row.status != "pending" or row.claimed_by != token:
            return
        if msg.recipient_user is None:
            row.status, row.last_error, row.attempts = "dead", "an inbox message needs an officer", row.attempts + 1
            outcome, error = "dead", row.last_error
            result.parked += 1
        else:
            uow.session.add(
                InboxItem(
                    message_id=msg.id,
                    username=msg.recipient_user,
                    case_id=row.case_id,
                    kind=msg.kind,
                    subject=msg.subject,
                    body=msg.body,
                    created_at=msg.created_at,
                )
            )
            row.status, row.sent_at, row.attempts = "sent", now, row.attempts + 1
            outcome, error = "sent", ""
            result.sent += 1
        row.claimed_by, row.claimed_until = "", None
        uow.session.add(
            DeliveryAttempt(message_id=msg.id, attempt=row.attempts, at=now, outcome=outcome, error=error, relay=token)
        )
        uow.commit()


def relay_outbox(
    deps: Deps,
    *,
    channels: Channels | None = None,
    now: datetime | None = None,
    batch_size: int | None = None,
    max_batches: int | None = None,
    relay_id: str | None = None,
    rng: random.Random | None = None,
) -> RelayResult:
    """Deliver every outbox row due at ``now``: claim a batch, deliver, mark; until none is due."""
    token = relay_id or uuid.uuid4().hex
    size = batch_size or deps.notifications.batch_size
    rng = rng or random.Random()
    result = RelayResult()
    owned = channels is None
    chans = channels or Channels(deps.notifications)
    try:
        while max_batches is None or result.batches < max_batches:
            pass_now = now or deps.now()
            claimed = _claim(deps, token, pass_now, size)
            if not claimed:
                break
            result.batches += 1
            result.claimed += len(claimed)
            claimed_at = time.monotonic()
            # Stop sending from this batch well before its lease lapses: after that another relay may
            # take the rows, and sending them here too would duplicate the whole tail, not one message.
            lease_margin = deps.notifications.lease_seconds * LEASE_SAFETY
            for index, msg in enumerate(claimed):
                if time.monotonic() - claimed_at >= lease_margin:
                    _release(deps, token, [m.id for m in claimed[index:]])
                    log.warning(
                        "outbox relay %s: batch outlived %.0f%% of its lease; released %s row(s)",
                        token[:8],
                        LEASE_SAFETY * 100,
                        len(claimed) - index,
                    )
                    break
                if msg.channel == "inbox":
                    _deliver_inbox(deps, token, msg, result)
                    continue
                error: DeliveryError | None = None
                try:
                    chans.deliver(msg)
                except DeliveryError as exc:
                    error = exc
                except Exception as exc:  # one bad message must never stop the relay: record it and go on
                    log.exception("outbox #%s: unexpected error in the %s channel", msg.id, msg.channel)
                    error = TransientError(f"unexpected {type(exc).__name__} in the {msg.channel} channel")
                _mark(deps, token, msg, error, rng, result, pass_now)
    finally:
        if owned:
            chans.__exit__(None, None, None)
    if result.claimed:
        log.info("outbox relay: %s sent, %s to retry, %s parked", result.sent, result.retried, result.parked)
    return result


# --- what users see -----------------------------------------------------------------------------------


@dataclass
class MessageView:
    """An outbox message and its delivery history."""

    id: int
    case_no: str | None
    kind: str
    channel: str
    recipient: str
    recipient_user: str | None
    subject: str
    status: str
    attempts: int
    last_error: str
    created_at: str
    next_attempt_at: str
    sent_at: str
    dedupe_key: str
    body: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _message_view(row: OutboxMessage, case_no: str | None, *, body: bool = False) -> MessageView:
    return MessageView(
        id=row.id or 0,
        case_no=case_no,
        kind=row.kind,
        channel=row.channel,
        recipient=row.recipient,
        recipient_user=row.recipient_user,
        subject=row.subject,
        status=row.status,
        attempts=row.attempts,
        last_error=row.last_error,
        created_at=local_iso(row.created_at),
        next_attempt_at=local_iso(row.next_attempt_at) if row.status == "pending" else "",
        sent_at=local_iso(row.sent_at),
        dedupe_key=row.dedupe_key,
        body=row.body if body else "",
    )


def _history(uow: UnitOfWork, ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    if not ids:
        return out
    rows = uow.session.execute(
        select(DeliveryAttempt)
        .where(DeliveryAttempt.message_id.in_(ids))  # type: ignore[attr-defined]
        .order_by(DeliveryAttempt.id)
    ).scalars()
    for a in rows:
        out.setdefault(a.message_id, []).append(
            {"attempt": a.attempt, "at": local_iso(a.at), "outcome": a.outcome, "error": a.error}
        )
    return out


def list_outbox(
    deps: Deps, *, status: str | None = None, case_no: str | None = None, limit: int = 200
) -> list[MessageView]:
    """Outbox messages, newest first (the operator's view), optionally by status and case."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"unknown status {status!r}; use one of {', '.join(STATUSES)}")
    with UnitOfWork(deps, read_only=True) as uow:
        stmt: Select[Any] = (
            select(OutboxMessage, Case.case_no)
            .outerjoin(Case, Case.id == OutboxMessage.case_id)
            .order_by(OutboxMessage.id.desc())  # type: ignore[union-attr]
            .limit(limit)
        )
        if status:
            stmt = stmt.where(OutboxMessage.status == status)
        if case_no:
            case = uow.case(case_no)
            stmt = stmt.where(OutboxMessage.case_id == case.id)
        return [_message_view(row, number) for row, number in uow.session.execute(stmt).all()]


def show_message(deps: Deps, message_id: int) -> MessageView:
    """One message with its body and every delivery attempt."""
    with UnitOfWork(deps, read_only=True) as uow:
        found = uow.session.execute(
            select(OutboxMessage, Case.case_no)
            .outerjoin(Case, Case.id == OutboxMessage.case_id)
            .where(OutboxMessage.id == message_id)
        ).first()
        if found is None:
            raise InvalidInput(f"no outbox message #{message_id}")
        row, number = found
        view = _message_view(row, number, body=True)
        view.history = _history(uow, [message_id]).get(message_id, [])
        return view


def _all_found(rows: list[Any], ids: list[int] | None, problem: str) -> list[Any]:
    """``rows`` if every requested id is among them; else InvalidInput naming the missing ones."""
    if ids is not None:
        missing = sorted(set(ids) - {r.id for r in rows})
        if missing:
            raise InvalidInput(f"{problem}: {', '.join(f'#{i}' for i in missing)}")
    return rows


def retry_dead(deps: Deps, *, actor: str, ids: list[int] | None = None) -> int:
    """An admin puts parked (``dead``) messages back in the queue, with a fresh attempt budget."""
    with UnitOfWork(deps) as uow:
        officer = uow.officer(actor)
        if "admin" not in officer.roles:
            raise PermissionDenied(f"{actor} is not an admin and may not retry parked messages")
        stmt: Any = select(OutboxMessage).where(OutboxMessage.status == "dead")
        if ids is not None:
            stmt = stmt.where(OutboxMessage.id.in_(ids))  # type: ignore[union-attr]
        rows = _all_found(list(uow.session.execute(stmt).scalars()), ids, "not parked (dead) or not found")
        now = deps.now()
        for row in rows:
            uow.session.add(
                DeliveryAttempt(
                    message_id=row.id or 0, attempt=row.attempts, at=now, outcome="requeued", error=f"by {actor}"
                )
            )
            row.status, row.attempts, row.next_attempt_at = "pending", 0, now
            row.claimed_by, row.claimed_until = "", None
            if row.channel == "email" and row.recipient_user:
                # The address may have been corrected since (the usual reason a row was parked).
                officer = uow.session.get(Officer, row.recipient_user)
                if officer is not None and officer.email:
                    row.recipient = officer.email
        uow.commit()
        return len(rows)


def case_deliveries(deps: Deps, case_no: str, *, actor: str | None = None) -> list[MessageView]:
    """The delivery audit of a case — queued, attempted, sent, failed, dead — for its handlers and
    supervisors (``actor`` None: the operator)."""
    from workflows.cases import _readable_case  # the one access rule of cases

    with UnitOfWork(deps, read_only=True) as uow:
        case, officer = _readable_case(uow, case_no, actor)
        if officer is not None and not {"handler", "supervisor", "admin"} & set(officer.roles):
            raise PermissionDenied(f"case {case_no}: only its handlers and supervisors see its deliveries")
        rows = list(
            uow.session.execute(
                select(OutboxMessage).where(OutboxMessage.case_id == case.id).order_by(OutboxMessage.id)
            ).scalars()
        )
        history = _history(uow, [r.id or 0 for r in rows])
        views = []
        for row in rows:
            view = _message_view(row, case.case_no)
            view.history = history.get(row.id or 0, [])
            views.append(view)
        return views


@dataclass
class InboxEntry:
    """One item of an officer's in-app inbox."""

    id: int
    case_no: str | None
    kind: str
    subject: str
    body: str
    created_at: str
    read: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def inbox(deps: Deps, *, actor: str, unread_only: bool = False, limit: int = 100) -> tuple[list[InboxEntry], int]:
    """An officer's inbox, newest first, and how many items are unread."""
    with UnitOfWork(deps, read_only=True) as uow:
        uow.officer(actor)
        stmt: Select[Any] = (
            select(InboxItem, Case.case_no)
            .outerjoin(Case, Case.id == InboxItem.case_id)
            .where(InboxItem.username == actor)
            .order_by(InboxItem.id.desc())  # type: ignore[union-attr]
            .limit(limit)
        )
        if unread_only:
            stmt = stmt.where(InboxItem.read_at.is_(None))  # type: ignore[union-attr]
        items = [
            InboxEntry(
                id=item.id or 0,
                case_no=number,
                kind=item.kind,
                subject=item.subject,
                body=item.body,
                created_at=local_iso(item.created_at),
                read=item.read_at is not None,
            )
            for item, number in uow.session.execute(stmt).all()
        ]
        unread = uow.session.execute(
            select(func.count()).select_from(InboxItem).where(InboxItem.username == actor, InboxItem.read_at.is_(None))  # type: ignore[union-attr]
        ).scalar_one()
        return items, int(unread)


def mark_read(deps: Deps, *, actor: str, ids: list[int] | None = None) -> int:
    """Mark inbox items (or all of them) read; only the officer's own items."""
    with UnitOfWork(deps) as uow:
        uow.officer(actor)
        stmt: Any = select(InboxItem).where(InboxItem.username == actor, InboxItem.read_at.is_(None))  # type: ignore[union-attr]
        if ids is not None:
            stmt = stmt.where(InboxItem.id.in_(ids))  # type: ignore[union-attr]
        rows = _all_found(list(uow.session.execute(stmt).scalars()), ids, f"not an unread item of {actor}")
        now = deps.now()
        for row in rows:
            row.read_at = now
        uow.commit()
        return len(rows)
