"""Pairs on disk: a HF `datasets.DatasetDict` (train / validation) saved under `pairs_dir`.

Columns: the contract of docs/ARCHITECTURE.md (id .. split) plus metadata used for analysis and PMP
decoding (all strings, JSON-encoded where structured).  The build's counters go to `stats.json` next to
the dataset.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

import datasets

from avere_utils.paths import atomic_write_text

CONTRACT_COLUMNS: tuple[str, ...] = (
    "id", "clip_id", "family", "modality", "prompt", "chosen", "rejected_vr", "rejected_er",
    "video", "audio", "video_l", "audio_l", "label", "split",
)
EXTRA_COLUMNS: tuple[str, ...] = (
    "video_emotion", "audio_emotion",  # per-modality emotions ("" without a cue record)
    "cues",  # JSON: cue phrases cited by chosen / rejected_vr / rejected_er
    "cue_record",  # JSON of the clip's cue record ("" on real data)
    "generator",  # template | llm
    "template",  # which prompt/response templates, e.g. "p1/r3"
    "rejected_clip_id", "rejected_clip_video", "rejected_clip_audio",  # the PMP donor clip ("" for noise)
)
COLUMNS: tuple[str, ...] = CONTRACT_COLUMNS + EXTRA_COLUMNS
SPLITS: tuple[str, ...] = ("train", "validation")
STATS_FILE = "stats.json"

FEATURES = datasets.Features({c: datasets.Value("string") for c in COLUMNS})


def _normalise(row: dict[str, Any]) -> dict[str, str]:
    missing = [c for c in CONTRACT_COLUMNS if c not in row]
    if missing:
        raise ValueError(f"pair row {row.get('id')!r} lacks columns {missing}")
    return {c: "" if row.get(c) is None else str(row[c]) for c in COLUMNS}


def save_pairs(rows: Iterable[dict[str, Any]], pairs_dir: str | os.PathLike,
               stats: dict[str, Any] | None = None) -> datasets.DatasetDict:
    """Write the rows (split by their `split` column) to `pairs_dir`, replacing what was there."""
    pairs_dir = Path(pairs_dir)
    by_split: dict[str, list[dict[str, str]]] = {s: [] for s in SPLITS}
    for row in rows:
        r = _normalise(row)
        if r["split"] not in by_split:
            raise ValueError(f"pair row {r['id']!r}: split {r['split']!r} is not one of {SPLITS}")
        by_split[r["split"]].append(r)
    dd = datasets.DatasetDict({s: datasets.Dataset.from_list(v, features=FEATURES) for s, v in by_split.items()})
    # Save next to the target and swap in, so a crash never leaves half a dataset at pairs_dir.
    tmp = pairs_dir.with_name(f".{pairs_dir.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    was_disabled = datasets.utils.are_progress_bars_disabled()
    datasets.utils.disable_progress_bars()  # a bar per split per save is noise in the notebook
    try:
        dd.save_to_disk(str(tmp))
    finally:
        if not was_disabled:
            datasets.utils.enable_progress_bars()
    if pairs_dir.exists():
        shutil.rmtree(pairs_dir)
    os.replace(tmp, pairs_dir)
    if stats is not None:
        atomic_write_text(pairs_dir / STATS_FILE, json.dumps(stats, indent=1, sort_keys=True))
    return datasets.load_from_disk(str(pairs_dir))


def load_pairs(pairs_dir: str | os.PathLike, split: str = "train") -> datasets.Dataset:
    """One split of the stored pairs (`train` or `validation`)."""
    pairs_dir = Path(pairs_dir)
    if not (pairs_dir / "dataset_dict.json").is_file():
        raise FileNotFoundError(f"{pairs_dir}: no pairs dataset here (dataset_dict.json missing); "
                                "run notebook 02_pair_construction first")
    dd = datasets.load_from_disk(str(pairs_dir))
    if split not in dd:
        raise KeyError(f"{pairs_dir}: no split {split!r}; splits are {list(dd)}")
    return dd[split]


def load_stats(pairs_dir: str | os.PathLike) -> dict[str, Any]:
    return json.loads((Path(pairs_dir) / STATS_FILE).read_text())
