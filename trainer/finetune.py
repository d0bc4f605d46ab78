"""`topicq train --finetune`: the local encoder tuned on the version's labelled posts (SetFit).

SetFit's first stage tunes the sentence encoder contrastively: pairs of
training posts with the same label are pulled together, pairs with different
labels pushed apart (cosine-similarity loss). Then, as for the packaged
encoder (shared/embedders/onnx_export.py), the tuned weights are exported to
ONNX, quantised to int8 and checked faithful, here to the tuned torch model.
The file goes into the version (shared/embedders/tuned.py says how workers
find it); topicq's own classifier, not SetFit's head, is fitted on its vectors.

The tuning runs on the CPU, so its size is set by steps (batches of pairs)
and a token limit shorter than serving's: each step costs a forward and a
backward pass of 2 x `batch_size` posts.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shared.embedders.onnx import OnnxEmbedder
from shared.embedders.tuned import ENCODER_FILE, tuned_embedder
from shared.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

TUNABLE = ("local-onnx",)  # the embedder kinds --finetune can start from
# The tuned file's check: int8 of the packaged weights measures 0.990-0.992 on the probe texts, a tuned
# one a little less (0.985-0.99 seen); a wrong export (other weights, a broken graph) measures < 0.9.
MIN_TUNED_COSINE = 0.98


@dataclass(frozen=True)
class FinetuneConfig:
    """How much tuning a run does: on 2 cores a step takes ~17 s, so the default ~29 minutes."""

    steps: int = 100  # batches of pairs: steps x batch_size pairs in all
    batch_size: int = 16
    max_tokens: int = 128  # posts are cut here while tuning; serving keeps LOCAL_MODEL_MAX_TOKENS
    learning_rate: float = 2e-5


@dataclass
class TunedEncoder:
    path: Path  # the int8 ONNX file
    embedder: OnnxEmbedder  # on that file, its id tagged with the file's checksum
    record: dict[str, Any]  # what model.json keeps of the tuning


def check_tunable(embedder: str | None) -> None:
    """--finetune starts from the local encoder; other embedders' vectors cannot be tuned here."""
    if embedder is not None and embedder not in TUNABLE:
        raise ConfigError(f"--finetune tunes the local encoder (embedder local-onnx), not {embedder!r}")


def tune_encoder(texts: list[str], labels: list[str], workdir: Path, config: FinetuneConfig, *,
                 serving_tokens: int, seed: int = 0, progress: bool = True) -> TunedEncoder:
    """Tune the packaged encoder on (preprocessed) `texts`, export it as int8 ONNX into `workdir`,
    check it and return its embedder."""
    if len(set(labels)) < 2:
        raise ConfigError("--finetune needs posts of at least two labels to form pairs")
    started = time.perf_counter()
    tuned_dir = workdir / "tuned-model"
    _tune(texts, labels, tuned_dir, config, seed=seed, progress=progress)
    tuned_seconds = time.perf_counter() - started
    from shared.embedders.onnx_export import PROBE_TEXTS, build

    out = workdir / ENCODER_FILE
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))  # the quantiser logs a line per tensor at INFO
    try:  # checked on the probe texts and some training posts, at serving's token limit
        cosine = build(out, quantization="int8", weights=tuned_dir, reference=tuned_dir,
                       texts=PROBE_TEXTS + texts[:20], min_cosine=MIN_TUNED_COSINE)
    except ModelError as exc:
        raise ModelError(f"the tuned encoder failed its check: {exc}") from None
    finally:
        root.setLevel(level)
    embedder = tuned_embedder(out, max_tokens=serving_tokens)
    record = {**asdict(config), "pairs": config.steps * config.batch_size, "posts": len(texts),
              "tune_seconds": round(tuned_seconds, 1),
              "export_seconds": round(time.perf_counter() - started - tuned_seconds, 1),
              "mean_cosine_to_torch": round(cosine, 4), "embedder_id": embedder.id}
    log.info("tuned encoder: %s", record)
    return TunedEncoder(out, embedder, record)


def _tune(texts: list[str], labels: list[str], out: Path, config: FinetuneConfig, *, seed: int,
          progress: bool) -> None:
    """SetFit's embedding stage on the packaged weights; the tuned sentence-transformers model to `out`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers
    from datasets import Dataset as HFDataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from shared.embedders.onnx_export import source_dir

    transformers.logging.set_verbosity_error()
    logging.getLogger("setfit").setLevel(logging.WARNING)
    model = SetFitModel.from_pretrained(str(source_dir()), labels=sorted(set(labels)))
    args = TrainingArguments(output_dir=str(out.parent / "checkpoints"), batch_size=config.batch_size,
                             num_epochs=1, max_steps=config.steps, max_length=config.max_tokens,
                             body_learning_rate=config.learning_rate, seed=seed, report_to="none",
                             save_strategy="no", show_progress_bar=progress, logging_strategy="no")
    trainer = Trainer(model=model, args=args,
                      train_dataset=HFDataset.from_dict({"text": texts, "label": labels}))
    trainer.train_embeddings(texts, labels, args=args)
    model.model_body.save(str(out))
