"""What `topicq status` shows, computed from Redis alone: the backlog and the workers' live figures.

    queue depth   ready + in flight + held by workers + delayed (shared/wire/backlog.py, the same figures
                  as topicq_queue_depth), oldest message's age
    posts/s       out: rows written, by outcome; taken: posts workers took up; in: taken plus the
                  change of the backlog between two views (live mode only)
    latency       p50 / p95 from send to row over the workers' last WINDOW_S (worker/presence.py)
    errors        retries by reason, rejected, failed, dead letters over the window
    workers       each worker's model version, embedder and how fresh its figures are
"""

from __future__ import annotations

import math
from typing import Any

from shared.wire.backlog import Backlog

OUTCOMES = ("done", "rejected", "failed", "retried")


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The q-quantile of a cumulative histogram {upper bound: count}, interpolated within its bucket
    the way Prometheus' histogram_quantile does; None without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # above the largest finite bound: report that bound
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


def _sum(records: list[dict[str, Any]], part: str) -> dict[str, float]:
    total: dict[str, float] = {}
    for record in records:
        for key, value in record.get(part, {}).items():
            total[key] = total.get(key, 0.0) + float(value)
    return total


def build_view(queue: str, backlog: Backlog | None, live: list[dict[str, Any]], *, now: float,
               previous: dict[str, Any] | None = None) -> dict[str, Any]:
    window = _sum(live, "window")
    seconds = max((float(r.get("window_s") or 0.0) for r in live), default=0.0)

    def rate(key: str) -> float | None:
        return round(window.get(key, 0.0) / seconds, 2) if seconds > 0 else None

    buckets = {float(k.removeprefix("le:")): v for k, v in window.items() if k.startswith("le:")}
    p50, p95 = quantile(0.5, buckets), quantile(0.95, buckets)
    out = {status: rate(f"posts:{status}") for status in OUTCOMES}
    taken = rate("topicq_posts_received_total")
    errors = {f"retry: {k.removeprefix('retries:')}": int(v) for k, v in sorted(window.items())
              if k.startswith("retries:")}
    errors.update({s: int(window[f"posts:{s}"]) for s in ("rejected", "failed") if window.get(f"posts:{s}")})
    if window.get("topicq_dead_letters_total"):
        errors["dead letters"] = int(window["topicq_dead_letters_total"])
    view: dict[str, Any] = {
        "queue": queue, "at": now,
        "backlog": None if backlog is None else {
            "depth": backlog.depth, "ready": backlog.ready, "in_flight": backlog.in_flight,
            "held_by_workers": backlog.unacked, "delayed": backlog.delayed,
            "oldest_age_s": _round(backlog.oldest_age_s(now))},
        "posts_per_s": {"in": None, "taken": taken, "out": _total(out), **out},
        "latency_s": {"p50": _round(p50), "p95": _round(p95),
                      "posts": int(window.get("topicq_end_to_end_seconds_count", 0)),
                      "unstamped": int(window.get("topicq_end_to_end_unstamped_total", 0))},
        "window_s": round(seconds, 1),
        "errors": errors,
        "totals": {status: int(_sum(live, "totals").get(f"posts:{status}", 0)) for status in OUTCOMES},
        "workers": [{"worker": r.get("worker"), "serving": r.get("serving"), "embedder": r.get("embedder"),
                     "seen_s_ago": _round(now - float(r.get("at", now)))} for r in live],
    }
    view["posts_per_s"]["in"] = _rate_in(view, previous, posts_per_message(live))
    return view


def _rate_in(view: dict[str, Any], previous: dict[str, Any] | None, per_message: float) -> float | None:
    """Posts arriving per second: what workers took up, plus the backlog's growth since the last view
    (its messages counted as posts at the workers' recent posts per message)."""
    taken = view["posts_per_s"]["taken"]
    if previous is None or taken is None or not view["backlog"] or not previous.get("backlog"):
        return None
    elapsed = view["at"] - previous["at"]
    if elapsed <= 0:
        return None
    growth = (view["backlog"]["depth"] - previous["backlog"]["depth"]) * per_message / elapsed
    return round(max(0.0, taken + growth), 2)


def posts_per_message(live: list[dict[str, Any]]) -> float:
    window = _sum(live, "window")
    messages = window.get("topicq_messages_received_total", 0.0)
    return window.get("topicq_posts_received_total", 0.0) / messages if messages else 1.0


def _total(out: dict[str, float | None]) -> float | None:
    values = [v for k, v in out.items() if k != "retried" and v is not None]
    return round(sum(values), 2) if values else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def render(view: dict[str, Any]) -> str:
    """The view as text for a terminal."""
    def num(value: float | None, unit: str = "") -> str:
        return "–" if value is None else f"{value:g}{unit}"

    backlog, rates, latency = view["backlog"], view["posts_per_s"], view["latency_s"]
    lines = [f"topicq status   queue {view['queue']!r}   window {num(view['window_s'], ' s')}"]
    if backlog is None:
        lines.append("backlog     Redis unreachable")
    else:
        lines.append(f"backlog     {backlog['depth']} messages: {backlog['ready']} ready, "
                     f"{backlog['in_flight']} in flight, {backlog['held_by_workers']} held by workers, "
                     f"{backlog['delayed']} delayed; "
                     f"oldest {num(backlog['oldest_age_s'], ' s')}")
    lines.append(f"posts/s     in {num(rates['in'])}   taken {num(rates['taken'])}   out {num(rates['out'])} "
                 f"(done {num(rates['done'])}, rejected {num(rates['rejected'])}, "
                 f"failed {num(rates['failed'])})"
                 f"   retried {num(rates['retried'])}")
    lines.append(f"latency     send -> row p50 {num(latency['p50'], ' s')}, p95 {num(latency['p95'], ' s')} "
                 f"over {latency['posts']} posts ({latency['unstamped']} without a send stamp)")
    errors = view["errors"]
    lines.append("errors      " + (", ".join(f"{k} {v}" for k, v in errors.items()) if errors else "none")
                 + " in the window")
    totals = view["totals"]
    lines.append("since start " + ", ".join(f"{k} {v}" for k, v in totals.items()))
    if not view["workers"]:
        lines.append("workers     none publishing figures (none running, or METRICS_PORT=0)")
    for worker in view["workers"]:
        lines.append(f"worker      {worker['worker']}  serves {worker['serving'] or 'nothing'} with "
                     f"{worker['embedder']}  (figures {num(worker['seen_s_ago'], ' s')} old)")
    return "\n".join(lines)
