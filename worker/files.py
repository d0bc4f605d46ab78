"""Reading posts to enqueue or backfill from JSONL or CSV files.

JSONL: one object a line, `{"id": ..., "text": ..., ...}`; other fields become metadata.
CSV: a header row with `id` and `text` columns (names configurable); other columns are metadata.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shared.errors import DatasetError


def read_posts(path: Path, *, id_column: str = "id", text_column: str = "text") -> Iterator[dict[str, Any]]:
    """Yields `{"id", "text", "metadata"}` dicts, unvalidated; line numbers go in errors."""
    suffix = path.suffix.lower()
    if suffix not in {".jsonl", ".ndjson", ".csv"}:
        raise DatasetError(f"{path}: unknown file type {suffix!r}; use .jsonl or .csv")
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        if suffix == ".csv":
            reader = csv.DictReader(handle)
            missing = {id_column, text_column} - set(reader.fieldnames or [])
            if missing:
                raise DatasetError(f"{path}: missing column(s) {sorted(missing)}; "
                                   f"columns present: {reader.fieldnames}")
            for record in reader:
                yield _split(dict(record), id_column, text_column)
            return
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise DatasetError(f"{path}:{number}: expected a JSON object")
            yield _split(record, id_column, text_column)


def _split(record: dict[str, Any], id_column: str, text_column: str) -> dict[str, Any]:
    post_id, text = record.pop(id_column, None), record.pop(text_column, None)
    metadata = record.pop("metadata", None) if isinstance(record.get("metadata"), dict) else None
    metadata = {**(metadata or {}), **record}
    return {"id": post_id, "text": text, "metadata": metadata}
