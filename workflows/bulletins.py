"""Information bulletins (信息通报): monthly and quarterly figures per agency and county, from the audit log.

``compute_figures`` is a pure read. A period is an Asia/Shanghai calendar month (``2026-10``) or quarter
(``2026-Q4``), [start, end) in UTC; events count by ``effective_at`` (when they legally happened) and each
is attributed to the agency that sent it (``case_events.actor_agency``: for the engine's own records, the
agency they concern); leads count by ``cases.received_at`` for the owning agency. Rows are grouped per
agency with its region (county), a total per region and a grand total; everything is sorted, so the same
data always gives the same figures.

``generate_bulletin`` is the one way to make a bulletin (CLI, Prefect flow): it computes, renders the HTML
(``notifications.bulletins``), optionally writes the Excel workbook and prints the PDF, and stores one row
per period — a new version only when the content changed. A new version (or one not yet sent) is queued
to the ``[bulletins] subscribers`` through the outbox in the same transaction that stores it; re-running an
unchanged period writes and sends nothing.
"""

from __future__ import annotations

import logging
import re
import statistics
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from models.db import is_sqlite
from models.tables import Agency, Bulletin, Case, CaseEvent, Officer
from notifications.bulletins import render_bulletin, write_workbook
from notifications.documents import PdfUnavailable, html_to_pdf
from states.calendar import SHANGHAI
from states.errors import InvalidInput, PermissionDenied
from states.meeting import period_bounds, period_key
from workflows.clockwork import Directory, enqueue, local_iso
from workflows.uow import Deps, UnitOfWork

log = logging.getLogger(__name__)

NOTICE = "bulletin"  # the outbox kind and notification template of a bulletin notice
GENERATOR_ROLES = ("secretary", "supervisor", "admin")  # who may generate one in their own name
OPERATOR = "system"  # generated_by when no officer is named (CLI operator, scheduled flow)
KIND_ORDER = ("market_regulation", "police", "procuratorate", "court", "justice")

# --- periods ----------------------------------------------------------------------------------------------

_MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")
_QUARTER = re.compile(r"^(\d{4})-[Qq](\d+)$")
_PERIOD_HELP = "a month YYYY-MM (e.g. 2026-10) or a quarter YYYY-Qn (e.g. 2026-Q3)"


@dataclass(frozen=True)
class Period:
    """A calendar month or quarter in Beijing time; ``start``/``end`` are aware UTC, end exclusive."""

    key: str  # 2026-10 | 2026-Q4
    kind: str  # monthly | quarterly
    start: datetime
    end: datetime
    label: str  # 2026年10月 | 2026年第四季度
    label_en: str


_QUARTER_ZH = {1: "一", 2: "二", 3: "三", 4: "四"}
_MONTH_EN = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def parse_period(text: str) -> Period:
    """``YYYY-MM`` or ``YYYY-Qn``; anything else is ``InvalidInput`` saying what is expected."""
    raw = (text or "").strip()
    if m := _MONTH.match(raw):
        year, month = int(m[1]), int(m[2])
        if not 1 <= month <= 12:
            raise InvalidInput(f"period {raw!r}: there is no month {month}; use {_PERIOD_HELP}")
        key, kind = f"{year:04d}-{month:02d}", "monthly"
        label, label_en = f"{year}年{month}月", f"{_MONTH_EN[month - 1]} {year}"
    elif m := _QUARTER.match(raw):
        year, quarter = int(m[1]), int(m[2])
        if not 1 <= quarter <= 4:
            raise InvalidInput(f"period {raw!r}: there is no quarter {quarter} (Q1–Q4); use {_PERIOD_HELP}")
        key, kind = f"{year:04d}-Q{quarter}", "quarterly"
        label, label_en = f"{year}年第{_QUARTER_ZH[quarter]}季度", f"Q{quarter} {year}"
    else:
        raise InvalidInput(f"period {raw!r} is not {_PERIOD_HELP}")
    if not 1 <= year <= 9998:
        raise InvalidInput(f"period {raw!r}: year {year} is out of range")
    start, end = period_bounds(key)  # the same calendar periods as the meeting schedules
    return Period(key, kind, start.astimezone(UTC), end.astimezone(UTC), label, label_en)


def ended_period(deps: Deps, text: str) -> Period:
    """``parse_period``, refusing a period that has not ended by the injected clock (its figures would move)."""
    period = parse_period(text)
    now = deps.now()
    if period.start > now:
        raise InvalidInput(
            f"period {period.key} ({period.label}) is in the future; a bulletin covers a period that has ended"
        )
    if period.end > now:
        raise InvalidInput(
            f"period {period.key} ({period.label}) has not ended yet: it ends {local_iso(period.end)} (Beijing time); "
            "a bulletin covers a whole month or quarter"
        )
    return period


def previous_period(now: datetime, kind: str = "monthly") -> str:
    """The last full month (or quarter) before ``now``, in Beijing time: 2026-11-01 08:00 → ``2026-10``."""
    granularity = {"monthly": "month", "quarterly": "quarter"}.get(kind)
    if granularity is None:
        raise InvalidInput(f"unknown bulletin kind {kind!r}; use monthly or quarterly")
    current_start, _end = period_bounds(period_key(now, granularity))
    return period_key(current_start - timedelta(seconds=1), granularity)


# --- what is counted --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """A figure of the bulletin. ``id`` is a public contract (CLI JSON, Excel, stored figures)."""

    id: str
    label: str
    label_en: str
    group: str
    events: tuple[str, ...]
    definition: str
    rate: bool = False


_INTAKE = "线索与移送"
_POLICE = "公安立案、复议与立案监督"
_WATCH = "挂牌督办与期限"

METRICS: tuple[Metric, ...] = (
    Metric(
        "leads_received", "受理线索", "Leads received", _INTAKE, (), "本期受理的线索（cases.received_at），计入承办机关"
    ),
    Metric("cases_filed", "行政立案", "Cases filed", _INTAKE, ("file_case",), "立案（file_case）"),
    Metric(
        "referrals_proposed",
        "提请移送",
        "Referrals proposed",
        _INTAKE,
        ("propose_referral",),
        "提请移送（propose_referral）",
    ),
    Metric(
        "referrals_approved",
        "批准移送",
        "Referrals approved",
        _INTAKE,
        ("approve_referral",),
        "批准移送（approve_referral）",
    ),
    Metric(
        "referrals_transferred",
        "移送公安",
        "Referrals transferred",
        _INTAKE,
        ("transfer_to_police",),
        "移送公安机关（transfer_to_police）",
    ),
    Metric(
        "police_filed",
        "公安立案",
        "Police filed",
        _POLICE,
        ("police_file",),
        "公安机关立案（police_file，含复议、监督后立案）",
    ),
    Metric(
        "police_declined",
        "不予立案",
        "Police declined",
        _POLICE,
        ("police_decline",),
        "公安机关不予立案（police_decline）",
    ),
    Metric(
        "police_filing_rate",
        "立案率",
        "Police filing rate",
        _POLICE,
        (),
        "公安立案 ÷（公安立案 + 不予立案），本期作出的决定；无决定时为 —",
        rate=True,
    ),
    Metric(
        "reconsiderations",
        "提请复议",
        "Reconsiderations requested",
        _POLICE,
        ("request_reconsideration",),
        "要求复议（request_reconsideration）",
    ),
    Metric(
        "reconsideration_upheld",
        "复议维持",
        "Declines upheld on reconsideration",
        _POLICE,
        ("uphold_decline",),
        "复议维持不予立案（uphold_decline）",
    ),
    Metric(
        "supervision_requests",
        "建议立案监督",
        "Filing supervision requested",
        _POLICE,
        ("request_supervision",),
        "建议检察机关立案监督（request_supervision）",
    ),
    Metric(
        "supervision_upheld_decline",
        "监督维持不立案",
        "Declines upheld on supervision",
        _POLICE,
        ("supervision_upholds_decline",),
        "检察机关认为不立案理由成立（supervision_upholds_decline）",
    ),
    Metric(
        "supervisions_listed",
        "挂牌督办",
        "Listed for supervision",
        _WATCH,
        ("supervision_listed",),
        "挂牌督办（含超期自动挂牌）",
    ),
    Metric("supervisions_delisted", "摘牌", "Delisted", _WATCH, ("supervision_delisted",), "督办摘牌"),
    Metric(
        "supervision_escalations",
        "督办升级",
        "Supervision escalations",
        _WATCH,
        ("supervision_escalated",),
        "督办事项逾期升级（supervision_escalated）",
    ),
    Metric(
        "deadlines_missed",
        "期限超期",
        "Deadlines missed",
        _WATCH,
        ("deadline_missed",),
        "法定期限届满未办结（deadline_missed），计入应办理的机关",
    ),
)
METRIC_IDS: tuple[str, ...] = tuple(m.id for m in METRICS)
_COUNTED: dict[str, str] = {event: m.id for m in METRICS for event in m.events}


@dataclass(frozen=True)
class Stage:
    """A stage whose duration is measured: from a start event to the first end event after it (same case)."""

    id: str
    label: str
    label_en: str
    start: tuple[str, ...]
    end: tuple[str, ...]
    definition: str


STAGES: tuple[Stage, ...] = (
    Stage("verification", "线索核查", "Verification", ("open_case",), ("file_case",), "受理线索至立案"),
    Stage("investigation", "立案调查", "Investigation", ("file_case",), ("propose_referral",), "立案至提请移送"),
    Stage(
        "referral_approval",
        "移送审批",
        "Referral approval",
        ("propose_referral",),
        ("approve_referral",),
        "提请移送至批准",
    ),
    Stage("transfer", "移送", "Transfer", ("approve_referral",), ("transfer_to_police",), "批准移送至移送公安机关"),
    Stage(
        "police_decision",
        "公安立案审查",
        "Police decision",
        ("transfer_to_police",),
        ("police_file", "police_decline"),
        "移送至公安机关首次作出立案或不予立案决定",
    ),
    Stage(
        "reconsideration",
        "复议",
        "Reconsideration",
        ("request_reconsideration",),
        ("police_file", "uphold_decline"),
        "要求复议至复议决定",
    ),
    Stage(
        "filing_supervision",
        "立案监督",
        "Filing supervision",
        ("request_supervision",),
        ("police_file", "supervision_upholds_decline"),
        "建议立案监督至公安立案或检察机关认为不立案理由成立",
    ),
    Stage(
        "prosecution_review",
        "审查起诉",
        "Prosecution review",
        ("submit_for_prosecution", "resubmit"),
        ("indict", "decline_prosecution", "return_for_supplementary_investigation", "refer_back_for_penalty"),
        "移送审查起诉（或补充侦查后重新移送）至起诉、不起诉、退回补充侦查或退回行政处罚",
    ),
    Stage("trial", "审判", "Trial", ("indict",), ("pronounce_judgment",), "提起公诉至宣判"),
)
STAGE_IDS: tuple[str, ...] = tuple(s.id for s in STAGES)
_STAGE_EVENTS: tuple[str, ...] = tuple(sorted({e for s in STAGES for e in (*s.start, *s.end)}))
_STAGE_ENDS: tuple[str, ...] = tuple(sorted({e for s in STAGES for e in s.end}))

BASIS = (
    "按事件生效时间（北京时间）统计；每个事件计入发出该事件的机关，系统记录的期限超期、督办升级计入其所涉机关，"
    "受理线索计入承办机关。办理用时：结束事件发生在本期内的环节，自同一案件此前最近的开始事件起算至其后首个结束事件，"
    "取中位数（天，四舍五入保留一位小数）。"
)


# --- the figures --------------------------------------------------------------------------------------------


def _half_up(value: float, places: str) -> float:
    return float(Decimal(repr(value)).quantize(Decimal(places), rounding=ROUND_HALF_UP))


def median_days(days: list[float]) -> float | None:
    """The median of stage durations in days, rounded half up to one decimal (None without any)."""
    return _half_up(statistics.median(days), "0.1") if days else None


@dataclass
class Row:
    """One line of the bulletin: an agency, a region (its agencies' total) or the grand total."""

    level: str  # the agency's level (province | city | county) for agencies and regions; "total"
    code: str  # agency code | region code | "total"
    name: str
    region: str
    region_name: str
    kind: str = ""  # agency kind (agencies only)
    agencies: int = 1
    values: dict[str, int | float | None] = field(default_factory=dict)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass
class Figures:
    """Everything a bulletin shows, for one period: per agency, per region, and in total."""

    period: str
    kind: str
    label: str
    label_en: str
    start: str  # ISO, Beijing time
    end: str
    agencies: list[Row]
    regions: list[Row]
    total: Row

    def agency(self, code: str) -> Row:
        """The row of agency ``code`` (KeyError if none)."""
        return _find(self.agencies, code)

    def region(self, code: str) -> Row:
        """The total of region ``code`` (KeyError if none)."""
        return _find(self.regions, code)

    def to_dict(self) -> dict[str, Any]:
        """The stored, rendered and printed form: with the metric and stage definitions, sorted, JSON-ready."""
        return {
            "period": self.period,
            "kind": self.kind,
            "label": self.label,
            "label_en": self.label_en,
            "start": self.start,
            "end": self.end,
            "basis": BASIS,
            "metrics": [
                {
                    "id": m.id,
                    "label": m.label,
                    "label_en": m.label_en,
                    "group": m.group,
                    "definition": m.definition,
                    "rate": m.rate,
                }
                for m in METRICS
            ],
            "stages": [
                {
                    "id": s.id,
                    "label": s.label,
                    "label_en": s.label_en,
                    "start": list(s.start),
                    "end": list(s.end),
                    "definition": s.definition,
                }
                for s in STAGES
            ],
            "agencies": [r.to_dict() for r in self.agencies],
            "regions": [r.to_dict() for r in self.regions],
            "total": self.total.to_dict(),
        }


def _find(rows: list[Row], code: str) -> Row:
    for row in rows:
        if row.code == code:
            return row
    raise KeyError(code)


def _finish(row: Row, counts: dict[str, int], durations: dict[str, list[float]]) -> Row:
    """Fill ``row`` from summed counts and pooled durations (a median is never a median of medians)."""
    for metric in METRICS:
        if not metric.rate:
            row.values[metric.id] = counts.get(metric.id, 0)
    decided = counts.get("police_filed", 0) + counts.get("police_declined", 0)
    row.values["police_filing_rate"] = _half_up(counts.get("police_filed", 0) / decided, "0.0001") if decided else None
    row.values = {m.id: row.values[m.id] for m in METRICS}  # the contract's order
    row.stages = {
        s.id: {"count": len(durations.get(s.id, [])), "median_days": median_days(durations.get(s.id, []))}
        for s in STAGES
    }
    return row


def compute_figures(deps: Deps, period: str | Period) -> Figures:
    """The bulletin's figures for ``period`` (which must have ended). Reads only."""
    p = ended_period(deps, period) if isinstance(period, str) else period
    with UnitOfWork(deps, read_only=True) as uow:
        agencies = list(uow.session.execute(select(Agency)).scalars())
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        in_period = (CaseEvent.effective_at >= p.start) & (CaseEvent.effective_at < p.end)  # type: ignore[operator]
        for event, agency, n in uow.session.execute(
            select(CaseEvent.event, CaseEvent.actor_agency, func.count())
            .where(in_period, CaseEvent.event.in_(sorted(_COUNTED)))  # type: ignore[attr-defined]
            .group_by(CaseEvent.event, CaseEvent.actor_agency)
        ).all():
            counts[agency][_COUNTED[event]] += n
        for agency, n in uow.session.execute(
            select(Case.owner_agency, func.count())
            .where(Case.received_at >= p.start, Case.received_at < p.end)  # type: ignore[operator]
            .group_by(Case.owner_agency)
        ).all():
            counts[agency]["leads_received"] += n
        durations = _stage_durations(uow, p)
        return _assemble(p, agencies, counts, durations)  # inside: the agencies are read from this session


def _stage_rows(
    uow: UnitOfWork, start: datetime, end: datetime, case_ids: Any = None
) -> list[tuple[int, str, str, datetime]]:
    """(case, event, agency, effective time) of the stage events before ``end`` of the cases where a stage
    ended in [start, end), in each case's order (``case_ids``: only those cases, a list or a subquery)."""
    ended_here: Any = (
        select(CaseEvent.case_id)
        .where(
            CaseEvent.effective_at >= start,  # type: ignore[operator]
            CaseEvent.effective_at < end,  # type: ignore[operator]
            CaseEvent.event.in_(_STAGE_ENDS),  # type: ignore[attr-defined]
        )
        .distinct()
    )
    if case_ids is not None:
        ended_here = ended_here.where(CaseEvent.case_id.in_(case_ids))  # type: ignore[attr-defined]
    return [
        (case_id, event, agency, at)
        for case_id, event, agency, at in uow.session.execute(
            select(CaseEvent.case_id, CaseEvent.event, CaseEvent.actor_agency, CaseEvent.effective_at)
            .where(
                CaseEvent.case_id.in_(ended_here),  # type: ignore[attr-defined]
                CaseEvent.event.in_(_STAGE_EVENTS),  # type: ignore[attr-defined]
                CaseEvent.effective_at < end,  # type: ignore[operator]
            )
            .order_by(CaseEvent.case_id, CaseEvent.seq)
        ).all()
    ]


def _paired(rows: list[tuple[int, str, str, datetime]], start: datetime) -> Iterator[tuple[str, str, float]]:
    """(agency of the end event, stage, days) for every stage that ended from ``start`` on, paired within
    its case: from the latest start event to the first end event after it."""
    pending: dict[str, datetime] = {}
    current: int | None = None
    for case_id, event, agency, at in rows:
        if case_id != current:
            current, pending = case_id, {}
        for stage in STAGES:
            if event in stage.end and stage.id in pending:
                started = pending.pop(stage.id)
                if at >= start:
                    yield agency, stage.id, (at - started).total_seconds() / 86400
        for stage in STAGES:
            if event in stage.start:
                pending[stage.id] = at  # a restart (resubmit, a second proposal) measures from the latest


def _stage_durations(uow: UnitOfWork, p: Period) -> dict[str, dict[str, list[float]]]:
    """agency → stage → days, for every stage that ended in the period (paired within its case)."""
    out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for agency, stage, days in _paired(_stage_rows(uow, p.start, p.end), p.start):
        out[agency][stage].append(days)
    return out


def stage_days(uow: UnitOfWork, start: datetime, end: datetime, case_ids: Any) -> dict[str, list[float]]:
    """stage → days of the stages that ended in [start, end) in these cases (a list of ids or a subquery), by
    the bulletin's rule (the supervisor's dashboard: the cases they may see, any span)."""
    out: dict[str, list[float]] = {s.id: [] for s in STAGES}
    for _agency, stage, days in _paired(_stage_rows(uow, start, end, case_ids), start):
        out[stage].append(days)
    return out


def _assemble(
    p: Period,
    agencies: list[Agency],
    counts: dict[str, dict[str, int]],
    durations: dict[str, dict[str, list[float]]],
) -> Figures:
    known = {a.code: a for a in agencies}
    # An agency that acted but is no longer in the directory still counts, under its code.
    for code in sorted((set(counts) | set(durations)) - set(known)):
        known[code] = Agency(code=code, name=code, kind="", level="", region="", region_name="")
    kind_rank = {k: i for i, k in enumerate(KIND_ORDER)}
    ordered = sorted(known.values(), key=lambda a: (a.region, kind_rank.get(a.kind, len(KIND_ORDER)), a.code))
    rows: list[Row] = []
    by_region: dict[str, list[Agency]] = defaultdict(list)
    for a in ordered:
        rows.append(
            _finish(
                Row(a.level, a.code, a.name, a.region, a.region_name, kind=a.kind),
                counts.get(a.code, {}),
                durations.get(a.code, {}),
            )
        )
        by_region[a.region].append(a)

    def pooled(codes: list[str]) -> tuple[dict[str, int], dict[str, list[float]]]:
        c: dict[str, int] = defaultdict(int)
        d: dict[str, list[float]] = defaultdict(list)
        for code in codes:
            for k, v in counts.get(code, {}).items():
                c[k] += v
            for k, days in durations.get(code, {}).items():
                d[k].extend(days)
        return c, d

    regions = []
    for region in sorted(by_region):
        members = by_region[region]
        levels = sorted({a.level for a in members})
        row = Row(
            levels[0] if len(levels) == 1 else "mixed",
            region,
            members[0].region_name or region,
            region,
            members[0].region_name,
            agencies=len(members),
        )
        regions.append(_finish(row, *pooled([a.code for a in members])))
    total = _finish(Row("total", "total", "合计", "", "", agencies=len(ordered)), *pooled([a.code for a in ordered]))
    return Figures(
        period=p.key,
        kind=p.kind,
        label=p.label,
        label_en=p.label_en,
        start=p.start.astimezone(SHANGHAI).isoformat(),
        end=p.end.astimezone(SHANGHAI).isoformat(),
        agencies=rows,
        regions=regions,
        total=total,
    )


# --- the stored bulletin ------------------------------------------------------------------------------------


@dataclass
class BulletinView:
    """A stored bulletin version, and what this call did with it."""

    period: str
    kind: str
    label: str
    version: int
    sha256: str
    template_version: str
    generated_at: str
    generated_by: str
    notified_at: str
    status: str = "stored"  # new | changed | unchanged (generate); stored (show, list)
    notified: int = 0  # subscribers this call queued the bulletin to
    unknown_subscribers: list[str] = field(default_factory=list)
    xlsx: str = ""
    pdf: str = ""
    figures: dict[str, Any] = field(default_factory=dict, repr=False)
    html: str = field(default="", repr=False)

    def to_dict(self, *, figures: bool = True) -> dict[str, Any]:
        """A JSON-ready dict, without the HTML (and without the figures unless asked)."""
        out = asdict(self)
        out.pop("html")
        if not figures:
            out.pop("figures")
        return out


def _view(row: Bulletin, **extra: Any) -> BulletinView:
    return BulletinView(
        period=row.period,
        kind=row.kind,
        label=row.figures.get("label", row.period),
        version=row.version,
        sha256=row.sha256,
        template_version=row.template_version,
        generated_at=local_iso(row.generated_at),
        generated_by=row.generated_by,
        notified_at=local_iso(row.notified_at),
        figures=row.figures,
        html=row.html,
        **extra,
    )


def _check_actor(deps: Deps, actor: str | None) -> str:
    if actor is None:
        return OPERATOR
    with UnitOfWork(deps, read_only=True) as uow:
        officer = uow.officer(actor)
        if not set(officer.roles) & set(GENERATOR_ROLES):
            raise PermissionDenied(
                f"{actor} may not generate bulletins; only a {', '.join(GENERATOR_ROLES)} may (or the operator)"
            )
    return actor


def generate_bulletin(
    deps: Deps,
    period: str,
    *,
    actor: str | None = None,
    xlsx: Path | None = None,
    pdf: Path | None = None,
    send: bool = True,
) -> BulletinView:
    """Compute, render and store the bulletin of ``period``; write the workbook / PDF; notify subscribers.

    Refuses (``InvalidInput``, nothing written) a period that does not parse or has not ended. Reads the
    figures in one read transaction; prints the PDF first (the likeliest failure), then the workbook; then,
    in one write transaction, stores a new version when the HTML changed and queues it to the subscribers
    (also an unchanged version that was never sent, when ``send``). Unchanged and sent: writes nothing.
    """
    p = ended_period(deps, period)
    generated_by = _check_actor(deps, actor)
    figures = compute_figures(deps, p).to_dict()
    rendered = render_bulletin(figures, settings=deps.bulletins)
    try:
        if pdf is not None:
            html_to_pdf(rendered.html, pdf, settings=deps.documents)
        if xlsx is not None:
            write_workbook(figures, xlsx, sha256=rendered.sha256, template_version=rendered.template_version)
    except PdfUnavailable as err:
        raise InvalidInput(f"bulletin {p.key}: the PDF was not printed (nothing stored): {err}") from None
    except OSError as err:
        where = err.filename or pdf or xlsx
        raise InvalidInput(f"bulletin {p.key}: cannot write {where}: {err.strerror or err} (nothing stored)") from None
    with UnitOfWork(deps) as uow:
        stmt: Any = select(Bulletin).where(Bulletin.period == p.key)
        if not is_sqlite(deps.engine):
            stmt = stmt.with_for_update()  # one generator per period at a time (SQLite: BEGIN IMMEDIATE already)
        row = uow.session.execute(stmt).scalar_one_or_none()
        now = deps.now()
        if row is None:
            status = "new"
            row = Bulletin(period=p.key, kind=p.kind, version=1, figures=figures, html=rendered.html, sha256="")
        elif row.sha256 != rendered.sha256 or row.figures != figures:
            status = "changed"
            row.version += 1
            row.notified_at = None
        else:
            status = "unchanged"
        if status != "unchanged":
            row.figures, row.html, row.sha256 = figures, rendered.html, rendered.sha256
            row.template_version = rendered.template_version
            row.generated_at, row.generated_by = now, generated_by
            uow.session.add(row)
        notified, unknown = 0, []
        if send and row.notified_at is None:
            notified, unknown = _notify(deps, uow, row, now)
            if notified:
                row.notified_at = now
                uow.session.add(row)
        if status == "unchanged" and not notified:
            view = _view(row, status=status, unknown_subscribers=unknown)
        else:
            uow.session.flush()
            view = _view(row, status=status, notified=notified, unknown_subscribers=unknown)
            uow.commit()
    view.xlsx = str(xlsx) if xlsx is not None else ""
    view.pdf = str(pdf) if pdf is not None else ""
    log.info("bulletin %s v%s %s; %s subscriber(s) notified", p.key, view.version, status, notified)
    return view


def _notify(deps: Deps, uow: UnitOfWork, row: Bulletin, now: datetime) -> tuple[int, list[str]]:
    """Queue the bulletin to every subscriber on each of their channels (``clockwork.enqueue``, no case);
    returns (officers addressed, subscribers who are not active officers).

    The dedupe prefix carries the period, the version and the content hash: a changed bulletin is a new
    notice, and the same version is never queued twice.
    """
    directory = Directory(uow)
    recipients: list[Officer] = []
    unknown: list[str] = []
    for username in deps.bulletins.subscribers:
        officer = directory.officer(username)
        if officer is None:
            unknown.append(username)
            log.warning("bulletin %s: subscriber %s is not an active officer; not sent", row.period, username)
        else:
            recipients.append(officer)
    figures = row.figures
    total = figures["total"]["values"]
    rate = total["police_filing_rate"]
    addressed = enqueue(
        deps,
        uow,
        None,
        recipients,
        template=NOTICE,
        dedupe_prefix=f"bulletin:{row.period}:v{row.version}:{row.sha256[:12]}",
        at=now,
        title=deps.bulletins.title,
        period=row.period,
        label=figures["label"],
        label_en=figures["label_en"],
        version=row.version,
        sha256=row.sha256,
        totals=total,
        rate="—" if rate is None else f"{rate * 100:.1f}%",
        regions=[{"name": r["name"], "figures": r["values"]} for r in figures["regions"]],
    )
    return addressed, unknown


def show_bulletin(deps: Deps, period: str) -> BulletinView:
    """The stored bulletin of ``period`` (figures and HTML); ``InvalidInput`` when none was generated."""
    p = parse_period(period)
    with UnitOfWork(deps, read_only=True) as uow:
        row = uow.session.execute(select(Bulletin).where(Bulletin.period == p.key)).scalar_one_or_none()
        if row is None:
            raise InvalidInput(
                f"no bulletin for {p.key} ({p.label}) was generated; use `jointcase bulletin generate --period {p.key}`"
            )
        return _view(row)


def list_bulletins(deps: Deps) -> list[BulletinView]:
    """Every stored bulletin, newest period first."""
    with UnitOfWork(deps, read_only=True) as uow:
        rows = uow.session.execute(select(Bulletin).order_by(Bulletin.period.desc())).scalars()  # type: ignore[attr-defined]
        return [_view(row) for row in rows]
