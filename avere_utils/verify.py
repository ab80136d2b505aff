"""`make verify-golden`: rerun the tiny profile and compare its metrics with the committed golden run (outputs/golden).

Every metrics folder of the committed run is compared: the base run's, each `seeds/<k>/` and each
`reference_seeds/seed-K/` (the recipe of `make reproduce-golden`); the headline keys of Tables 2 and 3
and the stress Yes-rates per kind within tolerance, and each folder's `checksums.json` exactly.

Greedy decoding and fixed seeds make a run repeatable on one machine; across CPUs, floating-point
summation order differs, which can flip a few near-tied decisions.  Hence a tolerance rather than equality:
percent metrics within TOL_PERCENT points, 1-10 judge scores within TOL_SCORE.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avere_utils import checksums, runner
from avere_utils.paths import repo_path
from avere_utils.protocol import EMER_CRITERIA
from avere_utils.report.story import value_of
from avere_utils.report.tables import columns, load_metrics, metric

TOL_PERCENT = 3.0
TOL_SCORE = 0.3
SCORE_KEYS = set(EMER_CRITERIA)  # the EMER judge's 1-10 scores (the rest are percentages)


STRESS_KINDS = ("relevant", "spurious", "hallucination")


def metric_folders(golden_dir: Path) -> list[str]:
    """The run-relative folders holding a run's metrics: `.`, `seeds/<k>`, `reference_seeds/seed-K`."""
    out = ["."]
    for group in ("seeds", "reference_seeds"):
        out += [p.relative_to(golden_dir).as_posix() for p in sorted((golden_dir / group).glob("*"))
                if (p / "metrics").is_dir()]
    return out


def compare_all(golden_dir: Path, run_dir: Path) -> list[dict]:
    """compare() over every metrics folder of the committed run; a folder the rerun lacks counts as off."""
    rows = []
    for rel in metric_folders(golden_dir):
        for r in compare(golden_dir / rel, run_dir / rel):
            rows.append({"folder": rel, **r})
    return rows


def compare(golden_dir: Path, run_dir: Path) -> list[dict]:
    gold, new = load_metrics(golden_dir / "metrics"), load_metrics(run_dir / "metrics")
    rows = []
    for (bench, variant), m_gold in sorted(gold.items()):
        if not bench.startswith("emorealm"):
            continue
        for kind in STRESS_KINDS:  # the stress Yes-rates the story reads (scoring mode, else the top level)
            key = f"yes:{kind}"
            a, b_val = value_of(m_gold, key, "scoring"), value_of(new.get((bench, variant)), key, "scoring")
            if a is None:
                continue
            ok = b_val is not None and abs(a - b_val) <= TOL_PERCENT
            rows.append({"benchmark": bench, "variant": variant, "metric": f"scoring {key}", "golden": a,
                         "rerun": b_val, "tolerance": TOL_PERCENT, "ok": ok})
    for (bench, variant), m_gold in sorted(gold.items()):
        m_new = new.get((bench, variant))
        for _, b, key in columns("table2") + columns("table3"):
            if b != bench:
                continue
            a, b_val = metric(m_gold, key), metric(m_new, key)
            if a is None:
                continue
            tol = TOL_SCORE if key in SCORE_KEYS else TOL_PERCENT
            ok = b_val is not None and abs(a - b_val) <= tol
            rows.append({"benchmark": bench, "variant": variant, "metric": key, "golden": a, "rerun": b_val,
                         "tolerance": tol, "ok": ok})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--profile", default="tiny")
    p.add_argument("--out", default="outputs/verify")
    p.add_argument("--golden", "--reference", dest="golden", default="outputs/golden",
                   help="the committed golden run (--reference: its former spelling)")
    p.add_argument("--skip-run", action="store_true", help="compare an existing rerun without running again")
    args = p.parse_args(argv)
    golden_dir, out_dir = repo_path(args.golden), repo_path(args.out)
    if not (golden_dir / "metrics").is_dir():
        print(f"no committed golden metrics under {golden_dir}/metrics", file=sys.stderr)
        return 2
    if not args.skip_run:
        runner.run(args.profile, out=str(out_dir))
    rows = compare_all(golden_dir, out_dir)
    bad = [r for r in rows if not r["ok"]]
    for r in rows:
        flag = "ok " if r["ok"] else "OFF"
        print(f"{flag} {r['folder']:>22} {r['benchmark']:>16} {r['variant']:>17} {r['metric']:>26}  golden "
              f"{r['golden']:8.2f}  rerun {r['rerun'] if r['rerun'] is None else round(r['rerun'], 2)!s:>8}  "
              f"(tol {r['tolerance']})")
    print(f"{len(rows) - len(bad)}/{len(rows)} metrics within tolerance over {len(metric_folders(golden_dir))} metrics folders")
    weights_off = []
    for rel in metric_folders(golden_dir):
        sums = golden_dir / rel / checksums.FILE_NAME
        if not sums.is_file():
            continue
        try:  # the committed run's weights (checksums.json): the same bits, not only close metrics
            diffs = checksums.compare(out_dir / rel, sums)
        except FileNotFoundError as e:  # a rerun without its weights
            diffs = [str(e)]
        off = [d for d in diffs if not d.startswith("note:")]
        weights_off += off
        for d in diffs:
            print(f"{rel}: " + (d if d.startswith("note:") else f"OFF {d}"))
        print(f"checksums {rel}: " + ("the same weights" if not off else "weights differ"))
    return 0 if rows and not bad and not weights_off else 1


if __name__ == "__main__":
    sys.exit(main())
