"""EMER references: the MER2025 track-3 OV-MERD csv (`name,reason`) and its clips (own audio track).

Real OV-MERD rows carry open-vocabulary labels, not one of the 7 classes, so `label` is None there; in
the synthetic world the side cue record gives the shown emotion."""
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
from avere_utils.datasets.mer2023 import find_clip
from avere_utils.records import Item

if TYPE_CHECKING:  # annotations only
    from avere_utils.datasets.params import DataPrepParams


def load_emer(reason_file: str | os.PathLike, clip_dir: str | os.PathLike) -> LoadResult:
    reason_file, clip_dir = Path(reason_file), Path(clip_dir)
    res = LoadResult("emer", source=str(reason_file))
    # An unquoted comma inside a reason gives the row an extra field: a counted malformed_row, not a
    # reason silently cut at the comma.
    rows = read_csv_rows(reason_file, ("name", "reason"), "MER2025 OV-MERD reason csv",
                         on_bad_row=bad_row_counter(res, reason_file))
    require_dir(clip_dir, "MER2025 clip")
    cues = load_side_cues(reason_file.parent)
    labelled = []
    for row in rows:
        name, reason = row["name"], row["reason"]
        if not reason:
            res.skip("empty_reason", name)
            continue
        labelled.append((name, reason, name))
    # two different reference reasons for one clip: which one the judge should see cannot be told
    for name, reason in resolve_duplicates(labelled, res).items():
        clip = find_clip(clip_dir, name)
        if clip is None:
            res.skip("missing_video", name)
            continue
        text = {"reason": reason}
        label = None
        if name in cues:
            text["cues"] = cues[name]
            label = cues[name]["video_emotion"]
        res.items.append(Item(id=name, dataset="emer", split="test", video=str(clip), audio=None, label=label,
                              text=text))
    return res


def from_params(P: DataPrepParams) -> LoadResult:
    """The benchmark's loader with notebook 01's parameters (benchmarks.BENCHMARKS)."""
    return load_emer(P.emer_reason_file, P.emer_clip_dir)
