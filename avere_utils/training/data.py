"""From preference-pair rows to the sequences the loss needs, and the deterministic data order.

A pair row (docs/ARCHITECTURE.md) holds a prompt, the chosen response, two rejected responses and the
PMP rejected input.  `plan_sample` turns one row into named sequences:

* "chosen", and one per rejection kind the loss config uses ("vr", "er", or "rejected"), on the real
  input.  They share ONE Media object, so the backend encodes the clip once for all of them;
* "chosen_pmp": the chosen response on the PMP rejected input, only when the row's targeted modality
  (visual -> video, audio -> audio, both -> both) intersects the config's `pmp_modalities`, the rejected
  input then replaces exactly that intersection (Vista-DPO style: video only);
* the text-only versions of chosen and rejections (media=None) when TPD is on.

Every sequence also gets a content key (prompt, response, where its audio and video come from) under
which its reference / text-only log-prob is cached; identical sequences of different variants share it.
"""
from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from avere_utils.records import Example, Media
from avere_utils.training.loss import LossConfig

TARGETED = {"visual": ("video",), "audio": ("audio",), "both": ("video", "audio")}
REQUIRED_COLUMNS = ("id", "prompt", "chosen", "rejected_vr", "rejected_er", "video", "audio", "video_l",
                    "audio_l", "modality")


@dataclass
class PairSource:
    """The pairs a run trains on: rows (ARCHITECTURE.md columns) and how to load a row's media as
    (real input, PMP rejected input)."""

    rows: Sequence[Mapping[str, Any]]
    load_media: Callable[[Mapping[str, Any]], tuple[Media, Media]]


def check_rows(rows: Sequence[Mapping[str, Any]], source: str) -> None:
    if not rows:
        raise ValueError(f"{source}: no preference pairs to train on")
    missing = [c for c in REQUIRED_COLUMNS if c not in rows[0]]
    if missing:
        raise ValueError(f"{source}: pair rows lack column(s) {missing}; expected {list(REQUIRED_COLUMNS)}")
    bad = sorted({str(r["modality"]) for r in rows if r["modality"] not in TARGETED})
    if bad:
        raise ValueError(f"{source}: unknown modality value(s) {bad}; expected one of {list(TARGETED)}")


def replaced_modalities(row: Mapping[str, Any], config: LossConfig) -> tuple[str, ...]:
    """Which modalities the PMP rejected input replaces for this row under this config (may be empty).  A
    modality whose rejected path is the real one has no rejected input (pairs `pmp_valid_only`): the row's
    PMP term is then masked, not computed on two identical inputs."""
    if not config.needs_pmp:
        return ()
    real = {"video": row["video"], "audio": row.get("audio") or row["video"]}
    return tuple(m for m in TARGETED[row["modality"]]
                 if m in config.pmp_modalities and row.get(f"{m}_l", "") != real[m])


def rejection_choice(row: Mapping[str, Any], kind: str) -> str:
    """The response column behind a rejection key.  "rejected" (single-rejection form, alternate) picks
    vr or er from a hash of the row id: deterministic, about half each, independent of the data order."""
    if kind == "rejected":
        kind = "vr" if zlib.crc32(str(row["id"]).encode()) % 2 == 0 else "er"
    return f"rejected_{kind}"


def sequence_key(prompt: str, response: str, video: str | None, audio: str | None) -> str:
    return hashlib.sha1(json.dumps([prompt, response, video, audio]).encode()).hexdigest()


@dataclass
class SamplePlan:
    """The sequences of one sample.  `policy` lists (name, Example) pairs that go through the policy (and
    the reference); `text` lists those scored text-only by the frozen reference (with tpd_form policy by the
    policy too).  `keys` maps every name to its cache key."""

    row_index: int
    policy: list[tuple[str, Example]] = field(default_factory=list)
    text: list[tuple[str, Example]] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def has_pmp(self) -> bool:
        return any(name == "chosen_pmp" for name, _ in self.policy)


def plan_sample(row_index: int, row: Mapping[str, Any], config: LossConfig,
                media: tuple[Media, Media] | None) -> SamplePlan:
    """The sequences the loss needs for one row.  `media` = (real, rejected) from the pair source, or
    None to plan text-only / keys only (Examples then carry media=None where media would be)."""
    real, rejected = media if media is not None else (None, None)
    prompt, chosen = row["prompt"], row["chosen"]
    plan = SamplePlan(row_index)
    responses = {"chosen": chosen}
    for kind in config.rejection_weights():
        responses[kind] = row[rejection_choice(row, kind)]
    for name, response in responses.items():
        plan.policy.append((name, Example(prompt, real, response)))
        plan.keys[name] = sequence_key(prompt, response, row["video"], row["audio"])
    swap = replaced_modalities(row, config)
    if swap:
        pmp = None
        if real is not None:
            video_from = rejected if "video" in swap else real
            audio_from = rejected if "audio" in swap else real
            pmp = Media(frames=video_from.frames, audio=audio_from.audio, sample_rate=real.sample_rate,
                        frames_key=video_from.frames_key, audio_key=audio_from.audio_key)
        plan.policy.append(("chosen_pmp", Example(prompt, pmp, chosen)))
        plan.keys["chosen_pmp"] = sequence_key(prompt, chosen, row["video_l"] if "video" in swap else row["video"],
                                               row["audio_l"] if "audio" in swap else row["audio"])
    if config.needs_text:
        for name, response in responses.items():
            plan.text.append((f"text_{name}", Example(prompt, None, response)))
            plan.keys[f"text_{name}"] = sequence_key(prompt, response, None, None)
    return plan


class DataOrder:
    """Which samples each optimizer step uses, on each process: a seeded permutation per epoch, cut into
    global batches of per_device_train_batch_size x gradient_accumulation_steps x num_processes samples.  The last
    incomplete global batch of an epoch is dropped (and counted), so every step has the same size on
    every process - what makes accumulation and multi-process runs reproduce the large-batch update."""

    def __init__(self, n_samples: int, *, seed: int, per_device_train_batch_size: int,
                 gradient_accumulation_steps: int, num_processes: int = 1):
        self.n = n_samples
        self.seed = seed
        self.per_device = per_device_train_batch_size
        self.accum = gradient_accumulation_steps
        self.world = num_processes
        self.global_batch = per_device_train_batch_size * gradient_accumulation_steps * num_processes
        self.steps_per_epoch = n_samples // self.global_batch
        self.dropped_per_epoch = n_samples - self.steps_per_epoch * self.global_batch
        if self.steps_per_epoch == 0:
            raise ValueError(f"{n_samples} pairs are fewer than one global batch ({self.global_batch} = "
                             f"{per_device_train_batch_size} per device x {gradient_accumulation_steps} accumulation x "
                             f"{num_processes} processes)")

    def permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def global_batch_indices(self, step: int) -> np.ndarray:
        epoch, s = divmod(step, self.steps_per_epoch)
        return self.permutation(epoch)[s * self.global_batch:(s + 1) * self.global_batch]

    def micro_batches(self, step: int, rank: int) -> list[list[int]]:
        """The gradient_accumulation_steps micro-batches of `rank` at optimizer step `step` (0-based)."""
        batch = self.global_batch_indices(step)
        out = []
        for m in range(self.accum):
            start = (m * self.world + rank) * self.per_device
            out.append([int(i) for i in batch[start:start + self.per_device]])
        return out
