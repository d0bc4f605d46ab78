"""The int8 encoder's lanes: posts side by side, one core each, against one post at a time on all cores.

In one run, on the same sci test posts (preprocessed as at serving), the
default onnx int8 encoder embeds all the posts in one call, either way:

- lanes (default): ENCODER_THREADS runs at once, each on one core;
- one at a time: one run at a time with every core (before the lanes).

They take turns, `--rounds` times; the table gives each round and their sums
(posts/s, CPU ms per post). Also checks that both give the same vectors.

    .venv/bin/python -m bench.encoder_lanes                  # 400 posts, 3 rounds

Writes bench/results/encoder_lanes.json and encoder_lanes.md.
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

from bench.encoders import sci_test_texts  # noqa: E402

RESULTS = ROOT / "bench" / "results"
WAYS = {"lanes (default)": 0, "one at a time": 1}  # the embedder's `lanes`: 0 = one per thread


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--posts", type=int, default=400)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)

    import numpy as np

    from shared.model.embedders.onnx import OnnxEmbedder

    texts = sci_test_texts(args.posts)  # preprocessed as at serving
    embedders = {name: OnnxEmbedder("int8", lanes=lanes) for name, lanes in WAYS.items()}
    vectors = {name: e.embed(texts[:20]) for name, e in embedders.items()}  # loaded and warm
    same = float(np.abs(vectors["lanes (default)"] - vectors["one at a time"]).max())
    rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in WAYS}
    for _ in range(args.rounds):
        for name, embedder in embedders.items():
            wall, cpu = time.perf_counter(), time.process_time()
            embedder.embed(texts)
            rounds[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    rows = [{"way": name, "threads": embedders[name].threads, "lanes": embedders[name].lanes,
             "posts_per_s": round(len(texts) * len(r) / sum(w for w, _ in r), 1),
             "rounds_posts_per_s": [round(len(texts) / w, 1) for w, _ in r],
             "cpu_ms_per_post": round(1000 * sum(c for _, c in r) / (len(texts) * len(r)), 2)}
            for name, r in rounds.items()]
    result = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "posts": len(texts),
              "rounds": args.rounds, "load_average": [round(x, 2) for x in os.getloadavg()],
              "max_abs_difference": same, "rows": rows,
              "ratio": round(rows[0]["posts_per_s"] / rows[1]["posts_per_s"], 2)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "encoder_lanes.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "encoder_lanes.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(r: dict[str, Any]) -> str:
    lines = ["# The int8 encoder: posts side by side (lanes) against one post at a time", "",
             f"{r['when']}, {r['posts']} sci test posts (preprocessed), {r['rounds']} rounds in turn, load "
             f"average {r['load_average'][0]} at the end; the two ways' vectors differ by at most "
             f"{r['max_abs_difference']:.1e}.", "",
             "| way | threads × lanes | posts/s (each round) | CPU ms per post |", "|---|---|---:|---:|"]
    for row in r["rows"]:
        each = " / ".join(f"{x:g}" for x in row["rounds_posts_per_s"])
        lines.append(f"| {row['way']} | {row['threads']} threads, {row['lanes']} at once | "
                     f"**{row['posts_per_s']:g}** ({each}) | {row['cpu_ms_per_post']:.2f} |")
    lines += ["", f"Lanes / one at a time: **{r['ratio']:.2f}×** the posts per second.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
