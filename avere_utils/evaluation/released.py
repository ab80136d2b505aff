"""The released evaluation rules of ihp-lab/AVERE (`evaluate/tasks/*.py`, `evaluate/gpt_evaluation.py`),
re-implemented as pure functions: this is what `paper` mode means.

Every quirk of the released code is kept on purpose, because `paper` mode promises the paper's numbers
for the same predictions; `strict` mode (parsing.strict_*) is where they are corrected.  Each rule is
pinned on crafted answers in tests/evaluation/test_paper_mode.py and listed one per line in docs/evaluation.md.

Inputs follow the released readers: a prediction is the text of `<id>.txt`, stripped and lower-cased
(`released_text`); "missing" means there is no such file (or, for the kit's own predictions, no usable
record), which the released code skips before scoring.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from avere_utils.protocol import YES_NO_TASKS

# --- free text -> emotion class (DFEW, RAVDESS, MER2023) ------------------------------------------------
# Word lists of the released mapping (data, reproduced as released: no "sad", "angry", "scared",
# "afraid", "upset"; "serious" and "tension" in two classes each; "smile" is happiness).
RELEASED_WORDS: dict[str, frozenset[str]] = {
    "happiness": frozenset((
        "happiness", "happy", "smiling", "smile", "pleasant", "content", "contentment", "relaxed",
        "relaxation", "cheerful", "joy", "amusement", "amused", "positivity", "positive", "lightheartedness",
        "joyful", "friendly", "warmth", "bright", "crinkle", "gentle", "exuberant", "crow", "duchenne",
        "ecstatic", "crinkled", "contented", "pleasure", "mirth", "sparkling")),
    "neutral": frozenset((
        "neutral", "neutrality", "calm", "contemplative", "concerned", "thoughtful", "focused", "solemn",
        "mild", "composed", "serene", "placid", "collected", "stoic", "serious", "attentive", "pensive",
        "unperturbed", "steady", "meditative", "detached", "reserved", "introspective", "deliberate",
        "observant", "unmoved", "tranquil", "unemotional", "unexpressive", "seriousness", "placidity",
        "unreadable", "normal", "unmoving", "expressionless", "pensiveness")),
    "surprise": frozenset((
        "surprise", "surprised", "startled", "puzzled", "astonishment", "disbelief", "wonder", "curiosity",
        "curious", "confusion", "bewilderment", "skepticism", "excitement", "uncertainty", "unexpectedness",
        "surprising", "suddenness", "startling", "abruptly", "amazement", "expectant", "astonishing")),
    "fear": frozenset((
        "fear", "shock", "anxiety", "apprehension", "tension", "panic", "alertness", "focus", "worry",
        "alarm", "curiosity", "contemplation", "threat", "frightening", "terror", "fright", "danger",
        "vulnerability", "flight", "dread", "darting", "trembling", "dilated", "threatened", "stimulus",
        "gasping", "quivering")),
    "disgust": frozenset((
        "disgust", "distaste", "disgusted", "discomfort", "displeasure", "displeased", "disapproval",
        "disdain", "contempt", "revulsion", "aversion", "rejection", "repulsive", "unpleasant", "distasteful",
        "smell")),
    "anger": frozenset((
        "anger", "mad", "irate", "outraged", "agitation", "irritated", "enraged", "annoyed", "incensed",
        "serious", "frustration", "displeased", "stern", "displeasure", "tension", "rage", "simmering",
        "irritation", "fury", "suppressed", "fierce", "resentment", "shouting", "snarling", "annoyance",
        "hostile", "hostility", "yelling", "restraint")),
    "sadness": frozenset((
        "sadness", "crying", "distress", "concern", "discomfort", "anguish", "somber", "downcast",
        "melancholy", "melancholic", "despair", "sob", "weariness", "weeping", "quivering", "hopelessness",
        "trembles")),
}
# The order in which classes are tried (first-sentence words) and which wins ties (counts).  MER2023's
# released script uses the first five only, so "fear" or "disgust" words count for nothing there.
RELEASED_ORDER: tuple[str, ...] = ("happiness", "sadness", "surprise", "anger", "neutral", "disgust", "fear")
# Tested as substrings of each lower-cased sentence: "no" is in "normal", "know", "nose", "annoyed".
RELEASED_NEGATIONS: tuple[str, ...] = ("not", "no", "isn't ", "nothing", "cannot", "won't", "shouldn't",
                                       "neither", "nor")
# A sentence ends at whitespace after "." or "?" (not "!"), except after "x.y." abbreviations.  The
# capitalised-abbreviation guard of the released pattern never fires, since the text is lower-cased.
_SENTENCE_BREAK = re.compile(r"(?<!\w\.\w.)(?<![A-Z][a-z]\.)(?<=\.|\?)\s")
# The first sentence: everything before the first ".", "!" or "?" *on the first line* (no DOTALL), so an
# answer whose first line has no punctuation has no first sentence, and the released mapping fails on it.
_FIRST_SENTENCE = re.compile(r"^(.*?)[.!?]")
_WORDS = re.compile(r"\b\w+\b")


class ReleasedMappingError(ValueError):
    """The released mapping raised on this answer; its evaluation loop then skips the clip."""


def released_text(raw: str | None) -> str | None:
    """What the released scripts read from a prediction file: stripped and lower-cased (None = no file)."""
    return None if raw is None else raw.strip().lower()


def remove_negated_sentences(text: str) -> str:
    """Sentences containing a negation substring removed, the rest joined by single spaces."""
    kept = [s for s in _SENTENCE_BREAK.split(text) if not any(n in s.lower() for n in RELEASED_NEGATIONS)]
    return " ".join(kept)


def released_label(text: str, order: Sequence[str] = RELEASED_ORDER) -> str:
    """The released free-text -> class mapping, applied to an already stripped, lower-cased answer.

    Raises ReleasedMappingError where the released function raises (empty answer; no first sentence).
    """
    if not text:
        raise ReleasedMappingError("empty answer")
    if not text.endswith("."):
        text += "."
    positive = remove_negated_sentences(text) or text
    m = _FIRST_SENTENCE.match(positive)
    if m is None:
        raise ReleasedMappingError("no sentence end on the first line")
    for word in _WORDS.findall(m.group(1).lower()):
        for emo in order:
            if word in RELEASED_WORDS[emo]:
                return emo
    counts = {emo: 0 for emo in order}
    for word in _WORDS.findall(positive[m.end():].lower()):
        for emo in order:
            if word in RELEASED_WORDS[emo]:
                counts[emo] += 1
    best = max(counts.values())
    return next(emo for emo in order if counts[emo] == best)  # ties and no hits: the first class


def released_order(classes: Sequence[str]) -> tuple[str, ...]:
    """The released class order restricted to a benchmark's classes (MER2023: the first five)."""
    unknown = set(classes) - set(RELEASED_ORDER)
    if unknown:
        raise ValueError(f"classes {sorted(unknown)} have no released word list")
    return tuple(c for c in RELEASED_ORDER if c in classes)


@dataclass(frozen=True)
class Outcome:
    """What paper mode makes of one item: a label (or correctness) or why the item is dropped."""

    value: Any = None
    dropped: str | None = None  # None (scored) | "missing" (no prediction) | "error" (the rule raised)


def paper_classify(raw: str | None, classes: Sequence[str]) -> Outcome:
    """One clip in paper mode: missing prediction -> dropped "missing"; mapping raised -> dropped "error"."""
    text = released_text(raw)
    if text is None:
        return Outcome(dropped="missing")
    try:
        return Outcome(released_label(text, released_order(classes)))
    except ReleasedMappingError:
        return Outcome(dropped="error")


def released_classification_metrics(y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, float]:
    """scikit-learn's macro / weighted recall and F1 as the released scripts call them (percent).

    The labels are the union of true and predicted labels, so a class that is predicted but absent from
    the kept clips enters the macro means with recall 0 (and F1 0).  WAR (weighted recall) is accuracy.
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    n = len(y_true)
    if n == 0:
        return {"uar": 0.0, "war": 0.0, "macro_f1": 0.0, "weighted_f1": 0.0}
    labels = sorted(set(y_true) | set(y_pred))
    recall, f1, support = [], [], []
    for lab in labels:
        tp = sum(t == lab and p == lab for t, p in zip(y_true, y_pred))
        n_true = sum(t == lab for t in y_true)
        n_pred = sum(p == lab for p in y_pred)
        r = tp / n_true if n_true else 0.0
        p = tp / n_pred if n_pred else 0.0
        recall.append(r)
        f1.append(2 * p * r / (p + r) if p + r else 0.0)
        support.append(n_true)
    return {"uar": 100 * sum(recall) / len(labels),
            "war": 100 * sum(r * s for r, s in zip(recall, support)) / n,
            "macro_f1": 100 * sum(f1) / len(labels),
            "weighted_f1": 100 * sum(f * s for f, s in zip(f1, support)) / n}


# --- EmoReAlM -----------------------------------------------------------------------------------------
# The released script decides Yes/No scoring by task name, not by the choices.
RELEASED_YES_NO_TASKS: tuple[str, ...] = YES_NO_TASKS  # the same three task keys
_CHOICE_PREFIX = re.compile(r"^(?:\([A-D]\)|[A-D][:.])")


def released_letter_correct(text: str, answer: str) -> bool:
    """Correct when the right letter, optionally in ( ) or [ ] and followed by ) ] . or :, stands between
    word boundaries anywhere in the answer, in any case: the article "a" counts as option A and
    "(A) or (B)" is right for both."""
    pattern = r"\b[\(\[]?" + re.escape(answer) + r"[\)\]\.\:]?\b"
    return re.search(pattern, text, re.IGNORECASE) is not None


def released_choice_text(choice: str) -> str:
    """A choice without its "(A)" / "A:" / "A." prefix (letters A-D only, as released)."""
    choice = choice.strip()
    m = _CHOICE_PREFIX.match(choice)
    return choice[m.end():].strip() if m else choice


def released_answer_kind(choices: Sequence[str], answer: str) -> str:
    """"yes" or "no" for a Yes/No item, by substring of the right choice's text ("yes" tested first, so
    "Not sure" is a No); ValueError where the released script raises."""
    idx = ord(answer.upper()) - ord("A")
    if not 0 <= idx < len(choices):
        raise ValueError(f"answer {answer!r} has no choice among {list(choices)}")
    text = released_choice_text(choices[idx]).lower()
    if "yes" in text:
        return "yes"
    if "no" in text:
        return "no"
    raise ValueError(f"cannot tell whether answer {answer!r} ({choices[idx]!r}) is Yes or No")


def paper_letter(raw: str | None, answer: str) -> Outcome:
    """One EmoReAlM item in paper mode: missing prediction -> dropped; an empty answer is kept (wrong)."""
    text = released_text(raw)
    if text is None:
        return Outcome(dropped="missing")
    return Outcome(released_letter_correct(text, answer))


def released_task_metrics(correct: Sequence[bool], kinds: Sequence[str] | None = None) -> dict[str, Any]:
    """One task over its kept items (percent).  `kinds` ("yes"/"no" per item) for Yes/No tasks adds the
    released "precision" (accuracy on Yes-items), "recall" (on No-items), "f1_score" (their harmonic
    mean) and "model_yes_percentage" ((right on Yes + wrong on No) / kept).  Empty sides give 0, as
    released; f1 is None where the released script divides by zero (both sides 0)."""
    n = len(correct)
    out: dict[str, Any] = {"accuracy": 100 * sum(correct) / n if n else 0.0}
    if kinds is None:
        return out
    if len(kinds) != n:
        raise ValueError(f"{n} items but {len(kinds)} answer kinds")
    yes = [c for c, k in zip(correct, kinds) if k == "yes"]
    no = [c for c, k in zip(correct, kinds) if k == "no"]
    ya = 100 * sum(yes) / len(yes) if yes else 0.0
    na = 100 * sum(no) / len(no) if no else 0.0
    said_yes = sum(yes) + sum(not c for c in no)
    out.update(yes_accuracy=ya, no_accuracy=na, f1=2 * ya * na / (ya + na) if ya + na else None,
               yes_rate=100 * said_yes / n if n else 0.0, n_yes=len(yes), n_no=len(no))
    return out


def released_average(task_accuracies: Iterable[float]) -> float:
    """Unweighted mean over the tasks present in the benchmark file (0 when there are none); a task whose
    every prediction is missing is present with accuracy 0."""
    accs = list(task_accuracies)
    return sum(accs) / len(accs) if accs else 0.0


# --- EMER judge replies (gpt_evaluation.py) -------------------------------------------------------------
JUDGE_KEYS: dict[str, str] = {"cue_overlap": "clue", "emotion_consistency": "label",
                              "emotion_cue_association": "spurious", "hallucinated_cues": "hallucination"}


def released_parse_reply(content: str | None) -> dict[str, Any] | None:
    """The released reader of a judge reply: strip leading characters from the set "`json" and trailing
    backticks, then JSON; None (dropped from the means) when that fails or is not an object."""
    if not isinstance(content, str):
        return None
    try:
        reply = json.loads(content.lstrip("`json").rstrip("`").strip())
    except json.JSONDecodeError:
        return None
    return reply if isinstance(reply, dict) else None


def batch_reply_content(row: Mapping[str, Any]) -> str | None:
    """The message text of one Batch-API output row (None when the row has none)."""
    try:
        return row["response"]["body"]["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None


def released_judge_means(replies: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Mean of each criterion over the parsed replies, keyed by the kit's names (clue, label, spurious,
    hallucination).  A parsed reply whose criteria are not all numbers would stop the released script
    (KeyError / TypeError); here it is counted in `n_reply_malformed` and left out."""
    good: list[Mapping[str, Any]] = []
    malformed = 0
    for reply in replies.values():
        if all(isinstance(reply.get(k), (int, float)) for k in JUDGE_KEYS):  # bool is an int, as in sum()
            good.append(reply)
        else:
            malformed += 1
    means: dict[str, Any] = {name: (sum(float(r[key]) for r in good) / len(good) if good else None)
                             for key, name in JUDGE_KEYS.items()}
    return {**means, "n_judged": len(good), "n_reply_malformed": malformed}


def record_text(rec: Mapping[str, Any] | None) -> str | None:
    """The answer of one of the kit's prediction records, as the file the released scripts would read:
    None (no file) when there is no record or it holds no generation (e.g. a clip that failed to decode)."""
    if not rec:
        return None
    gen = rec.get("generation")
    return gen if isinstance(gen, str) else None
