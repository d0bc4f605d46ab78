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
how the branches meet. "product" (what `topicq train` builds) and "mean": the
embedding branch is the Keras model above; the words branch is a linear SVM
(LinearSVC, hinge loss: a better learner of many sparse words than a Keras
layer on this data, bench/results/accuracy.md), its scores times a temperature
through a softmax, the temperature calibrating the SVM's scores by
cross-validation. "product" serves the branches' probabilities multiplied,
the embedding's at the power 1 - w and the words' at w, renormalised; "mean"
serves (1 - w) x the embedding branch's + w x the words'; `w` =
`lexical_weight` (0.5). "sum" adds Keras-trained word scores to the embedding
branch's before one softmax. Such a model needs the posts' texts as sent
beside the embeddings, at training and at serving time (`uses_text`); the
lexicon takes its own view of them. `class_weight`
weights each post by the inverse frequency of its class, in either model.
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

from shared.model.dense_forward import (  # noqa: E402
    JOINED,
    SEPARATE_WORDS,
    DenseForward,
    save_forward,
    softmax,
)

VALIDATION_SPLIT = 0.15  # share of the training posts held out to stop early
# What the words branch's temperature is chosen from, and its share of the mean (lexical_weight=None).
TEMPERATURES = tuple(2 ** (k / 2) for k in range(13))  # 1 .. 64
DEFAULT_TEMPERATURE = 8.0  # when too few posts to calibrate: what 20 Newsgroups' sci and all groups chose
WORD_WEIGHTS = tuple(i / 20 for i in range(21))


def _tensor(x: Any) -> Any:
    """A TensorFlow tensor of a dense array or a SciPy sparse matrix (kept sparse)."""
    import tensorflow as tf

    if not hasattr(x, "tocoo"):
        return tf.convert_to_tensor(x)
    coo = x.tocoo()
    indices = np.stack([coo.row, coo.col], axis=1).astype(np.int64)
    return tf.sparse.reorder(tf.SparseTensor(indices, coo.data.astype(np.float32), coo.shape))


def _log_loss(probabilities: np.ndarray, truth: np.ndarray) -> float:
    return float(-np.log(np.clip(probabilities[np.arange(len(truth)), truth], 1e-7, 1.0)).mean())


def _two_columns(scores: np.ndarray) -> np.ndarray:
    """A binary SVM's one score s as two classes' scores [-s/2, s/2]: their softmax is sigmoid(s)."""
    return np.stack([-scores / 2, scores / 2], axis=1) if scores.ndim == 1 else scores


def _choose_weight(join: str, by_embedding: np.ndarray, word_scores: np.ndarray, truth: np.ndarray) -> float:
    """The words' share in `join` with the fewest mistakes on the validation rows (ties: log-loss)."""
    def cost(weight: float) -> tuple[float, float]:
        mixed = JOINED[join](by_embedding, word_scores, weight)
        return float((mixed.argmax(axis=1) != truth).mean()), _log_loss(mixed, truth)

    return min(WORD_WEIGHTS, key=cost)


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
        lexical_view: str = "text",
        lexical_weight: float | None = 0.5,
        lexical_temperature: float | None = None,
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
        self.lexical_view = lexical_view  # what of a post the words branch reads (shared/model/lexical.py)
        self.lexical_weight = lexical_weight
        self.lexical_temperature = lexical_temperature
        self.class_weight = class_weight
        self.lexicon_: Any = None
        self.words_: dict[str, np.ndarray] | None = None  # the words branch beside Keras, once fitted

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters, as scikit-learn's estimators report them (stored with each model)."""
        names = inspect.signature(type(self).__init__).parameters
        return {name: getattr(self, name) for name in names if name != "self"}

    @property
    def uses_text(self) -> bool:
        """Whether predict_proba needs the preprocessed texts beside the embeddings."""
        return self.lexicon_ is not None

    def _build(self, dim: int, n_classes: int, n_words: int = 0) -> Any:
        """The Keras model: the embedding branch, with the words' scores added when joined by "sum"."""
        import keras

        keras.utils.set_random_seed(self.seed)
        embedding = keras.Input(shape=(dim,), name="embedding")
        hidden = keras.layers.Dense(self.hidden, activation="relu", name="hidden")(embedding)
        hidden = keras.layers.Dropout(self.dropout, name="dropout")(hidden)
        if not n_words:
            outputs = keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(hidden)
            model = keras.Model(embedding, outputs)
        else:  # "sum": one softmax over both branches' scores, trained jointly
            words = keras.Input(shape=(n_words,), sparse=True, name="words")
            regularizer = keras.regularizers.L2(self.lexical_l2) if self.lexical_l2 else None
            embedding_scores = keras.layers.Dense(n_classes, name="embedding_scores")(hidden)
            # From zero, as a linear model starts: random weights over a small vocabulary would
            # give confident random scores that the few epochs of a small run cannot undo.
            word_scores = keras.layers.Dense(n_classes, use_bias=False, kernel_initializer="zeros",
                                             kernel_regularizer=regularizer, name="word_scores")(words)
            scores = keras.layers.Add(name="scores")([embedding_scores, word_scores])
            outputs = keras.layers.Activation("softmax", name="probabilities")(scores)
            model = keras.Model([embedding, words], outputs)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=self.learning_rate),
                      loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
        return model

    def _inputs(self, x: np.ndarray, texts: list[str] | None) -> Any:
        """The model's inputs: the embeddings, and the words as a SciPy CSR matrix when it reads them."""
        if self.lexicon_ is None:
            return x
        if texts is None or len(texts) != len(x):
            raise ValueError("this classifier reads the posts' words: pass their preprocessed texts")
        return [x, self.lexicon_.transform(texts)]

    @property
    def _separate_words(self) -> bool:
        """Whether the words are a branch of their own ("product", "mean"), fitted beside Keras."""
        return self.lexical_join in SEPARATE_WORDS

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
        self.lexicon_, self.words_ = None, None
        if self.lexical:
            from shared.model.lexical import Lexicon

            if texts is None:
                raise ValueError("lexical > 0 needs the training texts")
            # The words branch's SVM reads unit rows: its C is set for them.
            self.lexicon_ = Lexicon(max_features=self.lexical, ngram_max=self.lexical_ngrams,
                                    scale=1.0 if self._separate_words else self.lexical_scale,
                                    view=self.lexical_view).fit(
                [texts[i] for i in rows_train])
        inputs = self._inputs(x, texts)
        joint = self.lexicon_ is not None and not self._separate_words
        if joint:
            x_train, x_val = [part[rows_train] for part in inputs], [part[rows_val] for part in inputs]
        else:
            x_train, x_val = x[rows_train], x[rows_val]
        self.model_ = self._build(x.shape[1], len(self.classes_), self.lexicon_.size if joint else 0)
        weights = None
        if self.class_weight:
            counts = np.bincount(y[rows_train], minlength=len(self.classes_))
            weights = {i: float(len(rows_train) / (len(counts) * max(c, 1))) for i, c in enumerate(counts)}
        # Gains below min_delta do not count: the loss creeps down for many epochs without
        # changing a prediction.
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", mode="min", patience=self.patience,
                                             min_delta=self.min_delta, restore_best_weights=True)
        history = self.model_.fit(
            x_train, y[rows_train], validation_data=(x_val, y[rows_val]), epochs=self.epochs,
            batch_size=self.batch_size, callbacks=[stop], verbose=verbose, class_weight=weights,
        )
        self.history_ = {key: [float(v) for v in values] for key, values in history.history.items()}
        self.best_epoch_ = stop.best_epoch + 1  # 1-based; its weights are the ones kept
        if self.lexicon_ is not None and self._separate_words:
            self.words_ = self._fit_words(inputs[1], y, rows_train, rows_val,
                                          self._keras_proba(x[rows_val], None))
        return self

    def _fit_words(self, words: Any, y: np.ndarray, rows_train: np.ndarray, rows_val: np.ndarray,
                   by_embedding_val: np.ndarray) -> dict[str, np.ndarray]:
        """The words branch fitted beside Keras: a linear SVM on every labelled post, its scores times a
        temperature (`lexical_temperature`, else calibrated), its share of the join `lexical_weight`
        (None: chosen on the validation rows; on 20 Newsgroups that did worse than 0.5,
        bench/results/accuracy.md)."""
        temperature = self.lexical_temperature or self._calibrated_temperature(words, y)
        weight = self.lexical_weight
        if weight is None:
            kernel, bias = self._svm(words[rows_train], y[rows_train])
            weight = _choose_weight(self.lexical_join, by_embedding_val,
                                    temperature * (np.asarray(words[rows_val] @ kernel) + bias), y[rows_val])
        self.word_temperature_, self.word_weight_ = temperature, weight
        kernel, bias = self._svm(words, y)
        return {"kernel": kernel * np.float32(temperature), "bias": bias * np.float32(temperature),
                "weight": np.array(weight, dtype=np.float32)}

    def _calibrated_temperature(self, words: Any, y: np.ndarray) -> float:
        """The temperature whose softmax of the SVM's scores has the lowest log-loss on posts it was not
        fitted on (3-fold cross-validation): the words' probabilities calibrated on their own (Platt's
        idea). A temperature chosen on the mixture over the validation split alone was worse on small
        data: 60 posts picked 32 where 8 was 1.8 points more accurate (sci, 100 posts a class)."""
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        folds = min(3, int(np.bincount(y).min()))
        if folds < 2:
            return DEFAULT_TEMPERATURE
        split = StratifiedKFold(folds, shuffle=True, random_state=self.seed)
        scores = _two_columns(
            cross_val_predict(self._new_svm(), words, y, cv=split, method="decision_function"))
        return min(TEMPERATURES, key=lambda t: _log_loss(softmax(t * scores), y))

    def _new_svm(self) -> Any:
        from sklearn.svm import LinearSVC

        balanced = "balanced" if self.class_weight else None
        return LinearSVC(C=1.0, class_weight=balanced, random_state=self.seed)

    def _svm(self, words: Any, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A linear SVM's kernel (terms x classes) and bias."""
        svm = self._new_svm().fit(words, y)
        kernel, bias = svm.coef_.T.astype(np.float32), svm.intercept_.astype(np.float32)
        if kernel.shape[1] == 1:  # two classes: one score s, served as two (see _two_columns)
            kernel, bias = np.hstack([-kernel / 2, kernel / 2]), np.concatenate([-bias / 2, bias / 2])
        return kernel, bias

    def _keras_proba(self, x: np.ndarray, words: Any) -> np.ndarray:
        inputs = x if words is None else [_tensor(x), _tensor(words)]
        return np.asarray(self.model_(inputs, training=False), dtype=np.float32)

    def predict_proba(self, x: np.ndarray, texts: list[str] | None = None) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if len(x) == 0:
            return np.zeros((0, len(self.classes_)), dtype=np.float32)
        # Calling the model directly avoids predict()'s per-call overhead on small batches. The words
        # stay sparse: dense, 7,532 test posts of 50,000 words would take 1.5 GB.
        inputs = self._inputs(x, texts)
        if isinstance(self.model_, DenseForward):
            return np.asarray(self.model_(inputs, training=False), dtype=np.float32)
        if self.lexicon_ is None:
            return self._keras_proba(x, None)
        if self.words_ is None:  # "sum": the words are an input of the Keras model
            return self._keras_proba(inputs[0], inputs[1])
        word_scores = np.asarray(inputs[1] @ self.words_["kernel"]) + self.words_["bias"]
        weight = float(self.words_["weight"])
        return JOINED[self.lexical_join](self._keras_proba(x, None), word_scores, weight)

    def predict(self, x: np.ndarray, texts: list[str] | None = None) -> np.ndarray:
        return self.classes_[self.predict_proba(x, texts).argmax(axis=1)]

    def save(self, path: Path) -> None:
        with warnings.catch_warnings():
            # Keras 3.15 under numpy 2.4 warns inside save() about its own np.array(copy=False) call.
            warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
            self.model_.save(path)

    def save_forward(self, path: Path) -> None:
        """The serving weights (shared/model/dense_forward.py): the Keras layers and the words branch."""
        save_forward(self.model_, self.join, path, words=self.words_)

    def save_lexicon(self, path: Path) -> bool:
        """Write the lexicon beside the model, when this classifier reads words; True if written."""
        if self.lexicon_ is None:
            return False
        self.lexicon_.save(path)
        return True

    @property
    def join(self) -> str:
        """How the served model joins its branches (shared/model/dense_forward.py JOINS)."""
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
            if lexicon is not None and len(clf.model_.inputs) == 1:
                # A words branch beside Keras is kept in forward.npz only: without it, serving the
                # embedding branch alone would quietly answer with another model.
                raise ValueError(f"{path.parent} reads the posts' words, but its words branch "
                                 "(forward.npz) is missing")
        clf.classes_ = np.array(classes)
        if lexicon is not None:
            from shared.model.lexical import Lexicon

            clf.lexicon_ = Lexicon.load(lexicon)
            clf.lexical = clf.lexicon_.max_features
            clf.lexical_ngrams = clf.lexicon_.ngram_max
            clf.lexical_view = clf.lexicon_.view
        return clf
