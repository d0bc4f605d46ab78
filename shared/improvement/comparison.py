"""Two versions of one model side by side, on the posts both classified; and the promotion guards.

Everything comes from the results table: the `done` rows of each version
(written by workers serving it, e.g. under a staging alias, or by a shadow
run), and the corrections of the model name. Agreement, the label-by-label
confusion and the mean confidence are over the posts both versions classified
(`since`: rows processed at or after it); accuracy on corrected posts is over
the corrected posts each version classified, leaving out those it was
trained on (`train --with-corrections`: they would flatter it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from shared.database.connection import Db, transaction
from shared.database.results import Status
from shared.database.tables import Correction, Result


@dataclass(frozen=True)
class Reviewed:
    n: int  # corrected posts this version classified (and was not trained on)
    correct: int
    trained_on: int = 0  # corrected posts it classified but was trained on: left out

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.n if self.n else None


@dataclass
class Comparison:
    name: str
    a: int
    b: int
    since: datetime | None
    common: int  # posts with a done row of both versions
    agreement: float | None
    labels: list[str]  # rows of `confusion`: A's label; columns: B's label
    confusion: list[list[int]]
    mean_confidence: dict[str, float | None]  # "a", "b": mean top score on the common posts
    reviewed: dict[str, Reviewed] = field(default_factory=dict)  # "a", "b"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["since"] = self.since.isoformat() if self.since else None
        data["reviewed"] = {key: {"n": r.n, "correct": r.correct, "accuracy": r.accuracy,
                                  "trained_on": r.trained_on}
                            for key, r in self.reviewed.items()}
        return data


def _labels_of(db: Db, name: str, version: int, since: datetime | None) -> dict[str, tuple[str, float]]:
    query = select(Result.post_id, Result.label, Result.score).where(
        Result.model_name == name, Result.model_version == version, Result.status == Status.DONE.value)
    if since is not None:
        query = query.where(Result.processed_at >= since)
    with transaction(db) as session:
        return {post_id: (str(label), float(score or 0.0))
                for post_id, label, score in session.execute(query)}


def _corrected(db: Db, name: str) -> dict[str, str]:
    with transaction(db) as session:
        return dict(session.execute(select(Correction.post_id, Correction.label)
                                    .where(Correction.model_name == name)).all())


def _reviewed(rows: dict[str, tuple[str, float]], truth: dict[str, str], trained_on: set[str]) -> Reviewed:
    classified = [post_id for post_id in truth if post_id in rows]
    seen = [post_id for post_id in classified if post_id not in trained_on]
    return Reviewed(len(seen), sum(rows[post_id][0] == truth[post_id] for post_id in seen),
                    len(classified) - len(seen))


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def compare_versions(db: Db, *, name: str, a: int, b: int, since: datetime | None = None,
                     trained_on: dict[int, set[str]] | None = None) -> Comparison:
    """`trained_on`: per version, the corrected post ids it was trained on (left out of its accuracy)."""
    trained_on = trained_on or {}
    rows_a, rows_b = _labels_of(db, name, a, since), _labels_of(db, name, b, since)
    common = sorted(set(rows_a) & set(rows_b))
    labels = sorted({rows_a[p][0] for p in common} | {rows_b[p][0] for p in common})
    index = {label: i for i, label in enumerate(labels)}
    confusion = [[0] * len(labels) for _ in labels]
    for post_id in common:
        confusion[index[rows_a[post_id][0]]][index[rows_b[post_id][0]]] += 1
    agree = sum(rows_a[p][0] == rows_b[p][0] for p in common)
    truth = _corrected(db, name)
    return Comparison(
        name=name, a=a, b=b, since=since, common=len(common),
        agreement=agree / len(common) if common else None, labels=labels, confusion=confusion,
        mean_confidence={"a": _mean([rows_a[p][1] for p in common]),
                         "b": _mean([rows_b[p][1] for p in common])},
        reviewed={"a": _reviewed(rows_a, truth, trained_on.get(a, set())),
                  "b": _reviewed(rows_b, truth, trained_on.get(b, set()))},
    )


def guard_failures(comparison: Comparison, *, require_agreement: float | None,
                   require_reviewed_accuracy: float | None) -> list[str]:
    """Why promoting version `b` over `a` is refused (empty: every guard passes)."""
    name, a, b = comparison.name, comparison.a, comparison.b
    failures = []
    if require_agreement is not None:
        if comparison.agreement is None:
            failures.append(f"no post was classified by both {name}:{a} and {name}:{b}, so their agreement "
                            f"is unknown (required {require_agreement:g})")
        elif comparison.agreement < require_agreement:
            failures.append(f"{name}:{b} agrees with {name}:{a} on {comparison.agreement:.3f} of "
                            f"{comparison.common} posts, below the required {require_agreement:g}")
    if require_reviewed_accuracy is not None:
        reviewed = comparison.reviewed["b"]
        if reviewed.accuracy is None:
            trained = f" (trained on {reviewed.trained_on} it classified)" if reviewed.trained_on else ""
            failures.append(f"{name}:{b} has classified none of the corrected posts it was not trained on"
                            f"{trained}, so its reviewed accuracy is unknown (required "
                            f"{require_reviewed_accuracy:g})")
        elif reviewed.accuracy < require_reviewed_accuracy:
            failures.append(f"{name}:{b} is right on {reviewed.correct} of {reviewed.n} corrected posts "
                            f"({reviewed.accuracy:.3f}), below the required {require_reviewed_accuracy:g}")
    return failures
