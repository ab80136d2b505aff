"""Faults during long runs, through the command line: `avere-kit run` SIGKILLed in the middle of an
evaluation stage and of a training stage, then rerun.  Nothing is lost or doubled (one prediction record,
one training-log line per item / step) and the results equal those of a run that was never interrupted.

Smallest sizes: the session's base run of stages 01-03 (tests/conftest.py), then each fault is one
killed run, its rerun and one uninterrupted run of a single stage for a single variant.

Issue 23 (a run folder is safe): a second run into a busy folder is refused, a `cp -r` copy of a finished
run redoes nothing, Ctrl-C ends with one line and resumes, a truncated newest checkpoint is skipped for the
one before it, and a truncated adapter is an error naming the file.  The parts that need no pipeline are
unit-tested in tests/runner/test_run_folder.py."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import clone_run

from avere_utils.paths import REPO_ROOT

# 05 on 40 RAVDESS items, one per batch (so a kill lands between records), text modes only (no per-class
# log-likelihoods); 04: 6 steps, a checkpoint after each.  The kill comes after 3 records: with 8 items the
# other 5 were once all written within one 20 ms poll on a quiet machine (the stage had finished when the
# kill landed), so the stage is made long enough that the kill lands inside it on a fast machine too.
N_ITEMS, N_STEPS = 40, 6
BENCH = "ravdess"  # 52 clips per actor at the smallest sizes (DFEW has 14)
EVAL_SET = [f"benchmarks=[{BENCH}]", "batch_size=1", f"max_items={N_ITEMS}", "modes=[paper,strict]",
            "headline_mode=strict"]
TRAIN_SET = [f"max_samples={N_STEPS}", "per_device_train_batch_size=1", "gradient_accumulation_steps=1", "save_steps=1"]
EVAL = ["--only", "05_zero_shot_classification", "--variants", "reference", "--set", *EVAL_SET]
TRAIN = ["--only", "04_avem_dpo_training", "--variants", "avem_dpo", "--set", *TRAIN_SET]
VOLATILE = {"created", "timing", "seconds", "predictions_file", "judged_file", "judge_batch_file", "run_dir"}


def kit(*args: str) -> list[str]:
    return [sys.executable, "-m", "avere_utils.cli", "run", "--profile", "tiny", *args]


def run_ok(cmd: list[str]) -> None:
    out = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.is_file() else []


def descendants(pid: int) -> list[int]:
    """The processes below `pid` (Linux /proc).  The notebook kernel is one of them but not in the runner's
    process group: jupyter_client starts it in a session of its own."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def run_and_kill(cmd: list[str], progress: Path, at_least: int, total: int) -> int:
    """Start `cmd` in its own process group; SIGKILL the whole group (runner, papermill) and the kernel
    (its own session, so not reached by killpg: unkilled it sometimes trained on to the last step, and the
    rerun resumed nothing) once `progress` holds at least `at_least` lines.  Returns the number of lines
    seen at the kill."""
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        for _ in range(6000):  # polls, ~0.02 s each: bounded by count
            n = len(lines(progress))
            if n >= at_least or proc.poll() is not None:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the stage finished before it could be interrupted"
        below = descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in below:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert n < total, f"killed too late ({n} of {total})"
    return n


def stable(metrics_file: Path, run_dir: Path):
    """The metrics without wall times and with the run folder's own path taken out."""
    def strip(d):
        if isinstance(d, dict):
            return {k: strip(v) for k, v in d.items() if k not in VOLATILE}
        if isinstance(d, list):
            return [strip(v) for v in d]
        return d
    return strip(json.loads(metrics_file.read_text().replace(str(run_dir), "<run>")))


@pytest.fixture(scope="module")
def base(tiny_base_run) -> Path:
    """Stages 01-03 at the smallest sizes, shared with the smoke test (tests/conftest.py)."""
    return tiny_base_run


@pytest.fixture(scope="module")
def clean(base, tmp_path_factory) -> Path:
    """The uninterrupted runs, on a copy of the base."""
    out = clone_run(base, tmp_path_factory.mktemp("faults-clean") / "clean")
    run_ok(kit("--out", str(out), *EVAL))
    run_ok(kit("--out", str(out), *TRAIN))
    return out


@pytest.mark.slow
def test_evaluation_killed_mid_stage_then_rerun_equals_an_uninterrupted_run(base, clean, tmp_path):
    killed = clone_run(base, tmp_path / "killed")
    preds = killed / "predictions" / f"{BENCH}-reference.jsonl"
    n_items = N_ITEMS
    n_at_kill = run_and_kill(kit("--out", str(killed), *EVAL), preds, 3, n_items)
    assert not (killed / "metrics" / f"{BENCH}-reference.json").exists()
    run_ok(kit("--out", str(killed), *EVAL))
    ids = [json.loads(x)["id"] for x in lines(preds) if x.strip().endswith("}")]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == n_items  # every item once: none lost, none doubled
    assert n_at_kill >= 3
    got = json.loads((killed / "metrics" / f"{BENCH}-reference.json").read_text())
    assert got["timing"]["computed_items"] <= n_items - n_at_kill  # the rerun computed only what was missing
    assert stable(killed / "metrics" / f"{BENCH}-reference.json", killed) == \
        stable(clean / "metrics" / f"{BENCH}-reference.json", clean)


@pytest.mark.slow
def test_training_killed_mid_stage_resumes_through_the_cli(base, clean, tmp_path):
    killed = clone_run(base, tmp_path / "killed")
    log = killed / "train_logs" / "avem_dpo.jsonl"
    working = killed / "checkpoints" / "avem_dpo" / "train_log.jsonl"  # the stage's log comes at the end
    n_at_kill = run_and_kill(kit("--out", str(killed), *TRAIN), working, 2, N_STEPS)
    assert not log.exists()
    run_ok(kit("--out", str(killed), *TRAIN))
    summary = json.loads((killed / "models" / "avem_dpo" / "training_summary.json").read_text())
    # a real resume: the kill stopped the kernel too, so the rerun trained the steps after the checkpoint
    assert 1 <= summary["resumed_from_step"] < N_STEPS and summary["steps"] == N_STEPS, (n_at_kill, summary)
    steps = [json.loads(x)["step"] for x in lines(log)]
    assert steps == list(range(1, N_STEPS + 1))  # each step logged once, in order
    assert [json.loads(x)["loss"] for x in lines(log)] == \
        [json.loads(x)["loss"] for x in lines(clean / "train_logs" / "avem_dpo.jsonl")]  # exactly
    assert_same_adapter(killed, clean)


# --- issue 23: a run folder is safe ---------------------------------------------------------------
def adapter_tensors(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "models" / "avem_dpo" / "adapter_model.safetensors"))


def assert_same_adapter(run: Path, clean: Path) -> None:
    """Issue 23: a resumed run's adapter is byte-identical to the uninterrupted run's (every tensor equal,
    dtype included, and the same file bytes), not merely close."""
    import torch

    a, b = adapter_tensors(run), adapter_tensors(clean)
    assert a.keys() == b.keys()
    differ = [k for k in a if a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} adapter tensors differ from the uninterrupted run's, e.g. {differ[:3]}"
    f = Path("models") / "avem_dpo" / "adapter_model.safetensors"
    assert (run / f).read_bytes() == (clean / f).read_bytes()


@pytest.mark.slow
def test_a_copied_run_redoes_nothing_and_a_second_run_into_it_is_refused(clean, tmp_path):
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(clean), str(copy)], check=True)  # new mtimes, another path
    preds = copy / "predictions" / f"{BENCH}-reference.jsonl"
    first = subprocess.Popen(kit("--out", str(copy), *EVAL), cwd=REPO_ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    lock = copy / ".locks" / "05_zero_shot_classification-reference.lock"
    for _ in range(3000):  # ~0.02 s each: until the first run holds its lock
        if (lock.is_file() and lock.read_text()) or first.poll() is not None:
            break
        time.sleep(0.02)
    # the first run has nothing to predict and could finish before the second one starts: stopped, it keeps
    # its lock for as long as the second takes, on a fast machine or a loaded one
    assert first.poll() is None, "the first run ended before it was seen holding its lock"
    os.kill(first.pid, signal.SIGSTOP)
    try:
        second = subprocess.run(kit("--out", str(copy), *EVAL), cwd=REPO_ROOT, capture_output=True, text=True)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    out, _ = first.communicate()
    assert first.returncode == 0, out[-3000:]
    assert second.returncode == 3, second.stdout[-2000:] + second.stderr[-2000:]
    assert f"{copy}: 05_zero_shot_classification [reference] is being written by another process, " \
           f"pid {first.pid}" in second.stderr and "--out" in second.stderr and "Traceback" not in second.stderr
    ids = [json.loads(x)["id"] for x in lines(preds)]
    assert len(ids) == len(set(ids)) == N_ITEMS  # the file as the first run left it: no record twice
    metrics = json.loads((copy / "metrics" / f"{BENCH}-reference.json").read_text())
    assert metrics["timing"]["computed_items"] == 0 and metrics["n_duplicate_records"] == 0
    assert stable(copy / "metrics" / f"{BENCH}-reference.json", copy) == \
        stable(clean / "metrics" / f"{BENCH}-reference.json", clean)
    run_ok(kit("--out", str(copy), *TRAIN))
    summary = json.loads((copy / "models" / "avem_dpo" / "training_summary.json").read_text())
    assert summary["resumed_from_step"] == N_STEPS  # the copy's checkpoint is this run: nothing retrained


@pytest.mark.slow
def test_ctrl_c_then_a_truncated_newest_checkpoint_resumes_from_the_one_before(base, clean, tmp_path):
    run = clone_run(base, tmp_path / "run")
    working = run / "checkpoints" / "avem_dpo" / "train_log.jsonl"
    # a terminal's Ctrl-C reaches a process that handles SIGINT; a shell's background job (how CI or a
    # harness may run this) inherits it ignored, and Python then keeps ignoring it: restore the default
    proc = subprocess.Popen(kit("--out", str(run), *TRAIN), cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for _ in range(6000):  # ~0.02 s each
        if len(lines(working)) >= 3 or proc.poll() is not None:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the stage finished before Ctrl-C"
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    out, _ = proc.communicate()
    assert proc.returncode == 130, out[-3000:]
    assert "Traceback" not in out and "DeadKernelError" not in out and "KeyboardInterrupt" not in out, out[-3000:]
    last = out.strip().splitlines()[-1]
    assert "interrupted: 04_avem_dpo_training [avem_dpo]" in last and "resumes training from checkpoint-" in last
    assert "04_avem_dpo_training [avem_dpo]\tinterrupted" in (run / "run.log").read_text()
    assert not (run / "train_logs" / "avem_dpo.jsonl").exists()  # no log for an adapter that is not there

    from avere_utils.training.checkpoint import checkpoint_step, complete_checkpoints

    steps = complete_checkpoints(run / "checkpoints" / "avem_dpo")  # oldest first, by the integer step
    newest = steps[-1] / "adapter" / "adapter_model.safetensors"
    newest.write_bytes(newest.read_bytes()[:newest.stat().st_size // 2])
    run_ok(kit("--out", str(run), *TRAIN))
    summary = json.loads((run / "models" / "avem_dpo" / "training_summary.json").read_text())
    assert summary["resumed_from_step"] == checkpoint_step(steps[-2]), summary
    notebook = (run / "notebooks" / "04_avem_dpo_training-avem_dpo.ipynb").read_text()
    assert f"skipping checkpoint {steps[-1].name}" in notebook and "corrupt or truncated" in notebook
    assert [json.loads(x)["step"] for x in lines(run / "train_logs" / "avem_dpo.jsonl")] == list(range(1, N_STEPS + 1))
    assert [json.loads(x)["loss"] for x in lines(run / "train_logs" / "avem_dpo.jsonl")] == \
        [json.loads(x)["loss"] for x in lines(clean / "train_logs" / "avem_dpo.jsonl")]  # exactly
    assert_same_adapter(run, clean)


@pytest.mark.slow
@pytest.mark.model
def test_a_truncated_adapter_is_an_error_naming_the_file(clean, tmp_path):
    import shutil

    from avere_utils.models import load_backend
    from avere_utils.weights import WeightsError

    adapter = tmp_path / "run" / "models" / "no_tpd"
    shutil.copytree(clean / "models" / "avem_dpo", adapter)
    f = adapter / "adapter_model.safetensors"
    f.write_bytes(f.read_bytes()[:f.stat().st_size // 2])
    with pytest.raises(WeightsError) as err:
        load_backend(str(clean / "models" / "reference"), adapter_dir=str(adapter), device="cpu")
    assert str(err.value).startswith(f"{f} is corrupt or truncated")
    assert "rerun stage 04 for variant no_tpd" in str(err.value)
