"""The drift figures of `topicq drift` as Prometheus gauges, for alerts without a cron job.

At a scrape, the served version's drift sums of the last DRIFT_METRICS_WINDOW_S are
compared with its reference (shared/improvement/drift.py), exactly as `topicq drift` compares
one window. The answer is kept for CACHE_S, so frequent scrapes of many workers cost
the database one query each half minute per worker. Every worker of a model reports
the same figures: aggregate with max(). The statistics (scipy.stats, about 65 MB
resident) are imported at the first scrape that compares a window, not when the
worker starts: a worker that is never scraped for drift does not hold them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.database.connection import utcnow
from shared.improvement.drift_reference import load_reference
from shared.improvement.drift_sums import bucket_start, window_sums
from shared.model import registry

if TYPE_CHECKING:
    from shared.improvement.drift import WindowReport

log = logging.getLogger(__name__)

CACHE_S = 30.0
# gauge name -> (help, the WindowReport field)
FIGURES = {
    "topicq_drift_posts": ("Posts in the drift window.", "posts"),
    "topicq_drift_label_js_distance": ("Jensen-Shannon distance of the window's labels to the reference.",
                                       "js_distance"),
    "topicq_drift_label_chi2_p": ("Chi-square p-value of the window's labels against the reference.",
                                  "chi2_p"),
    "topicq_drift_mean_confidence": ("Mean top probability in the window.", "mean_confidence"),
    "topicq_drift_centroid_shift": ("Distance of the window's embedding centroid to the reference's, in "
                                    "reference spreads.", "centroid_shift"),
    "topicq_drift_review_share": ("Share of the window's posts flagged for review.", "review_share"),
    "topicq_drift_out_of_domain_share": ("Share of the window's posts out of domain.", "out_of_domain_share"),
}
CROSSED = "topicq_drift_crossed"
FIGURE_NAMES = (*FIGURES, CROSSED)
CHECKED = ("labels", "confidence", "centroid", "review", "out_of_domain")


class DriftCollector(Collector):
    def __init__(self, db_url: str, *, name: str, alias: str, window_s: int, bucket_s: int) -> None:
        self.db_url, self.name, self.alias = db_url, name, alias
        # A whole number of buckets: the sums are kept per bucket.
        self.window_s = max(bucket_s, window_s // bucket_s * bucket_s)
        self.bucket_s = bucket_s
        self._cached: tuple[float, int, WindowReport] | None = None
        self._lock = threading.Lock()

    def report(self) -> tuple[int, WindowReport] | None:
        """The served version and its last window's report; None without a version or a reference."""
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < CACHE_S:
                return self._cached[1], self._cached[2]
            version = registry.resolve(self.db_url, name=self.name, alias=self.alias)
            if version is None:
                return None
            path = registry.get_version(self.db_url, name=self.name, version=version).path
            reference = load_reference(Path(path))
            if reference is None:
                return None
            since = bucket_start(utcnow() - timedelta(seconds=self.window_s), self.bucket_s)
            windows = window_sums(self.db_url, model_name=self.name, model_version=version, since=since,
                                  window_s=self.window_s + self.bucket_s)
            if not windows:
                return None
            from shared.improvement.drift import Thresholds, compare  # scipy.stats: only once needed

            report = compare(windows[0], reference, self.window_s, Thresholds())
            self._cached = (time.monotonic(), version, report)
            return version, report

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            found = self.report()
        except Exception as exc:  # noqa: BLE001 - a scrape leaves drift out, it does not fail
            log.debug("cannot compute drift for the metrics: %s", exc)
            return
        if found is None:
            return
        version, report = found
        labels = [self.name, str(version)]
        for metric, (text, field) in FIGURES.items():
            value = getattr(report, field)
            if value is not None:
                family = GaugeMetricFamily(metric, text, labels=["model_name", "model_version"])
                family.add_metric(labels, float(value))
                yield family
        crossed = GaugeMetricFamily(CROSSED, "1 when the window crosses the figure's threshold (topicq "
                                    "drift's rule; 0 while the window has too few posts to judge).",
                                    labels=["model_name", "model_version", "figure"])
        for figure in CHECKED:
            crossed.add_metric([*labels, figure], 1.0 if figure in report.crossed else 0.0)
        yield crossed

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []
