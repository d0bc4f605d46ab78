"""Metrics, plots and the model card of a model version.

Plots are PNG files beside model.keras (matplotlib's Agg backend: no display
needed); MODEL_CARD.md lists the metrics and links the plots.
"""

from __future__ import annotations

from collections.abc import Callable
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


def row_normalised(matrix: np.ndarray) -> np.ndarray:
    """Each row (a true class) divided by its total: the share of that class given each label."""
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)


def _matrix_panel(ax: Any, values: np.ndarray, labels: list[str], title: str,
                  text: Callable[[Any], str]) -> Any:
    image = ax.imshow(values, cmap="Blues", vmin=0)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = values.max() / 2 if values.size else 0
    for (row, col), value in np.ndenumerate(values):
        ax.text(col, row, text(value), ha="center", va="center",
                color="white" if value > threshold else "black", fontsize=8)
    return image


def plot_confusion(metrics: dict[str, Any], path: Path) -> Path:
    """Counts beside the row-normalised matrix (each true class's posts sum to 1)."""
    plt = _pyplot()
    matrix = np.array(metrics["confusion_matrix"])
    labels = metrics["labels"]
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, (counts, shares) = plt.subplots(1, 2, figsize=(2 * size + 2, size))
    fig.colorbar(_matrix_panel(counts, matrix, labels, "posts", str), ax=counts)
    fig.colorbar(_matrix_panel(shares, row_normalised(matrix), labels, "share of the true class",
                               lambda v: f"{v:.2f}"), ax=shares)
    fig.suptitle(f"Confusion matrix: {metrics['n']} test posts, accuracy {metrics['accuracy']:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def curve_lines(history: dict[str, list[float]], metric: str) -> list[tuple[str, str, list[float]]]:
    """(label, line style, values) of one metric: training solid, validation dashed."""
    return [(name, style, history[key]) for name, style, key in
            (("training", "-", metric), ("validation", "--", f"val_{metric}")) if key in history]


def learning_curves_figure(fits: list[dict[str, Any]]) -> Any:
    """Loss (log scale) and accuracy per epoch, one row per fit, the restored epoch marked."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(fits), 2, figsize=(13, 3.8 * len(fits)), squeeze=False)
    for row, fit in zip(axes, fits, strict=True):
        for ax, metric in zip(row, ("loss", "accuracy"), strict=True):
            for label, style, values in curve_lines(fit["history"], metric):
                ax.plot(range(1, len(values) + 1), values, style, label=label, linewidth=1.2)
            ax.axvline(fit["best_epoch"], color="grey", linestyle=":",
                       label=f"restored: epoch {fit['best_epoch']}")
            if metric == "loss":
                ax.set_yscale("log")  # the tail of a loss curve is flat on a linear scale
            ax.set_xlabel("epoch")
            ax.set_title(f"{fit['title']} ({fit['posts']} posts): {metric}")
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)  # beside the lines, not on them
    fig.tight_layout()
    return fig


def plot_learning_curves(fits: list[dict[str, Any]], path: Path) -> Path:
    fig = learning_curves_figure(fits)
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


# Below this many test posts the card warns that its figures are loose.
FEW_TEST_POSTS = 100


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% confidence interval of a proportion (Wilson score: sound at 0, 1 and small n)."""
    if n == 0:
        return 0.0, 1.0
    share = correct / n
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _table(header: list[str], rows: list[list[Any]], align: str = "") -> list[str]:
    """A markdown table; `align` holds one character per column, "r" for right-aligned."""
    rules = ["---:" if a == "r" else "---" for a in align.ljust(len(header), "l")]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(rules) + " |",
            *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)]


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{label} {count}" for label, count in counts.items())


def _source_text(data: dict[str, Any]) -> str:
    if data.get("source") == "file":
        split = f", the {data['split']} split ({data['test_size']:g} held out, seed {data['seed']})" \
            if "split" in data else ""
        return f"file `{data['path']}` (text `{data['text_column']}`, label `{data['label_column']}`){split}"
    return f"20 Newsgroups `{data.get('subset', '?')}` subset, groups {', '.join(data.get('groups', []))}"


def _data_section(meta: dict[str, Any]) -> list[str]:
    train, test = meta["dataset"].get("train", {}), meta["dataset"].get("test", {})
    training = meta.get("training", {})
    lines = ["## Data", ""]
    for role, data in (("Training", train), ("Test", test)):
        sampled = f", {data['per_class']} a class (seed {data['seed']})" if "per_class" in data else ""
        lines.append(f"- {role}: {data.get('size', '?')} posts from {_source_text(data)}{sampled}")
        lines.append(f"  - posts per class: {_counts_text(data.get('class_counts', {}))}")
        if data.get("short_classes"):
            lines.append(f"  - fewer than asked for: {_counts_text(data['short_classes'])}")
    if training.get("unlabeled"):
        threshold = meta["hyperparameters"].get("self_training")
        lines.append(f"- Self-training: {training['self_trained']} of {training['unlabeled']} unlabeled "
                     f"training-side posts were labelled by the first fit with p ≥ {threshold} and joined "
                     "the second fit (never a test post)")
    corrections = train.get("corrections")
    if corrections:
        left_out = {key.removeprefix("left_out_").replace("_", " "): value
                    for key, value in corrections.items() if key.startswith("left_out_") and value}
        note = f"; left out: {_counts_text(left_out)}" if left_out else ""
        lines.append(f"- Corrections: {corrections['added']} corrected posts joined the training posts and "
                     f"{corrections['relabelled']} training posts took their corrected label, of "
                     f"{corrections['corrections']} corrections made from {corrections.get('first', '?')} "
                     f"to {corrections.get('last', '?')}{note} (never a test post)")
    lines.append(f"- Training data fingerprint: `{meta['data_fingerprint']}`")
    return lines


def _training_section(meta: dict[str, Any]) -> list[str]:
    training = meta.get("training", {})
    hyper = meta["hyperparameters"]
    lines = ["## Training", ""]
    if training.get("fits"):
        rows = [[fit["title"], fit["posts"], fit["epochs"], fit["best_epoch"]] for fit in training["fits"]]
        lines += _table(["fit", "posts", "epochs run", "epoch kept"], rows, "lrrr")
        lines += ["", f"At most {hyper.get('epochs')} epochs a fit. A fit stops once its validation loss "
                      f"has not improved by {hyper.get('min_delta')} or more for {hyper.get('patience')} "
                      "epochs, and keeps the weights of the last epoch that did."]
    if "seconds" in training:
        lines += ["", f"Training time: {training['fit_seconds']:.1f} s fitting, {training['seconds']:.1f} s "
                      "in all (loading and embedding the posts included)."]
    lines += ["", "### Hyperparameters", ""]
    lines += _table(["name", "value"], [[f"`{k}`", v] for k, v in sorted(hyper.items())])
    return lines


def _metrics_section(metrics: dict[str, Any]) -> list[str]:
    n = metrics["n"]
    correct = int(np.trace(np.array(metrics["confusion_matrix"]))) if n else 0
    low, high = wilson_interval(correct, n)
    lines = ["## Metrics on the held-out test set", "",
             f"- Accuracy: **{metrics['accuracy']:.4f}** ({correct} of {n} posts; "
             f"95% confidence interval {low:.3f}–{high:.3f})",
             f"- Macro-F1: **{metrics['macro_f1']:.4f}**"]
    baseline = metrics.get("baseline")
    if baseline and baseline.get("accuracy") is not None:
        gap = metrics["accuracy"] - baseline["accuracy"]
        lines.append(f"- Baseline on the same split, {baseline['name']} on the words alone: "
                     f"{baseline['accuracy']:.4f} ({gap:+.4f} for this version)"
                     + ("; **the words alone do better here**: the embeddings do not help this data"
                        if gap < 0 else ""))
    if n < FEW_TEST_POSTS:
        lines.append(f"- **Warning: only {n} test posts.** These figures can be far from the accuracy on new "
                     "posts (see the interval); evaluate on more posts with `topicq evaluate` before relying "
                     "on them.")
    rows = [[label, f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", r["support"]]
            for label, r in metrics["per_class"].items()]
    return [*lines, "", *_table(["class", "precision", "recall", "F1", "support"], rows, "lrrrr")]


def _review_section(metrics: dict[str, Any]) -> list[str]:
    rows = metrics.get("review")
    if not rows:
        return []
    table = [[f"{row['rate']:.2f}", f"{row['flagged']:.1%}",
              "–" if row["mistakes_caught"] is None else f"{row['mistakes_caught']:.0%} of {row['mistakes']}"]
             for row in rows]
    return ["## Review queue", "",
            "Workers flag a post for review when its uncertainty and its distance from the training posts "
            "of the class it was given, "
            "weighed together against the test posts', are beyond all but the chosen REVIEW_RATE of them "
            "(default 0.1). "
            "On the test posts:", "",
            *_table(["REVIEW_RATE", "test posts flagged", "the model's mistakes among them"], rows=table,
                    align="lrr"), ""]


def _confusion_section(metrics: dict[str, Any]) -> list[str]:
    labels, matrix = metrics["labels"], np.array(metrics["confusion_matrix"])
    header = ["true \\ predicted", *labels]
    counts = [[label, *row] for label, row in zip(labels, matrix.tolist(), strict=True)]
    shares = [[label, *(f"{share:.2f}" for share in row)]
              for label, row in zip(labels, row_normalised(matrix), strict=True)]
    align = "l" + "r" * len(labels)
    return ["## Confusion matrix", "", "Posts:", "", *_table(header, counts, align), "",
            "Share of each true class (rows sum to 1):", "", *_table(header, shares, align)]


def _use_section(meta: dict[str, Any]) -> list[str]:
    labels = ", ".join(meta["labels"])
    return [
        "## Intended use", "",
        f"Sorting English posts that belong to one of these topics: {labels}, served by a topicq worker "
        f"with the same embedder (`{meta['embedder_id']}`) and preprocessing (version "
        f"{meta['preprocess_version']}); other embedders are refused.", "",
        "## Limitations", "",
        "- Every post gets one of the labels above, and a post on another subject often gets a confident "
        "score: there is no \"none of these\" answer. (Measured on a model of the four 20 Newsgroups sci "
        "groups: 300 comp.graphics posts scored 0.73 on average, 71 of them ≥ 0.9.) Do not read a high "
        "score as \"on topic\"; if off-topic posts reach the queue, train with a class for them.",
        "- Workers flag for review (`needs_review`) about REVIEW_RATE of in-domain posts: those this "
        "version is least sure of and those farthest from its training posts (see Review queue). Posts "
        "on another subject are caught only in part: on the sci benchmark about 60% of comp.*/rec.* posts "
        "at REVIEW_RATE 0.1 (bench/results/review.md).",
        "- The test figures hold for posts like the training posts (same source, period and style); "
        "measure on your own labelled posts with `topicq evaluate` before relying on them elsewhere.",
        "- Only the start of a post is embedded (the embedder's token limit; texts are cut at 5,000 "
        "characters), and e-mail addresses and parenthesised text are removed first.",
        "- Self-training posts carry the first fit's labels, mistakes included.",
    ]


def write_model_card(directory: Path, meta: dict[str, Any], plots: list[str]) -> Path:
    """The version's card: data, training, metrics with their uncertainty, intended use and limits."""
    lines = [
        f"# Model card: {meta['name']} version {meta['version']}", "",
        f"- Created: {meta['created_at']}",
        f"- Labels: {', '.join(meta['labels'])}",
        f"- Embedder: `{meta['embedder_id']}` ({meta['embedder_dim']} dimensions); "
        f"preprocessing version {meta['preprocess_version']}", "",
        *_use_section(meta), "",
        *_data_section(meta), "",
        *_training_section(meta), "",
        *_metrics_section(meta["metrics"]), "",
        *_review_section(meta["metrics"]),
        *_confusion_section(meta["metrics"]), "",
        "## Plots", "",
        *(f"![{Path(name).stem.replace('_', ' ')}]({name})" for name in plots),
    ]
    path = directory / CARD_FILE
    path.write_text("\n".join(lines) + "\n")
    return path


def write_report(directory: Path, meta: dict[str, Any], fits: list[dict[str, Any]]) -> list[Path]:
    """Both plots and the model card in `directory`; returns their paths.

    `fits`: the first fit, then the self-training fit when there was one, each
    with its title, posts, Keras history and the epoch whose weights were kept.
    """
    plots = [plot_confusion(meta["metrics"], directory / CONFUSION_PNG),
             plot_learning_curves(fits, directory / CURVES_PNG)]
    return [*plots, write_model_card(directory, meta, [p.name for p in plots])]
