"""The model store: one directory per version, saved and loaded as mirror images.

    MODEL_DIR/<name>/<version>/model.keras   the Keras model
    MODEL_DIR/<name>/<version>/forward.npz   its serving weights: workers classify without TensorFlow
    MODEL_DIR/<name>/<version>/model.json    labels, embedder, preprocessing, inputs, data, metrics
    MODEL_DIR/<name>/<version>/lexicon.json  only when the model reads words (inputs has "text")
    MODEL_DIR/<name>/<version>/domain.json   class centroids and radii: the out-of-domain reference
    MODEL_DIR/<name>/<version>/review.npz    the review thresholds' distance and held-out scores
    MODEL_DIR/<name>/<version>/encoder.onnx  the ONNX encoder of its vectors: its own tuned one
                                             (--finetune) or a copy of the packaged one
    MODEL_DIR/<name>/<version>/tokenizer.json  that encoder's tokenizer
    MODEL_DIR/<name>/<version>/*.png, MODEL_CARD.md

With encoder.onnx and tokenizer.json a worker serves the version without torch
or the packaged weights (shared/model/embedders/encoder_files.py). The checksum
covers model.keras, model.json, lexicon.json, domain.json, encoder.onnx,
forward.npz, tokenizer.json and review.npz (each when present); the registry records it and
`TopicModel.load` refuses a directory whose files changed since. Versions saved
before a file existed keep their checksum: without domain.json they flag nothing
out of domain, without review.npz they are flagged by the fixed REVIEW_BELOW and
REVIEW_MARGIN rules, without forward.npz they are served by Keras, without
encoder.onnx by the encoder cache (a full install).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import ModelError
from shared.model.classifier import TopicClassifier
from shared.model.dense_forward import FORWARD_FILE
from shared.model.embedders.encoder_files import ENCODER_FILE, TOKENIZER_FILE
from shared.model.lexical import LEXICON_FILE
from shared.model.out_of_domain import DOMAIN_FILE, DomainReference, load_reference, save_reference
from shared.model.review_calibration import REVIEW_FILE, ReviewCalibration

MODEL_FILE = "model.keras"
META_FILE = "model.json"
EMBEDDING_INPUT = "embedding"  # the post's vector from the model's embedder
TEXT_INPUT = "text"  # the preprocessed text itself (the lexical view)


@dataclass
class ModelMeta:
    name: str
    version: int
    labels: list[str]
    embedder_id: str
    embedder_dim: int
    preprocess_version: int
    data_fingerprint: str
    created_at: str
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)  # fits, epochs, self-training posts, seconds
    # What the classifier reads at serving time; model.json files without it predate the text input.
    inputs: list[str] = field(default_factory=lambda: [EMBEDDING_INPUT])


def checksum(directory: Path) -> str:
    """sha256 over model.keras, model.json, then lexicon.json, domain.json, encoder.onnx, forward.npz,
    tokenizer.json, review.npz (each when there)."""
    digest = hashlib.sha256()
    optional = tuple(name for name in (LEXICON_FILE, DOMAIN_FILE, ENCODER_FILE, FORWARD_FILE, TOKENIZER_FILE,
                                       REVIEW_FILE)
                     if (directory / name).exists())
    for name in (MODEL_FILE, META_FILE, *optional):
        path = directory / name
        if not path.is_file():
            raise ModelError(f"{path} is missing")
        digest.update(name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def read_meta(directory: Path) -> ModelMeta:
    try:
        return ModelMeta(**json.loads((directory / META_FILE).read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise ModelError(f"cannot read {directory / META_FILE}: {exc}") from None


@dataclass
class TopicModel:
    """One version as one object: the fitted classifier and what it was made of.

    `save(dir)` and `load(dir)` mirror each other: everything the classifier needs at serving
    time (the Keras file, the labels, the lexicon, the hyperparameters) goes into the directory
    and comes back out of it, with the checksum the registry records.
    """

    meta: ModelMeta
    classifier: TopicClassifier
    sha256: str = ""
    domain: DomainReference | None = None  # None: saved without one, no out-of-domain flag
    encoder: Path | None = None  # the version's encoder file (copied in by save), if any
    tokenizer: Path | None = None  # that encoder's tokenizer.json (copied in by save), if any
    review: ReviewCalibration | None = None  # None: saved without one, flagged by fixed scores

    @property
    def key(self) -> str:
        return f"{self.meta.name}:{self.meta.version}"

    def save(self, directory: Path) -> str:
        """Write the version into `directory`; returns (and keeps) the checksum to register."""
        directory.mkdir(parents=True, exist_ok=True)
        self.classifier.save(directory / MODEL_FILE)
        self.classifier.save_forward(directory / FORWARD_FILE)
        if self.encoder is not None and self.encoder != directory / ENCODER_FILE:
            shutil.copyfile(self.encoder, directory / ENCODER_FILE)
            self.encoder = directory / ENCODER_FILE
        if self.tokenizer is not None and self.tokenizer != directory / TOKENIZER_FILE:
            shutil.copyfile(self.tokenizer, directory / TOKENIZER_FILE)
            self.tokenizer = directory / TOKENIZER_FILE
        if self.domain is not None:
            save_reference(directory, self.domain)
        if self.review is not None:
            self.review.save(directory / REVIEW_FILE)
        reads_text = self.classifier.save_lexicon(directory / LEXICON_FILE)
        self.meta.inputs = [EMBEDDING_INPUT, TEXT_INPUT] if reads_text else [EMBEDDING_INPUT]
        self.meta.labels = [str(label) for label in self.classifier.classes_]
        self.meta.hyperparameters = {**self.meta.hyperparameters, **self.classifier.get_params()}
        (directory / META_FILE).write_text(json.dumps(asdict(self.meta), indent=2, sort_keys=True) + "\n")
        self.sha256 = checksum(directory)
        return self.sha256

    @classmethod
    def load(cls, directory: Path, expected_sha256: str) -> TopicModel:
        """A saved version, refused when its files differ from what was registered."""
        actual = checksum(directory)
        if actual != expected_sha256:
            raise ModelError(
                f"model files in {directory} changed since registration "
                f"(sha256 {actual[:12]}… != registered {expected_sha256[:12]}…); refusing to load"
            )
        meta = read_meta(directory)
        unknown = sorted(set(meta.inputs) - {EMBEDDING_INPUT, TEXT_INPUT})
        if unknown:
            raise ModelError(f"{directory} needs inputs {unknown} this version of topicq cannot give")
        lexicon = directory / LEXICON_FILE if TEXT_INPUT in meta.inputs else None
        if lexicon is not None and not lexicon.is_file():
            raise ModelError(f"{lexicon} is missing: {directory} reads the posts' words")
        try:
            forward = directory / FORWARD_FILE
            classifier = TopicClassifier.load(directory / MODEL_FILE, meta.labels, lexicon=lexicon,
                                              params=meta.hyperparameters,
                                              forward=forward if forward.is_file() else None)
        except Exception as exc:  # Keras raises many types for a bad file
            raise ModelError(f"cannot load {directory / MODEL_FILE}: {exc}") from None
        try:
            domain = load_reference(directory)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"cannot read {directory / DOMAIN_FILE}: {exc}") from None
        review = None
        if (directory / REVIEW_FILE).is_file():
            try:
                review = ReviewCalibration.load(directory / REVIEW_FILE)
            except (OSError, ValueError, KeyError) as exc:
                raise ModelError(f"cannot read {directory / REVIEW_FILE}: {exc}") from None
        encoder, tokenizer = directory / ENCODER_FILE, directory / TOKENIZER_FILE
        return cls(meta=meta, classifier=classifier, sha256=actual, domain=domain, review=review,
                   encoder=encoder if encoder.is_file() else None,
                   tokenizer=tokenizer if tokenizer.is_file() else None)

    def check_embedder(self, embedder_id: str) -> None:
        """Refuse an embedder other than the one the version was trained with: its vectors mean
        nothing to the classifier."""
        if self.meta.embedder_id != embedder_id:
            raise ModelError(
                f"model {self.key} was trained with embedder {self.meta.embedder_id!r}, not "
                f"{embedder_id!r}: their vectors are not comparable. Set EMBEDDER to match the "
                "model, or train a model with this embedder."
            )
