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
from pathlib import Path
from typing import Any

import numpy as np

from shared.model.preprocess import preprocess, words_view

LEXICON_FILE = "lexicon.json"
FORMAT = 2
VIEWS: dict[str, Callable[[str], str]] = {"text": words_view, "preprocessed": preprocess}


# scikit-learn's default token pattern: words of two or more word characters, lower-cased first.
TOKEN = re.compile(r"(?u)\b\w\w+\b")


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
        indptr: list[int] = [0]
        indices: list[int] = []
        counts: list[int] = []
        vocabulary = self.vocabulary_
        for text in texts:
            # Count every term once with Counter (C code), then look up each distinct term once.
            counted = Counter(terms(text, self.ngram_max))
            known = sorted((index, count) for term, count in counted.items()
                           if (index := vocabulary.get(term)) is not None)
            indices.extend(index for index, _ in known)
            counts.extend(count for _, count in known)
            indptr.append(len(indices))
        data = np.asarray(counts, dtype=np.float32)
        np.log(data, out=data)  # sublinear tf: 1 + log(count)
        data += 1.0
        columns = np.asarray(indices, dtype=np.int32)
        data *= self.idf_[columns]
        for start, end in zip(indptr, indptr[1:], strict=False):  # l2 rows, summed as scikit-learn sums
            if end > start:
                squares = np.add.accumulate((data[start:end] * data[start:end]).astype(np.float64))[-1]
                if squares > 0.0:
                    data[start:end] = (data[start:end].astype(np.float64) / math.sqrt(squares)).astype(
                        np.float32)
        matrix = csr_matrix((data, columns, np.asarray(indptr, dtype=np.int32)),
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
