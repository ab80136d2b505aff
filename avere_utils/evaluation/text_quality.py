"""Is a generated description well formed?  Checks a reader would make before trusting any EMER score.

A judge scores what a description says; these checks say whether it is a description at all.  A tiny model
that was taught several task formats can answer the description prompt with another task's answer ("...
the voice.) Yes"), loop on a phrase ("a glaring stare, a glaring stare"), or never name the emotion.  None
of that moves the cue judge much, so it is counted here, per answer, and reported next to the judge.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from avere_utils.emotions import find_cues
from avere_utils.evaluation.parsing import strict_label

# Another task's answer inside a description: a Yes/No word, or a lettered option "(B)" / "B)".
_LEAK = re.compile(r"\b(?:yes|no)\b|\(\s*[a-d]\s*\)|(?<![a-z])[a-d]\)", re.IGNORECASE)
_WORD = re.compile(r"[a-z']+")


def leaks_answer(text: str) -> bool:
    """True when the text holds a Yes/No answer word or a lettered option."""
    return bool(_LEAK.search(text or ""))


def repeated_phrase(text: str, min_words: int = 2) -> str | None:
    """A phrase the text says twice in a row ("a glaring stare, a glaring stare", "eyes and eyes"), or a cue
    it cites twice anywhere ("a trembling voice ... a trembling voice"); None if neither.  Sentence frames
    may come back ("... also adds to the feeling of sadness. ... also adds to the feeling of ..."): the
    training captions do that for the two modalities, so a recurring frame is not counted."""
    words = _WORD.findall((text or "").lower())
    for n in range(min_words, len(words) // 2 + 1):
        for i in range(len(words) - 2 * n + 1):
            if words[i:i + n] == words[i + n:i + 2 * n]:
                return " ".join(words[i:i + n])
        # "X and X" / "X, X": one joining word between the two copies
        for i in range(len(words) - 2 * n):
            if words[i + n] in ("and", "or") and words[i:i + n] == words[i + n + 1:i + 2 * n + 1]:
                return " ".join(words[i:i + n])
    lowered = (text or "").lower()
    for cue in find_cues(text or ""):
        if len(re.findall(rf"\b{re.escape(cue)}\b", lowered)) > 1:
            return cue
    return None


def description_checks(text: str, cues: Mapping[str, Any], label: str | None) -> dict[str, bool]:
    """Per description: names the clip's emotion, leaks another task's answer, repeats a phrase, cites at
    least one cue the clip shows (typical of its emotion), cites an absent typical cue, cites a context cue."""
    present = set(cues["visual"]["present"]) | set(cues["audio"]["present"])
    absent = set(cues["visual"]["absent"]) | set(cues["audio"]["absent"])
    context = set(cues["visual"]["context"]) | set(cues["audio"]["context"])
    cited = set(find_cues(text or ""))
    return {"names_emotion": label is not None and strict_label(text or "") == label,
            "leaks_answer": leaks_answer(text),
            "repeats_phrase": repeated_phrase(text) is not None,
            "cites_present_cue": bool(cited & present),
            "cites_absent_typical_cue": bool(cited & absent),
            "cites_context_cue": bool(cited & context)}


CHECKS: tuple[str, ...] = ("names_emotion", "leaks_answer", "repeats_phrase", "cites_present_cue",
                           "cites_absent_typical_cue", "cites_context_cue")


def quality_summary(rows: Iterable[Mapping[str, bool]]) -> dict[str, Any]:
    """Percent of descriptions passing each check, plus their number."""
    rows = list(rows)
    n = len(rows)
    out: dict[str, Any] = {f"pct_{k}": (100.0 * sum(bool(r[k]) for r in rows) / n if n else None) for k in CHECKS}
    out["n_descriptions"] = n
    return out
