"""Option parsers shared by the verbs, so one spelling works everywhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click


def model_name(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """A model NAME, or the NAME of NAME:VERSION / NAME:ALIAS, must be a plain name (it names a folder)."""
    if value is not None:
        from shared.errors import ModelError
        from shared.settings import model_name_problem

        name = value.partition(":")[0]
        problem = model_name_problem(name)
        if problem:
            raise ModelError(f"model name {name!r} cannot be used: it {problem}")
    return value


def model_ref(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """NAME or NAME:VERSION with a whole-number VERSION; anything else is a usage error."""
    if value is not None:
        _, colon, version = value.partition(":")
        if colon and not version.isdigit():
            raise click.BadParameter(f"expected NAME or NAME:VERSION (a whole number), got {value!r}")
    return value


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


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta | None:
    """10m, 2h, 1d, 1w, 30s (a whole number and a unit), or None when `text` is not one."""
    text = text.strip().lower()
    number, unit = text[:-1], text[-1:]
    if unit not in DURATION_UNITS or not number.isdigit() or int(number) == 0:
        return None
    return timedelta(seconds=int(number) * DURATION_UNITS[unit])


class Duration(click.ParamType):
    """A length of time: 10m, 1h, 1d."""

    name = "DURATION"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        parsed = parse_duration(str(value))
        if parsed is None:
            self.fail(f"expected a duration like 10m, 1h or 1d, got {value!r}", param, ctx)
        return parsed


class TimeOrAgo(click.ParamType):
    """A time (as Timestamp) or a duration back from now (10m, 1d)."""

    name = "TIME|DURATION"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        ago = parse_duration(str(value))
        if ago is not None:
            return datetime.now(UTC) - ago
        try:
            return Timestamp().convert(value, param, ctx)
        except click.BadParameter:
            self.fail(f"expected a duration back from now like 10m or 1d, or an ISO 8601 time like "
                      f"2026-11-30T14:21:00Z, got {value!r}", param, ctx)
