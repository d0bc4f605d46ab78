"""A fake Gemini embedding API: the batchEmbedContents wire format of docs/architecture.md §8.

The real SDK talks to it over HTTP, so tests and drills exercise the whole
path (request building, auth header, error bodies, retries, timeouts)
without a key or network. It validates requests as strictly as the service
(unknown fields, > 100 requests, empty text, bad dimension all get the
service's 400), answers with deterministic vectors (similar texts get
similar vectors; not normalised below 3,072 dimensions, like the real API)
and can inject latency, 429 with RetryInfo, per-day quota 429, 5xx,
malformed JSON and dropped connections. Every call is recorded. The Batch
API's embedding jobs (asyncBatchEmbedContent, GET batches/ID) are served
too (fake_gemini_batches.py).

    with running_fake_gemini(rate_429=0.2, retry_delay_s=0.5) as fake:
        embedder = GeminiEmbedder("test-key", base_url=fake.base_url)
        ...
        fake.calls  # [Call(start, end, n_texts, status, outcome, ...), ...]

From a checkout, `python -m testkit.fake_gemini --port 8765` serves it until Ctrl-C (--help: the faults).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import click
import numpy as np

from shared.model.embedders.base import l2_normalise
from testkit.fake_gemini_batches import FakeBatches
from testkit.fake_gemini_replies import Reply, check_request, error_reply, quota_reply

log = logging.getLogger(__name__)

ROUTE = re.compile(r"^/(v1|v1beta)/models/([^/:]+):batchEmbedContents$")
MODELS = ("gemini-embedding-001", "gemini-embedding-2", "gemini-embedding-exp-03-07", "text-embedding-004")
FULL_DIM = 3072  # only full-size vectors come back normalised


@dataclass
class Call:
    """One request as the fake saw it. Times are time.monotonic()."""

    start: float
    end: float = 0.0
    # When the reply began to go out: no client can have read it sooner. Measure "how soon after
    # a 429" from here; `end` comes after the write and can lag when this process is starved.
    replied: float = 0.0
    path: str = ""
    n_texts: int = 0
    status: int = 0  # HTTP status; 0 = connection dropped without a reply
    outcome: str = ""  # ok | 429 | 429-day | 5xx | malformed | drop | 4xx codes
    retry_delay_s: float | None = None
    task_types: list[str | None] = field(default_factory=list)
    dims: list[int] = field(default_factory=list)


@dataclass
class Switches:
    """Faults to inject. Rates are shares of calls (0..1), drawn from a seeded RNG."""

    api_key: str = "test-key"
    latency_ms: float = 0.0
    rate_429: float = 0.0
    retry_delay_s: float = 2.0
    rate_5xx: float = 0.0
    rate_malformed: float = 0.0
    rate_drop: float = 0.0
    # Outcomes forced on the first calls, in order: "429", "429-day", "503", "malformed", "drop", "ok"...
    script: list[str] = field(default_factory=list)
    daily_limit: int | None = None  # texts served before every call gets a per-day 429
    models: tuple[str, ...] = MODELS
    seed: int = 0
    # Batch API jobs: pending, then running, each half of this; then they end in the final state.
    batch_seconds: float = 1.0
    batch_final_state: str = "BATCH_STATE_SUCCEEDED"


def fake_vector(text: str, dim: int) -> list[float]:
    """Deterministic, similar for texts sharing words, with a norm that varies by text."""
    return fake_vectors([text], dim)[0]


def fake_vectors(texts: list[str], dim: int) -> list[list[float]]:
    """`fake_vector` of each text, in one pass: the fake must not be what a benchmark measures.

    The same numbers as `hashed_bag_of_words` (a +-1 per word at a hashed position, then
    unit length), scaled by a per-text factor unless the size is the full 3,072.
    """
    matrix = np.zeros((len(texts), dim), dtype=np.float32)
    rows: list[int] = []
    columns: list[int] = []
    signs: list[float] = []
    for row, text in enumerate(texts):
        for word in _WORD.findall(text.lower()) or [text]:
            column, sign = _slot(word, dim)
            rows.append(row)
            columns.append(column)
            signs.append(sign)
    np.add.at(matrix, (rows, columns), np.asarray(signs, dtype=np.float32))
    matrix[~matrix.any(axis=1), 0] = 1.0
    unit = l2_normalise(matrix).astype(np.float64)
    if dim >= FULL_DIM:
        return cast(list[list[float]], unit.tolist())
    scales = [0.5 + hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=1).digest()[0] / 255
              for t in texts]
    return cast(list[list[float]], (unit * np.asarray(scales)[:, None]).tolist())


_WORD = re.compile(r"\w+")  # as shared.model.embedders.fake splits words


@lru_cache(maxsize=200_000)
def _slot(word: str, dim: int) -> tuple[int, float]:
    digest = hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest[:4], "little") % dim, 1.0 if digest[4] & 1 else -1.0


class FakeGemini:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, **switches: Any) -> None:
        self.switches = Switches(**switches)
        self.calls: list[Call] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._texts_served = 0
        self._script = list(self.switches.script)
        self._rng = random.Random(self.switches.seed)
        self._lock = threading.Lock()
        self.batches = FakeBatches(self.switches, fake_vectors)  # the Batch API's jobs
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{cast(str, host)}:{port}"

    def start(self) -> FakeGemini:
        # A short poll interval: stop() returns quickly, which keeps test suites fast.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="fake-gemini", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FakeGemini:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def outcomes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for call in list(self.calls):
            counts[call.outcome] = counts.get(call.outcome, 0) + 1
        return counts

    # -- request handling (runs on the server's threads) --

    def _enter(self) -> Call:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            call = Call(start=time.monotonic())
            self.calls.append(call)
            return call

    def _leave(self, call: Call, status: int, outcome: str) -> None:
        with self._lock:
            self._in_flight -= 1
            call.end, call.status, call.outcome = time.monotonic(), status, outcome

    def _injected(self) -> str:
        with self._lock:
            if self._script:
                return self._script.pop(0)
            s, draw = self.switches, self._rng.random()
        for outcome, rate in (("drop", s.rate_drop), ("503", s.rate_5xx), ("429", s.rate_429),
                              ("malformed", s.rate_malformed)):
            if draw < rate:
                return outcome
            draw -= rate
        return "ok"

    def handle(self, call: Call, path: str, key: str | None, raw: bytes) -> Reply:
        s = self.switches
        call.path = path
        if not key:
            return error_reply(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers "
                               "(callers without established identity). Please use API Key or other "
                               "form of API consumer identity to call this API.")
        if key != s.api_key:  # Google answers a wrong key with 400, not 401
            return error_reply(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
                               [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                 "reason": "API_KEY_INVALID", "domain": "googleapis.com"}])
        batch = self.batches.route(path, raw, call)
        if batch is not None:
            return batch
        route = ROUTE.match(path)
        if route is None or route.group(2) not in s.models:
            version = route.group(1) if route else "v1beta"
            return error_reply(404, "NOT_FOUND", f"{path.lstrip('/')} is not found for API version "
                               f"{version}, or is not supported for batchEmbedContents.")
        time.sleep(s.latency_ms / 1000)
        injected = self._injected()
        if injected in ("429", "429-day"):
            call.retry_delay_s = s.retry_delay_s
            return quota_reply(injected == "429-day", s.retry_delay_s)
        if injected == "drop" or injected == "malformed":
            return Reply(200 if injected == "malformed" else 0, b'{"embeddings": [{"values": [0.1,',
                         outcome=injected)
        if injected.isdigit():
            return error_reply(int(injected), outcome="5xx" if int(injected) >= 500 else injected)
        texts, problem = check_request(raw, route.group(2), call)
        if problem is not None:
            return problem
        with self._lock:
            over_daily = s.daily_limit is not None and self._texts_served + len(texts) > s.daily_limit
            if not over_daily:
                self._texts_served += len(texts)
        if over_daily:
            call.retry_delay_s = s.retry_delay_s
            return quota_reply(True, s.retry_delay_s)
        vectors: list[list[float]] = [[] for _ in texts]
        for dim in set(call.dims):  # one size per request in practice
            rows = [i for i, d in enumerate(call.dims) if d == dim]
            for i, vector in zip(rows, fake_vectors([texts[i] for i in rows], dim), strict=True):
                vectors[i] = vector
        return Reply(200, json.dumps({"embeddings": [{"values": v} for v in vectors]}).encode())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's httpx client expects
    server: Any

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle + delayed ACK add 40 ms a call.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:
        fake: FakeGemini = self.server.fake
        call = fake._enter()
        reply = Reply(0, b"", outcome="drop")
        try:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            split = urlsplit(self.path)
            key = self.headers.get("x-goog-api-key") or next(iter(parse_qs(split.query).get("key", [])), None)
            call.n_texts = _count_requests(raw)
            reply = fake.handle(call, split.path, key, raw)
            call.replied = time.monotonic()
            self._send(reply)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): nothing to answer
        finally:
            fake._leave(call, reply.status, reply.outcome)

    do_GET = do_POST  # unknown routes get the service's 404 shape

    def _send(self, reply: Reply) -> None:
        if reply.status == 0:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("fake-gemini: " + format, *args)


def _count_requests(raw: bytes) -> int:
    try:
        requests = json.loads(raw).get("requests")
        return len(requests) if isinstance(requests, list) else 0
    except (ValueError, AttributeError):
        return 0


@contextmanager
def running_fake_gemini(**switches: Any) -> Iterator[FakeGemini]:
    """A started fake on 127.0.0.1 and a free port; stopped on exit."""
    fake = FakeGemini(**switches).start()
    try:
        yield fake
    finally:
        fake.stop()


@click.command("fake-gemini")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, help="0 picks a free port.")
@click.option("--api-key", default="test-key", show_default=True, help="The key callers must send.")
@click.option("--latency-ms", default=0.0, show_default=True, help="Delay added to every call.")
@click.option("--rate-429", default=0.0, show_default=True, help="Share of calls refused with 429.")
@click.option("--retry-delay", default=2.0, show_default=True, help="retryDelay (s) in 429 replies.")
@click.option("--rate-5xx", default=0.0, show_default=True, help="Share of calls answered 503.")
@click.option("--rate-malformed", default=0.0, show_default=True, help="Share answered with broken JSON.")
@click.option("--rate-drop", default=0.0, show_default=True, help="Share whose connection is dropped.")
@click.option("--daily-limit", type=int, default=None, help="Texts served before a per-day quota 429.")
@click.option("--script", default="", help="Outcomes for the first calls, e.g. 429,503,malformed,drop,ok.")
@click.option("--seed", default=0, show_default=True, help="Seed of the fault draws.")
@click.option("--batch-seconds", default=5.0, show_default=True,
              help="Batch API jobs: pending, then running, this long in all before they succeed.")
def main(host: str, port: int, api_key: str, latency_ms: float, rate_429: float, retry_delay: float,
         rate_5xx: float, rate_malformed: float, rate_drop: float, daily_limit: int | None, script: str,
         seed: int, batch_seconds: float) -> None:
    """Serve a fake Gemini embedding API (batchEmbedContents, batch jobs) until Ctrl-C.

    Vectors are deterministic (similar texts, similar vectors); faults are
    injected at the rates given. Point topicq at it with GEMINI_BASE_URL.
    A test tool: run it from a checkout.

    \b
    Example:
      python -m testkit.fake_gemini --port 8765 --rate-429 0.1 --retry-delay 2 &
      GEMINI_BASE_URL=http://127.0.0.1:8765 GEMINI_API_KEY=test-key \\
        EMBEDDER=gemini topicq worker
    """
    fake = FakeGemini(
        host, port, api_key=api_key, latency_ms=latency_ms, rate_429=rate_429,
        retry_delay_s=retry_delay, rate_5xx=rate_5xx, rate_malformed=rate_malformed,
        rate_drop=rate_drop, daily_limit=daily_limit,
        script=[s.strip() for s in script.split(",") if s.strip()], seed=seed, batch_seconds=batch_seconds,
    )
    click.echo(f"fake Gemini API on {fake.base_url}; Ctrl-C stops it")
    try:
        fake.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
        click.echo(f"served {len(fake.calls)} calls: {fake.outcomes()}")


if __name__ == "__main__":
    main()
