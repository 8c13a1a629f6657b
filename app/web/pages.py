"""Server-rendered pages (Jinja2, zh-CN with an English switch; plain forms, no build step).

This module holds what every page shares: the template environment, the signed-in officer, the language,
the CSRF form token, sign-in and sign-out, and the error page. The role pages (handler, secretary,
supervisor) are routers of their own modules, included here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from app.web.security import LANG_COOKIE, SESSION_COOKIE, check_csrf, deps_of, optional_identity
from states.errors import DomainError
from workflows.auth import Identity, NotSignedIn, TooManyAttempts, sign_in, sign_out

TEMPLATES = Path(__file__).parent / "templates"
LANGS = ("zh", "en")

_env = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


class SignInRequired(Exception):
    """A page asked for by someone not signed in: send them to the sign-in page."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


def lang_of(request: Request) -> str:
    """The page language: ``?lang=``, else the cookie, else Chinese."""
    chosen = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE) or "zh"
    return chosen if chosen in LANGS else "zh"


def page_identity(request: Request) -> Identity:
    """The signed-in officer of a page (session cookie only); else off to the sign-in page."""
    identity = optional_identity(request)
    if identity is None or identity.via != "web":
        raise SignInRequired(request.url.path)
    return identity


Officer = Annotated[Identity, Depends(page_identity)]


def home_of(identity: Identity) -> str:
    """The first page of a role: supervisors their dashboard, secretaries the consultation queue."""
    if "supervisor" in identity.roles:
        return "/supervisor"
    if "secretary" in identity.roles and "handler" not in identity.roles:
        return "/secretary"
    return "/cases"


def render(request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    """Render a page with what every page needs (officer, language, CSRF token, ``t`` for labels)."""
    lang = lang_of(request)
    identity = getattr(request.state, "identity", None)

    def t(zh: str, en: str) -> str:
        return en if lang == "en" else zh

    html = _env.get_template(template).render(
        request_path=request.url.path,
        me=identity,
        csrf_token=identity.csrf_token if identity else "",
        lang=lang,
        t=t,
        **context,
    )
    response = HTMLResponse(html, status_code=status)
    if request.query_params.get("lang") in LANGS:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, httponly=True, samesite="lax")
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    """A page-side error: the message in words, with a way back."""
    return render(request, "error.html.j2", status=status, status_code=status, message=message)


def form_csrf(identity: Identity, token: str | None) -> None:
    """Check a page form's CSRF token (raises ``CsrfRefused``)."""
    check_csrf(identity, token)


router = APIRouter(include_in_schema=False)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    """The sign-in form."""
    return render(request, "login.html.j2", next=_safe_next(next), error="")


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    username: Annotated[str, Form(max_length=80)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=500)] = "/",
) -> Response:
    """Check the password; on success set the session cookie (HttpOnly, SameSite) and go on."""
    deps = deps_of(request)
    client = request.client.host if request.client else "unknown"
    try:
        raw, identity = sign_in(deps, username, password, client=client)
    except TooManyAttempts as exc:
        page = render(request, "login.html.j2", status=429, next=_safe_next(next), error=exc.message)
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    except NotSignedIn:
        lang = lang_of(request)
        message = "用户名或密码错误" if lang == "zh" else "wrong username or password"
        return render(request, "login.html.j2", status=401, next=_safe_next(next), error=message)
    target = _safe_next(next)
    response = RedirectResponse(home_of(identity) if target == "/" else target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        raw,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        max_age=12 * 3600,
        path="/",
    )
    return response


@router.post("/logout")
def logout(request: Request, me: Officer, csrf_token: Annotated[str, Form(max_length=100)] = "") -> Response:
    """End the session."""
    form_csrf(me, csrf_token)
    sign_out(deps_of(request), request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/")
def index(request: Request) -> Response:
    """Each role's first page (or sign in)."""
    identity = optional_identity(request)
    if identity is None or identity.via != "web":
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse(home_of(identity), status_code=303)


def _safe_next(value: str) -> str:
    # Only a path of this site: never an open redirect to another host.
    return value if value.startswith("/") and not value.startswith("//") and "\\" not in value else "/"


def install(app: Any) -> None:
    """The sign-in redirect for pages; domain errors on pages as an HTML page."""

    async def on_sign_in(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInRequired)
        return RedirectResponse(f"/login?next={exc.next_url}", status_code=303)

    app.add_exception_handler(SignInRequired, on_sign_in)


def page_domain_error(request: Request, exc: DomainError, status: int) -> HTMLResponse:
    """A domain error raised by a page route, as a page."""
    return error_page(request, status, exc.message)
