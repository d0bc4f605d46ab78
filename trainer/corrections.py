"""Corrected posts (`topicq review import`) joining a training set: `topicq train --with-corrections`.

A corrected post joins the training posts, never the test posts: one that is
a test post (same id, or the same text after preprocessing) is left out, so
the test figures stay honest. A corrected post that already is a training
post takes the corrected label. Posts whose text was not kept, or whose label
the training posts do not have, are left out and counted.
"""

from __future__ import annotations

from typing import Any

from shared.improvement.corrections import CorrectedPost
from shared.model.preprocess import preprocess
from trainer.datasets import Dataset


def add_corrections(train: Dataset, test: Dataset,
                    corrected: list[CorrectedPost]) -> tuple[Dataset, dict[str, Any]]:
    """`train` with the corrected posts in it, and what happened to them (for model.json and the card)."""
    test_ids, test_texts = set(test.ids), {preprocess(text) for text in test.texts}
    classes = set(train.classes)
    position = {post_id: i for i, post_id in enumerate(train.ids)}
    ids, texts, labels = list(train.ids), list(train.texts), list(train.labels)
    counts = {"added": 0, "relabelled": 0, "left_out_test": 0, "left_out_no_text": 0,
              "left_out_unknown_label": 0}
    for post in corrected:
        if not post.text:
            counts["left_out_no_text"] += 1
        elif post.label not in classes:
            counts["left_out_unknown_label"] += 1
        elif post.post_id in test_ids or preprocess(post.text) in test_texts:
            counts["left_out_test"] += 1
        elif post.post_id in position:
            labels[position[post.post_id]] = post.label
            counts["relabelled"] += 1
        else:
            position[post.post_id] = len(ids)
            ids.append(post.post_id)
            texts.append(post.text)
            labels.append(post.label)
            counts["added"] += 1
    summary: dict[str, Any] = {"corrections": len(corrected), **counts}
    if corrected:
        summary["first"] = min(p.created_at for p in corrected).isoformat()
        summary["last"] = max(p.created_at for p in corrected).isoformat()
    merged = Dataset(ids, texts, labels, {**train.description, "corrections": summary})
    return merged.take(range(len(merged))), summary
