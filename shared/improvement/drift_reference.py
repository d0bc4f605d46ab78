"""A version's drift reference: what its live rows are compared with (`topicq drift`).

Written at training time beside model.json as reference.json, from the version's
own predictions on its held-out test split: the predicted-label distribution,
the mean top probability, the embedding centroid and spread, and (once the review
queue defines them) the shares flagged for review and out of domain. It is a
report on the version, not part of what serves: the checksum does not cover it,
and versions saved without one load and serve as before (drift then says so).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from shared.errors import ModelError

REFERENCE_FILE = "reference.json"


@dataclass
class Reference:
    posts: int  # test posts it was computed on
    label_shares: dict[str, float]  # predicted label -> share of the test posts
    mean_confidence: float  # mean top probability
    centroid: list[float]  # mean embedding
    spread: float  # root mean squared distance of the embeddings to the centroid
    review_share: float | None = None  # flagged for review (None: not measured)
    out_of_domain_share: float | None = None


def compute_reference(probabilities: np.ndarray, labels: list[str], vectors: np.ndarray, *,
                      review_share: float | None = None,
                      out_of_domain_share: float | None = None) -> Reference:
    """The reference of a version from its class probabilities (columns in `labels` order) and the
    embeddings of the same posts."""
    predicted = probabilities.argmax(axis=1)
    counts = np.bincount(predicted, minlength=len(labels))
    vectors = np.asarray(vectors, dtype=np.float64)
    centroid = vectors.mean(axis=0)
    spread = float(np.sqrt(max(0.0, float((vectors ** 2).sum(axis=1).mean() - centroid @ centroid))))
    shares = {label: float(count) / len(vectors) for label, count in zip(labels, counts, strict=True)}
    return Reference(posts=len(vectors), label_shares=shares,
                     mean_confidence=float(probabilities.max(axis=1).mean()), centroid=centroid.tolist(),
                     spread=spread, review_share=review_share, out_of_domain_share=out_of_domain_share)


def save_reference(directory: Path, reference: Reference) -> None:
    (directory / REFERENCE_FILE).write_text(json.dumps(asdict(reference)) + "\n")


def load_reference(directory: Path) -> Reference | None:
    """The version's reference, or None for a version saved before references existed."""
    path = directory / REFERENCE_FILE
    if not path.exists():
        return None
    try:
        return Reference(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from None
