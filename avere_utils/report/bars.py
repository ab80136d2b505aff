"""The bars AVEm-DPO is judged by: discrimination, media sensitivity and descriptions, not Yes-rates alone.

Each bar is a `story.Check` computed from one table of (variant, quantity, mean, sd, n) that pools the
base run and its `seeds/<k>/` reruns: the story's quantities (Yes-rates, EMER counts per description, UAR;
story.QUANTITIES), the discrimination readings (AUCs and Yes-rates at the reference's relevant Yes-rate;
discrimination.QUANTITIES) and the media-sensitivity flip shares (discrimination.FLIP_QUANTITIES).  Every
threshold is a named constant below; nothing is written per variant.  A bar whose inputs are missing is
undecided (`holds` None), never a pass.

The bars are checked for each TPD form whose variant was trained (story.FORMS), then again on each
reference retrained with another seed (`reference_seeds/seed-K/`, `avere-kit reference-seeds`): a bar holds
for every reference seed only if it holds on each.  A reference seed has one training run per variant, so
its "> k pooled sd" bars take the spread over training seeds of the base run's table.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from avere_utils.report import discrimination, story
from avere_utils.report.story import Check, Stat, _missing, pooled_sd, stat

# (a) discrimination on the kit's wordings (AUC points over the reference's)
AUC_HAL_GAIN_MIN = 8.0
AUC_SPUR_GAIN_MIN = 5.0
NAIVE_AUC_GAP_POOLED_SD = 2.0  # ... and ahead of Naive-DPO's AUC rel>hal by more than this many pooled sd
# (b) at the reference's relevant Yes-rate (points below the reference's)
MATCHED_HAL_DROP_MIN = 15.0
MATCHED_SPUR_DROP_MIN = 10.0
RELEVANT_YES_CHANGE_MAX = 10.0  # the plain relevant Yes-rate within this many points of the reference's
# (c) the held-out wordings
HELDOUT_AUC_HAL_GAIN_MIN = 5.0
# (d) the ablations
PMP_AUC_GAP_POOLED_SD = 2.0  # -PMP below the full method on AUC rel>hal by more than this many pooled sd
# (e) media sensitivity: share of relevant + hallucination answers that flip real -> counterfactual media
FLIP_RATIO_MIN = 2.0  # at least this many times the reference's
# (f) EMER descriptions, per description; DFEW / RAVDESS recognition
EMER_HALLUC_DROP_MIN = 0.25  # hallucinated cues per description at least this share below the reference's
CLUE_RECALL_DROP_MAX = 3.0  # clue recall (percent) at most this many points below the reference's
UAR_CHANGE_MAX = 2.0  # DFEW and RAVDESS UAR within this many points of the reference's

NO_PMP, NO_TPD = "no_pmp", "no_tpd"
# the quantities of the table the bars read (story's, discrimination's, media sensitivity's)
AUC_HAL, AUC_SPUR, HO_AUC_HAL = "AUC rel>hal", "AUC rel>spur", "HO AUC rel>hal"
M_SPUR, M_HAL = "matched Yes spurious", "matched Yes halluc"
FLIP = "flip rel+hal"


def all_values(run_dir: str | Path, seeds_dir: str | Path | None, variants: Sequence[str], mode: str | None,
               reference: str = "reference") -> pd.DataFrame:
    """Long frame (run, variant, quantity, value) of every quantity a bar reads, over the base run and its
    seeds/ reruns."""
    runs = [(name, story.load_metrics(path)) for name, path in story.seed_runs(run_dir, seeds_dir)]
    parts = [story.per_run_values(runs, variants, mode),
             discrimination.discrimination_values(run_dir, seeds_dir, variants, reference),
             discrimination.media_sensitivity_values(run_dir, seeds_dir, variants)]
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame(columns=["run", "variant", "quantity", "value"])
    return pd.concat(parts, ignore_index=True)


def bars_table(values: pd.DataFrame, variants: Sequence[str]) -> pd.DataFrame:
    quantities = ([q for q, *_ in story.QUANTITIES] + discrimination.QUANTITIES + discrimination.MODALITY_QUANTITIES
                  + discrimination.FLIP_QUANTITIES)
    return story.story_table(values, variants, quantities)


def _gap_sd(a: Stat, b: Stat, k: float, gap: float) -> tuple[bool | None, str]:
    sd = pooled_sd(a, b)
    if not math.isfinite(sd):
        return None, "needs two or more training seeds per variant (avere-kit seeds)"
    return gap > k * sd, f"pooled sd {sd:.2f}, gap = {gap / sd:+.1f} sd" if sd > 0 else f"pooled sd {sd:.2f}"


def _vs(table: pd.DataFrame, full: str, other: str, quantity: str, claim: str, test, describe: str = "") -> Check:
    a, b = stat(table, full, quantity), stat(table, other, quantity)
    if a is None or b is None:
        return _missing(claim, *(v for v, s in ((full, a), (other, b)) if s is None))
    holds = test(a, b)
    return Check(claim, f"{a} vs {b} ({describe or 'difference'} {a.mean - b.mean:+.1f})", holds)


def check_discrimination(table: pd.DataFrame, full: str, reference: str, naive: str) -> list[Check]:
    """(a) AUC rel>hal >= reference + AUC_HAL_GAIN_MIN and ahead of Naive-DPO's by > k pooled sd; AUC
    rel>spur >= reference + AUC_SPUR_GAIN_MIN."""
    out = [_vs(table, full, reference, AUC_HAL,
               f"{full}'s AUC rel>hal is >= {AUC_HAL_GAIN_MIN:.0f} points above the reference's",
               lambda a, r: a.mean - r.mean >= AUC_HAL_GAIN_MIN, "gain")]
    claim = f"{full}'s AUC rel>hal is above {naive}'s by more than {NAIVE_AUC_GAP_POOLED_SD:.0f} pooled sd"
    a, b = stat(table, full, AUC_HAL), stat(table, naive, AUC_HAL)
    if a is None or b is None:
        out.append(_missing(claim, *(v for v, s in ((full, a), (naive, b)) if s is None)))
    else:
        holds, how = _gap_sd(a, b, NAIVE_AUC_GAP_POOLED_SD, a.mean - b.mean)
        out.append(Check(claim, f"{a} vs {b}: gap {a.mean - b.mean:+.1f}, {how}", holds))
    out.append(_vs(table, full, reference, AUC_SPUR,
                   f"{full}'s AUC rel>spur is >= {AUC_SPUR_GAIN_MIN:.0f} points above the reference's",
                   lambda a, r: a.mean - r.mean >= AUC_SPUR_GAIN_MIN, "gain"))
    return out


def check_matched(table: pd.DataFrame, full: str, reference: str) -> list[Check]:
    """(b) at the reference's relevant Yes-rate: hallucination Yes >= MATCHED_HAL_DROP_MIN and spurious
    >= MATCHED_SPUR_DROP_MIN points below the reference's; plain relevant Yes within RELEVANT_YES_CHANGE_MAX."""
    out = []
    for kind, q, bar in (("hallucination", M_HAL, MATCHED_HAL_DROP_MIN), ("spurious", M_SPUR, MATCHED_SPUR_DROP_MIN)):
        out.append(_vs(table, full, reference, q,
                       f"at the reference's relevant Yes-rate, {full}'s {kind} Yes-rate is >= {bar:.0f} points "
                       "below the reference's", lambda a, r, bar=bar: r.mean - a.mean >= bar, "change"))
    out.append(_vs(table, full, reference, "Yes relevant",
                   f"{full}'s plain relevant Yes-rate is within {RELEVANT_YES_CHANGE_MAX:.0f} points of the reference's",
                   lambda a, r: abs(a.mean - r.mean) <= RELEVANT_YES_CHANGE_MAX, "change"))
    return out


def check_heldout(table: pd.DataFrame, full: str, reference: str) -> list[Check]:
    """(c) held-out wordings: AUC rel>hal >= reference + HELDOUT_AUC_HAL_GAIN_MIN."""
    return [_vs(table, full, reference, HO_AUC_HAL,
                f"held-out wordings: {full}'s AUC rel>hal is >= {HELDOUT_AUC_HAL_GAIN_MIN:.0f} points above the "
                "reference's", lambda a, r: a.mean - r.mean >= HELDOUT_AUC_HAL_GAIN_MIN, "gain")]


def check_ablations(table: pd.DataFrame, full: str, no_pmp: str = NO_PMP, no_tpd: str = NO_TPD) -> list[Check]:
    """(d) -PMP below the full method on AUC rel>hal by > PMP_AUC_GAP_POOLED_SD pooled sd; -TPD below it on
    at least one of the two AUCs (lower) or the two matched Yes-rates (higher)."""
    claim = f"-PMP ({no_pmp}) is below {full} on AUC rel>hal by more than {PMP_AUC_GAP_POOLED_SD:.0f} pooled sd"
    a, b = stat(table, full, AUC_HAL), stat(table, no_pmp, AUC_HAL)
    if a is None or b is None:
        out = [_missing(claim, *(v for v, s in ((full, a), (no_pmp, b)) if s is None))]
    else:
        holds, how = _gap_sd(a, b, PMP_AUC_GAP_POOLED_SD, a.mean - b.mean)
        out = [Check(claim, f"{b} vs {a}: gap {a.mean - b.mean:+.1f}, {how}", holds)]
    claim = (f"-TPD ({no_tpd}) is below {full} on at least one of AUC rel>hal, AUC rel>spur, matched Yes halluc, "
             "matched Yes spurious")
    worse, seen = [], []
    for q, higher_is_better in ((AUC_HAL, True), (AUC_SPUR, True), (M_HAL, False), (M_SPUR, False)):
        a, b = stat(table, full, q), stat(table, no_tpd, q)
        if a is None or b is None:
            continue
        seen.append(f"{q} {b.mean:.1f} vs {a.mean:.1f}")
        if (b.mean < a.mean) if higher_is_better else (b.mean > a.mean):
            worse.append(q)
    if not seen:
        out.append(_missing(claim, full, no_tpd))
    else:
        out.append(Check(claim, "; ".join(seen) + f" -> worse on: {', '.join(worse) or 'none'}", bool(worse)))
    return out


def check_media(table: pd.DataFrame, full: str, reference: str, naive: str) -> list[Check]:
    """(e) flip share (relevant + hallucination, real -> counterfactual media) >= FLIP_RATIO_MIN x the
    reference's and above Naive-DPO's."""
    out = []
    claim = f"{full} flips >= {FLIP_RATIO_MIN:.0f}x as many stress answers between real and counterfactual media as the reference"
    a, r = stat(table, full, FLIP), stat(table, reference, FLIP)
    if a is None or r is None:
        out.append(_missing(claim, *(v for v, s in ((full, a), (reference, r)) if s is None)))
    else:
        ratio = a.mean / r.mean if r.mean > 0 else math.inf
        out.append(Check(claim, f"{a} vs {r} % (ratio {ratio:.2f})", a.mean >= FLIP_RATIO_MIN * r.mean))
    out.append(_vs(table, full, naive, FLIP, f"{full} flips more stress answers than {naive}",
                   lambda a, b: a.mean > b.mean))
    return out


def check_descriptions(table: pd.DataFrame, full: str, reference: str) -> list[Check]:
    """(f) EMER per description: hallucinated cues >= EMER_HALLUC_DROP_MIN below the reference's, irrelevant
    ones below, clue recall at most CLUE_RECALL_DROP_MAX points below; DFEW and RAVDESS UAR within UAR_CHANGE_MAX."""
    out = [_vs(table, full, reference, "EMER halluc / desc",
               f"{full} cites >= {100 * EMER_HALLUC_DROP_MIN:.0f} % fewer hallucinated cues per EMER description "
               "than the reference", lambda a, r: a.mean <= (1 - EMER_HALLUC_DROP_MIN) * r.mean),
           _vs(table, full, reference, "EMER irrelevant / desc",
               f"{full} cites fewer irrelevant cues per EMER description than the reference",
               lambda a, r: a.mean < r.mean),
           _vs(table, full, reference, "EMER clue recall",
               f"{full}'s EMER clue recall is at most {CLUE_RECALL_DROP_MAX:.0f} points below the reference's",
               lambda a, r: r.mean - a.mean <= CLUE_RECALL_DROP_MAX)]
    for q in ("DFEW UAR", "RAV UAR"):
        out.append(_vs(table, full, reference, q, f"{full}'s {q} is within {UAR_CHANGE_MAX:.0f} points of the reference's",
                       lambda a, r: abs(a.mean - r.mean) <= UAR_CHANGE_MAX, "change"))
    return out


GROUPS = (("discrimination", "Discrimination (AUC)"), ("matched", "At the reference's relevant Yes-rate"),
          ("heldout", "Held-out wordings"), ("ablations", "Ablations"), ("media", "Media sensitivity"),
          ("descriptions", "Descriptions and recognition"))


def bar_checks(table: pd.DataFrame, full: str, reference: str = "reference", naive: str = "naive_dpo"
               ) -> dict[str, list[Check]]:
    """Every bar for one trained form `full`, by group (GROUPS' keys)."""
    return {"discrimination": check_discrimination(table, full, reference, naive),
            "matched": check_matched(table, full, reference),
            "heldout": check_heldout(table, full, reference),
            "ablations": check_ablations(table, full),
            "media": check_media(table, full, reference, naive),
            "descriptions": check_descriptions(table, full, reference)}


def trained_forms(table: pd.DataFrame, forms: Sequence[tuple[str, str]] = story.FORMS) -> list[tuple[str, str]]:
    present = set(table["variant"])
    return [(f, v) for f, v in forms if v in present] or [("", "avem_dpo")]


def with_training_spread(seed_table: pd.DataFrame, base_table: pd.DataFrame) -> pd.DataFrame:
    """A reference seed's table (one run per variant) with the sd and n of the base run's table over
    training seeds, so that its "> k pooled sd" bars can be decided."""
    spread = base_table.set_index(["variant", "quantity"])[["sd", "n"]]
    t = seed_table.drop(columns=["sd", "n"]).join(spread, on=["variant", "quantity"])
    t["n"] = t["n"].fillna(1).astype(int)
    return t


def reference_seed_dirs(run_dir: str | Path) -> list[tuple[str, Path]]:
    return [(p.name, p) for p in sorted(Path(run_dir, "reference_seeds").glob("seed-*")) if (p / "predictions").is_dir()
            or (p / "metrics").is_dir()]


def flat(checks: dict[str, list[Check]]) -> list[tuple[str, Check]]:
    return [(g, c) for g, items in checks.items() for c in items]


def all_hold(values: Sequence[bool | None]) -> bool | None:
    """False if any is False, None if any is undecided, else True (an empty sequence is undecided)."""
    if any(v is False for v in values):
        return False
    return None if not values or any(v is None for v in values) else True


def evaluate(run_dir: str | Path, seeds_dir: str | Path | None, variants: Sequence[str], mode: str | None,
             reference: str = "reference", naive: str = "naive_dpo") -> pd.DataFrame:
    """One row per (form, group, claim): the verdict on the base run pooled over training seeds, then on
    each reference seed, and whether it holds for every reference (the base run's included)."""
    table = bars_table(all_values(run_dir, seeds_dir, variants, mode, reference), variants)
    if table.empty:
        return pd.DataFrame(columns=["form", "variant", "group", "claim", "measured", "holds"])
    per_seed = {name: with_training_spread(bars_table(all_values(path, None, variants, mode, reference), variants),
                                           table)
                for name, path in reference_seed_dirs(run_dir)}
    rows = []
    for form, v in trained_forms(table):
        base = flat(bar_checks(table, v, reference, naive))
        seeds = {name: flat(bar_checks(t, v, reference, naive)) if not t.empty else None
                 for name, t in per_seed.items()}
        for i, (group, c) in enumerate(base):
            row = {"form": form, "variant": v, "group": group, "claim": c.claim, "measured": c.measured,
                   "holds": c.holds}
            for name, checks in seeds.items():
                row[f"holds {name}"] = None if checks is None else checks[i][1].holds
                row[f"measured {name}"] = None if checks is None else checks[i][1].measured
            if seeds:
                row["holds every reference seed"] = all_hold([c.holds, *(row[f"holds {n}"] for n in seeds)])
            rows.append(row)
    return pd.DataFrame(rows)


def verdict(h: bool | None) -> str:
    """holds / does NOT hold / undecided (None or NaN, as a frame's cell may hold it)."""
    if h is None or (isinstance(h, float) and math.isnan(h)):
        return "undecided"
    return "holds" if bool(h) else "does NOT hold"
