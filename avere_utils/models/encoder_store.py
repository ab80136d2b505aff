"""The frozen encoders' outputs, kept on disk between the reference pass and the policy steps.

AVEm-DPO trains LoRA adapters on the language model only; the vision and audio encoders stay frozen, so the
tokens they make for a clip are the same at every step.  The trainer's reference pass (`precompute`) already
runs them on every clip a step will see, the PMP term's rejected inputs included; with a store, their outputs
are written once there and read back at each step instead of computed again (docs/training.md, "The frozen
encoders' outputs").

One safetensors file per (model fingerprint, decoded stream): `Media.frames_key` / `Media.audio_key` name the
stream, so a clip loaded again at a later step (new arrays, same files) is found.  Files are sharded by the
first two hex digits of their name and written atomically; an unreadable file is computed again, with a
warning.  Sizes: the tiny model's few kilobytes per clip; Qwen2.5-Omni-7B's about 7.3 MB per clip in bf16
(1,024 video tokens x 3,584), about 80 GB for the paper's 41,687 pairs at four samples per clip.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)


class EncoderStore:
    def __init__(self, folder: str | os.PathLike, namespace: str):
        """`namespace`: what makes the outputs valid (the trainer gives the model's fingerprint, which holds
        the processor settings, and the dtype)."""
        self.folder = Path(folder)
        self.namespace = namespace
        self.hits = 0
        self.misses = 0
        self.writes = 0

    def path_for(self, key: str) -> Path:
        name = hashlib.sha1(f"{self.namespace}\n{key}".encode()).hexdigest()
        return self.folder / name[:2] / f"{name}.safetensors"

    def get(self, key: str) -> torch.Tensor | None:
        """The stored output for this stream, or None (counted as a miss)."""
        path = self.path_for(key)
        if path.is_file():
            try:
                tensor = load_file(path)["tokens"]
                self.hits += 1
                return tensor
            except Exception as e:  # a damaged entry is recomputed, never trusted
                log.warning("encoder store entry %s unreadable (%s); computing it again", path, e)
        self.misses += 1
        return None

    def put(self, key: str, tensor: torch.Tensor) -> None:
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp")
        save_file({"tokens": tensor.detach().to("cpu").contiguous()}, tmp)
        os.replace(tmp, path)
        self.writes += 1

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "writes": self.writes}
