"""Call records and audit events as CSV or JSON Lines, one chunk of text per batch of rows
(``records.batches``), so a response can stream a million rows in constant memory.

CSV cells that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``,
a tab or a carriage return; OWASP "CSV Injection") get a leading ``'``: the log holds names
and error text that agents and remote servers chose.
"""

import csv
import io
import json
from collections.abc import Iterable, Iterator
from enum import StrEnum

from ..models import AuditEvent, CallRecord

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

CALL_COLUMNS = (
    "id", "at", "request_id", "agent_id", "agent_name", "key_id", "key_label", "operator_name",
    "connector_id", "connector_name", "kind", "tool", "upstream_tool", "era", "outcome",
    "total_ms", "upstream_ms", "request_bytes", "response_bytes", "error", "arguments",
)  # fmt: skip
AUDIT_COLUMNS = (
    "id", "at", "admin_name", "actor_role", "address", "action", "target_type", "target_id",
    "target_name", "details",
)  # fmt: skip
COLUMNS = {CallRecord: CALL_COLUMNS, AuditEvent: AUDIT_COLUMNS}


class Format(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


MEDIA_TYPES = {Format.CSV: "text/csv; charset=utf-8", Format.JSONL: "application/jsonl"}


def row_dict(row, columns: Iterable[str]) -> dict:
    """The row's columns as JSON-ready values (times as ISO 8601 in UTC)."""
    values = {}
    for name in columns:
        value = getattr(row, name)
        values[name] = value.isoformat() if hasattr(value, "isoformat") else value
    return values


def neutralise(cell: str) -> str:
    """``cell`` as a spreadsheet shows it but never evaluates it."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, str):
        return neutralise(value)
    return str(value)


def encode(batches: Iterable[list], model, fmt: Format) -> Iterator[str]:
    """The text of the export: for CSV a header line first (even with no rows), then one
    chunk per batch."""
    columns = COLUMNS[model]
    if fmt == Format.CSV:
        yield _csv_text([columns])
        for rows in batches:
            yield _csv_text([_csv_cell(v) for v in row_dict(r, columns).values()] for r in rows)
        return
    for rows in batches:
        lines = (json.dumps(row_dict(r, columns), ensure_ascii=False) for r in rows)
        yield "".join(line + "\n" for line in lines)


def _csv_text(lines) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(lines)
    return buffer.getvalue()
