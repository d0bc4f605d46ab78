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

MAX_LISTED = 5  # duplicate ids named in an error; the rest are counted


def read_posts(path: Path, *, id_column: str = "id", text_column: str = "text") -> list[dict[str, Any]]:
    """`{"id", "text", "metadata", "line"}` dicts, unvalidated; a file without posts is refused."""
    suffix = path.suffix.lower()
    if suffix not in {".jsonl", ".ndjson", ".csv"}:
        raise DatasetError(f"{path}: unknown file type {suffix or '(none)'!r}; use .jsonl or .csv")
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        records = _csv_records(handle, path, id_column, text_column) if suffix == ".csv" \
            else _jsonl_records(handle, path)
        posts = [_split(record, line, id_column, text_column) for line, record in records]
    if not posts:
        raise DatasetError(f"{path} has no posts")
    return posts


def _csv_records(handle: Any, path: Path, id_column: str, text_column: str) -> Iterator[tuple[int, dict]]:
    reader = csv.DictReader(handle)
    if reader.fieldnames is None:
        raise DatasetError(f"{path} is empty: expected a header row with columns "
                           f"{id_column!r} and {text_column!r}")
    missing = {id_column, text_column} - set(reader.fieldnames)
    if missing:
        raise DatasetError(f"{path}: missing column(s) {sorted(missing)}; "
                           f"columns present: {reader.fieldnames}")
    for record in reader:
        yield reader.line_num, dict(record)


def _jsonl_records(handle: Any, path: Path) -> Iterator[tuple[int, dict]]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise DatasetError(f"{path}:{number}: expected a JSON object")
        yield number, record


def _split(record: dict[str, Any], line: int, id_column: str, text_column: str) -> dict[str, Any]:
    post_id, text = record.pop(id_column, None), record.pop(text_column, None)
    metadata = record.pop("metadata", None) if isinstance(record.get("metadata"), dict) else None
    metadata = {**(metadata or {}), **record}
    return {"id": post_id, "text": text, "metadata": metadata, "line": line}


def last_post_per_id(posts: list[dict[str, Any]], *, source: str,
                     allow_duplicates: bool) -> tuple[list[dict[str, Any]], int]:
    """The posts with each id once, and how many were dropped.

    Two posts under one id would share one result row, so one of them would be
    lost silently: refused, unless allowed, and then only the last one is kept.
    """
    lines: dict[str, list[int]] = {}
    for position, post in enumerate(posts, start=1):
        if post.get("id") is not None:
            lines.setdefault(str(post["id"]), []).append(post.get("line", position))
    repeated = {post_id: found for post_id, found in lines.items() if len(found) > 1}
    if not repeated:
        return posts, 0
    if not allow_duplicates:
        raise DatasetError(_duplicates_message(source, repeated))
    last = {str(post["id"]): index for index, post in enumerate(posts) if post.get("id") is not None}
    kept = [post for index, post in enumerate(posts)
            if post.get("id") is None or last[str(post["id"])] == index]
    return kept, len(posts) - len(kept)


def _duplicates_message(source: str, repeated: dict[str, list[int]]) -> str:
    listed = "; ".join(f"{post_id!r} (lines {', '.join(map(str, found))})"
                       for post_id, found in list(repeated.items())[:MAX_LISTED])
    more = f" and {len(repeated) - MAX_LISTED} more" if len(repeated) > MAX_LISTED else ""
    return (f"{source}: {len(repeated)} ids appear more than once, and one result row per id would "
            f"keep only one of their posts: {listed}{more}. Nothing was sent; give each post its own "
            "id, or --allow-duplicates to send only the last post of each id")
