"""`avere-kit score` on crafted native annotation files and prediction folders / JSONL (expected numbers
worked out by hand from the released rules)."""
import json

import pytest

from avere_utils import cli
from avere_utils.evaluation.score_cli import ScoreError, score

DFEW_CSV = "video_name,label\n1,1\n2,2\n3,4\n4,3\n5,7\n6,8\n"
# 00001 = clip 1 (DFEW names are numbers); 4 is empty (the released mapping raises); 5 has no file;
# 7 names no annotated clip
DFEW_TXT = {"00001": "Happy.", "2": "sad", "3": "Furious rage", "4": "", "7": "happy"}


def _write_txt(folder, answers):
    folder.mkdir()
    for name, text in answers.items():
        (folder / f"{name}.txt").write_text(text)
    return folder


def _check_dfew(m):
    paper, strict = m["modes"]["paper"], m["modes"]["strict"]
    # paper keeps 1 (happy), 2 ("sad" -> happiness: wrong), 3 ("rage" -> anger); labels = 3 classes
    assert (paper["n_items"], paper["n_scored"], paper["n_dropped_missing"], paper["n_dropped_error"]) == (5, 3, 1, 1)
    assert paper["uar"] == pytest.approx(100 * 2 / 3) and paper["war"] == pytest.approx(100 * 2 / 3)
    # strict: 1, 2 ("sad"), 3 ("furious") right; 4 (empty) and 5 (missing) wrong, counted
    assert strict["n_scored"] == 5 and strict["war"] == pytest.approx(60.0) and strict["uar"] == pytest.approx(60.0)
    assert m["n_predictions_unmatched"] == 1 and m["annotation_skips"] == {"label_not_1_7:8": 1}
    assert m["scoring_mode"] == "paper" and m["uar"] == paper["uar"]


def test_score_dfew_txt_folder_through_the_cli(tmp_path, capsys):
    (tmp_path / "set_1.csv").write_text(DFEW_CSV)
    preds = _write_txt(tmp_path / "pred", DFEW_TXT)
    out = tmp_path / "m" / "dfew.json"
    rc = cli.main(["score", "--benchmark", "dfew", "--annotations", str(tmp_path / "set_1.csv"),
                   "--predictions", str(preds), "--out", str(out)])
    assert rc == 0
    _check_dfew(json.loads(out.read_text()))
    assert "dfew paper: uar 66.67" in capsys.readouterr().out


def test_score_dfew_kit_jsonl(tmp_path):
    (tmp_path / "set_1.csv").write_text(DFEW_CSV)
    recs = [{"id": k if k != "2" else "00002", "generation": v} for k, v in DFEW_TXT.items()]
    recs.append({"id": "00005", "error": "could not decode"})  # no generation = no prediction
    jsonl = tmp_path / "dfew-x.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"id": "9", "gen')  # partial last line
    _check_dfew(score("dfew", tmp_path / "set_1.csv", jsonl))
    assert jsonl.read_text().endswith('"gen')  # read-only: the partial line is ignored, not repaired


YN, MCQ = ["(A) Yes", "(B) No"], ["(A) a smile", "(B) a frown", "(C) tears", "(D) a shrug"]
EMOREALM = [
    {"id": 1, "task": "reasoning_basic_video", "question": "q", "choices": MCQ, "answer": "A", "video": "v.mp4"},
    {"id": 2, "task": "reasoning_basic_video", "question": "q", "choices": MCQ, "answer": "C", "video": "v.mp4"},
    {"id": 3, "task": "modality_agreement", "question": "q", "choices": YN, "answer": "A", "video": "v.mp4"},
    {"id": 4, "task": "modality_agreement", "question": "q", "choices": YN, "answer": "B", "video": "v.mp4"},
    {"id": 5, "task": "modality_agreement", "question": "q", "choices": YN, "answer": "B", "video": "v.mp4"},
    {"id": 6, "task": "reasoning_stress_audio", "question": "q", "choices": YN, "answer": "B", "video": "v.mp4",
     "kind": "hallucination"},
]
# 1: the article "a" = option A for paper (strict: by the choice text "a smile"); 2: "(B) or (C)" right for
# paper, no single letter for strict;
# 3: "A" right; 4: "Yes" wrong for paper (no letter), strict wrong too (said yes); 5: missing;
# 6: empty (paper kept, wrong)
EMOREALM_TXT = {"1": "It shows a smile", "2": "(B) or (C)", "3": "A", "4": "Yes", "6": ""}


def test_score_emorealm_txt_folder(tmp_path):
    (tmp_path / "emorealm_v1.json").write_text(json.dumps(EMOREALM))
    preds = _write_txt(tmp_path / "pred", EMOREALM_TXT)
    out = tmp_path / "emorealm.json"
    assert cli.main(["score", "--benchmark", "emorealm", "--annotations", str(tmp_path / "emorealm_v1.json"),
                     "--predictions", str(preds), "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    paper, strict = m["modes"]["paper"], m["modes"]["strict"]
    assert paper["tasks"]["reasoning_basic_video"]["accuracy"] == 100.0
    ma = paper["tasks"]["modality_agreement"]
    assert (ma["n_items"], ma["n_scored"], ma["n_dropped_missing"]) == (3, 2, 1)
    assert (ma["accuracy"], ma["yes_accuracy"], ma["no_accuracy"], ma["f1"], ma["yes_rate"]) == (50.0, 100.0, 0.0, 0.0, 100.0)
    sa = paper["tasks"]["reasoning_stress_audio"]
    assert (sa["accuracy"], sa["yes_rate"]) == (0.0, 100.0)  # the empty answer is wrong; wrong on No = "Yes"
    assert paper["average_accuracy"] == pytest.approx((100 + 50 + 0) / 3)
    assert set(paper["tasks"]) == {"reasoning_basic_video", "modality_agreement", "reasoning_stress_audio"}
    assert strict["tasks"]["reasoning_basic_video"]["accuracy"] == 50.0
    assert strict["tasks"]["modality_agreement"]["accuracy"] == pytest.approx(100 / 3)
    assert strict["tasks"]["modality_agreement"]["yes_rate"] == pytest.approx(200 / 3)  # 3 "A", 4 "Yes"
    assert m["by_kind"]["hallucination"]["yes_rate"] == 100.0


def test_score_mer2023_and_ravdess_lists(tmp_path):
    (tmp_path / "test3-label.csv").write_text("name,discrete\ns1,happy\ns2,worried\ns3,sad\ns4,angry\n")
    preds = _write_txt(tmp_path / "mer", {"s1": "Joy and a smile.", "s3": "Fear.", "s4": "Tension"})
    m = score("mer2023", tmp_path / "test3-label.csv", preds)
    paper = m["modes"]["paper"]
    # s3 "Fear." -> happiness (MER2023's released order has no fear); s4 "tension" -> anger
    assert paper["n_scored"] == 3 and paper["war"] == pytest.approx(100 * 2 / 3)
    assert m["annotation_skips"] == {"label_not_in_protocol:worried": 1}
    names = ["01-01-03-01-01-01-01.mp4", "01-02-04-01-01-01-01.mp4", "02-01-03-01-01-01-01.mp4",
             "01-01-02-01-01-01-01.mp4"]
    (tmp_path / "rav.txt").write_text("\n".join(f"/data/Actor_01/{n}" for n in names) + "\n")
    rav_preds = _write_txt(tmp_path / "rav", {"01-01-03-01-01-01-01": "happy", "01-02-04-01-01-01-01": "crying"})
    released = score("ravdess", tmp_path / "rav.txt", rav_preds)  # song file kept, as released
    assert released["n_items"] == 2 and released["modes"]["paper"]["war"] == 100.0
    speech = score("ravdess", tmp_path / "rav.txt", rav_preds, ravdess_selection="speech")
    assert speech["n_items"] == 1 and speech["annotation_skips"]["vocal_channel:02"] == 1
    assert released["annotation_skips"] == {"modality:02": 1, "emotion:02": 1}


def test_score_refuses_what_it_cannot_do(tmp_path, capsys):
    (tmp_path / "set_1.csv").write_text(DFEW_CSV)
    preds = _write_txt(tmp_path / "pred", DFEW_TXT)
    with pytest.raises(ScoreError, match="log-likelihood"):
        score("dfew", tmp_path / "set_1.csv", preds, modes=["paper", "scoring"])
    rc = cli.main(["score", "--benchmark", "dfew", "--annotations", str(tmp_path / "nope.csv"),
                   "--predictions", str(preds), "--out", str(tmp_path / "x.json")])
    assert rc == 2 and "nope.csv" in capsys.readouterr().err
    with pytest.raises(ScoreError, match="no <id>.txt"):
        score("dfew", tmp_path / "set_1.csv", tmp_path)  # a folder without predictions
    (tmp_path / "bad.json").write_text(json.dumps([{**EMOREALM[0], "answer": "E"}]))
    with pytest.raises(ScoreError, match="bad.json.*answer 'E'"):
        score("emorealm", tmp_path / "bad.json", preds)


def _batch_row(cid, content):
    return {"custom_id": cid, "response": {"body": {"choices": [{"message": {"content": content}}]}}}


def test_score_emer_needs_judged_replies(tmp_path):
    (tmp_path / "ovmerd.csv").write_text("name,reason\ne1,smiles: happy\ne2,frowns: sad\ne3,tears\ne4,calm\n")
    preds = _write_txt(tmp_path / "pred", {"e1": "happy", "e2": "sad", "e3": ""})  # e4: no prediction
    with pytest.raises(ScoreError, match="needs a judge"):
        score("emer", tmp_path / "ovmerd.csv", preds, modes=["paper"])
    with pytest.raises(ScoreError, match="strict judge"):
        score("emer", tmp_path / "ovmerd.csv", preds, modes=["paper", "strict"])
    reply = {"cue_overlap": 8, "emotion_consistency": 9, "emotion_cue_association": 7, "hallucinated_cues": 6}
    rows = [_batch_row("e1", "```json\n" + json.dumps(reply) + "\n```"), _batch_row("e2", "I cannot rate this."),
            _batch_row("e3", json.dumps({**reply, "cue_overlap": 2}))]
    (tmp_path / "out.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    m = score("emer", tmp_path / "ovmerd.csv", preds, modes=["paper"], judged=tmp_path / "out.jsonl")
    paper = m["modes"]["paper"]
    assert (paper["clue"], paper["label"], paper["spurious"], paper["hallucination"]) == (5.0, 9.0, 7.0, 6.0)
    assert (paper["n_items"], paper["n_scored"], paper["n_dropped_missing"], paper["n_dropped_error"]) == (4, 2, 1, 1)
    assert m["judged_format"] == "batch"
    # the kit's judged rows (notebook 06, judge_protocol: paper) carry the kit's criterion names
    kit = [{"id": "e1", "scores": {"clue": 8, "label": 9, "spurious": 7, "hallucination": 6}},
           {"id": "e2", "scores": None, "error": "judge reply is not a JSON object"},
           {"id": "e3", "scores": {"clue": 2, "label": 9, "spurious": 7, "hallucination": 6}}]
    (tmp_path / "judged.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kit))
    k = score("emer", tmp_path / "ovmerd.csv", preds, modes=["paper"], judged=tmp_path / "judged.jsonl")
    assert k["modes"]["paper"] == {**paper, "n_not_judged": 0} and k["judged_format"] == "kit rows"


def test_score_ravdess_folder_uses_the_loader_selection(tmp_path):
    actor = tmp_path / "ravdess" / "Actor_01"
    actor.mkdir(parents=True)
    for n in ("01-01-03-01-01-01-01", "01-02-04-01-01-01-01", "02-01-03-01-01-01-01", "01-01-02-01-01-01-01"):
        (actor / f"{n}.mp4").write_bytes(b"")  # names only: score never opens a clip
    preds = _write_txt(tmp_path / "pred", {"01-01-03-01-01-01-01": "happy", "01-02-04-01-01-01-01": "sad"})
    released = score("ravdess", tmp_path / "ravdess", preds)
    assert released["ravdess_selection"] == "released" and released["n_items"] == 2  # song file kept
    assert released["modes"]["paper"]["war"] == 50.0  # "sad" -> happiness
    assert score("ravdess", tmp_path / "ravdess", preds, ravdess_selection="speech")["n_items"] == 1
