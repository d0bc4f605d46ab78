"""The Keras topic classifier, with a scikit-learn-like API.

Input(dim) -> Dense(hidden, relu) -> Dropout -> Dense(classes, softmax),
Adam + sparse categorical cross-entropy, EarlyStopping on validation loss
with the best weights restored. Softmax probabilities, not the tutorial's
sigmoid output with `from_logits=True`.
"""

from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


class TopicClassifier:
    """Hyperparameters in __init__; learned state (`classes_`, `model_`, `history_`) after fit."""

    def __init__(
        self,
        hidden: int = 256,
        dropout: float = 0.2,
        learning_rate: float = 1e-3,
        epochs: int = 100,
        batch_size: int = 32,
        validation_split: float = 0.15,
        patience: int = 8,
        seed: int = 0,
    ) -> None:
        self.hidden = hidden
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.validation_split = validation_split
        self.patience = patience
        self.seed = seed

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters, as scikit-learn's estimators report them (stored with each model)."""
        names = inspect.signature(type(self).__init__).parameters
        return {name: getattr(self, name) for name in names if name != "self"}

    def _build(self, dim: int, n_classes: int) -> Any:
        import keras

        keras.utils.set_random_seed(self.seed)
        model = keras.Sequential(
            [
                keras.Input(shape=(dim,), name="embedding"),
                keras.layers.Dense(self.hidden, activation="relu", name="hidden"),
                keras.layers.Dropout(self.dropout, name="dropout"),
                keras.layers.Dense(n_classes, activation="softmax", name="probabilities"),
            ]
        )
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=self.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=["accuracy"],
        )
        return model

    def fit(self, x: np.ndarray, labels: list[str] | np.ndarray, verbose: int = 0) -> TopicClassifier:
        import keras
        from sklearn.model_selection import train_test_split

        x = np.asarray(x, dtype=np.float32)
        self.classes_ = np.array(sorted(set(map(str, labels))))
        y = np.searchsorted(self.classes_, np.asarray(labels, dtype=str))
        # A stratified validation split (Keras' own split takes the last rows, unshuffled).
        x_train, x_val, y_train, y_val = train_test_split(
            x, y, test_size=self.validation_split, random_state=self.seed, stratify=y
        )
        self.model_ = self._build(x.shape[1], len(self.classes_))
        stop = keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=self.patience, restore_best_weights=True
        )
        history = self.model_.fit(
            x_train, y_train, validation_data=(x_val, y_val), epochs=self.epochs,
            batch_size=self.batch_size, callbacks=[stop], verbose=verbose,
        )
        self.history_ = {key: [float(v) for v in values] for key, values in history.history.items()}
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if len(x) == 0:
            return np.zeros((0, len(self.classes_)), dtype=np.float32)
        # Calling the model directly avoids predict()'s per-call overhead on small batches.
        return np.asarray(self.model_(x, training=False), dtype=np.float32)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(x).argmax(axis=1)]

    def save(self, path: Path) -> None:
        with warnings.catch_warnings():
            # Keras 3.15 under numpy 2.4 warns inside save() about its own np.array(copy=False) call.
            warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
            self.model_.save(path)

    @classmethod
    def load(cls, path: Path, classes: list[str]) -> TopicClassifier:
        import keras

        clf = cls()
        clf.model_ = keras.saving.load_model(path, safe_mode=True, compile=False)
        clf.classes_ = np.array(classes)
        return clf
