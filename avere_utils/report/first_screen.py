"""The report's first screen: a five-line summary computed from the verdicts, and one table of the paper's
claims and the kit's bars, each with the paper's numbers (where the paper has some) and this run's side by
side, under the kit's column names."""
from __future__ import annotations

import math
from typing import Sequence

import pandas as pd
import yaml

from avere_utils.report import bars, story
from avere_utils.report.story import stat
from avere_utils.report.tables import PAPER_FILE, columns


def paper_column_names() -> dict[str, str]:
    """The paper tables' keys (paper_reported.yaml) -> the kit's column names (tables.py)."""
    names = {f"{bench}_{key}": col for col, bench, key in columns("table2")}
    names.update({key: col for col, _, key in columns("table3")})
    return names


# (claim, kit column = story quantity, paper table, the method's variant, the other variant, higher is better)
PAPER_CLAIMS: tuple[tuple[str, str, str, str, str, bool], ...] = (
    ("AVEm-DPO raises the EmoReAlM average over the base model", "Avg", "table3", "avem_dpo", "reference", True),
    ("... and the stress accuracy, audio", "S-A", "table3", "avem_dpo", "reference", True),
    ("... and the stress accuracy, video", "S-V", "table3", "avem_dpo", "reference", True),
    ("AVEm-DPO beats Naive-DPO on the EmoReAlM average", "Avg", "table3", "avem_dpo", "naive_dpo", True),
    ("EMER: fewer hallucinated cues (judge score up)", "EMER Halluc", "table2", "avem_dpo", "reference", True),
    ("EMER: fewer spurious cues (judge score up)", "EMER Spurious", "table2", "avem_dpo", "reference", True),
    ("recognition does not suffer (DFEW UAR up)", "DFEW UAR", "table2", "avem_dpo", "reference", True),
)
PAPER_COLUMN = {"EMER Halluc": "Halluc", "EMER Spurious": "Spurious"}  # story quantity -> Table 2 column
ABLATION_ROWS = {"no_pmp": "- PMP", "no_erp": "- ERP", "no_tpd": "- TPD", "avem_dpo": "AVEm-DPO (full)"}


def _paper() -> dict:
    return yaml.safe_load(PAPER_FILE.read_text())


def _paper_value(paper: dict, table: str, variant: str, column: str) -> float | None:
    t = paper[table]
    names = paper_column_names()
    cols = [names.get(c, c) for c in t["columns"]]
    column = PAPER_COLUMN.get(column, column)
    row = (ABLATION_ROWS if table == "ablation" else paper.get("variant_rows", {})).get(variant)
    if row not in t["rows"] or column not in cols:
        return None
    return float(t["rows"][row][cols.index(column)])


def _pair(a: float | None, b: float | None, other: str, this: str) -> str:
    if a is None or b is None:
        return "-"
    return f"{other} {b:.1f} -> {this} {a:.1f} ({a - b:+.1f})"


def claims_table(table: pd.DataFrame, checks: pd.DataFrame, full: str = "avem_dpo") -> pd.DataFrame:
    """One row per claim: the paper's (numbers from paper_reported.yaml, scored by the released code on real
    data) and the kit's bars for `full` (report/bars.py); this run's numbers in the story mode."""
    paper = _paper()
    rows = []
    claims = [(c, q, t, v if v != "avem_dpo" else full, o, hib) for c, q, t, v, o, hib in PAPER_CLAIMS]
    claims += [(f"ablation {ABLATION_ROWS[v]} falls below the full method (Avg)", "Avg", "ablation", v, full, False)
               for v in ("no_pmp", "no_erp", "no_tpd")]
    for claim, q, tname, v, other, higher in claims:
        pv = "avem_dpo" if v == full else v
        po = "avem_dpo" if other == full else other
        pa, pb = _paper_value(paper, tname, pv, q), _paper_value(paper, tname, po, q)
        if tname == "ablation" and pb is None:
            pb = _paper_value(paper, "ablation", "avem_dpo", q)
        a, b = stat(table, v, q), stat(table, other, q)
        if a is None or b is None:
            holds = None
        else:
            holds = a.mean > b.mean if higher else a.mean < b.mean
        rows.append({"claim": claim, "column": q, "paper": _pair(pa, pb, po, pv),
                     "this run": _pair(a.mean if a else None, b.mean if b else None, other, v),
                     "holds": bars.verdict(holds), "every reference seed": ""})
    for _, r in checks[checks["variant"] == full].iterrows():
        every = bars.verdict(r["holds every reference seed"]) if "holds every reference seed" in r.index else ""
        rows.append({"claim": r["claim"], "column": "", "paper": "-", "this run": r["measured"],
                     "holds": bars.verdict(r["holds"]), "every reference seed": every})
    out = pd.DataFrame(rows)
    if not (out["every reference seed"] != "").any():
        out = out.drop(columns="every reference seed")
    return out


def _fmt(s) -> str:
    return "(not measured)" if s is None else f"{s.mean:.1f}"


def summary_lines(table: pd.DataFrame, checks: pd.DataFrame, variants: Sequence[str], reference: str = "reference",
                  full: str = "avem_dpo") -> list[str]:
    """Five lines, every number read from `table` (report/bars.py's) and every verdict from `checks`."""
    def s(v, q):
        return stat(table, v, q)

    r = reference
    ref_line = (f"1. **What the reference gets wrong.** It answers Yes to {_fmt(s(r, 'Yes spurious'))} % of the "
                f"spurious and {_fmt(s(r, 'Yes halluc'))} % of the hallucination stress items (relevant: "
                f"{_fmt(s(r, 'Yes relevant'))} %); it ranks a relevant item above a hallucination item with chance "
                f"{_fmt(s(r, 'AUC rel>hal'))} % (spurious: {_fmt(s(r, 'AUC rel>spur'))} %), and only "
                f"{_fmt(s(r, 'flip rel+hal'))} % of its answers change when the asked cue is toggled in the media.")
    trained = [v for v in variants if v != r and s(v, "AUC rel>hal") is not None]
    changes = []
    for v in trained:
        a, b = s(v, "AUC rel>hal"), s(r, "AUC rel>hal")
        f, fr = s(v, "flip rel+hal"), s(r, "flip rel+hal")
        part = f"`{v}` AUC rel>hal {a.mean - b.mean:+.1f}" if b else f"`{v}` AUC rel>hal {a.mean:.1f}"
        if f is not None and fr is not None:
            part += f", flips {f.mean - fr.mean:+.1f}"
        changes.append(part)
    method_line = ("2. **What each method changes** (points over the reference): " + ("; ".join(changes) or
                   "no trained variant has discrimination readings") + ".")
    raw_r, raw_a = s(r, "Yes halluc"), s(full, "Yes halluc")
    m_r, m_a = s(r, "matched Yes halluc"), s(full, "matched Yes halluc")
    if None not in (raw_r, raw_a, m_r, m_a):
        fall, kept = raw_r.mean - raw_a.mean, m_r.mean - m_a.mean
        share = kept / fall if fall > 0 else math.nan
        kind = ("mostly discrimination" if share >= 0.5 else "mostly a threshold (saying No more often)") \
            if math.isfinite(share) else "no fall to explain"
        disc_line = (f"3. **Discrimination or threshold?** `{full}`'s hallucination Yes-rate falls {fall:+.1f} points; "
                     f"with its relevant Yes-rate held at the reference's it falls {kept:+.1f}: {kind}.")
    else:
        disc_line = (f"3. **Discrimination or threshold?** undecided: `{full}` or the reference lacks its raw or "
                     "matched Yes-rates.")
    costs = []
    for name, v in story.ABLATIONS:
        a, b = s(v, "AUC rel>hal"), s(full, "AUC rel>hal")
        if a is not None and b is not None:
            costs.append(f"{name} {a.mean - b.mean:+.1f}")
    abl_line = (f"4. **What the ablations cost** (AUC rel>hal against `{full}`): " + (", ".join(costs) or
                "no ablation measured") + ".")
    mine = checks[checks["variant"] == full] if not checks.empty else checks
    failed = [c for c, h in zip(mine.get("claim", []), mine.get("holds", [])) if h is False]
    undecided = sum(1 for h in mine.get("holds", []) if h is None)
    held = sum(1 for h in mine.get("holds", []) if h is True)
    miss_line = (f"5. **What did not reproduce** ({held} of {len(mine)} bars hold for `{full}`, {undecided} undecided): "
                 + ("; ".join(failed) if failed else "nothing measured failed") + ".")
    return [ref_line, method_line, disc_line, abl_line, miss_line]
