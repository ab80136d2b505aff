"""`avere-kit preflight --profile P`: everything a run needs, checked before any money or GPU time is spent.

One pass, every problem named at once (exit status 1 when there is one, never a traceback):

* data: every clip of every configured dataset through check-data's fast path (`avere_utils.datacheck`);
* the base model folder (paper profile): config.json names a Qwen2.5-Omni class, every shard named in
  `model.safetensors.index.json` is there with an intact header holding the tensors the index maps to it,
  tokenizer and processor files, and the LoRA target modules among the language model's weight names;
* each API-key variable the params name for a stage that will send requests is set (its value is never
  printed or written: only "set" / "not set");
* the judge prompt file when the judge's paper protocol needs it;
* CUDA, the GPU count and each GPU's memory against the estimated peak of one training step
  (`avere_utils.training.memory`: bf16 weights + LoRA state + activations at the configured per-device batch,
  plus a fixed headroom; docs/paper_run.md);
* free disk against what the run writes (adapters, checkpoints, the encoder store when on);
* what the run will cost: LLM requests of stage 02 (and how many replies are already cached), judge requests
  of stage 06, optimizer steps per trained variant, predicted items per benchmark.

The tiny profile builds its own model and world and calls no API: those checks print "not needed" lines.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from avere_utils import config

log = logging.getLogger(__name__)

OK, PROBLEM, NOT_NEEDED, INFO = "ok", "PROBLEM", "not needed", "info"
OMNI_ARCHITECTURES = ("Qwen2_5OmniModel", "Qwen2_5OmniForConditionalGeneration",
                      "Qwen2_5OmniThinkerForConditionalGeneration")
OMNI_MODEL_TYPES = ("qwen2_5_omni", "qwen2_5_omni_thinker")
# the language model's projections, in a thinker-only folder (model.layers...), a full Qwen2.5-Omni one
# (thinker.model.layers...) or transformers 5's module names (model.language_model.layers...)
LLM_WEIGHT = re.compile(r"^(?:thinker\.)?model\.(?:language_model\.)?layers\.\d+\.(?:self_attn|mlp)\.(\w+)\.weight$")
HEADROOM_GIB = 4.0  # one layer's transient buffers, the allocator's slack, the CUDA context (docs/training.md)
ENCODER_STORE_MB_PER_CLIP = 7.3  # Qwen2.5-Omni-7B in bf16 (docs/training.md)
GIB = 2**30
STAGE_DATA, STAGE_PAIRS, STAGE_REF, STAGE_TRAIN = ("01_data_preparation", "02_pair_construction",
                                                   "03_reference_model", "04_avem_dpo_training")
STAGE_CLS, STAGE_EMER, STAGE_EMOREALM = ("05_zero_shot_classification", "06_zero_shot_emer",
                                         "07_zero_shot_emorealm")


@dataclass
class Line:
    section: str
    status: str
    text: str


@dataclass
class PreflightReport:
    profile: str
    run_dir: str
    lines: list[Line] = field(default_factory=list)

    def add(self, section: str, status: str, text: str) -> None:
        self.lines.append(Line(section, status, text))

    @property
    def problems(self) -> list[Line]:
        return [ln for ln in self.lines if ln.status == PROBLEM]

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        out = [f"preflight: profile {self.profile}, run folder {self.run_dir}"]
        section = None
        for ln in self.lines:
            if ln.section != section:
                section = ln.section
                out.append(f"[{section}]")
            out.append(f"  {ln.status:10s} {ln.text}")
        if self.ok:
            out.append("preflight: OK")
        else:
            out.append(f"preflight: FAILED, {len(self.problems)} problem(s):")
            out += [f"  {i}. {ln.section}: {ln.text}" for i, ln in enumerate(self.problems, 1)]
        return "\n".join(out)


@dataclass
class CudaInfo:
    available: bool
    count: int = 0
    memory_gib: list[float] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    torch_version: str = ""
    cuda_version: str | None = None


def probe_cuda() -> CudaInfo:
    import torch

    if not torch.cuda.is_available():
        return CudaInfo(False, torch_version=torch.__version__, cuda_version=torch.version.cuda)
    props = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
    return CudaInfo(True, len(props), [p.total_memory / GIB for p in props], [p.name for p in props],
                    torch.__version__, torch.version.cuda)


def _free_disk(path: Path) -> int:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


# --- stage params ------------------------------------------------------------------------------------
def _load(rep: PreflightReport, profile: str, stage: str, overrides: Mapping[str, Any]) -> Any | None:
    from avere_utils import runner

    quiet = logging.getLogger("avere_utils.training.params")  # the effective batch: said once, in [GPU]
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        return config.load_stage(profile, stage, runner.overrides_for(stage, overrides))
    except (config.ConfigError, ValueError) as e:
        rep.add("params", PROBLEM, f"{stage}: {e}")
        return None
    finally:
        quiet.setLevel(level)


# --- data --------------------------------------------------------------------------------------------
def check_data(rep: PreflightReport, P: Any, quick: int | None) -> dict[str, int]:
    from avere_utils import datacheck

    if P.generate_world and not (Path(P.data_root) / "world_summary.json").is_file():
        rep.add("data", NOT_NEEDED, f"the synthetic world is generated by stage 01 into {P.data_root} "
                                    "(nothing to check before it exists)")
        return {}
    try:
        check = datacheck.check_report(P, quick)
    except Exception as e:  # noqa: BLE001 - a problem line, never a traceback
        rep.add("data", PROBLEM, f"the data check failed: {type(e).__name__}: {e}")
        return {}
    counts: dict[str, int] = {}
    by_dataset: dict[str, list[str]] = {}
    for ds, kind, detail in check.clip_problems:
        by_dataset.setdefault(ds, []).append(f"{kind} {detail}")
    for row in check.table.to_dict("records"):
        name, items = row["dataset"], int(row["items"] or 0)
        counts[name] = items
        if row["problem"]:
            clips = by_dataset.get(name, [])
            more = f"; clips: {'; '.join(clips[:5])}" + (f" and {len(clips) - 5} more" if len(clips) > 5 else "")
            rep.add("data", PROBLEM, f"{name}: {row['problem']}" + (more if clips else ""))
        else:
            rep.add("data", OK, f"{name}: {items} items, {int(row['clips_checked'] or 0)} clips checked")
    return counts


# --- base model --------------------------------------------------------------------------------------
def _safetensors_keys(path: Path) -> set[str]:
    """The tensor names of a safetensors file, from its header (a few kB read); WeightsError when broken."""
    from avere_utils.weights import check_safetensors

    check_safetensors(path)
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return {k for k in json.loads(f.read(n)) if k != "__metadata__"}


def check_base_model(rep: PreflightReport, base: Path, lora_targets: list[str]) -> dict | None:
    """Problems of a local Qwen2.5-Omni folder; returns its config.json (None when unreadable)."""
    sec = "base model"
    if not base.is_dir():
        rep.add(sec, PROBLEM, f"base_model_path {base}: no such folder (put a local Qwen2.5-Omni-7B there; "
                              "nothing is downloaded by the kit)")
        return None
    cfg = None
    cfg_file = base / "config.json"
    if not cfg_file.is_file():
        rep.add(sec, PROBLEM, f"{cfg_file}: missing (not a model folder)")
    else:
        try:
            cfg = json.loads(cfg_file.read_text())
        except (ValueError, OSError) as e:
            rep.add(sec, PROBLEM, f"{cfg_file}: not readable JSON ({e})")
    if cfg is not None:
        arch, mtype = cfg.get("architectures") or [], cfg.get("model_type")
        if mtype in OMNI_MODEL_TYPES and (not arch or any(a in OMNI_ARCHITECTURES for a in arch)):
            rep.add(sec, OK, f"architecture {', '.join(arch) or '(none listed)'} (model_type {mtype})")
        else:
            rep.add(sec, PROBLEM, f"{cfg_file}: architecture {arch} (model_type {mtype!r}) is not a Qwen2.5-Omni "
                                  f"thinker; expected one of {list(OMNI_ARCHITECTURES)}")
    keys = _check_weights(rep, base)
    files = {p.name for p in base.iterdir()}
    tok = "tokenizer_config.json" in files and ("tokenizer.json" in files or {"vocab.json", "merges.txt"} <= files)
    if tok:
        rep.add(sec, OK, "tokenizer files")
    else:
        rep.add(sec, PROBLEM, f"{base}: tokenizer files missing (need tokenizer_config.json and tokenizer.json "
                              "or vocab.json + merges.txt)")
    from avere_utils.models.processor import PROCESSOR_FILE

    if PROCESSOR_FILE in files or "preprocessor_config.json" in files:
        rep.add(sec, OK, "processor files (" + " + ".join(sorted({PROCESSOR_FILE, "preprocessor_config.json"}
                                                                  & files)) + ")")
    else:
        rep.add(sec, PROBLEM, f"{base}: no preprocessor_config.json (nor the kit's {PROCESSOR_FILE})")
    if keys:
        found = {m.group(1) for k in keys if (m := LLM_WEIGHT.match(k))}
        missing = [t for t in lora_targets if t not in found]
        if missing:
            rep.add(sec, PROBLEM, f"LoRA target modules {missing} not found among the language model's weights "
                                  f"(found {sorted(found) or 'none'})")
        else:
            rep.add(sec, OK, f"LoRA target modules present: {', '.join(lora_targets)}")
    return cfg


def _check_weights(rep: PreflightReport, base: Path) -> set[str]:
    from avere_utils.weights import WeightsError

    sec = "base model"
    index_file, single = base / "model.safetensors.index.json", base / "model.safetensors"
    if index_file.is_file():
        try:
            weight_map = json.loads(index_file.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError, OSError) as e:
            rep.add(sec, PROBLEM, f"{index_file}: unreadable ({type(e).__name__}: {e})")
            return set()
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not (base / s).is_file()]
        if missing:
            rep.add(sec, PROBLEM, f"{len(missing)} of {len(shards)} shards named in {index_file.name} are missing: "
                                  f"{', '.join(missing)}")
        bad = []
        for s in shards:
            if s in missing:
                continue
            try:
                held = _safetensors_keys(base / s)
            except WeightsError as e:
                bad.append(str(e))
                continue
            absent = [k for k, f in weight_map.items() if f == s and k not in held]
            if absent:
                bad.append(f"{s} lacks {len(absent)} tensor(s) the index maps to it (e.g. {absent[0]})")
        for b in bad:
            rep.add(sec, PROBLEM, b)
        if not missing and not bad:
            rep.add(sec, OK, f"weights: {len(shards)} shard(s), {len(weight_map)} tensors, index complete")
        return set(weight_map)
    if single.is_file():
        try:
            keys = _safetensors_keys(single)
        except WeightsError as e:
            rep.add(sec, PROBLEM, str(e))
            return set()
        rep.add(sec, OK, f"weights: model.safetensors, {len(keys)} tensors")
        return keys
    rep.add(sec, PROBLEM, f"{base}: no model.safetensors.index.json nor model.safetensors")
    return set()


def _lm_shape(cfg: dict | None, base: Path | None):
    """LMShape of the base model's thinker (meta device, no memory), else Qwen2.5-Omni-7B's; and where from."""
    from avere_utils.training import memory

    if cfg is not None and base is not None:
        try:
            from transformers import AutoConfig

            c = AutoConfig.from_pretrained(base)
            thinker = getattr(c, "thinker_config", c)
            return memory.shape_from_config(thinker), f"{base.name}'s config"
        except Exception as e:  # noqa: BLE001 - fall back to the 7B sizes, said so
            log.debug("config of %s not usable for the estimate: %s", base, e)
    return memory.shape_from_config(memory.qwen2_5_omni_7b_config()), "Qwen2.5-Omni-7B's sizes (assumed)"


# --- the whole check ---------------------------------------------------------------------------------
def preflight(profile: str, overrides: Mapping[str, Any] | None = None, *, out: str | None = None,
              quick: int | None = None, cuda_probe: Callable[[], CudaInfo] = probe_cuda,
              free_disk: Callable[[Path], int] = _free_disk) -> PreflightReport:
    """Every check of the module docstring for `profile` (overrides as `avere-kit run --set`)."""
    from avere_utils.paths import repo_path

    overrides = dict(overrides or {})
    run = config.load_run(profile)
    run_dir = out or overrides.get("run_dir") or run.run_dir
    overrides["run_dir"] = str(repo_path(run_dir))
    rep = PreflightReport(profile, str(repo_path(run_dir)))
    P = {s: _load(rep, profile, s, overrides) for s in run.stages if s in config.STAGES}

    counts = check_data(rep, P[STAGE_DATA], quick) if P.get(STAGE_DATA) is not None else {}

    ref, T = P.get(STAGE_REF), P.get(STAGE_TRAIN)
    needs_gpu = bool(ref is not None and ref.base_model_path)
    cfg = base = None
    if ref is None:
        pass
    elif not needs_gpu:
        rep.add("base model", NOT_NEEDED, "the tiny thinker is built by stage 03 (base_model_path is empty)")
    else:
        from avere_utils.models.loading import LoraSettings

        base = Path(ref.base_model_path)
        cfg = check_base_model(rep, base, LoraSettings().target_modules)

    _check_keys(rep, P)
    _check_judge_prompt(rep, P.get(STAGE_EMER))
    shape, shape_from = (_lm_shape(cfg, base) if needs_gpu else (None, ""))
    n_gpus = _check_gpu(rep, needs_gpu, T, shape, shape_from, cuda_probe)
    _check_disk(rep, P, run, shape, counts, free_disk)
    _cost(rep, P, run, counts, n_gpus)
    return rep


def _check_keys(rep: PreflightReport, P: Mapping[str, Any]) -> None:
    sec = "API keys"
    users = {STAGE_PAIRS: ("generator", "llm", "llm_base_url"), STAGE_EMER: ("judge", "openai", "judge_base_url")}
    seen = False
    for stage, params in P.items():
        if params is None:
            continue
        for name in sorted(k for k in vars(params) if k.endswith("_api_key_env")):
            seen = True
            var = getattr(params, name)
            switch, on, url_key = users.get(stage, (None, None, None))
            url = getattr(params, url_key, "") if url_key else ""
            if switch and getattr(params, switch) != on:
                rep.add(sec, NOT_NEEDED, f"{stage}.{name} ({var or 'none'}): {switch} is "
                                         f"{getattr(params, switch)}, no API requests")
            elif not var:
                rep.add(sec, NOT_NEEDED, f"{stage}.{name} is '': a server without keys ({url})")
            elif os.environ.get(var):
                rep.add(sec, OK, f"{var} is set ({stage}, {url})")  # the value is never shown
            else:
                rep.add(sec, PROBLEM, f"{var} is not set: {stage} sends requests to {url} "
                                      f"(export it in the shell that runs the kit; never put it in params)")
    if not seen:
        rep.add(sec, NOT_NEEDED, "no stage names an API key variable")


def _check_judge_prompt(rep: PreflightReport, E: Any) -> None:
    sec = "judge prompt"
    if E is None:
        return
    if not (E.judge == "openai" and E.judge_protocol == "paper"):
        rep.add(sec, NOT_NEEDED, f"judge {E.judge}, protocol {E.judge_protocol}")
        return
    from avere_utils.evaluation.judges import load_paper_prompt

    try:
        load_paper_prompt(E.judge_prompt_file)
    except (OSError, ValueError) as e:
        rep.add(sec, PROBLEM, f"{e} (from the released evaluate/gpt_evaluation.py: docs/paper_run.md, step 5)")
        return
    rep.add(sec, OK, f"{E.judge_prompt_file} holds {{reference}} then {{prediction}}")


def step_memory_gib(T: Any, shape: Any) -> dict[str, float]:
    """The estimate preflight compares with each GPU: training/memory.py at the paper geometry and the
    configured per-device batch, AVEm-DPO (the widest variant), plus HEADROOM_GIB."""
    from avere_utils.training import memory

    est = memory.estimate_step_memory(shape, prompt_tokens=memory.PAPER_PROMPT_TOKENS,
                                      response_tokens=memory.PAPER_RESPONSE_TOKENS, batch=T.per_device_train_batch_size,
                                      method="avem", shared=T.shared_prefix, lora_r=T.lora_r,
                                      weight_bytes=2 if (T.bf16 or T.fp16) else 4)
    out = {k: v / GIB for k, v in est.items()}
    out["needed"] = out["total"] + HEADROOM_GIB
    return out


def _check_gpu(rep: PreflightReport, needed: bool, T: Any, shape: Any, shape_from: str,
               cuda_probe: Callable[[], CudaInfo]) -> int:
    sec = "GPU"
    if not needed:
        rep.add(sec, NOT_NEEDED, "the tiny profile trains and evaluates on the CPU")
        return 1
    info = cuda_probe()
    if not info.available:
        rep.add(sec, PROBLEM, f"CUDA is not available (torch {info.torch_version}, CUDA build "
                              f"{info.cuda_version or 'none: a CPU build'}; make setup-gpu installs the CUDA one)")
    else:
        names = ", ".join(sorted(set(info.names)))
        rep.add(sec, OK, f"{info.count} GPU(s): {names}, {min(info.memory_gib):.0f} GiB each (smallest)")
    if T is None:
        return max(info.count, 1)
    est = step_memory_gib(T, shape)
    text = (f"one training step at per_device_train_batch_size {T.per_device_train_batch_size} needs about "
            f"{est['needed']:.1f} GiB per GPU (weights {est['weights']:.1f} + LoRA state {est['lora_state']:.2f} "
            f"+ activations {est['activations']:.1f} + {HEADROOM_GIB:.0f} headroom; {shape_from})")
    if info.available and min(info.memory_gib) < est["needed"]:
        rep.add(sec, PROBLEM, text + f": more than the {min(info.memory_gib):.0f} GiB available "
                                     "(lower per_device_train_batch_size; global_batch_size keeps the effective batch)")
    else:
        rep.add(sec, INFO if not info.available else OK, text)
    procs = max(info.count, 1)
    if T.global_batch_size > 0:
        from avere_utils.training.params import derive_grad_accum

        try:
            accum = derive_grad_accum(T.global_batch_size, T.per_device_train_batch_size, procs)
            rep.add(sec, OK, f"global batch {T.global_batch_size} on {procs} process(es): {accum} accumulation steps")
        except config.ConfigError as e:
            rep.add(sec, PROBLEM, str(e))
    return procs


def _count_files(folder: str) -> int:
    root = Path(folder) if folder else None
    return sum(1 for _ in root.rglob("*.json")) if root is not None and root.is_dir() else 0


def _check_disk(rep: PreflightReport, P: Mapping[str, Any], run: Any, shape: Any, counts: Mapping[str, int],
                free_disk: Callable[[Path], int]) -> None:
    sec = "disk"
    T = P.get(STAGE_TRAIN)
    run_dir = Path(rep.run_dir)
    free = free_disk(run_dir) / GIB
    if shape is None or T is None:
        need, parts = 2.0, "a tiny run folder holds well under 2 GiB"
    else:
        adapter = shape.lora_params(T.lora_r) * 4 / GIB  # fp32 adapter
        per_variant = adapter * (1 + 3 * max(T.save_total_limit, 1))  # + checkpoints with two AdamW moments
        need = per_variant * len(run.train_variants) + 1.0  # + predictions, logs, figures, pairs (< 1 GiB)
        parts = (f"{len(run.train_variants)} variants x {per_variant:.2f} GiB (adapter + {T.save_total_limit} "
                 f"checkpoints with optimizer state) + 1 GiB of pairs, predictions and logs")
        if T.encoder_cache_dir:
            clips = counts.get("train_source", 0)
            store = clips * ENCODER_STORE_MB_PER_CLIP / 1024
            need += store
            parts += (f" + encoder store {store:.0f} GiB ({clips} clips x {ENCODER_STORE_MB_PER_CLIP} MB)"
                      if clips else " + the encoder store (about 7.3 MB per training clip; clips not counted yet)")
        parts += "; the decoded-media cache comes on top"
    text = f"{free:.0f} GiB free under {run_dir}; the run needs about {need:.1f} GiB ({parts})"
    rep.add(sec, OK if free >= need else PROBLEM, text)


def _cost(rep: PreflightReport, P: Mapping[str, Any], run: Any, counts: Mapping[str, int], procs: int) -> None:
    sec = "cost"
    A, T, E = P.get(STAGE_PAIRS), P.get(STAGE_TRAIN), P.get(STAGE_EMER)
    clips = counts.get("train_source")
    n_pairs = None
    if A is not None:
        planned = clips * A.samples_per_clip if clips else None
        capped = min(x for x in (planned, A.max_pairs or None) if x) if (planned or A.max_pairs) else None
        n_pairs = round(capped * (1 - A.val_fraction)) if capped else None
        if A.generator == "llm":
            cached = _count_files(A.llm_cache_dir)
            rep.add(sec, INFO, f"stage 02: about {capped or '(train clips x samples_per_clip)'} LLM requests to "
                               f"{A.llm_model} (one per planned sample, re-asked when a reply is malformed or "
                               f"invalid); {cached} replies already cached in {A.llm_cache_dir} (not asked again)")
        else:
            rep.add(sec, NOT_NEEDED, f"stage 02: generator {A.generator}, no LLM requests")
    if T is not None:
        n = min(n_pairs, T.max_samples) if (n_pairs and T.max_samples) else (T.max_samples or n_pairs)
        accum = T.gradient_accumulation_steps
        if T.global_batch_size > 0:
            try:
                from avere_utils.training.params import derive_grad_accum

                accum = derive_grad_accum(T.global_batch_size, T.per_device_train_batch_size, procs)
            except config.ConfigError:
                pass
        batch = T.per_device_train_batch_size * procs * accum
        if n:
            steps = (n // batch) * T.num_train_epochs
            steps = min(steps, T.max_steps) if T.max_steps else steps
            rep.add(sec, INFO, f"stage 04: about {steps} optimizer steps per variant (about {n} training pairs, "
                               f"batch {batch} = {T.per_device_train_batch_size} x {procs} process(es) x {accum}, "
                               f"{T.num_train_epochs} epoch(s)) x {len(run.train_variants)} variants")
        else:
            rep.add(sec, INFO, f"stage 04: training pairs / {batch} optimizer steps per variant x "
                               f"{len(run.train_variants)} variants (the pair count is known after stage 01)")
    n_eval = len(run.eval_variants)
    benches = []
    C, R = P.get(STAGE_CLS), P.get(STAGE_EMOREALM)
    if C is not None:
        benches += [(b, C.max_items) for b in C.benchmarks]
    if E is not None:
        benches.append(("emer", E.max_items))
    if R is not None:
        benches.append(("emorealm", R.max_items))
    for name, cap in benches:
        n = counts.get(name)
        n = min(n, cap) if (n and cap) else n
        rep.add(sec, INFO, f"{name}: {n if n is not None else '(known after stage 01)'} items predicted x {n_eval} "
                           f"evaluated variants")
    if E is not None:
        if E.judge == "openai":
            n = counts.get("emer")
            n = min(n, E.max_items) if (n and E.max_items) else n
            cached = _count_files(E.judge_cache_dir)
            total = n * n_eval if n is not None else None
            how = "one Batch-API job per variant" if E.judge_use_batch else "one request per item"
            rep.add(sec, INFO, f"stage 06: {total if total is not None else 'EMER items x ' + str(n_eval)} judge "
                               f"requests to {E.judge_model} ({how}); "
                               f"{cached} replies already cached in {E.judge_cache_dir}")
        else:
            rep.add(sec, NOT_NEEDED, f"stage 06: judge {E.judge}, no API requests")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="avere-kit preflight", description=__doc__.splitlines()[0])
    add_args(ap)
    return run_cli(ap.parse_args(argv))


def add_args(p: argparse.ArgumentParser) -> None:
    from avere_utils.cli import add_profile_args

    add_profile_args(p)
    p.add_argument("--out", help="run folder (default: run.yaml's run_dir)")
    p.add_argument("--quick", type=int, metavar="N", help="check a sample of N clips per dataset instead of all")


def run_cli(args: argparse.Namespace) -> int:
    from avere_utils.cli import profile_overrides

    try:
        overrides = profile_overrides(args)
        rep = preflight(args.profile, overrides, out=args.out, quick=args.quick)
    except config.ConfigError as e:
        print(f"preflight: configuration error: {e}", file=sys.stderr)
        return 2
    print(rep.format())
    return 0 if rep.ok else 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
