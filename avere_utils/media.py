"""Decoding clips into model inputs with PyAV: N frames sampled over the clip, and 16 kHz mono audio.

Decode rules (the same for every dataset, real or synthetic):

* frames: `n_frames` frames at indices `linspace(0, total - 1, n_frames)` (rounded), as the paper samples
  them, converted to RGB and resized to `frame_size` x `frame_size` by FFmpeg's scaler;
* audio: from the given wav if there is one, else from the video's own audio stream; resampled to
  `sample_rate` whatever the input rate; stereo (or more channels) folded to mono by `stereo_to_mono`
  ("mean" of the channels by default, or "left" = first channel); the decoder's trailing padding (AAC adds
  about a frame's worth of samples) trimmed to the stream's declared duration; clips longer than
  `max_audio_s` are cut with a logged warning, never silently.

Every failure raises `MediaError` naming the file and the problem; a clip without audio raises
`MissingAudioError` unless `on_missing_audio` is "skip" (Media.audio = None) or "silence" (zeros of the
clip's duration).
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np

from avere_utils.records import Media

if TYPE_CHECKING:  # the cache imports this module; avoid a cycle at import time
    from avere_utils.cache import FeatureCache

log = logging.getLogger(__name__)

STEREO_TO_MONO = ("mean", "left")
ON_MISSING_AUDIO = ("error", "skip", "silence")


class MediaError(ValueError):
    """A clip that cannot be decoded as asked; the message names the file and the problem."""


class MissingAudioError(MediaError):
    """A clip (and no separate wav) without any audio stream."""


@dataclass(frozen=True)
class MediaSettings:
    n_frames: int = 8
    frame_size: int = 56
    sample_rate: int = 16000
    max_audio_s: float = 30.0
    stereo_to_mono: str = "mean"
    on_missing_audio: str = "error"

    def __post_init__(self) -> None:
        if self.n_frames < 1 or self.frame_size < 2 or self.sample_rate < 1000:
            raise ValueError(f"MediaSettings out of range: {self}")
        if self.stereo_to_mono not in STEREO_TO_MONO:
            raise ValueError(f"stereo_to_mono must be one of {STEREO_TO_MONO}, got {self.stereo_to_mono!r}")
        if self.on_missing_audio not in ON_MISSING_AUDIO:
            raise ValueError(f"on_missing_audio must be one of {ON_MISSING_AUDIO}, got {self.on_missing_audio!r}")

    def key(self) -> str:
        """A stable text form of the settings, part of the feature-cache key."""
        return ",".join(f"{k}={v}" for k, v in sorted(asdict(self).items()))


@dataclass(frozen=True)
class ProbeInfo:
    has_video: bool
    has_audio: bool
    duration: float  # seconds (0.0 when the container does not say)
    fps: float  # 0.0 without video
    n_frames: int  # declared (or counted) video frames; 0 without video


def _open(path: str | os.PathLike) -> av.container.InputContainer:
    p = Path(path)
    if not p.is_file():
        raise MediaError(f"{p}: file not found")
    if p.stat().st_size == 0:
        raise MediaError(f"{p}: empty file")
    try:
        return av.open(str(p))
    except (av.error.FFmpegError, OSError) as e:
        raise MediaError(f"{p}: unreadable container ({e})") from e


def _duration(container: av.container.InputContainer, stream: av.stream.Stream | None) -> float:
    if stream is not None and stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return 0.0


def _count_video_packets(container: av.container.InputContainer, stream: av.stream.Stream) -> int:
    """Frame count when the container does not declare it: demux only (no decoding)."""
    n = sum(1 for pkt in container.demux(stream) if pkt.size > 0)
    container.seek(0)
    return n


def probe(path: str | os.PathLike) -> ProbeInfo:
    """What a file holds, without decoding it."""
    with _open(path) as c:
        v = c.streams.video[0] if c.streams.video else None
        a = c.streams.audio[0] if c.streams.audio else None
        n = 0
        fps = 0.0
        if v is not None:
            n = v.frames or _count_video_packets(c, v)
            rate = v.average_rate or v.guessed_rate
            fps = float(rate) if rate else 0.0
        return ProbeInfo(v is not None, a is not None, _duration(c, v or a), fps, n)


# --- clip check (check-data, stage 01): is the whole clip there, without decoding all of it ------------
CLIP_PROBLEMS = ("missing_file", "empty_file", "unreadable", "no_video", "no_audio", "zero_duration",
                 "first_frame_undecodable", "truncated")


@dataclass(frozen=True)
class ClipCheck:
    problem: str | None  # one of CLIP_PROBLEMS, None when the clip is sound
    detail: str = ""


def _first_frame(c: av.container.InputContainer, stream: av.stream.Stream) -> bool:
    try:
        for _ in c.decode(stream):
            return True
    except av.error.FFmpegError:
        return False
    return False


def _end_time(c: av.container.InputContainer, stream: av.stream.Stream, declared: float) -> float | None:
    """Seconds (from the stream start) reached by the last frame that decodes, decoding only the tail:
    seek to the key frame before the declared end, decode from there.  None when nothing decodes there."""
    tb = stream.time_base
    start = float(stream.start_time * tb) if stream.start_time is not None and tb is not None else 0.0
    target = start + max(0.0, declared - 0.5)
    last: float | None = None
    try:
        c.seek(int(target / tb), stream=stream, backward=True, any_frame=False)
        for frame in c.decode(stream):
            if frame.time is not None:
                t = float(frame.time) - start
                if frame.duration and frame.time_base is not None:
                    t += float(frame.duration * frame.time_base)
                elif stream.type == "audio" and frame.sample_rate:
                    t += frame.samples / frame.sample_rate
                last = t if last is None else max(last, t)
    except av.error.FFmpegError:
        pass  # a corrupt tail: what decoded before it is what the clip has
    return last


def wav_shortfall(path: Path) -> str | None:
    """For a RIFF wav whose header declares more sample bytes than the file holds (a copy cut short),
    what is missing; FFmpeg reads such a file to its end without saying so.  None otherwise."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk = f.read(8)
            n = int.from_bytes(chunk[4:8], "little")
            if chunk[:4] == b"data":
                held = size - pos - 8
                if n != 0xFFFFFFFF and held < n:  # 0xFFFFFFFF: a streamed wav with no size written
                    return f"header declares {n} sample bytes, the file holds {held}"
                return None
            pos += 8 + n + (n & 1)
    return None


def check_clip(path: str | os.PathLike, *, need_video: bool, need_audio: bool) -> ClipCheck:
    """Whether a clip opens, has the streams asked for, a duration, a decodable first frame and a last
    frame at its declared end (a file cut short declares more than it holds: `truncated`)."""
    p = Path(path)
    if not p.is_file():
        return ClipCheck("missing_file", f"{p}: file not found")
    if p.stat().st_size == 0:
        return ClipCheck("empty_file", f"{p}: empty file (0 bytes)")
    try:
        c = av.open(str(p))
    except (av.error.FFmpegError, OSError) as e:
        return ClipCheck("unreadable", f"{p}: unreadable container ({e})")
    if p.suffix.lower() == ".wav":
        short = wav_shortfall(p)
        if short:
            c.close()
            return ClipCheck("truncated", f"{p}: {short}")
    with c:
        v = c.streams.video[0] if c.streams.video else None
        a = c.streams.audio[0] if c.streams.audio else None
        if need_video and v is None:
            return ClipCheck("no_video", f"{p}: no video stream")
        if need_audio and a is None:
            return ClipCheck("no_audio", f"{p}: no audio stream")
        for stream in (s for s in (v if need_video else None, a if need_audio else None) if s is not None):
            declared = _duration(c, stream)
            if declared <= 0:
                return ClipCheck("zero_duration", f"{p}: {stream.type} stream declares no duration")
            c.seek(0)
            if not _first_frame(c, stream):
                return ClipCheck("first_frame_undecodable", f"{p}: first {stream.type} frame does not decode")
            reached = _end_time(c, stream, declared)
            rate = float(stream.average_rate or 0) if stream.type == "video" else 0.0
            # one video frame (the last frame's duration may be unset) or about one AAC packet of audio
            slack = 1.0 / rate + 0.02 if rate else 0.1
            if reached is None or reached < declared - slack:
                got = "nothing" if reached is None else f"{reached:.2f} s"
                return ClipCheck("truncated", f"{p}: {stream.type} declares {declared:.2f} s, decodes to {got}")
    return ClipCheck(None)


def frame_indices(total: int, n: int) -> np.ndarray:
    """The paper's sampling: n indices at linspace(0, total - 1, n), rounded (repeats when total < n)."""
    if total < 1:
        raise ValueError("a clip needs at least one frame")
    return np.linspace(0, total - 1, n).round().astype(int)


def _decode_at(path: str | os.PathLike, total: int | None, n_frames: int, frame_size: int
               ) -> tuple[dict[int, np.ndarray], np.ndarray, int]:
    """Decode until the last wanted index; returns (index -> frame, wanted indices, frames decoded)."""
    with _open(path) as c:
        if not c.streams.video:
            raise MediaError(f"{path}: no video stream")
        stream = c.streams.video[0]
        if total is None:
            total = stream.frames or _count_video_packets(c, stream)
        if total < 1:
            raise MediaError(f"{path}: zero video frames")
        wanted = frame_indices(total, n_frames)
        keep = set(wanted.tolist())
        picked: dict[int, np.ndarray] = {}
        decoded = 0
        try:
            for i, frame in enumerate(c.decode(stream)):
                decoded = i + 1
                if i in keep:  # only kept frames are converted: the RGB conversion is the costly step
                    picked[i] = frame.to_ndarray(format="rgb24", width=frame_size, height=frame_size)
                if i >= wanted[-1]:
                    break
        except av.error.FFmpegError as e:
            raise MediaError(f"{path}: truncated or corrupt video stream after {decoded} frames ({e})") from e
    if decoded == 0:
        raise MediaError(f"{path}: zero decodable video frames")
    return picked, wanted, decoded


def load_video_frames(path: str | os.PathLike, n_frames: int = 8, frame_size: int = 56) -> np.ndarray:
    """(n_frames, frame_size, frame_size, 3) uint8 RGB frames sampled evenly over the clip."""
    picked, wanted, decoded = _decode_at(path, None, n_frames, frame_size)
    if len(picked) < len(set(wanted.tolist())):
        # The container declared more frames than it holds: sample again over what really decodes.
        log.warning("%s: declares more frames than the %d that decode; sampling over those", path, decoded)
        picked, wanted, _ = _decode_at(path, decoded, n_frames, frame_size)
        if len(picked) < len(set(wanted.tolist())):
            raise MediaError(f"{path}: frames {sorted(set(wanted.tolist()) - set(picked))} could not be decoded")
    return np.stack([picked[i] for i in wanted.tolist()])


def _to_mono(x: np.ndarray, rule: str) -> np.ndarray:
    """x: (channels, samples) float32 -> (samples,)."""
    if x.shape[0] == 1:
        return x[0]
    if rule == "left":
        return x[0]
    return x.mean(axis=0)


def load_audio(path: str | os.PathLike, settings: MediaSettings = MediaSettings()) -> np.ndarray | None:
    """Mono float32 audio at settings.sample_rate from a wav or from a video's audio stream.

    Returns None only when the file has no audio and settings.on_missing_audio == "skip".
    """
    sr = settings.sample_rate
    with _open(path) as c:
        if not c.streams.audio:
            if settings.on_missing_audio == "error":
                raise MissingAudioError(f"{path}: no audio stream")
            if settings.on_missing_audio == "skip":
                return None
            dur = _duration(c, c.streams.video[0] if c.streams.video else None)
            return np.zeros(int(round(dur * sr)), dtype=np.float32)
        stream = c.streams.audio[0]
        declared = _duration(c, stream)
        # Keep the channels through resampling, fold them ourselves: the rule is then explicit.
        resampler = av.AudioResampler(format="fltp", layout=stream.layout.name if stream.layout else None, rate=sr)
        chunks: list[np.ndarray] = []
        try:
            for frame in c.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            for out in resampler.resample(None):  # flush the resampler's delay line
                chunks.append(out.to_ndarray())
        except av.error.FFmpegError as e:
            raise MediaError(f"{path}: truncated or corrupt audio stream ({e})") from e
    if not chunks:
        raise MediaError(f"{path}: audio stream holds no samples")
    audio = _to_mono(np.concatenate(chunks, axis=1).astype(np.float32), settings.stereo_to_mono)
    if declared > 0:
        n_declared = int(round(declared * sr))
        if len(audio) > n_declared:  # decoder padding (AAC priming/remainder) beyond the stream's duration
            audio = audio[:n_declared]
    max_n = int(settings.max_audio_s * sr)
    if len(audio) > max_n:
        log.warning("%s: audio is %.1f s, cut to max_audio_s=%.1f s", path, len(audio) / sr, settings.max_audio_s)
        audio = audio[:max_n]
    return np.ascontiguousarray(audio, dtype=np.float32)


def decode_media(video_path: str | None, audio_path: str | None, settings: MediaSettings) -> Media:
    """Decode without a cache (see load_media)."""
    frames = load_video_frames(video_path, settings.n_frames, settings.frame_size) if video_path else None
    audio_src = audio_path or video_path
    audio = load_audio(audio_src, settings) if audio_src else None
    return Media(frames=frames, audio=audio, sample_rate=settings.sample_rate)


def load_media(video_path: str | None, audio_path: str | None, settings: MediaSettings = MediaSettings(),
               cache: "FeatureCache | None" = None) -> Media:
    """Frames from `video_path` and audio from `audio_path` (else from the video's own audio stream).

    With a cache, the decoded arrays are stored once per (files, sizes, mtimes, settings) and reused.
    """
    if video_path is None and audio_path is None:
        raise MediaError("load_media needs a video path, an audio path, or both")
    if cache is None:
        media = decode_media(video_path, audio_path, settings)
    else:
        media = cache.get_or_compute(video_path, audio_path, settings,
                                     lambda: decode_media(video_path, audio_path, settings))
    return with_source_keys(media, video_path, audio_path or video_path, settings)


def source_key(kind: str, path: str, settings: MediaSettings) -> str:
    """The identity of one decoded stream: its file (path, size, mtime) and the decode settings."""
    from avere_utils.cache import file_stamp

    return f"{kind}:" + hashlib.sha1(f"{file_stamp(path)}\n{settings.key()}".encode()).hexdigest()


def with_source_keys(media: Media, video_src: str | None, audio_src: str | None, settings: MediaSettings) -> Media:
    """`media` with `frames_key` / `audio_key` naming the files and settings its arrays were decoded from."""
    media.frames_key = source_key("v", video_src, settings) if media.frames is not None and video_src else ""
    media.audio_key = source_key("a", audio_src, settings) if media.audio is not None and audio_src else ""
    return media
