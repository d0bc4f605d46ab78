"""The post payload: what producers send and what workers accept.

Message body (JSON, Celery task `topicq.classify`, queue `topicq`), kwargs:
    {"id": "p-1", "text": "...", "metadata": {...}}      metadata optional
`attempt` is added by workers when they send a post again after a transient failure.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.errors import InvalidPostError

MAX_ID_CHARS = 200


class Post(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    attempt: int = Field(default=0, ge=0)

    @field_validator("id", mode="before")
    @classmethod
    def _id_from_int(cls, value: Any) -> Any:
        # Numeric ids from other languages are fine; everything else must be a string.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise ValueError(f"must be a string, got {type(value).__name__}")
        return value

    @field_validator("text", mode="before")
    @classmethod
    def _text_is_string(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError(f"must be a string, got {type(value).__name__}")
        if not value.strip():
            raise ValueError("is empty")
        return value

    def to_message(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "text": self.text}
        if self.metadata:
            body["metadata"] = self.metadata
        if self.attempt:
            body["attempt"] = self.attempt
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
        if isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS:
            return value
    return None


def parse_post(raw: Any, *, max_text_chars: int) -> Post:
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
    return post


def payload_from_call(args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> Any:
    """The payload of a task call: kwargs, a single dict argument, or (id, text)."""
    if kwargs:
        return kwargs
    if len(args) == 1:
        return args[0]
    if len(args) == 2:
        return {"id": args[0], "text": args[1]}
    return {"args": list(args)}
