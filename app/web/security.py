"""Who is calling: a bearer token (systems) or a session cookie (browsers), and the CSRF check.

The session cookie is HttpOnly, SameSite=Lax and Secure when served over HTTPS; every state-changing
request made with it must carry the session's CSRF token (form field ``csrf_token`` or header
``X-CSRF-Token``). Bearer requests need no CSRF token: a browser never sends them by itself.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from states.errors import PermissionDenied
from workflows.auth import Identity, NotSignedIn, session_identity, token_identity
from workflows.uow import Deps

SESSION_COOKIE = "jc_session"
LANG_COOKIE = "jc_lang"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class CsrfRefused(PermissionDenied):
    """A state-changing browser request without the session's form token (403: signed in, but refused)."""

    code = "csrf_refused"


def deps_of(request: Request) -> Deps:
    """The use cases' dependencies of this app."""
    deps: Deps = request.app.state.deps
    return deps


def bearer(request: Request) -> str | None:
    """The bearer token of the request, if any."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def optional_identity(request: Request) -> Identity | None:
    """The caller, or None (no check of CSRF here)."""
    cached = getattr(request.state, "identity", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    deps = deps_of(request)
    raw = bearer(request)
    found = token_identity(deps, raw) if raw else session_identity(deps, request.cookies.get(SESSION_COOKIE))
    request.state.identity = found
    return found


def check_csrf(identity: Identity, supplied: str | None) -> None:
    """Refuse a browser's state-changing request whose form token is missing or wrong."""
    if identity.via != "web":
        return
    # Bytes: compare_digest refuses str with non-ASCII characters, and a header may carry any.
    if not supplied or not hmac.compare_digest(supplied.encode("utf-8", "replace"), identity.csrf_token.encode()):
        raise CsrfRefused("the form token (CSRF) is missing or wrong; reload the page and try again")


def api_identity(request: Request) -> Identity:
    """The caller of an API route: bearer token or session cookie (with X-CSRF-Token when it writes)."""
    identity = optional_identity(request)
    if identity is None:
        raise NotSignedIn("sign in, or send an API token as 'Authorization: Bearer jc_…'")
    if request.method in UNSAFE:
        check_csrf(identity, request.headers.get("x-csrf-token"))
    return identity
