"""Given values PostgreSQL refuses, when they reach the worker, then they are refused or recorded —
never a batch write that fails the same way on every redelivery."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from shared.database.connection import session_scope
from shared.database.results import DONE, REJECTED, ResultRow, write_rows
from shared.database.tables import Result
from shared.wire.payload import parse_post

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("raw", "reason"), [
    ({"id": "p", "text": "rocket\x00orbit"}, "text: contains a NUL character"),
    ({"id": "p", "text": "orbit \ud800"}, "text: is not valid Unicode"),
    ({"id": "p", "text": "orbit", "metadata": {"score": float("nan")}}, "metadata: NaN and Infinity"),
    ({"id": "p", "text": "orbit", "metadata": {"k": "\udfff"}}, "metadata: a string is not valid Unicode"),
])
def test_unstorable_posts_are_refused_with_their_id(raw: dict, reason: str) -> None:
    with pytest.raises(Exception, match=reason) as caught:
        parse_post(raw, max_text_chars=100)
    assert caught.value.post_id == "p"


@pytest.mark.parametrize("bad_id", ["p\x00", "p\ud834"])
def test_an_id_that_cannot_be_stored_is_not_usable(bad_id: str) -> None:
    with pytest.raises(Exception, match="id: ") as caught:
        parse_post({"id": bad_id, "text": "orbit"}, max_text_chars=100)
    assert caught.value.post_id is None


def test_a_row_the_database_refuses_is_recorded_rejected_and_its_batch_written(postgres_url: str) -> None:
    deep: dict = {}
    node = deep
    for _ in range(2000):
        node["a"] = node = {}
    rows = [ResultRow(post_id=f"ok-{i}", model_name="m", model_version=1, status=DONE) for i in range(3)]
    rows += [
        ResultRow(post_id="nan", model_name="m", model_version=1, status=DONE, metadata={"x": float("nan")}),
        ResultRow(post_id="nul", model_name="m", model_version=1, status="failed", text="a\x00b"),
        ResultRow(post_id="deep", model_name="m", model_version=1, status=DONE, metadata=deep),
        ResultRow(post_id="bad\x00id", model_name="m", model_version=1, status=DONE),
        ResultRow(post_id="bad\ud800id", model_name="m", model_version=1, status=DONE),
    ]
    write_rows(postgres_url, rows)
    with session_scope(postgres_url) as session:
        stored = {r.post_id: (r.status, r.error) for r in session.scalars(select(Result))}
    assert {pid: s for pid, (s, _) in stored.items()} == {
        "ok-0": DONE, "ok-1": DONE, "ok-2": DONE, "nan": REJECTED, "nul": REJECTED, "deep": REJECTED}
    assert all(error.startswith("the result could not be stored") for s, error in stored.values() if s == REJECTED)
