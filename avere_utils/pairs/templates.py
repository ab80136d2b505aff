"""The template generator: deterministic preference samples from a clip's cue record.

For one sample, ONE prompt template and ONE response template are drawn; the chosen response and both
rejections fill the same response template with the same emotion (and yes/no answer) and the same number
of cues - only the cues differ (present relevant / present irrelevant / absent typical).  So the three
responses have the same shape and nearly the same length, and a model can only tell them apart by
whether the cited cue is really there and really about the emotion.  Several templates per family keep
the model from learning one sentence instead of the content.

Every filler word was chosen so that `emotions.find_cues` recovers exactly the inserted cue phrases (a
test checks all templates against the whole lexicon).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avere_utils.pairs.cues import CueRecord, ModalityCues

PROMPTS: dict[str, tuple[str, ...]] = {
    "visual_reasoning": (
        "What emotion does the person's face show, and which visual cue supports it?",
        "Looking at the video, explain the person's emotion from what you can see.",
        "Which visible detail tells you how the person feels? Name the emotion.",
        "Based on the frames only, what is the person feeling and why?",
    ),
    "audio_reasoning": (
        "What emotion does the person's voice convey, and which sound cue supports it?",
        "Listening to the audio, explain how the person feels.",
        "Which vocal detail tells you the speaker's emotion? Name the emotion.",
        "Based on the sound only, what is the person feeling and why?",
    ),
    "emotion_id": (
        "What emotion is the person expressing? Explain using what you see and hear.",
        "Identify the person's emotion and the cues behind it.",
        "How does the person feel in this clip, and what gives it away?",
    ),
    "modality_agreement": (
        "Do the person's face and voice convey the same emotion? Explain.",
        "Are the audio and the video expressing the same emotion? Answer yes or no and explain.",
        "Does the emotion heard in the audio match the emotion seen in the video?",
    ),
}

# {emotion}/{Emotion}: the claimed emotion; {cues}: the cited cue phrase(s) joined with "and".
RESPONSES_SINGLE: dict[str, tuple[str, ...]] = {
    "visual_reasoning": (
        "The person shows {emotion}, because the video shows {cues}.",
        "I can see {cues}, which signals {emotion}.",
        "The face reveals {emotion}: the key visual cue is {cues}.",
        "Visually, {cues} indicates that the person feels {emotion}.",
    ),
    "audio_reasoning": (
        "The voice carries {emotion}, because the audio has {cues}.",
        "I can hear {cues}, which signals {emotion}.",
        "The sound reveals {emotion}: the key audio cue is {cues}.",
        "In the audio, {cues} indicates that the person feels {emotion}.",
    ),
}
# emotion_id: {evidence} joins one fragment per cited modality.
RESPONSES_EMOTION_ID: tuple[str, ...] = (
    "The person feels {emotion}, since {evidence}.",
    "{Emotion} is the emotion here: {evidence}.",
    "I would say {emotion}, because {evidence}.",
)
EVIDENCE_FRAGMENTS: dict[str, tuple[str, ...]] = {
    "visual": ("the video shows {cue}", "I can see {cue}"),
    "audio": ("the audio has {cue}", "I can hear {cue}"),
}
# modality_agreement: {Answer} is Yes/No, {link} "and"/"while", {relation} "match"/"differ".
RESPONSES_AGREEMENT: tuple[str, ...] = (
    "{Answer}. The face shows {vemotion} through {vcue}, {link} the voice conveys {aemotion} with {acue}.",
    "{Answer}, they {relation}: {vcue} in the video signals {vemotion} and {acue} in the audio signals {aemotion}.",
    "Video: {vemotion}, given {vcue}. Audio: {aemotion}, given {acue}. So the answer is {answer}.",
)


@dataclass
class Draft:
    """One generated sample before the rejected input is chosen."""

    family: str
    prompt: str
    chosen: str
    rejected_vr: str
    rejected_er: str
    template: str  # which prompt/response templates (for analysis), e.g. "p2/r0"

    def texts(self) -> dict[str, str]:
        return {"chosen": self.chosen, "rejected_vr": self.rejected_vr, "rejected_er": self.rejected_er}


def _complete(m: ModalityCues) -> bool:
    """A modality can anchor a sample only if it offers all three kinds of cue."""
    return bool(m.present and m.context and m.absent)


def emotion_id_modalities(record: CueRecord) -> list[str]:
    """Modalities an emotion_id answer cites: visual (the label is the video emotion), plus audio when
    the voice carries the same emotion."""
    mods = ["visual"] if _complete(record.visual) else []
    if record.agree and _complete(record.audio):
        mods.append("audio")
    return mods


def feasible_families(record: CueRecord) -> list[str]:
    out = []
    if _complete(record.visual):
        out.append("visual_reasoning")
    if _complete(record.audio):
        out.append("audio_reasoning")
    if emotion_id_modalities(record):
        out.append("emotion_id")
    if _complete(record.visual) and _complete(record.audio):
        out.append("modality_agreement")
    return out


def join_cues(cues: list[str]) -> str:
    return cues[0] if len(cues) == 1 else ", ".join(cues[:-1]) + " and " + cues[-1]


def _pick(rng: np.random.Generator, pool: tuple[str, ...], k: int) -> list[str]:
    return [pool[i] for i in sorted(rng.choice(len(pool), size=k, replace=False))]


def _fill(template: str, **kw: str) -> str:
    text = template.format(**kw, **{k.capitalize(): v.capitalize() for k, v in kw.items() if k.islower()})
    return text[0].upper() + text[1:]


def template_sample(record: CueRecord, family: str, rng: np.random.Generator, max_cues: int = 2,
                    prompt_index: int | None = None) -> Draft:
    """A sample of `family` for a clip; the family must be in feasible_families(record)."""
    p = int(rng.integers(len(PROMPTS[family]))) if prompt_index is None else prompt_index
    prompt = PROMPTS[family][p]
    if family in RESPONSES_SINGLE:
        modality = "visual" if family == "visual_reasoning" else "audio"
        m = record.of(modality)
        k = int(rng.integers(1, min(max_cues, len(m.present), len(m.context), len(m.absent)) + 1))
        cue_sets = {"chosen": _pick(rng, m.present, k), "rejected_vr": _pick(rng, m.context, k),
                    "rejected_er": _pick(rng, m.absent, k)}
        r = int(rng.integers(len(RESPONSES_SINGLE[family])))
        emotion = record.emotion_of(modality)
        texts = {kind: _fill(RESPONSES_SINGLE[family][r], emotion=emotion, cues=join_cues(cues))
                 for kind, cues in cue_sets.items()}
    elif family == "emotion_id":
        mods = emotion_id_modalities(record)
        r = int(rng.integers(len(RESPONSES_EMOTION_ID)))
        style = int(rng.integers(2))
        picks = {kind: {mod: _pick(rng, getattr(record.of(mod), src), 1)[0] for mod in mods}
                 for kind, src in (("chosen", "present"), ("rejected_vr", "context"), ("rejected_er", "absent"))}
        texts = {}
        for kind, by_mod in picks.items():
            evidence = " and ".join(EVIDENCE_FRAGMENTS[mod][style].format(cue=cue) for mod, cue in by_mod.items())
            texts[kind] = _fill(RESPONSES_EMOTION_ID[r], emotion=record.video_emotion, evidence=evidence)
    elif family == "modality_agreement":
        r = int(rng.integers(len(RESPONSES_AGREEMENT)))
        yes = record.agree
        texts = {}
        for kind, src in (("chosen", "present"), ("rejected_vr", "context"), ("rejected_er", "absent")):
            vcue = _pick(rng, getattr(record.visual, src), 1)[0]
            acue = _pick(rng, getattr(record.audio, src), 1)[0]
            texts[kind] = _fill(RESPONSES_AGREEMENT[r], answer="yes" if yes else "no",
                                link="and" if yes else "while", relation="match" if yes else "differ",
                                vemotion=record.video_emotion, aemotion=record.audio_emotion, vcue=vcue, acue=acue)
    else:
        raise ValueError(f"unknown family {family!r}")
    return Draft(family=family, prompt=prompt, template=f"p{p}/r{r}", **texts)
