"""Does a model read the choices of a multiple-choice question?  (EmoReAlM basic audio / video, generated answers)

A generated answer in the taught form, "a breathy voice (C)", has two halves that can go wrong apart: the
text (is it one of the four choices, and the right one?) and the letter (is it the letter of the choice
whose text was written?).  Strict mode scores only the letter, so a low strict accuracy does not say which
half failed.  This splits it.  With the synthetic world's cue records it also says what the text would be
if the model wrote one of the clip's present cues at random and ignored the choices: when the observed
share of right texts equals that, the choices are not being read (docs/models.md).

Pure functions of the items and the generations; `summary` goes into `metrics/emorealm-<variant>.json`
(`mcq_reading`), the report shows it per variant.
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from avere_utils.evaluation.parsing import split_choice
from avere_utils.records import Item

MCQ_TASKS: dict[str, str] = {"reasoning_basic_audio": "audio", "reasoning_basic_video": "visual"}

_TRAILING = re.compile(r"^(?P<text>.*?)\s*\((?P<letter>[A-Za-z])\)\s*[.!]?\s*$", re.S)
_LEADING = re.compile(r"^\s*\((?P<letter>[A-Za-z])\)\s*(?P<text>.*)$", re.S)


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def split_answer(answer: str) -> tuple[str, str | None]:
    """(text, letter) of an answer in either lettered form: "a breathy voice (C)" or "(C) a breathy voice";
    a bare answer is all text, letter None."""
    for pattern in (_TRAILING, _LEADING):
        m = pattern.match(answer or "")
        if m and m.group("text").strip():
            return m.group("text").strip(), m.group("letter").upper()
    return (answer or "").strip(), None


def read_item(item: Item, generation: str | None) -> dict[str, Any]:
    """One basic-MCQ answer: which choice its text is (None: none of them), whether that is the right one,
    whether the letter written is that choice's, and, with a cue record, whether the text is a cue the clip
    shows and the chance of a right text for a model that writes one of those cues and ignores the choices."""
    text, letter = split_answer(generation or "")
    letters, texts = zip(*(split_choice(c) for c in item.text["choices"]))
    written = next((lt for lt, t in zip(letters, texts) if _norm(t) == _norm(text)), None)
    row: dict[str, Any] = {"text_choice": written, "text_right": written == item.text["answer"],
                           "letter": letter, "letter_is_texts": written is not None and letter == written}
    record = (item.text.get("cues") or {}).get(MCQ_TASKS.get(item.text["task"], ""))
    if record and record.get("present"):
        present = [_norm(c) for c in record["present"]]
        row["text_is_present_cue"] = _norm(text) in present
        right_text = _norm(texts[letters.index(item.text["answer"])])
        row["chance_if_choices_ignored"] = 1.0 / len(present) if right_text in present else 0.0
    return row


def summary(items: Sequence[Item], generations: Mapping[str, str | None]) -> dict[str, Any] | None:
    """Percentages over the basic MCQ items that have a generation; None when there is none."""
    rows = [read_item(it, generations[it.id]) for it in items
            if it.text.get("task") in MCQ_TASKS and generations.get(it.id) is not None]
    if not rows:
        return None
    n = len(rows)
    in_choices = [r for r in rows if r["text_choice"] is not None]
    lettered = [r for r in in_choices if r["letter"] is not None]
    out: dict[str, Any] = {
        "n_items": n,
        "pct_text_is_a_choice": 100 * len(in_choices) / n,
        "pct_text_right": 100 * sum(r["text_right"] for r in rows) / n,
        # of the answers whose text is a choice and that wrote a letter: the letter is that choice's
        "pct_letter_is_the_texts": 100 * sum(r["letter_is_texts"] for r in lettered) / len(lettered) if lettered else None,
        "n_letter_checked": len(lettered),
    }
    with_record = [r for r in rows if "text_is_present_cue" in r]
    if with_record:
        m = len(with_record)
        out["pct_text_is_a_present_cue"] = 100 * sum(r["text_is_present_cue"] for r in with_record) / m
        out["pct_text_right_if_choices_ignored"] = 100 * sum(r["chance_if_choices_ignored"] for r in with_record) / m
        out["n_with_cue_record"] = m
    return out
