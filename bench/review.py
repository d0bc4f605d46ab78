"""The review flag on real data: the sci model meeting sci posts and off-topic (comp.*, rec.*) posts.

Trains what `topicq train --dataset 20newsgroups --groups sci --per-class 100`
trains (the default TrainConfig; self-training only with --self-training) on the local
all-MiniLM-L6-v2 embedder, calibrates the out-of-domain reference on its
labelled training posts as training does, then measures:

  - on sci test posts (`--test-per-class` a class, in domain): the share flagged for
    review by each rule, and how many of the model's mistakes the flag catches,
    for a grid of REVIEW_BELOW x REVIEW_MARGIN;
  - on comp.* and rec.* test posts (`--off-per-group` a group, out of domain):
    the share caught by the out-of-domain score alone, by score/margin alone, and by either;
  - the same for other calibration quantiles of the out-of-domain reference.

    .venv/bin/python -m bench.review                  # embeddings cached in TOPICQ_HOME (/tmp/bench-home)
    .venv/bin/python -m bench.review --off-per-group 100

Writes bench/results/review.json and review.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
BELOW = (0.5, 0.6, 0.7, 0.8, 0.9)
MARGIN = (0.0, 0.1, 0.2, 0.3, 0.4)
QUANTILES = (0.9, 0.95, 0.98, 0.99)
OFF_TOPIC = ("comp", "rec")


def _share(mask: np.ndarray) -> float:
    return round(float(np.mean(mask)), 4) if len(mask) else 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--home", default=os.environ.get("TOPICQ_HOME", "/tmp/bench-home"),
                   help="TOPICQ_HOME holding the embedding cache")
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--test-per-class", type=int, default=100, help="sci test posts per class (0: all 1,579)")
    p.add_argument("--off-per-group", type=int, default=50, help="comp.*/rec.* test posts per group")
    p.add_argument("--self-training", action="store_true",
                   help="Also embed the 1,973 unlabeled sci posts and self-train, as `topicq train` does")
    p.add_argument("--below", type=float, help="REVIEW_BELOW to report (default: the setting's default)")
    p.add_argument("--margin", type=float, help="REVIEW_MARGIN to report (default: the setting's default)")
    args = p.parse_args(argv)

    from shared.database.migrate import upgrade
    from shared.improvement.review import LOW_MARGIN, LOW_SCORE, OUT_OF_DOMAIN, ReviewPolicy, assess
    from shared.model.out_of_domain import DEFAULT_QUANTILE, calibrate
    from shared.settings import Settings
    from trainer.datasets import load_newsgroups, sample_per_class
    from trainer.train import TrainConfig, fit_with_self_training, prepare_inputs

    settings = Settings(topicq_home=Path(args.home), database_url=os.environ.get("BENCH_DATABASE_URL"))
    upgrade(settings.db_url)
    below = args.below if args.below is not None else settings.review_below
    margin = args.margin if args.margin is not None else settings.review_margin
    started = time.perf_counter()

    full_train = load_newsgroups(subset="train", groups=("sci",))
    train = sample_per_class(full_train, args.per_class, 0)
    test = load_newsgroups(subset="test", groups=("sci",))
    if args.test_per_class:
        test = sample_per_class(test, args.test_per_class, 0)
    off = sample_per_class(load_newsgroups(subset="test", groups=OFF_TOPIC), args.off_per_group, 0)
    chosen = set(train.ids)
    pool = [t for i, t in zip(full_train.ids, full_train.texts, strict=True) if i not in chosen]
    if not args.self_training:
        pool = []
    config = TrainConfig(embedder="local", self_training=0.9 if args.self_training else 1.0)
    texts = train.texts + test.texts + off.texts + pool
    inputs, stats, embedder_id, _ = prepare_inputs(settings, config, texts)
    n1, n2, n3 = len(train), len(train) + len(test), len(train) + len(test) + len(off)
    x_train, x_test, x_off = inputs.take(slice(0, n1)), inputs.take(slice(n1, n2)), inputs.take(slice(n2, n3))
    fitted = fit_with_self_training(config, x_train, train.labels, seed=0,
                                    unlabeled=inputs.take(slice(n3, None)) if pool else None)
    model = fitted.classifier
    labels = [str(c) for c in model.classes_]
    p_test = model.predict_proba(x_test.vectors, x_test.texts)
    p_off = model.predict_proba(x_off.vectors, x_off.texts)
    wrong = np.array(labels)[p_test.argmax(axis=1)] != np.array(test.labels)

    def reasons(probabilities: np.ndarray, domain: np.ndarray | None, b: float,
                m: float) -> list[tuple[str, ...]]:
        return [u.reasons for u in assess(probabilities, labels, domain, ReviewPolicy(b, m))]

    def has(rs: list[tuple[str, ...]], *wanted: str) -> np.ndarray:
        return np.array([any(w in r for w in wanted) for r in rs])

    # Score and margin alone, over the grid (no domain reference).
    grid = []
    for b in BELOW:
        for m in MARGIN:
            rs_test, rs_off = reasons(p_test, None, b, m), reasons(p_off, None, b, m)
            flagged = has(rs_test, LOW_SCORE, LOW_MARGIN)
            grid.append({
                "below": b, "margin": m, "sci_flagged": _share(flagged),
                "errors_caught": _share(flagged[wrong]),
                "accuracy_unflagged": _share(~wrong[~flagged]) if (~flagged).any() else None,
                "accuracy_flagged": _share(~wrong[flagged]) if flagged.any() else None,
                "off_topic_flagged": _share(has(rs_off, LOW_SCORE, LOW_MARGIN)),
            })

    # The out-of-domain reference at several calibration quantiles, with the chosen score/margin rule.
    groups = np.array(off.labels)
    domain_rows = []
    for q in QUANTILES:
        reference = calibrate(x_train.vectors, train.labels, quantile=q)
        d_test, d_off = reference.scores(x_test.vectors), reference.scores(x_off.vectors)
        rs_test, rs_off = reasons(p_test, d_test, below, margin), reasons(p_off, d_off, below, margin)
        domain_rows.append({
            "quantile": q,
            "sci_flagged_out_of_domain": _share(has(rs_test, OUT_OF_DOMAIN)),
            "sci_flagged_any": _share(np.array([bool(r) for r in rs_test])),
            "off_topic_caught_out_of_domain": _share(has(rs_off, OUT_OF_DOMAIN)),
            "off_topic_caught_any": _share(np.array([bool(r) for r in rs_off])),
            "off_topic_caught_by_group": {
                g: _share(has([r for r, gg in zip(rs_off, groups, strict=True) if gg == g], OUT_OF_DOMAIN))
                for g in sorted(set(off.labels))},
        })
    off_scores = p_off.max(axis=1)
    # KEEP_TEXT's cost: the UTF-8 bytes of the texts a row keeps, per post classified.
    chosen_q = next(o for o in domain_rows if o["quantile"] == DEFAULT_QUANTILE)
    text_bytes = np.array([len(t.encode("utf-8")) for t in test.texts + off.texts])
    flagged_share = {"sci": chosen_q["sci_flagged_any"], "off_topic": chosen_q["off_topic_caught_any"]}
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "embedder": embedder_id,
        "model": f"default TrainConfig, sci, {args.per_class} train posts a class + "
                 f"{len(fitted.self_trained)} self-training posts",
        "sci_test_posts": len(test), "sci_test_accuracy": _share(~wrong),
        "off_topic_posts": len(off), "off_topic_groups": sorted(set(off.labels)),
        "off_topic_mean_score": round(float(off_scores.mean()), 4),
        "off_topic_score_at_least_0.9": int((off_scores >= 0.9).sum()),
        "defaults": {"review_below": below, "review_margin": margin, "domain_quantile": DEFAULT_QUANTILE},
        "score_margin_grid": grid,
        "out_of_domain": domain_rows,
        "text_bytes_per_post": round(float(text_bytes.mean())),
        "keep_text_bytes_per_1000_posts": {
            "all": round(float(text_bytes.mean()) * 1000),
            "review (sci stream)": round(float(text_bytes.mean()) * 1000 * flagged_share["sci"]),
            "review (off-topic stream)": round(float(text_bytes.mean()) * 1000 * flagged_share["off_topic"]),
        },
        "cache": {"hits": stats.hits, "misses": stats.misses},
        "seconds": round(time.perf_counter() - started, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "review.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "review.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(r: dict[str, Any]) -> str:
    d = r["defaults"]
    lines = [
        "# Review flag: sci model, sci test posts (in domain) and comp.*/rec.* posts (out of domain)", "",
        f"{r['when']}, embedder `{r['embedder']}`; {r['model']}.",
        f"Sci test: {r['sci_test_posts']} posts, accuracy {r['sci_test_accuracy']:.3f}. "
        f"Off-topic: {r['off_topic_posts']} posts of {', '.join(r['off_topic_groups'])}; "
        f"mean top score {r['off_topic_mean_score']:.2f}, {r['off_topic_score_at_least_0.9']} at ≥ 0.9.", "",
        "## Score and margin alone (no out-of-domain score)", "",
        "| REVIEW_BELOW | REVIEW_MARGIN | sci flagged | sci errors caught | accuracy unflagged "
        "| accuracy flagged | off-topic flagged |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for g in r["score_margin_grid"]:
        chosen = (g["below"], g["margin"]) == (d["review_below"], d["review_margin"])
        mark = " **(default)**" if chosen else ""
        lines.append(f"| {g['below']}{mark} | {g['margin']} | {g['sci_flagged']:.3f} "
                     f"| {g['errors_caught']:.3f} | {g['accuracy_unflagged']} | {g['accuracy_flagged']} "
                     f"| {g['off_topic_flagged']:.3f} |")
    lines += ["", f"## Out of domain (with REVIEW_BELOW {d['review_below']}, "
                  f"REVIEW_MARGIN {d['review_margin']})",
              "", "| quantile | sci flagged out of domain | sci flagged (any reason) "
              "| off-topic caught out of domain | off-topic caught (any reason) | by group (out of domain) |",
              "|---:|---:|---:|---:|---:|---|"]
    for o in r["out_of_domain"]:
        mark = " **(default)**" if o["quantile"] == d["domain_quantile"] else ""
        by_group = ", ".join(f"{g} {v:.2f}" for g, v in o["off_topic_caught_by_group"].items())
        lines.append(f"| {o['quantile']}{mark} | {o['sci_flagged_out_of_domain']:.3f} "
                     f"| {o['sci_flagged_any']:.3f} | {o['off_topic_caught_out_of_domain']:.3f} "
                     f"| {o['off_topic_caught_any']:.3f} | {by_group} |")
    kept = ", ".join(f"{k} {v / 1000:.0f} kB" for k, v in r["keep_text_bytes_per_1000_posts"].items())
    lines += ["", f"KEEP_TEXT: a post's text is {r['text_bytes_per_post']} bytes on average; kept per 1,000 "
                  f"posts classified: {kept}."]
    lines += ["", f"Cache: {r['cache']['hits']} hits, {r['cache']['misses']} embedded; {r['seconds']} s.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
