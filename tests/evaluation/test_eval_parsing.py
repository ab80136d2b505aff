"""Answer extraction: the corrected (strict) rules on tricky answers (the released rules: test_paper_mode.py)."""
import pytest

from avere_utils.evaluation.parsing import split_choice, strict_label, strict_letter, yes_no_choice

# --- classification: strict -------------------------------------------------------------------------
STRICT_TABLE = [
    ("I'd say sad.", "sadness"),
    ("not happy, rather angry", "anger"),
    ("Normal.", "neutral"),
    ("a surprised look", "surprise"),
    ("Happiness", "happiness"),
    ("HAPPY!", "happiness"),
    ("The person looks scared.", "fear"),
    ("afraid", "fear"),
    ("upset", "sadness"),
    ("Angrily shouting", "anger"),
    ("disgusted", "disgust"),
    ("He is not sad at all, just calm.", "neutral"),
    ("Neither happy nor sad.", None),
    ("I don't know.", None),
    ("", None),
    (None, None),
    ("unhappy", "sadness"),  # a word of its own, not "happy"
    ("The speaker isn't angry but surprised", "surprise"),
    ("She is happy. Not angry.", "happiness"),
    ("without fear, full of joy", "happiness"),
    ("madness", None),  # word boundaries: "mad" inside another word is not anger
]


@pytest.mark.parametrize("answer,label", STRICT_TABLE)
def test_strict_label_table(answer, label):
    assert strict_label(answer) == label


# --- EmoReAlM letters ------------------------------------------------------------------------------
MCQ = ["(A) a broad smile", "(B) furrowed brows", "(C) a yellow background", "(D) a quiet soft voice"]
YN = ["(A) Yes", "(B) No"]

STRICT_LETTER_TABLE = [
    ("(C)", MCQ, "C"),
    ("The answer is B", MCQ, "B"),
    ("The answer is B.", MCQ, "B"),
    ("answer: (d)", MCQ, "D"),
    ("a", MCQ, "A"),  # a bare letter is a choice
    ("B", MCQ, "B"),
    ("c.", MCQ, "C"),
    ("A broad smile shows happiness.", MCQ, "A"),  # article + the choice text of (A)
    ("a yellow background", MCQ, "C"),  # the article "a" is not option A; the text matches (C)
    ("The answer is a smile", MCQ, None),  # "a" after "answer is" is an article
    ("B: furrowed brows", MCQ, "B"),
    ("(A) or (B)", MCQ, None),  # two letters: no single choice
    ("I think C", MCQ, "C"),
    ("furrowed brows", MCQ, "B"),
    ("no idea", MCQ, None),
    ("", MCQ, None),
    ("Yes.", YN, "A"),
    ("No, it does not.", YN, "B"),
    ("yes", YN, "A"),
    ("(B) No", YN, "B"),
    ("It is hard to say", YN, None),
    ("a", YN, "A"),
]


@pytest.mark.parametrize("answer,choices,letter", STRICT_LETTER_TABLE)
def test_strict_letter_table(answer, choices, letter):
    assert strict_letter(answer, choices) == letter


def test_choice_helpers():
    assert split_choice("(B) furrowed brows") == ("B", "furrowed brows")
    with pytest.raises(ValueError, match="not of the form"):
        split_choice("B furrowed brows")
    assert yes_no_choice(YN) == {"yes": "A", "no": "B"}
    assert yes_no_choice(MCQ) is None
