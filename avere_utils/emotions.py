"""The emotion vocabulary shared by every stage: class names, dataset label maps, and the cue lexicon.

The cue lexicon is the backbone of the synthetic world: a clip *shows* some of these phrases (its cue
record), descriptions *cite* some of them, and because both are known exactly we can tell a grounded
explanation from a spurious association (cites a present but irrelevant cue) or a hallucination (cites a
typical cue that is absent).  Real datasets only use EMOTIONS and the label maps.
"""
from __future__ import annotations

import re
from functools import lru_cache

# DFEW order: label k (1-based) is EMOTIONS[k - 1].
EMOTIONS: tuple[str, ...] = ("happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear")

DFEW_LABELS: dict[int, str] = {i + 1: e for i, e in enumerate(EMOTIONS)}
# RAVDESS emotion code (3rd field) -> canonical name; calm (02) is handled by the loader's calm policy.
RAVDESS_LABELS: dict[str, str] = {
    "01": "neutral", "02": "calm", "03": "happiness", "04": "sadness",
    "05": "anger", "06": "fear", "07": "disgust", "08": "surprise",
}
# MER2023 `discrete` column -> canonical name; worried is dropped by the protocol.
MER2023_LABELS: dict[str, str] = {
    "happy": "happiness", "sad": "sadness", "neutral": "neutral", "angry": "anger", "surprise": "surprise",
}
MER2023_CLASSES: tuple[str, ...] = ("happiness", "sadness", "neutral", "anger", "surprise")

# --- cue lexicon (synthetic world) -------------------------------------------------------------------
# Each emotion expresses itself through three visual "parts" and three audio "parts".  A clip renders
# a subset of its emotion's parts; the others are hidden (visual: occluded) or flat (audio), so the
# emotion's remaining typical cues are ABSENT from that clip - citing them is a hallucination.
VISUAL_PARTS: tuple[str, ...] = ("mouth", "brows", "eyes")
AUDIO_PARTS: tuple[str, ...] = ("pitch", "energy", "tempo")

VISUAL_CUES: dict[str, dict[str, str]] = {
    "happiness": {"mouth": "a broad smile", "brows": "softly arched brows", "eyes": "crinkled eyes"},
    "sadness": {"mouth": "a downturned mouth", "brows": "inner brows raised", "eyes": "drooping eyelids"},
    "neutral": {"mouth": "a relaxed closed mouth", "brows": "level brows", "eyes": "a steady gaze"},
    "anger": {"mouth": "tightly pressed lips", "brows": "furrowed brows", "eyes": "a glaring stare"},
    "surprise": {"mouth": "a dropped open jaw", "brows": "high raised brows", "eyes": "wide open eyes"},
    "disgust": {"mouth": "a raised upper lip", "brows": "lowered brows", "eyes": "narrowed eyes"},
    "fear": {"mouth": "lips stretched back", "brows": "brows drawn together", "eyes": "widened tense eyes"},
}
AUDIO_CUES: dict[str, dict[str, str]] = {
    "happiness": {"pitch": "a high rising pitch", "energy": "a bright loud voice", "tempo": "a quick lively pace"},
    "sadness": {"pitch": "a low falling pitch", "energy": "a quiet soft voice", "tempo": "a slow dragging pace"},
    "neutral": {"pitch": "a flat even pitch", "energy": "moderate loudness", "tempo": "a steady pace"},
    "anger": {"pitch": "a harsh low pitch", "energy": "a loud shouting voice", "tempo": "a fast clipped pace"},
    "surprise": {"pitch": "a sharp pitch jump", "energy": "a sudden loud exclamation", "tempo": "short bursts of speech"},
    "disgust": {"pitch": "a low groaning pitch", "energy": "a muted voice", "tempo": "drawn out syllables"},
    "fear": {"pitch": "a high shaky pitch", "energy": "a breathy voice", "tempo": "a trembling voice"},
}
# Emotion-irrelevant context.  In the training source it correlates with the emotion (spurious knob);
# in the test sets it is drawn independently.
VISUAL_CONTEXT: dict[str, tuple[str, ...]] = {
    "background": ("a yellow background", "a blue background", "a green background", "a gray background",
                   "a red background", "a purple background", "an orange background"),
    "object": ("a coffee mug", "a potted plant", "a desk lamp", "a stack of books"),
}
AUDIO_CONTEXT: dict[str, tuple[str, ...]] = {
    "ambience": ("a low background hum", "a soft piano tune", "a ticking clock", "birdsong chirps",
                 "rain noise"),
}
# Which context value co-occurs with each emotion in the training source (index into the tuples above).
SPURIOUS_BACKGROUND: dict[str, str] = dict(zip(EMOTIONS, VISUAL_CONTEXT["background"]))
SPURIOUS_AMBIENCE: dict[str, str] = {e: AUDIO_CONTEXT["ambience"][i % 5] for i, e in enumerate(EMOTIONS)}

MODALITIES: tuple[str, ...] = ("visual", "audio", "both")


def typical_cues(emotion: str, modality: str) -> list[str]:
    """All typical cue phrases of an emotion for 'visual', 'audio' or 'both'."""
    out: list[str] = []
    if modality in ("visual", "both"):
        out += list(VISUAL_CUES[emotion].values())
    if modality in ("audio", "both"):
        out += list(AUDIO_CUES[emotion].values())
    return out


def context_cues(modality: str) -> list[str]:
    out: list[str] = []
    if modality in ("visual", "both"):
        out += [c for vals in VISUAL_CONTEXT.values() for c in vals]
    if modality in ("audio", "both"):
        out += [c for vals in AUDIO_CONTEXT.values() for c in vals]
    return out


@lru_cache(maxsize=1)
def all_cue_phrases() -> tuple[str, ...]:
    phrases = {c for e in EMOTIONS for c in typical_cues(e, "both")} | set(context_cues("both"))
    # Longest first so that a phrase never shadows a longer one that contains it.
    return tuple(sorted(phrases, key=lambda p: (-len(p), p)))


@lru_cache(maxsize=1)
def _cue_regex() -> re.Pattern[str]:
    return re.compile(r"\b(" + "|".join(re.escape(p) for p in all_cue_phrases()) + r")\b", re.IGNORECASE)


def find_cues(text: str) -> list[str]:
    """Cue phrases cited in a text, in order of appearance, without duplicates (exact lexicon match)."""
    seen: dict[str, None] = {}
    for m in _cue_regex().finditer(text or ""):
        seen.setdefault(m.group(1).lower(), None)
    return list(seen)


def cue_kind(cue: str) -> tuple[str, str]:
    """(modality, emotion-or-'context') of a lexicon phrase; KeyError for an unknown phrase."""
    for e in EMOTIONS:
        if cue in VISUAL_CUES[e].values():
            return "visual", e
        if cue in AUDIO_CUES[e].values():
            return "audio", e
    if cue in context_cues("visual"):
        return "visual", "context"
    if cue in context_cues("audio"):
        return "audio", "context"
    raise KeyError(cue)
