"""One rule for an id sent more than once, whatever the batch boundaries: a `done` row is final;
until an id has one, the latest outcome is kept. A result not kept is handed back (counted and
logged by the worker), never silently counted done."""

from __future__ import annotations

from shared.database.results import ResultRow, Status, query_results, write_rows


def _row(post_id: str, status: Status = Status.DONE, label: str | None = "a") -> ResultRow:
    return ResultRow(post_id=post_id, model_name="topics", model_version=1, status=status,
                     label=label if status == Status.DONE else None)


def _stored(db_url: str) -> dict[str, tuple[str, str | None]]:
    return {r["post_id"]: (r["status"], r["label"]) for r in query_results(db_url, limit=0)}


def test_in_one_batch_the_first_done_row_of_an_id_is_kept(db_url: str) -> None:
    first, second = _row("p", label="first"), _row("p", label="second")
    repeats = write_rows(db_url, [first, second, _row("q", Status.REJECTED), _row("q", label="q-done"),
                                  _row("r", label="r-done"), _row("r", Status.FAILED)])
    assert _stored(db_url) == {"p": ("done", "first"), "q": ("done", "q-done"), "r": ("done", "r-done")}
    assert [(row.post_id, row.label, row.status) for row in repeats] == [
        ("p", "second", "done"), ("r", None, "failed")]


def test_across_batches_a_done_row_is_final_and_the_repeat_is_handed_back(db_url: str) -> None:
    assert write_rows(db_url, [_row("p", label="first"), _row("q", Status.REJECTED)]) == []
    repeats = write_rows(db_url, [_row("p", label="second"), _row("q", label="now-done")])
    assert _stored(db_url) == {"p": ("done", "first"), "q": ("done", "now-done")}
    assert [(row.post_id, row.label) for row in repeats] == [("p", "second")]
    assert write_rows(db_url, [_row("q", Status.FAILED)]) != []  # done stays done
    assert _stored(db_url)["q"] == ("done", "now-done")
