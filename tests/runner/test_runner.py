"""The papermill runner on a two-notebook fixture: success, a failing cell reported with its notebook
path, --only, per-variant executions, overrides that reach no stage, and one kernel per stage whose
namespace is wiped between variants."""
from __future__ import annotations

import json
from dataclasses import dataclass

import nbformat
import pytest

from avere_utils import config, runner
from avere_utils.config import StageParams

pytestmark = pytest.mark.slow  # starts Jupyter kernels through papermill: not in make test-fast


@dataclass
class AParams(StageParams):
    message: str = "hello"


@dataclass
class BParams(StageParams):
    variant: str = "v1"
    fail: bool = False


A_CODE = "from pathlib import Path\nPath(run_dir, 'a.txt').write_text(message)\n"
B_CODE = ("from pathlib import Path\n"
          "if fail:\n    raise ValueError('boom in ' + variant)\n"
          "Path(run_dir, f'b-{variant}.txt').write_text(variant)\n"
          "import os\n"
          "Path(run_dir, f'pid-{variant}.txt').write_text(str(os.getpid()))\n"
          "Path(run_dir, f'leak-{variant}.txt').write_text(str('left_by_earlier' in globals()))\n"
          "left_by_earlier = variant\n")


def _notebook(path, params: dict, code: str) -> None:
    nb = nbformat.v4.new_notebook()
    src = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    nb.cells = [nbformat.v4.new_markdown_cell("fixture"),
                nbformat.v4.new_code_cell(src, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(code)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


@pytest.fixture
def fixture_profile(tmp_path, monkeypatch):
    params_dir, nb_dir, out = tmp_path / "params", tmp_path / "notebooks", tmp_path / "out"
    (params_dir / "fx").mkdir(parents=True)
    nb_dir.mkdir()
    monkeypatch.setattr(config, "PARAMS_DIR", params_dir)
    monkeypatch.setattr(config, "STAGES", {"01_a": AParams, "02_b": BParams})
    base = {"profile": "fx", "run_dir": str(out), "data_root": str(tmp_path), "seed": 0, "device": "cpu"}
    (params_dir / "fx" / "01_a.yaml").write_text(json.dumps({**base, "message": "hi"}))
    (params_dir / "fx" / "02_b.yaml").write_text(json.dumps({**base, "variant": "v1", "fail": False}))
    (params_dir / "fx" / "run.yaml").write_text(json.dumps({
        "run_dir": str(out), "stages": ["01_a", "02_b"], "train_variants": ["v1", "v2"],
        "eval_variants": [], "per_train_variant": ["02_b"], "per_eval_variant": []}))
    _notebook(nb_dir / "01_a.ipynb", {**base, "message": "hello"}, A_CODE)
    _notebook(nb_dir / "02_b.ipynb", {**base, "variant": "v1", "fail": False}, B_CODE)
    return nb_dir, out


def test_runs_every_stage_and_variant_in_order(fixture_profile):
    nb_dir, out = fixture_profile
    lines: list[str] = []
    result = runner.run("fx", notebooks_dir=nb_dir, echo=lines.append, preflight_check=False)
    assert (out / "a.txt").read_text() == "hi"
    assert (out / "b-v1.txt").exists() and (out / "b-v2.txt").exists()
    assert sorted(p.name for p in (out / "notebooks").iterdir()) == ["01_a.ipynb", "02_b-v1.ipynb", "02_b-v2.ipynb"]
    assert [t["stage"] for t in result.times] == ["01_a", "02_b", "02_b"]
    log = (out / "run.log").read_text()
    assert "01_a\tok" in log and "02_b [v2]\tok" in log and "total" in log
    assert len(json.loads((out / "run_times.json").read_text())) == 3
    assert any("3/3]" in line for line in lines)


def test_failing_cell_names_notebook_and_cell_and_keeps_earlier_outputs(fixture_profile):
    nb_dir, out = fixture_profile
    lines: list[str] = []
    with pytest.raises(runner.StageFailed) as e:
        runner.run("fx", notebooks_dir=nb_dir, overrides={"fail": True}, echo=lines.append, preflight_check=False)
    assert e.value.notebook == out / "notebooks" / "02_b-v1.ipynb"
    assert e.value.cell is not None and "boom in v1" in e.value.error
    assert (out / "a.txt").exists()  # the stage before is kept
    assert e.value.notebook.exists()  # the failed notebook is kept, traceback inside
    assert any("02_b-v1.ipynb" in line for line in lines)
    assert "FAILED" in (out / "run.log").read_text()


def test_only_reruns_one_stage_without_touching_the_others(fixture_profile):
    nb_dir, out = fixture_profile
    runner.run("fx", notebooks_dir=nb_dir, echo=lambda s: None, preflight_check=False)
    a_nb = out / "notebooks" / "01_a.ipynb"
    before = a_nb.stat().st_mtime_ns
    runner.run("fx", only=["02_b"], variants=["v2"], notebooks_dir=nb_dir, echo=lambda s: None)
    assert a_nb.stat().st_mtime_ns == before
    times = json.loads((out / "run_times.json").read_text())
    assert sorted((t["stage"], t["variant"]) for t in times) == [("01_a", None), ("02_b", "v1"), ("02_b", "v2")]


def test_bad_only_and_unmatched_override_are_config_errors(fixture_profile):
    nb_dir, _ = fixture_profile
    with pytest.raises(config.ConfigError, match="not a stage"):
        runner.plan("fx", only=["03_c"], notebooks_dir=nb_dir)
    with pytest.raises(config.ConfigError, match="matches no parameter"):
        runner.plan("fx", overrides={"gamma": 1}, notebooks_dir=nb_dir)
    with pytest.raises(config.ConfigError, match="should be bool"):
        runner.plan("fx", overrides={"fail": "maybe"}, notebooks_dir=nb_dir)


def test_parse_overrides_reads_yaml_values():
    assert config.parse_overrides(["a=0.1", "b=true", "c=x", "04_avem_dpo_training.gamma_tpd=0"]) == {
        "a": 0.1, "b": True, "c": "x", "04_avem_dpo_training.gamma_tpd": 0}
    with pytest.raises(config.ConfigError):
        config.parse_overrides(["novalue"])


def _pids(out):
    return {p.stem.partition("-")[2]: p.read_text() for p in out.glob("pid-*.txt")}


def test_variants_of_a_stage_share_a_kernel_with_a_wiped_namespace(fixture_profile):
    nb_dir, out = fixture_profile
    runner.run("fx", notebooks_dir=nb_dir, echo=lambda s: None, preflight_check=False)
    pids = _pids(out)
    assert pids["v1"] == pids["v2"]  # one kernel for the stage's two variants
    assert (out / "leak-v2.txt").read_text() == "False"  # v1's variables did not reach v2
    nb = nbformat.read(str(out / "notebooks" / "02_b-v2.ipynb"), as_version=4)
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1))  # numbered as in a fresh kernel


def test_fresh_kernels_give_each_execution_its_own_process(fixture_profile):
    nb_dir, out = fixture_profile
    runner.run("fx", notebooks_dir=nb_dir, echo=lambda s: None, reuse_kernels=False,
               preflight_check=False)
    pids = _pids(out)
    assert pids["v1"] != pids["v2"]


def test_the_nbval_run_folder_variable_is_refused_by_the_runner(monkeypatch):
    from avere_utils import config

    monkeypatch.setenv(config.RUN_DIR_ENV, "/tmp/elsewhere")
    with pytest.raises(config.ConfigError, match="AVERE_RUN_DIR"):
        runner.plan("tiny")


def test_notebook_params_take_the_nbval_run_folder(monkeypatch, tmp_path):
    from avere_utils import config

    monkeypatch.setenv(config.RUN_DIR_ENV, str(tmp_path / "tiny"))
    P = config.notebook_params("02_pair_construction", {"run_dir": "outputs/tiny"})
    assert P.run_dir == str(tmp_path / "tiny") and P.pairs_dir == str(tmp_path / "tiny" / "pairs")


def test_variant_jobs_run_the_rest_of_a_stage_in_worker_processes_after_its_first(fixture_profile):
    """variant_jobs 2: a training stage's first variant runs alone, the others two at a time in worker
    processes with a kernel each; the outputs, run_times.json and the echo keep the plan's order."""
    nb_dir, out = fixture_profile
    run_yaml = config.PARAMS_DIR / "fx" / "run.yaml"
    run_yaml.write_text(json.dumps({**json.loads(run_yaml.read_text()), "train_variants": ["v1", "v2", "v3", "v4"],
                                    "variant_jobs": 2}))
    lines: list[str] = []
    result = runner.run("fx", notebooks_dir=nb_dir, echo=lines.append, preflight_check=False)
    assert [t["variant"] for t in result.times] == [None, "v1", "v2", "v3", "v4"]
    assert [t["variant"] for t in json.loads((out / "run_times.json").read_text())] == [None, "v1", "v2", "v3", "v4"]
    pids = _pids(out)
    assert len({pids[v] for v in ("v2", "v3", "v4")}) <= 2  # two workers, each reusing its kernel
    assert pids["v1"] not in {pids[v] for v in ("v2", "v3", "v4")}
    assert (out / "leak-v4.txt").read_text() == "False"
    done = [line for line in lines if "done in" in line]  # a worker's: "      done in 1.2s (02_b [v2])"
    assert len(done) == 5 and [d[-4:-2] for d in done[2:]] == ["v2", "v3", "v4"]


def test_a_stage_failure_crosses_from_a_worker_process_whole():
    import pickle
    from pathlib import Path

    err = pickle.loads(pickle.dumps(runner.StageFailed(Path("out/nb.ipynb"), 3, "ValueError: boom")))
    assert (err.notebook, err.cell, err.error) == (Path("out/nb.ipynb"), 3, "ValueError: boom")
    assert "cell 3" in str(err)


def test_a_whole_run_runs_preflight_first_and_stops_on_a_problem(fixture_profile, monkeypatch):
    from avere_utils import preflight as pf

    nb_dir, out = fixture_profile
    calls = []

    def fake(profile, overrides=None, *, out=None, **kw):
        calls.append(out)
        rep = pf.PreflightReport(profile, out)
        rep.add("data", pf.PROBLEM, "a clip is missing")
        return rep

    monkeypatch.setattr(pf, "preflight", fake)
    lines: list[str] = []
    with pytest.raises(config.ConfigError, match="preflight found 1 problem"):
        runner.run("fx", notebooks_dir=nb_dir, echo=lines.append)
    assert calls == [str(out)] and any("a clip is missing" in line for line in lines)
    assert not (out / "notebooks").exists()  # nothing ran
    runner.run("fx", only=["01_a"], notebooks_dir=nb_dir, echo=lambda s: None)  # --only: no preflight
    runner.run("fx", notebooks_dir=nb_dir, echo=lambda s: None, preflight_check=False)
    assert len(calls) == 1


def test_a_whole_run_reuses_what_finished_with_the_same_params_code_and_inputs(fixture_profile):
    nb_dir, out = fixture_profile
    runner.run("fx", notebooks_dir=nb_dir, echo=lambda s: None, preflight_check=False)
    assert sorted(p.name for p in (out / "stage_done").iterdir()) == ["01_a.json", "02_b-v1.json", "02_b-v2.json"]
    rec = json.loads((out / "stage_done" / "02_b-v1.json").read_text())
    assert rec["inputs"] == {"01_a": json.loads((out / "stage_done" / "01_a.json").read_text())["key"]}
    before = {p.name: p.stat().st_mtime_ns for p in (out / "notebooks").iterdir()}
    lines: list[str] = []
    result = runner.run("fx", notebooks_dir=nb_dir, echo=lines.append, preflight_check=False)
    assert result.times == [] and {p.name: p.stat().st_mtime_ns for p in (out / "notebooks").iterdir()} == before
    log = (out / "run.log").read_text().split("# ")[-1]
    assert "01_a\treused" in log and "02_b [v2]\treused" in log
    assert len(json.loads((out / "run_times.json").read_text())) == 3  # the times of what was reused stay
    # a param of 01_a changes its key and so every key downstream: everything runs
    result = runner.run("fx", notebooks_dir=nb_dir, overrides={"message": "other"}, echo=lambda s: None,
                        preflight_check=False)
    assert [t["stage"] for t in result.times] == ["01_a", "02_b", "02_b"]
    # a param of 02_b only: 01_a is reused, 02_b runs
    result = runner.run("fx", notebooks_dir=nb_dir, overrides={"message": "other", "02_b.seed": 3},
                        echo=lambda s: None, preflight_check=False)
    assert [t["stage"] for t in result.times] == ["02_b", "02_b"]
    result = runner.run("fx", notebooks_dir=nb_dir, overrides={"message": "other", "02_b.seed": 3},
                        echo=lambda s: None, preflight_check=False, reuse=False)
    assert len(result.times) == 3


def test_editing_a_notebooks_code_reruns_it_and_editing_its_prose_or_comments_does_not(fixture_profile):
    nb_dir, out = fixture_profile
    runner.run("fx", notebooks_dir=nb_dir, echo=lambda s: None, preflight_check=False)
    nb = nbformat.read(str(nb_dir / "02_b.ipynb"), as_version=4)
    nb.cells[0].source = "fixture, reworded"
    nbformat.write(nb, str(nb_dir / "02_b.ipynb"))
    assert runner.run("fx", notebooks_dir=nb_dir, echo=lambda s: None, preflight_check=False).times == []
    nb.cells[2].source += "\n# a comment, reworded later\n"
    nbformat.write(nb, str(nb_dir / "02_b.ipynb"))
    assert runner.run("fx", notebooks_dir=nb_dir, echo=lambda s: None, preflight_check=False).times == []
    nb.cells[2].source += "\nx = 1\n"
    nbformat.write(nb, str(nb_dir / "02_b.ipynb"))
    assert len(runner.run("fx", notebooks_dir=nb_dir, echo=lambda s: None, preflight_check=False).times) == 2


def test_from_run_brings_the_unchanged_stages_and_runs_the_rest_into_the_new_folder(fixture_profile, tmp_path):
    nb_dir, out = fixture_profile
    runner.run("fx", notebooks_dir=nb_dir, echo=lambda s: None, preflight_check=False)
    new = tmp_path / "new"
    result = runner.run("fx", out=str(new), from_run=str(out), overrides={"02_b.seed": 5}, variants=["v2"],
                        notebooks_dir=nb_dir, echo=lambda s: None, preflight_check=False)
    assert [(t["stage"], t["variant"]) for t in result.times] == [("02_b", "v2")]
    log = (new / "run.log").read_text()
    assert f"01_a\treused\t0.0s\tsame params, notebook code and inputs from {out}" in log
    assert (new / "notebooks" / "01_a.ipynb").is_file() and (new / "stage_done" / "01_a.json").is_file()
    assert (new / "b-v2.txt").is_file() and not (new / "b-v1.txt").exists()
    with pytest.raises(config.ConfigError, match="run folder itself"):
        runner.run("fx", out=str(out), from_run=str(out), notebooks_dir=nb_dir, echo=lambda s: None,
                   preflight_check=False)


def test_a_rerun_keys_what_it_reads_not_what_it_would_have_built(fixture_profile, tmp_path):
    """A sweep-like run (--from, --only the later stage, a bare key every stage has): the stage linked from
    the base run keeps its own key, so a second identical run reuses what the first ran."""
    nb_dir, out = fixture_profile
    runner.run("fx", notebooks_dir=nb_dir, echo=lambda s: None, preflight_check=False)
    new = tmp_path / "point"

    def point_run():
        return runner.run("fx", only=["02_b"], out=str(new), from_run=str(out), overrides={"seed": 7},
                          notebooks_dir=nb_dir, echo=lambda s: None, preflight_check=False)

    assert len(point_run().times) == 2
    assert json.loads((new / "stage_done" / "01_a.json").read_text()) == json.loads(
        (out / "stage_done" / "01_a.json").read_text())
    assert point_run().times == []
    (new / "notebooks" / "02_b-v1.ipynb").unlink()  # an output gone: that execution runs again
    assert [t["variant"] for t in point_run().times] == ["v1"]


def test_a_classification_stage_needs_only_the_files_of_the_benchmarks_it_ran(tmp_path):
    """outputs_present: stage 05's record counts when the metrics of the benchmarks its params name are there
    (the tiny profile runs no MAFW); one of them missing makes it run again."""
    e = runner.Execution("05_zero_shot_classification", "avem_dpo", {"benchmarks": ["dfew", "ravdess"]}, tmp_path)
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "05_zero_shot_classification-avem_dpo.ipynb").write_text("{}")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "dfew-avem_dpo.json").write_text("{}")
    assert not runner.outputs_present(tmp_path, e)
    (tmp_path / "metrics" / "ravdess-avem_dpo.json").write_text("{}")
    assert runner.outputs_present(tmp_path, e)
    default = runner.stage_outputs(runner.Execution("05_zero_shot_classification", "x", {}, tmp_path))
    assert {p for p in default if p.startswith("metrics/")} == {
        f"metrics/{b}-{{v}}.json" for b in ("dfew", "ravdess", "mer2023")}  # the params' default: every benchmark

