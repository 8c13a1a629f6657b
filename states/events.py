"""Event data and senders: which keys each event takes, and which agency kind may send it.

The key names are the public contract shared by the CLI's ``--set KEY=VALUE``, the REST body and the
audit payload (DOMAIN.md). Values arrive as strings or JSON values; :func:`parse_event_data` returns
the normalised payload (amounts as ints, agency lists as lists) or raises ``InvalidEventData``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from states.errors import InvalidEventData
from states.lifecycle import EVENT_IDS, PHASES

Kind = Literal["text", "amount", "choice", "agency", "agencies", "username", "sha256"]

GROUNDS = ("loss", "illegal_gain", "bankruptcy", "other_major_loss", "reasonable_suspicion")
JUDGMENT_OUTCOMES = ("convicted", "acquitted")
#: What a technical appraisal (司法鉴定) of a trade-secret case establishes: 非公知性, 同一性, loss valuation.
APPRAISAL_SUBJECTS = ("non_public", "identity", "loss_valuation")


@dataclass(frozen=True)
class Field:
    """One data key of an event."""

    kind: Kind
    required: bool = False
    choices: tuple[str, ...] = ()


_REASON = {"reason": Field("text", required=True)}
_EXTENSION = {"approved_by": Field("username", required=True), "reason": Field("text", required=True)}
_ROUTE = {"to_agency": Field("agency")}

EVENT_DATA: dict[str, dict[str, Field]] = {event: {} for event in EVENT_IDS}
EVENT_DATA.update(
    {
        "propose_referral": {
            "ground": Field("choice", required=True, choices=GROUNDS),
            "loss_amount": Field("amount"),
            "illegal_gain": Field("amount"),
            "reason": Field("text"),
            # Decree 310 art. 11: a fine already paid is offset against a later criminal fine.
            "fine_paid": Field("amount"),
        },
        "transfer_jurisdiction": {"to_agency": Field("agency", required=True)},
        "forward_jurisdiction": {"to_agency": Field("agency", required=True)},
        "transfer_to_police": dict(_ROUTE),
        "request_supervision": dict(_ROUTE),
        "submit_for_prosecution": dict(_ROUTE),
        "indict": dict(_ROUTE),
        "start_joint_investigation": {"agencies": Field("agencies", required=True)},
        "decide_penalty": {"fine_amount": Field("amount"), "confiscated_amount": Field("amount")},
        "pronounce_judgment": {
            "outcome": Field("choice", required=True, choices=JUDGMENT_OUTCOMES),
            "sentence": Field("text"),
        },
        "request_appraisal": {
            "institution": Field("text", required=True),  # the appraisal institution (鉴定机构)
            "subject": Field("choice", required=True, choices=APPRAISAL_SUBJECTS),
            "questions": Field("text", required=True),  # 委托鉴定事项
        },
        "complete_appraisal": {
            "conclusion": Field("text", required=True),  # 鉴定意见
            "opinion_no": Field("text"),  # 鉴定意见书编号
            "opinion_sha256": Field("sha256"),  # hash of the opinion document (the document is attached)
        },
        "extend_verification": dict(_EXTENSION),
        "extend_investigation": dict(_EXTENSION),
        "extend_review": dict(_EXTENSION),
        "extend_trial": dict(_EXTENSION),
    }
)
for _event in (
    "reject_referral",
    "decline_filing",
    "police_decline",
    "uphold_decline",
    "supervision_upholds_decline",
    "decline_prosecution",
    "drop_investigation",
    "suspend",
    "withdraw",
):
    EVENT_DATA[_event] = dict(_REASON)

#: Who may send what: the agency kind of the sending officer's agency (DOMAIN.md).
SENDER_KIND: dict[str, str] = {}
for _event in (
    "start_verification",
    "file_case",
    "decline_filing",
    "transfer_jurisdiction",
    "extend_verification",
    "request_appraisal",
    "complete_appraisal",
    "start_joint_investigation",
    "end_joint_investigation",
    "notify_penalty",
    "request_hearing",
    "decide_penalty",
    "close_no_violation",
    "extend_investigation",
    "withdraw",
    "propose_referral",
    "approve_referral",
    "reject_referral",
    "transfer_to_police",
    "request_reconsideration",
    "request_supervision",
    "accept_decline",
    "suspend",
    "resume",
):
    SENDER_KIND[_event] = "market_regulation"
for _event in (
    "police_file",
    "police_decline",
    "forward_jurisdiction",
    "request_supplement",
    "uphold_decline",
    "complete_handover",
    "submit_for_prosecution",
    "drop_investigation",
    "resubmit",
):
    SENDER_KIND[_event] = "police"
for _event in (
    "supervision_upholds_decline",
    "indict",
    "return_for_supplementary_investigation",
    "extend_review",
    "decline_prosecution",
    "refer_back_for_penalty",
):
    SENDER_KIND[_event] = "procuratorate"
for _event in ("pronounce_judgment", "extend_trial"):
    SENDER_KIND[_event] = "court"

#: suspend/resume are the market regulator's only while the case is in these phases.
SUSPENSION_PHASES: tuple[str, ...] = PHASES[:2]

#: Sending these events makes an agency of this kind a participant of the case (the receiver).
RECEIVER_KIND: dict[str, str] = {
    "transfer_to_police": "police",
    "forward_jurisdiction": "police",
    "request_supervision": "procuratorate",
    "submit_for_prosecution": "procuratorate",
    "indict": "court",
    "transfer_jurisdiction": "market_regulation",
}

assert set(SENDER_KIND) == set(EVENT_IDS), set(EVENT_IDS) ^ set(SENDER_KIND)


def parse_event_data(event: str, raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check ``raw`` against the event's keys and return the normalised payload.

    Unknown keys, missing required keys, non-integer or negative amounts and values outside a choice
    are refused with a message that lists what the event accepts.
    """
    spec = EVENT_DATA.get(event, {})
    raw = dict(raw or {})
    accepted = ", ".join(sorted(spec)) or "no data keys"
    unknown = sorted(set(raw) - set(spec))
    if unknown:
        raise InvalidEventData(f"{event} does not take {', '.join(unknown)}; it accepts: {accepted}")
    out: dict[str, Any] = {}
    for key, fld in spec.items():
        value = raw.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if fld.required:
                raise InvalidEventData(f"{event} needs {key} (--set {key}=...); it accepts: {accepted}")
            continue
        out[key] = _coerce(event, key, fld, value)
    return out


def _coerce(event: str, key: str, fld: Field, value: Any) -> Any:
    if fld.kind == "amount":
        try:
            amount = int(str(value).replace(",", "").strip())
        except ValueError:
            raise InvalidEventData(f"{event}: {key} must be a whole amount in RMB, got {value!r}") from None
        if amount < 0:
            raise InvalidEventData(f"{event}: {key} must not be negative, got {amount}")
        return amount
    if fld.kind == "choice":
        text = str(value).strip()
        if text not in fld.choices:
            raise InvalidEventData(f"{event}: {key} must be one of {', '.join(fld.choices)}, got {text!r}")
        return text
    if fld.kind == "sha256":
        text = str(value).strip().lower()
        if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
            raise InvalidEventData(f"{event}: {key} must be a SHA-256 (64 hexadecimal digits), got {value!r}")
        return text
    if fld.kind == "agencies":
        items = value if isinstance(value, list | tuple) else str(value).split(",")
        # Order kept, repeats dropped: "sm-psb,sm-psb" names one agency once.
        codes = list(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))
        if not codes:
            raise InvalidEventData(f"{event}: {key} needs at least one agency code")
        return codes
    return str(value).strip()


#: Where a lead came from (SAMR procedure rule art. 18: inspection, complaint, tip-off, transfer, assignment).
LEAD_SOURCES: dict[str, tuple[str, str]] = {
    "inspection": ("监督检查发现", "Found in inspection"),
    "complaint": ("投诉", "Complaint"),
    "report": ("举报", "Tip-off"),
    "transfer": ("其他机关移送", "Transferred by another body"),
    "assignment": ("上级交办", "Assigned from above"),
    "other": ("其他", "Other"),
}
