"""`topicq compare NAME:A NAME:B`: two versions on the posts both classified, as markdown, PNG or JSON."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from cli.options import Timestamp, model_name
from cli.safe_output import json_line, printable_lines
from shared.errors import ModelError
from shared.improvement.comparison import Comparison, compare_versions
from shared.settings import get_settings


def _version_ref(value: str) -> tuple[str, int]:
    name, _, version = value.partition(":")
    if not name or not version.isdigit():
        raise click.BadParameter(f"expected NAME:VERSION like topics:3, got {value!r}")
    return name, int(version)


def trained_corrections(db_url: str, name: str, versions: set[int]) -> dict[int, set[str]]:
    """Per version, the corrected posts of `name` it was trained on (its training digests; a version
    without them, or a correction without text, counts as not trained on)."""
    from shared.improvement.corrections import corrections
    from shared.model import registry
    from shared.model.preprocess import preprocess
    from trainer.training_digests import seen_in_training

    corrected = [c for c in corrections(db_url, model_name=name) if c.text]
    found: dict[int, set[str]] = {}
    for version in versions:
        info = registry.get_version(db_url, name=name, version=version)
        seen = seen_in_training(Path(info.path), [preprocess(c.text or "") for c in corrected]) or []
        found[version] = {c.post_id for c, was in zip(corrected, seen, strict=False) if was}
    return found


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


@click.command()
@click.argument("first", metavar="NAME:A", callback=model_name)
@click.argument("second", metavar="NAME:B", callback=model_name)
@click.option("--since", type=Timestamp(), default=None,
              help="Only rows processed at or after: ISO 8601 time (no zone = UTC) or a date.")
@click.option("--format", "fmt", type=click.Choice(["markdown", "json"]), default="markdown",
              show_default=True)
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the plot (default: TOPICQ_HOME/plots/compare-NAME-A-B.png; "
                   "markdown only).")
def compare(first: str, second: str, since: datetime | None, fmt: str, png: Path | None) -> None:
    """Compare two versions of a model on the posts both classified.

    \b
    Agreement rate, the label-by-label confusion between the versions, each
    one's accuracy on corrected posts (`topicq review import`) and mean confidence.
    Rows of a version come from workers serving it (e.g. MODEL_ALIAS=staging).
    Examples:
      topicq compare topics:3 topics:4
      topicq compare topics:3 topics:4 --since 2026-11-01 --format json
    """
    from shared.model import registry

    (name, a), (other, b) = _version_ref(first), _version_ref(second)
    if name != other:
        raise click.BadParameter(f"compare two versions of one model, not {name} and {other}")
    db_url = get_settings().db_url
    for version in (a, b):
        registry.get_version(db_url, name=name, version=version)
    comparison = compare_versions(db_url, name=name, a=a, b=b, since=since,
                                  trained_on=trained_corrections(db_url, name, {a, b}))
    if fmt == "json":
        click.echo(json_line(comparison.to_json(), indent=2))
        return
    if comparison.common == 0 and comparison.reviewed["a"].n == comparison.reviewed["b"].n == 0:
        raise ModelError(f"{name}:{a} and {name}:{b} share no classified posts and no corrected ones"
                         f"{' since ' + since.isoformat() if since else ''}: nothing to compare")
    if png is None:  # not the current folder: a command that reads should not litter where it runs
        png = get_settings().topicq_home.resolve() / "plots" / f"compare-{name}-{a}-{b}.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    path = plot(comparison, png)
    click.echo(f"wrote {path}", err=True)
    click.echo(printable_lines(markdown(comparison, path)), nl=False)
