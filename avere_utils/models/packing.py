"""Candidate packing for scoring mode (pure layout, no model).

Scoring an item asks for the log-likelihood of each of its K candidate answers after one prompt.  After
the prompt's pass (its KV cache kept), all K candidates of a prompt continue from that cache in ONE row:
they are laid back to back, and a block attention mask lets each candidate token see every prompt column
and the earlier tokens of its own candidate only.  Each candidate's positions restart at the prompt's next
free position, so every candidate token gets the same keys, values and rotary position as in a pass of
its own: the same numbers up to floating-point summation order.  The alternative, a copy of the prompt's
cache per candidate, moves K times the prompt's keys and values through attention.

A candidate of n tokens t_0 .. t_{n-1} puts n-1 inputs in the row (t_0 .. t_{n-2}); input t_j predicts
t_{j+1}, and t_0 is predicted from the prompt's last hidden state.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass
class PackedCandidates:
    tokens: torch.Tensor  # (G, S) long: the inputs of a prompt's candidates back to back, right-padded
    offsets: torch.Tensor  # (G, S) long: position of each input within its candidate (0 = first token)
    targets: torch.Tensor  # (G, S) long: the token each input predicts (0 on padding)
    owner: torch.Tensor  # (G, S) long: flat candidate index of each input, -1 on padding
    block: torch.Tensor  # (G, S, S) bool: input i may attend input j (same candidate, j <= i)
    first: torch.Tensor  # (N,) long: the first token of each flat candidate
    row: torch.Tensor  # (N,) long: the prompt row each flat candidate continues
    lengths: torch.Tensor  # (N,) long: tokens of each flat candidate


def pack_candidates(per_row: Sequence[Sequence[Sequence[int]]], *, pad_id: int = 0) -> PackedCandidates:
    """per_row[g] = the token ids of each candidate after prompt row g (flat candidate order: row by row,
    candidates in the order given).  Every candidate needs at least one token."""
    flat = [(g, ids) for g, cands in enumerate(per_row) for ids in cands]
    if any(len(ids) == 0 for _, ids in flat):
        raise ValueError("a candidate without tokens cannot be scored")
    g_n = len(per_row)
    widths = [sum(len(ids) - 1 for ids in cands) for cands in per_row]
    s = max(widths, default=0)
    tokens = torch.full((g_n, s), pad_id, dtype=torch.long)
    targets = torch.zeros((g_n, s), dtype=torch.long)
    offsets = torch.zeros((g_n, s), dtype=torch.long)
    owner = torch.full((g_n, s), -1, dtype=torch.long)
    block = torch.zeros((g_n, s, s), dtype=torch.bool)
    fill = [0] * g_n
    for k, (g, ids) in enumerate(flat):
        n = len(ids) - 1
        a = fill[g]
        if n:
            tokens[g, a:a + n] = torch.tensor(ids[:-1], dtype=torch.long)
            targets[g, a:a + n] = torch.tensor(ids[1:], dtype=torch.long)
            offsets[g, a:a + n] = torch.arange(n)
            owner[g, a:a + n] = k
            block[g, a:a + n, a:a + n] = torch.ones(n, n, dtype=torch.bool).tril()
        fill[g] = a + n
    # a padding input sees only the prompt (never an empty row of keys, which sdpa would turn into NaN)
    return PackedCandidates(tokens, offsets, targets, owner, block,
                            torch.tensor([ids[0] for _, ids in flat], dtype=torch.long),
                            torch.tensor([g for g, _ in flat], dtype=torch.long),
                            torch.tensor([len(ids) for _, ids in flat], dtype=torch.long))


def width_groups(widths: Sequence[int], *, min_saving: float = 0.2) -> list[list[int]]:
    """Rows of one packed pass are padded to the widest row.  When the widths differ a lot (a training
    step: three responses after the real prompt, one after the PMP input) a pass for the narrow rows and
    one for the wide rows run fewer padded tokens.  Returns the row groups, one pass each: all rows, or two
    groups cut where the padded total is least, when that saves at least `min_saving` of it."""
    order = sorted(range(len(widths)), key=lambda i: widths[i])
    one = len(widths) * max(widths, default=0)
    best, cut = one, None
    for k in range(1, len(order)):
        cost = k * widths[order[k - 1]] + (len(order) - k) * widths[order[-1]]
        if cost < best:
            best, cut = cost, k
    if cut is None or one - best < min_saving * one:
        return [list(range(len(widths)))]
    return [sorted(order[:cut]), sorted(order[cut:])]


def attention_mask_4d(prompt_mask: torch.Tensor, block: torch.Tensor, *, additive_dtype: torch.dtype | None = None
                      ) -> torch.Tensor:
    """The (G, 1, S, T + S) mask of the packed inputs over [the prompt's T cache columns | the S packed
    columns]: every prompt column the prompt itself attends (its left padding excluded), then the block.

    Boolean (True = attend) as sdpa takes it; with `additive_dtype`, 0 / the dtype's lowest value, the form
    the eager attention adds to its scores."""
    g, s = block.shape[0], block.shape[1]
    prompt = prompt_mask.to(block.device).bool()[:, None, :].expand(g, s, prompt_mask.shape[1])
    mask = torch.cat([prompt, block], dim=2)[:, None]
    if additive_dtype is None:
        return mask
    return torch.zeros(mask.shape, dtype=additive_dtype, device=mask.device).masked_fill(
        ~mask, torch.finfo(additive_dtype).min)
