"""One PNG per drift figure over time, with its threshold (matplotlib's Agg backend: no display)."""

from __future__ import annotations

from pathlib import Path

from shared.improvement.drift import Thresholds, WindowReport

# figure -> (title, the Thresholds attribute drawn as its line, if any)
FIGURES = {
    "js_distance": ("label distribution: Jensen-Shannon distance", "max_js"),
    "chi2_p": ("label distribution: chi-square p-value (log scale)", "max_p"),
    "mean_confidence": ("mean top probability", None),
    "centroid_shift": ("embedding centroid distance / reference spread", "max_centroid_shift"),
    "review_share": ("share flagged for review", None),
    "out_of_domain_share": ("share out of domain", None),
}


def write_plots(windows: list[WindowReport], thresholds: Thresholds, directory: Path, *, title: str,
                reference_confidence: float) -> list[Path]:
    """`directory`/drift_<figure>.png for each figure with a value in some window; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.dates import date2num

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for figure, (label, threshold) in FIGURES.items():
        points = [(w.start, getattr(w, figure)) for w in windows if getattr(w, figure) is not None]
        if not points:
            continue
        fig, ax = plt.subplots(figsize=(8, 3.5))
        ax.plot([date2num(p[0]) for p in points], [p[1] for p in points], marker="o")
        ax.xaxis_date()
        if threshold is not None:
            ax.axhline(getattr(thresholds, threshold), color="red", linestyle="--", label="threshold")
        if figure == "mean_confidence":
            ax.axhline(reference_confidence - thresholds.max_confidence_drop, color="red", linestyle="--",
                       label="threshold")
            ax.axhline(reference_confidence, color="grey", linestyle=":", label="reference")
        if figure == "chi2_p":
            ax.set_yscale("log")
        for w in windows:  # windows past any threshold are shaded
            if w.crossed:
                ax.axvspan(date2num(w.start), date2num(w.end), color="red", alpha=0.1)
        ax.set_title(f"{title}: {label}")
        ax.set_xlabel("window start (UTC)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize="small")
        fig.autofmt_xdate()
        fig.tight_layout()
        path = directory / f"drift_{figure}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
