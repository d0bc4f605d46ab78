"""The local encoders side by side: torch vs onnx fp32 vs onnx int8, at 128 / 256 / 512 tokens.

In one run, on the same sci test posts (preprocessed as at serving), for each
token length and encoder: the best raw rate (posts/s and CPU ms per post; each
encoder embeds all the posts in one call, so it batches them its best way:
torch in token-budget batches of length-sorted posts, onnx one post a run),
and the mean and lowest cosine of its vectors to torch's at that length. The
encoders take turns, `--rounds` times, and the best round counts: the machine
is shared, and a neighbour's burst should not decide a comparison.
Accuracy on (b) per encoder: bench/accuracy.py (variants "topicq default",
"default on the torch encoder", "default on the onnx fp32 encoder").

    .venv/bin/python -m bench.encoders                      # 400 posts, 2 rounds
    .venv/bin/python -m bench.encoders --posts 100 --lengths 256 --rounds 1

Writes bench/results/encoders.json and encoders.md.
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

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
KINDS = ("local", "local-onnx-fp32", "local-onnx")
LABELS = {"local": "torch fp32 (sentence-transformers)", "local-onnx-fp32": "onnx fp32",
          "local-onnx": "onnx int8 (default)"}


def sci_test_texts(n: int) -> list[str]:
    """`n` sci test posts spread over the set (real lengths), preprocessed."""
    from shared.model.preprocess import preprocess
    from trainer.datasets import load_newsgroups

    data = load_newsgroups(subset="test", groups=("sci",))
    step = max(1, len(data) // n)
    return [preprocess(data.texts[i]) for i in range(0, len(data), step)][:n]


def timed(embedder: Any, texts: list[str]) -> tuple[Any, float, float]:
    started, cpu = time.perf_counter(), time.process_time()
    vectors = embedder.embed(texts)
    return vectors, time.perf_counter() - started, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--posts", type=int, default=400)
    p.add_argument("--lengths", default="128,256,512", help="token lengths (LOCAL_MODEL_MAX_TOKENS)")
    p.add_argument("--rounds", type=int, default=2, help="turns per encoder; the best counts")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    import numpy as np

    from shared.model.embedders import make_embedder
    from shared.settings import Settings

    texts = sci_test_texts(args.posts)
    lengths = [int(v) for v in args.lengths.split(",") if v.strip()]
    results: dict[str, Any] = {"when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                               "posts": len(texts), "cores": os.cpu_count(), "rounds": args.rounds,
                               "load_avg_at_start": os.getloadavg()[0], "rows": []}
    for max_tokens in lengths:
        settings = Settings(local_model_max_tokens=max_tokens)
        embedders = {kind: make_embedder(kind, settings) for kind in KINDS}
        loads = {}
        for kind, embedder in embedders.items():
            started = time.perf_counter()
            embedder.embed(texts[:2])  # load (the first torch one pays for importing torch)
            loads[kind] = time.perf_counter() - started
        best: dict[str, dict[str, float]] = {}
        vectors: dict[str, Any] = {}
        for _ in range(args.rounds):
            for kind, embedder in embedders.items():
                vectors[kind], seconds, cpu = timed(embedder, texts)
                rate = len(texts) / seconds
                if rate > best.get(kind, {}).get("posts_per_s", 0.0):
                    best[kind] = {"posts_per_s": round(rate, 2),
                                  "cpu_ms_per_post": round(1000 * cpu / len(texts), 1)}
        torch_rate = best["local"]["posts_per_s"]
        for kind in KINDS:
            cosines = np.sum(vectors[kind] * vectors["local"], axis=1)
            row = {"max_tokens": max_tokens, "encoder": kind, "embedder_id": embedders[kind].id,
                   **best[kind], "vs_torch": round(best[kind]["posts_per_s"] / torch_rate, 2),
                   "cosine_to_torch_mean": round(float(cosines.mean()), 4),
                   "cosine_to_torch_min": round(float(cosines.min()), 4),
                   "first_call_s": round(loads[kind], 2)}
            results["rows"].append(row)
            print(row, flush=True)
    results["load_avg_at_end"] = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "encoders.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "encoders.md").write_text(table(results))
    print(table(results))
    return 0


def table(results: dict[str, Any]) -> str:
    lines = [
        "# Local encoders side by side (raw, best rate)", "",
        f"{results['when']} on {results['cores']} cores shared with other jobs (load average "
        f"{results['load_avg_at_start']:.1f} at start, {results['load_avg_at_end']:.1f} at end); "
        f"{results['posts']} sci test posts; each encoder embeds them all in one call, the encoders "
        f"taking turns, best of {results['rounds']} rounds. `python -m bench.encoders`.", "",
        "| tokens | encoder | posts/s | × torch | CPU ms/post | cosine to torch (mean / min) "
        "| first call s |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:
        lines.append(f"| {r['max_tokens']} | {LABELS[r['encoder']]} | {r['posts_per_s']} | {r['vs_torch']} | "
                     f"{r['cpu_ms_per_post']} | {r['cosine_to_torch_mean']} / {r['cosine_to_torch_min']} | "
                     f"{r['first_call_s']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
