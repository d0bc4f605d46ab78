"""The review queue on real data: a sci model meeting sci posts and off-topic (comp.*, rec.*) posts.

Trains what `topicq train --dataset 20newsgroups --groups sci --per-class 100`
trains (the default TrainConfig, self-training included) on the default local
embedder. The sci test posts are split in two random halves: the model is
calibrated on the first (as training calibrates on its test split) and measured
on the second, so every figure is on posts no threshold was set on; the figures
are means over `--splits` such splits. Per detector, at each REVIEW_RATE: the
share of in-domain posts flagged, of the model's mistakes among them, and of
the comp.*/rec.* test posts caught.

Detectors (each joined to the uncertainty score the same way, by Fisher's rule
on their conformal p-values as shared/model/review_calibration.py joins them,
except the first two):

  fixed scores (before)      REVIEW_BELOW 0.6, REVIEW_MARGIN 0.4, centroid radius at quantile 0.95
  kNN distance, either       the kNN distance below, a post flagged when either score passes a
    score (before)           threshold of its own (the largest equal share of each that fits the rate)
  uncertainty alone          1 - top probability, calibrated
  + centroid distance        1 - cosine to the nearest class centroid
  + Mahalanobis              shared covariance (shrunk 20 %), nearest class mean
  + kNN distance             1 - cosine to the nearest training post, labelled or unlabeled
  + centred kNN distance     the same, taken from the training posts' mean
    (before)
  + centred kNN of the       the same, from the training posts of the class the model gave the post
    post's class (default)   (an unlabeled one under the class the model gives it): what topicq trains

    .venv/bin/python -m bench.review                  # embeddings cached in TOPICQ_HOME (/tmp/bench-home)

Writes bench/results/review.json and review.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
RATES = (0.05, 0.1, 0.2)
OFF_TOPIC = ("comp", "rec")
DEFAULT_DETECTOR = "uncertainty + centred kNN of the post's class (default)"
KNN = "uncertainty + kNN distance"
EITHER = "kNN distance, either score (before)"


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class Distance:
    """Any distance from the training posts, in the shape ReviewCalibration reads (the predicted classes
    unused)."""

    measure: Callable[[np.ndarray], np.ndarray]

    def distances(self, vectors: np.ndarray, predicted: np.ndarray | None = None) -> np.ndarray:
        return self.measure(vectors)


SHRINKAGE = 0.2  # covariance pulled toward its mean variance: 384 dimensions, a few hundred posts


def _whitening(residuals: np.ndarray) -> np.ndarray:
    """W with W W^T = the inverse of the residuals' shrunk covariance, so ||r W||^2 is Mahalanobis."""
    dim = residuals.shape[1]
    cov = residuals.T.astype(np.float64) @ residuals / max(len(residuals), 1)
    cov = (1 - SHRINKAGE) * cov + SHRINKAGE * (np.trace(cov) / dim or 1.0) * np.eye(dim)
    return np.linalg.cholesky(np.linalg.inv(cov)).astype(np.float32)


@dataclass(frozen=True)
class Mahalanobis:
    """The distance to the nearest class mean under one covariance shared by the classes."""

    means: np.ndarray  # (classes, dim) class means of the unit training vectors, already whitened
    whiten: np.ndarray  # (dim, dim) for the shared class covariance

    @classmethod
    def fit(cls, vectors: np.ndarray, labels: list[str] | np.ndarray) -> Mahalanobis:
        unit = _unit(vectors)
        labels = np.asarray(labels, dtype=str)
        classes = sorted(set(labels.tolist()))
        means = np.stack([unit[labels == label].mean(axis=0) for label in classes])
        whiten = _whitening(unit - means[np.searchsorted(classes, labels)])
        return cls(means @ whiten, whiten)

    def distances(self, vectors: np.ndarray, predicted: np.ndarray | None = None) -> np.ndarray:
        """Each post's squared distance to its nearest class."""
        unit = _unit(vectors)
        if len(unit) == 0:
            return np.zeros(0, dtype=np.float32)
        z = unit @ self.whiten
        # ||z - m||^2 = ||z||^2 - 2 z.m + ||m||^2, without a (posts, classes, dim) array
        by_class = (z * z).sum(axis=1, keepdims=True) - 2 * z @ self.means.T + (self.means ** 2).sum(axis=1)
        return np.asarray(np.maximum(by_class.min(axis=1), 0.0), dtype=np.float32)


def detectors(train_x: np.ndarray, train_y: list[str], reference_x: np.ndarray,
              reference_classes: np.ndarray) -> dict[str, Any]:
    from shared.model.out_of_domain import calibrate
    from shared.model.review_calibration import NearestNeighbour

    centroids = calibrate(train_x, train_y)
    return {
        "uncertainty alone": Distance(lambda x: np.zeros(len(x), dtype=np.float32)),  # never beyond
        "uncertainty + centroid distance": Distance(
            lambda x: (1 - _unit(x) @ centroids.centroids.T).min(axis=1)),
        "uncertainty + Mahalanobis": Mahalanobis.fit(train_x, train_y),
        KNN: NearestNeighbour(_unit(reference_x), np.zeros(reference_x.shape[1], dtype=np.float32)),
        "uncertainty + centred kNN distance (before)": NearestNeighbour.fit(reference_x),
        DEFAULT_DETECTOR: NearestNeighbour.fit(reference_x, reference_classes),
    }


Flagger = Callable[[np.ndarray, np.ndarray], np.ndarray]


def either_score(held: tuple[np.ndarray, np.ndarray], rate: float) -> Flagger:
    """The rule before Fisher's: flagged when either score lies in its own top share beta of the held-out
    posts, beta the largest share whose union flags at most `rate` of them."""
    from shared.model.review_calibration import _upper_quantile

    u_sorted, d_sorted = np.sort(held[0]), np.sort(held[1])

    def limits(beta: float) -> tuple[float, float]:
        return _upper_quantile(u_sorted, beta), _upper_quantile(d_sorted, beta)

    low, high = 0.0, rate
    for _ in range(30):
        beta = (low + high) / 2
        u_max, d_max = limits(beta)
        share = float(((held[0] > u_max) | (held[1] > d_max)).mean())
        low, high = (beta, high) if share <= rate else (low, beta)
    u_max, d_max = limits(low)
    return lambda u, d: (u > u_max) | (d > d_max)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--home", default=os.environ.get("TOPICQ_HOME", "/tmp/bench-home"),
                   help="TOPICQ_HOME holding the embedding cache")
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--splits", type=int, default=20, help="random halves to average over")
    args = p.parse_args(argv)

    from shared.database.migrate import upgrade
    from shared.improvement.review import ReviewPolicy, assess
    from shared.model.out_of_domain import calibrate
    from shared.model.review_calibration import ReviewCalibration, class_indices, uncertainty
    from shared.settings import Settings
    from trainer.datasets import load_newsgroups, sample_per_class
    from trainer.train import TrainConfig, fit_with_self_training, prepare_inputs

    Path(args.home).mkdir(parents=True, exist_ok=True)
    settings = Settings(topicq_home=Path(args.home), database_url=os.environ.get("BENCH_DATABASE_URL"))
    upgrade(settings.db_url)
    started = time.perf_counter()
    full_train = load_newsgroups(subset="train", groups=("sci",))
    train = sample_per_class(full_train, args.per_class, 0)
    test = load_newsgroups(subset="test", groups=("sci",))
    off = load_newsgroups(subset="test", groups=OFF_TOPIC)
    chosen = set(train.ids)
    pool = [t for i, t in zip(full_train.ids, full_train.texts, strict=True) if i not in chosen]
    config = TrainConfig()
    texts = train.texts + test.texts + off.texts + pool
    inputs, stats, embedder_id, _ = prepare_inputs(settings, config, texts)
    n1, n2, n3 = len(train), len(train) + len(test), len(train) + len(test) + len(off)
    x_train, x_test, x_off = inputs.take(slice(0, n1)), inputs.take(slice(n1, n2)), inputs.take(slice(n2, n3))
    x_pool = inputs.take(slice(n3, None))
    fitted = fit_with_self_training(config, x_train, train.labels, seed=0, unlabeled=x_pool)
    model = fitted.classifier
    labels = [str(c) for c in model.classes_]
    p_test = model.predict_proba(x_test.vectors, x_test.texts)
    p_off = model.predict_proba(x_off.vectors, x_off.texts)
    wrong = np.array(labels)[p_test.argmax(axis=1)] != np.array(test.labels)
    radius = calibrate(x_train.vectors, train.labels)
    policy = ReviewPolicy(0.6, 0.4)

    def fixed(probabilities: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        flags = assess(probabilities, labels, radius.scores(vectors), policy)
        return np.array([u.needs_review for u in flags])

    fixed_in, fixed_off = fixed(p_test, x_test.vectors), fixed(p_off, x_off.vectors)
    # The reference posts' classes as training keeps them: the labelled posts' own, the model's for the pool.
    reference_classes = np.concatenate([class_indices(labels, train.labels),
                                        model.predict_proba(x_pool.vectors, x_pool.texts).argmax(axis=1)])
    found = detectors(x_train.vectors, train.labels, np.concatenate([x_train.vectors, x_pool.vectors]),
                      reference_classes)
    runs: dict[tuple[str, float | None], list[dict[str, Any]]] = {}
    for split in range(args.splits):
        halves = np.random.default_rng(split).permutation(len(test))
        held, new = halves[: len(test) // 2], halves[len(test) // 2:]
        # Before: fixed scores and the centroid radius, no calibration (REVIEW_RATE does not apply).
        runs.setdefault(("fixed scores (before)", None), []).append(
            _row(fixed_in[new], wrong[new], fixed_off, off.labels))
        held_uncertainty = uncertainty(p_test[held])
        for name, distance in found.items():
            held_distances = np.asarray(distance.distances(x_test.vectors[held], p_test[held].argmax(axis=1)))
            calibration = ReviewCalibration(distance, held_uncertainty, held_distances, "half")
            for rate in RATES:
                u_in, _, far_in = calibration.flags(p_test[new], x_test.vectors[new], rate)
                u_off, _, far_off = calibration.flags(p_off, x_off.vectors, rate)
                runs.setdefault((name, rate), []).append(_row(u_in | far_in, wrong[new], u_off | far_off,
                                                              off.labels))
            if name == KNN:  # the same scores, by the rule before Fisher's
                scores_in = uncertainty(p_test[new]), distance.distances(x_test.vectors[new])
                scores_off = uncertainty(p_off), distance.distances(x_off.vectors)
                for rate in RATES:
                    flagged = either_score((held_uncertainty, held_distances), rate)
                    runs.setdefault((EITHER, rate), []).append(
                        _row(flagged(*scores_in), wrong[new], flagged(*scores_off), off.labels))
    order = ["fixed scores (before)", EITHER, *found]
    rows = [{"detector": name, "rate": rate, **_mean(measured)}
            for (name, rate), measured in sorted(runs.items(), key=lambda item: order.index(item[0][0]))]
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "embedder": embedder_id,
        "model": f"default TrainConfig, sci, {args.per_class} train posts a class + "
                 f"{len(fitted.self_trained)} self-training posts",
        "held_out": f"half the {len(test)} sci test posts set the thresholds, the other half is measured; "
                    f"means over {args.splits} random halvings",
        "sci_accuracy": round(float(1 - wrong.mean()), 4),
        "mistakes": int(wrong.sum()),
        "off_topic_posts": len(off),
        "rows": rows,
        "cache": {"hits": stats.hits, "misses": stats.misses},
        "seconds": round(time.perf_counter() - started, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "review.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "review.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def _row(flag_in: np.ndarray, wrong: np.ndarray, flag_off: np.ndarray,
         off_labels: list[str]) -> dict[str, Any]:
    groups = np.array([label.split(".")[0] for label in off_labels])
    return {"in_domain_flagged": float(flag_in.mean()),
            "mistakes_caught": float(flag_in[wrong].mean()) if wrong.any() else 0.0,
            "off_topic_caught": float(flag_off.mean()),
            "by_group": {g: float(flag_off[groups == g].mean()) for g in OFF_TOPIC}}


def _mean(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def mean(values: list[float]) -> float:
        return round(float(np.mean(values)), 4)

    return {"in_domain_flagged": mean([r["in_domain_flagged"] for r in rows]),
            "in_domain_flagged_sd": round(float(np.std([r["in_domain_flagged"] for r in rows])), 4),
            "mistakes_caught": mean([r["mistakes_caught"] for r in rows]),
            "off_topic_caught": mean([r["off_topic_caught"] for r in rows]),
            "by_group": {g: mean([r["by_group"][g] for r in rows]) for g in OFF_TOPIC}}


def markdown(r: dict[str, Any]) -> str:
    lines = [
        "# Review queue: sci model, sci test posts (in domain) and comp.*/rec.* posts (off topic)", "",
        f"{r['when']}, embedder `{r['embedder']}`; {r['model']}. Accuracy on the sci test posts "
        f"{r['sci_accuracy']:.4f} ({r['mistakes']} mistakes); {r['held_out']}; "
        f"{r['off_topic_posts']} off-topic test posts.", "",
        "| detector | REVIEW_RATE | in-domain flagged (± sd) | mistakes caught | off-topic caught | comp.* "
        "| rec.* |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r["rows"]:
        rate = "–" if row["rate"] is None else f"{row['rate']:g}"
        bold = "**" if row["detector"] == DEFAULT_DETECTOR and row["rate"] == 0.1 else ""
        lines.append(f"| {bold}{row['detector']}{bold} | {rate} | {row['in_domain_flagged']:.1%} "
                     f"± {row['in_domain_flagged_sd']:.1%} "
                     f"| {row['mistakes_caught']:.0%} | {row['off_topic_caught']:.0%} "
                     f"| {row['by_group']['comp']:.0%} | {row['by_group']['rec']:.0%} |")
    lines += ["", f"Cache: {r['cache']['hits']} hits, {r['cache']['misses']} embedded; {r['seconds']} s.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
