"""The LLM generator: an OpenAI-compatible chat model writes the three responses of a sample.

The paper's 41,687 samples were written by Gemini 2.5 Flash; this module asks any chat endpoint for the
same thing, with a prompt written for the two rejection kinds.  The model gets the question, the emotion
(s) the chosen answer must state, and - when the clip has a cue record - the three lists of cues it may
use for each response; otherwise the clip's captions.  A stress-family sample (EmoReAlM's Yes/No question
about one cue) is planned like a template one (`templates.stress_ask`): the model gets the question, which
answer is correct, and per response the answer it starts with and the one cue it rests on, so an LLM sample
and its template fallback answer the same question.  Its reply must be one JSON object
{"chosen", "rejected_vr", "rejected_er"}; every reply is parsed and checked with the same rules as the
template generator's samples (`cues.check_sample`), and every failure is counted by reason.
"""
from __future__ import annotations

import json
import logging
import re
from collections import Counter
from typing import Any

from avere_utils.llm_client import ChatClient, ChatError
from avere_utils.pairs.cues import (
    RESPONSE_KINDS,
    CueRecord,
    check_sample,
    check_sample_without_record,
    claimed_emotion,
    targeted_modalities,
)
from avere_utils.pairs.templates import STRESS_ASKED, STRESS_FAMILIES, Draft, StressAsk

log = logging.getLogger(__name__)

SYSTEM_PROMPT = """You write training data for an audiovisual emotion model.
For one question about a video clip you write three answers of the SAME shape and length that state the
SAME emotion (and the same yes/no answer when the question asks one); they differ ONLY in the cue they
give as the reason:
- "chosen": cites cues that are really present in the clip AND typical of the emotion (grounded).
- "rejected_vr": cites a cue that is present in the clip but has nothing to do with emotion (a background,
  an object, a background sound) as the reason: a spurious association.
- "rejected_er": cites a cue that is typical of the emotion but ABSENT from the clip: a hallucination.
Copy the cue phrases exactly as given. Do not mention any other cue. One or two sentences per answer.
Reply with one JSON object and nothing else:
{"chosen": "...", "rejected_vr": "...", "rejected_er": "..."}"""

# The stress families get their own instructions (the three answers differ in Yes/No there); the other
# families' requests stay byte-identical, so their cached replies stay valid.
SYSTEM_PROMPT_STRESS = """You write training data for an audiovisual emotion model.
For one Yes/No question about one cue of a video clip ("does this cue show the emotion?") you write three
answers of the SAME shape and length that state the SAME emotion; they differ only in the answer they start
with and in the cue they give as the reason:
- "chosen": the correct answer, resting on a cue that is really present in the clip AND typical of the emotion.
- "rejected_vr": rests on a cue that is present in the clip but has nothing to do with emotion: a spurious
  association.
- "rejected_er": rests on a cue that is typical of the emotion but ABSENT from the clip: a hallucination.
An answer says Yes when its cue is the one asked about and No otherwise. Start each answer with exactly the
words given for it, then one sentence saying that its cue shows the emotion. Copy the cue phrases exactly
as given. Mention no other cue (not the asked one either, unless it is that answer's cue).
Reply with one JSON object and nothing else:
{"chosen": "...", "rejected_vr": "...", "rejected_er": "..."}"""

_SOURCE_TEXT = {"present": "present in the clip and typical of {emotion}",
                "context": "present in the clip but irrelevant to emotion",
                "absent": "typical of {emotion} but absent from the clip"}
_RESPONSE_SOURCE = {"chosen": "present", "rejected_vr": "context", "rejected_er": "absent"}


def build_stress_messages(ask: StressAsk, record: CueRecord) -> list[dict[str, str]]:
    modality = STRESS_FAMILIES[ask.family]
    emotion = record.emotion_of(modality)
    where = "video" if modality == "visual" else "audio"
    correct = ask.answer("chosen")
    lines = [f"Question: {ask.prompt}",
             f"The question asks about {ask.asked} in the {where} "
             f"({_SOURCE_TEXT[STRESS_ASKED[ask.kind]].format(emotion=emotion)}): the correct answer is {correct}.",
             f"{modality} emotion: {emotion}"]
    for response, cue in ask.cues.items():
        lines.append(f'{response}: start with "{ask.answer(response)}", then rest the answer on "{cue}" '
                     f"({_SOURCE_TEXT[_RESPONSE_SOURCE[response]].format(emotion=emotion)})")
    return [{"role": "system", "content": SYSTEM_PROMPT_STRESS}, {"role": "user", "content": "\n".join(lines)}]


def _cue_lines(record: CueRecord, family: str) -> list[str]:
    lines = []
    for modality in targeted_modalities(family):
        if family == "emotion_id" and modality == "audio" and not record.agree:
            continue  # the audio shows another emotion: it cannot ground the label
        m = record.of(modality)
        emotion = claimed_emotion(record, family, modality)
        lines += [f"{modality} emotion: {emotion}",
                  f"  {modality} cues present and typical of {emotion} (use in chosen): {', '.join(m.present)}",
                  f"  {modality} cues present but irrelevant (use in rejected_vr): {', '.join(m.context)}",
                  f"  {modality} cues typical of {emotion} but absent (use in rejected_er): {', '.join(m.absent)}"]
    return lines


def build_messages(question: str, family: str, record: CueRecord | None, label: str | None,
                   captions: dict[str, str] | None) -> list[dict[str, str]]:
    lines = [f"Question: {question}"]
    if record is not None:
        if family == "modality_agreement":
            lines.append(f"Correct answer: {'Yes' if record.agree else 'No'} (start each answer with it)")
        lines += _cue_lines(record, family)
    else:
        lines.append(f"Emotion: {label}")
        for key, text in (captions or {}).items():
            lines.append(f"{key} description of the clip: {text}")
        lines.append("Take the present cues from the descriptions; pick the irrelevant and the absent cues "
                     "so that they are clearly not emotional evidence in this clip.")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n".join(lines)}]


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


def parse_reply(reply: str) -> dict[str, str]:
    """The three responses from a model reply; ValueError saying what is wrong otherwise."""
    text = _FENCE.sub("", reply.strip())
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("no JSON object in the reply")
    try:
        obj = json.loads(text[start:end + 1])
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise ValueError("the JSON is not an object")
    missing = [k for k in RESPONSE_KINDS if k not in obj]
    if missing:
        raise ValueError(f"missing keys {missing}")
    bad = [k for k in RESPONSE_KINDS if not isinstance(obj[k], str) or not obj[k].strip()]
    if bad:
        raise ValueError(f"empty or non-text values for {bad}")
    return {k: obj[k].strip() for k in RESPONSE_KINDS}


class LLMGenerator:
    """`generate(...)` returns a valid Draft or None; why not is counted in `counts`."""

    def __init__(self, client: ChatClient, temperature: float = 0.0):
        self.client = client
        self.temperature = temperature
        self.counts: Counter[str] = Counter()

    def generate(self, question: str, family: str, record: CueRecord | None, label: str | None = None,
                 captions: dict[str, str] | None = None, template: str = "",
                 stress: StressAsk | None = None) -> Draft | None:
        """`stress`: the planned question of a stress-family sample (then `question` is its prompt)."""
        self.counts["llm_samples_asked"] += 1
        if family in STRESS_FAMILIES:
            if stress is None or record is None:
                raise ValueError(f"LLMGenerator.generate: a {family} sample needs its planned question and a cue record")
            messages = build_stress_messages(stress, record)
        else:
            messages = build_messages(question, family, record, label, captions)
        try:
            # a reply that does not parse is not cached: a rerun asks again instead of replaying it
            reply = self.client.chat(messages, validate=parse_reply, temperature=self.temperature)
        except ChatError as e:
            self.counts["llm_request_failed"] += 1
            log.warning("LLM request failed: %s", e)
            return None
        try:
            texts = parse_reply(reply)
        except ValueError as e:
            self.counts["llm_malformed"] += 1
            log.info("LLM reply malformed (%s): %.120r", e, reply)
            return None
        problems = (check_sample(texts, record, family, prompt=question) if record is not None
                    else check_sample_without_record(texts))
        if problems:
            self.counts["llm_invalid"] += 1
            log.info("LLM sample invalid: %s", "; ".join(problems[:3]))
            return None
        self.counts["llm_valid"] += 1
        return Draft(family=family, prompt=question, template=f"{template}/llm", **texts)

    def stats(self) -> dict[str, Any]:
        return {**dict(self.counts), **{f"llm_client_{k}": v for k, v in self.client.stats.as_dict().items()}}
