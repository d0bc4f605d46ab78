"""The training verbs: `topicq train` (a new version) and `topicq evaluate` (a registered one on a dataset).

TensorFlow is imported only when a verb trains or loads a model. Errors are shared.errors types,
which the `topicq` group prints as one line (exit status 2).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from cli.options import model_name, split_words
from cli.safe_output import printable
from shared.model import registry
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


def _echo_metrics(metrics: dict[str, Any], hits: int, misses: int) -> None:
    click.echo(f"test accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f} "
               f"on {metrics['n']} posts")
    for label, row in metrics["per_class"].items():
        click.echo(f"  {printable(label):<28} precision {row['precision']:.3f}  recall {row['recall']:.3f}"
                   f"  support {row['support']}")
    baseline = metrics.get("baseline") or {}
    if baseline.get("accuracy") is not None:
        better = baseline["accuracy"] > metrics["accuracy"]
        worse = "  (the words alone do better on this data)" if better else ""
        click.echo(f"words-only baseline ({baseline['name']}): accuracy {baseline['accuracy']:.4f}{worse}")
    for row in metrics.get("review") or []:
        caught = "" if row["mistakes_caught"] is None else \
            f", holding {row['mistakes_caught']:.0%} of the {row['mistakes']} mistakes"
        click.echo(f"review at REVIEW_RATE {row['rate']:g}: {row['flagged']:.1%} of the test posts "
                   f"flagged{caught}")
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
