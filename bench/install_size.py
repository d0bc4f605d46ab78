"""What a worker-only install saves: disk and peak memory of `topicq[worker]` against a full install.

Side by side, in one run:
- the disk size of each venv's site-packages (what `du -s` counts: allocated blocks);
- a real `topicq worker` started from each venv's Python (this checkout's code on PYTHONPATH, so
  only the installed libraries differ), serving the same version with the default embedder
  (EMBEDDER=auto) on the same posts, embedding cache off: its peak resident memory (VmHWM of
  /proc/<pid>/status) after the posts are done, and which of the train-only libraries its process
  loaded.

The version must be served by the database and model directory given (train it first, e.g.
`topicq train --dataset 20newsgroups --groups sci --per-class 100 --promote` from the full venv).

    python bench/install_size.py --lean-venv /tmp/lean-venv --full-venv .venv \\
        --database-url sqlite:////tmp/topicq.db --model-dir /tmp/models --posts 200

Writes bench/results/install_size.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
TRAIN_ONLY = ("tensorflow", "torch", "sklearn", "sentence_transformers", "setfit", "transformers")


def site_packages(venv: Path) -> Path:
    [found] = sorted((venv / "lib").glob("python3*/site-packages"))
    return found


def disk_bytes(path: Path) -> int:
    """Allocated bytes under `path` (as du counts them), each hard-linked file once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            stat = os.lstat(os.path.join(folder, name))
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_blocks * 512
    return total


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def mapped_libraries(pid: int) -> list[str]:
    """The train-only packages whose files the process has mapped (their native libraries)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return sorted(name for name in TRAIN_ONLY if f"/site-packages/{name}/" in maps)


def run_worker(python: Path, args: argparse.Namespace, texts: list[str], label: str) -> dict[str, Any]:
    """Start a worker from `python`, send it the posts, wait for their rows; its peak memory."""
    from shared.database.results import count_rows
    from shared.settings import Settings
    from shared.wire.producer import Producer
    from testkit.worker_process import clean_environment

    queue = f"topicq-bench-{uuid.uuid4().hex[:8]}"
    env = {**clean_environment(), "PYTHONPATH": str(ROOT), "DATABASE_URL": args.database_url,
           "REDIS_URL": args.redis_url, "MODEL_DIR": str(args.model_dir), "EMBEDDER": "auto",
           "QUEUE": queue, "METRICS_PORT": "0", "TOPICQ_HOME": str(args.model_dir.parent / "home"),
           # Both embed every post: the second would otherwise read the first one's vectors.
           "CACHE_EMBEDDINGS": "0"}
    log_path = args.model_dir.parent / f"install_size-{label}.log"  # beside the store, not a result
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen([str(python), "-m", "cli.main", "worker", "-c", "1", "-n", f"{label}@%h"],
                                   env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        while "ready." not in log_path.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() - started > 300:
                raise RuntimeError(f"{label} worker did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        ready_s = time.monotonic() - started
        rss_ready = peak_rss_mb(process.pid)
        ids = [f"{label}-{uuid.uuid4().hex[:8]}-{i}" for i in range(len(texts))]
        producer = Producer(Settings(redis_url=args.redis_url, queue=queue))
        sent = time.monotonic()
        for post_id, text in zip(ids, texts, strict=True):
            producer.send(producer.validate(post_id, text))
        producer.close()
        while count_rows(args.database_url, post_ids=ids) < len(ids):
            if process.poll() is not None or time.monotonic() - sent > 900:
                raise RuntimeError(f"{label} worker stopped short:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        done_s = time.monotonic() - sent
        return {"python": str(python), "ready_s": round(ready_s, 1), "peak_rss_ready_mb": round(rss_ready),
                "peak_rss_mb": round(peak_rss_mb(process.pid)), "posts": len(ids),
                "posts_per_s": round(len(ids) / done_s, 1),
                "train_only_libraries": mapped_libraries(process.pid),
                "done_rows": count_rows(args.database_url, post_ids=ids, status="done")}
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def sci_posts(count: int, data_home: str | None) -> list[str]:
    from sklearn.datasets import fetch_20newsgroups

    data = fetch_20newsgroups(subset="test", categories=["sci.crypt", "sci.electronics", "sci.med",
                                                        "sci.space"], data_home=data_home,
                              download_if_missing=False, remove=("headers", "footers", "quotes"))
    return [text for text in data.data if text.strip()][:count]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lean-venv", type=Path, required=True, help="pip install 'topicq[worker]'")
    parser.add_argument("--full-venv", type=Path, required=True, help="the full install (make install)")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--posts", type=int, default=200)
    parser.add_argument("--data-home", default=os.environ.get("SCIKIT_LEARN_DATA"))
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)

    venvs = {"worker": args.lean_venv.resolve(), "full": args.full_venv.resolve()}
    texts = sci_posts(args.posts, args.data_home)
    report: dict[str, Any] = {"posts": len(texts), "venvs": {}}
    for label, venv in venvs.items():
        size = disk_bytes(site_packages(venv))
        report["venvs"][label] = {"venv": str(venv), "site_packages_mb": round(size / 2**20),
                                  **run_worker(venv / "bin" / "python", args, texts, label)}
    lean, full = report["venvs"]["worker"], report["venvs"]["full"]
    rows = [("site-packages (MB)", "site_packages_mb"),
            ("worker peak RSS when ready (MB)", "peak_rss_ready_mb"),
            ("worker peak RSS after the posts (MB)", "peak_rss_mb"), ("worker start to ready (s)", "ready_s"),
            ("posts per second", "posts_per_s")]
    lines = ["# Worker-only install against the full install", "",
             f"Same checkout, same served version (EMBEDDER=auto), same {len(texts)} sci test posts.", "",
             "| | topicq[worker] | full |", "|---|---:|---:|"]
    lines += [f"| {title} | {lean[key]} | {full[key]} |" for title, key in rows]
    lines += [f"| train-only libraries loaded | {', '.join(lean['train_only_libraries']) or 'none'} | "
              f"{', '.join(full['train_only_libraries']) or 'none'} |", ""]
    (RESULTS / "install_size.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "install_size.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
