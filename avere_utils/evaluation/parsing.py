"""Turning a model's free text into a label (classification) or a chosen letter (EmoReAlM).

These are the corrected (`strict`) rules: a lexicon that knows adjectives and inflections, word-boundary
negation, and no default class (unmatched text is wrong and counted by the caller).  The released rules
(`paper` mode), flaws included, live in evaluation/released.py.

All functions are pure (text in, label/letter out) and unit-tested on tables of crafted answers.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Sequence

# --- classification: the corrected (strict) mapping --------------------------------------------------
STRICT_LEXICON: dict[str, tuple[str, ...]] = {
    "happiness": ("happiness", "happy", "happier", "happiest", "happily", "joy", "joyful", "joyous",
                  "cheerful", "cheerfully", "glad", "delighted", "delight", "pleased", "content", "contented",
                  "elated", "excited", "excitement", "amused", "amusement", "pleasure", "smiling"),
    "sadness": ("sadness", "sad", "sadder", "saddest", "sadly", "sorrow", "sorrowful", "unhappy",
                "unhappiness", "upset", "depressed", "depression", "gloomy", "melancholy", "melancholic",
                "grief", "grieving", "miserable", "heartbroken", "tearful", "crying", "dejected", "downcast"),
    "neutral": ("neutral", "neutrality", "calm", "calmness", "normal", "indifferent", "indifference",
                "expressionless", "impassive", "composed", "blank", "unemotional", "emotionless"),
    "anger": ("anger", "angry", "angrier", "angriest", "angrily", "mad", "furious", "fury", "rage",
              "raging", "enraged", "irritated", "irritation", "annoyed", "annoyance", "frustrated",
              "frustration", "irate", "hostile", "outraged", "resentful"),
    "surprise": ("surprise", "surprised", "surprising", "surprisingly", "astonished", "astonishment",
                 "amazed", "amazement", "shocked", "shock", "startled", "stunned"),
    "disgust": ("disgust", "disgusted", "disgusting", "revulsion", "repulsed", "revolted", "contempt",
                "contemptuous", "aversion", "grossed out"),
    "fear": ("fear", "fearful", "afraid", "scared", "frightened", "fright", "terrified", "terror",
             "anxious", "anxiety", "nervous", "nervousness", "worried", "worry", "panic", "panicked",
             "panicky", "alarmed"),
}
# Whole words (or the clitic n't) that negate an emotion word shortly after them.
STRICT_NEGATIONS: tuple[str, ...] = ("not", "no", "never", "without", "hardly", "barely", "neither", "nor",
                                     "isn't", "doesn't", "don't", "wasn't", "aren't", "n't")
STRICT_NEGATION_TOKENS = 3  # a negation word at most this many words before the emotion word


@lru_cache(maxsize=1)
def _strict_regex() -> re.Pattern[str]:
    words = sorted({w for ws in STRICT_LEXICON.values() for w in ws}, key=lambda w: (-len(w), w))
    return re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)


@lru_cache(maxsize=1)
def _strict_word_to_label() -> dict[str, str]:
    out: dict[str, str] = {}
    for label, words in STRICT_LEXICON.items():
        for w in words:
            if w in out:
                raise ValueError(f"strict lexicon word {w!r} listed under {out[w]} and {label}")
            out[w] = label
    return out


_CLAUSE_BREAK = re.compile(r"[.,;:!?()]|\b(?:but|rather|instead)\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def _negated(text: str, start: int) -> bool:
    """Is the word at `start` negated by one of the few words before it, in the same clause?"""
    clause = _CLAUSE_BREAK.split(text[:start])[-1].lower()
    words = _WORD.findall(clause)[-STRICT_NEGATION_TOKENS:]
    return any(w in STRICT_NEGATIONS or w.endswith("n't") for w in words)


def strict_label(answer: str | None) -> str | None:
    """The first non-negated emotion word of the answer, as a canonical label; None when there is none.

    A label outside a benchmark's classes (e.g. "fear" on MER2023's five) is still returned: it is a wrong
    prediction, not a missing one, and the confusion matrix's "other" column shows it.
    """
    if not answer:
        return None
    lookup = _strict_word_to_label()
    for m in _strict_regex().finditer(answer):
        if not _negated(answer, m.start()):
            return lookup[m.group(1).lower()]
    return None


# --- EmoReAlM: choices -------------------------------------------------------------------------------
_CHOICE = re.compile(r"^\s*\(([A-Z])\)\s*(.*?)\s*$", re.DOTALL)


def split_choice(choice: str) -> tuple[str, str]:
    """'(B) furrowed brows' -> ('B', 'furrowed brows'); ValueError naming the choice otherwise."""
    m = _CHOICE.match(choice)
    if not m:
        raise ValueError(f"choice {choice!r} is not of the form '(X) text'")
    return m.group(1), m.group(2)


def choice_letters(choices: Sequence[str]) -> list[str]:
    return [split_choice(c)[0] for c in choices]


# --- EmoReAlM: the corrected (strict) letter rule ----------------------------------------------------
_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
# "answer is B", "Option: (c)"; a bare lower-case letter after the keyword is not accepted ("the answer
# is a smile" names no option).
_EXPLICIT = re.compile(
    r"(?i:\b(?:answer|option|choice))\s*(?i:is|would be)?\s*:?\s*(?:\(([A-Za-z])\)|([A-Z])(?![A-Za-z]))")


def strict_letter(answer: str | None, choices: Sequence[str]) -> str | None:
    """The one letter the answer chooses, or None when it chooses none or several (scored wrong).

    In order: a whole answer that is just a letter ("B", "(c)", "a."); letters in parentheses "(C)";
    "the answer is B" / "option B"; capital letters standing alone ("B: a smile"), where a capital "A"
    followed by a lower-case word is the article, not option A; then the choice text itself, and for
    Yes/No questions the first yes/no word.  A lower-case "a" inside a sentence is always the article.
    """
    if not answer or not answer.strip():
        return None
    parsed = [split_choice(c) for c in choices]
    letters = [p[0] for p in parsed]
    text = answer.strip()

    bare = re.fullmatch(r"\(?\s*([A-Za-z])\s*\)?\s*[.!]?", text)
    if bare and bare.group(1).upper() in letters:
        return bare.group(1).upper()

    def unique(found: list[str]) -> str | None:
        found = [f.upper() for f in found if f.upper() in letters]
        return found[0] if found and len(set(found)) == 1 else None

    for pattern in (r"\(([A-Za-z])\)", None):
        found = (re.findall(pattern, text) if pattern
                 else [m.group(1) or m.group(2) for m in _EXPLICIT.finditer(text)])
        if found:
            return unique(found)

    capitals = [m.group(1) for m in re.finditer(r"(?<![A-Za-z'])([A-Z])(?![A-Za-z'])", text)
                if not (m.group(1) == "A" and re.match(r"\s+[a-z]", text[m.end():]))
                and not (m.group(1) == "I")]
    if capitals:
        return unique(capitals)

    lowered = text.lower()
    texts = [t.lower() for _, t in parsed]
    if set(texts) <= {"yes", "no"}:
        m = _YES_NO.search(lowered)
        return letters[texts.index(m.group(1).lower())] if m and m.group(1).lower() in texts else None
    hits = [letters[i] for i, t in enumerate(texts) if t and re.search(r"\b" + re.escape(t) + r"\b", lowered)]
    return hits[0] if len(hits) == 1 else None


def yes_no_choice(choices: Sequence[str]) -> dict[str, str] | None:
    """{'yes': letter, 'no': letter} for a Yes/No question, else None."""
    out = {t.strip().lower().rstrip("."): letter for letter, t in map(split_choice, choices)}
    return out if set(out) == {"yes", "no"} else None
