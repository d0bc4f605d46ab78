"""Review thresholds set from held-out posts to a rate the user chooses (REVIEW_RATE).

Two scores say a post needs a person: its *uncertainty* (1 - the model's top
probability) and its *distance* from the training posts in embedding space:
1 - cosine similarity to the nearest training post of the class the model gave
it (the unlabeled posts of self-training included, under the class the model
gives them), both taken from the training posts' mean vector (sentence
embeddings share one large direction, which made every post look near some
training post). A post near the posts of another class than its own is likely
a mistake; one far from all of them, off topic. bench/review.py measures it
against the nearest post of any class, the centroid radius of
shared/model/out_of_domain.py and the Mahalanobis distance with a shared
covariance: at each rate it catches more mistakes than any, and about as many
off-topic posts as the nearest post of any class.

Neither score has a threshold fixed in advance. The version keeps both scores
of held-out posts (its test split, never fitted on). Each score of a new post
becomes a conformal p-value against the held-out scores (the share of them at
least as high), and the two are joined by Fisher's rule: the *evidence*
log p_u + log p_d. A post is flagged when its evidence lies below the `rate`
quantile of the held-out posts' own (split conformal: rank ceil((n + 1)(1 - rate))),
so new in-domain posts are flagged at about `rate`. A post somewhat unsure and
somewhat far is flagged though neither score alone would flag it; on the sci
model this catches more mistakes and more off-topic posts at every rate than
flagging a post when either score passes a threshold of its own.

Saved as REVIEW_FILE beside the model (part of its checksum): the training
posts' centred unit vectors (float16: half the size, distances to about 1e-3),
their classes, their centre and the held-out scores. A file without classes or
a centre (versions trained before they were kept) measures from every training
post, or plain cosine distances, as it was calibrated.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from functools import cached_property
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
    """1 - cosine similarity to the nearest training post (labelled or not) of the class a post was given,
    both taken from `centre`: what is far from every post of its class is unlike them, a mistake or off
    topic."""

    reference: np.ndarray  # (posts, dim) unit vectors of the centred training posts, float32
    centre: np.ndarray  # (dim,) the training posts' mean unit vector (zeros: plain cosine)
    classes: np.ndarray | None = None  # (posts,) each one's class index (None: measured from every post)

    @classmethod
    def fit(cls, vectors: np.ndarray, classes: np.ndarray | None = None) -> NearestNeighbour:
        unit = _unit(vectors)
        centre = unit.mean(axis=0) if len(unit) else np.zeros(unit.shape[1], dtype=np.float32)
        # Rounded as REVIEW_FILE keeps them (float16), so a loaded version scores as the trainer did.
        return cls(_unit(unit - centre).astype(np.float16).astype(np.float32), centre.astype(np.float32),
                   None if classes is None else np.asarray(classes, dtype=np.int32))

    @cached_property
    def _by_class(self) -> dict[int, np.ndarray]:
        """The reference rows of each class, apart: a post is compared with its class's only."""
        if self.classes is None:
            return {}
        return {int(c): np.ascontiguousarray(self.reference[self.classes == c])
                for c in np.unique(self.classes)}

    def distances(self, vectors: np.ndarray, predicted: np.ndarray | None = None) -> np.ndarray:
        """Each post's distance, from the posts of its `predicted` class index when given and known."""
        unit = _unit(vectors)
        if len(unit) == 0 or len(self.reference) == 0:
            return np.zeros(len(unit), dtype=np.float32)
        centred = _unit(unit - self.centre)
        if self.classes is None or predicted is None:
            return 1.0 - _most_similar(centred, self.reference)
        predicted = np.asarray(predicted)
        nearest = np.empty(len(unit), dtype=np.float32)
        for c in np.unique(predicted):
            rows = np.flatnonzero(predicted == c)
            own = self._by_class.get(int(c))  # a class without training posts: any post
            nearest[rows] = _most_similar(centred[rows], own if own is not None else self.reference)
        return 1.0 - nearest


def _most_similar(posts: np.ndarray, reference: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Each post's largest dot product with a reference row, `chunk` posts at a time: a trainer's test
    split against its training posts would otherwise take posts x reference floats at once."""
    parts = [(posts[i:i + chunk] @ reference.T).max(axis=1) for i in range(0, len(posts), chunk)]
    return np.concatenate(parts).astype(np.float32)


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


def _log_p_values(sorted_held: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """log of each new score's conformal p-value: (1 + held scores at least as high) / (n + 1)."""
    n = len(sorted_held)
    at_least = n - np.searchsorted(sorted_held, scores, side="left")
    return np.log((1.0 + at_least) / (n + 1.0))


def _held_log_p_values(sorted_held: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The same for the held-out posts themselves, each against the others."""
    n = len(sorted_held)
    at_least = n - np.searchsorted(sorted_held, scores, side="left")  # itself included
    return np.log(at_least / float(n))


@dataclass(frozen=True)
class Thresholds:
    rate: float
    evidence: float  # flagged below it: log p_u + log p_d (-inf: never)
    uncertainty: float  # beyond it the uncertainty alone flags a post (inf: never)
    distance: float  # beyond it the distance alone flags a post (inf: never)
    typical_distance: float  # the held-out median: a domain score of 0

    def domain_scores(self, distances: np.ndarray) -> np.ndarray:
        """Distances in units where 0 is a typical held-out post and 1 the distance that alone flags a post
        (> 1: out of domain)."""
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

    @cached_property
    def _sorted(self) -> tuple[np.ndarray, np.ndarray]:
        return np.sort(self.held_uncertainty), np.sort(self.held_distance)

    def evidence(self, uncertainties: np.ndarray, distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per post, the log p-values of its uncertainty and of its distance against the held-out posts."""
        u_sorted, d_sorted = self._sorted
        return _log_p_values(u_sorted, uncertainties), _log_p_values(d_sorted, distances)

    def thresholds(self, rate: float) -> Thresholds:
        """The thresholds for `rate`, worked out once per rate (a worker asks per batch)."""
        rate = float(rate)
        if rate not in self._limits:
            self._limits[rate] = _thresholds(self, rate)
        return self._limits[rate]

    def flagged_by_scores(self, uncertainties: np.ndarray, distances: np.ndarray, rate: float) -> np.ndarray:
        """Whether each post with these scores is flagged at `rate`."""
        log_u, log_d = self.evidence(uncertainties, distances)
        return np.asarray(log_u + log_d < self.thresholds(rate).evidence)

    def flags(self, probabilities: np.ndarray, vectors: np.ndarray, rate: float,
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per post: flagged for its uncertainty?, its domain score, flagged for its distance? A flagged
        post names each score in the top `rate` share of the held-out posts' own, and the stronger one."""
        limits = self.thresholds(rate)
        u, d = uncertainty(probabilities), self.distance.distances(vectors, _predicted(probabilities))
        log_u, log_d = self.evidence(u, d)
        flagged = log_u + log_d < limits.evidence
        notable = math.log(rate) if rate > 0 else -math.inf
        far = flagged & ((log_d <= notable) | (log_d < log_u))
        unsure = flagged & ((log_u <= notable) | (log_u <= log_d))
        return unsure, limits.domain_scores(d), far

    def save(self, path: Path) -> None:
        buffer = io.BytesIO()
        arrays = {"reference": self.distance.reference.astype(np.float16), "centre": self.distance.centre,
                  "held_uncertainty": self.held_uncertainty, "held_distance": self.held_distance,
                  "held_out": np.array(self.held_out)}
        if self.distance.classes is not None:
            arrays["classes"] = self.distance.classes
        np.savez(buffer, **arrays)  # type: ignore[arg-type]
        path.write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> ReviewCalibration:
        with np.load(path, allow_pickle=False) as data:
            reference = np.asarray(data["reference"], dtype=np.float32)
            centre = (np.asarray(data["centre"], dtype=np.float32) if "centre" in data.files
                      else np.zeros(reference.shape[1], dtype=np.float32))
            classes = np.asarray(data["classes"], dtype=np.int32) if "classes" in data.files else None
            held_u, held_d = (np.asarray(data[key], dtype=np.float32)
                              for key in ("held_uncertainty", "held_distance"))
            return cls(NearestNeighbour(reference, centre, classes), held_u, held_d, str(data["held_out"]))

    def summary(self, truth: list[str] | None = None, predicted: np.ndarray | None = None,
                rates: tuple[float, ...] = RATES_SHOWN) -> list[dict[str, float | None]]:
        """Per rate: the share of held-out posts flagged, and of the model's mistakes among them (none
        without held-out posts)."""
        if self.size == 0:
            return []
        rows = []
        wrong = None if truth is None or predicted is None else np.asarray(predicted) != np.asarray(truth)
        for rate in rates:
            flagged = self.flagged_by_scores(self.held_uncertainty, self.held_distance, rate)
            caught = None if wrong is None or not wrong.any() else round(float(flagged[wrong].mean()), 4)
            rows.append({"rate": rate, "flagged": round(float(flagged.mean()), 4), "mistakes_caught": caught,
                         "mistakes": None if wrong is None else int(wrong.sum())})
        return rows


def _thresholds(calibration: ReviewCalibration, rate: float) -> Thresholds:
    """The evidence below which at most `rate` of new in-domain posts lie, and what it means for each
    score alone (the other at its least telling, a p-value of 1)."""
    u_sorted, d_sorted = calibration._sorted
    typical = float(np.median(d_sorted)) if len(d_sorted) else 0.0
    if not 0.0 < rate < 1.0 or len(u_sorted) == 0:
        return Thresholds(rate, -math.inf, math.inf, math.inf, typical)
    held = (_held_log_p_values(u_sorted, calibration.held_uncertainty)
            + _held_log_p_values(d_sorted, calibration.held_distance))
    evidence = -_upper_quantile(np.sort(-held), rate)  # flagged strictly below: at most `rate` of them
    alone = math.exp(evidence) if math.isfinite(evidence) else 0.0
    return Thresholds(rate, evidence, _alone(u_sorted, alone), _alone(d_sorted, alone), typical)


def _alone(sorted_held: np.ndarray, p_value: float) -> float:
    """The score beyond which a new post's p-value is below `p_value`."""
    n = len(sorted_held)
    # fewer than (n + 1) p - 1 held scores at least as high: beyond the one at that rank from the top
    allowed = math.ceil((n + 1) * p_value - 1) - 1
    if allowed < 0:
        return math.inf
    return -math.inf if allowed >= n else float(sorted_held[n - allowed - 1])


def class_indices(classes: np.ndarray | list[str], labels: list[str]) -> np.ndarray:
    """Each label's index among the model's `classes` (their order: the probabilities' columns)."""
    index = {str(label): i for i, label in enumerate(classes)}
    return np.array([index[str(label)] for label in labels], dtype=np.int32)


def _predicted(probabilities: np.ndarray) -> np.ndarray:
    probabilities = np.asarray(probabilities)
    if probabilities.size == 0:
        return np.zeros(len(probabilities), dtype=np.int64)
    return probabilities.argmax(axis=1)


def calibrate_review(train_vectors: np.ndarray, held_probabilities: np.ndarray, held_vectors: np.ndarray,
                     held_out: str, train_classes: np.ndarray | None = None) -> ReviewCalibration:
    """The distance from the training posts' vectors (and their class indices, in the order of the model's
    classes), and both scores of the held-out posts."""
    distance = NearestNeighbour.fit(train_vectors, train_classes)
    return ReviewCalibration(distance, uncertainty(held_probabilities),
                             distance.distances(held_vectors, _predicted(held_probabilities)), held_out)
