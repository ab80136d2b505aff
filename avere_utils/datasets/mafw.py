"""Converter from MAFW-style label files to training-source items.

MAFW (10,045 clips, 11 single-emotion classes, bilingual descriptive text) ships split files under
`Train & Test Set/single/{no_caption,with_caption}/set_K/{train,test}.txt`.  From the public description
a line holds a clip name and its single label, optionally followed by the English description; the
separator (comma, tab or spaces) and the label form (English name or 1-based index in MAFW order) vary
between copies, so this reader accepts all of them.  Verify on your copy with `avere-kit check-data`:
every unreadable line is a counted skip, never silent.  Only the 7 basic emotions map to the kit's
classes; contempt, anxiety, helplessness and disappointment are counted skips.  MAFW has no per-modality
captions: the description becomes `captions["description"]`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from avere_utils.datasets.common import LoadResult, require_dir, require_file
from avere_utils.datasets.mer2023 import CLIP_EXTENSIONS
from avere_utils.emotions import EMOTIONS
from avere_utils.records import Item

MAFW_CLASSES: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise",
                                 "contempt", "anxiety", "helplessness", "disappointment")
SEPARATOR = re.compile(r"\s*[,\t]\s*|\s+")


def _label(token: str) -> str | None:
    t = token.strip().lower()
    if t.isdigit():
        i = int(t)
        return MAFW_CLASSES[i - 1] if 1 <= i <= len(MAFW_CLASSES) else None
    aliases = {"happy": "happiness", "sad": "sadness", "angry": "anger", "surprised": "surprise",
               "disgusted": "disgust", "fearful": "fear"}
    t = aliases.get(t, t)
    return t if t in MAFW_CLASSES else None


def load_mafw_labels(label_file: str | os.PathLike, clip_dir: str | os.PathLike, wav_dir: str | os.PathLike | None = None,
                     *, split: str = "train") -> LoadResult:
    label_file, clip_dir = Path(label_file), Path(clip_dir)
    require_file(label_file, "MAFW label file")
    require_dir(clip_dir, "MAFW clip")
    res = LoadResult("train_source", source=str(label_file), expected_skips=("not_a_basic_emotion",))
    seen: set[str] = set()
    for n, line in enumerate(label_file.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        parts = SEPARATOR.split(line.strip(), maxsplit=2)
        if len(parts) < 2:
            res.skip("unreadable_line", f"line {n}")
            continue
        if n == 1 and _label(parts[1]) is None and not parts[0][:1].isdigit():
            continue  # a header row
        name, label = Path(parts[0]).stem, _label(parts[1])
        if label is None:
            res.skip("bad_label", f"{name} ({parts[1]!r})")
            continue
        if label not in EMOTIONS:
            res.skip(f"not_a_basic_emotion:{label}", name)
            continue
        if name in seen:
            res.skip("duplicate_id", name)
            continue
        seen.add(name)
        clip = next((clip_dir / f"{name}{e}" for e in CLIP_EXTENSIONS if (clip_dir / f"{name}{e}").is_file()), None)
        if clip is None:
            res.skip("missing_video", name)
            continue
        wav = Path(wav_dir) / f"{name}.wav" if wav_dir else None
        description = parts[2].strip().strip('"') if len(parts) > 2 else ""
        res.items.append(Item(id=name, dataset="train_source", split=split, video=str(clip),
                              audio=str(wav) if wav and wav.is_file() else None, label=label,
                              text={"captions": {"visual": "", "audio": "", "description": description},
                                    "cues": None, "qa": []}))
    return res
