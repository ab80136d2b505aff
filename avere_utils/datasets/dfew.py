"""DFEW: `dfew_annotation/{split}(single-labeled)/set_{fold}.csv` (video_name,label 1-7), clips under
`Clip/clip_224x224/part_*/<5-digit id>.mp4`, 16 kHz wavs at the same relative path under
`Clip/clip_16k_wav/` with `.wav`.  Labels: 1 happiness ... 7 fear (emotions.DFEW_LABELS)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from avere_utils.datasets.common import (
    LoadResult,
    bad_row_counter,
    load_side_cues,
    read_csv_rows,
    require_dir,
    resolve_duplicates,
)
from avere_utils.emotions import DFEW_LABELS
from avere_utils.records import Item

if TYPE_CHECKING:  # annotations only
    from avere_utils.datasets.params import DataPrepParams

VIDEO_SUBDIR = "Clip/clip_224x224"
WAV_SUBDIR = "Clip/clip_16k_wav"
ANNOTATION_SUBDIR = "dfew_annotation"


def annotation_file(root: str | os.PathLike, fold: int = 1, split: str = "test",
                    annotation_subdir: str = ANNOTATION_SUBDIR) -> Path:
    if split not in ("train", "test"):
        raise ValueError(f"DFEW split must be 'train' or 'test', got {split!r}")
    if not 1 <= fold <= 5:
        raise ValueError(f"DFEW fold must be 1-5, got {fold}")
    return Path(root) / annotation_subdir / f"{split}(single-labeled)" / f"set_{fold}.csv"


def clip_stem(video_name: str) -> str:
    """DFEW csvs name clips by number (`1` or `00001`); files are zero-padded to 5 digits."""
    return f"{int(video_name):05d}" if video_name.isdigit() else Path(video_name).stem


def index_clips(video_dir: Path) -> dict[str, Path]:
    return {p.stem: p for p in video_dir.glob("part_*/*.mp4")}


def load_dfew(root: str | os.PathLike, fold: int = 1, split: str = "test", *, video_subdir: str = VIDEO_SUBDIR,
              wav_subdir: str = WAV_SUBDIR, annotation_subdir: str = ANNOTATION_SUBDIR,
              require_audio: bool = True) -> LoadResult:
    """Items of one DFEW fold/split.  A listed clip without its mp4 or (with require_audio) its wav is a
    counted skip; so is a label outside 1-7, a malformed row, a repeated id, and (both rows) an id
    listed with two different labels."""
    root = Path(root)
    csv_path = annotation_file(root, fold, split, annotation_subdir)
    video_dir, wav_dir = root / video_subdir, root / wav_subdir
    res = LoadResult("dfew", source=str(csv_path))
    rows = read_csv_rows(csv_path, ("video_name", "label"), f"DFEW annotation csv (fold {fold}, {split})",
                         on_bad_row=bad_row_counter(res, csv_path))
    require_dir(video_dir, "DFEW clip")
    clips = index_clips(video_dir)
    cues = load_side_cues(root)
    labelled = []
    for row in rows:
        stem = clip_stem(row["video_name"])
        try:
            labelled.append((stem, DFEW_LABELS[int(row["label"])], stem))
        except (KeyError, ValueError):
            res.skip("bad_label", f"{stem} (label {row['label']!r})")
    for stem, label in tqdm(resolve_duplicates(labelled, res).items(), desc=f"dfew set_{fold} {split}",
                            unit="clip", leave=False):
        video = clips.get(stem)
        if video is None:
            res.skip("missing_video", stem)
            continue
        wav = wav_dir / video.relative_to(video_dir).with_suffix(".wav")
        if not wav.is_file():
            if require_audio:
                res.skip("missing_audio", str(wav))
                continue
            wav = None
        text = {"cues": cues[stem]} if stem in cues else {}
        res.items.append(Item(id=stem, dataset="dfew", split=split, video=str(video),
                              audio=str(wav) if wav else None, label=label, text=text))
    return res


def from_params(P: DataPrepParams) -> LoadResult:
    """The benchmark's loader with notebook 01's parameters (benchmarks.BENCHMARKS)."""
    return load_dfew(P.dfew_root, P.dfew_fold, P.dfew_split, video_subdir=P.dfew_video_subdir,
                     wav_subdir=P.dfew_wav_subdir, annotation_subdir=P.dfew_annotation_subdir,
                     require_audio=P.require_audio)
