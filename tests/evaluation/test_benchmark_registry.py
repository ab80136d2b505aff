"""A benchmark is one record (avere_utils/benchmarks.py): a fake one, registered there and nowhere else, is
indexed by notebook 01's loader dispatch, evaluated by the notebooks' entry (stage.run_stage under it) with a
fake model, written to its metrics file and shown in the report's tables.  And every built-in record names
code that exists."""
import json

import pytest

from avere_utils import benchmarks, config
from avere_utils.datasets import read_manifest, write_manifest
from avere_utils.datasets.common import LoadResult
from avere_utils.datasets.params import DataPrepParams, all_datasets
from avere_utils.datasets.prepare import load_dataset
from avere_utils.evaluation import registry, stage
from avere_utils.evaluation.params import ClassificationParams, EmerParams, EmoRealmParams
from avere_utils.evaluation.predict import PredictionTask
from avere_utils.evaluation.testing import FakeBackend, fake_media_fn
from avere_utils.records import Item
from avere_utils.report import tables

FAKE = "fakebench"
PROMPT = "Which colour is the mood?"


def load_fake(P: DataPrepParams) -> LoadResult:
    """The fake benchmark's loader: its 'native' file is a manifest under the data root."""
    path = f"{P.data_root}/{FAKE}.jsonl"
    return LoadResult(FAKE, items=read_manifest(path), source=path)


class ExactMatchScorer(stage.Scorer):
    """Right when the answer is the label, word for word."""

    def task(self, params):
        return PredictionTask(prompt_for=lambda it: PROMPT, generate=True)

    def score(self, params, items, run):
        right = sum((run.records.get(it.id) or {}).get("generation") == it.label for it in items)
        return stage.Scored("exact", {"accuracy": 100 * right / len(items), "n_items": len(items),
                                      "n_scored": len(items), "coverage": 100.0})


@pytest.fixture
def fake_benchmark(monkeypatch):
    monkeypatch.setattr(benchmarks, "BENCHMARKS", dict(benchmarks.BENCHMARKS))  # undone after the test
    return benchmarks.register(benchmarks.Benchmark(
        FAKE, "label", loader=load_fake, scorer=ExactMatchScorer, stage="05_zero_shot_classification",
        prompt=PROMPT, classes=("blue", "red"), headline=("accuracy",), table="table2",
        columns=(("Fake acc", "accuracy"),)))


def _native_file(data_root):
    items = [Item(id=f"c{k}", dataset=FAKE, split="test", video=f"/clips/c{k}.mp4", label=("blue", "red")[k % 2])
             for k in range(4)]
    write_manifest(data_root / f"{FAKE}.jsonl", items)
    return items


def test_a_registered_benchmark_is_indexed_evaluated_written_and_tabled(tmp_path, fake_benchmark):
    run = tmp_path / "run"
    native = _native_file(tmp_path)
    # notebook 01: the dispatch by name finds the record's loader; the manifest goes where stage 05 reads it
    assert FAKE in all_datasets() and FAKE in registry.known_benchmarks()
    prep = config.build(DataPrepParams, {"run_dir": str(run), "data_root": str(tmp_path)}, "test")
    loaded = load_dataset(FAKE, prep)
    assert [it.id for it in loaded.items] == [it.id for it in native]
    write_manifest(run / "manifests" / f"{FAKE}.jsonl", loaded.items)

    # notebooks 05-07's entry: the registry's scorer inside stage.run_stage, items from the manifest
    params = config.build(ClassificationParams, {"run_dir": str(run), "variant": "reference"}, "test")
    answers = {"c0": "blue", "c1": "red", "c2": "red", "c3": "red"}  # one wrong of four
    backend = FakeBackend(native, answer=lambda it: answers[it.id])
    metrics = registry.evaluate(params, FAKE, backend, media_fn=fake_media_fn(native),
                                media_settings={"n_frames": 2})
    assert sorted(backend.generated) == sorted(answers) and metrics["accuracy"] == 75.0

    # the metrics file, in the one layout of every benchmark
    on_disk = json.loads((run / "metrics" / f"{FAKE}-reference.json").read_text())
    assert on_disk["benchmark"] == FAKE and on_disk["scoring_mode"] == "exact" and on_disk["accuracy"] == 75.0
    assert on_disk["n_items"] == 4 and on_disk["coverage"] == 100.0

    # the report: its column in Table 2, after the built-in ones, read from the metrics file
    found = tables.load_metrics(run / "metrics")
    t2 = tables.table2(found, ["reference"])
    assert list(t2.columns)[-1] == "Fake acc" and t2.at["reference", "Fake acc"] == 75.0
    assert "| reference |" in tables.markdown_table(t2, index=True)
    assert tables.headline_row(run / "metrics", "reference")["Fake acc"] == 75.0
    assert ("Fake acc", FAKE, "accuracy") in tables.TABLE2_COLUMNS


def test_unregistered_names_are_refused_with_the_known_ones():
    with pytest.raises(benchmarks.UnknownBenchmarkError, match=f"'{FAKE}'.*dfew"):
        registry.get_scorer(FAKE)
    with pytest.raises(ValueError, match="already registered"):
        benchmarks.register(benchmarks.BENCHMARKS["dfew"])
    with pytest.raises(ValueError, match="needs its classes"):
        benchmarks.Benchmark(FAKE, "label", loader=load_fake, scorer=ExactMatchScorer, stage="s", prompt="p")


@pytest.mark.parametrize("record", list(benchmarks.BENCHMARKS.values()), ids=list(benchmarks.BENCHMARKS))
def test_every_record_names_code_that_exists(record):
    assert callable(benchmarks.imported(record.loader))
    scorer = record.make_scorer()
    assert isinstance(scorer, stage.Scorer) and scorer.benchmark == record.name
    if record.annotations is not None:
        assert callable(benchmarks.imported(record.annotations))
    assert record.part_of is None or record.part_of in benchmarks.BENCHMARKS


def test_each_stage_asks_its_benchmarks_the_record_prompt():
    defaults = {"label": ClassificationParams().prompt, "description": EmerParams().prompt,
                "question": EmoRealmParams().prompt_template}
    for record in benchmarks.BENCHMARKS.values():
        assert record.prompt == defaults[record.item_kind], record.name
