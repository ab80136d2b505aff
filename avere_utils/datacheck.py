"""`avere-kit check-data --profile P`: validate every configured dataset before any model is loaded.

Indexes each dataset with the same loaders as notebook 01, then checks every clip (or `--quick N` clips
per dataset): the container opens, the video and audio streams it must have are there, it declares a
duration, and its first and last frames decode (only the tail is decoded, never the whole clip).  One
table row per dataset says what is missing or wrong, with a count per problem kind; every problem clip
is then listed by path.  Imports neither torch nor transformers.  `ok` is False when a dataset cannot be
indexed (the row's `problem` names the missing file or folder), has no items, has more unexpected skips
(missing or broken clips, bad labels, duplicates, bad EmoReAlM items) than `max_unexpected_skips`,
holds truncated clips, or misses its expected size.  A loader that fails in an unforeseen way gives a
problem row naming the error, never a traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from avere_utils.datasets.clipcheck import apply_probe, probe_items
from avere_utils.datasets.common import DatasetError
from avere_utils.datasets.params import DataPrepParams
from avere_utils.datasets.prepare import expected_counts, load_dataset

STAGE = "01_data_preparation"
COLUMNS = ["dataset", "items", "expected", "missing_video", "missing_audio", "bad_labels", "skipped_protocol",
           "skipped_other", "clips_checked", "clip_problems", "classes", "problem", "source"]
COUNT_COLUMNS = ("items", "expected", "missing_video", "missing_audio", "bad_labels", "skipped_protocol",
                 "skipped_other", "clips_checked")


@dataclass
class CheckReport:
    table: pd.DataFrame
    ok: bool
    clip_problems: list[tuple[str, str, str]] = field(default_factory=list)  # (dataset, kind, detail)
    files_checked: int = 0
    seconds: float = 0.0
    clips_checked: int = 0

    @property
    def files_per_s(self) -> float:
        return self.files_checked / self.seconds if self.seconds > 0 else 0.0

    @property
    def clips_per_s(self) -> float:
        return self.clips_checked / self.seconds if self.seconds > 0 else 0.0


def check_dataset(name: str, P: DataPrepParams, expected: int | None, quick: int | None = None
                  ) -> tuple[dict, list[tuple[str, str, str]], int, float]:
    row = {c: None for c in COLUMNS} | {"dataset": name, "expected": expected}
    try:
        res = load_dataset(name, P)
        n_indexed = len(res.items)
        summary = probe_items(res.items, on_missing_audio=P.on_missing_audio, sample=quick, seed=P.seed,
                              desc=f"check {name} clips")
        apply_probe(res, summary, P.truncated_clips)
    except (DatasetError, ValueError, OSError) as e:
        return row | {"items": 0, "problem": str(e)}, [], 0, 0.0
    except Exception as e:  # noqa: BLE001 - an unforeseen loader failure is a problem row, not a traceback
        return row | {"items": 0, "problem": f"unexpected {type(e).__name__} while indexing {name}: {e}"}, [], 0, 0.0
    # one line per broken file (EmoReAlM questions share clips)
    listed = list(dict.fromkeys((name, p.check.problem, p.check.detail) for p in summary.problems))
    unexpected = res.unexpected_skips()
    problems = []
    if expected is None:
        expected = res.expected
    if not res.items:
        problems.append("no items")
    # with --quick, only a sample was checked: compare the indexed size, not what survived the sample
    if expected is not None and (n_indexed if quick else len(res.items)) != expected:
        problems.append(f"expected {expected} items, found {n_indexed if quick else len(res.items)}")
    if sum(unexpected.values()) > P.max_unexpected_skips:
        problems.append("; ".join(f"{n} {r} (e.g. {', '.join(res.examples.get(r, []))})"
                                  for r, n in sorted(unexpected.items())))
    for kind, n in sorted(res.flagged.items()):
        problems.append(f"{n} {kind} kept (e.g. {', '.join(res.flag_examples[kind][:3])})")
    kinds = pd.Series([k for _, k, _ in listed], dtype=object).value_counts()
    clip_column = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "none"
    known = ("missing_video", "missing_audio", "bad_label")
    return row | {
        "items": len(res.items), "expected": expected,
        "missing_video": res.skipped.get("missing_video", 0), "missing_audio": res.skipped.get("missing_audio", 0),
        "bad_labels": res.skipped.get("bad_label", 0),
        "skipped_protocol": sum(res.skipped.values()) - sum(unexpected.values()),
        "skipped_other": sum(n for r, n in unexpected.items() if r not in known),
        "clips_checked": summary.n_items,
        "clip_problems": clip_column if not quick else f"{clip_column} (sample of {summary.n_items})",
        "classes": ", ".join(f"{k} {v}" for k, v in sorted(res.class_counts().items())),
        "problem": "; ".join(problems), "source": res.source,
    }, listed, summary.n_files, summary.seconds


def check_params(P: DataPrepParams, quick: int | None = None) -> tuple[pd.DataFrame, bool]:
    """The check for an already-built parameter object (the notebook calls this one)."""
    rep = check_report(P, quick)
    return rep.table, rep.ok


def check_report(P: DataPrepParams, quick: int | None = None) -> CheckReport:
    if quick is not None and quick < 1:
        raise ValueError(f"--quick needs a positive number of clips per dataset, got {quick}")
    if P.generate_world and not (Path(P.data_root) / "world_summary.json").is_file():
        row = {c: None for c in COLUMNS} | {
            "dataset": "(synthetic world)", "items": 0, "source": P.data_root,
            "problem": f"the synthetic world is not generated in {P.data_root}: run notebook 01_data_preparation "
                       f"(avere-kit run --profile {P.profile} --only 01_data_preparation)"}
        return CheckReport(_typed(pd.DataFrame([row], columns=COLUMNS)), False)
    expected = expected_counts(P)
    rows, listed, n_files, seconds = [], [], 0, 0.0
    for name in P.datasets:
        row, probs, n, secs = check_dataset(name, P, expected.get(name), quick)
        rows.append(row)
        listed += probs
        n_files += n
        seconds += secs
    table = _typed(pd.DataFrame(rows, columns=COLUMNS))
    ok = bool((table["problem"].fillna("") == "").all())
    return CheckReport(table, ok, listed, n_files, seconds, int(table["clips_checked"].fillna(0).sum()))


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    for c in COUNT_COLUMNS:
        table[c] = table[c].astype("Int64")
    return table


def check_profile(profile: str, overrides: Mapping[str, Any] | None = None, quick: int | None = None
                  ) -> tuple[pd.DataFrame, bool]:
    """Validate the datasets configured in params/<profile>/01_data_preparation.yaml."""
    rep = check_profile_report(profile, overrides, quick)
    return rep.table, rep.ok


def check_profile_report(profile: str, overrides: Mapping[str, Any] | None = None, quick: int | None = None
                         ) -> CheckReport:
    from avere_utils.config import load_stage
    return check_report(load_stage(profile, STAGE, overrides), quick)


def format_table(table: pd.DataFrame) -> str:
    with pd.option_context("display.max_colwidth", 120, "display.width", 250, "display.max_columns", 20):
        return table.drop(columns=["source"]).to_string(index=False)


def format_report(rep: CheckReport) -> str:
    lines = [format_table(rep.table)]
    if rep.clip_problems:
        lines.append(f"\nclips with problems ({len(rep.clip_problems)}):")
        lines += [f"  {ds:12s} {kind:24s} {detail}" for ds, kind, detail in rep.clip_problems]
    if rep.files_checked:
        lines.append(f"\nchecked {rep.clips_checked} clips ({rep.files_checked} files) in {rep.seconds:.1f} s "
                     f"({rep.clips_per_s:.0f} clips/s, {rep.files_per_s:.0f} files/s)")
    lines.append("data check: " + ("OK" if rep.ok else "FAILED (see the problem column)"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--quick", type=int, metavar="N", help="check N clips per dataset instead of all")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rep = check_profile_report(args.profile, quick=args.quick)
    print(format_report(rep))
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
