"""Training and evaluation runs on the fake embedder, with the real database and model store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.errors import DatasetError, ModelError
from shared.improvement.drift_reference import load_reference
from shared.model import registry
from shared.model.embedders.fake import FakeEmbedder
from shared.model.store import META_FILE, MODEL_FILE, checksum
from shared.settings import get_settings
from testkit.tables import post_rows, write_table
from trainer.datasets import Dataset
from trainer.evaluation import CARD_FILE, CONFUSION_PNG, CURVES_PNG
from trainer.train import data_fingerprint, run_evaluation, run_training

FAST = {"hidden": 64, "epochs": 10, "progress": False}


@pytest.fixture
def posts_csv(tmp_path: Path) -> Path:
    return write_table(tmp_path / "posts.csv", post_rows(30))


def test_training_saves_registers_and_promotes_a_version(posts_csv: Path) -> None:
    embedder = FakeEmbedder()

    result = run_training(dataset=str(posts_csv), embedder=embedder, promote=True, **FAST)

    settings = get_settings()
    assert (result.name, result.version) == ("topics", 1)
    assert result.directory == settings.models_path / "topics" / "1"
    for name in (MODEL_FILE, META_FILE, CONFUSION_PNG, CURVES_PNG, CARD_FILE):
        assert (result.directory / name).is_file()
    assert result.metrics["accuracy"] >= 0.9 and result.metrics["n"] == 18
    assert (result.cache_hits, result.cache_misses, result.n_train) == (0, 90, 72)
    meta = json.loads((result.directory / META_FILE).read_text())
    assert meta["labels"] == ["crypto", "medicine", "space"]
    assert meta["embedder_id"] == embedder.id and meta["embedder_dim"] == 64
    assert meta["hyperparameters"]["hidden"] == 64
    assert meta["dataset"]["train"]["size"] == 72 and meta["dataset"]["test"]["split"] == "test"
    assert len(meta["data_fingerprint"]) == 64
    info = registry.resolve_ref(settings.db_url, "topics")
    assert info.version == 1 and info.aliases == () and info.sha256 == checksum(result.directory)
    assert {key: info.metrics[key] for key in ("accuracy", "macro_f1", "n")} == {
        "accuracy": result.metrics["accuracy"], "macro_f1": result.metrics["macro_f1"], "n": 18}
    # The words-only baseline on the same split, and the review queue's rates on the test posts.
    assert info.metrics["baseline"]["name"] == "TF-IDF + LinearSVC"
    assert 0 <= info.metrics["baseline"]["accuracy"] <= 1
    assert [row["rate"] for row in info.metrics["review"]] == [0.05, 0.1, 0.2]
    assert all(row["flagged"] <= row["rate"] for row in info.metrics["review"])
    card = (result.directory / CARD_FILE).read_text()
    assert "## Review queue" in card and "Baseline on the same split, TF-IDF + LinearSVC" in card
    loaded = registry.load(settings.db_url, name="topics", version=1)
    assert loaded.review is not None and loaded.review.size == 18
    assert loaded.review.held_out == "the test split (18 posts)"
    assert registry.resolve(settings.db_url, name="topics") == 1
    # with its drift reference: the version's own predictions on the 18 test posts
    reference = load_reference(result.directory)
    assert reference is not None and reference.posts == 18 and len(reference.centroid) == 64
    assert sum(reference.label_shares.values()) == pytest.approx(1.0)
    assert reference.mean_confidence > 0.5 and 0 < reference.spread < 1


@pytest.mark.slow  # two training runs
def test_training_again_embeds_nothing_new(posts_csv: Path) -> None:
    embedder = FakeEmbedder()
    first = run_training(dataset=str(posts_csv), embedder=embedder, **FAST)
    calls = len(embedder.calls)

    second = run_training(dataset=str(posts_csv), embedder=embedder, **FAST)

    assert (second.version, second.cache_hits, second.cache_misses) == (2, 90, 0)
    assert len(embedder.calls) == calls
    assert second.metrics == first.metrics  # same data, same seed, same vectors
    assert registry.resolve(get_settings().db_url, name="topics") is None  # nothing promoted


@pytest.mark.slow  # trains, then evaluates the whole test set
def test_evaluation_reproduces_the_held_out_metrics(posts_csv: Path) -> None:
    trained = run_training(dataset=str(posts_csv), embedder="fake", name="news", **FAST)

    evaluated = run_evaluation("news:1", dataset=str(posts_csv), test_size=0.2, progress=False)

    assert (evaluated.name, evaluated.version) == ("news", 1)
    training_only = ("baseline", "review")  # what training adds: the baseline and the review queue
    assert evaluated.metrics == {k: v for k, v in trained.metrics.items() if k not in training_only}
    assert (evaluated.cache_hits, evaluated.cache_misses) == (18, 0)


def test_evaluation_counts_the_posts_the_version_was_trained_on(posts_csv: Path) -> None:
    trained = run_training(dataset=str(posts_csv), embedder="fake", **FAST)

    whole_file = run_evaluation("topics", dataset=str(posts_csv), progress=False)
    held_out = run_evaluation("topics", dataset=str(posts_csv), test_size=0.2, progress=False)

    assert (whole_file.metrics["n"], whole_file.seen_in_training) == (90, trained.n_train)
    assert whole_file.unseen_accuracy == trained.metrics["accuracy"]  # the other 18 are the test posts
    assert (held_out.seen_in_training, held_out.unseen_accuracy) == (0, held_out.metrics["accuracy"])


@pytest.mark.slow  # two training runs
def test_self_training_posts_count_as_seen(posts_csv: Path) -> None:
    # A low threshold: a short first fit is unsure of most posts.
    trained = run_training(dataset=str(posts_csv), embedder="fake", per_class=10, self_training=0.4, **FAST)
    assert 0 < trained.self_trained <= 72 - 30  # the training split's posts that were not sampled

    evaluated = run_evaluation("topics", dataset=str(posts_csv), progress=False)

    assert evaluated.seen_in_training == 30 + trained.self_trained


def test_evaluation_refuses_another_embedder(posts_csv: Path) -> None:
    run_training(dataset=str(posts_csv), embedder="fake", **FAST)
    with pytest.raises(ModelError, match="trained with embedder 'fake:bow:64', not 'fake:bow:32'"):
        run_evaluation("topics", dataset=str(posts_csv), embedder=FakeEmbedder(dim=32), progress=False)


def test_evaluation_refuses_labels_the_model_does_not_know(posts_csv: Path, tmp_path: Path) -> None:
    run_training(dataset=str(posts_csv), embedder="fake", **FAST)
    other = write_table(tmp_path / "other.jsonl", [{"text": "orbit moon", "label": "space"},
                                                   {"text": "hockey puck", "label": "sport"}])
    with pytest.raises(DatasetError, match=r"also has \['sport'\]"):
        run_evaluation("topics", dataset=str(other), progress=False)


def test_too_few_posts_to_train_says_how_many_each_class_needs(tmp_path: Path) -> None:
    tiny = write_table(tmp_path / "tiny.csv", post_rows(5))
    embedder = FakeEmbedder()
    with pytest.raises(DatasetError, match=r"tiny.csv: too few posts to train: each class needs at least 8 "
                                           r"\(a 0.4 test split, then a 0.15 validation split\); "
                                           r"posts per class: crypto 5, medicine 5, space 5$"):
        run_training(dataset=str(tiny), embedder=embedder, test_size=0.4, **FAST)
    assert embedder.calls == []  # refused before embedding anything
    assert not get_settings().models_path.exists()


def test_a_four_post_file_is_refused_before_splitting(tmp_path: Path) -> None:
    four = tmp_path / "four.csv"
    four.write_text("text,label\norbit moon,space\nrocket moon,space\ndrug dose,medicine\ndoctor dose,medicine\n")
    with pytest.raises(DatasetError, match=r"each class needs at least 5 \(a 0.2 test split, then a 0.15 "
                                           r"validation split\); posts per class: medicine 2, space 2$"):
        run_training(dataset=str(four), embedder="fake", **FAST)


def test_a_per_class_sample_too_small_to_stop_early_is_refused_before_embedding(
        newsgroups_home: str) -> None:
    embedder = FakeEmbedder()
    with pytest.raises(DatasetError, match=r"too few posts to train with --per-class 3: each class needs "
                                           r"at least 6 \(a 0.15 validation split\); "
                                           r"posts per class: sci.crypt 3, sci.electronics 3, sci.med 3"):
        run_training(groups=("sci",), per_class=3, data_home=newsgroups_home, embedder=embedder, **FAST)
    assert embedder.calls == []


def test_a_leftover_version_directory_is_not_overwritten(posts_csv: Path) -> None:
    leftover = get_settings().models_path / "topics" / "1"
    leftover.mkdir(parents=True)
    (leftover / "note").write_text("from a crashed run")

    result = run_training(dataset=str(posts_csv), embedder="fake", **FAST)

    assert result.version == 2 and (leftover / "note").read_text() == "from a crashed run"


def test_fingerprint_covers_ids_texts_and_labels() -> None:
    base = Dataset(["1", "2"], ["a b", "c"], ["x", "y"])
    assert data_fingerprint(base) == data_fingerprint(Dataset(["1", "2"], ["a b", "c"], ["x", "y"]))
    for changed in (Dataset(["1", "3"], ["a b", "c"], ["x", "y"]),
                    Dataset(["1", "2"], ["a", "b c"], ["x", "y"]),
                    Dataset(["1", "2"], ["a b", "c"], ["x", "x"])):
        assert data_fingerprint(changed) != data_fingerprint(base)


def test_one_newsgroup_is_not_enough_to_train(newsgroups_home: str) -> None:
    with pytest.raises(DatasetError, match=r"at least two classes, got \['sci.space'\]"):
        run_training(groups=("sci.space",), data_home=newsgroups_home, embedder="fake", **FAST)
