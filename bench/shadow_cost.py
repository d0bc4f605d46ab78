"""What a challenger scored in shadow costs a worker: the pipeline with and without it, side by side.

In one run, on the same 20 Newsgroups sci test posts, `worker.pipeline.process`
(the function a worker runs per batch: embed once, classify, write rows to a
fresh PostgreSQL database) in three modes, interleaved round by round so the
neighbours' load falls on each alike:

- plain: no followers (the pipeline before shadow scoring and drift sums);
- sums: the drift sums of the served version only (SHADOW_ALIAS empty);
- shadow: drift sums plus a challenger on `staging` (its classify call, its rows, its sums).

For each embedder (local all-MiniLM-L6-v2; fake, where embedding costs next to
nothing and the overhead shows bare): posts/s and CPU ms per post per mode,
and the cost of sums and of shadow as a share of the plain figures (the CPU
figures hold on a busy machine; wall-clock ones move with the neighbours). Both versions are the default model
(trainer.train.TrainConfig) fitted on 100 sci training posts per class, two seeds;
the local training vectors go through the embedding cache in --home.

    .venv/bin/python -m bench.shadow_cost                    # 320 posts, 2 rounds, local and fake
    .venv/bin/python -m bench.shadow_cost --posts 320 --embedders fake

Writes bench/results/shadow_cost.json and .md.
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

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from testkit.databases import ADMIN_URL, throwaway_database  # noqa: E402

RESULTS = ROOT / "bench" / "results"
MODES = ("plain", "sums", "shadow")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--posts", type=int, default=320, help="posts per mode and round")
    p.add_argument("--rounds", type=int, default=2, help="rounds of the three modes, interleaved")
    p.add_argument("--batch-size", type=int, default=32, help="posts per batch (BATCH_SIZE)")
    p.add_argument("--embedders", default="local,fake")
    p.add_argument("--home", default="/tmp/topicq-bench-drift",
                   help="TOPICQ_HOME of the local embedding cache (filled on first use)")
    p.add_argument("--pg-admin-url", default=ADMIN_URL)
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args(argv)


def register_pair(db_url: str, models: Path, kind: str, home: str) -> None:
    """Production (seed 0) and staging (seed 1): the default model on the sci training posts."""
    from shared.database.migrate import upgrade
    from shared.model import registry
    from shared.model.embedders import make_embedder
    from shared.model.preprocess import PREPROCESS_VERSION
    from shared.model.store import ModelMeta, TopicModel
    from shared.settings import Settings
    from trainer.datasets import load_newsgroups
    from trainer.train import TrainConfig, fit_classifier, prepare_inputs

    settings = Settings(topicq_home=Path(home), database_url=None if kind == "local" else db_url,
                        embedder=kind)  # type: ignore[arg-type]
    upgrade(settings.db_url)  # the embedding cache's database
    train = load_newsgroups(subset="train", groups=("sci",), per_class=100, seed=0)  # as `make demo`
    embedder = make_embedder(kind, settings)
    inputs, _, embedder_id, dim = prepare_inputs(settings, TrainConfig(), train.texts, progress=False,
                                                 embedder=embedder)
    for seed, alias in ((1, "production"), (2, "staging")):  # versions 1 and 2
        classifier = fit_classifier(TrainConfig(), inputs, train.labels, seed=seed)
        meta = ModelMeta(name="topics", version=0, labels=list(map(str, classifier.classes_)),
                         embedder_id=embedder_id, embedder_dim=dim, preprocess_version=PREPROCESS_VERSION,
                         data_fingerprint="bench", created_at=datetime.now(UTC).isoformat())
        registry.publish_version(db_url, models, TopicModel(meta, classifier), promote_to=alias)


def measure(kind: str, texts: list[str], args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    from shared.database.migrate import upgrade
    from shared.model.embedders import make_embedder
    from shared.settings import Settings
    from worker.after_batch import make_after_batch
    from worker.pipeline import process
    from worker.served_model import ServedModel

    with throwaway_database(args.pg_admin_url, "topicq_bench") as db:
        upgrade(db)
        models = Path(tmp) / kind
        print(f"[{kind}] fitting production and staging on the sci training posts ...", flush=True)
        register_pair(db, models, kind, args.home)
        base = dict(database_url=db, model_dir=models, embedder=kind, model_refresh_s=60.0)
        embedder = make_embedder(kind, Settings(**base))  # type: ignore[arg-type]
        server = ServedModel(db, name="topics", alias="production", embedder=embedder, refresh_s=60)
        followers = {"plain": None,
                     "sums": make_after_batch(Settings(**base, shadow_alias="")),  # type: ignore[arg-type]
                     "shadow": make_after_batch(Settings(**base))}  # type: ignore[arg-type]
        settings = Settings(**base)  # type: ignore[arg-type]
        seconds = {mode: 0.0 for mode in MODES}
        cpu = {mode: 0.0 for mode in MODES}

        def run(mode: str, prefix: str, batch_texts: list[str]) -> tuple[float, float]:
            started, cpu_started = time.perf_counter(), time.process_time()
            for start in range(0, len(batch_texts), args.batch_size):
                chunk = [{"id": f"{prefix}-{start + i}", "text": t}
                         for i, t in enumerate(batch_texts[start: start + args.batch_size])]
                report = process(chunk, settings=settings, models=server, cache_embeddings=False,
                                 followers=followers[mode])
                assert report.error is None, report.error
            return time.perf_counter() - started, time.process_time() - cpu_started

        for mode in MODES:  # warm-up: models loaded, challenger followed
            run(mode, f"warm-{mode}", texts[: args.batch_size])
        for r in range(args.rounds):
            order = MODES if r % 2 == 0 else tuple(reversed(MODES))
            for mode in order:
                wall, used = run(mode, f"{mode}-{r}", texts)
                seconds[mode] += wall
                cpu[mode] += used
                print(f"[{kind}] round {r + 1} {mode}: {wall:.1f} s, {used:.1f} CPU s", flush=True)
        posts = len(texts) * args.rounds
        rate = {mode: round(posts / seconds[mode], 1) for mode in MODES}
        # On a shared machine wall time moves with the neighbours' load; the CPU time of this process doesn't.
        cpu_ms = {mode: round(1000 * cpu[mode] / posts, 2) for mode in MODES}
        shadow_rows = _count_shadow_rows(db)
    return {"embedder_id": embedder.id, "posts_per_mode": posts, "posts_per_s": rate,
            "cpu_ms_per_post": cpu_ms, "shadow_rows": shadow_rows,
            "cost_of_sums": round(1 - rate["sums"] / rate["plain"], 3),
            "cost_of_shadow": round(1 - rate["shadow"] / rate["plain"], 3),
            "cpu_cost_of_sums": round(cpu_ms["sums"] / cpu_ms["plain"] - 1, 3),
            "cpu_cost_of_shadow": round(cpu_ms["shadow"] / cpu_ms["plain"] - 1, 3)}


def _count_shadow_rows(db: str) -> int:
    from shared.database.results import count_rows

    return count_rows(db, shadow=True)


def table(results: dict[str, Any]) -> str:
    lines = [f"# Shadow scoring cost ({results['when']}, {results['settings']['cores']} cores, "
             f"load {results['settings']['load_avg_at_start']:.1f})", "",
             "| embedder | posts/s plain / + drift sums / + shadow | cost of sums, shadow (wall) "
             "| CPU ms per post plain / + sums / + shadow | cost of sums, shadow (CPU) |",
             "|---|---|---|---|---|"]
    for kind, r in results["embedders"].items():
        rate, cpu = r["posts_per_s"], r["cpu_ms_per_post"]
        lines.append(f"| {kind} | {rate['plain']} / {rate['sums']} / {rate['shadow']} | "
                     f"{r['cost_of_sums']:.1%}, {r['cost_of_shadow']:.1%} | "
                     f"{cpu['plain']} / {cpu['sums']} / {cpu['shadow']} | "
                     f"{r['cpu_cost_of_sums']:.1%}, {r['cpu_cost_of_shadow']:.1%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from shared.model.preprocess import preprocess
    from trainer.datasets import load_newsgroups

    test = load_newsgroups(subset="test", groups=("sci",))
    texts = [preprocess(t) for t in test.texts[: args.posts]]
    results: dict[str, Any] = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "settings": {"posts": len(texts), "rounds": args.rounds, "batch_size": args.batch_size,
                     "cores": os.cpu_count(), "load_avg_at_start": os.getloadavg()[0]},
        "embedders": {},
    }
    with tempfile.TemporaryDirectory(prefix="topicq-shadow-") as tmp:
        for kind in [k for k in args.embedders.split(",") if k]:
            results["embedders"][kind] = measure(kind, texts, args, tmp)
            print(f"[{kind}] {results['embedders'][kind]}", flush=True)
    results["settings"]["load_avg_at_end"] = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "shadow_cost.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "shadow_cost.md").write_text(table(results))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
