"""Generate the synthetic audiovisual world into each real dataset's native layout.

`generate_world(out_root, cfg, seed)` draws every clip's recipe in one process (cheap and deterministic),
renders and encodes the clips in a process pool, then writes the datasets' own index files (csv / json /
jsonl) plus synthetic-only side files `synthetic_cues.json` (clip id -> cue record) that the loaders
attach as `Item.text["cues"]`.  The layouts are documented in docs/data.md.
"""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
import shutil
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from avere_utils.emotions import EMOTIONS, MER2023_LABELS, RAVDESS_LABELS
from avere_utils.paths import atomic_write_text
from avere_utils.synth.encode import write_mp4, write_wav
from avere_utils.synth.face import render_frames
from avere_utils.synth.heldout import heldout_stress_items
from avere_utils.synth.spec import GENERATOR_VERSION, ClipSpec, WorldConfig, clip_rng, cue_record, make_spec
from avere_utils.synth.text import (
    STRESS_CYCLE,
    TASKS,
    clip_qa,
    make_item,
    reference_description,
    take_items,
    training_captions,
)
from avere_utils.synth.voice import render_audio

log = logging.getLogger(__name__)

# Layout constants (relative to the world root); the loaders' defaults point at the same places.
DFEW_VIDEO_DIR = "DFEW/Clip/clip_224x224"
DFEW_WAV_DIR = "DFEW/Clip/clip_16k_wav"
DFEW_ANNOTATION_DIR = "DFEW/dfew_annotation"
RAVDESS_DIR = "RAVDESS"
MER2023_CLIP_DIR = "MER2023/test3"
MER2023_LABEL_FILE = "MER2023/test3_label.csv"
MER2025_CLIP_DIR = "MER2025/video"
MER2025_REASON_FILE = "MER2025/track3_ovmerd.csv"
EMOREALM_FILE = "EmoReAlM/emorealm_v1.json"
EMOREALM_HELDOUT_FILE = "EmoReAlM/emorealm_heldout_wordings.json"  # stress items in held-out wordings
TRAIN_SOURCE_DIR = "train_source"
SIDE_CUES = "synthetic_cues.json"
SUMMARY_FILE = "world_summary.json"
MARKER_FILE = ".avere_synthetic_world"  # marks a folder this generator owns (and may clear)
N_DFEW_PARTS = 11


@dataclass
class WorldSummary:
    out_root: str
    seed: int
    counts: dict[str, int]  # clips written per dataset (+ emorealm items)
    n_clips: int
    seconds: float
    clips_per_s: float
    config: dict[str, Any]
    generator_version: int = GENERATOR_VERSION
    reused: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# --- rendering (runs in worker processes) ---------------------------------------------------------------
def render_clip(spec: ClipSpec, out_root: str, cfg: WorldConfig) -> str:
    rng = np.random.default_rng(spec.seed)
    root = Path(out_root)
    n_frames = int(round(spec.seconds * spec.fps))
    audio = render_audio(spec.audio_emotion, spec.audio_parts, spec.ambience, spec.seconds, cfg.sample_rate, rng)
    if spec.has_video and spec.video_path:
        frames = render_frames(cfg.video_size, n_frames, spec.video_emotion, spec.visual_parts, spec.background,
                               spec.obj, rng, cfg.jitter_px)
        write_mp4(root / spec.video_path, frames, spec.fps, audio if spec.audio_in_video else None,
                  cfg.sample_rate, spec.video_audio_rate, spec.video_audio_channels)
    if spec.wav_path:
        write_wav(root / spec.wav_path, audio, cfg.sample_rate)
    return spec.clip_id


def _render_batch(args: tuple[list[ClipSpec], str, WorldConfig]) -> int:
    specs, out_root, cfg = args
    for s in specs:
        render_clip(s, out_root, cfg)
    return len(specs)


def render_all(specs: list[ClipSpec], out_root: Path, cfg: WorldConfig) -> None:
    batches = [specs[i:i + 8] for i in range(0, len(specs), 8)]
    bar = tqdm(total=len(specs), desc="render clips", unit="clip")
    if cfg.workers <= 1:
        for b in batches:
            bar.update(_render_batch((b, str(out_root), cfg)))
    else:
        # fork: workers inherit the imported modules (no re-import cost); nothing here holds threads.
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        with ProcessPoolExecutor(cfg.workers, mp_context=ctx) as pool:
            for n in pool.map(_render_batch, [(b, str(out_root), cfg) for b in batches]):
                bar.update(n)
    bar.close()


# --- recipes per dataset ----------------------------------------------------------------------------------
def _balanced(n_per_class: int, rng: np.random.Generator, classes: tuple[str, ...] = EMOTIONS) -> list[str]:
    labels = [e for e in classes for _ in range(n_per_class)]
    return [labels[i] for i in rng.permutation(len(labels))]


def dfew_specs(cfg: WorldConfig, seed: int) -> tuple[list[ClipSpec], dict[str, list[tuple[str, str]]]]:
    rng = clip_rng(seed, "dfew-order", 0)
    test = _balanced(cfg.n_dfew_test_per_class, rng)
    train = _balanced(cfg.n_dfew_train_per_class, rng)
    entries = [("test", e) for e in test] + [("train", e) for e in train]
    ids = (rng.permutation(len(entries)) + 1).tolist()  # DFEW numbers clips 1..N across splits
    specs, splits = [], {"test": [], "train": []}
    per_part = -(-len(entries) // N_DFEW_PARTS)
    for (split, emotion), num in zip(entries, ids):
        cid = f"{num:05d}"
        part = f"part_{(num - 1) // per_part + 1}"
        specs.append(make_spec(clip_rng(seed, "dfew", num), clip_id=cid, dataset="dfew", emotion=emotion, cfg=cfg,
                               fps=cfg.dfew_fps, disagreement_rate=cfg.disagreement_rate,
                               video_path=f"{DFEW_VIDEO_DIR}/{part}/{cid}.mp4",
                               wav_path=f"{DFEW_WAV_DIR}/{part}/{cid}.wav", meta={"split": split, "part": part}))
        splits[split].append((str(num), emotion))
    return specs, splits


def ravdess_specs(cfg: WorldConfig, seed: int) -> list[ClipSpec]:
    """Per actor: the 60 speech AV files (incl. calm) + decoys: 2 song AV, 2 video-only, 1 audio-only."""
    specs = []
    for actor in range(1, cfg.n_ravdess_actors + 1):
        names: list[tuple[str, str, str, str]] = []  # (modality, vocal, emotion code, intensity)
        for code in RAVDESS_LABELS:
            for intensity in (("01",) if code == "01" else ("01", "02")):
                names += [("01", "01", code, intensity)] * 4  # 2 statements x 2 repetitions
        decoy_rng = clip_rng(seed, "ravdess-decoys", actor)
        for _ in range(2):
            names.append(("01", "02", str(decoy_rng.choice(["01", "03", "04", "05", "06"])), "01"))  # song
            names.append(("02", "01", str(decoy_rng.choice(["03", "04", "05"])), "02"))  # video-only
        names.append(("03", "01", "05", "02"))  # audio-only
        counter: Counter[tuple] = Counter()
        for i, (mod, voc, code, inten) in enumerate(names):
            key = (mod, voc, code, inten)
            k = counter[key]
            counter[key] += 1
            statement, rep = f"{k // 2 % 2 + 1:02d}", f"{k % 2 + 1:02d}"
            stem = f"{mod}-{voc}-{code}-{inten}-{statement}-{rep}-{actor:02d}"
            emotion = RAVDESS_LABELS[code]
            emotion = "neutral" if emotion == "calm" else emotion  # calm is drawn like neutral
            rng = clip_rng(seed, "ravdess", actor * 1000 + i)
            folder = f"{RAVDESS_DIR}/Actor_{actor:02d}"
            common = dict(clip_id=stem, dataset="ravdess", emotion=emotion, cfg=cfg, fps=cfg.ravdess_fps,
                          n_parts=3 if inten == "02" else 2, meta={"code": code})
            if mod == "03":
                specs.append(make_spec(rng, has_video=False, wav_path=f"{folder}/{stem}.wav", **common))
            else:
                specs.append(make_spec(rng, video_path=f"{folder}/{stem}.mp4", audio_in_video=(mod == "01"),
                                       video_audio_rate=cfg.ravdess_audio_rate, video_audio_channels=2, **common))
    return specs


def mer2023_specs(cfg: WorldConfig, seed: int) -> list[ClipSpec]:
    rng = clip_rng(seed, "mer2023-order", 0)
    per = -(-cfg.n_mer2023 // len(MER2023_LABELS))
    labels = [d for d in MER2023_LABELS for _ in range(per)][:cfg.n_mer2023] + ["worried"] * cfg.n_mer2023_worried
    labels = [labels[i] for i in rng.permutation(len(labels))]
    specs = []
    for i, discrete in enumerate(labels):
        name = f"sample_{i + 1:08d}"
        emotion = MER2023_LABELS.get(discrete, "fear")  # worried clips are drawn as fear
        specs.append(make_spec(clip_rng(seed, "mer2023", i), clip_id=name, dataset="mer2023", emotion=emotion,
                               cfg=cfg, fps=cfg.mer_fps, video_path=f"{MER2023_CLIP_DIR}/{name}.mp4",
                               audio_in_video=True, video_audio_rate=44100, meta={"discrete": discrete}))
    return specs


def emer_specs(cfg: WorldConfig, seed: int) -> list[ClipSpec]:
    rng = clip_rng(seed, "emer-order", 0)
    labels = [EMOTIONS[i % len(EMOTIONS)] for i in rng.permutation(cfg.n_emer)]
    return [make_spec(clip_rng(seed, "emer", i), clip_id=f"samplenew3_{i + 1:08d}", dataset="emer", emotion=e,
                      cfg=cfg, fps=cfg.mer_fps, video_path=f"{MER2025_CLIP_DIR}/samplenew3_{i + 1:08d}.mp4",
                      audio_in_video=True) for i, e in enumerate(labels)]


def train_specs(cfg: WorldConfig, seed: int) -> list[ClipSpec]:
    rng = clip_rng(seed, "train-order", 0)
    labels = [EMOTIONS[i % len(EMOTIONS)] for i in rng.permutation(cfg.n_train_source)]
    return [make_spec(clip_rng(seed, "train_source", i), clip_id=f"train_{i + 1:05d}", dataset="train_source",
                      emotion=e, cfg=cfg, fps=cfg.train_fps, spurious=True, disagreement_rate=cfg.disagreement_rate,
                      video_path=f"{TRAIN_SOURCE_DIR}/clips/train_{i + 1:05d}.mp4",
                      wav_path=f"{TRAIN_SOURCE_DIR}/wavs/train_{i + 1:05d}.wav") for i, e in enumerate(labels)]


# --- index files ------------------------------------------------------------------------------------------
def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def _side_cues(root: Path, folder: str, specs: list[ClipSpec]) -> None:
    _write_json(root / folder / SIDE_CUES, {s.clip_id: cue_record(s) for s in specs})


def write_dfew_index(root: Path, splits: dict[str, list[tuple[str, str]]]) -> None:
    for split, rows in splits.items():
        lines = ["video_name,label"] + [f"{num},{EMOTIONS.index(e) + 1}" for num, e in sorted(rows, key=lambda r: int(r[0]))]
        atomic_write_text(root / DFEW_ANNOTATION_DIR / f"{split}(single-labeled)" / "set_1.csv", "\n".join(lines) + "\n")


def write_mer2023_index(root: Path, specs: list[ClipSpec]) -> None:
    lines = ["name,discrete,valence"] + [f"{s.clip_id},{s.meta['discrete']},0.0" for s in specs]
    atomic_write_text(root / MER2023_LABEL_FILE, "\n".join(lines) + "\n")


def write_emer_index(root: Path, specs: list[ClipSpec], seed: int) -> None:
    import csv
    import io
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["name", "reason"])
    for i, s in enumerate(specs):
        w.writerow([s.clip_id, reference_description(cue_record(s), clip_rng(seed, "emer-text", i))])
    atomic_write_text(root / MER2025_REASON_FILE, buf.getvalue())


def emorealm_items(dfew_test: list[ClipSpec], n_per_task: int, seed: int) -> list[dict[str, Any]]:
    """Items on the DFEW test clips: n per task, stress kinds cycling relevant/spurious/relevant/
    hallucination (half Yes), modality agreement half No where enough clips disagree."""
    rng = clip_rng(seed, "emorealm", 0)
    records = {s.clip_id: cue_record(s) for s in dfew_test}
    path_of = {s.clip_id: s.video_path.split(f"{DFEW_VIDEO_DIR}/", 1)[1] for s in dfew_test}
    ids = sorted(records)
    items: list[dict[str, Any]] = []
    for task in TASKS:
        order = [ids[i] for i in rng.permutation(len(ids))]
        if task == "modality_agreement":
            differ = [c for c in order if records[c]["video_emotion"] != records[c]["audio_emotion"]]
            same = [c for c in order if c not in differ]
            k = min(len(differ), n_per_task // 2)
            order = differ[:k] + same
        stress = task.startswith("reasoning_stress")
        made = take_items(order, n_per_task, lambda cid, k, task=task, stress=stress: make_item(
            records[cid], task, rng, STRESS_CYCLE[k % len(STRESS_CYCLE)] if stress else None))
        for cid, item in made:
            items.append({"id": f"emorealm_{len(items) + 1:05d}", "task": item["task"], "video": path_of[cid],
                          "question": item["question"], "choices": item["choices"], "answer": item["answer"],
                          **({"kind": item["kind"]} if "kind" in item else {})})
    return items


def write_train_manifest(root: Path, specs: list[ClipSpec], cfg: WorldConfig, seed: int) -> None:
    lines = []
    for i, s in enumerate(specs):
        rec = cue_record(s)
        rng = clip_rng(seed, "train-text", i)
        captions, noise = training_captions(rec, rng, cfg.text_prior_rate, cfg.context_reason_rate)
        lines.append(json.dumps({
            "id": s.clip_id, "clip": s.video_path.split(f"{TRAIN_SOURCE_DIR}/", 1)[1],
            "wav": s.wav_path.split(f"{TRAIN_SOURCE_DIR}/", 1)[1], "label": s.video_emotion,
            "captions": captions, "cues": rec, "qa": clip_qa(rec, rng, cfg.qa_text_prior_rate, cfg.cue_typicality),
            "caption_noise": noise,
        }, ensure_ascii=False))
    atomic_write_text(root / TRAIN_SOURCE_DIR / "manifest.jsonl", "\n".join(lines) + "\n")


# --- entry point -------------------------------------------------------------------------------------------
def _fingerprint(cfg: WorldConfig, seed: int) -> dict[str, Any]:
    d = cfg.to_dict()
    d.pop("workers")  # how many processes render does not change the world
    return {"config": d, "seed": seed, "generator_version": GENERATOR_VERSION}


def existing_world(out_root: str | Path, cfg: WorldConfig, seed: int) -> WorldSummary | None:
    """The stored summary when out_root already holds this exact world (same knobs, seed, generator)."""
    path = Path(out_root) / SUMMARY_FILE
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    fp = _fingerprint(cfg, seed)
    stored_cfg = {k: v for k, v in stored.get("config", {}).items() if k != "workers"}
    if stored_cfg != fp["config"] or stored.get("seed") != seed or stored.get("generator_version") != GENERATOR_VERSION:
        return None
    return WorldSummary(**{**stored, "reused": True})


def _claim(root: Path) -> None:
    """Make root a clean world folder.  Files of an older world would otherwise linger (e.g. RAVDESS decoys
    with other names) and be indexed; a non-empty folder that this generator did not create (real data!) is
    never touched."""
    root.mkdir(parents=True, exist_ok=True)
    owned = (root / MARKER_FILE).is_file() or (root / SUMMARY_FILE).is_file()
    if any(root.iterdir()) and not owned:
        raise ValueError(f"{root} is not empty and holds no synthetic world ({MARKER_FILE} missing): refusing to "
                         f"generate into it; point data_root at an empty or generated folder")
    (root / MARKER_FILE).write_text("generated by avere_utils.synth.generate_world; cleared on regeneration\n")
    for top in ("DFEW", RAVDESS_DIR, "MER2023", "MER2025", "EmoReAlM", TRAIN_SOURCE_DIR):
        shutil.rmtree(root / top, ignore_errors=True)


def generate_world(out_root: str | Path, cfg: WorldConfig | None = None, seed: int = 0) -> WorldSummary:
    """Write the whole synthetic world under out_root; deterministic given (cfg, seed)."""
    cfg = cfg or WorldConfig()
    root = Path(out_root)
    _claim(root)
    (root / SUMMARY_FILE).unlink(missing_ok=True)  # an interrupted run must not look complete
    t0 = time.perf_counter()
    dfew, dfew_splits = dfew_specs(cfg, seed)
    groups = {"train_source": train_specs(cfg, seed), "dfew": dfew, "ravdess": ravdess_specs(cfg, seed),
              "mer2023": mer2023_specs(cfg, seed), "emer": emer_specs(cfg, seed)}
    all_specs = [s for g in groups.values() for s in g]
    log.info("rendering %d clips into %s with %d workers", len(all_specs), root, cfg.workers)
    render_all(all_specs, root, cfg)

    write_dfew_index(root, dfew_splits)
    _side_cues(root, "DFEW", dfew)
    _side_cues(root, RAVDESS_DIR, groups["ravdess"])
    write_mer2023_index(root, groups["mer2023"])
    _side_cues(root, "MER2023", groups["mer2023"])
    write_emer_index(root, groups["emer"], seed)
    _side_cues(root, "MER2025", groups["emer"])
    dfew_test = [s for s in dfew if s.meta["split"] == "test"]
    items = emorealm_items(dfew_test, cfg.n_emorealm_per_task, seed)
    _write_json(root / EMOREALM_FILE, items)
    heldout = heldout_stress_items({c.clip_id: cue_record(c) for c in dfew_test},
                                   {c.clip_id: c.video_path.split(f"{DFEW_VIDEO_DIR}/", 1)[1] for c in dfew_test},
                                   cfg.n_emorealm_per_task, clip_rng(seed, "emorealm-heldout", 0))
    _write_json(root / EMOREALM_HELDOUT_FILE, heldout)
    write_train_manifest(root, groups["train_source"], cfg, seed)

    seconds = time.perf_counter() - t0
    counts = {k: len(v) for k, v in groups.items()} | {"emorealm_items": len(items),
                                                        "emorealm_heldout_items": len(heldout)}
    summary = WorldSummary(out_root=str(root), seed=seed, counts=counts, n_clips=len(all_specs),
                           seconds=round(seconds, 3), clips_per_s=round(len(all_specs) / seconds, 2),
                           config=cfg.to_dict(), extra={"emorealm_tasks": dict(Counter(i["task"] for i in items))})
    _write_json(root / SUMMARY_FILE, asdict(summary))
    log.info("world: %d clips in %.1f s (%.1f clips/s)", len(all_specs), seconds, summary.clips_per_s)
    return summary
