"""Posts to enqueue or backfill, from a file (shared/post_files.py reads it).

Each record gives a post: its `id` and `text` columns (names configurable); the other fields,
and the fields of a `metadata` object, become its metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.errors import DatasetError
from shared.post_files import read_post_file

MAX_LISTED = 5  # duplicate ids named in an error; the rest are counted


def read_posts(path: Path, *, id_column: str = "id", text_column: str = "text") -> list[dict[str, Any]]:
    """`{"id", "text", "metadata", "line"}` dicts, unvalidated (each post is checked when it is sent)."""
    source = read_post_file(path)
    source.require_columns(id=id_column, text=text_column)
    return [_split(dict(record), line, id_column, text_column)
            for record, line in zip(source.records, source.lines, strict=True)]


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
