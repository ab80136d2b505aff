"""Reference and text-only log-probabilities, computed once per sequence and kept on disk.

Both come from the frozen reference model (adapters disabled) without gradient, so a value depends only
on the reference checkpoint, the media decoding settings and the sequence's content key
(`data.sequence_key`).  One JSON file per (checkpoint, settings) fingerprint holds key -> float; the six
variants of a run share it, so the second variant recomputes nothing it has in common with the first.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Iterable

from avere_utils.paths import atomic_write_text
from avere_utils.weights import content_stamp

log = logging.getLogger(__name__)


def model_fingerprint(model_dir: str | None, extra: str = "") -> str | None:
    """sha1 of the checkpoint folder's content (name, size, sha256 of each file: `weights.content_stamp`)
    and `extra` (e.g. media settings); neither its place nor its mtimes, so a copied or moved run keeps its
    cache and its checkpoints.  None when the model has no folder (an in-memory test model)."""
    if not model_dir or not Path(model_dir).is_dir():
        return None
    parts = [extra] + [f"{name}|{size}|{sha}" for name, size, sha in content_stamp(model_dir)]
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]


class LogpCache:
    def __init__(self, cache_dir: str | Path | None, fingerprint: str | None):
        self.path = Path(cache_dir) / f"{fingerprint}.json" if cache_dir and fingerprint else None
        self.values: dict[str, float] = {}
        self.computed = 0
        if self.path is not None and self.path.is_file():
            try:
                self.values = {k: float(v) for k, v in json.loads(self.path.read_text()).items()}
            except (OSError, ValueError) as e:  # a damaged cache is recomputed, not trusted
                log.warning("log-prob cache %s unreadable (%s); starting it again", self.path, e)
        log.info("log-prob cache %s: %d values", self.path or "(in memory)", len(self.values))

    def missing(self, keys: Iterable[str]) -> list[str]:
        return [k for k in dict.fromkeys(keys) if k not in self.values]

    def update(self, new: dict[str, float]) -> None:
        self.computed += len(new)
        self.values.update(new)

    def __getitem__(self, key: str) -> float:
        return self.values[key]

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def save(self) -> None:
        if self.path is not None:
            atomic_write_text(self.path, json.dumps(self.values))
