"""Metrics, plots and the model card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trainer.evaluation import (
    CARD_FILE,
    CONFUSION_PNG,
    CURVES_PNG,
    compute_metrics,
    curve_lines,
    learning_curves_figure,
    wilson_interval,
    write_model_card,
    write_report,
)

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


HISTORY = {"loss": [2.0, 1.0, 0.8], "val_loss": [2.1, 1.2, 1.1],
           "accuracy": [0.5, 0.8, 0.9], "val_accuracy": [0.5, 0.7, 0.8]}


def card_meta(metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "topics", "version": 7, "created_at": "2026-01-01T00:00:00+00:00", "labels": ["a", "b"],
        "embedder_id": "fake:bow:64", "embedder_dim": 64, "preprocess_version": 1,
        "data_fingerprint": "f" * 64, "hyperparameters": {"hidden": 8, "epochs": 100, "self_training": 0.9},
        "metrics": metrics,
        "dataset": {"train": {"source": "20newsgroups", "subset": "train", "groups": ["a", "b"], "size": 30,
                              "per_class": 15, "seed": 0, "class_counts": {"a": 15, "b": 15}},
                    "test": {"source": "20newsgroups", "subset": "test", "groups": ["a", "b"], "size": 3,
                             "class_counts": {"a": 1, "b": 2}}},
        "training": {"fits": [{"title": "first fit", "posts": 30, "epochs": 3, "best_epoch": 2},
                              {"title": "self-training fit", "posts": 42, "epochs": 3, "best_epoch": 2}],
                     "unlabeled": 20, "self_trained": 12, "fit_seconds": 4.2, "seconds": 9.5},
    }


def fits() -> list[dict[str, Any]]:
    return [{"title": "first fit", "posts": 30, "history": HISTORY, "best_epoch": 2},
            {"title": "self-training fit", "posts": 42, "history": HISTORY, "best_epoch": 2}]


def test_report_writes_plots_and_a_card_listing_them(tmp_path: Path) -> None:
    metrics = compute_metrics(["a", "b", "b"], ["a", "b", "a"], ["a", "b"])

    files = write_report(tmp_path, card_meta(metrics), fits())

    assert [f.name for f in files] == [CONFUSION_PNG, CURVES_PNG, CARD_FILE]
    for name in (CONFUSION_PNG, CURVES_PNG):
        assert (tmp_path / name).read_bytes().startswith(PNG_MAGIC)
    card = (tmp_path / CARD_FILE).read_text()
    assert "# Model card: topics version 7" in card
    assert "Macro-F1: **0.6667**" in card
    assert "| b | 1.000 | 0.500 | 0.667 | 2 |" in card
    assert f"({CONFUSION_PNG})" in card and f"({CURVES_PNG})" in card


def test_the_card_describes_data_training_and_hyperparameters(tmp_path: Path) -> None:
    metrics = compute_metrics(["a", "b", "b"], ["a", "b", "a"], ["a", "b"])
    card = write_model_card(tmp_path, card_meta(metrics), []).read_text()

    assert "- Training: 30 posts from 20 Newsgroups `train` subset, groups a, b, 15 a class (seed 0)" in card
    assert "  - posts per class: a 15, b 15" in card
    assert "- Self-training: 12 of 20 unlabeled training-side posts" in card
    assert "| first fit | 30 | 3 | 2 |" in card and "| self-training fit | 42 | 3 | 2 |" in card
    assert "Training time: 4.2 s fitting, 9.5 s in all" in card
    assert "| `epochs` | 100 |" in card and "| `hidden` | 8 |" in card


def test_the_card_gives_the_confusion_matrix_in_counts_and_row_shares(tmp_path: Path) -> None:
    metrics = compute_metrics(["a", "b", "b", "b"], ["a", "b", "a", "a"], ["a", "b"])
    card = write_model_card(tmp_path, card_meta(metrics), []).read_text()

    assert "| a | 1 | 0 |\n| b | 2 | 1 |" in card
    assert "| a | 1.00 | 0.00 |\n| b | 0.67 | 0.33 |" in card


def test_a_tiny_test_set_gets_an_interval_and_a_warning(tmp_path: Path) -> None:
    labels = ["a", "b"] * 8
    card = write_model_card(tmp_path, card_meta(compute_metrics(labels, labels, ["a", "b"])), []).read_text()
    assert "Accuracy: **1.0000** (16 of 16 posts; 95% confidence interval 0.806–1.000)" in card
    assert "**Warning: only 16 test posts.**" in card

    labels = ["a", "b"] * 100
    card = write_model_card(tmp_path, card_meta(compute_metrics(labels, labels, ["a", "b"])), []).read_text()
    assert "(200 of 200 posts; 95% confidence interval 0.981–1.000)" in card and "Warning" not in card


def test_the_card_states_intended_use_and_the_off_topic_limitation(tmp_path: Path) -> None:
    card = write_model_card(tmp_path, card_meta(compute_metrics(["a"], ["a"], ["a", "b"])), []).read_text()
    assert "## Intended use" in card and "one of these topics: a, b" in card
    assert "## Limitations" in card and "a post on another subject often gets a confident score" in card


@pytest.mark.parametrize(("correct", "n", "low", "high"),
                         [(16, 16, 0.806, 1.0), (0, 10, 0.0, 0.278), (1489, 1579, 0.931, 0.954)])
def test_wilson_interval(correct: int, n: int, low: float, high: float) -> None:
    assert wilson_interval(correct, n) == pytest.approx((low, high), abs=0.001)


def test_learning_curves_show_training_solid_and_validation_dashed() -> None:
    assert [(label, style) for label, style, _ in curve_lines(HISTORY, "loss")] == [
        ("training", "-"), ("validation", "--")]
    assert [values for _, _, values in curve_lines(HISTORY, "accuracy")] == [[0.5, 0.8, 0.9], [0.5, 0.7, 0.8]]
    assert [label for label, _, _ in curve_lines({"loss": [1.0]}, "loss")] == ["training"]


def test_learning_curves_have_a_row_per_fit(tmp_path: Path) -> None:
    figure = learning_curves_figure(fits())
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["first fit (30 posts): loss", "first fit (30 posts): accuracy",
                      "self-training fit (42 posts): loss", "self-training fit (42 posts): accuracy"]
    assert all(ax.get_yscale() == "log" for ax in figure.axes[::2])
    assert all("restored: epoch 2" in [t.get_text() for t in ax.get_legend().get_texts()] for ax in figure.axes)
