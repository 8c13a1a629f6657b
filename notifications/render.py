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


def template_version(name: str, lang: str) -> str:
    """A short hash of the template sources, stored with every rendered message."""
    digest = hashlib.sha256()
    for part in ("subject", "txt", "html"):
        path = TEMPLATES_DIR / f"{name}.{lang}.{part}.j2"
        if path.exists():
            digest.update(path.read_bytes())
    digest.update((TEMPLATES_DIR / "_layout.html.j2").read_bytes())
    return digest.hexdigest()[:16]


def render(name: str, lang: str, **variables: Any) -> Rendered:
    """Render template ``name`` in ``lang``; raises ``jinja2.UndefinedError`` for a missing variable."""
    if lang not in LANGS:
        raise ValueError(f"unsupported language {lang!r}; use one of {', '.join(LANGS)}")
    env = environment()
    subject = env.get_template(f"{name}.{lang}.subject.j2").render(**variables).strip()
    body = env.get_template(f"{name}.{lang}.txt.j2").render(**variables)
    html = ""
    if (TEMPLATES_DIR / f"{name}.{lang}.html.j2").exists():
        html = env.get_template(f"{name}.{lang}.html.j2").render(**variables)  # autoescaped
    return Rendered(name, template_version(name, lang), lang, subject, body, html)
