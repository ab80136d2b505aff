"""The two command-line entry points, run as scripts for a few steps / items (cleanrl-style: the script
itself is tested), on a copy of the session's base run (tests/conftest.py)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import clone_run

from avere_utils.paths import REPO_ROOT

pytestmark = pytest.mark.slow


def run_module(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def test_training_module_trains_a_few_steps_and_saves_the_adapter(tiny_base_run, tmp_path):
    run = clone_run(tiny_base_run, tmp_path / "run")
    stdout = run_module("avere_utils.training", "--params", "params/tiny/04_avem_dpo_training.yaml",
                        "--variant", "no_tpd", "--set", f"run_dir={run}", "max_samples=4",
                        "per_device_train_batch_size=2", "gradient_accumulation_steps=1")
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["variant"] == "no_tpd" and summary["steps"] == 2
    assert (run / "models" / "no_tpd" / "adapter_config.json").is_file()
    steps = [json.loads(x)["step"] for x in (run / "train_logs" / "no_tpd.jsonl").read_text().splitlines()]
    assert steps == [1, 2]


def test_evaluation_module_scores_a_few_items_into_the_metrics_file(tiny_base_run, tmp_path):
    run = clone_run(tiny_base_run, tmp_path / "run")
    stdout = run_module("avere_utils.evaluation", "07_zero_shot_emorealm", "--profile", "tiny",
                        "--set", f"run_dir={run}", "variant=reference", "max_items=6", "modes=[scoring]",
                        "headline_mode=scoring")
    assert "average_accuracy" in json.loads(stdout[stdout.index("{"):])
    metrics = json.loads((run / "metrics" / "emorealm-reference.json").read_text())
    assert metrics["n_items"] == 6 and set(metrics["modes"]) == {"scoring"}


def test_letter_copy_bench_trains_the_copy_alone_and_reports_its_accuracy(tiny_base_run):
    # reads the base run's manifests and pairs (tokenizer corpus, training items), writes nothing there
    out = subprocess.run([sys.executable, "bench/letter_copy.py", "--run", str(tiny_base_run), "--steps", "2",
                          "--n-eval", "4", "--letter-after"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["steps"] == 2 and result["lookups_seen"] == 32 and result["letter_after"]
    assert 0.0 <= result["letter_accuracy"] <= 1.0
