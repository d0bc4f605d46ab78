"""Drift figures from the sums workers keep: a fake-embedder model's reference against in- and off-domain posts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from shared.improvement.drift import compare, label_drift
from shared.improvement.drift_reference import Reference, load_reference
from shared.improvement.drift_sums import BatchSums, add_sums, window_sums
from shared.model.preprocess import preprocess
from testkit.factories import make_posts, register_fake_model, sums_of
from testkit.off_domain import off_domain_posts


def test_in_domain_posts_cross_no_threshold_and_off_domain_posts_do(sqlite_url: str, tmp_path: Path) -> None:
    # Given a model stored with its reference, and the sums of two windows added batch by batch
    version = register_fake_model(sqlite_url, tmp_path / "models")
    reference = load_reference(tmp_path / "models" / "topics" / str(version))
    assert reference is not None and reference.posts == 30 and reference.spread > 0
    start = datetime(2026, 11, 30, 12, tzinfo=UTC)
    batches = {start: [p["text"] for p in make_posts(60, "in", seed=9)],
               start + timedelta(hours=1): [p["text"] for p in off_domain_posts(60, "off", seed=3)]}
    for at, texts in batches.items():
        for half in (texts[:30], texts[30:]):
            add_sums(sqlite_url, model_name="topics", model_version=version, bucket_s=300, at=at,
                     sums=sums_of(sqlite_url, [preprocess(t) for t in half], version))

    # When the windows are compared with the reference
    windows = window_sums(sqlite_url, model_name="topics", model_version=version, since=start, window_s=3600)
    in_domain, off_domain = (compare(w, reference, 3600) for w in windows)

    # Then only the off-domain window drifts, on labels, confidence and centroid alike
    assert [in_domain.posts, off_domain.posts] == [60, 60]
    assert in_domain.crossed == []
    assert set(off_domain.crossed) == {"labels", "confidence", "centroid"}
    assert off_domain.centroid_shift > 2 * in_domain.centroid_shift
    assert in_domain.review_share is None  # not measured until rows carry the flag


def test_label_drift_statistics() -> None:
    reference = Reference(posts=100, label_shares={"a": 0.5, "b": 0.5, "c": 0.0}, mean_confidence=0.9,
                          centroid=[0.0], spread=1.0)
    js, p = label_drift({"a": 50, "b": 50}, reference)
    assert js < 0.05 and p > 0.9  # only the smoothing of the never-predicted label apart
    js, p = label_drift({"c": 100}, reference)  # all on the label the reference never predicted
    assert js > 0.9 and p < 1e-10


def test_sums_of_several_writers_add_up(db_url: str) -> None:
    at = datetime(2026, 11, 30, 12, 1, tzinfo=UTC)
    vectors = np.array([[1.0, 0.0], [0.0, 1.0]])
    for writer in ("host:1", "host:2"):
        for _ in range(2):
            add_sums(db_url, model_name="m", model_version=1, bucket_s=300, at=at, writer=writer,
                     sums=BatchSums.of(["a", "b"], [0.5, 0.7], vectors))
    [window] = window_sums(db_url, model_name="m", model_version=1, since=at - timedelta(minutes=1), window_s=600)
    assert window.posts == 8 and window.label_counts == {"a": 4, "b": 4}
    assert window.confidence_sum == pytest.approx(4.8)
    assert window.embedding_sum is not None and window.embedding_sum.tolist() == [4.0, 4.0]
    assert window_sums(db_url, model_name="m", model_version=2, since=at - timedelta(days=1), window_s=600) == []
