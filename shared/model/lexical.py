"""The lexical view of a post: TF-IDF weights of its words, beside the embedding.

An embedding of a post's opening carries its gist; rare topical words (a
drug's name, a cipher's) carry much of what tells 20 fine-grained groups
apart. The vectorizer is fitted on the training posts only and saved with the
model version as JSON (vocabulary, idf, settings) under a fixed name, covered
by the version's checksum; save and load are mirror images. Serving needs no
scikit-learn: the transform is computed here.

A lexicon reads the posts as sent and takes its own view of them (`view`):
"text" (`words_view`: e-mail addresses out, parenthesised text kept) since
FORMAT 2; "preprocessed" (what the embedding reads) for FORMAT 1 files, as
they were fitted.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable
from itertools import chain, repeat
from pathlib import Path
from typing import Any

import numpy as np

from shared.model.preprocess import preprocess, words_view

LEXICON_FILE = "lexicon.json"
FORMAT = 2
VIEWS: dict[str, Callable[[str], str]] = {"text": words_view, "preprocessed": preprocess}


# scikit-learn's default token pattern, r"(?u)\b\w\w+\b": words of two or more word characters,
# lower-cased first. Without the \b's it finds the same words (a greedy run of \w always ends at a
# boundary, and can only start inside a run that is one character long) about a third faster.
TOKEN = re.compile(r"\w\w+")


def terms(text: str, ngram_max: int = 1) -> list[str]:
    """The text's words, then its runs of 2..ngram_max adjacent words, as TfidfVectorizer lists them."""
    words = TOKEN.findall(text.lower())
    found = list(words)
    if ngram_max >= 2:  # pairs, the common case, without a join per pair
        found.extend(map(" ".join, zip(words, words[1:], strict=False)))
    for n in range(3, min(ngram_max, len(words)) + 1):
        found.extend(" ".join(words[i: i + n]) for i in range(len(words) - n + 1))
    return found


class Lexicon:
    """TF-IDF (sublinear tf, l2 rows) over at most `max_features` words seen in >= `min_df` posts.

    Fitting takes scikit-learn (the trainer); transforming is done here in numpy, with
    scikit-learn's arithmetic step for step (float32 counts, log + 1, idf, rows scaled by their
    norm summed in float64), so a worker serves the words without scikit-learn."""

    def __init__(self, max_features: int = 50_000, min_df: int = 2, ngram_max: int = 1,
                 scale: float = 1.0, view: str = "text") -> None:
        if view not in VIEWS:
            raise ValueError(f"unknown lexicon view {view!r}")
        self.view = view
        self.max_features = max_features
        self.min_df = min_df
        self.ngram_max = ngram_max
        self.scale = scale  # rows have this length: how loudly the words speak to the network
        self.vocabulary_: dict[str, int] = {}
        self.idf_ = np.zeros(0, dtype=np.float32)

    def fit(self, texts: list[str]) -> Lexicon:
        """Fitted on the posts as sent (their `view` is taken here)."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = list(map(VIEWS[self.view], texts))
        min_df = self.min_df if len(texts) >= 2 * self.min_df else 1  # tiny training sets keep every word
        vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=min_df, max_features=self.max_features,
                                     ngram_range=(1, self.ngram_max), dtype=np.float32)
        vectorizer.fit(texts)
        self.vectorizer_ = vectorizer
        self.vocabulary_ = {term: int(index) for term, index in vectorizer.vocabulary_.items()}
        self.idf_ = np.asarray(vectorizer.idf_, dtype=np.float32)
        return self

    @property
    def size(self) -> int:
        return len(self.vocabulary_)

    def transform(self, texts: list[str]) -> Any:
        """A scipy CSR matrix, one row per post as sent."""
        from scipy.sparse import csr_matrix

        texts = list(map(VIEWS[self.view], texts))
        # Each post's terms counted once (Counter, C code), then every distinct term of the batch looked
        # up in one pass of C code (map over dict.get) rather than a Python loop per term.
        counted = [Counter(terms(text, self.ngram_max)) for text in texts]
        sizes = np.fromiter(map(len, counted), dtype=np.int64, count=len(counted))
        total = int(sizes.sum())
        all_columns = np.fromiter(map(self.vocabulary_.get, chain.from_iterable(counted), repeat(-1)),
                                  dtype=np.int64, count=total)
        all_counts = np.fromiter(chain.from_iterable(c.values() for c in counted), dtype=np.float32,
                                 count=total)
        known = all_columns >= 0
        rows, known_columns = np.repeat(np.arange(len(texts)), sizes)[known], all_columns[known]
        order = np.lexsort((known_columns, rows))  # by post, then by column, as scikit-learn sorts
        columns, data = known_columns[order].astype(np.int32), all_counts[known][order]
        indptr = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=len(texts)), out=indptr[1:])
        np.log(data, out=data)  # sublinear tf: 1 + log(count)
        data += 1.0
        data *= self.idf_[columns]
        bounds = indptr.tolist()
        for start, end in zip(bounds, bounds[1:], strict=False):  # l2 rows, summed as scikit-learn sums
            if end > start:
                squares = np.add.accumulate((data[start:end] * data[start:end]).astype(np.float64))[-1]
                if squares > 0.0:
                    data[start:end] = (data[start:end].astype(np.float64) / math.sqrt(squares)).astype(
                        np.float32)
        matrix = csr_matrix((data, columns, indptr.astype(np.int32)),
                            shape=(len(texts), len(self.vocabulary_)))
        return matrix * np.float32(self.scale) if self.scale != 1.0 else matrix

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({
            "format": FORMAT, "max_features": self.max_features, "min_df": self.min_df,
            "ngram_max": self.ngram_max, "scale": self.scale, "view": self.view,
            "vocabulary": self.vocabulary_,
            "idf": [float(v) for v in self.idf_],
        }, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> Lexicon:
        data = json.loads(path.read_text())
        if data.get("format") not in (1, FORMAT):
            raise ValueError(f"unknown lexicon format {data.get('format')!r}")
        view = data["view"] if data["format"] >= 2 else "preprocessed"  # format 1 was fitted on those
        lexicon = cls(max_features=data["max_features"], min_df=data["min_df"], ngram_max=data["ngram_max"],
                      scale=data.get("scale", 1.0), view=view)
        lexicon.vocabulary_ = {term: int(index) for term, index in data["vocabulary"].items()}
        lexicon.idf_ = np.asarray(data["idf"], dtype=np.float32)
        return lexicon
