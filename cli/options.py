"""Option parsers shared by the verbs of trainer/ and worker/, so one spelling works everywhere."""

from __future__ import annotations

from datetime import UTC, datetime

import click


def split_words(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """--groups sci --groups rec.autos and --groups sci,rec.autos mean the same."""
    return tuple(word.strip() for value in values for word in value.split(",") if word.strip())


class Timestamp(click.ParamType):
    """An ISO 8601 time (2026-11-30T14:21:00Z, +01:00, or no zone = UTC) or a date (2026-11-30)."""

    name = "TIME"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(f"expected an ISO 8601 time like 2026-11-30T14:21:00Z or a date like 2026-11-30, "
                      f"got {value!r}", param, ctx)
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
