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
from typing import TYPE_CHECKING

from avere_utils.datasets.common import SIDE_CUES, LoadResult, load_side_cues, require_dir
from avere_utils.emotions import RAVDESS_LABELS
from avere_utils.records import Item

if TYPE_CHECKING:  # annotations only
    from avere_utils.datasets.params import DataPrepParams

NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
FULL_SPEECH_SET = 1248  # 24 actors x 52 speech AV clips without calm
N_ACTORS = 24
CALM_POLICIES = ("drop", "merge")
SELECTIONS = ("speech", "released")
ACTOR_DIR = re.compile(r"^Actor_\d\d$")
CLIP_SUFFIXES = (".mp4", ".wav")


def parse_name(stem: str) -> dict[str, str] | None:
    m = NAME.match(stem)
    if not m:
        return None
    keys = ("modality", "vocal_channel", "emotion", "intensity", "statement", "repetition", "actor")
    return dict(zip(keys, m.groups()))


def _unkept_reason(root: Path, f: Path) -> str | None:
    """Why a file under the RAVDESS root is not a candidate clip (None when it is one)."""
    rel = f.relative_to(root)
    if f.name.startswith("."):
        return "hidden_file"
    if len(rel.parts) == 1:
        return "file_at_root"
    if not ACTOR_DIR.match(rel.parts[0]):
        return "not_an_actor_folder"  # e.g. `actor_03/` (lower case) or `Actor_3/`
    if len(rel.parts) > 2:
        return "nested_folder"
    if f.suffix.lower() not in CLIP_SUFFIXES:
        return f"other_extension:{f.suffix.lower() or '(none)'}"
    return None


def load_ravdess(root: str | os.PathLike, *, modality: str = "01", vocal_channel: str = "01",
                 calm_policy: str = "drop", selection: str = "speech") -> LoadResult:
    """Filtered RAVDESS items.  calm_policy: "drop" (protocol) or "merge" (calm -> neutral).

    selection: "speech" keeps the vocal channel `vocal_channel` (the paper's text: speech only);
    "released" keeps every vocal channel, as the released loader does (song files count when present).
    Every file under the root that is not kept is counted with its reason, so nothing goes unseen.
    """
    if calm_policy not in CALM_POLICIES:
        raise ValueError(f"calm_policy must be one of {CALM_POLICIES}, got {calm_policy!r}")
    if selection not in SELECTIONS:
        raise ValueError(f"ravdess selection must be one of {SELECTIONS}, got {selection!r}")
    root = Path(root)
    require_dir(root, "RAVDESS")
    actors = sorted(p for p in root.iterdir() if p.is_dir() and ACTOR_DIR.match(p.name))
    res = LoadResult("ravdess", source=str(root),
                     expected_skips=("calm", "modality", "vocal_channel", "hidden_file"))
    cues = load_side_cues(root)
    seen: set[str] = set()
    candidates = []
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        if f.parent == root and f.name == SIDE_CUES:
            continue  # the synthetic world's own cue records, read above
        reason = _unkept_reason(root, f)
        if reason:
            res.skip(reason, str(f.relative_to(root)))
        else:
            candidates.append(f)
    for f in candidates:
        fields = parse_name(f.stem)
        if fields is None:
            res.skip("unparseable_name", f.name)
            continue
        if fields["modality"] != modality:
            res.skip(f"modality:{fields['modality']}", f.name)
            continue
        if selection == "speech" and fields["vocal_channel"] != vocal_channel:
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
    if len(actors) == N_ACTORS and (modality, vocal_channel, calm_policy, selection) == ("01", "01", "drop", "speech"):
        res.expected = FULL_SPEECH_SET
    else:
        res.notes.append(f"{len(actors)} actor folders, selection {selection!r}; the full audio-video speech set "
                         f"(24 actors) has {FULL_SPEECH_SET} clips without calm")
    return res


def from_params(P: DataPrepParams) -> LoadResult:
    """The benchmark's loader with notebook 01's parameters (benchmarks.BENCHMARKS)."""
    return load_ravdess(P.ravdess_root, modality=P.ravdess_modality, vocal_channel=P.ravdess_vocal_channel,
                        calm_policy=P.ravdess_calm_policy, selection=P.ravdess_selection)
