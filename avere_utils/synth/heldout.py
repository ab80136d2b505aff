"""A second stress set in wordings that no training text uses: does a fix generalise beyond the templates?

The kit's EmoReAlM stress items ask their question in the three STRESS_QUESTIONS wordings, and the stress
preference pairs ask the same wordings on training clips.  A model could learn "No" for a wording rather
than for an irrelevant or absent cue.  These items ask the same thing (is cue X a reason for emotion Y?)
about the same test clips' cue records, in wordings that share no four-word sequence with any template the
SFT data, the preference pairs or the kit's questions are written from (`shared_ngrams` checks; a test
keeps it so).  An independent set of other wordings is also used to check the landed kit.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

import numpy as np

from avere_utils.synth.text import ADJECTIVE, STRESS_CYCLE, YES_NO, take_items

# {cue}, {emotion} (a noun: "anger"), {adj} ("angry").  Per modality, so that no wording has to name
# the modality the kit's way ("in the video").
HELDOUT_STRESS_WORDINGS: dict[str, tuple[str, ...]] = {
    "visual": (
        "Judging from the face alone, would you count {cue} among the signs of {emotion}?",
        "Is {cue} here evidence that this person is {adj}? Answer from what the frames show.",
        "Could {cue} explain the {emotion} on display?",
    ),
    "audio": (
        "Judging from the voice alone, would you count {cue} among the signs of {emotion}?",
        "Is {cue} here evidence that this speaker is {adj}? Answer from what the recording holds.",
        "Could {cue} explain the {emotion} one hears?",
    ),
}

_SLOT = re.compile(r"\{[A-Za-z_]+\}")
_WORDS = re.compile(r"<slot>|[a-z']+")


def template_ngrams(template: str, n: int = 4) -> set[tuple[str, ...]]:
    """The word n-grams of a template, every {field} one '<slot>' word (so "{cue} in the {where}" and
    "{x} in the {y}" are the same 4-gram), lower-cased, punctuation dropped."""
    words = _WORDS.findall(_SLOT.sub(" <slot> ", template).lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def shared_ngrams(heldout: Iterable[str], training: Iterable[str], n: int = 4) -> set[tuple[str, ...]]:
    """The n-grams the held-out wordings share with the training templates (empty: none shared)."""
    train: set[tuple[str, ...]] = set()
    for t in training:
        train |= template_ngrams(t, n)
    out: set[tuple[str, ...]] = set()
    for h in heldout:
        out |= template_ngrams(h, n) & train
    return out


def training_templates() -> list[str]:
    """Every template and fixed prompt the kit's training data and its own questions are written from:
    SFT tasks, captions, EmoReAlM-style questions, the preference pairs' prompts and responses."""
    from avere_utils.pairs import templates as pt
    from avere_utils.protocol import CLASSIFICATION_PROMPT, EMER_PROMPT
    from avere_utils.synth import text as st

    out: list[str] = [CLASSIFICATION_PROMPT, EMER_PROMPT, *st.STRESS_QUESTIONS, *st.MCQ_QUESTIONS,
                      *st.LETTER_QUESTIONS, *st.AGREEMENT_QUESTIONS, *st.GROUNDED_PROMPTS.values(),
                      *[t for ts in st.PRESENCE_TEMPLATES.values() for t in ts],
                      *st.VISUAL_TEMPLATES, *st.AUDIO_TEMPLATES, *st.CONTEXT_TEMPLATES, *st.DESCRIPTION_TEMPLATES]
    for name in dir(pt):
        value = getattr(pt, name)
        if name.isupper():
            out.extend(_strings(value))
    return out


def _strings(x: Any) -> list[str]:
    if isinstance(x, str):
        return [x]
    if isinstance(x, dict):
        return [s for v in x.values() for s in _strings(v)]
    if isinstance(x, (list, tuple)):
        return [s for v in x for s in _strings(v)]
    return []


def heldout_stress_item(record: dict[str, Any], modality: str, kind: str, rng: np.random.Generator
                        ) -> dict[str, Any] | None:
    """A stress item like `synth.text.stress_item`, asked in a held-out wording."""
    rm = record[modality]
    emotion = record["video_emotion" if modality == "visual" else "audio_emotion"]
    pool = {"relevant": rm["present"], "spurious": rm["context"], "hallucination": rm["absent"]}[kind]
    if not pool:
        return None
    cue = pool[int(rng.integers(len(pool)))]
    wordings = HELDOUT_STRESS_WORDINGS[modality]
    question = wordings[int(rng.integers(len(wordings)))].format(cue=cue, emotion=emotion, adj=ADJECTIVE[emotion])
    return {"task": f"reasoning_stress_{'video' if modality == 'visual' else 'audio'}", "question": question,
            "choices": list(YES_NO), "answer": "A" if kind == "relevant" else "B", "kind": kind}


def heldout_stress_items(records: dict[str, dict[str, Any]], path_of: dict[str, str], n_per_task: int,
                         rng: np.random.Generator) -> list[dict[str, Any]]:
    """n_per_task items per stress task over the clips (kinds cycling relevant / spurious / relevant /
    hallucination, as in the kit's set), in the EmoReAlM JSON schema with `kind` and `wording_set`."""
    items: list[dict[str, Any]] = []
    ids: Sequence[str] = sorted(records)
    for modality in ("audio", "visual"):
        order = [ids[i] for i in rng.permutation(len(ids))]
        made = take_items(order, n_per_task, lambda cid, k, modality=modality: heldout_stress_item(
            records[cid], modality, STRESS_CYCLE[k % len(STRESS_CYCLE)], rng))
        for cid, item in made:
            items.append({"id": f"heldout_{len(items) + 1:05d}", "task": item["task"], "video": path_of[cid],
                          "question": item["question"], "choices": item["choices"], "answer": item["answer"],
                          "kind": item["kind"], "wording_set": "heldout"})
    return items
