"""Figures and tables of notebook 02: what the pairs look like (seaborn, saved as PNG)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from avere_utils.media import MediaSettings
from avere_utils.pairs.cues import RESPONSE_KINDS
from avere_utils.pairs.inputs import is_noise, load_pair_media
from avere_utils.pairs.params import FAMILIES

KIND_NAMES = {"chosen": "chosen (grounded)", "rejected_vr": "rejected_vr (spurious)",
              "rejected_er": "rejected_er (hallucinated)"}


def pairs_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(list(rows))
    for k in RESPONSE_KINDS:
        df[f"{k}_words"] = df[k].str.split().str.len()
    return df


def plot_counts(df: pd.DataFrame, path: str | os.PathLike) -> plt.Figure:
    """Samples per family (coloured by split) and per modality."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [2, 1]})
    sns.countplot(data=df, y="family", hue="split", order=list(FAMILIES), ax=axes[0])
    axes[0].set_title("pairs per prompt family")
    sns.countplot(data=df, x="modality", order=["visual", "audio", "both"], color="C2", ax=axes[1])
    axes[1].set_title("pairs per targeted modality m")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def plot_lengths(df: pd.DataFrame, path: str | os.PathLike) -> plt.Figure:
    """Response length (words) per response kind: the three should overlap (no length shortcut)."""
    long = pd.concat([pd.DataFrame({"words": df[f"{k}_words"], "response": KIND_NAMES[k]}) for k in RESPONSE_KINDS])
    fig, ax = plt.subplots(figsize=(8, 3.4))
    sns.histplot(data=long, x="words", hue="response", discrete=True, element="step", fill=False, ax=ax)
    ax.set_title("response length per kind")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def sample_table(rows: list[dict[str, Any]], per_family: int = 1, seed: int = 0) -> pd.DataFrame:
    """A few samples side by side, with the clip's cue record (one per family by default)."""
    rng = np.random.default_rng(seed)
    out = []
    for family in FAMILIES:
        fam = [r for r in rows if r["family"] == family]
        for i in rng.choice(len(fam), size=min(per_family, len(fam)), replace=False) if fam else []:
            r = fam[int(i)]
            rec = json.loads(r["cue_record"]) if r["cue_record"] else {}
            out.append({"family": family, "prompt": r["prompt"],
                        **{KIND_NAMES[k]: r[k] for k in RESPONSE_KINDS},
                        "emotions (video/audio)": f"{rec.get('video_emotion')}/{rec.get('audio_emotion')}",
                        **{f"{m} {part}": ", ".join(rec.get(m, {}).get(part, []))
                           for m in ("visual", "audio") for part in ("present", "context", "absent")},
                        "rejected input": r["rejected_clip_id"] or "noise"})
    return pd.DataFrame(out)


def plot_pmp_inputs(rows: list[dict[str, Any]], path: str | os.PathLike,
                    settings: MediaSettings = MediaSettings(n_frames=4), cache: Any = None) -> plt.Figure:
    """One row per targeted modality: real vs PMP-rejected frame strip and waveform."""
    picks = [next((r for r in rows if r["modality"] == m), None) for m in ("visual", "audio", "both")]
    picks = [r for r in picks if r is not None]
    n = settings.n_frames
    fig, axes = plt.subplots(2 * len(picks), n + 1, figsize=(1.4 * n + 3.2, 2.6 * len(picks)),
                             gridspec_kw={"width_ratios": [1] * n + [2.2]}, squeeze=False)
    for i, row in enumerate(picks):
        real, rejected = load_pair_media(row, settings, cache)
        for j, (media, name) in enumerate(((real, f"real {row['clip_id']}"),
                                           (rejected, f"rejected ({_source(row)})"))):
            ax_row = axes[2 * i + j]
            for t in range(n):
                ax_row[t].imshow(media.frames[t])
                ax_row[t].axis("off")
            ax_row[0].set_title(f"m={row['modality']}: {name}", fontsize=8, loc="left")
            wav = media.audio if media.audio is not None else np.zeros(1)
            ax_row[n].plot(np.arange(len(wav)) / media.sample_rate, wav, lw=0.4)
            ax_row[n].set_ylim(-1, 1)
            ax_row[n].set_yticks([])
            ax_row[n].tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def _source(row: dict[str, Any]) -> str:
    parts = []
    for col, real in (("video_l", "video"), ("audio_l", "audio")):
        if row[col] != row[real]:
            parts.append(f"{col[:5]}: {'noise' if is_noise(row[col]) else Path(row[col]).stem}")
    return ", ".join(parts)
