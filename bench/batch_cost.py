"""What a batch costs the worker around its encoder: CPU per post by stage, the encoder left out.

The default model (as bench/throughput.py fits it from the embedding cache, with
its review calibration) classifies 20 Newsgroups test posts in batches of 32
through `worker.pipeline.classify_batch`, with an embedder that hands back
fixed vectors (the encoder's own cost is bench/encoder_lanes.py's); each
batch's rows are written to a fresh PostgreSQL database (`write_rows`) and
its drift sums added (`add_sums`), as a worker does. Each stage is run on its
own over every batch (after a warm-up pass), and its CPU timed, then the whole
batch as the worker runs it:

    SCIKIT_LEARN_DATA=... .venv/bin/python -m bench.batch_cost --groups sci --home /tmp/bench-home

Writes bench/results/batch_cost.json and .md. What is not here is Celery's and
kombu's message path, and PostgreSQL's and Redis's own CPU (bench/throughput.py
measures those in a running worker).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from testkit.databases import ADMIN_URL, throwaway_database  # noqa: E402

RESULTS = ROOT / "bench" / "results"
class FixedVectors:
    """An embedder that hands back a fixed vector per text: the encoder left out."""

    def __init__(self, embedder_id: str, table: dict[str, np.ndarray]) -> None:
        self.id, self.dim, self.table = embedder_id, 384, table

    def embed_each(self, texts: list[str]) -> Any:
        from shared.model.embedders.base import EmbedOutcome

        return EmbedOutcome(np.stack([self.table[t] for t in texts]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--posts", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--home", default="/tmp/bench-home", help="TOPICQ_HOME with the embedding cache")
    p.add_argument("--groups", default="sci", help="20 Newsgroups groups of the model")
    p.add_argument("--embedder", default="local-onnx")
    p.add_argument("--pg-admin-url", default=ADMIN_URL)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)

    from bench.throughput import bench_posts, register_default_model
    from shared.database.results import write_rows
    from shared.improvement.drift_sums import add_sums
    from shared.improvement.review import ReviewPolicy, review_flags
    from shared.model import registry
    from shared.model.preprocess import preprocess
    from shared.model.threads import settle_classifier_threads
    from shared.settings import Settings
    from shared.wire.payload import Post
    from worker.after_batch import AfterBatch, batch_sums
    from worker.pipeline import classify_batch

    settle_classifier_threads(os.cpu_count() or 1)  # as a worker does: numpy's BLAS on the calling thread
    with tempfile.TemporaryDirectory() as tmp, throwaway_database(args.pg_admin_url, "topicq_bench") as db:
        fitted = register_default_model(db, Path(tmp) / "models", args.home,
                                        tuple(g for g in args.groups.split(",") if g), args.embedder)
        model = registry.load(db, name="topics", version=registry.resolve(db, name="topics") or 0)
        posts = bench_posts(args.posts)
        rng = np.random.default_rng(0)
        unit = rng.normal(size=(len(posts), 384)).astype(np.float32)
        embedder = FixedVectors(fitted["embedder_id"], {preprocess(post["text"]): vector
                                                        for post, vector in zip(posts, unit, strict=True)})
        sent = [Post(id=f"p{i}", text=post["text"]) for i, post in enumerate(posts)]
        batches = [sent[start:start + args.batch_size] for start in range(0, len(sent), args.batch_size)]
        policy = ReviewPolicy.from_settings(Settings(database_url=db))
        follower = AfterBatch(Settings(database_url=db), None)

        def whole_batch(batch: list[Post]) -> None:
            write_rows(db, classify_batch(batch, embedder, model, review=policy,  # type: ignore[arg-type]
                                          embedded=lambda e: follower.after_write([e])))

        texts = [[post.text for post in batch] for batch in batches]
        lexicon = model.classifier.lexicon_
        inputs = [(embedder.embed_each([preprocess(t) for t in batch]).vectors, batch) for batch in texts]
        labels = [str(label) for label in model.classifier.classes_]
        probabilities = [model.classifier.predict_proba(vectors, batch) for vectors, batch in inputs]
        rows = [classify_batch(batch, embedder, model, review=policy) for batch in batches]  # type: ignore[arg-type]
        stages: list[tuple[str, Any]] = [
            ("preprocessing (the embedder's text)", lambda i: [preprocess(t) for t in texts[i]]),
            ("the words' TF-IDF (Lexicon.transform)", lambda i: lexicon.transform(texts[i])),
            ("classifier (TF-IDF and forward pass)", lambda i: model.classifier.predict_proba(*inputs[i])),
            ("review flags (uncertainty, distances)",
             lambda i: review_flags(probabilities[i], inputs[i][0], labels, model, policy)),
            ("row writes (write_rows)", lambda i: write_rows(db, rows[i])),
            ("drift sums (batch_sums, add_sums)",
             lambda i: add_sums(db, model_name="topics", model_version=1, bucket_s=3600,
                                sums=batch_sums(rows[i], inputs[i][0]))),
            ("**the whole batch** (the above, rows built, metrics)", lambda i: whole_batch(batches[i])),
        ]
        by_stage: dict[str, float] = {}
        for stage, run in stages:
            for i in range(len(batches)):  # warm: statements prepared, caches filled
                run(i)
            cpu = time.process_time()
            for i in range(len(batches)):
                run(i)
            by_stage[stage] = time.process_time() - cpu
    table = [{"stage": stage, "ms_per_post": round(1000 * seconds / len(posts), 3)}
             for stage, seconds in by_stage.items()]
    result = {"when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "posts": len(posts),
              "batch_size": args.batch_size, "model": fitted, "stages": table}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "batch_cost.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "batch_cost.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(r: dict[str, Any]) -> str:
    lines = ["# A batch's cost around the encoder: CPU per post by stage", "",
             f"{r['when']}; {r['posts']} 20 Newsgroups test posts in batches of {r['batch_size']}, the "
             f"default model (inputs {r['model']['inputs']}, {r['model']['classes']} classes, with its "
             f"review calibration), fixed vectors instead of the encoder; rows written to PostgreSQL. Each "
             f"stage alone over every batch, CPU timed (bench/batch_cost.py).", "",
             "| stage | CPU ms per post |", "|---|---:|"]
    lines += [f"| {row['stage']} | {row['ms_per_post']:.3f} |" for row in r["stages"]]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
