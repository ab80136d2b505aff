"""A fake model for tests and dry runs of the evaluation code (no weights, canned answers).

`FakeBackend` answers through two functions of the *item* (found again through the Media object that
`fake_media_fn` makes for it), counts every call, and can raise at the k-th generated item to simulate
a run killed mid-way.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from avere_utils.models.backend import Backend
from avere_utils.records import Example, Item, Media


class Interrupted(RuntimeError):
    """Raised by FakeBackend(fail_at=k) when it reaches the k-th item (simulates a killed run)."""


def fake_media_fn(items: Sequence[Item]) -> Callable[[Item], Media]:
    """Media whose one audio sample is the item's index: the fake backend reads it back."""
    index = {it.id: i for i, it in enumerate(items)}
    cache: dict[str, Media] = {}

    def load(item: Item) -> Media:
        if item.id not in cache:
            cache[item.id] = Media(frames=None, audio=np.array([index[item.id]], dtype=np.float32))
        return cache[item.id]

    return load


class FakeBackend(Backend):
    """A `Backend` whose evaluation methods (generate, score_choices) answer from the items; the training
    methods raise (evaluation never calls them)."""

    def __init__(self, items: Sequence[Item], answer: Callable[[Item], str] | None = None,
                 scores: Callable[[Item, Sequence[str]], Sequence[float]] | None = None,
                 fail_at: int | None = None):
        self.items = list(items)
        self.answer = answer or (lambda it: it.label or "")
        self.scores = scores or (lambda it, choices: [float(-i) for i in range(len(choices))])
        self.fail_at = fail_at
        self.generated: list[str] = []  # ids, in call order
        self.scored: list[str] = []
        self.calls: list[dict] = []  # generate kwargs
        self.model = torch.nn.Linear(1, 1)
        self.tokenizer = None
        self.device = torch.device("cpu")

    def _item(self, example: Example) -> Item:
        return self.items[int(example.media.audio[0])]

    def generate(self, examples: Sequence[Example], *, max_new_tokens: int = 32, temperature: float = 0.0,
                 seed: int | None = None, use_cache: bool = True) -> list[str]:
        self.calls.append({"max_new_tokens": max_new_tokens, "temperature": temperature, "seed": seed,
                           "use_cache": use_cache, "n": len(examples)})
        out = []
        for ex in examples:
            it = self._item(ex)
            if self.fail_at is not None and len(self.generated) == self.fail_at:
                raise Interrupted(f"simulated crash at item #{self.fail_at} ({it.id})")
            self.generated.append(it.id)
            out.append(self.answer(it))
        return out

    def score_choices(self, example: Example, choices: Sequence[str]) -> torch.Tensor:
        it = self._item(example)
        self.scored.append(it.id)
        return torch.tensor(list(self.scores(it, choices)), dtype=torch.float32)

    def sequence_logprobs(self, examples, *, grad=False, share_prefix=False):  # not used by evaluation
        raise NotImplementedError("FakeBackend has no log-likelihoods of responses")

    def reference(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def trainable_parameters(self) -> Iterator[torch.nn.Parameter]:
        return iter(())

    def save_adapter(self, path: str) -> None:
        raise NotImplementedError("FakeBackend has no adapters")

    def load_adapter(self, path: str) -> None:
        raise NotImplementedError("FakeBackend has no adapters")
