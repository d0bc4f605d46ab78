"""Errors in post files point at a line, as a person opens the file in an editor."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import DatasetError
from shared.post_files import read_post_file


def test_text_that_is_not_utf8_is_named_by_its_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"id": "a", "text": "ok"}\n{"id": "b", "text": "ok"}\n{"id": "c", "text": "caf\xe9"}\n')
    with pytest.raises(DatasetError) as error:
        read_post_file(path)
    assert str(error.value) == f"{path}, line 3: not UTF-8 text (invalid continuation byte)"
