"""Rendering of notifications with Jinja2: one environment, StrictUndefined, autoescape for HTML.

Templates live in ``notifications/templates`` as ``<name>.<lang>.<subject|txt|html>.j2``. They are
rendered when a notification is enqueued (inside the transaction that caused it), so a missing
variable fails that transaction instead of sending a blank notice later.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES_DIR = Path(__file__).parent / "templates"
LANGS = ("zh", "en")


@dataclass(frozen=True)
class Rendered:
    """A rendered notification: subject, plain-text body, and the template identity it came from."""

    template: str
    template_version: str
    lang: str
    subject: str
    body: str
    body_html: str = ""


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The one Jinja2 environment (autoescape for .html templates; never for plain text)."""
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=False),
        keep_trailing_newline=True,
    )


def _sources(name: str, lang: str) -> tuple[Path, ...]:
    return _paths(TEMPLATES_DIR, name, lang)


@lru_cache(maxsize=256)
def _paths(folder: Path, name: str, lang: str) -> tuple[Path, ...]:
    # Built once per template: every transition renders a notice, and building paths costs more than the stats.
    return (*(folder / f"{name}.{lang}.{part}.j2" for part in ("subject", "txt", "html")), folder / "_layout.html.j2")


def _stamp(paths: tuple[Path, ...]) -> tuple[int | None, ...]:
    stamps: list[int | None] = []
    for path in paths:
        try:
            stamps.append(path.stat().st_mtime_ns)
        except FileNotFoundError:
            stamps.append(None)
    return tuple(stamps)


@lru_cache(maxsize=256)
def _version(name: str, lang: str, stamp: tuple[int | None, ...]) -> str:
    """A short hash of the template sources, stored with every rendered message; read again only when a
    file's modification time changes (``stamp``): notices are rendered inside every transition."""
    digest = hashlib.sha256()
    for path, mtime in zip(_sources(name, lang), stamp, strict=True):
        if mtime is not None:
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def render(name: str, lang: str, **variables: Any) -> Rendered:
    """Render template ``name`` in ``lang``; raises ``jinja2.UndefinedError`` for a missing variable."""
    if lang not in LANGS:
        raise ValueError(f"unsupported language {lang!r}; use one of {', '.join(LANGS)}")
    env = environment()
    subject = env.get_template(f"{name}.{lang}.subject.j2").render(**variables).strip()
    body = env.get_template(f"{name}.{lang}.txt.j2").render(**variables)
    stamp = _stamp(_sources(name, lang))
    html = ""
    if stamp[2] is not None:  # the .html template exists
        html = env.get_template(f"{name}.{lang}.html.j2").render(**variables)  # autoescaped
    return Rendered(name, _version(name, lang, stamp), lang, subject, body, html)
