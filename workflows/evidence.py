"""The evidence registry of a case and its conversion at the hand-over to the police (行刑衔接证据转换).

The market regulator registers the evidence it collected (described, located and hashed — the item itself,
often the trade secret, is never stored); at the hand-over (case state ``evidence_handover``) it passes the
items to the police with a seal number; the police admit each usable item after review, take witness and
party statements again, or exclude an item with reasons. ``complete_handover`` is refused while any item
is unresolved. Every step is one transaction that locks the case and is recorded on its audit log; each
item keeps a custody log.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from statemachine.exceptions import TransitionNotAllowed

from models.tables import Agency, Case, CustodyEntry, EvidenceItem
from states.errors import GuardFailed, InvalidInput, PermissionDenied
from states.evidence import (
    CONVERSION_BASIS,
    EVIDENCE_STATE_LABELS,
    EVIDENCE_TYPES,
    RESOLUTIONS,
    RESOLVED,
    evidence_chart,
    needs_recollection,
)
from states.lifecycle import CLOSED
from workflows.cases import _agency, _is_participant, _readable_case, _visible, _visible_case
from workflows.clockwork import holders, local_iso, record_fact
from workflows.uow import AnyCase, Deps, OfficerRow, UnitOfWork

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class EvidenceView:
    """An evidence item as users see it."""

    id: int
    case_no: str
    type: str
    type_label: str
    title: str
    description: str
    location: str
    file_name: str
    sha256: str
    collected_by_agency: str
    collected_by: str
    collected_at: str
    state: str
    state_label: str
    holder_agency: str
    must_recollect: bool
    resolution_reason: str
    resolved_by: str
    resolved_at: str
    custody: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _view(deps: Deps, case: Case, item: EvidenceItem, custody: list[CustodyEntry] | None = None) -> EvidenceView:
    lang = 1 if deps.lang == "en" else 0
    return EvidenceView(
        id=item.id or 0,
        case_no=case.case_no,
        type=item.type,
        type_label=EVIDENCE_TYPES[item.type][lang],
        title=item.title,
        description=item.description,
        location=item.location,
        file_name=item.file_name,
        sha256=item.sha256,
        collected_by_agency=item.collected_by_agency,
        collected_by=item.collected_by,
        collected_at=local_iso(item.collected_at),
        state=item.state,
        state_label=EVIDENCE_STATE_LABELS[item.state],
        holder_agency=item.holder_agency,
        must_recollect=needs_recollection(item.type),
        resolution_reason=item.resolution_reason,
        resolved_by=item.resolved_by,
        resolved_at=local_iso(item.resolved_at),
        custody=[
            {
                "seq": str(c.id),
                "action": c.action,
                "from_agency": c.from_agency,
                "to_agency": c.to_agency,
                "actor": c.actor,
                "at": local_iso(c.at),
                "seal_no": c.seal_no,
                "note": c.note,
            }
            for c in custody or []
        ],
    )


def unresolved_items(uow: UnitOfWork, case: AnyCase) -> tuple[str, ...]:
    """The case's items not yet admitted, re-collected or excluded, as '#id title (state)' for messages."""
    rows = uow.session.execute(
        select(EvidenceItem).where(EvidenceItem.case_id == case.id).order_by(EvidenceItem.id)
    ).scalars()
    return tuple(f"#{r.id} {r.title} ({r.state})" for r in rows if r.state not in RESOLVED)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _custody(uow: UnitOfWork, item: EvidenceItem, action: str, actor: str, at: datetime, **extra: str) -> None:
    uow.session.add(CustodyEntry(item_id=item.id or 0, action=action, actor=actor, at=at, **extra))


def _move(case: Case, item: EvidenceItem, event: str) -> str:
    chart = evidence_chart(item.state)
    try:
        chart.send(event)
    except TransitionNotAllowed:
        words = {"hand_over": "handover", "admit": "admitted", "recollect": "recollected", "exclude": "excluded"}
        allowed = [words[e.id] for e in chart.allowed_events if e.id in words]
        raise InvalidInput(
            f"case {case.case_no}: evidence #{item.id} is {item.state}; {event} is not possible "
            f"(possible now: {', '.join(allowed) or 'nothing, it is resolved'})"
        ) from None
    return str(chart.current_state_value)


def add_evidence(
    deps: Deps,
    case_no: str,
    *,
    actor: str,
    type: str,
    title: str,
    description: str = "",
    location: str = "",
    file: Path | None = None,
    sha256: str | None = None,
    collected_at: datetime | None = None,
) -> EvidenceView:
    """Register an item the market regulator collected; with ``file`` its SHA-256 is recorded (not the file)."""
    if type not in EVIDENCE_TYPES:
        raise InvalidInput(f"unknown evidence type {type!r}; use one of {', '.join(EVIDENCE_TYPES)}")
    title = (title or "").strip()
    if not title:
        raise InvalidInput("an evidence item needs a title (--title)")
    declared = (sha256 or "").strip().lower()
    if declared and not _SHA256.match(declared):
        raise InvalidInput(f"--sha256 {sha256!r} is not a SHA-256 (64 hexadecimal digits)")
    digest, file_name = declared, ""
    if file is not None:
        if not file.is_file():
            raise InvalidInput(f"file not found: {file}")
        digest, file_name = _sha256_of(file), file.name
        if declared and declared != digest:
            raise InvalidInput(
                f"the file {file.name} does not match the declared SHA-256 ({declared[:12]}… declared, "
                f"{digest[:12]}… found): it is not the item that was collected"
            )
    with UnitOfWork(deps) as uow:
        case, officer = _visible_case(uow, case_no, actor, lock=True)
        agency = _agency(uow, officer.agency_code)
        if agency.kind != "market_regulation" or "handler" not in officer.roles:
            raise PermissionDenied(
                f"case {case_no}: evidence to convert is registered by a handler of the market regulator; "
                f"{actor} ({agency.code}) may not"
            )
        if not _is_participant(uow, case, agency.code):
            raise PermissionDenied(f"case {case_no}: {agency.code} does not take part in this case")
        if case.state == CLOSED:
            raise InvalidInput(f"case {case_no} is closed; its evidence can no longer change")
        now = deps.now()
        when = collected_at or now
        if when.tzinfo is None:
            raise InvalidInput("--collected-at needs a time zone")
        if when > now:
            raise InvalidInput(f"--collected-at {local_iso(when)} is in the future")
        if digest:
            duplicate = uow.session.execute(
                select(EvidenceItem.id).where(EvidenceItem.case_id == case.id, EvidenceItem.sha256 == digest)
            ).first()
            if duplicate:
                raise InvalidInput(
                    f"case {case_no}: an item with SHA-256 {digest[:12]}… is already evidence #{duplicate[0]}"
                )
        item = EvidenceItem(
            case_id=case.id or 0,
            type=type,
            title=title,
            description=description.strip(),
            location=location.strip(),
            file_name=file_name,
            sha256=digest,
            collected_by_agency=agency.code,
            collected_by=actor,
            collected_at=when,
            state="registered",
            holder_agency=agency.code,
            created_at=now,
        )
        uow.session.add(item)
        uow.session.flush()
        _custody(uow, item, "registered", actor, now, to_agency=agency.code, note=location.strip())
        record_fact(
            uow,
            case,
            "evidence_registered",
            actor=actor,
            actor_agency=agency.code,
            effective=when,
            recorded=now,
            payload={"item": item.id, "type": type, "title": title, "sha256": digest},
        )
        view = _view(deps, case, item)
        uow.commit()
        return view


def hand_over(
    deps: Deps,
    case_no: str,
    *,
    actor: str,
    seal_no: str,
    item_ids: list[int] | None = None,
    to_agency: str | None = None,
) -> list[EvidenceView]:
    """The market regulator hands registered items to the police with a seal number (case in
    ``evidence_handover``); statements become ``recollection_required`` at once (CPL art. 54)."""
    seal_no = (seal_no or "").strip()
    if not seal_no:
        raise InvalidInput("a hand-over needs the seal number of the transfer (--seal)")
    if len(seal_no) > 60:
        raise InvalidInput(f"--seal is {len(seal_no)} characters long; at most 60")
    with UnitOfWork(deps) as uow:
        case, officer = _visible_case(uow, case_no, actor, lock=True)
        agency = _agency(uow, officer.agency_code)
        if (
            agency.kind != "market_regulation"
            or "handler" not in officer.roles
            or not _is_participant(uow, case, agency.code)
        ):
            raise PermissionDenied(
                f"case {case_no}: the hand-over is made by a handler of the market regulator of the case; "
                f"{actor} ({agency.code}) may not"
            )
        if case.state != "evidence_handover":
            raise InvalidInput(
                f"case {case_no} is {case.state}; evidence is handed over once the police have filed the case "
                "(state evidence_handover)"
            )
        police = _police_of(uow, case, to_agency)
        rows = list(
            uow.session.execute(
                select(EvidenceItem).where(EvidenceItem.case_id == case.id).order_by(EvidenceItem.id)
            ).scalars()
        )
        chosen = [r for r in rows if item_ids is None or r.id in item_ids]
        if item_ids is not None:
            missing = sorted(set(item_ids) - {r.id for r in chosen})
            if missing:
                raise InvalidInput(f"case {case_no}: no evidence {', '.join(f'#{i}' for i in missing)}")
        chosen = [r for r in chosen if item_ids is not None or r.state == "registered"]
        if not chosen:
            raise InvalidInput(f"case {case_no}: no registered evidence to hand over")
        now = deps.now()
        for item in chosen:
            item.state = _move(case, item, "hand_over")
            _custody(
                uow,
                item,
                "handed_over",
                actor,
                now,
                from_agency=item.holder_agency,
                to_agency=police.code,
                seal_no=seal_no,
            )
            item.holder_agency = police.code
            if needs_recollection(item.type):
                item.state = _move(case, item, "require_recollection")
                _custody(uow, item, "recollection_required", actor, now, note=CONVERSION_BASIS)
        record_fact(
            uow,
            case,
            "evidence_handed_over",
            actor=actor,
            actor_agency=agency.code,
            effective=now,
            recorded=now,
            payload={"items": [i.id for i in chosen], "to_agency": police.code, "seal_no": seal_no},
        )
        views = [_view(deps, case, item) for item in chosen]
        uow.commit()
        return views


def _police_of(uow: UnitOfWork, case: Case, to_agency: str | None) -> Agency:
    for agency in holders(uow, case):
        if agency.kind == "police" and (to_agency is None or agency.code == to_agency):
            return agency
    raise InvalidInput(
        f"case {case.case_no}: {to_agency or 'no police agency'} is not a police agency taking part in the case"
    )


def _locked_item(uow: UnitOfWork, item_id: int, actor: str) -> tuple[EvidenceItem, Case, OfficerRow]:
    """An item the actor may see, with its case locked; an unknown or hidden item is "no evidence #N"."""
    officer = uow.officer(actor)
    item = uow.session.get(EvidenceItem, item_id)
    case = uow.session.get(Case, item.case_id) if item else None
    if item is None or case is None or not _visible(uow, case, officer):
        raise InvalidInput(f"no evidence #{item_id}")
    case, officer = _visible_case(uow, case.case_no, actor, lock=True)
    return item, case, officer


def resolve_evidence(deps: Deps, item_id: int, resolution: str, *, actor: str, reason: str = "") -> EvidenceView:
    """The police decide on a handed-over item: ``admitted`` (usable types, after review), ``recollected``
    (statements taken again) or ``excluded`` (with reasons)."""
    if resolution not in RESOLUTIONS:
        raise InvalidInput(f"unknown resolution {resolution!r}; use one of {', '.join(RESOLUTIONS)}")
    reason = (reason or "").strip()
    if resolution == "excluded" and not reason:
        raise InvalidInput("excluding evidence needs the reasons (--reason)")
    with UnitOfWork(deps) as uow:
        item, case, officer = _locked_item(uow, item_id, actor)
        if case.state == CLOSED:
            raise InvalidInput(f"case {case.case_no} is closed; its evidence can no longer change")
        if officer.agency_code != item.holder_agency or "handler" not in officer.roles:
            raise PermissionDenied(
                f"case {case.case_no}: evidence #{item_id} is held by {item.holder_agency}; only its handlers "
                f"decide on it, not {actor} ({officer.agency_code})"
            )
        if resolution == "admitted" and needs_recollection(item.type):
            raise GuardFailed(
                f"evidence #{item_id} is a {EVIDENCE_TYPES[item.type][1]}: the police must take it again "
                "(recollected) or exclude it; it cannot be admitted as collected",
                rule=CONVERSION_BASIS,
            ).bind(case_no=case.case_no, state=case.state, event="admit")
        event = {"admitted": "admit", "recollected": "recollect", "excluded": "exclude"}[resolution]
        item.state = _move(case, item, event)
        now = deps.now()
        item.resolution_reason, item.resolved_by, item.resolved_at = reason, actor, now
        _custody(uow, item, resolution, actor, now, note=reason)
        record_fact(
            uow,
            case,
            "evidence_resolved",
            actor=actor,
            actor_agency=officer.agency_code,
            effective=now,
            recorded=now,
            payload={"item": item_id, "resolution": resolution, "reason": reason},
        )
        view = _view(deps, case, item)
        uow.commit()
        return view


def verify_evidence_file(deps: Deps, item_id: int, path: Path, *, actor: str) -> EvidenceView:
    """Check a file presented again for an item (on receipt, before an appraisal) against its registered
    SHA-256; a match is a ``verified`` custody entry and a fact on the case's audit log, a mismatch is refused
    and nothing is written."""
    if not path.is_file():
        raise InvalidInput(f"file not found: {path}")
    digest = _sha256_of(path)
    with UnitOfWork(deps) as uow:
        item, case, officer = _locked_item(uow, item_id, actor)
        if not _is_participant(uow, case, officer.agency_code):
            raise PermissionDenied(f"case {case.case_no}: {officer.agency_code} does not take part in this case")
        if not item.sha256:
            raise InvalidInput(f"case {case.case_no}: evidence #{item_id} was registered without a file hash")
        if digest != item.sha256:
            raise InvalidInput(
                f"case {case.case_no}: {path.name} does not match evidence #{item_id} ({item.title}): SHA-256 "
                f"{digest[:12]}… found, {item.sha256[:12]}… registered; it is not the file that was collected"
            )
        now = deps.now()
        _custody(uow, item, "verified", actor, now, note=f"{path.name} sha256 {digest}")
        record_fact(
            uow,
            case,
            "evidence_verified",
            actor=actor,
            actor_agency=officer.agency_code,
            effective=now,
            recorded=now,
            payload={"item": item.id, "file_name": path.name, "sha256": digest},
        )
        view = _view(deps, case, item)
        uow.commit()
        return view


def list_evidence(deps: Deps, case_no: str, *, actor: str | None = None) -> list[EvidenceView]:
    """The case's evidence items with their custody logs, in registration order."""
    with UnitOfWork(deps, read_only=True) as uow:
        case, _officer = _readable_case(uow, case_no, actor)
        items = list(
            uow.session.execute(
                select(EvidenceItem).where(EvidenceItem.case_id == case.id).order_by(EvidenceItem.id)
            ).scalars()
        )
        entries: dict[int, list[CustodyEntry]] = {}
        if items:
            for entry in uow.session.execute(
                select(CustodyEntry)
                .where(CustodyEntry.item_id.in_([i.id for i in items]))  # type: ignore[attr-defined]
                .order_by(CustodyEntry.id)
            ).scalars():
                entries.setdefault(entry.item_id, []).append(entry)
        return [_view(deps, case, item, entries.get(item.id or 0, [])) for item in items]
