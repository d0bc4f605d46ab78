"""Review thresholds set from held-out posts to a rate the user chooses (REVIEW_RATE).

Two scores say a post needs a person: its *uncertainty* (1 - the model's top
probability) and its *distance* from the training posts in embedding space:
1 - cosine similarity to the nearest training post, the unlabeled ones of
self-training included. bench/review.py measures it against the centroid
radius of shared/model/out_of_domain.py and the Mahalanobis distance with a
shared covariance: at each rate it catches more off-topic posts and more
mistakes than either.

Neither score has a threshold fixed in advance. The version keeps both scores
of held-out posts (its test split, never fitted on) and a rate maps to
thresholds there: a post is flagged when either score lies in its top `beta`
share of the held-out posts, with `beta` the largest share whose union flags
at most `rate` of them (split conformal: a quantile at rank ceil((n + 1)(1 - beta))).
New in-domain posts are then flagged at about `rate`.

Saved as REVIEW_FILE beside the model (part of its checksum): the training
posts' unit vectors (float16: half the size, distances to about 1e-3) and the
held-out scores.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REVIEW_FILE = "review.npz"
RATES_SHOWN = (0.05, 0.1, 0.2)  # the rates a model card tabulates


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


@dataclass(frozen=True)
class NearestNeighbour:
    """1 - cosine similarity to the nearest training post (labelled or not): what is far from every
    post seen in training is unlike them, whichever class it would fall in."""

    reference: np.ndarray  # (posts, dim) unit vectors, float32

    @classmethod
    def fit(cls, vectors: np.ndarray) -> NearestNeighbour:
        # Rounded as REVIEW_FILE keeps them (float16), so a loaded version scores as the trainer did.
        return cls(_unit(vectors).astype(np.float16).astype(np.float32))

    def distances(self, vectors: np.ndarray) -> np.ndarray:
        unit = _unit(vectors)
        if len(unit) == 0 or len(self.reference) == 0:
            return np.zeros(len(unit), dtype=np.float32)
        return np.asarray(1.0 - (unit @ self.reference.T).max(axis=1), dtype=np.float32)


def uncertainty(probabilities: np.ndarray) -> np.ndarray:
    """1 - each post's top probability."""
    probabilities = np.asarray(probabilities, dtype=np.float32)
    if len(probabilities) == 0:
        return np.zeros(0, dtype=np.float32)
    return np.asarray(1.0 - probabilities.max(axis=1), dtype=np.float32)


def _upper_quantile(sorted_scores: np.ndarray, share: float) -> float:
    """The score above which at most `share` of future posts lie (split conformal rank)."""
    n = len(sorted_scores)
    rank = math.ceil((n + 1) * (1.0 - share))
    return math.inf if rank > n else float(sorted_scores[max(rank, 1) - 1])


@dataclass(frozen=True)
class Thresholds:
    rate: float
    uncertainty: float  # flagged above (inf: never)
    distance: float  # flagged above (inf: never)
    typical_distance: float  # the held-out median: a domain score of 0

    def domain_scores(self, distances: np.ndarray) -> np.ndarray:
        """Distances in units where 0 is a typical held-out post and 1 the threshold (> 1: out of domain)."""
        span = self.distance - self.typical_distance
        if not math.isfinite(span) or span <= 0:
            return np.zeros(len(distances), dtype=np.float32)
        return np.asarray((distances - self.typical_distance) / span, dtype=np.float32)


@dataclass
class ReviewCalibration:
    distance: NearestNeighbour
    held_uncertainty: np.ndarray  # (n,) of held-out posts, aligned with held_distance
    held_distance: np.ndarray
    held_out: str  # what the held-out posts were, for the model card
    _limits: dict[float, Thresholds] = field(default_factory=dict, repr=False, compare=False)

    @property
    def size(self) -> int:
        return len(self.held_uncertainty)

    def thresholds(self, rate: float) -> Thresholds:
        """The thresholds for `rate`, worked out once per rate (a worker asks per batch)."""
        rate = float(rate)
        if rate not in self._limits:
            self._limits[rate] = _thresholds(self, rate)
        return self._limits[rate]

    def flags(self, probabilities: np.ndarray, vectors: np.ndarray, rate: float,
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per post: uncertain?, its domain score, out of domain? (at `rate`)."""
        limits = self.thresholds(rate)
        scores = limits.domain_scores(self.distance.distances(vectors))
        return uncertainty(probabilities) > limits.uncertainty, scores, scores > 1.0

    def save(self, path: Path) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, reference=self.distance.reference.astype(np.float16),
                 held_uncertainty=self.held_uncertainty, held_distance=self.held_distance,
                 held_out=np.array(self.held_out))
        path.write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> ReviewCalibration:
        with np.load(path, allow_pickle=False) as data:
            distance = NearestNeighbour(np.asarray(data["reference"], dtype=np.float32))
            return cls(distance, np.asarray(data["held_uncertainty"], dtype=np.float32),
                       np.asarray(data["held_distance"], dtype=np.float32), str(data["held_out"]))

    def summary(self, truth: list[str] | None = None, predicted: np.ndarray | None = None,
                rates: tuple[float, ...] = RATES_SHOWN) -> list[dict[str, float | None]]:
        """Per rate: the share of held-out posts flagged, and of the model's mistakes among them (none
        without held-out posts)."""
        if self.size == 0:
            return []
        rows = []
        wrong = None if truth is None or predicted is None else np.asarray(predicted) != np.asarray(truth)
        for rate in rates:
            limits = self.thresholds(rate)
            flagged = (self.held_uncertainty > limits.uncertainty) | (self.held_distance > limits.distance)
            caught = None if wrong is None or not wrong.any() else round(float(flagged[wrong].mean()), 4)
            rows.append({"rate": rate, "flagged": round(float(flagged.mean()), 4), "mistakes_caught": caught,
                         "mistakes": None if wrong is None else int(wrong.sum())})
        return rows


def _thresholds(calibration: ReviewCalibration, rate: float) -> Thresholds:
    """The largest per-score share `beta` whose union flags at most `rate` of the held-out posts."""
    held_u, held_d = calibration.held_uncertainty, calibration.held_distance
    u_sorted, d_sorted = np.sort(held_u), np.sort(held_d)
    typical = float(np.median(d_sorted)) if len(d_sorted) else 0.0
    if not 0.0 < rate < 1.0 or len(u_sorted) == 0:
        return Thresholds(rate, math.inf, math.inf, typical)
    low, high = 0.0, rate
    for _ in range(30):  # bisection on beta: the union's share grows with it
        beta = (low + high) / 2
        share = float(((held_u > _upper_quantile(u_sorted, beta))
                       | (held_d > _upper_quantile(d_sorted, beta))).mean())
        low, high = (beta, high) if share <= rate else (low, beta)
    return Thresholds(rate, _upper_quantile(u_sorted, low), _upper_quantile(d_sorted, low), typical)


def calibrate_review(train_vectors: np.ndarray, held_probabilities: np.ndarray, held_vectors: np.ndarray,
                     held_out: str) -> ReviewCalibration:
    """The distance from the training posts' vectors, and both scores of the held-out posts."""
    distance = NearestNeighbour.fit(train_vectors)
    return ReviewCalibration(distance, uncertainty(held_probabilities), distance.distances(held_vectors),
                             held_out)
