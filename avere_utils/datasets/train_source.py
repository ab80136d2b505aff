"""The training source for SFT and preference pairs: a JSONL manifest, one clip per line.

    {"id": "train_00001", "clip": "clips/train_00001.mp4", "wav": "wavs/train_00001.wav",
     "label": "anger",
     "captions": {"visual": "...", "audio": "...", "description": "..."},
     "cues": <cue record> | null,              # synthetic world only
     "qa": [{"task", "question", "choices", "answer", ["kind"]}, ...]}   # optional

`clip` / `wav` are relative to the manifest's folder (absolute paths are refused, as are paths that
climb out of it).  Real data (MAFW + MER2025 training clips) can be converted to this format with
`datasets.mafw.load_mafw_labels` + `write_train_source_manifest`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from avere_utils.datasets.common import DatasetError, LoadResult, require_file, resolve_inside
from avere_utils.datasets.emorealm import validate_qa
from avere_utils.emotions import EMOTIONS
from avere_utils.paths import atomic_write_text
from avere_utils.records import Item

CAPTION_KEYS = ("visual", "audio", "description")


def load_train_source(manifest_file: str | os.PathLike, *, require_audio: bool = True) -> LoadResult:
    manifest_file = Path(manifest_file)
    require_file(manifest_file, "training-source manifest")
    root = manifest_file.parent
    res = LoadResult("train_source", source=str(manifest_file))
    seen: set[str] = set()
    with open(manifest_file) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{manifest_file}:{n}: invalid JSON ({e})") from e
            if not isinstance(row, dict):
                res.skip("not_an_object", f"{manifest_file.name}:{n}")
                continue
            cid = str(row.get("id") or f"line{n}")
            if cid in seen:
                res.skip("duplicate_id", cid)
                continue
            seen.add(cid)
            if not isinstance(row.get("label"), str) or row["label"] not in EMOTIONS:
                res.skip("bad_label", f"{cid} ({row.get('label')!r})")
                continue
            captions = row.get("captions") or {}
            if not isinstance(captions, dict) or not any(str(captions.get(k) or "").strip() for k in CAPTION_KEYS):
                res.skip("missing_captions", cid)
                continue
            video = resolve_inside(root, str(row.get("clip") or ""))
            if video is None:
                res.skip("path_escapes_root", f"{cid} ({row.get('clip')!r})")
                continue
            if not video.is_file():
                res.skip("missing_video", cid)
                continue
            wav: Path | None = None
            if row.get("wav"):
                wav = resolve_inside(root, str(row["wav"]))
                if wav is None:
                    res.skip("path_escapes_root", f"{cid} ({row.get('wav')!r})")
                    continue
                if not wav.is_file():
                    wav = None
            if wav is None and require_audio:
                res.skip("missing_audio", cid)
                continue
            raw_qa = row.get("qa") or []
            raw_qa = raw_qa if isinstance(raw_qa, list) else [raw_qa]  # a lone object or a stray value
            qa = [q for q in raw_qa if validate_qa(q) is None]
            if len(qa) < len(raw_qa):
                res.skipped["bad_qa_entries"] += len(raw_qa) - len(qa)
            text: dict[str, Any] = {"captions": {k: str(captions.get(k) or "") for k in CAPTION_KEYS},
                                    "cues": row.get("cues"), "qa": qa}
            if "caption_noise" in row:
                text["caption_noise"] = row["caption_noise"]
            res.items.append(Item(id=cid, dataset="train_source", split="train", video=str(video),
                                  audio=str(wav) if wav else None, label=row["label"], text=text))
    return res


def write_train_source_manifest(path: str | os.PathLike, items: list[Item]) -> Path:
    """Write items (e.g. converted from MAFW) as a training-source manifest, paths relative to it."""
    path = Path(path)
    lines = []
    for it in items:
        def rel(p: str | None) -> str | None:
            return os.path.relpath(p, path.parent) if p else None
        lines.append(json.dumps({"id": it.id, "clip": rel(it.video), "wav": rel(it.audio), "label": it.label,
                                 "captions": it.text.get("captions", {}), "cues": it.text.get("cues"),
                                 "qa": it.text.get("qa", [])}, ensure_ascii=False))
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
