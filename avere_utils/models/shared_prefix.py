"""Which examples of a batch can share one prompt pass (pure bookkeeping, no model).

At paper scale a training sample is a long audiovisual prompt (about 1,150 tokens) and short answers
(about 60).  Chosen, vr and er of one pair have the same prompt and the same Media object, so the
prompt is run once and each response attends to its KV cache (kept in the autograd graph when training).
Two examples share a prefix exactly when their prompt text is equal and their media is the same object
(or both have none): then their token ids, media features and TMRoPE positions before the response are
identical, so the shared pass computes the same numbers up to floating-point summation order.

The plan is bookkeeping on token ids; beside it stand the two tensor steps it implies (copies, no
arithmetic): checking that equal ids carry equal inputs (`same_inputs`), and splicing cached keys and
values (`borrowed_prefix`, `join_left_padded`).
"""
from __future__ import annotations

from typing import Callable, Hashable, Sequence

import torch
import torch.nn.functional as F

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


def same_inputs(embeds: torch.Tensor, pos: torch.Tensor, starts: Sequence[int]) -> Callable[[int, int, int], int]:
    """The `verify` of nest_plan / prefix_units for left-padded rows (row i's tokens begin at starts[i]):
    verify(a, b, c) -> how many of the first c tokens of rows a and b have equal embeddings and equal
    positions (equal placeholder ids may carry different clips: the common part ends where they differ)."""
    def verify(a: int, b: int, c: int) -> int:
        sa, sb = starts[a], starts[b]
        differs = ((embeds[a, sa:sa + c] != embeds[b, sb:sb + c]).any(-1)
                   | (pos[:, a, sa:sa + c] != pos[:, b, sb:sb + c]).any(0))
        return int(differs.nonzero()[0, 0]) if bool(differs.any()) else c
    return verify


def borrowed_prefix(layer: torch.Tensor, sources: Sequence[tuple[int, int, int]], width: int) -> torch.Tensor:
    """One layer's cached keys (or values), (G, heads, T, dim), for the prompts that continue a root: per
    prompt (root row, start, c), the root's c entries from `start`, left-padded to `width`, stacked."""
    return torch.stack([F.pad(layer[row, :, st:st + c], (0, 0, width - c, 0)) for row, st, c in sources])


def join_left_padded(parts: Sequence[torch.Tensor], width: int, order: torch.Tensor, *, time_dim: int = -2
                     ) -> torch.Tensor:
    """The rows of `parts` left-padded to `width` along time_dim (-2: cached keys or values, -1: an
    attention mask), concatenated, then taken in `order`."""
    k = -1 - time_dim
    return torch.cat([F.pad(p, (0, 0) * k + (width - p.shape[time_dim], 0)) for p in parts])[order]


def prefix_units(keys: Sequence[Hashable], rows: Sequence[Sequence[int]], prompt_lens: Sequence[int], *,
                 verify: Callable[[int, int, int], int] | None = None) -> list[tuple[list[int], int]]:
    """Training rows (prompt + response token ids) that may share one pass of their common first tokens:
    [(members, c)], one unit per distinct key (a clip; in first-seen order), members in row order, c the
    number of first tokens every member has in common with the unit's first member.

    c stops before each member's last prompt token (that token's hidden state predicts the first response
    token, so it runs in the member's own segment) and is at least 1 (every member's segment then sees a
    key: no all-masked attention row).  verify(first, member, c) -> c' <= c: how much of the common ids
    is really common (the same ids must also mean the same embeddings and positions)."""
    if not (len(keys) == len(rows) == len(prompt_lens)):
        raise ValueError("prefix_units: keys, rows and prompt_lens differ in length")
    if any(n < 2 for n in prompt_lens):
        raise ValueError("prefix_units: every prompt needs at least 2 tokens")
    heads, group = group_by_prefix(keys)
    units: list[tuple[list[int], int]] = []
    for g, head in enumerate(heads):
        members = [i for i, k in enumerate(group) if k == g]
        c = min(prompt_lens[i] - 1 for i in members)
        for i in members[1:]:
            c = min(c, common_prefix_length(rows[head], rows[i]))
            if verify is not None and c > 0:
                c = verify(head, i, c)
        units.append((members, max(c, 1)))
    return units


def balanced_chunks(keys: Sequence[Hashable], costs: Sequence[float], groups: int) -> list[list[int]]:
    """The indexes in `groups` parts of about equal cost, each a contiguous run of the indexes ordered by
    key (keys in first-seen order, stable within a key): so a key's items share a part except where a cut
    falls inside them (at most groups - 1 keys are split).  Item i goes to the part in which the middle of
    its cost falls on the cumulative scale; empty parts are dropped.  groups <= 1: one part, in key order."""
    _, group = group_by_prefix(keys)
    order = sorted(range(len(keys)), key=lambda i: (group[i], i))
    if groups <= 1:
        return [order] if order else []
    total = float(sum(costs[i] for i in order))
    parts: list[list[int]] = [[] for _ in range(groups)]
    run = 0.0
    for i in order:
        mid = run + costs[i] / 2
        run += costs[i]
        k = min(int(mid * groups / total), groups - 1) if total > 0 else 0
        parts[k].append(i)
    return [p for p in parts if p]
