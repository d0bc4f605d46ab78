"""`topicq compare`'s report of two versions: markdown, and a PNG (matplotlib's Agg backend: no display)."""

from __future__ import annotations

from pathlib import Path

from shared.improvement.comparison import Comparison


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(c: Comparison, png: Path | None) -> str:
    a, b = f"{c.name}:{c.a}", f"{c.name}:{c.b}"
    since = f" processed since {c.since.isoformat()}" if c.since else ""
    ra, rb = c.reviewed["a"], c.reviewed["b"]
    lines = [f"# {a} vs {b}", "",
             f"Posts classified by both{since}: {c.common}", "",
             f"| | {a} | {b} |", "|---|---:|---:|",
             f"| mean confidence | {_number(c.mean_confidence['a'])} | {_number(c.mean_confidence['b'])} |",
             f"| accuracy on corrected posts | {_number(ra.accuracy)} ({ra.correct}/{ra.n}) "
             f"| {_number(rb.accuracy)} ({rb.correct}/{rb.n}) |",
             f"| corrected posts left out (trained on them) | {ra.trained_on} | {rb.trained_on} |", "",
             f"Agreement: **{_number(c.agreement)}**", ""]
    if c.labels:
        lines += [f"Confusion (rows: {a}, columns: {b}):", "",
                  "| | " + " | ".join(c.labels) + " |", "|---|" + "---:|" * len(c.labels)]
        lines += [f"| {label} | " + " | ".join(map(str, row)) + " |"
                  for label, row in zip(c.labels, c.confusion, strict=True)]
    if png is not None:
        lines += ["", f"![{a} vs {b}]({png})"]
    return "\n".join(lines) + "\n"


def plot(c: Comparison, path: Path) -> Path:
    """The confusion between the versions beside their mean confidence and reviewed accuracy."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt
    import numpy as np

    a, b = f"{c.name}:{c.a}", f"{c.name}:{c.b}"
    size = max(4.0, 0.6 * len(c.labels) + 2)
    fig, (left, right) = plt.subplots(1, 2, figsize=(2 * size + 2, size))
    matrix = np.array(c.confusion) if c.labels else np.zeros((0, 0))
    if c.labels:
        left.imshow(matrix, cmap="Blues", vmin=0)
        left.set_xticks(range(len(c.labels)), c.labels, rotation=45, ha="right")
        left.set_yticks(range(len(c.labels)), c.labels)
        for (row, col), value in np.ndenumerate(matrix):
            left.text(col, row, str(value), ha="center", va="center", fontsize=8,
                      color="white" if value > matrix.max() / 2 else "black")
    left.set_xlabel(b)
    left.set_ylabel(a)
    left.set_title(f"labels on {c.common} posts; agreement {_number(c.agreement)}")
    measures = ["mean confidence", "accuracy on corrected posts"]
    values = {key: [c.mean_confidence[key] or 0.0, c.reviewed[key].accuracy or 0.0] for key in ("a", "b")}
    x = np.arange(len(measures))
    right.bar(x - 0.2, values["a"], 0.4, label=a)
    right.bar(x + 0.2, values["b"], 0.4, label=b)
    right.set_xticks(x, measures)
    right.set_ylim(0, 1)
    right.legend()
    right.set_title(f"corrected posts classified: {c.reviewed['a'].n} and {c.reviewed['b'].n}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

