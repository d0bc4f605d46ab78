"""The drift gauges a worker exports: the served version's last window, as `topicq drift` judges it."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from shared.database.connection import utcnow
from shared.improvement.drift import compare
from shared.improvement.drift_reference import load_reference
from shared.improvement.drift_sums import add_sums, bucket_start, window_sums
from shared.model.preprocess import preprocess
from testkit.factories import make_posts, register_fake_model, sums_of
from testkit.off_domain import off_domain_posts
from worker.drift_metrics import DriftCollector


def scrape(collector: DriftCollector) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(collector)
    samples = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


@pytest.mark.parametrize("off_domain", [False, True])
def test_the_gauges_are_the_last_windows_drift(sqlite_url: str, tmp_path: Path, off_domain: bool) -> None:
    # Given the served version with its reference, and 60 posts of the last hour added to its sums
    version = register_fake_model(sqlite_url, tmp_path / "models")
    posts = off_domain_posts(60, "off", seed=3) if off_domain else make_posts(60, "in", seed=9)
    for half in (posts[:30], posts[30:]):
        add_sums(sqlite_url, model_name="topics", model_version=version, bucket_s=300,
                 sums=sums_of(sqlite_url, [preprocess(str(p["text"])) for p in half], version))

    # When a worker's exporter is scraped
    collector = DriftCollector(sqlite_url, name="topics", alias="production", window_s=3600, bucket_s=300)
    samples = scrape(collector)

    # Then the gauges hold what topicq drift computes for that window
    reference = load_reference(tmp_path / "models" / "topics" / str(version))
    assert reference is not None
    window = window_sums(sqlite_url, model_name="topics", model_version=version,
                         since=bucket_start(utcnow(), 300), window_s=3600)[0]
    expected = compare(window, reference, 3600)
    labels = f'model_name="topics",model_version="{version}"'
    assert samples[f"topicq_drift_posts{{{labels}}}"] == 60
    assert samples[f"topicq_drift_label_js_distance{{{labels}}}"] == pytest.approx(expected.js_distance)
    assert samples[f"topicq_drift_mean_confidence{{{labels}}}"] == pytest.approx(expected.mean_confidence)
    assert samples[f"topicq_drift_centroid_shift{{{labels}}}"] == pytest.approx(expected.centroid_shift)
    crossed = {figure for figure in ("labels", "confidence", "centroid")
               if samples[f'topicq_drift_crossed{{figure="{figure}",{labels}}}'] == 1.0}
    assert crossed == set(expected.crossed) & {"labels", "confidence", "centroid"}
    assert bool(crossed) == off_domain


def test_no_served_version_or_no_sums_export_no_drift(sqlite_url: str, tmp_path: Path) -> None:
    collector = DriftCollector(sqlite_url, name="topics", alias="production", window_s=3600, bucket_s=300)
    assert scrape(collector) == {}
    register_fake_model(sqlite_url, tmp_path / "models")
    assert scrape(DriftCollector(sqlite_url, name="topics", alias="production", window_s=3600,
                                 bucket_s=300)) == {}
