"""Which examples of a batch can share one prompt pass (pure bookkeeping, no model).

At paper scale a training sample is a long audiovisual prompt (about 1,150 tokens) and short answers
(about 60).  Chosen, vr and er of one pair have the same prompt and the same Media object, so the
prompt is run once and each response attends to its KV cache (kept in the autograd graph when training).
Two examples share a prefix exactly when their prompt text is equal and their media is the same object
(or both have none): then their token ids, media features and TMRoPE positions before the response are
identical, so the shared pass computes the same numbers up to floating-point summation order.
"""
from __future__ import annotations

from typing import Hashable, Sequence

from avere_utils.records import Example, Media


def prefix_key(example: Example, media: Media | None) -> tuple[str, int | None]:
    # id(): equal-content clips loaded twice are different objects and are (correctly, cheaply) not merged
    return example.prompt, None if media is None else id(media)


def group_by_prefix(keys: Sequence[Hashable]) -> tuple[list[int], list[int]]:
    """(first row of each distinct key, in first-seen order; group index of every row)."""
    first: dict[Hashable, int] = {}
    heads: list[int] = []
    group: list[int] = []
    for i, k in enumerate(keys):
        if k not in first:
            first[k] = len(heads)
            heads.append(i)
        group.append(first[k])
    return heads, group
