"""Fault drills at full size: kill, broker restart, database outage and refusals, 429 storm, fuzz,
security, dead-letter resend, producers (real Celery and celery-node clients, their options).

    python bench/drills.py                      # every drill, long versions (~20-30 minutes)
    python bench/drills.py --only kill fuzz     # some of them
    python bench/drills.py --quick              # the short sizes the test suite uses

Each drill runs against real Redis, PostgreSQL and `topicq worker` processes
(testkit/drills/), on private servers it may kill. Prints a table and writes
bench/results/drills.md and bench/results/drills.json: per drill the posts,
the faults injected, lost posts (no row), duplicates (post ids with more than
one row), reprocessed posts (results committed more than once), worker deaths
and consumer restarts, dead letters, messages left queued / in flight / unacked
at the end, and wall time.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testkit.drills import (  # noqa: E402
    broker,
    dbfaults,
    fuzz,
    kill,
    outage,
    producer_faults,
    producers,
    redis_full,
    security,
    storm,
)
from testkit.drills.harness import DrillResult  # noqa: E402

RESULTS = ROOT / "bench" / "results"

# name -> (run function, long size, short size as in the test suite)
DRILLS: dict[str, tuple[Callable[[Any, Path], DrillResult], Any, Any]] = {
    "kill": (kill.run,
             kill.KillSize(posts=10_000, kills=20, embed_delay_s=0.25, chunk=25, batch_size=4),
             kill.KillSize(posts=600, kills=3)),
    "broker-restart": (broker.run,
                       broker.BrokerSize(posts=5_000, send_s=60, restarts=3, first_at_s=10, every_s=15,
                                         down_s=5),
                       broker.BrokerSize(posts=300, send_s=8, first_at_s=2, restarts=1, down_s=2)),
    "db-outage": (outage.run,
                  outage.OutageSize(posts=3_000, send_s=60, outage_at_s=10, outage_s=30),
                  outage.OutageSize(posts=400, outage_s=10)),
    "db-read-only": (dbfaults.run_read_only,
                     dbfaults.FaultSize(posts=3_000, send_s=50, fault_at_s=5, fault_s=60),
                     dbfaults.FaultSize(posts=300, fault_s=10)),
    "db-table-renamed": (dbfaults.run_renamed,
                         dbfaults.FaultSize(posts=2_000, send_s=30, fault_at_s=5, fault_s=30),
                         dbfaults.FaultSize(posts=200, fault_s=8)),
    "db-down-at-start": (dbfaults.run_down_at_start,
                         dbfaults.StartSize(down_s=60, posts=2_000, unknown=50, outage_s=30),
                         dbfaults.StartSize()),
    "dead-letter-resend": (dbfaults.run_resend,
                           dbfaults.ResendSize(entries=3_000, workers=2, timeout_s=120),
                           dbfaults.ResendSize(entries=200)),
    "429-storm": (storm.run,
                  storm.StormSize(posts=3_000, send_s=30),
                  storm.StormSize(posts=300)),
    "fuzz": (fuzz.run,
             fuzz.FuzzSize(malformed=10_000, valid=5_000, envelope=2_000),
             fuzz.FuzzSize(malformed=300, valid=150, envelope=50)),
    "security": (security.run,
                 security.SecuritySize(posts=1_000, send_s=10),
                 security.SecuritySize(posts=200)),
    "producers": (producers.run,
                  producers.ProducersSize(per_option=20, chunk_posts=10, celery_series=("5.3", "5.4")),
                  producers.ProducersSize(per_option=1, chunk_posts=3)),
    "producer-delays": (producer_faults.delays,
                        producer_faults.DelaySize(far=500, good=2_000, short=20, workers=2, batch_size=32),
                        producer_faults.DelaySize()),
    "producer-shared-tag": (producer_faults.shared_tag,
                            producer_faults.HeldSize(posts=200, embed_delay_s=1.0),
                            producer_faults.HeldSize(posts=30)),
    "producer-foreign-route": (producer_faults.foreign_route,
                               producer_faults.HeldSize(posts=100, embed_delay_s=1.0),
                               producer_faults.HeldSize(posts=15)),
    "producer-big-chunk": (producer_faults.big_chunk,
                           producer_faults.ChunkSize(posts=1_000, max_chunk_posts=50, per_text_s=0.03),
                           producer_faults.ChunkSize()),
    "redis-full": (redis_full.run, redis_full.RedisFullSize(posts=5_000, full_s=60),
                   redis_full.RedisFullSize(posts=150, full_s=6)),
}

HEADER = ["drill", "posts", "faults injected", "lost", "duplicates", "reprocessed", "worker deaths",
          "consumer restarts", "dead letters", "left in Redis", "wall s", "statuses", "ok"]


def run_one(name: str, quick: bool) -> DrillResult:
    function, long_size, short_size = DRILLS[name]
    size = short_size if quick else long_size
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix=f"drill-{name}-"))
    try:
        result = function(size, workdir)
    except Exception as exc:  # noqa: BLE001 - one broken drill must not hide the others
        traceback.print_exc()
        result = DrillResult(name, 0, "drill did not complete", -1, -1, -1, time.monotonic() - started,
                             failures=[f"error: {exc.__class__.__name__}: {exc}"])
    result.extra["size"] = dict(vars(size))
    result.extra["drill_s"] = round(time.monotonic() - started, 1)
    if result.ok:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        result.notes.append(f"worker logs kept in {workdir}")
    return result


def row(result: DrillResult) -> list[str]:
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(result.statuses.items())) or "-"
    extra = result.extra
    left = extra.get("left")
    in_redis = sum(v for k, v in left.items() if k != "dead_letters") if isinstance(left, dict) else None
    return [result.drill, f"{result.posts:,}", result.faults, str(result.lost), str(result.duplicates),
            str(result.reprocessed), _figure(extra.get("deaths")), _figure(extra.get("restarts")),
            _figure(extra.get("dead_letters")), _figure(in_redis), f"{result.wall_s:.0f}", statuses,
            "yes" if result.ok else "NO"]


def _figure(value: Any) -> str:
    return "-" if value is None else f"{value:,}"


def markdown(results: list[DrillResult], quick: bool, total_s: float) -> str:
    lines = [f"# Fault drills ({'short' if quick else 'long'} versions)", "",
             f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} "
             f"({platform.machine()}, Python {platform.python_version()}), "
             f"{total_s / 60:.1f} minutes in all. `python bench/drills.py` reproduces it.", "",
             "lost = posts sent with no result row; duplicates = post ids with more than one row; "
             "reprocessed = posts whose result was committed more than once (a redelivered message); "
             "dead letters = broken messages moved to `<queue>.dead`; left in Redis = messages still "
             "queued, in flight or unacked at the end (after the visibility timeout for fuzz); "
             "wall = from the first post sent to the last row written.", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row(r)) + " |" for r in results]
    lines.append("")
    for result in results:
        lines.append(f"**{result.drill}**")
        lines += [f"- {note}" for note in result.notes]
        lines += [f"- **FAILED:** {failure}" for failure in result.failures]
        lines.append("")
    return "\n".join(lines)


def table(results: list[DrillResult]) -> str:
    rows = [HEADER] + [row(r) for r in results]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows)


def merged(path: Path, fresh: list[DrillResult]) -> tuple[list[DrillResult], float]:
    """The drills of an earlier run in `path`, with `fresh` ones replacing theirs; total seconds."""
    known: dict[str, DrillResult] = {}
    if path.exists():
        names = {f.name for f in fields(DrillResult)}
        for entry in json.loads(path.read_text()).get("drills", []):
            known[entry["drill"]] = DrillResult(**{k: v for k, v in entry.items() if k in names})
    known.update({result.drill: result for result in fresh})
    ordered = [known[name] for name in DRILLS if name in known]
    return ordered, sum(float(r.extra.get("drill_s", r.wall_s)) for r in ordered)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(DRILLS), help="run only these drills")
    parser.add_argument("--quick", action="store_true", help="the short sizes of the test suite")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where drills.md and drills.json go")
    args = parser.parse_args(argv)
    names = args.only or list(DRILLS)
    started = time.monotonic()
    results = []
    for name in names:
        print(f"== {name} ...", flush=True)
        result = run_one(name, args.quick)
        print(result.describe(), flush=True)
        results.append(result)
    total = time.monotonic() - started
    print()
    print(table(results))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "drills" if not args.quick else "drills-quick"
    if args.only:  # keep the other drills' last results in the files
        results, total = merged(args.out / f"{stem}.json", results)
    (args.out / f"{stem}.md").write_text(markdown(results, args.quick, total))
    (args.out / f"{stem}.json").write_text(json.dumps(
        {"quick": args.quick, "total_s": round(total, 1), "finished_at": datetime.now(UTC).isoformat(),
         "drills": [r.as_dict() for r in results]}, indent=2, default=str) + "\n")
    print(f"\nwrote {args.out / f'{stem}.md'} and {stem}.json ({total / 60:.1f} minutes)")
    return 0 if all(r.ok for r in results) else 1  # the exit code covers the whole table


if __name__ == "__main__":
    sys.exit(main())
