"""Counterfactual clips: the same recipe with one cue toggled, rendered like the original.

A clip's recipe (ClipSpec) fixes everything its files hold, and its seed fixes every random draw the
renderers make that does not depend on the cues (the face's skin, the object's corner, the camera's jitter,
the voice's noise).  Re-rendering the recipe with one part added or removed, or one context value replaced,
gives the clip a model would see if only that cue had been different: the same emotion, the same other cues.

That is the contrast the paper's perception errors are about.  "Does a trembling voice show fear?" is a
question the text alone can answer for a typical clip; only a model that listens can answer it for the clip
whose voice does not tremble.  The counterfactual is used twice:

* as the PMP rejected input (`pairs/inputs.py`, `pmp_*_source: counterfactual`): the chosen response cites a
  cue; the rejected input is the same clip without it (or, for a cue the answer denies, with it);
* to measure media sensitivity (`evaluation/media_sensitivity.py`): does a stress answer change when the
  asked cue is toggled?

Only a synthetic world can do this exactly: real clips have no recipe.
"""
from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from avere_utils.emotions import AUDIO_CONTEXT, AUDIO_CUES, AUDIO_PARTS, VISUAL_CONTEXT, VISUAL_CUES, VISUAL_PARTS
from avere_utils.synth.spec import ClipSpec, WorldConfig

COUNTERFACTUAL_DIR = "counterfactual"  # under the world root
_CONTEXT_FIELDS = {"visual": (("background", VISUAL_CONTEXT["background"]), ("obj", VISUAL_CONTEXT["object"])),
                   "audio": (("ambience", AUDIO_CONTEXT["ambience"]),)}


def _parts(modality: str) -> tuple[str, ...]:
    return VISUAL_PARTS if modality == "visual" else AUDIO_PARTS


def _emotion(spec: ClipSpec, modality: str) -> str:
    return spec.video_emotion if modality == "visual" else spec.audio_emotion


def _rendered(spec: ClipSpec, modality: str) -> tuple[str, ...]:
    return spec.visual_parts if modality == "visual" else spec.audio_parts


def locate_cue(spec: ClipSpec, modality: str, cue: str) -> tuple[str, str] | None:
    """Where `cue` lives in the recipe: ("part", part) for a typical cue of the modality's emotion (present
    or absent), ("context", field) for a context value the clip has; None when the clip has no such cue."""
    table = VISUAL_CUES if modality == "visual" else AUDIO_CUES
    for part, phrase in table[_emotion(spec, modality)].items():
        if phrase == cue:
            return "part", part
    for field, _ in _CONTEXT_FIELDS[modality]:
        if getattr(spec, field) == cue:
            return "context", field
    return None


def toggle_cues(spec: ClipSpec, cues: Mapping[str, Sequence[str]], *, balance: bool = True) -> ClipSpec | None:
    """The recipe with each cue of `cues` ({modality: [cue, ...]}) toggled: a typical cue's part removed when
    rendered, added when not; a context value replaced by another of its field.  With `balance`, the parts
    toggled in a modality are paired with as many other parts of that modality toggled the other way (as far
    as the clip has them), so that how many parts are rendered does not give the answer away.  None when a
    cue is not one of the clip's.  Paths point into COUNTERFACTUAL_DIR; the seed is kept, so every draw that
    does not depend on the cues repeats.  Deterministic: the balancing parts and new context values are drawn
    from (clip seed, the cues)."""
    key = ";".join(f"{m}:{c}" for m in sorted(cues) for c in sorted(cues[m])) + f";{int(balance)}"
    rng = np.random.default_rng([spec.seed, zlib.crc32(key.encode())])
    changes: dict[str, Any] = {}
    for modality in sorted(cues):
        rendered = set(_rendered(spec, modality))
        flipped: set[str] = set()
        for cue in cues[modality]:
            where = locate_cue(spec, modality, cue)
            if where is None:
                return None
            what, name = where
            if what == "part":
                flipped.add(name)
            else:
                options = [v for v in dict(_CONTEXT_FIELDS[modality])[name] if v != cue]
                changes[name] = options[int(rng.integers(len(options)))]
        if not flipped:
            continue
        removed = flipped & rendered
        added = flipped - rendered
        rendered ^= flipped
        if balance:
            # the other way: as many absent parts added as cue parts removed, and present ones removed as added
            spare_absent = [p for p in _parts(modality) if p not in rendered and p not in flipped]
            spare_present = [p for p in _parts(modality) if p in rendered and p not in flipped]
            for pool, n in ((spare_absent, len(removed) - len(added)), (spare_present, len(added) - len(removed))):
                for _ in range(max(0, min(n, len(pool)))):
                    rendered ^= {pool.pop(int(rng.integers(len(pool))))}
        changes["visual_parts" if modality == "visual" else "audio_parts"] = tuple(
            p for p in _parts(modality) if p in rendered)
    tag = f"{spec.clip_id}-cf-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
    return replace(spec, clip_id=tag, **changes,
                   video_path=f"{COUNTERFACTUAL_DIR}/{tag}.mp4" if spec.has_video and spec.video_path else None,
                   wav_path=f"{COUNTERFACTUAL_DIR}/{tag}.wav",
                   audio_in_video=False, meta={**spec.meta, "counterfactual_of": spec.clip_id,
                                               "toggled": {m: list(c) for m, c in cues.items()}})


def toggle_cue(spec: ClipSpec, modality: str, cue: str, *, balance: bool = True) -> ClipSpec | None:
    """toggle_cues for one cue."""
    return toggle_cues(spec, {modality: [cue]}, balance=balance)


def cue_present(spec: ClipSpec, modality: str, cue: str) -> bool | None:
    """Whether the recipe renders `cue` (None when it is not one of the clip's cues)."""
    where = locate_cue(spec, modality, cue)
    if where is None:
        return None
    what, name = where
    return name in _rendered(spec, modality) if what == "part" else True


def render_counterfactual(spec: ClipSpec, world_root: str | Path, cfg: WorldConfig) -> tuple[str, str]:
    """Write the counterfactual clip (an mp4 without audio and a 16 kHz wav, DFEW's layout) unless it is
    already there; return the two absolute paths."""
    from avere_utils.synth.world import render_clip  # world imports this module's users

    root = Path(world_root)
    video, wav = root / spec.video_path if spec.video_path else None, root / spec.wav_path
    if not (wav.is_file() and (video is None or video.is_file())):
        render_clip(spec, str(root), cfg)
    return (str(video) if video else ""), str(wav)


def render_counterfactuals(specs: Sequence[ClipSpec], world_root: str | Path, cfg: WorldConfig) -> int:
    """Render every counterfactual recipe whose files are not there yet (the world's process pool);
    returns how many were rendered."""
    from avere_utils.synth.world import render_all

    root = Path(world_root)
    todo = {s.clip_id: s for s in specs
            if not ((root / s.wav_path).is_file() and (not s.video_path or (root / s.video_path).is_file()))}
    if todo:
        render_all(list(todo.values()), root, cfg)
    return len(todo)


def world_config(world_root: str | Path) -> tuple[WorldConfig, int]:
    """The knobs and seed a generated world was made with (its world_summary.json)."""
    from avere_utils.synth.world import SUMMARY_FILE

    path = Path(world_root) / SUMMARY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a generated synthetic world (counterfactual clips need its recipes)")
    stored = json.loads(path.read_text())
    cfg = {k: (tuple(v) if k == "parts_probs" else v) for k, v in stored["config"].items()}
    return WorldConfig(**cfg), int(stored["seed"])


def world_specs(world_root: str | Path, datasets: tuple[str, ...] = ("dfew", "train_source")) -> dict[str, ClipSpec]:
    """{clip id: recipe} of a generated world's clips of `datasets` (recomputed from its knobs and seed,
    which is exact: recipes are drawn deterministically before anything is rendered)."""
    from avere_utils.synth import world

    cfg, seed = world_config(world_root)
    out: dict[str, ClipSpec] = {}
    if "dfew" in datasets:
        out.update({s.clip_id: s for s in world.dfew_specs(cfg, seed)[0]})
    if "train_source" in datasets:
        out.update({s.clip_id: s for s in world.train_specs(cfg, seed)})
    return out
