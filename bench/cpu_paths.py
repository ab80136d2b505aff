"""Which CPU code-path settings change the bits?  (docs/models.md, "Same bits on every CPU"; issue 35)

torch's vectorised ATen kernels (ATEN_CPU_CAPABILITY), MKL (MKL_CBWR, MKL_ENABLE_INSTRUCTIONS) and oneDNN
(ONEDNN_MAX_CPU_ISA: the vision tower's Conv3d patch embed) each pick a code path by CPU capability.  For
each setting a fresh subprocess sets the variables BEFORE torch is imported, then
  (a) a probe: matmul, addmm, softmax, layer_norm, gelu, cumsum, sum, conv3d, scaled_dot_product_attention
      on fixed-seed inputs of awkward sizes (vector tails), one thread, sha256 over all outputs;
  (b) a short SFT: the tiny thinker (`models.tiny`, size "tiny", seed 0) trained `--steps` steps by
      `models.sft.run_sft` on two rendered world clips, sha256 of the state dict.
Every setting but "kit pins" runs with AVERE_NATIVE_CPU=1, so that avere_utils.numerics adds nothing;
"kit pins" sets nothing and lets `import avere_utils` apply its pins.

    .venv/bin/python bench/cpu_paths.py                 # all settings, ~20 SFT steps each
    .venv/bin/python bench/cpu_paths.py --only native "kit pins" --steps 40
    .venv/bin/python bench/cpu_paths.py --emulate EPYC-Milan --steps 5 --only native "kit pins"
    .venv/bin/python bench/cpu_paths.py --only "kit pins" --steps 5 --optimizer plain   # AdamW as before

`--emulate CPU` runs each setting's process under QEMU's user-mode emulator (`qemu-x86_64 -cpu CPU`, from
Debian's qemu-user; TCG emulates AVX2 but no AVX-512): the CPU the libraries see (CPUID: vendor, family,
model, flags, cache leaves) is that model's, e.g. EPYC-Milan = AMD Zen3, family 25 model 1, AVX2 only.
The child is one process, one thread (qemu-user runs the process it starts, not the ones that process would
start); expect it 10-50x slower than native.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SETTINGS: dict[str, dict[str, str]] = {
    "native": {},
    "ATEN=default": {"ATEN_CPU_CAPABILITY": "default"},
    "ATEN=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "ATEN=avx512": {"ATEN_CPU_CAPABILITY": "avx512"},
    "MKL_CBWR=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
    "MKL_CBWR=AVX2": {"MKL_CBWR": "AVX2"},
    "MKL_CBWR=AVX512": {"MKL_CBWR": "AVX512"},
    "MKL_CBWR=AUTO": {"MKL_CBWR": "AUTO"},
    "MKL_ENABLE_INSTRUCTIONS=AVX2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "MKL_ENABLE_INSTRUCTIONS=SSE4_2": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    "MKL_CBWR=COMPATIBLE,STRICT": {"MKL_CBWR": "COMPATIBLE,STRICT"},
    "ONEDNN=AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "ONEDNN=SSE41": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
    "pin avx2+CBWR=AVX2+onednn AVX2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2",
                                       "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "pin avx2+MKL_ENABLE=AVX2+onednn AVX2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                                             "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "pin avx2+CBWR=COMPATIBLE+onednn AVX2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE",
                                             "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "pin avx2+CBWR=COMPATIBLE,STRICT+onednn AVX2": {"ATEN_CPU_CAPABILITY": "avx2",
                                                    "MKL_CBWR": "COMPATIBLE,STRICT", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "kit pins": {"__KIT__": "1"},
}
PIN_VARS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA",
            "AVERE_NATIVE_CPU")

CORPUS_EXTRA = ["The face shows a broad smile and crinkled eyes, which points to happiness.",
                "The voice sounds sad, with a low falling pitch. A yellow background also adds to the feeling."]


def _digest(tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def probe() -> dict[str, str]:
    """Ten lines of torch on fixed inputs: one sha256 per op and one over all."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(67, 131, generator=g), torch.randn(131, 45, generator=g)
    bias, x = torch.randn(45, generator=g), torch.randn(9, 37, 133, generator=g)
    vid, w = torch.randn(12, 3, 2, 14, 14, generator=g), torch.randn(32, 3, 2, 14, 14, generator=g)
    q, k, v = (torch.randn(2, 4, 29, 32, generator=g) for _ in range(3))
    out = {
        "matmul": a @ b,
        "addmm": torch.addmm(bias, a, b),
        "softmax": torch.softmax(x, -1),
        "layer_norm": F.layer_norm(x, (133,)),
        "gelu": F.gelu(x),
        "cumsum": torch.cumsum(x, -1),
        "sum": x.sum(-1),
        "conv3d": F.conv3d(vid, w, stride=(2, 14, 14)),
        "sdpa": F.scaled_dot_product_attention(q, k, v, is_causal=True),
    }
    res = {name: _digest([t])[:8] for name, t in out.items()}
    res["all"] = _digest(out.values())
    # not in "all" (kept comparable with older tables): MKL VML's sqrt/exp/log, which ATen calls for contiguous
    # float tensors (AdamW's sqrt); its SSE4.2 kernel starts from rsqrtps/rcpps, approximations whose bits
    # differ between CPU vendors and which QEMU computes exactly
    y = torch.rand(1000, generator=g) + 0.1
    res["vml"] = _digest([y.sqrt(), y.exp(), y.log()])[:8]
    return res


def short_sft(steps: int, batch_size: int = 4, optimizer: str = "kit") -> dict:
    """Build the tiny thinker (seed 0), train `steps` SFT steps on two rendered clips; hash the weights.
    optimizer "kit": run_sft's own construction (`numerics.adamw`: fused AdamW on CPU, no MKL VML); "plain":
    `torch.optim.AdamW(params, lr=..., weight_decay=...)` as before (single-tensor, sqrt through MKL VML)."""
    import tempfile

    import numpy as np

    from avere_utils.emotions import EMOTIONS
    from avere_utils.media import MediaSettings, load_media
    from avere_utils.models import load_backend
    from avere_utils.models.sft import SFTConfig, run_sft
    from avere_utils.models.tiny import build_tiny_checkpoint
    from avere_utils.protocol import CLASSIFICATION_PROMPT, EMER_PROMPT
    from avere_utils.records import Item
    from avere_utils.synth.encode import write_mp4, write_wav
    from avere_utils.synth.face import render_frames
    from avere_utils.synth.voice import render_audio

    def clip(d: Path, emotion: str, background: str, seed: int):
        rng = np.random.default_rng(seed)
        frames = render_frames(56, 48, emotion, ("mouth", "brows", "eyes"), background, "a coffee mug", rng)
        audio = render_audio(emotion, ("pitch", "energy", "tempo"), "rain noise", 2.0, 16000, rng)
        write_mp4(d / f"{seed}.mp4", frames, 24)
        write_wav(d / f"{seed}.wav", audio, 16000)
        return load_media(str(d / f"{seed}.mp4"), str(d / f"{seed}.wav"), MediaSettings(n_frames=8, frame_size=56))

    def item(i: int, label: str) -> Item:
        qa = [{"task": "modality_agreement", "question": "Do the face and the voice express the same emotion?",
               "choices": ["(A) Yes", "(B) No"], "answer": "A"},
              {"task": "reasoning_basic_video", "question": "Which visual cue explains the emotion?",
               "choices": ["(A) a broad smile", "(B) a blue background"], "answer": "A"}]
        return Item(id=f"t{i}", dataset="train_source", split="train", label=label,
                    text={"captions": {"description": f"The person looks {label}: a broad smile can be seen."},
                          "qa": qa})

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        clips = [clip(d, "happiness", "a yellow background", 1), clip(d, "anger", "a blue background", 2)]
        labels = ["happiness", "anger"]
        n_items = max(2, batch_size // 2)  # items alternate the two clips
        media = {f"t{i}": clips[i % 2] for i in range(n_items)}
        corpus = [CLASSIFICATION_PROMPT, EMER_PROMPT, *EMOTIONS, *CORPUS_EXTRA] * 5
        ckpt = build_tiny_checkpoint(d / "ckpt", corpus, size="tiny", seed=0)
        backend = load_backend(str(ckpt), device="cpu")
        init = _digest(t for _, t in sorted(backend.model.state_dict().items()))
        cfg = SFTConfig(epochs=0, max_steps=steps, batch_size=batch_size, lr=3e-3, seed=0, perception_weight=0.0)
        # the gradients each optimizer step receives (after clipping): step 1's come from the same initial
        # weights on every CPU, so they compare the forward and backward kernels apart from AdamW's update
        import torch

        from avere_utils import numerics

        grads: list[str] = []
        weights: list[str] = []  # the trainable weights after each update
        fused: list[bool] = []
        adamw_step, kit_adamw = torch.optim.AdamW.step, numerics.adamw

        def step(self, *args, **kwargs):
            grads.append(_digest(p.grad for g in self.param_groups for p in g["params"] if p.grad is not None))
            fused.append(bool(self.param_groups[0].get("fused")))
            out = adamw_step(self, *args, **kwargs)
            weights.append(_digest(p for g in self.param_groups for p in g["params"]))
            return out

        torch.optim.AdamW.step = step
        if optimizer == "plain":
            numerics.adamw = lambda params, **kw: torch.optim.AdamW(params, **kw)
        start = time.perf_counter()
        try:
            hist = run_sft(backend, [item(i, labels[i % 2]) for i in range(n_items)], media.__getitem__, cfg,
                           None, qa_per_clip=1)
        finally:
            torch.optim.AdamW.step, numerics.adamw = adamw_step, kit_adamw
        seconds = time.perf_counter() - start
        final = _digest(t for _, t in sorted(backend.model.state_dict().items()))
    return {"init": init, "final": final, "grads": grads, "weights": weights, "fused": any(fused),
            "optimizer": optimizer, "steps": len(hist),
            "s_per_step": seconds / max(len(hist), 1), "losses": [h["loss"] for h in hist],
            "last_loss": hist[-1]["loss"] if hist else None}


def child(steps: int, batch_size: int, optimizer: str = "kit") -> None:
    from avere_utils import numerics  # noqa: I001  (the kit pins the CPU paths before torch is imported)

    import torch

    torch.set_num_threads(1)

    start = time.perf_counter()
    out = {"capability": torch.backends.cpu.get_cpu_capability(), "probe": probe(),
           "env": {k: os.environ.get(k) for k in PIN_VARS if os.environ.get(k)},
           "describe": numerics.describe()}
    out["probe_s"] = time.perf_counter() - start
    if steps:
        out["sft"] = short_sft(steps, batch_size, optimizer)
    print("RESULT " + json.dumps(out), flush=True)


def run_setting(name: str, env_over: dict[str, str], steps: int, batch_size: int = 4,
                emulate: str | None = None, optimizer: str = "kit") -> dict:
    env = {k: v for k, v in os.environ.items() if k not in PIN_VARS}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    if "__KIT__" not in env_over:
        env["AVERE_NATIVE_CPU"] = "1"
        env.update(env_over)
    cmd = [sys.executable, __file__, "--child", "--steps", str(steps), "--batch", str(batch_size),
           "--optimizer", optimizer]
    if emulate:
        cmd = ["qemu-x86_64", "-cpu", emulate, *cmd]
    start = time.perf_counter()
    p = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    lines = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    if p.returncode or not lines:
        raise RuntimeError(f"{name}: child failed ({p.returncode})\n{p.stderr[-3000:]}")
    out = json.loads(lines[-1][len("RESULT "):])
    out.update(wall_s=wall, emulated=emulate)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20, help="SFT steps per setting (0: probe only)")
    ap.add_argument("--batch", type=int, default=4, help="SFT batch size (batch/2 items over two clips)")
    ap.add_argument("--only", nargs="*", help="setting names (default: all)")
    ap.add_argument("--json", help="write every result here")
    ap.add_argument("--emulate", metavar="CPU", help="run each setting under `qemu-x86_64 -cpu CPU` "
                    "(e.g. EPYC-Milan: AMD Zen3, AVX2 only)")
    ap.add_argument("--optimizer", choices=("kit", "plain"), default="kit",
                    help="kit: the kit's AdamW (numerics.adamw, fused on CPU, no MKL VML); plain: "
                    "torch.optim.AdamW's default single-tensor path (sqrt through MKL VML), as before")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.steps, args.batch, args.optimizer)
        return 0
    names = args.only or list(SETTINGS)
    results = {}
    for name in names:
        r = results[name] = run_setting(name, SETTINGS[name], args.steps, args.batch, args.emulate,
                                             args.optimizer)
        sft = r.get("sft", {})
        print(f"{name:40s} cap {r['capability']:8s} probe {r['probe']['all'][:10]}  "
              f"sft {sft.get('final', '')[:10]}  grads {' '.join(g[:8] for g in sft.get('grads', []))}  "
              f"weights {' '.join(w[:8] for w in sft.get('weights', []))} fused {sft.get('fused')}  "
              f"{sft.get('s_per_step', 0):.3f} s/step  "
              f"{r['wall_s']:.1f} s in all", flush=True)
    base = results.get("native", next(iter(results.values())))["probe"]
    print("\nprobe ops that differ from the first setting / native:")
    for name, r in results.items():
        diff = [op for op in base if op != "all" and r["probe"][op] != base[op]]
        print(f"  {name:40s} {', '.join(diff) or '-'}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
