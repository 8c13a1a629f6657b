"""Official documents of 行刑衔接: Jinja2 templates laid out after GB/T 9704, rendered to HTML and PDF.

A document is rendered from a plain context dict that the use case builds from the case record. Every
value the context holds must be filled: a blank (None or empty text) anywhere outside the kind's
declared optional fields fails loudly, naming the field, instead of printing an empty line on paper.
The HTML is the stored document; its SHA-256 is the document's identity (the same context gives the
same bytes). The PDF is printed from that HTML by Chromium (Playwright), with a CJK font.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from pydantic import BaseModel, ConfigDict, Field, field_validator

DOCUMENTS_DIR = Path(__file__).parent / "templates" / "documents"
LAYOUT = "_official.html.j2"


@dataclass(frozen=True)
class DocumentKind:
    """One kind of official document: its id (CLI, REST, audit), Chinese title, and who issues it."""

    kind: str
    title: str  # the document's title as printed (zh-CN)
    title_en: str
    issuer_kind: str  # the agency kind that issues it (market_regulation, police, ...)
    attachment_kind: str  # the case-file kind when attached (ATTACHMENT_KINDS)
    optional: frozenset[str] = frozenset()  # context paths that may be blank


# What a referral may leave blank: the written reason (only some grounds need one), a note, a fine paid.
_REFERRAL = frozenset({"referral.reason", "referral.note", "referral.fine_paid"})

DOCUMENT_KINDS: dict[str, DocumentKind] = {
    k.kind: k
    for k in (
        DocumentKind(
            "transfer_letter",
            "涉嫌犯罪案件移送书",
            "Transfer letter of a suspected crime",
            "market_regulation",
            "transfer_letter",
            _REFERRAL,
        ),
        DocumentKind("transfer_receipt", "移送回执", "Receipt of transfer", "police", "other"),
        DocumentKind("decline_notice", "不予立案通知书", "Notice of decision not to file", "police", "other"),
        DocumentKind(
            "reconsideration_request",
            "复议申请书",
            "Request for reconsideration",
            "market_regulation",
            "other",
            _REFERRAL | {"request.note"},
        ),
        DocumentKind(
            "supervision_request",
            "立案监督建议书",
            "Proposal for filing supervision",
            "market_regulation",
            "other",
            _REFERRAL | {"request.note", "reconsideration.at", "reconsideration.reason"},
        ),
        DocumentKind(
            "evidence_list",
            "证据移交清单",
            "List of evidence handed over",
            "market_regulation",
            "other",
            frozenset(
                {"items[].location", "items[].file_name", "items[].sha256", "items[].seal_no", "items[].description"}
            ),
        ),
        DocumentKind(
            "supervision_notice", "挂牌督办通知书", "Notice of listed supervision", "market_regulation", "other"
        ),
        DocumentKind(
            "consultation_minutes",
            "会商纪要",
            "Minutes of case consultation",
            "market_regulation",
            "other",
            frozenset({"meeting.place"}),
        ),
    )
}


class DocumentSettings(BaseModel):
    """``[documents]`` of config.toml: the 文号 format and the browser that prints PDFs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    number_format: str = "{prefix}〔{year}〕{seq}号"
    chromium_path: str = "/usr/bin/chromium"
    pdf_timeout_seconds: float = Field(default=60, gt=0, le=600)

    @field_validator("number_format")
    @classmethod
    def _number_format(cls, value: str) -> str:
        try:
            value.format(prefix="明市监", year=2026, seq=1)
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"number_format may use only {{prefix}}, {{year}} and {{seq}}: {err}") from None
        if "{seq" not in value:
            raise ValueError("number_format must contain {seq}")
        return value


class MissingField(ValueError):
    """A value the document needs is blank or absent."""

    def __init__(self, kind: str, fields: list[str]) -> None:
        self.kind = kind
        self.fields = fields
        super().__init__(f"{kind}: no value for {', '.join(fields)}")


class PdfUnavailable(RuntimeError):
    """Chromium (or Playwright) is not there to print the PDF."""


@dataclass(frozen=True)
class RenderedDocument:
    """A rendered document: the HTML, the template version it came from, and its SHA-256."""

    kind: str
    html: str
    template_version: str
    sha256: str


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _walk(value: Any, path: str) -> Iterator[tuple[str, str, Any]]:
    """(concrete path, pattern path, value) of every leaf; list items are ``name[3]`` / ``name[]``."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            for concrete, pattern, leaf in _walk(item, ""):
                yield (
                    f"{path}[{i}]" + (f".{concrete}" if concrete else ""),
                    f"{path}[]" + (f".{pattern}" if pattern else ""),
                    leaf,
                )
    else:
        yield path, path, value


def check_complete(kind: str, context: Mapping[str, Any]) -> None:
    """Raise ``MissingField`` naming every blank value that the kind does not declare optional."""
    optional = DOCUMENT_KINDS[kind].optional
    missing = [path for path, pattern, value in _walk(context, "") if _blank(value) and pattern not in optional]
    if missing:
        raise MissingField(kind, missing)


def _loud(value: Any) -> Any:
    # The backstop for values computed inside a template: never print a blank where a value belongs.
    if value is None:
        raise MissingField("template", ["a value printed as None"])
    return value


def case_name(title: str) -> str:
    """How a document names a case: "某某侵权案" stays, "某某线索" becomes "某某线索一案"."""
    title = title.strip()
    return title if title.endswith("案") else f"{title}一案"


def sentence(text: str) -> str:
    """Free text as a sentence of the document: ends with a full stop unless it ends with punctuation."""
    text = text.strip()
    return text if text[-1:] in "。！？；…!?." else f"{text}。"


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The documents' Jinja2 environment: StrictUndefined, autoescaped, no blank ``None`` output."""
    env = Environment(
        loader=FileSystemLoader(str(DOCUMENTS_DIR)),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=True),
        finalize=_loud,
        keep_trailing_newline=True,
    )
    env.filters["case_name"] = case_name
    env.filters["sentence"] = sentence
    return env


def template_version(kind: str) -> str:
    """A short hash of the kind's template and the official layout, stored with each document."""
    digest = hashlib.sha256()
    digest.update((DOCUMENTS_DIR / f"{kind}.zh.html.j2").read_bytes())
    digest.update((DOCUMENTS_DIR / LAYOUT).read_bytes())
    return digest.hexdigest()[:16]


def render_document(kind: str, context: Mapping[str, Any]) -> RenderedDocument:
    """Render ``kind`` from ``context``; raises ``MissingField`` for a blank value, ``KeyError`` for a kind."""
    spec = DOCUMENT_KINDS[kind]
    check_complete(kind, context)
    html = environment().get_template(f"{kind}.zh.html.j2").render(doc_title=spec.title, **context)
    return RenderedDocument(kind, html, template_version(kind), hashlib.sha256(html.encode("utf-8")).hexdigest())


# GB/T 9704-2012: A4, 天头 37 mm, 订口 28 mm, 版心 156 × 225 mm; page numbers "— 1 —" in 4号 (14 pt).
_MARGINS = {"top": "37mm", "bottom": "35mm", "left": "28mm", "right": "26mm"}
_FOOTER = (
    "<div style=\"width:100%;text-align:center;font-size:14pt;font-family:'WenQuanYi Micro Hei',sans-serif;\">"
    '— <span class="pageNumber"></span> —</div>'
)


def html_to_pdf(html: str, path: Path, *, settings: DocumentSettings) -> int:
    """Print ``html`` to a PDF at ``path`` with Chromium; returns the number of bytes written.

    The page may fetch nothing: every request it makes is aborted (documents are self-contained).
    """
    chromium = Path(settings.chromium_path)
    if not chromium.is_file() or not os.access(chromium, os.X_OK):
        raise PdfUnavailable(
            f"Chromium not found at {chromium}: install it (apt-get install chromium fonts-wqy-microhei) "
            "or set [documents] chromium_path in config.toml"
        )
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as err:  # pragma: no cover - a dependency of the package
        raise PdfUnavailable(f"Playwright is not installed: {err}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    timeout_ms = settings.pdf_timeout_seconds * 1000
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(chromium), timeout=timeout_ms)
            try:
                page = browser.new_page()
                page.route("**/*", lambda route: route.abort())
                page.set_content(html, wait_until="load", timeout=timeout_ms)
                page.pdf(
                    path=str(tmp),
                    format="A4",
                    margin=_MARGINS,
                    print_background=True,
                    display_header_footer=True,
                    header_template="<span></span>",
                    footer_template=_FOOTER,
                )
            finally:
                browser.close()
    except PlaywrightError as err:
        tmp.unlink(missing_ok=True)
        raise PdfUnavailable(f"Chromium could not print the PDF: {str(err).splitlines()[0]}") from None
    tmp.replace(path)
    return path.stat().st_size
