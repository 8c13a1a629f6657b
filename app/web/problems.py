"""Errors as RFC 9457 problem details with stable codes (``type`` is ``/problems/<code>``).

404 for a case the caller may not see (as for one that does not exist: case numbers do not leak), 403 for
an event or action the caller's agency or role may not take, 409 for a refused transition or a version
conflict, 422 for bad data, 401 without a valid sign-in, 429 after too many failed sign-ins.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from states.errors import (
    CaseNotFound,
    ConcurrentUpdate,
    DomainError,
    GuardFailed,
    InvalidEventData,
    InvalidInput,
    MeetingNotFound,
    PermissionDenied,
    TransitionRefused,
)
from workflows.auth import NotSignedIn, TooManyAttempts

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
_TITLES = {
    400: "Bad request",
    401: "Not signed in",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    412: "Precondition failed",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal error",
}


def status_of(exc: DomainError) -> int:
    """The HTTP status of a domain error."""
    if isinstance(exc, CaseNotFound | MeetingNotFound):
        return 404
    if isinstance(exc, NotSignedIn):
        return 401
    if isinstance(exc, TooManyAttempts):
        return 429
    if isinstance(exc, PermissionDenied):
        return 403
    if isinstance(exc, InvalidEventData | InvalidInput):
        return 422
    if isinstance(exc, TransitionRefused | GuardFailed | ConcurrentUpdate):
        return 409
    return 422


def problem(
    status: int,
    code: str,
    detail: str,
    request: Request | None = None,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem-details response (``extra``: more members of the body; ``headers``: response headers)."""
    body = {
        "type": f"/problems/{code}",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "code": code,
        "detail": detail,
        **({"instance": request.url.path} if request is not None else {}),
        **extra,
    }
    headers = dict(headers or {})
    if "retry_after" in extra:
        headers["Retry-After"] = str(extra["retry_after"])
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="jointcase"')  # RFC 9110: say how to sign in
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers or None)


def domain_problem(exc: DomainError, request: Request | None = None) -> JSONResponse:
    """The problem response of a domain error, with what the caller can act on."""
    extra: dict[str, Any] = {}
    if isinstance(exc, TransitionRefused):
        extra = {"case_no": exc.case_no, "state": exc.state, "event": exc.event, "allowed_events": exc.allowed}
    elif isinstance(exc, ConcurrentUpdate):
        extra = {k: v for k in ("case_no", "expected", "actual") if (v := getattr(exc, k, None)) is not None}
    elif isinstance(exc, TooManyAttempts):
        extra = {"retry_after": exc.retry_after}
    return problem(status_of(exc), exc.code, exc.message, request, **extra)


def install(app: FastAPI) -> None:
    """Register the handlers: domain errors, validation errors, HTTP errors, and the unexpected."""

    from app.web import pages  # pages render their errors as pages

    def is_api(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    async def on_domain(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DomainError)
        if not is_api(request):
            return pages.error_page(request, status_of(exc), exc.message)
        return domain_problem(exc, request)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors) or "invalid request"
        if not is_api(request):
            return pages.error_page(request, 422, detail)
        return problem(422, "invalid_request", detail, request, errors=errors)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and is_api(request):
            # FastAPI's answer to a body it cannot decode (not UTF-8): a malformed request like any other.
            return problem(422, "invalid_request", "the request body could not be read: send JSON in UTF-8", request)
        code = {401: "not_signed_in", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error"
        )
        if not is_api(request) and exc.status_code < 500:
            return pages.error_page(request, exc.status_code, str(exc.detail))
        return problem(exc.status_code, code, str(exc.detail), request, headers=exc.headers)  # e.g. 405's Allow

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        # The traceback goes to the log only: the answer names no code, file or value.
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        message = "an unexpected error; it was logged"
        if not is_api(request):
            try:
                return pages.error_page(request, 500, message)
            except Exception:  # the error page itself failed: fall back to the plain problem
                log.exception("the error page failed on %s", request.url.path)
        return problem(500, "internal_error", message, request)

    app.add_exception_handler(DomainError, on_domain)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
    pages.install(app)
