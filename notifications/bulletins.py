"""Information bulletins (信息通报): the settings, the HTML with its inline SVG charts, and the Excel workbook.

Works on the plain figures dict that ``workflows.bulletins.compute_figures`` builds (``Figures.to_dict()``)
and knows no database. The HTML is a function of the figures and the settings only — never of the time it
was made or who made it — so the same data gives the same bytes and the same SHA-256, the bulletin's
identity. Charts are SVG drawn from geometry computed here (no JavaScript, nothing fetched), and every
coordinate is formatted to one decimal so that no float noise reaches the bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from notifications.render import TEMPLATES_DIR, environment

TEMPLATE = "bulletins/bulletin.zh.html.j2"
DASH = "—"  # what a value that cannot be computed (a rate over zero decisions, a median of nothing) shows

# Series colours of the charts (muted, distinguishable when printed in grey).
_COLOURS = ("#2f5597", "#c55a11", "#548235", "#7f6000")


class BulletinSettings(BaseModel):
    """``[bulletins]`` of config.toml: who receives the bulletins and how they are headed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subscribers: list[str] = Field(default_factory=list)  # usernames of officers
    title: str = Field(default="商业秘密案件行刑衔接工作信息通报", min_length=1)
    issuer: str = ""  # e.g. 三明市商业秘密保护联席会议办公室; "" prints no issuer line
    cron: str = "0 8 1 * *"  # when the monthly bulletin runs in scaled mode (Beijing time): the 1st, 08:00

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError("a cron expression has five fields: minute hour day month weekday")
        return value

    @field_validator("subscribers")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        twice = sorted({name for name in value if value.count(name) > 1})
        if twice:
            raise ValueError(f"listed twice: {', '.join(twice)}")
        return value


@dataclass(frozen=True)
class RenderedBulletin:
    """The bulletin's HTML, the version of the template it came from, and its SHA-256."""

    html: str
    template_version: str
    sha256: str


# --- formatting -------------------------------------------------------------------------------------------


def fmt_value(value: Any, *, rate: bool = False) -> str:
    """A figure as printed: integers as they are, a rate as a percentage to one decimal, None as a dash."""
    if value is None:
        return DASH
    if rate:
        return f"{value * 100:.1f}%"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _n(value: float) -> str:
    return f"{value:.1f}"


# --- charts -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One series of a bar chart: its label and one value per category (None: nothing to draw)."""

    label: str
    values: Sequence[float | None]
    rate: bool = False


def bar_chart(title: str, categories: Sequence[str], series: Sequence[Series], *, unit: str = "") -> dict[str, Any]:
    """Geometry of a horizontal grouped bar chart, as strings ready for the SVG template.

    One group of bars per category, one bar per series; bars are scaled to the largest value of the chart.
    """
    label_w, bar_area, value_w = 150.0, 380.0, 60.0
    bar_h, gap, group_gap, top = 12.0, 2.0, 10.0, 26.0 if len(series) > 1 else 6.0
    peak = max((v for s in series for v in s.values if v is not None), default=0.0) or 1.0
    shapes: list[dict[str, str]] = []
    labels: list[dict[str, str]] = []
    y = top
    for i, category in enumerate(categories):
        group_h = len(series) * (bar_h + gap) - gap
        labels.append({"x": _n(label_w - 6), "y": _n(y + group_h / 2 + 4), "text": category})
        for j, s in enumerate(series):
            value = s.values[i]
            width = 0.0 if value is None else bar_area * float(value) / peak
            shapes.append(
                {
                    "x": _n(label_w),
                    "y": _n(y),
                    "width": _n(width),
                    "height": _n(bar_h),
                    "fill": _COLOURS[j % len(_COLOURS)],
                    "text_x": _n(label_w + width + 4),
                    "text_y": _n(y + bar_h - 2),
                    "text": fmt_value(value, rate=s.rate) + (unit if value is not None and not s.rate else ""),
                }
            )
            y += bar_h + gap
        y += group_gap - gap
    legend = (
        [
            {
                "x": _n(label_w + k * 110),
                "text_x": _n(label_w + k * 110 + 14),
                "fill": _COLOURS[k % len(_COLOURS)],
                "text": s.label,
            }
            for k, s in enumerate(series)
        ]
        if len(series) > 1
        else []
    )
    return {
        "title": title,
        "width": _n(label_w + bar_area + value_w),
        "height": _n(y),
        "labels": labels,
        "bars": shapes,
        "legend": legend,
    }


def _charts(figures: Mapping[str, Any]) -> list[dict[str, Any]]:
    regions = [r for r in figures["regions"]]
    names = [r["name"] for r in regions]

    def values(metric: str) -> list[float | None]:
        return [r["values"][metric] for r in regions]

    charts = [
        bar_chart(
            "各地区线索、立案与移送（件）",
            names,
            [
                Series("受理线索", values("leads_received")),
                Series("行政立案", values("cases_filed")),
                Series("移送公安", values("referrals_transferred")),
                Series("公安立案", values("police_filed")),
            ],
        ),
        bar_chart("各地区公安机关立案率", names, [Series("立案率", values("police_filing_rate"), rate=True)]),
    ]
    stages = figures["stages"]
    total = figures["total"]["stages"]
    charts.append(
        bar_chart(
            "各环节办理用时中位数（天，全部地区）",
            [s["label"] for s in stages],
            [Series("中位数", [total[s["id"]]["median_days"] for s in stages])],
            unit=" 天",
        )
    )
    return charts


# --- HTML ---------------------------------------------------------------------------------------------------


def template_version() -> str:
    """A short hash of the bulletin template, stored with each bulletin."""
    return hashlib.sha256((TEMPLATES_DIR / TEMPLATE).read_bytes()).hexdigest()[:16]


def _local_day(iso: str) -> str:
    value = datetime.fromisoformat(iso)
    return f"{value.year}年{value.month}月{value.day}日"


def render_bulletin(figures: Mapping[str, Any], *, settings: BulletinSettings) -> RenderedBulletin:
    """The bulletin's HTML (zh-CN, autoescaped, StrictUndefined) from the figures and the settings only."""
    # The period's last day: ``end`` is the first instant after the period (midnight, Beijing time).
    end = datetime.fromisoformat(figures["end"])
    last_day = datetime.fromordinal(end.toordinal() - 1)
    groups: dict[str, list[dict[str, Any]]] = {}
    for metric in figures["metrics"]:
        groups.setdefault(metric["group"], []).append(metric)
    html = (
        environment()
        .get_template(TEMPLATE)
        .render(
            title=settings.title,
            issuer=settings.issuer,
            f=figures,
            groups=[{"label": label, "metrics": items} for label, items in groups.items()],
            charts=_charts(figures),
            first_day=_local_day(figures["start"]),
            last_day=f"{last_day.year}年{last_day.month}月{last_day.day}日",
            fmt=fmt_value,
            dash=DASH,
        )
    )
    return RenderedBulletin(html, template_version(), hashlib.sha256(html.encode("utf-8")).hexdigest())


# --- Excel --------------------------------------------------------------------------------------------------


def _cell(value: Any) -> Any:
    return DASH if value is None else value


def write_workbook(figures: Mapping[str, Any], path: Path, *, sha256: str, template_version: str) -> int:
    """Write the figures as an Excel workbook at ``path``; returns the bytes written.

    One sheet per view (per agency, per region, stage times) and one that says what the figures are.
    Row 1 holds the Chinese headers, row 2 the metric ids (the public contract), data from row 3.
    """
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill

    bold = Font(bold=True)
    grey = Font(color="808080", size=9)
    fill = PatternFill("solid", fgColor="DDEBF7")
    metrics = list(figures["metrics"])
    stages = list(figures["stages"])
    wb = Workbook()

    def sheet(title: str, headers: list[tuple[str, str]], rows: list[list[Any]], rate_cols: set[int]) -> None:
        ws = wb.create_sheet(title)
        ws.append([label for label, _ in headers])
        ws.append([key for _, key in headers])
        for row in rows:
            ws.append([_cell(v) for v in row])
        for cell in ws[1]:
            cell.font, cell.fill = bold, fill
            cell.alignment = Alignment(wrap_text=True, vertical="center")
        for cell in ws[2]:
            cell.font = grey
        for col in rate_cols:
            for (cell,) in ws.iter_rows(min_row=3, min_col=col, max_col=col):
                if isinstance(cell.value, float):
                    cell.number_format = "0.0%"
        ws.freeze_panes = "C3"
        for i in range(1, len(headers) + 1):
            ws.column_dimensions[ws.cell(row=1, column=i).column_letter].width = 14 if i > 2 else 22

    metric_headers = [(m["label"], m["id"]) for m in metrics]
    rate_cols = {i + 5 for i, m in enumerate(metrics) if m.get("rate")}

    def values(row: Mapping[str, Any]) -> list[Any]:
        return [row["values"][m["id"]] for m in metrics]

    sheet(
        "按机关",
        [("机关", "name"), ("机关代码", "code"), ("地区", "region_name"), ("地区代码", "region"), *metric_headers],
        [[r["name"], r["code"], r["region_name"], r["region"], *values(r)] for r in figures["agencies"]],
        rate_cols,
    )
    regions = [*figures["regions"], figures["total"]]
    sheet(
        "按地区",
        [("地区", "name"), ("地区代码", "code"), ("层级", "level"), ("机关数", "agencies"), *metric_headers],
        [[r["name"], r["code"], r["level"], r["agencies"], *values(r)] for r in regions],
        rate_cols,
    )
    stage_headers: list[tuple[str, str]] = []
    for s in stages:
        stage_headers += [
            (f"{s['label']} 中位数（天）", f"{s['id']}.median_days"),
            (f"{s['label']} 件数", f"{s['id']}.count"),
        ]

    def stage_values(row: Mapping[str, Any]) -> list[Any]:
        out: list[Any] = []
        for s in stages:
            out += [row["stages"][s["id"]]["median_days"], row["stages"][s["id"]]["count"]]
        return out

    sheet(
        "办理用时",
        [("机关或地区", "name"), ("代码", "code"), ("层级", "level"), ("地区代码", "region"), *stage_headers],
        [[r["name"], r["code"], r["level"], r["region"], *stage_values(r)] for r in [*figures["agencies"], *regions]],
        set(),
    )
    about = wb.create_sheet("说明")
    for line in (
        ("统计期间", figures["label"]),
        ("period", figures["period"]),
        ("kind", figures["kind"]),
        ("起（含）", figures["start"]),
        ("止（不含）", figures["end"]),
        ("通报 HTML 的 SHA-256", sha256),
        ("模板版本 template_version", template_version),
        ("口径", figures["basis"]),
    ):
        about.append(list(line))
    about.append([])
    about.append(["指标", "metric id", "口径 definition"])
    for m in metrics:
        about.append([m["label"], m["id"], m["definition"]])
    for s in stages:
        about.append([f"{s['label']}用时", s["id"], s["definition"]])
    about.column_dimensions["A"].width = 24
    about.column_dimensions["B"].width = 28
    about.column_dimensions["C"].width = 90
    wb.remove(wb["Sheet"])
    # Stable metadata: the workbook says when its period ended, not when it was written.
    stamp = datetime.fromisoformat(figures["end"]).replace(tzinfo=None)
    wb.properties.creator = "jointcase"
    wb.properties.title = f"{figures['label']} 信息通报"
    wb.properties.created = stamp
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    try:
        wb.save(tmp)
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    return path.stat().st_size
