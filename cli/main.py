"""The `topicq` command: one group, the composition root above trainer/ and worker/.

The verbs of one noun share a module of this package (cli/queueing.py, cli/results.py,
cli/training.py, cli/models.py, cli/operations.py, ...; the table below), loaded lazily:
that keeps `topicq --help` and light verbs fast: TensorFlow and torch are imported only
by the verbs that need them.
"""

from __future__ import annotations

import copy
import functools
import importlib
import logging
import sys
import traceback
from typing import Any

import click

from cli.errors import describe
from cli.safe_output import printable

# verb -> "module:attribute"; one module per noun
COMMANDS = {
    "enqueue": "cli.queueing:enqueue",
    "backfill": "cli.queueing:backfill",
    "retry-failed": "cli.queueing:retry_failed",
    "dead-letters": "cli.dead_letters:dead_letters_command",
    "results": "cli.results:results",
    "stats": "cli.results:stats",
    "train": "cli.training:train",
    "evaluate": "cli.training:evaluate",
    "models": "cli.models:models",
    "compare": "cli.models:compare",
    "promote": "cli.models:promote",
    "rollback": "cli.models:rollback",
    "drift": "cli.drift:drift",
    "review": "cli.review:review",
    "worker": "cli.operations:worker",
    "health": "cli.operations:health",
    "status": "cli.operations:status",
    "migrate": "cli.operations:migrate",
    "demo": "cli.demo:demo",
}

# Verbs that use the database: the group brings its schema up to date before they run. (`worker` does it
# itself: a database down at start is waited for there, not an exit.)
USES_DATABASE = {"train", "evaluate", "models", "promote", "rollback", "backfill", "results",
                 "stats", "drift", "retry-failed", "demo", "compare"}
# Those that only read refuse a database that is not there rather than create an empty one (a
# mistyped DATABASE_URL would answer "no rows"); the others may create it (a SQLite file and its folder).
READS_ONLY = {"models", "results", "stats", "drift", "compare"}


def _schema_first(command: click.Command, *, create: bool) -> click.Command:
    """`command`, running `ensure_schema` after its arguments are parsed (so `--help` needs no database)."""
    run = command.callback
    if run is None:
        return command

    @functools.wraps(run)
    def with_schema(*args: Any, **kwargs: Any) -> Any:
        from shared.database.migrate import ensure_schema
        from shared.settings import get_settings

        ensure_schema(get_settings().db_url, create=create)
        return run(*args, **kwargs)

    wrapped = copy.copy(command)
    wrapped.callback = with_schema
    return wrapped


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                return None  # verb not built in this installation
            raise
        command = getattr(module, attribute, None)
        if not isinstance(command, click.Command):
            return None
        if cmd_name not in USES_DATABASE:
            return command
        return _schema_first(command, create=cmd_name not in READS_ONLY)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            # Errors a user can fix get one clear line (the traceback with -v); bugs keep theirs.
            line = describe(exc)
            if line is None:
                raise
            if ctx.params.get("verbose"):
                traceback.print_exc()
            click.echo(f"error: {printable(line)}", err=True)
            sys.exit(2)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages; show tracebacks of errors.")
def main(verbose: bool) -> None:
    """topicq: classify streams of text posts by topic with embeddings.

    \b
    Examples:
      topicq train --dataset 20newsgroups --groups sci --per-class 100 --promote
      topicq worker
      topicq enqueue posts.jsonl
      topicq results --label sci.space --format csv
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:  # library chatter that says nothing to a user
        for noisy in ("alembic", "sentence_transformers", "httpx", "google_genai"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


if __name__ == "__main__":
    main()
