"""Loading labelled posts: 20 Newsgroups selection and sampling, CSV/JSONL files, splits."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from shared.errors import DatasetError
from testkit.tables import post_rows, write_table
from trainer.datasets import (
    Dataset,
    load_newsgroups,
    load_table,
    posts_per_class_needed,
    require_posts_for,
    sample_per_class,
    select_groups,
    split,
)

NAMES = ["alt.atheism", "comp.graphics", "misc.forsale", "sci.crypt", "sci.electronics",
         "sci.med", "sci.space", "talk.politics.misc"]
SCI = ["sci.crypt", "sci.electronics", "sci.med", "sci.space"]


# --- group selection ------------------------------------------------------------------------

def test_a_word_selects_every_group_containing_it() -> None:
    assert select_groups(("sci",), NAMES) == SCI
    assert select_groups(("space", "comp"), NAMES) == ["comp.graphics", "sci.space"]


def test_no_words_select_all_groups() -> None:
    assert select_groups((), NAMES) == NAMES


def test_an_unknown_word_is_refused_with_the_group_names() -> None:
    with pytest.raises(DatasetError, match="'cooking'.*alt.atheism, comp.graphics"):
        select_groups(("sci", "cooking"), NAMES)


# --- 20 Newsgroups (needs the offline cache) --------------------------------------------------

def test_newsgroups_sci_test_subset_has_stable_ids(newsgroups_home: str) -> None:
    data = load_newsgroups(groups=("sci",), subset="test", data_home=newsgroups_home)
    assert data.class_counts() == {"sci.crypt": 396, "sci.electronics": 393,
                                   "sci.med": 396, "sci.space": 394}
    assert len(set(data.ids)) == len(data) == 1579
    assert all(post_id.startswith(f"test/{label}/") and post_id.rsplit("/", 1)[1].isdigit()
               for post_id, label in zip(data.ids, data.labels, strict=True))
    assert data.ids == sorted(data.ids, key=lambda i: (i.split("/")[1], int(i.split("/")[2])))
    assert data.description["groups"] == SCI


def test_newsgroups_honours_scikit_learn_data(newsgroups_home: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCIKIT_LEARN_DATA", newsgroups_home)
    data = load_newsgroups(groups=("sci.space",), subset="train")
    assert data.class_counts() == {"sci.space": 593}


def test_per_class_sampling_is_seeded(newsgroups_home: str) -> None:
    def sample(seed: int) -> Dataset:
        return load_newsgroups(groups=("sci",), subset="train", data_home=newsgroups_home,
                               per_class=7, seed=seed)

    first, again, other = sample(0), sample(0), sample(1)
    assert first.class_counts() == dict.fromkeys(SCI, 7)
    assert first.ids == again.ids and first.texts == again.texts
    assert first.ids != other.ids
    assert first.description["short_classes"] == {}


def test_a_class_smaller_than_per_class_is_taken_whole_and_reported(newsgroups_home: str) -> None:
    data = load_newsgroups(groups=("religion.misc", "sci.med"), subset="test",
                           data_home=newsgroups_home, per_class=300)
    assert data.class_counts() == {"sci.med": 300, "talk.religion.misc": 251}
    assert data.description["short_classes"] == {"talk.religion.misc": 251}


def test_missing_newsgroups_cache_says_where_to_point(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="SCIKIT_LEARN_DATA or --data-home"):
        load_newsgroups(subset="test", data_home=str(tmp_path))


# --- CSV / JSONL ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["posts.csv", "posts.jsonl", "posts.json"])
def test_table_formats_load_the_same_posts(tmp_path: Path, name: str) -> None:
    rows = post_rows(4)
    data = load_table(write_table(tmp_path / name, rows))
    assert data.ids == [row["id"] for row in rows]
    assert data.texts == [row["text"] for row in rows]
    assert data.labels == [row["label"] for row in rows]
    assert data.description["size"] == 12


def test_json_array_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "posts.json"
    path.write_text('[{"text": "one", "label": "a"}, {"text": "two", "label": 2}]')
    assert load_table(path).labels == ["a", "2"]


def test_custom_columns_and_ids_from_text_hashes(tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    path.write_text("body,topic\nsame text,a\nother text,b\nsame text,a\n")
    data = load_table(path, text_column="body", label_column="topic")
    assert data.labels == ["a", "b", "a"]
    assert len(data.ids[0]) == 16 and data.ids[2] == f"{data.ids[0]}-2"
    assert load_table(path, text_column="body", label_column="topic").ids == data.ids


def test_multiline_quoted_csv_text_stays_one_post(tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    path.write_text('text,label\n"line one\nline two",a\nplain,b\n')
    assert load_table(path).texts == ["line one\nline two", "plain"]


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "message"),
    [
        ("absent.csv", None, {}, "no such file: .*absent.csv$"),
        ("20news", None, {}, "no such file: .*20news; the built-in dataset is named '20newsgroups'"),
        ("posts.xlsx", "text,label\n", {}, "unknown file type '.xlsx'"),
        ("posts.csv", "body,label\nx,a\ny,b\n", {}, "no text column 'text'; columns present: body, label"),
        ("posts.csv", "text,topic\nx,a\ny,b\n", {}, "no label column 'label'; columns present: text, topic"),
        ("posts.csv", "text,label\nx,a\ny,a\n", {}, "at least two classes"),
        ("posts.csv", "text,label\nx,a\n   ,b\ny,a\n,b\n", {}, "text is empty on lines 3, 5"),
        ("posts.jsonl", '{"text": "x", "label": "a"}\n{"text": 7, "label": "b"}\n', {},
         "text is not a string on lines 2"),
        ("posts.jsonl", '{"text": "x", "label": "a"}\n{"text": "y", "label": null}\n', {},
         "label is missing or not a single value on lines 2"),
        ("posts.jsonl", '{"text": "x", "label": "a"}\n{"text": "y",\n', {}, "line 2: not valid JSON"),
        ("posts.jsonl", '{"text": "x", "label": "a"}\n["y", "b"]\n', {}, "not a JSON object on lines 2"),
        ("posts.csv", "", {}, "posts.csv is empty"),
        ("posts.jsonl", "\n  \n", {}, "posts.jsonl is empty"),
        ("posts.csv", "text,label\n", {}, "posts.csv has a header but no rows"),
        ("posts.json", "[]", {}, "posts.json holds no rows"),
        ("posts.csv", "text,label\nx,a\ny,b\n", {"id_column": "post_id"}, "no id column 'post_id'"),
        ("posts.csv", "id,text,label\n1,x,a\n1,y,b\n", {}, "ids must be unique; repeated: 1"),
    ],
)
def test_unusable_tables_are_refused_clearly(tmp_path: Path, name: str, content: str | None,
                                             kwargs: dict[str, str], message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_table(path, **kwargs)


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    path.write_bytes("text,label\ncaf\xe9,a\n".encode("latin-1"))
    with pytest.raises(DatasetError, match="not UTF-8"):
        load_table(path)


def test_long_error_lists_are_cut(tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    path.write_text("text,label\nx,a\n" + ",b\n" * 12)
    with pytest.raises(DatasetError, match=r"lines 3, 4, .*, 12 and 2 more"):
        load_table(path)


# --- splits and sampling ----------------------------------------------------------------------

def test_split_is_stratified_and_seeded(tmp_path: Path) -> None:
    data = load_table(write_table(tmp_path / "p.csv", post_rows(20)))
    train, test = split(data, 0.25, seed=3)
    assert Counter(test.labels) == {"space": 5, "medicine": 5, "crypto": 5}
    assert set(train.ids).isdisjoint(test.ids) and len(train) + len(test) == len(data)
    assert split(data, 0.25, seed=3)[1].ids == test.ids
    assert split(data, 0.25, seed=4)[1].ids != test.ids


def test_split_too_small_for_stratification_is_a_dataset_error(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("text,label\nx,a\ny,b\nz,b\nw,b\n")
    with pytest.raises(DatasetError, match=r"p.csv: too few posts for a 0.5 test split: "
                                           r"each class needs at least 2; posts per class: a 1, b 3"):
        split(load_table(path), 0.5, seed=0)


def test_sample_per_class_keeps_order_and_is_seeded(tmp_path: Path) -> None:
    data = load_table(write_table(tmp_path / "p.csv", post_rows(20)))
    sample = sample_per_class(data, 4, seed=0)
    assert sample.class_counts() == {"crypto": 4, "medicine": 4, "space": 4}
    positions = [data.ids.index(i) for i in sample.ids]
    assert positions == sorted(positions)
    assert sample_per_class(data, 4, seed=0).ids == sample.ids


@pytest.mark.parametrize(("classes", "fractions", "needed"),
                         [(2, (0.5,), 2), (2, (0.2,), 3), (4, (0.15,), 6), (2, (0.2, 0.15), 5)])
def test_posts_per_class_needed_is_the_smallest_that_splits(classes: int, fractions: tuple[float, ...],
                                                            needed: int) -> None:
    assert posts_per_class_needed(classes, fractions) == needed
    labels = [str(c) for c in range(classes)]
    enough = Dataset([], [], labels * needed)
    require_posts_for(enough, fractions, seed=0, purpose="to train")
    with pytest.raises(DatasetError, match=f"each class needs at least {needed}"):
        require_posts_for(Dataset([], [], labels * (needed - 1)), fractions, seed=0, purpose="to train")
