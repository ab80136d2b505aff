"""Which examples of a batch can share one prompt pass (pure bookkeeping, no model).

At paper scale a training sample is a long audiovisual prompt (about 1,150 tokens) and short answers
(about 60).  Chosen, vr and er of one pair have the same prompt and the same Media object, so the
prompt is run once and each response attends to its KV cache (kept in the autograd graph when training).
Two examples share a prefix exactly when their prompt text is equal and their media is the same object
(or both have none): then their token ids, media features and TMRoPE positions before the response are
identical, so the shared pass computes the same numbers up to floating-point summation order.
"""
from __future__ import annotations

from typing import Callable, Hashable, Sequence

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


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def nest_plan(rows: Sequence[Sequence[int]], *, min_tokens: int, min_fraction: float,
              verify: Callable[[int, int, int], int] | None = None) -> list[tuple[int, int] | None]:
    """For each prompt (token ids), None (it runs whole: a root) or (root, c): its first c tokens are those
    of an earlier root prompt, whose KV cache then serves them.

    Worth it only when the common part is long: at least `min_tokens` and `min_fraction` of the prompt
    (every prompt starts with the same system turn, which alone is not worth a second pass).  Examples:
    an audio-targeted PMP input whose prompt puts the video before the audio shares the system turn and
    the first video chunk with the real input; the questions about one clip share its whole media block.
    One level: a prompt continues a root, never another continuing prompt, so the thresholds must keep
    the system turn alone from qualifying (it would make a real prompt a continuing one and hide it as a
    root from its own PMP input).
    verify(root, row, c) -> c' <= c: how much of the common ids really is common (equal placeholder ids
    may carry different clips); the longest verified part wins."""
    plan: list[tuple[int, int] | None] = []
    roots: list[int] = []
    for j, ids in enumerate(rows):
        best, best_c = None, 0
        for r in roots:
            # the last token must be run: its hidden state predicts the first response token
            c = min(common_prefix_length(rows[r], ids), len(ids) - 1)
            if c > best_c and verify is not None:
                c = verify(r, j, c)
            if c > best_c:
                best, best_c = r, c
        if best is not None and best_c >= min_tokens and best_c >= min_fraction * len(ids):
            plan.append((best, best_c))
        else:
            plan.append(None)
            roots.append(j)
    return plan
