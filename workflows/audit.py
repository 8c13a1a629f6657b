"""The audit hash chain: how a case event's SHA-256 is computed from its fields and its predecessor."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from models.tables import CaseEvent

GENESIS = ""  # prev_hash of a case's first event


@dataclass(slots=True)
class EventRecord:
    """An audit row as written (the columns of ``case_events`` but its id): a plain object, since building
    an ORM object costs more than inserting the row."""

    event_id: str
    case_id: int | None
    seq: int
    event: str
    actor: str
    actor_agency: str
    effective_at: datetime
    recorded_at: datetime
    note: str
    payload: dict[str, Any]
    from_configuration: list[str]
    to_configuration: list[str]
    from_state: str
    to_state: str
    version: int
    prev_hash: str
    hash: str = ""


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def event_digest(case_no: str, event: CaseEvent | EventRecord) -> str:
    """SHA-256 over the canonical JSON of everything the event records, including ``prev_hash``."""
    body: dict[str, Any] = {
        "case_no": case_no,
        "seq": event.seq,
        "event_id": event.event_id,
        "event": event.event,
        "actor": event.actor,
        "actor_agency": event.actor_agency,
        "effective_at": _iso(event.effective_at),
        "recorded_at": _iso(event.recorded_at),
        "note": event.note,
        "payload": event.payload,
        "from_configuration": event.from_configuration,
        "to_configuration": event.to_configuration,
        "version": event.version,
        "prev_hash": event.prev_hash,
    }
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def chain_breaks(case_no: str, events: list[CaseEvent], *, last_hash: str, version: int) -> list[str]:
    """Every break in a case's chain, in words: edited rows, deleted rows, a truncated tail."""
    problems: list[str] = []
    previous = GENESIS
    expected_seq = 1
    for event in events:
        if event.seq != expected_seq:
            problems.append(f"{case_no}: event #{expected_seq} is missing (next stored is #{event.seq})")
            expected_seq = event.seq
        if event.prev_hash != previous:
            problems.append(f"{case_no}: event #{event.seq} ({event.event}) does not link to the event before it")
        if event_digest(case_no, event) != event.hash:
            problems.append(f"{case_no}: event #{event.seq} ({event.event}) was changed after it was recorded")
        previous = event.hash
        expected_seq += 1
    if previous != last_hash:
        problems.append(f"{case_no}: the last recorded event is not the case's last event (rows deleted at the end?)")
    if events and events[-1].version != version:
        problems.append(
            f"{case_no}: case version {version} does not match its last event's version {events[-1].version}"
        )
    return problems
