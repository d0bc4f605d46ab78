"""Two versions compared from their rows and the corrections; the guards' verdicts."""

from __future__ import annotations

from shared.database.results import ResultRow, Status, write_rows
from shared.improvement.comparison import compare_versions, guard_failures
from shared.improvement.corrections import CorrectionInput, store_corrections

# post: (label by version 1, label by version 2)
LABELS = {"p1": ("space", "space"), "p2": ("space", "crypto"), "p3": ("crypto", "crypto"),
          "p4": ("medicine", "medicine")}


def rows(version: int, score: float) -> list[ResultRow]:
    return [ResultRow(post_id=post_id, model_name="topics", model_version=version, status=Status.DONE,
                      label=labels[version - 1], score=score) for post_id, labels in LABELS.items()]


def test_agreement_confusion_confidence_and_reviewed_accuracy(db_url: str) -> None:
    write_rows(db_url, rows(1, 0.8) + rows(2, 0.6))
    write_rows(db_url, [ResultRow(post_id="only-1", model_name="topics", model_version=1, status=Status.DONE,
                                  label="space", score=0.9)])
    store_corrections(db_url, model_name="topics", rows=[
        CorrectionInput(1, "p2", "crypto"), CorrectionInput(2, "p3", "space"), CorrectionInput(3, "only-1", "space")])

    c = compare_versions(db_url, name="topics", a=1, b=2, trained_on={2: {"p3"}})

    assert (c.common, c.agreement) == (4, 0.75)
    assert c.labels == ["crypto", "medicine", "space"]
    assert c.confusion == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]  # rows: version 1's label
    assert c.mean_confidence == {"a": 0.8, "b": 0.6}
    # Version 1: p2 wrong, p3 wrong, only-1 right; version 2: p2 right, p3 left out (trained on it).
    assert (c.reviewed["a"].n, c.reviewed["a"].correct) == (3, 1)
    assert (c.reviewed["b"].n, c.reviewed["b"].correct, c.reviewed["b"].trained_on) == (1, 1, 1)

    assert guard_failures(c, require_agreement=0.75, require_reviewed_accuracy=1.0) == []
    assert guard_failures(c, require_agreement=0.8, require_reviewed_accuracy=None) == [
        "topics:2 agrees with topics:1 on 0.750 of 4 posts, below the required 0.8"]
    alone = compare_versions(db_url, name="topics", a=1, b=2, trained_on={2: {"p2", "p3"}})
    assert guard_failures(alone, require_agreement=None, require_reviewed_accuracy=0.5) == [
        "topics:2 has classified none of the corrected posts it was not trained on (trained on 2 it "
        "classified), so its reviewed accuracy is unknown (required 0.5)"]
