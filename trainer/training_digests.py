"""Which posts a model version was trained on, kept as short digests of their texts.

`topicq evaluate` counts how many of the posts it is given the version saw in
training (labelled posts and self-training posts): metrics on those overstate
accuracy on new posts. The data fingerprint in model.json covers the whole
training set at once, so it cannot say which single posts overlap. A digest is
the first 16 hex digits (64 bits) of the sha256 of the preprocessed text: about
17 bytes a post, and no text is kept.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

TRAINING_DIGESTS_FILE = "training_posts.sha256"
DIGEST_CHARS = 16


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:DIGEST_CHARS]


def write_training_digests(directory: Path, texts: list[str]) -> Path:
    """One digest a line, sorted and without repeats (the order of training posts is not kept)."""
    path = directory / TRAINING_DIGESTS_FILE
    path.write_text("".join(f"{digest}\n" for digest in sorted({text_digest(t) for t in texts})))
    return path


def seen_in_training(directory: Path, texts: list[str]) -> list[bool] | None:
    """Which of `texts` the version in `directory` trained on; None when it kept no digests."""
    path = directory / TRAINING_DIGESTS_FILE
    if not path.is_file():  # a version trained before digests were kept
        return None
    trained = set(path.read_text().split())
    return [text_digest(text) in trained for text in texts]
