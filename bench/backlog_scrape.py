"""What one /metrics scrape's backlog read costs Redis, with large posts held by workers: the old Lua
script (copies the whole unacked hash and in-flight list, then searches each message for its
stamp) against shared/wire/backlog.py (counts in one MULTI, then the send stamp of at most one message
per place), side by side in one run on a private redis-server.

Per scenario (N held posts of a size, plus small posts ready on the list and one in flight) and
side: SCRAPERS processes scrape back to back for SECONDS (every worker's exporter scraped at
once, the worst case), while this process PINGs Redis every 10 ms on its own connection. Reported:
the scrape's wall time, Redis's CPU per scrape (INFO cpu), and PING latency under that load, next
to PING latency with no scrape at all.

    .venv/bin/python -m bench.backlog_scrape                     # 64 x 256 KB and 32 x 2 MB held
    .venv/bin/python -m bench.backlog_scrape --seconds 2 --scrapers 1

Writes bench/results/backlog_scrape.json. The private server is removed on exit.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from shared.redis_keys import UNACKED, UNACKED_INDEX, inflight_key  # noqa: E402
from shared.wire.backlog import read_backlog  # noqa: E402
from shared.wire.protocol import CLASSIFY_TASK, SENT_AT_HEADER  # noqa: E402
from testkit.drills.services import PrivateRedis  # noqa: E402
from testkit.wire import body_of, envelope  # noqa: E402

RESULTS = ROOT / "bench" / "results"
QUEUE = "bench-backlog"
SCENARIOS = [(64, 256 * 1024), (32, 2 * 1024 * 1024)]  # held posts x bytes of text

# The script shared/wire/backlog.py ran before, kept here for the comparison.
# KEYS: queue, in-flight list, unacked hash. ARGV: the suffix of this queue's unacked entries.
OLD_SCRIPT = f"""
local oldest = nil
local function stamp(item)
  local found = string.match(item, '"{SENT_AT_HEADER}": ?([%d%.eE%+%-]+)')
  local value = found and tonumber(found)
  if value and (oldest == nil or value < oldest) then oldest = value end
end
local ready = redis.call('LLEN', KEYS[1])
local tail = redis.call('LINDEX', KEYS[1], -1)
if tail then stamp(tail) end
local inflight = redis.call('LRANGE', KEYS[2], 0, -1)
for _, item in ipairs(inflight) do stamp(item) end
local unacked, suffix = 0, ARGV[1]
for _, item in ipairs(redis.call('HVALS', KEYS[3])) do
  if string.sub(item, -#suffix) == suffix then
    unacked = unacked + 1
    stamp(item)
  end
end
if oldest then oldest = string.format('%.3f', oldest) else oldest = false end
return {{ready, #inflight, unacked, oldest}}
"""


def old_scrape(client: redis.Redis, queue: str) -> tuple[int, int, int]:
    ready, in_flight, unacked, _ = client.eval(OLD_SCRIPT, 3, queue, inflight_key(queue), UNACKED,
                                               f", {json.dumps(queue)}]")
    return int(ready), int(in_flight), int(unacked)


def new_scrape(client: redis.Redis, queue: str) -> tuple[int, int, int]:
    seen = read_backlog(client, queue)
    return seen.ready, seen.in_flight, seen.unacked


SIDES = {"old": old_scrape, "new": new_scrape}


def message(text_bytes: int, sent_at: float, post_id: str) -> dict[str, Any]:
    built = envelope(CLASSIFY_TASK, queue=QUEUE,
                     body=body_of(kwargs={"id": post_id, "text": "orbit " + "x" * text_bytes}))
    built["headers"][SENT_AT_HEADER] = sent_at
    return built


def fill(client: redis.Redis, held: int, size: int, ready: int) -> None:
    client.flushdb()  # the private server's own db
    now = time.time()
    pipe = client.pipeline(transaction=False)
    for n in range(held):
        built = message(size, now - 60 + n, f"held-{n}")
        tag = built["properties"]["delivery_tag"]
        pipe.hset(UNACKED, tag, json.dumps([built, "", QUEUE]))
        pipe.zadd(UNACKED_INDEX, {tag: now - 30 + n})
    pipe.lpush(inflight_key(QUEUE), json.dumps(message(size, now - 10, "inflight-0")))
    for n in range(ready):
        pipe.lpush(QUEUE, json.dumps(message(200, now - 5, f"ready-{n}")))
    pipe.execute()


def _scrape_loop(url: str, side: str, seconds: float, out: Any) -> None:
    client = redis.Redis.from_url(url, socket_timeout=60)
    scrape = SIDES[side]
    times: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        scrape(client, QUEUE)
        times.append(time.perf_counter() - started)
    out.put(times)


def ping_for(client: redis.Redis, seconds: float, until: Any = None) -> list[float]:
    """PING round trips (s) every 10 ms for `seconds`, or while `until()` holds."""
    rtts: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end and (until is None or until()):
        started = time.perf_counter()
        try:
            client.ping()
        except redis.ResponseError:  # BUSY: a script has run past busy-reply-threshold; waited all the same
            pass
        rtts.append(time.perf_counter() - started)
        time.sleep(0.01)
    return rtts


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def ms(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def patient_client(server: PrivateRedis) -> redis.Redis:
    """A client that waits as long as a blocked Redis takes to answer (the old script: seconds)."""
    return redis.Redis.from_url(server.url(), socket_timeout=120)


def run_side(server: PrivateRedis, side: str, scrapers: int, seconds: float) -> dict[str, Any]:
    client = patient_client(server)
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    workers = [context.Process(target=_scrape_loop, args=(server.url(), side, seconds, out), daemon=True)
               for _ in range(scrapers)]
    cpu_before = redis_cpu(client)
    for worker in workers:
        worker.start()
    time.sleep(0.5)  # the children import first: ping while they scrape
    pings = ping_for(client, seconds, until=lambda: any(w.is_alive() for w in workers))
    times = [t for _ in workers for t in out.get(timeout=600)]
    for worker in workers:
        worker.join(timeout=60)
    cpu = redis_cpu(client) - cpu_before
    return {"scrapes": len(times), "scrape_ms_p50": ms(times, 0.5), "scrape_ms_p95": ms(times, 0.95),
            "redis_cpu_ms_per_scrape": round(1000 * cpu / max(1, len(times)), 3),
            "ping_ms_p50": ms(pings, 0.5), "ping_ms_p99": ms(pings, 0.99), "ping_ms_max": ms(pings, 1.0),
            "pings": len(pings)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=4.0, help="scraping time per scenario and side")
    p.add_argument("--scrapers", type=int, default=2, help="processes scraping back to back (workers)")
    p.add_argument("--ready", type=int, default=500, help="small posts ready on the list")
    p.add_argument("--out", type=Path, default=RESULTS / "backlog_scrape.json")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows: list[dict[str, Any]] = []
    with PrivateRedis(aof=False) as server:
        client = patient_client(server)
        for held, size in SCENARIOS:
            fill(client, held, size, args.ready)
            counts = {side: scrape(client, QUEUE) for side, scrape in SIDES.items()}
            idle = ping_for(client, 2.0)
            row: dict[str, Any] = {"held": held, "held_bytes": size, "ready": args.ready, "in_flight": 1,
                                   "counts": counts, "ping_idle_ms_p50": ms(idle, 0.5),
                                   "ping_idle_ms_p99": ms(idle, 0.99)}
            for side in SIDES:
                row[side] = run_side(server, side, args.scrapers, args.seconds)
            rows.append(row)
            print(f"{held} held posts of {size // 1024} KB, {args.ready} ready, 1 in flight; "
                  f"{args.scrapers} scrapers back to back; PING idle p50 {row['ping_idle_ms_p50']} ms")
            for side in SIDES:
                r = row[side]
                print(f"  {side}: {r['scrapes']:5d} scrapes, {r['scrape_ms_p50']} ms p50 "
                      f"({r['scrape_ms_p95']} p95), Redis CPU {r['redis_cpu_ms_per_scrape']} ms per scrape, "
                      f"PING p50 {r['ping_ms_p50']} ms p99 {r['ping_ms_p99']} max {r['ping_ms_max']}; "
                      f"counts {counts[side]}")
    note = ("old = the former Lua script (HVALS + LRANGE + pattern search); "
            "new = shared/wire/backlog.py (LLEN/HLEN/ZCARD in one MULTI, the tails' stamps)")
    result = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "scrapers": args.scrapers,
              "seconds": args.seconds, "note": note, "scenarios": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
