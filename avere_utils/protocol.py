"""The evaluation protocol's fixed texts and names, defined once (docs/method.md, "Zero-shot protocols").

SFT, pair construction, evaluation, the benchmarks and the notebooks import these; a prompt copied as a
string literal drifts (it once lived in nine places)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

CLASSIFICATION_PROMPT = "Describe the emotion of the person in the video in one word."
EMER_PROMPT = "Describe the emotion of the person in the video in detail."
EMOREALM_PROMPT_TEMPLATE = "{question} {choices}"
# How the tiny reference is taught to answer a lettered question: the choice's text, then its letter,
# "a muted voice (B)".  Letter first ("(B) a muted voice") asks a 3-layer model to pick the letter before
# it has written what it perceives; it then wrote its own cue after a letter at chance (strict MCQ 25 %
# while scoring mode found the right choice 85 % of the time).  Text first lets it write what it perceives,
# then copy the letter that stands before that text in the prompt (partly learnt by the tiny reference,
# docs/models.md).  Both the released parser and the strict one read "(B)".
ANSWER_TEMPLATE = "{text} ({letter})"


def choice_answer(choice: str, template: str = ANSWER_TEMPLATE) -> str:
    """A lettered choice "(B) No" as an answer in `template` ({choice}, {letter}, {text})."""
    from avere_utils.evaluation.parsing import split_choice

    letter, text = split_choice(choice)
    return template.format(choice=choice, letter=letter, text=text)

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
CLASSIFICATION_METRICS: tuple[str, ...] = ("uar", "war", "macro_f1", "weighted_f1")
# the EMER judge's four criteria (1-10; higher is better for every one of them)
EMER_CRITERIA: tuple[str, ...] = ("clue", "label", "spurious", "hallucination")
EMOREALM_AVERAGE = "average_accuracy"  # the mean over the EmoReAlM tasks
# the cue judge's raw rates in an EMER metrics file (percent), under `cue_rates`
EMER_CUE_RATES: tuple[str, ...] = ("cue_rates.label_match", "cue_rates.hallucination_rate", "cue_rates.spurious_rate",
                                    "cue_rates.clue_recall", "cue_rates.hallucinated_per_description",
                                    "cue_rates.irrelevant_per_description")
# the stress items in held-out wordings (synth/heldout.py): metrics/<this>-<variant>.json
EMOREALM_HELDOUT = "emorealm_heldout"
COUNT_KEYS: tuple[str, ...] = ("n_items", "n_scored", "coverage")  # in every metrics file
