"""Ablations rerun what changed, and only that: the sweep's grid syntax (dict and list points), the stages a
sweep runs (from the earliest stage of its keys; a key of a stage it does not run refused before any work),
mean ± sd over seeds with the base run's rows, and, on the session's small base run (conftest), a
`run --from` that reuses stages 01-03 and a sweep over a key of stage 02 that builds different pairs.  The
sweep starts from that `run --from`'s folder, so its point at the base run's value reuses every stage (no
notebook runs there) and only the other point runs 02-07."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import BASE_SIZES, LATER_SIZES, clone_run

from avere_utils import config, runner, sweep

FAMILIES = ("visual_reasoning", "audio_reasoning", "emotion_id", "modality_agreement", "visual_stress", "audio_stress")


def test_grid_entries_take_comma_lists_yaml_lists_dicts_and_repeated_keys():
    grid = sweep.parse_grid(["gamma_tpd=0,0.4", "02_pair_construction.family_weights=[{a: 1, b: 2}, {a: 2, b: 1}]",
                             "datasets=[[dfew], [dfew, emorealm]]", "w={x: 1}", "w={x: 2, y: 3}"])
    assert grid == {"gamma_tpd": [0, 0.4], "02_pair_construction.family_weights": [{"a": 1, "b": 2}, {"a": 2, "b": 1}],
                    "datasets": [["dfew"], ["dfew", "emorealm"]], "w": [{"x": 1}, {"x": 2, "y": 3}]}
    for bad in ("gamma_tpd=", "gamma_tpd=[]", "w=[{a: 1"):
        with pytest.raises(config.ConfigError):
            sweep.parse_grid([bad])


def test_point_names_of_dict_values_are_folder_safe_and_distinct():
    a = sweep.point_name({"02_pair_construction.family_weights": {"visual_reasoning": 0.6, "audio_reasoning": 0.3}})
    b = sweep.point_name({"02_pair_construction.family_weights": {"visual_reasoning": 0.3, "audio_reasoning": 0.6}})
    assert a != b and "/" not in a and " " not in a and "{" not in a
    long = sweep.point_name({"w": {f: 0.5 for f in FAMILIES}})
    assert len(long) < 60
    assert sweep.point_name({"gamma_tpd": 0.4, "lambda_av": 1}) == "gamma_tpd-0.4_lambda_av-1"


def test_a_sweep_runs_from_the_earliest_stage_of_its_keys():
    per_variant = ["04_avem_dpo_training", "05_zero_shot_classification", "06_zero_shot_emer", "07_zero_shot_emorealm"]
    assert sweep.sweep_stages("tiny", ["gamma_tpd"]) == per_variant
    assert sweep.sweep_stages("tiny", ["seed"]) == per_variant  # a bare key training has is training's
    assert sweep.sweep_stages("tiny", ["02_pair_construction.family_weights"]) == [
        "02_pair_construction", "03_reference_model", *per_variant]
    assert sweep.sweep_stages("tiny", ["family_weights"])[0] == "02_pair_construction"


def test_a_key_of_a_stage_the_sweep_does_not_run_is_refused_before_any_work(tmp_path):
    with pytest.raises(config.ConfigError, match="which a sweep does not run"):
        sweep.sweep("tiny", {"08_results_and_ablations.seed": [1, 2]}, out=str(tmp_path / "base"), echo=print)
    assert not (tmp_path / "base").exists()


def test_seeds_give_mean_and_sd_per_point_with_the_base_runs_rows_and_error_bars(tmp_path, monkeypatch):
    values = {("gamma_tpd-0.0", 0): 40.0, ("gamma_tpd-0.0", 1): 44.0, ("gamma_tpd-0.4", 0): 50.0,
              ("gamma_tpd-0.4", 1): 50.0}

    def fake_row(metrics_dir: Path, variant: str) -> dict:
        if metrics_dir.parent.name.startswith("seed-"):
            v = values[(metrics_dir.parent.parent.name, int(metrics_dir.parent.name[5:]))]
        else:  # the base run
            v = 30.0 if variant == "reference" else 45.0
        return {"DFEW UAR": v, "Avg": v / 2, "Halluc": None}

    monkeypatch.setattr(sweep, "_metrics_row", fake_row)
    bars = []
    import matplotlib.axes

    real = matplotlib.axes.Axes.errorbar
    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", lambda self, *a, **k: bars.append(k["yerr"]) or real(self, *a, **k))
    points = sweep.grid_points({"gamma_tpd": [0.0, 0.4]})
    table = sweep.aggregate(tmp_path / "sweep", points, "avem_dpo", seeds=[0, 1], base=tmp_path)
    assert list(table["row"]) == ["gamma_tpd-0.0", "gamma_tpd-0.4", "reference (base run)", "avem_dpo (base run)"]
    assert table["DFEW UAR"].tolist() == [42.0, 50.0, 30.0, 45.0]
    assert table["DFEW UAR sd"][:2].round(3).tolist() == [2.828, 0.0]
    md = (tmp_path / "sweep" / "summary.md").read_text()
    assert "42.00 ± 2.83" in md and "| reference (base run) | - | 30.00" in md
    assert (tmp_path / "sweep" / "summary.png").is_file() and len(bars) == 2  # DFEW UAR and Avg panels


def _tree_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in folder.resolve().rglob("*") if p.is_file()):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def _base_copy(tiny_base_run: Path, tmp_path: Path) -> Path:
    """A private copy of the session's base run whose world is the session run's, linked (read only), and
    whose manifests name the clips under it, as a run folder's do."""
    base = clone_run(tiny_base_run, tmp_path / "base")
    shutil.rmtree(base / "world")
    (base / "world").symlink_to(tiny_base_run / "world", target_is_directory=True)
    (base / "manifests").rename(tmp_path / "manifests")
    runner._copy_rewritten(tmp_path / "manifests", base / "manifests", tiny_base_run, base)
    return base


# what `run --from` sets below; the stage-02 sweep sets the same, so that its point at the base run's family
# weights has the keys of the `run --from`'s executions and reuses them all
FROM_SETS = {**BASE_SIZES, **LATER_SIZES, "gamma_tpd": 0.4}


@pytest.fixture(scope="module")
def run_from_base(tiny_base_run, tmp_path_factory) -> tuple[Path, Path, runner.RunResult, list[str]]:
    """`avere-kit run --from BASE --out NEW --variants avem_dpo --set gamma_tpd=0.4` on a private copy of the
    session's base run: (BASE, NEW, its result, its progress lines).  The stage-02 sweep below sweeps on NEW
    (into NEW/sweep/, which the run --from test does not read)."""
    tmp = tmp_path_factory.mktemp("run-from")
    base = _base_copy(tiny_base_run, tmp)
    new = tmp / "x"
    lines: list[str] = []
    result = runner.run("tiny", out=str(new), from_run=str(base), variants=["avem_dpo"], overrides=FROM_SETS,
                        echo=lines.append)
    return base, new, result, lines


@pytest.mark.slow
def test_run_from_a_base_run_reuses_stages_01_to_03(run_from_base):
    """`avere-kit run --from BASE --out NEW --variants avem_dpo --set gamma_tpd=0.4`: 01-03 reused (linked),
    the rest runs; the tiny profile's preflight runs first and passes."""
    base, new, result, lines = run_from_base
    assert any("preflight: OK" in line for line in lines)
    ran = [t["stage"] for t in result.times]
    assert ran and not set(ran) & {"01_data_preparation", "02_pair_construction", "03_reference_model"}
    log = (new / "run.log").read_text()
    for stage in ("01_data_preparation", "02_pair_construction", "03_reference_model"):
        assert f"{stage}\treused" in log, stage
    assert (new / "models" / "reference").is_symlink() and (new / "pairs").is_symlink()
    manifest = (new / "manifests" / "dfew.jsonl").read_text()  # copied, its clips under this run's (linked) world
    assert str(new / "world") + "/" in manifest and str(base) not in manifest
    summary = json.loads((new / "models" / "avem_dpo" / "training_summary.json").read_text())
    assert summary["loss_config"]["gamma_tpd"] == 0.4
    assert (new / "stage_done" / "04_avem_dpo_training-avem_dpo.json").is_file()
    assert not (base / "models" / "avem_dpo").exists()  # nothing new was written into the base run


@pytest.mark.slow
def test_a_sweep_over_a_key_of_stage_02_builds_different_pairs_per_point(run_from_base):
    base = run_from_base[1]  # the run --from's folder: 01-03 of the session's base run, 04-07 of avem_dpo
    same = config.load_stage("tiny", "02_pair_construction").family_weights
    other = {**same, "visual_reasoning": 0.1, "modality_agreement": 1.0}
    key = "02_pair_construction.family_weights"
    lines: list[str] = []
    table = sweep.sweep("tiny", {key: [same, other]}, out=str(base), overrides=FROM_SETS, echo=lines.append)
    dirs = [base / "sweep" / sweep.point_name({key: w}) for w in (same, other)]
    assert _tree_hash(dirs[0] / "pairs") == _tree_hash(base / "pairs")  # the base run's value: its pairs, reused
    assert _tree_hash(dirs[1] / "pairs") != _tree_hash(base / "pairs")
    log0, log1 = ((d / "run.log").read_text() for d in dirs)
    assert "02_pair_construction\treused" in log0 and "03_reference_model\treused" in log0
    assert "04_avem_dpo_training [avem_dpo]\treused" in log0  # the base run's value: nothing of it runs again
    assert "05_zero_shot_classification [avem_dpo]\treused" in log0  # its benchmarks' files, not every benchmark's
    assert "02_pair_construction\tok" in log1 and "03_reference_model\tok" in log1
    assert not (dirs[1] / "pairs").is_symlink() and (dirs[1] / "world").is_symlink()
    assert isinstance(table, pd.DataFrame) and table.shape[0] == 4


def test_the_command_line_takes_repeated_grids_seeds_and_from(capsys):
    from avere_utils import cli

    args = cli.build_parser().parse_args(["sweep", "--grid", "w=[{x: 1}, {x: 2}]", "--grid", "w={x: 3}", "g=0,1",
                                          "--seeds", "0", "1"])
    assert sweep.parse_grid(args.grid) == {"w": [{"x": 1}, {"x": 2}, {"x": 3}], "g": [0, 1]} and args.seeds == [0, 1]
    args = cli.build_parser().parse_args(["run", "--from", "outputs/tiny", "--out", "outputs/x", "--skip-preflight"])
    assert (args.from_run, args.out, args.skip_preflight, args.no_reuse) == ("outputs/tiny", "outputs/x", True, False)
    assert cli.main(["run", "--from", "outputs/tiny"]) == 2
    assert "--from RUN needs --out NEW" in capsys.readouterr().err
