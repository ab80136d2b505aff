"""What the synthetic world is made of: its knobs (WorldConfig), one clip's recipe (ClipSpec) and the
clip's cue record (which lexicon phrases it shows, per modality).

A clip's recipe fixes everything its files will hold: the emotion shown by the face and voiced by the
audio, which face parts / voice parts render that emotion (the others are occluded / masked, so the
emotion's remaining typical cues are ABSENT), and the emotion-irrelevant context (background colour,
an object, an ambience sound).  The cue record is derived from the recipe, never from the pixels, so
it is exact by construction.
"""
from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from avere_utils.emotions import (
    AUDIO_CONTEXT,
    AUDIO_CUES,
    AUDIO_PARTS,
    EMOTIONS,
    SPURIOUS_AMBIENCE,
    SPURIOUS_BACKGROUND,
    VISUAL_CONTEXT,
    VISUAL_CUES,
    VISUAL_PARTS,
)

# Bump when the rendering or the layout changes, so that a stored world is regenerated.
GENERATOR_VERSION = 5


@dataclass
class WorldConfig:
    """Knobs of the synthetic world.  Sizes are per dataset; rates are probabilities."""

    n_train_source: int = 640
    n_dfew_test_per_class: int = 50
    n_dfew_train_per_class: int = 2
    n_ravdess_actors: int = 2
    n_mer2023: int = 100
    n_mer2023_worried: int = 6  # rows labelled `worried`, which the protocol drops
    n_emer: int = 100
    n_emorealm_per_task: int = 240
    spurious_rate: float = 0.8  # train_source only: P(context follows SPURIOUS_BACKGROUND/AMBIENCE)
    text_prior_rate: float = 0.3  # train_source captions: P(cite an ABSENT typical cue)
    context_reason_rate: float = 0.6  # train_source captions: P(cite a context cue as a reason)
    qa_text_prior_rate: float = 0.0  # train_source stress questions about context / absent cues: P(answered Yes)
    cue_typicality: float = 0.0  # train_source: how unevenly typical cues are rendered and believed (0 = flat)
    disagreement_rate: float = 0.15  # train_source and DFEW: P(audio voices another emotion)
    parts_probs: tuple[float, float, float] = (0.25, 0.5, 0.25)  # P(1, 2, 3 rendered parts) per modality
    video_size: int = 112  # written frame size (even: yuv420p)
    clip_seconds: float = 2.0
    dfew_fps: int = 24
    ravdess_fps: int = 30
    mer_fps: int = 25
    train_fps: int = 24
    sample_rate: int = 16000
    ravdess_audio_rate: int = 48000  # RAVDESS mp4s carry 48 kHz stereo AAC, as the real release
    jitter_px: float = 1.5  # slight camera motion over frames (in written pixels)
    workers: int = 2

    def __post_init__(self) -> None:
        if self.video_size % 2:
            raise ValueError(f"video_size must be even for yuv420p, got {self.video_size}")
        for name in ("spurious_rate", "text_prior_rate", "context_reason_rate", "qa_text_prior_rate", "cue_typicality",
                     "disagreement_rate"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"WorldConfig.{name} must be in [0, 1], got {v}")
        self.parts_probs = tuple(float(p) for p in self.parts_probs)  # type: ignore[assignment]
        if len(self.parts_probs) != 3 or abs(sum(self.parts_probs) - 1) > 1e-6:
            raise ValueError(f"parts_probs must be 3 probabilities summing to 1, got {self.parts_probs}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["parts_probs"] = list(self.parts_probs)
        return d


@dataclass
class ClipSpec:
    """One clip's recipe.  Paths are relative to the world root."""

    clip_id: str
    dataset: str
    video_emotion: str
    audio_emotion: str
    visual_parts: tuple[str, ...]
    audio_parts: tuple[str, ...]
    background: str
    obj: str
    ambience: str
    seed: int
    fps: int
    seconds: float
    video_path: str | None = None  # the mp4
    wav_path: str | None = None  # a separate 16 kHz wav, if the layout has one
    audio_in_video: bool = False  # mux the audio into the mp4 (RAVDESS, MER)
    video_audio_rate: int = 16000
    video_audio_channels: int = 1
    has_video: bool = True
    meta: dict[str, Any] = field(default_factory=dict)

    def cue_record(self) -> dict[str, Any]:
        return cue_record(self)


def cue_record(spec: ClipSpec) -> dict[str, Any]:
    """The ARCHITECTURE.md cue record: present / absent typical cues and context, per modality."""
    ve, ae = spec.video_emotion, spec.audio_emotion
    return {
        "video_emotion": ve,
        "audio_emotion": ae,
        "visual": {"present": [VISUAL_CUES[ve][p] for p in VISUAL_PARTS if p in spec.visual_parts],
                   "absent": [VISUAL_CUES[ve][p] for p in VISUAL_PARTS if p not in spec.visual_parts],
                   "context": [spec.background, spec.obj]},
        "audio": {"present": [AUDIO_CUES[ae][p] for p in AUDIO_PARTS if p in spec.audio_parts],
                  "absent": [AUDIO_CUES[ae][p] for p in AUDIO_PARTS if p not in spec.audio_parts],
                  "context": [spec.ambience]},
    }


def clip_rng(seed: int, dataset: str, index: int) -> np.random.Generator:
    """An independent, reproducible stream per (world seed, dataset, clip index)."""
    tag = zlib.crc32(dataset.encode())  # stable across runs and platforms (unlike hash())
    return np.random.default_rng(np.random.SeedSequence([seed, tag, index]))


# How typical (common) each typical cue is: per emotion and modality one common, one middling and one rare
# part, rotated over the emotions so that no part is common for all of them.
TYPICALITY_LEVELS: tuple[float, float, float] = (0.9, 0.5, 0.1)


def typicality(modality: str, emotion: str, part: str, strength: float) -> float:
    """In [0, 1]: how common the cue `part` of `emotion` is in the training source (0.5 for every cue at
    strength 0; the TYPICALITY_LEVELS at strength 1)."""
    parts = VISUAL_PARTS if modality == "visual" else AUDIO_PARTS
    level = TYPICALITY_LEVELS[(parts.index(part) + EMOTIONS.index(emotion) + (modality == "audio")) % 3]
    return 0.5 + strength * (level - 0.5)


def cue_typicality(cue: str, strength: float) -> float | None:
    """typicality() of a lexicon phrase; None for a context cue."""
    for modality, table in (("visual", VISUAL_CUES), ("audio", AUDIO_CUES)):
        for emotion, by_part in table.items():
            for part, phrase in by_part.items():
                if phrase == cue:
                    return typicality(modality, emotion, part, strength)
    return None


def draw_parts(rng: np.random.Generator, parts: tuple[str, ...], probs: tuple[float, float, float],
               weights: tuple[float, ...] | None = None) -> tuple[str, ...]:
    """Which parts render: how many by `probs`, which ones uniformly or, with `weights`, in proportion to
    them (without replacement)."""
    k = int(rng.choice([1, 2, 3], p=probs))
    if weights is None:
        chosen = set(rng.choice(len(parts), size=k, replace=False).tolist())
    else:
        w = np.asarray(weights, dtype=float)
        chosen = set(rng.choice(len(parts), size=k, replace=False, p=w / w.sum()).tolist())
    return tuple(p for i, p in enumerate(parts) if i in chosen)


def make_spec(rng: np.random.Generator, *, clip_id: str, dataset: str, emotion: str, cfg: WorldConfig,
              fps: int, spurious: bool = False, disagreement_rate: float = 0.0,
              audio_emotion: str | None = None, n_parts: int | None = None, **kw: Any) -> ClipSpec:
    """Draw a clip recipe.  With `spurious` (the training source), the context follows the emotion with
    cfg.spurious_rate and, with cfg.cue_typicality > 0, common cues render more often than rare ones."""
    if audio_emotion is None:
        audio_emotion = emotion
        if rng.random() < disagreement_rate:
            others = [e for e in EMOTIONS if e != emotion]
            audio_emotion = others[int(rng.integers(len(others)))]
    if n_parts is None:
        # the training source renders common cues more often than rare ones (cue_typicality); test sets do not
        typical = spurious and cfg.cue_typicality > 0
        vw = tuple(typicality("visual", emotion, p, cfg.cue_typicality) for p in VISUAL_PARTS) if typical else None
        aw = tuple(typicality("audio", audio_emotion, p, cfg.cue_typicality) for p in AUDIO_PARTS) if typical else None
        vparts = draw_parts(rng, VISUAL_PARTS, cfg.parts_probs, vw)
        aparts = draw_parts(rng, AUDIO_PARTS, cfg.parts_probs, aw)
    else:
        vparts = tuple(sorted(rng.choice(VISUAL_PARTS, size=n_parts, replace=False).tolist(), key=VISUAL_PARTS.index))
        aparts = tuple(sorted(rng.choice(AUDIO_PARTS, size=n_parts, replace=False).tolist(), key=AUDIO_PARTS.index))
    backgrounds, ambiences = VISUAL_CONTEXT["background"], AUDIO_CONTEXT["ambience"]
    if spurious and rng.random() < cfg.spurious_rate:
        background = SPURIOUS_BACKGROUND[emotion]
    else:
        background = backgrounds[int(rng.integers(len(backgrounds)))]
    if spurious and rng.random() < cfg.spurious_rate:
        ambience = SPURIOUS_AMBIENCE[audio_emotion]
    else:
        ambience = ambiences[int(rng.integers(len(ambiences)))]
    objects = VISUAL_CONTEXT["object"]
    return ClipSpec(clip_id=clip_id, dataset=dataset, video_emotion=emotion, audio_emotion=audio_emotion,
                    visual_parts=vparts, audio_parts=aparts, background=background,
                    obj=objects[int(rng.integers(len(objects)))], ambience=ambience,
                    seed=int(rng.integers(2**31 - 1)), fps=fps, seconds=cfg.clip_seconds, **kw)
