"""The lexicon's own TF-IDF transform (what a worker runs without scikit-learn) is scikit-learn's, to the bit."""

from __future__ import annotations

import numpy as np
import pytest

from shared.model.lexical import Lexicon
from testkit.factories import labelled_posts

ODD_TEXTS = [
    "", "a", "I I I I", "Ünïcode wörds and ÉCOLE école", "tabs\tand\nnewlines, punctuation!!! x-ray 3d",
    "the the the orbit orbit launch", "words unseen in training: zyzzyva quokka", "42 1234 a1 b_2 __init__",
    "cafe\u0301s na\u00efve x y z ab-cd e.g. i.e. o'clock _ __ 9", "\u00b2\u00b3 \u0660\u0661 \u4e2d\u6587 \u0915\u093f\u0924\u093e\u092c",
]


@pytest.mark.parametrize(("ngram_max", "scale"), [(1, 1.0), (2, 1.0), (2, 0.5), (3, 2.0)])
def test_transform_matches_scikit_learn(ngram_max: int, scale: float) -> None:
    pytest.importorskip("sklearn")
    texts = [text for _, text, _ in labelled_posts(60, seed=4)]
    lexicon = Lexicon(max_features=300, ngram_max=ngram_max, scale=scale).fit(texts[:40])
    probe = texts[40:] + ODD_TEXTS

    ours = lexicon.transform(probe)
    theirs = lexicon.vectorizer_.transform(probe)
    theirs = theirs * np.float32(scale) if scale != 1.0 else theirs

    assert ours.dtype == theirs.dtype == np.float32
    np.testing.assert_array_equal(ours.toarray(), theirs.toarray())
