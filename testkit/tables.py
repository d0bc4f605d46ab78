"""Labelled posts (testkit.factories) written as the files `topicq train --dataset FILE` reads."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from testkit.factories import labelled_posts


def post_rows(per_topic: int = 30, seed: int = 0) -> list[dict[str, Any]]:
    return [{"id": i, "text": text, "label": label} for i, text, label in labelled_posts(per_topic, seed)]


def write_table(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Rows as CSV or JSON lines, chosen by the file's suffix."""
    if path.suffix == ".csv":
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path
