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

from avere_utils.protocol import EMER_PROMPT, STRESS_KINDS, choice_answer, emorealm_prompt
from avere_utils.records import CueRecord, ModalityCues
from avere_utils.synth.text import ADJECTIVE, CONTEXT_TEMPLATES, STRESS_QUESTIONS, YES_NO, stress_question

# Emotion description prompts (the paper's preference data mixes "emotion description" and "reasoning"
# prompts).  The first is the EMER evaluation prompt itself: without a description prompt among the pairs,
# preference learning barely reaches the detailed answers EMER judges.  They belong to emotion_id (both
# modalities) and are answered in the description style of the training captions (RESPONSES_DESCRIPTION).
DESCRIPTION_PROMPTS: tuple[str, ...] = (
    EMER_PROMPT,
    "Describe in detail how the person feels and what in the clip shows it.",
    "What emotion does the person show? Describe the face and the voice in detail.",
)

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
        *DESCRIPTION_PROMPTS,
    ),
    # The stress families ask EmoReAlM's stress question ("does cue X contribute to emotion Y?", its
    # wordings, with its lettered Yes/No choices) about a cue of a TRAINING clip; {cue} is filled per sample.
    "visual_stress": STRESS_QUESTIONS,
    "audio_stress": STRESS_QUESTIONS,
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
# emotion_id under a description prompt: the shape of the training captions, one sentence per cited
# modality ({evidence} joins DESCRIPTION_FRAGMENTS with a space).
RESPONSES_DESCRIPTION: tuple[str, ...] = (
    "The person appears to feel {emotion}. {evidence}",
    "{evidence} Overall, the emotion is {emotion}.",
)
# The third style is the clause through which the noisy captions (synth/text.py CONTEXT_TEMPLATES) tie a
# context cue to the emotion; the reference repeats it in its detailed answers ("The anger is reinforced by
# a purple background."), so the rejection that looks like it must fill the same slot (with the relevant
# cue in the chosen answer and an absent one in the hallucination).
DESCRIPTION_FRAGMENTS: dict[str, tuple[str, ...]] = {
    "visual": ("The face shows {cue}, which points to {emotion}.", "The person looks {adjective}: {cue} can be seen on the face.",
               "The {emotion} is reinforced by {cue}."),
    "audio": ("The voice sounds {adjective}, with {cue}.", "The speaker has {cue}, which suggests {emotion}.",
              "{Cue} also adds to the feeling of {emotion}."),
}

# How an emotion_id answer to a DESCRIPTION prompt is rejected (`description_rejections`):
#   swap    each rejection is the chosen description with its cue swapped in the same slot (a context cue
#           for vr, an absent typical cue for er);
#   insert  each rejection is the chosen description plus the error the reference makes in its own words:
#           vr adds the captions' context clause ("The happiness is reinforced by a potted plant.",
#           synth/text.py CONTEXT_TEMPLATES), er cites an absent typical cue beside the present one.  The
#           rejections then differ from the chosen answer only by what EMER counts as an error, and share
#           every present cue with it (pairs/cues.py checks the added cues alone).
DESCRIPTION_FORMS: tuple[str, ...] = ("swap", "insert")

# The stress families: the lettered choice, then the cue the answer rests on ({where}: video | audio).  The
# response always cites the cue that, by its own answer, explains the emotion: "Yes" cites the asked cue,
# "No" the cue it puts in its place.  So the chosen response cites a present typical cue, the vr rejection a
# present context cue, the er rejection an absent typical cue, whatever cue was asked about:
#   asked about      chosen                  rejected_vr                  rejected_er
#   present typical  Yes + that cue          No + a context cue           No + an absent typical cue
#   context          No + a present typical  Yes + that context cue       No + an absent typical cue
#   absent typical   No + a present typical  No + a context cue           Yes + that absent cue
# The rejections say No to a relevant cue as often as Yes to an irrelevant one: the pairs reward
# discriminating, never answering No more often.
RESPONSES_STRESS: tuple[str, ...] = (
    "{choice}. The {where} has {cue}, which signals {emotion}.",
    "{choice}. What shows {emotion} is {cue} in the {where}.",
)
STRESS_ASKED: dict[str, str] = {"relevant": "present", "spurious": "context", "hallucination": "absent"}
STRESS_CITED: dict[str, dict[str, str]] = {  # kind asked about -> response kind -> where its cue comes from
    "relevant": {"chosen": "asked", "rejected_vr": "context", "rejected_er": "absent"},
    "spurious": {"chosen": "present", "rejected_vr": "asked", "rejected_er": "absent"},
    "hallucination": {"chosen": "present", "rejected_vr": "context", "rejected_er": "asked"},
}
STRESS_FAMILIES: dict[str, str] = {"visual_stress": "visual", "audio_stress": "audio"}

# The same-cue form (`stress_responses: same_cue`): every response rests on the ASKED cue, so the three
# responses differ only in the answer and in what they claim about that cue - never in which cue they name.
# A cue-swapping sample can be won by the cue words alone (a context phrase after "No (B)" is unlikely
# anyway); here the margin can only ride on Yes/No and on the cue's presence.  Each rejection makes one
# kind of error about the asked cue: vr a reasoning error (relevance), er a perception error (presence).
#   asked about      chosen               rejected_vr                      rejected_er
#   present typical  Yes, it signals E    No, present but says nothing     No, it is not there
#   context          No, says nothing     Yes, it signals E (spurious)     No, it is not there
#   absent typical   No, it is not there  No, present but says nothing     Yes, it signals E (hallucination)
# The answer-only form (`stress_responses: answer_only`): the responses are the bare answers, "Yes (A)" or
# "No (B)", exactly what the benchmark's scoring compares; both rejections are the wrong answer.  The margin can
# ride on nothing but the decision, and TPD's text-only term becomes the text prior of that decision.
STRESS_FORMS: tuple[str, ...] = ("cue_swap", "same_cue", "answer_only")

SAME_CUE_CLAIMS: dict[str, dict[str, str]] = {  # kind asked about -> response kind -> its claim about the cue
    "relevant": {"chosen": "signals", "rejected_vr": "irrelevant", "rejected_er": "absent"},
    "spurious": {"chosen": "irrelevant", "rejected_vr": "signals", "rejected_er": "absent"},
    "hallucination": {"chosen": "absent", "rejected_vr": "irrelevant", "rejected_er": "signals"},
}
RESPONSES_SAME_CUE: dict[str, tuple[str, ...]] = {  # claim -> wordings (one index per sample, as RESPONSES_STRESS)
    "signals": ("{choice}. The {where} has {cue}, which signals {emotion}.",
                "{choice}. What shows {emotion} is {cue} in the {where}."),
    "irrelevant": ("{choice}. The {where} has {cue}, which does not signal {emotion}.",
                   "{choice}. The {where} has {cue}, but that says nothing about {emotion}."),
    "absent": ("{choice}. The {where} does not have {cue}.",
               "{choice}. {Cue} cannot be found in the {where}."),
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
    out += [f for f, m in STRESS_FAMILIES.items() if _complete(record.of(m))]
    return out


def join_cues(cues: list[str]) -> str:
    return cues[0] if len(cues) == 1 else ", ".join(cues[:-1]) + " and " + cues[-1]


def _pick(rng: np.random.Generator, pool: tuple[str, ...], k: int) -> list[str]:
    return [pool[i] for i in sorted(rng.choice(len(pool), size=k, replace=False))]


def _fill(template: str, **kw: str) -> str:
    text = template.format(**kw, **{k.capitalize(): v.capitalize() for k, v in kw.items() if k.islower()})
    return text[0].upper() + text[1:]


def _fragment(modality: str, style: int, cue: str, emotion: str) -> str:
    """One modality's sentence of a description answer (DESCRIPTION_FRAGMENTS), citing `cue` (one cue or two
    joined)."""
    return DESCRIPTION_FRAGMENTS[modality][style].format(cue=cue, Cue=cue[:1].upper() + cue[1:], emotion=emotion,
                                                         adjective=ADJECTIVE[emotion])


def _evidence(kind: str, modality: str, style: int, cue: str, present: str, emotion: str, form: str,
              rng: np.random.Generator) -> str:
    """One modality's sentence of a description answer of response `kind`, citing `cue` (`present`: the chosen
    answer's cue).  The insert form keeps the chosen sentence and adds the rejection's error to it."""
    if form == "swap" or kind == "chosen":
        return _fragment(modality, style, cue, emotion)
    if kind == "rejected_er":
        return _fragment(modality, style, f"{present} and {cue}", emotion)
    clause = CONTEXT_TEMPLATES[int(rng.integers(len(CONTEXT_TEMPLATES)))]
    return _fragment(modality, style, present, emotion) + clause.format(
        ctx=cue, Ctx=cue[:1].upper() + cue[1:], emo=emotion, adj=ADJECTIVE[emotion])


def template_sample(record: CueRecord, family: str, rng: np.random.Generator, max_cues: int = 2,
                    prompt_index: int | None = None, stress: StressAsk | None = None,
                    description_form: str = "swap") -> Draft:
    """A sample of `family` for a clip; the family must be in feasible_families(record).  A stress family
    answers `stress` when given (the planned question), else draws one; `description_form` (DESCRIPTION_FORMS)
    says how a description answer is rejected."""
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
        describe = prompt in DESCRIPTION_PROMPTS
        r = int(rng.integers(len(RESPONSES_DESCRIPTION if describe else RESPONSES_EMOTION_ID)))
        style = int(rng.integers(len(DESCRIPTION_FRAGMENTS["visual"]) if describe else 2))
        picks = {kind: {mod: _pick(rng, getattr(record.of(mod), src), 1)[0] for mod in mods}
                 for kind, src in (("chosen", "present"), ("rejected_vr", "context"), ("rejected_er", "absent"))}
        texts = {}
        emotion = record.video_emotion
        for kind, by_mod in picks.items():
            if describe:
                evidence = " ".join(_evidence(kind, mod, style, cue, picks["chosen"][mod], emotion, description_form, rng)
                                    for mod, cue in by_mod.items())
                texts[kind] = _fill(RESPONSES_DESCRIPTION[r], emotion=emotion,
                                    evidence=evidence)
            else:
                evidence = " and ".join(EVIDENCE_FRAGMENTS[mod][style].format(cue=cue) for mod, cue in by_mod.items())
                texts[kind] = _fill(RESPONSES_EMOTION_ID[r], emotion=emotion, evidence=evidence)
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
    elif family in STRESS_FAMILIES:
        return stress_sample(record, family, rng, p, stress)
    else:
        raise ValueError(f"unknown family {family!r}")
    return Draft(family=family, prompt=prompt, template=f"p{p}/r{r}", **texts)


@dataclass(frozen=True)
class StressAsk:
    """What a stress-family sample is about, drawn before anyone writes it, so that the template and the
    LLM generator (and the template fallback of an LLM sample) answer the same question with the same cues."""

    family: str
    kind: str  # protocol.STRESS_KINDS: which kind of cue is asked about
    asked: str
    prompt: str
    cues: dict[str, str]  # response kind -> the cue it rests on (STRESS_CITED; the asked cue when same_cue)
    wording: int
    form: str = "cue_swap"  # STRESS_FORMS

    def answer(self, response: str) -> str:
        return stress_answer(self.kind, response, self.form)


def stress_answer(kind: str, response: str, form: str = "cue_swap") -> str:
    """The answer ("Yes (A)" / "No (B)") a response starts with: Yes only when it rests on the asked cue
    (cue_swap), or claims that the asked cue signals the emotion (same_cue)."""
    if form == "answer_only":
        yes = (response == "chosen") == (kind == "relevant")
    elif form == "same_cue":
        yes = SAME_CUE_CLAIMS[kind][response] == "signals"
    else:
        yes = STRESS_CITED[kind][response] == "asked"
    return choice_answer(YES_NO[0] if yes else YES_NO[1])


def stress_ask(record: CueRecord, family: str, rng: np.random.Generator, wording: int,
               kind_weights: dict[str, float] | None = None, form: str = "cue_swap") -> StressAsk:
    """The kind of cue asked about (relevant / spurious / hallucination: uniform, or drawn by
    `kind_weights`), the cue, then the cues the three responses rest on (STRESS_CITED; with `form`
    same_cue every response rests on the asked cue, and no other cue is drawn)."""
    if form not in STRESS_FORMS:
        raise ValueError(f"unknown stress response form {form!r}; forms: {STRESS_FORMS}")
    modality = STRESS_FAMILIES[family]
    m = record.of(modality)
    if kind_weights:
        w = np.array([kind_weights.get(k, 0.0) for k in STRESS_KINDS], dtype=float)
        kind = STRESS_KINDS[int(rng.choice(len(STRESS_KINDS), p=w / w.sum()))]
    else:  # the uniform draw by integers, as before the weights existed: the default pairs stay the same
        kind = STRESS_KINDS[int(rng.integers(len(STRESS_KINDS)))]
    asked = _pick(rng, getattr(m, STRESS_ASKED[kind]), 1)[0]
    prompt = emorealm_prompt(stress_question(asked, modality, record.emotion_of(modality), wording), YES_NO)
    if form in ("same_cue", "answer_only"):
        return StressAsk(family, kind, asked, prompt, dict.fromkeys(STRESS_CITED[kind], asked), wording, form)
    cues = {response: asked if source == "asked" else _pick(rng, getattr(m, source), 1)[0]
            for response, source in STRESS_CITED[kind].items()}
    return StressAsk(family, kind, asked, prompt, cues, wording)


def stress_sample(record: CueRecord, family: str, rng: np.random.Generator, wording: int,
                  ask: StressAsk | None = None) -> Draft:
    """A stress-family sample from the template; `ask` (drawn with `stress_ask`) when it is already planned."""
    if ask is None:
        ask = stress_ask(record, family, rng, wording)
    modality = STRESS_FAMILIES[family]
    emotion = record.emotion_of(modality)
    r = int(rng.integers(len(RESPONSES_STRESS)))
    where = "video" if modality == "visual" else "audio"
    if ask.form == "answer_only":
        texts = {response: ask.answer(response) for response in ask.cues}
        return Draft(family=family, prompt=ask.prompt, template=f"p{ask.wording}/a/{ask.kind}", **texts)
    if ask.form == "same_cue":
        texts = {response: _fill(RESPONSES_SAME_CUE[SAME_CUE_CLAIMS[ask.kind][response]][r],
                                 choice=ask.answer(response), cue=ask.asked, where=where, emotion=emotion)
                 for response in ask.cues}
        return Draft(family=family, prompt=ask.prompt, template=f"p{ask.wording}/s{r}/{ask.kind}", **texts)
    texts = {response: _fill(RESPONSES_STRESS[r], choice=ask.answer(response), cue=cue, where=where, emotion=emotion)
             for response, cue in ask.cues.items()}
    return Draft(family=family, prompt=ask.prompt, template=f"p{ask.wording}/r{r}/{ask.kind}", **texts)
