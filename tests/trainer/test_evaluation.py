"""Metrics, plots and the model card."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.evaluation import CARD_FILE, CONFUSION_PNG, CURVES_PNG, compute_metrics, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_metrics_of_known_predictions() -> None:
    true = ["a", "a", "a", "b", "b", "c"]
    predicted = ["a", "a", "b", "b", "b", "a"]
    metrics = compute_metrics(true, predicted, ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["per_class"]["a"] == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert metrics["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert metrics["per_class"]["b"]["recall"] == 1.0
    assert metrics["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0) / 3)
    assert metrics["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_report_writes_plots_and_a_card_listing_them(tmp_path: Path) -> None:
    metrics = compute_metrics(["a", "b", "b"], ["a", "b", "a"], ["a", "b"])
    meta = {"name": "topics", "version": 7, "created_at": "2026-01-01T00:00:00+00:00",
            "embedder_id": "fake:bow:64", "embedder_dim": 64, "preprocess_version": 1,
            "data_fingerprint": "f" * 64, "hyperparameters": {"hidden": 8}, "metrics": metrics,
            "dataset": {"train": {"size": 30}}}
    history = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8], "val_accuracy": [0.4, 0.6]}

    files = write_report(tmp_path, meta, history)

    assert [f.name for f in files] == [CONFUSION_PNG, CURVES_PNG, CARD_FILE]
    for name in (CONFUSION_PNG, CURVES_PNG):
        assert (tmp_path / name).read_bytes().startswith(PNG_MAGIC)
    card = (tmp_path / CARD_FILE).read_text()
    assert "# Model card: topics version 7" in card
    assert "Accuracy: **0.6667**" in card and "Macro-F1: **0.6667**" in card
    assert "| b | 1.000 | 0.500 | 0.667 | 2 |" in card
    assert f"({CONFUSION_PNG})" in card and f"({CURVES_PNG})" in card
    assert "30 posts" in card and "hidden=8" in card
