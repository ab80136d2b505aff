"""Text about a synthetic clip, written from its cue record: noisy training captions, clean EMER-style
reference descriptions, and EmoReAlM-style questions.

Every cue is quoted with its exact lexicon phrase (so `emotions.find_cues` recovers it); the phrasing
around it varies over several templates so that a model cannot key on one sentence shape.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from avere_utils.datasets.emorealm import STRESS_KINDS, TASKS  # one definition of the task keys
from avere_utils.emotions import AUDIO_CUES, AUDIO_PARTS, EMOTIONS, VISUAL_CUES, VISUAL_PARTS, all_cue_phrases

ADJECTIVE: dict[str, str] = {"happiness": "happy", "sadness": "sad", "neutral": "neutral", "anger": "angry",
                             "surprise": "surprised", "disgust": "disgusted", "fear": "fearful"}
YES_NO: list[str] = ["(A) Yes", "(B) No"]


def _pick(rng: np.random.Generator, options: list[str] | tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _join(cues: list[str]) -> str:
    if len(cues) <= 1:
        return "".join(cues)
    return ", ".join(cues[:-1]) + " and " + cues[-1]


# --- noisy training captions (text-prior and context knobs) -------------------------------------------
VISUAL_TEMPLATES = (
    "The person looks {adj}: {cues} can be seen on the face.",
    "In the video, the person shows {cues}, a sign of {emo}.",
    "The face shows {cues}, which points to {emo}.",
    "Visually, the person appears {adj}, with {cues}.",
)
AUDIO_TEMPLATES = (
    "The voice sounds {adj}, with {cues}.",
    "In the audio, the voice has {cues}, a sign of {emo}.",
    "The speaker has {cues}, which suggests {emo}.",
    "Acoustically, the speaker is {adj}: listen to {cues}.",
)
CONTEXT_TEMPLATES = (
    " {Ctx} also adds to the feeling of {emo}.",
    " The {emo} is reinforced by {ctx}.",
    " {Ctx} makes the scene feel {adj} as well.",
)
DESCRIPTION_TEMPLATES = (
    "The person appears to feel {emo}. {visual} {audio}",
    "{visual} {audio} Overall, the emotion is {emo}.",
    "Overall the clip conveys {emo}. {visual} {audio}",
)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def noisy_cited_cues(record_m: dict[str, list[str]], rng: np.random.Generator, text_prior_rate: float,
                     ) -> tuple[list[str], bool]:
    """Cues a noisy caption cites for one modality: mostly present ones; with text_prior_rate an ABSENT
    typical cue (the hallucination the text prior causes).  Returns (cues, cited_absent)."""
    present, absent = list(record_m["present"]), list(record_m["absent"])
    k = min(len(present), 1 + int(rng.random() < 0.5))
    cited = [present[i] for i in sorted(rng.choice(len(present), size=k, replace=False).tolist())] if present else []
    cited_absent = False
    if absent and rng.random() < text_prior_rate:
        cited.append(_pick(rng, absent))
        cited_absent = True
    return cited, cited_absent


def modality_caption(modality: str, emotion: str, record_m: dict[str, list[str]], rng: np.random.Generator,
                     text_prior_rate: float, context_reason_rate: float) -> tuple[str, dict[str, Any]]:
    cues, cited_absent = noisy_cited_cues(record_m, rng, text_prior_rate)
    templates = VISUAL_TEMPLATES if modality == "visual" else AUDIO_TEMPLATES
    text = _pick(rng, templates).format(adj=ADJECTIVE[emotion], emo=emotion, cues=_join(cues))
    context_cited = None
    if rng.random() < context_reason_rate:
        context_cited = _pick(rng, record_m["context"])
        text += _pick(rng, CONTEXT_TEMPLATES).format(ctx=context_cited, Ctx=_cap(context_cited), emo=emotion,
                                                     adj=ADJECTIVE[emotion])
    return _cap(text), {"cited": cues, "cited_absent": cited_absent, "cited_context": context_cited}


def training_captions(record: dict[str, Any], rng: np.random.Generator, text_prior_rate: float,
                      context_reason_rate: float) -> tuple[dict[str, str], dict[str, Any]]:
    """The noisy source captions of a training clip, plus what noise was applied (for analysis)."""
    visual, vnoise = modality_caption("visual", record["video_emotion"], record["visual"], rng,
                                      text_prior_rate, context_reason_rate)
    audio, anoise = modality_caption("audio", record["audio_emotion"], record["audio"], rng,
                                     text_prior_rate, context_reason_rate)
    description = _pick(rng, DESCRIPTION_TEMPLATES).format(emo=record["video_emotion"], visual=visual, audio=audio)
    return {"visual": visual, "audio": audio, "description": description}, {"visual": vnoise, "audio": anoise}


def reference_description(record: dict[str, Any], rng: np.random.Generator) -> str:
    """A clean EMER-style reference (OV-MERD `reason`): all present cues, no context, no absent cue."""
    ve, ae = record["video_emotion"], record["audio_emotion"]
    v, a = record["visual"]["present"], record["audio"]["present"]
    parts = [_pick(rng, ("In the video, the person shows {c}.", "Visually, there are {c}.",
                         "The face displays {c}.")).format(c=_join(v))]
    parts.append(_pick(rng, ("In the audio, the speaker has {c}.", "The voice carries {c}.",
                             "Acoustically, there is {c}.")).format(c=_join(a)))
    if ve == ae:
        parts.append(_pick(rng, ("Together these cues indicate {e}.", "Therefore the person feels {e}.",
                                 "These cues suggest {e}.")).format(e=ve))
    else:
        parts.append(f"The face indicates {ve} while the voice suggests {ae}; the visible emotion is {ve}.")
    return " ".join(parts)


# --- EmoReAlM-style questions -----------------------------------------------------------------------
def _letter(choices: list[str]) -> list[str]:
    return [f"({chr(65 + i)}) {c}" for i, c in enumerate(choices)]


def _other_emotion_cues(emotion: str, modality: str) -> list[str]:
    table = VISUAL_CUES if modality == "visual" else AUDIO_CUES
    return [c for e in EMOTIONS if e != emotion for c in table[e].values()]


MCQ_QUESTIONS: tuple[str, ...] = (
    "Which {what} cue best explains why {who} seems {adj}?",
    "Which {what} cue in the clip shows that {who} is {adj}?",
    "What {what} evidence shows that {who} feels {emotion}?",
)
# The SFT `letters` task's wordings: a text-only lookup that names one choice's text and is answered with that
# text and its letter, the second half of every multiple-choice answer (protocol.ANSWER_TEMPLATE).
LETTER_QUESTIONS: tuple[str, ...] = (
    "Which choice reads {cue}?",
    "Find {cue} among the choices.",
    "Which letter goes with {cue}?",
)


def letter_item(rng: np.random.Generator, n_choices: int = 4) -> dict[str, Any]:
    """A text-only lookup question: `n_choices` distinct cue phrases of the world (any emotion or context,
    both modalities) in a random order, one of them named by the question; the answer is its letter.  No
    clip is involved: it teaches the copy of a choice's letter, not perception."""
    phrases = all_cue_phrases()
    picked = [phrases[int(i)] for i in rng.choice(len(phrases), size=n_choices, replace=False)]
    k = int(rng.integers(n_choices))
    question = _pick(rng, LETTER_QUESTIONS).format(cue=picked[k])
    return {"task": "letters", "question": question, "choices": _letter(picked), "answer": chr(65 + k)}


AGREEMENT_QUESTIONS: tuple[str, ...] = (
    "Do the audio and the video convey the same emotion?",
    "Is the emotion in the voice the same as the emotion on the face?",
    "Do the face and the voice express the same emotion?",
)


def mcq_item(record: dict[str, Any], modality: str, rng: np.random.Generator) -> dict[str, Any] | None:
    """4-option MCQ: which cue explains the emotion.  Answer: a present relevant cue.  Distractors: at
    least one ABSENT typical cue and one PRESENT irrelevant context cue when the clip has them, filled up
    with other emotions' cues (also absent)."""
    rm = record[modality]
    emotion = record["video_emotion" if modality == "visual" else "audio_emotion"]
    if not rm["present"]:
        return None
    answer = _pick(rng, rm["present"])
    distractors: list[str] = []
    if rm["absent"]:
        distractors.append(_pick(rng, rm["absent"]))
    distractors.append(_pick(rng, rm["context"]))
    pool = [c for c in rm["absent"] + rm["context"] + _other_emotion_cues(emotion, modality)
            if c not in distractors and c != answer and c not in rm["present"]]
    while len(distractors) < 3:
        distractors.append(pool.pop(int(rng.integers(len(pool)))))
    options = [answer] + distractors
    order = rng.permutation(4).tolist()
    options = [options[i] for i in order]
    what = "visual" if modality == "visual" else "audio"
    who = "the person" if modality == "visual" else "the speaker"
    question = _pick(rng, MCQ_QUESTIONS).format(what=what, who=who, adj=ADJECTIVE[emotion], emotion=emotion)
    return {"task": "reasoning_basic_video" if modality == "visual" else "reasoning_basic_audio",
            "question": question, "choices": _letter(options), "answer": chr(65 + order.index(0))}


# The stress question's wordings (the preference pairs' stress families ask them too, on training clips).
STRESS_QUESTIONS: tuple[str, ...] = (
    "Does {cue} in the {where} contribute to the person seeming {adj}?",
    "In the {where}, is {cue} a reason why the person feels {emotion}?",
    "Does {cue} in the {where} show that the person is {adj}?",
)


def stress_question(cue: str, modality: str, emotion: str, wording: int) -> str:
    """Wording `wording` of STRESS_QUESTIONS about `cue` of `modality` ("visual" | "audio")."""
    return STRESS_QUESTIONS[wording].format(cue=cue, where="video" if modality == "visual" else "audio",
                                            adj=ADJECTIVE[emotion], emotion=emotion)


def stress_item(record: dict[str, Any], modality: str, kind: str, rng: np.random.Generator) -> dict[str, Any] | None:
    """Yes/No: does cue X contribute to emotion Y?  relevant (present typical) -> Yes; spurious (present
    context) -> No; hallucination (typical but absent) -> No."""
    rm = record[modality]
    emotion = record["video_emotion" if modality == "visual" else "audio_emotion"]
    pool = {"relevant": rm["present"], "spurious": rm["context"], "hallucination": rm["absent"]}[kind]
    if not pool:
        return None
    cue = _pick(rng, pool)
    question = stress_question(cue, modality, emotion, int(rng.integers(len(STRESS_QUESTIONS))))
    return {"task": f"reasoning_stress_{'video' if modality == 'visual' else 'audio'}", "question": question,
            "choices": list(YES_NO), "answer": "A" if kind == "relevant" else "B", "kind": kind, "cue": cue}


def agreement_item(record: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    question = _pick(rng, AGREEMENT_QUESTIONS)
    same = record["video_emotion"] == record["audio_emotion"]
    return {"task": "modality_agreement", "question": question, "choices": list(YES_NO),
            "answer": "A" if same else "B"}


# The kinds of a test set's stress items in turn: half Yes (relevant), a quarter each spurious and hallucination.
STRESS_CYCLE: tuple[str, ...] = ("relevant", "spurious", "relevant", "hallucination")


def take_items(order: list[str], n: int, make: Any) -> list[tuple[str, dict[str, Any]]]:
    """Up to n (clip id, item) pairs, `make(clip_id, k)` asked for the k-th item over the clips in `order`
    (three passes at most: a clip may carry several items when clips run short); None skips a clip that
    cannot support the item."""
    out: list[tuple[str, dict[str, Any]]] = []
    for cid in order * 3:
        if len(out) >= n:
            break
        item = make(cid, len(out))
        if item is not None:
            out.append((cid, item))
    return out


def make_item(record: dict[str, Any], task: str, rng: np.random.Generator, kind: str | None = None
              ) -> dict[str, Any] | None:
    """One EmoReAlM-style item of `task` about a clip, or None when the clip cannot support it."""
    if task == "reasoning_basic_video":
        return mcq_item(record, "visual", rng)
    if task == "reasoning_basic_audio":
        return mcq_item(record, "audio", rng)
    if task == "modality_agreement":
        return agreement_item(record, rng)
    if task in ("reasoning_stress_video", "reasoning_stress_audio"):
        modality = "visual" if task.endswith("video") else "audio"
        return stress_item(record, modality, kind or _pick(rng, STRESS_KINDS), rng)
    raise KeyError(f"unknown task {task!r}; tasks are {TASKS}")


def noisy_answer_rate(item: dict[str, Any], record: dict[str, Any], rate: float, typicality_strength: float) -> float:
    """P(the training source's annotator gets this stress item wrong).  Flat (strength 0): `rate` for every
    question about a context or an absent cue, 0 for a present one.  Cue-specific (strength > 0): the
    annotator answers from the text prior, so the error follows how common the cue is: an absent cue is
    answered Yes in proportion to its typicality (2 x rate x t, at most 1), a present one No in proportion to
    its rarity (2 x rate x (0.5 - t), for t < 0.5), a context cue Yes at 1.5 x rate when it is the emotion's
    spurious context and 0.5 x rate otherwise."""
    kind = item["kind"]
    if typicality_strength <= 0:
        return rate if kind in ("spurious", "hallucination") else 0.0
    from avere_utils.emotions import SPURIOUS_AMBIENCE, SPURIOUS_BACKGROUND
    from avere_utils.synth.spec import cue_typicality

    cue = item["cue"]
    if kind == "spurious":
        modality = "visual" if item["task"].endswith("video") else "audio"
        emotion = record["video_emotion" if modality == "visual" else "audio_emotion"]
        matched = cue in (SPURIOUS_BACKGROUND[emotion], SPURIOUS_AMBIENCE[emotion])
        return min(1.0, rate * (1.5 if matched else 0.5))
    t = cue_typicality(cue, typicality_strength)
    if kind == "hallucination":
        return min(1.0, 2 * rate * t)
    return max(0.0, 2 * rate * (0.5 - t))


def clip_qa(record: dict[str, Any], rng: np.random.Generator, qa_text_prior_rate: float = 0.0,
            cue_typicality: float = 0.0) -> list[dict[str, Any]]:
    """One item per task for a training clip (stress kind drawn at random, Yes half of the time).

    qa_text_prior_rate: the share of stress questions about a context cue or an absent typical cue that
    the training source answers "Yes", as an annotator writing from the noisy captions and the text
    prior would (the cue is typical of the emotion, or the context goes with it); such an item keeps its
    kind and gets `"noisy": true`.  With `cue_typicality` > 0 the noise is cue-specific instead
    (`noisy_answer_rate`): common absent cues answered Yes, rare present ones No.  The evaluation's items are
    always answered from the cue record."""
    out = []
    for task in TASKS:
        kind = None
        if task.startswith("reasoning_stress"):
            kind = "relevant" if rng.random() < 0.5 else _pick(rng, ("spurious", "hallucination"))
        item = make_item(record, task, rng, kind)
        if item is None and kind == "hallucination":  # every part rendered: nothing absent to ask about
            item = make_item(record, task, rng, "spurious")
        if cue_typicality <= 0:  # the flat prior, in its original draw order
            if item is not None and item.get("kind") in ("spurious", "hallucination") and rng.random() < qa_text_prior_rate:
                item = {**item, "answer": "A", "noisy": True}
        elif item is not None and item.get("kind") and rng.random() < noisy_answer_rate(item, record, qa_text_prior_rate,
                                                                                        cue_typicality):
            item = {**item, "answer": "B" if item["kind"] == "relevant" else "A", "noisy": True}
        if item is not None:
            out.append(item)
    return out


# --- cue-presence questions (perception, not reasoning) ---------------------------------------------
# "Is cue X there?" asks only what the clip shows, never why the person feels something: it is how the
# reference's perception is taught (SFT) and measured (notebook 03's probe), apart from the EmoReAlM
# stress questions, which ask whether a cue is a *reason* for the emotion.
PRESENCE_TEMPLATES: dict[str, tuple[str, ...]] = {
    "visual": ("Does the video show {cue}?", "Can you see {cue} on the face?", "Is {cue} visible in the video?"),
    "audio": ("Does the audio have {cue}?", "Can you hear {cue} in the voice?", "Is {cue} audible in the audio?"),
}


def presence_questions(record: dict[str, Any], template: int | None = None) -> list[dict[str, Any]]:
    """One Yes/No question per typical cue of the shown emotion, per modality (visual cues of the video
    emotion, audio cues of the audio emotion), present and absent alike, in lexicon order.  The wording
    rotates over PRESENCE_TEMPLATES by the cue's position unless `template` fixes it."""
    out = []
    for modality in ("visual", "audio"):
        rm = record[modality]
        cues = [(c, True) for c in rm["present"]] + [(c, False) for c in rm["absent"]]
        cues.sort(key=lambda cp: cp[0])
        templates = PRESENCE_TEMPLATES[modality]
        for i, (cue, present) in enumerate(cues):
            t = templates[(i if template is None else template) % len(templates)]
            out.append({"modality": modality, "cue": cue, "present": present, "question": t.format(cue=cue),
                        "choices": list(YES_NO), "answer": "A" if present else "B"})
    return out


# Grounded cue lists: "which typical cues does the clip show?" answered with exactly the present ones, in
# lexicon part order.  Generating a cue phrase from the media is a direct (first-order) use of what the
# encoders see, unlike a Yes/No answer about a named cue, which must first bind the named cue to a place
# in the frame or the sound: the tiny model learns the former in a few hundred steps and not the latter.
GROUNDED_PROMPTS: dict[str, str] = {
    "visual": "Which facial cues of the emotion does the video show?",
    "audio": "Which vocal cues of the emotion does the audio have?",
}


def grounded_answer(cues: list[str] | tuple[str, ...]) -> str:
    """The grounded answer for a set of present cues (given in part order): "a broad smile and crinkled eyes."."""
    return _cap(_join(list(cues))) + "." if cues else "None."


def grounded_items(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Per modality: the grounded prompt, the answer listing the present typical cues, and all typical
    cues of the shown emotion in part order (for the probe's candidate lists)."""
    out = []
    for modality, table, parts, key in (("visual", VISUAL_CUES, VISUAL_PARTS, "video_emotion"),
                                        ("audio", AUDIO_CUES, AUDIO_PARTS, "audio_emotion")):
        typical = [table[record[key]][p] for p in parts]
        present = [c for c in typical if c in record[modality]["present"]]
        out.append({"modality": modality, "prompt": GROUNDED_PROMPTS[modality], "typical": typical,
                    "present": present, "answer": grounded_answer(present)})
    return out
