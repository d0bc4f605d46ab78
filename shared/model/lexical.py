"""The lexical view of a post: TF-IDF weights of its words, beside the embedding.

An embedding of a post's opening carries its gist; rare topical words (a
drug's name, a cipher's) carry much of what tells 20 fine-grained groups
apart. The vectorizer is fitted on the training posts only and saved with the
model version as JSON (vocabulary, idf, settings) under a fixed name, covered
by the version's checksum; save and load are mirror images.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

LEXICON_FILE = "lexicon.json"
FORMAT = 1


class Lexicon:
    """TF-IDF (sublinear tf, l2 rows) over at most `max_features` words seen in >= `min_df` posts."""

    def __init__(self, max_features: int = 50_000, min_df: int = 2, ngram_max: int = 1,
                 scale: float = 1.0) -> None:
        self.max_features = max_features
        self.min_df = min_df
        self.ngram_max = ngram_max
        self.scale = scale  # rows have this length: how loudly the words speak to the network

    def _vectorizer(self, vocabulary: dict[str, int] | None = None) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(sublinear_tf=True, min_df=self.min_df, max_features=self.max_features,
                               ngram_range=(1, self.ngram_max), dtype=np.float32, vocabulary=vocabulary)

    def fit(self, texts: list[str]) -> Lexicon:
        min_df = self.min_df if len(texts) >= 2 * self.min_df else 1  # tiny training sets keep every word
        vectorizer = self._vectorizer()
        vectorizer.set_params(min_df=min_df)
        vectorizer.fit(texts)
        self.vectorizer_ = vectorizer
        return self

    @property
    def size(self) -> int:
        return len(self.vectorizer_.vocabulary_)

    def transform(self, texts: list[str]) -> Any:
        """A scipy CSR matrix, one row per text."""
        matrix = self.vectorizer_.transform(texts)
        return matrix * np.float32(self.scale) if self.scale != 1.0 else matrix

    def save(self, path: Path) -> None:
        vocabulary = {term: int(index) for term, index in self.vectorizer_.vocabulary_.items()}
        path.write_text(json.dumps({
            "format": FORMAT, "max_features": self.max_features, "min_df": self.min_df,
            "ngram_max": self.ngram_max, "scale": self.scale, "vocabulary": vocabulary,
            "idf": [float(v) for v in self.vectorizer_.idf_],
        }, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> Lexicon:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown lexicon format {data.get('format')!r}")
        lexicon = cls(max_features=data["max_features"], min_df=data["min_df"], ngram_max=data["ngram_max"],
                      scale=data.get("scale", 1.0))
        vectorizer = lexicon._vectorizer(vocabulary=data["vocabulary"])
        vectorizer.idf_ = np.asarray(data["idf"], dtype=np.float32)
        lexicon.vectorizer_ = vectorizer
        return lexicon
