"""Seeded malformed messages for the fuzz drill, each with what the worker must do with it.

    done      a valid (if odd) post: a `done` row under its id
    rejected  invalid, with a usable id: a `rejected` row with the reason
    logged    invalid payload without a usable id: no row, one warning in the worker log
    none      no usable id at all (the message cannot be read): no row

`dead` cases are not well-formed messages (the envelope, or a body that cannot
be decoded): they must end in the dead-letter list, with a `rejected` row when
an id can be recovered. Every case is a raw list entry, built with json and
base64 only (testkit/wire.py), as a service without Celery would send it.
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from testkit import wire
from testkit.factories import TOPICS, make_post

MAX_TEXT_CHARS = 20_000  # the drill's worker setting: "huge" texts need not be megabytes


@dataclass
class Case:
    kind: str
    expect: str  # done | rejected | logged | none
    post_id: str | None = None
    kwargs: dict[str, Any] | None = None
    args: list[Any] | None = None
    entry: bytes | None = None  # the whole list entry, for cases that break the envelope
    dead: bool = False  # must end in the dead-letter list
    meta: dict[str, Any] = field(default_factory=dict)

    def list_entry(self, queue: str) -> bytes:
        if self.entry is not None:
            return self.entry
        message = wire.envelope(wire.CLASSIFY, kwargs=self.kwargs, args=self.args, queue=queue,
                                body=json.dumps([self.args or [], self.kwargs or {}, wire.NO_LINKS],
                                                default=_typed).encode())
        return wire.encode(message).encode()


def _typed(value: Any) -> Any:
    """bytes as a Python Celery producer would send them: a kombu typed value."""
    if isinstance(value, bytes):
        return {"__type__": "base64", "__value__": base64.b64encode(value).decode()}
    raise TypeError(type(value).__name__)


def _text(rng: random.Random) -> str:
    return make_post(rng.choice(sorted(TOPICS)), rng)


def _deep(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"leaf": True}
    for level in range(depth):
        node = {f"l{level}": node}
    return node


SURROGATES = ["\ud800", "\udfff", "\udc80"]  # lone halves: not encodable as UTF-8
UNICODE_ODDITIES = [
    "\u202eorbit rocket\u202c launch",  # RTL override
    "\u200f\u05e9\u05dc\u05d5\u05dd orbit \u0645\u0631\u062d\u0628\u0627",  # RTL mark, Hebrew, Arabic
    "\ufeffmoon launch",  # BOM
    "e\u0301" * 400 + " nasa",  # combining accents
    "\U0001f468\u200d\U0001f680 astronaut \U0001f30c",  # ZWJ emoji sequence
    "line\u2028separator\u2029paragraph orbit",
    "\U000f0000 private use \uffff noncharacter rocket",
    "\u200b\u200c\u200d zero widths \u2060 shuttle",  # not whitespace to str.strip: a valid text
]


def _with_id(kind: str, expect: str, make: Callable[[str, random.Random], dict[str, Any]], dead: bool = False):
    def build(n: int, rng: random.Random) -> Case:
        post_id = f"fz-{n}"
        return Case(kind, expect, post_id, kwargs=make(post_id, rng), dead=dead)
    return build


def _no_id(kind: str, make: Callable[[int, random.Random], dict[str, Any]]):
    def build(n: int, rng: random.Random) -> Case:
        return Case(kind, "logged", None, kwargs=make(n, rng))
    return build


def _args(kind: str, expect: str, make: Callable[[int, random.Random], list[Any]], post_id: bool = False):
    def build(n: int, rng: random.Random) -> Case:
        return Case(kind, expect, f"fz-{n}" if post_id else None, args=make(n, rng))
    return build


# Send stamps (headers.topicq_sent_at) a worker must ignore: a monotonic clock, milliseconds, the
# year 5107, older than MAX_STAMP_AGE_S, ahead by more than MAX_CLOCK_SKEW_S.
STAMPS: dict[str, Callable[[random.Random], float]] = {
    "monotonic": lambda r: r.uniform(1_000.0, 100_000.0),
    "milliseconds": lambda r: time.time() * 1000,
    "year-5107": lambda r: 99_000_000_000.0,
    "month-old": lambda r: time.time() - 30 * 86400,
    "hour-ahead": lambda r: time.time() + 3600,
}


def _stamped(kind: str, make: Callable[[random.Random], float]):
    """A well-formed message for one post whose send stamp is not a recent time: the post is done."""
    def build(n: int, rng: random.Random) -> Case:
        message = _good(f"fz-{n}", rng)
        message["headers"]["topicq_sent_at"] = make(rng)
        return Case(kind, "done", f"fz-{n}", entry=_entry(message), meta={"bad_stamp": True})
    return build


BUILDERS: list[Callable[[int, random.Random], Case]] = [
    # wrong types and missing fields, with a usable id -> rejected
    _with_id("text-int", "rejected", lambda i, r: {"id": i, "text": r.randint(-10**6, 10**6)}),
    _with_id("text-float", "rejected", lambda i, r: {"id": i, "text": r.choice([1.5, 1e308, -0.0])}),
    _with_id("text-list", "rejected", lambda i, r: {"id": i, "text": [_text(r)]}),
    _with_id("text-dict", "rejected", lambda i, r: {"id": i, "text": {"body": _text(r)}}),
    _with_id("text-null", "rejected", lambda i, r: {"id": i, "text": None}),
    _with_id("text-bool", "rejected", lambda i, r: {"id": i, "text": True}),
    _with_id("text-bytes", "rejected", lambda i, r: {"id": i, "text": r.randbytes(r.randint(1, 64))}, dead=True),
    _with_id("text-missing", "rejected", lambda i, r: {"id": i}),
    _with_id("text-empty", "rejected", lambda i, r: {"id": i, "text": ""}),
    _with_id("text-blank", "rejected", lambda i, r: {"id": i, "text": " \t\n\u3000\u00a0"}),
    _with_id("text-huge", "rejected", lambda i, r: {"id": i, "text": "orbit " * (MAX_TEXT_CHARS // 6 + 10)}),
    _with_id("text-nul", "rejected", lambda i, r: {"id": i, "text": "rocket\x00orbit launch"}),
    _with_id("text-surrogate", "rejected", lambda i, r: {"id": i, "text": "orbit " + r.choice(SURROGATES) + " moon"}),
    _with_id("metadata-list", "rejected", lambda i, r: {"id": i, "text": _text(r), "metadata": [1, 2]}),
    _with_id("metadata-string", "rejected", lambda i, r: {"id": i, "text": _text(r), "metadata": "x"}),
    _with_id("metadata-nan", "rejected", lambda i, r: {"id": i, "text": _text(r),
                                                         "metadata": {"score": r.choice([float("nan"), float("inf")])}}),
    # metadata PostgreSQL could store but not query (NUL), or too large (MAX_METADATA_BYTES, 64 KiB)
    _with_id("metadata-nul-value", "rejected", lambda i, r: {"id": i, "text": _text(r), "metadata": {"k": "a\x00b"}}),
    _with_id("metadata-nul-key", "rejected", lambda i, r: {"id": i, "text": _text(r), "metadata": {"k\x00": 1}}),
    _with_id("metadata-too-large", "rejected", lambda i, r: {"id": i, "text": _text(r),
                                                          "metadata": {"blob": "m" * r.randint(66_000, 90_000)}}),
    _with_id("metadata-deep", "rejected", lambda i, r: {"id": i, "text": _text(r), "metadata": _deep(r.randint(100, 800))},
             dead=True),
    _with_id("metadata-null", "done", lambda i, r: {"id": i, "text": _text(r), "metadata": None}),
    _with_id("attempt-huge", "rejected", lambda i, r: {"id": i, "text": _text(r), "attempt": r.choice([2**63 - 1, 10**30])}),
    _with_id("attempt-plausible", "rejected", lambda i, r: {"id": i, "text": _text(r), "attempt": 99}),
    _with_id("extra-field", "rejected", lambda i, r: {"id": i, "text": _text(r), "priority": 1}),
    _with_id("attempt-negative", "rejected", lambda i, r: {"id": i, "text": _text(r), "attempt": -1}),
    _with_id("attempt-string", "rejected", lambda i, r: {"id": i, "text": _text(r), "attempt": "many"}),
    # odd but valid -> done
    _with_id("unicode-oddity", "done", lambda i, r: {"id": i, "text": r.choice(UNICODE_ODDITIES)}),
    _with_id("id-unicode", "done", lambda i, r: {"id": i, "text": _text(r)}),
    _with_id("metadata-shallow-nest", "done", lambda i, r: {"id": i, "text": _text(r), "metadata": _deep(5)}),
    _with_id("metadata-unicode", "done", lambda i, r: {"id": i, "text": _text(r),
                                                        "metadata": {"\u202ekey": "\U0001f680 ok", "n": 10**30}}),
    # send stamps that are not a recent time: ignored (counted bad), never the post's undoing
    *[_stamped(f"stamp-{name}", make) for name, make in STAMPS.items()],
    _args("args-pair", "done", lambda i, r: [f"fz-{i}", _text(r)], post_id=True),
    _args("args-dict", "done", lambda i, r: [{"id": f"fz-{i}", "text": _text(r)}], post_id=True),
    # no usable id -> logged, no row
    _no_id("id-missing", lambda i, r: {"text": _text(r)}),
    _no_id("id-null", lambda i, r: {"id": None, "text": _text(r)}),
    _no_id("id-bool", lambda i, r: {"id": r.choice([True, False]), "text": _text(r)}),
    _no_id("id-float", lambda i, r: {"id": i + 0.5, "text": _text(r)}),
    _no_id("id-list", lambda i, r: {"id": [f"fz-{i}"], "text": _text(r)}),
    _no_id("id-empty", lambda i, r: {"id": "", "text": _text(r)}),
    _no_id("id-too-long", lambda i, r: {"id": f"fz-{i}-" + "x" * r.randint(200, 5000), "text": _text(r)}),
    _no_id("id-huge-int", lambda i, r: {"id": 10 ** r.randint(201, 400) + i, "text": _text(r)}),
    _no_id("id-nul", lambda i, r: {"id": f"fz-{i}\x00", "text": _text(r)}),
    _no_id("id-surrogate", lambda i, r: {"id": f"fz-{i}\ud834", "text": _text(r)}),
    _no_id("empty-kwargs", lambda i, r: {}),
    _args("payload-list", "logged", lambda i, r: [[f"fz-{i}", _text(r)]]),
    _args("payload-string", "logged", lambda i, r: [_text(r)]),
    _args("payload-number", "logged", lambda i, r: [i]),
    _args("three-args", "logged", lambda i, r: [f"fz-{i}", _text(r), "extra"]),
]


def _fix_ids(case: Case, n: int) -> Case:
    """Cases that must be `done` under an odd id get it here (ints, long, unicode)."""
    if case.kind == "id-unicode":
        odd = f"fz-{n}-\u202e\U0001f680\u05e9"
        assert case.kwargs is not None
        case.kwargs["id"] = case.post_id = odd
    return case


def _entry(message: Any) -> bytes:
    return json.dumps(message).encode()


def _good(post_id: str, rng: random.Random, task: str = wire.CLASSIFY) -> dict[str, Any]:
    """A well-formed message for one post, for an envelope case to break."""
    if task == wire.CLASSIFY_CHUNK:
        posts = [{"id": f"{post_id}-c{k}", "text": _text(rng)} for k in range(3)]
        return wire.envelope(task, kwargs={"posts": posts})
    return wire.envelope(task, kwargs={"id": post_id, "text": _text(rng)})


def _broken(kind: str, change: Callable[[dict[str, Any], random.Random], Any], *, with_id: bool = True,
            task: str = wire.CLASSIFY):
    """A case whose envelope `change` breaks (it edits the message in place, or returns the entry)."""
    def build(n: int, rng: random.Random) -> Case:
        post_id = f"fz-{n}"
        message = _good(post_id, rng, task)
        entry = change(message, rng)
        raw = entry if isinstance(entry, bytes) else _entry(message)
        ids = [f"{post_id}-c{k}" for k in range(3)] if task == wire.CLASSIFY_CHUNK else [post_id]
        return Case(kind, "rejected" if with_id else "none", post_id if with_id else None, entry=raw,
                    dead=True, meta={"ids": ids if with_id else []})
    return build


def _reshape(new_body: Callable[[list[Any]], Any]) -> Callable[[dict[str, Any], random.Random], None]:
    """Replace the decoded body [args, kwargs, embed] with `new_body(body)`."""
    def change(message: dict[str, Any], _rng: random.Random) -> None:
        body = json.loads(base64.b64decode(message["body"]))
        message["body"] = base64.b64encode(json.dumps(new_body(body)).encode()).decode()
    return change


def _set(path: str, value: Any) -> Callable[[dict[str, Any], random.Random], None]:
    """Set (or, for value DROP, remove) a dotted field of the message."""
    def change(message: dict[str, Any], _rng: random.Random) -> None:
        *parents, last = path.split(".")
        node = message
        for part in parents:
            node = node[part]
        if value is DROP:
            node.pop(last, None)
        else:
            node[last] = value
    return change


DROP = object()


def _whole(entry: bytes) -> Callable[[dict[str, Any], random.Random], bytes]:
    return lambda _message, _rng: entry


def _kwargs_body(extra: str) -> Callable[[dict[str, Any], random.Random], None]:
    """A body whose kwargs carry raw JSON `extra` (what json.dumps cannot write: huge ints, deep nests)."""
    def change(message: dict[str, Any], rng: random.Random) -> None:
        post_id = json.loads(base64.b64decode(message["body"]))[1]["id"]
        kwargs = json.dumps({"id": post_id, "text": _text(rng)})[:-1] + f', "metadata": {extra}}}'
        text = f"[[], {kwargs}, {{}}]"
        message["body"] = base64.b64encode(text.encode()).decode()
    return change


# Envelope cases: every one must end in the dead-letter list, none may stop the worker.
ENVELOPE_BUILDERS: list[Callable[[int, random.Random], Case]] = [
    # the body is not [args, kwargs, embed]
    _broken("body-list-2", _reshape(lambda b: b[:2])),
    _broken("body-list-4", _reshape(lambda b: [*b, {}])),
    _broken("body-object", _reshape(lambda b: b[1])),
    _broken("body-string", _reshape(lambda b: "hello"), with_id=False),
    _broken("body-null", _reshape(lambda b: None), with_id=False),
    _broken("body-number", _reshape(lambda b: 42), with_id=False),
    _broken("body-not-base64", _set("body", "%%% not base64 %%%"), with_id=False),
    _broken("body-embed-callbacks", _reshape(lambda b: [b[0], b[1], {"callbacks": [{"task": "celery.ping"}]}])),
    _broken("body-typed-value", _reshape(lambda b: [b[0], {**b[1], "metadata": {"__type__": "uuid", "__value__": "z"}},
                                                    b[2]])),
    _broken("metadata-huge-int", _kwargs_body('{"n": ' + "9" * 5000 + "}")),
    _broken("metadata-nested-100000", _kwargs_body('{"a": ' * 100_000 + "1" + "}" * 100_000)),
    # what kombu reads to decode the body
    _broken("body-encoding-unknown", _set("properties.body_encoding", "rot13")),
    _broken("content-type-missing", _set("content-type", DROP)),
    _broken("content-type-unknown", _set("content-type", "application/x-topicq")),
    _broken("content-type-pickle", _set("content-type", "application/x-python-serialize")),
    _broken("content-encoding-missing", _set("content-encoding", DROP)),
    # headers
    _broken("headers-list", _set("headers", ["topicq.classify"])),
    _broken("headers-string", _set("headers", "topicq.classify")),
    _broken("headers-missing", _set("headers", DROP)),
    _broken("headers-task-list", _set("headers.task", ["topicq.classify"])),
    _broken("headers-task-unknown", _set("headers.task", "celery.backend_cleanup")),
    _broken("headers-id-missing", _set("headers.id", DROP)),
    _broken("headers-id-number", _set("headers.id", 7)),
    _broken("headers-eta-garbage", _set("headers.eta", "next tuesday")),
    _broken("headers-expires-number", _set("headers.expires", 12)),
    _broken("headers-timelimit-string", _set("headers.timelimit", "soon")),
    _broken("headers-retries-huge", lambda m, r: _entry(m).replace(b'"retries": 0', b'"retries": ' + b"9" * 5000)),
    _broken("headers-attempt-negative", _set("headers.topicq_attempt", -1)),
    _broken("headers-attempt-huge", _set("headers.topicq_attempt", 10**30)),
    _broken("headers-deep", _set("headers.lang", _deep(50))),
    # properties
    _broken("properties-string", _set("properties", "x")),
    _broken("properties-missing", _set("properties", DROP)),
    _broken("delivery-tag-null", _set("properties.delivery_tag", None)),
    _broken("delivery-tag-list", _set("properties.delivery_tag", ["a"])),
    _broken("delivery-tag-missing", _set("properties.delivery_tag", DROP)),
    _broken("delivery-info-missing", _set("properties.delivery_info", DROP)),
    _broken("delivery-info-string", _set("properties.delivery_info", "topicq")),
    _broken("priority-string", _set("properties.priority", "high")),
    # chunks: every post id of a broken chunk gets its row
    _broken("chunk-headers-id-missing", _set("headers.id", DROP), task=wire.CLASSIFY_CHUNK),
    # not a message at all
    _broken("entry-plain-text", _whole(b"hello from a broken producer"), with_id=False),
    _broken("entry-json-list", _whole(b"[1, 2, 3]"), with_id=False),
    _broken("entry-null", _whole(b"null"), with_id=False),
    _broken("entry-number", _whole(b"42"), with_id=False),
    _broken("entry-empty", _whole(b""), with_id=False),
    _broken("entry-undecodable", _whole(b"\xff\xfe\x00{not utf-8"), with_id=False),
    _broken("entry-brackets", _whole(b"[" * 100_000), with_id=False),
    _broken("entry-truncated", lambda m, r: _entry(m)[: len(_entry(m)) // 2], with_id=False),
]


def envelope_cases(count: int, rng: random.Random, start: int) -> list[Case]:
    """`count` envelope cases, each builder at least once when count allows."""
    return [(ENVELOPE_BUILDERS[k] if k < len(ENVELOPE_BUILDERS) else rng.choice(ENVELOPE_BUILDERS))(start + k, rng)
            for k in range(count)]


def make_cases(n_malformed: int, n_valid: int, seed: int = 0, n_envelope: int = 0) -> list[Case]:
    """`n_malformed` payload cases and `n_envelope` envelope cases drawn from every builder (each at
    least once) plus valid posts, shuffled."""
    rng = random.Random(seed)
    cases: list[Case] = []
    for n in range(n_malformed):
        builder = BUILDERS[n] if n < len(BUILDERS) else rng.choice(BUILDERS)
        cases.append(_fix_ids(builder(n, rng), n))
    cases += envelope_cases(n_envelope, rng, start=n_malformed)
    for n in range(n_valid):
        post_id = str(10**12 + n) if n % 7 == 0 else f"ok-{n}"
        send_id: Any = int(post_id) if n % 7 == 0 else post_id  # numeric ids are valid
        if n % 11 == 0:
            post_id = send_id = f"ok-{n}-" + "i" * (200 - len(f"ok-{n}-"))  # the longest valid id
        cases.append(Case("valid", "done", post_id, kwargs={"id": send_id, "text": _text(rng),
                                                            "metadata": {"n": n}}))
    rng.shuffle(cases)
    return cases
