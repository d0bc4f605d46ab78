"""`topicq train --finetune`: the local encoder tuned on the version's labelled posts (SetFit).

SetFit's first stage tunes the sentence encoder contrastively, here with a
batch-hard triplet loss: each step embeds a batch of training posts (grouped
so each label has several) and, for every post, pulls its farthest same-label
post closer and pushes its nearest other-label post away, by a cosine margin.
Each post is embedded once per step, and every pair in the batch counts; on
(b) it beat SetFit's default (cosine loss on sampled pairs, which scored below
the frozen encoder). Then, as for the packaged encoder
(shared/model/embedders/onnx_export.py), the tuned weights are exported to ONNX,
quantised to int8 and checked faithful, here to the tuned torch model. The
file goes into the version (shared/model/embedders/tuned.py says how workers find
it); topicq's own classifier, not SetFit's head, is fitted on its vectors.

The tuning and the export run in a child process (`python -m trainer.finetune
WORKDIR`): torch and its memory stay out of the trainer. The tuning runs on
the CPU, so its size is set by steps and a token limit shorter than
serving's: each step costs a forward and a backward pass of `batch_size`
posts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shared.errors import ConfigError, ModelError, TopicqError
from shared.model.embedders import Embedder, kind_for_id
from shared.model.embedders.onnx import OnnxEmbedder
from shared.model.embedders.tuned import ENCODER_FILE, tuned_embedder

log = logging.getLogger(__name__)

TUNABLE = ("local-onnx",)  # the embedder kinds --finetune can start from
# The tuned file's check: int8 of the packaged weights measures 0.990-0.992 on the probe texts, a tuned
# one a little less (0.985-0.99 seen); a wrong export (other weights, a broken graph) measures < 0.9.
MIN_TUNED_COSINE = 0.98
LOSS = "batch-hard triplet, cosine distance, margin 0.25"  # SetFit's BatchHardTripletLoss defaults
REQUEST_FILE, REPORT_FILE = "request.json", "tuning.json"  # between the trainer and the tuning process


@dataclass(frozen=True)
class FinetuneConfig:
    """How much tuning a run does: on 2 quiet cores a step takes ~4 s, so the default ~7 minutes."""

    steps: int = 100  # batches of posts: on (b)'s 400 posts, 8 passes
    batch_size: int = 32
    max_tokens: int = 128  # posts are cut here while tuning; serving keeps LOCAL_MODEL_MAX_TOKENS
    learning_rate: float = 2e-5


@dataclass
class TunedEncoder:
    path: Path  # the int8 ONNX file
    embedder: OnnxEmbedder  # on that file, its id tagged with the file's checksum
    record: dict[str, Any]  # what model.json keeps of the tuning


def check_tunable(embedder: str | Embedder | None) -> None:
    """--finetune starts from the local encoder (a kind name or an embedder object); other embedders'
    vectors cannot be tuned here."""
    if isinstance(embedder, Embedder):
        kind = kind_for_id(embedder.id)
        embedder = kind[0] if kind else embedder.id
    if embedder is not None and embedder not in TUNABLE:
        raise ConfigError(f"--finetune tunes the local encoder (embedder local-onnx), not {embedder!r}")


def tune_encoder(texts: list[str], labels: list[str], workdir: Path, config: FinetuneConfig, *,
                 serving_tokens: int, seed: int = 0, progress: bool = True) -> TunedEncoder:
    """Tune the packaged encoder on (preprocessed) `texts`, export it as int8 ONNX into `workdir`,
    check it and return its embedder. The work runs in a child process (`main` below): torch and
    its memory stay out of the trainer, and the exporter's logging out of its log."""
    counts = Counter(labels)
    if sum(count >= 2 for count in counts.values()) < 2:  # a triplet needs a post of its own label
        raise ConfigError("--finetune needs at least two labels with two training posts or more each "
                          f"(labels and posts: {dict(counts)})")
    if config.batch_size < 4 or config.batch_size % 2:  # posts come in same-label twos
        raise ConfigError(f"--finetune's batch size must be even and at least 4, not {config.batch_size}")
    request = {"texts": texts, "labels": labels, "config": asdict(config), "seed": seed,
               "serving_tokens": serving_tokens}
    (workdir / REQUEST_FILE).write_text(json.dumps(request))
    command = [sys.executable, "-m", "trainer.finetune", str(workdir)] + ([] if progress else ["--quiet"])
    done = subprocess.run(command, check=False)  # stderr shared: the tuning's progress bar shows
    report_path = workdir / REPORT_FILE
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    if "error" in report or done.returncode != 0:
        raise ModelError(report.get("error") or f"the tuning process failed (exit {done.returncode}); "
                         "its output is above")
    out = workdir / ENCODER_FILE
    embedder = tuned_embedder(out, max_tokens=serving_tokens)
    record = {**asdict(config), "loss": LOSS, "posts": len(texts),
              **report, "embedder_id": embedder.id}
    log.info("tuned encoder: %s", record)
    return TunedEncoder(out, embedder, record)


def _tune_and_export(workdir: Path, *, progress: bool) -> dict[str, Any]:
    """The child's work: tune on the request's posts, then export, quantise and check the encoder
    (on the probe texts and some training posts, at serving's token limit)."""
    request = json.loads((workdir / REQUEST_FILE).read_text())
    texts, config = request["texts"], FinetuneConfig(**request["config"])
    started = time.perf_counter()
    tuned_dir = workdir / "tuned-model"
    _tune(texts, request["labels"], tuned_dir, config, seed=request["seed"], progress=progress)
    tuned_seconds = time.perf_counter() - started
    from shared.model.embedders.onnx_export import PROBE_TEXTS, build

    try:
        cosine = build(workdir / ENCODER_FILE, quantization="int8", weights=tuned_dir, reference=tuned_dir,
                       texts=PROBE_TEXTS + texts[:20], min_cosine=MIN_TUNED_COSINE,
                       max_tokens=request["serving_tokens"])
    except ModelError as exc:
        raise ModelError(f"the tuned encoder failed its check: {exc}") from None
    return {"tune_seconds": round(tuned_seconds, 1),
            "export_seconds": round(time.perf_counter() - started - tuned_seconds, 1),
            "mean_cosine_to_torch": round(cosine, 4)}


def _tune(texts: list[str], labels: list[str], out: Path, config: FinetuneConfig, *, seed: int,
          progress: bool) -> None:
    """SetFit's embedding stage on the packaged weights; the tuned sentence-transformers model to `out`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers
    from datasets import Dataset as HFDataset
    from sentence_transformers.losses import BatchHardTripletLoss
    from setfit import SetFitModel, Trainer, TrainingArguments

    from shared.model.embedders.onnx_export import source_dir

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()  # weight loading and saving; the tuning keeps its own
    logging.getLogger("setfit").setLevel(logging.WARNING)
    names = sorted(set(labels))
    targets = [names.index(label) for label in labels]  # the triplet loss compares label numbers
    model = SetFitModel.from_pretrained(str(source_dir()), labels=names)
    model.model_body.max_seq_length = config.max_tokens  # TrainingArguments.max_length is the head's only
    args = TrainingArguments(output_dir=str(out.parent / "checkpoints"), batch_size=config.batch_size,
                             max_steps=config.steps, loss=BatchHardTripletLoss,
                             body_learning_rate=config.learning_rate, seed=seed, report_to="none",
                             save_strategy="no", show_progress_bar=progress, logging_strategy="no")
    trainer = Trainer(model=model, args=args,
                      train_dataset=HFDataset.from_dict({"text": texts, "label": targets}))
    trainer.train_embeddings(texts, targets, args=args)
    model.model_body.save(str(out))


def main(argv: list[str] | None = None) -> int:
    """`python -m trainer.finetune WORKDIR [--quiet]`: WORKDIR/request.json in, the encoder and
    WORKDIR/tuning.json (its figures, or {"error": ...}) out."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    # This process only tunes and exports: the libraries' notices (the quantiser's advice, deprecations,
    # weight-loading bars) would bury the tuning's own progress bar.
    logging.basicConfig(level=logging.ERROR)
    warnings.simplefilter("ignore")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        report = _tune_and_export(args.workdir, progress=not args.quiet)
    except TopicqError as exc:
        report = {"error": str(exc)}
    (args.workdir / REPORT_FILE).write_text(json.dumps(report))
    return 2 if "error" in report else 0


if __name__ == "__main__":
    sys.exit(main())
