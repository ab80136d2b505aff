"""Seaborn figures of the evaluation notebooks, saved as PNG under `<run_dir>/figures/`."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from avere_utils.paths import RunLayout
from avere_utils.protocol import EMER_CRITERIA, EMOREALM_AVERAGE


def figure_path(run_dir: str, name: str) -> Path:
    return RunLayout(run_dir).figures / f"{name}.png"


def confusion_figure(metrics: Mapping[str, Any], path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (percent of each true class), with the "other" column."""
    conf = metrics["confusion"]
    counts = np.asarray(conf["counts"], dtype=float)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(100 * counts, rows, out=np.zeros_like(counts), where=rows > 0)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(conf["columns"]), 1.0 + 0.6 * len(conf["rows"])))
    sns.heatmap(pd.DataFrame(share, index=conf["rows"], columns=conf["columns"]), annot=counts.astype(int),
                fmt="d", cmap="Blues", vmin=0, vmax=100, cbar_kws={"label": "% of true class"}, ax=ax)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"UAR {metrics['uar']:.1f}  WAR {metrics['war']:.1f}")
    return _save(fig, path)


def modes_figure(results: Mapping[str, Mapping[str, Any]], keys: tuple[str, ...], path: str | Path,
                 title: str = "") -> Path:
    """One panel per benchmark: the metric keys, one bar per scoring mode (the same predictions)."""
    rows = [{"benchmark": bench, "metric": k, "mode": mode, "value": mm[k]}
            for bench, m in results.items() for mode, mm in m["modes"].items() for k in keys
            if mm.get(k) is not None]
    grid = sns.catplot(pd.DataFrame(rows), x="metric", y="value", hue="mode", col="benchmark", kind="bar",
                       height=3.0, aspect=1.0, legend_out=True)
    grid.set_axis_labels("", "%")
    grid.set(ylim=(0, 100))
    if title:
        grid.figure.suptitle(title, y=1.02)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    grid.figure.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(grid.figure)
    tmp.replace(path)
    return path


def emorealm_figure(metrics: Mapping[str, Any], path: str | Path, title: str = "") -> Path:
    """Accuracy per task (and the average) in every scoring mode, with the chance levels."""
    rows = []
    for mode, m in metrics["modes"].items():
        for task, entry in m["tasks"].items():
            if entry["accuracy"] is not None:
                rows.append({"task": task.replace("reasoning_", "").replace("_", "\n"), "mode": mode,
                             "accuracy": entry["accuracy"]})
        rows.append({"task": "average", "mode": mode, "accuracy": m[EMOREALM_AVERAGE]})
    fig, ax = plt.subplots(figsize=(9, 3.6))
    sns.barplot(pd.DataFrame(rows), x="task", y="accuracy", hue="mode", ax=ax)
    ax.axhline(25, color="gray", ls=":", lw=1)
    ax.axhline(50, color="gray", ls="--", lw=1)
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy (%)")
    ax.set_xlabel("")
    ax.set_title(title or "EmoReAlM (dotted: MCQ chance, dashed: Yes/No chance)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def stress_kind_figure(metrics: Mapping[str, Any], path: str | Path, title: str = "") -> Path:
    """Stress items by kind: the share answered Yes (right for relevant, a failure for the others)."""
    rows = [{"kind": kind, "mode": mode, "answered Yes (%)": v["yes_rate"]}
            for mode, m in metrics["modes"].items() for kind, v in (m.get("by_kind") or {}).items()
            if v.get("yes_rate") is not None]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    if rows:
        sns.barplot(pd.DataFrame(rows), x="kind", y="answered Yes (%)", hue="mode", ax=ax)
    ax.set_ylim(0, 100)
    ax.set_title(title or "stress questions answered Yes\n(right for relevant, wrong for spurious / hallucination)",
                 fontsize=10)
    return _save(fig, path)


def emer_figure(metrics: Mapping[str, Any], path: str | Path, title: str = "") -> Path:
    keys = EMER_CRITERIA
    df = pd.DataFrame([{"criterion": k, "score": metrics[k]} for k in keys if metrics.get(k) is not None])
    fig, ax = plt.subplots(figsize=(5, 3.2))
    if df.empty:  # no description was judged (e.g. every answer empty): say so instead of an empty plot
        ax.text(0.5, 0.5, f"no judged description\n({metrics.get('n_no_answer', 0)} empty answers, "
                f"{metrics.get('n_judge_failed', 0)} failed judgements)", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels(keys)
    else:
        sns.barplot(df, x="criterion", y="score", ax=ax, color="tab:blue")
    ax.set_ylim(1, 10)
    ax.set_title(title or f"EMER, judge {metrics.get('judge', {}).get('name')}")
    return _save(fig, path)


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
