"""Result tables in the shape of the paper's Tables 2 and 3, built from a run's metrics files.

The run's own numbers and the paper's reported numbers are kept in separate tables; nothing here mixes
them.  Metrics files are `<bench>-<variant>.json` (see docs/ARCHITECTURE.md).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd
import yaml

from avere_utils import benchmarks


# The paper's column headers and the metric keys under them are fields of each benchmark's record
# (benchmarks.BENCHMARKS; tests/meta/test_protocol.py checks every key read here is one the evaluation writes).
# Read when a table is built, so that a benchmark registered after import has its columns too.
def columns(table: str) -> list[tuple[str, str, str]]:
    """(column, benchmark, metric key) of "table2" (recognition and EMER) or "table3" (EmoReAlM)."""
    return benchmarks.table_columns(table)


def emer_columns() -> list[str]:
    return [col for col, bench, _ in columns("table2") if bench == "emer"]


_DERIVED = {  # the names these lists had as constants, read through the functions above
    "TABLE2_COLUMNS": lambda: columns("table2"),
    "TABLE3_COLUMNS": lambda: columns("table3"),
    "EMOREALM_COLUMNS": lambda: list(benchmarks.get("emorealm").columns),
    "EMER_COLUMNS": emer_columns,
}


def __getattr__(name: str) -> Any:
    if name in _DERIVED:
        return _DERIVED[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


PAPER_FILE = Path(__file__).with_name("paper_reported.yaml")
# The paper's numbers were scored by the released evaluation code, i.e. this kit's `paper` mode: only
# that mode's numbers may be set next to them (docs/evaluation.md lists how the modes differ).
PAPER_SCORING_MODE = "paper"
MODE_LABELS = {"paper": "released scoring, flaws included: how the paper's numbers were scored",
               "strict": "corrected scoring: not comparable with the paper's numbers",
               "scoring": "answer log-likelihoods, no parsing: not comparable with the paper's numbers"}


def mode_label(mode: str) -> str:
    """`mode` and what its numbers may be compared with."""
    return f"`{mode}` ({MODE_LABELS.get(mode, 'unknown scoring mode')})"


def load_metrics(metrics_dir: str | Path) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for f in sorted(Path(metrics_dir).glob("*.json")):
        bench, sep, variant = f.stem.partition("-")
        if sep:
            out[(bench, variant)] = json.loads(f.read_text())
    return out


def metric(m: dict[str, Any] | None, key: str, mode: str | None = None) -> float | None:
    """A headline value, from the given scoring mode's block when the file has modes."""
    if m is None:
        return None
    block = m.get("modes", {}).get(mode, m) if mode else m
    value = block.get(key, m.get(key) if block is not m else None)
    return float(value) if isinstance(value, (int, float)) else None


def _table(metrics: dict, variants: Sequence[str], columns, mode: str | None) -> pd.DataFrame:
    rows = {v: {col: metric(metrics.get((bench, v)), key, mode) for col, bench, key in columns} for v in variants}
    return pd.DataFrame.from_dict(rows, orient="index")


def table2(metrics: dict, variants: Sequence[str], mode: str | None = None) -> pd.DataFrame:
    return _table(metrics, variants, columns("table2"), mode)


def table3(metrics: dict, variants: Sequence[str], mode: str | None = None) -> pd.DataFrame:
    return _table(metrics, variants, columns("table3"), mode)


PARTIAL_MARK = "†"


def with_emer_coverage(table: pd.DataFrame, metrics: dict, floatfmt: str = "{:.2f}") -> pd.DataFrame:
    """Table 2 for reading: EMER's coverage (percent of items judged) beside its scores, and every EMER
    score judged on fewer than all items marked, so a partial judge run never reads as a full one."""
    out = table.astype(object).copy()
    cov = pd.Series({v: metric(metrics.get(("emer", v)), "coverage") for v in table.index}, dtype=object)
    for v in table.index:
        partial = cov[v] is not None and cov[v] < 100.0
        for col in emer_columns():
            x = table.at[v, col] if col in table.columns else None
            if x is not None and not pd.isna(x):
                out.at[v, col] = floatfmt.format(x) + (PARTIAL_MARK if partial else "")
    out["EMER cov %"] = [None if c is None else f"{c:.0f}" for c in cov]
    return out


def relative_gain(table: pd.DataFrame, baseline: str = "reference") -> pd.DataFrame:
    """Per-cell change over the baseline row, in percent of the baseline value."""
    if baseline not in table.index:
        raise KeyError(f"baseline row {baseline!r} not in table ({', '.join(table.index)})")
    base = table.loc[baseline]
    return (table - base) / base.where(base != 0) * 100.0


def ablation_table(metrics: dict, mode: str | None = None,
                   rows: Iterable[tuple[str, str]] = (("AVEm-DPO (full)", "avem_dpo"), ("- PMP", "no_pmp"),
                                                      ("- ERP", "no_erp"), ("- TPD", "no_tpd"))) -> pd.DataFrame:
    cols = columns("table3") + [c for c in columns("table2") if c[1] == "emer"]
    data = {name: {col: metric(metrics.get((bench, v)), key, mode) for col, bench, key in cols} for name, v in rows}
    return pd.DataFrame.from_dict(data, orient="index")


def headline_row(metrics_dir: str | Path, variant: str, mode: str | None = None) -> dict[str, float | None]:
    metrics = load_metrics(metrics_dir)
    return {col: metric(metrics.get((bench, variant)), key, mode)
            for col, bench, key in columns("table2") + columns("table3")}


def paper_reported(table: str) -> pd.DataFrame:
    """A table as REPORTED BY THE PAPER (data copied from docs/method.md; not produced by this kit), scored by the
    released code: compare it with mode PAPER_SCORING_MODE only."""
    data = yaml.safe_load(PAPER_FILE.read_text())[table]
    return pd.DataFrame.from_dict(data["rows"], orient="index", columns=data["columns"])


def markdown_table(df: pd.DataFrame, floatfmt: str = "{:.2f}", index: bool = False) -> str:
    """A GitHub markdown table (no tabulate dependency)."""
    frame = df.reset_index() if index else df

    def fmt(v: Any) -> str:
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return "-"
        return floatfmt.format(v) if isinstance(v, float) else str(v)

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    sep = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, sep, *body])
