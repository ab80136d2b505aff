"""A feature cache for decoded clips: one .npz per (files, sizes, mtimes, decode settings).

Decoding a clip (demux, decode, scale, resample) costs milliseconds to seconds; reading back its eight
small frames and its audio from an uncompressed .npz costs well under a millisecond.  The key includes the
absolute path, size and mtime (ns) of each input file, so an edited or replaced file is decoded again, and
the decode settings, so a different frame size or sample rate never returns stale arrays.  Files are
sharded into 256 sub-folders by the key's first two hex digits and written atomically (tmp + rename), so
parallel workers and interrupted runs never leave half a file behind.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np

from avere_utils.records import Media

log = logging.getLogger(__name__)


def file_stamp(path: str | None) -> str:
    """A file's identity for caching: its resolved path, size and mtime (ns)."""
    if not path:
        return "-"
    p = Path(path).resolve()
    try:
        st = p.stat()
    except FileNotFoundError:
        return f"{p}|missing"  # the compute call will raise its MediaError; nothing is cached
    return f"{p}|{st.st_size}|{st.st_mtime_ns}"


class FeatureCache:
    def __init__(self, cache_dir: str | os.PathLike):
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0

    def key(self, video_path: str | None, audio_path: str | None, settings) -> str:
        text = "\n".join([file_stamp(video_path), file_stamp(audio_path), settings.key()])
        return hashlib.sha1(text.encode()).hexdigest()

    def path_for(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.npz"

    def get_or_compute(self, video_path: str | None, audio_path: str | None, settings,
                       compute: Callable[[], Media]) -> Media:
        """The cached Media for these inputs, or compute() stored for next time."""
        path = self.path_for(self.key(video_path, audio_path, settings))
        if path.is_file():
            try:
                with np.load(path) as z:
                    self.hits += 1
                    return Media(frames=z["frames"] if "frames" in z else None,
                                 audio=z["audio"] if "audio" in z else None,
                                 sample_rate=int(z["sample_rate"]))
            except (OSError, ValueError, KeyError) as e:  # a damaged entry is recomputed, not trusted
                log.warning("feature cache entry %s unreadable (%s); decoding again", path, e)
        self.misses += 1
        media = compute()
        arrays: dict[str, np.ndarray] = {"sample_rate": np.asarray(media.sample_rate)}
        if media.frames is not None:
            arrays["frames"] = media.frames
        if media.audio is not None:
            arrays["audio"] = media.audio
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        return media

    def __len__(self) -> int:
        return sum(1 for _ in self.cache_dir.glob("*/*.npz"))
