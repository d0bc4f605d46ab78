"""`topicq drift`: a version's live windows against the reference stored when it was trained."""

from __future__ import annotations

import sys
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from cli.options import Duration, TimeOrAgo
from cli.safe_output import json_line, printable_lines

DRIFT_EXIT = 3  # a threshold was crossed: for cron alerts, apart from errors (2)


def _resolve(db_url: str, model: str | None, default_name: str) -> tuple[str, int, Path]:
    """NAME (its production version), NAME:VERSION or NAME:ALIAS -> name, version, directory."""
    from shared.model import registry

    info = registry.resolve_ref(db_url, model or default_name)
    return info.name, info.version, Path(info.path)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _text(name: str, version: int, reference: Any, reports: list[Any], window: timedelta) -> str:
    lines = [f"model {name}:{version}; reference: {reference.posts} test posts, mean confidence "
             f"{reference.mean_confidence:.3f}, spread {reference.spread:.3f}; windows of {window}"]
    lines.append(f"{'window start (UTC)':<20} {'posts':>6} {'JS':>6} {'chi2 p':>9} {'conf':>6} "
                 f"{'shift':>6} {'review':>6} {'ood':>6}  drift")
    for r in reports:
        verdict = ", ".join(r.crossed) if r.crossed else ("-" if r.judged else "too few posts")
        lines.append(f"{r.start:%Y-%m-%d %H:%M:%S} {r.posts:>6} {_fmt(r.js_distance, '.3f'):>6} "
                     f"{_fmt(r.chi2_p, '.2e'):>9} {_fmt(r.mean_confidence, '.3f'):>6} "
                     f"{_fmt(r.centroid_shift, '.3f'):>6} {_fmt(r.review_share, '.3f'):>6} "
                     f"{_fmt(r.out_of_domain_share, '.3f'):>6}  {verdict}")
    drifted = [r for r in reports if r.crossed]
    lines.append(f"DRIFT in {len(drifted)} of {len(reports)} windows" if drifted
                 else f"no drift in {len(reports)} windows")
    return "\n".join(lines)


@click.command()
@click.option("--model", default=None, metavar="NAME[:VERSION|:ALIAS]",
              help="Default MODEL_NAME's production version; NAME:3 or NAME:staging for a challenger.")
@click.option("--since", type=TimeOrAgo(), default="1d", show_default=True,
              help="From this time (ISO 8601, no zone = UTC) or this long ago (10m, 2h, 1d).")
@click.option("--until", type=TimeOrAgo(), default=None,
              help="Up to this time or this long ago; default now.")
@click.option("--window", type=Duration(), default="1h", show_default=True,
              help="Length of each window compared (a multiple of DRIFT_BUCKET_S).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--plots", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write a PNG of each figure over time into this folder.")
@click.option("--max-js", type=click.FloatRange(0, 1), default=0.2, show_default=True,
              help="Label drift: Jensen-Shannon distance above this ...")
@click.option("--max-p", type=click.FloatRange(0, 1), default=0.01, show_default=True,
              help="... and chi-square p-value below this.")
@click.option("--max-confidence-drop", type=click.FloatRange(0, 1), default=0.1, show_default=True)
@click.option("--max-centroid-shift", type=click.FloatRange(0), default=0.25, show_default=True,
              help="Centroid distance in reference spreads (and 2x what sampling explains).")
@click.option("--min-posts", type=click.IntRange(1), default=20, show_default=True,
              help="Windows with fewer posts are shown, not judged.")
def drift(model: str | None, since: datetime, until: datetime | None, window: timedelta, fmt: str,
          plots: Path | None, max_js: float, max_p: float, max_confidence_drop: float,
          max_centroid_shift: float, min_posts: int) -> None:
    """Compare live windows of a model version with its training reference; exit status 3 on drift.

    Figures per window: label distribution (Jensen-Shannon distance, chi-square p-value), mean
    confidence, embedding centroid distance, shares needing review and out of domain (when rows
    carry those flags), from the sums workers keep per DRIFT_BUCKET_S.

    \b
    Examples:
      topicq drift                                   # production, last day, hourly windows
      topicq drift --since 10m --window 5m --format json
      topicq drift --model topics:staging --plots drift-plots/
      topicq drift --since 1d || mail -s "topics drift" ops@example.org < /dev/null   # cron
    """
    from shared.errors import ConfigError, ModelError
    from shared.improvement.drift import Thresholds, compare
    from shared.improvement.drift_reference import load_reference
    from shared.improvement.drift_sums import bucket_start, window_sums
    from shared.settings import get_settings

    settings = get_settings()
    window_s = int(window.total_seconds())
    if window_s % settings.drift_bucket_s:
        raise ConfigError(f"--window {window} is not a multiple of DRIFT_BUCKET_S "
                          f"({settings.drift_bucket_s} s), the span workers keep sums for")
    name, version, directory = _resolve(settings.db_url, model, settings.model_name)
    reference = load_reference(directory)
    if reference is None:
        raise ModelError(f"{name}:{version} has no drift reference (it was trained before references "
                         "were stored): train a new version to compare with")
    start = bucket_start(since.astimezone(UTC), settings.drift_bucket_s)
    thresholds = Thresholds(max_js=max_js, max_p=max_p, max_confidence_drop=max_confidence_drop,
                            max_centroid_shift=max_centroid_shift, min_posts=min_posts)
    reports = [compare(w, reference, window_s, thresholds)
               for w in window_sums(settings.db_url, model_name=name, model_version=version, since=start,
                                    window_s=window_s,
                                    until=bucket_start(until, settings.drift_bucket_s) if until else None)]
    if fmt == "json":
        ref = {k: v for k, v in asdict(reference).items() if k != "centroid"}
        click.echo(json_line({"model": f"{name}:{version}", "since": start.isoformat(),
                               "window_s": window_s, "reference": ref, "thresholds": asdict(thresholds),
                               "windows": [asdict(r) for r in reports],
                               "drift": any(r.crossed for r in reports)}, indent=2, default=str))
    else:
        click.echo(printable_lines(_text(name, version, reference, reports, window)))
    if plots is not None and reports:
        from cli.drift_plots import write_plots

        for path in write_plots(reports, thresholds, plots, title=f"{name}:{version}",
                                reference_confidence=reference.mean_confidence):
            click.echo(f"wrote {path}", err=True)
    if not reports:
        click.echo(f"no rows of {name}:{version} since {start:%Y-%m-%d %H:%M} UTC", err=True)
    if any(r.crossed for r in reports):
        sys.exit(DRIFT_EXIT)
