"""Metrics, plots and the model card of a model version.

Plots are PNG files beside model.keras (matplotlib's Agg backend: no display
needed); MODEL_CARD.md lists the metrics and links the plots.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

CONFUSION_PNG = "confusion_matrix.png"
CURVES_PNG = "learning_curves.png"
CARD_FILE = "MODEL_CARD.md"


def compute_metrics(true: list[str], predicted: list[str] | np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    predicted = [str(p) for p in predicted]
    precision, recall, f1, support = precision_recall_fscore_support(
        true, predicted, labels=labels, zero_division=0
    )
    return {
        "n": len(true),
        "accuracy": float(accuracy_score(true, predicted)),
        "macro_f1": float(f1_score(true, predicted, labels=labels, average="macro", zero_division=0)),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
        },
        # rows: true label, columns: predicted label, both in `labels` order
        "confusion_matrix": confusion_matrix(true, predicted, labels=labels).tolist(),
        "labels": list(labels),
    }


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(metrics: dict[str, Any], path: Path) -> Path:
    plt = _pyplot()
    matrix = np.array(metrics["confusion_matrix"])
    labels = metrics["labels"]
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix (accuracy {metrics['accuracy']:.3f})")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, col), count in np.ndenumerate(matrix):
        ax.text(col, row, str(count), ha="center", va="center",
                color="white" if count > threshold else "black", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_learning_curves(history: dict[str, list[float]], path: Path) -> Path:
    """Loss (and accuracy, when recorded) per epoch, training solid vs validation dashed.

    A model with two branches records a loss per branch: each gets its own line.
    """
    plt = _pyplot()
    panels = [m for m in ("loss", "accuracy") if any(k.endswith(m) for k in history)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, metric in zip(axes[0], panels, strict=True):
        for key in sorted(k for k in history if k.endswith(metric) and not k.startswith("val_")):
            line = ax.plot(range(1, len(history[key]) + 1), history[key], "-", label=key)[0]
            if f"val_{key}" in history:
                values = history[f"val_{key}"]
                ax.plot(range(1, len(values) + 1), values, "--", color=line.get_color(), label=f"val_{key}")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_model_card(directory: Path, meta: dict[str, Any], plots: list[str]) -> Path:
    """A short markdown summary of a version: data, embedder, metrics, plots."""
    metrics = meta["metrics"]
    dataset = meta.get("dataset", {})
    lines = [
        f"# Model card: {meta['name']} version {meta['version']}",
        "",
        f"- Created: {meta['created_at']}",
        f"- Embedder: `{meta['embedder_id']}` ({meta['embedder_dim']} dimensions)",
        f"- Preprocessing version: {meta['preprocess_version']}",
        f"- Training data: {dataset.get('train', {}).get('size', '?')} posts, "
        f"fingerprint `{meta['data_fingerprint'][:16]}…`",
        f"- Test data: {metrics['n']} posts",
        f"- Hyperparameters: {', '.join(f'{k}={v}' for k, v in sorted(meta['hyperparameters'].items()))}",
        "",
        "## Metrics on the held-out test set",
        "",
        f"- Accuracy: **{metrics['accuracy']:.4f}**",
        f"- Macro-F1: **{metrics['macro_f1']:.4f}**",
        "",
        "| class | precision | recall | F1 | support |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, row in metrics["per_class"].items():
        lines.append(f"| {label} | {row['precision']:.3f} | {row['recall']:.3f} | "
                     f"{row['f1']:.3f} | {row['support']} |")
    lines += ["", "## Plots", ""]
    lines += [f"![{Path(name).stem.replace('_', ' ')}]({name})" for name in plots]
    path = directory / CARD_FILE
    path.write_text("\n".join(lines) + "\n")
    return path


def write_report(directory: Path, meta: dict[str, Any], history: dict[str, list[float]]) -> list[Path]:
    """Both plots and the model card in `directory`; returns their paths."""
    plots = [plot_confusion(meta["metrics"], directory / CONFUSION_PNG),
             plot_learning_curves(history, directory / CURVES_PNG)]
    return [*plots, write_model_card(directory, meta, [p.name for p in plots])]
