"""MER2023 test3: a csv with `name,discrete` (5 classes + `worried`, which the protocol drops) and clips
`<clip_dir>/<name>.{mp4,avi,mkv}` whose own audio track is used."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from avere_utils.datasets.common import (
    LoadResult,
    bad_row_counter,
    load_side_cues,
    read_csv_rows,
    require_dir,
    resolve_duplicates,
)
from avere_utils.emotions import MER2023_LABELS
from avere_utils.records import Item

if TYPE_CHECKING:  # annotations only
    from avere_utils.datasets.params import DataPrepParams

CLIP_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov")


def find_clip(clip_dir: Path, name: str) -> Path | None:
    for ext in CLIP_EXTENSIONS:
        p = clip_dir / f"{name}{ext}"
        if p.is_file():
            return p
    return None


def load_mer2023(label_file: str | os.PathLike, clip_dir: str | os.PathLike, *,
                 drop_labels: tuple[str, ...] = ("worried",)) -> LoadResult:
    label_file, clip_dir = Path(label_file), Path(clip_dir)
    res = LoadResult("mer2023", source=str(label_file), expected_skips=("dropped_label",))
    rows = read_csv_rows(label_file, ("name", "discrete"), "MER2023 test3 label csv",
                         on_bad_row=bad_row_counter(res, label_file))
    require_dir(clip_dir, "MER2023 clip")
    cues = load_side_cues(label_file.parent)
    labelled = []
    for row in rows:
        name, discrete = row["name"], row["discrete"].lower()
        if discrete in drop_labels:
            res.skip(f"dropped_label:{discrete}", name)
            continue
        label = MER2023_LABELS.get(discrete)
        if label is None:
            res.skip("bad_label", f"{name} ({discrete!r})")
            continue
        labelled.append((name, label, name))
    for name, label in resolve_duplicates(labelled, res).items():
        clip = find_clip(clip_dir, name)
        if clip is None:
            res.skip("missing_video", name)
            continue
        res.items.append(Item(id=name, dataset="mer2023", split="test", video=str(clip), audio=None, label=label,
                              text={"cues": cues[name]} if name in cues else {}))
    return res


def from_params(P: DataPrepParams) -> LoadResult:
    """The benchmark's loader with notebook 01's parameters (benchmarks.BENCHMARKS)."""
    return load_mer2023(P.mer2023_label_file, P.mer2023_clip_dir)
