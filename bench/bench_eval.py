"""Evaluation throughput: items per second answering by generation versus by `scoring` mode (the
likelihood of each class name), through the same resumable runner the notebooks use; and how often the
three scoring modes disagree on the tiny run's predictions.  Writes outputs/bench/eval.json.

    .venv/bin/python bench/bench_eval.py [--device cpu|cuda|auto] [--items 48] [--out outputs/bench/eval.json]

Model: `--model-dir`, else the tiny run's reference (outputs/tiny/models/reference) when it exists, so that
answers have their trained length; otherwise a freshly initialised tiny thinker (answers run to
max_new_tokens, so generation is slower than with a trained model).
Clips: the tiny run's DFEW manifest when present, else synthetic arrays in memory.
"""
from __future__ import annotations

import argparse
import glob
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from avere_utils.emotions import EMOTIONS
from avere_utils.evaluation.predict import Decoding, PredictionTask, run_predictions
from avere_utils.models import load_backend
from avere_utils.paths import REPO_ROOT, atomic_write_text
from avere_utils.records import Item, Media

PROMPT = "Describe the emotion of the person in the video in one word."
TINY = REPO_ROOT / "outputs" / "tiny"


def model_dir(tmp: Path, given: str | None) -> tuple[str, str]:
    ref = Path(given) if given else TINY / "models" / "reference"
    if (ref / "config.json").is_file():
        return str(ref), f"trained reference {ref}"
    from avere_utils.models.sft import CLASSIFICATION_PROMPT, EMER_PROMPT
    from avere_utils.models.tiny import build_tiny_checkpoint

    corpus = [CLASSIFICATION_PROMPT, EMER_PROMPT, *EMOTIONS]
    return str(build_tiny_checkpoint(tmp / "model", corpus)), "fresh tiny thinker (untrained)"


def bench_items(n: int, backend) -> tuple[list[Item], callable, str]:
    manifest = TINY / "manifests" / "dfew.jsonl"
    if manifest.is_file():
        from avere_utils.cache import FeatureCache
        from avere_utils.datasets import read_manifest
        from avere_utils.media import load_media

        items = read_manifest(manifest)[:n]
        cache = FeatureCache(TINY / "cache")
        media = {it.id: load_media(it.video, it.audio, backend.media_settings, cache) for it in items}
        return items, lambda it: media[it.id], "tiny DFEW manifest"
    rng = np.random.default_rng(0)
    items = [Item(id=f"s{i}", dataset="bench", split="test", label=EMOTIONS[i % 7]) for i in range(n)]
    media = {it.id: Media(frames=rng.integers(0, 255, (8, 56, 56, 3), dtype=np.uint8),
                          audio=rng.standard_normal(32000).astype(np.float32) * 0.1) for it in items}
    return items, lambda it: media[it.id], "synthetic arrays"


def disagreement_of_tiny_run() -> dict[str, dict]:
    out = {}
    for path in sorted(glob.glob(str(TINY / "metrics" / "*.json"))):
        m = json.loads(Path(path).read_text())
        d = m.get("disagreement")
        if d:
            out[Path(path).stem] = d
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--items", type=int, default=48)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--out", default=str(REPO_ROOT / "outputs" / "bench" / "eval.json"))
    ap.add_argument("--model-dir", default=None, help="a checkpoint folder (default: the tiny run's reference)")
    args = ap.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path, model_note = model_dir(tmp, args.model_dir)
        backend = load_backend(path, device=args.device)
        items, media_fn, items_note = bench_items(args.items, backend)
        # warm-up (first-call allocations), not timed
        warm = PredictionTask(prompt_for=lambda it: PROMPT, generate=True, candidates_for=lambda it: list(EMOTIONS))
        run_predictions(backend, items[:2], tmp / "warm.jsonl", warm, Decoding(max_new_tokens=4), settings={},
                        media_fn=media_fn, batch_size=2, shard=(0, 1))
        gen = PredictionTask(prompt_for=lambda it: PROMPT, generate=True)
        t = time.perf_counter()
        rg = run_predictions(backend, items, tmp / "gen.jsonl", gen, Decoding(max_new_tokens=args.max_new_tokens),
                             settings={}, media_fn=media_fn, batch_size=args.batch, shard=(0, 1))
        gen_s = time.perf_counter() - t
        score = PredictionTask(prompt_for=lambda it: PROMPT, generate=False, candidates_for=lambda it: list(EMOTIONS))
        t = time.perf_counter()
        run_predictions(backend, items, tmp / "score.jsonl", score, Decoding(), settings={}, media_fn=media_fn,
                        batch_size=args.batch, shard=(0, 1))
        score_s = time.perf_counter() - t
        answer_words = [len((r.get("generation") or "").split()) for r in rg.records.values()]
    result = {
        "items_per_s_generate": len(items) / gen_s,
        "items_per_s_scoring": len(items) / score_s,
        "n_items": len(items), "batch_size": args.batch, "max_new_tokens": args.max_new_tokens,
        "n_classes_scored": len(EMOTIONS), "mean_answer_words": float(np.mean(answer_words)),
        "model": model_note, "items": items_note, "device": str(backend.device),
        "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
        "tiny_run_mode_disagreement_percent": disagreement_of_tiny_run(),
    }
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(f"generate: {result['items_per_s_generate']:.1f} items/s   scoring: {result['items_per_s_scoring']:.1f} "
          f"items/s   ({len(items)} items, {model_note}, {items_note})")
    for name, d in result["tiny_run_mode_disagreement_percent"].items():
        flat = {f"{k}.{k2}" if isinstance(v, dict) else k: v2
                for k, v in d.items() for k2, v2 in (v.items() if isinstance(v, dict) else [(k, v)])}
        print(f"  {name}: " + ", ".join(f"{k} {v:.1f}%" for k, v in sorted(flat.items())))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
