"""Export to / import from the JSON format of the paper's released code.

A released sample is an object with `prompt` (starting with "<video>\\n<audio>\\n"), `chosen`, `rejected`
(our rejected_vr), `rejected_2` (our rejected_er), `video`, `audio`, `video_l`, `audio_l`, the paths
relative to one media folder (`noise:<seed>` is kept as is).  We also write our other columns as extra
keys (the released loader ignores unknown keys), so that export -> import gives back the same rows; a file
from elsewhere without them still imports, with the missing metadata inferred and said so in the log.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from avere_utils.pairs.inputs import is_noise
from avere_utils.pairs.params import FAMILY_MODALITY
from avere_utils.pairs.store import COLUMNS
from avere_utils.paths import atomic_write_text

log = logging.getLogger(__name__)

MEDIA_TAGS = "<video>\n<audio>\n"
RELEASED_KEYS: tuple[str, ...] = ("prompt", "chosen", "rejected", "rejected_2", "video", "audio", "video_l", "audio_l")
PATH_KEYS: tuple[str, ...] = ("video", "audio", "video_l", "audio_l", "rejected_clip_video", "rejected_clip_audio")
_RENAMED = {"rejected_vr": "rejected", "rejected_er": "rejected_2"}
_DEFAULT_FAMILY = {"visual": "visual_reasoning", "audio": "audio_reasoning", "both": "emotion_id"}


def _relative(path: str, media_dir: Path, where: str) -> str:
    if not path or is_noise(path):
        return path
    try:
        return Path(os.path.abspath(path)).relative_to(media_dir).as_posix()
    except ValueError:
        raise ValueError(f"{where}: {path} is not inside the media folder {media_dir} "
                         "(the released_media_dir param)") from None


def _absolute(path: str, media_dir: Path, where: str) -> str:
    if not path or is_noise(path):
        return path
    rel = PurePosixPath(path)
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"{where}: path {path!r} must be relative to the media folder and stay inside it")
    return str(media_dir / rel)


def to_released(rows: Iterable[dict[str, Any]], media_dir: str | os.PathLike) -> list[dict[str, Any]]:
    media_dir = Path(os.path.abspath(media_dir))
    out = []
    for row in rows:
        where = f"pair {row.get('id')!r}"
        obj: dict[str, Any] = {}
        for col in COLUMNS:
            if col not in row:
                continue
            value = row[col]
            if col == "prompt":
                value = MEDIA_TAGS + value
            elif col in PATH_KEYS:
                value = _relative(value, media_dir, where)
            obj[_RENAMED.get(col, col)] = value
        out.append(obj)
    return out


def _infer_modality(obj: dict[str, Any]) -> str:
    video_swapped = obj["video_l"] != obj["video"]
    audio_swapped = obj["audio_l"] != obj["audio"]
    return "both" if video_swapped and audio_swapped else "audio" if audio_swapped else "visual"


def from_released(objs: list[dict[str, Any]], media_dir: str | os.PathLike, source: str = "released JSON"
                  ) -> list[dict[str, str]]:
    media_dir = Path(os.path.abspath(media_dir))
    rows = []
    inferred = 0
    for i, obj in enumerate(objs):
        where = f"{source}[{i}]"
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: expected an object, got {type(obj).__name__}")
        missing = [k for k in RELEASED_KEYS if k not in obj]
        if missing:
            raise ValueError(f"{where}: missing keys {missing}")
        if not str(obj["prompt"]).startswith(MEDIA_TAGS):
            raise ValueError(f"{where}: prompt does not start with {MEDIA_TAGS!r}")
        row = {col: obj.get(_RENAMED.get(col, col), "") for col in COLUMNS}
        row["prompt"] = obj["prompt"][len(MEDIA_TAGS):]
        for col in PATH_KEYS:
            row[col] = _absolute(str(row[col] or ""), media_dir, where)
        if not obj.get("modality") or not obj.get("family") or not obj.get("id"):
            inferred += 1
            row["modality"] = obj.get("modality") or _infer_modality(obj)
            row["family"] = obj.get("family") or _DEFAULT_FAMILY[row["modality"]]
            row["id"] = obj.get("id") or f"released-{i}"
        row["clip_id"] = row["clip_id"] or PurePosixPath(obj["video"]).stem
        row["split"] = row["split"] or "train"
        if row["family"] not in FAMILY_MODALITY:
            raise ValueError(f"{where}: unknown family {row['family']!r}")
        rows.append({c: "" if row[c] is None else str(row[c]) for c in COLUMNS})
    if inferred:
        log.info("%s: %d samples had no family/modality/id; inferred from which inputs are swapped", source, inferred)
    return rows


def export_released_json(rows: Iterable[dict[str, Any]], path: str | os.PathLike, media_dir: str | os.PathLike) -> int:
    objs = to_released(rows, media_dir)
    atomic_write_text(path, json.dumps(objs, indent=1, ensure_ascii=False))
    return len(objs)


def import_released_json(path: str | os.PathLike, media_dir: str | os.PathLike) -> list[dict[str, str]]:
    path = Path(path)
    try:
        objs = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: released JSON not found") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(objs, list):
        raise ValueError(f"{path}: expected a JSON array of samples, got {type(objs).__name__}")
    return from_released(objs, media_dir, source=str(path))


__all__ = ["MEDIA_TAGS", "RELEASED_KEYS", "to_released", "from_released",
           "export_released_json", "import_released_json"]
