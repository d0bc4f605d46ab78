"""Which classified posts a person should look at: the review flag, decided when a row is written.

A version trained with held-out review scores (shared/model/review_calibration.py)
flags about REVIEW_RATE of in-domain posts: those whose uncertainty and
distance from the training posts, weighed together, lie beyond all but that
share of its held-out posts'. An older version is flagged by fixed scores: its top
probability below REVIEW_BELOW, its margin over the runner-up below
REVIEW_MARGIN, or out of domain by its centroid radius
(shared/model/out_of_domain.py). The reasons are kept with the row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from shared.database.results import ResultRow
    from shared.model.out_of_domain import DomainReference
    from shared.model.review_calibration import ReviewCalibration
    from shared.model.store import TopicModel
    from shared.settings import Settings

LOW_SCORE, LOW_MARGIN, OUT_OF_DOMAIN = "low_score", "low_margin", "out_of_domain"
KeepText = Literal["review", "all", "none"]


@dataclass(frozen=True)
class ReviewPolicy:
    below: float  # REVIEW_BELOW (versions without held-out review scores)
    margin: float  # REVIEW_MARGIN (idem)
    keep_text: KeepText = "review"  # KEEP_TEXT: whose text the row keeps
    rate: float = 0.1  # REVIEW_RATE: the share of in-domain posts a calibrated version flags

    @classmethod
    def from_settings(cls, settings: Settings) -> ReviewPolicy:
        return cls(settings.review_below, settings.review_margin, settings.keep_text, settings.review_rate)

    def keeps_text(self, needs_review: bool) -> bool:
        return self.keep_text == "all" or (self.keep_text == "review" and needs_review)


@dataclass(frozen=True)
class Uncertainty:
    """What one post's probabilities (and embedding) say about it."""

    margin: float  # top probability minus the runner-up's
    runner_up: str | None
    domain_score: float | None  # None: the version has no domain reference
    reasons: tuple[str, ...]

    @property
    def needs_review(self) -> bool:
        return bool(self.reasons)


def margins(probabilities: np.ndarray) -> np.ndarray:
    """Top probability minus the second (1.0 with a single class)."""
    if probabilities.shape[1] < 2:
        return np.ones(len(probabilities), dtype=np.float32)
    top_two = np.sort(probabilities, axis=1)[:, -2:]
    return np.asarray(top_two[:, 1] - top_two[:, 0], dtype=np.float32)


def assess(probabilities: np.ndarray, labels: list[str], domain_scores: np.ndarray | None,
           policy: ReviewPolicy) -> list[Uncertainty]:
    """One Uncertainty per row of `probabilities` (columns in `labels` order)."""
    probabilities = np.asarray(probabilities, dtype=np.float32)
    gaps = margins(probabilities)
    order = np.argsort(-probabilities, axis=1)
    out = []
    for i, row in enumerate(probabilities):
        reasons = []
        if row[order[i, 0]] < policy.below:
            reasons.append(LOW_SCORE)
        if gaps[i] < policy.margin:
            reasons.append(LOW_MARGIN)
        domain = None if domain_scores is None else float(domain_scores[i])
        if domain is not None and domain > 1.0:
            reasons.append(OUT_OF_DOMAIN)
        runner_up = labels[int(order[i, 1])] if len(labels) > 1 else None
        out.append(Uncertainty(float(gaps[i]), runner_up, domain, tuple(reasons)))
    return out


def assess_calibrated(probabilities: np.ndarray, vectors: np.ndarray, labels: list[str],
                      calibration: ReviewCalibration, policy: ReviewPolicy) -> list[Uncertainty]:
    """One Uncertainty per post, flagged by the thresholds `calibration` sets for `policy.rate`."""
    probabilities = np.asarray(probabilities, dtype=np.float32)
    uncertain, scores, far = calibration.flags(probabilities, vectors, policy.rate)
    gaps = margins(probabilities)
    order = np.argsort(-probabilities, axis=1)
    out = []
    for i in range(len(probabilities)):
        reasons = (LOW_SCORE,) * bool(uncertain[i]) + (OUT_OF_DOMAIN,) * bool(far[i])
        runner_up = labels[int(order[i, 1])] if len(labels) > 1 else None
        out.append(Uncertainty(float(gaps[i]), runner_up, float(scores[i]), reasons))
    return out


def review_flags(probabilities: np.ndarray, vectors: np.ndarray, labels: list[str], model: TopicModel,
                 policy: ReviewPolicy | None) -> list[Uncertainty] | None:
    """The batch's uncertainties under `policy` (None: no policy, nothing flagged)."""
    if policy is None or len(probabilities) == 0:
        return None
    if model.review is not None:
        return assess_calibrated(probabilities, vectors, labels, model.review, policy)
    domain = model.domain.scores(vectors) if model.domain is not None else None
    return assess(probabilities, labels, domain, policy)


def flag_row(row: ResultRow, uncertainty: Uncertainty, text: str, policy: ReviewPolicy) -> None:
    """Write the flag, its reasons and the numbers behind them into a `done` row (and its text, if kept)."""
    row.needs_review = uncertainty.needs_review
    row.review_reason = ",".join(uncertainty.reasons) or None
    row.margin = uncertainty.margin
    row.domain_score = uncertainty.domain_score
    if policy.keeps_text(uncertainty.needs_review):
        row.text = text


def count_flags(rows: list[ResultRow]) -> tuple[int, int | None]:
    """How many done `rows` need review, and how many are out of domain (None when their version has no
    domain reference: not measured). What the drift sums count."""
    scored = [row.domain_score for row in rows if row.domain_score is not None]
    out_of_domain = sum(score > 1.0 for score in scored) if scored or not rows else None
    return sum(bool(row.needs_review) for row in rows), out_of_domain


def flagged_shares(probabilities: np.ndarray, vectors: np.ndarray, labels: list[str],
                   domain: DomainReference | None, policy: ReviewPolicy,
                   calibration: ReviewCalibration | None = None) -> dict[str, float | None]:
    """The shares of posts flagged for review and out of domain (e.g. on a version's test split), as
    review_flags decides them for a version with this `domain` reference and `calibration`."""
    if len(probabilities) == 0:
        return {"review_share": None, "out_of_domain_share": None}
    if calibration is not None:
        flags = assess_calibrated(probabilities, vectors, labels, calibration, policy)
    else:
        flags = assess(probabilities, labels, domain.scores(vectors) if domain is not None else None, policy)
    scores = [flag.domain_score for flag in flags if flag.domain_score is not None]
    return {"review_share": float(np.mean([flag.needs_review for flag in flags])),
            "out_of_domain_share": float(np.mean(np.array(scores) > 1.0)) if scores else None}
