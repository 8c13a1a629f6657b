"""The unit of work: one database transaction per use case, rolled back unless committed.

Row locks: on PostgreSQL the case row is locked with ``SELECT ... FOR UPDATE``; on SQLite the whole
transaction already began with ``BEGIN IMMEDIATE`` (see ``models.db``), which holds the write lock.
Either way, two transitions of one case never interleave.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, bindparam, select, update
from sqlalchemy.orm import sessionmaker
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session

from models import statements
from models.db import SQLITE_BEGIN, is_sqlite, session_factory
from models.statements import Prepared
from models.tables import Agency, Case, CaseParticipant, Officer
from notifications.bulletins import BulletinSettings
from notifications.config import NotificationSettings
from notifications.documents import DocumentSettings
from states.calendar import WorkCalendar
from states.clocks import ClockRule, SupervisionPolicy
from states.errors import CaseNotFound, UnknownActor
from states.meeting import MeetingSettings


class OfficerRow(NamedTuple):
    """An officer as the use cases read it: a plain row of ``officers``, not an ORM object (loading one cost
    more than the rest of reading who is acting)."""

    username: str
    display_name: str
    agency_code: str
    roles: list[str]
    email: str
    liaison: bool
    active: bool
    channels: list[str]


class AgencyRow(NamedTuple):
    """An agency as the use cases read it: a plain row of ``agencies``."""

    code: str
    name: str
    name_en: str
    kind: str
    level: str
    region: str
    region_name: str
    parent_region: str | None
    doc_prefix: str


@dataclass(slots=True)
class CaseRow:
    """A case read as a plain row for a use case that writes it only through ``write_case`` (a transition):
    loading the ORM object cost more than the rest of reading the case. The columns of ``cases``."""

    id: int
    case_no: str
    title: str
    source: str
    owner_agency: str
    state: str
    phase: str
    configuration: list[str]
    history: dict[str, list[str]]
    context: dict[str, Any]
    outcome: str | None
    version: int
    received_at: datetime
    opened_by: str
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    last_hash: str


#: A case as the transition helpers take it: the ORM object, or a plain row in a transition.
AnyCase = Case | CaseRow


def keep(case: AnyCase, key: str, value: Any) -> None:
    """Set a column's new value on a case just written with Core: on an ORM object as committed (not dirty,
    so no flush writes it again)."""
    if isinstance(case, CaseRow):
        setattr(case, key, value)
    else:
        set_committed_value(case, key, value)


def _columns(model: Any, row: Any) -> list[Any]:
    names = row._fields if hasattr(row, "_fields") else row.__slots__  # a NamedTuple or a slots dataclass
    return [model.__table__.c[name] for name in names]


#: The columns of an ``AgencyRow``, to select one.
AGENCY_COLUMNS = _columns(Agency, AgencyRow)
_OFFICER_COLUMNS = len(OfficerRow._fields)
#: The officer with its agency: nearly every use case reads the officer's agency next.
_OFFICER_WITH_AGENCY = Prepared(
    select(*_columns(Officer, OfficerRow), *AGENCY_COLUMNS)
    .join(Agency, Agency.code == Officer.agency_code)  # type: ignore[arg-type]
    .where(Officer.username == bindparam("username"))
)
_AGENCY = Prepared(select(*AGENCY_COLUMNS).where(Agency.code == bindparam("code")))
#: A case with its owner agency (every view shows the owner's name; one round trip instead of two). The
#: lock is on the case row only: locking the agency's row too would serialise all of its cases.
_CASE = (
    select(Case, *AGENCY_COLUMNS)
    .join(Agency, Agency.code == Case.owner_agency)  # type: ignore[arg-type]
    .where(Case.case_no == bindparam("case_no"))
)
_CASE_LOCKED = _CASE.with_for_update(of=Case)  # type: ignore[arg-type]
_CASE_FIELDS = len(CaseRow.__slots__)
_CASE_ROW = Prepared(_CASE.with_only_columns(*_columns(Case, CaseRow), *AGENCY_COLUMNS))
_CASE_ROW_LOCKED = Prepared(_CASE_ROW.stmt.with_for_update(of=Case))  # type: ignore[attr-defined]
_PARTICIPANTS = Prepared(
    select(CaseParticipant.agency_code, CaseParticipant.role)
    .where(CaseParticipant.case_id == bindparam("case_id"))
    .order_by(CaseParticipant.id)
)

#: Prebuilt UPDATEs of the case row, per set of columns written (a handful exist).
_CASE_UPDATES: dict[tuple[str, ...], Prepared] = {}


def utc_now() -> datetime:
    """The real clock (UTC, aware). Use cases get the clock injected; only the composition root uses this."""
    return datetime.now(UTC)


@dataclass
class Deps:
    """What the use cases need from the deployment, built once by ``app.bootstrap``.

    Passed down explicitly so that no lower layer reads settings or the real clock by itself.
    """

    engine: Engine
    calendar: WorkCalendar
    clock_rules: dict[str, ClockRule]
    clock: Callable[[], datetime] = utc_now
    case_number_format: str = "{agency}-{year}-{seq:04d}"
    loss_threshold: int = 300_000
    illegal_gain_threshold: int = 300_000
    attachments_dir: Path = Path("var/attachments")
    lang: str = "zh"
    supervision: SupervisionPolicy = field(default_factory=SupervisionPolicy)
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    documents: DocumentSettings = field(default_factory=DocumentSettings)
    meetings: MeetingSettings = field(default_factory=MeetingSettings)
    bulletins: BulletinSettings = field(default_factory=BulletinSettings)
    sessions: sessionmaker[Session] = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = session_factory(self.engine)

    def now(self) -> datetime:
        """The injected clock's time, always aware UTC."""
        value = self.clock()
        if value.tzinfo is None:
            raise ValueError("the injected clock must return timezone-aware datetimes")
        return value.astimezone(UTC)


class UnitOfWork:
    """A transaction around one use case. Use ``with UnitOfWork(deps) as uow: ... uow.commit()``."""

    def __init__(self, deps: Deps, *, read_only: bool = False) -> None:
        self.deps = deps
        self.read_only = read_only
        self._session: Session | None = None
        self._committed = False
        self._agencies: dict[str, AgencyRow] = {}
        self._officers: dict[str, OfficerRow] = {}

    @property
    def session(self) -> Session:
        """The transaction's session; using it after ``commit`` is a programming error."""
        if self._committed:
            raise RuntimeError("this unit of work has committed; read the result before committing")
        if self._session is None:
            raise RuntimeError("the unit of work is not entered (use it in a with-block)")
        return self._session

    @property
    def conn(self) -> Connection:
        """The transaction's connection, for Core statements on the hot paths: rows and scalars without the
        ORM's per-statement machinery (about a third of its cost). Writes sent here bypass the session: use
        it for rows no ORM object of this transaction holds, or keep the object in step (``write_case``)."""
        return self.session.connection()

    def __enter__(self) -> UnitOfWork:
        self._session = self.deps.sessions()
        if is_sqlite(self.deps.engine):
            # Readers need no write lock: WAL lets them run beside the one writer.
            mode = "DEFERRED" if self.read_only else "IMMEDIATE"
            self._session.connection(execution_options={SQLITE_BEGIN: mode})
        elif self.read_only:
            # PostgreSQL's READ COMMITTED gives every statement its own snapshot, in a transaction or not:
            # a reader without BEGIN and ROLLBACK sees the same and saves two round trips per request.
            self._session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Anything not committed explicitly is rolled back: a failure at any step writes nothing. ``close``
        # rolls the connection's transaction back; ``rollback`` first would also expire every loaded object
        # (about a third of a read's cost), which nobody reads again.
        if self._session is not None:
            self._session.close()

    def commit(self) -> None:
        """Commit everything done in this unit of work. It is the last database step of a use case:
        the unit of work refuses further queries, so a committed change is never followed by an error."""
        self.session.commit()
        self.session.close()
        self._committed = True

    def officer(self, username: str) -> OfficerRow:
        """The active officer ``username`` or ``UnknownActor``, read at most once per transaction."""
        _ = self.session  # after the commit, a programming error even for what was read before
        officer = self._officers.get(username)
        if officer is None:
            found = statements.rows(self.conn, _OFFICER_WITH_AGENCY, {"username": username})
            if not found:
                raise UnknownActor(username)
            officer = self._officers[username] = OfficerRow(*found[0][:_OFFICER_COLUMNS])
            agency = AgencyRow(*found[0][_OFFICER_COLUMNS:])
            self._agencies[agency.code] = agency
        if not officer.active:
            raise UnknownActor(username)
        return officer

    def agency(self, code: str) -> AgencyRow | None:
        """The agency ``code`` (None if unknown), read at most once per transaction."""
        _ = self.session  # after the commit, a programming error even for what was read before
        found = self._agencies.get(code)
        if found is None:
            rows = statements.rows(self.conn, _AGENCY, {"code": code})
            if rows:
                found = self._agencies[code] = AgencyRow(*rows[0])
        return found

    def case(self, case_no: str, *, lock: bool = False) -> Case:
        """Load a case by number, locking its row for the rest of the transaction when ``lock``."""
        stmt = _CASE_LOCKED if lock and not is_sqlite(self.deps.engine) else _CASE
        found = self.session.execute(stmt, {"case_no": case_no}).first()
        if found is None:
            raise CaseNotFound(case_no)
        case = found[0]
        self._agencies[case.owner_agency] = AgencyRow(*found[1:])
        if lock:
            self._forget_participants(case)
        return case

    def case_row(self, case_no: str, *, lock: bool = False) -> CaseRow:
        """``case`` as a plain row, for a use case that writes the case only through ``write_case``."""
        stmt = _CASE_ROW_LOCKED if lock and not is_sqlite(self.deps.engine) else _CASE_ROW
        found = statements.rows(self.conn, stmt, {"case_no": case_no})
        if not found:
            raise CaseNotFound(case_no)
        case = CaseRow(*found[0][:_CASE_FIELDS])
        self._agencies[case.owner_agency] = AgencyRow(*found[0][_CASE_FIELDS:])
        if lock:
            self._forget_participants(case)
        return case

    def _forget_participants(self, case: AnyCase) -> None:
        # Read under the lock again: another transaction may have added a participant before it.
        self.session.info.get("case_participants", {}).pop(case.id or 0, None)

    def participants(self, case: AnyCase) -> dict[str, str]:
        """The case's participating agencies (code -> role, in joining order), read once per transaction;
        ``add_participant`` keeps it current."""
        cache: dict[int, dict[str, str]] = self.session.info.setdefault("case_participants", {})
        found = cache.get(case.id or 0)
        if found is None:
            rows = statements.rows(self.conn, _PARTICIPANTS, {"case_id": case.id})
            found = cache[case.id or 0] = {code: role for code, role in rows}
        return found

    def add_participant(self, case: AnyCase, agency_code: str, role: str, event: str, at: datetime) -> None:
        """Make ``agency_code`` a participant of ``case`` (nothing if it is one already)."""
        members = self.participants(case)
        if agency_code not in members:
            self.session.add(
                CaseParticipant(case_id=case.id, agency_code=agency_code, role=role, added_at=at, added_by_event=event)
            )
            self.session.flush()  # queries joining the participants in this transaction must see the row
            members[agency_code] = role

    def write_case(self, case: AnyCase, values: dict[str, Any]) -> None:
        """Write these columns of ``case`` with one Core UPDATE now and set them on the object as committed
        (not dirty, so no second UPDATE at the flush): the ORM's flush of one row costs several times the
        statement."""
        columns = tuple(sorted(values))
        stmt = _CASE_UPDATES.get(columns)
        if stmt is None:
            table = Case.__table__  # type: ignore[attr-defined]
            stmt = _CASE_UPDATES[columns] = Prepared(
                update(table)
                .where(table.c.id == bindparam("case_id_"))
                .values({name: bindparam(f"{name}_") for name in columns})
            )
        statements.write(self.conn, stmt, {"case_id_": case.id, **{f"{name}_": values[name] for name in columns}})
        for key, value in values.items():
            keep(case, key, value)

    def lock(self, case: Case) -> None:
        """Lock a case already loaded in this transaction before appending to its audit chain (PostgreSQL
        ``FOR UPDATE``; SQLite holds its write lock already) and read its row again: another transaction
        may have appended meanwhile. What this transaction changed is flushed first, so it is kept."""
        if is_sqlite(self.deps.engine):
            return
        self._forget_participants(case)
        self.session.flush()
        self.session.execute(
            select(Case).where(Case.id == case.id).with_for_update().execution_options(populate_existing=True)
        )
