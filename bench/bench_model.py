"""Model backend figures: parameters of the tiny thinker, forward+backward time per batch, and generation
throughput with the KV cache on versus off on the same prompts.  Writes outputs/bench/model.json.

    .venv/bin/python bench/bench_model.py [--device cpu|cuda|auto] [--out outputs/bench/model.json]

The model is a freshly initialised tiny thinker (the timings do not depend on the weights); the clips
are synthetic-world arrays (8 frames of 56x56, 2 s of 16 kHz audio), in memory.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from avere_utils.emotions import EMOTIONS, all_cue_phrases
from avere_utils.models import load_backend
from avere_utils.models.tiny import build_tiny_checkpoint
from avere_utils.paths import REPO_ROOT, atomic_write_text
from avere_utils.protocol import CLASSIFICATION_PROMPT, EMER_PROMPT
from avere_utils.records import Example, Media

DESCRIPTION = ("The person appears to feel happiness. The face shows a broad smile and crinkled eyes, which points "
               "to happiness. The voice sounds happy, with a high rising pitch and a quick lively pace.")


def clips(n: int) -> list[Media]:
    from avere_utils.synth.face import render_frames
    from avere_utils.synth.voice import render_audio

    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        e = EMOTIONS[i % len(EMOTIONS)]
        frames = render_frames(56, 8, e, ("mouth", "brows", "eyes"), "a yellow background", "a coffee mug", rng)
        audio = render_audio(e, ("pitch", "energy", "tempo"), "rain noise", 2.0, 16000, rng)
        out.append(Media(frames=frames, audio=audio))
    return out


def timed(fn, repeats: int, sync) -> float:
    fn()  # warm-up
    sync()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - t) / repeats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=str(REPO_ROOT / "outputs" / "bench" / "model.json"))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=32)
    args = ap.parse_args()

    corpus = [CLASSIFICATION_PROMPT, EMER_PROMPT, DESCRIPTION, *EMOTIONS, *all_cue_phrases()] * 20
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = build_tiny_checkpoint(Path(tmp) / "tiny", corpus, size="tiny", seed=0)
        backend = load_backend(str(ckpt), device=args.device)
    dev = backend.device
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    media = clips(args.batch)
    train_batch = [Example(EMER_PROMPT, m, DESCRIPTION) for m in media]
    n_resp = int(backend.sequence_logprobs(train_batch[:1])[1][0])
    backend.model.train()

    def fwd_bwd() -> None:
        lp, n = backend.sequence_logprobs(train_batch, grad=True)
        (-(lp / n).mean()).backward()
        backend.model.zero_grad(set_to_none=True)

    fwd_bwd_s = timed(fwd_bwd, 5, sync)
    backend.model.eval()
    prompts = [Example(EMER_PROMPT, m) for m in media[:4]]

    def gen(use_cache: bool) -> float:
        def run() -> None:
            backend.generate_ids(prompts, max_new_tokens=args.new_tokens, use_cache=use_cache, stop_at_eos=False)
        seconds = timed(run, 3, sync)
        return len(prompts) * args.new_tokens / seconds

    with_cache, without_cache = gen(True), gen(False)
    assert backend.generate_ids(prompts, max_new_tokens=8, use_cache=True) == \
        backend.generate_ids(prompts, max_new_tokens=8, use_cache=False), "cache changes greedy output"
    result = {
        "params": backend.parameter_counts(),
        "fwd_bwd_s": round(fwd_bwd_s, 4),
        "fwd_bwd_batch": f"{args.batch} audio+video examples (8 frames 56x56 + 2 s audio, interleaved), "
                         f"detailed-description response of {n_resp} tokens, full fine-tune, fp32 on CPU / bf16 on GPU",
        "gen_tokens_per_s_cache": round(with_cache, 1),
        "gen_tokens_per_s_nocache": round(without_cache, 1),
        "gen_setup": f"{len(prompts)} audio+video prompts, {args.new_tokens} new tokens each, greedy, no early stop",
        "device": (torch.cuda.get_device_name(dev) if dev.type == "cuda"
                   else f"cpu ({platform.processor() or platform.machine()})"),
        "torch_threads": torch.get_num_threads(),
        "dtype": str(backend.dtype),
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
