"""Drift: live windows of a version's rows compared with the version's reference.

Per window (the workers' sums, shared/improvement/drift_sums.py) against the reference
stored at training (shared/improvement/drift_reference.py):

- label distribution: Jensen-Shannon distance (base 2, 0 = same, 1 = disjoint)
  and the chi-square goodness-of-fit p-value of the window's label counts;
- mean confidence (top probability) and its drop from the reference;
- embedding centroid distance, in units of the reference spread (root mean
  squared distance of test embeddings to their centroid);
- shares flagged for review and out of domain, when rows carry those flags.

A figure crosses its threshold only in a window with enough posts to judge.
Label drift needs both a large distance and a small p-value (effect and
evidence); the centroid shift must also exceed twice what sampling alone
moves a centroid of that many posts, spread x sqrt(1/n + 1/n_ref) (in many
dimensions the distance concentrates near that value: bench/drift_rates.py
measures 0.158 for sci windows of 50 against a 200-post reference, as predicted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import chisquare

from shared.improvement.drift_reference import Reference
from shared.improvement.drift_sums import WindowSums

# A label the reference never predicted still gets this share, so chi-square has no zero expectation.
_SMOOTHING = 1e-3
# The centroid shift must exceed this many times the shift sampling alone gives (see above).
CENTROID_NOISE_MULTIPLE = 2.0


@dataclass(frozen=True)
class Thresholds:
    max_js: float = 0.2  # label distribution: Jensen-Shannon distance ...
    max_p: float = 0.01  # ... and chi-square p-value below this
    max_confidence_drop: float = 0.1  # mean top probability this far below the reference's
    max_centroid_shift: float = 0.25  # centroid distance / reference spread
    max_review_rise: float = 0.1  # share flagged for review above the reference's by this
    max_out_of_domain_rise: float = 0.1
    min_posts: int = 20  # fewer posts in a window: reported, not judged


@dataclass
class WindowReport:
    start: datetime
    end: datetime
    posts: int
    label_shares: dict[str, float]
    js_distance: float | None
    chi2_p: float | None
    mean_confidence: float | None
    confidence_drop: float | None
    centroid_distance: float | None
    centroid_shift: float | None  # in reference spreads
    review_share: float | None
    out_of_domain_share: float | None
    judged: bool  # enough posts to judge
    crossed: list[str] = field(default_factory=list)  # the figures past their thresholds


def label_drift(counts: dict[str, int], reference: Reference) -> tuple[float, float]:
    """(Jensen-Shannon distance, chi-square p-value) of label counts against the reference shares."""
    labels = sorted(set(reference.label_shares) | set(counts))
    observed = np.array([counts.get(label, 0) for label in labels], dtype=np.float64)
    expected = np.array([reference.label_shares.get(label, 0.0) + _SMOOTHING for label in labels])
    expected /= expected.sum()
    n = observed.sum()
    with np.errstate(invalid="ignore"):  # identical distributions: sqrt of a rounding error below 0
        js = float(jensenshannon(observed / n, expected, base=2))
    js = 0.0 if math.isnan(js) else js
    p = float(chisquare(observed, expected * n).pvalue)
    return js, p


def _share(count: int | None, posts: int) -> float | None:
    return None if count is None or not posts else count / posts


def compare(window: WindowSums, reference: Reference, window_s: int,
            thresholds: Thresholds = Thresholds()) -> WindowReport:
    n = window.posts
    report = WindowReport(
        start=window.start, end=window.start + timedelta(seconds=window_s), posts=n,
        label_shares={label: count / n for label, count in sorted(window.label_counts.items())} if n else {},
        js_distance=None, chi2_p=None, mean_confidence=None, confidence_drop=None,
        centroid_distance=None, centroid_shift=None,
        review_share=_share(window.review_count, n),
        out_of_domain_share=_share(window.out_of_domain_count, n),
        judged=n >= thresholds.min_posts)
    if not n:
        return report
    report.js_distance, report.chi2_p = label_drift(window.label_counts, reference)
    report.mean_confidence = window.confidence_sum / n
    report.confidence_drop = reference.mean_confidence - report.mean_confidence
    if window.embedding_sum is not None and len(window.embedding_sum) == len(reference.centroid):
        centroid = np.asarray(window.embedding_sum) / n
        report.centroid_distance = float(np.linalg.norm(centroid - np.asarray(reference.centroid)))
        report.centroid_shift = report.centroid_distance / reference.spread if reference.spread else None
    if report.judged:
        report.crossed = _crossed(report, reference, thresholds)
    return report


def _crossed(r: WindowReport, reference: Reference, t: Thresholds) -> list[str]:
    crossed = []
    if r.js_distance is not None and r.chi2_p is not None and r.js_distance > t.max_js and r.chi2_p < t.max_p:
        crossed.append("labels")
    if r.confidence_drop is not None and r.confidence_drop > t.max_confidence_drop:
        crossed.append("confidence")
    if r.centroid_shift is not None:
        noise = CENTROID_NOISE_MULTIPLE * math.sqrt(1 / r.posts + 1 / max(reference.posts, 1))
        if r.centroid_shift > max(t.max_centroid_shift, noise):
            crossed.append("centroid")
    if (r.review_share is not None and reference.review_share is not None
            and r.review_share - reference.review_share > t.max_review_rise):
        crossed.append("review")
    if r.out_of_domain_share is not None and reference.out_of_domain_share is not None \
            and r.out_of_domain_share - reference.out_of_domain_share > t.max_out_of_domain_rise:
        crossed.append("out_of_domain")
    return crossed
