"""The trainer's verbs: `topicq train`, `evaluate`, `models`, `promote`, `rollback`.

Loaded lazily by cli/main.py; TensorFlow is imported only when a verb
trains or loads a model. Errors are shared.errors types, which the `topicq`
group prints as one line (exit status 2).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from cli.options import Timestamp, model_name, split_words
from cli.safe_output import printable
from shared.model import registry
from shared.settings import get_settings
from trainer.datasets import NEWSGROUPS

if TYPE_CHECKING:
    from trainer.finetune import FinetuneConfig
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


def _finetune_config(finetune: bool, steps: int | None) -> FinetuneConfig | None:
    if not finetune:
        return None
    from trainer.finetune import FinetuneConfig

    return FinetuneConfig(steps=steps) if steps else FinetuneConfig()


def _db_url() -> str:
    return get_settings().db_url  # the `topicq` group brought its schema up to date


def _echo_metrics(metrics: dict[str, Any], hits: int, misses: int) -> None:
    click.echo(f"test accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f} "
               f"on {metrics['n']} posts")
    for label, row in metrics["per_class"].items():
        click.echo(f"  {printable(label):<28} precision {row['precision']:.3f}  recall {row['recall']:.3f}"
                   f"  support {row['support']}")
    note = " (all from cache)" if misses == 0 else ""
    click.echo(f"embeddings: {hits} from cache, {misses} newly computed{note}")


@click.command()
@dataset_options
@click.option("--per-class", type=click.IntRange(min=1), help="Sample this many training posts per class.")
@click.option("--name", callback=model_name, help="Model name (default: MODEL_NAME, 'topics').")
@click.option("--promote", is_flag=True, help="Point the alias at the new version.")
@click.option("--alias", default=registry.DEFAULT_ALIAS, show_default=True, help="Alias --promote moves.")
@click.option("--hidden", type=click.IntRange(min=1), help="Hidden layer width (default 256).")
@click.option("--epochs", type=click.IntRange(min=1), help="Most epochs; early stopping ends sooner.")
@click.option("--with-corrections", is_flag=True,
              help="Add the model's corrected posts (`topicq review import`) to the training posts.")
@click.option("--finetune", is_flag=True,
              help="First tune the local encoder on the training posts (SetFit, batch-hard triplets); the "
                   "version keeps its own encoder, which workers on EMBEDDER=auto load.")
@click.option("--finetune-steps", type=click.IntRange(min=1), metavar="N",
              help="--finetune: batches of 32 posts (default 100; each takes ~4 s on 2 cores).")
def train(per_class: int | None, name: str | None, promote: bool, alias: str, hidden: int | None,
          epochs: int | None, with_corrections: bool, finetune: bool, finetune_steps: int | None,
          **data: Any) -> None:
    """Embed labelled posts, fit the classifier, evaluate, save and register a new version.

    20 Newsgroups trains on its train subset and tests on its test subset;
    a file is split, stratified by label. Embeddings are cached, so training
    again on the same posts embeds nothing new.

    \b
    Examples:
      topicq train --dataset 20newsgroups --groups sci --per-class 100 --promote
      topicq train --dataset posts.csv --text-column body --label-column topic --test-size 0.25
      topicq train --dataset 20newsgroups --groups sci --per-class 100 --with-corrections
      topicq train --dataset 20newsgroups --groups sci --per-class 100 --finetune --promote
    """
    from trainer.train import run_training

    if finetune_steps and not finetune:
        raise click.UsageError("--finetune-steps sets how long --finetune tunes: give --finetune too")
    result = run_training(per_class=per_class, name=name, promote=promote, alias=alias,
                          hidden=hidden, epochs=epochs, with_corrections=with_corrections,
                          finetune=_finetune_config(finetune, finetune_steps), **data)
    if result.finetune:
        f = result.finetune
        click.echo(f"tuned the encoder in {f['steps']} steps of {f['batch_size']} of {f['posts']} posts in "
                   f"{f['tune_seconds']:.0f} s, exported in {f['export_seconds']:.0f} s (mean cosine to "
                   f"the tuned torch model {f['mean_cosine_to_torch']:.4f}); embedder {f['embedder_id']}")
    fits = "; ".join(f"{fit.title}: {fit.epochs} epochs, kept {fit.best_epoch}" for fit in result.fits)
    taken = f" + {result.self_trained} self-training posts" if len(result.fits) > 1 else ""
    click.echo(f"trained {result.name} version {result.version} on {result.n_train} posts{taken} "
               f"({fits}) in {result.wall_seconds:.1f} s")
    if result.corrections:
        c = result.corrections
        left_out = sum(value for key, value in c.items() if key.startswith("left_out_"))
        click.echo(f"corrections: {c['added']} posts added, {c['relabelled']} relabelled, "
                   f"{left_out} left out (test posts, no text kept or unknown label) of {c['corrections']}")
    _echo_metrics(result.metrics, result.cache_hits, result.cache_misses)
    click.echo(f"model, plots and model card in {result.directory}:")
    for path in result.files:
        click.echo(f"  {path.name}")
    if result.promoted:
        click.echo(f"promoted: {result.promoted} -> {result.name}:{result.version}")


@click.command()
@click.argument("ref", metavar="NAME[:VERSION|:ALIAS]", callback=model_name)
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
    click.echo(f"{'NAME':<16} {'VERSION':>7}  {'ALIASES':<20} {'ACCURACY':>8} {'MACRO-F1':>8}  "
               f"{'CREATED':<16}  EMBEDDER")
    for v in versions:
        accuracy, macro_f1 = (v.metrics.get(key) for key in ("accuracy", "macro_f1"))
        click.echo(f"{printable(v.name):<16} {v.version:>7}  {','.join(v.aliases) or '-':<20} "
                   f"{_number(accuracy):>8} {_number(macro_f1):>8}  "
                   f"{v.created_at:%Y-%m-%d %H:%M}  {printable(v.embedder_id)}")
    _echo_workers(name)


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
    from shared.errors import ModelError

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
    from shared.errors import ModelError

    try:
        return registry.label_change(db_url, name=name, version=version, alias=alias)
    except ModelError as exc:
        click.echo(f"warning: labels not compared: {exc}", err=True)
        return None


def _check_guards(db_url: str, name: str, version: int, alias: str, agreement: float | None,
                  reviewed_accuracy: float | None, since: datetime | None) -> None:
    """Refuse with one line naming every guard that fails."""
    from cli.compare import trained_corrections
    from shared.errors import ModelError
    from shared.improvement.comparison import compare_versions, guard_failures

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
    from shared.errors import ModelError

    db_url = _db_url()
    if not registry.list_versions(db_url, name=name):
        raise ModelError(f"model {name!r} is not registered (see `topicq models`)")
    current, target = registry.rollback(db_url, name=name, alias=alias)
    click.echo(f"{alias}: {name}:{current} -> {name}:{target}")
