"""`paper` mode = the released ihp-lab/AVERE evaluation rules, pinned on crafted answers.

Each table row is (answer as written to `<id>.txt`, expected outcome); the expectations were worked out
by hand from the released code and checked against a transcription of it (outside this repository).
"""
import json

import pytest

from avere_utils.emotions import EMOTIONS, MER2023_CLASSES
from avere_utils.evaluation import classification, emorealm
from avere_utils.evaluation.parsing import strict_label
from avere_utils.evaluation.released import (
    Outcome,
    batch_reply_content,
    paper_classify,
    paper_letter,
    released_answer_kind,
    released_average,
    released_classification_metrics,
    released_judge_means,
    released_label,
    released_letter_correct,
    released_parse_reply,
    released_task_metrics,
)
from avere_utils.records import Item

MISSING, ERROR = Outcome(dropped="missing"), Outcome(dropped="error")

# --- free text -> class (DFEW / RAVDESS, seven classes) -------------------------------------------------
CLASS_TABLE = [
    ("Happy", "happiness"),
    ("HAPPY!", "happiness"),  # lower-cased; "!" ends the first sentence
    ("The person is smiling.", "happiness"),
    ("Excitement", "surprise"),  # excitement is a surprise word
    ("Contempt", "disgust"),
    ("concern", "sadness"), ("concerned", "neutral"),
    # words absent from the lists, and text without any hit: the first class, happiness
    ("Sad", "happiness"), ("angry", "happiness"), ("scared", "happiness"), ("afraid", "happiness"),
    ("upset", "happiness"), ("completely unrelated text", "happiness"),
    # words in two lists: the class tried first wins (happiness, sadness, surprise, anger, neutral, disgust, fear)
    ("Serious.", "anger"), ("tension", "anger"), ("curiosity", "surprise"), ("discomfort", "sadness"),
    ("displeased", "anger"), ("quivering", "sadness"),
    # whole words, not substrings: "unhappy" is no hit, "crying" decides
    ("Unhappy, crying.", "sadness"),
    ("It's happy-ish", "happiness"),
    # sentences with a negation substring are removed: "no" in "normal", "know", "annoyed"
    ("The person looks normal. Anger is visible.", "anger"),
    ("You know, she is in despair. Fury.", "anger"),
    ("Annoyed. Smiling.", "happiness"),
    ("She is not happy. She is crying.", "sadness"),
    # ... unless nothing is left: then the whole text, negation included
    ("Not happy.", "happiness"),
    ("Neither angry nor sad.", "happiness"),
    # sentences end at "." or "?" followed by whitespace; the first word hit of the first sentence decides
    ("Disgust? Maybe fear.", "disgust"),
    ("Fear, then sadness.", "fear"),  # word order within the first sentence, not class order
    # no hit in the first sentence: most hits in the rest; ties go to the class tried first
    ("The person speaks. Rage and fury, but a smile.", "anger"),
    ("Hmm. Crying and rage.", "sadness"),
    ("Hmm. Fear, dread, and a smile.", "fear"),
]


@pytest.mark.parametrize("answer,label", CLASS_TABLE)
def test_released_label_table(answer, label):
    assert paper_classify(answer, EMOTIONS) == Outcome(label)


DROP_TABLE = [
    (None, MISSING),  # no prediction file
    ("", ERROR),  # the released mapping raises on the empty answer ...
    ("   \n", ERROR),  # ... which is what a blank file becomes after strip()
    ("happy\nthe person smiles", ERROR),  # no ".!?" on the first line: the first-sentence regex finds nothing
    ("happy.\nthe person smiles", Outcome("happiness")),  # punctuated first line: fine
]


@pytest.mark.parametrize("answer,outcome", DROP_TABLE)
def test_released_drops(answer, outcome):
    assert paper_classify(answer, EMOTIONS) == outcome


def test_mer2023_uses_five_classes():
    assert paper_classify("Fear.", MER2023_CLASSES) == Outcome("happiness")  # fear words count for nothing
    assert paper_classify("Disgust", MER2023_CLASSES) == Outcome("happiness")
    assert paper_classify("Fear.", EMOTIONS) == Outcome("fear")
    assert released_label("hmm. crying, rage, rage.", ("happiness", "sadness", "surprise", "anger", "neutral")) == "anger"


def test_strict_differs_where_released_is_flawed():
    for answer in ("Sad", "angry", "scared", "Annoyed. Smiling.", "Not happy."):
        assert strict_label(answer) != paper_classify(answer, EMOTIONS).value, answer


def test_released_classification_metrics_union_of_labels():
    # fear is predicted but no kept clip is fear: sklearn's macro recall counts it with recall 0
    y_true = ["happiness", "sadness", "sadness"]
    y_pred = ["happiness", "sadness", "fear"]
    m = released_classification_metrics(y_true, y_pred)
    assert m["uar"] == pytest.approx(100 * (1 + 0.5 + 0) / 3)
    assert m["war"] == pytest.approx(100 * 2 / 3)
    assert m["macro_f1"] == pytest.approx(100 * (1 + 2 / 3 + 0) / 3)
    assert m["weighted_f1"] == pytest.approx(100 * (1 + 2 * 2 / 3) / 3)
    assert released_classification_metrics([], [])["uar"] == 0.0


def test_released_classification_metrics_equal_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    import random

    rng = random.Random(3)
    for _ in range(50):
        n = rng.randint(1, 30)
        y_true = [rng.choice(EMOTIONS[:4]) for _ in range(n)]
        y_pred = [rng.choice(EMOTIONS) for _ in range(n)]
        m = released_classification_metrics(y_true, y_pred)
        assert m["uar"] == pytest.approx(100 * sk.recall_score(y_true, y_pred, average="macro", zero_division=0))
        assert m["war"] == pytest.approx(100 * sk.recall_score(y_true, y_pred, average="weighted", zero_division=0))
        assert m["macro_f1"] == pytest.approx(100 * sk.f1_score(y_true, y_pred, average="macro", zero_division=0))
        assert m["weighted_f1"] == pytest.approx(100 * sk.f1_score(y_true, y_pred, average="weighted",
                                                                   zero_division=0))


def _clf_items(labels):
    return [Item(id=f"c{i}", dataset="dfew", split="test", label=lab) for i, lab in enumerate(labels)]


def test_classification_denominators_per_mode():
    items = _clf_items(["happiness", "sadness", "anger", "fear", "neutral"])
    records = {"c0": {"generation": "Happy."},
               "c1": {"generation": ""},  # empty answer: released mapping raises -> dropped (error)
               # c2: no record at all -> dropped (missing)
               "c3": {"id": "c3", "error": "could not decode"},  # no generation = no prediction file
               "c4": {"generation": "Sad"}}  # no hit -> happiness, wrong
    labels = {m: classification.predicted_labels(m, items, records, EMOTIONS) for m in ("paper", "strict")}
    paper = classification.score_mode("paper", items, labels["paper"], records, EMOTIONS)
    assert (paper["n_items"], paper["n_scored"], paper["n_dropped_missing"], paper["n_dropped_error"]) == (5, 2, 2, 1)
    # kept: happiness->happiness, neutral->happiness; labels = {happiness, neutral}: recalls 1 and 0
    assert paper["uar"] == pytest.approx(50.0) and paper["war"] == pytest.approx(50.0)
    strict = classification.score_mode("strict", items, labels["strict"], records, EMOTIONS)
    assert (strict["n_scored"], strict["n_dropped_missing"], strict["n_dropped_error"]) == (5, 0, 0)
    assert strict["war"] == pytest.approx(20.0)  # only "Happy." is right; the rest are wrong, counted


# --- EmoReAlM ---------------------------------------------------------------------------------------------
LETTER_TABLE = [
    ("A", "A", True), ("a", "A", True), ("(B)", "B", True), ("[c]", "C", True), ("b.", "B", True),
    ("Answer: D:", "D", True), ("Option (A).", "A", True), ("(a)", "A", True),
    ("It shows a smile", "A", True),  # the article "a" is option A
    ("(A) or (B)", "A", True), ("(A) or (B)", "B", True),  # several letters: right for each
    ("The answer is B", "A", False),  # "a" inside "answer" is not a letter between word boundaries
    ("ab", "A", False), ("The baby", "B", False), ("(A)", "B", False),
    ("Yes", "A", False), ("No.", "B", False),  # Yes/No answered in words: wrong, never mapped to the choice
    ("", "A", False),  # empty answer: kept, wrong
]


@pytest.mark.parametrize("answer,letter,correct", LETTER_TABLE)
def test_released_letter_table(answer, letter, correct):
    assert released_letter_correct(answer.strip().lower(), letter) is correct
    assert paper_letter(answer, letter) == Outcome(correct)


def test_released_letter_drops_only_missing():
    assert paper_letter(None, "A") == MISSING
    assert paper_letter("   ", "A") == Outcome(False)


@pytest.mark.parametrize("choices,answer,kind", [
    (["(A) Yes", "(B) No"], "A", "yes"), (["(A) Yes", "(B) No"], "B", "no"),
    (["A: No", "B: Yes, clearly"], "A", "no"), (["A. Not sure", "B. Yes"], "A", "no"),
    (["(A) Yes, definitely", "(B) No"], "A", "yes"),
])
def test_released_answer_kind(choices, answer, kind):
    assert released_answer_kind(choices, answer) == kind


def test_released_answer_kind_unknown_raises():
    with pytest.raises(ValueError, match="Yes or No"):
        released_answer_kind(["(A) maybe", "(B) perhaps"], "A")


def test_released_yes_no_task_metrics():
    # Yes-items: right, right, wrong; No-item: wrong
    m = released_task_metrics([True, True, False, False], ["yes", "yes", "yes", "no"])
    assert m["accuracy"] == pytest.approx(50.0)
    assert m["yes_accuracy"] == pytest.approx(200 / 3) and m["no_accuracy"] == 0.0
    assert m["f1"] == 0.0
    assert m["yes_rate"] == pytest.approx(75.0)  # 2 right Yes + 1 wrong No, of 4
    # both sides 0: the released script divides by zero; undefined here
    assert released_task_metrics([False, False], ["yes", "no"])["f1"] is None
    # a side without items counts as 0, as released
    only_yes = released_task_metrics([True], ["yes"])
    assert only_yes["no_accuracy"] == 0.0 and only_yes["f1"] == 0.0
    assert released_task_metrics([], [])["accuracy"] == 0.0
    assert released_average([50.0, 0.0, 100.0]) == pytest.approx(50.0)
    assert released_average([]) == 0.0


def _qa(iid, task, answer, choices, kind=None):
    text = {"task": task, "question": "q?", "choices": choices, "answer": answer}
    if kind:
        text["kind"] = kind
    return Item(id=iid, dataset="emorealm", split="test", text=text)


YN, MCQ = ["(A) Yes", "(B) No"], ["(A) a smile", "(B) a frown", "(C) tears", "(D) a shrug"]


def test_emorealm_paper_mode_denominators_and_average():
    items = [_qa("m1", "reasoning_basic_audio", "B", MCQ), _qa("m2", "reasoning_basic_audio", "C", MCQ),
             _qa("m3", "reasoning_basic_audio", "D", MCQ),
             _qa("s1", "reasoning_stress_video", "A", YN, "relevant"),
             _qa("s2", "reasoning_stress_video", "B", YN, "hallucination"),
             _qa("s3", "reasoning_stress_video", "B", YN, "spurious"),
             _qa("v1", "reasoning_basic_video", "A", MCQ)]
    records = {"m1": {"generation": "(B) a frown"}, "m2": {"generation": ""},  # m3 missing
               "s1": {"generation": "A"}, "s2": {"generation": "Yes"}, "s3": {"generation": "(B)"}}
    tasks = ["reasoning_basic_audio", "reasoning_basic_video", "reasoning_stress_video"]
    m = emorealm.score_mode("paper", items, records, tasks)
    ba = m["tasks"]["reasoning_basic_audio"]
    assert (ba["n_items"], ba["n_scored"], ba["n_dropped_missing"], ba["accuracy"]) == (3, 2, 1, 50.0)
    sv = m["tasks"]["reasoning_stress_video"]
    assert sv["accuracy"] == pytest.approx(200 / 3)
    assert (sv["yes_accuracy"], sv["no_accuracy"], sv["f1"]) == (100.0, 50.0, pytest.approx(200 / 3))
    assert sv["yes_rate"] == pytest.approx(200 / 3)  # s1 right Yes, s2 wrong No
    # basic_video: its only prediction is missing -> accuracy 0, and still in the average
    assert m["tasks"]["reasoning_basic_video"]["accuracy"] == 0.0
    assert m["average_accuracy"] == pytest.approx((50 + 0 + 200 / 3) / 3)
    assert (m["n_items"], m["n_scored"], m["n_dropped_missing"], m["n_dropped_error"]) == (7, 5, 2, 0)
    assert m["by_kind"]["hallucination"]["yes_rate"] == 100.0  # the wrong No answer = said Yes
    assert m["by_kind"]["spurious"]["yes_rate"] == 0.0
    strict = emorealm.score_mode("strict", items, records, tasks)
    assert strict["tasks"]["reasoning_stress_video"]["yes_rate"] == pytest.approx(200 / 3)  # "A" and "Yes"
    assert strict["n_dropped_missing"] == 0 and strict["n_scored"] == 7


# --- EMER judge replies -----------------------------------------------------------------------------------
REPLY = {"cue_overlap": 7, "emotion_consistency": 8, "emotion_cue_association": 6, "hallucinated_cues": 5}


@pytest.mark.parametrize("content,parsed", [
    ("```json\n" + json.dumps(REPLY) + "\n```", REPLY),
    (json.dumps(REPLY), REPLY),
    ("json " + json.dumps(REPLY), REPLY),  # leading characters from "`json" are stripped, not a prefix
    ("Sure! " + json.dumps(REPLY), None),
    ("[1, 2]", None), ("", None), (None, None),
])
def test_released_parse_reply(content, parsed):
    assert released_parse_reply(content) == parsed


def test_released_judge_means():
    other = {"cue_overlap": 3, "emotion_consistency": 4, "emotion_cue_association": 8, "hallucinated_cues": 9}
    m = released_judge_means({"a": REPLY, "b": other, "c": {"cue_overlap": 1}})
    assert (m["clue"], m["label"], m["spurious"], m["hallucination"]) == (5.0, 6.0, 7.0, 7.0)
    assert (m["n_judged"], m["n_reply_malformed"]) == (2, 1)
    assert released_judge_means({})["clue"] is None
    row = {"custom_id": "x", "response": {"body": {"choices": [{"message": {"content": "{}"}}]}}}
    assert batch_reply_content(row) == "{}" and batch_reply_content({"custom_id": "x"}) is None
