"""Counterfactual clips, the same-cue stress form, the cue-specific text prior and the media-sensitivity
summary: pure functions on recipes, cue records and score tables (no model, no rendering)."""
from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from avere_utils.emotions import AUDIO_CUES, VISUAL_CUES
from avere_utils.evaluation.media_sensitivity import flip_share, sensitivity_summary
from avere_utils.pairs.build import counterfactual_cues
from avere_utils.pairs.cues import CueRecord, check_sample
from avere_utils.pairs.inputs import ClipRef, RejectedInput, RejectedInputPicker
from avere_utils.pairs.templates import SAME_CUE_CLAIMS, stress_ask, stress_sample
from avere_utils.synth.counterfactual import COUNTERFACTUAL_DIR, cue_present, locate_cue, toggle_cue, toggle_cues
from avere_utils.synth.spec import ClipSpec, WorldConfig, cue_record, draw_parts, typicality
from avere_utils.synth.text import noisy_answer_rate


def spec(visual=("mouth",), audio=("pitch", "energy"), emotion="happiness") -> ClipSpec:
    return ClipSpec(clip_id="train_00001", dataset="train_source", video_emotion=emotion, audio_emotion=emotion,
                    visual_parts=visual, audio_parts=audio, background="a yellow background", obj="a coffee mug",
                    ambience="a soft piano tune", seed=123, fps=24, seconds=2.0,
                    video_path="train_source/clips/train_00001.mp4", wav_path="train_source/wavs/train_00001.wav")


SMILE, BROWS, EYES = (VISUAL_CUES["happiness"][p] for p in ("mouth", "brows", "eyes"))
PITCH, ENERGY, TEMPO = (AUDIO_CUES["happiness"][p] for p in ("pitch", "energy", "tempo"))


# --- counterfactual recipes ------------------------------------------------------------------------------
def test_locate_cue_finds_parts_and_context_and_nothing_else():
    s = spec()
    assert locate_cue(s, "visual", SMILE) == ("part", "mouth")
    assert locate_cue(s, "visual", BROWS) == ("part", "brows")  # absent, still a part of the emotion
    assert locate_cue(s, "visual", "a coffee mug") == ("context", "obj")
    assert locate_cue(s, "audio", "a soft piano tune") == ("context", "ambience")
    assert locate_cue(s, "visual", VISUAL_CUES["anger"]["mouth"]) is None  # another emotion's cue
    assert locate_cue(s, "visual", "a blue background") is None  # a context the clip does not have


def test_toggle_without_balance_flips_exactly_the_cue():
    s = spec()
    gone = toggle_cue(s, "visual", SMILE, balance=False)
    assert gone.visual_parts == () and gone.audio_parts == s.audio_parts
    added = toggle_cue(s, "visual", EYES, balance=False)
    assert added.visual_parts == ("mouth", "eyes")
    assert cue_present(added, "visual", EYES) and not cue_present(s, "visual", EYES)


def test_balanced_toggle_keeps_the_number_of_parts():
    s = spec(visual=("mouth", "brows"))
    for cue in (SMILE, BROWS, EYES):
        cf = toggle_cue(s, "visual", cue)
        assert len(cf.visual_parts) == len(s.visual_parts)
        assert cue_present(cf, "visual", cue) != cue_present(s, "visual", cue)
    # every part rendered: adding is impossible, removing one cannot be balanced by another absent one
    full = spec(audio=("pitch", "energy", "tempo"))
    assert toggle_cue(full, "audio", PITCH).audio_parts == ("energy", "tempo")


def test_context_is_replaced_and_the_rest_kept():
    s = spec()
    cf = toggle_cue(s, "visual", "a yellow background")
    assert cf.background != s.background and cf.obj == s.obj and cf.visual_parts == s.visual_parts
    assert cf.seed == s.seed and cf.video_emotion == s.video_emotion  # same draws, same emotion


def test_toggle_is_deterministic_and_names_its_files_by_the_cues():
    s = spec(visual=("mouth", "brows"))
    a, b = toggle_cues(s, {"visual": [EYES]}), toggle_cues(s, {"visual": [EYES]})
    assert a == b
    assert a.video_path.startswith(f"{COUNTERFACTUAL_DIR}/") and a.wav_path.startswith(f"{COUNTERFACTUAL_DIR}/")
    assert toggle_cues(s, {"visual": [SMILE]}).clip_id != a.clip_id
    assert toggle_cues(s, {"visual": [VISUAL_CUES["fear"]["eyes"]]}) is None


def test_toggle_several_cues_in_both_modalities():
    s = spec(visual=("mouth", "brows"), audio=("pitch",))
    cf = toggle_cues(s, {"visual": [SMILE, BROWS], "audio": [PITCH]})
    assert SMILE not in cue_record(cf)["visual"]["present"] and BROWS not in cue_record(cf)["visual"]["present"]
    assert PITCH not in cue_record(cf)["audio"]["present"]
    assert len(cf.audio_parts) == 1 and len(cf.visual_parts) == 1  # balanced as far as the clip allows


# --- pairs: what the counterfactual toggles, and the same-cue stress form --------------------------------
def record(s: ClipSpec) -> CueRecord:
    return CueRecord.from_dict(cue_record(s), where="test")


def test_counterfactual_cues_of_a_stress_and_of_a_reasoning_sample():
    s = spec(visual=("mouth", "brows"))
    rec = record(s)
    ask = stress_ask(rec, "visual_stress", np.random.default_rng(0), 0, form="same_cue")
    assert counterfactual_cues(rec, "visual_stress", {}, ask) == {"visual": [ask.asked]}
    texts = {"chosen": f"The face shows {SMILE} and {BROWS}, so happiness; the voice has {PITCH}."}
    assert counterfactual_cues(rec, "visual_reasoning", texts, None) == {"visual": [SMILE, BROWS]}
    assert counterfactual_cues(rec, "emotion_id", texts, None) == {"visual": [SMILE, BROWS], "audio": [PITCH]}


@pytest.mark.parametrize("seed", range(12))
def test_same_cue_samples_are_valid_and_rest_on_the_asked_cue(seed):
    rec = record(spec(visual=("mouth", "brows")))
    rng = np.random.default_rng(seed)
    ask = stress_ask(rec, "visual_stress", rng, seed % 3, form="same_cue")
    draft = stress_sample(rec, "visual_stress", rng, seed % 3, ask)
    texts = {k: getattr(draft, k) for k in ("chosen", "rejected_vr", "rejected_er")}
    assert check_sample(texts, rec, "visual_stress", draft.prompt, "same_cue") == []
    for response, text in texts.items():
        assert ask.asked.lower() in text.lower()
        assert text.startswith("Yes (A)") == (SAME_CUE_CLAIMS[ask.kind][response] == "signals")
    # a chosen response with the other answer, or resting on another cue, is caught
    chosen = texts["chosen"]
    flipped = ("No (B)" + chosen[7:]) if chosen.startswith("Yes (A)") else ("Yes (A)" + chosen[6:])
    assert check_sample({**texts, "chosen": flipped}, rec, "visual_stress", draft.prompt, "same_cue")
    other = {**texts, "chosen": re.sub(re.escape(ask.asked), "a desk lamp", chosen, flags=re.IGNORECASE)}
    assert check_sample(other, rec, "visual_stress", draft.prompt, "same_cue")


def test_every_kind_has_one_yes_in_the_same_cue_form_except_the_relevant_rejections():
    yes = {kind: [r for r, claim in claims.items() if claim == "signals"] for kind, claims in SAME_CUE_CLAIMS.items()}
    assert yes == {"relevant": ["chosen"], "spurious": ["rejected_vr"], "hallucination": ["rejected_er"]}


def test_same_emotion_pmp_source_draws_another_clip_of_that_emotion():
    pool = [ClipRef(f"c{i}", f"v{i}", f"a{i}", e, e) for i, e in enumerate(["happiness", "happiness", "anger"])]
    picker = RejectedInputPicker(pool, "same_emotion_clip", "same_emotion_clip")
    rej = picker.pick(pool[0], "visual", np.random.default_rng(0), 7)
    assert rej == RejectedInput("v1", "a0", "c1", "v1", "a1")
    lonely = picker.pick(pool[2], "audio", np.random.default_rng(0), 7)
    assert lonely.audio_l == "noise:7" and picker.fallbacks_to_noise == 1
    with pytest.raises(ValueError):
        RejectedInputPicker(pool, "elsewhere")


# --- the cue-specific text prior -----------------------------------------------------------------------
def test_typicality_is_flat_at_strength_zero_and_spread_at_one():
    assert {typicality("visual", "fear", p, 0.0) for p in ("mouth", "brows", "eyes")} == {0.5}
    levels = sorted(typicality("visual", "fear", p, 1.0) for p in ("mouth", "brows", "eyes"))
    assert levels == pytest.approx([0.1, 0.5, 0.9])


def test_weighted_parts_follow_the_weights():
    rng = np.random.default_rng(0)
    counts = Counter(p for _ in range(2000) for p in draw_parts(rng, ("a", "b", "c"), (1.0, 0.0, 0.0), (0.8, 0.15, 0.05)))
    assert counts["a"] > counts["b"] > counts["c"]


def test_noisy_answer_rate_flat_and_cue_specific():
    rec = cue_record(spec(visual=("mouth",)))
    def item(kind, cue):
        return {"task": "reasoning_stress_video", "kind": kind, "cue": cue, "question": f"Does {cue} ...?"}
    assert noisy_answer_rate(item("hallucination", BROWS), rec, 0.6, 0.0) == 0.6
    assert noisy_answer_rate(item("relevant", SMILE), rec, 0.6, 0.0) == 0.0
    rates = {c: noisy_answer_rate(item("hallucination", c), rec, 0.4, 1.0) for c in (BROWS, EYES)}
    # the more typical an absent cue, the more often it is answered Yes
    order = sorted((BROWS, EYES), key=lambda c: typicality("visual", "happiness", {BROWS: "brows", EYES: "eyes"}[c], 1))
    assert rates[order[0]] < rates[order[1]]
    common_present = noisy_answer_rate(item("relevant", SMILE), rec, 0.4, 1.0)  # mouth is common for happiness
    assert common_present == 0.0
    assert noisy_answer_rate(item("spurious", "a yellow background"), rec, 0.4, 1.0) == pytest.approx(0.6)
    assert noisy_answer_rate(item("spurious", "a coffee mug"), rec, 0.4, 1.0) == pytest.approx(0.2)


def test_world_config_accepts_the_knob_in_range_only():
    assert WorldConfig(cue_typicality=1.0).cue_typicality == 1.0
    with pytest.raises(ValueError):
        WorldConfig(cue_typicality=1.5)


# --- media sensitivity -------------------------------------------------------------------------------------
def test_summary_counts_flips_per_kind():
    rows = []
    for i, (kind, real, cf) in enumerate([("relevant", 2.0, -1.0), ("relevant", 1.0, 0.5),
                                          ("hallucination", -1.0, 3.0), ("spurious", -2.0, -2.5)]):
        for cond, v in (("real", real), ("counterfactual", cf), ("noise", 0.0), ("text", 1.0)):
            rows.append({"id": str(i), "kind": kind, "modality": "visual", "condition": cond, "yes_logodds": v})
    s = sensitivity_summary(pd.DataFrame(rows))
    assert s["relevant"]["all"]["flip_share"] == 50.0
    assert s["hallucination"]["visual"]["flip_share"] == 100.0
    assert s["spurious"]["all"]["flip_share"] == 0.0
    assert s["relevant"]["all"]["mean_change_counterfactual"] == pytest.approx(-1.75)
    assert s["all"]["all"]["yes_rate_text"] == 100.0 and s["all"]["all"]["n"] == 4
    assert flip_share(s) == pytest.approx(100 * 2 / 3)


@pytest.mark.parametrize("seed", range(6))
def test_answer_only_samples_are_the_bare_answers(seed):
    rec = record(spec(visual=("mouth", "brows")))
    rng = np.random.default_rng(seed)
    ask = stress_ask(rec, "visual_stress", rng, 0, form="answer_only")
    draft = stress_sample(rec, "visual_stress", rng, 0, ask)
    right, wrong = ("Yes (A)", "No (B)") if ask.kind == "relevant" else ("No (B)", "Yes (A)")
    assert (draft.chosen, draft.rejected_vr, draft.rejected_er) == (right, wrong, wrong)
    texts = {"chosen": draft.chosen, "rejected_vr": draft.rejected_vr, "rejected_er": draft.rejected_er}
    assert check_sample(texts, rec, "visual_stress", draft.prompt, "answer_only") == []
    assert check_sample({**texts, "chosen": wrong}, rec, "visual_stress", draft.prompt, "answer_only")


def test_balanced_presence_repeats_the_minority_answer_per_modality():
    from avere_utils.models.sft import balanced_presence
    from avere_utils.synth.text import presence_questions

    rec = cue_record(spec(visual=("mouth", "brows"), audio=("pitch", "energy", "tempo")))
    qs = presence_questions(rec)
    out = balanced_presence(qs)
    vis = [q for q in out if q["modality"] == "visual"]
    assert sum(q["present"] for q in vis) == sum(not q["present"] for q in vis) == 2  # one absent cue, twice
    aud = [q for q in out if q["modality"] == "audio"]
    assert aud == [q for q in qs if q["modality"] == "audio"]  # nothing absent to repeat: unchanged
    assert all(q in qs for q in out)
