"""Bulk import of historical cases from a JSON Lines export (issue 8 item 2): ``import_cases``.

One line is one case with its events (format in README, "Importing historical cases"). Every line is
checked in full before anything of it is written: the header (agency, source, times), each event's sender
(agency kind, role, participation — the rules of ``advance_case``), its data (``parse_event_data``), its
effective order, and the event sequence on the lifecycle chart. A bad line is rejected with its line number
and nothing of it is written; the other lines still import (per-line, not all-or-nothing: see
docs/decisions.md).

Good lines are written in batches, one transaction per batch, as rows built directly (no ``advance_case``
per event): the case, its participants, its hash-chained audit log (``workflows.audit.event_digest``, the
helper of ``clockwork.append_event``) and every deadline the live path would have written, computed with
the same clock machinery (``plan_clock_actions`` and the deadline helpers of ``workflows.cases``) over the
case's whole history. A case number already stored is skipped, so an import killed half-way and started
again continues without duplicates; a batch is atomic.

Speed (target 20,000 events/s on SQLite): after a warm-up, forked worker processes check lines and build
their rows, already encoded with SQLAlchemy's own bind processors, while this process writes them with the
driver (``executemany`` on SQLite, ``COPY`` on PostgreSQL); the chart, clock plans and calendar answers are
memoised; imported events get ascending (version 7) UUIDs so the event_id index grows at its end.

Not imported: attachments and evidence (so the chart's transfer-package and evidence guards are not
checked: the old platform's record of the transfer stands), notifications (none are queued for history),
supervision, meetings.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from operator import attrgetter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import JSON, select
from statemachine.exceptions import TransitionNotAllowed

from models.db import is_sqlite
from models.tables import Agency, Case, CaseEvent, CaseParticipant, Deadline, DeadlinePause, Officer
from states.calendar import SHANGHAI, Due, WorkCalendar
from states.clocks import OPEN_CASE, plan_clock_actions
from states.errors import DomainError, GuardFailed, InvalidInput, UnknownActor
from states.events import EVENT_DATA, LEAD_SOURCES, RECEIVER_KIND, SENDER_KIND, SUSPENSION_PHASES, parse_event_data
from states.lifecycle import (
    ATTACHMENT_KINDS,
    CLOSED,
    EVENT_IDS,
    HISTORY,
    CaseContext,
    allowed_events_of,
    allowed_in,
    check_referral_ground,
    configuration_of,
    history_of,
    leaf_state,
    new_chart,
    phase_of,
)
from workflows.audit import GENESIS, EventRecord, event_digest
from workflows.cases import (  # the live transition's own clock and context helpers: one set of rules
    _check_effective,
    _due_from_nominal,
    _extend,
    _finish,
    _nominal,
    _start,
    _updated_context,
)
from workflows.clockwork import SYSTEM_ACTOR, refresh_next_alert
from workflows.uow import Deps, UnitOfWork

log = logging.getLogger(__name__)

LINE_KEYS = frozenset({"case_no", "agency", "title", "source", "received_at", "events", "opened_by", "note"})
EVENT_KEYS = frozenset({"event", "actor", "effective_at", "data", "note"})
_OPEN = ("running", "paused")
_TIMES = ("started_at", "due_at", "paused_at", "nominal_due_at")


# --- results --------------------------------------------------------------------------------------


@dataclass
class Rejection:
    """A line that was not imported, and why."""

    line: int
    case_no: str
    reason: str


@dataclass
class ImportProgress:
    """Where an import stands, given to the ``progress`` callback after each batch."""

    lines: int
    bytes_read: int
    bytes_total: int
    imported: int
    skipped: int
    rejected: int
    events: int


@dataclass
class ImportResult:
    """What an import did: cases imported, skipped (already stored) and rejected (with line numbers)."""

    path: str
    lines: int = 0
    imported: int = 0
    skipped: int = 0
    events: int = 0
    seconds: float = 0.0
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No line was rejected."""
        return not self.rejected

    @property
    def events_per_second(self) -> float:
        """Audit events written per second (the open_case records included)."""
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = asdict(self)
        data["ok"] = self.ok
        data["events_per_second"] = round(self.events_per_second, 1)
        return data


class _Reject(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Refused(_Reject):
    """The chart refused an event (not allowed in the state, or a guard failed)."""


# --- the directory, read once ---------------------------------------------------------------------


class _Directory:
    """Agencies and active officers, in memory; also what ``cases._extend`` asks a unit of work for."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.agencies: dict[str, Agency] = {a.code: a for a in uow.session.execute(select(Agency)).scalars()}
        self.officers: dict[str, Officer] = {
            o.username: o
            for o in uow.session.execute(select(Officer).where(Officer.active.is_(True))).scalars()  # type: ignore[attr-defined]
        }
        # Plain copies: no lazy loads after the session closes, and no ORM attribute cost per event.
        self.agencies = {code: _plain(a) for code, a in self.agencies.items()}
        self.officers = {name: _plain(o) for name, o in self.officers.items()}

    def officer(self, username: str) -> Officer:
        officer = self.officers.get(username)
        if officer is None:
            raise UnknownActor(username)
        return officer

    def counterpart(self, sender: Agency, kind: str) -> Agency:
        """Like ``cases._counterpart``: the agency of ``kind`` in the sender's region at its level."""
        for code in sorted(self.agencies):
            a = self.agencies[code]
            if a.kind == kind and a.region == sender.region and a.level == sender.level:
                return a
        raise InvalidInput(f"no {kind} agency is configured for region {sender.region} at {sender.level} level")

    def agency(self, code: Any, *, kind: str | None = None, what: str = "agency") -> Agency:
        agency = self.agencies.get(str(code))
        if agency is None:
            raise InvalidInput(f"unknown {what} {code!r}")
        if kind and agency.kind != kind:
            raise InvalidInput(f"{what} {code!r} is a {agency.kind} agency, not {kind}")
        return agency


class _DayCalendar:
    """``deps.calendar`` with ``add`` and ``roll`` memoised: for day-based units their answer depends on the
    Beijing date only (``WorkCalendar.add``: "days: end of start date + amount ..."), and a line's clocks
    ask about the same few hundred dates again and again. Hours are exact times: passed through."""

    def __init__(self, calendar: WorkCalendar) -> None:
        self._calendar = calendar
        self._add: dict[Any, Due] = {}
        self._roll: dict[Any, Due] = {}

    def add(self, start: datetime, amount: int, unit: Any, *, roll_to_workday: bool = True) -> Due:
        if unit == "hours" or start.tzinfo is None:
            return self._calendar.add(start, amount, unit, roll_to_workday=roll_to_workday)
        key = (start.astimezone(SHANGHAI).date(), amount, unit, roll_to_workday)
        due = self._add.get(key)
        if due is None:
            due = self._add[key] = self._calendar.add(start, amount, unit, roll_to_workday=roll_to_workday)
        return due

    def roll(self, due_at: datetime) -> Due:
        if due_at.tzinfo is None:
            return self._calendar.roll(due_at)
        key = due_at.astimezone(SHANGHAI).date()
        due = self._roll.get(key)
        if due is None:
            due = self._roll[key] = self._calendar.roll(due_at)
        return due

    def __getattr__(self, name: str) -> Any:
        return getattr(self._calendar, name)


def _plain(row: Any) -> Any:
    return SimpleNamespace(**{c.name: getattr(row, c.name) for c in row.__table__.columns})


# --- the chart, memoised --------------------------------------------------------------------------


class Transitions:
    """The lifecycle chart's answer for (configuration, history, counters, outcome, event, data), memoised.

    Building a python-statemachine chart costs ~0.5 ms and a send ~0.15 ms: too slow for 20,000 events/s.
    The chart is pure over its ``CaseContext`` and the event data, so its answer is cached. The key holds
    what can vary here (configuration, history, outcome, event) and the data, with free text reduced to
    "given or not" (no guard reads more of a text). Counters are matched on what the chart read of them on
    the miss (``_Counters`` notes it; most transitions read none, and keying on all counters made four
    times as many misses); the answer then carries the counters it changed. A miss, and every refusal, asks
    the real chart; ``replay_case`` on imported cases checks the result against it again.
    """

    def __init__(self, loss_threshold: int = 300_000, illegal_gain_threshold: int = 300_000) -> None:
        self.loss_threshold = loss_threshold
        self.illegal_gain_threshold = illegal_gain_threshold
        self._cache: dict[Any, list[_Answer]] = {}
        # The key of a state this cache returned, by the identity of its configuration list (kept alive by
        # the cache): a case's next send need not sort its history again.
        self._state_keys: dict[int, tuple[Any, Any]] = {}
        self.initial = configuration_of(new_chart(self._ctx("", {}, None)))

    def allowed(self, conf: list[str], hist: dict[str, list[str]]) -> list[str]:
        """Events with a transition from this configuration (guards not evaluated), memoised."""
        return allowed_in(conf, hist)

    def _ctx(self, case_no: str, counters: Mapping[str, int], outcome: str | None) -> CaseContext:
        return CaseContext(
            case_no=case_no,
            outcome=outcome,
            counters=dict(counters),
            attachment_kinds=frozenset(ATTACHMENT_KINDS),  # attachments are not imported: see module doc
            unresolved_evidence=(),
            loss_threshold=self.loss_threshold,
            illegal_gain_threshold=self.illegal_gain_threshold,
        )

    def send(
        self,
        case_no: str,
        conf: list[str],
        hist: dict[str, list[str]],
        counters: dict[str, int],
        outcome: str | None,
        event: str,
        payload: dict[str, Any],
    ) -> tuple[list[str], dict[str, list[str]], dict[str, int], str | None]:
        """(configuration, history, counters, outcome) after ``event``; raises ``Refused`` when refused.

        The returned lists and dicts are shared with the cache (or are ``counters`` itself): callers must
        not change them."""
        spec = EVENT_DATA.get(event, {})
        if event == "propose_referral":
            # The one guard that reads amounts, run here on the data so the key need not hold them.
            try:
                check_referral_ground(payload, self.loss_threshold, self.illegal_gain_threshold)
            except GuardFailed as err:
                raise Refused(f"{event} refused in state {leaf_state(conf)}: {err.message}") from None
        data_key = tuple(
            sorted(
                (k, bool(str(v).strip()) if spec[k].kind in _PRESENCE_ONLY else _frozen(v))
                for k, v in payload.items()
                if k in spec
            )
        )
        known = self._state_keys.get(id(conf))
        if known is not None and known[0][0] is conf and known[0][1] is hist and known[0][2] == outcome:
            state = known[1]
        else:
            state = _state_key(conf, hist, outcome)
        key = (state, event, data_key)
        for answer in self._cache.get(key, ()):
            if answer.fits(counters):
                return answer.conf, answer.hist, answer.counters_after(counters), answer.outcome
        ctx = self._ctx(case_no, counters, outcome)
        ctx.counters = seen = _Counters(counters)
        chart = new_chart(ctx, conf, hist)
        try:
            chart.send(event, data=payload)
        except GuardFailed as err:
            raise Refused(f"{event} refused in state {leaf_state(conf)}: {err.message}") from None
        except TransitionNotAllowed:
            allowed = ", ".join(allowed_events_of(chart)) or "none"
            raise Refused(f"{event} is not allowed in state {leaf_state(conf)} (allowed: {allowed})") from None
        answer = _Answer(configuration_of(chart), history_of(chart), ctx.outcome, counters, seen)
        self._cache.setdefault(key, []).append(answer)
        self._state_keys[id(answer.conf)] = ((answer.conf, answer.hist, answer.outcome), _state_key(*answer.state))
        return answer.conf, answer.hist, answer.counters_after(counters), answer.outcome


_ABSENT = object()


class _Counters(dict[str, int]):
    """A case's counters as the chart sees them on a miss, noting which keys it read (all of them when it
    looks at the whole: iteration, length, comparison; copies go through ``keys``)."""

    def __init__(self, values: Mapping[str, int]) -> None:
        super().__init__(values)
        self.read: set[str] = set()
        self.whole = False

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> int:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)

    def _all(self) -> None:
        self.whole = True

    def __iter__(self) -> Iterator[str]:
        self._all()
        return super().__iter__()

    def __len__(self) -> int:
        self._all()
        return super().__len__()

    def __eq__(self, other: object) -> bool:
        self._all()
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def keys(self) -> Any:
        self._all()
        return super().keys()

    def items(self) -> Any:
        self._all()
        return super().items()

    def values(self) -> Any:
        self._all()
        return super().values()

    def copy(self) -> dict[str, int]:
        self._all()
        return dict(super().items())


class _Answer:
    """One cached transition: the state after it, the counters it depended on and those it changed."""

    __slots__ = ("after", "before", "changed", "conf", "hist", "outcome", "reads")

    def __init__(
        self, conf: list[str], hist: dict[str, list[str]], outcome: str | None, before: dict[str, int], seen: _Counters
    ) -> None:
        self.conf, self.hist, self.outcome = conf, hist, outcome
        whole, read = seen.whole, set(seen.read)  # taken before the lines below look at ``seen`` themselves
        after = {k: dict.__getitem__(seen, k) for k in dict.keys(seen)}
        # Matched on every counter when the chart looked at them all or dropped one; else on those it read.
        self.reads: tuple[tuple[str, Any], ...] | None = None
        if not whole and not set(before) - set(after):
            self.reads = tuple((k, before.get(k, _ABSENT)) for k in sorted(read))
        self.before = dict(before) if self.reads is None else None
        self.after = after if self.reads is None else None
        self.changed = {k: v for k, v in after.items() if before.get(k, _ABSENT) != v}

    @property
    def state(self) -> tuple[list[str], dict[str, list[str]], str | None]:
        return self.conf, self.hist, self.outcome

    def fits(self, counters: dict[str, int]) -> bool:
        """Whether ``counters`` agree with those this answer was computed from, where the chart read them."""
        if self.reads is None:
            return counters == self.before
        return all(counters.get(k, _ABSENT) == v for k, v in self.reads)

    def counters_after(self, counters: dict[str, int]) -> dict[str, int]:
        """``counters`` with this transition's changes."""
        if self.after is not None:
            return self.after
        return counters | self.changed if self.changed else counters


def _state_key(conf: list[str], hist: dict[str, list[str]], outcome: str | None) -> Any:
    return (tuple(conf), tuple(sorted((k, tuple(v)) for k, v in hist.items())), outcome)


#: Data kinds no guard or action reads beyond "given or not" (amounts: see check_referral_ground above; the
#: chart's only other reader of data is ``record_outcome``, a choice).
_PRESENCE_ONLY = frozenset({"text", "amount", "sha256", "username", "agency", "agencies"})


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


# --- one line -------------------------------------------------------------------------------------


@dataclass
class _Prepared:
    """A validated line: its rows as the driver takes them (encoded by ``_Tables``), ids given at insert time.

    ``case`` lacks the id, ``participants``, ``events`` and ``deadlines`` lack the case id (and deadlines
    their own id), ``pauses`` are (index of the case's deadline, row without the deadline id)."""

    line: int
    case_no: str
    case: tuple[Any, ...]
    participants: list[tuple[Any, ...]]
    events: list[tuple[Any, ...]]
    deadlines: list[tuple[Any, ...]]
    pauses: list[tuple[int, tuple[Any, ...]]]


class _Insert:
    """One table's INSERT as DB-API text, with the bind processors SQLAlchemy itself would apply.

    ``lead`` are the id columns the writer fills in (integers, no processing); ``fields`` are the others,
    in the order ``encode`` takes them. Lists in ``by_value`` columns (configurations: a few hundred
    distinct values) are serialised once each."""

    def __init__(
        self,
        model: Any,
        dialect: Any,
        lead: tuple[str, ...],
        by_value: tuple[str, ...] = (),
        memos: dict[str, dict[Any, Any]] | None = None,
    ) -> None:
        table = model.__table__
        self.table: str = table.name
        self.fields = tuple(c.name for c in table.columns if c.name != "id" and c.name not in lead)
        quote = dialect.identifier_preparer.quote
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        names = (*lead, *self.fields)
        columns = f"{quote(self.table)} ({', '.join(quote(n) for n in names)})"
        self.sql = f"INSERT INTO {columns} VALUES ({', '.join([mark] * len(names))})"
        self.copy_sql = f"COPY {columns} FROM STDIN"  # PostgreSQL
        self.procs: list[tuple[int, Callable[[Any], Any]]] = []
        for index, name in enumerate(self.fields):
            proc = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None:
                kind = table.c[name].type
                if name in by_value:
                    proc = _by_value(proc)
                elif isinstance(kind, JSON):
                    proc = _empty_once(proc)
                elif memos is not None:  # times: a due time or an event's time recurs in several rows
                    proc = _memoised(proc, memos.setdefault(repr(kind), {}))
                self.procs.append((index, proc))
        # Times map None to None: such a column is skipped when None (half of a deadline's times are).
        self.none_kept = frozenset(i for i, proc in self.procs if proc(None) is None)
        self.values = attrgetter(*self.fields)

    def encode(self, values: tuple[Any, ...]) -> tuple[Any, ...]:
        """``values`` (in ``fields`` order) as the driver takes them."""
        row = list(values)
        none_kept = self.none_kept
        for index, proc in self.procs:
            value = row[index]
            if value is not None or index not in none_kept:
                row[index] = proc(value)
        return tuple(row)


def _by_value(proc: Callable[[Any], Any]) -> Callable[[Any], Any]:
    memo: dict[tuple[str, ...], Any] = {}

    def process(value: list[str] | None) -> Any:
        if value is None:
            return proc(value)
        key = tuple(value)
        found = memo.get(key)
        if found is None:
            found = memo[key] = proc(value)
        return found

    return process


def _empty_once(proc: Callable[[Any], Any]) -> Callable[[Any], Any]:
    empty = {list: proc([]), dict: proc({})}  # most payloads and extension ledgers are empty

    def process(value: Any) -> Any:
        return proc(value) if value else empty.get(type(value)) or proc(value)

    return process


def _memoised(proc: Callable[[Any], Any], memo: dict[Any, Any]) -> Callable[[Any], Any]:
    def process(value: Any) -> Any:
        found = memo.get(value)
        if found is None:
            if len(memo) >= 100_000:
                memo.clear()  # bounded: the recurring values are recent ones
            found = memo[value] = proc(value)
        return found

    return process


class _Tables:
    """The five tables an import writes. Rows go to the driver's ``executemany`` already encoded: compiling
    a Core insert per batch and processing its parameters cost a third of the import's time."""

    def __init__(self, dialect: Any) -> None:
        memos: dict[str, dict[Any, Any]] = {}  # per column type: equal values encode alike in every table
        self.cases = _Insert(Case, dialect, ("id",), ("configuration",), memos)
        self.participants = _Insert(CaseParticipant, dialect, ("case_id",), (), memos)
        self.events = _Insert(CaseEvent, dialect, ("case_id",), ("from_configuration", "to_configuration"), memos)
        self.deadlines = _Insert(Deadline, dialect, ("id", "case_id"), (), memos)
        self.pauses = _Insert(DeadlinePause, dialect, ("deadline_id",), (), memos)


class _DeadlineRow:
    """A deadline row in memory with the fields of ``Deadline`` (built by ``cases._start``)."""

    __slots__ = tuple(c.name for c in Deadline.__table__.columns)  # type: ignore[attr-defined]

    def __init__(self, **values: Any) -> None:
        for name, value in (_DEADLINE_UNSET | values).items():
            setattr(self, name, value)


_DEADLINE_UNSET: dict[str, Any] = dict.fromkeys(_DeadlineRow.__slots__) | {
    "extensions_used": 0,
    "provisional": False,
    "provisional_reason": "",
    "next_alert": "",
}


def _event_id() -> str:
    """A version 7 UUID (RFC 9562: Unix milliseconds, version, 74 random bits, variant): unique like the
    live path's version 4 ids, but ascending, so the unique index on ``event_id`` grows at its end instead of
    touching pages all over a large table (random keys made SQLite's inserts and checkpoints the bottleneck)."""
    rand = int.from_bytes(os.urandom(10))
    value = (time.time_ns() // 1_000_000) << 80 | 0x7 << 76 | (rand >> 62 & 0xFFF) << 64 | 0b10 << 62 | rand & _LOW_62
    h = f"{value:032x}"  # uuid.UUID's own str, without its constructor's checks
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_LOW_62 = (1 << 62) - 1
_leaf = cache(leaf_state)  # over configurations as tuples: a few hundred distinct ones


def _text(obj: Mapping[str, Any], key: str, *, required: bool = True) -> str:
    value = obj.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise _Reject(f"{key} is missing")
        return ""
    if not isinstance(value, str):
        raise _Reject(f"{key} must be a string, got {type(value).__name__}")
    return value.strip()


def _time(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise _Reject(f"{what} must be an ISO date-time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Reject(f"{what}: {value!r} is not an ISO date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=SHANGHAI)  # a bare local time is Beijing time, as on the CLI
    if not 2000 <= parsed.year <= 2099:
        raise _Reject(f"{what}: {value!r} is outside 2000–2099")
    return parsed


class _LineBuilder:
    """Checks one line against the rules of ``open_case``/``advance_case`` and builds its rows."""

    def __init__(
        self, deps: Deps, directory: _Directory, transitions: Transitions, tables: _Tables, system_actor: str
    ) -> None:
        self.deps = deps
        self.tables = tables
        self.dir = directory
        self.transitions = transitions
        self.system_actor = system_actor
        self.plans: dict[Any, Any] = {}  # memoised plan_clock_actions (shared by every line)

    def build(self, line_no: int, obj: Any, now: datetime) -> _Prepared:
        if not isinstance(obj, dict):
            raise _Reject("a line must be a JSON object")
        unknown = sorted(set(obj) - LINE_KEYS)
        if unknown:
            raise _Reject(f"unknown key(s) {', '.join(unknown)}; a line has {', '.join(sorted(LINE_KEYS))}")
        case_no = _text(obj, "case_no")
        if len(case_no) > 64:
            raise _Reject("case_no is longer than 64 characters")
        try:
            owner = self.dir.agency(obj.get("agency"))
        except InvalidInput as err:
            raise _Reject(err.message) from None
        if owner.kind != "market_regulation":
            raise _Reject(f"cases are opened by a market regulator; {owner.code} is a {owner.kind} agency")
        title = _text(obj, "title")
        source = _text(obj, "source")
        if source not in LEAD_SOURCES:
            raise _Reject(f"unknown lead source {source!r}; use one of {', '.join(LEAD_SOURCES)}")
        received = self._effective(_time(obj.get("received_at"), "received_at"), None, "received_at")
        opener = _text(obj, "opened_by", required=False)
        if opener:
            officer = self.dir.officers.get(opener)
            if officer is None or officer.agency_code != owner.code or "handler" not in officer.roles:
                raise _Reject(f"opened_by {opener!r} is not an active handler of {owner.code}")
        events = obj.get("events", [])
        if not isinstance(events, list):
            raise _Reject("events must be a list")

        conf = list(self.transitions.initial)
        hist: dict[str, list[str]] = {}
        counters: dict[str, int] = {}
        outcome: str | None = None
        context: dict[str, Any] = {"counters": {}}
        encode_participant = self.tables.participants.encode
        participants = [encode_participant((owner.code, "owner", received, OPEN_CASE))]
        members = {owner.code}
        clocks = _Clocks(self.deps, self.dir, case_no, self.plans)
        rows: list[tuple[Any, ...]] = []
        prev_hash = GENESIS
        payload0 = {"title": title, "source": source, "agency": owner.code, "imported": True}
        prev_hash = self._event(
            rows,
            case_no,
            OPEN_CASE,
            opener or self.system_actor,
            owner.code,
            received,
            now,
            _text(obj, "note", required=False),
            payload0,
            [],
            conf,
            prev_hash,
        )
        clocks.apply(OPEN_CASE, [], conf, {}, {}, received, {}, None)
        last = received
        for index, raw in enumerate(events, start=1):
            where = f"event #{index}"
            try:
                if not isinstance(raw, dict):
                    raise _Reject("must be a JSON object")
                unknown = sorted(set(raw) - EVENT_KEYS)
                if unknown:
                    raise _Reject(f"unknown key(s) {', '.join(unknown)}")
                event = raw.get("event")
                if event not in EVENT_IDS:
                    raise _Reject(f"{event!r} is not a lifecycle event")
                where = f"event #{index} ({event})"
                actor = self.dir.officers.get(str(raw.get("actor")))
                if actor is None:
                    raise _Reject(f"unknown or inactive officer {raw.get('actor')!r}")
                sender = self.dir.agencies[actor.agency_code]
                kind = SENDER_KIND[event]
                if sender.kind != kind:
                    raise _Reject(
                        f"{actor.username} ({sender.code}, {sender.kind}) may not send it; only {kind} officers may"
                    )
                if "handler" not in actor.roles:
                    raise _Reject(f"{actor.username} is not a handler")
                if sender.code not in members:
                    raise _Reject(f"{sender.code} does not take part in this case")
                if event in ("suspend", "resume") and phase_of(conf, hist) not in SUSPENSION_PHASES:
                    raise _Reject(
                        "the market regulator may suspend or resume only in intake or administrative enforcement"
                    )
                effective = self._effective(_time(raw.get("effective_at"), "effective_at"), last, "effective_at")
                data = raw.get("data") or {}
                if not isinstance(data, dict):
                    raise _Reject("data must be a JSON object")
                payload = parse_event_data(event, data)
                receivers = self._receivers(event, payload, sender)
                if "approved_by" in payload and payload["approved_by"] not in self.dir.officers:
                    raise _Reject(f"approved_by: unknown or inactive officer {payload['approved_by']!r}")
                before, hist_before = conf, hist
                conf, hist, counters, outcome = self.transitions.send(
                    case_no, conf, hist, counters, outcome, event, payload
                )
                clocks.apply(event, before, conf, hist_before, hist, effective, payload, sender)
                for code, role in receivers:
                    if code not in members:
                        members.add(code)
                        participants.append(encode_participant((code, role, effective, event)))
                context = _updated_context(context, SimpleNamespace(counters=counters), event, payload)
                if event == "transfer_to_police":
                    payload["manifest"] = []  # attachments are not imported: the package as sent is unknown here
                prev_hash = self._event(
                    rows,
                    case_no,
                    event,
                    actor.username,
                    actor.agency_code,
                    effective,
                    now,
                    str(raw.get("note") or ""),
                    payload,
                    before,
                    conf,
                    prev_hash,
                )
                last = effective
            except _Reject as err:
                raise _Reject(f"{where}: {err.reason}") from None
            except DomainError as err:
                raise _Reject(f"{where}: {err.message}") from None
        deadlines, pauses = clocks.finish(self.tables)
        case = {
            "case_no": case_no,
            "title": title,
            "source": source,
            "owner_agency": owner.code,
            "state": leaf_state(conf),
            "phase": phase_of(conf, hist),
            "configuration": conf,
            "history": hist,
            "context": context,
            "outcome": outcome,
            "version": len(rows),
            "received_at": received,
            "opened_by": opener or self.system_actor,
            "created_at": now,
            "updated_at": now,
            "closed_at": last if CLOSED in conf else None,
            "last_hash": prev_hash,
        }
        fields = self.tables.cases.fields
        return _Prepared(
            line_no,
            case_no,
            self.tables.cases.encode(tuple(case[name] for name in fields)),
            participants,
            rows,
            deadlines,
            pauses,
        )

    def _effective(self, value: datetime, not_before: datetime | None, what: str) -> datetime:
        try:
            return _check_effective(self.deps, value, not_before, what)
        except InvalidInput as err:
            raise _Reject(err.message) from None

    def _receivers(self, event: str, payload: dict[str, Any], sender: Agency) -> list[tuple[str, str]]:
        """Like ``cases._resolve_receivers``, from the directory in memory."""
        if event == "start_joint_investigation":
            for code in payload["agencies"]:
                self.dir.agency(code, what="agency in agencies")
            return [(code, "joint") for code in payload["agencies"]]
        kind = RECEIVER_KIND.get(event)
        if kind is None:
            return []
        if "to_agency" in payload:
            receiver = self.dir.agency(payload["to_agency"], kind=kind, what="to_agency")
        else:
            receiver = self.dir.counterpart(sender, kind)
            payload["to_agency"] = receiver.code
        if receiver.code == sender.code:
            raise InvalidInput(f"{event}: to_agency must be another agency than the sender ({sender.code})")
        return [(receiver.code, event)]

    def _event(
        self,
        rows: list[tuple[Any, ...]],
        case_no: str,
        event: str,
        actor: str,
        actor_agency: str,
        effective: datetime,
        recorded: datetime,
        note: str,
        payload: dict[str, Any],
        before: list[str],
        after: list[str],
        prev_hash: str,
    ) -> str:
        seq = len(rows) + 1
        row = EventRecord(
            event_id=_event_id(),
            case_id=None,
            seq=seq,
            event=event,
            actor=actor,
            actor_agency=actor_agency,
            effective_at=effective,
            recorded_at=recorded,
            note=note,
            payload=payload,
            from_configuration=before,
            to_configuration=after,
            from_state=_leaf(tuple(before)) if before else "",
            to_state=_leaf(tuple(after)),
            version=seq,
            prev_hash=prev_hash,
        )
        row.hash = event_digest(case_no, row)  # the same digest as append_event
        events = self.tables.events
        rows.append(events.encode(events.values(row)))
        return str(row.hash)


class _Clocks:
    """``cases._apply_clocks`` over rows in memory: the same plan, the same start/stop/pause/resume/extend
    helpers, the pause ledger as dicts (their deadline ids exist only once the rows are inserted)."""

    def __init__(self, deps: Deps, directory: _Directory, case_no: str, plans: dict[Any, Any]) -> None:
        self.deps = deps
        self.dir = directory
        self.plans = plans
        self.case = SimpleNamespace(id=None, case_no=case_no, state="")
        self.rows: list[Deadline] = []
        self.touched: dict[int, datetime] = {}
        self.pauses: list[dict[str, Any]] = []
        self.open_pause: dict[int, dict[str, Any]] = {}

    def apply(
        self,
        event: str,
        before: list[str],
        after: list[str],
        hist_before: dict[str, list[str]],
        hist_after: dict[str, list[str]],
        at: datetime,
        payload: Mapping[str, Any],
        sender: Agency | None,
    ) -> None:
        rules = self.deps.clock_rules
        open_rows = {r.rule: r for r in self.rows if r.status in _OPEN}
        h_before = tuple(hist_before.get(HISTORY, [])) if "suspended" in before else ()
        h_after = tuple(hist_after.get(HISTORY, [])) if "suspended" in after else ()
        key = (event, tuple(before), tuple(after), frozenset(open_rows), h_before, h_after)
        actions = self.plans.get(key)
        if actions is None:  # a pure function of its arguments: computed once per distinct transition
            actions = self.plans[key] = plan_clock_actions(
                rules,
                event,
                before,
                after,
                running=set(open_rows),
                history_before=list(h_before),
                history_after=list(h_after),
            )
        if actions:  # the state names the case in an extension's refusal
            self.case.state = _leaf(tuple(before)) if before else ""
        for action in actions:
            rule = rules[action.rule]
            row = open_rows.get(action.rule)
            if action.action in ("stop", "restart") and row is not None:
                self._close_pause(row, at, event)
                _finish(row, at, "cancelled" if action.action == "restart" else None)
                self.touched[id(row)] = at
            if action.action in ("start", "restart"):
                new = _start(self.deps, self.case, rule, action, event, at, row_type=_DeadlineRow)  # type: ignore[arg-type]
                self.rows.append(new)
                self.touched[id(new)] = at
                if action.start_paused:
                    self._pause(new, at, event)
            elif action.action == "pause" and row is not None:
                row.status, row.paused_at = "paused", at
                self._pause(row, at, event)
                self.touched[id(row)] = at
            elif action.action == "resume" and row is not None and row.paused_at is not None:
                nominal = self.deps.calendar.shift_for_pause(
                    _nominal(row), row.paused_at, at, rule.unit, roll_to_workday=False
                )
                _due_from_nominal(self.deps, rule, row, nominal)
                self._close_pause(row, at, event)
                row.status, row.paused_at = "running", None
                self.touched[id(row)] = at
            elif action.action == "extend" and row is not None:
                _extend(self.deps, self.dir, self.case, rule, row, action, event, at, payload, sender)  # type: ignore[arg-type]
                self.touched[id(row)] = at
        if actions:
            # Live, the next transition reads these rows back from the database, in UTC (an extension
            # ledger records the due time it found as text): the same here.
            for row in self.rows:
                if row.status in _OPEN:
                    for name in _TIMES:
                        value = getattr(row, name)
                        if value is not None:
                            setattr(row, name, value.astimezone(UTC))

    def _pause(self, row: Deadline, at: datetime, event: str) -> None:
        entry = {
            "row": row,
            "paused_at": at,
            "paused_by": event,
            "due_before": row.due_at,
            "resumed_at": None,
            "resumed_by": "",
            "due_after": None,
        }
        self.pauses.append(entry)
        self.open_pause[id(row)] = entry

    def _close_pause(self, row: Deadline, at: datetime, event: str) -> None:
        entry = self.open_pause.pop(id(row), None)
        if entry is not None:
            entry["resumed_at"], entry["resumed_by"], entry["due_after"] = at, event, row.due_at

    def finish(self, tables: _Tables) -> tuple[list[tuple[Any, ...]], list[tuple[int, tuple[Any, ...]]]]:
        """The rows, encoded, each pointed at its next alert as the live path leaves it (no alert fired yet);
        a pause names its deadline by its index among them."""
        index: dict[int, int] = {}
        rows: list[tuple[Any, ...]] = []
        for row in self.rows:
            refresh_next_alert(self.deps, None, row, after=self.touched[id(row)], fired=set())  # type: ignore[arg-type]
            index[id(row)] = len(rows)
            rows.append(tables.deadlines.encode(tables.deadlines.values(row)))
        encode, fields = tables.pauses.encode, tables.pauses.fields
        pauses = [(index[id(e["row"])], encode(tuple(e[name] for name in fields))) for e in self.pauses]
        return rows, pauses


# --- the file -------------------------------------------------------------------------------------


def _lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(line number, bytes read so far, raw line) for every non-blank line."""
    read = 0
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            read += len(raw)
            if raw.strip():
                yield number, read, raw


def _batches(path: Path, size: int) -> Iterator[tuple[list[tuple[int, bytes]], int]]:
    batch: list[tuple[int, bytes]] = []
    read = 0
    for number, read, raw in _lines(path):
        batch.append((number, raw))
        if len(batch) >= size:
            yield batch, read
            batch = []
    if batch:
        yield batch, read


#: Lines checked in this process before the workers fork: they inherit the warm caches (a chart miss costs
#: ~1 ms, and most distinct transitions show up early), and a small file never pays for the fork.
WARM_UP_LINES = 1000


@dataclass
class _Batch:
    """One batch on its way: what the reader decided, and the lines given to the checkers."""

    read: int
    skipped: int
    rejected: list[Rejection]
    checked: Any  # the workers' AsyncResult, or the list of outcomes checked here


_BUILDER: _LineBuilder | None = None  # the workers' builder, inherited when the pool forks


def _check_lines(job: tuple[datetime, list[tuple[int, str, Any]]]) -> list[_Prepared | Rejection]:
    """Check lines and build their rows (in a worker: ``Any`` is the raw line, parsed again there, since
    sending bytes costs less than pickling the parsed object)."""
    assert _BUILDER is not None
    now, lines = job
    out: list[_Prepared | Rejection] = []
    for number, case_no, line in lines:
        try:
            out.append(_BUILDER.build(number, json.loads(line) if isinstance(line, bytes) else line, now))
        except _Reject as err:
            out.append(Rejection(number, case_no, err.reason))
    return out


def _start_workers(deps: Deps, count: int) -> Any:
    """``count`` forked checkers sharing the builder and its warm caches; ``None`` where fork is missing."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return None
    deps.engine.dispose()  # the children must not inherit open connections (they never use the database)
    return multiprocessing.get_context("fork").Pool(count)


def import_cases(
    deps: Deps,
    path: Path | str,
    *,
    batch_size: int = 500,
    actor_for_system: str = SYSTEM_ACTOR,
    progress: Callable[[ImportProgress], None] | None = None,
    workers: int | None = None,
) -> ImportResult:
    """Import the historical cases of a JSON Lines export; returns what was imported, skipped, rejected.

    Each batch of ``batch_size`` lines is checked in memory, then written in one transaction (cases,
    participants, hash-chained events, deadlines, pause ledger): a kill leaves whole batches only. Lines
    whose case number is already stored are skipped, so running the same file again resumes it.
    ``actor_for_system`` is recorded as the opener of a case whose line names no ``opened_by``.
    ``workers`` processes check lines while this one writes (0: check here too; default: one per CPU),
    after the first ``WARM_UP_LINES``: checking is per line, the database has one writer.
    """
    global _BUILDER
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"file not found: {path}")
    if batch_size < 1:
        raise InvalidInput("the batch size must be at least 1")
    started = time.perf_counter()
    total = path.stat().st_size
    result = ImportResult(path=str(path))
    with UnitOfWork(deps, read_only=True) as uow:
        directory = _Directory(uow)
    tables = _Tables(deps.engine.dialect)
    transitions = Transitions(deps.loss_threshold, deps.illegal_gain_threshold)
    day_deps = replace(deps, calendar=_DayCalendar(deps.calendar))  # type: ignore[arg-type]
    _BUILDER = _LineBuilder(day_deps, directory, transitions, tables, actor_for_system)
    if workers is None:
        workers = os.cpu_count() or 1
    pool = None
    pending: deque[_Batch] = deque()
    seen: dict[str, int] = {}  # case_no -> line, for numbers given twice in one file
    try:
        for lines, read in _batches(path, batch_size):
            if pool is None and workers > 0 and result.lines >= WARM_UP_LINES:
                pool = _start_workers(deps, workers)
            result.lines += len(lines)
            pending.append(_read_batch(deps, lines, read, seen, pool, workers))
            # Two batches in flight: the workers check the next while this process writes one.
            while len(pending) > (2 if pool else 0):
                _finish_batch(deps, tables, pending.popleft(), result, total, progress)
        while pending:
            _finish_batch(deps, tables, pending.popleft(), result, total, progress)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        _BUILDER = None
    result.seconds = time.perf_counter() - started
    log.info(
        "import %s: %s imported, %s skipped, %s rejected",
        path.name,
        result.imported,
        result.skipped,
        len(result.rejected),
    )
    return result


def _read_batch(
    deps: Deps, lines: list[tuple[int, bytes]], read: int, seen: dict[str, int], pool: Any, workers: int
) -> _Batch:
    """Parse a batch's lines, reject bad JSON and repeated case numbers, skip stored ones; hand the rest to
    the checkers (the workers, or this process at once)."""
    batch = _Batch(read, 0, [], [])
    parsed: list[tuple[int, str, Any]] = []
    for number, raw in lines:
        try:
            obj = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            batch.rejected.append(Rejection(number, "", f"not valid JSON: {exc}"))
            continue
        case_no = str(obj.get("case_no") or "").strip() if isinstance(obj, dict) else ""
        if case_no in seen:
            batch.rejected.append(Rejection(number, case_no, f"case_no {case_no} is already on line {seen[case_no]}"))
            continue
        if case_no:
            seen[case_no] = number
        parsed.append((number, case_no, raw if pool is not None else obj))
    stored = _stored(deps, [c for _n, c, _o in parsed if c])
    todo = [item for item in parsed if item[1] not in stored]
    batch.skipped = len(parsed) - len(todo)
    now = deps.now()
    if pool is None:
        batch.checked = _check_lines((now, todo))
    else:
        size = -(-len(todo) // workers) or 1
        chunks = [(now, todo[i : i + size]) for i in range(0, len(todo), size)]
        batch.checked = pool.map_async(_check_lines, chunks, chunksize=1)
    return batch


def _finish_batch(
    deps: Deps,
    tables: _Tables,
    batch: _Batch,
    result: ImportResult,
    total: int,
    progress: Callable[[ImportProgress], None] | None,
) -> None:
    """Write a checked batch in one transaction, record its rejections in line order, report progress."""
    checked = batch.checked if isinstance(batch.checked, list) else [x for chunk in batch.checked.get() for x in chunk]
    prepared = [x for x in checked if isinstance(x, _Prepared)]
    rejected = batch.rejected + [x for x in checked if isinstance(x, Rejection)]
    result.rejected += sorted(rejected, key=lambda r: r.line)
    result.skipped += batch.skipped
    if prepared:
        written = _write(deps, tables, prepared)
        result.skipped += len(prepared) - len(written)
        result.imported += len(written)
        result.events += sum(len(p.events) for p in written)
    if progress is not None:
        progress(
            ImportProgress(
                result.lines, batch.read, total, result.imported, result.skipped, len(result.rejected), result.events
            )
        )


def _stored(deps: Deps, numbers: list[str]) -> set[str]:
    if not numbers:
        return set()
    with UnitOfWork(deps, read_only=True) as uow:
        return set(uow.session.execute(select(Case.case_no).where(Case.case_no.in_(numbers))).scalars())  # type: ignore[attr-defined]


#: Serialises concurrent imports on PostgreSQL, so the check for stored case numbers under it holds (on
#: SQLite the write lock of ``BEGIN IMMEDIATE`` does this).
_PG_IMPORT_LOCK = 0x6A63696D  # "jcim"


def _new_ids(cursor: Any, table: str, count: int, sqlite: bool) -> list[int]:
    """``count`` ids for new rows of ``table``, taken up front so children can name their parents."""
    if sqlite:  # the write lock is held: nobody else inserts until commit
        cursor.execute(f"SELECT coalesce(max(id), 0) FROM {table}")
        first = int(cursor.fetchone()[0]) + 1
        return list(range(first, first + count))
    cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", (table, count))
    return [int(row[0]) for row in cursor.fetchall()]


def _write(deps: Deps, tables: _Tables, prepared: list[_Prepared]) -> list[_Prepared]:
    """Insert one batch in one transaction; returns the cases written (one stored meanwhile is left out)."""
    sqlite = is_sqlite(deps.engine)
    with UnitOfWork(deps) as uow:
        connection = uow.session.connection()
        if not sqlite:
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_IMPORT_LOCK})")
        # Checked again under the lock: another import of the same file may have stored some meanwhile.
        stored = set(
            connection.execute(
                select(Case.case_no).where(Case.case_no.in_([p.case_no for p in prepared]))  # type: ignore[attr-defined]
            ).scalars()
        )
        todo = [p for p in prepared if p.case_no not in stored]
        if not todo:
            return []
        cursor = connection.connection.cursor()  # the driver's own: same connection, same transaction
        if sqlite:  # 64 MiB of page cache (default 2 MiB): events' random event_id keys touch pages all over
            cursor.execute("PRAGMA cache_size=-65536")
        case_ids = _new_ids(cursor, tables.cases.table, len(todo), sqlite)
        deadline_ids = iter(_new_ids(cursor, tables.deadlines.table, sum(len(p.deadlines) for p in todo), sqlite))
        cases, participants, events, deadlines, pauses = [], [], [], [], []
        for case_id, p in zip(case_ids, todo, strict=True):
            head = (case_id,)
            cases.append(head + p.case)
            participants += [head + row for row in p.participants]
            events += [head + row for row in p.events]
            mine = []
            for row in p.deadlines:
                mine.append(next(deadline_ids))
                deadlines.append((mine[-1], case_id, *row))
            pauses += [(mine[index], *row) for index, row in p.pauses]
        for insert, rows in (
            (tables.cases, cases),
            (tables.participants, participants),
            (tables.events, events),
            (tables.deadlines, deadlines),
            (tables.pauses, pauses),
        ):
            if not rows:
                continue
            if sqlite:
                cursor.executemany(insert.sql, rows)
            else:  # COPY: several times faster than even a pipelined executemany
                with cursor.copy(insert.copy_sql) as copy:
                    for row in rows:
                        copy.write_row(row)
        cursor.close()
        uow.commit()
        return todo
