"""The three evaluation stages end to end on crafted items with a fake model: metrics files, modes side
by side, coverage, figures, params files."""
import json

import pytest

from avere_utils import config
from avere_utils.evaluation import classification, emer, emorealm, figures
from avere_utils.evaluation.params import ClassificationParams, EmerParams, EmoRealmParams
from avere_utils.evaluation.testing import FakeBackend, fake_media_fn
from avere_utils.records import Item

STAGES = ("05_zero_shot_classification", "06_zero_shot_emer", "07_zero_shot_emorealm")


@pytest.mark.parametrize("profile", ["tiny", "paper"])
@pytest.mark.parametrize("stage", STAGES)
def test_params_files_load_with_every_key(profile, stage):
    import dataclasses

    p = config.load_stage(profile, stage)
    raw = config.load_yaml(config.stage_file(profile, stage))
    names = {f.name for f in dataclasses.fields(p)}
    if profile == "tiny":  # every key written out (the notebook's parameters cell mirrors it)
        assert set(raw) == names
        assert p == config.build(type(p), {}, "defaults")  # dataclass defaults = the tiny profile
    else:  # the paper profile lists only what it sets (tests/meta/test_config_drift.py)
        assert set(raw) <= names and len(raw) < len(names)
    assert p.adapter_dir.endswith("/models/avem_dpo") and p.reference_dir.endswith("/models/reference")


def test_params_reject_bad_values():
    with pytest.raises(config.ConfigError, match="headline_mode"):
        config.build(ClassificationParams, {"modes": ["paper"], "headline_mode": "strict"}, "t")
    with pytest.raises(config.ConfigError, match="benchmarks"):
        config.build(ClassificationParams, {"benchmarks": ["afew"]}, "t")
    with pytest.raises(config.ConfigError, match="hf_judge_path"):
        config.build(EmerParams, {"judge": "hf"}, "t")


def _params(cls, tmp_path, **kw):
    return config.build(cls, {"run_dir": str(tmp_path), "variant": "reference", "batch_size": 3, **kw}, "test")


def _cls_items():
    labels = ["happiness", "sadness", "anger", "neutral", "fear", "surprise"]
    return [Item(id=f"c{i}", dataset="dfew", split="test", video=f"/v/{i}.mp4", label=labels[i]) for i in range(6)]


# the model's free text for each clip: shows paper vs strict differences
ANSWERS = {"c0": "Happy.", "c1": "sad", "c2": "Anger", "c3": "Normal, neutral face", "c4": "", "c5": "surprise"}


def test_classification_modes_side_by_side(tmp_path):
    items = _cls_items()
    p = _params(ClassificationParams, tmp_path)
    classes = list(classification.classes_for("dfew"))
    truth_first = lambda it, cands: [10.0 if c == it.label else 0.0 for c in classes]  # noqa: E731
    backend = FakeBackend(items, answer=lambda it: ANSWERS[it.id], scores=truth_first)
    m = classification.evaluate_benchmark(p, "dfew", backend, items=items, media_fn=fake_media_fn(items))
    on_disk = json.loads((tmp_path / "metrics" / "dfew-reference.json").read_text())
    assert on_disk["uar"] == pytest.approx(m["uar"])
    assert m["scoring_mode"] == "strict" and set(m["modes"]) == {"paper", "strict", "scoring"}
    strict, paper, scoring = m["modes"]["strict"], m["modes"]["paper"], m["modes"]["scoring"]
    # strict: c0 c1 c2 c3 c5 right, c4 (empty) wrong but counted
    assert strict["war"] == pytest.approx(100 * 5 / 6) and strict["n_scored"] == 6
    assert strict["coverage"] == pytest.approx(100 * 5 / 6)
    # paper (released rules): c4 empty -> dropped by error; "sad" -> happiness (not in the word lists);
    # "Normal, neutral face": its only sentence holds "no" (in "normal"), nothing is left, so the whole
    # text decides -> neutral
    assert paper["n_scored"] == 5 and paper["war"] == pytest.approx(100 * 4 / 5)
    assert (paper["n_dropped_missing"], paper["n_dropped_error"]) == (0, 1)
    assert (m["n_dropped_missing"], m["n_dropped_error"]) == (0, 0)  # headline = strict keeps every clip
    assert "flaws" in paper["note"]
    assert scoring["war"] == 100.0
    assert m["uar"] == strict["uar"] and m["n_items"] == 6 and m["coverage"] == strict["coverage"]
    assert m["disagreement"]["paper_vs_strict"] == pytest.approx(100 * 1 / 6)  # c1
    assert m["model"] == {"path": p.reference_dir, "adapter": None, "variant": "reference"}
    assert m["protocol"]["prompt"] == p.prompt and m["protocol"]["decoding"]["strategy"] == "greedy"
    assert on_disk["confusion"]["columns"][-1] == "<other>"
    png = figures.confusion_figure(m, figures.figure_path(p.run_dir, "confusion-dfew-reference"))
    assert png.is_file() and png.stat().st_size > 1000
    assert figures.modes_figure({"dfew": m}, ("uar", "war"), tmp_path / "modes.png").is_file()
    # scoring mode scored the class names through the template
    lines = (tmp_path / "predictions" / "dfew-reference.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["candidates"] == classes


def test_classification_mer2023_five_classes_and_headline_mode(tmp_path):
    items = [Item(id=f"m{i}", dataset="mer2023", split="test", video=f"/v/{i}", label=lab)
             for i, lab in enumerate(["happiness", "sadness", "neutral", "anger", "surprise"])]
    p = _params(ClassificationParams, tmp_path, headline_mode="paper", modes=["paper", "strict"])
    backend = FakeBackend(items, answer=lambda it: "afraid" if it.id == "m4" else it.label)
    m = classification.evaluate_benchmark(p, "mer2023", backend, items=items, media_fn=fake_media_fn(items))
    assert m["classes"] == ["happiness", "sadness", "neutral", "anger", "surprise"]
    assert m["scoring_mode"] == "paper" and set(m["modes"]) == {"paper", "strict"}
    assert backend.scored == []  # no scoring mode asked: no likelihood calls
    assert m["modes"]["strict"]["confusion"]["counts"][4][-1] == 1  # "afraid" = fear: outside the classes
    assert m["weighted_f1"] == m["modes"]["paper"]["weighted_f1"]


MCQ = ["(A) a broad smile", "(B) furrowed brows", "(C) a yellow background", "(D) a quiet soft voice"]
YN = ["(A) Yes", "(B) No"]


def _realm_items():
    rows = [
        ("q1", "reasoning_basic_video", MCQ, "A", None, "It shows a smile"),   # paper right (article), strict wrong
        ("q2", "reasoning_basic_video", MCQ, "B", None, "(B)"),
        ("q3", "reasoning_basic_audio", MCQ, "D", None, "The answer is D"),
        ("q4", "modality_agreement", YN, "A", None, "Yes."),                   # paper: kept, wrong (no letter)
        ("q5", "modality_agreement", YN, "B", None, "(A) Yes"),
        ("q6", "reasoning_stress_video", YN, "A", "relevant", "Yes"),
        ("q7", "reasoning_stress_video", YN, "B", "hallucination", "Yes"),
        ("q8", "reasoning_stress_audio", YN, "B", "spurious", "No"),
        ("q9", "reasoning_stress_audio", YN, "B", "hallucination", ""),
    ]
    items, answers = [], {}
    for qid, task, choices, ans, kind, said in rows:
        text = {"task": task, "question": f"Question {qid}?", "choices": choices, "answer": ans}
        if kind:
            text["kind"] = kind
        items.append(Item(id=qid, dataset="emorealm", split="test", video=f"/v/{qid}.mp4", label="happiness",
                          text=text))
        answers[qid] = said
    return items, answers


def test_emorealm_tasks_modes_and_kinds(tmp_path):
    items, answers = _realm_items()
    p = _params(EmoRealmParams, tmp_path)
    backend = FakeBackend(items, answer=lambda it: answers[it.id],
                          scores=lambda it, c: [1.0 if x.endswith(f"({it.text['answer']})") else 0.0 for x in c])
    m = emorealm.evaluate(p, backend, items=items, media_fn=fake_media_fn(items))
    strict, paper = m["modes"]["strict"], m["modes"]["paper"]
    assert strict["reasoning_basic_video"] == 50.0 and paper["reasoning_basic_video"] == 100.0
    assert strict["reasoning_basic_audio"] == 100.0
    assert strict["modality_agreement"] == 50.0
    assert paper["tasks"]["modality_agreement"]["n_scored"] == 2 and paper["modality_agreement"] == 0.0
    assert paper["reasoning_basic_audio"] == 100.0  # "The answer is D": the letter between word boundaries
    assert paper["average_accuracy"] == pytest.approx((100 + 100 + 0 + 0 + 0) / 5)
    assert paper["n_scored"] == 9 and paper["n_dropped_missing"] == 0  # nothing is missing, nothing dropped
    ma = strict["tasks"]["modality_agreement"]
    assert (ma["yes_accuracy"], ma["no_accuracy"], ma["f1"]) == (100.0, 0.0, 0.0)
    sv = strict["tasks"]["reasoning_stress_video"]
    assert sv["accuracy"] == 50.0 and sv["yes_accuracy"] == 100.0 and sv["no_accuracy"] == 0.0
    assert strict["reasoning_stress_audio"] == 50.0  # q9 empty: wrong, counted
    assert strict["average_accuracy"] == pytest.approx((50 + 100 + 50 + 50 + 50) / 5)
    # stress items by kind: both hallucination items were answered Yes / not at all
    assert strict["by_kind"]["hallucination"]["yes_rate"] == 50.0
    assert strict["hallucination_rate"] == 50.0 and strict["spurious_rate"] == 0.0
    assert strict["by_kind"]["relevant"]["accuracy"] == 100.0
    assert m["modes"]["scoring"]["average_accuracy"] == 100.0
    # top level: the headline mode's flat keys
    assert m["reasoning_stress_video"] == 50.0 and m["average_accuracy"] == strict["average_accuracy"]
    assert m["n_items"] == 9 and m["coverage"] == pytest.approx(100 * 7 / 9)
    prompt = emorealm.build_prompt(items[0])
    assert prompt == "Question q1? (A) a broad smile (B) furrowed brows (C) a yellow background (D) a quiet soft voice"
    png = figures.emorealm_figure(m, tmp_path / "f.png")
    assert png.is_file()
    assert figures.stress_kind_figure(m, tmp_path / "k.png").is_file()


def test_emorealm_rejects_bad_answer_letter(tmp_path):
    bad = Item(id="z", dataset="emorealm", split="test", video="/v", text={
        "task": "reasoning_basic_video", "question": "?", "choices": MCQ, "answer": "E"})
    with pytest.raises(ValueError, match="answer 'E'"):
        emorealm.evaluate(_params(EmoRealmParams, tmp_path), FakeBackend([bad]), items=[bad],
                          media_fn=fake_media_fn([bad]))


CUES = {"video_emotion": "happiness", "audio_emotion": "happiness",
        "visual": {"present": ["a broad smile"], "absent": ["crinkled eyes"], "context": ["a yellow background"]},
        "audio": {"present": ["a high rising pitch"], "absent": [], "context": ["rain noise"]}}


def test_emer_cue_judge_end_to_end(tmp_path):
    items = [Item(id=f"e{i}", dataset="emer", split="test", video=f"/v/{i}.mp4", label="happiness",
                  text={"reason": "A broad smile and a high rising pitch: happiness.", "cues": CUES}) for i in range(3)]
    answers = {"e0": "Happy: a broad smile and a high rising pitch.",  # perfect
               "e1": "Happy because of a yellow background and crinkled eyes.",  # spurious + hallucination
               "e2": ""}  # no answer: counted, never averaged in
    p = _params(EmerParams, tmp_path, max_new_tokens=20)
    backend = FakeBackend(items, answer=lambda it: answers[it.id])
    m = emer.evaluate(p, backend, items=items, media_fn=fake_media_fn(items))
    assert backend.calls[0]["max_new_tokens"] == 20
    assert m["clue"] == pytest.approx((10 + 1) / 2)  # over the two judged items only
    assert m["label"] == pytest.approx((10 + 10) / 2)
    assert m["spurious"] == pytest.approx((10 + 5.5) / 2)
    assert m["hallucination"] == pytest.approx((10 + 5.5) / 2)
    assert m["n_items"] == 3 and m["n_scored"] == m["n_judged"] == 2 and m["n_no_answer"] == 1
    assert m["judge"]["name"] == "cue" and "1+9" in m["judge"]["version"]
    assert m["cue_rates"]["hallucination_rate"] == pytest.approx(25.0)
    # per description: e1 cites one absent and one context cue, e0 none
    assert m["cue_rates"]["hallucinated_per_description"] == m["cue_rates"]["irrelevant_per_description"] == 0.5
    assert m["n_no_cues_cited"] == 0
    assert json.loads((tmp_path / "metrics" / "emer-reference.json").read_text())["scoring_mode"] == "judge:cue"
    batch = (tmp_path / "predictions" / "emer-reference.judge_batch.jsonl").read_text().splitlines()
    assert len(batch) == 2  # answered items only
    assert figures.emer_figure(m, tmp_path / "e.png").is_file()


def test_emorealm_paper_mode_yes_no_in_words_is_wrong_not_dropped(tmp_path):
    items, _ = _realm_items()
    p = _params(EmoRealmParams, tmp_path, modes=["paper", "strict"])
    m = emorealm.evaluate(p, FakeBackend(items, answer=lambda it: "Yes"), items=items, media_fn=fake_media_fn(items))
    paper = m["modes"]["paper"]
    assert paper["tasks"]["modality_agreement"]["n_scored"] == 2
    assert paper["modality_agreement"] == 0.0  # the released rule never maps "Yes" to its choice
    assert paper["tasks"]["modality_agreement"]["yes_rate"] == 50.0  # wrong on the No-item = "said Yes"
    assert "yes_accuracy" not in paper["tasks"]["reasoning_basic_video"]  # MCQ tasks have no Yes/No split
    assert m["modes"]["strict"]["modality_agreement"] == 50.0


def test_load_items_reads_the_manifest_and_spreads_max_items(tmp_path):
    from avere_utils.evaluation import common

    items, _ = _realm_items()
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "emorealm.jsonl").write_text("".join(json.dumps(it.to_dict()) + "\n" for it in items))
    assert [it.id for it in common.load_items(_params(EmoRealmParams, tmp_path), "emorealm")] == [it.id for it in items]
    picked = common.load_items(_params(EmoRealmParams, tmp_path, max_items=3), "emorealm")
    assert [it.id for it in picked] == ["q1", "q5", "q9"]  # first, middle, last
    with pytest.raises(FileNotFoundError, match="mer2023.jsonl"):
        common.load_items(_params(EmoRealmParams, tmp_path), "mer2023")
