"""What a well-formed topicq message on the Redis list is, checked before Celery sees it.

A list entry is a Celery protocol-2 message (README, "Any language"):

    {"body": base64 of JSON [args, kwargs, embed], "content-type": "application/json",
     "content-encoding": "utf-8", "headers": {"task": ..., "id": ..., ...},
     "properties": {"delivery_tag": ..., "body_encoding": "base64", "delivery_info": {...}}}

kombu and Celery assume this shape: a list where an object was expected, a
missing header or an undecodable body raises deep inside the consumer and stops
the worker. `inspect` checks everything they read, with the same decoders, and
says in plain words what is wrong; the transport moves such a message to the
dead-letter list instead of delivering it. What is inside the payload (the
post's id, text and metadata) is the pipeline's to judge: it records those
posts `rejected`.

A protocol-1 message (Celery's `task_protocol = 1`, celery-node's protocol 1:
task, id, args and kwargs in the body) is rewritten as the protocol-2 message
it stands for before it is checked, so its post is taken under its own id.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.wire.payload import guess_id
from shared.wire.protocol import (
    ATTEMPT_HEADER,
    DUE_HEADER,
    MAX_ATTEMPT_HEADER,
    MAX_CLOCK_SKEW_S,
    MAX_STAMP_AGE_S,
    SENT_AT_HEADER,
)

# Deeper JSON than this in a body is refused (metadata allows 32 levels under the post).
MAX_BODY_DEPTH = 40
MAX_ENVELOPE_DEPTH = 6
# Python refuses to turn longer digit strings into an int (sys.int_info); JSON may carry them.
MAX_INT_DIGITS = sys.get_int_max_str_digits() or sys.int_info.default_max_str_digits

_OPTIONAL_STRING_HEADERS = ("root_id", "parent_id", "group", "shadow", "argsrepr", "kwargsrepr", "origin",
                            "lang", "replaced_task_nesting")


class PoisonMessage(Exception):
    """A list entry that is not a well-formed topicq message, and why."""

    def __init__(self, reason: str, post_ids: list[str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.post_ids = post_ids or []  # ids recovered from the body, for `rejected` rows


@dataclass
class Envelope:
    message: dict[str, Any]  # the decoded list entry, as kombu will deliver it
    task: str
    post_ids: list[str] = field(default_factory=list)
    # The producer's send stamp was there but not epoch seconds: removed, counted apart (worker/metrics.py).
    bad_stamp: bool = False
    # When the message may run (epoch seconds): the later of its `eta` and DUE_HEADER; None = now.
    due: float | None = None
    # The decoded body [args, kwargs, embed], as kombu's JSON decoder gives it: the worker need not
    # decode it a second time.
    body: Any = None


def inspect(raw: bytes | str, *, tasks: frozenset[str] | set[str]) -> Envelope:
    """The decoded message when `raw` is a well-formed message for one of `tasks`, else PoisonMessage."""
    message = _load_json(raw, what="the list entry")
    if not isinstance(message, dict):
        raise PoisonMessage(f"the list entry is a JSON {_kind(message)}, not a Celery message object")
    # The body first: its post ids make a `rejected` row possible whatever else is wrong.
    body, post_ids = _decode_body(message)
    if _is_protocol_1(message, body):
        message, body = _as_protocol_2(message, body)
        post_ids = body_post_ids(body)
    try:
        _check_values(message, "the message", MAX_ENVELOPE_DEPTH)
        _check_values(body, "the body", MAX_BODY_DEPTH)
        task = _check_headers(message.get("headers"), tasks)
        _check_properties(message.get("properties"))
        _check_body(body, task)
    except PoisonMessage as exc:
        raise PoisonMessage(exc.reason, post_ids) from None
    return Envelope(message=message, task=task, post_ids=post_ids,
                    bad_stamp=_drop_bad_stamp(message["headers"]), due=_due(message["headers"]), body=body)


def _is_protocol_1(message: dict[str, Any], body: Any) -> bool:
    """Protocol 1 carries the task name in the body and none in the headers."""
    headers = message.get("headers")
    return (isinstance(body, dict) and isinstance(body.get("task"), str)
            and (headers is None or (isinstance(headers, dict) and "task" not in headers)))


# Protocol 1's body fields that protocol 2 keeps in the headers (`taskset` is the older name of `group`).
_PROTOCOL_1_HEADERS = {"task": "task", "id": "id", "eta": "eta", "expires": "expires", "retries": "retries",
                       "timelimit": "timelimit", "group": "group", "taskset": "group"}


def _as_protocol_2(message: dict[str, Any], body: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    """The protocol-2 message a protocol-1 one stands for (Celery's own workers accept both)."""
    headers = dict(message.get("headers") or {})  # a producer's own headers are kept
    for field_name, header in _PROTOCOL_1_HEADERS.items():
        if body.get(field_name) is not None:
            headers[header] = body[field_name]
    headers.setdefault("lang", "py")
    headers.setdefault("root_id", headers.get("id"))
    args, kwargs = body.get("args"), body.get("kwargs")
    embed = {"callbacks": body.get("callbacks"), "errbacks": body.get("errbacks"), "chain": None,
             "chord": body.get("chord")}
    new_body = [[] if args is None else args, {} if kwargs is None else kwargs, embed]
    encoded = base64.b64encode(json.dumps(new_body).encode("utf-8")).decode("ascii")
    return {**message, "headers": headers, "body": encoded}, new_body


def _due(headers: dict[str, Any]) -> float | None:
    """The later of `eta` (ISO 8601, naive = UTC as Celery's utc=True) and DUE_HEADER, in epoch seconds."""
    times = []
    if headers.get("eta"):
        eta = datetime.fromisoformat(headers["eta"])
        times.append((eta if eta.tzinfo else eta.replace(tzinfo=UTC)).timestamp())
    if _is_number(headers.get(DUE_HEADER)):
        times.append(float(headers[DUE_HEADER]))
    return max(times) if times else None


def _drop_bad_stamp(headers: dict[str, Any]) -> bool:
    """Remove a send stamp that is not a recent time in epoch seconds. It feeds a latency figure
    only, so it never costs the post: the message goes on as one without a stamp."""
    if SENT_AT_HEADER not in headers or valid_stamp(headers[SENT_AT_HEADER]):
        return False
    del headers[SENT_AT_HEADER]
    return True


def valid_stamp(value: Any, *, now: float | None = None) -> bool:
    """Whether `value` is a send stamp: epoch seconds (a finite number) from MAX_STAMP_AGE_S before
    `now` (default: this clock) to MAX_CLOCK_SKEW_S after it."""
    if not _is_number(value):
        return False
    now = time.time() if now is None else now
    return now - MAX_STAMP_AGE_S <= value <= now + MAX_CLOCK_SKEW_S


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def _load_json(raw: bytes | str, *, what: str) -> Any:
    text = raw
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise PoisonMessage(f"{what} is not UTF-8 text") from None
    if not str(text).strip():
        raise PoisonMessage(f"{what} is empty")
    try:
        return json.loads(text, parse_int=_bounded_int, object_hook=_mark_typed)
    except RecursionError:
        raise PoisonMessage(f"{what} is JSON nested too deep to decode") from None
    except ValueError as exc:
        raise PoisonMessage(f"{what} is not JSON ({str(exc)[:120]})") from None


class _HugeInt(int):
    """Stands for an integer with more digits than Python will convert."""


class _Typed(dict):
    """An object kombu's JSON decoder would turn into a Python type ({"__type__", "__value__"})."""


def _bounded_int(digits: str) -> int:
    return _HugeInt(0) if len(digits.lstrip("-")) > MAX_INT_DIGITS else int(digits)


def _mark_typed(value: dict[str, Any]) -> dict[str, Any]:
    return _Typed(value) if value.keys() == {"__type__", "__value__"} else value


def _check_values(value: Any, where: str, max_depth: int) -> None:
    """Refuse what kombu's decoder cannot take or would turn into objects, and deep nesting. Only
    containers are walked (a message holds many more plain values than objects and arrays): a
    container with children makes the depth one more than its own."""
    if type(value) is _HugeInt:
        raise PoisonMessage(f"{where} holds an integer of more than {MAX_INT_DIGITS:,} digits")
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if type(item) is _Typed:
            raise PoisonMessage(f"{where} holds a typed value {{\"__type__\", \"__value__\"}}, "
                                "which topicq does not accept")
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        if children and level >= deepest:
            deepest = level + 1
        for child in children:
            kind = type(child)
            if kind is dict or kind is list or kind is _Typed:
                stack.append((child, level + 1))
            elif kind is _HugeInt:
                raise PoisonMessage(f"{where} holds an integer of more than {MAX_INT_DIGITS:,} digits")
    if deepest > max_depth:
        raise PoisonMessage(f"{where} is JSON nested {deepest} levels deep, more than {max_depth}")


def _decode_body(message: dict[str, Any]) -> tuple[Any, list[str]]:
    """The decoded body and the post ids in it; PoisonMessage (with the ids found) when it cannot be used."""
    encoded = message.get("body")
    if not isinstance(encoded, str):
        raise PoisonMessage(f"body must be a base64 string, got a JSON {_kind(encoded)}")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise PoisonMessage("body is not valid base64") from None
    try:
        body = _load_json(data, what="the body")
    except PoisonMessage as exc:
        reason = exc.reason
        if message.get("content-type") != "application/json":
            reason = f"content-type must be 'application/json', got {_short(message.get('content-type'))} " \
                     "(only JSON is accepted)"
        raise PoisonMessage(reason, _salvage_ids(data)) from None
    post_ids = body_post_ids(body)
    # What kombu reads to decode the body: anything but JSON in base64 is refused.
    properties = message.get("properties")
    if not isinstance(properties, dict):
        raise PoisonMessage(f"properties must be a JSON object, got a JSON {_kind(properties)}", post_ids)
    encoding = properties.get("body_encoding")
    for where, value, expected in (("content-type", message.get("content-type"), "application/json"),
                                   ("content-encoding", message.get("content-encoding"), "utf-8"),
                                   ("properties.body_encoding", encoding, "base64")):
        if value != expected:
            refusal = " (only JSON is accepted)" if where == "content-type" else ""
            raise PoisonMessage(f"{where} must be {expected!r}, got {_short(value)}{refusal}", post_ids)
    return body, post_ids


def _check_headers(headers: Any, tasks: frozenset[str] | set[str]) -> str:
    if not isinstance(headers, dict):
        raise PoisonMessage(f"headers must be a JSON object, got a JSON {_kind(headers)}")
    task = headers.get("task")
    if not isinstance(task, str) or task not in tasks:
        raise PoisonMessage(f"headers.task must be one of {sorted(tasks)}, got {_short(task)}")
    task_id = headers.get("id")
    if not isinstance(task_id, str) or not 0 < len(task_id) <= 200:
        raise PoisonMessage(f"headers.id must be a string of 1-200 characters, got {_short(task_id)}")
    for name in _OPTIONAL_STRING_HEADERS:
        if headers.get(name) is not None and not isinstance(headers[name], str | int):
            raise PoisonMessage(f"headers.{name} must be a string or null, got a JSON {_kind(headers[name])}")
    for name in ("eta", "expires"):
        _check_timestamp(headers, name)
    retries = headers.get("retries")
    if retries is not None and not _is_int(retries, 0, 2**31):
        raise PoisonMessage(f"headers.retries must be a non-negative integer, got {_short(retries)}")
    attempt = headers.get(ATTEMPT_HEADER)
    if attempt is not None and not _is_int(attempt, 0, MAX_ATTEMPT_HEADER):
        raise PoisonMessage(f"headers.{ATTEMPT_HEADER} must be an integer from 0 to {MAX_ATTEMPT_HEADER}, "
                            f"got {_short(attempt)}")
    due = headers.get(DUE_HEADER)
    if due is not None and not (_is_number(due) and 0 <= due < 1e11):
        raise PoisonMessage(f"headers.{DUE_HEADER} must be epoch seconds, got {_short(due)}")
    _check_timelimit(headers.get("timelimit"))
    if headers.get("ignore_result") is not None and not isinstance(headers["ignore_result"], bool):
        raise PoisonMessage("headers.ignore_result must be true, false or null")
    for name in ("stamped_headers", "stamps"):  # Celery sends them empty; topicq uses no stamping
        if headers.get(name):
            raise PoisonMessage(f"headers.{name} must be empty: topicq uses no stamping")
    group_index = headers.get("group_index")
    if group_index is not None and not _is_int(group_index, 0, 2**31):
        raise PoisonMessage(f"headers.group_index must be a non-negative integer or null, "
                            f"got {_short(group_index)}")
    return task


def _check_timestamp(headers: dict[str, Any], name: str) -> None:
    value = headers.get(name)
    if value is None:
        return
    try:
        datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise PoisonMessage(f"headers.{name} must be an ISO 8601 timestamp or null, "
                            f"got {_short(value)}") from None


def _check_timelimit(value: Any) -> None:
    if value is None:
        return
    if not (isinstance(value, list) and len(value) == 2
            and all(v is None or (_is_number(v) and v > 0) for v in value)):
        raise PoisonMessage(f"headers.timelimit must be [soft, hard] seconds or null, got {_short(value)}")


def _check_properties(properties: Any) -> None:
    if not isinstance(properties, dict):
        raise PoisonMessage(f"properties must be a JSON object, got a JSON {_kind(properties)}")
    tag = properties.get("delivery_tag")
    if not isinstance(tag, str) or not 0 < len(tag) <= 200:
        raise PoisonMessage(f"properties.delivery_tag must be a string of 1-200 characters, "
                            f"got {_short(tag)}")
    info = properties.get("delivery_info")
    if not isinstance(info, dict):
        raise PoisonMessage(f"properties.delivery_info must be a JSON object, got a JSON {_kind(info)}")
    for name in ("exchange", "routing_key"):
        if not isinstance(info.get(name), str):
            raise PoisonMessage(f"properties.delivery_info.{name} must be a string, "
                                f"got {_short(info.get(name))}")
    priority = properties.get("priority")
    if priority is not None and not _is_int(priority, 0, 255):
        raise PoisonMessage(f"properties.priority must be an integer from 0 to 255, got {_short(priority)}")
    for name in ("correlation_id", "reply_to"):
        if properties.get(name) is not None and not isinstance(properties[name], str):
            raise PoisonMessage(f"properties.{name} must be a string or null")


def _check_body(body: Any, task: str) -> None:
    if not (isinstance(body, list) and len(body) == 3):
        got = f"an array of {len(body)} items" if isinstance(body, list) else f"a JSON {_kind(body)}"
        raise PoisonMessage(f"the body must be a JSON array [args, kwargs, embed], got {got}")
    args, kwargs, embed = body
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise PoisonMessage("the body must be [args (array), kwargs (object), embed (object)]")
    if not isinstance(embed, dict):
        raise PoisonMessage(f"the body's embed must be a JSON object, got a JSON {_kind(embed)}")
    # Callbacks, chains and chords would make the worker call other tasks: topicq sends none.
    linked = sorted(k for k, v in embed.items() if v)
    if linked:
        raise PoisonMessage(f"the body links other tasks ({', '.join(linked)}); topicq tasks take none")


def body_post_ids(body: Any) -> list[str]:
    """Usable post ids in a decoded body: kwargs.id, a single dict argument, or a chunk's posts (a bare
    kwargs object counts too: a producer that sent only the kwargs). Also what a resumed backfill
    reads from the messages still waiting (shared/wire/queued_posts.py)."""
    if isinstance(body, dict):
        body = [[], body]
    if not (isinstance(body, list) and len(body) >= 2):
        return []
    args, kwargs = body[0], body[1]
    candidates: list[Any] = []
    if isinstance(kwargs, dict) and kwargs:
        candidates = kwargs["posts"] if isinstance(kwargs.get("posts"), list) else [kwargs]
    elif isinstance(args, list) and len(args) == 1:
        candidates = args[0] if isinstance(args[0], list) else [args[0]]
    elif isinstance(args, list) and len(args) == 2:
        candidates = [{"id": args[0]}]
    ids = [guess_id(c) for c in candidates]
    return list(dict.fromkeys(i for i in ids if i is not None))


def _salvage_ids(data: bytes) -> list[str]:
    """Post ids of a body that does not decode (too deep, huge numbers): decode it with deep parts cut."""
    try:
        text = data.decode("utf-8")
        return body_post_ids(json.loads(_cut_deep(text, MAX_BODY_DEPTH), parse_int=_bounded_int,
                                    object_hook=_mark_typed))
    except (ValueError, RecursionError):
        return []


def _cut_deep(text: str, limit: int) -> str:
    """`text` with every array or object nested deeper than `limit` replaced by null (strings respected)."""
    out: list[str] = []
    depth, in_string, escaped, skip_from = 0, False, False, -1
    start = 0
    for i, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth == limit + 1:
                out.append(text[start:i])
                skip_from = i
        elif char in "]}":
            if depth == limit + 1 and skip_from >= 0:
                out.append("null")
                start, skip_from = i + 1, -1
            depth -= 1
    out.append(text[start:] if skip_from < 0 else "")
    return "".join(out)




def _is_int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, _HugeInt) else "<huge integer>"
    return text if len(text) <= 60 else text[:57] + "..."
