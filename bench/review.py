"""The review queue on real data: a sci model meeting sci posts and off-topic (comp.*, rec.*) posts.

Trains what `topicq train --dataset 20newsgroups --groups sci --per-class 100`
trains (the default TrainConfig, self-training included) on the default local
embedder. The sci test posts are split in two halves: the model is calibrated
on the first (as training calibrates on its test split) and measured on the
second, so every figure is on posts no threshold was set on. Per detector, at
each REVIEW_RATE: the share of in-domain posts flagged, of the model's
mistakes among them, and of the comp.*/rec.* test posts caught.

Detectors (each joined to the uncertainty score the same way, by the union
rule of shared/model/review_calibration.py, except the first):

  fixed scores (before)      REVIEW_BELOW 0.6, REVIEW_MARGIN 0.4, centroid radius at quantile 0.95
  uncertainty alone          1 - top probability, calibrated
  + centroid distance        1 - cosine to the nearest class centroid
  + Mahalanobis (default)    shared covariance, nearest class (what topicq trains)
  + kNN distance             1 - cosine to the nearest training post (labelled and unlabeled)

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
DEFAULT_DETECTOR = "uncertainty + Mahalanobis (default)"


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class Distance:
    """Any distance from the training posts, in the shape ReviewCalibration reads."""

    distances: Callable[[np.ndarray], np.ndarray]


def detectors(train_x: np.ndarray, train_y: list[str], reference_x: np.ndarray) -> dict[str, Any]:
    from shared.model.out_of_domain import calibrate
    from shared.model.review_calibration import Mahalanobis

    centroids = calibrate(train_x, train_y)
    reference = _unit(reference_x)
    return {
        "uncertainty alone": Distance(lambda x: np.zeros(len(x), dtype=np.float32)),  # never beyond
        "uncertainty + centroid distance": Distance(
            lambda x: (1 - _unit(x) @ centroids.centroids.T).min(axis=1)),
        DEFAULT_DETECTOR: Mahalanobis.fit(train_x, train_y),
        "uncertainty + kNN distance": Distance(lambda x: 1 - (_unit(x) @ reference.T).max(axis=1)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--home", default=os.environ.get("TOPICQ_HOME", "/tmp/bench-home"),
                   help="TOPICQ_HOME holding the embedding cache")
    p.add_argument("--per-class", type=int, default=100)
    args = p.parse_args(argv)

    from shared.database.migrate import upgrade
    from shared.improvement.review import ReviewPolicy, assess
    from shared.model.out_of_domain import calibrate
    from shared.model.review_calibration import ReviewCalibration, uncertainty
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
    halves = np.random.default_rng(0).permutation(len(test))
    held, new = halves[: len(test) // 2], halves[len(test) // 2:]

    rows = []
    # Before: fixed scores and the centroid radius, no calibration (REVIEW_RATE does not apply).
    radius = calibrate(x_train.vectors, train.labels)
    policy = ReviewPolicy(0.6, 0.4)

    def fixed(probabilities: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        flags = assess(probabilities, labels, radius.scores(vectors), policy)
        return np.array([u.needs_review for u in flags])

    fixed_in, fixed_off = fixed(p_test, x_test.vectors), fixed(p_off, x_off.vectors)
    rows.append(_row("fixed scores (before)", None, fixed_in[new], wrong[new], fixed_off, off.labels))
    for name, distance in detectors(x_train.vectors, train.labels,
                                    np.concatenate([x_train.vectors, x_pool.vectors])).items():
        for rate in RATES:
            calibration = ReviewCalibration(distance, uncertainty(p_test[held]),
                                            np.asarray(distance.distances(x_test.vectors[held])), "half")
            u_in, _, far_in = calibration.flags(p_test[new], x_test.vectors[new], rate)
            u_off, _, far_off = calibration.flags(p_off, x_off.vectors, rate)
            flag_in, flag_off = u_in | far_in, u_off | far_off
            rows.append(_row(name, rate, flag_in, wrong[new], flag_off, off.labels))
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "embedder": embedder_id,
        "model": f"default TrainConfig, sci, {args.per_class} train posts a class + "
                 f"{len(fitted.self_trained)} self-training posts",
        "held_out": f"{len(held)} sci test posts set the thresholds; {len(new)} others are measured",
        "sci_accuracy_measured_half": round(float(1 - wrong[new].mean()), 4),
        "mistakes_measured_half": int(wrong[new].sum()),
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


def _row(name: str, rate: float | None, flag_in: np.ndarray, wrong: np.ndarray, flag_off: np.ndarray,
         off_labels: list[str]) -> dict[str, Any]:
    groups = np.array([label.split(".")[0] for label in off_labels])
    return {"detector": name, "rate": rate,
            "in_domain_flagged": round(float(flag_in.mean()), 4),
            "mistakes_caught": round(float(flag_in[wrong].mean()), 4) if wrong.any() else None,
            "off_topic_caught": round(float(flag_off.mean()), 4),
            "by_group": {g: round(float(flag_off[groups == g].mean()), 4) for g in OFF_TOPIC}}


def markdown(r: dict[str, Any]) -> str:
    lines = [
        "# Review queue: sci model, sci test posts (in domain) and comp.*/rec.* posts (off topic)", "",
        f"{r['when']}, embedder `{r['embedder']}`; {r['model']}. {r['held_out']} "
        f"(accuracy there {r['sci_accuracy_measured_half']:.4f}, {r['mistakes_measured_half']} mistakes); "
        f"{r['off_topic_posts']} off-topic test posts.", "",
        "| detector | REVIEW_RATE | in-domain flagged | mistakes caught | off-topic caught | comp.* "
        "| rec.* |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r["rows"]:
        rate = "–" if row["rate"] is None else f"{row['rate']:g}"
        bold = "**" if row["detector"] == DEFAULT_DETECTOR and row["rate"] == 0.1 else ""
        lines.append(f"| {bold}{row['detector']}{bold} | {rate} | {row['in_domain_flagged']:.1%} "
                     f"| {row['mistakes_caught']:.0%} | {row['off_topic_caught']:.0%} "
                     f"| {row['by_group']['comp']:.0%} | {row['by_group']['rec']:.0%} |")
    lines += ["", f"Cache: {r['cache']['hits']} hits, {r['cache']['misses']} embedded; {r['seconds']} s.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
