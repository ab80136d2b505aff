"""evaluation/mcq_reading.py: the two halves of a generated multiple-choice answer, counted apart."""
from __future__ import annotations

import pytest

from avere_utils.evaluation.mcq_reading import read_item, split_answer, summary
from avere_utils.records import Item

CHOICES = ["(A) a trembling voice", "(B) a harsh low pitch", "(C) a breathy voice", "(D) rain noise"]


def _item(i: int, answer: str = "C", present=("a breathy voice", "a trembling voice"), task="reasoning_basic_audio"):
    cues = {"audio": {"present": list(present), "absent": [], "context": ["rain noise"]},
            "visual": {"present": ["a broad smile"], "absent": [], "context": []}}
    return Item(id=f"q{i}", dataset="emorealm", split="test", video=None, audio=None, label=None,
                text={"task": task, "question": "Which audio cue?", "choices": CHOICES, "answer": answer, "cues": cues})


@pytest.mark.parametrize("answer, want", [
    ("a breathy voice (C)", ("a breathy voice", "C")),
    ("a breathy voice (c).", ("a breathy voice", "C")),
    ("(C) a breathy voice", ("a breathy voice", "C")),
    ("a breathy voice", ("a breathy voice", None)),
    ("(C)", ("(C)", None)),
    ("", ("", None)),
])
def test_split_answer_reads_both_lettered_forms(answer, want):
    assert split_answer(answer) == want


def test_read_item_tells_the_text_from_the_letter():
    it = _item(0)
    assert read_item(it, "a breathy voice (C)") == {
        "text_choice": "C", "text_right": True, "letter": "C", "letter_is_texts": True,
        "text_is_present_cue": True, "chance_if_choices_ignored": 0.5}
    wrong_letter = read_item(it, "A breathy voice (D)")  # case and the letter of the next choice
    assert wrong_letter["text_right"] and not wrong_letter["letter_is_texts"]
    wrong_text = read_item(it, "a trembling voice (A)")  # a present cue, but not the asked one
    assert wrong_text["text_choice"] == "A" and not wrong_text["text_right"] and wrong_text["letter_is_texts"]
    off_list = read_item(it, "a quiet soft voice (C)")
    assert off_list["text_choice"] is None and not off_list["letter_is_texts"] and not off_list["text_is_present_cue"]


def test_summary_percentages_and_the_ignore_the_choices_baseline():
    items = [_item(0), _item(1, present=("a breathy voice",)), _item(2), _item(3),
             _item(4, task="reasoning_stress_audio"), _item(5)]
    gens = {"q0": "a breathy voice (C)", "q1": "a breathy voice (B)", "q2": "a trembling voice (A)",
            "q3": "a quiet soft voice (C)", "q4": "Yes (A)", "q5": None}
    s = summary(items, gens)
    assert s["n_items"] == 4  # the stress item and the one without a generation are not counted
    assert s["pct_text_is_a_choice"] == 75.0 and s["pct_text_right"] == 50.0
    assert s["n_letter_checked"] == 3 and s["pct_letter_is_the_texts"] == pytest.approx(200 / 3)
    assert s["pct_text_is_a_present_cue"] == 75.0
    # one present cue: 1.0; two: 0.5 each -> (0.5 + 1 + 0.5 + 0.5) / 4
    assert s["pct_text_right_if_choices_ignored"] == pytest.approx(62.5)


def test_summary_without_generations_or_cue_records():
    assert summary([_item(0)], {"q0": None}) is None
    bare = _item(0)
    bare.text.pop("cues")
    s = summary([bare], {"q0": "a breathy voice (C)"})
    assert s["pct_text_right"] == 100.0 and "pct_text_right_if_choices_ignored" not in s
