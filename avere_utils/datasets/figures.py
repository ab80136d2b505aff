"""Figures and small tables for notebook 01: what the prepared data looks like."""
from __future__ import annotations

import textwrap
from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from avere_utils.datasets.common import LoadResult
from avere_utils.emotions import EMOTIONS
from avere_utils.media import MediaSettings, load_media
from avere_utils.records import Item, Media


def class_frame(results: Mapping[str, LoadResult]) -> pd.DataFrame:
    rows = [{"dataset": name, "label": label, "count": n}
            for name, res in results.items() for label, n in res.class_counts().items()]
    return pd.DataFrame(rows, columns=["dataset", "label", "count"])


def plot_class_distributions(results: Mapping[str, LoadResult]) -> plt.Figure:
    df = class_frame(results)
    g = sns.catplot(data=df, x="label", y="count", col="dataset", kind="bar", col_wrap=3, height=2.6, aspect=1.3,
                    order=list(EMOTIONS), sharey=False, color="tab:blue")
    for ax in g.axes.flat:  # every panel gets its own class names (col_wrap hides the inner ones)
        ax.tick_params(labelbottom=True)
        ax.set_xticks(range(len(EMOTIONS)), list(EMOTIONS), rotation=45, ha="right", fontsize=8)
        ax.set_xlabel("")
    g.set_titles("{col_name}")
    g.tight_layout()
    g.figure.suptitle("Items per class and dataset", y=1.02)
    return g.figure


def plot_frame_grid(items: list[Item], settings: MediaSettings = MediaSettings(), cache=None) -> plt.Figure:
    """One row per clip: its sampled frames, as the model sees them (settings.frame_size)."""
    fig, axes = plt.subplots(len(items), settings.n_frames, figsize=(1.2 * settings.n_frames, 1.35 * len(items)),
                             squeeze=False)
    for r, it in enumerate(items):
        media = load_media(it.video, it.audio, settings, cache)
        for c in range(settings.n_frames):
            ax = axes[r, c]
            ax.imshow(media.frames[c])
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"{it.dataset}\n{it.label}", fontsize=7)
    fig.suptitle(f"{settings.n_frames} frames at linspace(0, n-1, {settings.n_frames}), {settings.frame_size}px")
    fig.tight_layout()
    return fig


def plot_waveform_and_spectrogram(media: Media, title: str = "") -> plt.Figure:
    audio, sr = media.audio, media.sample_rate
    fig, (a0, a1) = plt.subplots(2, 1, figsize=(8, 4), sharex=True)
    t = np.arange(len(audio)) / sr
    a0.plot(t, audio, lw=0.4)
    a0.set_ylabel("amplitude")
    a0.set_title(textwrap.shorten(title, 110))
    a1.specgram(audio + 1e-7, NFFT=512, Fs=sr, noverlap=384, cmap="magma")
    a1.set_ylim(0, 4000)
    a1.set_ylabel("Hz")
    a1.set_xlabel("seconds")
    fig.tight_layout()
    return fig


def cue_table(items: list[Item]) -> pd.DataFrame:
    """Per clip: shown emotion per modality and its present / absent / context cues."""
    rows = []
    for it in items:
        cues = it.text.get("cues")
        if not cues:
            continue
        for m in ("visual", "audio"):
            rows.append({"clip": it.id, "modality": m,
                         "emotion": cues["video_emotion" if m == "visual" else "audio_emotion"],
                         "present": "; ".join(cues[m]["present"]), "absent": "; ".join(cues[m]["absent"]),
                         "context": "; ".join(cues[m]["context"])})
    return pd.DataFrame(rows)


def emorealm_table(items: list[Item], per_task: int = 2) -> pd.DataFrame:
    rows, seen = [], {}
    for it in items:
        t = it.text["task"]
        if seen.get(t, 0) >= per_task:
            continue
        seen[t] = seen.get(t, 0) + 1
        rows.append({"task": t, "question": it.text["question"], "choices": " ".join(it.text["choices"]),
                     "answer": it.text["answer"], "kind": it.text.get("kind", "")})
    return pd.DataFrame(rows)


def caption_table(items: list[Item], n: int = 4) -> pd.DataFrame:
    """Training-source captions next to what the clip really shows."""
    rows = []
    for it in items[:n]:
        cues = it.text.get("cues") or {}
        rows.append({"clip": it.id, "label": it.label, "visual caption": it.text["captions"]["visual"],
                     "visual present": "; ".join(cues.get("visual", {}).get("present", [])),
                     "audio caption": it.text["captions"]["audio"],
                     "audio present": "; ".join(cues.get("audio", {}).get("present", []))})
    return pd.DataFrame(rows)


def knob_table(results: Mapping[str, LoadResult]) -> pd.DataFrame:
    """Measured strength of the world's knobs per dataset: how often the context follows the emotion
    (spurious correlation), how often the audio voices another emotion, and (training source) how often
    captions cite an absent typical cue (text prior) or a context cue."""
    from avere_utils.emotions import SPURIOUS_AMBIENCE, SPURIOUS_BACKGROUND, find_cues
    rows = []
    for name, res in results.items():
        recs = [(it, it.text["cues"]) for it in res.items if it.text.get("cues")]
        if not recs:
            continue
        row = {"dataset": name, "clips": len(recs),
               "background follows emotion": np.mean([SPURIOUS_BACKGROUND[c["video_emotion"]] in c["visual"]["context"]
                                                      for _, c in recs]),
               "ambience follows emotion": np.mean([SPURIOUS_AMBIENCE[c["audio_emotion"]] in c["audio"]["context"]
                                                    for _, c in recs]),
               "audio voices another emotion": np.mean([c["video_emotion"] != c["audio_emotion"] for _, c in recs])}
        caps = [(it.text["captions"], c) for it, c in recs if it.text.get("captions")]
        if caps:
            def share(kind: str, caps: list = caps) -> float:
                return float(np.mean([bool(set(find_cues(k[m])) & set(c[m][kind])) for k, c in caps
                                      for m in ("visual", "audio")]))
            row["captions citing an absent cue"] = share("absent")
            row["captions citing context"] = share("context")
        rows.append(row)
    return pd.DataFrame(rows).round(3)
