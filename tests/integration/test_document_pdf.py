"""Official documents printed to PDF by the real Chromium (Playwright), one PDF per kind of document.

Each kind is generated from a case built through the use cases up to the event it reports, printed with
``generate_document(..., pdf=path)`` and read back with pypdfium2: the text layer carries the case number,
the issuing and recipient agencies and the 文号; page 1 is rendered to PNG (kept under
``test-output/documents/`` to look at) and must show the red issuer mark of GB/T 9704 at the top.

Without Chromium at the configured path the PDF tests skip, except in CI (``CI`` set), where they fail:
the CI image installs chromium and fonts-wqy-microhei. Injected clock (T0 = 2026-03-04 10:00 +08:00).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from models.tables import Attachment, DocumentNumberSequence, GeneratedDocument
from notifications.documents import DocumentSettings
from states.calendar import END_OF_DAY, SHANGHAI
from states.errors import InvalidInput
from tests.conftest import REPO, CaseBuilder
from workflows.cases import attach_file
from workflows.documents import generate_document, list_documents
from workflows.evidence import add_evidence, hand_over
from workflows.supervision import list_for_supervision
from workflows.uow import Deps, UnitOfWork

MR, POLICE, PROVINCE_SUPERVISOR = "sm_amr_handler", "sm_psb_handler", "fj_amr_supervisor"
OUTPUT = REPO / "test-output" / "documents"

AGENCIES = {  # code: (name, 文号 prefix), as in config.toml
    "sm-amr": ("三明市市场监督管理局", "明市监"),
    "sm-psb": ("三明市公安局", "明公"),
    "sm-procuratorate": ("三明市人民检察院", "明检"),
    "fj-amr": ("福建省市场监督管理局", "闽市监"),
}


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A case ready for one kind of document: who generates it, from which agency, to which."""

    case_no: str
    actor: str
    issuer: str
    recipient: str


def _at(builder: CaseBuilder, state: str) -> str:
    return str(builder.to_state(state).case_no)


def _letter_with_package(builder: CaseBuilder) -> str:
    """Referral approved; the investigation report and the items list attached (the letter lists them)."""
    case_no = _at(builder, "awaiting_transfer")
    for kind in ("investigation_report", "items_list"):
        path = builder.files / f"{case_no}-{kind}.txt"
        path.write_text(f"{case_no} {kind}\n", encoding="utf-8")
        attach_file(builder.deps, case_no, kind, path, actor=MR)
    return case_no


def _evidence_handed_over(builder: CaseBuilder) -> str:
    case_no = _at(builder, "evidence_handover")
    sample = builder.files / "sample.bin"
    sample.write_bytes(b"formula sample 42.5")
    add_evidence(builder.deps, case_no, actor=MR, type="physical", title="配方样品", location="证物室A-3", file=sample)
    add_evidence(builder.deps, case_no, actor=MR, type="witness_statement", title="证人询问笔录")
    hand_over(builder.deps, case_no, actor=MR, seal_no="SM-FZ-2026-0042")
    return case_no


def _listed_by_the_province(builder: CaseBuilder) -> str:
    case_no = _at(builder, "investigating")
    due = datetime.combine(datetime(2026, 4, 30).date(), END_OF_DAY, tzinfo=SHANGHAI)
    list_for_supervision(
        builder.deps, case_no, actor=PROVINCE_SUPERVISOR, level="province", due=due, every="15d", reason="重点案件"
    )
    return case_no


#: kind: (builds the case and returns its number, actor, issuing agency, recipient agency)
SCENARIOS: dict[str, tuple[Callable[[CaseBuilder], str], str, str, str]] = {
    "transfer_letter": (_letter_with_package, MR, "sm-amr", "sm-psb"),
    "transfer_receipt": (lambda b: _at(b, "police_review"), POLICE, "sm-psb", "sm-amr"),
    "decline_notice": (lambda b: _at(b, "police_declined"), POLICE, "sm-psb", "sm-amr"),
    "reconsideration_request": (lambda b: _at(b, "reconsideration"), MR, "sm-amr", "sm-psb"),
    "supervision_request": (lambda b: _at(b, "filing_supervision"), MR, "sm-amr", "sm-procuratorate"),
    "evidence_list": (_evidence_handed_over, MR, "sm-amr", "sm-psb"),
    "supervision_notice": (_listed_by_the_province, PROVINCE_SUPERVISOR, "fj-amr", "sm-amr"),
}


def scenario(builder: CaseBuilder, kind: str) -> Scenario:
    build, actor, issuer, recipient = SCENARIOS[kind]
    return Scenario(build(builder), actor, issuer, recipient)


@pytest.fixture
def chromium(deps: Deps) -> Path:
    """The configured Chromium; skip without it (fail in CI, where it must be installed)."""
    path = Path(deps.documents.chromium_path)
    if not (path.is_file() and os.access(path, os.X_OK)):
        reason = (
            f"PDF tests need Chromium at {path} (apt-get install chromium fonts-wqy-microhei); "
            "set [documents] chromium_path in config.toml to use another"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{reason}. CI installs it: the PDF tests must run there, never skip")
        pytest.skip(reason)
    return path


def pdf_text(path: Path) -> str:
    """The PDF's text layer, every page, without white space (lines may break anywhere)."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    try:
        text = "".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
    finally:
        pdf.close()
    return "".join(text.split())


def first_page_png(path: Path, png: Path) -> Any:
    """Render page 1 of the PDF to ``png`` (2× scale) and return it as an RGB Pillow image."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    try:
        image = pdf[0].render(scale=2).to_pil().convert("RGB")
    finally:
        pdf.close()
    png.parent.mkdir(parents=True, exist_ok=True)
    image.save(png)
    return image


def count_pixels(image: Any, test: Callable[[tuple[int, int, int]], bool], top: float = 1.0) -> int:
    """How many pixels of the image's top ``top`` fraction pass ``test``."""
    width, height = image.size
    band = image.crop((0, 0, width, int(height * top)))
    return sum(n for n, colour in band.getcolors(maxcolors=width * height) if test(colour))


def is_red(rgb: tuple[int, int, int]) -> bool:
    r, g, b = rgb
    return r > 180 and g < 80 and b < 80


def is_black(rgb: tuple[int, int, int]) -> bool:
    """Dark grey to black: the body text (not the red mark, which alone must not make a page "printed")."""
    return max(rgb) < 128


# --- one real PDF per kind -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(SCENARIOS))
def test_every_kind_prints_a_pdf_with_its_parties_and_the_red_issuer_mark(
    deps: Deps, builder: CaseBuilder, chromium: Path, tmp_path: Path, kind: str
) -> None:
    case = scenario(builder, kind)
    year = builder.clock.now.astimezone(SHANGHAI).year
    issuer_name, prefix = AGENCIES[case.issuer]
    recipient_name, _ = AGENCIES[case.recipient]

    pdf = tmp_path / "print" / f"{kind}.pdf"
    view = generate_document(deps, case.case_no, kind, actor=case.actor, pdf=pdf)
    assert (view.kind, view.new, view.version, view.pdf) == (kind, True, 1, str(pdf))
    assert (view.issuing_agency, view.recipient_agency) == (case.issuer, case.recipient)
    assert view.doc_no == f"{prefix}〔{year}〕1号"

    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and len(data) > 1000
    assert not pdf.with_name(pdf.name + ".part").exists()

    # The text layer: Chinese text that a reader can search and copy, not pictures of it.
    text = pdf_text(pdf)
    for expected in (case.case_no, issuer_name, recipient_name, view.doc_no, view.title):
        assert expected in text, (kind, expected, text[:400])

    # Page 1 as a picture: printed, and with the red issuer mark (and red rule) in the top third.
    image = first_page_png(pdf, OUTPUT / f"{kind}.png")
    width, height = image.size
    assert (width, height) == pytest.approx((1190, 1684), abs=4), "A4 at 2 × 72 dpi"
    assert count_pixels(image, is_black) > 20_000, f"page 1 of {kind} has (almost) no black text: blank?"
    red_top = count_pixels(image, is_red, top=1 / 3)
    assert red_top > 2000, f"{kind}: only {red_top} red pixels in the top third; the red issuer mark is missing"
    # The mark belongs to the head of the page: its red is not spread all over the text below.
    assert count_pixels(image, is_red) < 3 * red_top

    # The PDF is printed from the stored version: generating again with a PDF changes nothing stored.
    again = generate_document(deps, case.case_no, kind, actor=case.actor)
    assert (again.new, again.version, again.sha256) == (False, 1, view.sha256)
    assert [d.sha256 for d in list_documents(deps, case.case_no)] == [view.sha256]


def red_rule(image: Any) -> tuple[float, float]:
    """(left edge, length) in mm of the longest horizontal red line in the top third of a 2×-rendered page."""
    px_per_mm = 2 * 72 / 25.4
    pixels = image.load()
    width, height = image.size
    longest, left = 0, 0
    for y in range(height // 3):
        run = 0
        for x in range(width):
            if is_red(pixels[x, y]):
                run += 1
                if run > longest:
                    longest, left = run, x - run + 1
            else:
                run = 0
    return left / px_per_mm, longest / px_per_mm


def chars_right_of(path: Path, limit_pt: float) -> str:
    """The characters of page 1 whose box ends right of ``limit_pt`` (in points from the left edge)."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    try:
        textpage = pdf[0].get_textpage()
        return "".join(
            textpage.get_text_range(i, 1)
            for i in range(textpage.count_chars())
            if textpage.get_charbox(i)[2] > limit_pt
        )
    finally:
        pdf.close()


@pytest.mark.parametrize(
    "kind",
    [
        "evidence_list",  # the control: SHA-256 values in a table that breaks them, inside the type area
        "transfer_letter",
        "transfer_receipt",
    ],
)
def test_the_page_keeps_the_type_area_and_prints_every_hash_in_full(
    deps: Deps, builder: CaseBuilder, chromium: Path, tmp_path: Path, kind: str
) -> None:
    case = scenario(builder, kind)
    pdf = tmp_path / f"{kind}.pdf"
    view = generate_document(deps, case.case_no, kind, actor=case.actor, pdf=pdf)
    hashes = set(re.findall(r"\b[0-9a-f]{64}\b", view.html))
    assert hashes, f"the {kind} of this case lists SHA-256 values"
    text = re.sub(r"\s+", "", pdf_text(pdf))  # a hash may wrap at the margin: printed in full, on two lines
    assert not [h for h in hashes if h not in text], "SHA-256 values not printed in full"
    # GB/T 9704: 版心 156 mm wide from 28 mm (订口); the red rule spans it, nothing is printed beyond it.
    left, length = red_rule(first_page_png(pdf, tmp_path / f"{kind}.png"))
    assert left == pytest.approx(28, abs=1.5) and length == pytest.approx(156, abs=2), (left, length)
    assert chars_right_of(pdf, (28 + 156 + 2) * 72 / 25.4) == ""


def test_an_attached_pdf_is_the_transfer_letter_of_the_case_file(
    deps: Deps, builder: CaseBuilder, chromium: Path, tmp_path: Path
) -> None:
    case_no = _at(builder, "awaiting_transfer")
    pdf = tmp_path / "letter.pdf"
    view = generate_document(deps, case_no, "transfer_letter", actor=MR, pdf=pdf, attach=True)
    assert view.attachment is not None
    assert view.attachment["filename"] == f"{case_no}_transfer_letter_v1.pdf"
    assert (view.attachment["kind"], view.attachment["new"]) == ("transfer_letter", True)
    blob = deps.attachments_dir / view.attachment["sha256"][:2] / view.attachment["sha256"]
    assert blob.read_bytes() == pdf.read_bytes()


# --- the PDF cannot be printed ---------------------------------------------------------------------------


def _counts(deps: Deps) -> tuple[int, ...]:
    with UnitOfWork(deps, read_only=True) as uow:
        return tuple(
            uow.session.execute(select(func.count()).select_from(model)).scalar_one()
            for model in (GeneratedDocument, DocumentNumberSequence, Attachment)
        )


@pytest.mark.parametrize("broken", ["missing", "not_executable"])
def test_without_chromium_the_error_says_what_to_install_and_the_version_is_stored(
    deps: Deps, builder: CaseBuilder, tmp_path: Path, broken: str
) -> None:
    case_no = _at(builder, "awaiting_transfer")
    browser = tmp_path / "no-such-dir" / "chromium"
    if broken == "not_executable":
        browser = tmp_path / "chromium"
        browser.write_text("#!/bin/sh\n", encoding="utf-8")
        browser.chmod(0o644)
    no_browser = dataclasses.replace(deps, documents=DocumentSettings(chromium_path=str(browser)))
    pdf = tmp_path / "out" / "letter.pdf"
    before = _counts(deps)

    with pytest.raises(InvalidInput) as refused:
        generate_document(no_browser, case_no, "transfer_letter", actor=MR, pdf=pdf, attach=True)
    message = refused.value.message
    assert str(browser) in message
    assert "install" in message and "chromium" in message and "chromium_path" in message
    assert "is stored" in message and "v1" in message and case_no in message
    assert not pdf.exists() and not pdf.with_name(pdf.name + ".part").exists()

    # The document version was stored (and numbered) before printing; nothing was attached.
    [stored] = list_documents(deps, case_no)
    assert (stored.kind, stored.version) == ("transfer_letter", 1)
    assert stored.doc_no in message
    assert _counts(deps) == (before[0] + 1, before[1] + 1, before[2])
    # Asking again returns that version, unchanged, under the same 文号.
    again = generate_document(deps, case_no, "transfer_letter", actor=MR)
    assert (again.new, again.version, again.doc_no, again.sha256) == (False, 1, stored.doc_no, stored.sha256)
