"""Models that read words: the lexicon is saved with the version, checked and needed at load."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from shared.errors import ModelError
from shared.model.classifier import TopicClassifier
from shared.model.dense_forward import JOINED, product_join
from shared.model.embedders.fake import FakeEmbedder
from shared.model.lexical import LEXICON_FILE, Lexicon
from shared.model.store import META_FILE, TopicModel
from testkit.factories import labelled_posts, meta_for


def posts(seed: int) -> tuple[np.ndarray, list[str], list[str]]:
    rows = labelled_posts(20, seed=seed)
    texts = [text for _, text, _ in rows]
    return FakeEmbedder(dim=8).embed(texts), texts, [label for *_, label in rows]


@pytest.fixture(scope="module")
def reader() -> TopicClassifier:
    x, texts, labels = posts(0)
    return TopicClassifier(hidden=16, epochs=20, learning_rate=0.01, lexical=1000, seed=0).fit(x, labels, texts=texts)


def test_lexicon_round_trip_gives_the_same_matrix(tmp_path: Path) -> None:
    _, texts, _ = posts(1)
    lexicon = Lexicon(max_features=50).fit(texts)
    lexicon.save(tmp_path / LEXICON_FILE)

    loaded = Lexicon.load(tmp_path / LEXICON_FILE)

    assert (loaded.transform(texts) != lexicon.transform(texts)).nnz == 0
    assert loaded.size == lexicon.size <= 50


def test_a_lexicon_reads_the_words_in_parentheses_but_no_e_mail_address() -> None:
    """The post as sent minus its e-mail addresses: names and asides in parentheses are words too."""
    texts = ["From: ada@example.org (Grace Hopper)\nSubject: engines (analytical)"] * 2
    vocabulary = Lexicon(max_features=100).fit(texts).vocabulary_

    assert {"hopper", "analytical"} <= set(vocabulary)
    assert not {"ada", "example", "org"} & set(vocabulary)


def test_a_lexicon_saved_before_views_keeps_reading_the_preprocessed_text(tmp_path: Path) -> None:
    texts = ["space (orbit) launch", "orbit (space) launch"]
    Lexicon(max_features=100).fit(texts).save(tmp_path / LEXICON_FILE)
    saved = json.loads((tmp_path / LEXICON_FILE).read_text())
    del saved["view"]
    (tmp_path / LEXICON_FILE).write_text(json.dumps({**saved, "format": 1}))

    old = Lexicon.load(tmp_path / LEXICON_FILE)

    assert old.view == "preprocessed"
    row = old.transform(["(orbit) launch"])
    assert row[0, old.vocabulary_["launch"]] > 0 and row[0, old.vocabulary_["orbit"]] == 0


def test_the_product_join_multiplies_the_branches_probabilities() -> None:
    by_embedding = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=np.float32)
    word_scores = np.array([[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]], dtype=np.float32)
    by_words = np.exp(word_scores) / np.exp(word_scores).sum(axis=1, keepdims=True)
    expected = by_embedding ** 0.75 * by_words ** 0.25
    expected /= expected.sum(axis=1, keepdims=True)

    np.testing.assert_allclose(product_join(by_embedding, word_scores, 0.25), expected, rtol=1e-5)
    # An underflowed probability is tiny, not zero: overwhelming words can still overturn it.
    assert product_join(np.array([[1.0, 0.0]]), np.array([[0.0, 200.0]]), 0.5).argmax() == 1


def test_a_word_reader_needs_the_texts(reader: TopicClassifier) -> None:
    x, texts, labels = posts(2)
    assert reader.uses_text
    assert np.mean(reader.predict(x, texts) == np.array(labels)) >= 0.9
    with pytest.raises(ValueError, match="preprocessed texts"):
        reader.predict_proba(x)


def test_word_reader_round_trip_records_its_inputs(reader: TopicClassifier, tmp_path: Path) -> None:
    sha = TopicModel(meta_for(reader), reader).save(tmp_path)

    loaded = TopicModel.load(tmp_path, sha)

    x, texts, _ = posts(3)
    assert loaded.meta.inputs == ["embedding", "text"]
    assert json.loads((tmp_path / META_FILE).read_text())["inputs"] == ["embedding", "text"]
    np.testing.assert_allclose(loaded.classifier.predict_proba(x, texts), reader.predict_proba(x, texts),
                               rtol=1e-5, atol=1e-6)


def test_a_changed_or_missing_lexicon_is_refused(reader: TopicClassifier, tmp_path: Path) -> None:
    sha = TopicModel(meta_for(reader), reader).save(tmp_path)
    with (tmp_path / LEXICON_FILE).open("a") as handle:
        handle.write(" ")
    with pytest.raises(ModelError, match="changed since registration"):
        TopicModel.load(tmp_path, sha)
    (tmp_path / LEXICON_FILE).unlink()
    with pytest.raises(ModelError, match="changed since registration"):
        TopicModel.load(tmp_path, sha)


def test_a_version_saved_before_inputs_existed_still_loads(tmp_path: Path) -> None:
    x, texts, labels = posts(4)
    plain = TopicClassifier(hidden=16, epochs=5, seed=0).fit(x, labels)
    TopicModel(replace(meta_for(plain)), plain).save(tmp_path)
    meta = json.loads((tmp_path / META_FILE).read_text())
    del meta["inputs"]  # model.json as older versions wrote it
    (tmp_path / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    from shared.model.store import checksum

    loaded = TopicModel.load(tmp_path, checksum(tmp_path))

    assert loaded.meta.inputs == ["embedding"] and not loaded.classifier.uses_text
    assert list(loaded.classifier.predict(x)) == list(plain.predict(x))


def test_a_bigram_reader_serves_the_same_after_save_and_load(tmp_path: Path) -> None:
    """Given a model that reads pairs of words, when its version is saved and loaded, then the
    lexicon keeps its pairs and the loaded model answers with the same probabilities."""
    x, texts, labels = posts(5)
    bigrams = TopicClassifier(hidden=16, epochs=20, learning_rate=0.01, lexical=1000, lexical_ngrams=2,
                              seed=0).fit(x, labels, texts=texts)
    assert any(" " in term for term in bigrams.lexicon_.vectorizer_.vocabulary_)
    sha = TopicModel(meta_for(bigrams), bigrams).save(tmp_path)

    loaded = TopicModel.load(tmp_path, sha)

    assert loaded.meta.hyperparameters["lexical_ngrams"] == 2
    assert loaded.classifier.lexical_ngrams == loaded.classifier.lexicon_.ngram_max == 2
    assert loaded.classifier.get_params() == bigrams.get_params()
    x, texts, _ = posts(6)
    np.testing.assert_array_equal(loaded.classifier.lexicon_.transform(texts).toarray(),
                                  bigrams.lexicon_.transform(texts).toarray())
    np.testing.assert_allclose(loaded.classifier.predict_proba(x, texts), bigrams.predict_proba(x, texts),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("join", ["mean", "product", "sum"])
def test_words_stay_sparse_and_probabilities_match_the_dense_answer(join: str) -> None:
    """predict_proba keeps the words sparse (a dense test set of 50,000 words takes gigabytes): the
    same probabilities as the dense matrix, a post without a known word included."""
    x, texts, labels = posts(7)
    clf = TopicClassifier(hidden=16, epochs=10, learning_rate=0.01, lexical=1000, lexical_join=join,
                          seed=0).fit(x, labels, texts=texts)
    x, texts, _ = posts(8)
    texts[0] = "zzzq unheardof"  # no word of the lexicon: an empty row

    words = clf.lexicon_.transform(texts).toarray()
    if join == "sum":  # the words are an input of the Keras model
        dense = np.asarray(clf.model_([x, words], training=False))
    else:  # the words branch of its own, beside the Keras model's probabilities
        assert clf.words_ is not None
        dense = JOINED[join](np.asarray(clf.model_(x, training=False)), words @ clf.words_["kernel"]
                             + clf.words_["bias"], float(clf.words_["weight"]))

    np.testing.assert_allclose(clf.predict_proba(x, texts), dense, rtol=1e-5, atol=1e-6)
