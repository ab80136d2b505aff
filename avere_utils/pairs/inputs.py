"""PMP rejected inputs: which clip (or noise) replaces the modality a prompt asks about, and decoding.

PMP contrasts the SAME chosen response under the real input and under an input whose prompt-targeted
modality is wrong: a visual prompt gets another clip's video, an audio prompt another clip's audio, a joint
prompt both; the non-targeted modality keeps its real path.  "Another clip" means a clip whose emotion in
that modality differs (paper text), drawn from the same split so that validation clips never leak into
training; "noise" (a param per modality) is `noise:<seed>`: uniform noise frames of the real frames'
shape, and uniform noise audio of the real audio's length and loudness (RMS), which is what the released
loader did for audio.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from avere_utils.media import MediaError, MediaSettings, load_media
from avere_utils.records import Media

log = logging.getLogger(__name__)

NOISE_PREFIX = "noise:"


@dataclass(frozen=True)
class ClipRef:
    """What PMP needs to know about a candidate clip."""

    clip_id: str
    video: str
    audio: str
    video_emotion: str
    audio_emotion: str


@dataclass(frozen=True)
class RejectedInput:
    video_l: str
    audio_l: str
    rejected_clip_id: str = ""  # "" when every replaced modality is noise
    rejected_clip_video: str = ""  # both paths of that clip (one feature-cache entry per clip)
    rejected_clip_audio: str = ""


def noise_seed(seed: int, sample_id: str) -> int:
    """A stable 31-bit seed per sample (independent of Python's hash randomisation)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()[:4], "big") & 0x7FFFFFFF


def is_noise(spec: str) -> bool:
    return spec.startswith(NOISE_PREFIX)


def parse_noise(spec: str) -> int:
    try:
        return int(spec[len(NOISE_PREFIX):])
    except ValueError:
        raise ValueError(f"bad noise spec {spec!r}; expected 'noise:<integer seed>'") from None


class RejectedInputPicker:
    """Draws the PMP rejected input of a sample from a pool of clips (one split)."""

    def __init__(self, pool: list[ClipRef], video_source: str = "other_clip", audio_source: str = "other_clip"):
        if {video_source, audio_source} - {"other_clip", "noise", "same_emotion_clip", "counterfactual"}:
            raise ValueError(f"unknown PMP source {video_source!r} / {audio_source!r}")
        self.video_source = video_source
        self.audio_source = audio_source
        self.pool = pool
        self.by_video: dict[str, list[ClipRef]] = defaultdict(list)
        self.by_audio: dict[str, list[ClipRef]] = defaultdict(list)
        for c in pool:
            self.by_video[c.video_emotion].append(c)
            self.by_audio[c.audio_emotion].append(c)
        self.fallbacks_to_noise = 0  # no clip with a different emotion was available

    @staticmethod
    def _same(index: Mapping[str, list[ClipRef]], clip: ClipRef, emotion: str, rng: np.random.Generator
              ) -> ClipRef | None:
        clips = [c for c in index.get(emotion, []) if c.clip_id != clip.clip_id]
        return clips[int(rng.integers(len(clips)))] if clips else None

    def _donor(self, source: str, index: Mapping[str, list[ClipRef]], clip: ClipRef, emotion: str,
               rng: np.random.Generator) -> ClipRef | None:
        """The clip whose stream replaces the real one (None: noise).  A counterfactual sample whose chosen
        response cites no cue of the modality has no counterfactual: it falls back to other_clip here."""
        if source == "same_emotion_clip":
            return self._same(index, clip, emotion, rng)
        if source in ("other_clip", "counterfactual"):
            return self._other(index, emotion, rng)
        return None

    @staticmethod
    def _other(index: Mapping[str, list[ClipRef]], emotion: str, rng: np.random.Generator) -> ClipRef | None:
        emotions = sorted(e for e, clips in index.items() if e != emotion and clips)
        if not emotions:
            return None
        # Uniform over emotions first, so frequent classes do not dominate the rejected inputs.
        clips = index[emotions[int(rng.integers(len(emotions)))]]
        return clips[int(rng.integers(len(clips)))]

    def _other_both(self, clip: ClipRef, rng: np.random.Generator) -> ClipRef | None:
        candidates = [c for c in self._other_pool(clip) if c.video_emotion != clip.video_emotion
                      and c.audio_emotion != clip.audio_emotion]
        return candidates[int(rng.integers(len(candidates)))] if candidates else None

    def _other_pool(self, clip: ClipRef) -> list[ClipRef]:
        return [c for c in self.pool if c.clip_id != clip.clip_id]

    def pick(self, clip: ClipRef, modality: str, rng: np.random.Generator, seed: int) -> RejectedInput:
        noise = f"{NOISE_PREFIX}{seed}"
        swap_video = modality in ("visual", "both")
        swap_audio = modality in ("audio", "both")
        video_l, audio_l, other = clip.video, clip.audio, None
        clip_sources = ("other_clip", "counterfactual")
        if swap_video and swap_audio and self.video_source in clip_sources and self.audio_source in clip_sources:
            other = self._other_both(clip, rng)
            if other is not None:
                return RejectedInput(other.video, other.audio, other.clip_id, other.video, other.audio)
        if swap_video:
            other = self._donor(self.video_source, self.by_video, clip, clip.video_emotion, rng)
            video_l = other.video if other is not None else noise
            self.fallbacks_to_noise += int(self.video_source != "noise" and other is None)
        if swap_audio:
            other_a = self._donor(self.audio_source, self.by_audio, clip, clip.audio_emotion, rng)
            audio_l = other_a.audio if other_a is not None else noise
            self.fallbacks_to_noise += int(self.audio_source != "noise" and other_a is None)
            if other is None:
                other = other_a
            elif other_a is not None and other_a.clip_id != other.clip_id:
                # Two different source clips (only when no single clip differs in both emotions).
                return RejectedInput(video_l, audio_l, f"{other.clip_id}+{other_a.clip_id}")
        if other is None:
            return RejectedInput(video_l, audio_l)
        return RejectedInput(video_l, audio_l, other.clip_id, other.video, other.audio)


# --- decoding -----------------------------------------------------------------------------------------
def noise_frames(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def noise_audio(like: np.ndarray, seed: int) -> np.ndarray:
    """Uniform noise of `like`'s length and RMS (uniform on [-a, a] has RMS a / sqrt(3))."""
    rms = float(np.sqrt(np.mean(np.square(like, dtype=np.float64)))) if like.size else 0.0
    amplitude = min(1.0, np.sqrt(3.0) * rms) if rms > 0 else 0.1
    rng = np.random.default_rng(seed)
    return rng.uniform(-amplitude, amplitude, size=like.shape).astype(np.float32)


def _get(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key) or ""
    return str(value)


def load_pair_media(row: Mapping[str, Any], settings: MediaSettings = MediaSettings(), cache: Any = None
                    ) -> tuple[Media, Media]:
    """(real, rejected) Media of one pair row; `cache` is an optional `avere_utils.cache.FeatureCache`."""
    video, audio = _get(row, "video"), _get(row, "audio")
    video_l, audio_l = _get(row, "video_l"), _get(row, "audio_l")
    if not video or not video_l or not audio_l:
        raise MediaError(f"pair {row.get('id')!r}: needs non-empty video, video_l and audio_l")
    real = load_media(video, audio or None, settings, cache)

    swap_video = video_l != video
    swap_audio = audio_l != (audio or video)
    frames, wav = real.frames, real.audio
    frames_key, audio_key = real.frames_key, real.audio_key
    paths = {m: p for m, p, swap in (("video", video_l, swap_video), ("audio", audio_l, swap_audio))
             if swap and not is_noise(p)}
    if paths:
        clip_video, clip_audio = _get(row, "rejected_clip_video"), _get(row, "rejected_clip_audio")
        # Decode the donor clip as a whole when its paths are known: the cache then holds one entry per clip.
        src_video = paths.get("video") or (clip_video if clip_video and clip_audio == paths.get("audio") else None)
        src_audio = paths.get("audio") or (clip_audio if clip_audio and clip_video == paths.get("video")
                                           else audio or video)  # else the real audio: decoded, then unused
        donor = load_media(src_video, src_audio, settings, cache)
        if "video" in paths:
            frames, frames_key = donor.frames, donor.frames_key
        if "audio" in paths:
            wav, audio_key = donor.audio, donor.audio_key
    if swap_video and is_noise(video_l):
        if real.frames is None:
            raise MediaError(f"pair {row.get('id')!r}: noise video needs the real frames' shape; {video} has none")
        frames = noise_frames(real.frames.shape, parse_noise(video_l))
        frames_key = f"v:{video_l}:{'x'.join(map(str, frames.shape))}"  # a seed and a shape fix the noise
    if swap_audio and is_noise(audio_l):
        if real.audio is None:
            raise MediaError(f"pair {row.get('id')!r}: noise audio needs the real audio's length; {audio} has none")
        wav = noise_audio(real.audio, parse_noise(audio_l))
        audio_key = f"{real.audio_key}+{audio_l}" if real.audio_key else ""  # scaled to the real audio's RMS
    return real, Media(frames=frames, audio=wav, sample_rate=real.sample_rate,
                       frames_key=frames_key, audio_key=audio_key)


def media_ok(video: str | None, audio: str | None) -> str | None:
    """Why a clip cannot be used (None = both files exist).  A cheap check: decoding is the loader's job."""
    if not video:
        return "no video path"
    if not os.path.isfile(video):
        return f"video file missing: {video}"
    if audio and not os.path.isfile(audio):
        return f"audio file missing: {audio}"
    return None


# --- counterfactual rejected inputs (synthetic world) -------------------------------------------------------
class CounterfactualInputs:
    """PMP rejected inputs that need perception: the sample's own clip re-rendered with the cues its chosen
    response rests on toggled (synth/counterfactual.py), in each modality whose source is `counterfactual`.

    The emotion, the other cues, the context, even the camera's jitter stay; only what the chosen response
    claims is gone (a present cue removed, a denied cue added, the context replaced), with another part
    toggled the other way.  So the chosen response is preferred under the real input only by a model that
    perceives the cue, unlike a clip of another emotion, which a model tells apart by the emotion alone.
    A sample without such cues (or a clip without a recipe) keeps the picker's input, counted."""

    def __init__(self, world_root: str, video_source: str, audio_source: str):
        from avere_utils.synth.counterfactual import world_config, world_specs

        self.root = world_root
        self.sources = {"visual": video_source, "audio": audio_source}
        try:
            self.cfg, _ = world_config(world_root)
            self.specs = world_specs(world_root, ("train_source",))
        except FileNotFoundError as err:  # real data, or a hand-made folder: no recipe to re-render
            log.warning("PMP counterfactual inputs: %s; every sample keeps the other_clip input (counted as "
                        "pmp_fallback_no_recipe)", err)
            self.cfg, self.specs = None, {}
        self.pending: dict[str, Any] = {}
        self.counts: dict[str, int] = defaultdict(int)

    @property
    def active(self) -> bool:
        return "counterfactual" in self.sources.values()

    def rejected(self, clip_id: str, cues: Mapping[str, list[str]], fallback: RejectedInput) -> RejectedInput:
        """The counterfactual input for the cues ({modality: [cue]}) of the counterfactual modalities, the
        other targeted modalities keeping `fallback`'s."""
        from avere_utils.synth.counterfactual import toggle_cues

        wanted = {m: list(c) for m, c in cues.items() if c and self.sources.get(m) == "counterfactual"}
        spec = self.specs.get(clip_id)
        cf = toggle_cues(spec, wanted) if wanted and spec is not None else None
        if cf is None:
            self.counts["fallback_no_cue" if spec is not None else "fallback_no_recipe"] += 1
            return fallback
        self.pending[cf.clip_id] = cf
        self.counts["counterfactual"] += 1
        video = os.path.join(self.root, cf.video_path)
        wav = os.path.join(self.root, cf.wav_path)
        return RejectedInput(video if "visual" in wanted else fallback.video_l,
                             wav if "audio" in wanted else fallback.audio_l, cf.clip_id, video, wav)

    def render(self) -> int:
        """Render the counterfactual clips the samples name (those not on disk yet)."""
        from avere_utils.synth.counterfactual import render_counterfactuals

        if not self.pending:
            return 0
        return render_counterfactuals(list(self.pending.values()), self.root, self.cfg)
