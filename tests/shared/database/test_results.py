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


def test_every_field_is_stored_as_given_on_both_databases(db_url: str) -> None:
    """PostgreSQL writes by column arrays, SQLite by rows: both must store the same values."""
    from datetime import UTC, datetime, timedelta, timezone

    from sqlalchemy import select

    from shared.database.connection import session_scope
    from shared.database.tables import Result

    received = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone(timedelta(hours=2)))
    full = ResultRow(post_id="full", model_name="topics", model_version=3, status=Status.DONE, label="a",
                     score=0.75, scores={"a": 0.75, "b": 0.25}, embedder_id="local:x", attempts=2,
                     metadata={"source": "crm", "n": [1, 2]}, text="kept text", received_at=received,
                     processed_at=datetime(2026, 1, 2, 1, 5, tzinfo=UTC), batch_id="b1", needs_review=True,
                     review_reason="low_confidence,off_topic", margin=0.5, domain_score=1.25, shadow=True)
    bare = ResultRow(post_id="bare", model_name="topics", model_version=3, status=Status.REJECTED,
                     error="too long", processed_at=datetime(2026, 1, 3, tzinfo=UTC))
    assert write_rows(db_url, [full, bare]) == []
    with session_scope(db_url) as session:
        stored = {r.post_id: r for r in session.scalars(select(Result))}
    for row in (full, bare):
        got = stored[row.post_id]
        assert (got.model_name, got.model_version, got.status, got.label, got.score, got.scores,
                got.embedder_id, got.error, got.attempts, got.post_metadata, got.text, got.batch_id,
                got.needs_review, got.review_reason, got.margin, got.domain_score, got.shadow) == (
            row.model_name, row.model_version, row.status.value, row.label, row.score, row.scores,
            row.embedder_id, row.error, row.attempts, row.metadata, row.text, row.batch_id,
            row.needs_review, row.review_reason, row.margin, row.domain_score, row.shadow)
        assert got.processed_at == row.processed_at
        assert got.received_at == row.received_at
