"""Figures of notebook 03: SFT curves, held-out recognition and cue citations of the reference."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns


def plot_sft_curves(history: Sequence[dict[str, Any]], path: str | Path, window: int = 20) -> pd.DataFrame:
    """Loss per step (all tasks, and per task) smoothed with a rolling mean; saved as PNG."""
    df = pd.DataFrame(history)
    cols = [c for c in df.columns if c.startswith("loss")]
    long = df.melt(id_vars="step", value_vars=cols, var_name="series", value_name="nll").dropna()
    long["smoothed"] = long.groupby("series")["nll"].transform(lambda s: s.rolling(window, min_periods=1).mean())
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.lineplot(data=long, x="step", y="smoothed", hue="series", ax=ax)
    ax.set(ylabel=f"token NLL (rolling mean, {window} steps)", title="Reference SFT warm start")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return df


def plot_heldout(rec: pd.DataFrame, summary: dict[str, float], path: str | Path) -> None:
    """Left: confusion of the closed-set predictions.  Right: share of detailed answers citing each cue kind."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    conf = pd.crosstab(rec.label, rec.pred, normalize="index")
    sns.heatmap(conf, annot=True, fmt=".2f", cmap="Blues", ax=axes[0], cbar=False)
    axes[0].set(title=f"recognition: accuracy {summary['accuracy']:.2f} (chance {summary['chance']:.2f})")
    kinds = {"label follows\nmisleading background": "follows_background",
             "cites present\n(grounded)": "cites_present", "cites absent\n(hallucination)": "cites_absent",
             "cites context\n(spurious)": "cites_context"}
    bars = pd.DataFrame({"behaviour": list(kinds), "share": [summary.get(v, float("nan")) for v in kinds.values()]})
    sns.barplot(data=bars, x="behaviour", y="share", ax=axes[1])
    axes[1].axhline(summary["chance"], ls="--", c="gray", lw=1)
    axes[1].set(ylim=(0, 1), xlabel="", title="spurious context and text prior (dashed: 1/7)")
    axes[1].tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def plot_presence_probe(rows: pd.DataFrame, summary: dict[str, dict[str, float]], path: str | Path,
                        bar: float | None = None,
                        title: str = '"Does the clip show <typical cue of the shown emotion>?" on held-out clips (scoring mode)'
                        ) -> pd.DataFrame:
    """The cue-presence probe: per modality and cue part, how often the model says a typical cue is
    there when it is (left of each pair) and when it is not; titles carry the balanced accuracy."""
    from avere_utils.emotions import AUDIO_CUES, VISUAL_CUES

    part_of = {c: part for table in (VISUAL_CUES, AUDIO_CUES) for parts in table.values() for part, c in parts.items()}
    df = rows.assign(part=rows.cue.map(part_of), truth=rows.present.map({True: "cue present", False: "cue absent"}))
    table = df.groupby(["modality", "part", "truth"], sort=False).said_yes.mean().rename("yes_rate").reset_index()
    mods = [m for m in ("visual", "audio") if m in summary]
    fig, axes = plt.subplots(1, len(mods), figsize=(5.5 * len(mods), 4), squeeze=False)
    for ax, m in zip(axes[0], mods):
        sns.barplot(data=table[table.modality == m], x="part", y="yes_rate", hue="truth",
                    hue_order=["cue present", "cue absent"], palette=["tab:green", "tab:red"], ax=ax)
        title = f"{m}: balanced accuracy {summary[m]['balanced_accuracy']:.2f}"
        if bar is not None:
            title += f" (bar {bar:.2f})"
        ax.set(ylim=(0, 1), xlabel="", ylabel='share answered "Yes"', title=title)
        ax.legend(title="", loc="upper right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return table
