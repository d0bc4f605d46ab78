"""Review thresholds from held-out posts: the chosen rate is what new in-domain posts get."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.improvement.review import LOW_SCORE, OUT_OF_DOMAIN, ReviewPolicy, assess_calibrated
from shared.model.review_calibration import ReviewCalibration, calibrate_review

DIM, CLASSES = 24, 3


def in_domain(rng: np.random.Generator, n: int, spread: float = 0.5, sure: float = 2.5,
              ) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Posts of three classes (vectors around their centres) and a classifier's probabilities (its score
    for the right class `sure` above the others, on average)."""
    labels = rng.integers(0, CLASSES, n)
    vectors = np.eye(CLASSES, DIM)[labels] * 3 + rng.normal(0, spread, (n, DIM))
    scores = rng.normal(0, 1, (n, CLASSES)) + sure * np.eye(CLASSES)[labels]
    probabilities = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    return vectors.astype(np.float32), [f"c{i}" for i in labels], probabilities.astype(np.float32)


def calibration(seed: int = 0) -> ReviewCalibration:
    rng = np.random.default_rng(seed)
    train_x, train_y, _ = in_domain(rng, 600)
    held_x, _, held_p = in_domain(rng, 2000)
    return calibrate_review(train_x, held_p, held_x, held_out="2,000 posts")


@pytest.mark.parametrize("rate", [0.05, 0.1, 0.2])
def test_new_in_domain_posts_are_flagged_at_the_chosen_rate(rate: float) -> None:
    calibrated = calibration()
    new_x, _, new_p = in_domain(np.random.default_rng(7), 4000)
    uncertain, _, far = calibrated.flags(new_p, new_x, rate)
    assert abs(float((uncertain | far).mean()) - rate) < 0.025
    # Both scores take part: neither alone fills the rate.
    assert 0 < uncertain.mean() < rate and 0 < far.mean() < rate


def test_posts_from_elsewhere_are_out_of_domain_and_a_class_centre_scores_below_zero() -> None:
    calibrated = calibration()
    rng = np.random.default_rng(3)
    elsewhere = (np.eye(DIM)[CLASSES + 2] * 3 + rng.normal(0, 0.5, (300, DIM))).astype(np.float32)
    confident = np.tile(np.array([[0.98, 0.01, 0.01]], dtype=np.float32), (300, 1))
    _, scores, far = calibrated.flags(confident, elsewhere, 0.1)
    assert far.mean() > 0.9 and (scores > 1).mean() == far.mean()
    typical = np.eye(CLASSES, DIM, dtype=np.float32)[:1] * 3
    assert float(calibrated.flags(confident[:1], typical, 0.1)[1][0]) < 0.0  # closer than most held-out posts


def test_a_rate_of_zero_flags_nothing_and_a_larger_rate_flags_more() -> None:
    calibrated = calibration()
    new_x, _, new_p = in_domain(np.random.default_rng(9), 1000)
    flagged = [(lambda u, s, f: (u | f).sum())(*calibrated.flags(new_p, new_x, rate)) for rate in (0.0, 0.1, 0.3)]
    assert flagged[0] == 0 and flagged[0] < flagged[1] < flagged[2]


def test_saved_and_loaded_it_gives_the_same_flags(tmp_path: Path) -> None:
    calibrated = calibration()
    calibrated.save(tmp_path / "review.npz")
    loaded = ReviewCalibration.load(tmp_path / "review.npz")
    new_x, _, new_p = in_domain(np.random.default_rng(5), 500)
    policy = ReviewPolicy(0.6, 0.4, rate=0.1)
    labels = [f"c{i}" for i in range(CLASSES)]
    assert assess_calibrated(new_p, new_x, labels, loaded, policy) == assess_calibrated(
        new_p, new_x, labels, calibrated, policy)
    assert loaded.held_out == "2,000 posts" and loaded.size == 2000


def test_the_reasons_name_which_score_flagged_the_post() -> None:
    calibrated = calibration()
    labels = [f"c{i}" for i in range(CLASSES)]
    unsure = np.array([[0.34, 0.33, 0.33]], dtype=np.float32)
    sure = np.array([[0.98, 0.01, 0.01]], dtype=np.float32)
    centre = np.eye(CLASSES, DIM, dtype=np.float32)[:1] * 3
    far = (np.eye(DIM)[DIM - 1] * 12).astype(np.float32)[None]
    policy = ReviewPolicy(0.6, 0.4, rate=0.1)
    found = [assess_calibrated(p, x, labels, calibrated, policy)[0] for p, x in
             ((unsure, centre), (sure, far), (sure, centre))]
    assert [u.reasons for u in found] == [(LOW_SCORE,), (OUT_OF_DOMAIN,), ()]
    assert found[1].domain_score is not None and found[1].domain_score > 1


def test_summary_counts_the_mistakes_among_the_flagged_posts() -> None:
    calibrated = calibration()
    rows = calibrated.summary(["a"] * 1000 + ["b"] * 1000, np.array(["a"] * 2000))
    assert [row["rate"] for row in rows] == [0.05, 0.1, 0.2] and rows[0]["mistakes"] == 1000
    assert all(abs(row["flagged"] - row["rate"]) <= 0.01 for row in rows)


def test_without_held_out_posts_nothing_is_flagged_and_nothing_is_summarised() -> None:
    train_x, _, _ = in_domain(np.random.default_rng(1), 50)
    empty = calibrate_review(train_x, np.zeros((0, CLASSES), np.float32), np.zeros((0, DIM), np.float32),
                             held_out="no posts")
    new_x, _, new_p = in_domain(np.random.default_rng(2), 20)
    uncertain, _, far = empty.flags(new_p, new_x, 0.1)
    assert not uncertain.any() and not far.any() and empty.summary() == []


def test_a_post_somewhat_unsure_and_somewhat_far_is_flagged_though_neither_alone_would_be() -> None:
    """Both scores are evidence (Fisher's rule on their p-values): a post in the top 10 % of both is
    flagged at 0.1, one in the top 5 % of one score and typical in the other is not."""
    calibrated = calibration()
    u_sorted, d_sorted = np.sort(calibrated.held_uncertainty), np.sort(calibrated.held_distance)
    top_10 = (float(np.quantile(u_sorted, 0.9)), float(np.quantile(d_sorted, 0.9)))
    top_5 = (float(np.quantile(u_sorted, 0.95)), float(np.quantile(d_sorted, 0.95)))
    limits = calibrated.thresholds(0.1)
    assert top_5[0] < limits.uncertainty and top_5[1] < limits.distance  # neither alone
    flagged = calibrated.flagged_by_scores(np.array([top_10[0], top_5[0], float(np.median(u_sorted))]),
                                           np.array([top_10[1], float(np.median(d_sorted)), top_5[1]]), 0.1)
    assert flagged.tolist() == [True, False, False]


def test_distances_are_taken_from_the_training_posts_mean() -> None:
    """Sentence embeddings share one large direction, which made every post, off-topic ones too, look near
    some training post: the distance is 1 - cosine between the posts less the training posts' mean."""
    rng = np.random.default_rng(4)
    common = np.eye(DIM)[DIM - 1] * 4
    train_x = in_domain(rng, 300)[0] + common
    posts = (in_domain(rng, 50)[0] + common).astype(np.float32)
    calibrated = calibrate_review(train_x, np.zeros((0, CLASSES), np.float32), np.zeros((0, DIM), np.float32),
                                  held_out="none")

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    centre = unit(train_x).mean(axis=0)
    expected = 1 - (unit(unit(posts) - centre) @ unit(unit(train_x) - centre).T).max(axis=1)
    assert np.allclose(calibrated.distance.distances(posts), expected, atol=2e-3)  # float16 reference


def test_a_calibration_saved_without_a_centre_scores_as_it_was_calibrated(tmp_path: Path) -> None:
    """Versions trained before the centre was kept measured plain cosine distances: they still do."""
    calibrated = calibration()
    unit = calibrated.distance.reference  # any unit rows stand in for an older version's vectors
    np.savez(tmp_path / "review.npz", reference=unit.astype(np.float16),
             held_uncertainty=calibrated.held_uncertainty, held_distance=calibrated.held_distance,
             held_out=np.array("older"))
    loaded = ReviewCalibration.load(tmp_path / "review.npz")
    posts = np.random.default_rng(6).normal(0, 1, (20, DIM)).astype(np.float32)
    posts_unit = posts / np.linalg.norm(posts, axis=1, keepdims=True)
    expected = 1 - (posts_unit @ unit.astype(np.float16).astype(np.float32).T).max(axis=1)
    assert np.allclose(loaded.distance.distances(posts), expected, atol=1e-5)


def class_calibration(seed: int = 0) -> ReviewCalibration:
    """As `calibration`, the training posts' classes kept beside them; classes apart, few mistakes."""
    rng = np.random.default_rng(seed)
    train_x, train_y, _ = in_domain(rng, 600, spread=0.2)
    held_x, _, held_p = in_domain(rng, 2000, spread=0.2, sure=5.0)
    classes = np.array([int(label[1:]) for label in train_y])
    return calibrate_review(train_x, held_p, held_x, held_out="2,000 posts", train_classes=classes)


def test_a_post_is_measured_against_the_training_posts_of_the_class_it_was_given() -> None:
    """A post that sits among class 1's training posts but was given class 0 with confidence is likely a
    mistake: it is far from every post of the class it got, though near posts of another."""
    calibrated = class_calibration()
    rng = np.random.default_rng(11)
    among_class_1 = (np.eye(CLASSES, DIM)[[1] * 200] * 3 + rng.normal(0, 0.2, (200, DIM))).astype(np.float32)
    given_0 = np.tile(np.array([[0.96, 0.02, 0.02]], dtype=np.float32), (200, 1))
    given_1 = given_0[:, [1, 0, 2]]
    _, _, far_given_0 = calibrated.flags(given_0, among_class_1, 0.1)
    _, _, far_given_1 = calibrated.flags(given_1, among_class_1, 0.1)
    assert far_given_0.mean() > 0.9 and far_given_1.mean() < 0.1
    # The held-out posts were measured the same way, so the chosen rate still holds.
    new_x, _, new_p = in_domain(np.random.default_rng(7), 4000, spread=0.2, sure=5.0)
    uncertain, _, far = calibrated.flags(new_p, new_x, 0.1)
    assert abs(float((uncertain | far).mean()) - 0.1) < 0.025


def test_the_classes_are_saved_and_a_file_without_them_measures_against_every_training_post(
        tmp_path: Path) -> None:
    calibrated = class_calibration()
    calibrated.save(tmp_path / "review.npz")
    loaded = ReviewCalibration.load(tmp_path / "review.npz")
    posts = np.random.default_rng(6).normal(0, 1, (50, DIM)).astype(np.float32)
    predicted = np.arange(50) % CLASSES
    assert np.array_equal(loaded.distance.distances(posts, predicted), calibrated.distance.distances(posts, predicted))
    with np.load(tmp_path / "review.npz") as data:
        np.savez(tmp_path / "older.npz", **{k: data[k] for k in data.files if k != "classes"})
    older = ReviewCalibration.load(tmp_path / "older.npz")
    assert np.array_equal(older.distance.distances(posts, predicted), calibrated.distance.distances(posts))
    assert (older.distance.distances(posts, predicted) <= calibrated.distance.distances(posts, predicted)).all()


def test_posts_are_compared_a_chunk_at_a_time_with_the_same_answer() -> None:
    from shared.model.review_calibration import _most_similar

    rng = np.random.default_rng(8)
    posts, reference = rng.normal(0, 1, (50, DIM)).astype(np.float32), rng.normal(0, 1, (30, DIM)).astype(np.float32)
    np.testing.assert_allclose(_most_similar(posts, reference, chunk=7), (posts @ reference.T).max(axis=1), rtol=1e-6)
