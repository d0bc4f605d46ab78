"""What the CLI prints from data that producers control (post ids, texts, reasons, metadata, labels).

- Terminal lines: `printable` escapes control characters, so a post id cannot clear the
  operator's line, write the clipboard (OSC 52) or reorder text (bidi overrides).
- JSON lines: `json_line` keeps JSON valid and escapes the same characters as \\uXXXX.
- CSV: `write_csv` quotes every cell and prefixes a single quote to a cell starting with
  = + - @ TAB or CR (OWASP's advice against formula injection); `csv_value` reads such a
  cell back (`topicq review import` of a `review export`).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Mapping
from typing import IO, Any

# C0 controls, DEL, C1 controls, and the bidi marks, embeddings, overrides and isolates.
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
_UNSAFE_KEEP_NEWLINES = re.compile(f"[\x00-\x09\x0b-\x1f\x7f-\x9f{_BIDI}]")
_JSON_UNSAFE = re.compile(f"[\x7f-\x9f{_BIDI}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object) -> str:
    """`value` as text with every control character shown as \\xNN or \\uNNNN (newlines too)."""
    return _UNSAFE.sub(_escape, "" if value is None else str(value))


def printable_lines(text: str) -> str:
    """Like `printable`, but the newlines of a multi-line text the CLI composed stay newlines."""
    return _UNSAFE_KEEP_NEWLINES.sub(_escape, text)


def json_line(value: Any, **options: Any) -> str:
    """json.dumps, with DEL, C1 controls and bidi marks escaped too (json escapes C0 itself)."""
    text = json.dumps(value, ensure_ascii=False, **options)
    # These characters can only stand inside JSON strings, where \\uXXXX means the same character.
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _looks_escaped(text: str) -> bool:
    return text.startswith("'") and text.lstrip("'").startswith(FORMULA_STARTS)


def csv_cell(value: object) -> object:
    """A cell a spreadsheet shows as text, never runs. Quotes are added so that `csv_value` undoes
    exactly this: a cell that already looks escaped ('=...) gets one more quote too."""
    if not isinstance(value, str):
        return value
    if value.startswith(FORMULA_STARTS) or _looks_escaped(value):
        return "'" + value
    return value


def csv_value(text: str) -> str:
    """The value `csv_cell` wrote as `text`."""
    return text[1:] if _looks_escaped(text) else text


def write_csv(stream: IO[str], columns: list[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """A header and `rows` (their `columns` only), every cell quoted and neutralised by `csv_cell`."""
    writer = csv.writer(stream, quoting=csv.QUOTE_ALL)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else csv_cell(row.get(c)) for c in columns])
