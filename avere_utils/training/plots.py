"""Training curves of one variant from its step log: per-term losses, reward margins, rewards, accuracies."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from avere_utils.training.step_log import read_log

PANELS = {
    "loss per term": ["loss", "loss_y", "loss_av"],
    "reward margins": ["margins/response", "margins/vr", "margins/er", "margins/rejected", "margins/pmp"],
    "rewards (beta * log-ratio)": ["rewards/chosen", "rewards/vr", "rewards/er", "rewards/rejected",
                                   "rewards/chosen_pmp"],
    "accuracies (margin > 0)": ["accuracies/response", "accuracies/vr", "accuracies/er", "accuracies/pmp"],
}


def log_frame(log_file: str | Path) -> pd.DataFrame:
    rows = read_log(log_file)
    if not rows:
        raise FileNotFoundError(f"{log_file}: no training log (or an empty one)")
    return pd.DataFrame(rows)


def long_frame(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (step, panel, metric) with a value; metrics that never apply are left out."""
    parts = []
    for panel, cols in PANELS.items():
        present = [c for c in cols if c in df and df[c].notna().any()]
        if present:
            m = df.melt(id_vars=["step"], value_vars=present, var_name="metric", value_name="value")
            m["panel"] = panel
            parts.append(m.dropna(subset=["value"]))
    return pd.concat(parts, ignore_index=True)


def plot_training_curves(log_file: str | Path, out_png: str | Path, title: str = "", smooth: int = 5):
    """Four panels over optimizer steps (a rolling mean of `smooth` steps; raw values faint behind)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = log_frame(log_file)
    long = long_frame(df)
    panels = [p for p in PANELS if p in set(long["panel"])]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6))
    for ax, panel in zip(axes if len(panels) > 1 else [axes], panels):
        d = long[long["panel"] == panel].copy()
        d["smoothed"] = d.groupby("metric")["value"].transform(lambda s: s.rolling(smooth, min_periods=1).mean())
        sns.lineplot(data=d, x="step", y="value", hue="metric", ax=ax, alpha=0.25, legend=False)
        sns.lineplot(data=d, x="step", y="smoothed", hue="metric", ax=ax)
        ax.set_title(panel)
        ax.set_ylabel("")
        if panel != "loss per term":
            ax.axhline(0.0 if "accur" not in panel else 0.5, color="grey", lw=0.8, ls=":")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
