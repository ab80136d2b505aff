"""The lmms-eval export and plugin against lmms-eval's task and model contracts, without lmms-eval installed.

* the exported folder: the TaskConfig keys lmms-eval reads, `!function` references that resolve in the folder's
  `utils` module (loaded from its file, as lmms-eval's YAML loader does), the signatures lmms-eval calls them
  with, relative data files, and no absolute path of this machine anywhere;
* the figures: the committed run's EmoReAlM answers (outputs/golden/predictions) fed through
  `process_results` and the YAML's aggregations give the committed metrics files' paper, strict and scoring
  numbers exactly, and `avere-kit score`'s; crafted DFEW / RAVDESS answers give `avere-kit score`'s;
* the plugin core (`lmms_core.KitModel`, with the kit's FakeBackend): lmms-eval's request tuples answered in
  the kit's own batches and order, likelihoods returned as losses.
`make lmms-check` runs the real lmms-eval end to end (bench/lmms_check.py)."""
from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import math
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from avere_utils import cli
from avere_utils.emotions import EMOTIONS
from avere_utils.harness import lmms_export
from avere_utils.harness import lmms_tasks as T
from avere_utils.paths import REPO_ROOT
from avere_utils.protocol import EMOREALM_TASKS, YES_NO_TASKS

GOLDEN = REPO_ROOT / "outputs" / "golden"
VARIANTS = ("reference", "avem_dpo")
# the keys of lmms-eval's TaskConfig (lmms_eval.api.task.TaskConfig) the export writes
TASK_CONFIG_KEYS = {"task", "tag", "dataset_path", "dataset_kwargs", "test_split", "output_type", "doc_to_visual",
                    "doc_to_text", "doc_to_target", "doc_to_choice", "target_delimiter", "process_results",
                    "generation_kwargs", "metric_list", "metadata"}
OUTPUT_TYPES = {"generate_until", "multiple_choice"}


# --- helpers -------------------------------------------------------------------------------------------------
def load_utils(folder: Path):
    """The folder's utils module, loaded from its file as lmms-eval's `!function` constructor loads it."""
    spec = importlib.util.spec_from_file_location("utils", folder / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_task(path: Path) -> dict:
    utils = load_utils(path.parent)

    class Loader(yaml.SafeLoader):
        pass

    def function(loader, node):
        module_name, _, name = loader.construct_scalar(node).partition(".")
        assert module_name == "utils", node
        return getattr(utils, name)

    Loader.add_constructor("!function", function)
    return yaml.load(path.read_text(), Loader=Loader)


def read_docs(folder: Path, bench: str) -> list[dict]:
    return [json.loads(line) for line in (folder / f"{bench}.jsonl").read_text().splitlines()]


def figures(cfg: dict, docs: list[dict], results_of) -> dict[str, float]:
    """What lmms-eval does with a task: process_results per document, then each metric's aggregation over
    the collected values (lmms-eval strips generated text before process_results)."""
    collected: dict[str, list] = {m["metric"]: [] for m in cfg["metric_list"]}
    for doc in docs:
        out = cfg["process_results"](doc, results_of(doc))
        assert set(out) == set(collected), "process_results must return exactly the metric_list's metrics"
        json.dumps(out)  # lmms-eval logs every sample's metric values
        for k, v in out.items():
            collected[k].append(v)
    return {m["metric"]: m["aggregation"](collected[m["metric"]]) for m in cfg["metric_list"]}


def same(a, b) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    return a == b


def expected_emorealm(mode_metrics: dict, mode: str, has_kinds: bool) -> dict[str, float]:
    """The figures of one mode, read the long way from a metrics file's `modes.<mode>` block."""
    out = {f"{mode}_average_accuracy": mode_metrics["average_accuracy"], f"{mode}_coverage": mode_metrics["coverage"]}
    for t in EMOREALM_TASKS:
        out[f"{mode}_{t}"] = mode_metrics["tasks"][t]["accuracy"]
    for t in YES_NO_TASKS:
        out[f"{mode}_{t}_f1"] = mode_metrics["tasks"][t]["f1"]
    if has_kinds:
        out[f"{mode}_hallucination_rate"] = mode_metrics["hallucination_rate"]
        out[f"{mode}_spurious_rate"] = mode_metrics["spurious_rate"]
    return out


def read_jsonl(path: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            out.setdefault(rec["id"], rec)
    return out


# --- fixtures ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def emorealm_folder(tmp_path_factory) -> Path:
    """The committed run's EmoReAlM manifest (clips named relative to its run folder) in a run folder of its own."""
    root = tmp_path_factory.mktemp("emorealm")
    (root / "run" / "manifests").mkdir(parents=True)
    shutil.copy2(GOLDEN / "manifests" / "emorealm.jsonl", root / "run" / "manifests" / "emorealm.jsonl")
    lmms_export.export("tiny", root / "tasks", benchmarks=["emorealm"], overrides={"run_dir": str(root / "run")})
    return root / "tasks"


CLASS_ANSWERS = ["Happy.", " sad ", "I am not angry. Furious!", "", "the person looks neutral", "xyz",
                 "Surprised and scared", "fear", "disgusted face", "calm", "not happy", "Tension in the face.",
                 "smile", "Anger\n\nmaybe sadness"]


def write_classification_run(root: Path) -> Path:
    """A run folder whose manifests hold crafted DFEW and RAVDESS items (media paths only; no clip is read)."""
    run = root / "run"
    (run / "manifests").mkdir(parents=True)
    world = run / "world"
    dfew = [{"id": f"{i:05d}", "dataset": "dfew", "split": "test",
             "video": str(world / "DFEW/Clip/clip_224x224" / f"part_{1 + i % 3}" / f"{i:05d}.mp4"),
             "audio": str(world / "DFEW/Clip/clip_16k_wav" / f"part_{1 + i % 3}" / f"{i:05d}.wav"),
             "label": EMOTIONS[i % 7], "text": {}} for i in range(1, 29)]
    codes = {"neutral": "01", "happiness": "03", "sadness": "04", "anger": "05", "fear": "06", "disgust": "07",
             "surprise": "08"}
    ravdess = []
    for i in range(21):
        label = EMOTIONS[i % 7]
        name = f"01-01-{codes[label]}-0{1 + i % 2}-0{1 + (i // 7) % 2}-0{1 + i // 14}-01"
        ravdess.append({"id": name, "dataset": "ravdess", "split": "test",
                        "video": str(world / "RAVDESS/Actor_01" / f"{name}.mp4"), "audio": None, "label": label,
                        "text": {}})
    for name, items in (("dfew", dfew), ("ravdess", ravdess)):
        (run / "manifests" / f"{name}.jsonl").write_text("".join(json.dumps(it) + "\n" for it in items))
    return run


@pytest.fixture(scope="module")
def classification_folder(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cls")
    run = write_classification_run(root)
    out = root / "tasks"
    lmms_export.export("tiny", out, benchmarks=["dfew", "ravdess"], overrides={"run_dir": str(run)})
    return out, run


# --- the folder ----------------------------------------------------------------------------------------------
def test_the_folder_holds_a_generation_and_a_likelihood_task_per_benchmark(emorealm_folder, classification_folder):
    names = {p.name for p in emorealm_folder.iterdir()}
    assert {"avere_emorealm.yaml", "avere_emorealm_ll.yaml", "emorealm.jsonl", "utils.py", "avere_tasks.json",
            "README.md"} <= names
    cls, _ = classification_folder
    assert {"avere_dfew.yaml", "avere_dfew_ll.yaml", "avere_ravdess.yaml", "avere_ravdess_ll.yaml"} <= {
        p.name for p in cls.iterdir()}
    assert len(read_docs(emorealm_folder, "emorealm")) == 1200  # the committed manifest, every item


@pytest.mark.parametrize("name", ["avere_emorealm", "avere_emorealm_ll"])
def test_task_yaml_keys_and_function_references_fit_lmms_evals_task_config(emorealm_folder, name):
    raw = (emorealm_folder / f"{name}.yaml").read_text()
    assert "!function utils." in raw and "!function '" not in raw
    cfg = load_task(emorealm_folder / f"{name}.yaml")
    assert set(cfg) <= TASK_CONFIG_KEYS, set(cfg) - TASK_CONFIG_KEYS
    assert cfg["task"] == name and cfg["output_type"] in OUTPUT_TYPES and "avere" in cfg["tag"]
    assert cfg["dataset_path"] == "json" and cfg["test_split"] == "test"
    data = cfg["dataset_kwargs"]["data_files"]["test"]
    assert not Path(data).is_absolute() and (emorealm_folder / data).is_file()  # resolved against the YAML
    for key in ("doc_to_visual", "doc_to_text", "doc_to_target", "process_results"):
        assert callable(cfg[key]), key
    metrics = [m["metric"] for m in cfg["metric_list"]]
    assert len(metrics) == len(set(metrics))
    for m in cfg["metric_list"]:
        assert set(m) == {"metric", "aggregation", "higher_is_better"} and callable(m["aggregation"])
        assert m["aggregation"].__name__ == f"agg_{m['metric']}"
        # lmms-eval passes the task's args to an aggregation that has a parameter named `args`
        assert list(inspect.signature(m["aggregation"]).parameters) == ["items"]
        assert m["higher_is_better"] is (not m["metric"].endswith(("hallucination_rate", "spurious_rate")))
    if cfg["output_type"] == "generate_until":
        assert cfg["generation_kwargs"] == {"max_new_tokens": 16, "temperature": 0.0, "do_sample": False, "until": []}
        assert {m.split("_", 1)[0] for m in metrics} == {"paper", "strict"}
        assert "paper_average_accuracy" in metrics and "strict_reasoning_stress_video_f1" in metrics
    else:
        assert callable(cfg["doc_to_choice"]) and cfg["target_delimiter"] == ""
        assert {m.split("_", 1)[0] for m in metrics} == {"scoring"}


def test_task_functions_take_the_arguments_lmms_eval_passes(emorealm_folder):
    utils = load_utils(emorealm_folder)
    doc = read_docs(emorealm_folder, "emorealm")[0]
    # lmms-eval: doc_to_visual(doc) (a second parameter only when the YAML has lmms_eval_specific_kwargs),
    # doc_to_text(doc) or doc_to_text(doc, kwargs), doc_to_target(doc), doc_to_choice(doc), process_results(doc, results)
    assert len(inspect.signature(utils.doc_to_visual).parameters) == 1
    visual = utils.doc_to_visual(doc)
    assert [Path(p).suffix for p in visual] == [".mp4", ".wav"] and all(Path(p).is_absolute() for p in visual)
    assert visual[0] == str(emorealm_folder.parent / "run" / "world" / doc["video"])
    assert utils.doc_to_text(doc) == utils.doc_to_text(doc, None) == utils.doc_to_text(doc, {})
    assert utils.doc_to_text(doc, {"pre_prompt": "<", "post_prompt": ">"}) == f"<{utils.doc_to_text(doc)}>"
    assert utils.doc_to_target(doc) == doc["answer"]
    choices = utils.doc_to_choice(doc)
    assert isinstance(choices, list) and not choices[0][0].isspace()
    assert choices[utils.doc_to_target_index(doc)].endswith(f"({doc['answer']})")
    assert list(inspect.signature(utils.process_results_generate).parameters) == ["doc", "results"]
    assert list(inspect.signature(utils.process_results_likelihood).parameters) == ["doc", "results"]


def test_the_folder_names_no_absolute_path_of_this_machine(emorealm_folder, classification_folder):
    cls, run = classification_folder
    for folder, forbidden in ((emorealm_folder, str(emorealm_folder.parent)), (cls, str(run.parent))):
        settings = json.loads((folder / T.SETTINGS_FILE).read_text())
        assert settings["data_root"] and not Path(settings["data_root"]).is_absolute()
        for f in folder.iterdir():
            text = f.read_text()
            assert forbidden not in text and str(REPO_ROOT) not in text, f.name
        for f in folder.glob("*.jsonl"):
            for doc in map(json.loads, f.read_text().splitlines()):
                assert all(doc[k] is None or not Path(doc[k]).is_absolute() for k in ("video", "audio")), doc
    assert json.loads((emorealm_folder / T.SETTINGS_FILE).read_text())["data_root"] == "../run/world"


def test_the_data_root_comes_from_the_environment_when_the_data_moves(emorealm_folder, monkeypatch, tmp_path):
    utils = load_utils(emorealm_folder)
    doc = read_docs(emorealm_folder, "emorealm")[0]
    monkeypatch.setenv(T.DATA_ROOT_ENV, str(tmp_path))
    assert utils.doc_to_visual(doc)[0] == str(tmp_path / doc["video"])
    # a folder exported outside the data's folder tree names no data root: the variable is then required
    assert lmms_export.relative_data_root(Path("/data/avere"), Path("/tmp/tasks")) is None
    assert lmms_export.relative_data_root(Path("/w/outputs/tiny/world"), Path("/w/outputs/x")) == "../tiny/world"
    folder = T.TaskFolder(emorealm_folder)
    folder.settings = {**folder.settings, "data_root": None}
    monkeypatch.delenv(T.DATA_ROOT_ENV)
    with pytest.raises(T.TaskFolderError, match=T.DATA_ROOT_ENV):
        folder.doc_to_visual(doc)


# --- the figures: the kit's, exactly -------------------------------------------------------------------------
def test_prompts_and_candidates_are_the_ones_the_committed_run_used(emorealm_folder):
    from avere_utils.protocol import emorealm_prompt

    utils = load_utils(emorealm_folder)
    preds = read_jsonl(GOLDEN / "predictions" / "emorealm-reference.jsonl")
    for doc in read_docs(emorealm_folder, "emorealm"):
        assert utils.doc_to_choice(doc) == preds[doc["id"]]["candidates"]
        assert utils.doc_to_text(doc) == emorealm_prompt(doc["question"], doc["choices"], "{question} {choices}")


@pytest.mark.parametrize("variant", VARIANTS)
def test_emorealm_figures_equal_the_committed_metrics_in_every_mode(emorealm_folder, variant):
    preds = read_jsonl(GOLDEN / "predictions" / f"emorealm-{variant}.jsonl")
    kit = json.loads((GOLDEN / "metrics" / f"emorealm-{variant}.json").read_text())
    docs = read_docs(emorealm_folder, "emorealm")
    gen = load_task(emorealm_folder / "avere_emorealm.yaml")
    got = figures(gen, docs, lambda d: [preds[d["id"]]["generation"].strip()])
    want = {**expected_emorealm(kit["modes"]["paper"], "paper", True),
            **expected_emorealm(kit["modes"]["strict"], "strict", True)}
    assert set(got) == set(want)
    assert [k for k in want if not same(want[k], got[k])] == []
    # likelihood: one (loss, is_greedy) per candidate; lmms-eval 0.7 hands over their text form
    ll = load_task(emorealm_folder / "avere_emorealm_ll.yaml")
    for form in (lambda s: (-s, False), lambda s: str((-s, False))):
        got = figures(ll, docs, lambda d, f=form: [f(s) for s in preds[d["id"]]["scores"]])
        want = expected_emorealm(kit["modes"]["scoring"], "scoring", True)
        assert [k for k in want if not same(want[k], got[k])] == []


def test_emorealm_figures_equal_avere_kit_score(emorealm_folder, tmp_path):
    from avere_utils.evaluation.score_cli import score

    docs = read_docs(emorealm_folder, "emorealm")
    native = [{k: d[k] for k in ("id", "task", "question", "choices", "answer", "kind")} for d in docs]
    (tmp_path / "emorealm_v1.json").write_text(json.dumps(native))
    path = GOLDEN / "predictions" / "emorealm-naive_dpo.jsonl"
    kit = score("emorealm", tmp_path / "emorealm_v1.json", path)
    preds = read_jsonl(path)
    got = figures(load_task(emorealm_folder / "avere_emorealm.yaml"), docs, lambda d: [preds[d["id"]]["generation"].strip()])
    for mode in ("paper", "strict"):
        want = expected_emorealm(kit["modes"][mode], mode, True)
        assert [k for k in want if not same(want[k], got[k])] == [], mode


def test_dfew_and_ravdess_figures_equal_avere_kit_score(classification_folder, tmp_path):
    from avere_utils.evaluation import classification, registry
    from avere_utils.evaluation.score_cli import score
    from avere_utils.records import Item

    folder, _ = classification_folder
    rng = np.random.default_rng(0)
    for bench in ("dfew", "ravdess"):
        docs = read_docs(folder, bench)
        answers = {d["id"]: f"{d['label'].capitalize()}." if i % 3 == 0 else CLASS_ANSWERS[i % len(CLASS_ANSWERS)]
                   for i, d in enumerate(docs)}
        scores = {d["id"]: [float(x) for x in rng.normal(size=7)] for d in docs}
        got = figures(load_task(folder / f"avere_{bench}.yaml"), docs, lambda d, a=answers: [a[d["id"]].strip()])
        got.update(figures(load_task(folder / f"avere_{bench}_ll.yaml"), docs,
                           lambda d, sc=scores: [(-s, False) for s in sc[d["id"]]]))
        if bench == "dfew":  # through `avere-kit score` itself: the native csv and a predictions JSONL
            (tmp_path / "set_1.csv").write_text("video_name,label\n" + "".join(
                f"{int(d['id'])},{EMOTIONS.index(d['label']) + 1}\n" for d in docs))
            (tmp_path / "p.jsonl").write_text("".join(json.dumps({"id": i, "generation": a}) + "\n"
                                                      for i, a in answers.items()))
            text_modes = score("dfew", tmp_path / "set_1.csv", tmp_path / "p.jsonl")["modes"]
        else:  # the scorer `avere-kit score` calls
            items = [Item(id=d["id"], dataset=bench, split="test", label=d["label"]) for d in docs]
            text_modes = registry.get_scorer(bench).score_text(items, {i: {"generation": a} for i, a in answers.items()},
                                                               ["paper", "strict"])["modes"]
        items = [Item(id=d["id"], dataset=bench, split="test", label=d["label"]) for d in docs]
        _, scoring = classification.score_records(items, {i: {"scores": s} for i, s in scores.items()}, ["scoring"],
                                                  classification.classes_for(bench))
        modes = {**text_modes, **scoring}
        want = {f"{m}_{k}": modes[m][k] for m in ("paper", "strict", "scoring") for k in T.CLASSIFICATION_KEYS}
        assert set(got) == set(want)
        assert [k for k in want if not same(want[k], got[k])] == [], bench
        assert 0 < got["paper_uar"] < 100 and got["paper_coverage"] < 100  # the crafted answers exercise drops


# --- the plugin core -----------------------------------------------------------------------------------------
def _requests(folder: Path, bench: str, docs: list[dict], kind: str) -> list[SimpleNamespace]:
    utils = load_utils(folder)
    out = []
    for i, d in enumerate(docs):
        ctx = utils.doc_to_text(d)
        if kind == "generate_until":
            gen = {"max_new_tokens": 16, "temperature": 0.0, "do_sample": False, "until": []}
            out.append(SimpleNamespace(request_type=kind, args=(ctx, gen, utils.doc_to_visual, i, f"avere_{bench}", "test")))
        else:
            for c in utils.doc_to_choice(d):
                out.append(SimpleNamespace(request_type=kind, args=(ctx, c, utils.doc_to_visual, i, f"avere_{bench}_ll", "test")))
    return out


def test_the_plugin_answers_lmms_eval_requests_in_the_kits_batches(classification_folder, tmp_path):
    from avere_utils.evaluation.predict import Decoding, PredictionTask, run_predictions
    from avere_utils.evaluation.testing import FakeBackend, fake_media_fn
    from avere_utils.harness.lmms_core import KitModel
    from avere_utils.harness.lmms_tasks import doc_to_item

    folder, run = classification_folder
    docs = read_docs(folder, "dfew")
    items = [doc_to_item(d, str(run / "world")) for d in docs]
    answer = lambda it: f"  {EMOTIONS[int(it.id) % 7]} face "
    fb = FakeBackend(items, answer=answer)
    model = KitModel(profile="tiny", backend=fb, media_fn=fake_media_fn(items), eval_batch_size=4)
    task_dict = {"avere_dfew": {"test": docs}, "avere_dfew_ll": {"test": docs}}
    reqs = _requests(folder, "dfew", docs, "generate_until")
    shuffled = reqs[::-1] + [reqs[3]]  # any order, and a document asked twice (lmms-eval pads the last rank)
    texts = model.generate_until(shuffled, task_dict)
    assert texts == [answer(items[r.args[3]]) for r in shuffled]
    # the kit's own runner over the same items: the same batches, in the same order
    kit = FakeBackend(items, answer=answer)
    run_predictions(kit, items, tmp_path / "kit.jsonl", PredictionTask(prompt_for=lambda it: "p"),
                    Decoding(max_new_tokens=16), settings={}, media_fn=fake_media_fn(items), batch_size=4, shard=(0, 1))
    assert fb.generated == kit.generated and [c["n"] for c in fb.calls] == [c["n"] for c in kit.calls]
    assert fb.calls[0]["max_new_tokens"] == 16 and fb.calls[0]["temperature"] == 0.0

    ll_reqs = _requests(folder, "dfew", docs, "loglikelihood")
    values = model.loglikelihood(ll_reqs, task_dict)
    # FakeBackend scores candidate k at -k: the loss lmms-eval's models return is +k
    assert [v for v, _ in values] == [float(k) for _ in docs for k in range(7)]
    assert all(g is False for _, g in values)
    assert sorted(fb.scored) == sorted(it.id for it in items)  # each document scored once, all candidates at once
    logprob = KitModel(profile="tiny", backend=fb, media_fn=fake_media_fn(items), loglikelihood="logprob")
    assert [v for v, _ in logprob.loglikelihood(ll_reqs[:7], task_dict)] == [-float(k) for k in range(7)]


def test_the_plugin_refuses_what_it_cannot_serve():
    from avere_utils.harness.lmms_core import KitModel, PluginError, parse_request, split_visuals, truncate_at

    with pytest.raises(PluginError, match="generate_until_multi_round"):
        parse_request(SimpleNamespace(request_type="generate_until_multi_round", args=()), 0)
    with pytest.raises(PluginError, match="6 arguments"):
        parse_request(SimpleNamespace(request_type="generate_until", args=("ctx", {})), 0)
    assert parse_request(SimpleNamespace(request_type="loglikelihood", args=("", "Yes")), 0).continuation == "Yes"
    assert split_visuals(["/d/a.mp4", "/d/a.wav"], "x") == ("/d/a.mp4", "/d/a.wav")
    assert split_visuals("/d/a.wav", "x") == (None, "/d/a.wav")
    with pytest.raises(PluginError, match="by path"):
        split_visuals([object()], "task t document 3")
    with pytest.raises(PluginError, match="one video and one audio"):
        split_visuals(["/d/a.mp4", "/d/b.mp4"], "x")
    assert truncate_at("Yes.\n\nBecause", ["\n\n"]) == "Yes." and truncate_at("Yes", []) == "Yes"
    with pytest.raises(PluginError, match="unknown model argument"):
        KitModel(profile="tiny", backend=object(), media_fn=lambda it: None, frames=8)
    with pytest.raises(PluginError, match="loglikelihood"):
        KitModel(profile="tiny", backend=object(), media_fn=lambda it: None, loglikelihood="prob")


def test_the_model_class_and_its_entry_point_fit_lmms_evals_registry():
    """Read, not imported (lmms_eval is not installed here): a subclass of lmms_eval's `lmms` with the request
    methods its evaluator calls, named by the entry point of the `[lmms]` extra."""
    import tomllib

    from avere_utils.harness import lmms_entry

    tree = ast.parse((REPO_ROOT / "avere_utils" / "harness" / "lmms_model.py").read_text())
    imports = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert ("lmms_eval.api.model", "lmms") in imports
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == lmms_entry.CLASS_PATH.rsplit(".", 1)[1])
    assert [b.id for b in cls.bases] == ["lmms"]
    methods = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    assert {"__init__", "generate_until", "loglikelihood", "generate_until_multi_round"} <= methods
    assert any(isinstance(n, ast.Assign) and n.targets[0].id == "is_simple" and n.value.value is True for n in cls.body)
    assert lmms_entry.CLASS_PATH == "avere_utils.harness.lmms_model.AvereOmni"
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["lmms_eval.models"] == {"avere_omni": "avere_utils.harness.lmms_entry:manifest"}
    assert project["optional-dependencies"]["lmms"] == ["lmms-eval==0.7.3", "filelock<4"]


def test_the_command_line_writes_the_folder_and_names_a_missing_manifest(tmp_path, capsys):
    rc = cli.main(["export-lmms-eval", "--profile", "tiny", "--benchmarks", "emorealm", str(tmp_path / "t"),
                   "--set", f"run_dir={GOLDEN}"])
    out = capsys.readouterr().out
    assert rc == 0 and "emorealm: 1200 items" in out and "avere_emorealm_ll" in out
    rc = cli.main(["export-lmms-eval", "--profile", "tiny", "--benchmarks", "dfew", str(tmp_path / "u"),
                   "--set", f"run_dir={tmp_path / 'norun'}"])
    assert rc == 2 and "dfew.jsonl" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["export-lmms-eval", "--benchmarks", "emorealm,nope", str(tmp_path / "v")])


# --- bench/lmms_check.py: what it hands lmms-eval and what it reads back -------------------------------------
def load_check():
    spec = importlib.util.spec_from_file_location("lmms_check", REPO_ROOT / "bench" / "lmms_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_export_names_its_data_root_for_a_folder_outside_the_data_tree(classification_folder, tmp_path):
    _, run = classification_folder
    # a task folder that shares no folder below / with the run (e.g. /work/... and /tmp/...) names no data root,
    # so the caller needs the absolute one to pass as $AVERE_DATA_ROOT
    written = lmms_export.export("tiny", tmp_path / "tasks", benchmarks=["dfew"], overrides={"run_dir": str(run)})
    assert written["data_root_path"] == str((run / "world").resolve())
    root = written["data_root"]
    assert root is None or (tmp_path / "tasks" / root).resolve() == (run / "world").resolve()


def test_the_check_reads_only_this_lmms_eval_runs_results(tmp_path, monkeypatch):
    """An earlier run's results in the output folder are removed first; lmms-eval 0.7 exits 0 after an error
    during evaluation, which fails the check; the data root reaches lmms-eval; the plugin's warnings about clips
    it decoded itself are counted."""
    import subprocess

    from avere_utils.harness.lmms_core import MISS_MARK

    check = load_check()
    out = tmp_path / "lmms" / "reference"
    out.mkdir(parents=True)
    stale = out / "20261207_230951_results.json"
    stale.write_text(json.dumps({"results": {"avere_dfew": {"paper_uar,none": 1.0}}}))
    (out / "20261207_230951_samples_avere_dfew.jsonl").write_text("{}\n")
    calls = []

    def fake_run(cmd, cwd, env, capture_output, text):
        calls.append((cmd, env))
        return subprocess.CompletedProcess(cmd, 0, "ERROR | Error during evaluation: no data root.", "Traceback")

    monkeypatch.setattr(check.subprocess, "run", fake_run)
    with pytest.raises(SystemExit, match="error during evaluation"):
        check.run_lmms_eval(tmp_path / "tasks", ["avere_dfew"], "tiny", tmp_path / "run", "reference", out, None,
                            "/data/world")
    assert not stale.exists() and not list(out.glob("*samples*"))
    assert calls[0][1]["AVERE_DATA_ROOT"] == "/data/world"

    def fake_ok(cmd, cwd, env, capture_output, text):
        (out / "20261207_240000_results.json").write_text(json.dumps({"results": {"avere_dfew": {"x": 1}}}))
        return subprocess.CompletedProcess(cmd, 0, "done", f"{MISS_MARK} 3 clips decoded here, not read ...\n"
                                                            f"{MISS_MARK} 2 clips decoded here, not read ...\n")

    monkeypatch.setattr(check.subprocess, "run", fake_ok)
    got = check.run_lmms_eval(tmp_path / "tasks", ["avere_dfew"], "tiny", tmp_path / "run", "reference", out,
                              None, "/data/world")
    assert got["results"] == {"avere_dfew": {"x": 1}} and got["clips_decoded_by_plugin"] == 5


def test_the_plugin_reads_the_feature_cache_and_never_writes_it(tmp_path, monkeypatch):
    """The run's decoded clips are read back (the notebooks' arrays, whatever this PyAV would decode); a clip not
    in the cache is decoded, counted, and not stored."""
    from avere_utils.cache import FeatureCache
    from avere_utils.harness.lmms_core import MISS_MARK, KitModel
    from avere_utils.media import MediaSettings
    from avere_utils.records import Item, Media

    settings = MediaSettings(n_frames=2, frame_size=8)
    cache_dir = tmp_path / "cache"
    clips = []
    for name in ("a", "b"):
        clip = tmp_path / f"{name}.mp4"
        clip.write_bytes(b"not decoded: the cache answers")
        clips.append(clip)
    marker = np.full((2, 8, 8, 3), 7, dtype=np.uint8)
    FeatureCache(cache_dir).get_or_compute(str(clips[0]), None, settings,
                                           lambda: Media(frames=marker, sample_rate=16000))
    before = sorted(p.name for p in cache_dir.rglob("*"))
    decoded = []

    def fake_decode(video, audio, s):
        decoded.append(video)
        return Media(frames=np.zeros((2, 8, 8, 3), dtype=np.uint8), sample_rate=16000)

    monkeypatch.setattr("avere_utils.media.decode_media", fake_decode)
    kit = SimpleNamespace(_media_fn=None, media_settings=settings, params=SimpleNamespace(cache_dir=str(cache_dir)))
    misses: dict[str, int] = {}
    load = KitModel.new_media_fn(kit, misses)
    got = [load(Item(id=str(i), dataset="dfew", split="test", video=str(c))) for i, c in enumerate(clips)]
    assert np.array_equal(got[0].frames, marker) and decoded == [str(clips[1])]
    assert misses == {str(clips[1]): 1} and sorted(p.name for p in cache_dir.rglob("*")) == before
    assert MISS_MARK.startswith("avere_omni")


def test_the_check_refuses_a_run_evaluated_with_other_protocol_settings(tmp_path):
    check = load_check()
    run = tmp_path / "run"
    (run / "notebooks").mkdir(parents=True)

    def notebook(**injected):
        cells = [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "n_frames = 0\nbatch_size = 32\n"},
                 {"cell_type": "code", "metadata": {"tags": ["injected-parameters"]},
                  "source": ["# Parameters\n", *(f"{k} = {v!r}\n" for k, v in injected.items())]},
                 {"cell_type": "code", "metadata": {}, "source": "n_frames = 99\n"}]
        return json.dumps({"cells": cells})

    nb = run / "notebooks" / "07_zero_shot_emorealm-reference.ipynb"
    nb.write_text(notebook(run_dir=str(run), variant="reference"))
    assert check.notebook_parameters(nb)["n_frames"] == 0  # a code cell's assignment is not a parameter
    assert check.protocol_differences("tiny", run, "reference", ["emorealm"]) == []
    nb.write_text(notebook(run_dir=str(run), n_frames=4, prompt_template="{question}"))
    diffs = check.protocol_differences("tiny", run, "reference", ["emorealm", "dfew"])
    assert len(diffs) == 2 and "n_frames = 4" in diffs[0] and "prompt_template" in diffs[1]
    assert check.protocol_differences("tiny", run, "avem_dpo", ["emorealm"]) == []  # no notebook: not checked


def test_the_check_fails_on_any_different_answer():
    check = load_check()
    same = {"kit_items": 3, "generated": 3, "same_text": 3, "scored": 3, "same_choice": 3}
    assert check.answers_equal({"dfew": same})
    assert not check.answers_equal({"dfew": same, "ravdess": {**same, "same_text": 2}})
    assert not check.answers_equal({"dfew": {**same, "generated": 2, "same_text": 2}})  # items missing


def test_nothing_here_imported_lmms_eval():
    assert not [m for m in sys.modules if m == "lmms_eval" or m.startswith("lmms_eval.")]
