"""Which result rows need review and which posts are out of domain: the hooks drift counts with.

The review queue (a `needs_review` flag on rows) and the out-of-domain score of a
post are defined with that feature; until they exist these answer None ("not
measured"), and `topicq drift` leaves those two shares out. Wire them here:
return `row.needs_review` / whether the row's out-of-domain score crosses its
version's threshold, and give the reference's shares from the test split.
"""

from __future__ import annotations

import numpy as np

from shared.results import ResultRow


def needs_review(row: ResultRow) -> bool | None:
    """Whether a done row was flagged for review; None while rows carry no such flag."""
    return None


def out_of_domain(row: ResultRow) -> bool | None:
    """Whether a done row's post lies outside its model's training classes; None while unmeasured."""
    return None


def reference_shares(probabilities: np.ndarray, vectors: np.ndarray) -> dict[str, float | None]:
    """The shares flagged for review and out of domain on a version's test split, for its reference."""
    return {"review_share": None, "out_of_domain_share": None}


def count_flags(rows: list[ResultRow]) -> tuple[int | None, int | None]:
    """How many `rows` need review and are out of domain (None: the hook does not measure it)."""
    def count(flags: list[bool | None]) -> int | None:
        return None if any(flag is None for flag in flags) else sum(map(bool, flags))

    return count([needs_review(r) for r in rows]), count([out_of_domain(r) for r in rows])
