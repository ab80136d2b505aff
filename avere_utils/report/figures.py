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
    # fixed colours: a variant that lacks a column must not shift the colours of the others
    variants = list(dict.fromkeys(logs["variant"]))
    palette = variant_palette(variants)
    for ax, col in zip(axes.flat, cols):
        sns.lineplot(data=logs.dropna(subset=[col]), x="step", y=col, hue="variant", hue_order=variants,
                     palette=palette, ax=ax, legend=ax is axes.flat[0])
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


# What each logged margin compares (the chosen response's reward minus ...), for panel titles.
MARGINS = {
    "margins/vr": "chosen − spurious rejection (vr)",
    "margins/er": "chosen − hallucinated rejection (er)",
    "margins/pmp": "PMP: real − swapped-modality input",
    "margins/response": "response margin (all rejections, before TPD)",
}


def variant_palette(variants: Sequence[str]) -> dict[str, tuple]:
    """One colour per variant, the same in every panel and figure of a report."""
    colours = sns.color_palette("tab10", n_colors=max(len(variants), 1))
    return dict(zip(variants, colours))


def margin_curves(logs: pd.DataFrame, path: Path, variants: Sequence[str] | None = None,
                  smooth: int = 5) -> Path | None:
    """The margin against each rejection kind and the PMP margin over steps, one line per variant
    (rolling mean of `smooth` steps).  A margin a variant does not train (e.g. Naive-DPO has one
    rejection, no PMP) is named in its panel instead of silently missing."""
    if logs.empty or "step" not in logs:
        return None
    keys = [k for k in MARGINS if k in logs and logs[k].notna().any()]
    if not keys:
        return None
    variants = [v for v in (variants or logs["variant"].unique()) if v in set(logs["variant"])]
    palette = variant_palette(variants)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.4 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        absent = []
        for v in variants:
            d = logs[logs["variant"] == v].dropna(subset=[key]).sort_values("step")
            if d.empty:
                absent.append(v)
                continue
            ax.plot(d["step"], d[key], color=palette[v], alpha=0.18, lw=0.8)
            ax.plot(d["step"], d[key].rolling(smooth, min_periods=1).mean(), color=palette[v], lw=1.6, label=v)
        ax.axhline(0.0, color="grey", lw=0.8, ls=":")
        ax.set_title(MARGINS[key] + ("\nnot trained by: " + ", ".join(absent) if absent else ""), fontsize=9)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(key)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Reward margins per variant (> 0: the chosen response is preferred); "
                 f"lines = {smooth}-step mean", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def story_yes_rates(table: pd.DataFrame, path: Path, variants: Sequence[str], mode: str | None,
                    kinds: Sequence[tuple[str, str]] = (("relevant", "Yes relevant"), ("spurious", "Yes spurious"),
                                                        ("hallucination", "Yes halluc"))) -> Path | None:
    """EmoReAlM stress items answered Yes, per kind and variant (bars: mean over runs; error bars: sd
    over training seeds where there are several).  Relevant should stay high, the other two fall."""
    rows = table[table["quantity"].isin([q for _, q in kinds])]
    variants = [v for v in variants if v in set(rows["variant"])]
    if rows.empty or not variants:
        return None
    palette = variant_palette(variants)
    width = 0.8 / len(variants)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.1 * len(variants) * len(kinds) * 0.5 + 3), 4.2))
    for j, v in enumerate(variants):
        xs, means, sds, ns = [], [], [], []
        for i, (_, q) in enumerate(kinds):
            r = rows[(rows["variant"] == v) & (rows["quantity"] == q)]
            if r.empty:
                continue
            xs.append(i - 0.4 + width * (j + 0.5))
            means.append(float(r["mean"].iloc[0]))
            sd = float(r["sd"].iloc[0])
            sds.append(sd if sd == sd else 0.0)  # NaN (one run): no error bar
            ns.append(int(r["n"].iloc[0]))
        label = f"{v} (n={max(ns)})" if ns else v
        ax.bar(xs, means, width=width * 0.95, color=palette[v], label=label,
               yerr=sds, capsize=2.5, error_kw={"lw": 0.9})
    ax.set_xticks(range(len(kinds)))
    ax.set_xticklabels([f"{k}\n(right answer: {'Yes' if k == 'relevant' else 'No'})" for k, _ in kinds])
    ax.set_ylabel("answered Yes (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"EmoReAlM stress items answered Yes (mode {mode}); error bars: sd over training seeds",
                 fontsize=10)
    ax.legend(fontsize=7, ncol=min(4, len(variants)), loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def matched_yes_rates(story_table: pd.DataFrame, disc_table: pd.DataFrame, path: Path, variants: Sequence[str]
                      ) -> Path | None:
    """Per variant, the spurious and hallucination Yes-rates as measured (light) and with the relevant
    Yes-rate held at the reference's (dark; report/discrimination.py): the gap between the two bars is the
    part of a fall that comes from saying No more often, to relevant cues too."""
    panels = (("spurious", "Yes spurious", "matched Yes spurious"),
              ("hallucination", "Yes halluc", "matched Yes halluc"))

    def cell(table: pd.DataFrame, v: str, q: str) -> tuple[float, float] | None:
        r = table[(table["variant"] == v) & (table["quantity"] == q)]
        if r.empty:
            return None
        sd = float(r["sd"].iloc[0])
        return float(r["mean"].iloc[0]), sd if sd == sd else 0.0

    variants = [v for v in variants if cell(disc_table, v, panels[0][2]) is not None]
    if not variants:
        return None
    palette = variant_palette(variants)
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 1.2 * len(variants) + 2), 4.2), sharey=True)
    for ax, (kind, raw_q, matched_q) in zip(axes, panels):
        for i, v in enumerate(variants):
            for dx, (table, q, alpha) in zip((-0.2, 0.2), ((story_table, raw_q, 0.35), (disc_table, matched_q, 1.0))):
                c = cell(table, v, q)
                if c is not None:
                    ax.bar(i + dx, c[0], width=0.38, color=palette[v], alpha=alpha, yerr=c[1], capsize=2,
                           error_kw={"lw": 0.8})
        ax.set_xticks(range(len(variants)))
        ax.set_xticklabels(variants, rotation=35, ha="right", fontsize=8)
        ax.set_title(f"{kind} stress items", fontsize=10)
        ax.set_ylim(0, 105)
    axes[0].set_ylabel("answered Yes (%)")
    fig.suptitle("Light: as measured. Dark: with the relevant Yes-rate held at the reference's (error bars: sd "
                 "over seeds).\nReference's bar down to a dark bar: discrimination learnt; dark down to light: "
                 "saying No more often, to relevant cues too", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _cell(table: pd.DataFrame, v: str, q: str) -> tuple[float, float] | None:
    r = table[(table["variant"] == v) & (table["quantity"] == q)]
    if r.empty:
        return None
    sd = float(r["sd"].iloc[0])
    return float(r["mean"].iloc[0]), sd if sd == sd else 0.0


STORY_PANELS: tuple[tuple[str, str, tuple[float, float]], ...] = (
    ("AUC rel>hal", "AUC relevant > hallucination (%)", (40.0, 100.0)),
    ("AUC rel>spur", "AUC relevant > spurious (%)", (40.0, 100.0)),
    ("flip rel+hal", "answers that flip, real -> counterfactual media (%)", (0.0, 100.0)))


def story_figure(table: pd.DataFrame, path: Path, variants: Sequence[str], reference: str = "reference"
                 ) -> Path | None:
    """The story in one figure: per variant, the two AUCs (does it tell relevant cues from the others? 50 =
    no) and the share of stress answers that flip when the asked cue is toggled in the media (does the answer
    come from the media?); bars = mean over training seeds, error bars = sd, dashed line = the reference."""
    panels = [p for p in STORY_PANELS if any(_cell(table, v, p[0]) for v in variants)]
    shown = [v for v in variants if any(_cell(table, v, q) for q, *_ in panels)]
    if not panels or not shown:
        return None
    palette = variant_palette(shown)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 0.6, 3.6), squeeze=False)
    for ax, (q, title, (lo, hi)) in zip(axes.flat, panels):
        for i, v in enumerate(shown):
            c = _cell(table, v, q)
            if c is not None:
                ax.bar(i, c[0] - lo, bottom=lo, color=palette[v], yerr=c[1], capsize=2, error_kw={"lw": 0.8})
        ref = _cell(table, reference, q)
        if ref is not None:
            ax.axhline(ref[0], color="black", ls="--", lw=0.8)
        ax.set_ylim(lo, hi)
        ax.set_xticks(range(len(shown)))
        ax.set_xticklabels(shown, rotation=40, ha="right", fontsize=7)
        ax.set_title(title, fontsize=9)
    fig.suptitle("Does a variant discriminate, and does its answer come from the media? (dashed: reference; "
                 "error bars: sd over training seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def table2_bars(table: pd.DataFrame, path: Path, title: str, score_columns: Sequence[str]) -> Path | None:
    """Table 2 as bars on two axes that fit their scales: the recognition columns in percent (0-100) and
    the EMER judge's 1-10 scores."""
    parts = [(c, lim, label) for c, lim, label in
             (([c for c in table.columns if c not in score_columns], (0, 100), "percent"),
              ([c for c in table.columns if c in score_columns], (1, 10), "EMER judge score (1-10)"))
             if c and table[c].notna().any().any()]
    if not parts:
        return None
    variants = list(table.index)
    palette = variant_palette(variants)
    fig, axes = plt.subplots(1, len(parts), figsize=(max(6.0, 1.5 * table.shape[1]), 4.0), squeeze=False,
                             gridspec_kw={"width_ratios": [len(c) for c, *_ in parts]})
    for ax, (cols, (lo, hi), label) in zip(axes.flat, parts):
        w = 0.8 / max(len(variants), 1)
        for j, v in enumerate(variants):
            vals = [table.at[v, c] for c in cols]
            xs = [i - 0.4 + w * (j + 0.5) for i in range(len(cols))]
            ax.bar(xs, [0 if pd.isna(x) else x - lo for x in vals], bottom=lo, width=w * 0.95, color=palette[v],
                   label=v)
        ax.set_xticks(range(len(cols)))
        ax.set_xticklabels(cols, fontsize=8)
        ax.set_ylim(lo, hi)
        ax.set_ylabel(label)
    axes.flat[0].legend(fontsize=6, ncol=3, loc="lower left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def png_grid(rows: Sequence[Sequence[Path | None]], path: Path, row_labels: Sequence[str],
             col_labels: Sequence[str], cell_inches: float = 2.2, dpi: int = 90) -> Path | None:
    """Existing PNG figures (e.g. one confusion matrix per benchmark and variant) as one grid figure."""
    if not any(p is not None and Path(p).is_file() for r in rows for p in r):
        return None
    nr, nc = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(nr, nc, figsize=(cell_inches * nc, cell_inches * nr), squeeze=False)
    for i, r in enumerate(rows):
        for j in range(nc):
            ax = axes[i][j]
            ax.axis("off")
            p = r[j] if j < len(r) else None
            if p is not None and Path(p).is_file():
                ax.imshow(plt.imread(str(p)))
            if i == 0 and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=8)
            if j == 0 and i < len(row_labels):
                ax.text(-0.05, 0.5, row_labels[i], transform=ax.transAxes, rotation=90, ha="right", va="center",
                        fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
