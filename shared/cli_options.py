"""Option parsers shared by the verbs of trainer/ and worker/, so one spelling works everywhere."""

from __future__ import annotations

import click


def split_words(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """--groups sci --groups rec.autos and --groups sci,rec.autos mean the same."""
    return tuple(word.strip() for value in values for word in value.split(",") if word.strip())
