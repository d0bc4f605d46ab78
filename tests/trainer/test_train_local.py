"""One real training run: the default (int8 onnx) MiniLM embedder on a small 20 Newsgroups sci subset."""

from __future__ import annotations

import pytest

from trainer.train import run_evaluation, run_training


@pytest.mark.slow
def test_local_embedder_learns_the_sci_groups(newsgroups_home: str) -> None:
    result = run_training(dataset="20newsgroups", groups=("sci",), per_class=20, test_per_class=10,
                          data_home=newsgroups_home, embedder="local-onnx", seed=0, progress=False,
                          self_training=1.0)  # not the 2,293 other sci posts: this test embeds for real

    assert result.n_train == 80 and result.metrics["n"] == 40
    assert result.metrics["accuracy"] >= 0.6, result.metrics  # chance is 0.25
    assert result.metrics["macro_f1"] >= 0.55
    assert result.cache_misses == 120

    again = run_evaluation("topics", test_per_class=10, data_home=newsgroups_home, progress=False)
    assert again.metrics["accuracy"] == result.metrics["accuracy"]
    assert (again.cache_hits, again.cache_misses) == (40, 0)
