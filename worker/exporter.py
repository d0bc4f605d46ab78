"""The worker's HTTP endpoint on METRICS_PORT: /metrics for Prometheus, /healthz for liveness probes.

One exporter per worker process (Celery's `threads` pool keeps a worker in one
process): several workers on one host each take their own METRICS_PORT. A port
that cannot be bound costs the metrics, logged as an error, never the worker.

    GET /metrics   Prometheus text format (worker/metrics.py)
    GET /healthz   200 while the consumer loop beats (worker/heartbeat.py), else 503; JSON body
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker import metrics
from worker.heartbeat import Heartbeat

log = logging.getLogger(__name__)


def _handler(heartbeat: Heartbeat | None, max_age_s: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(metrics.REGISTRY))
            elif path == "/healthz":
                age = heartbeat.age_s() if heartbeat else None
                alive = age is not None and age <= max_age_s
                body = {"alive": alive, "heartbeat_age_s": None if age is None else round(age, 1),
                        "max_age_s": max_age_s}
                self._send(200 if alive else 503, "application/json", json.dumps(body).encode())
            else:
                self._send(404, "text/plain", b"try /metrics or /healthz\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - scrapes are not news
            pass

    return Handler


class Exporter:
    def __init__(self, host: str, port: int, *, heartbeat: Heartbeat | None, max_age_s: float) -> None:
        self.server = ThreadingHTTPServer((host, port), _handler(heartbeat, max_age_s))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="metrics-exporter", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> Exporter:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_exporter(host: str, port: int, *, heartbeat: Heartbeat | None, max_age_s: float) -> Exporter | None:
    try:
        exporter = Exporter(host, port, heartbeat=heartbeat, max_age_s=max_age_s).start()
    except OSError as exc:
        log.error("no metrics: cannot listen on %s:%d (%s); give each worker on this host its own "
                  "METRICS_PORT", host, port, exc.strerror or exc)
        return None
    log.info("metrics on http://%s:%d/metrics, liveness on /healthz", host, exporter.port)
    return exporter
