"""Which posts to train and evaluate on, as one value shared by the CLI and the runs.

20 Newsgroups: the `train` subset trains and the `test` subset evaluates
(the canonical by-date split). A file: a stratified split by `test_size`.
`per_class` samples the training posts, `test_per_class` the test posts.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import DatasetError
from shared.model.classifier import VALIDATION_SPLIT
from trainer.datasets import (
    NEWSGROUPS,
    Dataset,
    load_newsgroups,
    load_table,
    require_posts_for,
    sample_per_class,
    split,
)

DEFAULT_TEST_SIZE = 0.2  # a file's share held out for evaluation


@dataclass(frozen=True)
class DataSpec:
    dataset: str = NEWSGROUPS  # "20newsgroups" or a .csv/.jsonl path
    groups: tuple[str, ...] = ()
    per_class: int | None = None
    test_per_class: int | None = None
    test_size: float | None = None  # files only; None: DEFAULT_TEST_SIZE to train, whole file to evaluate
    text_column: str = "text"
    label_column: str = "label"
    id_column: str | None = "id"
    data_home: str | None = None
    seed: int = 0

    @property
    def is_newsgroups(self) -> bool:
        return self.dataset == NEWSGROUPS

    def _newsgroups(self, subset: str, per_class: int | None, groups: tuple[str, ...]) -> Dataset:
        return load_newsgroups(groups=groups, subset=subset,  # type: ignore[arg-type]
                               data_home=self.data_home, per_class=per_class, seed=self.seed)

    def _sample(self, data: Dataset, per_class: int | None) -> Dataset:
        return data if per_class is None else sample_per_class(data, per_class, self.seed)

    def _table(self) -> Dataset:
        return load_table(self.dataset, text_column=self.text_column,
                          label_column=self.label_column, id_column=self.id_column)

    def training_sets(self) -> tuple[Dataset, Dataset, list[str]]:
        """(train, test, unlabeled) posts for a training run, the data read once; refused up front
        when too few to train on. `unlabeled` are the texts of the training side that `per_class`
        left out (for self-training): never a test post."""
        if self.is_newsgroups:
            training_side = self._newsgroups("train", None, self.groups)
            test = self._newsgroups("test", self.test_per_class, self.groups)
        else:
            data = self._table()
            test_size = self.test_size or DEFAULT_TEST_SIZE
            require_posts_for(data, (test_size, VALIDATION_SPLIT), self.seed, "to train",
                              f"a {test_size:g} test split, then a {VALIDATION_SPLIT:g} validation split")
            training_side, test = split(data, test_size, self.seed)
            test = self._sample(test, self.test_per_class)
        train = self._sample(training_side, self.per_class)
        # The classifier holds out a stratified share of its training posts to stop early.
        purpose = f"to train with --per-class {self.per_class}" if self.per_class else "to train"
        require_posts_for(train, (VALIDATION_SPLIT,), self.seed, purpose,
                          f"a {VALIDATION_SPLIT:g} validation split")
        chosen = set(train.ids)
        unlabeled = [text for post_id, text in zip(training_side.ids, training_side.texts, strict=True)
                     if post_id not in chosen]
        return train, test, unlabeled

    def evaluation_set(self, known_labels: list[str]) -> Dataset:
        """Posts to evaluate a trained model on.

        20 Newsgroups: its test subset, by default of the groups the model knows.
        A file: the whole file, or with `test_size` the same held-out part a
        training run with that seed used.
        """
        if self.is_newsgroups:
            data = self._newsgroups("test", None, self.groups)
            if not self.groups:
                known = set(known_labels)
                data = data.take([i for i, label in enumerate(data.labels) if label in known],
                                 groups=sorted(known & set(data.labels)))
                if not len(data):
                    raise DatasetError(f"the model's labels ({', '.join(known_labels)}) are not "
                                       "20 Newsgroups groups; name the dataset to evaluate on")
        else:
            data = self._table()
            if self.test_size is not None:
                data = split(data, self.test_size, self.seed)[1]
        return self._sample(data, self.test_per_class)
