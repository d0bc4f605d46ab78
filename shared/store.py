"""The model store: one directory per version, saved and loaded as mirror images.

    MODEL_DIR/<name>/<version>/model.keras   the Keras model
    MODEL_DIR/<name>/<version>/model.json    labels, embedder, preprocessing, data, metrics
    MODEL_DIR/<name>/<version>/*.png, MODEL_CARD.md

The checksum covers model.keras and model.json; the registry records it and
`load_model_dir` refuses a directory whose files changed since.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shared.classifier import TopicClassifier
from shared.errors import ModelError

MODEL_FILE = "model.keras"
META_FILE = "model.json"


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


@dataclass
class LoadedModel:
    meta: ModelMeta
    classifier: TopicClassifier
    sha256: str

    @property
    def key(self) -> str:
        return f"{self.meta.name}:{self.meta.version}"


def checksum(directory: Path) -> str:
    """sha256 over model.keras then model.json."""
    digest = hashlib.sha256()
    for name in (MODEL_FILE, META_FILE):
        path = directory / name
        if not path.is_file():
            raise ModelError(f"{path} is missing")
        digest.update(name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def save_model_dir(directory: Path, classifier: TopicClassifier, meta: ModelMeta) -> str:
    """Write the model and its metadata; returns the checksum to register."""
    directory.mkdir(parents=True, exist_ok=True)
    classifier.save(directory / MODEL_FILE)
    (directory / META_FILE).write_text(json.dumps(asdict(meta), indent=2, sort_keys=True) + "\n")
    return checksum(directory)


def read_meta(directory: Path) -> ModelMeta:
    try:
        return ModelMeta(**json.loads((directory / META_FILE).read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise ModelError(f"cannot read {directory / META_FILE}: {exc}") from None


def load_model_dir(directory: Path, expected_sha256: str) -> LoadedModel:
    """Load a version, refusing it when its files differ from what was registered."""
    actual = checksum(directory)
    if actual != expected_sha256:
        raise ModelError(
            f"model files in {directory} changed since registration "
            f"(sha256 {actual[:12]}… != registered {expected_sha256[:12]}…); refusing to load"
        )
    meta = read_meta(directory)
    try:
        classifier = TopicClassifier.load(directory / MODEL_FILE, meta.labels)
    except Exception as exc:  # Keras raises many types for a bad file
        raise ModelError(f"cannot load {directory / MODEL_FILE}: {exc}") from None
    return LoadedModel(meta=meta, classifier=classifier, sha256=actual)
