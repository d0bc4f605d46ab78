"""The text preprocessing shared by training and serving.

It follows Google's "classify text with embeddings" tutorial, so that a model
trained here sees at serving time exactly the kind of text it was fit on.
Bump PREPROCESS_VERSION whenever the output of `preprocess` changes: it is
stored with each model and part of every embedding-cache key.
"""

from __future__ import annotations

import hashlib
import re

PREPROCESS_VERSION = 1
MAX_CHARS = 5000  # the tutorial's cut; the embedders truncate further by tokens

# An address starts where a run of its characters starts: tried from inside a run too, a post of
# 200,000 letters without an "@" took minutes (each start rescans the run). Same matches either way.
_EMAIL = re.compile(r"(?<![\w\.-])[\w\.-]+@[\w\.-]+")
_PARENTHESISED = re.compile(r"\([^()]*\)")


def preprocess(text: str) -> str:
    """Remove e-mail addresses, parenthesised text and header labels; cut long posts."""
    text = _EMAIL.sub("", text)
    text = _PARENTHESISED.sub("", text)
    text = text.replace("From: ", "")
    text = text.replace("\nSubject: ", "")
    return text[:MAX_CHARS]


def words_view(text: str) -> str:
    """What the words branch reads (shared/model/lexical.py): the post without its e-mail addresses, cut
    as `preprocess` cuts. Parenthesised text stays: names and asides are words a linear model uses
    (+1.2 points on all 20 Newsgroups, bench/results/accuracy.md). The embedding reads the
    preprocessed text, as the tutorial's model does."""
    return _EMAIL.sub("", text)[:MAX_CHARS]


def text_digest(text: str) -> str:
    """sha256 of a (preprocessed) text: the cache key beside the embedder id."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
