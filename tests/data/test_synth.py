"""The synthetic world: determinism, cue records, the three knobs, readable faces, distinct voices, items."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from avere_utils.datasets.emorealm import STRESS_KINDS, TASKS, validate_qa
from avere_utils.emotions import (
    AUDIO_CUES,
    EMOTIONS,
    SPURIOUS_AMBIENCE,
    SPURIOUS_BACKGROUND,
    VISUAL_CUES,
    context_cues,
    find_cues,
    typical_cues,
)
from avere_utils.synth import WorldConfig, cue_record, generate_world
from avere_utils.synth.face import OCCLUDER, PART_BOX, draw_still
from avere_utils.synth.spec import clip_rng
from avere_utils.synth.text import clip_qa, reference_description, training_captions
from avere_utils.synth.voice import render_audio
from avere_utils.synth.world import dfew_specs, emorealm_items, train_specs

SMALL = WorldConfig(n_train_source=10, n_dfew_test_per_class=2, n_dfew_train_per_class=1, n_ravdess_actors=1,
                    n_mer2023=5, n_mer2023_worried=1, n_emer=3, n_emorealm_per_task=3, clip_seconds=0.5,
                    video_size=64, workers=1)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    a, b = tmp_path_factory.mktemp("wa"), tmp_path_factory.mktemp("wb")
    return generate_world(a, SMALL, seed=3), generate_world(b, SMALL, seed=3), Path(a), Path(b)


def test_world_is_deterministic_from_the_seed(worlds):
    sa, sb, a, b = worlds
    assert sa.counts == sb.counts and sa.n_clips == 10 + 21 + 65 + 6 + 3
    for rel in ["train_source/manifest.jsonl", "EmoReAlM/emorealm_v1.json", "DFEW/synthetic_cues.json",
                "MER2025/track3_ovmerd.csv", "DFEW/dfew_annotation/test(single-labeled)/set_1.csv",
                "DFEW/Clip/clip_16k_wav/part_1/00001.wav"]:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    from avere_utils.media import load_video_frames
    clip = next((a / "train_source/clips").glob("*.mp4")).name
    np.testing.assert_array_equal(load_video_frames(a / "train_source/clips" / clip),
                                  load_video_frames(b / "train_source/clips" / clip))


def test_other_seed_other_world(worlds, tmp_path):
    _, _, a, _ = worlds
    cues_a = json.loads((a / "DFEW/synthetic_cues.json").read_text())
    other = [cue_record(s) for s in dfew_specs(SMALL, seed=4)[0]]
    assert list(cues_a.values()) != other


def test_cue_record_schema(worlds):
    _, _, a, _ = worlds
    for rec in json.loads((a / "DFEW/synthetic_cues.json").read_text()).values():
        assert set(rec) == {"video_emotion", "audio_emotion", "visual", "audio"}
        for m, emo_key in (("visual", "video_emotion"), ("audio", "audio_emotion")):
            assert set(rec[m]) == {"present", "absent", "context"}
            assert 1 <= len(rec[m]["present"]) <= 3
            assert sorted(rec[m]["present"] + rec[m]["absent"]) == sorted(typical_cues(rec[emo_key], m))
            assert set(rec[m]["context"]) <= set(context_cues(m))
        assert len(rec["visual"]["context"]) == 2 and len(rec["audio"]["context"]) == 1


def test_spurious_context_only_in_the_training_source():
    cfg = WorldConfig(n_train_source=2100, n_dfew_test_per_class=150)
    train = train_specs(cfg, 0)
    test = [s for s in dfew_specs(cfg, 0)[0] if s.meta["split"] == "test"]
    follows = lambda specs: np.mean([s.background == SPURIOUS_BACKGROUND[s.video_emotion] for s in specs])
    amb = lambda specs: np.mean([s.ambience == SPURIOUS_AMBIENCE[s.audio_emotion] for s in specs])
    # P(follow) = rate + (1 - rate) / n_values
    assert follows(train) == pytest.approx(0.8 + 0.2 / 7, abs=0.03)
    assert amb(train) == pytest.approx(0.8 + 0.2 / 5, abs=0.03)
    assert follows(test) == pytest.approx(1 / 7, abs=0.04) and amb(test) == pytest.approx(1 / 5, abs=0.04)
    disagree = np.mean([s.video_emotion != s.audio_emotion for s in train])
    assert disagree == pytest.approx(0.15, abs=0.025)
    assert Counter(len(s.visual_parts) for s in train)[2] / len(train) == pytest.approx(0.5, abs=0.04)


def test_captions_follow_the_text_prior_and_context_knobs():
    specs = train_specs(WorldConfig(n_train_source=1500), 0)
    absent_rate, context_rate, n_with_absent = 0, 0, 0
    for i, s in enumerate(specs):
        rec = cue_record(s)
        caps, noise = training_captions(rec, clip_rng(0, "t", i), text_prior_rate=0.3, context_reason_rate=0.3)
        cited = find_cues(caps["visual"])
        allowed = rec["visual"]["present"] + rec["visual"]["absent"] + rec["visual"]["context"]
        assert cited and set(cited) <= set(allowed)  # only exact lexicon phrases of this clip
        assert set(noise["visual"]["cited"]) <= set(cited)
        assert set(find_cues(caps["description"])) == set(cited) | set(find_cues(caps["audio"]))
        if rec["visual"]["absent"]:
            n_with_absent += 1
            absent_rate += bool(set(cited) & set(rec["visual"]["absent"]))
        context_rate += bool(set(cited) & set(rec["visual"]["context"]))
    assert absent_rate / n_with_absent == pytest.approx(0.3, abs=0.04)
    assert context_rate / len(specs) == pytest.approx(0.3, abs=0.04)
    assert len({c["visual"] for c in [training_captions(cue_record(s), clip_rng(1, "t", i), 0.3, 0.3)[0]
                                      for i, s in enumerate(specs[:40])]}) > 30  # phrasing varies


def test_reference_descriptions_cite_only_present_cues():
    for i, s in enumerate(dfew_specs(SMALL, 0)[0]):
        rec = cue_record(s)
        cited = set(find_cues(reference_description(rec, clip_rng(0, "r", i))))
        assert cited == set(rec["visual"]["present"]) | set(rec["audio"]["present"])


def test_emorealm_items_cover_all_tasks_and_kinds():
    cfg = WorldConfig(n_dfew_test_per_class=20)
    test = [s for s in dfew_specs(cfg, 0)[0] if s.meta["split"] == "test"]
    items = emorealm_items(test, 50, seed=0)
    assert Counter(i["task"] for i in items) == {t: 50 for t in TASKS}
    assert all(validate_qa(i) is None for i in items)
    stress = [i for i in items if "stress" in i["task"]]
    kinds_count = Counter(i["kind"] for i in stress)  # half Yes; the No half split between the two kinds
    assert kinds_count["relevant"] == 50 and abs(kinds_count["spurious"] - kinds_count["hallucination"]) <= 2
    assert all((i["answer"] == "A") == (i["kind"] == "relevant") for i in stress)
    agree = Counter(i["answer"] for i in items if i["task"] == "modality_agreement")
    assert agree["A"] >= 10 and agree["B"] >= 10
    recs = {s.video_path.split("clip_224x224/")[1]: cue_record(s) for s in test}
    kinds = Counter()
    for it in items:
        if it["task"] in ("reasoning_basic_video", "reasoning_basic_audio"):
            m = "visual" if it["task"].endswith("video") else "audio"
            rec = recs[it["video"]][m]
            options = [c.split(") ", 1)[1] for c in it["choices"]]
            answer = options[ord(it["answer"]) - 65]
            assert answer in rec["present"] and len(options) == 4
            kinds.update({"absent": any(o in rec["absent"] for o in options),
                          "context": any(o in rec["context"] for o in options)})
    assert kinds["absent"] > 30 and kinds["context"] == 100
    qa = clip_qa(cue_record(test[0]), np.random.default_rng(0))
    assert [q["task"] for q in qa] == list(TASKS) and all(validate_qa(q) is None for q in qa)
    assert {i["kind"] for i in stress} == set(STRESS_KINDS)


def test_faces_are_readable_at_56_pixels_and_occluders_hide_parts():
    size = 112
    stills = {e: draw_still(size, e, ("brows", "eyes", "mouth"), "a gray background", "a coffee mug", 0,
                            (236, 198, 160))[::2, ::2].astype(int) for e in EMOTIONS}
    for part, (y0, y1, x0, x1) in PART_BOX.items():
        ys, xs = slice(int(y0 * 56), int(y1 * 56)), slice(int(x0 * 56), int(x1 * 56))
        for i, e in enumerate(EMOTIONS):
            for f in EMOTIONS[i + 1:]:
                diff = np.abs(stills[e][ys, xs] - stills[f][ys, xs]).max(axis=-1) > 60
                assert diff.sum() >= 6, f"{part}: {e} vs {f} differ in only {diff.sum()} pixels at 56x56"
    hidden = draw_still(size, "anger", ("mouth",), "a gray background", "a coffee mug", 0, (236, 198, 160))
    y0, y1, x0, x1 = (int(v * size) + 1 for v in PART_BOX["eyes"])
    assert (hidden[y0:y1 - 2, x0:x1 - 2] == OCCLUDER).all()


def _voice_features(y: np.ndarray, sr: int = 16000) -> tuple[float, float]:
    """(loudness rms, dominant frequency of the voiced band)."""
    spec = np.abs(np.fft.rfft(y))
    f = np.fft.rfftfreq(len(y), 1 / sr)
    band = (f > 80) & (f < 500)
    return float(np.sqrt(np.mean(y ** 2))), float(f[band][np.argmax(spec[band])])


def test_voices_are_acoustically_distinct():
    rng = np.random.default_rng(0)
    full = ("pitch", "energy", "tempo")
    feats = {e: _voice_features(render_audio(e, full, "rain noise", 2.0, 16000, rng)) for e in EMOTIONS}
    assert feats["anger"][0] > feats["neutral"][0] > feats["sadness"][0]
    assert feats["happiness"][1] > feats["neutral"][1] > feats["sadness"][1]
    whisper = render_audio("happiness", ("energy", "tempo"), "rain noise", 2.0, 16000, rng)
    voiced = render_audio("happiness", full, "rain noise", 2.0, 16000, rng)
    peakiness = lambda y: (lambda s: s.max() / s.mean())(np.abs(np.fft.rfft(y))[50:1000])
    assert peakiness(voiced) > 3 * peakiness(whisper)  # masked pitch has no harmonic peaks


def test_masked_tempo_and_energy_match_no_emotion():
    """Masked tempo is one continuous phonation (no syllable gaps, unlike every emotion's pace); masked
    energy swings between quiet and loud (its loudness never settles at one level, like neutral's)."""
    from avere_utils.synth.voice import ENERGY, MASKED_ENERGY, MASKED_TEMPO, PITCH, TEMPO, synth_voice

    sr, rng = 16000, np.random.default_rng(0)

    def frame_rms(y: np.ndarray) -> np.ndarray:
        return np.sqrt((y[: len(y) // 320 * 320].reshape(-1, 320) ** 2).mean(axis=1))  # 20 ms frames

    def gaps(y: np.ndarray) -> int:  # interior silent frames
        r = frame_rms(y)
        voiced = np.flatnonzero(r > 0.01 * r.max())
        return int((r[voiced[0]:voiced[-1]] <= 0.01 * r.max()).sum())

    drone = synth_voice(PITCH["neutral"], ENERGY["neutral"], MASKED_TEMPO, 2.0, sr, rng)
    assert gaps(drone) == 0
    assert all(gaps(synth_voice(PITCH["neutral"], ENERGY["neutral"], TEMPO[e], 2.0, sr, rng)) >= 1 for e in EMOTIONS)
    swing = frame_rms(synth_voice(PITCH["neutral"], MASKED_ENERGY, MASKED_TEMPO, 2.0, sr, rng))[10:-10]
    steady = frame_rms(synth_voice(PITCH["neutral"], ENERGY["neutral"], MASKED_TEMPO, 2.0, sr, rng))[10:-10]
    assert swing.max() / swing.min() > 4 and steady.max() / steady.min() < swing.max() / swing.min()


def test_world_config_is_validated():
    with pytest.raises(ValueError, match="even"):
        WorldConfig(video_size=113)
    with pytest.raises(ValueError, match="spurious_rate"):
        WorldConfig(spurious_rate=1.5)
    with pytest.raises(ValueError, match="parts_probs"):
        WorldConfig(parts_probs=(0.5, 0.5, 0.5))


def test_generation_refuses_a_foreign_folder_and_clears_its_own(tmp_path):
    foreign = tmp_path / "real_data"
    (foreign / "DFEW").mkdir(parents=True)
    (foreign / "DFEW/keep.txt").write_text("real")
    with pytest.raises(ValueError, match="refusing"):
        generate_world(foreign, SMALL, seed=0)
    assert (foreign / "DFEW/keep.txt").is_file()
    own = tmp_path / "world"
    tiny = WorldConfig(**{**SMALL.to_dict(), "n_ravdess_actors": 0, "n_train_source": 2, "parts_probs": (0.25, 0.5, 0.25)})
    generate_world(own, tiny, seed=0)
    stale = own / "RAVDESS/Actor_01/01-01-03-01-01-01-01.mp4"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    generate_world(own, tiny, seed=0)
    assert not stale.exists()


def test_presence_questions_ask_every_typical_cue_of_the_shown_emotions():
    from avere_utils.synth.text import presence_questions

    for s in dfew_specs(SMALL, 0)[0][:20]:
        rec = cue_record(s)
        qs = presence_questions(rec)
        for m, table, emo in (("visual", VISUAL_CUES, rec["video_emotion"]), ("audio", AUDIO_CUES, rec["audio_emotion"])):
            mine = [q for q in qs if q["modality"] == m]
            assert {q["cue"] for q in mine} == set(table[emo].values())  # all three, present or absent
            assert all(q["present"] == (q["cue"] in rec[m]["present"]) for q in mine)
            assert all((q["answer"] == "A") == q["present"] and q["choices"] == ["(A) Yes", "(B) No"] for q in mine)
            assert all(find_cues(q["question"]) == [q["cue"]] for q in mine)  # the question names only its cue
    fixed = presence_questions(cue_record(dfew_specs(SMALL, 0)[0][0]), template=1)
    assert all(q["question"].startswith(("Can you see", "Can you hear")) for q in fixed)


def test_grounded_items_list_exactly_the_present_typical_cues():
    from avere_utils.synth.text import grounded_answer, grounded_items

    for s in dfew_specs(SMALL, 0)[0][:20]:
        rec = cue_record(s)
        for g in grounded_items(rec):
            emo = rec["video_emotion" if g["modality"] == "visual" else "audio_emotion"]
            table = VISUAL_CUES if g["modality"] == "visual" else AUDIO_CUES
            assert set(g["typical"]) == set(table[emo].values())
            assert g["present"] == rec[g["modality"]]["present"]  # same part order as the cue record
            assert find_cues(g["answer"]) == g["present"]
    assert grounded_answer(["a broad smile", "crinkled eyes"]) == "A broad smile and crinkled eyes."


def test_training_stress_answers_follow_the_qa_text_prior_knob():
    specs = train_specs(WorldConfig(n_train_source=400), 0)
    for rate in (0.0, 0.6):
        noisy, wrong_kind = 0, 0
        for i, s in enumerate(specs):
            for q in clip_qa(cue_record(s), clip_rng(0, "qa", i), qa_text_prior_rate=rate):
                if q.get("kind") == "relevant":
                    assert q["answer"] == "A" and not q.get("noisy")
                elif q.get("kind") in ("spurious", "hallucination"):
                    wrong_kind += 1
                    noisy += q["answer"] == "A"
                    assert q["answer"] == ("A" if q.get("noisy") else "B")
        assert wrong_kind > 150 and abs(noisy / wrong_kind - rate) < 0.08
    with pytest.raises(ValueError, match="qa_text_prior_rate"):
        WorldConfig(qa_text_prior_rate=1.5)


def test_letter_items_name_one_choice_and_answer_with_its_text_then_letter():
    from avere_utils.emotions import all_cue_phrases
    from avere_utils.models.sft import fresh_letter_items, qa_answer
    from avere_utils.synth.text import LETTER_QUESTIONS

    items = fresh_letter_items("clip7", 0, 40)
    assert fresh_letter_items("clip7", 0, 40) == items and fresh_letter_items("clip7", 1, 40) != items
    letters = set()
    for q in items:
        texts = [c[4:] for c in q["choices"]]
        assert [c[:4] for c in q["choices"]] == ["(A) ", "(B) ", "(C) ", "(D) "]
        assert len(set(texts)) == 4 and set(texts) <= set(all_cue_phrases())
        named = texts[ord(q["answer"]) - 65]
        assert q["question"] in {w.format(cue=named) for w in LETTER_QUESTIONS}
        assert sum(t in q["question"] for t in texts if t != named and t not in named) == 0
        assert qa_answer(q) == f"{named} ({q['answer']})"
        letters.add(q["answer"])
    assert letters == {"A", "B", "C", "D"}
