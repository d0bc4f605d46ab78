"""Seeded malformed payloads for the fuzz drill, each with what the worker must do with it.

    done      a valid (if odd) post: a `done` row under its id
    rejected  invalid, with a usable id: a `rejected` row with the reason
    logged    invalid, without a usable id: no row, one warning in the worker log
    dropped   not even a task message (undecodable body): Celery refuses it, nothing is written

Most cases are sent by task name with `send_task`, the way another service
would; `raw` cases are pushed to the Redis list as hand-built messages.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.factories import TOPICS, make_post

MAX_TEXT_CHARS = 20_000  # the drill's worker setting: "huge" texts need not be megabytes


@dataclass
class Case:
    kind: str
    expect: str  # done | rejected | logged | dropped
    post_id: str | None = None
    kwargs: dict[str, Any] | None = None
    args: list[Any] | None = None
    raw_body: bytes | None = None  # hand-built message body (raw cases)
    meta: dict[str, Any] = field(default_factory=dict)


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


def _with_id(kind: str, expect: str, make: Callable[[str, random.Random], dict[str, Any]]):
    def build(n: int, rng: random.Random) -> Case:
        post_id = f"fz-{n}"
        return Case(kind, expect, post_id, kwargs=make(post_id, rng))
    return build


def _no_id(kind: str, make: Callable[[int, random.Random], dict[str, Any]]):
    def build(n: int, rng: random.Random) -> Case:
        return Case(kind, "logged", None, kwargs=make(n, rng))
    return build


def _args(kind: str, expect: str, make: Callable[[int, random.Random], list[Any]], post_id: bool = False):
    def build(n: int, rng: random.Random) -> Case:
        return Case(kind, expect, f"fz-{n}" if post_id else None, args=make(n, rng))
    return build


BUILDERS: list[Callable[[int, random.Random], Case]] = [
    # wrong types and missing fields, with a usable id -> rejected
    _with_id("text-int", "rejected", lambda i, r: {"id": i, "text": r.randint(-10**6, 10**6)}),
    _with_id("text-float", "rejected", lambda i, r: {"id": i, "text": r.choice([1.5, 1e308, -0.0])}),
    _with_id("text-list", "rejected", lambda i, r: {"id": i, "text": [_text(r)]}),
    _with_id("text-dict", "rejected", lambda i, r: {"id": i, "text": {"body": _text(r)}}),
    _with_id("text-null", "rejected", lambda i, r: {"id": i, "text": None}),
    _with_id("text-bool", "rejected", lambda i, r: {"id": i, "text": True}),
    _with_id("text-bytes", "rejected", lambda i, r: {"id": i, "text": r.randbytes(r.randint(1, 64))}),
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
    _with_id("metadata-deep", "rejected", lambda i, r: {"id": i, "text": _text(r), "metadata": _deep(r.randint(100, 800))}),
    _with_id("extra-field", "rejected", lambda i, r: {"id": i, "text": _text(r), "priority": 1}),
    _with_id("attempt-negative", "rejected", lambda i, r: {"id": i, "text": _text(r), "attempt": -1}),
    _with_id("attempt-string", "rejected", lambda i, r: {"id": i, "text": _text(r), "attempt": "many"}),
    # odd but valid -> done
    _with_id("unicode-oddity", "done", lambda i, r: {"id": i, "text": r.choice(UNICODE_ODDITIES)}),
    _with_id("id-unicode", "done", lambda i, r: {"id": i, "text": _text(r)}),
    _with_id("metadata-shallow-nest", "done", lambda i, r: {"id": i, "text": _text(r), "metadata": _deep(5)}),
    _with_id("metadata-unicode", "done", lambda i, r: {"id": i, "text": _text(r),
                                                        "metadata": {"\u202ekey": "\U0001f680\x00ok", "n": 10**30}}),
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


def raw_cases(n: int, rng: random.Random) -> list[Case]:
    """Hand-built messages that are not even valid task bodies."""
    depth = rng.randint(20_000, 100_000)
    return [
        Case("raw-deep-nesting", "dropped", raw_body=b"[" * depth + b"]" * depth),
        Case("raw-not-json", "dropped", raw_body=b"\xff\xfe{not json"),
        Case("raw-truncated", "dropped", raw_body=b'[[], {"id": "fz-raw", "text": "orb'),
    ]


def make_cases(n_malformed: int, n_valid: int, seed: int = 0) -> list[Case]:
    """`n_malformed` cases drawn from every builder (each at least once) plus valid posts, shuffled."""
    rng = random.Random(seed)
    cases: list[Case] = []
    for n in range(n_malformed):
        builder = BUILDERS[n] if n < len(BUILDERS) else rng.choice(BUILDERS)
        cases.append(_fix_ids(builder(n, rng), n))
    for n in range(0, max(3, n_malformed // 200)):
        cases += raw_cases(n, rng)
    for n in range(n_valid):
        post_id = str(10**12 + n) if n % 7 == 0 else f"ok-{n}"
        send_id: Any = int(post_id) if n % 7 == 0 else post_id  # numeric ids are valid
        if n % 11 == 0:
            post_id = send_id = f"ok-{n}-" + "i" * (200 - len(f"ok-{n}-"))  # the longest valid id
        cases.append(Case("valid", "done", post_id, kwargs={"id": send_id, "text": _text(rng),
                                                            "metadata": {"n": n}}))
    rng.shuffle(cases)
    return cases
