"""SFT stress contrasts (synth/contrasts.py, sft.sft_records' `counterfactual` task): the annotator's answer on
the counterfactual clip, and the two records each contrast adds.  Pure functions, no model, no rendering."""
from __future__ import annotations

import numpy as np
import pytest

from avere_utils.emotions import VISUAL_CUES
from avere_utils.models.params import DEFAULT_SFT_TASKS
from avere_utils.models.sft import sft_records
from avere_utils.records import Item
from avere_utils.synth.contrasts import COUNTERFACTUAL_KIND, StressContrast, _answered_from_truth, annotator_letter

SMILE = VISUAL_CUES["happiness"]["mouth"]
RECORD = {"video_emotion": "happiness", "audio_emotion": "happiness",
          "visual": {"present": [SMILE], "absent": [VISUAL_CUES["happiness"]["eyes"]], "context": []},
          "audio": {"present": [], "absent": [], "context": []}}


def stress_qa(kind: str, answer: str) -> dict:
    return {"task": "reasoning_stress_video", "question": f"Does {SMILE} in the video show that the person is happy?",
            "choices": ["(A) Yes", "(B) No"], "answer": answer, "kind": kind, "cue": SMILE}


def test_the_counterfactual_kind_swaps_relevant_and_hallucination():
    assert COUNTERFACTUAL_KIND == {"relevant": "hallucination", "hallucination": "relevant"}


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.6, 1.0])
def test_the_annotator_keeps_its_noise_on_the_counterfactual(rate):
    """Asked as a hallucination question, the flat annotator says Yes at its rate; as a relevant one, always Yes."""
    qa = stress_qa("relevant", "A")
    hal = [annotator_letter(qa, "hallucination", RECORD, rate, 0.0, f"clip-{k}") for k in range(2000)]
    rel = [annotator_letter(qa, "relevant", RECORD, rate, 0.0, f"clip-{k}") for k in range(200)]
    assert set(rel) == {"A"}
    assert abs(np.mean([x == "A" for x in hal]) - rate) < 0.04


def test_the_annotators_draw_is_fixed_by_its_key():
    qa = stress_qa("hallucination", "B")
    assert {annotator_letter(qa, "hallucination", RECORD, 0.5, 0.0, "train_00007-cf-1") for _ in range(5)} == \
        {annotator_letter(qa, "hallucination", RECORD, 0.5, 0.0, "train_00007-cf-1")}


def item(n_contrasts: int) -> tuple[Item, dict]:
    it = Item(id="train_00001", dataset="train_source", split="train", video="v.mp4", audio="a.wav",
              label="happiness", text={"cues": RECORD, "qa": [stress_qa("relevant", "A")]})
    contrasts = {it.id: [StressContrast(stress_qa("relevant", "A"), f"train_00001-cf-{k}", "cf.mp4", "cf.wav",
                                        "B" if k % 2 == 0 else "A") for k in range(n_contrasts)]}
    return it, contrasts


def test_a_contrast_adds_the_question_on_both_clips_in_one_batch_group():
    it, contrasts = item(1)
    recs = sft_records([it], ["counterfactual"], contrasts=contrasts, counterfactual_per_clip=1)
    assert [(r.item_id, r.response) for r in recs] == [("train_00001", "Yes (A)"), ("train_00001-cf-0", "No (B)")]
    assert recs[0].prompt == recs[1].prompt
    assert {r.group for r in recs} == {"train_00001"} and {r.task for r in recs} == {"counterfactual"}


def test_contrasts_rotate_per_epoch_and_zero_takes_them_all():
    it, contrasts = item(3)
    first = [r.item_id for r in sft_records([it], ["counterfactual"], epoch=0, contrasts=contrasts,
                                            counterfactual_per_clip=1)]
    second = [r.item_id for r in sft_records([it], ["counterfactual"], epoch=1, contrasts=contrasts,
                                             counterfactual_per_clip=1)]
    assert first[1] != second[1]
    every = sft_records([it], ["counterfactual"], contrasts=contrasts, counterfactual_per_clip=0)
    assert len(every) == 6


def test_the_task_is_opt_in_and_a_clip_without_contrasts_is_counted(caplog):
    assert "counterfactual" not in DEFAULT_SFT_TASKS
    it, _ = item(0)
    with caplog.at_level("WARNING"):
        assert sft_records([it], ["counterfactual"], contrasts={}) == []
    assert "'counterfactual': 1" in caplog.text


def test_a_contrast_answered_from_the_truth_overrides_the_manifests_noisy_answer():
    it, _ = item(0)
    noisy = {**stress_qa("hallucination", "A"), "noisy": True}  # the annotator said Yes to an absent cue
    contrasts = {it.id: [StressContrast(noisy, "train_00001-cf-0", "cf.mp4", "cf.wav", "A", answer="B")]}
    recs = sft_records([it], ["counterfactual"], contrasts=contrasts, counterfactual_per_clip=1)
    assert [r.response for r in recs] == ["No (B)", "Yes (A)"]


@pytest.mark.parametrize("share", [0.0, 0.25, 0.5, 1.0])
def test_the_truth_share_is_a_fixed_draw_per_contrast(share):
    drawn = [_answered_from_truth(f"train_{k:05d}-cf-x", share) for k in range(2000)]
    assert abs(np.mean(drawn) - share) < 0.04
    assert drawn == [_answered_from_truth(f"train_{k:05d}-cf-x", share) for k in range(2000)]
