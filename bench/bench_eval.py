"""Evaluation throughput: items per second answering by generation versus by `scoring` mode (the
likelihood of each class name), through the same resumable runner the notebooks use; and how often the
three scoring modes disagree on the tiny run's predictions.  Writes outputs/bench/eval.json.

Top-level `items_per_s_*`: the paper's token geometry (`geometry_bench`: 1,024 video tokens per clip,
several questions per clip), generation of a one-word answer and scoring of the 7 class names, with and
without reusing each clip's media-block KV across its questions; scoring both with the candidates packed
after the prompt's cache (`scoring_packed*`, the default) and with one cache copy per candidate
(`scoring`, `scoring_reuse`).  `tiny_model`: the tiny checkpoint.

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
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from avere_utils.emotions import EMOTIONS
from avere_utils.evaluation.predict import Decoding, PredictionTask, run_predictions
from avere_utils.models import load_backend
from avere_utils.paths import REPO_ROOT, atomic_write_text
from avere_utils.protocol import CLASSIFICATION_PROMPT, EMER_PROMPT
from avere_utils.records import Example, Item, Media

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_training_geometry import add_size_arguments, checkpoint_for, resolve_size_arguments, text_of  # noqa: E402

TINY = REPO_ROOT / "outputs" / "tiny"


def model_dir(tmp: Path, given: str | None) -> tuple[str, str]:
    ref = Path(given) if given else TINY / "models" / "reference"
    if (ref / "config.json").is_file():
        return str(ref), f"trained reference {ref}"
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


def geometry_bench(args) -> dict:
    """Items/s at the paper's token geometry (8 frames at 448x448 -> 1,024 video tokens, 4 s of audio,
    a question of ~30 tokens) on a reduced-width thinker (bench_training_geometry's model), EmoReAlM's
    layout: several questions per clip.  Generation and scoring (7 class names), each with and without
    reusing a clip's media-block KV for its questions (`backend.reuse_prefix`); scoring also with its
    candidates packed into one forward after the prompt cache (`backend.pack_candidates`)."""
    from avere_utils.models.loading import resolve_device, resolve_dtype

    torch.set_num_threads(args.threads)
    geo = argparse.Namespace(**vars(args), frames=8, frame_size=448)
    geo.model_dir = args.geo_model_dir
    dtype = resolve_dtype(args.geo_dtype, resolve_device(args.device))
    with tempfile.TemporaryDirectory() as tmp:
        backend = load_backend(checkpoint_for(geo, Path(tmp), dtype), device=args.device, dtype=args.geo_dtype)
        rng = np.random.default_rng(0)
        clips = [Media(frames=rng.integers(0, 255, (8, 448, 448, 3), dtype=np.uint8),
                       audio=(0.3 * rng.standard_normal(64000)).astype(np.float32)) for _ in range(args.geo_clips)]
        questions = [text_of(backend.tokenizer, 30, 500 + q, "Which emotion") + "?" for q in range(args.geo_questions)]
        items = [Item(id=f"c{c}q{q}", dataset="bench", split="test", video=f"/v/{c}.mp4", label=EMOTIONS[q % 7],
                      text={"q": q}) for c in range(args.geo_clips) for q in range(args.geo_questions)]
        media_fn = lambda it: clips[int(it.id[1:].split("q")[0])]  # noqa: E731
        prompt_for = lambda it: questions[it.text["q"]]  # noqa: E731
        gen = PredictionTask(prompt_for=prompt_for, generate=True)
        score = PredictionTask(prompt_for=prompt_for, generate=False, candidates_for=lambda it: list(EMOTIONS))
        run_predictions(backend, items[:2], Path(tmp) / "warm.jsonl", score, Decoding(max_new_tokens=2), settings={},
                        media_fn=media_fn, batch_size=2, shard=(0, 1))  # warm-up, not timed
        rates, records = {}, {}
        modes = (("generate", gen, False, False), ("generate_reuse", gen, True, False),
                 ("scoring", score, False, False), ("scoring_reuse", score, True, False),
                 ("scoring_packed_no_reuse", score, False, True), ("scoring_packed", score, True, True),
                 ("prompt_pass_only", None, True, False))
        # interleaved and rotated, so that load from other processes on a shared machine, and its drift
        # within a repetition, falls on every mode alike
        for rep in range(args.geo_repeats):
            k = rep % len(modes)
            for name, task, reuse, pack in modes[k:] + modes[:k]:
                backend.reuse_prefix, backend.pack_candidates = reuse, pack
                t = time.perf_counter()
                if task is None:
                    # the ceiling of every mode: the items' prompts (encoders, positions, the nested
                    # language-model pass), which generation and scoring both run, and nothing after them
                    with torch.no_grad():
                        backend._prompt_pass(backend._build([Example(prompt_for(it), media_fn(it)) for it in items],
                                                            with_response=False), nest=True)
                else:
                    records[name] = run_predictions(backend, items, Path(tmp) / f"{name}{rep}.jsonl", task,
                                                    Decoding(max_new_tokens=args.geo_max_new_tokens), settings={},
                                                    media_fn=media_fn, batch_size=len(items), shard=(0, 1)).records
                rates.setdefault(name, []).append(len(items) / (time.perf_counter() - t))
        prompt_tokens = int(backend._build([Example(questions[0], clips[0])], with_response=False).attention_mask.sum())
    same_generation = all(records["generate"][i]["generation"] == records["generate_reuse"][i]["generation"]
                          for i in records["generate"])
    same_choice = all(int(np.argmax(records["scoring"][i]["scores"]))
                      == int(np.argmax(records["scoring_reuse"][i]["scores"])) for i in records["scoring"])
    max_score_diff = max(abs(a - b) for i in records["scoring"]
                         for a, b in zip(records["scoring"][i]["scores"], records["scoring_reuse"][i]["scores"]))
    # packed against the unpacked scores of the same reuse setting: the best candidate of every item, and
    # how far any score moved
    pairs = [(records[p][i]["scores"], records[u][i]["scores"])
             for p, u in (("scoring_packed", "scoring_reuse"), ("scoring_packed_no_reuse", "scoring"))
             for i in records[u]]
    packed_changed = sum(int(np.argmax(a)) != int(np.argmax(b)) for a, b in pairs)
    packed_diff = max(abs(x - y) for a, b in pairs for x, y in zip(a, b))
    med = {k: float(np.median(v)) for k, v in rates.items()}
    # paired within each repetition, then the median: the machine's speed drifts between repetitions
    ratio = float(np.median([p / g for p, g in zip(rates["scoring_packed"], rates["generate_reuse"])]))
    return {"items_per_s_generate": round(med["generate"], 3),
            "items_per_s_generate_reuse": round(med["generate_reuse"], 3),
            "items_per_s_scoring": round(med["scoring"], 3),
            "items_per_s_scoring_reuse": round(med["scoring_reuse"], 3),
            "items_per_s_scoring_packed": round(med["scoring_packed"], 3),
            "items_per_s_scoring_packed_no_reuse": round(med["scoring_packed_no_reuse"], 3),
            "ratio_scoring_packed_vs_generate_reuse": round(ratio, 3),
            "target_scoring_packed_1_5x_generate_reuse_met": ratio >= 1.5,
            "ratio_scoring_packed_vs_scoring_reuse": round(float(np.median(
                [p / u for p, u in zip(rates["scoring_packed"], rates["scoring_reuse"])])), 3),
            "items_per_s_prompt_pass_only": round(med["prompt_pass_only"], 3),
            "rates_items_per_s": {k: [round(x, 3) for x in v] for k, v in rates.items()},
            "reuse_same_generations": same_generation, "reuse_same_best_candidate": same_choice,
            "reuse_max_score_diff": max_score_diff,
            "packed_same_best_candidate": packed_changed == 0, "packed_best_candidate_changed": packed_changed,
            "packed_items_compared": len(pairs), "packed_max_score_diff": packed_diff,
            "geometry": {"prompt_tokens": prompt_tokens, "clips": args.geo_clips,
                         "questions_per_clip": args.geo_questions, "classes_scored": len(EMOTIONS),
                         "max_new_tokens": args.geo_max_new_tokens, "repeats": args.geo_repeats,
                         "model": {"preset": args.preset, "hidden": args.hidden, "layers": args.layers,
                                   "vision_depth": args.vision_depth, "audio_layers": args.audio_layers,
                                   "untrained": "answers run to max_new_tokens"},
                         "device": str(backend.device), "dtype": str(backend.dtype),
                         "attn_implementation": backend.thinker.config._attn_implementation,
                         "torch_threads": args.threads}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--geo-clips", type=int, default=3)
    ap.add_argument("--geo-questions", type=int, default=3, help="questions per clip (EmoReAlM: about 1.5)")
    ap.add_argument("--geo-repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--geo-max-new-tokens", type=int, default=3,
                    help="generation at paper geometry: a one-word answer and the end token")
    ap.add_argument("--geo-model-dir", default="", help="reuse (or build into) this folder for the geometry model")
    ap.add_argument("--geo-dtype", default="auto", help="the geometry model's dtype (auto: bf16 on CUDA)")
    add_size_arguments(ap)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--items", type=int, default=48)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--out", default=str(REPO_ROOT / "outputs" / "bench" / "eval.json"))
    ap.add_argument("--model-dir", default=None, help="a checkpoint folder (default: the tiny run's reference)")
    args = ap.parse_args()
    resolve_size_arguments(args)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path, model_note = model_dir(tmp, args.model_dir)
        backend = load_backend(path, device=args.device)
        items, media_fn, items_note = bench_items(args.items, backend)
        # warm-up (first-call allocations), not timed
        warm = PredictionTask(prompt_for=lambda it: CLASSIFICATION_PROMPT, generate=True,
                              candidates_for=lambda it: list(EMOTIONS))
        run_predictions(backend, items[:2], tmp / "warm.jsonl", warm, Decoding(max_new_tokens=4), settings={},
                        media_fn=media_fn, batch_size=2, shard=(0, 1))
        gen = PredictionTask(prompt_for=lambda it: CLASSIFICATION_PROMPT, generate=True)
        t = time.perf_counter()
        rg = run_predictions(backend, items, tmp / "gen.jsonl", gen, Decoding(max_new_tokens=args.max_new_tokens),
                             settings={}, media_fn=media_fn, batch_size=args.batch, shard=(0, 1))
        gen_s = time.perf_counter() - t
        score = PredictionTask(prompt_for=lambda it: CLASSIFICATION_PROMPT, generate=False,
                               candidates_for=lambda it: list(EMOTIONS))
        t = time.perf_counter()
        run_predictions(backend, items, tmp / "score.jsonl", score, Decoding(), settings={}, media_fn=media_fn,
                        batch_size=args.batch, shard=(0, 1))
        score_s = time.perf_counter() - t
        backend.pack_candidates = False
        t = time.perf_counter()
        run_predictions(backend, items, tmp / "score_unpacked.jsonl", score, Decoding(), settings={},
                        media_fn=media_fn, batch_size=args.batch, shard=(0, 1))
        unpacked_s = time.perf_counter() - t
        backend.pack_candidates = True
        answer_words = [len((r.get("generation") or "").split()) for r in rg.records.values()]
    geometry = geometry_bench(args)
    result = {
        **geometry,
        "tiny_model": {"items_per_s_generate": len(items) / gen_s, "items_per_s_scoring": len(items) / score_s,
                       "items_per_s_scoring_unpacked": len(items) / unpacked_s},
        "n_items": len(items), "batch_size": args.batch, "max_new_tokens": args.max_new_tokens,
        "n_classes_scored": len(EMOTIONS), "mean_answer_words": float(np.mean(answer_words)),
        "model": model_note, "items": items_note, "device": str(backend.device),
        "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
        "tiny_run_mode_disagreement_percent": disagreement_of_tiny_run(),
    }
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    tiny = result["tiny_model"]
    print(f"tiny model: generate {tiny['items_per_s_generate']:.1f} items/s, scoring {tiny['items_per_s_scoring']:.1f} "
          f"items/s ({len(items)} items, {model_note}, {items_note})")
    print("paper geometry: " + ", ".join(f"{k[len('items_per_s_'):]} {v:.2f}" for k, v in geometry.items()
                                         if k.startswith("items_per_s")) + " items/s")
    for name, d in result["tiny_run_mode_disagreement_percent"].items():
        flat = {f"{k}.{k2}" if isinstance(v, dict) else k: v2
                for k, v in d.items() for k2, v2 in (v.items() if isinstance(v, dict) else [(k, v)])}
        print(f"  {name}: " + ", ".join(f"{k} {v:.1f}%" for k, v in sorted(flat.items())))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
