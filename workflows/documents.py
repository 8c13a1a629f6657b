"""Official documents generated from the case record (涉嫌犯罪案件移送书, 移送回执, 不予立案通知书, …).

``generate_document`` is the one way to make a document (CLI, HTTP): it builds the kind's context from
the case — the events on its audit log, its evidence and supervision — issues the agency's document
number (文号) on first generation, renders the HTML and stores it with its template version and SHA-256.
Regenerating an unchanged case returns the stored version (same hash, same 文号, same date); a changed
case gives a new version under the same 文号. Optionally it prints the PDF and attaches the document to
the case file.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from models.tables import (
    ActionItem,
    Agency,
    Attachment,
    Case,
    CaseEvent,
    ConsultationRequest,
    CustodyEntry,
    DocumentNumberSequence,
    EvidenceItem,
    GeneratedDocument,
    Meeting,
    Supervision,
)
from notifications.documents import (
    DOCUMENT_KINDS,
    DocumentKind,
    MissingField,
    PdfUnavailable,
    html_to_pdf,
    render_document,
)
from states.calendar import SHANGHAI
from states.errors import InvalidInput, PermissionDenied
from states.evidence import EVIDENCE_TYPES, needs_recollection
from states.meeting import CONSULTATION_TOPICS
from states.supervision import LEVEL_LABELS
from workflows.cases import _agency, _counterpart, _readable_case, _visible_case, attach_file, next_in_sequence
from workflows.clockwork import local_iso
from workflows.uow import Deps, UnitOfWork

_UNITS_ZH = {"hours": "小时", "days": "日", "workdays": "个工作日", "months": "个月"}
_ATTACHMENT_LABELS = {
    "transfer_letter": "涉嫌犯罪案件移送书",
    "investigation_report": "涉嫌犯罪案件调查报告",
    "items_list": "涉案物品清单",
    "appraisal_report": "检验报告或者鉴定结论",
    "other": "其他有关材料",
}


@dataclass
class DocumentView:
    """One stored version of a generated document."""

    case_no: str
    kind: str
    title: str
    doc_no: str
    version: int
    issuing_agency: str
    recipient_agency: str
    template_version: str
    sha256: str
    generated_by: str
    generated_at: str
    new: bool = False  # this call stored it (False: the stored version was unchanged)
    pdf: str = ""
    attachment: dict[str, Any] | None = None
    html: str = field(default="", repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, without the HTML."""
        out = asdict(self)
        out.pop("html")
        return out


@dataclass
class _Draft:
    """What a kind's builder found in the case: who issues it, to whom, and the context to render."""

    issuer: Agency
    recipient: Agency
    context: dict[str, Any]
    subject_key: str = ""


def document_kinds() -> list[dict[str, str]]:
    """The kinds of documents, their titles and issuing agency kind."""
    return [
        {"kind": k.kind, "title": k.title, "title_en": k.title_en, "issuer_kind": k.issuer_kind}
        for k in DOCUMENT_KINDS.values()
    ]


def _on(value: datetime) -> str:
    local = value.astimezone(SHANGHAI)
    return f"{local.year}年{local.month}月{local.day}日"


def _rmb(amount: int) -> str:
    return f"人民币{amount:,}元"


def _limit(deps: Deps, rule_id: str) -> str:
    rule = deps.clock_rules.get(rule_id)
    return f"{rule.limit}{_UNITS_ZH[rule.unit]}" if rule else ""  # blank: the document fails loudly


class _Case:
    """The case record as the builders read it: its events, newest last."""

    def __init__(self, uow: UnitOfWork, case: Case) -> None:
        self.uow = uow
        self.case = case
        self.events = list(
            uow.session.execute(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.seq)).scalars()
        )

    def last(self, event: str, before: CaseEvent | None = None) -> CaseEvent | None:
        found = None
        for row in self.events:
            if before is not None and row.seq >= before.seq:
                break
            if row.event == event:
                found = row
        return found

    def need(self, kind: str, *events: str) -> CaseEvent:
        """The latest of ``events``; refuse, naming them and the state, when the case has none."""
        found = [row for row in self.events if row.event in events]
        if not found:
            title = DOCUMENT_KINDS[kind].title
            raise InvalidInput(
                f"case {self.case.case_no}: a {kind} ({title}) needs {' or '.join(events)} on the record; "
                f"the case is {self.case.state}"
            )
        return found[-1]

    def agency(self, code: str) -> Agency:
        return _agency(self.uow, code)

    def base(self, deps: Deps) -> dict[str, Any]:
        owner = self.agency(self.case.owner_agency)
        return {
            "case": {
                "case_no": self.case.case_no,
                "title": self.case.title,
                "received_on": _on(self.case.received_at),
                "owner_name": owner.name,
            }
        }

    def referral(self, deps: Deps) -> dict[str, Any]:
        """The referral's ground in words (DOMAIN.md filing standard), from the last proposal."""
        proposal = self.last("propose_referral")
        if proposal is None:
            return {"facts": "", "reason": "", "note": "", "fine_paid": "", "approved_on": ""}
        data = proposal.payload
        parts = []
        if data.get("loss_amount") is not None:
            parts.append(f"给权利人造成损失{_rmb(data['loss_amount'])}")
        if data.get("illegal_gain") is not None:
            parts.append(f"违法所得{_rmb(data['illegal_gain'])}")
        amounts = "，".join(parts)
        ground = data.get("ground", "")
        if ground == "loss":
            facts = f"{amounts}，达到侵犯商业秘密罪的立案追诉标准（损失数额{_rmb(deps.loss_threshold)}以上）。"
        elif ground == "illegal_gain":
            standard = _rmb(deps.illegal_gain_threshold)
            facts = f"{amounts}，达到侵犯商业秘密罪的立案追诉标准（违法所得数额{standard}以上）。"
        elif ground == "bankruptcy":
            facts = "侵权行为直接导致商业秘密的权利人因重大经营困难而破产、倒闭。"
        elif ground == "other_major_loss":
            facts = "侵权行为给商业秘密的权利人造成其他重大损失。"
        elif ground == "reasonable_suspicion":
            facts = (
                "有合理理由怀疑该案涉嫌犯罪，需要公安机关采取措施进一步获取证据以判断是否达到刑事案件立案追诉标准"
                "（《行政执法机关移送涉嫌犯罪案件的规定》第三条第二款）。"
            )
        else:
            facts = ""
        if amounts and ground not in ("loss", "illegal_gain"):
            facts += f"经查，{amounts}。"
        approval = self.last("approve_referral")
        return {
            "facts": facts,
            "reason": data.get("reason", ""),
            "note": proposal.note,
            "fine_paid": _rmb(data["fine_paid"]) if data.get("fine_paid") else "",
            "approved_on": _on(approval.effective_at) if approval else "",
        }

    def manifest(self, exclude: str = "") -> list[dict[str, str]]:
        rows = self.uow.session.execute(
            select(Attachment.kind, Attachment.filename, Attachment.sha256)
            .where(Attachment.case_id == self.case.id)
            .order_by(Attachment.kind, Attachment.id)
        ).all()
        return _labelled([{"kind": k, "filename": name, "sha256": sha} for k, name, sha in rows], exclude=exclude)


def _labelled(manifest: list[dict[str, str]], exclude: str = "") -> list[dict[str, str]]:
    """Package entries (kind, file name, SHA-256) with the kind's Chinese label."""
    return [
        {"label": _ATTACHMENT_LABELS.get(m["kind"], m["kind"]), "filename": m["filename"], "sha256": m["sha256"]}
        for m in manifest
        if m["kind"] != exclude
    ]


# --- the builders, one per kind -------------------------------------------------------------------


def _transfer_letter(deps: Deps, rec: _Case, subject_id: int | None) -> _Draft:
    rec.need("transfer_letter", "approve_referral")
    issuer = rec.agency(rec.case.owner_agency)
    sent = rec.last("transfer_to_police")
    police = rec.agency(sent.payload["to_agency"]) if sent else _counterpart(rec.uow, issuer, "police")
    stmt: Any = select(EvidenceItem.id).where(EvidenceItem.case_id == rec.case.id)
    if sent:  # the letter as sent: evidence registered later is not in it
        stmt = stmt.where(EvidenceItem.created_at <= sent.recorded_at)
    evidence = rec.uow.session.execute(stmt).all()
    context = {
        **rec.base(deps),
        "referral": rec.referral(deps),
        "response_limit": _limit(deps, "T7"),
        # As sent (the manifest on the transfer event) once transferred; the case file as it is before.
        "package": _labelled(sent.payload.get("manifest", []), exclude="transfer_letter")
        if sent
        else rec.manifest(exclude="transfer_letter"),
        "evidence_count": len(evidence),
    }
    return _Draft(issuer, police, context)


def _transfer(rec: _Case, kind: str) -> tuple[CaseEvent, Agency, Agency]:
    sent = rec.need(kind, "transfer_to_police")
    return sent, rec.agency(sent.actor_agency), rec.agency(sent.payload["to_agency"])


def _transfer_receipt(deps: Deps, rec: _Case, subject_id: int | None) -> _Draft:
    sent, sender, police = _transfer(rec, "transfer_receipt")
    manifest = _labelled(sent.payload.get("manifest", []))
    context = {
        **rec.base(deps),
        "transfer": {
            "sent_on": _on(sent.effective_at),
            "received_on": _on(sent.effective_at),
            "count": len(manifest),
            "manifest": manifest,
        },
        "response_limit": _limit(deps, "T7"),
    }
    return _Draft(police, sender, context)


def _decline(rec: _Case, kind: str) -> tuple[CaseEvent, dict[str, str]]:
    decline = rec.need(kind, "police_decline")
    return decline, {"reason": decline.payload.get("reason", ""), "on": _on(decline.effective_at)}


def _decline_notice(deps: Deps, rec: _Case, subject_id: int | None) -> _Draft:
    sent, sender, _police = _transfer(rec, "decline_notice")
    decline, facts = _decline(rec, "decline_notice")
    context = {
        **rec.base(deps),
        "transfer": {"sent_on": _on(sent.effective_at)},
        "decline": facts,
        "reconsideration_limit": _limit(deps, "T9"),
    }
    return _Draft(rec.agency(decline.actor_agency), sender, context)


def _reconsideration_request(deps: Deps, rec: _Case, subject_id: int | None) -> _Draft:
    request = rec.need("reconsideration_request", "request_reconsideration")
    sent, _sender, _police = _transfer(rec, "reconsideration_request")
    decline, facts = _decline(rec, "reconsideration_request")
    context = {
        **rec.base(deps),
        "transfer": {"sent_on": _on(sent.effective_at)},
        "decline": facts,
        "referral": rec.referral(deps),
        "request": {"on": _on(request.effective_at), "note": request.note},
        "response_limit": _limit(deps, "T10"),
    }
    return _Draft(rec.agency(request.actor_agency), rec.agency(decline.actor_agency), context)


def _supervision_request(deps: Deps, rec: _Case, subject_id: int | None) -> _Draft:
    request = rec.need("supervision_request", "request_supervision")
    sent, _sender, _police = _transfer(rec, "supervision_request")
    decline, facts = _decline(rec, "supervision_request")
    asked = rec.last("request_reconsideration", before=request)
    upheld = rec.last("uphold_decline", before=request)
    context = {
        **rec.base(deps),
        "transfer": {"sent_on": _on(sent.effective_at)},
        "police": {"name": rec.agency(decline.actor_agency).name},
        "decline": facts,
        "reconsideration": {
            "at": _on(asked.effective_at) if asked and upheld else "",
            "reason": upheld.payload.get("reason", "") if asked and upheld else "",
        },
        "referral": rec.referral(deps),
        "request": {"note": request.note},
    }
    return _Draft(rec.agency(request.actor_agency), rec.agency(request.payload["to_agency"]), context)


def _evidence_list(deps: Deps, rec: _Case, subject_id: int | None) -> _Draft:
    handed = list(
        rec.uow.session.execute(
            select(EvidenceItem, CustodyEntry)
            .join(CustodyEntry, CustodyEntry.item_id == EvidenceItem.id)
            .where(EvidenceItem.case_id == rec.case.id, CustodyEntry.action == "handed_over")
            .order_by(EvidenceItem.id, CustodyEntry.id)
        ).all()
    )
    if not handed:
        raise InvalidInput(
            f"case {rec.case.case_no}: an evidence_list (证据移交清单) lists items handed over to the police; "
            f"none was handed over yet (the case is {rec.case.state}; see `jointcase evidence handover`)"
        )
    first = handed[0][1]
    items = [
        {
            "title": item.title,
            "description": item.description,
            "type_label": EVIDENCE_TYPES[item.type][0],
            "collected_on": _on(item.collected_at),
            "location": item.location,
            "file_name": item.file_name,
            "sha256": item.sha256,
            "seal_no": entry.seal_no,
            "handed_over_on": _on(entry.at),
            "rule": "重新收集" if needs_recollection(item.type) else "经审查后使用",
        }
        for item, entry in handed
    ]
    context = {**rec.base(deps), "items": items}
    return _Draft(rec.agency(first.from_agency), rec.agency(first.to_agency), context)


def _supervision_notice(deps: Deps, rec: _Case, subject_id: int | None) -> _Draft:
    stmt: Any = select(Supervision).where(Supervision.case_id == rec.case.id)
    if subject_id is not None:
        stmt = stmt.where(Supervision.id == subject_id)
    row = rec.uow.session.execute(stmt.order_by(Supervision.id.desc())).scalars().first()  # type: ignore[union-attr]
    if row is None:
        which = f"supervision #{subject_id}" if subject_id is not None else "a listed supervision"
        raise InvalidInput(
            f"case {rec.case.case_no}: a supervision_notice (挂牌督办通知书) needs {which} of this case "
            "(see `jointcase supervise list`)"
        )
    context = {
        **rec.base(deps),
        "supervision": {
            "level_label": LEVEL_LABELS[row.level][0],
            "reason": row.reason,
            "due_on": _on(row.due_at),
            "every_days": row.report_every_days,
        },
    }
    return _Draft(rec.agency(row.listing_agency), rec.agency(row.handling_agency), context, f"supervision:{row.id}")


def _consultation_minutes(deps: Deps, rec: _Case, subject_id: int | None) -> _Draft:
    stmt: Any = (
        select(Meeting)
        .join(ConsultationRequest, ConsultationRequest.meeting_id == Meeting.id)
        .where(ConsultationRequest.case_id == rec.case.id, Meeting.state == "minutes_approved")
    )
    if subject_id is not None:
        stmt = stmt.where(Meeting.id == subject_id)
    meeting = rec.uow.session.execute(stmt.order_by(Meeting.starts_at.desc())).scalars().first()  # type: ignore[attr-defined]
    if meeting is None:
        which = f"meeting #{subject_id}" if subject_id is not None else "a consultation"
        raise InvalidInput(
            f"case {rec.case.case_no}: consultation_minutes (会商纪要) need {which} on this case whose minutes "
            "were approved (see `jointcase meeting minutes`)"
        )
    requests = rec.uow.session.execute(
        select(ConsultationRequest)
        .where(ConsultationRequest.meeting_id == meeting.id, ConsultationRequest.case_id == rec.case.id)
        .order_by(ConsultationRequest.id)
    ).scalars()
    actions = rec.uow.session.execute(
        select(ActionItem)
        .where(ActionItem.meeting_id == meeting.id, ActionItem.case_id == rec.case.id)
        .order_by(ActionItem.id)
    ).scalars()
    context = {
        **rec.base(deps),
        "meeting": {
            "title": meeting.title,
            "held_on": _on(meeting.starts_at),
            "place": meeting.place or meeting.video_link,
        },
        "attendees": [
            {"agency": rec.agency(code).name, "officers": "、".join(names)}
            for code, names in sorted(meeting.attendance.items())
        ],
        "items": [
            {
                "topic": CONSULTATION_TOPICS[r.topic][0],
                "question": r.question,
                "agency": rec.agency(r.agency_code).name,
                "resolution": r.resolution,
            }
            for r in requests
        ],
        "resolutions": [
            {"text": a.text, "owner": rec.agency(a.owner_agency).name, "due_on": _on(a.due_at)} for a in actions
        ],
        "minutes": meeting.minutes,
    }
    return _Draft(
        rec.agency(meeting.convening_agency),
        rec.agency(rec.case.owner_agency),
        context,
        f"meeting:{meeting.id}",
    )


_BUILDERS = {
    "transfer_letter": _transfer_letter,
    "transfer_receipt": _transfer_receipt,
    "decline_notice": _decline_notice,
    "reconsideration_request": _reconsideration_request,
    "supervision_request": _supervision_request,
    "evidence_list": _evidence_list,
    "supervision_notice": _supervision_notice,
    "consultation_minutes": _consultation_minutes,
}


# --- generation -----------------------------------------------------------------------------------


def _spec(kind: str) -> DocumentKind:
    spec = DOCUMENT_KINDS.get(kind)
    if spec is None or kind not in _BUILDERS:
        known = ", ".join(k for k in DOCUMENT_KINDS if k in _BUILDERS)
        raise InvalidInput(f"unknown document kind {kind!r}; use one of {known}")
    return spec


def _next_doc_no(deps: Deps, uow: UnitOfWork, agency: Agency, at: datetime, spec: DocumentKind) -> str:
    if not agency.doc_prefix:
        raise InvalidInput(
            f"agency {agency.code} ({agency.name}) has no doc_prefix (文号前缀) in config.toml; "
            f"add one to issue a {spec.kind} ({spec.title})"
        )
    year = at.astimezone(SHANGHAI).year
    seq = next_in_sequence(deps, uow, DocumentNumberSequence, agency.code, year)
    return deps.documents.number_format.format(prefix=agency.doc_prefix, year=year, seq=seq)


def _view(case: Case, row: GeneratedDocument, *, new: bool = False) -> DocumentView:
    return DocumentView(
        case_no=case.case_no,
        kind=row.kind,
        title=row.title,
        doc_no=row.doc_no,
        version=row.version,
        issuing_agency=row.issuing_agency,
        recipient_agency=row.recipient_agency,
        template_version=row.template_version,
        sha256=row.sha256,
        generated_by=row.generated_by,
        generated_at=local_iso(row.generated_at),
        new=new,
        html=row.html,
    )


def _render(spec: DocumentKind, case: Case, context: dict[str, Any]) -> Any:
    try:
        return render_document(spec.kind, context)
    except MissingField as err:
        raise InvalidInput(
            f"case {case.case_no}: cannot generate {spec.kind} ({spec.title}): no value for "
            f"{', '.join(err.fields)}; complete the case record first"
        ) from None


def render_case_document(
    deps: Deps, case_no: str, kind: str, *, actor: str, subject_id: int | None = None
) -> DocumentView:
    """Generate (or find unchanged) the document ``kind`` of a case, as an officer of its issuing agency."""
    spec = _spec(kind)
    with UnitOfWork(deps) as uow:
        case, officer = _visible_case(uow, case_no, actor, lock=True)  # one generator per case at a time
        draft = _BUILDERS[kind](deps, _Case(uow, case), subject_id)
        if officer.agency_code != draft.issuer.code:
            raise PermissionDenied(
                f"case {case_no}: a {kind} ({spec.title}) is issued by {draft.issuer.name} ({draft.issuer.code}); "
                f"{actor} of {officer.agency_code} may not issue it"
            )
        latest = (
            uow.session.execute(
                select(GeneratedDocument)
                .where(
                    GeneratedDocument.case_id == case.id,
                    GeneratedDocument.kind == kind,
                    GeneratedDocument.subject_key == draft.subject_key,
                )
                .order_by(GeneratedDocument.version.desc())  # type: ignore[attr-defined]
            )
            .scalars()
            .first()
        )
        now = deps.now()
        common = {"issuer": {"name": draft.issuer.name}, "recipient": {"name": draft.recipient.name}}
        if latest is not None:
            rendered = _render(
                spec, case, {**draft.context, **common, "doc_no": latest.doc_no, "issued_on": _on(latest.generated_at)}
            )
            if rendered.sha256 == latest.sha256:
                return _view(case, latest)  # unchanged: the stored version, nothing written
            doc_no, version = latest.doc_no, latest.version + 1
        else:
            doc_no, version = _next_doc_no(deps, uow, draft.issuer, now, spec), 1
        rendered = _render(spec, case, {**draft.context, **common, "doc_no": doc_no, "issued_on": _on(now)})
        row = GeneratedDocument(
            case_id=case.id,
            kind=kind,
            subject_key=draft.subject_key,
            version=version,
            doc_no=doc_no,
            issuing_agency=draft.issuer.code,
            recipient_agency=draft.recipient.code,
            title=spec.title,
            template_version=rendered.template_version,
            sha256=rendered.sha256,
            html=rendered.html,
            generated_by=actor,
            generated_at=now,
        )
        uow.session.add(row)
        uow.session.flush()
        view = _view(case, row, new=True)
        uow.commit()
        return view


def generate_document(
    deps: Deps,
    case_no: str,
    kind: str,
    *,
    actor: str,
    subject_id: int | None = None,
    pdf: Path | None = None,
    attach: bool = False,
) -> DocumentView:
    """Generate a document, optionally print it to ``pdf`` and attach it (the PDF if printed, else the HTML)."""
    view = render_case_document(deps, case_no, kind, actor=actor, subject_id=subject_id)
    if pdf is not None:
        try:
            html_to_pdf(view.html, pdf, settings=deps.documents)
        except PdfUnavailable as err:
            raise InvalidInput(
                f"case {case_no}: {kind} {view.doc_no} v{view.version} is stored, but its PDF was not printed: {err}"
            ) from None
        view.pdf = str(pdf)
    if attach:
        view.attachment = _attach(deps, view, pdf, actor)
    return view


def _attach(deps: Deps, view: DocumentView, pdf: Path | None, actor: str) -> dict[str, Any]:
    spec = DOCUMENT_KINDS[view.kind]
    # One attachment per version: the name says which, so attaching again is a no-op, not a duplicate.
    name = f"{view.case_no}_{view.kind}_v{view.version}{'.pdf' if pdf else '.html'}"
    with UnitOfWork(deps, read_only=True) as uow:
        case = uow.case(view.case_no)
        existing = uow.session.execute(
            select(Attachment).where(
                Attachment.case_id == case.id, Attachment.kind == spec.attachment_kind, Attachment.filename == name
            )
        ).scalar_one_or_none()
        if existing is not None:
            return {"kind": existing.kind, "filename": existing.filename, "sha256": existing.sha256, "new": False}
    with tempfile.TemporaryDirectory(prefix="jointcase-doc-") as tmp:
        path = Path(tmp) / name
        if pdf is not None:
            path.write_bytes(pdf.read_bytes())
        else:
            path.write_text(view.html, encoding="utf-8")
        attached = attach_file(deps, view.case_no, spec.attachment_kind, path, actor=actor)
    return {"kind": attached["kind"], "filename": attached["filename"], "sha256": attached["sha256"], "new": True}


def list_documents(deps: Deps, case_no: str, *, actor: str | None = None) -> list[DocumentView]:
    """Every stored version of every document of a case, oldest first."""
    with UnitOfWork(deps, read_only=True) as uow:
        case, _officer = _readable_case(uow, case_no, actor)
        rows = uow.session.execute(
            select(GeneratedDocument)
            .where(GeneratedDocument.case_id == case.id)
            .order_by(GeneratedDocument.generated_at, GeneratedDocument.id)
        ).scalars()
        return [_view(case, row) for row in rows]


def show_document(
    deps: Deps, case_no: str, kind: str, *, actor: str | None = None, version: int | None = None
) -> DocumentView:
    """One stored version (the newest unless ``version``) of a case's document, with its HTML."""
    spec = _spec(kind)
    with UnitOfWork(deps, read_only=True) as uow:
        case, _officer = _readable_case(uow, case_no, actor)
        stmt: Any = select(GeneratedDocument).where(
            GeneratedDocument.case_id == case.id, GeneratedDocument.kind == kind
        )
        if version is not None:
            stmt = stmt.where(GeneratedDocument.version == version)
        row = uow.session.execute(stmt.order_by(GeneratedDocument.id.desc())).scalars().first()  # type: ignore[union-attr]
        if row is None:
            which = f"version {version} of " if version is not None else ""
            raise InvalidInput(
                f"case {case_no}: no {which}{kind} ({spec.title}) was generated; "
                f"use `jointcase doc render {case_no} {kind}`"
            )
        return _view(case, row)
