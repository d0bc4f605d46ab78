"""The results upsert on PostgreSQL: one statement of column arrays, whatever the batch size.

A multi-row VALUES statement has a different text for every batch size and
thousands of placeholders, which the driver parses again on every write (it
was most of a write's CPU). Here each column travels as one array and
`unnest` turns them back into rows, so the statement text never changes: the
driver parses it once and PostgreSQL prepares it. Same rule as the SQLite
statement in shared/database/results.py: a `done` row is never overwritten,
and the keys written come back.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import TextClause, text

# Column, its array type. The JSON columns travel as text and are cast per element.
COLUMNS = (
    ("post_id", "varchar"), ("model_name", "varchar"), ("model_version", "integer"),
    ("status", "varchar"), ("label", "varchar"), ("score", "float8"), ("scores", "text"),
    ("embedder_id", "varchar"), ("error", "text"), ("attempts", "integer"), ("metadata", "text"),
    ("text", "text"), ("received_at", "timestamptz"), ("processed_at", "timestamptz"),
    ("batch_id", "varchar"), ("needs_review", "boolean"), ("review_reason", "varchar"),
    ("margin", "float8"), ("domain_score", "float8"), ("shadow", "boolean"),
)
JSON_COLUMNS = frozenset({"scores", "metadata"})
KEY = ("post_id", "model_name", "model_version")


def _statement() -> TextClause:
    names = [name for name, _ in COLUMNS]
    arrays = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in COLUMNS)
    picked = ", ".join(f"u.{name}::json" if name in JSON_COLUMNS else f"u.{name}" for name in names)
    updated = ", ".join(f"{name} = EXCLUDED.{name}" for name in names if name not in KEY)
    return text(
        f"INSERT INTO results ({', '.join(names)}) "
        f"SELECT {picked} FROM unnest({arrays}) AS u({', '.join(names)}) "
        f"ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET {updated} "
        "WHERE results.status <> 'done' "
        f"RETURNING {', '.join(KEY)}")


STATEMENT = _statement()


def _utc(value: datetime | None) -> datetime | None:
    # One array holds one kind of timestamp: a naive time is taken as UTC, as the column reads it back.
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def column_arrays(values: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The statement's parameters: one list per column, the rows in order."""
    arrays: dict[str, list[Any]] = {}
    for name, kind in COLUMNS:
        column = [row[name] for row in values]
        if name in JSON_COLUMNS:
            column = [_json(v) for v in column]
        elif kind == "timestamptz":
            column = [_utc(v) for v in column]
        elif name == "status":
            column = [str(v) for v in column]  # a Status is a StrEnum: its value, never its name
        arrays[name] = column
    return arrays
