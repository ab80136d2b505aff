"""EmoReAlM: one JSON array (`emorealm_v1.json`); each item has id, task, video (relative to the DFEW
24 fps clip folder), question, choices (lettered "(A) ..."), answer (a letter).  The 16 kHz wav is at the
same relative path under the DFEW wav folder with `.wav`.

Every item is validated; a bad one is a counted skip naming the reason (or an error with strict=True):
unknown task key, empty question, unlettered or out-of-order choices, an answer letter not among the
choices, a video path that is absolute or climbs out of the clip folder, a missing clip or wav.
"""
from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avere_utils.datasets.common import (
    DatasetError,
    LoadResult,
    load_side_cues,
    require_dir,
    require_file,
    resolve_inside,
)
from avere_utils.datasets.dfew import VIDEO_SUBDIR, WAV_SUBDIR
from avere_utils.protocol import EMOREALM_TASKS, STRESS_KINDS, YES_NO_TASKS
from avere_utils.records import Item

if TYPE_CHECKING:  # annotations only
    from avere_utils.datasets.params import DataPrepParams

log = logging.getLogger(__name__)

TASKS = EMOREALM_TASKS
CHOICE = re.compile(r"^\(([A-Z])\)\s*\S")


def validate_qa(item: Any) -> str | None:
    """None when the question item is well formed, else the reason (a short snake_case key)."""
    if not isinstance(item, dict):
        return "not_an_object"
    if not isinstance(item.get("task"), str) or item["task"] not in TASKS:
        return "unknown_task"
    question = item.get("question")
    if question is not None and not isinstance(question, str):
        return "question_not_text"
    if not (question or "").strip():
        return "empty_question"
    choices = item.get("choices")
    if not isinstance(choices, list) or len(choices) < 2:
        return "too_few_choices"
    letters = []
    for c in choices:
        m = CHOICE.match(c) if isinstance(c, str) else None
        if not m:
            return "unlettered_choice"
        letters.append(m.group(1))
    if letters != [chr(65 + i) for i in range(len(letters))]:
        return "choice_letters_out_of_order"
    answer = item.get("answer")
    if not isinstance(answer, str):
        return "answer_not_text"
    if answer.strip().strip("()") not in letters:
        return "answer_not_in_choices"
    if item["task"] in YES_NO_TASKS and [c.split(")", 1)[1].strip().lower() for c in choices] != ["yes", "no"]:
        return "yes_no_choices_expected"
    if "kind" in item and (not isinstance(item["kind"], str) or item["kind"] not in STRESS_KINDS):
        return "unknown_kind"
    return None


def load_emorealm(emorealm_file: str | os.PathLike, dfew_root: str | os.PathLike, *,
                  video_subdir: str = VIDEO_SUBDIR, wav_subdir: str = WAV_SUBDIR, require_audio: bool = True,
                  strict: bool = False) -> LoadResult:
    emorealm_file, dfew_root = Path(emorealm_file), Path(dfew_root)
    require_file(emorealm_file, "EmoReAlM json")
    video_dir, wav_dir = dfew_root / video_subdir, dfew_root / wav_subdir
    require_dir(video_dir, "DFEW clip")
    try:
        data = json.loads(emorealm_file.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{emorealm_file}: invalid JSON ({e})") from e
    if not isinstance(data, list):
        raise DatasetError(f"{emorealm_file}: expected a JSON array of items, got {type(data).__name__}")
    cues_by_stem = load_side_cues(dfew_root)
    res = LoadResult("emorealm", source=str(emorealm_file))

    def bad(reason: str, what: str) -> None:
        if strict:
            raise DatasetError(f"{emorealm_file}: item {what}: {reason}")
        log.warning("%s: item %s skipped: %s", emorealm_file.name, what, reason)
        res.skip(reason, what)

    seen: set[str] = set()
    for n, raw in enumerate(data):
        iid = str(raw.get("id", f"#{n}"))[:80] if isinstance(raw, dict) else f"#{n}"
        reason = validate_qa(raw)
        if reason:
            bad(reason, iid)
            continue
        if iid in seen:
            bad("duplicate_id", iid)
            continue
        seen.add(iid)
        rel = raw.get("video")
        if not isinstance(rel, str):
            bad("video_not_text", iid)
            continue
        video = resolve_inside(video_dir, rel)
        if video is None:
            bad("path_escapes_root", f"{iid} ({rel!r})")
            continue
        if not video.is_file():
            bad("missing_video", f"{iid} ({rel})")
            continue
        wav = resolve_inside(wav_dir, str(Path(rel).with_suffix(".wav")))
        if wav is None or not wav.is_file():
            if require_audio:
                bad("missing_audio", f"{iid} ({Path(rel).with_suffix('.wav')})")
                continue
            wav = None
        text: dict[str, Any] = {"task": raw["task"], "question": raw["question"].strip(),
                                "choices": list(raw["choices"]), "answer": raw["answer"].strip().strip("()")}
        if "kind" in raw:
            text["kind"] = raw["kind"]
        cue = cues_by_stem.get(video.stem)
        if cue is not None:
            text["cues"] = cue
        res.items.append(Item(id=iid, dataset="emorealm", split="test", video=str(video),
                              audio=str(wav) if wav else None, label=cue["video_emotion"] if cue else None,
                              text=text))
    res.notes.append("per task: " + ", ".join(f"{t} {c}" for t, c in sorted(task_counts(res.items).items())))
    return res


def task_counts(items: list[Item]) -> Counter[str]:
    return Counter(it.text["task"] for it in items)


def _from_params(questions: str, P: DataPrepParams) -> LoadResult:
    return load_emorealm(questions, P.dfew_root, video_subdir=P.dfew_video_subdir, wav_subdir=P.dfew_wav_subdir,
                         require_audio=P.require_audio, strict=P.strict)


def from_params(P: DataPrepParams) -> LoadResult:
    """The benchmark's loader with notebook 01's parameters (benchmarks.BENCHMARKS)."""
    return _from_params(P.emorealm_file, P)


def heldout_from_params(P: DataPrepParams) -> LoadResult:
    """The stress questions in held-out wordings: EmoReAlM's schema, over the same DFEW clips."""
    return _from_params(P.emorealm_heldout_file, P)
