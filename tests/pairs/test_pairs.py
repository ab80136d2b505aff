"""Preference pairs: templates, checks against cue records, PMP inputs, storage, interop, LLM generator."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections import Counter
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from chat_stub import StubChat, completion

from avere_utils.config import ConfigError, build, load_stage
from avere_utils.emotions import (
    AUDIO_CONTEXT,
    AUDIO_CUES,
    AUDIO_PARTS,
    EMOTIONS,
    VISUAL_CONTEXT,
    VISUAL_CUES,
    VISUAL_PARTS,
    all_cue_phrases,
    cue_kind,
    find_cues,
)
from avere_utils.media import MediaSettings
from avere_utils.pairs import (
    FAMILIES,
    FAMILY_MODALITY,
    PairParams,
    build_and_save,
    build_pairs,
    check_sample,
    import_released_json,
    load_pair_media,
    load_pairs,
    load_stats,
    template_sample,
)
from avere_utils.pairs.build import answer_can_change, balanced_cap
from avere_utils.pairs.cues import CueRecord
from avere_utils.pairs.inputs import noise_audio, noise_frames
from avere_utils.pairs.interop import MEDIA_TAGS, RELEASED_KEYS, from_released, to_released
from avere_utils.pairs.store import COLUMNS, CONTRACT_COLUMNS
from avere_utils.pairs.templates import (
    DESCRIPTION_FRAGMENTS,
    DESCRIPTION_PROMPTS,
    EVIDENCE_FRAGMENTS,
    PROMPTS,
    RESPONSES_AGREEMENT,
    RESPONSES_DESCRIPTION,
    RESPONSES_EMOTION_ID,
    RESPONSES_SINGLE,
    RESPONSES_STRESS,
    STRESS_CITED,
    STRESS_FAMILIES,
    feasible_families,
)
from avere_utils.records import Item

SECRET = "sk-pairs-test-secret-424242"


# --- a hand-made world --------------------------------------------------------------------------------
def random_record(rng: np.random.Generator, ve: str, ae: str, full_visual: bool = False) -> dict:
    def part(cues: dict[str, str], parts: tuple[str, ...], context: list[str], full: bool) -> dict:
        k = len(parts) if full else int(rng.integers(1, len(parts)))  # 1..n-1 parts rendered
        shown = set(rng.choice(parts, k, replace=False).tolist())
        return {"present": [cues[p] for p in parts if p in shown],
                "absent": [cues[p] for p in parts if p not in shown], "context": context}

    vctx = [str(rng.choice(VISUAL_CONTEXT["background"])), str(rng.choice(VISUAL_CONTEXT["object"]))]
    actx = [str(rng.choice(AUDIO_CONTEXT["ambience"]))]
    return {"video_emotion": ve, "audio_emotion": ae,
            "visual": part(VISUAL_CUES[ve], VISUAL_PARTS, vctx, full_visual),
            "audio": part(AUDIO_CUES[ae], AUDIO_PARTS, actx, False)}


def write_clip(folder: Path, name: str, shade: int, n_frames: int = 6, seconds: float = 0.5) -> tuple[str, str]:
    """A 16x16 mp4 of constant grey `shade` and a wav of constant value shade/255 (identifiable after decoding)."""
    video, audio = folder / f"{name}.mp4", folder / f"{name}.wav"
    with av.open(str(video), mode="w") as c:
        s = c.add_stream("libx264", rate=24)
        s.width = s.height = 16
        s.pix_fmt = "yuv420p"
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), shade, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 24)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    sf.write(str(audio), np.full(int(16000 * seconds), shade / 255, np.float32), 16000, subtype="FLOAT")
    return str(video), str(audio)


def make_items(folder: Path, n: int = 60, seed: int = 0, disagree: float = 0.25, media: bool = False) -> list[Item]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        ve = EMOTIONS[i % len(EMOTIONS)]
        ae = ve if rng.random() > disagree else EMOTIONS[(i + 1 + int(rng.integers(6))) % len(EMOTIONS)]
        name = f"clip{i:03d}"
        if media:
            video, audio = write_clip(folder, name, shade=10 + 20 * i)
        else:  # existence is all the builder checks; decoding is tested separately
            video, audio = str(folder / f"{name}.mp4"), str(folder / f"{name}.wav")
            Path(video).touch()
            Path(audio).touch()
        items.append(Item(id=name, dataset="train_source", split="train", video=video, audio=audio, label=ve,
                          text={"captions": {"visual": f"a {ve} face", "audio": f"a {ae} voice",
                                             "description": "a person talks"},
                                "cues": random_record(rng, ve, ae), "qa": []}))
    return items


def params_for(tmp_path: Path, **kw) -> PairParams:
    base = dict(run_dir=str(tmp_path), data_root=str(tmp_path), pairs_dir=str(tmp_path / "pairs"),
                released_json_file=str(tmp_path / "pairs" / "released_format.json"),
                released_media_dir=str(tmp_path), llm_cache_dir=str(tmp_path / "llm_cache"),
                manifest_file=str(tmp_path / "none.jsonl"), figures_dir=str(tmp_path / "figures"),
                # these tests pin the cue-swap stress form, the uniform kinds and clip donors they check; the
                # tiny defaults (answer_only, 2:1:1, counterfactual) have their own tests (test_counterfactual.py)
                stress_responses="cue_swap", stress_kind_weights={}, pmp_video_source="other_clip",
                pmp_audio_source="other_clip")
    return PairParams(**{**base, **kw})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("world")
    return folder, make_items(folder / "clips", n=120)


# --- templates and the cue check -----------------------------------------------------------------------
def test_every_template_recovers_exactly_the_inserted_cue():
    """No filler word of any template is (part of) a lexicon phrase, whatever cue is inserted."""
    templates = [t for ts in RESPONSES_SINGLE.values() for t in ts] + list(RESPONSES_EMOTION_ID) \
        + list(RESPONSES_AGREEMENT) + [f for fs in EVIDENCE_FRAGMENTS.values() for f in fs] \
        + list(RESPONSES_DESCRIPTION) + [f for fs in DESCRIPTION_FRAGMENTS.values() for f in fs] \
        + list(RESPONSES_STRESS)
    for text in [t for ts in PROMPTS.values() for t in ts]:
        assert find_cues(text) == [], text
    blank = {k: "" for k in ("emotion", "Emotion", "answer", "Answer", "link", "relation", "vemotion", "aemotion",
                             "adjective", "where", "adj")}
    blank["choice"] = "Yes (A)"
    for cue in all_cue_phrases():
        for t in templates:
            text = t.format(**{**blank, "cues": cue, "cue": cue, "Cue": cue[:1].upper() + cue[1:], "evidence": cue,
                               "vcue": cue, "acue": cue})
            assert find_cues(text) == [cue.lower()], (t, cue)


def test_template_samples_are_valid_and_differ_only_in_cues():
    rng = np.random.default_rng(1)
    for i in range(300):
        ve, ae = EMOTIONS[i % 7], EMOTIONS[(i * 3) % 7]
        record = CueRecord.from_dict(random_record(rng, ve, ae))
        for family in feasible_families(record):
            d = template_sample(record, family, rng)
            assert check_sample(d.texts(), record, family, d.prompt) == [], (family, d)
            # Same sentence around different cues (and, in a stress sample, a different choice): removing the
            # cues leaves the same skeleton.
            skeletons = {re.sub("|".join(map(re.escape, find_cues(t))), "#", t, flags=re.I) for t in d.texts().values()}
            if family in STRESS_FAMILIES:
                skeletons = {re.sub(r"^(Yes|No) \([AB]\)", "#", t) for t in skeletons}
            assert len(skeletons) == 1, d


def test_insert_form_rejects_a_description_by_adding_one_error_to_the_chosen_answer():
    """description_rejections: insert: vr = the chosen answer plus a context clause, er = the chosen answer
    with an absent typical cue beside each present one; valid under the insert check, not under swap's."""
    rng = np.random.default_rng(3)
    n = 0
    for i in range(200):
        record = CueRecord.from_dict(random_record(rng, EMOTIONS[i % 7], EMOTIONS[i % 7]))
        if "emotion_id" not in feasible_families(record):
            continue
        for p, prompt in enumerate(PROMPTS["emotion_id"]):
            d = template_sample(record, "emotion_id", rng, prompt_index=p, description_form="insert")
            assert check_sample(d.texts(), record, "emotion_id", d.prompt, description_form="insert") == [], d
            if prompt not in DESCRIPTION_PROMPTS:  # short answers: the swap form whatever the setting
                assert check_sample(d.texts(), record, "emotion_id", d.prompt) == []
                continue
            n += 1
            chosen = find_cues(d.chosen)
            added = {k: [c for c in find_cues(getattr(d, k)) if c not in chosen] for k in ("rejected_vr", "rejected_er")}
            mods = sorted({cue_kind(c)[0] for c in chosen})
            assert added["rejected_vr"] and set(added["rejected_vr"]) <= {c for m in mods for c in record.of(m).context}
            assert added["rejected_er"] and set(added["rejected_er"]) <= {c for m in mods for c in record.of(m).absent}
            assert set(chosen) <= set(find_cues(d.rejected_vr)) and set(chosen) <= set(find_cues(d.rejected_er))
            assert d.rejected_vr.startswith(d.chosen.split(". ")[0])  # the chosen answer, the clause inserted
            assert check_sample(d.texts(), record, "emotion_id", d.prompt) != []  # swap's check: present cues refused
    assert n > 50


def test_stress_samples_ask_the_benchmark_question_and_answer_it_from_the_record():
    """The prompt is EmoReAlM's stress form about one cue of the clip; the chosen answer is right for that cue
    (Yes only for a present typical one); each rejection gives the answer of its error, and over many samples
    the rejections say "No" to relevant cues as well as "Yes" to irrelevant ones."""
    rng = np.random.default_rng(3)
    said: Counter[tuple[str, str, str]] = Counter()
    for i in range(200):
        record = CueRecord.from_dict(random_record(rng, EMOTIONS[i % 7], EMOTIONS[(i * 2) % 7]))
        for family, modality in STRESS_FAMILIES.items():
            if family not in feasible_families(record):
                continue
            d = template_sample(record, family, rng)
            kind = d.template.split("/")[-1]
            assert d.prompt.endswith("? (A) Yes (B) No"), d.prompt
            (asked,) = find_cues(d.prompt)
            m = record.of(modality)
            assert asked in {"relevant": m.present, "spurious": m.context, "hallucination": m.absent}[kind]
            for response, source in STRESS_CITED[kind].items():
                text = getattr(d, response)
                yes = text.startswith("Yes (A)")
                assert yes == (source == "asked"), (kind, response, text)
                assert (asked in find_cues(text)) == yes
                said[kind, response, "yes" if yes else "no"] += 1
    assert said["relevant", "chosen", "yes"] > 30 and said["relevant", "rejected_vr", "no"] > 30
    assert said["spurious", "chosen", "no"] > 30 and said["spurious", "rejected_vr", "yes"] > 30
    assert said["hallucination", "rejected_er", "yes"] > 30 and not said["hallucination", "chosen", "yes"]


def test_stress_kind_weights_set_what_is_asked_and_the_default_draw_is_unchanged():
    """`stress_kind_weights` draws the asked kind by weight; without it the draw is the uniform one of
    `rng.integers`, so the default pairs (and the committed golden run) do not move."""
    from avere_utils.pairs.templates import stress_ask
    from avere_utils.protocol import STRESS_KINDS

    record = CueRecord.from_dict(random_record(np.random.default_rng(0), "happiness", "anger"))
    for seed in range(40):  # the kind is the first thing drawn
        expected = STRESS_KINDS[int(np.random.default_rng(seed).integers(len(STRESS_KINDS)))]
        assert stress_ask(record, "visual_stress", np.random.default_rng(seed), 0).kind == expected
        assert stress_ask(record, "visual_stress", np.random.default_rng(seed), 0, {}).kind == expected
    rng = np.random.default_rng(1)
    only = Counter(stress_ask(record, "visual_stress", rng, 0, {"spurious": 1.0}).kind for _ in range(50))
    assert only == {"spurious": 50}
    rng = np.random.default_rng(2)
    tilted = Counter(stress_ask(record, "audio_stress", rng, 0, {"relevant": 2, "spurious": 1,
                                                                  "hallucination": 1}).kind for _ in range(2000))
    assert 0.45 < tilted["relevant"] / 2000 < 0.55 and tilted["spurious"] > 400 and tilted["hallucination"] > 400
    with pytest.raises(ValueError, match="stress_kind_weights"):
        PairParams(manifest_file="m", pairs_dir="p", stress_kind_weights={"relevent": 1.0})
    with pytest.raises(ValueError, match="stress_kind_weights"):
        PairParams(manifest_file="m", pairs_dir="p", stress_kind_weights={"relevant": 0.0})


def test_check_sample_catches_each_kind_of_error():
    record = CueRecord.from_dict({
        "video_emotion": "happiness", "audio_emotion": "happiness",
        "visual": {"present": ["a broad smile"], "absent": ["crinkled eyes"], "context": ["a yellow background"]},
        "audio": {"present": ["a high rising pitch"], "absent": ["a bright loud voice"], "context": ["rain noise"]}})
    good = {"chosen": "Happiness: I can see a broad smile.", "rejected_vr": "Happiness: I can see a yellow background.",
            "rejected_er": "Happiness: I can see crinkled eyes."}
    assert check_sample(good, record, "visual_reasoning") == []
    bad = {
        "vr cites an absent cue": {**good, "rejected_vr": "Happiness: I can see crinkled eyes, really."},
        "er cites a present cue": {**good, "rejected_er": "Happiness: I can see a broad smile, really."},
        "chosen cites context": {**good, "chosen": "Happiness: I can see a yellow background, really."},
        "chosen cites another emotion's cue": {**good, "chosen": "Happiness: I can see a downturned mouth."},
        "wrong modality": {**good, "rejected_vr": "Happiness: I can hear rain noise."},
        "no cue": {**good, "rejected_er": "Happiness, clearly."},
        "empty": {**good, "chosen": "  "},
        "wrong emotion": {**good, "chosen": "Sadness: I can see a broad smile."},
        "identical": {**good, "rejected_er": good["rejected_vr"]},
    }
    for name, texts in bad.items():
        assert check_sample(texts, record, "visual_reasoning"), name
    ma = {k: v.replace("Happiness:", "No, happiness:") for k, v in good.items()}
    assert any("answer 'yes'" in p for p in check_sample(ma, record, "modality_agreement"))


# --- the build -----------------------------------------------------------------------------------------
def _targeted(family: str) -> tuple[str, ...]:
    m = FAMILY_MODALITY[family]
    return ("visual", "audio") if m == "both" else (m,)


def test_vr_cites_only_present_irrelevant_er_only_absent_typical(world, tmp_path):
    """Every family, the stress ones included."""
    _, items = world
    result = build_pairs(params_for(tmp_path, family_weights={f: 1.0 for f in FAMILIES}), items, progress=False)
    assert len(result.rows) > 150 and result.stats["counts"].get("invalid", 0) == 0
    assert {r["family"] for r in result.rows} == set(FAMILIES)
    by_id = {it.id: it.text["cues"] for it in items}
    for r in result.rows:
        rec = by_id[r["clip_id"]]  # the manifest's record, not the copy stored with the row
        cited = {k: find_cues(r[k]) for k in ("chosen", "rejected_vr", "rejected_er")}
        assert all(cited.values()), r
        mods = _targeted(r["family"])
        for kind, field in (("chosen", "present"), ("rejected_vr", "context"), ("rejected_er", "absent")):
            allowed = {c for m in mods for c in rec[m][field]}
            assert set(cited[kind]) <= allowed, (kind, r)
        for cue in cited["chosen"] + cited["rejected_er"]:
            modality, emotion = cue_kind(cue)
            expected = rec["video_emotion"] if modality == "visual" or r["family"] == "emotion_id" else rec["audio_emotion"]
            assert emotion == expected, (cue, r)
        assert json.loads(r["cues"]) == cited


@pytest.mark.parametrize("source", ["other_clip", "same_emotion_clip"])
def test_pmp_valid_only_gives_no_rejected_input_where_none_can_change_the_answer(world, tmp_path, source):
    """pmp_valid_only: a stress question about a context cue (and, without counterfactual media, about an
    absent cue) keeps the real media as its rejected input, counted; the trainer then plans no PMP for it."""
    from avere_utils.training.data import replaced_modalities
    from avere_utils.training.loss import LossConfig

    _, items = world
    weights = {"visual_stress": 1.0, "audio_stress": 1.0, "visual_reasoning": 1.0}
    result = build_pairs(params_for(tmp_path, family_weights=weights, pmp_valid_only=True, pmp_video_source=source,
                                    pmp_audio_source=source), items, progress=False)
    config = LossConfig()
    kinds = Counter()
    for r in result.rows:
        kind = r["template"].rsplit("/", 1)[-1] if r["family"] in STRESS_FAMILIES else "reasoning"
        kept = kind in ("spurious", "hallucination") or (kind == "relevant" and source == "same_emotion_clip")
        assert (r["video_l"] == r["video"] and r["audio_l"] == r["audio"]) == kept, (source, kind, r)
        assert (replaced_modalities(r, config) == ()) == kept
        kinds[kind, kept] += 1
    assert result.stats["counts"]["pmp_none_answer_unchanged"] == sum(n for (_, kept), n in kinds.items() if kept) > 0
    assert kinds["reasoning", False] > 0
    assert answer_can_change("hallucination", "counterfactual") and not answer_can_change("spurious", "counterfactual")
    assert answer_can_change("relevant", "noise") and not answer_can_change("hallucination", "noise")


def test_each_family_gets_the_right_rejected_input(world, tmp_path):
    _, items = world
    emo = {it.id: (it.text["cues"]["video_emotion"], it.text["cues"]["audio_emotion"]) for it in items}
    path_to_clip = {p: it.id for it in items for p in (it.video, it.audio)}
    rows = build_pairs(params_for(tmp_path), items, progress=False).rows
    split_of = {r["clip_id"]: r["split"] for r in rows}
    for r in rows:
        swap_v, swap_a = r["video_l"] != r["video"], r["audio_l"] != r["audio"]
        assert (swap_v, swap_a) == {"visual": (True, False), "audio": (False, True), "both": (True, True)}[r["modality"]]
        if swap_v:
            donor = path_to_clip[r["video_l"]]
            assert emo[donor][0] != emo[r["clip_id"]][0] and split_of.get(donor, r["split"]) == r["split"]
        if swap_a:
            donor = path_to_clip[r["audio_l"]]
            assert emo[donor][1] != emo[r["clip_id"]][1]
    noisy = build_pairs(params_for(tmp_path, pmp_video_source="noise", pmp_audio_source="noise"), items,
                        progress=False).rows
    for r in noisy:
        for col, real, swapped in (("video_l", "video", r["modality"] != "audio"),
                                   ("audio_l", "audio", r["modality"] != "visual")):
            assert r[col].startswith("noise:") if swapped else r[col] == r[real]


def test_split_by_clip_balance_and_determinism(world, tmp_path):
    _, items = world
    p = params_for(tmp_path)
    a = build_pairs(p, items, progress=False)
    b = build_pairs(p, items, progress=False)
    assert a.rows == b.rows  # deterministic for a seed
    train = {r["clip_id"] for r in a.rows if r["split"] == "train"}
    val = {r["clip_id"] for r in a.rows if r["split"] == "validation"}
    assert val and not train & val and a.stats["clips_in_both_splits"] == 0
    assert abs(len(val) / len(val | train) - p.val_fraction) < 0.05
    fam = a.stats["by_family"]
    # Default weights give each modality a third; the two single-modality families are equal.
    assert fam["visual_reasoning"] == pytest.approx(fam["audio_reasoning"], rel=0.1)
    mods = a.stats["by_modality"]
    assert max(mods.values()) / min(mods.values()) < 1.3
    assert a.stats["by_agreement_answer"].get("no", 0) > 0
    c = build_pairs(dataclasses.replace(p, seed=1), items, progress=False)
    assert c.rows != a.rows


def test_family_weights_and_max_pairs(world, tmp_path):
    _, items = world
    only_visual = build_pairs(params_for(tmp_path, family_weights={"visual_reasoning": 1.0}), items, progress=False)
    assert {r["family"] for r in only_visual.rows} == {"visual_reasoning"}
    capped = build_pairs(params_for(tmp_path, max_pairs=40), items, progress=False)
    assert len(capped.rows) == 40 and capped.stats["counts"]["dropped_by_max_pairs"] > 0
    counts = capped.stats["by_family"]
    w = PairParams().family_weights  # the cap keeps the families in the ratio of their weights
    assert counts["visual_reasoning"] == pytest.approx(counts["emotion_id"] * w["visual_reasoning"] / w["emotion_id"], abs=2)
    rows = [{"family": f, "i": i} for i, f in enumerate(["a"] * 10 + ["b"] * 10)]
    assert [r["family"] for r in balanced_cap(rows, 4, {"a": 1.0, "b": 1.0})].count("a") == 2


def test_missing_media_and_missing_records_are_counted_skips(tmp_path):
    items = make_items(tmp_path / "clips", n=12)
    os.remove(items[0].video)
    os.remove(items[1].audio)
    items[2].text["cues"] = None
    items.append(items[3])  # a duplicate clip id
    result = build_pairs(params_for(tmp_path), items, progress=False)
    counts = result.stats["counts"]
    assert counts["skipped_missing_media"] == 2 and counts["skipped_no_cue_record"] == 1
    assert counts["skipped_duplicate_clip_id"] == 1 and counts["clips_in_manifest"] == 13
    assert not {r["clip_id"] for r in result.rows} & {items[0].id, items[1].id, items[2].id}
    # No clip with missing media is ever a PMP donor either.
    assert not {r["video_l"] for r in result.rows} & {items[0].video, items[1].video}
    assert not {r["audio_l"] for r in result.rows} & {items[0].audio, items[1].audio}


def test_clip_where_every_part_is_rendered_is_skipped_not_invalid(tmp_path):
    items = make_items(tmp_path / "clips", n=4, disagree=0.0)
    rng = np.random.default_rng(0)
    full = random_record(rng, "anger", "anger", full_visual=True)
    full["audio"]["absent"] = []
    items[0].text["cues"] = full
    result = build_pairs(params_for(tmp_path), items, progress=False)
    assert result.stats["counts"]["skipped_no_feasible_family"] == 1
    assert result.stats["counts"].get("invalid", 0) == 0 and items[0].id not in {r["clip_id"] for r in result.rows}


def test_duplicates_are_dropped_and_counted(tmp_path):
    items = make_items(tmp_path / "clips", n=3)
    result = build_pairs(params_for(tmp_path, samples_per_clip=60), items, progress=False)
    keys = [(r["clip_id"], r["prompt"], r["chosen"], r["rejected_vr"], r["rejected_er"]) for r in result.rows]
    assert len(keys) == len(set(keys)) and result.stats["counts"]["duplicates_dropped"] > 0
    assert len({r["id"] for r in result.rows}) == len(result.rows)


# --- storage and interop -------------------------------------------------------------------------------
def test_save_load_and_released_json_round_trip(world, tmp_path):
    _, items = world
    p = params_for(tmp_path, released_media_dir=str(world[0]))
    result = build_and_save(p, items, progress=False)
    train, val = load_pairs(p.pairs_dir, "train"), load_pairs(p.pairs_dir, "validation")
    assert tuple(train.column_names) == COLUMNS and set(CONTRACT_COLUMNS) <= set(train.column_names)
    assert len(train) + len(val) == len(result.rows) == load_stats(p.pairs_dir)["n_pairs"]
    objs = json.loads(Path(p.released_json_file).read_text())
    assert set(RELEASED_KEYS) <= set(objs[0]) and objs[0]["prompt"].startswith(MEDIA_TAGS)
    assert all(not os.path.isabs(o[k]) for o in objs for k in ("video", "audio", "video_l", "audio_l"))
    assert objs[0]["rejected"] == result.rows[0]["rejected_vr"] and objs[0]["rejected_2"] == result.rows[0]["rejected_er"]
    back = import_released_json(p.released_json_file, p.released_media_dir)
    assert back == result.rows
    stored = {r["id"]: r for r in list(train) + list(val)}
    assert stored == {r["id"]: r for r in back}


def test_released_import_of_bare_samples_and_bad_paths(tmp_path):
    bare = {"prompt": MEDIA_TAGS + "How does the person feel?", "chosen": "a", "rejected": "b", "rejected_2": "c",
            "video": "v/1.mp4", "audio": "a/1.wav", "video_l": "v/1.mp4", "audio_l": "noise:7"}
    (row,) = from_released([bare], tmp_path)
    assert row["modality"] == "audio" and row["family"] == "audio_reasoning" and row["clip_id"] == "1"
    assert row["video"] == str(tmp_path / "v/1.mp4") and row["audio_l"] == "noise:7"
    assert row["prompt"] == "How does the person feel?"
    with pytest.raises(ValueError, match="stay inside"):
        from_released([{**bare, "video": "../outside.mp4"}], tmp_path)
    with pytest.raises(ValueError, match="missing keys"):
        from_released([{k: v for k, v in bare.items() if k != "rejected_2"}], tmp_path)
    with pytest.raises(ValueError, match="does not start"):
        from_released([{**bare, "prompt": "no tags"}], tmp_path)
    with pytest.raises(ValueError, match="not inside the media folder"):
        to_released([{**row, "video": "/elsewhere/x.mp4"}], tmp_path)


# --- decoding the PMP inputs ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def media_world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    return make_items(folder, n=8, media=True)


def _shade_of_frames(frames: np.ndarray) -> float:
    return float(frames.mean())


@pytest.mark.parametrize("family", FAMILIES)
def test_load_pair_media_swaps_only_the_targeted_modality(media_world, tmp_path, family):
    items = media_world
    shade = {it.id: 10 + 20 * i for i, it in enumerate(items)}
    clip_of = {p: it.id for it in items for p in (it.video, it.audio)}
    p = params_for(tmp_path, family_weights={family: 1.0}, val_fraction=0.0, samples_per_clip=1)
    rows = build_pairs(p, items, progress=False).rows
    assert rows, family
    settings = MediaSettings(n_frames=4, frame_size=16)
    for r in rows[:3]:
        real, rejected = load_pair_media(r, settings)
        own = shade[r["clip_id"]]
        assert abs(_shade_of_frames(real.frames) - own) < 3 and abs(real.audio.mean() * 255 - own) < 1
        v_src = shade[clip_of[r["video_l"]]]
        a_src = shade[clip_of[r["audio_l"]]]
        assert abs(_shade_of_frames(rejected.frames) - v_src) < 3
        assert abs(rejected.audio.mean() * 255 - a_src) < 1
        if FAMILY_MODALITY[family] in ("visual", "both"):
            assert v_src != own
        else:
            assert np.array_equal(rejected.frames, real.frames)
        if FAMILY_MODALITY[family] in ("audio", "both"):
            assert a_src != own
        else:
            assert np.array_equal(rejected.audio, real.audio)


def test_load_pair_media_noise_is_shaped_like_the_real_input_and_deterministic(media_world, tmp_path):
    p = params_for(tmp_path, family_weights={"emotion_id": 1.0}, pmp_video_source="noise",
                   pmp_audio_source="noise", val_fraction=0.0, samples_per_clip=1)
    row = build_pairs(p, media_world, progress=False).rows[0]
    settings = MediaSettings(n_frames=4, frame_size=16)
    real, rejected = load_pair_media(row, settings)
    assert rejected.frames.shape == real.frames.shape and rejected.frames.dtype == np.uint8
    assert rejected.audio.shape == real.audio.shape and rejected.audio.dtype == np.float32
    assert rejected.frames.std() > 50  # noise, not a flat grey clip
    real_rms = np.sqrt(np.mean(real.audio ** 2))
    assert np.sqrt(np.mean(rejected.audio ** 2)) == pytest.approx(real_rms, rel=0.1)
    again = load_pair_media(row, settings)[1]
    assert np.array_equal(again.frames, rejected.frames) and np.array_equal(again.audio, rejected.audio)
    assert not np.array_equal(noise_frames((2, 4, 4, 3), 1), noise_frames((2, 4, 4, 3), 2))
    assert noise_audio(np.zeros(10, np.float32), 3).std() > 0  # silence still gets audible noise


def test_load_pair_media_without_donor_columns(media_world, tmp_path):
    """A row imported from a released JSON has only video_l/audio_l: it decodes all the same."""
    p = params_for(tmp_path, family_weights={"visual_reasoning": 1.0}, val_fraction=0.0, samples_per_clip=1)
    row = build_pairs(p, media_world, progress=False).rows[0]
    bare = {k: row[k] for k in CONTRACT_COLUMNS}
    settings = MediaSettings(n_frames=4, frame_size=16)
    a, b = load_pair_media(row, settings), load_pair_media(bare, settings)
    assert np.array_equal(a[1].frames, b[1].frames) and np.array_equal(a[1].audio, b[1].audio)


# --- the LLM generator ---------------------------------------------------------------------------------
_STRESS_LINE = re.compile(r'^(chosen|rejected_vr|rejected_er): start with "([^"]+)", then rest the answer on "([^"]+)"')


def _answer_from_prompt(body: dict) -> str:
    """What a good model would write: the first cue of each list (a stress question: the answer and the cue
    given for each response), copied exactly, in a wording of its own."""
    user = body["messages"][-1]["content"]
    stress = [m.groups() for m in map(_STRESS_LINE.match, user.splitlines()) if m]
    if stress:
        (emotion,) = re.findall(r"^(?:visual|audio) emotion: (\w+)$", user, re.MULTILINE)
        return json.dumps({k: f"{start}. It is {emotion}, because of {cue}." for k, start, cue in stress})
    lists = {}
    for kind, tag in (("chosen", "use in chosen"), ("rejected_vr", "use in rejected_vr"), ("rejected_er", "use in rejected_er")):
        lists[kind] = [line.split(": ", 1)[1].split(", ")[0] for line in user.splitlines() if f"({tag})" in line]
    emotions = [line.split(": ")[1] for line in user.splitlines() if re.match(r"^(visual|audio) emotion:", line)]
    answer = re.search(r"Correct answer: (Yes|No)", user)
    start = f"{answer.group(1)}. " if answer else ""
    out = {k: start + f"It is {' and '.join(emotions)}, because of {' and '.join(v)}." for k, v in lists.items()}
    return json.dumps(out)


def test_llm_generator_validates_counts_and_caches(world, tmp_path, monkeypatch):
    _, items = world
    items = items[:20]
    monkeypatch.setenv("PAIRS_TEST_KEY", SECRET)
    def reply(body):
        # the behaviour depends on the request, so that a re-asked request gets the same reply
        n = int(hashlib.sha256(json.dumps(body["messages"]).encode()).hexdigest(), 16)
        if n % 5 == 0:
            return 200, completion("Sure! Here are the answers: chosen is fine.")  # not JSON
        if n % 7 == 0:  # well-formed but the spurious answer cites an absent cue
            obj = json.loads(_answer_from_prompt(body))
            obj["rejected_vr"] = obj["rejected_er"]
            return 200, completion("```json\n" + json.dumps(obj) + "\n```")
        return 200, completion(_answer_from_prompt(body))

    with StubChat(reply) as stub:
        p = params_for(tmp_path, generator="llm", llm_base_url=stub.base_url, llm_api_key_env="PAIRS_TEST_KEY",
                       llm_max_retries=0, released_media_dir=str(world[0]))
        first = build_and_save(p, items, progress=False)
        n_requests = len(stub.requests)
        second = build_pairs(p, items, progress=False)  # a rerun: from the cache, except unparseable replies
    llm = first.stats["llm"]
    # an unparseable reply is never cached: the rerun asks again for those, and only those
    assert len(stub.requests) == n_requests + llm["llm_malformed"]
    assert all(h == f"Bearer {SECRET}" for h in stub.auth_headers)
    assert llm["llm_malformed"] > 0 and llm["llm_invalid"] > 0 and llm["llm_valid"] > 0
    assert first.stats["counts"]["llm_fallback_to_template"] == llm["llm_malformed"] + llm["llm_invalid"]
    assert second.stats["llm"]["llm_client_requests"] == llm["llm_malformed"]
    assert second.stats["llm"]["llm_client_cache_hits"] == n_requests - llm["llm_malformed"]
    assert second.rows == first.rows
    gens = {r["generator"] for r in first.rows}
    assert gens == {"llm", "template"} and first.stats["counts"].get("invalid", 0) == 0
    # The key never reaches params, stats, the dataset, the released JSON or the cache.
    assert SECRET not in json.dumps(dataclasses.asdict(p))
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f


def test_llm_generator_writes_the_stress_families_and_their_yes_no_is_checked(world, tmp_path):
    """With generator llm a stress sample is asked of the LLM: the same question and cues as the template
    path would use, checked like a template sample; a reply that starts with the wrong Yes/No is invalid."""
    _, items = world
    items = items[:30]
    weights = {"visual_stress": 1.0, "audio_stress": 1.0, "visual_reasoning": 0.5}
    template = {r["id"]: r for r in build_pairs(params_for(tmp_path, family_weights=weights), items,
                                                progress=False).rows}

    def flipped(body):  # the chosen answer of a stress question starts with the other choice
        obj = json.loads(_answer_from_prompt(body))
        if "then rest the answer on" in body["messages"][-1]["content"]:
            first, other = ("Yes (A)", "No (B)") if obj["chosen"].startswith("Yes") else ("No (B)", "Yes (A)")
            obj["chosen"] = other + obj["chosen"][len(first):]
        return 200, completion(json.dumps(obj))

    runs = {}
    for name, reply in (("good", lambda body: (200, completion(_answer_from_prompt(body)))), ("flipped", flipped)):
        with StubChat(reply) as stub:
            p = params_for(tmp_path, generator="llm", llm_base_url=stub.base_url, llm_api_key_env="", family_weights=weights,
                           llm_fallback_to_template=False, llm_cache_dir=str(tmp_path / f"cache_{name}"))
            runs[name] = build_pairs(p, items, progress=False)
    good = runs["good"]
    stress = [r for r in good.rows if r["family"] in STRESS_FAMILIES]
    assert len(stress) > 30 and good.stats["counts"].get("invalid", 0) == 0
    assert good.stats["llm"]["llm_valid"] == len(good.rows) == len(template)
    assert {r["template"].split("/")[1] for r in stress} == set(STRESS_CITED)  # every kind of question
    for r in stress:
        assert r["generator"] == "llm" and r["template"].endswith("/llm"), r["template"]
        t = template[r["id"]]
        assert r["prompt"] == t["prompt"] and r["cues"] == t["cues"] and r["chosen"] != t["chosen"]
        assert r["template"].split("/")[1] == t["template"].split("/")[2]  # the same kind of question
        for k in ("chosen", "rejected_vr", "rejected_er"):
            assert r[k].split(".")[0] == t[k].split(".")[0]  # the same Yes/No answer
    bad = runs["flipped"]
    n_stress = sum(1 for r in template.values() if r["family"] in STRESS_FAMILIES)
    assert bad.stats["llm"]["llm_invalid"] == bad.stats["counts"]["skipped_llm_failed"] == n_stress
    assert {r["family"] for r in bad.rows} == {"visual_reasoning"}
    # the check itself: a wrong start, and a "Yes" that rests on another cue than the one asked about
    r = stress[0]
    record = CueRecord.from_dict(json.loads(r["cue_record"]))
    texts = {k: r[k] for k in ("chosen", "rejected_vr", "rejected_er")}
    assert check_sample(texts, record, r["family"], r["prompt"]) == []
    wrong = {**texts, "rejected_er": ("No (B)" if texts["rejected_er"].startswith("Yes") else "Yes (A)")
             + texts["rejected_er"][len(texts["rejected_er"].split(".")[0]):]}
    assert any("rejected_er: does not start with" in p for p in check_sample(wrong, record, r["family"], r["prompt"]))
    yes = next(k for k in texts if texts[k].startswith("Yes (A)"))
    asked = find_cues(r["prompt"])[0]
    other = next(c for c in find_cues(texts[next(k for k in texts if k != yes)]))
    assert any("does not rest on the asked cue" in p for p in check_sample(
        {**texts, yes: texts[yes].replace(asked, other)}, record, r["family"], r["prompt"]))
    with pytest.raises(ValueError, match="prompt"):
        check_sample(texts, record, r["family"])


def test_llm_generator_without_fallback_counts_skips(world, tmp_path):
    _, items = world
    with StubChat(lambda body: (200, completion("{}"))) as stub:
        p = params_for(tmp_path, generator="llm", llm_base_url=stub.base_url, llm_api_key_env="",
                       llm_fallback_to_template=False,
                       llm_cache_dir="")
        result = build_pairs(p, items[:5], progress=False)
    assert result.rows == [] and result.stats["counts"]["skipped_llm_failed"] == 10
    assert result.stats["llm"]["llm_malformed"] == 10


# --- params --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", ["tiny", "paper"])
def test_params_files_hold_their_keys(profile):
    from avere_utils.config import load_yaml, stage_file
    raw = load_yaml(stage_file(profile, "02_pair_construction"))
    names = {f.name for f in dataclasses.fields(PairParams)}
    # tiny writes every key out (= the defaults); paper lists only what it sets (tests/meta/test_config_drift.py)
    assert set(raw) == names if profile == "tiny" else set(raw) < names
    params = load_stage(profile, "02_pair_construction")
    assert os.path.isabs(params.pairs_dir) and params.pairs_dir.endswith("pairs")
    if profile == "tiny":
        assert raw == dataclasses.asdict(PairParams())


def test_bad_params_are_errors_that_name_the_key():
    # choices are Literal types, checked by the config layer (YAML, --set, notebook parameters)
    with pytest.raises(ConfigError, match=r"key 'pmp_audio_source' must be one of \['other_clip', .*got 'silence'"):
        build(PairParams, {"pmp_audio_source": "silence"}, "t")
    with pytest.raises(ConfigError, match="family_weights"):
        PairParams(family_weights={"jokes": 1.0})
    with pytest.raises(ConfigError, match=r"key 'generator' must be one of \['template', 'llm'\], got 'gpt'"):
        build(PairParams, {"generator": "gpt"}, "t")


def test_pmp_donor_reuses_the_donor_clips_cache_entry(media_world, tmp_path):
    """With a FeatureCache, a rejected input costs no decode once every clip's real media is cached."""
    from avere_utils.cache import FeatureCache
    from avere_utils.media import load_media
    cache = FeatureCache(tmp_path / "features")
    settings = MediaSettings(n_frames=4, frame_size=16)
    for it in media_world:
        load_media(it.video, it.audio, settings, cache)
    misses = cache.misses
    rows = build_pairs(params_for(tmp_path, val_fraction=0.0, samples_per_clip=2), media_world, progress=False).rows
    assert {r["modality"] for r in rows} == {"visual", "audio", "both"}
    for r in rows:
        load_pair_media(r, settings, cache)
    assert cache.misses == misses and cache.hits >= 2 * len(rows)


def test_answer_only_pairs_and_counterfactual_without_recipes(world, tmp_path):
    """The tiny defaults on a hand-made world: bare-answer stress samples, all valid; no world_summary.json,
    so no recipe to re-render: every sample keeps a clip donor, counted as a fallback."""
    _, items = world
    p = params_for(tmp_path, stress_responses="answer_only", stress_kind_weights={"relevant": 2.0, "spurious": 1.0,
                                                                                   "hallucination": 1.0},
                   pmp_video_source="counterfactual", pmp_audio_source="counterfactual")
    result = build_pairs(p, items[:40], progress=False)
    stress = [r for r in result.rows if r["family"].endswith("_stress")]
    assert stress and result.stats["counts"].get("invalid", 0) == 0
    assert all(r["chosen"] in ("Yes (A)", "No (B)") and r["rejected_vr"] == r["rejected_er"] != r["chosen"]
               for r in stress)
    assert result.stats["counts"]["pmp_fallback_no_recipe"] == len(result.rows)
    assert not any("/counterfactual/" in r["video_l"] + r["audio_l"] for r in result.rows)


def test_llm_workers_do_not_change_the_result(world, tmp_path):
    _, items = world
    with StubChat(lambda body: (200, completion(_answer_from_prompt(body)))) as stub:
        runs = [build_pairs(params_for(tmp_path, generator="llm", llm_base_url=stub.base_url, llm_api_key_env="",
                                       llm_workers=w,
                                       llm_cache_dir=str(tmp_path / f"cache{w}")), items[:15], progress=False)
                for w in (1, 4)]
    assert runs[0].rows == runs[1].rows and runs[0].stats["llm"]["llm_valid"] == len(runs[0].rows) == 30
