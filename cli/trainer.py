"""The trainer's verbs: `topicq train`, `evaluate`, `models`, `promote`, `rollback`.

Loaded lazily by cli/main.py; TensorFlow is imported only when a verb
trains or loads a model. Errors are shared.errors types, which the `topicq`
group prints as one line (exit status 2).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from cli.options import split_words
from shared import registry
from shared.settings import get_settings
from trainer.datasets import NEWSGROUPS

if TYPE_CHECKING:
    from trainer.train import EvalResult

EMBEDDERS = ("local-onnx", "local-onnx-fp32", "local", "gemini", "fake")


def dataset_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options naming a dataset, shared by `train` and `evaluate`."""
    options = [
        click.option("--dataset", default=NEWSGROUPS, show_default=True, metavar="20newsgroups|FILE",
                     help="20newsgroups, or a labelled .csv / .jsonl / .json file."),
        click.option("--groups", multiple=True, callback=split_words, metavar="WORD[,WORD]",
                     help="20 Newsgroups: every group whose name contains a word (sci = sci.*). "
                          "Default: all 20 (evaluate: the model's own)."),
        click.option("--test-per-class", type=click.IntRange(min=1),
                     help="Sample this many test posts per class."),
        click.option("--test-size", type=click.FloatRange(0, 1, min_open=True, max_open=True),
                     help="File: share held out for testing (train: default 0.2; "
                          "evaluate: default the whole file)."),
        click.option("--text-column", default="text", show_default=True, help="File: the text column."),
        click.option("--label-column", default="label", show_default=True, help="File: the label column."),
        click.option("--id-column", default="id", show_default=True,
                     help="File: the post id column (when absent, ids are hashes of the text)."),
        click.option("--data-home", type=click.Path(file_okay=False),
                     help="Folder with 20news-bydate_py3.pkz (default: $SCIKIT_LEARN_DATA)."),
        click.option("--seed", default=0, show_default=True, help="Seed for sampling, splits and training."),
        click.option("--embedder", type=click.Choice(EMBEDDERS),
                     help="Default: EMBEDDER (gemini when GEMINI_API_KEY is set, else local-onnx, "
                          "the int8 encoder; local = the torch one); "
                          "evaluate: the model's own."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _db_url() -> str:
    return get_settings().db_url  # the `topicq` group brought its schema up to date


def _echo_metrics(metrics: dict[str, Any], hits: int, misses: int) -> None:
    click.echo(f"test accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f} "
               f"on {metrics['n']} posts")
    for label, row in metrics["per_class"].items():
        click.echo(f"  {label:<28} precision {row['precision']:.3f}  recall {row['recall']:.3f}"
                   f"  support {row['support']}")
    note = " (all from cache)" if misses == 0 else ""
    click.echo(f"embeddings: {hits} from cache, {misses} newly computed{note}")


@click.command()
@dataset_options
@click.option("--per-class", type=click.IntRange(min=1), help="Sample this many training posts per class.")
@click.option("--name", help="Model name (default: MODEL_NAME, 'topics').")
@click.option("--promote", is_flag=True, help="Point the alias at the new version.")
@click.option("--alias", default=registry.DEFAULT_ALIAS, show_default=True, help="Alias --promote moves.")
@click.option("--hidden", type=click.IntRange(min=1), help="Hidden layer width (default 256).")
@click.option("--epochs", type=click.IntRange(min=1), help="Most epochs; early stopping ends sooner.")
def train(per_class: int | None, name: str | None, promote: bool, alias: str, hidden: int | None,
          epochs: int | None, **data: Any) -> None:
    """Embed labelled posts, fit the classifier, evaluate, save and register a new version.

    20 Newsgroups trains on its train subset and tests on its test subset;
    a file is split, stratified by label. Embeddings are cached, so training
    again on the same posts embeds nothing new.

    \b
    Examples:
      topicq train --dataset 20newsgroups --groups sci --per-class 100 --promote
      topicq train --dataset posts.csv --text-column body --label-column topic --test-size 0.25
    """
    from trainer.train import run_training

    result = run_training(per_class=per_class, name=name, promote=promote, alias=alias,
                          hidden=hidden, epochs=epochs, **data)
    fits = "; ".join(f"{fit.title}: {fit.epochs} epochs, kept {fit.best_epoch}" for fit in result.fits)
    taken = f" + {result.self_trained} self-training posts" if len(result.fits) > 1 else ""
    click.echo(f"trained {result.name} version {result.version} on {result.n_train} posts{taken} "
               f"({fits}) in {result.wall_seconds:.1f} s")
    _echo_metrics(result.metrics, result.cache_hits, result.cache_misses)
    click.echo(f"model, plots and model card in {result.directory}:")
    for path in result.files:
        click.echo(f"  {path.name}")
    if result.promoted:
        click.echo(f"promoted: {result.promoted} -> {result.name}:{result.version}")


@click.command()
@click.argument("ref", metavar="NAME[:VERSION|:ALIAS]")
@dataset_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def evaluate(ref: str, fmt: str, **data: Any) -> None:
    """Measure a registered model on a dataset (default: the 20 Newsgroups test posts of its groups).

    \b
    Examples:
      topicq evaluate topics                     # the production version, else the newest
      topicq evaluate topics:3 --dataset 20newsgroups --test-per-class 50
      topicq evaluate topics:staging --dataset held_out.jsonl --format json
    """
    from trainer.train import run_evaluation

    result = run_evaluation(ref, **data)
    if fmt == "json":
        click.echo(json.dumps({"name": result.name, "version": result.version, **result.metrics,
                               "cache_hits": result.cache_hits, "cache_misses": result.cache_misses,
                               "seen_in_training": result.seen_in_training,
                               "unseen_accuracy": result.unseen_accuracy}))
    else:
        click.echo(f"{result.name} version {result.version}")
        _echo_metrics(result.metrics, result.cache_hits, result.cache_misses)
    _warn_about_training_posts(result)


def _warn_about_training_posts(result: EvalResult) -> None:
    """On stderr (JSON output stays parseable): metrics on training posts overstate accuracy."""
    key, n = f"{result.name}:{result.version}", result.metrics["n"]
    if result.seen_in_training is None:
        click.echo(f"note: {key} kept no record of its training posts: cannot tell how many of these "
                   f"{n} it was trained on", err=True)
    elif result.seen_in_training:
        rest = (f"; accuracy on the other {n - result.seen_in_training}: {result.unseen_accuracy:.4f}"
                if result.unseen_accuracy is not None else "")
        click.echo(f"warning: {result.seen_in_training} of these {n} posts were training posts of {key}, "
                   f"so these figures overstate accuracy on new posts{rest}", err=True)


@click.command()
@click.option("--name", help="Only this model's versions.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def models(name: str | None, fmt: str) -> None:
    """List registered model versions with their aliases and test metrics.

    \b
    Examples:
      topicq models
      topicq models --name topics --format json
    """
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
    click.echo(f"{'NAME':<16} {'VERSION':>7}  {'ALIASES':<20} {'ACCURACY':>8} {'MACRO-F1':>8}  "
               f"{'CREATED':<16}  EMBEDDER")
    for v in versions:
        accuracy, macro_f1 = (v.metrics.get(key) for key in ("accuracy", "macro_f1"))
        click.echo(f"{v.name:<16} {v.version:>7}  {','.join(v.aliases) or '-':<20} "
                   f"{_number(accuracy):>8} {_number(macro_f1):>8}  "
                   f"{v.created_at:%Y-%m-%d %H:%M}  {v.embedder_id}")
    _echo_workers(name)


def _echo_workers(name: str | None) -> None:
    """What the workers serve: a version they refused is visible here, not only in their logs."""
    from shared.serving_status import worker_states

    for state in worker_states(get_settings().redis_url, model_name=name):
        click.echo(state.describe())


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


@click.command()
@click.argument("name")
@click.argument("version", type=int)
@click.option("--alias", default=registry.DEFAULT_ALIAS, show_default=True)
@click.option("--force", is_flag=True,
              help="Promote a version of another embedder than the current one (restart the workers "
                   "with its EMBEDDER).")
def promote(name: str, version: int, alias: str, force: bool) -> None:
    """Point an alias (default: production) at a version; workers switch to it within seconds.

    \b
    Example:
      topicq promote topics 3
      topicq promote topics 4 --alias staging
    """
    from shared.errors import ModelError

    db_url = _db_url()
    change = registry.embedder_change(db_url, name=name, version=version, alias=alias)
    if change and not force:
        raise ModelError(f"not promoted: {change}; train it with the same --embedder, or --force "
                         "and restart the workers with its EMBEDDER")
    previous = registry.promote(db_url, name=name, version=version, alias=alias)
    before = f"{name}:{previous}" if previous is not None else "(unset)"
    click.echo(f"{alias}: {before} -> {name}:{version}")


@click.command()
@click.argument("name")
@click.option("--alias", default=registry.DEFAULT_ALIAS, show_default=True)
def rollback(name: str, alias: str) -> None:
    """Move an alias back to the version it pointed to before the last promotion.

    \b
    Example:
      topicq rollback topics
    """
    current, target = registry.rollback(_db_url(), name=name, alias=alias)
    click.echo(f"{alias}: {name}:{current} -> {name}:{target}")
