"""The one interface through which pairs, training and evaluation use a model.

Nothing outside `avere_utils.models` touches model internals.  A backend wraps a Qwen2.5-Omni thinker
(real 7B weights or the tiny config) with optional LoRA adapters; the *reference* model is the same
backend inside `with backend.reference():` (adapters disabled, no second copy in memory).
"""
from __future__ import annotations

import abc
import contextlib
from typing import Any, Iterator, Sequence

import torch

from avere_utils.records import Example


class Backend(abc.ABC):
    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    # the decoding settings the checkpoint expects (`avere_utils.media.MediaSettings`; None: the defaults)
    # and the folder it was loaded from (None for an in-memory model): training fingerprints both
    media_settings: Any = None
    model_dir: str | None = None

    @abc.abstractmethod
    def sequence_logprobs(self, examples: Sequence[Example], *, grad: bool = False, share_prefix: bool = False
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed log-probability of each example's `response` tokens given its prompt and media, and
        the number of response tokens.  Returns (logp [B] float32, n_tokens [B] long).  One padded
        forward for the whole list.  `grad=False` runs under torch.no_grad().  An Example whose
        `media` is None or empty gets a text-only prompt (no media placeholders at all).
        `share_prefix`: examples with the same prompt and the same Media object share one prompt pass
        (same values up to floating-point order); a backend may ignore it."""

    @abc.abstractmethod
    def generate(self, examples: Sequence[Example], *, max_new_tokens: int = 32, temperature: float = 0.0,
                 seed: int | None = None, use_cache: bool = True) -> list[str]:
        """Batched decoding; greedy when temperature == 0, else sampling with the given seed."""

    @abc.abstractmethod
    def score_choices(self, example: Example, choices: Sequence[str]) -> torch.Tensor:
        """Log-likelihood [K] of each candidate response given one prompt+media; the shared prompt is
        encoded once (its KV cache reused for all candidates)."""

    def score_choices_batch(self, examples: Sequence[Example], choices: Sequence[Sequence[str]]) -> list[torch.Tensor]:
        """score_choices for several prompts at once (a backend may share work between them)."""
        if len(examples) != len(choices):
            raise ValueError(f"{len(examples)} examples but {len(choices)} lists of choices")
        return [self.score_choices(ex, c) for ex, c in zip(examples, choices)]

    @abc.abstractmethod
    def reference(self) -> contextlib.AbstractContextManager:
        """Context in which the model is the frozen reference (LoRA adapters disabled)."""

    @abc.abstractmethod
    def trainable_parameters(self) -> Iterator[torch.nn.Parameter]:
        """The LoRA parameters (everything else is frozen)."""

    @abc.abstractmethod
    def save_adapter(self, path: str) -> None: ...

    @abc.abstractmethod
    def load_adapter(self, path: str) -> None: ...
