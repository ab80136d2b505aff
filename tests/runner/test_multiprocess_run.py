"""run.yaml's num_processes: the runner launches the training stage under `accelerate launch` (the command
it builds, the plan's keys, what it refuses), and two CPU processes (gloo) train the same adapter as one,
within the tolerance docs/training.md states for a change of process count."""
from __future__ import annotations

import json
import shutil
import time

import pytest

from avere_utils import config, launch, runner
from avere_utils.paths import REPO_ROOT

TRAIN = "04_avem_dpo_training"
# docs/training.md, "Multi-process and multi-GPU": a change of process count moves the adapter by at most this
# (the processes sum their gradients in another order; AdamW turns those last bits into ~1e-5)
ADAPTER_TOLERANCE = 1e-4


def _plan(tmp_path, **overrides):
    _, execs = runner.plan("tiny", only=[TRAIN, "05_zero_shot_classification"], variants=["avem_dpo"],
                           out=str(tmp_path / "run"), overrides=overrides)
    return {e.stage: e for e in execs}


def test_launch_command_is_accelerate_launch_of_the_launcher(tmp_path):
    spec = tmp_path / "spec.json"
    cmd = runner.launch_command(2, "", spec, 29611)
    assert cmd[:2] == [str(runner.Path(runner.sys.executable).with_name("accelerate")), "launch"] or \
        cmd[1:3] == ["-m", "accelerate.commands.launch"]
    assert cmd[-7:] == ["--num_processes", "2", "--main_process_port", "29611", "-m", "avere_utils.launch", str(spec)]
    assert "--multi_gpu" in cmd and "--config_file" not in cmd  # torchrun: N processes, on CPU too (gloo)
    cmd = runner.launch_command(8, "configs/accelerate/ddp.yaml", spec, 29612)
    i = cmd.index("--config_file")
    assert cmd[i + 1] == str(REPO_ROOT / "configs/accelerate/ddp.yaml") and "--multi_gpu" not in cmd
    assert cmd[cmd.index("--num_processes") + 1] == "8"  # run.yaml's count wins over the file's


def test_num_processes_launches_training_only_and_keeps_the_global_batch(tmp_path):
    one = _plan(tmp_path)
    two = _plan(tmp_path, num_processes=2)
    assert one[TRAIN].num_processes == 1 and two[TRAIN].num_processes == 2
    assert two["05_zero_shot_classification"].num_processes == 1  # evaluation stays single-process
    p1, p2 = one[TRAIN].params, two[TRAIN].params
    assert p1["global_batch_size"] == 0 and p2["global_batch_size"] == 8 == p1["per_device_train_batch_size"] * \
        p1["gradient_accumulation_steps"]
    run_dir = tmp_path / "run"
    h = {n: runner.params_hash(plan[TRAIN], run_dir) for n, plan in (("one", one), ("two", two))}
    assert h["one"] != h["two"]
    # one process keys as before the field existed (a finished single-process run is still reused)
    bare = runner.Execution(TRAIN, "avem_dpo", one[TRAIN].params, one[TRAIN].output)
    assert runner.params_hash(bare, run_dir) == h["one"]
    # an explicit global batch is left as given
    assert _plan(tmp_path, num_processes=2, global_batch_size=16)[TRAIN].params["global_batch_size"] == 16


def test_run_keys_are_checked_before_anything_runs(tmp_path):
    runner.check_overrides([TRAIN], {"num_processes": 2, "accelerate_config": "configs/accelerate/ddp.yaml"})
    with pytest.raises(config.ConfigError, match="num_processes.*>= 1"):
        _plan(tmp_path, num_processes=0)
    with pytest.raises(config.ConfigError, match="num_processes.*should be int"):
        _plan(tmp_path, num_processes="two")
    with pytest.raises(config.ConfigError, match=r"global_batch_size 8 .* 4 on 3 process"):
        _plan(tmp_path, num_processes=3)  # 8 pairs per step cannot be split 4 per device over 3 processes
    with pytest.raises(config.ConfigError, match="DeepSpeed"):
        _plan(tmp_path, num_processes=2, accelerate_config="configs/accelerate/deepspeed_zero2.yaml")
    with pytest.raises(config.ConfigError, match="no such file"):
        _plan(tmp_path, num_processes=2, accelerate_config="configs/accelerate/none.yaml")


def test_profiles_default_to_one_process():
    for profile in ("tiny", "paper"):
        run = config.load_run(profile)
        assert run.num_processes == 1
    assert config.load_run("paper").accelerate_config == "configs/accelerate/ddp.yaml"


def test_each_rank_but_the_first_writes_beside_the_executed_notebook(tmp_path):
    spec = {"output": str(tmp_path / "nb" / "04-x.ipynb"), "work": str(tmp_path / "nb" / ".launch" / "04-x"),
            "parameters": {"figures_dir": "${run_dir}/figures", "seed": 0}}
    out, params = launch.rank_output(spec, 0)
    assert out == tmp_path / "nb" / "04-x.ipynb" and params == spec["parameters"]
    out, params = launch.rank_output(spec, 1)
    assert out == tmp_path / "nb" / ".launch" / "04-x" / "rank1.ipynb"
    assert params == {"figures_dir": str(tmp_path / "nb" / ".launch" / "04-x" / "rank1-figures"), "seed": 0}


def _adapter(run_dir):
    from safetensors.torch import load_file

    return load_file(str(run_dir / "models" / "avem_dpo" / "adapter_model.safetensors"))


@pytest.mark.slow
def test_two_processes_train_the_adapter_of_one(tiny_base_run, tmp_path):
    """The bar's command at test size: --set num_processes=2 through the runner, against one process."""
    overrides = {"max_samples": 32, "max_steps": 4, "save_steps": 2}
    runs, seconds = {}, {}
    for n in (1, 2):
        run_dir = tmp_path / f"p{n}"
        shutil.copytree(tiny_base_run, run_dir, symlinks=True)
        t0 = time.perf_counter()
        runner.run("tiny", only=[TRAIN], variants=["avem_dpo"], out=str(run_dir),
                   overrides={**overrides, "num_processes": n}, echo=lambda s: None)
        seconds[n] = time.perf_counter() - t0
        runs[n] = run_dir
    two = runs[2]
    summary = json.loads((two / "models" / "avem_dpo" / "training_summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["global_batch"] == 8 and summary["steps"] == 4
    assert (two / "notebooks" / f"{TRAIN}-avem_dpo.ipynb").is_file()  # rank 0's, where the runner expects it
    work = two / "notebooks" / ".launch" / f"{TRAIN}-avem_dpo"
    assert (work / "rank1.ipynb").is_file() and (work / "rank1-figures" / "training-avem_dpo.png").is_file()
    assert not list(work.glob("error-rank*.json"))
    assert "--num_processes 2" in (work / "launch.log").read_text().splitlines()[0]
    record = json.loads((two / "stage_done" / f"{TRAIN}-avem_dpo.json").read_text())
    assert record["params_hash"] != json.loads((runs[1] / "stage_done" / f"{TRAIN}-avem_dpo.json").read_text())[
        "params_hash"]
    w1, w2 = _adapter(runs[1]), _adapter(two)
    assert w1.keys() == w2.keys()
    diff = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    moved = max(float(w1[k].abs().max()) for k in w1 if "lora_B" in k)
    print(f"adapter max |1 - 2 processes| {diff:.2e} (largest lora_B {moved:.3f}); "
          f"wall 1 process {seconds[1]:.1f} s, 2 processes {seconds[2]:.1f} s")
    assert moved > 0 and diff <= ADAPTER_TOLERANCE
    l1 = [json.loads(x)["loss"] for x in (runs[1] / "train_logs" / "avem_dpo.jsonl").read_text().splitlines()]
    l2 = [json.loads(x)["loss"] for x in (two / "train_logs" / "avem_dpo.jsonl").read_text().splitlines()]
    assert len(l1) == len(l2) == 4 and max(abs(a - b) for a, b in zip(l1, l2)) <= 1e-4
