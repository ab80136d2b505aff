"""Loaders on hand-built fixtures holding the tricky cases, manifests, prepare_data and the data check."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from avere_utils.datacheck import check_params
from avere_utils.datasets import (
    DatasetError,
    load_dfew,
    load_emer,
    load_emorealm,
    load_mafw_labels,
    load_mer2023,
    load_ravdess,
    load_train_source,
    read_manifest,
    write_manifest,
)
from avere_utils.datasets.common import resolve_inside
from avere_utils.datasets.emorealm import validate_qa
from avere_utils.datasets.params import DataPrepParams
from avere_utils.datasets.prepare import expected_counts, prepare_data
from avere_utils.records import Item


def touch(p: Path, data: bytes = b"x") -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


# --- DFEW --------------------------------------------------------------------------------------------
@pytest.fixture
def dfew(tmp_path):
    root = tmp_path / "DFEW"
    for part, stem in [("part_1", "00001"), ("part_1", "00002"), ("part_2", "00003"), ("part_2", "00005")]:
        touch(root / "Clip/clip_224x224" / part / f"{stem}.mp4")
        if stem != "00003":  # 00003 has no wav
            touch(root / "Clip/clip_16k_wav" / part / f"{stem}.wav")
    csv = "video_name,label\n1,1\n2,7\n3,2\n4,3\n5,9\n1,1\n"  # 4 not on disk, 5 label out of range, 1 twice
    touch(root / "dfew_annotation/test(single-labeled)/set_1.csv", csv.encode())
    touch(root / "dfew_annotation/train(single-labeled)/set_2.csv", b"video_name,label\n00005,4\n")
    return root


def test_dfew_counts_every_skip(dfew):
    res = load_dfew(dfew)
    assert [(i.id, i.label) for i in res.items] == [("00001", "happiness"), ("00002", "fear")]
    assert res.skipped == {"missing_audio": 1, "missing_video": 1, "bad_label": 1, "duplicate_id": 1}
    assert res.items[0].audio.endswith("clip_16k_wav/part_1/00001.wav")
    assert "missing_audio" in res.report() and "00003.wav" in res.report()


def test_dfew_fold_and_split_are_parameters(dfew):
    res = load_dfew(dfew, fold=2, split="train")
    assert [(i.id, i.label, i.split) for i in res.items] == [("00005", "anger", "train")]
    with pytest.raises(DatasetError, match=r"set_3.csv"):
        load_dfew(dfew, fold=3)
    with pytest.raises(ValueError, match="fold"):
        load_dfew(dfew, fold=6)


def test_dfew_without_wav_requirement_keeps_the_clip(dfew):
    res = load_dfew(dfew, require_audio=False)
    assert {i.id: i.audio for i in res.items}["00003"] is None


# --- RAVDESS ---------------------------------------------------------------------------------------------
RAVDESS_FILES = [
    "01-01-01-01-01-01-01.mp4",  # neutral speech AV: kept
    "01-01-03-02-01-01-01.mp4",  # happy: kept
    "01-01-02-01-01-01-01.mp4",  # calm: dropped (or merged)
    "01-02-03-01-01-01-01.mp4",  # song: filtered
    "02-01-03-01-01-01-01.mp4",  # video-only: filtered
    "03-01-03-01-01-01-01.wav",  # audio-only: filtered
    "01-01-09-01-01-01-01.mp4",  # unknown emotion code
    "notes.mp4",  # not a RAVDESS name
    "01-01-04-01-01-01-02.mp4",  # actor field 02 inside Actor_01
]


@pytest.fixture
def ravdess(tmp_path):
    for name in RAVDESS_FILES:
        touch(tmp_path / "RAVDESS/Actor_01" / name)
    return tmp_path / "RAVDESS"


def test_ravdess_filters_song_calm_and_other_modalities(ravdess):
    res = load_ravdess(ravdess)
    assert sorted((i.id, i.label) for i in res.items) == [("01-01-01-01-01-01-01", "neutral"),
                                                          ("01-01-03-02-01-01-01", "happiness")]
    assert res.skipped == {"calm": 1, "vocal_channel:02": 1, "modality:02": 1, "modality:03": 1, "bad_label": 1,
                           "unparseable_name": 1, "actor_mismatch": 1}
    assert set(res.unexpected_skips()) == {"bad_label", "unparseable_name", "actor_mismatch"}
    assert all(i.audio is None and i.video.endswith(".mp4") for i in res.items)  # audio: the mp4's own track


def test_ravdess_calm_merge_and_channel_parameters(ravdess):
    merged = load_ravdess(ravdess, calm_policy="merge")
    assert ("01-01-02-01-01-01-01", "neutral") in [(i.id, i.label) for i in merged.items]
    video_only = load_ravdess(ravdess, modality="02")
    assert [i.id for i in video_only.items] == ["02-01-03-01-01-01-01"]
    audio_only = load_ravdess(ravdess, modality="03")
    assert audio_only.items[0].video is None and audio_only.items[0].audio.endswith(".wav")
    song = load_ravdess(ravdess, vocal_channel="02")
    assert [i.id for i in song.items] == ["01-02-03-01-01-01-01"]
    with pytest.raises(ValueError, match="calm_policy"):
        load_ravdess(ravdess, calm_policy="keep")


def test_ravdess_full_speech_set_is_1248(tmp_path):
    codes = [("01", "01")] + [(e, i) for e in ("02", "03", "04", "05", "06", "07", "08") for i in ("01", "02")]
    for actor in range(1, 25):
        for emo, inten in codes:
            for st in ("01", "02"):
                for rep in ("01", "02"):
                    touch(tmp_path / f"RAVDESS/Actor_{actor:02d}/01-01-{emo}-{inten}-{st}-{rep}-{actor:02d}.mp4")
    res = load_ravdess(tmp_path / "RAVDESS")
    assert res.expected == 1248 and len(res.items) == 1248 and res.skipped == {"calm": 192}
    assert "expected 1248 (ok)" in res.report()


# --- MER2023 / EMER --------------------------------------------------------------------------------
def test_mer2023_drops_worried_and_counts_problems(tmp_path):
    d = tmp_path / "MER2023"
    for n in ("s1", "s2", "s3", "s5"):
        touch(d / "test3" / f"{n}.mp4")
    touch(d / "test3" / "s6.avi")
    touch(d / "test3_label.csv", b"name,discrete,valence\ns1,happy,1\ns2,worried,0\ns3,bored,0\ns4,sad,0\n"
                                 b"s5,Angry,0\ns6,surprise,0\ns1,happy,1\n")
    res = load_mer2023(d / "test3_label.csv", d / "test3")
    assert [(i.id, i.label) for i in res.items] == [("s1", "happiness"), ("s5", "anger"), ("s6", "surprise")]
    assert res.skipped == {"dropped_label:worried": 1, "bad_label": 1, "missing_video": 1, "duplicate_id": 1}
    assert set(res.unexpected_skips()) == {"bad_label", "missing_video", "duplicate_id"}


def test_mer2023_wrong_columns_name_the_file(tmp_path):
    touch(tmp_path / "labels.csv", b"clip,emotion\na,happy\n")
    (tmp_path / "clips").mkdir()
    with pytest.raises(DatasetError, match=r"labels.csv: missing column\(s\) \['name', 'discrete'\]"):
        load_mer2023(tmp_path / "labels.csv", tmp_path / "clips")


def test_emer_reads_reasons(tmp_path):
    touch(tmp_path / "video/a.mp4")
    touch(tmp_path / "video/b.mp4")
    touch(tmp_path / "ovmerd.csv", b'name,reason\na,"The person smiles, with a bright loud voice."\nb,\nc,text\n')
    res = load_emer(tmp_path / "ovmerd.csv", tmp_path / "video")
    assert [(i.id, i.text["reason"], i.label) for i in res.items] == [
        ("a", "The person smiles, with a bright loud voice.", None)]
    assert res.skipped == {"empty_reason": 1, "missing_video": 1}


# --- EmoReAlM -----------------------------------------------------------------------------------------
def qa(task="reasoning_basic_video", answer="B", choices=None, question="Which cue?", video="part_1/00001.mp4", **kw):
    choices = choices or ["(A) a broad smile", "(B) crinkled eyes", "(C) a yellow background", "(D) level brows"]
    return {"task": task, "question": question, "choices": choices, "answer": answer, "video": video, **kw}


@pytest.fixture
def emorealm(dfew, tmp_path):
    yn = ["(A) Yes", "(B) No"]
    items = [
        qa(id="ok1"),
        qa(id="ok2", task="reasoning_stress_audio", choices=yn, answer="B", kind="hallucination"),
        qa(id="ok3", task="modality_agreement", choices=yn, answer="A", video="part_1/00002.mp4"),
        qa(id="bad_letter", answer="E"),
        qa(id="bad_task", task="reasoning_advanced_video"),
        qa(id="unlettered", choices=["a broad smile", "crinkled eyes"], answer="A"),
        qa(id="empty_q", question="  "),
        qa(id="escape", video="../../../../etc/passwd"),
        qa(id="absolute", video="/etc/passwd"),
        qa(id="no_wav", video="part_2/00003.mp4"),
        qa(id="no_clip", video="part_9/09999.mp4"),
        qa(id="ok1"),
    ]
    f = tmp_path / "emorealm_v1.json"
    f.write_text(json.dumps(items))
    return f


def test_emorealm_validates_every_item(emorealm, dfew):
    res = load_emorealm(emorealm, dfew)
    assert [i.id for i in res.items] == ["ok1", "ok2", "ok3"]
    assert res.skipped == {"answer_not_in_choices": 1, "unknown_task": 1, "unlettered_choice": 1,
                           "empty_question": 1, "path_escapes_root": 2, "missing_audio": 1, "missing_video": 1,
                           "duplicate_id": 1}
    first = res.items[0]
    assert first.text == {"task": "reasoning_basic_video", "question": "Which cue?",
                          "choices": qa()["choices"], "answer": "B"}
    assert first.video.endswith("clip_224x224/part_1/00001.mp4") and first.audio.endswith("clip_16k_wav/part_1/00001.wav")
    assert res.items[1].text["kind"] == "hallucination"
    assert "modality_agreement 1" in res.report()


def test_emorealm_strict_raises_on_the_first_bad_item(emorealm, dfew):
    with pytest.raises(DatasetError, match="bad_letter: answer_not_in_choices"):
        load_emorealm(emorealm, dfew, strict=True)


@pytest.mark.parametrize("item, reason", [
    (qa(task="modality_agreement"), "yes_no_choices_expected"),
    (qa(choices=["(A) x", "(C) y"], answer="A"), "choice_letters_out_of_order"),
    (qa(choices=["(A) x"], answer="A"), "too_few_choices"),
    (qa(task="reasoning_stress_video", choices=["(A) Yes", "(B) No"], kind="weird"), "unknown_kind"),
    (qa(answer="(B)"), None),
])
def test_validate_qa(item, reason):
    assert validate_qa(item) == reason


def test_resolve_inside_rejects_escapes(tmp_path):
    assert resolve_inside(tmp_path, "a/b.mp4") == (tmp_path / "a/b.mp4").resolve()
    assert resolve_inside(tmp_path, "a/../../b.mp4") is None
    assert resolve_inside(tmp_path, "/abs.mp4") is None
    assert resolve_inside(tmp_path, "") is None


# --- training source + MAFW converter --------------------------------------------------------------------
def test_train_source_manifest(tmp_path):
    root = tmp_path / "train_source"
    touch(root / "clips/a.mp4")
    touch(root / "wavs/a.wav")
    touch(root / "clips/b.mp4")
    caps = {"visual": "a broad smile", "audio": "a high rising pitch", "description": "happy"}
    good_qa = {"task": "modality_agreement", "question": "Same?", "choices": ["(A) Yes", "(B) No"], "answer": "A"}
    rows = [
        {"id": "a", "clip": "clips/a.mp4", "wav": "wavs/a.wav", "label": "happiness", "captions": caps,
         "cues": None, "qa": [good_qa, {**good_qa, "answer": "C"}]},
        {"id": "b", "clip": "clips/b.mp4", "wav": "wavs/b.wav", "label": "happiness", "captions": caps},
        {"id": "c", "clip": "../../outside.mp4", "label": "anger", "captions": caps},
        {"id": "d", "clip": "clips/a.mp4", "label": "joy", "captions": caps},
        {"id": "e", "clip": "clips/a.mp4", "label": "anger", "captions": {}},
        {"id": "a", "clip": "clips/a.mp4", "label": "anger", "captions": caps},
    ]
    touch(root / "manifest.jsonl", "\n".join(json.dumps(r) for r in rows).encode())
    res = load_train_source(root / "manifest.jsonl")
    assert [i.id for i in res.items] == ["a"]
    assert res.items[0].text["qa"] == [good_qa] and res.items[0].text["captions"] == caps
    assert res.skipped == {"missing_audio": 1, "path_escapes_root": 1, "bad_label": 1, "missing_captions": 1,
                           "duplicate_id": 1, "bad_qa_entries": 1}


def test_mafw_converter(tmp_path):
    for n in ("00001", "00002", "00004"):
        touch(tmp_path / "clips" / f"{n}.mp4")
    touch(tmp_path / "audio" / "00001.wav")
    touch(tmp_path / "train.txt", b"clip,label,description\n00001.mp4,happiness,She smiles broadly.\n"
                                   b"00002 contempt\n00003\t4\n00004 12\n")
    res = load_mafw_labels(tmp_path / "train.txt", tmp_path / "clips", tmp_path / "audio")
    assert [(i.id, i.label, i.text["captions"]["description"]) for i in res.items] == [
        ("00001", "happiness", "She smiles broadly.")]
    assert res.items[0].audio.endswith("00001.wav")
    assert res.skipped == {"not_a_basic_emotion:contempt": 1, "missing_video": 1, "bad_label": 1}


# --- manifests, prepare_data, data check ---------------------------------------------------------------
def test_manifest_roundtrip(tmp_path):
    items = [Item(id="x", dataset="dfew", split="test", video="/a.mp4", audio=None, label="fear",
                  text={"cues": {"visual": {"present": ["a broad smile"]}}})]
    path = write_manifest(tmp_path / "m" / "dfew.jsonl", items)
    assert read_manifest(path) == items
    with pytest.raises(DatasetError, match="manifest not found"):
        read_manifest(tmp_path / "missing.jsonl")


SMALL = dict(n_train_source=14, n_dfew_test_per_class=2, n_dfew_train_per_class=1, n_ravdess_actors=1,
             n_mer2023=10, n_mer2023_worried=2, n_emer=7, n_emorealm_per_task=4, clip_seconds=1.0, video_size=64,
             world_workers=1)


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    from avere_utils.config import build
    d = tmp_path_factory.mktemp("prep")
    # build() resolves ${data_root} / ${run_dir} in the default paths, as for a notebook
    P = build(DataPrepParams, {"run_dir": str(d / "run"), "data_root": str(d / "world"), **SMALL}, "test")
    return P, prepare_data(P)


def test_prepare_data_writes_manifests_with_expected_counts(small_world):
    P, results = small_world
    exp = expected_counts(P)
    assert {k: len(r.items) for k, r in results.items()} == exp
    assert all(not r.unexpected_skips() for r in results.values())
    for name in exp:
        items = read_manifest(Path(P.manifest_dir) / f"{name}.jsonl")
        assert len(items) == exp[name] and all(Path(i.video).is_absolute() for i in items if i.video)
        assert all("cues" in i.text for i in items)  # the synthetic side files were attached
    index = json.loads((Path(P.manifest_dir) / "index.json").read_text())
    assert index["datasets"]["ravdess"]["skipped"]["calm"] == 8
    # a second call reuses the world instead of regenerating it
    again = prepare_data(P)
    assert {k: len(r.items) for k, r in again.items()} == exp
    assert json.loads((Path(P.manifest_dir) / "index.json").read_text())["world"]["reused"] is True


def test_data_check_passes_on_the_world_and_names_what_is_missing(small_world, tmp_path):
    P, _ = small_world
    table, ok = check_params(P)
    assert ok and list(table["dataset"]) == P.datasets and (table["clip_problems"] == "none").all()
    victim = Path(read_manifest(Path(P.manifest_dir) / "dfew.jsonl")[0].audio)
    moved = victim.with_suffix(".bak")
    victim.rename(moved)
    try:
        table, ok = check_params(P)
        row = table.set_index("dataset").loc["dfew"]
        assert not ok and row["missing_audio"] == 1 and victim.name in row["problem"]
    finally:
        moved.rename(victim)
    paper_like = dataclasses.replace(P, generate_world=False, dfew_root=str(tmp_path / "nowhere/DFEW"))
    table, ok = check_params(paper_like)
    problem = table.set_index("dataset").loc["dfew", "problem"]
    assert not ok and "not found" in problem and "nowhere/DFEW/dfew_annotation" in problem


def test_data_check_does_not_import_torch():
    import subprocess
    import sys
    code = ("import sys; from avere_utils.datacheck import check_profile; "
            "print(any(m.split('.')[0] in ('torch', 'transformers') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
