"""Plain records passed between stages.  Every loader returns `Item`s; every model call takes `Example`s."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class Item:
    """One benchmark or training item, whatever dataset it came from.

    `video` / `audio` are absolute paths (or None when the dataset has no such file).  `label` is a
    canonical name from `emotions.EMOTIONS` (None for unlabeled items).  `text` holds the dataset's own
    text fields: EmoReAlM `task`/`question`/`choices`/`answer`, EMER `reason`, training-source `captions`,
    and for the synthetic world the clip's `cues` record (see CueRecord in docs/ARCHITECTURE.md).
    """

    id: str
    dataset: str
    split: str
    video: str | None = None
    audio: str | None = None
    label: str | None = None
    text: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Item":
        return cls(**d)


@dataclass
class Media:
    """Decoded inputs for one clip.  frames: (T, H, W, 3) uint8; audio: (S,) float32 mono at 16 kHz.
    Either may be None (a text-only prompt has neither)."""

    frames: np.ndarray | None = None
    audio: np.ndarray | None = None
    sample_rate: int = 16000

    @property
    def is_empty(self) -> bool:
        return self.frames is None and self.audio is None


@dataclass
class Example:
    """One model call: a user prompt about some media, and optionally a response to score or train on."""

    prompt: str
    media: Media | None = None
    response: str | None = None
