"""How often `topicq drift` flags a window: the sci model fed sci test posts, rec.* posts, comp.* posts.

In one run, with the local embedder (all-MiniLM-L6-v2): the default model
(trainer.train.TrainConfig) fitted on 100 sci training posts per class, its
reference computed as training computes it (trainer.train.test_reference) on
50 sci test posts per class; then other posts, never in the reference, in
windows of --window posts, each window's sums built as workers build them
(worker.after_batch.batch_sums) and compared with the reference with the default
thresholds (shared.improvement.drift). Per source: the share of windows flagged, per
figure and in all, and the mean figures. Sci windows flagged are false alarms;
rec and comp windows not flagged are misses.

    .venv/bin/python -m bench.drift_rates                    # 400 posts per source, windows of 50
    .venv/bin/python -m bench.drift_rates --posts 200 --window 100

Embeddings are cached in --home (the training posts are shared with
bench/shadow_cost.py). Writes bench/results/drift_rates.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
SOURCES = ("sci", "rec", "comp")
FIGURES = ("labels", "confidence", "centroid")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--posts", type=int, default=400, help="live posts per source")
    p.add_argument("--window", type=int, default=50, help="posts per window")
    p.add_argument("--home", default="/tmp/topicq-bench-drift", help="TOPICQ_HOME of the embedding cache")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np

    from shared.database.migrate import upgrade
    from shared.database.results import ResultRow, Status
    from shared.improvement.drift import Thresholds, compare
    from shared.improvement.drift_sums import WindowSums
    from shared.improvement.review import ReviewPolicy
    from shared.model.out_of_domain import calibrate
    from shared.settings import Settings
    from trainer.datasets import load_newsgroups
    from trainer.train import ModelInputs, TrainConfig, fit_classifier, prepare_inputs, test_reference
    from worker.after_batch import batch_sums

    settings = Settings(topicq_home=Path(args.home), database_url=None, embedder="local")
    upgrade(settings.db_url)
    config = TrainConfig()
    train = load_newsgroups(subset="train", groups=("sci",), per_class=100, seed=0)
    sci_test = load_newsgroups(subset="test", groups=("sci",))
    rng = random.Random(0)
    order = list(range(len(sci_test)))
    rng.shuffle(order)
    by_label: dict[str, list[int]] = {}
    for i in order:
        by_label.setdefault(sci_test.labels[i], []).append(i)
    reference_ids = [i for ids in by_label.values() for i in ids[:50]]
    live_sci = [i for i in order if i not in set(reference_ids)][: args.posts]
    texts = {"train": train.texts, "reference": [sci_test.texts[i] for i in reference_ids],
             "sci": [sci_test.texts[i] for i in live_sci]}
    for group in ("rec", "comp"):
        data = load_newsgroups(subset="test", groups=(group,))
        picked = rng.sample(range(len(data)), args.posts)
        texts[group] = [data.texts[i] for i in picked]
    print("embedding (cached in --home) ...", flush=True)
    inputs: dict[str, ModelInputs] = {}
    for key, batch in texts.items():
        inputs[key], stats, _, _ = prepare_inputs(settings, config, batch, progress=False)
        print(f"  {key}: {len(batch)} posts, {stats.hits} from the cache", flush=True)
    classifier = fit_classifier(config, inputs["train"], train.labels, seed=0)
    held_out = inputs["reference"]
    reference = test_reference(classifier, held_out,
                               classifier.predict_proba(held_out.vectors, held_out.texts),
                               calibrate(inputs["train"].vectors, train.labels),
                               ReviewPolicy.from_settings(settings))
    labels = [str(c) for c in classifier.classes_]
    thresholds = Thresholds()
    results: dict[str, Any] = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "settings": {"posts_per_source": args.posts, "window": args.window, "thresholds": thresholds.__dict__,
                     "train_posts": len(train), "reference_posts": reference.posts},
        "reference": {"mean_confidence": round(reference.mean_confidence, 3),
                      "spread": round(reference.spread, 3)},
        "sources": {},
    }
    for source in SOURCES:
        x = inputs[source]
        probabilities = classifier.predict_proba(x.vectors, x.texts)
        reports = []
        for start in range(0, len(x.vectors) - args.window + 1, args.window):
            part = slice(start, start + args.window)
            rows = [ResultRow(post_id=str(i), model_name="sci", model_version=1, status=Status.DONE,
                              label=labels[int(p.argmax())], score=float(p.max()))
                    for i, p in enumerate(probabilities[part])]
            sums = batch_sums(rows, x.vectors[part])
            window = WindowSums(start=datetime.now(UTC), posts=sums.posts, label_counts=sums.label_counts,
                                confidence_sum=sums.confidence_sum, embedding_sum=sums.embedding_sum,
                                embedding_sq_sum=sums.embedding_sq_sum)
            reports.append(compare(window, reference, 3600, thresholds))
        n = len(reports)
        results["sources"][source] = {
            "windows": n,
            "flagged": round(sum(bool(r.crossed) for r in reports) / n, 3),
            **{f"flagged_{figure}": round(sum(figure in r.crossed for r in reports) / n, 3)
               for figure in FIGURES},
            "mean_js": round(float(np.mean([r.js_distance for r in reports])), 3),
            "median_chi2_p": float(f"{np.median([r.chi2_p for r in reports]):.2e}"),
            "mean_confidence": round(float(np.mean([r.mean_confidence for r in reports])), 3),
            "mean_centroid_shift": round(float(np.mean([r.centroid_shift for r in reports])), 3),
        }
        print(f"{source}: {results['sources'][source]}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "drift_rates.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "drift_rates.md").write_text(table(results))
    print(table(results))
    return 0


def table(results: dict[str, Any]) -> str:
    s = results["settings"]
    lines = [f"# Drift flags, sci model ({results['when']}; {s['posts_per_source']} posts per source, "
             f"windows of {s['window']}; reference: {s['reference_posts']} sci test posts, mean confidence "
             f"{results['reference']['mean_confidence']})", "",
             "| posts | windows flagged | labels | confidence | centroid | mean JS | median chi2 p "
             "| mean confidence | mean centroid shift |", "|---|---|---|---|---|---|---|---|---|"]
    for source, r in results["sources"].items():
        lines.append(f"| {source} | {r['flagged']:.0%} | {r['flagged_labels']:.0%} | "
                     f"{r['flagged_confidence']:.0%} | {r['flagged_centroid']:.0%} | {r['mean_js']} | "
                     f"{r['median_chi2_p']:.1e} | {r['mean_confidence']} | {r['mean_centroid_shift']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
