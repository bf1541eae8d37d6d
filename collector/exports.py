"""Predictions as CSV or JSON Lines, streamed in id order one chunk at a time (memory stays bounded)."""

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from django.db.models import QuerySet

FORMATS = ("csv", "jsonl")
FIELDS = [
    "id", "model", "version", "event_id", "created_at", "input", "prediction", "actual", "is_correct", "error",
    "training_label", "latency_ms", "confidence", "interaction_id", "attributes", "source",
]  # fmt: skip
_JSON_FIELDS = {"input", "prediction", "actual", "training_label", "attributes"}
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def export_rows(predictions: QuerySet, *, chunk_size: int = 2000) -> Iterator[dict[str, Any]]:
    """Rows of `predictions` by ascending id, fetched chunk by chunk (keyset pagination, no OFFSET)."""
    rows = predictions.select_related("registered_model", "model_version").order_by("pk")
    last_id = 0
    while True:
        chunk = list(rows.filter(pk__gt=last_id)[:chunk_size])
        if not chunk:
            return
        for row in chunk:
            yield {
                "id": row.pk,
                "model": row.registered_model.name,
                "version": row.model_version.version,
                "event_id": row.event_id,
                "created_at": row.created_at.isoformat(),
                "input": row.input,
                "prediction": row.prediction,
                "actual": row.actual,
                "is_correct": row.is_correct,
                "error": row.error,
                "training_label": row.training_label,
                "latency_ms": row.latency_ms,
                "confidence": row.confidence,
                "interaction_id": row.interaction_id,
                "attributes": row.attributes,
                "source": row.source,
            }
        last_id = chunk[-1].pk


def jsonl_lines(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    for row in rows:
        yield json.dumps(row, ensure_ascii=False) + "\n"


def _csv_cell(name: str, value: Any) -> Any:
    if name in _JSON_FIELDS:
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        # A spreadsheet would run it as a formula.
        return "'" + value
    return "" if value is None else value


def csv_lines(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(FIELDS)
    for row in rows:
        writer.writerow([_csv_cell(name, row[name]) for name in FIELDS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.getvalue():
        yield buffer.getvalue()


def export_lines(format_name: str, rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    return csv_lines(rows) if format_name == "csv" else jsonl_lines(rows)
