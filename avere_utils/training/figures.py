"""Training curves of one variant from its step log: per-term losses, reward margins, rewards, accuracies,
and the margins against each rejection kind with their accuracies (`plot_margins`)."""
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
    return _save(fig, title, out_png)


# What each margin compares, for legends: the chosen response's reward minus ...
MARGIN_LABELS = {
    "margins/vr": "vs the spurious rejection (vr)",
    "margins/er": "vs the hallucinated rejection (er)",
    "margins/rejected": "vs its one rejection (vr or er, alternating)",
    "margins/pmp": "PMP: real vs swapped-modality input",
}


def margin_keys(df: pd.DataFrame) -> list[str]:
    """The margins this variant logged: vr and er for two rejections, `rejected` for one, pmp with PMP."""
    keys = [k for k in ("margins/vr", "margins/er") if k in df and df[k].notna().any()]
    if not keys and "margins/rejected" in df and df["margins/rejected"].notna().any():
        keys = ["margins/rejected"]
    if "margins/pmp" in df and df["margins/pmp"].notna().any():
        keys.append("margins/pmp")
    return keys


def plot_margins(log_file: str | Path, out_png: str | Path, title: str = "", smooth: int = 5):
    """Left: the reward margin against each rejection kind and the PMP margin over steps (rolling mean
    of `smooth` steps, raw values faint).  Right: the share of pairs whose margin is positive.  A margin
    that stays at 0 means the policy cannot tell that pair apart (e.g. a hallucinated cue from a present one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = log_frame(log_file).sort_values("step")
    keys = margin_keys(df)
    if not keys:
        raise ValueError(f"{log_file}: no margins/* column with values")
    fig, (ax_m, ax_a) = plt.subplots(1, 2, figsize=(11, 3.8))
    colours = dict(zip(MARGIN_LABELS, ("tab:orange", "tab:green", "tab:olive", "tab:red")))
    for key in keys:
        c, label = colours[key], MARGIN_LABELS[key]
        ax_m.plot(df["step"], df[key], color=c, alpha=0.2, lw=0.8)
        ax_m.plot(df["step"], df[key].rolling(smooth, min_periods=1).mean(), color=c, lw=1.8, label=label)
        acc = key.replace("margins/", "accuracies/")
        if acc in df and df[acc].notna().any():
            ax_a.plot(df["step"], df[acc].rolling(smooth, min_periods=1).mean(), color=c, lw=1.8, label=label)
    ax_m.axhline(0.0, color="grey", lw=0.8, ls=":")
    ax_m.set_title("reward margin (chosen minus ...)")
    ax_a.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax_a.set_ylim(-0.02, 1.02)
    ax_a.set_title("share of pairs with margin > 0")
    for ax, where in ((ax_m, "upper left"), (ax_a, "lower right")):
        ax.set_xlabel("optimizer step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc=where)
    return _save(fig, title, out_png)


def _save(fig, title: str, out_png: str | Path) -> Path:
    fig.suptitle(title)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return out_png
