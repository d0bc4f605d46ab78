"""Embedder ids: one place writes and reads them, and the strings stored before stay the same."""

from __future__ import annotations

import pytest

from shared.model.embedders import kind_for_id
from shared.model.embedders.embedder_id import EmbedderId, fake_id, gemini_id, local_id
from shared.model.embedders.fake import FakeEmbedder

STORED = [
    "local:all-MiniLM-L6-v2:384:256",
    "local:all-MiniLM-L6-v2:384:128:onnx-fp32",
    "local:all-MiniLM-L6-v2:384:256:onnx-int8",
    "local:all-MiniLM-L6-v2:384:256:onnx-int8:tuned-0123456789abcdef",
    "gemini:gemini-embedding-001:768:CLASSIFICATION",
    "fake:bow:64",
]


def test_the_ids_written_are_the_strings_stored_before() -> None:
    assert local_id(256) == STORED[0]
    assert local_id(128, "onnx-fp32") == STORED[1]
    assert local_id(256, "onnx-int8", "0123456789abcdef") == STORED[3]
    assert gemini_id("gemini-embedding-001", 768, "CLASSIFICATION") == STORED[4]
    assert fake_id(64) == FakeEmbedder().id == STORED[5]


@pytest.mark.parametrize("text", STORED)
def test_an_id_reads_back_to_itself(text: str) -> None:
    parsed = EmbedderId.parse(text)
    assert parsed is not None and str(parsed) == text


@pytest.mark.parametrize("text", ["local:all-MiniLM-L6-v2:0384:256", "local:x:384:256:onnx-int8:other",
                                  "fake:bow", "gemini:m:768", "other:a:1", ""])
def test_what_is_not_an_id_of_the_format_reads_as_none(text: str) -> None:
    assert EmbedderId.parse(text) is None


def test_the_kind_follows_the_parts() -> None:
    assert kind_for_id(STORED[0]) == ("local", 256)
    assert kind_for_id(STORED[1]) == ("local-onnx-fp32", 128)
    assert kind_for_id(STORED[3]) == ("local-onnx-tuned", 256)
    assert kind_for_id("local:all-MiniLM-L6-v2:384:256:onnx-fp32:tuned-0123456789abcdef") is None
    assert kind_for_id("local:some-other-model:768:512") is None
    assert kind_for_id("fake:bag:64") == ("fake", None) and FakeEmbedder.for_id("fake:bow:32").dim == 32
