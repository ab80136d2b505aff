"""Torch CPU threads on a quiet and on a busy machine: one SFT-like training step (forward + backward of a
batch of audio+video examples with detailed answers) at each thread count, alone and beside N CPU-bound
processes.  Why the tiny profile sets `torch_threads: 1`.  Writes outputs/bench/threads.json.

    .venv/bin/python bench/bench_threads.py [--threads 1 2] [--hogs 0 1] [--batch 16]

Each (threads, hogs) cell runs in its own process (torch fixes its thread pool per process), on a freshly
initialised tiny thinker (timings do not depend on the weights).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from avere_utils.paths import REPO_ROOT, atomic_write_text


def hog(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def step_seconds(threads: int, batch: int, repeats: int) -> float:
    """Seconds per training step in this process at `threads` torch threads."""
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_model import DESCRIPTION, clips

    from avere_utils.emotions import EMOTIONS, all_cue_phrases
    from avere_utils.models import load_backend
    from avere_utils.models.tiny import build_tiny_checkpoint
    from avere_utils.protocol import CLASSIFICATION_PROMPT, EMER_PROMPT
    from avere_utils.records import Example

    torch.set_num_threads(threads)
    corpus = [CLASSIFICATION_PROMPT, EMER_PROMPT, DESCRIPTION, *EMOTIONS, *all_cue_phrases()] * 20
    with tempfile.TemporaryDirectory() as tmp:
        backend = load_backend(str(build_tiny_checkpoint(Path(tmp) / "tiny", corpus, size="tiny", seed=0)), device="cpu")
    examples = [Example(EMER_PROMPT, m, DESCRIPTION) for m in clips(batch)]
    backend.model.train()

    def step() -> None:
        lp, n = backend.sequence_logprobs(examples, grad=True)
        (-(lp / n).mean()).backward()
        backend.model.zero_grad(set_to_none=True)

    step()  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - t) / repeats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--hogs", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cell", nargs=2, type=int, help=argparse.SUPPRESS)  # internal: one (threads, batch) cell
    ap.add_argument("--out", default=str(REPO_ROOT / "outputs" / "bench" / "threads.json"))
    args = ap.parse_args()
    if args.cell:
        print(json.dumps({"seconds": step_seconds(args.cell[0], args.cell[1], args.repeats)}))
        return
    rows = []
    for hogs in args.hogs:
        stop = mp.Event()
        procs = [mp.Process(target=hog, args=(stop,), daemon=True) for _ in range(hogs)]
        for p in procs:
            p.start()
        try:
            for threads in args.threads:
                out = subprocess.run([sys.executable, __file__, "--cell", str(threads), str(args.batch),
                                      "--repeats", str(args.repeats)], capture_output=True, text=True, check=True)
                seconds = json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
                rows.append({"threads": threads, "busy_processes_beside": hogs, "step_s": round(seconds, 3)})
                print(rows[-1], flush=True)
        finally:
            stop.set()
            for p in procs:
                p.join()
    result = {"step": f"forward+backward, {args.batch} audio+video examples with a detailed answer, tiny thinker, "
                      "fp32 CPU", "cpu_count": mp.cpu_count(), "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
