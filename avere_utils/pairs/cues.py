"""Cue records and the check every preference sample must pass.

A sample is valid when each of its three responses cites the right *kind* of cue for the modalities its
family targets (checked with `emotions.find_cues` against the clip's cue record):

* chosen      - only PRESENT typical cues (relevant), each of the emotion the response claims for that
                modality;
* rejected_vr - only PRESENT context cues (irrelevant): a spurious association;
* rejected_er - only ABSENT typical cues of the claimed emotion: a hallucination.

All three claim the same emotion (and, for modality agreement, the same yes/no answer), so the cue is the
only difference the model can learn from.  A stress-family sample (a Yes/No question about one cue) is also
checked against its question: each response starts with the answer `templates.STRESS_CITED` gives it
("Yes (A)" only for the response that rests on the asked cue, which it must cite), "No (B)" otherwise.
"""
from __future__ import annotations

import re
from typing import Mapping, Sequence

from avere_utils.emotions import cue_kind, find_cues
from avere_utils.pairs.params import FAMILY_MODALITY
from avere_utils.pairs.templates import (
    DESCRIPTION_PROMPTS,
    SAME_CUE_CLAIMS,
    STRESS_ASKED,
    STRESS_CITED,
    STRESS_FAMILIES,
    stress_answer,
)
from avere_utils.records import CueRecord

RESPONSE_KINDS: tuple[str, ...] = ("chosen", "rejected_vr", "rejected_er")

# Words a response may use to name an emotion (the noun is the label; the adjective reads naturally).
EMOTION_WORDS: dict[str, tuple[str, ...]] = {
    "happiness": ("happiness", "happy"),
    "sadness": ("sadness", "sad"),
    "neutral": ("neutral", "calm"),
    "anger": ("anger", "angry"),
    "surprise": ("surprise", "surprised"),
    "disgust": ("disgust", "disgusted"),
    "fear": ("fear", "fearful", "afraid", "scared"),
}


def targeted_modalities(family: str) -> tuple[str, ...]:
    m = FAMILY_MODALITY[family]
    return ("visual", "audio") if m == "both" else (m,)


def claimed_emotion(record: CueRecord, family: str, modality: str) -> str:
    """The emotion a response of this family attributes to the cues of one modality."""
    if family == "emotion_id":
        return record.video_emotion  # the clip label; on a disagreement clip audio cues cannot support it
    return record.emotion_of(modality)


def mentions_emotion(text: str, emotion: str) -> bool:
    return any(re.search(rf"\b{w}\b", text, re.IGNORECASE) for w in EMOTION_WORDS[emotion])


def _check_response(kind: str, text: str, record: CueRecord, family: str, shared: Sequence[str] = ()) -> list[str]:
    """Problems of one response; the cues in `shared` (the chosen answer's, which an insert-form rejection
    keeps) are not checked again, and the response must cite at least one other."""
    if not isinstance(text, str) or not text.strip():
        return [f"{kind}: empty"]
    problems: list[str] = []
    cited = [c for c in find_cues(text) if c not in shared]
    if not cited:
        problems.append(f"{kind}: cites no lexicon cue" + (" besides the chosen answer's" if shared else ""))
    targeted = targeted_modalities(family)
    for cue in cited:
        modality, emotion = cue_kind(cue)
        if modality not in targeted:
            problems.append(f"{kind}: cites {cue!r}, a {modality} cue, for a {'/'.join(targeted)} prompt")
            continue
        cues = record.of(modality)
        want = claimed_emotion(record, family, modality)
        if kind == "chosen":
            if cue not in cues.present or emotion != want:
                problems.append(f"{kind}: {cue!r} is not a present typical {modality} cue of {want}")
        elif kind == "rejected_vr":
            if cue not in cues.context:
                problems.append(f"{kind}: {cue!r} is not a present irrelevant (context) {modality} cue")
        else:
            if cue not in cues.absent or emotion != want:
                problems.append(f"{kind}: {cue!r} is not an absent typical {modality} cue of {want}")
    for modality in targeted:
        if family == "emotion_id" and modality == "audio" and not record.agree:
            continue  # the label is the video emotion; audio is not required to support it
        if not mentions_emotion(text, claimed_emotion(record, family, modality)):
            problems.append(f"{kind}: does not name the emotion {claimed_emotion(record, family, modality)}")
    if family == "modality_agreement":
        answer = "yes" if record.agree else "no"
        if not re.search(rf"\b{answer}\b", text, re.IGNORECASE):
            problems.append(f"{kind}: does not answer {answer!r} to the agreement question")
    return problems


def _asked_cue(record: CueRecord, family: str, prompt: str) -> tuple[str, str] | str:
    """(the asked cue, its kind), or the problem."""
    modality = STRESS_FAMILIES[family]
    asked = [c for c in find_cues(prompt) if cue_kind(c)[0] == modality]
    if len(asked) != 1:
        return f"the question names {len(asked)} {modality} cues, not one"
    (cue,) = asked
    kinds = [k for k, source in STRESS_ASKED.items() if cue in getattr(record.of(modality), source)]
    if not kinds:
        return f"the question asks about {cue!r}, which is not in the {modality} cue record"
    return cue, kinds[0]


def _check_stress_same_cue(texts: Mapping[str, str], record: CueRecord, family: str, prompt: str) -> list[str]:
    """The same-cue form: every response starts with its answer, rests on the asked cue alone and names the
    emotion unless it only denies the cue's presence."""
    found = _asked_cue(record, family, prompt)
    if isinstance(found, str):
        return [found]
    cue, kind = found
    emotion = record.emotion_of(STRESS_FAMILIES[family])
    problems = []
    for response in RESPONSE_KINDS:
        text = texts.get(response, "")
        text = text.strip() if isinstance(text, str) else ""
        want = stress_answer(kind, response, "same_cue")
        if not text.startswith(want):
            problems.append(f"{response}: does not start with {want} (asked about {cue!r}, a {kind} cue)")
        if find_cues(text) != [cue]:
            problems.append(f"{response}: rests on {find_cues(text)}, not on the asked cue {cue!r} alone")
        if SAME_CUE_CLAIMS[kind][response] != "absent" and not mentions_emotion(text, emotion):
            problems.append(f"{response}: does not name the emotion {emotion}")
    return problems


def _check_stress(texts: Mapping[str, str], record: CueRecord, family: str, prompt: str) -> list[str]:
    found = _asked_cue(record, family, prompt)
    if isinstance(found, str):
        return [found]
    cue, kind = found
    problems = []
    for response in RESPONSE_KINDS:
        text = texts.get(response, "")
        text = text.strip() if isinstance(text, str) else ""
        want = stress_answer(kind, response)
        if not text.startswith(want):
            problems.append(f"{response}: does not start with {want} (asked about {cue!r}, a {kind} cue)")
        if STRESS_CITED[kind][response] == "asked" and cue not in find_cues(text):
            problems.append(f"{response}: does not rest on the asked cue {cue!r}")
    return problems


def check_sample(texts: Mapping[str, str], record: CueRecord, family: str, prompt: str | None = None,
                 stress_form: str = "cue_swap", description_form: str = "swap") -> list[str]:
    """Problems of one sample (chosen / rejected_vr / rejected_er) against its clip's cue record; [] = valid.
    A stress family needs its `prompt`: the asked cue decides which answer each response must give; in the
    same-cue form (`stress_form`) every response rests on the asked cue, present or not.  In the insert form
    of description answers (`description_form`) the rejections keep the chosen answer's cues and are checked
    on the cues they add."""
    if family in STRESS_FAMILIES and stress_form == "answer_only":
        if prompt is None:
            raise ValueError(f"check_sample: a {family} sample is checked against its prompt (the asked cue)")
        found = _asked_cue(record, family, prompt)
        if isinstance(found, str):
            return [found]
        want = {r: stress_answer(found[1], r, "answer_only") for r in RESPONSE_KINDS}
        return [f"{r}: {texts.get(r)!r} is not the bare answer {w!r}" for r, w in want.items()
                if (texts.get(r) or "").strip() != w]
    if family in STRESS_FAMILIES and stress_form == "same_cue":
        if prompt is None:
            raise ValueError(f"check_sample: a {family} sample is checked against its prompt (the asked cue)")
        problems = _check_stress_same_cue(texts, record, family, prompt)
        if len({texts.get(k, "").strip() for k in RESPONSE_KINDS}) < len(RESPONSE_KINDS):
            problems.append("two of the three responses are identical")
        return problems
    problems: list[str] = []
    inserted = description_form == "insert" and family == "emotion_id" and prompt in DESCRIPTION_PROMPTS
    for kind in RESPONSE_KINDS:
        shared = find_cues(texts.get("chosen") or "") if inserted and kind != "chosen" else ()
        problems += _check_response(kind, texts.get(kind, ""), record, family, shared)
    if family in STRESS_FAMILIES:
        if prompt is None:
            raise ValueError(f"check_sample: a {family} sample is checked against its prompt (the asked cue)")
        problems += _check_stress(texts, record, family, prompt)
    if len({texts.get(k, "").strip() for k in RESPONSE_KINDS}) < len(RESPONSE_KINDS):
        problems.append("two of the three responses are identical")
    return problems


def check_sample_without_record(texts: Mapping[str, str]) -> list[str]:
    """What can be checked when a clip has no cue record (real data): well-formed and distinct."""
    problems = [f"{k}: empty" for k in RESPONSE_KINDS if not isinstance(texts.get(k), str) or not texts[k].strip()]
    if not problems and len({texts[k].strip() for k in RESPONSE_KINDS}) < len(RESPONSE_KINDS):
        problems.append("two of the three responses are identical")
    return problems


def cited_cues(texts: Mapping[str, str]) -> dict[str, list[str]]:
    return {k: find_cues(texts.get(k, "")) for k in RESPONSE_KINDS}
