"""How much of a stress Yes-rate change is discrimination, and how much is a shift of the Yes / No threshold.

In scoring mode a stress item is answered Yes when log p("Yes (A)") > log p("No (B)"): its Yes log-odds is
positive.  Training can lower the spurious and hallucination Yes-rates in two ways: by telling the kinds of
question apart (the relevant items' log-odds move away from the others'), or by lowering every item's
log-odds alike (saying No more often, to relevant items too).  The story's Yes-rates mix the two; these
readings separate them, from the per-item scores in `predictions/<benchmark>-<variant>.jsonl`:

* `AUC rel>spur`, `AUC rel>hal` (percent): the chance that a relevant item's log-odds exceeds a spurious
  (hallucination) item's.  No threshold enters: a pure shift leaves it unchanged; 50 is no discrimination.
* `matched Yes spurious`, `matched Yes halluc`: the Yes-rates at the threshold that keeps the variant's
  relevant Yes-rate at the reference's: what the variant would say to spurious and hallucinated cues if it
  did not also say No more often to relevant ones.  The threshold is the midpoint between the two relevant
  items around that rate, for every variant alike; so for the reference these differ from its own Yes-rates
  only by the items whose log-odds fall between that midpoint and 0.

Both are computed per run (the base run and every `seeds/<k>/` rerun) and summarised like the story table.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from avere_utils.evaluation.parsing import split_choice
from avere_utils.evaluation.score_cli import read_predictions
from avere_utils.protocol import EMOREALM_HELDOUT
from avere_utils.report.story import Check, _missing, seed_runs, stat

# (benchmark, prefix of its quantities): the kit's wordings and the held-out ones
BENCHMARKS: tuple[tuple[str, str], ...] = (("emorealm", ""), (EMOREALM_HELDOUT, "HO "))
QUANTITY_STEMS: tuple[str, ...] = ("AUC rel>spur", "AUC rel>hal", "matched Yes spurious", "matched Yes halluc")
QUANTITIES: list[str] = [p + q for _, p in BENCHMARKS for q in QUANTITY_STEMS]
# the two AUCs per modality of the asked cue (audio / video stress items apart)
MODALITIES: tuple[str, ...] = ("audio", "video")
MODALITY_QUANTITIES: list[str] = [f"{p}{q} {m}" for _, p in BENCHMARKS for m in MODALITIES
                                  for q in ("AUC rel>spur", "AUC rel>hal")]


def stress_items(manifest: str | Path) -> dict[str, tuple[str, int, int, str]]:
    """{item id: (kind, index of the Yes choice, index of the No choice, modality of the asked cue: audio |
    video)} of the stress items of a manifest."""
    out = {}
    path = Path(manifest)
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        q = item.get("text") or {}
        if not q.get("kind"):
            continue
        texts = [split_choice(c)[1].strip().lower() for c in q.get("choices", [])]
        if "yes" in texts and "no" in texts:
            modality = "audio" if str(q.get("task", "")).endswith("audio") else "video"
            out[item["id"]] = (q["kind"], texts.index("yes"), texts.index("no"), modality)
    return out


def yes_logodds(predictions: str | Path, items: Mapping[str, tuple[str, int, int, str]], modality: str | None = None
                ) -> dict[str, np.ndarray]:
    """Per stress kind, the Yes log-odds of each scored item of a predictions file (none when it is missing),
    of the items about one `modality` only when given."""
    path = Path(predictions)
    if not path.is_file():
        return {}
    per: dict[str, list[float]] = {}
    for item_id, rec in read_predictions(path).items():
        scores = rec.get("scores")
        if item_id not in items or not isinstance(scores, list):
            continue
        kind, yes, no, mod = items[item_id]
        if modality is not None and mod != modality:
            continue
        per.setdefault(kind, []).append(float(scores[yes]) - float(scores[no]))
    return {k: np.asarray(v) for k, v in per.items()}


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a pos value > a neg value), ties counted half (the Mann-Whitney statistic over n_pos * n_neg)."""
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.concatenate([pos, neg])
    ranks = pd.Series(order).rank(method="average").to_numpy()[: len(pos)]
    return float((ranks.sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def matched_threshold(relevant: np.ndarray, rate: float) -> float:
    """A threshold with the nearest count to a share `rate` (percent) of the relevant log-odds above it:
    the midpoint between the two order statistics around that count (a point one unit outside the range
    when all or none are kept), so that shifting every log-odds by c shifts the threshold by c."""
    s = np.sort(relevant)
    k = int(round(rate / 100.0 * len(s)))  # items to keep above the threshold
    if k >= len(s):
        return float(s[0]) - 1.0
    if k <= 0:
        return float(s[-1]) + 1.0
    return float((s[len(s) - k - 1] + s[len(s) - k]) / 2)


def readings(lo: Mapping[str, np.ndarray], reference_relevant_rate: float) -> dict[str, float]:
    """The four quantities (unprefixed) of one variant's log-odds, at the reference's relevant Yes-rate."""
    if not all(k in lo and len(lo[k]) for k in ("relevant", "spurious", "hallucination")):
        return {}
    t = matched_threshold(lo["relevant"], reference_relevant_rate)
    return {"AUC rel>spur": 100.0 * auc(lo["relevant"], lo["spurious"]),
            "AUC rel>hal": 100.0 * auc(lo["relevant"], lo["hallucination"]),
            "matched Yes spurious": 100.0 * float(np.mean(lo["spurious"] > t)),
            "matched Yes halluc": 100.0 * float(np.mean(lo["hallucination"] > t))}


def discrimination_values(run_dir: str | Path, seeds_dir: str | Path | None, variants: Sequence[str],
                          reference: str = "reference") -> pd.DataFrame:
    """Long frame (run, variant, quantity, value) over the base run and its seeds/ reruns.  The reference's
    relevant Yes-rate (the matched operating point) comes from the base run, where the reference is scored."""
    run_dir = Path(run_dir)
    rows: list[dict[str, Any]] = []
    for bench, prefix in BENCHMARKS:
        items = stress_items(run_dir / "manifests" / f"{bench}.jsonl")
        ref = yes_logodds(run_dir / "predictions" / f"{bench}-{reference}.jsonl", items)
        if not items or "relevant" not in ref:
            continue
        ref_rate = 100.0 * float(np.mean(ref["relevant"] > 0))
        for name, metrics_dir in seed_runs(run_dir, seeds_dir):
            for v in variants:
                predictions = metrics_dir.parent / "predictions" / f"{bench}-{v}.jsonl"
                lo = yes_logodds(predictions, items)
                for q, value in readings(lo, ref_rate).items():
                    if math.isfinite(value):
                        rows.append({"run": name, "variant": v, "quantity": prefix + q, "value": value})
                for mod in MODALITIES:  # the AUCs need no threshold: per modality as they are
                    lo = yes_logodds(predictions, items, mod)
                    for q in ("AUC rel>spur", "AUC rel>hal"):
                        kind = "spurious" if q.endswith("spur") else "hallucination"
                        if len(lo.get("relevant", [])) and len(lo.get(kind, [])):
                            rows.append({"run": name, "variant": v, "quantity": f"{prefix}{q} {mod}",
                                         "value": 100.0 * auc(lo["relevant"], lo[kind])})
    return pd.DataFrame(rows, columns=["run", "variant", "quantity", "value"])


def check_matched(table: pd.DataFrame, full: str, reference: str = "reference", drop: float = 15.0,
                  heldout_drop: float = 10.0) -> list[Check]:
    """The story's fix claim at the matched operating point: the spurious and hallucination Yes-rates at
    least `drop` (`heldout_drop` in held-out wordings) below the reference's with the relevant Yes-rate
    held at the reference's."""
    out = []
    for prefix, bar, where in (("", drop, ""), ("HO ", heldout_drop, "held-out wordings: ")):
        for kind, q in (("spurious", "matched Yes spurious"), ("hallucination", "matched Yes halluc")):
            claim = (f"{where}with its relevant Yes-rate held at the reference's, {full}'s {kind} Yes-rate is >= "
                     f"{bar:.0f} points below the reference's")
            a, r = stat(table, full, prefix + q), stat(table, reference, prefix + q)
            out.append(_missing(claim, full, reference) if a is None or r is None else
                       Check(claim, f"{a} vs {r} (drop {r.mean - a.mean:+.1f})", r.mean - a.mean >= bar))
    return out



# --- media sensitivity (evaluation/media_sensitivity.py) and reference seeds ---------------------------------
FLIP_QUANTITIES: list[str] = ["flip rel+hal", "flip relevant", "flip halluc", "flip spurious",
                              "Yes text", "Yes noise"]


def media_sensitivity_values(run_dir: str | Path, seeds_dir: str | Path | None, variants: Sequence[str],
                             bench: str = "emorealm") -> pd.DataFrame:
    """Long frame (run, variant, quantity, value): the share of stress answers that flip from the real to the
    counterfactual media (all, and per kind), and the Yes-rates without media and under noise, from
    `metrics/media_sensitivity-<variant>.json` of the base run and its seeds/ reruns."""
    rows: list[dict[str, Any]] = []
    for name, metrics_dir in seed_runs(run_dir, seeds_dir):
        for v in variants:
            path = metrics_dir / f"media_sensitivity-{v}.json"
            if not path.is_file():
                continue
            entry = (json.loads(path.read_text()).get("benchmarks") or {}).get(bench)
            if not entry:
                continue
            by = entry["by_kind"]
            values = {"flip rel+hal": entry.get("flip_share_rel_hal"),
                      "flip relevant": by.get("relevant", {}).get("all", {}).get("flip_share"),
                      "flip halluc": by.get("hallucination", {}).get("all", {}).get("flip_share"),
                      "flip spurious": by.get("spurious", {}).get("all", {}).get("flip_share"),
                      "Yes text": by.get("all", {}).get("all", {}).get("yes_rate_text"),
                      "Yes noise": by.get("all", {}).get("all", {}).get("yes_rate_noise")}
            rows += [{"run": name, "variant": v, "quantity": q, "value": float(x)}
                     for q, x in values.items() if x is not None and math.isfinite(float(x))]
    return pd.DataFrame(rows, columns=["run", "variant", "quantity", "value"])


REFERENCE_SEED_QUANTITIES: list[str] = ["AUC rel>spur", "AUC rel>hal", "matched Yes spurious", "matched Yes halluc",
                                        "HO AUC rel>hal", "flip rel+hal"]


def reference_seed_values(run_dir: str | Path, variants: Sequence[str], reference: str = "reference") -> pd.DataFrame:
    """Long frame (run = reference seed, variant, quantity, value) over the base run and every
    `reference_seeds/seed-K/` (`avere-kit reference-seeds`): each with its own reference, whose relevant
    Yes-rate sets that run's matched threshold."""
    run_dir = Path(run_dir)
    runs = [("base", run_dir)] + [(p.name, p) for p in sorted((run_dir / "reference_seeds").glob("seed-*"))
                                  if (p / "predictions").is_dir()]
    frames = []
    for name, path in runs:
        for part in (discrimination_values(path, None, variants, reference), media_sensitivity_values(path, None, variants)):
            if not part.empty:
                frames.append(part.assign(run=name))
    if not frames:
        return pd.DataFrame(columns=["run", "variant", "quantity", "value"])
    out = pd.concat(frames, ignore_index=True)
    return out[out["quantity"].isin(REFERENCE_SEED_QUANTITIES)].reset_index(drop=True)
