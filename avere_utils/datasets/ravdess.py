"""RAVDESS: `Actor_XX/MM-VV-EE-II-SS-RR-AA.mp4` (or .wav for audio-only files).

Fields: MM modality (01 audio-video, 02 video-only, 03 audio-only), VV vocal channel (01 speech, 02 song),
EE emotion (01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust, 08 surprised),
II intensity, SS statement, RR repetition, AA actor.  The protocol keeps audio-video speech files and
drops calm, leaving 7 classes and 24 actors x 52 = 1,248 clips; the audio is the mp4's own track.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from avere_utils.datasets.common import LoadResult, load_side_cues, require_dir
from avere_utils.emotions import RAVDESS_LABELS
from avere_utils.records import Item

NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
FULL_SPEECH_SET = 1248  # 24 actors x 52 speech AV clips without calm
N_ACTORS = 24
CALM_POLICIES = ("drop", "merge")


def parse_name(stem: str) -> dict[str, str] | None:
    m = NAME.match(stem)
    if not m:
        return None
    keys = ("modality", "vocal_channel", "emotion", "intensity", "statement", "repetition", "actor")
    return dict(zip(keys, m.groups()))


def load_ravdess(root: str | os.PathLike, *, modality: str = "01", vocal_channel: str = "01",
                 calm_policy: str = "drop") -> LoadResult:
    """Filtered RAVDESS items.  calm_policy: "drop" (protocol) or "merge" (calm -> neutral)."""
    if calm_policy not in CALM_POLICIES:
        raise ValueError(f"calm_policy must be one of {CALM_POLICIES}, got {calm_policy!r}")
    root = Path(root)
    require_dir(root, "RAVDESS")
    actors = sorted(p for p in root.glob("Actor_*") if p.is_dir())
    res = LoadResult("ravdess", source=str(root),
                     expected_skips=("calm", "modality", "vocal_channel"))
    cues = load_side_cues(root)
    seen: set[str] = set()
    for f in sorted(p for a in actors for p in a.iterdir() if p.suffix.lower() in (".mp4", ".wav")):
        fields = parse_name(f.stem)
        if fields is None:
            res.skip("unparseable_name", f.name)
            continue
        if fields["modality"] != modality:
            res.skip(f"modality:{fields['modality']}", f.name)
            continue
        if fields["vocal_channel"] != vocal_channel:
            res.skip(f"vocal_channel:{fields['vocal_channel']}", f.name)
            continue
        label = RAVDESS_LABELS.get(fields["emotion"])
        if label is None:
            res.skip("bad_label", f"{f.name} (emotion {fields['emotion']})")
            continue
        if label == "calm":
            if calm_policy == "drop":
                res.skip("calm", f.name)
                continue
            label = "neutral"
        if f"Actor_{fields['actor']}" != f.parent.name:
            res.skip("actor_mismatch", f"{f.parent.name}/{f.name}")
            continue
        if f.stem in seen:
            res.skip("duplicate_id", f.name)
            continue
        seen.add(f.stem)
        is_video = f.suffix.lower() == ".mp4"
        res.items.append(Item(id=f.stem, dataset="ravdess", split="test",
                              video=str(f) if is_video else None, audio=None if is_video else str(f),
                              label=label, text={"cues": cues[f.stem]} if f.stem in cues else {}))
    if len(actors) == N_ACTORS and (modality, vocal_channel, calm_policy) == ("01", "01", "drop"):
        res.expected = FULL_SPEECH_SET
    else:
        res.notes.append(f"{len(actors)} actor folders; the full audio-video speech set (24 actors) has "
                         f"{FULL_SPEECH_SET} clips without calm")
    return res
