"""Sign-in and access for the web pages and the REST API.

Officers sign in with a password (argon2 hash in ``credentials``); a browser gets a session whose token
lives in an HttpOnly cookie (only its SHA-256 is stored) together with a CSRF token for its forms.
Systems of other agencies use bearer tokens (``jc_…``, shown once, stored as SHA-256, revocable), each
acting as one officer. Failed sign-ins are counted per username and per client address; too many in the
window refuse further tries for a while. Reads of a case's evidence and documents are logged.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam, delete, func, select, update

from models import statements
from models.statements import Prepared
from models.tables import AccessLog, ApiToken, Credential, LoginAttempt, Officer, WebSession
from states.errors import DomainError, InvalidInput, PermissionDenied
from workflows.cases import _visible_case
from workflows.clockwork import local_iso
from workflows.uow import Deps, UnitOfWork

MIN_PASSWORD = 8
SESSION_HOURS = 12
#: Failed sign-ins allowed per username in the window; then that username waits for the window to pass.
MAX_FAILURES = 5
#: Failed sign-ins allowed per client address in the window (higher: a whole agency may sign in from behind
#: one NAT address, and one officer's typos must not lock out their colleagues; it still stops a password
#: spray over many usernames).
MAX_CLIENT_FAILURES = 30
FAILURE_WINDOW = timedelta(minutes=15)
TOKEN_PREFIX = "jc_"

_hasher = PasswordHasher()
# Verifying an unknown user costs the same as a real one: the answer's timing does not reveal usernames.
_DUMMY_HASH = _hasher.hash("jointcase-no-such-user")


class TooManyAttempts(DomainError):
    """Too many failed sign-ins: wait before trying again."""

    code = "too_many_attempts"

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many failed sign-ins; try again in {retry_after // 60 + 1} minutes")


class NotSignedIn(DomainError):
    """No valid session or token."""

    code = "not_signed_in"


def _sha(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


@dataclass
class Identity:
    """Who is acting: the officer, with agency and roles, and how they came in."""

    username: str
    display_name: str
    agency_code: str
    roles: list[str]
    via: str  # web | api
    csrf_token: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = asdict(self)
        out.pop("csrf_token")
        return out


def _identity(officer: Officer | Any, via: str, csrf: str = "") -> Identity:
    """``officer``: the model, or a row with its username, display_name, agency_code and roles."""
    return Identity(officer.username, officer.display_name, officer.agency_code, list(officer.roles), via, csrf)


# --- passwords and sessions ---------------------------------------------------------------------------


def set_password(deps: Deps, username: str, password: str) -> None:
    """Set an officer's password (at least 8 characters); signs them out everywhere."""
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"a password has at least {MIN_PASSWORD} characters")
    with UnitOfWork(deps) as uow:
        uow.officer(username)  # an active officer, or UnknownActor
        row = uow.session.get(Credential, username)
        now = deps.now()
        if row is None:
            uow.session.add(Credential(username=username, password_hash=_hasher.hash(password), changed_at=now))
        else:
            row.password_hash, row.changed_at = _hasher.hash(password), now
        uow.session.execute(delete(WebSession).where(WebSession.username == username))  # type: ignore[arg-type]
        uow.commit()


def sign_in(deps: Deps, username: str, password: str, *, client: str) -> tuple[str, Identity]:
    """Check the password; returns (session token for the cookie, identity). Rate-limited per username
    and per client address; a wrong username and a wrong password give the same answer."""
    username = (username or "").strip()[:80]
    client = (client or "unknown")[:64]
    now = deps.now()
    with UnitOfWork(deps) as uow:
        since = now - FAILURE_WINDOW
        for column, value, limit in (
            (LoginAttempt.username, username, MAX_FAILURES),
            (LoginAttempt.client, client, MAX_CLIENT_FAILURES),
        ):
            count, oldest = uow.session.execute(
                select(func.count(), func.min(LoginAttempt.at)).where(LoginAttempt.at >= since, column == value)
            ).one()
            if count >= limit:
                raise TooManyAttempts(max(1, int(((oldest or now) + FAILURE_WINDOW - now).total_seconds())))
        officer = uow.session.get(Officer, username)
        cred = uow.session.get(Credential, username) if officer and officer.active else None
        try:
            _hasher.verify(cred.password_hash if cred else _DUMMY_HASH, password or "")
            ok = cred is not None
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok or officer is None:
            uow.session.add(LoginAttempt(username=username, client=client, at=now))
            uow.commit()
            raise NotSignedIn("wrong username or password")
        raw = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        uow.session.add(
            WebSession(
                token_hash=_sha(raw),
                username=username,
                csrf_token=csrf,
                created_at=now,
                expires_at=now + timedelta(hours=SESSION_HOURS),
            )
        )
        uow.session.execute(delete(WebSession).where(WebSession.expires_at < now))  # type: ignore[arg-type]
        identity = _identity(officer, "web", csrf)
        uow.commit()
        return raw, identity


def _with_officer_stmt(table: Any) -> Prepared:
    officer = (Officer.display_name, Officer.agency_code, Officer.roles, Officer.active)
    return Prepared(
        select(*table.__table__.c, *officer)
        .join(Officer, Officer.username == table.username)  # type: ignore[arg-type]
        .where(table.token_hash == bindparam("token_hash"))
    )


#: A session's or token's row with its officer's name, agency, roles and state: one query, since every request
#: asks first who is calling; plain columns on the driver, no ORM objects.
_SESSION_WITH_OFFICER = _with_officer_stmt(WebSession)
_TOKEN_WITH_OFFICER = _with_officer_stmt(ApiToken)


def _with_officer(uow: UnitOfWork, stmt: Prepared, raw: str) -> Any:
    """The row of ``stmt`` for the secret ``raw`` (stored as its hash), or None."""
    found = statements.rows(uow.conn, stmt, {"token_hash": _sha(raw)})
    return found[0] if found else None


def session_identity(deps: Deps, raw: str | None) -> Identity | None:
    """The officer of a live session cookie, or None."""
    if not raw:
        return None
    with UnitOfWork(deps, read_only=True) as uow:
        row = _with_officer(uow, _SESSION_WITH_OFFICER, raw)
        if row is None or row.expires_at <= deps.now() or not row.active:
            return None
        return _identity(row, "web", row.csrf_token)


def sign_out(deps: Deps, raw: str | None) -> None:
    """End a session (nothing happens for an unknown one)."""
    if not raw:
        return
    with UnitOfWork(deps) as uow:
        uow.session.execute(delete(WebSession).where(WebSession.token_hash == _sha(raw)))  # type: ignore[arg-type]
        uow.commit()


# --- API tokens ------------------------------------------------------------------------------------------


def create_token(deps: Deps, username: str, *, name: str = "") -> dict[str, Any]:
    """A new bearer token acting as ``username``; the raw token is in the answer only, never stored."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with UnitOfWork(deps) as uow:
        officer = uow.officer(username)
        row = ApiToken(
            username=officer.username,
            name=(name or "").strip()[:80] or "api",
            token_hash=_sha(raw),
            prefix=raw[:10],
            created_at=deps.now(),
        )
        uow.session.add(row)
        uow.session.flush()
        out = {"id": row.id, "username": row.username, "name": row.name, "token": raw, "prefix": row.prefix}
        uow.commit()
        return out


def list_tokens(deps: Deps, username: str | None = None) -> list[dict[str, Any]]:
    """Tokens (never their secret), newest first."""
    with UnitOfWork(deps, read_only=True) as uow:
        stmt: Any = select(ApiToken).order_by(ApiToken.id.desc())  # type: ignore[union-attr]
        if username:
            stmt = stmt.where(ApiToken.username == username)
        return [
            {
                "id": t.id,
                "username": t.username,
                "name": t.name,
                "prefix": t.prefix,
                "created_at": local_iso(t.created_at),
                "last_used_at": local_iso(t.last_used_at),
                "revoked_at": local_iso(t.revoked_at),
            }
            for t in uow.session.execute(stmt).scalars()
        ]


def revoke_token(deps: Deps, token_id: int) -> None:
    """Revoke a token at once."""
    with UnitOfWork(deps) as uow:
        row = uow.session.get(ApiToken, token_id)
        if row is None:
            raise InvalidInput(f"no API token #{token_id}")
        if row.revoked_at is None:
            row.revoked_at = deps.now()
        uow.commit()


def token_identity(deps: Deps, raw: str | None) -> Identity | None:
    """The officer a live bearer token acts as, or None (unknown, revoked, officer inactive)."""
    if not raw or not raw.startswith(TOKEN_PREFIX):
        return None
    # A reader's unit of work: no SQLite write lock and no BEGIN/ROLLBACK on PostgreSQL for every API request.
    with UnitOfWork(deps, read_only=True) as uow:
        row = _with_officer(uow, _TOKEN_WITH_OFFICER, raw)
        if row is None or row.revoked_at is not None or not row.active:
            return None
        identity, token_id, last_used = _identity(row, "api"), row.id, row.last_used_at
    now = deps.now()
    if last_used is None or now - last_used > timedelta(minutes=1):
        # At most once a minute, in a short write of its own: reads must not all become writes.
        with UnitOfWork(deps) as uow:
            uow.session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now))  # type: ignore[arg-type]
            uow.commit()
    return identity


# --- the access log ------------------------------------------------------------------------------------------


def log_access(deps: Deps, identity: Identity, case_no: str, resource: str, detail: str = "") -> None:
    """Record that ``identity`` read ``resource`` (evidence, documents) of a case it may see."""
    with UnitOfWork(deps) as uow:
        case, _officer = _visible_case(uow, case_no, identity.username)
        uow.session.add(
            AccessLog(
                username=identity.username,
                case_id=case.id or 0,
                resource=resource,
                detail=detail[:200],
                via=identity.via,
                at=deps.now(),
            )
        )
        uow.commit()


def access_log(deps: Deps, case_no: str, *, actor: str) -> list[dict[str, Any]]:
    """Who read the case's evidence and documents, newest first (its handlers, supervisors, admins)."""
    with UnitOfWork(deps, read_only=True) as uow:
        case, officer = _visible_case(uow, case_no, actor)
        if not {"handler", "supervisor", "admin"} & set(officer.roles):
            raise PermissionDenied(f"case {case_no}: the access log is for handlers, supervisors and admins")
        rows = uow.session.execute(
            select(AccessLog).where(AccessLog.case_id == case.id).order_by(AccessLog.id.desc())  # type: ignore[union-attr]
        ).scalars()
        return [
            {"username": r.username, "resource": r.resource, "detail": r.detail, "via": r.via, "at": local_iso(r.at)}
            for r in rows
        ]
