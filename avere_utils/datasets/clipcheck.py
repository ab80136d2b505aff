"""Check every clip of a loaded dataset (container, streams, duration, first and last frame) and turn the
problems into counted skips, so that an unreadable clip shows in stage 01 and `check-data`, not hours
later during evaluation.

A clip cut short (`truncated`: it declares more than it holds) still gives frames, sampled over what
decodes; `truncated_clips` decides: "keep" (the item stays, marked `text["truncated"] = True`, counted in
`LoadResult.flagged` and in the evaluation metrics) or "skip" (a counted skip).  Every other problem
makes the item unusable: it is always a skip under its kind (`empty_file`, `no_audio`, ...), the
detail naming the file.
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from avere_utils.datasets.common import LoadResult
from avere_utils.media import ClipCheck, check_clip
from avere_utils.records import Item

log = logging.getLogger(__name__)

TRUNCATED_POLICIES = ("keep", "skip")


@dataclass
class ClipProblem:
    item_id: str
    role: str  # "video" (the clip) or "audio" (its separate wav)
    check: ClipCheck

    @property
    def kind(self) -> str:
        return f"{self.role}:{self.check.problem}"


@dataclass
class ProbeSummary:
    n_items: int = 0  # items whose files were checked
    n_files: int = 0  # distinct files checked
    seconds: float = 0.0
    problems: list[ClipProblem] = field(default_factory=list)

    @property
    def files_per_s(self) -> float:
        return self.n_files / self.seconds if self.seconds > 0 else 0.0


def needs_audio_track(item: Item, on_missing_audio: str) -> bool:
    """The clip's own audio track is needed when the item has no wav and a clip without audio is an error
    downstream (media.on_missing_audio == "error")."""
    return item.audio is None and on_missing_audio == "error"


def probe_items(items: list[Item], *, on_missing_audio: str = "error", sample: int | None = None, seed: int = 0,
                desc: str = "check clips") -> ProbeSummary:
    """Check each item's files (all of them, or `sample` items drawn with `seed`)."""
    chosen = items
    if sample is not None and sample < len(items):
        chosen = random.Random(seed).sample(items, sample)
    out = ProbeSummary(n_items=len(chosen))
    seen: dict[tuple[str, bool, bool], ClipCheck] = {}  # EmoReAlM: many questions share one clip

    def check(path: str, need_video: bool, need_audio: bool) -> ClipCheck:
        key = (path, need_video, need_audio)
        if key not in seen:
            out.n_files += 1
            seen[key] = check_clip(path, need_video=need_video, need_audio=need_audio)
        return seen[key]

    t0 = time.perf_counter()
    for it in tqdm(chosen, desc=desc, unit="clip", leave=False):
        if it.video:
            r = check(it.video, True, needs_audio_track(it, on_missing_audio))
            if r.problem:
                out.problems.append(ClipProblem(it.id, "video", r))
        if it.audio:
            r = check(it.audio, False, True)
            if r.problem:
                out.problems.append(ClipProblem(it.id, "audio", r))
    out.seconds = time.perf_counter() - t0
    return out


def apply_probe(res: LoadResult, summary: ProbeSummary, truncated_clips: str = "keep") -> LoadResult:
    """Drop (counted) the items whose files are unusable; keep-and-flag or skip the truncated ones."""
    if truncated_clips not in TRUNCATED_POLICIES:
        raise ValueError(f"truncated_clips must be one of {TRUNCATED_POLICIES}, got {truncated_clips!r}")
    worst: dict[str, ClipProblem] = {}
    for p in summary.problems:
        # an unusable file outranks a truncated one of the same item
        if p.item_id not in worst or worst[p.item_id].check.problem == "truncated":
            worst[p.item_id] = p
    kept = []
    for it in res.items:
        p = worst.get(it.id)
        if p is None:
            kept.append(it)
            continue
        if p.check.problem == "truncated" and truncated_clips == "keep":
            log.warning("%s: kept (truncated_clips=keep): %s", res.dataset, p.check.detail)
            res.flag("truncated", p.check.detail)
            it.text = {**(it.text or {}), "truncated": True}
            kept.append(it)
            continue
        res.skip(p.check.problem, p.check.detail)
    res.items = kept
    return res
