"""Two processes (accelerate launch, gloo on the CPU) train the tiny model to the same loss curve as one.

Runs the real entry point twice on the tiny run's reference checkpoint and pairs, with the same global
batch (1 process: 4 per device x 2 accumulation; 2 processes: 2 per device x 2 accumulation x 2), and
compares the per-step losses and the final adapters.  Writes outputs/bench/multiprocess.json.

    .venv/bin/python bench/multiprocess_check.py [--steps 12] [--tolerance 1e-4]

Needs outputs/tiny/models/reference and outputs/tiny/pairs (notebooks 02 and 03), or --reference-dir
and --pairs-dir.  The processes differ only in the order of floating-point sums (the gradient all-reduce,
smaller padded batches), so the curves agree to about 1e-6; the stated tolerance is 1e-4 absolute on
each step's loss.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def run(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-4000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--variant", default="avem_dpo")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--reference-dir", default=str(REPO / "outputs/tiny/models/reference"))
    ap.add_argument("--pairs-dir", default=str(REPO / "outputs/tiny/pairs"))
    ap.add_argument("--out", default=str(REPO / "outputs/bench/multiprocess.json"))
    args = ap.parse_args()
    for p, what in ((args.reference_dir, "config.json"), (args.pairs_dir, "dataset_dict.json")):
        if not (Path(p) / what).is_file():
            raise SystemExit(f"{p}/{what} missing: run notebooks 02 and 03 of the tiny profile first")
    from avere_utils.training.step_log import read_log

    work = Path(tempfile.mkdtemp(prefix="mp_check_"))
    params = str(REPO / "params/tiny/04_avem_dpo_training.yaml")
    common = ["--params", params, "--variant", args.variant, "--set", f"reference_dir={args.reference_dir}",
              "--set", f"pairs_dir={args.pairs_dir}", "--set", f"media_cache_dir={REPO / 'outputs/tiny/cache'}",
              "--set", f"max_steps={args.steps}", "--set", "device=cpu", "--set", "save_steps=0",
              "--set", f"logp_cache_dir={work / 'logps'}", "--set", "resume=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    one = work / "one"
    t_one = run([sys.executable, "-m", "avere_utils.training", *common, "--set", f"run_dir={one}",
                 "--set", "per_device_train_batch_size=4", "--set", "gradient_accumulation_steps=2"], env)
    two = work / "two"
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    t_two = run([accelerate, "launch", "--config_file", str(REPO / "configs/accelerate/cpu2.yaml"),
                 "-m", "avere_utils.training", *common, "--set", f"run_dir={two}",
                 "--set", "per_device_train_batch_size=2", "--set", "gradient_accumulation_steps=2"], env)
    log1 = read_log(one / "train_logs" / f"{args.variant}.jsonl")
    log2 = read_log(two / "train_logs" / f"{args.variant}.jsonl")
    assert [r["step"] for r in log1] == [r["step"] for r in log2] == list(range(1, args.steps + 1))
    diffs = [abs(a["loss"] - b["loss"]) for a, b in zip(log1, log2)]
    from safetensors.torch import load_file

    w1 = load_file(str(one / "models" / args.variant / "adapter_model.safetensors"))
    w2 = load_file(str(two / "models" / args.variant / "adapter_model.safetensors"))
    wdiff = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    wscale = max(float(w1[k].abs().max()) for k in w1)
    summary = json.loads((two / "models" / args.variant / "training_summary.json").read_text())
    out = {"variant": args.variant, "steps": args.steps, "global_batch": summary["global_batch"],
           "num_processes": summary["num_processes"], "max_abs_loss_diff": max(diffs),
           "mean_abs_loss_diff": sum(diffs) / len(diffs), "tolerance": args.tolerance,
           "max_abs_adapter_diff": wdiff, "max_abs_adapter_value": wscale,
           "loss_first_last_one_process": [log1[0]["loss"], log1[-1]["loss"]],
           "loss_first_last_two_processes": [log2[0]["loss"], log2[-1]["loss"]],
           "wall_s_one_process": round(t_one, 1), "wall_s_two_processes": round(t_two, 1),
           "passed": max(diffs) <= args.tolerance}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    if not out["passed"]:
        raise SystemExit(f"the two-process loss curve differs by {max(diffs):.2e} > {args.tolerance}")


if __name__ == "__main__":
    main()
