"""The post payload: what producers send and what workers accept.

Message body (JSON, Celery task `topicq.classify`, queue `topicq`), kwargs:
    {"id": "p-1", "text": "...", "metadata": {...}}      metadata optional (null = none)
Any other field is refused. How often a post was delivered is not part of the
payload: workers keep it in a message header (shared/wire/envelope.py, ATTEMPT_HEADER).

Everything accepted here must be storable as it is: PostgreSQL refuses NUL
characters in text columns and NaN/Infinity in JSON, and no database driver
encodes a lone UTF-16 surrogate (JSON's "\ud800"). A post carrying them would
fail its whole batch's write again on every redelivery, so it is refused here.
Metadata must also stay queryable: a NUL in a key or value is stored in the json
column as "\u0000", after which `metadata->>'x'` and `metadata::jsonb` fail for every
query reaching the row; and it is bounded, MAX_METADATA_BYTES of compact UTF-8 JSON
(64 KiB by default), so no post can fill the table. Producers (shared/wire/producer.py)
validate with this same code.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from shared.errors import InvalidPostError

MAX_ID_CHARS = 200
# Deeper metadata is refused: nobody queries it, and JSON encoders recurse once per level.
MAX_METADATA_DEPTH = 32
# The default of the MAX_METADATA_BYTES setting (shared/settings.py): metadata is for filtering and
# joining results, not for carrying documents.
MAX_METADATA_BYTES = 64 * 1024


def unstorable(value: str) -> str | None:
    """Why a string cannot be stored as it is (NUL, lone surrogate), or None."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (lone surrogate)"
    return None


def storable_metadata(value: Any, max_bytes: int = MAX_METADATA_BYTES) -> dict[str, Any] | None:
    """`value` when it is metadata a result row can hold, else None (kept off rejected rows)."""
    if not isinstance(value, dict):
        return None
    try:
        _check_json(value)
    except ValueError:
        return None
    return value if metadata_bytes(value) <= max_bytes else None


def metadata_bytes(value: dict[str, Any]) -> int:
    """The size of `value` as compact UTF-8 JSON, the measure of MAX_METADATA_BYTES."""
    if not value:
        return 0
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return len(text.encode("utf-8", "surrogatepass"))


def _check_json(value: Any) -> None:
    """Raise ValueError for metadata no database can store: NaN/Infinity, lone surrogates, deep nesting."""
    stack = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if level > MAX_METADATA_DEPTH:
            raise ValueError(f"nested deeper than {MAX_METADATA_DEPTH} levels")
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("NaN and Infinity are not JSON")
        if isinstance(item, str) and (reason := unstorable(item)):
            raise ValueError(f"a string {reason}")  # keys included
        if isinstance(item, dict):
            for key, child in item.items():
                stack.append((str(key), level + 1))
                stack.append((child, level + 1))
        elif isinstance(item, list | tuple):
            stack.extend((child, level + 1) for child in item)


class Post(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    # Deliveries before this one; set by the worker from the message header, never from the payload.
    _attempt: int = PrivateAttr(default=0)

    @property
    def attempt(self) -> int:
        return self._attempt

    def delivered(self, attempt: int) -> Post:
        """This post as delivered for the `attempt`-th time before (0 = first delivery)."""
        copy = self.model_copy()
        copy._attempt = attempt
        return copy

    @field_validator("id", mode="before")
    @classmethod
    def _id_from_int(cls, value: Any) -> Any:
        # Numeric ids from other languages are fine; everything else must be a string.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise ValueError(f"must be a string, got {type(value).__name__}")
        if reason := unstorable(value):
            raise ValueError(reason)
        return value

    @field_validator("text", mode="before")
    @classmethod
    def _text_is_string(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError(f"must be a string, got {type(value).__name__}")
        if not value.strip():
            raise ValueError("is empty")
        if reason := unstorable(value):
            raise ValueError(reason)
        return value

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata_is_storable(cls, value: Any) -> Any:
        if value is None:  # JSON null: no metadata
            return {}
        if isinstance(value, dict):
            _check_json(value)
        return value

    def to_message(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "text": self.text}
        if self.metadata:
            body["metadata"] = self.metadata
        return body


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "payload"
        message = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def guess_id(raw: Any) -> str | None:
    """The post id of a payload that failed validation, when it has a usable one."""
    if isinstance(raw, dict):
        value = raw.get("id")
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS and not unstorable(value):
            return value
    return None


def parse_post(raw: Any, *, max_text_chars: int, max_metadata_bytes: int = MAX_METADATA_BYTES,
               attempt: int = 0) -> Post:
    """Validate one payload; InvalidPostError (with the id when known) says what is wrong."""
    if not isinstance(raw, dict):
        raise InvalidPostError(f"payload must be a JSON object, got {type(raw).__name__}")
    try:
        post = Post.model_validate(raw)
    except ValidationError as exc:
        raise InvalidPostError(f"invalid post: {_describe(exc)}", post_id=guess_id(raw)) from None
    if len(post.text) > max_text_chars:
        raise InvalidPostError(
            f"invalid post: text has {len(post.text):,} characters, more than MAX_TEXT_CHARS "
            f"({max_text_chars:,})",
            post_id=post.id,
        )
    if (size := metadata_bytes(post.metadata)) > max_metadata_bytes:
        raise InvalidPostError(
            f"invalid post: metadata has {size:,} bytes of JSON, more than MAX_METADATA_BYTES "
            f"({max_metadata_bytes:,})",
            post_id=post.id,
        )
    return post.delivered(attempt) if attempt else post


def payload_from_call(args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> Any:
    """The payload of a task call: kwargs, a single dict argument, or (id, text)."""
    if kwargs:
        return kwargs
    if len(args) == 1:
        return args[0]
    if len(args) == 2:
        return {"id": args[0], "text": args[1]}
    return {"args": list(args)}
