"""The one evaluation loop (`stage.run_stage`) with a fake scorer and a fake model, the scorer registry, and
the per-mode tables that replaced the `if mode == ...` chains."""
import json

import pytest

from avere_utils import benchmarks, config
from avere_utils.evaluation import classification, common, emer, emorealm, registry, score_cli, stage
from avere_utils.evaluation.__main__ import STAGE_BENCHMARKS
from avere_utils.evaluation.params import CLASSIFICATION_BENCHMARKS, ClassificationParams
from avere_utils.evaluation.predict import PredictionTask
from avere_utils.evaluation.testing import FakeBackend, fake_media_fn
from avere_utils.records import Item


class CountingScorer(stage.Scorer):
    """Answers are right when the model repeats the label; records the order of the loop's calls."""

    def __init__(self, benchmark="fakebench", keep=None, reports_scoring_time=True):
        super().__init__(benchmark)
        self.keep = keep
        self.reports_scoring_time = reports_scoring_time
        self.calls = []

    def prepare(self, params, items):
        self.calls.append("prepare")
        return [it for it in items if self.keep is None or it.id in self.keep]

    def task(self, params):
        self.calls.append("task")
        return PredictionTask(prompt_for=lambda it: "which emotion?", generate=True)

    def settings(self, params, task, items):
        return {"fake_setting": 1}

    def protocol(self, params):
        return {"fake_protocol": "p"}

    def score(self, params, items, run):
        self.calls.append("score")
        right = [run.records[it.id]["generation"] == it.label for it in items]
        return stage.Scored("fake", {"accuracy": 100 * sum(right) / len(right), "n_items": len(items)},
                            timing={"fake_s": 0.5}, tail={"extra_file": "x.jsonl"})


def _items(n=5):
    return [Item(id=f"i{k}", dataset="fakebench", split="test", video=f"/v/{k}.mp4",
                 label="anger" if k % 2 else "fear") for k in range(n)]


def _params(tmp_path):
    return config.build(ClassificationParams, {"run_dir": str(tmp_path), "variant": "reference", "batch_size": 2},
                        "test")


def _run(tmp_path, scorer, items, backend=None):
    backend = backend or FakeBackend(items)
    return stage.run_stage(_params(tmp_path), "fakebench", backend, scorer, items=items,
                           media_fn=fake_media_fn(items), media_settings={"n_frames": 2})


def test_run_stage_writes_one_layout(tmp_path):
    items = _items()
    answers = {"i0": "fear", "i1": "anger", "i2": "joy", "i3": "anger", "i4": ""}
    backend = FakeBackend(items, answer=lambda it: answers[it.id])
    scorer = CountingScorer()
    m = _run(tmp_path, scorer, items, backend)
    assert scorer.calls == ["prepare", "task", "score"]
    assert sorted(backend.generated) == [it.id for it in items]
    assert m["accuracy"] == pytest.approx(60.0)
    on_disk = json.loads((tmp_path / "metrics" / "fakebench-reference.json").read_text())
    assert list(on_disk) == ["benchmark", "created", "variant", "scoring_mode", "accuracy", "n_items", "model",
                             "protocol", "timing", "predictions_file", "n_duplicate_records", "extra_file"]
    assert on_disk["benchmark"] == "fakebench" and on_disk["scoring_mode"] == "fake"
    assert list(on_disk["timing"]) == ["computed_items", "generate_s", "scoring_s", "media_s", "fake_s", "total_s"]
    assert on_disk["timing"]["computed_items"] == 5 and on_disk["timing"]["fake_s"] == 0.5
    assert on_disk["protocol"]["fake_protocol"] == "p" and on_disk["protocol"]["n_frames"] == 2
    assert on_disk["model"] == {"path": _params(tmp_path).reference_dir, "adapter": None, "variant": "reference"}
    assert on_disk["predictions_file"] == str(tmp_path / "predictions" / "fakebench-reference.jsonl")


def test_run_stage_resumes_and_predicts_only_kept_items(tmp_path):
    items = _items()
    scorer = CountingScorer(keep={"i1", "i3"}, reports_scoring_time=False)
    backend = FakeBackend(items)
    m = _run(tmp_path, scorer, items, backend)
    assert sorted(backend.generated) == ["i1", "i3"] and m["n_items"] == 2
    assert "scoring_s" not in m["timing"]
    again = FakeBackend(items)
    m2 = _run(tmp_path, CountingScorer(keep={"i1", "i3"}), items, again)
    assert again.generated == [] and m2["timing"]["computed_items"] == 0  # everything reused from the file
    assert m2["accuracy"] == m["accuracy"] == 100.0


def test_run_stage_on_other_processes_returns_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "is_main_process", lambda: False)
    scorer = CountingScorer()
    assert _run(tmp_path, scorer, _items()) == {}
    assert scorer.calls == ["prepare", "task"]  # predicted its share, never scored
    assert not (tmp_path / "metrics" / "fakebench-reference.json").exists()


def test_run_stage_scorer_check_fails_before_any_prediction(tmp_path):
    class Refusing(CountingScorer):
        def prepare(self, params, items):
            raise ValueError("fakebench: bad items")

    backend = FakeBackend(_items())
    with pytest.raises(ValueError, match="bad items"):
        _run(tmp_path, Refusing(), _items(), backend)
    assert backend.generated == [] and not (tmp_path / "predictions").exists()


# --- the registry ----------------------------------------------------------------------------------------
def test_registry_knows_every_benchmark_in_table_order():
    assert registry.known_benchmarks() == (*CLASSIFICATION_BENCHMARKS, "emer", "emorealm")
    assert score_cli.BENCHMARKS == registry.known_benchmarks()
    for name in CLASSIFICATION_BENCHMARKS:
        scorer = registry.get_scorer(name)
        assert isinstance(scorer, classification.ClassificationScorer) and scorer.benchmark == name
        assert scorer.classes == classification.classes_for(name)
    assert isinstance(registry.get_scorer("emer"), emer.EmerScorer)
    assert isinstance(registry.get_scorer("emorealm"), emorealm.EmoRealmScorer)
    assert registry.get_scorer("dfew") is not registry.get_scorer("dfew")  # one scorer per run


def test_every_stage_benchmark_has_a_scorer():
    for stage_name, fixed in STAGE_BENCHMARKS.items():
        benchmarks = fixed or config.load_stage("tiny", stage_name).benchmarks
        for name in benchmarks:
            registry.get_scorer(name)


def test_unknown_benchmark_lists_the_known_ones():
    with pytest.raises(registry.UnknownBenchmarkError, match="'afew'.*dfew.*emorealm"):
        registry.get_scorer("afew")


def _fake_record(name="fakebench"):
    return benchmarks.Benchmark(name, "label", loader=lambda P: None, scorer=CountingScorer, stage="none",
                                prompt="which emotion?", classes=("anger", "fear"))


def test_register_a_benchmark(monkeypatch):
    monkeypatch.setattr(benchmarks, "BENCHMARKS", dict(benchmarks.BENCHMARKS))
    benchmarks.register(_fake_record())
    scorer = registry.get_scorer("fakebench")
    assert isinstance(scorer, CountingScorer) and scorer.benchmark == "fakebench"
    assert registry.known_benchmarks()[-1] == "fakebench"
    with pytest.raises(ValueError, match="already registered"):
        benchmarks.register(_fake_record("dfew"))


def test_fake_scorer_through_the_registry(tmp_path, monkeypatch):
    monkeypatch.setattr(benchmarks, "BENCHMARKS", dict(benchmarks.BENCHMARKS))
    benchmarks.register(_fake_record())
    m = _run(tmp_path, registry.get_scorer("fakebench"), _items())
    assert m["accuracy"] == 100.0 and m["extra_file"] == "x.jsonl"


# --- one table of modes per scorer -----------------------------------------------------------------------
def test_mode_tables_cover_the_same_modes_and_refuse_others():
    assert set(classification.MODES) == set(emorealm.MODES) == {"paper", "strict", "scoring"}
    item = Item(id="q", dataset="emorealm", split="test",
                text={"task": "reasoning_basic_audio", "question": "?", "choices": ["(A) x", "(B) y"], "answer": "A"})
    with pytest.raises(ValueError, match="unknown scoring mode 'loose'.*paper"):
        classification.predicted_labels("loose", [item], {}, ("anger",))
    with pytest.raises(ValueError, match="unknown scoring mode 'loose'.*paper"):
        emorealm.judge_item("loose", item, {})
    assert emorealm.judge_item("strict", item, {"generation": "A"}) == (True, "A")
    assert emorealm.judge_item("scoring", item, {"scores": [0.0, 1.0]}) == (False, "B")
