"""The Keras topic classifier, with a scikit-learn-like API.

Input(dim) -> Dense(hidden, relu) -> Dropout -> Dense(classes, softmax),
Adam + sparse categorical cross-entropy, EarlyStopping on the validation loss
of what the model serves (gains under `min_delta` do not count), with the best
weights restored. Softmax probabilities, not the tutorial's sigmoid output
with `from_logits=True`.

With `lexical` > 0 the model also reads the post's words (wide and deep):
a TF-IDF vector of at most `lexical` terms (shared.model.lexical, fitted on the
training texts; words, and with `lexical_ngrams` 2 also pairs of adjacent
words) feeds a linear layer, kept sparse at serving time. `lexical_join` says
how the branches meet: "mean" (what `topicq train` builds) gives each
branch its own softmax and serves the mean of their probabilities; "sum" adds
the word scores to the embedding branch's before one softmax. Such a model needs the preprocessed
texts beside the embeddings, at training and at serving time (`uses_text`).
`class_weight` weights each post by the inverse frequency of its class, in
either model.
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

from shared.model.dense_forward import DenseForward  # noqa: E402

VALIDATION_SPLIT = 0.15  # share of the training posts held out to stop early
SERVED_VAL_LOSS = "val_served_loss"  # what a two-branch fit's early stopping watches


def _tensor(x: Any) -> Any:
    """A TensorFlow tensor of a dense array or a SciPy sparse matrix (kept sparse)."""
    import tensorflow as tf

    if not hasattr(x, "tocoo"):
        return tf.convert_to_tensor(x)
    coo = x.tocoo()
    indices = np.stack([coo.row, coo.col], axis=1).astype(np.int64)
    return tf.sparse.reorder(tf.SparseTensor(indices, coo.data.astype(np.float32), coo.shape))


def served_validation(x_val: Any, y_val: np.ndarray) -> Any:
    """A Keras callback adding the served mean's validation loss and accuracy to each epoch's logs
    (as val_served_loss and val_served_accuracy) for a model whose outputs are the branches'
    probabilities."""
    import keras

    x_val = [_tensor(part) for part in x_val]  # once: a direct call costs far less than predict()

    class ServedValidation(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            proba = np.mean([np.asarray(p) for p in self.model(x_val, training=False)], axis=0)
            truth = np.clip(proba[np.arange(len(y_val)), y_val], 1e-7, 1.0)
            if logs is not None:
                logs[SERVED_VAL_LOSS] = float(-np.log(truth).mean())
                logs["val_served_accuracy"] = float((proba.argmax(axis=1) == y_val).mean())

    return ServedValidation()


class TopicClassifier:
    """Hyperparameters in __init__; learned state (`classes_`, `model_`, `history_`) after fit."""

    def __init__(
        self,
        hidden: int = 256,
        dropout: float = 0.2,
        learning_rate: float = 1e-3,
        epochs: int = 100,
        batch_size: int = 32,
        validation_split: float = VALIDATION_SPLIT,
        patience: int = 8,
        min_delta: float = 0.005,
        seed: int = 0,
        lexical: int = 0,
        lexical_l2: float = 0.0,
        lexical_scale: float = 1.0,
        lexical_join: str = "sum",
        lexical_ngrams: int = 1,
        class_weight: bool = False,
    ) -> None:
        self.hidden = hidden
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.validation_split = validation_split
        self.patience = patience
        self.min_delta = min_delta
        self.seed = seed
        self.lexical = lexical
        self.lexical_l2 = lexical_l2
        self.lexical_scale = lexical_scale
        self.lexical_join = lexical_join
        self.lexical_ngrams = lexical_ngrams
        self.class_weight = class_weight
        self.lexicon_: Any = None

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters, as scikit-learn's estimators report them (stored with each model)."""
        names = inspect.signature(type(self).__init__).parameters
        return {name: getattr(self, name) for name in names if name != "self"}

    @property
    def uses_text(self) -> bool:
        """Whether predict_proba needs the preprocessed texts beside the embeddings."""
        return self.lexicon_ is not None

    def _build(self, dim: int, n_classes: int, n_words: int = 0) -> Any:
        import keras

        keras.utils.set_random_seed(self.seed)
        embedding = keras.Input(shape=(dim,), name="embedding")
        hidden = keras.layers.Dense(self.hidden, activation="relu", name="hidden")(embedding)
        hidden = keras.layers.Dropout(self.dropout, name="dropout")(hidden)
        loss: Any = keras.losses.SparseCategoricalCrossentropy()
        metrics: list[Any] = ["accuracy"]
        if not n_words:
            outputs = keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(hidden)
            model = keras.Model(embedding, outputs)
        else:
            words = keras.Input(shape=(n_words,), sparse=True, name="words")
            regularizer = keras.regularizers.L2(self.lexical_l2) if self.lexical_l2 else None
            embedding_scores = keras.layers.Dense(n_classes, name="embedding_scores")(hidden)
            # From zero, as a linear model starts: random weights over a small vocabulary would
            # give confident random scores that the few epochs of a small run cannot undo.
            word_scores = keras.layers.Dense(n_classes, use_bias=self.lexical_join == "mean",
                                             kernel_initializer="zeros", kernel_regularizer=regularizer,
                                             name="word_scores")(words)
            if self.lexical_join == "sum":  # one softmax over both branches' scores, trained jointly
                scores = keras.layers.Add(name="scores")([embedding_scores, word_scores])
                outputs = keras.layers.Activation("softmax", name="probabilities")(scores)
                model = keras.Model([embedding, words], outputs)
            else:  # "mean": each branch trained on its own loss; the model serves their mean
                by_embedding = keras.layers.Activation("softmax", name="embedding_probabilities")(
                    embedding_scores)
                by_words = keras.layers.Activation("softmax", name="word_probabilities")(word_scores)
                self.serving_ = keras.Model([embedding, words], keras.layers.Average(name="probabilities")(
                    [by_embedding, by_words]))
                model = keras.Model([embedding, words], [by_embedding, by_words])
                loss, metrics = [loss, loss], [["accuracy"], ["accuracy"]]
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=self.learning_rate), loss=loss,
                      metrics=metrics)
        return model

    def _inputs(self, x: np.ndarray, texts: list[str] | None) -> Any:
        """The model's inputs: the embeddings, and the words as a SciPy CSR matrix when it reads them."""
        if self.lexicon_ is None:
            return x
        if texts is None or len(texts) != len(x):
            raise ValueError("this classifier reads the posts' words: pass their preprocessed texts")
        return [x, self.lexicon_.transform(texts)]

    def fit(self, x: np.ndarray, labels: list[str] | np.ndarray, texts: list[str] | None = None,
            verbose: int = 0) -> TopicClassifier:
        from shared.model.quiet_tensorflow import import_keras

        keras = import_keras()
        from sklearn.model_selection import train_test_split

        x = np.asarray(x, dtype=np.float32)
        self.classes_ = np.array(sorted(set(map(str, labels))))
        y = np.searchsorted(self.classes_, np.asarray(labels, dtype=str))
        # A stratified validation split (Keras' own split takes the last rows, unshuffled).
        rows_train, rows_val = train_test_split(
            np.arange(len(x)), test_size=self.validation_split, random_state=self.seed, stratify=y
        )
        self.lexicon_ = None
        if self.lexical:
            from shared.model.lexical import Lexicon

            if texts is None:
                raise ValueError("lexical > 0 needs the training texts")
            self.lexicon_ = Lexicon(max_features=self.lexical, ngram_max=self.lexical_ngrams,
                                    scale=self.lexical_scale).fit(
                [texts[i] for i in rows_train])
        inputs = self._inputs(x, texts)
        if self.lexicon_ is None:
            x_train, x_val = inputs[rows_train], inputs[rows_val]
        else:
            x_train = [inputs[0][rows_train], inputs[1][rows_train]]
            x_val = [inputs[0][rows_val], inputs[1][rows_val]]
        self.model_ = self._build(x.shape[1], len(self.classes_),
                                  self.lexicon_.size if self.lexicon_ is not None else 0)
        weights = None
        if self.class_weight:
            counts = np.bincount(y[rows_train], minlength=len(self.classes_))
            weights = {i: float(len(rows_train) / (len(counts) * max(c, 1))) for i, c in enumerate(counts)}
        y_train, y_val = y[rows_train], y[rows_val]
        two_heads = isinstance(self.model_.output, list)
        callbacks = [served_validation(x_val, y_val)] if two_heads else []
        # A two-branch model serves the mean of its branches' probabilities: stop on that mean's
        # validation loss, not on Keras' val_loss (the sum of the branch losses). Gains below
        # min_delta do not count: the word branch's loss creeps down for hundreds of epochs
        # without changing a prediction.
        stop = keras.callbacks.EarlyStopping(
            monitor=SERVED_VAL_LOSS if two_heads else "val_loss", mode="min", patience=self.patience,
            min_delta=self.min_delta, restore_best_weights=True,
        )
        sample_weight = None
        if two_heads:
            y_train, y_val = (y_train, y_train), (y_val, y_val)
            if weights is not None:  # Keras takes no class_weight for two outputs: the same, per sample
                per_post = np.array([weights[int(label)] for label in y_train[0]], dtype=np.float32)
                sample_weight = (per_post, per_post)
        history = self.model_.fit(
            x_train, y_train, validation_data=(x_val, y_val), epochs=self.epochs,
            batch_size=self.batch_size, callbacks=[*callbacks, stop], verbose=verbose,
            class_weight=None if two_heads else weights, sample_weight=sample_weight,
        )
        if two_heads:
            self.model_ = self.serving_  # the same layers, answering with the mean probability
        self.history_ = {key: [float(v) for v in values] for key, values in history.history.items()}
        self.best_epoch_ = stop.best_epoch + 1  # 1-based; its weights are the ones kept
        return self

    def predict_proba(self, x: np.ndarray, texts: list[str] | None = None) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if len(x) == 0:
            return np.zeros((0, len(self.classes_)), dtype=np.float32)
        # Calling the model directly avoids predict()'s per-call overhead on small batches. The words
        # stay sparse: dense, 7,532 test posts of 50,000 words would take 1.5 GB.
        inputs = self._inputs(x, texts)
        if isinstance(inputs, list) and not isinstance(self.model_, DenseForward):  # Keras' sparse input
            inputs = [_tensor(part) for part in inputs]
        return np.asarray(self.model_(inputs, training=False), dtype=np.float32)

    def predict(self, x: np.ndarray, texts: list[str] | None = None) -> np.ndarray:
        return self.classes_[self.predict_proba(x, texts).argmax(axis=1)]

    def save(self, path: Path) -> None:
        with warnings.catch_warnings():
            # Keras 3.15 under numpy 2.4 warns inside save() about its own np.array(copy=False) call.
            warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
            self.model_.save(path)

    def save_lexicon(self, path: Path) -> bool:
        """Write the lexicon beside the model, when this classifier reads words; True if written."""
        if self.lexicon_ is None:
            return False
        self.lexicon_.save(path)
        return True

    @property
    def join(self) -> str:
        """How the served model joins its branches (shared/model/dense_forward.py): none, mean or sum."""
        return "none" if self.lexicon_ is None else self.lexical_join

    @classmethod
    def load(cls, path: Path, classes: list[str], lexicon: Path | None = None,
             params: dict[str, Any] | None = None, forward: Path | None = None) -> TopicClassifier:
        """The classifier saved at `path`, with the hyperparameters it was built with (those this
        class knows; a version may record more, e.g. how it was trained). With `forward` (its
        weights, shared/model/dense_forward.py) it serves in numpy and TensorFlow is never imported."""
        known = inspect.signature(cls.__init__).parameters
        clf = cls(**{key: value for key, value in (params or {}).items() if key in known and key != "self"})
        if forward is not None:
            clf.model_ = DenseForward.load(forward)
        else:
            from shared.model.quiet_tensorflow import import_keras

            try:
                keras = import_keras()
            except ImportError:
                raise ImportError(f"{path.parent} was saved before forward.npz and is served by Keras, "
                                  "which is not installed (install topicq[train], or retrain it)") from None
            clf.model_ = keras.saving.load_model(path, safe_mode=True, compile=False)
        clf.classes_ = np.array(classes)
        if lexicon is not None:
            from shared.model.lexical import Lexicon

            clf.lexicon_ = Lexicon.load(lexicon)
            clf.lexical = clf.lexicon_.max_features
            clf.lexical_ngrams = clf.lexicon_.ngram_max
        return clf
