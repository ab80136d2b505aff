"""Seconds per SFT step of the tiny reference, with and without `clip_prefix` (docs/models.md "SFT cost").

    .venv/bin/python bench/bench_sft.py --run-dir outputs/tiny [--phase main|presence] [--steps 20]
                                        [--old] [--items 48] [--profile]

Reads a tiny run's training manifest, clip cache and reference checkpoint (nothing is written there: the
clips are decoded without the run's cache when --cache is not given), plans the stage's batches over the
first --items training clips (the stage's settings: batch 16, the main SFT's tasks and perception loss, or
the presence phase's), runs 2 warm-up steps and then --steps steps in one process at one torch thread, and
prints one JSON line: wall and CPU seconds per step, the last loss, and the setting.  --old runs the padded length-grouped
forwards (`SFTConfig.clip_prefix` False).  Both phases run two parts per batch, the work two SFT workers
share.  --profile prints torch.profiler's table of the timed steps instead.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MAIN_TASKS = ["label", "description", "qa", "presence", "grounded", "mcq"]
PRESENCE_TASKS = ["presence", "label", "qa", "grounded", "description", "mcq"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", default="outputs/tiny")
    ap.add_argument("--cache", default="", help="a clip cache folder (FeatureCache) to read and fill")
    ap.add_argument("--phase", choices=["main", "presence"], default="main")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--items", type=int, default=48)
    ap.add_argument("--old", action="store_true", help="padded length-grouped forwards (clip_prefix off)")
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import avere_utils.numerics  # noqa: F401  (the kit's CPU pins, before torch)

    # isort: split
    import torch

    from avere_utils.models.loading import load_backend
    from avere_utils.models.reference import load_clip_media, read_items
    from avere_utils.models.sft import SFTConfig, run_sft

    torch.set_num_threads(1)
    run = Path(a.run_dir)
    items = read_items(run / "manifests" / "train_source.jsonl")[: a.items]
    backend = load_backend(str(run / "models" / "reference"), device="cpu")
    media = load_clip_media(items, backend.media_settings, a.cache or None, show=False)
    if a.phase == "main":
        cfg = SFTConfig(epochs=2, batch_size=16, lr=3e-3, seed=0, perception_weight=1.0, length_groups=2)
        kw = dict(tasks=MAIN_TASKS, qa_per_clip=1, label_repeats=3, presence_per_clip=2)
    else:
        cfg = SFTConfig(epochs=0, batch_size=16, lr=1e-3, seed=1, perception_weight=0.0, length_groups=2)
        kw = dict(tasks=PRESENCE_TASKS, qa_per_clip=1, label_repeats=1, presence_per_clip=0)
    cfg.clip_prefix = not a.old
    cfg.max_steps = 2
    run_sft(backend, items, media.__getitem__, cfg, None, **kw)  # warm-up: memos, allocator
    cfg.max_steps = a.steps
    if a.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run_sft(backend, items, media.__getitem__, cfg, None, **kw)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
        return
    t, c = time.perf_counter(), time.process_time()
    hist = run_sft(backend, items, media.__getitem__, cfg, None, **kw)
    s, cpu = (time.perf_counter() - t) / a.steps, (time.process_time() - c) / a.steps
    print(json.dumps({"phase": a.phase, "clip_prefix": cfg.clip_prefix, "steps": a.steps, "s_per_step": round(s, 4),
                      "cpu_s_per_step": round(cpu, 4), "last_loss": hist[-1]["loss"]}))


if __name__ == "__main__":
    main()
