"""Every `topicq ...` line of the README's ```bash blocks runs, in the README's order, against
PostgreSQL, Redis db 13 and models on the fake embedder: exit 0 (or the documented non-zero), no
traceback. The few lines that need the 20 Newsgroups download, a Gemini key, or run until stopped
are replaced by a small equivalent or skipped, each for the reason given in SUBSTITUTES / SKIPPED."""

from __future__ import annotations

import re
import shlex
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main
from shared.database.results import DONE, ResultRow, write_rows
from shared.model import registry
from shared.settings import get_settings
from testkit.factories import labelled_posts, register_fake_model
from testkit.worker_process import worker_env

README = Path(__file__).resolve().parents[2] / "README.md"
FAST = "--embedder fake --hidden 32 --epochs 5"
POSTS = "--dataset posts.csv --text-column body --label-column topic"

# README line (as written, comment removed) -> the line run instead, and why.
SUBSTITUTES = {
    # 20 Newsgroups would be embedded by the local encoder: the same verb on a small file, fake embedder.
    "topicq train --dataset 20newsgroups --groups sci --per-class 100 --seed 0 --promote":
        f"topicq train {POSTS} {FAST} --seed 0 --promote",
    "topicq evaluate topics:1 --dataset 20newsgroups": f"topicq evaluate topics:1 {POSTS}",
    "topicq train --dataset 20newsgroups --groups sci --per-class 100 --with-corrections":
        f"topicq train {POSTS} {FAST} --with-corrections",
}
SKIPPED = {
    # Tunes the torch encoder for minutes; tests/trainer/test_finetune.py covers it.
    "topicq train --dataset 20newsgroups --groups sci --per-class 100 --finetune",
    # Needs a Gemini API key; tests/integration/test_gemini_worker.py trains on the fake Gemini server.
    "topicq train --dataset 20newsgroups --groups sci --per-class 100 --embedder gemini --promote",
    # Run until stopped (a worker, a live view); the workers' tests start them as processes.
    "topicq worker",
    "topicq status",
}
# Documented non-zero exits: drift found (3); health with no worker on this host (1).
ALLOWED_EXIT = {"drift": {0, 3}, "health": {0, 1}}


def readme_lines() -> list[str]:
    """The `topicq ...` lines of the README's bash blocks, without their comments."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.DOTALL):
        for line in block.splitlines():
            line = line.strip()
            if line.startswith("topicq "):
                lines.append(re.sub(r"\s+#.*$", "", line).strip())
    return lines


@pytest.fixture
def readme_world(postgres_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """topics:1-4 on the fake embedder (1 in production), rows of each on the same posts, flagged for
    review with their text, and posts.csv; the commands run in tmp_path."""
    for key, value in worker_env(postgres_url, redis_url, tmp_path).items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    models = get_settings().models_path
    for seed in range(4):
        register_fake_model(postgres_url, models, promote=seed == 0, seed=0)
    posts = labelled_posts(4, seed=7)
    now = datetime.now(UTC)
    write_rows(postgres_url, [
        ResultRow(post_id=post_id, model_name="topics", model_version=version, status=DONE, label=topic,
                  score=0.55, scores={topic: 0.55, "other": 0.45}, needs_review=True,
                  review_reason="low_margin", margin=0.1, text=text, processed_at=now)
        for version in (1, 2, 3, 4) for post_id, text, topic in posts])
    with (tmp_path / "posts.csv").open("w") as handle:
        handle.write("id,body,topic\n")
        handle.writelines(f"{i},{text},{topic}\n" for i, text, topic in labelled_posts(12, seed=3))
    monkeypatch.chdir(tmp_path)
    assert registry.resolve(postgres_url, name="topics") == 1
    return tmp_path


def run(line: str, cwd: Path) -> tuple[int, str]:
    """Run one README line in-process; `> FILE` writes stdout to FILE as the shell would."""
    words = shlex.split(line)
    target = None
    if ">" in words:
        at = words.index(">")
        words, target = words[:at], words[at + 1]
    result = CliRunner().invoke(main, words[1:])
    if target is not None:
        (cwd / target).write_text(result.stdout)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        detail = "".join(traceback.format_exception(result.exception))
        pytest.fail(f"{line!r} raised:\n{detail}")
    return result.exit_code, result.output


def test_the_lists_of_substituted_and_skipped_lines_match_the_readme() -> None:
    lines = set(readme_lines())
    assert SUBSTITUTES.keys() <= lines and lines >= SKIPPED, "a README line changed: update these lists"


def test_every_readme_command_runs(readme_world: Path) -> None:
    ran = []
    for line in readme_lines():
        if line in SKIPPED:
            continue
        command = SUBSTITUTES.get(line, line)
        code, output = run(command, readme_world)
        assert "Traceback" not in output, (command, output)
        allowed = ALLOWED_EXIT.get(shlex.split(command)[1], {0})
        assert code in allowed, f"{command!r} exited {code}:\n{output}"
        ran.append(command)
    assert len(ran) >= 30
