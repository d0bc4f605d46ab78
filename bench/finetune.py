"""`topicq train --finetune` against the frozen encoder: accuracy and training time, one run each.

Each run is the product's own path (trainer.train.run_training) in a fresh
TOPICQ_HOME, so the times include everything `topicq train` does from an
empty embedding cache: loading posts, tuning and exporting the encoder (when
tuned), embedding the training, test and unlabeled posts, fitting, publishing.

  b  sci, 100 train posts per class (seed 0) -> the full sci test set (1,579 posts)
  a  sci, 100 train / 25 test posts per class, seeds 0..4: mean ± sd

    .venv/bin/python -m bench.finetune                         # b, frozen then tuned (default steps)
    .venv/bin/python -m bench.finetune --only b --steps 50,100,200
    .venv/bin/python -m bench.finetune --only a --steps 100

Writes bench/results/finetune.json (runs merged by name) and finetune.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
SCENARIOS = {"b": ("sci, 100 train per class -> full sci test (1,579)", None, [0]),
             "a": ("sci, 100 train / 25 test per class, 5 seeds", 25, [0, 1, 2, 3, 4])}


def one_run(seed: int, test_per_class: int | None, steps: int | None,
            max_tokens: int | None) -> dict[str, Any]:
    """A training run in its own empty TOPICQ_HOME; steps None = the frozen encoder."""
    from shared.settings import Settings
    from trainer.finetune import FinetuneConfig
    from trainer.train import run_training

    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as home:
        settings = Settings(topicq_home=Path(home), database_url=None, embedder="local-onnx")
        finetune = None
        if steps is not None:
            finetune = FinetuneConfig(steps=steps, **({"max_tokens": max_tokens} if max_tokens else {}))
        load_before = os.getloadavg()[0]
        result = run_training(groups=("sci",), per_class=100, test_per_class=test_per_class, seed=seed,
                              finetune=finetune, progress=False, settings=settings)
        return {"seed": seed, "accuracy": round(result.metrics["accuracy"], 4),
                "macro_f1": round(result.metrics["macro_f1"], 4), "n_test": result.metrics["n"],
                "seconds": round(result.wall_seconds, 1), "finetune": result.finetune,
                "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)]}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    accuracies = [run["accuracy"] for run in runs]
    cell: dict[str, Any] = {"accuracy": round(statistics.mean(accuracies), 4),
                            "seconds": round(statistics.mean(run["seconds"] for run in runs), 1),
                            "runs": runs}
    if len(runs) > 1:
        cell["accuracy_sd"] = round(statistics.stdev(accuracies), 4)
    tuned = [run["finetune"] for run in runs if run["finetune"]]
    if tuned:
        cell["tune_seconds"] = round(statistics.mean(t["tune_seconds"] for t in tuned), 1)
        cell["export_seconds"] = round(statistics.mean(t["export_seconds"] for t in tuned), 1)
    return cell


def table(results: dict[str, Any]) -> str:
    lines = ["# Fine-tuned encoder (`topicq train --finetune`) against the frozen one", "",
             f"Last run {results['when']} on {results['cores']} shared cores; each run from an empty "
             "embedding cache (times: the whole `topicq train`, and of it the tuning and the export).", "",
             "| scenario | encoder | accuracy | train s | tune s | export s | load average | run |",
             "|---|---|---:|---:|---:|---:|---|---|"]
    for key, cell in sorted(results["cells"].items()):
        scenario, name = key.split("|")
        accuracy = f"{cell['accuracy']:.4f}"
        if "accuracy_sd" in cell:
            accuracy += f" ± {cell['accuracy_sd']:.4f}"
        loads = ", ".join(f"{r['load_average'][0]}–{r['load_average'][1]}" for r in cell["runs"])
        lines.append(f"| ({scenario}) {SCENARIOS[scenario][0]} | {name} | {accuracy} | {cell['seconds']:g} "
                     f"| {cell.get('tune_seconds', '–')} | {cell.get('export_seconds', '–')} | {loads} "
                     f"| {cell.get('when', '–')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--only", default="b", help="scenarios, comma-separated: a, b (default b)")
    parser.add_argument("--steps", default="default",
                        help="tuning steps to try, comma-separated ('default' = FinetuneConfig's)")
    parser.add_argument("--max-tokens", type=int, help="tuning token limit (default: FinetuneConfig's)")
    parser.add_argument("--no-frozen", action="store_true", help="skip the frozen-encoder run")
    args = parser.parse_args(argv)
    os.environ.setdefault("SCIKIT_LEARN_DATA", str(ROOT.parent / "shared" / "data" / "20newsgroups"))
    from trainer.finetune import FinetuneConfig

    out = RESULTS / "finetune.json"
    results = json.loads(out.read_text()) if out.exists() else {"cells": {}}
    steps = [FinetuneConfig().steps if s == "default" else int(s) for s in args.steps.split(",")]
    plans: list[int | None] = ([] if args.no_frozen else [None]) + list(steps)
    for scenario in args.only.split(","):
        _, test_per_class, seeds = SCENARIOS[scenario]
        for plan in plans:
            tokens = f", {args.max_tokens} tokens" if args.max_tokens else ""
            name = "frozen" if plan is None else f"batch-hard triplets, {plan} steps{tokens}"
            started = time.perf_counter()
            runs = [one_run(seed, test_per_class, plan, args.max_tokens) for seed in seeds]
            results["cells"][f"{scenario}|{name}"] = {
                **summarise(runs), "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
            print(f"({scenario}) {name}: {results['cells'][f'{scenario}|{name}']['accuracy']:.4f} "
                  f"in {time.perf_counter() - started:.0f} s", flush=True)
            results.update(when=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), cores=os.cpu_count())
            RESULTS.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=2) + "\n")
            (RESULTS / "finetune.md").write_text(table(results))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
