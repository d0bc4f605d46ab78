"""Labelled posts for training and evaluation: 20 Newsgroups, CSV and JSONL files.

Every loader returns a `Dataset` with stable post ids, so the same post keeps
its id across runs (the worker's backfill and the results table rely on it).
Per-class sampling is seeded and deterministic; a class with fewer posts than
asked for is taken whole and reported in `description["short_classes"]`
(a small test split should still be usable, just said out loud).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from shared.errors import DatasetError
from shared.post_files import MAX_LISTED, PostFile, lines_text, read_post_file

log = logging.getLogger(__name__)

NEWSGROUPS = "20newsgroups"
DEFAULT_ID_COLUMN = "id"


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

def _file_ids(source: PostFile, id_column: str, refuse: Callable[[list[bool], str], None]) -> list[str]:
    """The ids of `id_column` (which must exist when named explicitly), each given and unique."""
    source.require_columns(id=id_column)
    ids = ["" if record.get(id_column) is None else str(record.get(id_column)).strip()
           for record in source.records]
    refuse([not value for value in ids], "id is empty")
    repeated = sorted(value for value, count in Counter(ids).items() if count > 1)
    if repeated:
        raise DatasetError(f"{source.path}: ids must be unique; repeated: {', '.join(repeated[:MAX_LISTED])}")
    return ids


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

    Errors name the file's lines. Ids come from `id_column` when the file has
    it (a column named explicitly must exist), else from a hash of the text.
    """
    path = Path(path)
    source = read_post_file(path, unknown_hint=f"; the built-in dataset is named {NEWSGROUPS!r}")
    source.require_columns(text=text_column, label=label_column)

    def refuse(where: list[bool], what: str) -> None:
        lines = [line for line, bad in zip(source.lines, where, strict=True) if bad]
        if lines:
            raise DatasetError(f"{path}: {what} on lines {lines_text(lines)}")

    raw_texts = [record.get(text_column) for record in source.records]
    raw_labels = [record.get(label_column) for record in source.records]
    refuse([not isinstance(text, str) for text in raw_texts], "text is not a string")
    texts: list[str] = raw_texts  # type: ignore[assignment]  # all strings, checked above
    refuse([not text.strip() for text in texts], "text is empty")
    refuse([label is None or isinstance(label, dict | list) or not str(label).strip()
            for label in raw_labels], "label is missing or not a single value")
    labels = [str(label).strip() for label in raw_labels]
    if len(set(labels)) < 2:
        raise DatasetError(f"{path}: needs at least two classes in {label_column!r}, "
                           f"found {sorted(set(labels))}")
    named = id_column is not None and (id_column != DEFAULT_ID_COLUMN or id_column in source.columns)
    ids = _file_ids(source, id_column, refuse) if named and id_column else _stable_ids(texts)
    dataset = Dataset(ids, texts, labels, {
        "source": "file", "path": str(path.resolve()), "format": source.kind,
        "text_column": text_column, "label_column": label_column,
    })
    return dataset.take(range(len(dataset)))
