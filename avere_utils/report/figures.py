"""Figures of the results notebook: grouped bars, per-term training curves, error rates per variant."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402


def _bars_by_variant(table: pd.DataFrame, x: str, path: Path, title: str, width: float) -> Path | None:
    long = table.rename_axis("variant").reset_index().melt(id_vars="variant", var_name=x, value_name="value")
    long = long.dropna()
    if long.empty:
        return None
    fig, ax = plt.subplots(figsize=(width, 4.2))
    sns.barplot(data=long, x=x, y="value", hue="variant", ax=ax)
    ax.set_title(title)
    ax.set_xlabel("")
    ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def grouped_bars(table: pd.DataFrame, path: Path, title: str) -> Path | None:
    """One group per benchmark column, one bar per variant (row)."""
    return _bars_by_variant(table, "metric", path, title, max(7.0, 1.8 * table.shape[1]))


def read_train_logs(log_dir: Path, variants: Sequence[str]) -> pd.DataFrame:
    frames = []
    for v in variants:
        f = log_dir / f"{v}.jsonl"
        if f.is_file():
            rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
            if rows:
                frames.append(pd.DataFrame(rows).assign(variant=v))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def training_curves(logs: pd.DataFrame, path: Path) -> Path | None:
    """Per-term losses and reward margins over steps, one line per variant."""
    if logs.empty or "step" not in logs:
        return None
    cols = [c for c in logs.columns if c != "step" and logs[c].dtype.kind == "f" and
            (c.startswith("loss") or "margin" in c)]
    if not cols:
        return None
    n = len(cols)
    ncols = min(3, n)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3 * nrows), squeeze=False)
    for ax, col in zip(axes.flat, cols):
        sns.lineplot(data=logs.dropna(subset=[col]), x="step", y=col, hue="variant", ax=ax, legend=ax is axes.flat[0])
        ax.set_title(col)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def error_rates(rates: pd.DataFrame, path: Path) -> Path | None:
    """Hallucination and spurious-association rates per variant (lower is better)."""
    return _bars_by_variant(rates, "rate", path, "Hallucination and spurious-association rates (lower is better)",
                            max(8.0, 1.6 * rates.shape[1]))
