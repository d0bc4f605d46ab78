"""Metadata PostgreSQL can store and query: no NUL character in keys or values (stored, it breaks
`metadata->>'x'` for every query reaching the row) and no more than MAX_METADATA_BYTES of JSON.
Workers record such posts `rejected` with the reason; producers refuse them before sending."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import sqlalchemy as sa

from shared.database.results import query_results
from shared.errors import InvalidPostError
from shared.model.embedders.fake import FakeEmbedder
from shared.settings import Settings
from shared.wire.payload import parse_post, storable_metadata
from shared.wire.producer import Producer
from testkit.drills.fuzz_cases import BUILDERS, MAX_TEXT_CHARS
from testkit.factories import register_fake_model
from testkit.in_process import make_settings, server_for
from worker.pipeline import process

BIG = {"blob": "x" * 70_000}  # over the 64 KiB default


@pytest.mark.parametrize("metadata", [{"k": "a\x00b"}, {"a\x00": 1}, {"deep": [{"k": ["\x00"]}]}])
def test_a_nul_character_in_metadata_is_refused(metadata: dict) -> None:
    with pytest.raises(InvalidPostError, match="metadata: .*NUL") as caught:
        parse_post({"id": "p", "text": "orbit", "metadata": metadata}, max_text_chars=100)
    assert caught.value.post_id == "p"
    assert storable_metadata(metadata) is None  # nor kept on its rejected row


def test_metadata_larger_than_the_limit_is_refused() -> None:
    assert Settings().max_metadata_bytes == 64 * 1024
    with pytest.raises(InvalidPostError, match="MAX_METADATA_BYTES") as caught:
        parse_post({"id": "p", "text": "orbit", "metadata": BIG}, max_text_chars=100)
    assert caught.value.post_id == "p"
    small = {"k": "é" * 400}  # 800 bytes of UTF-8, 400 characters
    with pytest.raises(InvalidPostError, match="MAX_METADATA_BYTES"):
        parse_post({"id": "p", "text": "orbit", "metadata": small}, max_text_chars=100, max_metadata_bytes=600)
    parse_post({"id": "p", "text": "orbit", "metadata": small}, max_text_chars=100, max_metadata_bytes=1000)
    assert storable_metadata(BIG) is None


def test_producers_refuse_them_before_sending(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_METADATA_BYTES", "1000")
    producer = Producer(Settings())
    try:
        with pytest.raises(InvalidPostError, match="MAX_METADATA_BYTES"):
            producer.validate("p", "orbit", {"k": "x" * 2000})
        with pytest.raises(InvalidPostError, match="NUL"):
            producer.validate("p", "orbit", {"k": "a\x00"})
        assert producer.validate("p", "orbit", {"k": "x" * 500}).metadata == {"k": "x" * 500}
    finally:
        producer.close()


def test_workers_record_them_rejected_and_every_row_stays_queryable(postgres_url: str, tmp_path: Path) -> None:
    settings = make_settings(postgres_url, tmp_path)
    register_fake_model(postgres_url, settings.models_path)
    payloads = [
        {"id": "ok", "text": "rocket launch orbit", "metadata": {"x": "fine"}},
        {"id": "nul-value", "text": "rocket launch orbit", "metadata": {"x": "a\x00b"}},
        {"id": "nul-key", "text": "rocket launch orbit", "metadata": {"x\x00": "a"}},
        {"id": "big", "text": "rocket launch orbit", "metadata": BIG},
    ]
    report = process(payloads, settings=settings, models=server_for(settings, FakeEmbedder()))
    assert report.retry == []
    rows = {r["post_id"]: r for r in query_results(postgres_url)}
    assert rows["ok"]["status"] == "done"
    for post_id in ("nul-value", "nul-key"):
        assert rows[post_id]["status"] == "rejected" and "NUL" in rows[post_id]["error"]
    assert rows["big"]["status"] == "rejected" and "MAX_METADATA_BYTES" in rows["big"]["error"]
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            found = dict(connection.execute(sa.text(
                "SELECT post_id, metadata::jsonb ->> 'x' FROM results ORDER BY post_id")).all())
            sizes = connection.execute(sa.text(
                "SELECT max(octet_length(metadata::text)) FROM results")).scalar_one()
    finally:
        engine.dispose()
    assert found == {"ok": "fine", "nul-value": None, "nul-key": None, "big": None}
    assert sizes < 1000


@pytest.mark.parametrize("kind", ["metadata-nul-value", "metadata-nul-key", "metadata-too-large"])
def test_the_fuzz_drills_metadata_cases_are_rejected(kind: str) -> None:
    [builder] = [b for b in BUILDERS if b(0, random.Random(0)).kind == kind]
    case = builder(5, random.Random(5))
    with pytest.raises(InvalidPostError) as caught:
        parse_post(case.kwargs, max_text_chars=MAX_TEXT_CHARS)
    assert caught.value.post_id == case.post_id and case.expect == "rejected"
