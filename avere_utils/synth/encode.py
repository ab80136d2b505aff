"""Writing clips: h264 mp4 (yuv420p, optionally with an AAC track) and 16-bit PCM wav files."""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile as sf


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> None:
    """audio: (S,) mono or (S, C) float in [-1, 1] -> 16-bit PCM wav."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, sample_rate, subtype="PCM_16")


def _add_audio_stream(container: av.container.OutputContainer, out_rate: int, channels: int) -> av.audio.stream.AudioStream:
    stream = container.add_stream("aac", rate=out_rate, layout="mono" if channels == 1 else "stereo")
    stream.codec_context.bit_rate = 64000 * channels
    stream.options = {"aac_coder": "fast"}  # the default two-loop search costs ~3x more for no use here
    return stream


def _encode_audio(container: av.container.OutputContainer, stream: av.audio.stream.AudioStream,
                  audio: np.ndarray, in_rate: int) -> None:
    out_rate, channels = stream.rate, stream.codec_context.channels
    src = av.AudioFrame.from_ndarray(audio.reshape(1, -1).astype(np.float32), format="fltp", layout="mono")
    src.sample_rate, src.pts, src.time_base = in_rate, 0, Fraction(1, in_rate)
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=out_rate)
    mono = np.concatenate([f.to_ndarray() for f in resampler.resample(src) + resampler.resample(None)], axis=1)
    # Copy the mono signal into every channel ourselves: FFmpeg's mono->stereo upmix would lower it by 3 dB.
    data = np.ascontiguousarray(np.repeat(mono, channels, axis=0), dtype=np.float32)
    step = stream.codec_context.frame_size or 1024
    for start in range(0, data.shape[1], step):
        frame = av.AudioFrame.from_ndarray(data[:, start:start + step], format="fltp", layout=stream.layout.name)
        frame.sample_rate, frame.pts, frame.time_base = out_rate, start, Fraction(1, out_rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: int, audio: np.ndarray | None = None,
              audio_rate: int = 16000, out_audio_rate: int = 16000, audio_channels: int = 1) -> None:
    """frames: (T, H, W, 3) uint8 with even H, W.  audio (optional): mono float32 at audio_rate."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _, h, w, _ = frames.shape
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.mp4")
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        # One thread per encoder (the process pool owns the cores); ultrafast keeps generation quick.
        stream.codec_context.thread_count = 1
        stream.options = {"preset": "ultrafast", "crf": "18", "threads": "1"}
        # Every stream must exist before the first packet is muxed (the header is written then).
        astream = _add_audio_stream(container, out_audio_rate, audio_channels) if audio is not None else None
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        if astream is not None:
            _encode_audio(container, astream, audio, audio_rate)
    os.replace(tmp, path)
