"""Data-layer benchmark: synthetic-world generation speed and the feature cache's speedup.

    .venv/bin/python bench/bench_data.py [--workers 2] [--out outputs/bench/data.json]

Writes `clips_per_s_generate` (clips rendered + encoded + indexed per second, all datasets mixed as in
the tiny world, with `--workers` processes) and `cache_speedup` (first decode pass / cached pass over the
same clips: the DFEW-like test clips of the generated world, frames + audio, default MediaSettings).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

from avere_utils.cache import FeatureCache
from avere_utils.datasets import load_dfew, load_train_source
from avere_utils.media import MediaSettings, load_media
from avere_utils.paths import REPO_ROOT, atomic_write_text
from avere_utils.synth import WorldConfig, generate_world


def _cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(REPO_ROOT / "outputs/bench/data.json"))
    args = ap.parse_args()
    cfg = WorldConfig(n_train_source=120, n_dfew_test_per_class=10, n_dfew_train_per_class=0, n_ravdess_actors=1,
                      n_mer2023=20, n_mer2023_worried=0, n_emer=10, n_emorealm_per_task=10, workers=args.workers)
    tmp = Path(tempfile.mkdtemp(prefix="bench_data_"))
    try:
        cpu0 = _cpu_seconds()
        summary = generate_world(tmp / "world", cfg, seed=0)
        cpu_generate = _cpu_seconds() - cpu0  # this process + the (reaped) pool workers
        items = load_dfew(tmp / "world/DFEW").items + load_train_source(tmp / "world/train_source/manifest.jsonl").items
        settings = MediaSettings()
        cache = FeatureCache(tmp / "cache")
        t0 = time.perf_counter()
        for it in items:
            load_media(it.video, it.audio, settings, cache)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        for it in items:
            load_media(it.video, it.audio, settings, cache)
        cached = time.perf_counter() - t0
        assert cache.misses == len(items) and cache.hits == len(items)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "clips_per_s_generate": summary.clips_per_s, "generate_clips": summary.n_clips,
        "generate_seconds": summary.seconds, "generate_workers": args.workers,
        "generate_cpu_seconds": round(cpu_generate, 2),
        # what the wall rate would be with `workers` otherwise idle cores (the machine here is shared)
        "clips_per_s_generate_idle_estimate": round(summary.n_clips / cpu_generate * args.workers, 1),
        "cache_speedup": round(first / cached, 1), "decode_clips": len(items),
        "decode_ms_per_clip_first": round(1000 * first / len(items), 2),
        "decode_ms_per_clip_cached": round(1000 * cached / len(items), 3),
        "cpu_count": os.cpu_count(), "machine": platform.platform(),
        "note": "wall-clock on a shared machine; see docs/data.md",
    }
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
