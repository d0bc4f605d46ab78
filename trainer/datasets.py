"""Labelled posts for training and evaluation: 20 Newsgroups, CSV and JSONL files.

Every loader returns a `Dataset` with stable post ids, so the same post keeps
its id across runs (the worker's backfill and the results table rely on it).
Per-class sampling is seeded and deterministic; a class with fewer posts than
asked for is taken whole and reported in `description["short_classes"]`
(a small test split should still be usable, just said out loud).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from shared.errors import DatasetError

log = logging.getLogger(__name__)

NEWSGROUPS = "20newsgroups"
DEFAULT_ID_COLUMN = "id"
TABLE_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
_MAX_LISTED = 10  # rows named in an error message; the rest are counted


@dataclass
class Dataset:
    ids: list[str]
    texts: list[str]
    labels: list[str]
    description: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels))

    def class_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.labels).items()))

    def take(self, indices: Sequence[int] | np.ndarray, **description: Any) -> Dataset:
        """The posts at `indices`, in that order; `description` entries are added."""
        picked = [int(i) for i in indices]
        result = Dataset([self.ids[i] for i in picked], [self.texts[i] for i in picked],
                         [self.labels[i] for i in picked], {**self.description, **description})
        result.description["size"] = len(result)
        result.description["class_counts"] = result.class_counts()
        return result


def sample_per_class(dataset: Dataset, per_class: int, seed: int) -> Dataset:
    """At most `per_class` posts of each class, picked with `seed`, in the dataset's order."""
    if per_class < 1:
        raise DatasetError(f"per-class sample size must be at least 1, not {per_class}")
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[int]] = {}
    for index, label in enumerate(dataset.labels):
        by_class.setdefault(label, []).append(index)
    chosen: list[int] = []
    short: dict[str, int] = {}
    for label in sorted(by_class):
        members = by_class[label]
        if len(members) < per_class:
            short[label] = len(members)
            chosen.extend(members)
        else:
            chosen.extend(rng.choice(members, size=per_class, replace=False).tolist())
    if short:
        log.warning("fewer than %d posts in %s: took all of them", per_class, short)
    return dataset.take(sorted(chosen), per_class=per_class, seed=seed, short_classes=short)


def split(dataset: Dataset, test_size: float, seed: int) -> tuple[Dataset, Dataset]:
    """(train, test), stratified by label so each class keeps its share in both."""
    from sklearn.model_selection import train_test_split

    if not 0 < test_size < 1:
        raise DatasetError(f"test size must be a fraction between 0 and 1, not {test_size}")
    require_posts_for(dataset, (test_size,), seed, f"for a {test_size:g} test split")
    train, test = train_test_split(np.arange(len(dataset)), test_size=test_size, random_state=seed,
                                   stratify=dataset.labels)
    return (dataset.take(sorted(train), split="train", test_size=test_size, seed=seed),
            dataset.take(sorted(test), split="test", test_size=test_size, seed=seed))


def _splits_work(labels: Sequence[str], fractions: Sequence[float], seed: int) -> bool:
    """Whether stratified splits by each fraction in turn, each of what the last one kept, succeed."""
    from sklearn.model_selection import train_test_split

    kept = np.asarray(labels)
    for fraction in fractions:
        try:
            kept, _ = train_test_split(kept, test_size=fraction, random_state=seed, stratify=kept)
        except ValueError:  # a class too small, or fewer held-out posts than classes
            return False
    return True


def posts_per_class_needed(n_classes: int, fractions: Sequence[float]) -> int:
    """The fewest posts per class (every class alike) for which those splits succeed."""
    per_class = 2  # a stratified split needs two posts of a class at the very least
    while not _splits_work([str(c) for c in range(n_classes) for _ in range(per_class)], fractions, 0):
        per_class += 1
    return per_class


def require_posts_for(dataset: Dataset, fractions: Sequence[float], seed: int, purpose: str,
                      why: str = "") -> None:
    """Refuse a dataset too small for stratified splits by `fractions`, saying what each class needs.

    Checked on the real labels with the real seed, so what passes here splits later.
    """
    if _splits_work(dataset.labels, fractions, seed):
        return
    needed = posts_per_class_needed(len(dataset.classes), fractions)
    where = f"{dataset.description['path']}: " if "path" in dataset.description else ""
    counts = ", ".join(f"{label} {count}" for label, count in dataset.class_counts().items())
    because = f" ({why})" if why else ""
    raise DatasetError(f"{where}too few posts {purpose}: each class needs at least {needed}{because}; "
                       f"posts per class: {counts}")


# --- 20 Newsgroups ---------------------------------------------------------------------------

def select_groups(words: tuple[str, ...] | list[str], names: list[str]) -> list[str]:
    """Every group whose name contains any of `words` ("sci" -> the four sci.* groups)."""
    if not words:
        return list(names)
    selected = set()
    for word in words:
        matches = [name for name in names if word.lower() in name]
        if not matches:
            raise DatasetError(f"no 20 Newsgroups group matches {word!r}; groups are: {', '.join(names)}")
        selected.update(matches)
    return [name for name in names if name in selected]


def load_newsgroups(
    *,
    groups: tuple[str, ...] = (),
    subset: Literal["train", "test"] = "train",
    data_home: str | None = None,
    per_class: int | None = None,
    seed: int = 0,
) -> Dataset:
    """The 20 Newsgroups posts of `groups` from scikit-learn's offline cache.

    Ids are "<subset>/<group>/<file number>", e.g. "test/sci.space/61234",
    and posts come sorted by id, whatever order the cache holds them in.
    """
    from sklearn.datasets import fetch_20newsgroups

    if subset not in ("train", "test"):
        raise DatasetError(f"20 Newsgroups subset must be train or test, not {subset!r}")
    home = data_home or os.environ.get("SCIKIT_LEARN_DATA") or None
    try:
        bunch = fetch_20newsgroups(subset=subset, data_home=home, download_if_missing=False,
                                   shuffle=False)
    except OSError as exc:
        where = home or "scikit-learn's default data folder"
        raise DatasetError(f"20 Newsgroups not found in {where} ({exc}); set SCIKIT_LEARN_DATA or "
                           "--data-home to the folder holding 20news-bydate_py3.pkz") from None
    names = list(bunch.target_names)
    wanted = set(select_groups(groups, names))
    rows = []
    for text, target, filename in zip(bunch.data, bunch.target, bunch.filenames, strict=True):
        group = names[target]
        if group in wanted:
            number = Path(filename).name
            rows.append((group, int(number) if number.isdigit() else 0, number, text))
    rows.sort()
    dataset = Dataset(
        ids=[f"{subset}/{group}/{number}" for group, _, number, _ in rows],
        texts=[text for *_, text in rows],
        labels=[group for group, *_ in rows],
        description={"source": NEWSGROUPS, "subset": subset, "groups": sorted(wanted)},
    )
    dataset = dataset.take(range(len(dataset)))  # fills size and class counts
    return dataset if per_class is None else sample_per_class(dataset, per_class, seed)


# --- CSV / JSONL -----------------------------------------------------------------------------

def _rows_text(rows: list[int]) -> str:
    listed = ", ".join(map(str, rows[:_MAX_LISTED]))
    more = f" and {len(rows) - _MAX_LISTED} more" if len(rows) > _MAX_LISTED else ""
    return f"{listed}{more}"


def _read_records(path: Path) -> tuple[list[dict[str, Any]], str]:
    kind = TABLE_FORMATS.get(path.suffix.lower())
    if not path.exists():
        # Most often a misspelt built-in dataset name (a file name has a known suffix).
        named = "" if kind else f"; the built-in dataset is named {NEWSGROUPS!r}"
        raise DatasetError(f"no such file: {path}{named}")
    if kind is None:
        raise DatasetError(f"{path}: unknown file type {path.suffix or '(none)'!r}; "
                           f"use one of {', '.join(sorted(TABLE_FORMATS))}")
    try:
        content = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not content.strip():
        raise DatasetError(f"{path} is empty")
    if kind == "csv":
        try:
            return list(csv.DictReader(io.StringIO(content, newline=""))), kind
        except csv.Error as exc:
            raise DatasetError(f"{path}: not valid CSV ({exc})") from None
    if content.lstrip().startswith("["):  # a .json file holding one array of objects
        try:
            records = json.loads(content)
        except ValueError as exc:
            raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    else:
        records = []
        for number, line in enumerate(content.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError as exc:
                    raise DatasetError(f"{path}, line {number}: not valid JSON ({exc})") from None
    bad = [n for n, record in enumerate(records, start=1) if not isinstance(record, dict)]
    if bad:
        raise DatasetError(f"{path}: rows {_rows_text(bad)} are not JSON objects")
    return records, kind


def _column(records: list[dict[str, Any]], name: str, role: str, path: Path) -> list[Any]:
    present = list(dict.fromkeys(key for record in records for key in record))
    if name not in present:
        raise DatasetError(f"{path}: no {role} column {name!r}; columns present: "
                           f"{', '.join(map(str, present)) or '(none)'}")
    return [record.get(name) for record in records]


def _stable_ids(texts: list[str]) -> list[str]:
    """sha256 of the text (16 hex digits); repeated texts get -2, -3, ... in file order."""
    seen: Counter[str] = Counter()
    ids = []
    for text in texts:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        seen[digest] += 1
        ids.append(digest if seen[digest] == 1 else f"{digest}-{seen[digest]}")
    return ids


def load_table(
    path: str | Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    id_column: str | None = DEFAULT_ID_COLUMN,
) -> Dataset:
    """Labelled posts from a .csv, .jsonl or .json (lines or one array) file.

    Rows are numbered from 1 (the first data row, after a CSV header). Ids
    come from `id_column` when the file has it (a column named explicitly
    must exist), else from a hash of the text.
    """
    path = Path(path)
    records, kind = _read_records(path)
    if not records:
        raise DatasetError(f"{path} has a header but no rows" if kind == "csv" else f"{path} holds no rows")
    texts = _column(records, text_column, "text", path)
    labels = _column(records, label_column, "label", path)
    not_strings = [n for n, text in enumerate(texts, start=1) if not isinstance(text, str)]
    if not_strings:
        raise DatasetError(f"{path}: text in rows {_rows_text(not_strings)} is not a string")
    blank = [n for n, text in enumerate(texts, start=1) if not text.strip()]
    if blank:
        raise DatasetError(f"{path}: text is empty in rows {_rows_text(blank)}")
    no_label = [n for n, label in enumerate(labels, start=1)
                if label is None or isinstance(label, (dict, list)) or not str(label).strip()]
    if no_label:
        raise DatasetError(f"{path}: label is missing or not a single value in rows {_rows_text(no_label)}")
    labels = [str(label).strip() for label in labels]
    if len(set(labels)) < 2:
        raise DatasetError(f"{path}: needs at least two classes in {label_column!r}, "
                           f"found {sorted(set(labels))}")
    ids = _ids(records, id_column, texts, path)
    dataset = Dataset(ids, texts, labels, {
        "source": "file", "path": str(path.resolve()), "format": kind,
        "text_column": text_column, "label_column": label_column,
    })
    return dataset.take(range(len(dataset)))


def _ids(records: list[dict[str, Any]], id_column: str | None, texts: list[str], path: Path) -> list[str]:
    has_column = id_column is not None and any(id_column in record for record in records)
    if id_column is None or (not has_column and id_column == DEFAULT_ID_COLUMN):
        return _stable_ids(texts)
    values = _column(records, id_column, "id", path)
    ids = ["" if value is None else str(value).strip() for value in values]
    empty = [n for n, value in enumerate(ids, start=1) if not value]
    if empty:
        raise DatasetError(f"{path}: id is empty in rows {_rows_text(empty)}")
    repeated = sorted(value for value, count in Counter(ids).items() if count > 1)
    if repeated:
        raise DatasetError(f"{path}: ids must be unique; repeated: {', '.join(repeated[:_MAX_LISTED])}")
    return ids
