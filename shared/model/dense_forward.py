"""The classifier's serving forward pass in numpy, from its weights: no TensorFlow in a worker.

The Keras model (shared/model/classifier.py) is a few dense layers: the embedding
through `hidden` (relu), then either `probabilities` (softmax; embedding
only) or `embedding_scores` beside the words' `word_scores`, joined by one
softmax of their sum ("sum"). A "mean" or "product" join adds the words branch fitted beside
Keras (`words/kernel`, `words/bias`, `words/weight`): "mean" serves
(1 - weight) x the embedding branch's probabilities + weight x softmax(words . kernel + bias);
"product" serves softmax((1 - weight) x log(the embedding branch's) + weight x (words . kernel + bias)).
(Versions saved before it kept Keras-trained `embedding_scores` and `word_scores`
and served the plain mean of their softmaxes.) Serving it
needs only those weights: they are saved as FORWARD_FILE beside model.keras
(part of the version's checksum), and a worker computes the same
probabilities (to float32 rounding) without importing TensorFlow, which was
most of a worker's memory and start-up time. The words arrive as a sparse
TF-IDF matrix and stay sparse. Dropout is off at serving, as in Keras.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

FORWARD_FILE = "forward.npz"
JOINS = ("none", "mean", "product", "sum")
_TINY = np.finfo(np.float32).tiny  # log(0) would make an underflowed probability veto its class


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def mean_join(by_embedding: np.ndarray, word_scores: np.ndarray, weight: float) -> np.ndarray:
    """The "mean" join: the embedding branch's probabilities mixed with the softmax of the word scores."""
    return np.asarray((1.0 - weight) * by_embedding + weight * softmax(word_scores), dtype=np.float32)


def product_join(by_embedding: np.ndarray, word_scores: np.ndarray, weight: float) -> np.ndarray:
    """The "product" join: softmax of (1 - weight) x the log of the embedding branch's probabilities +
    weight x the word scores, i.e. the branches' probabilities multiplied at those powers (a log-linear
    pool). Where the branches disagree, the surer one decides, not the mean of their guesses."""
    logs = np.log(np.maximum(by_embedding, _TINY))
    return np.asarray(softmax((1.0 - weight) * logs + weight * word_scores), dtype=np.float32)


# The joins whose words branch is fitted beside Keras, not in it, and how each serves.
JOINED = {"mean": mean_join, "product": product_join}
SEPARATE_WORDS = tuple(JOINED)


def _layer(model: Any, name: str) -> list[np.ndarray]:
    return [np.asarray(w, dtype=np.float32) for w in model.get_layer(name).get_weights()]


def save_forward(model: Any, join: str, path: Path, words: dict[str, np.ndarray] | None = None) -> None:
    """The weights the forward pass needs, from a fitted Keras model and, for a join in SEPARATE_WORDS,
    its words branch (`kernel`, `bias`, `weight`; see the module docstring)."""
    separate = join == "none" or join in SEPARATE_WORDS  # the words, if any, are not Keras layers
    names = ["hidden"] + (["probabilities"] if separate else ["embedding_scores", "word_scores"])
    arrays: dict[str, np.ndarray] = {"join": np.array(join)}
    for name in names:
        weights = _layer(model, name)
        arrays[f"{name}/kernel"] = weights[0]
        if len(weights) > 1:
            arrays[f"{name}/bias"] = weights[1]
    for name, value in (words or {}).items():
        arrays[f"words/{name}"] = np.asarray(value, dtype=np.float32)
    with open(path, "wb") as file:
        np.savez(file, **arrays)  # type: ignore[arg-type]


class DenseForward:
    """Called like the Keras serving model: `forward(inputs, training=False)` -> probabilities."""

    def __init__(self, weights: dict[str, np.ndarray], join: str) -> None:
        if join not in JOINS:
            raise ValueError(f"unknown join {join!r} in {FORWARD_FILE}")
        self.weights, self.join = weights, join

    @classmethod
    def load(cls, path: Path) -> DenseForward:
        with np.load(path, allow_pickle=False) as data:
            weights = {key: np.asarray(data[key]) for key in data.files if key != "join"}
            return cls(weights, str(data["join"]))

    def _dense(self, name: str, x: Any) -> np.ndarray:
        out = np.asarray(x @ self.weights[f"{name}/kernel"], dtype=np.float32)
        bias = self.weights.get(f"{name}/bias")
        return out if bias is None else out + bias

    def __call__(self, inputs: Any, training: bool = False) -> np.ndarray:
        embedding, words = (inputs[0], inputs[1]) if isinstance(inputs, list | tuple) else (inputs, None)
        hidden = np.maximum(self._dense("hidden", np.asarray(embedding, dtype=np.float32)), 0.0)
        if self.join == "none":
            return softmax(self._dense("probabilities", hidden))
        if words is None:
            raise ValueError("this classifier reads the posts' words: pass their TF-IDF rows")
        if "words/kernel" in self.weights:
            return JOINED[self.join](softmax(self._dense("probabilities", hidden)),
                                     self._dense("words", words), float(self.weights["words/weight"]))
        by_embedding, by_words = self._dense("embedding_scores", hidden), self._dense("word_scores", words)
        if self.join == "sum":
            return softmax(by_embedding + by_words)
        return (softmax(by_embedding) + softmax(by_words)) / 2
