"""The held-out stress wordings, the description checks, and the side-by-side descriptions of the report."""
from __future__ import annotations

import json

import numpy as np

from avere_utils.evaluation.text_quality import description_checks, leaks_answer, quality_summary, repeated_phrase
from avere_utils.report.descriptions import compare_descriptions, cue_status, mark_cues
from avere_utils.synth.heldout import (
    HELDOUT_STRESS_WORDINGS,
    heldout_stress_items,
    shared_ngrams,
    template_ngrams,
    training_templates,
)

CUES = {"video_emotion": "happiness", "audio_emotion": "happiness",
        "visual": {"present": ["a broad smile"], "absent": ["crinkled eyes"], "context": ["a yellow background"]},
        "audio": {"present": ["a high rising pitch"], "absent": ["a quick lively pace"], "context": ["rain noise"]}}


def test_heldout_wordings_share_no_four_word_sequence_with_any_training_template():
    heldout = [w for ws in HELDOUT_STRESS_WORDINGS.values() for w in ws]
    training = training_templates()
    assert len(training) > 50  # SFT prompts, captions, questions and every pair template
    assert shared_ngrams(heldout, training) == set()
    # the check sees through the slots: "{cue} in the {where}" is the kit's wording, whatever fills it
    assert shared_ngrams(["Is {x} in the {y} there?"], ["Does {cue} in the {where} contribute?"]) == {
        ("<slot>", "in", "the", "<slot>")}
    assert template_ngrams("A b, c d!") == {("a", "b", "c", "d")}


def test_heldout_items_cover_both_stress_tasks_and_kinds_with_the_right_answers():
    records = {f"c{i}": CUES for i in range(10)}
    items = heldout_stress_items(records, {c: f"part_1/{c}.mp4" for c in records}, 8, np.random.default_rng(0))
    assert len(items) == 16 and {it["task"] for it in items} == {"reasoning_stress_audio", "reasoning_stress_video"}
    assert [it["kind"] for it in items[:4]] == ["relevant", "spurious", "relevant", "hallucination"]
    for it in items:
        assert it["answer"] == ("A" if it["kind"] == "relevant" else "B") and it["choices"] == ["(A) Yes", "(B) No"]
        modality = "visual" if it["task"].endswith("video") else "audio"
        asked = [c for part in ("present", "context", "absent") for c in CUES[modality][part] if c in it["question"]]
        part = {"relevant": "present", "spurious": "context", "hallucination": "absent"}[it["kind"]]
        assert asked and asked[0] in CUES[modality][part], it


def test_description_checks_flag_leaks_loops_and_missing_emotions():
    good = "The person appears to feel happiness. The face shows a broad smile, which points to happiness."
    assert description_checks(good, CUES, "happiness") == {
        "names_emotion": True, "leaks_answer": False, "repeats_phrase": False, "cites_present_cue": True,
        "cites_absent_typical_cue": False, "cites_context_cue": False}
    broken = "Crinkled eyes and crinkled eyes. The happiness is reinforced by a yellow background.) Yes"
    checks = description_checks(broken, CUES, "happiness")
    assert checks["leaks_answer"] and checks["cites_absent_typical_cue"] and checks["cites_context_cue"]
    assert not checks["cites_present_cue"]
    assert repeated_phrase("a glaring stare, a glaring stare") == "a glaring stare"
    assert leaks_answer("so the answer is (B)") and leaks_answer("No.") and not leaks_answer("a normal nose")
    summary = quality_summary([description_checks(good, CUES, "happiness"), checks])
    assert summary["n_descriptions"] == 2 and summary["pct_leaks_answer"] == 50.0


def test_descriptions_side_by_side_mark_every_cited_cue(tmp_path):
    assert cue_status("crinkled eyes", CUES) == "absent" and cue_status("a glaring stare", CUES) == "other"
    assert cue_status("a blue background", CUES) == "context_not_shown"
    marked = mark_cues("A broad smile; rain noise and crinkled eyes.", CUES)
    assert marked == "A broad smile [✓]; rain noise [context] and crinkled eyes [ABSENT]."
    (tmp_path / "manifests").mkdir()
    (tmp_path / "predictions").mkdir()
    (tmp_path / "manifests" / "emer.jsonl").write_text("".join(
        json.dumps({"id": f"e{i}", "label": "happiness", "text": {"cues": CUES}}) + "\n" for i in range(3)))
    for v, text in (("reference", "Crinkled eyes show happiness."), ("avem_dpo", "A broad smile shows happiness.")):
        (tmp_path / "predictions" / f"emer-{v}.jsonl").write_text("".join(
            json.dumps({"id": f"e{i}", "generation": text}) + "\n" for i in range(2)) + '{"id": "e2", "gen')
    frame = compare_descriptions(tmp_path, ["reference", "avem_dpo", "missing"], n=6)
    assert list(frame["clip"]) == ["e0", "e0", "e1", "e1"]  # e2's line is cut: not described by both
    assert frame.set_index(["clip", "variant"]).loc[("e0", "reference"), "n_absent"] == 1
