"""One reader for every file of posts topicq takes: training and evaluation data, enqueue, backfill.

    .csv               a header row, then one post a row
    .jsonl / .ndjson   one JSON object a line (blank lines skipped)
    .json              the same, or one JSON array of objects

Each record comes with the line it ends on, so that errors and duplicate-id
reports can point into the file. Every problem is a DatasetError naming the file.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import DatasetError

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
MAX_LISTED = 10  # lines named in an error message; the rest are counted


def lines_text(lines: list[int]) -> str:
    """`3, 7, 9 and 12 more`: lines for an error message."""
    listed = ", ".join(map(str, lines[:MAX_LISTED]))
    more = f" and {len(lines) - MAX_LISTED} more" if len(lines) > MAX_LISTED else ""
    return f"{listed}{more}"


@dataclass
class PostFile:
    path: Path
    kind: str  # csv or jsonl
    records: list[dict[str, Any]]
    lines: list[int]  # the line each record ends on (an array's records: their position)

    @property
    def columns(self) -> list[str]:
        return list(dict.fromkeys(str(key) for record in self.records for key in record))

    def require_columns(self, **roles: str | None) -> None:
        """Refuse a file that lacks a named column, e.g. require_columns(text="body")."""
        present = self.columns
        missing = [f"{role} column {name!r}" for role, name in roles.items() if name and name not in present]
        if missing:
            raise DatasetError(f"{self.path}: no {' or '.join(missing)}; columns present: "
                               f"{', '.join(present) or '(none)'}")


def read_post_file(path: Path, *, unknown_hint: str = "") -> PostFile:
    """The records of `path`; a missing, unreadable, empty or malformed file is refused.
    `unknown_hint` is added to the message for a path that does not exist."""
    kind = FORMATS.get(path.suffix.lower())
    if not path.exists():
        raise DatasetError(f"no such file: {path}{unknown_hint if kind is None else ''}")
    if kind is None:
        raise DatasetError(f"{path}: unknown file type {path.suffix or '(none)'!r}; "
                           f"use one of {', '.join(sorted(FORMATS))}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # The line, as an editor shows it; exc.start counts after a BOM that utf-8-sig dropped.
        offset = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data.count(b"\n", 0, offset) + 1
        raise DatasetError(f"{path}, line {line}: not UTF-8 text ({exc.reason})") from None
    if not content.strip():
        raise DatasetError(f"{path} is empty")
    records, lines = _csv(content, path) if kind == "csv" else _json(content, path)
    if not records:
        raise DatasetError(f"{path} has a header but no rows" if kind == "csv" else f"{path} holds no rows")
    return PostFile(path, kind, records, lines)


def _csv(content: str, path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    reader = csv.DictReader(io.StringIO(content, newline=""))
    records, lines = [], []
    try:
        for record in reader:
            records.append(dict(record))
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise DatasetError(f"{path}, line {reader.line_num}: not valid CSV ({exc})") from None
    return records, lines


def _json(content: str, path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    if content.lstrip().startswith("["):  # one array of objects
        try:
            records = json.loads(content)
        except ValueError as exc:
            raise DatasetError(f"{path}: not valid JSON ({exc})") from None
        lines = list(range(1, len(records) + 1))
    else:
        records, lines = [], []
        for number, line in enumerate(content.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError as exc:
                    raise DatasetError(f"{path}, line {number}: not valid JSON ({exc})") from None
                lines.append(number)
    bad = [line for line, record in zip(lines, records, strict=True) if not isinstance(record, dict)]
    if bad:
        raise DatasetError(f"{path}: not a JSON object on lines {lines_text(bad)}")
    return records, lines
