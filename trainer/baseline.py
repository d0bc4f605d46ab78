"""The words-only baseline every version is measured against: TF-IDF + LinearSVC on the same split.

Trained on the version's labelled training posts and scored on its test posts,
each read as the words branch reads it (shared/model/preprocess.py `words_view`),
so the model card shows when embeddings do not help a dataset (bench/accuracy.py
has its figures on 20 Newsgroups).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from shared.model.preprocess import words_view

BASELINE = "TF-IDF + LinearSVC"


def baseline_predictions(train_texts: list[str], train_labels: list[str], test_texts: list[str],
                         seed: int = 0, view: Callable[[str], str] = words_view) -> list[str]:
    """The baseline fitted on the training posts as sent, its labels for the test posts as sent; it reads
    `view` of each (what the words branch reads, unless told)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    min_df = 2 if len(train_texts) >= 4 else 1  # tiny training sets keep every word
    model = make_pipeline(TfidfVectorizer(sublinear_tf=True, min_df=min_df), LinearSVC(random_state=seed))
    model.fit(list(map(view, train_texts)), train_labels)
    return [str(p) for p in model.predict(list(map(view, test_texts)))] if test_texts else []


def words_baseline(train_texts: list[str], train_labels: list[str], test_texts: list[str],
                   test_labels: list[str]) -> dict[str, Any]:
    """The baseline's accuracy on the test posts as sent (None without test posts), and its time to fit and
    predict."""
    started = time.perf_counter()
    predicted = baseline_predictions(train_texts, train_labels, test_texts)
    accuracy = None
    if test_texts:
        accuracy = round(float(sum(p == t for p, t in zip(predicted, test_labels, strict=True))
                               / len(test_labels)), 4)
    return {"name": BASELINE, "accuracy": accuracy, "seconds": round(time.perf_counter() - started, 1)}
