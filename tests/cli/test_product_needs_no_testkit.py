"""The installed product runs without testkit (tests/test_import_layers.py holds that no product module
imports it): the demo's worker process is cli/worker_process.py; the fake Gemini server is a test tool."""

from __future__ import annotations

from click.testing import CliRunner

from cli.main import main


def test_the_fake_gemini_server_is_no_verb() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0 and "fake-gemini" not in result.output
