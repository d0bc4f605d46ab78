"""Batches by a token budget: length-sorted texts, (texts x longest text) within the budget.

A forward pass pads every text to the batch's longest; batches of posts in
arrival order are padded to their longest post (often the whole 256-token
window), sorted ones hardly at all. The budget also bounds the attention
buffers (and so the memory) of one pass, whatever the posts' lengths.
"""

from __future__ import annotations


def token_budget_batches(lengths: list[int], batch_tokens: int) -> list[list[int]]:
    """Indices grouped into batches, shortest texts first, each within (size x longest) <= budget.

    A text longer than the budget alone still gets a batch of its own."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        # Sorted ascending, so the newcomer is the batch's longest.
        if current and (len(current) + 1) * max(1, lengths[index]) > batch_tokens:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches
