"""Excel export of the pages' lists: one sheet, the page's columns with Chinese headers in row 1, the page's
rows below. Text is always written as text (a case title starting with ``=`` never becomes a formula)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from openpyxl import Workbook  # imported with the app, not on the first export (it takes ~150 ms)
from openpyxl.styles import Alignment, Font, PatternFill

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def workbook(
    title: str, columns: Sequence[tuple[str, str]], rows: Iterable[Mapping[str, Any]], *, note: str = ""
) -> bytes:
    """An .xlsx of ``rows`` (dicts) under ``columns`` (key, Chinese header); ``note`` goes below the table."""
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = title[:31]
    ws.append([header for _key, header in columns])
    for cell in ws[1]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDEBF7")
        cell.alignment = Alignment(wrap_text=True, vertical="center")
    count = 0
    for row in rows:
        count += 1
        for col, (key, _header) in enumerate(columns, start=1):
            cell = ws.cell(row=count + 1, column=col)
            cell.value = _value(row.get(key))
            if isinstance(cell.value, str):
                cell.data_type = "s"  # text stays text, even "=…"
    if note:
        ws.cell(row=count + 3, column=1, value=note).data_type = "s"
    ws.freeze_panes = "A2"
    for col, (key, _header) in enumerate(columns, start=1):
        letter = ws.cell(row=1, column=col).column_letter
        ws.column_dimensions[letter].width = 40 if key in ("title", "text", "question", "basis") else 18
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


def _value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, list | tuple):
        return "、".join(str(v) for v in value)
    return value
