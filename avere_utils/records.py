"""Plain records passed between stages.  Every loader returns `Item`s; every model call takes `Example`s."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

from avere_utils.emotions import EMOTIONS


@dataclass
class Item:
    """One benchmark or training item, whatever dataset it came from.

    `video` / `audio` are absolute paths (or None when the dataset has no such file).  `label` is a
    canonical name from `emotions.EMOTIONS` (None for unlabeled items).  `text` holds the dataset's own
    text fields: EmoReAlM `task`/`question`/`choices`/`answer`, EMER `reason`, training-source `captions`,
    and for the synthetic world the clip's `cues` record (`cue_record()` reads it as a `CueRecord`).
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

    def cue_record(self) -> "CueRecord | None":
        """The synthetic world's cue record of this clip, typed (None for real data)."""
        raw = (self.text or {}).get("cues")
        return CueRecord.from_dict(raw, where=f"{self.dataset} item {self.id} cue record") if raw else None

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
    # where each array came from (decoded files + settings, or a noise seed); "" = unknown.  The frozen
    # encoders' outputs are keyed by these (models/encoder_store.py), so a clip loaded again at a later
    # step is not re-encoded.  Arrays with the same key must be equal.
    frames_key: str = field(default="", compare=False)
    audio_key: str = field(default="", compare=False)

    @property
    def is_empty(self) -> bool:
        return self.frames is None and self.audio is None


@dataclass
class Example:
    """One model call: a user prompt about some media, and optionally a response to score or train on."""

    prompt: str
    media: Media | None = None
    response: str | None = None


@dataclass(frozen=True)
class ModalityCues:
    present: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    context: tuple[str, ...] = ()


@dataclass(frozen=True)
class CueRecord:
    """The synthetic world's per-clip record (docs/ARCHITECTURE.md, "Cue record")."""

    video_emotion: str
    audio_emotion: str
    visual: ModalityCues = field(default_factory=ModalityCues)
    audio: ModalityCues = field(default_factory=ModalityCues)

    @property
    def agree(self) -> bool:
        return self.video_emotion == self.audio_emotion

    def of(self, modality: str) -> ModalityCues:
        return self.visual if modality == "visual" else self.audio

    def emotion_of(self, modality: str) -> str:
        return self.video_emotion if modality == "visual" else self.audio_emotion

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "cue record") -> "CueRecord":
        try:
            ve, ae = d["video_emotion"], d["audio_emotion"]
        except KeyError as e:
            raise ValueError(f"{where}: missing key {e.args[0]!r}") from None
        for name, emo in (("video_emotion", ve), ("audio_emotion", ae)):
            if emo not in EMOTIONS:
                raise ValueError(f"{where}: {name} {emo!r} is not one of {EMOTIONS}")

        def part(key: str) -> ModalityCues:
            m = d.get(key) or {}
            return ModalityCues(*(tuple(m.get(k) or ()) for k in ("present", "absent", "context")))

        return cls(ve, ae, part("visual"), part("audio"))

    def to_dict(self) -> dict[str, Any]:
        def part(m: ModalityCues) -> dict[str, list[str]]:
            return {"present": list(m.present), "absent": list(m.absent), "context": list(m.context)}

        return {"video_emotion": self.video_emotion, "audio_emotion": self.audio_emotion,
                "visual": part(self.visual), "audio": part(self.audio)}
