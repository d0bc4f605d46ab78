"""The verbs of a model's versions: `topicq models` (list), `compare` (two versions on the same posts),
`promote` (point an alias at one, with optional guards) and `rollback`.

Errors are shared.errors types, which the `topicq` group prints as one line (exit status 2).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from cli.comparison_report import markdown, plot
from cli.options import Timestamp, model_name
from cli.safe_output import json_line, printable, printable_lines
from shared.errors import ModelError
from shared.improvement.comparison import compare_versions, guard_failures
from shared.model import registry
from shared.settings import get_settings


def _db_url() -> str:
    return get_settings().db_url  # the `topicq` group brought its schema up to date


@click.command()
@click.option("--name", help="Only this model's versions.")
@click.option("--history", "history_of", metavar="NAME",
              help="Instead: which version held each alias of NAME when.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def models(name: str | None, history_of: str | None, fmt: str) -> None:
    """List registered model versions with their aliases and test metrics.

    \b
    Examples:
      topicq models
      topicq models --name topics --format json
      topicq models --history topics
    """
    if history_of:
        _echo_history(history_of, fmt)
        return
    versions = registry.list_versions(_db_url(), name=name)
    if fmt == "json":
        rows = [{"name": v.name, "version": v.version, "aliases": list(v.aliases), "status": v.status,
                 "embedder_id": v.embedder_id, "metrics": v.metrics, "path": v.path,
                 "sha256": v.sha256, "created_at": v.created_at.isoformat()} for v in versions]
        click.echo(json.dumps(rows, indent=2))
        return
    if not versions:
        click.echo("no models registered yet (see `topicq train --help`)")
        return
    rate = get_settings().review_rate
    # WORDS-ONLY: the TF-IDF + LinearSVC baseline on the same split; REVIEW: test posts flagged.
    click.echo(f"{'NAME':<16} {'VERSION':>7}  {'ALIASES':<20} {'ACCURACY':>8} {'MACRO-F1':>8} "
               f"{'WORDS-ONLY':>10}  {'REVIEW (test posts flagged)':<36}  {'CREATED':<16}  EMBEDDER")
    for v in versions:
        accuracy, macro_f1 = (v.metrics.get(key) for key in ("accuracy", "macro_f1"))
        baseline = (v.metrics.get("baseline") or {}).get("accuracy")
        click.echo(f"{printable(v.name):<16} {v.version:>7}  {','.join(v.aliases) or '-':<20} "
                   f"{_number(accuracy):>8} {_number(macro_f1):>8} {_number(baseline):>10}  "
                   f"{_review_cell(v.metrics.get('review'), rate):<36}  "
                   f"{v.created_at:%Y-%m-%d %H:%M}  {printable(v.embedder_id)}")
    _echo_workers(name)


def _review_cell(rows: Any, rate: float) -> str:
    """What the version's review flag does on its test posts at the REVIEW_RATE nearest to `rate`."""
    if not isinstance(rows, list) or not rows:
        return "- (fixed scores)"
    row = min(rows, key=lambda r: abs(float(r.get("rate", 0)) - rate))
    caught = row.get("mistakes_caught")
    mistakes = "" if caught is None else f", {caught:.0%} of {row.get('mistakes')} mistakes"
    return f"rate {row['rate']:g}: {row['flagged']:.1%}{mistakes}"


def _echo_history(name: str, fmt: str) -> None:
    periods = registry.alias_history(_db_url(), name=name)
    if fmt == "json":
        rows = [{"alias": p.alias, "version": p.version, "previous_version": p.previous_version,
                 "action": p.action, "since": p.since.isoformat(),
                 "until": p.until.isoformat() if p.until else None} for p in periods]
        click.echo(json.dumps(rows, indent=2))
        return
    if not periods:
        click.echo(f"no alias of {name} was ever set (see `topicq promote --help`)")
        return
    click.echo(f"{'ALIAS':<12} {'VERSION':>7}  {'SINCE':<19}  {'UNTIL':<19}  {'ACTION':<9} FROM")
    for p in periods:
        until = f"{p.until:%Y-%m-%d %H:%M:%S}" if p.until else "(now)"
        before = "-" if p.previous_version is None else str(p.previous_version)
        click.echo(f"{printable(p.alias):<12} {p.version:>7}  {p.since:%Y-%m-%d %H:%M:%S}  {until:<19}  "
                   f"{p.action:<9} {before}")


def _echo_workers(name: str | None) -> None:
    """What the workers serve: a version they refused is visible here, not only in their logs."""
    from worker.presence import serving_workers

    for state in serving_workers(get_settings().redis_url, model_name=name):
        click.echo(printable(state.describe()))


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


@click.command()
@click.argument("name", callback=model_name)
@click.argument("version", type=int)
@click.option("--alias", default=registry.DEFAULT_ALIAS, show_default=True)
@click.option("--force", is_flag=True,
              help="Promote a version of another embedder than the current one: workers on "
                   "EMBEDDER=auto switch to it and its embedder without restart; workers with a set "
                   "EMBEDDER refuse it (and keep the current one) until restarted with its EMBEDDER. "
                   "Also promote a version that shares no label with the current one.")
@click.option("--require-agreement", type=click.FloatRange(0, 1), default=None, metavar="X",
              help="Refuse unless the version agrees with the alias's current version on at least X of "
                   "the posts both classified.")
@click.option("--require-reviewed-accuracy", type=click.FloatRange(0, 1), default=None, metavar="Y",
              help="Refuse unless the version is right on at least Y of the corrected posts it classified "
                   "(those it was trained on left out).")
@click.option("--since", type=Timestamp(), default=None,
              help="Guards: only rows processed at or after this time.")
def promote(name: str, version: int, alias: str, force: bool, require_agreement: float | None,
            require_reviewed_accuracy: float | None, since: datetime | None) -> None:
    """Point an alias (default: production) at a version; workers switch to it within seconds.

    \b
    With guards, the version must first have classified posts (e.g. served under
    another alias, or in shadow); see `topicq compare`.
    Examples:
      topicq promote topics 3
      topicq promote topics 4 --alias staging
      topicq promote topics 4 --require-agreement 0.9 --require-reviewed-accuracy 0.8
    Corrected posts the version was trained on do not count towards its reviewed accuracy.
    A version with other labels than the current one is promoted with a warning naming them;
    one that shares no label with it is refused (earlier posts' reviews would all be refused)
    unless --force.
    """
    db_url = _db_url()
    registry.get_version(db_url, name=name, version=version)
    change = registry.embedder_change(db_url, name=name, version=version, alias=alias)
    if change and not force:
        current = registry.resolve(db_url, name=name, alias=alias)
        raise ModelError(f"not promoted: {change}; workers on EMBEDDER=auto would switch to it and its "
                         "embedder without restart, but workers with a set EMBEDDER would refuse it and "
                         f"keep {name}:{current} until restarted with its EMBEDDER: train it with the same "
                         "--embedder, or promote it with --force")
    labels = _label_change(db_url, name, version, alias)
    if labels and not labels.shared and not force:
        raise ModelError(f"not promoted: {name}:{version} shares no label with {alias} "
                         f"{name}:{labels.current} ({printable(labels.describe())}): reviews of "
                         "earlier posts would all be refused; promote it with --force")
    if require_agreement is not None or require_reviewed_accuracy is not None:
        _check_guards(db_url, name, version, alias, require_agreement, require_reviewed_accuracy, since)
    if labels:
        click.echo(f"warning: {name}:{version}'s labels differ from {alias} {name}:{labels.current}'s "
                   f"({printable(labels.describe())})", err=True)
    previous = registry.promote(db_url, name=name, version=version, alias=alias)
    before = f"{name}:{previous}" if previous is not None else "(unset)"
    click.echo(f"{alias}: {before} -> {name}:{version}")
    if alias == get_settings().shadow_alias and alias != registry.DEFAULT_ALIAS:
        # The challenger reuses production's embeddings: a version of another embedder is not scored.
        other = registry.embedder_change(db_url, name=name, version=version)
        click.echo(f"warning: workers will not score it in shadow: {other}" if other
                   else f"workers score {name}:{version} in shadow within MODEL_REFRESH_S", err=bool(other))


def _label_change(db_url: str, name: str, version: int, alias: str) -> registry.LabelChange | None:
    """The label difference, or None with a warning when a version's model.json cannot be read
    (the workers will refuse that version and say why; promoting it is not this check's call)."""
    try:
        return registry.label_change(db_url, name=name, version=version, alias=alias)
    except ModelError as exc:
        click.echo(f"warning: labels not compared: {exc}", err=True)
        return None


def _check_guards(db_url: str, name: str, version: int, alias: str, agreement: float | None,
                  reviewed_accuracy: float | None, since: datetime | None) -> None:
    """Refuse with one line naming every guard that fails."""
    current = registry.resolve(db_url, name=name, alias=alias)
    if agreement is not None and current is None:
        raise ModelError(f"not promoted: {name} has no {alias!r} version to agree with; "
                         "promote without --require-agreement")
    base = current if current is not None else version
    comparison = compare_versions(db_url, name=name, a=base, b=version, since=since,
                                  trained_on=trained_corrections(db_url, name, {base, version}))
    failures = guard_failures(comparison, require_agreement=agreement,
                              require_reviewed_accuracy=reviewed_accuracy)
    if failures:
        raise ModelError("not promoted: " + "; ".join(failures))


@click.command()
@click.argument("name", callback=model_name)
@click.option("--alias", default=registry.DEFAULT_ALIAS, show_default=True)
def rollback(name: str, alias: str) -> None:
    """Move an alias back to the version it pointed to before the last promotion.

    \b
    Example:
      topicq rollback topics
    """
    db_url = _db_url()
    if not registry.list_versions(db_url, name=name):
        raise ModelError(f"model {name!r} is not registered (see `topicq models`)")
    current, target = registry.rollback(db_url, name=name, alias=alias)
    click.echo(f"{alias}: {name}:{current} -> {name}:{target}")


def _version_ref(value: str) -> tuple[str, int]:
    name, _, version = value.partition(":")
    if not name or not version.isdigit():
        raise click.BadParameter(f"expected NAME:VERSION like topics:3, got {value!r}")
    return name, int(version)


def trained_corrections(db_url: str, name: str, versions: set[int]) -> dict[int, set[str]]:
    """Per version, the corrected posts of `name` it was trained on (its training digests; a version
    without them, or a correction without text, counts as not trained on)."""
    from shared.improvement.corrections import corrections
    from shared.model.preprocess import preprocess
    from trainer.training_digests import seen_in_training

    corrected = [c for c in corrections(db_url, model_name=name) if c.text]
    found: dict[int, set[str]] = {}
    for version in versions:
        info = registry.get_version(db_url, name=name, version=version)
        seen = seen_in_training(Path(info.path), [preprocess(c.text or "") for c in corrected]) or []
        found[version] = {c.post_id for c, was in zip(corrected, seen, strict=False) if was}
    return found


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
