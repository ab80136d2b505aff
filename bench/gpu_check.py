"""The model checks that need a GPU, and torchvision for the official processor, in one short run on the micro
thinker.  Every check is recorded, passed or failed, in one JSON file, so that one run on a lent machine
says everything it can:

- `processor`: the kit's inputs against transformers' Qwen2_5OmniProcessor (input ids, video grid, pixels,
  audio features, seconds per grid), for a clip with audio and frames;
- `cuda_vs_cpu`: sequence log-probs on CUDA (bf16, the default there, and fp32) against fp32 on the CPU;
- `packing`: packed candidate scoring (one forward after the prompt cache, a 4-D block mask) against one
  cache copy per candidate, on CUDA with sdpa, fp32 and bf16, for 2-, 4- and 7-candidate items, with the
  prompt-cache reuse on and off;
- `generation`: greedy generation on CUDA twice, with and without the KV cache.

Clips are the synthetic world's rendered frames and audio, before encoding, so no file is decoded here.

    python bench/gpu_check.py [--out outputs/bench/gpu_check.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from avere_utils.emotions import EMOTIONS  # noqa: E402
from avere_utils.models import load_backend  # noqa: E402
from avere_utils.models.tiny import build_tiny_checkpoint  # noqa: E402
from avere_utils.paths import atomic_write_text  # noqa: E402
from avere_utils.protocol import CLASSIFICATION_PROMPT, EMER_PROMPT  # noqa: E402
from avere_utils.records import Example, Media  # noqa: E402

CORPUS = [CLASSIFICATION_PROMPT, EMER_PROMPT, *EMOTIONS,
          "The face shows a broad smile and crinkled eyes, which points to happiness.",
          "The voice sounds sad, with a low falling pitch. A yellow background also adds to the feeling."] * 5
YES_NO = ["Yes", "No"]
FOUR = ["a broad smile", "a trembling voice", "a yellow background", "raised eyebrows"]


def rendered_clip(emotion: str, background: str, seed: int, seconds: float = 2.0) -> Media:
    from avere_utils.synth.face import render_frames
    from avere_utils.synth.voice import render_audio

    rng = np.random.default_rng(seed)
    frames = render_frames(56, int(24 * seconds), emotion, ("mouth", "brows", "eyes"), background, "a coffee mug", rng)
    audio = render_audio(emotion, ("pitch", "energy", "tempo"), "rain noise", seconds, 16000, rng)
    picked = np.linspace(0, len(frames) - 1, 8).round().astype(int)  # the paper's 8 frames
    return Media(frames=np.ascontiguousarray(frames[picked]), audio=audio.astype(np.float32))


def max_diff(a, b) -> float:
    return float(max((x.float().cpu() - y.float().cpu()).abs().max() for x, y in zip(a, b)))


def check(results: dict, name: str, fn) -> None:
    try:
        results[name] = fn()
    except Exception as e:  # one failed check must not hide the others' results
        results[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
    print(f"{name}: {json.dumps(results[name], default=str)[:600]}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cpu only to try the script itself on a machine without a GPU")
    ap.add_argument("--out", default=str(REPO / "outputs/bench/gpu_check.json"))
    args = ap.parse_args()
    # exactness checks: no TF32 in matmuls or the vision encoder's patch convolution
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    import transformers

    res: dict = {"torch": torch.__version__, "transformers": transformers.__version__,
                 "cuda": torch.version.cuda,
                 "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                 "platform": platform.platform()}
    try:
        import torchvision
        res["torchvision"] = torchvision.__version__
    except ImportError:
        res["torchvision"] = None
    clips = [rendered_clip("happiness", "a yellow background", 1), rendered_clip("anger", "a blue background", 2)]
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = str(build_tiny_checkpoint(Path(tmp) / "micro", CORPUS, size="micro", seed=0))
        cpu = load_backend(ckpt, device="cpu")
        gpu = load_backend(ckpt, device=args.device, dtype="bf16")
        gpu32 = load_backend(ckpt, device=args.device, dtype="float32")
        res["attn_implementation"] = gpu.thinker.config._attn_implementation
        res["gpu_dtype_default"] = str(gpu.dtype)

        def processor():
            from avere_utils.models.processor_check import compare_with_official

            return [compare_with_official(cpu, c, CLASSIFICATION_PROMPT) for c in clips]

        def cuda_vs_cpu():
            exs = [Example(EMER_PROMPT, clips[0], "The person looks happy."), Example(CLASSIFICATION_PROMPT, None, "anger"),
                   Example(CLASSIFICATION_PROMPT, clips[1], "anger")]
            ref = cpu.sequence_logprobs(exs)[0]
            out = {"n_sequences": len(exs)}
            for name, b in (("bf16", gpu), ("fp32", gpu32)):
                got = b.sequence_logprobs(exs)[0]
                out[f"{name}_max_abs_diff"] = max_diff(got, ref)
                out[f"{name}_max_rel_diff"] = float(((got.float().cpu() - ref) / ref.abs().clamp_min(1e-3)).abs().max())
            return out

        def packing():
            items = [(Example(CLASSIFICATION_PROMPT, clips[0]), list(EMOTIONS)),
                     (Example("Is the person smiling? (A) Yes (B) No", clips[1]), YES_NO),
                     (Example("Which cue does the clip show? " + " ".join(FOUR), Media(audio=clips[0].audio)), FOUR),
                     (Example("Is the person smiling? (A) Yes (B) No", None), YES_NO)]
            exs, cands = [e for e, _ in items], [c for _, c in items]
            flat = [Example(e.prompt, e.media, c) for e, cs in items for c in cs]
            out = {"candidates_per_item": [len(c) for c in cands]}
            for name, b in (("fp32", gpu32), ("bf16", gpu)):
                b.nest_min_tokens, b.nest_min_fraction = 4, 0.0  # later prompts nest after earlier ones' caches
                plain = torch.split(b.sequence_logprobs(flat)[0], [len(c) for c in cands])
                out[f"{name}_mask_form"] = b._packed_mask_form()
                for reuse in (False, True):
                    b.reuse_prefix = reuse
                    b.pack_candidates = True
                    packed = b.score_choices_batch(exs, cands)
                    b.pack_candidates = False
                    unpacked = b.score_choices_batch(exs, cands)
                    b.pack_candidates = True
                    tag = f"{name}_reuse_{int(reuse)}"
                    out[f"{tag}_packed_vs_unpacked"] = max_diff(packed, unpacked)
                    out[f"{tag}_packed_vs_plain"] = max_diff(packed, plain)
                    out[f"{tag}_same_best"] = all(int(p.argmax()) == int(u.argmax()) for p, u in zip(packed, unpacked))
            out["fp32_packed_within_1e-5"] = all(out[f"fp32_reuse_{r}_packed_vs_unpacked"] <= 1e-5 for r in (0, 1))
            return out

        def generation():
            exs = [Example(EMER_PROMPT, clips[0]), Example(CLASSIFICATION_PROMPT, clips[1])]
            a = gpu.generate(exs, max_new_tokens=8)
            b = gpu.generate(exs, max_new_tokens=8)
            no_cache = gpu.generate(exs, max_new_tokens=8, use_cache=False)
            return {"deterministic": a == b, "cache_equals_no_cache": a == no_cache, "generations": a,
                    "generations_no_cache": no_cache}

        for name, fn in (("processor", processor), ("cuda_vs_cpu", cuda_vs_cpu), ("packing", packing),
                         ("generation", generation)):
            check(res, name, fn)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(res, indent=1, default=str) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
