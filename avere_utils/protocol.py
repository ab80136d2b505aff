"""The evaluation protocol's fixed texts and names, defined once (docs/method.md, "Zero-shot protocols").

SFT, pair construction, evaluation, the benchmarks and the notebooks import these; a prompt copied as a
string literal drifts (it once lived in nine places)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

CLASSIFICATION_PROMPT = "Describe the emotion of the person in the video in one word."
EMER_PROMPT = "Describe the emotion of the person in the video in detail."
EMOREALM_PROMPT_TEMPLATE = "{question} {choices}"

EMOREALM_TASKS: tuple[str, ...] = ("reasoning_basic_audio", "reasoning_basic_video", "modality_agreement",
                                   "reasoning_stress_audio", "reasoning_stress_video")
YES_NO_TASKS: tuple[str, ...] = ("modality_agreement", "reasoning_stress_audio", "reasoning_stress_video")
STRESS_TASKS: tuple[str, ...] = ("reasoning_stress_audio", "reasoning_stress_video")
# stress items: the cue is present and relevant (Yes), present but irrelevant (No), typical but absent (No)
STRESS_KINDS: tuple[str, ...] = ("relevant", "spurious", "hallucination")


def emorealm_prompt(question: str, choices: Sequence[str], template: str = EMOREALM_PROMPT_TEMPLATE) -> str:
    """The EmoReAlM prompt: the question, a space, the lettered choices joined by spaces."""
    return template.format(question=question, choices=" ".join(choices))


def qa_prompt(qa: Mapping[str, Any], template: str = EMOREALM_PROMPT_TEMPLATE) -> str:
    """`emorealm_prompt` of an item dict with `question` and `choices` (EmoReAlM items, SFT qa records)."""
    return emorealm_prompt(qa["question"], qa["choices"], template)


# how a prediction becomes an answer: the released rules | the kit's strict parser | answer log-likelihoods
SCORING_MODES: tuple[str, ...] = ("paper", "strict", "scoring")

# --- metric keys of the metrics files (metrics/<benchmark>-<variant>.json), which the report reads ---------
CLASSIFICATION_BENCHMARKS: tuple[str, ...] = ("dfew", "ravdess", "mer2023")
CLASSIFICATION_METRICS: tuple[str, ...] = ("uar", "war", "macro_f1", "weighted_f1")
# the EMER judge's four criteria (1-10; higher is better for every one of them)
EMER_CRITERIA: tuple[str, ...] = ("clue", "label", "spurious", "hallucination")
EMOREALM_AVERAGE = "average_accuracy"  # the mean over the EmoReAlM tasks
COUNT_KEYS: tuple[str, ...] = ("n_items", "n_scored", "coverage")  # in every metrics file
