"""`avere-kit check-data --profile P`: validate every configured dataset before any model is loaded.

Indexes each dataset with the same loaders as notebook 01 (no decoding), probes its first clip, and
returns one table row per dataset with what is missing or wrong.  Imports neither torch nor transformers,
so it runs in seconds.  `ok` is False when a dataset cannot be indexed (the row's `problem` names the
missing file or folder), has no items, has more unexpected skips (missing clips or wavs, bad labels,
duplicates, bad EmoReAlM items) than `max_unexpected_skips`, or misses its expected size.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from avere_utils.datasets.common import DatasetError, LoadResult
from avere_utils.datasets.params import DataPrepParams
from avere_utils.datasets.prepare import expected_counts, load_dataset
from avere_utils.media import MediaError, probe

STAGE = "01_data_preparation"
COLUMNS = ["dataset", "items", "expected", "missing_video", "missing_audio", "bad_labels", "skipped_protocol",
           "skipped_other", "classes", "first_clip", "problem", "source"]


def _probe_first(res: LoadResult) -> str:
    if not res.items:
        return "-"
    it = res.items[0]
    try:
        if it.video:
            info = probe(it.video)
            if not info.has_video:
                return f"no video stream in {it.video}"
            if it.audio is None and not info.has_audio:
                return f"no audio: {it.video} has no audio track and the item has no wav"
        if it.audio:
            if not probe(it.audio).has_audio:
                return f"no audio stream in {it.audio}"
    except MediaError as e:
        return str(e)
    return "ok"


def check_dataset(name: str, P: DataPrepParams, expected: int | None) -> dict:
    row = {c: None for c in COLUMNS} | {"dataset": name, "expected": expected}
    try:
        res = load_dataset(name, P)
    except (DatasetError, ValueError, OSError) as e:
        return row | {"items": 0, "problem": str(e)}
    unexpected = res.unexpected_skips()
    problems = []
    if expected is None:
        expected = res.expected
    if not res.items:
        problems.append("no items")
    if expected is not None and len(res.items) != expected:
        problems.append(f"expected {expected} items, found {len(res.items)}")
    if sum(unexpected.values()) > P.max_unexpected_skips:
        problems.append("; ".join(f"{n} {r} (e.g. {', '.join(res.examples.get(r, []))})"
                                  for r, n in sorted(unexpected.items())))
    first = _probe_first(res)
    if first not in ("ok", "-"):
        problems.append(f"first clip: {first}")
    return row | {
        "items": len(res.items), "expected": expected,
        "missing_video": res.skipped.get("missing_video", 0), "missing_audio": res.skipped.get("missing_audio", 0),
        "bad_labels": res.skipped.get("bad_label", 0),
        "skipped_protocol": sum(res.skipped.values()) - sum(unexpected.values()),
        "skipped_other": sum(n for r, n in unexpected.items() if r not in ("missing_video", "missing_audio", "bad_label")),
        "classes": ", ".join(f"{k} {v}" for k, v in sorted(res.class_counts().items())),
        "first_clip": first, "problem": "; ".join(problems), "source": res.source,
    }


def check_params(P: DataPrepParams) -> tuple[pd.DataFrame, bool]:
    """The check for an already-built parameter object (the notebook calls this one)."""
    if P.generate_world and not (Path(P.data_root) / "world_summary.json").is_file():
        row = {c: None for c in COLUMNS} | {
            "dataset": "(synthetic world)", "items": 0, "source": P.data_root,
            "problem": f"the synthetic world is not generated in {P.data_root}: run notebook 01_data_preparation "
                       f"(avere-kit run --profile {P.profile} --only 01_data_preparation)"}
        return pd.DataFrame([row], columns=COLUMNS), False
    expected = expected_counts(P)
    rows = [check_dataset(name, P, expected.get(name)) for name in P.datasets]
    table = pd.DataFrame(rows, columns=COLUMNS)
    for c in ("items", "expected", "missing_video", "missing_audio", "bad_labels", "skipped_protocol", "skipped_other"):
        table[c] = table[c].astype("Int64")
    ok = bool((table["problem"].fillna("") == "").all())
    return table, ok


def check_profile(profile: str) -> tuple[pd.DataFrame, bool]:
    """Validate the datasets configured in params/<profile>/01_data_preparation.yaml."""
    from avere_utils.config import load_stage
    return check_params(load_stage(profile, STAGE))


def format_table(table: pd.DataFrame) -> str:
    with pd.option_context("display.max_colwidth", 120, "display.width", 250, "display.max_columns", 20):
        return table.drop(columns=["source"]).to_string(index=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="tiny")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    table, ok = check_profile(args.profile)
    print(format_table(table))
    print("data check:", "OK" if ok else "FAILED (see the problem column)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
