"""Seconds per policy step of plain DPO, AVEm-DPO unshared and AVEm-DPO with the shared-prefix pass, at the
paper's token geometry: the Qwen2.5-Omni thinker class with the real processor settings (8 frames at
448x448 -> 1,024 video tokens after merging, 16 kHz audio -> ~100 tokens for 4 s, a ~30-token question:
a prompt of ~1,150 tokens) and ~60-token responses, with width and depth reduced (parameters) so that it
runs on 2 CPU cores in a few minutes.  Writes outputs/bench/training_geometry.json.

    .venv/bin/python bench/bench_training_geometry.py [--hidden 256 --layers 4 ...] [--device cuda --dtype bf16]

A step is what the kit's trainer does per micro-batch with the reference and text-only log-probs
precomputed (its default): `Trainer.micro_batch_loss` (one policy call), backward, AdamW step.
"dpo" is the naive_dpo variant with the shared pass off: chosen and rejected as two full sequences in one
batch, which is trl's concatenated forward.  AVEm-DPO shared is timed in each TPD form (`tpd_form`):
literal ("avem_shared", the default) and reversed read cached text-only log-probs, so their step is the
same work; policy adds a policy pass with gradient over the short text-only sequences.  All configurations
are timed interleaved (one step of each per repetition, in rotating order) after one warm-up step each,
so that load from other processes on a shared machine falls on all alike; `ratio_shared_vs_dpo_<form>`
is the median over the repetitions of the form's step time over a DPO step run right next to it.
`..._encoder_cache`: the same with `encoder_cache_dir` set (the frozen encoders' outputs stored by the
reference pass and read back at each step), against DPO with it set too.
Memory: bytes autograd saves for backward (`SavedTensorMeter`, any device), checked against
`avere_utils.training.memory.estimate_step_memory` (which does not model the policy form's text-only
pass); on CUDA also torch.cuda.max_memory_allocated per configuration.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from avere_utils.paths import atomic_write_text  # noqa: E402

WORDS = ("the person smiles broadly and the voice rises with a bright warm tone while the eyes crinkle "
         "brows lower lips press tight and the speech grows loud fast and sharp a yellow wall a coffee mug "
         "rain noise behind trembling hands soft low falling pitch tears slow quiet breath raised eyebrows "
         "open mouth gasp sudden high pitch clenched fists frown narrowed eyes steady neutral face flat "
         "calm even speech").split()
QUESTION_STEM = "Which cues in the video and the audio show how this person feels, and why"


def text_of(tokenizer, n_tokens: int, seed: int, stem: str = "") -> str:
    """A sentence of about n_tokens tokens under this tokenizer (words drawn with a fixed seed)."""
    rng = np.random.default_rng(seed)
    words = stem.split()
    while len(tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]) < n_tokens:
        words.append(WORDS[int(rng.integers(len(WORDS)))])
    return " ".join(words)


# Widths and depths per preset; "cpu" is the argument defaults.  Qwen2.5-Omni-7B's thinker: text 3584 x 28
# layers (18,944 MLP, 28 heads, 4 KV heads), vision 1280 x 32 blocks (3,420 MLP, 16 heads), audio 1280 x 32
# layers (5,120 FFN, 20 heads).  "7b-quarter-depth" keeps every width and a quarter of every depth, so each
# part's share of a step is the 7B model's while it builds in seconds; "7b" is the whole thinker.
SEVEN_B = {"hidden": 3584, "intermediate": 18944, "layers": 28, "heads": 28, "kv_heads": 4, "vision_depth": 32,
           "vision_hidden": 1280, "vision_intermediate": 3420, "vision_heads": 16, "audio_layers": 32,
           "audio_d_model": 1280, "audio_ffn": 5120, "audio_heads": 20}
PRESETS = {"cpu": {}, "7b": SEVEN_B,
           "7b-quarter-depth": {**SEVEN_B, "layers": 7, "vision_depth": 8, "audio_layers": 8}}


def add_size_arguments(ap: argparse.ArgumentParser) -> None:
    """The model's size (shared with bench_eval's geometry): a preset, then any width or depth given."""
    ap.add_argument("--preset", default="cpu", choices=sorted(PRESETS),
                    help="a size; the size arguments below override it")
    for name, default in (("hidden", 256), ("intermediate", 704), ("layers", 4), ("heads", 4), ("kv-heads", 2),
                          ("vision-depth", 1), ("vision-hidden", 64), ("vision-intermediate", 0),
                          ("vision-heads", 4), ("audio-layers", 1), ("audio-d-model", 64), ("audio-ffn", 0),
                          ("audio-heads", 4)):
        ap.add_argument(f"--{name}", type=int, default=None, help=f"default {default} (0: twice the width)"
                        if name in ("vision-intermediate", "audio-ffn") else f"default {default}")
    ap.set_defaults(_size_defaults={"hidden": 256, "intermediate": 704, "layers": 4, "heads": 4, "kv_heads": 2,
                                    "vision_depth": 1, "vision_hidden": 64, "vision_intermediate": 0,
                                    "vision_heads": 4, "audio_layers": 1, "audio_d_model": 64, "audio_ffn": 0,
                                    "audio_heads": 4})


def resolve_size_arguments(args: argparse.Namespace) -> None:
    for key, default in args._size_defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, PRESETS[args.preset].get(key, default))


def build_model(args, work: Path, dtype: torch.dtype = torch.float32) -> str:
    """A randomly initialised thinker of the given size, saved in `dtype` (bf16 halves a large one's write)."""
    from avere_utils.models.tiny import build_tiny_checkpoint

    head_dim = args.hidden // args.heads
    quarter = head_dim // 8  # Qwen2.5-Omni-7B: head_dim 128 -> mrope_section [16, 24, 24]
    mrope = [quarter, 3 * quarter // 2, head_dim // 2 - quarter - 3 * quarter // 2]
    size = {"text": {"hidden_size": args.hidden, "intermediate_size": args.intermediate,
                     "num_hidden_layers": args.layers, "num_attention_heads": args.heads,
                     "num_key_value_heads": args.kv_heads, "mrope_section": mrope},
            "vision": {"depth": args.vision_depth, "hidden_size": args.vision_hidden,
                       "intermediate_size": args.vision_intermediate or 2 * args.vision_hidden,
                       "num_heads": args.vision_heads, "patch_size": 14},
            "audio": {"encoder_layers": args.audio_layers, "d_model": args.audio_d_model,
                      "encoder_attention_heads": args.audio_heads,
                      "encoder_ffn_dim": args.audio_ffn or 2 * args.audio_d_model},
            "media": {"n_frames": args.frames, "frame_size": args.frame_size, "sample_rate": 16000}}
    corpus = [" ".join(WORDS), QUESTION_STEM] * 4
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return str(build_tiny_checkpoint(work / "model", corpus, size=size, seed=0))
    finally:
        torch.set_default_dtype(previous)


def checkpoint_for(args, work: Path, dtype: torch.dtype) -> str:
    """`--model-dir` when it holds a checkpoint, else a new one built there (or in `work`)."""
    given = Path(args.model_dir) if args.model_dir else None
    if given is not None and (given / "config.json").is_file():
        return str(given)
    built = build_model(args, work, dtype)
    if given is None:
        return built
    given.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(built, given)
    return str(given)


def make_pairs(args, tokenizer):
    from avere_utils.records import Media
    from avere_utils.training.data import PairSource

    rng = np.random.default_rng(0)
    n_audio = int(args.audio_seconds * 16000)
    rows, media = [], {}
    for i in range(args.batch):
        question = text_of(tokenizer, args.question_tokens, 100 + i, QUESTION_STEM) + "?"
        modality = ("visual", "audio", "both")[i % 3] if args.modality == "mixed" else args.modality
        row = {"id": f"g{i}", "modality": modality, "prompt": question,
               **{k: text_of(tokenizer, args.response_tokens, 10 * i + j) for j, k in
                  enumerate(("chosen", "rejected_vr", "rejected_er"))},
               "video": f"v{i}", "audio": f"a{i}", "video_l": f"v{i}l", "audio_l": f"a{i}l"}
        rows.append(row)
        for key in ("video", "audio", "video_l", "audio_l"):
            media[row[key]] = (rng.integers(0, 255, (args.frames, args.frame_size, args.frame_size, 3), dtype=np.uint8)
                               if key.startswith("video") else (0.3 * rng.standard_normal(n_audio)).astype(np.float32))
    # one Media object per clip for the whole run: the backend memoises the processor work per object,
    # so every configuration times the model, not the patchifying
    # keyed like decoded clips, so that the encoder-store configurations find them again
    real = {r["id"]: Media(frames=media[r["video"]], audio=media[r["audio"]], frames_key=f"v:{r['video']}",
                           audio_key=f"a:{r['audio']}") for r in rows}
    rejected = {r["id"]: Media(frames=media[r["video_l"]], audio=media[r["audio_l"]],
                               frames_key=f"v:{r['video_l']}", audio_key=f"a:{r['audio_l']}") for r in rows}
    return PairSource(rows, lambda row: (real[row["id"]], rejected[row["id"]]))


# name: (variant, shared prefix, encoder store).  The "_enc" configurations read the frozen encoders' outputs
# that the reference pass stored (encoder_cache_dir) and are paired with DPO doing the same ("dpo_enc").
CONFIGS = {"dpo": ("naive_dpo", False, False), "avem_unshared": ("avem_dpo", False, False),
           "avem_shared": ("avem_dpo", True, False), "avem_shared_reversed": ("avem_dpo_reversed", True, False),
           "avem_shared_policy": ("avem_dpo_policy", True, False), "dpo_enc": ("naive_dpo", False, True),
           "avem_shared_enc": ("avem_dpo", True, True), "avem_shared_reversed_enc": ("avem_dpo_reversed", True, True),
           "avem_shared_policy_enc": ("avem_dpo_policy", True, True)}
FORMS = {"literal": "avem_shared", "reversed": "avem_shared_reversed", "policy": "avem_shared_policy"}
FORMS_ENC = {"literal": "avem_shared_enc", "reversed": "avem_shared_reversed_enc", "policy": "avem_shared_policy_enc"}


def baseline(name: str) -> str:
    return "dpo_enc" if CONFIGS[name][2] else "dpo"
MEMORY_CHECKED = ("dpo", "avem_unshared", "avem_shared")  # the estimate does not model the text-only pass


def profile_steps(folder: Path, trainers: dict, step, dev: torch.device) -> None:
    """One step of each configuration under torch.profiler: where a step's time goes, by operator."""
    from torch.profiler import ProfilerActivity, profile

    folder.mkdir(parents=True, exist_ok=True)
    cuda = dev.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sort_by = "cuda_time_total" if cuda else "cpu_time_total"
    for name, trainer in trainers.items():
        with profile(activities=activities, record_shapes=True) as prof:
            step(trainer)
            if cuda:
                torch.cuda.synchronize()
        table = prof.key_averages().table(sort_by=sort_by, row_limit=40, max_name_column_width=60)
        shapes = prof.key_averages(group_by_input_shape=True).table(sort_by=sort_by, row_limit=25,
                                                                   max_name_column_width=50,
                                                                   max_shapes_column_width=90)
        atomic_write_text(folder / f"{name}.txt", table + "\n\nby input shape\n" + shapes)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_size_arguments(ap)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--frame-size", type=int, default=448)
    ap.add_argument("--audio-seconds", type=float, default=4.0)
    ap.add_argument("--question-tokens", type=int, default=30)
    ap.add_argument("--response-tokens", type=int, default=60)
    ap.add_argument("--modality", default="mixed", choices=("mixed", "visual", "audio", "both"),
                    help="what the pairs' prompts target (PMP replaces that part of the input); mixed: the "
                         "batch cycles visual, audio, both")
    ap.add_argument("--batch", type=int, default=3, help="pairs per micro-batch")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads; one keeps a step's time steady on a shared machine (two threads "
                         "under other load spend much of their time waiting for each other)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--model-dir", default="", help="reuse a thinker built by an earlier run (same size)")
    ap.add_argument("--out", default=str(REPO / "outputs/bench/training_geometry.json"))
    ap.add_argument("--profile", default="", help="a folder: after the timed repetitions, one more step of each "
                    "configuration under torch.profiler, written there as <config>.txt (operators by device time)")
    args = ap.parse_args()
    resolve_size_arguments(args)
    return args


def main() -> None:
    from avere_utils.models.loading import resolve_device

    args = parse_args()
    t_start = time.perf_counter()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_geometry_"))
    backend, model_dir = load_bench_backend(args, work)
    dev = resolve_device(args.device)
    trainers = build_trainers(args, backend, make_pairs(args, backend.tokenizer), model_dir, work, dev)
    indices = list(range(args.batch))
    backend.model.train()

    def step(trainer) -> None:
        backend.encoder_store = trainer.encoder_store  # checked once, when the trainer set it; not timed again
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.micro_batch_loss(indices).per_sample.sum().backward()
        trainer.optimizer.step()

    geometry = measure_geometry(backend, trainers, indices)
    memory = measure_memory(backend, trainers, indices, geometry, args.batch)
    flops = count_flops(trainers, step)
    timing = Timing(trainers, step, dev)
    timing.run(args.repeats)
    if args.profile:
        profile_steps(Path(args.profile), trainers, step, dev)
    result = result_of(args, backend, dev, geometry, memory, flops, timing, time.perf_counter() - t_start)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=1))
    brief = {k: v for k, v in result.items() if k not in ("step_s_all", "step_cpu_s_all", "memory_check")}
    print(json.dumps(brief, indent=1))


def load_bench_backend(args: argparse.Namespace, work: Path) -> tuple[Any, str]:
    """The thinker (built, or reused from --model-dir) with LoRA adapters whose B is non-zero."""
    from avere_utils.models import LoraSettings, load_backend
    from avere_utils.models.loading import resolve_device, resolve_dtype

    model_dir = checkpoint_for(args, work, resolve_dtype(args.dtype, resolve_device(args.device)))
    torch.manual_seed(0)
    backend = load_backend(model_dir, lora=LoraSettings(r=8, alpha=32), device=args.device, dtype=args.dtype)
    with torch.no_grad():  # non-zero B, as after some training: the adapters change the log-probs
        for name, p in backend.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    return backend, model_dir


def build_trainers(args: argparse.Namespace, backend: Any, pairs: Any, model_dir: str, work: Path,
                   dev: torch.device) -> dict[str, Any]:
    """One Trainer per configuration on the one backend, each with its reference and text-only log-probs
    precomputed (as before training)."""
    from accelerate import Accelerator

    from avere_utils.config import build
    from avere_utils.training.params import TrainParams
    from avere_utils.training.trainer import Trainer

    accelerator = Accelerator(cpu=dev.type == "cpu")
    trainers = {}
    for name, (variant, shared, store) in CONFIGS.items():
        params = build(TrainParams, dict(run_dir=str(work / name), variant=variant, reference_dir=model_dir,
                                         pairs_dir=str(work / "none"), device=str(dev), max_steps=1,
                                         per_device_train_batch_size=args.batch, gradient_accumulation_steps=1, save_steps=0,
                                         learning_rate=1e-6, logp_cache_dir="", resume=False,
                                         shared_prefix=shared,
                                         encoder_cache_dir=str(work / "encoders") if store else ""), "bench")
        trainers[name] = Trainer(params, backend=backend, pairs=pairs, accelerator=accelerator)
        backend.encoder_store = trainers[name].encoder_store  # one backend: each trainer's own store (or none)
        trainers[name].precompute(list(range(args.batch)))  # reference and text-only, as before training
    backend.use_encoder_store(None)  # the checks below run the encoders (step() sets each trainer's store)
    return trainers


@dataclass
class Geometry:
    prompt_tokens: int
    text_prompt_tokens: int
    response_tokens: list[int]
    logp_diffs: dict[str, float]  # max |unshared - shared| log-prob, per kind of sequence


def measure_geometry(backend: Any, trainers: dict[str, Any], indices: list[int]) -> Geometry:
    """The token counts of the benched batch, and the shared pass checked on it against the unshared one."""
    plan = trainers["avem_shared"].plan(0)
    examples = [ex for _, ex in plan.policy]
    built = backend._build([examples[0]], with_response=False)
    prompt_tokens = int(built.attention_mask.sum())
    text_prompt_tokens = int(backend._build([plan.text[0][1]], with_response=False).attention_mask.sum())
    response_tokens = [len(backend.response_ids(ex.response)) for ex in examples]
    # every sequence a step runs through the policy, the policy form's text-only ones included
    checked = [ex for i in indices for _, ex in trainers["avem_shared"].plan(i).policy]
    text_checked = [ex for i in indices for _, ex in trainers["avem_shared_policy"].plan(i).text]
    with torch.no_grad():
        diffs = {}
        for what, exs in (("media", checked), ("text_only", text_checked)):
            lp_u = backend.sequence_logprobs(exs)[0]
            lp_s = backend.sequence_logprobs(exs, share_prefix=True)[0]
            diffs[what] = float((lp_u - lp_s).abs().max())
    return Geometry(prompt_tokens, text_prompt_tokens, response_tokens, diffs)


def measure_memory(backend: Any, trainers: dict[str, Any], indices: list[int], geometry: Geometry,
                   batch: int) -> dict[str, dict[str, float]]:
    """Bytes autograd saves for backward per configuration, against the estimate where it applies."""
    from avere_utils.training.memory import SavedTensorMeter, estimate_step_memory, shape_from_config

    memory = {}
    act_bytes = torch.finfo(backend.dtype).bits // 8
    # rows of one pass differ in length (so attention gets a mask) unless every sequence has the same length
    lengths = {int(backend._build([ex], with_response=True).attention_mask.sum())
               for i in indices for _, ex in trainers["avem_unshared"].plan(i).policy}
    shape = shape_from_config(backend.thinker.config)
    for name in (*MEMORY_CHECKED, "avem_shared_policy"):
        trainer = trainers[name]
        with SavedTensorMeter(backend.model.parameters()) as meter:
            out = trainer.micro_batch_loss(indices)
        out.per_sample.sum().backward()
        trainer.optimizer.zero_grad(set_to_none=True)
        memory[name] = {"saved_activations_mb": round(meter.bytes / 2**20, 2)}
        if name not in MEMORY_CHECKED:
            continue
        est = estimate_step_memory(shape, prompt_tokens=geometry.prompt_tokens,
                                   response_tokens=max(geometry.response_tokens), batch=batch,
                                   method="dpo" if name == "dpo" else "avem", shared=name == "avem_shared",
                                   padded=len(lengths) > 1, weight_bytes=act_bytes, act_bytes=act_bytes)
        # the estimate does not model nesting (an audio-targeted PMP input continuing the real prompt's
        # cache): for the shared pass over such pairs it is an upper bound
        memory[name].update({"estimated_activations_mb": round(est["activations"] / 2**20, 2),
                             "estimate_over_measured": round(est["activations"] / meter.bytes, 4)})
    return memory


def count_flops(trainers: dict[str, Any], step: Callable[[Any], None]) -> dict[str, int]:
    """The work of a step, independent of other load on the machine: matmul and convolution FLOPs of
    forward + backward + optimizer (torch's counter has no formula for the CPU attention kernel, so
    attention is left out; it is about equal in the configurations compared here).  {} when torch cannot
    count them."""
    from torch.utils.flop_counter import FlopCounterMode

    flops = {}
    for name in CONFIGS:
        try:
            with FlopCounterMode(display=False) as counter:
                step(trainers[name])
            flops[name] = counter.get_total_flops()
        except AssertionError as err:  # torch's sdpa formula rejects grouped-query shapes (CUDA kernels)
            print(f"FLOP count skipped for {name}: {err}", file=sys.stderr)
            return {}
    return flops


class Timing:
    """Step times (wall and CPU seconds) of every configuration, each paired with a DPO step right next to
    it (DPO first in even repetitions, second in odd ones), so that load that comes and goes on a shared
    machine within a repetition changes both sides of a ratio alike."""

    def __init__(self, trainers: dict[str, Any], step: Callable[[Any], None], dev: torch.device):
        self.trainers, self.step, self.cuda = trainers, step, dev.type == "cuda"
        self.times: dict[str, list[float]] = {k: [] for k in CONFIGS}
        self.cpu_times: dict[str, list[float]] = {k: [] for k in CONFIGS}
        self.cuda_peak: dict[str, float] = {k: 0.0 for k in CONFIGS}
        self.others = [n for n in CONFIGS if n not in ("dpo", "dpo_enc")]
        self.pairs: dict[str, list[tuple[float, float, float, float]]] = {k: [] for k in self.others}

    def run(self, repeats: int) -> None:
        for name in CONFIGS:  # warm-up: allocator, caches, first-call dispatch
            self.step(self.trainers[name])
        for rep in range(repeats):
            for name in self.others[rep % len(self.others):] + self.others[:rep % len(self.others)]:
                if rep % 2 == 0:
                    d, x = self.timed(baseline(name)), self.timed(name)
                else:
                    x, d = self.timed(name), self.timed(baseline(name))
                self.pairs[name].append((x[0], d[0], x[1], d[1]))

    def timed(self, name: str) -> tuple[float, float]:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0, c0 = time.perf_counter(), time.process_time()
        self.step(self.trainers[name])
        if self.cuda:
            torch.cuda.synchronize()
            self.cuda_peak[name] = max(self.cuda_peak[name], torch.cuda.max_memory_allocated() / 2**20)
        wall, cpu_s = time.perf_counter() - t0, time.process_time() - c0
        self.times[name].append(wall)
        self.cpu_times[name].append(cpu_s)
        return wall, cpu_s

    def median(self, cpu: bool = False) -> dict[str, float]:
        return {k: statistics.median(v) for k, v in (self.cpu_times if cpu else self.times).items()}

    def paired(self, name: str, cpu: bool = False) -> float:
        """The median over the repetitions of the step time over its neighbouring DPO step's."""
        col = 2 if cpu else 0
        return statistics.median(p[col] / p[col + 1] for p in self.pairs[name])

    def per_form(self, flops: dict[str, int]) -> dict[str, float | None]:
        """The ratios and step times of each TPD form, without and with the encoder store."""
        med = self.median()
        out: dict[str, float | None] = {}
        for form, name in FORMS.items():
            out[f"ratio_shared_vs_dpo_{form}"] = round(self.paired(name), 3)
        for form, name in FORMS.items():
            out[f"ratio_shared_vs_dpo_{form}_cpu"] = round(self.paired(name, cpu=True), 3)
        for form, name in FORMS.items():
            out[f"avem_shared_{form}_step_s"] = round(med[name], 4)
        for form, name in FORMS.items():
            out[f"flop_ratio_vs_dpo_{form}"] = round(flops[name] / flops["dpo"], 3) if flops else None
        # with the encoder store (encoder_cache_dir), against DPO with it too: what AVEm-DPO adds to a step once
        # the frozen encoders' outputs come from the reference pass
        for form, name in FORMS_ENC.items():
            out[f"ratio_shared_vs_dpo_{form}_encoder_cache"] = round(self.paired(name), 3)
            out[f"ratio_shared_vs_dpo_{form}_encoder_cache_cpu"] = round(self.paired(name, cpu=True), 3)
            out[f"flop_ratio_vs_dpo_{form}_encoder_cache"] = (round(flops[name] / flops["dpo_enc"], 3)
                                                              if flops else None)
        out["dpo_step_s_encoder_cache"] = round(med["dpo_enc"], 4)
        out["ratio_dpo_encoder_cache_vs_dpo"] = round(med["dpo_enc"] / med["dpo"], 3)
        return out


def result_of(args: argparse.Namespace, backend: Any, dev: torch.device, geometry: Geometry,
              memory: dict[str, dict[str, float]], flops: dict[str, int], timing: Timing,
              bench_seconds: float) -> dict[str, Any]:
    """training_geometry.json's content."""
    from avere_utils.training.memory import shape_from_config

    med, cpu = timing.median(), timing.median(cpu=True)
    shape = shape_from_config(backend.thinker.config)
    response_tokens = geometry.response_tokens
    return {
        "prompt_tokens": geometry.prompt_tokens,
        "response_tokens": round(sum(response_tokens) / len(response_tokens), 1),
        "response_tokens_each": response_tokens,
        "dpo_step_s": round(med["dpo"], 4),
        "avem_unshared_step_s": round(med["avem_unshared"], 4),
        "avem_shared_step_s": round(med["avem_shared"], 4),
        **timing.per_form(flops),
        "ratio_shared_vs_dpo": round(med["avem_shared"] / med["dpo"], 3),
        "ratio_shared_vs_unshared": round(med["avem_shared"] / med["avem_unshared"], 3),
        "ratio_unshared_vs_dpo": round(med["avem_unshared"] / med["dpo"], 3),
        # the same medians in CPU seconds of this process: less sensitive to other load on a shared machine
        "dpo_step_cpu_s": round(cpu["dpo"], 4), "avem_unshared_step_cpu_s": round(cpu["avem_unshared"], 4),
        "avem_shared_step_cpu_s": round(cpu["avem_shared"], 4),
        "ratio_shared_vs_dpo_cpu": round(cpu["avem_shared"] / cpu["dpo"], 3),
        "ratio_shared_vs_unshared_cpu": round(cpu["avem_shared"] / cpu["avem_unshared"], 3),
        "targets": {"ratio_shared_vs_dpo_literal": 1.05, "ratio_shared_vs_dpo_reversed": 1.05,
                    "ratio_shared_vs_dpo_policy": 1.15, "ratio_shared_vs_unshared": 0.6},
        **{f"{k}_peak_saved_activations_mb": memory[k]["saved_activations_mb"] for k in MEMORY_CHECKED},
        "peak_allocated_mb": ({k: round(v, 1) for k, v in timing.cuda_peak.items()} if dev.type == "cuda" else None),
        "memory_check": memory,
        "step_gflop": {k: round(v / 1e9, 2) for k, v in flops.items()},
        "max_logp_diff": max(geometry.logp_diffs.values()),
        "max_logp_diff_by_kind": geometry.logp_diffs,
        "text_prompt_tokens": geometry.text_prompt_tokens,
        "step_s_all": {k: [round(t, 4) for t in v] for k, v in timing.times.items()},
        "step_cpu_s_all": {k: [round(t, 4) for t in v] for k, v in timing.cpu_times.items()},
        "policy_sequences": {"dpo": 2 * args.batch, "avem_unshared": 4 * args.batch,
                             "avem_shared": f"{2 * args.batch} prompts + {4 * args.batch} responses",
                             "avem_shared_policy": f"{2 * args.batch} prompts + {4 * args.batch} responses, then "
                                                   f"{args.batch} text-only prompts + {3 * args.batch} responses"},
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "model": {"preset": args.preset, "hidden": args.hidden, "intermediate": args.intermediate, "layers": args.layers,
                  "heads": args.heads, "kv_heads": args.kv_heads, "vocab": shape.vocab,
                  "vision_depth": args.vision_depth, "vision_hidden": args.vision_hidden,
                  "audio_layers": args.audio_layers, "audio_d_model": args.audio_d_model,
                  "parameters": shape.total_params},
        "media": {"frames": args.frames, "frame_size": args.frame_size, "audio_seconds": args.audio_seconds,
                  "modality": args.modality},
        "batch": args.batch, "repeats": args.repeats, "device": str(dev), "dtype": str(backend.dtype),
        "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
        "bench_seconds": round(bench_seconds, 1),
    }


if __name__ == "__main__":
    main()
