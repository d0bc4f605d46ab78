"""The review flag's rules and the out-of-domain score, on numbers with known answers."""

from __future__ import annotations

import numpy as np

from shared.improvement.review import LOW_MARGIN, LOW_SCORE, OUT_OF_DOMAIN, ReviewPolicy, assess
from shared.model.out_of_domain import calibrate

LABELS = ["crypto", "medicine", "space"]


def test_each_rule_flags_on_its_own_and_names_the_runner_up() -> None:
    probabilities = np.array([[0.90, 0.06, 0.04],   # sure
                              [0.55, 0.40, 0.05],   # below 0.6 and within 0.2 of the runner-up
                              [0.05, 0.30, 0.65],   # above 0.6 but within 0.4 of the runner-up
                              [0.95, 0.03, 0.02]])  # sure, yet out of domain
    found = assess(probabilities, LABELS, np.array([0.5, 0.9, 1.0, 1.7]), ReviewPolicy(0.6, 0.4))
    assert [u.reasons for u in found] == [(), (LOW_SCORE, LOW_MARGIN), (LOW_MARGIN,), (OUT_OF_DOMAIN,)]
    assert [u.runner_up for u in found] == ["medicine", "medicine", "medicine", "medicine"]
    assert round(found[1].margin, 6) == 0.15 and found[3].needs_review and not found[0].needs_review
    # Without a domain reference nothing is out of domain.
    assert assess(probabilities[3:], LABELS, None, ReviewPolicy(0.6, 0.4))[0].reasons == ()


def test_keep_text() -> None:
    assert ReviewPolicy(0.6, 0.2, "review").keeps_text(True)
    assert not ReviewPolicy(0.6, 0.2, "review").keeps_text(False)
    assert ReviewPolicy(0.6, 0.2, "all").keeps_text(False)
    assert not ReviewPolicy(0.6, 0.2, "none").keeps_text(True)


def test_the_domain_score_is_calibrated_per_class_on_the_training_posts() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(3, 16, dtype=np.float32)
    tight = centres[0] + rng.normal(0, 0.05, (200, 16))
    loose = centres[1] + rng.normal(0, 0.3, (200, 16))
    third = centres[2] + rng.normal(0, 0.05, (200, 16))
    x = np.concatenate([tight, loose, third]).astype(np.float32)
    reference = calibrate(x, ["a"] * 200 + ["b"] * 200 + ["c"] * 200, quantile=0.9)
    inside = reference.out_of_domain(x)
    assert 0.08 <= inside.mean() <= 0.12  # about 1 - quantile of the training posts
    # A post the loose class would hold, but not the tight one: the radius is each class's own.
    tilted = (centres[0] + rng.normal(0, 0.12, (50, 16))).astype(np.float32)
    assert reference.out_of_domain(tilted).mean() > 0.9
    assert not reference.out_of_domain((centres[1] + rng.normal(0, 0.12, (50, 16))).astype(np.float32)).any()
    # A post far from every class, and the zero vector, are out of domain.
    assert list(reference.out_of_domain(np.stack([-centres[0] - centres[1], np.zeros(16)]))) == [True, True]
