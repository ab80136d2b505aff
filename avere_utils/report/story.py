"""The paper's story, measured: per-variant numbers over training seeds, and each claim checked.

The reference absorbs both errors (says Yes to spurious and hallucinated cues); AVEm-DPO fixes them by
discriminating (spurious / hallucination Yes-rates down, relevant Yes-rate kept), in the kit's question
wordings and in held-out ones, lowers the EMER cue-judge error rates, beats Naive-DPO by more than 2 pooled
standard deviations, each ablation falls below it, and recognition does not degrade.  The TPD term has three
readings (`tpd_form`, docs/method.md), each trained as its own variant, and every claim is checked for
each of them.  Every threshold is a named constant here and every number is read from the metrics files;
nothing is hard-coded per variant.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from avere_utils.protocol import EMOREALM_HELDOUT, STRESS_KINDS
from avere_utils.report.tables import load_metrics, metric

KINDS = STRESS_KINDS
# (quantity, benchmark, key, higher_is_better): what the story table reports per variant
QUANTITIES: list[tuple[str, str, str, bool]] = [
    ("Yes relevant", "emorealm", "yes:relevant", True),
    ("Yes spurious", "emorealm", "yes:spurious", False),
    ("Yes halluc", "emorealm", "yes:hallucination", False),
    ("S-A", "emorealm", "reasoning_stress_audio", True),
    ("S-V", "emorealm", "reasoning_stress_video", True),
    ("Avg", "emorealm", "average_accuracy", True),
    ("HO Yes relevant", EMOREALM_HELDOUT, "yes:relevant", True),
    ("HO Yes spurious", EMOREALM_HELDOUT, "yes:spurious", False),
    ("HO Yes halluc", EMOREALM_HELDOUT, "yes:hallucination", False),
    ("EMER Spurious", "emer", "spurious", True),
    ("EMER Halluc", "emer", "hallucination", True),
    ("EMER spurious rate", "emer", "cue_rates.spurious_rate", False),
    ("EMER halluc rate", "emer", "cue_rates.hallucination_rate", False),
    ("EMER label match", "emer", "cue_rates.label_match", True),
    ("EMER halluc / desc", "emer", "cue_rates.hallucinated_per_description", False),
    ("EMER irrelevant / desc", "emer", "cue_rates.irrelevant_per_description", False),
    ("EMER clue recall", "emer", "cue_rates.clue_recall", True),
    ("DFEW UAR", "dfew", "uar", True),
    ("RAV UAR", "ravdess", "uar", True),
]
ABLATIONS = (("- PMP", "no_pmp"), ("- ERP", "no_erp"), ("- TPD", "no_tpd"))
# the TPD readings (training/variants.py): the variant that trains AVEm-DPO with each
FORMS: tuple[tuple[str, str], ...] = (("literal", "avem_dpo"), ("policy", "avem_dpo_policy"),
                                      ("reversed", "avem_dpo_reversed"))

# the story's bars (percentage points)
REF_YES_SPURIOUS_MIN = 40.0
REF_YES_HALLUC_MIN = 40.0
REF_YES_RELEVANT_MIN = 70.0
FIX_DROP_MIN = 15.0  # AVEm-DPO's spurious / hallucination Yes-rate at least this far below the reference's
HELDOUT_DROP_MIN = 10.0  # ... and this far on the held-out wordings
RELEVANT_DROP_MAX = 10.0  # ... while its relevant Yes-rate drops by at most this much
NAIVE_GAP_POOLED_SD = 2.0
RECOGNITION_DROP_MAX = 2.0


def yes_rate(m: Mapping[str, Any] | None, kind: str, mode: str | None) -> float | None:
    """`modes.<mode>.by_kind.<kind>.yes_rate` of an EmoReAlM metrics file (top level without a mode)."""
    if not m:
        return None
    block = m.get("modes", {}).get(mode, {}) if mode else m
    value = (block.get("by_kind") or {}).get(kind, {}).get("yes_rate")
    return float(value) if isinstance(value, (int, float)) else None


def value_of(m: Mapping[str, Any] | None, key: str, mode: str | None) -> float | None:
    """`yes:<kind>` a stress Yes-rate; `a.b` a nested key (EMER `cue_rates.label_match`); else a headline
    value of `mode`'s block (a file without that mode, e.g. the held-out wordings read in scoring mode
    only, falls back to its top level)."""
    if key.startswith("yes:"):
        if m and mode and mode not in m.get("modes", {}):
            return yes_rate(m, key[4:], None)
        return yes_rate(m, key[4:], mode)
    if "." in key:
        head, tail = key.split(".", 1)
        value = ((m or {}).get(head) or {}).get(tail)
        return float(value) if isinstance(value, (int, float)) else None
    return metric(dict(m) if m is not None else None, key, mode)


def seed_runs(run_dir: str | Path, seeds_dir: str | Path | None) -> list[tuple[str, Path]]:
    """(name, metrics folder) of the base run and of every seeds/<point>/metrics (`avere-kit seeds`)."""
    runs = [("base", Path(run_dir) / "metrics")]
    if seeds_dir and Path(seeds_dir).is_dir():
        runs += [(p.parent.name, p) for p in sorted(Path(seeds_dir).glob("*/metrics")) if p.is_dir()]
    return runs


def per_run_values(runs: Sequence[tuple[str, Mapping[tuple[str, str], Mapping[str, Any]]]],
                   variants: Sequence[str], mode: str | None) -> pd.DataFrame:
    """Long frame (run, variant, quantity, value): one row per number that a run's metrics hold."""
    rows = []
    for name, metrics in runs:
        for v in variants:
            for quantity, bench, key, _ in QUANTITIES:
                val = value_of(metrics.get((bench, v)), key, mode)
                if val is not None and math.isfinite(val):
                    rows.append({"run": name, "variant": v, "quantity": quantity, "value": val})
    return pd.DataFrame(rows, columns=["run", "variant", "quantity", "value"])


def story_table(values: pd.DataFrame, variants: Sequence[str], quantities: Sequence[str] | None = None
                ) -> pd.DataFrame:
    """Mean, sample sd (NaN for one run) and n per (variant, quantity), variants in the given order and
    quantities in `quantities`' (default: QUANTITIES')."""
    if values.empty:
        return pd.DataFrame(columns=["variant", "quantity", "mean", "sd", "n"])
    g = values.groupby(["variant", "quantity"], sort=False)["value"]
    out = pd.DataFrame({"mean": g.mean(), "sd": g.std(ddof=1), "n": g.count()}).reset_index()
    order = {v: i for i, v in enumerate(variants)}
    qorder = {q: i for i, q in enumerate(quantities or [q for q, *_ in QUANTITIES])}
    out = out.assign(_v=out["variant"].map(order), _q=out["quantity"].map(qorder))
    return out.sort_values(["_v", "_q"]).drop(columns=["_v", "_q"]).reset_index(drop=True)


def load_story(run_dir: str | Path, seeds_dir: str | Path | None, variants: Sequence[str],
               mode: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-run values, story table) of a run folder and its seeds/ reruns."""
    runs = [(name, load_metrics(path)) for name, path in seed_runs(run_dir, seeds_dir)]
    values = per_run_values(runs, variants, mode)
    return values, story_table(values, variants)


# --- the checks --------------------------------------------------------------------------------------
@dataclass
class Stat:
    mean: float
    sd: float  # NaN with one run
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.1f}" + (f" ± {self.sd:.1f} (n={self.n})" if self.n > 1 and math.isfinite(self.sd)
                                      else f" (n={self.n})")


@dataclass
class Check:
    claim: str
    measured: str
    holds: bool | None  # None: cannot be decided from these metrics (a variant or the seeds are missing)

    @property
    def verdict(self) -> str:
        return {True: "holds", False: "does NOT hold", None: "undecided"}[self.holds]


def stat(table: pd.DataFrame, variant: str, quantity: str) -> Stat | None:
    row = table[(table["variant"] == variant) & (table["quantity"] == quantity)]
    if row.empty:
        return None
    r = row.iloc[0]
    return Stat(float(r["mean"]), float(r["sd"]), int(r["n"]))


def pooled_sd(a: Stat, b: Stat) -> float:
    """sqrt(((n_a-1) sd_a^2 + (n_b-1) sd_b^2) / (n_a + n_b - 2)); NaN when neither has two runs."""
    dof = (a.n - 1) + (b.n - 1)
    if dof <= 0:
        return float("nan")
    var = sum((s.n - 1) * s.sd ** 2 for s in (a, b) if s.n > 1 and math.isfinite(s.sd))
    return math.sqrt(var / dof)


def _missing(claim: str, *names: str) -> Check:
    return Check(claim, f"not measured for {' or '.join(names)} (metrics file or key missing)", None)


def check_reference_errors(table: pd.DataFrame, reference: str = "reference") -> list[Check]:
    bars = (("spurious", REF_YES_SPURIOUS_MIN), ("hallucination", REF_YES_HALLUC_MIN),
            ("relevant", REF_YES_RELEVANT_MIN))
    out = []
    for kind, bar in bars:
        claim = f"the reference answers Yes to >= {bar:.0f} % of the {kind} stress items"
        s = stat(table, reference, "Yes " + ("halluc" if kind == "hallucination" else kind))
        out.append(_missing(claim, reference) if s is None else Check(claim, f"{s} %", s.mean >= bar))
    return out


def _drop(table: pd.DataFrame, full: str, reference: str, quantity: str, claim: str, at_least: float | None,
          at_most: float | None = None) -> Check:
    a, r = stat(table, full, quantity), stat(table, reference, quantity)
    if a is None or r is None:
        return _missing(claim, full, reference)
    drop = r.mean - a.mean
    holds = drop >= at_least if at_least is not None else drop <= at_most
    return Check(claim, f"{a} vs {r} (drop {drop:+.1f})", holds)


def check_fix(table: pd.DataFrame, full: str = "avem_dpo", reference: str = "reference") -> list[Check]:
    """Both Yes-rates down by FIX_DROP_MIN (HELDOUT_DROP_MIN in held-out wordings), the relevant one by at
    most RELEVANT_DROP_MAX, and the EMER cue-judge spurious and hallucination rates below the reference's."""
    out = []
    for kind, quantity in (("spurious", "Yes spurious"), ("hallucination", "Yes halluc")):
        out.append(_drop(table, full, reference, quantity,
                         f"{full}'s {kind} Yes-rate is >= {FIX_DROP_MIN:.0f} points below the reference's", FIX_DROP_MIN))
    out.append(_drop(table, full, reference, "Yes relevant",
                     f"{full}'s relevant Yes-rate is at most {RELEVANT_DROP_MAX:.0f} points below the reference's",
                     None, RELEVANT_DROP_MAX))
    for kind, quantity in (("spurious", "HO Yes spurious"), ("hallucination", "HO Yes halluc")):
        out.append(_drop(table, full, reference, quantity,
                         f"held-out wordings: {full}'s {kind} Yes-rate is >= {HELDOUT_DROP_MIN:.0f} points below "
                         "the reference's", HELDOUT_DROP_MIN))
    for quantity, what in (("EMER halluc rate", "EMER hallucination rate"), ("EMER spurious rate", "EMER spurious rate")):
        claim = f"{full}'s {what} (cue judge, % of cited cues) is below the reference's"
        a, r = stat(table, full, quantity), stat(table, reference, quantity)
        out.append(_missing(claim, full, reference) if a is None or r is None else
                   Check(claim, f"{a} vs {r}", a.mean < r.mean))
    return out


def check_naive_gap(table: pd.DataFrame, full: str = "avem_dpo", naive: str = "naive_dpo") -> Check:
    claim = f"{full} is ahead of {naive} on the EmoReAlM average by more than {NAIVE_GAP_POOLED_SD:.0f} pooled sd"
    a, b = stat(table, full, "Avg"), stat(table, naive, "Avg")
    if a is None or b is None:
        return _missing(claim, full, naive)
    sd = pooled_sd(a, b)
    if not math.isfinite(sd):
        return Check(claim, f"{a} vs {b}: needs two or more seeds per variant (avere-kit seeds)", None)
    gap = a.mean - b.mean
    ratio = gap / sd if sd > 0 else (math.inf if gap > 0 else -math.inf)
    return Check(claim, f"{a} vs {b}: gap {gap:+.1f}, pooled sd {sd:.2f}, gap = {ratio:+.1f} sd",
                 gap > NAIVE_GAP_POOLED_SD * sd)


def check_ablations(table: pd.DataFrame, full: str = "avem_dpo") -> list[Check]:
    out = []
    a = stat(table, full, "Avg")
    for name, v in ABLATIONS:
        claim = f"ablation {name} ({v}) falls below the full method on the EmoReAlM average"
        b = stat(table, v, "Avg")
        out.append(_missing(claim, full, v) if a is None or b is None else
                   Check(claim, f"{b} vs {a} (full)", b.mean < a.mean))
    return out


def check_recognition(table: pd.DataFrame, full: str = "avem_dpo", reference: str = "reference") -> list[Check]:
    out = []
    for quantity in ("DFEW UAR", "RAV UAR"):
        claim = f"{full}'s {quantity} is at most {RECOGNITION_DROP_MAX:.0f} points below the reference's"
        a, r = stat(table, full, quantity), stat(table, reference, quantity)
        out.append(_missing(claim, full, reference) if a is None or r is None else
                   Check(claim, f"{a} vs {r} (change {a.mean - r.mean:+.1f})",
                         r.mean - a.mean <= RECOGNITION_DROP_MAX))
    return out


def story_checks(table: pd.DataFrame, reference: str = "reference", full: str = "avem_dpo",
                 naive: str = "naive_dpo", forms: Sequence[tuple[str, str]] = FORMS) -> dict[str, list[Check]]:
    """Every bullet of the story: the reference's errors, then per TPD form (the forms whose variant was
    trained; `full` alone when none of them was) the fix, the comparisons and recognition."""
    trained = [(f, v) for f, v in forms if not table[table["variant"] == v].empty] or [("", full)]
    out = {"The reference absorbed both errors": check_reference_errors(table, reference)}
    for form, v in trained:
        tag = f" (tpd_form {form}: {v})" if form else ""
        out[f"AVEm-DPO fixes them by discriminating{tag}"] = check_fix(table, v, reference)
        out[f"AVEm-DPO against Naive-DPO and the ablations{tag}"] = [check_naive_gap(table, v, naive),
                                                                     *check_ablations(table, v)]
        out[f"Recognition stays{tag}"] = check_recognition(table, v, reference)
    return out


def stress_errors(table: pd.DataFrame, variant: str) -> dict[str, float] | None:
    """Error rate (%) per stress kind: wrongly No for relevant items, wrongly Yes for the other two."""
    s = {k: stat(table, variant, q) for k, q in (("relevant", "Yes relevant"), ("spurious", "Yes spurious"),
                                                  ("hallucination", "Yes halluc"))}
    if any(v is None for v in s.values()):
        return None
    return {"relevant": 100.0 - s["relevant"].mean, "spurious": s["spurious"].mean,
            "hallucination": s["hallucination"].mean}


def ablation_costs(table: pd.DataFrame, full: str = "avem_dpo") -> pd.DataFrame:
    """Per ablation: the extra error (points) on each stress kind over the full method, and the kind it
    costs most (the largest increase; 'none' when no kind gets worse)."""
    base = stress_errors(table, full)
    rows = {}
    for name, v in ABLATIONS:
        err = stress_errors(table, v)
        if base is None or err is None:
            continue
        extra = {k: err[k] - base[k] for k in KINDS}
        worst = max(extra, key=extra.get)
        rows[name] = {**{f"+err {k}": extra[k] for k in KINDS},
                      "costs most": worst if extra[worst] > 0 else "none"}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("ablation")


def wide_table(table: pd.DataFrame, variants: Sequence[str], quantities: Sequence[str] | None = None
               ) -> pd.DataFrame:
    """variant x quantity, cells 'mean ± sd' (or 'mean' with one run): the table of report.md."""
    cells: dict[str, dict[str, str]] = {}
    for r in table.itertuples(index=False):
        s = Stat(float(r.mean), float(r.sd), int(r.n))
        cells.setdefault(r.variant, {})[r.quantity] = (f"{s.mean:.1f} ± {s.sd:.1f}" if s.n > 1 and math.isfinite(s.sd)
                                                       else f"{s.mean:.1f}")
    cols = [q for q in (quantities or [q for q, *_ in QUANTITIES]) if any(q in row for row in cells.values())]
    rows = {v: cells[v] for v in variants if v in cells}
    out = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=cols).rename_axis("variant")
    n = table.groupby("variant", sort=False)["n"].max()
    out.insert(0, "runs", [int(n.get(v, 0)) for v in out.index])
    return out


def markdown_lines(checks: Mapping[str, Sequence[Check]]) -> list[str]:
    lines = []
    for group, items in checks.items():
        lines.append(f"**{group}**")
        lines.append("")
        for c in items:
            lines.append(f"- {c.claim}: {c.measured} -> **{c.verdict}**")
        lines.append("")
    return lines
