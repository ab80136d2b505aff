"""Seconds per optimizer step and peak memory of AVEm-DPO versus plain DPO (naive_dpo), same model, batch
and data, measured in the same run.  Writes outputs/bench/training.json:
`avem_step_s`, `dpo_step_s`, `ratio` (AVEm-DPO / DPO), `peak_mem_mb` (the larger of the two), and details.

    .venv/bin/python bench/bench_training.py [--device auto] [--steps 8] [--batch 4]

Model and data: the tiny run's reference checkpoint and pairs when outputs/tiny has them, else a freshly
built tiny checkpoint and synthetic pairs (random clips of the checkpoint's size).  Each variant runs in
its own child process so that its peak memory (CUDA max allocated, or CPU max RSS) is its own.  The one-off
precompute of reference / text-only log-probs is excluded from the step time and reported apart.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def synthetic_rows(n: int) -> list[dict]:
    emotions = ["happy", "sad", "angry", "fearful"]
    rows = []
    for i in range(n):
        mod = ("visual", "audio", "both")[i % 3]
        e = emotions[i % 4]
        rows.append({"id": f"b{i}", "modality": mod, "prompt": f"What does the {mod} tell about the emotion?",
                     "chosen": f"The person is {e}: a broad smile and a high rising pitch.",
                     "rejected_vr": f"The person is {e} because of the yellow background.",
                     "rejected_er": f"The person is {e}: clenched fists and trembling voice.",
                     "video": f"v{i}", "audio": f"a{i}",
                     "video_l": f"v{(i + 5) % n}" if mod != "audio" else f"v{i}",
                     "audio_l": f"noise:{i}" if mod != "visual" else f"a{i}"})
    return rows


def synthetic_source(rows, n_frames: int, size: int, sr: int):
    import numpy as np

    from avere_utils.records import Media
    from avere_utils.training.data import PairSource

    def clip(path):
        rng = np.random.default_rng(zlib.crc32(path.encode()))
        return (rng.integers(0, 255, (n_frames, size, size, 3), dtype=np.uint8),
                (0.3 * rng.standard_normal(sr)).astype(np.float32))

    def load(row):
        return (Media(frames=clip(row["video"])[0], audio=clip(row["audio"])[1]),
                Media(frames=clip(row["video_l"])[0], audio=clip(row["audio_l"])[1]))
    return PairSource(rows, load)


def child(variant: str, args: argparse.Namespace) -> dict:
    import torch

    from avere_utils.config import build
    from avere_utils.models import LoraSettings, load_backend
    from avere_utils.training.params import TrainParams
    from avere_utils.training.trainer import Trainer

    torch.manual_seed(0)
    work = Path(args.work)
    backend = load_backend(args.model_dir, lora=LoraSettings(r=8, alpha=32), device=args.device)
    if args.pairs_dir:
        pairs = None
    else:
        ms = backend.media_settings  # MediaSettings, or a plain dict where PyAV is not installed
        get = (lambda k: ms[k]) if isinstance(ms, dict) else (lambda k: getattr(ms, k))
        pairs = synthetic_source(synthetic_rows(args.batch * (args.steps + 1)), get("n_frames"),
                                 get("frame_size"), get("sample_rate"))
    params = build(TrainParams, dict(
        run_dir=str(work / "run"), variant=variant, reference_dir=args.model_dir,
        pairs_dir=args.pairs_dir or str(work / "none"), device=args.device, max_steps=args.steps + 1,
        per_device_train_batch_size=args.batch, gradient_accumulation_steps=1, save_steps=0, learning_rate=1e-3,
        precompute_reference=not args.no_precompute, logp_cache_dir="", resume=False,
        bf16=False, fp16=False), "bench")
    trainer = Trainer(params, backend=backend, pairs=pairs)
    if torch.cuda.is_available() and backend.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    trainer.precompute(trainer.visited_indices(0))
    precompute_s = time.perf_counter() - t0
    result = trainer.train()
    steps = [r["step_seconds"] for r in result.history[1:]]  # the first step warms up allocators and caches
    if backend.device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    n_seq = sum(c for c in [len(trainer.plan(i, with_media=False).policy) for i in trainer.order.micro_batches(1, 0)[0]])
    return {"variant": variant, "step_s": sorted(steps)[len(steps) // 2], "step_s_all": steps,
            "precompute_s": precompute_s, "peak_mem_mb": peak, "policy_sequences_per_step": n_seq,
            "device": str(backend.device)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--model-dir", default="")
    ap.add_argument("--pairs-dir", default="")
    ap.add_argument("--no-precompute", action="store_true", help="reference log-probs on the fly")
    ap.add_argument("--out", default=str(REPO / "outputs/bench/training.json"))
    ap.add_argument("--child", default="")
    ap.add_argument("--work", default="")
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args)))
        return
    work = Path(tempfile.mkdtemp(prefix="bench_training_"))
    model_dir, pairs_dir = args.model_dir, args.pairs_dir
    ref = REPO / "outputs/tiny/models/reference"
    if not model_dir and (ref / "config.json").is_file():
        model_dir = str(ref)
        if not pairs_dir and (REPO / "outputs/tiny/pairs/dataset_dict.json").is_file():
            pairs_dir = str(REPO / "outputs/tiny/pairs")
    if not model_dir:
        from avere_utils.models.tiny import build_tiny_checkpoint

        corpus = [r[k] for r in synthetic_rows(64) for k in ("prompt", "chosen", "rejected_vr", "rejected_er")]
        model_dir = str(build_tiny_checkpoint(work / "tiny", corpus, size="tiny", seed=0))
    results = {}
    for variant in ("avem_dpo", "naive_dpo"):
        cmd = [sys.executable, __file__, "--child", variant, "--work", str(work / variant), "--device", args.device,
               "--steps", str(args.steps), "--batch", str(args.batch), "--model-dir", model_dir,
               "--pairs-dir", pairs_dir] + (["--no-precompute"] if args.no_precompute else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            raise SystemExit(f"bench child {variant} failed:\n{proc.stderr[-3000:]}")
        results[variant] = json.loads(line[0][len("RESULT "):])
    avem, dpo = results["avem_dpo"], results["naive_dpo"]
    out = {"avem_step_s": round(avem["step_s"], 4), "dpo_step_s": round(dpo["step_s"], 4),
           "ratio": round(avem["step_s"] / dpo["step_s"], 3),
           "peak_mem_mb": round(max(avem["peak_mem_mb"], dpo["peak_mem_mb"]), 1),
           "avem_peak_mem_mb": round(avem["peak_mem_mb"], 1), "dpo_peak_mem_mb": round(dpo["peak_mem_mb"], 1),
           "avem_precompute_s": round(avem["precompute_s"], 3), "dpo_precompute_s": round(dpo["precompute_s"], 3),
           "avem_policy_sequences_per_step": avem["policy_sequences_per_step"],
           "dpo_policy_sequences_per_step": dpo["policy_sequences_per_step"],
           "precompute_reference": not args.no_precompute, "per_device_batch": args.batch,
           "steps_timed": args.steps, "device": avem["device"], "model_dir": model_dir,
           "data": pairs_dir or "synthetic pairs", "target_ratio": 2.2}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
