"""The AVEm-DPO trainer on accelerate; its optimizer steps run through the kit's one training skeleton
(`training/loop.TrainingLoop`, shared with the SFT), to which it gives its micro-batch losses, the gradient
average, the step record, checkpoints and the tracker.

Why not trl's DPOTrainer: in trl 1.16 it replaces the model's forward with a fused head and can silently
drop extra multimodal inputs, and its override point is private (docs/method.md, Design constraints).  Here the model is
used only through the Backend interface, and tests/training/test_trainer.py proves that the audio and the video
reach the LoRA gradients.

Per micro-batch: ONE policy call `sequence_logprobs(grad=True)` over every sample's chosen and rejected
responses on the real input (one shared Media per sample, encoded once; with `shared_prefix` its prompt
is also run once for the three responses) and the chosen response on the PMP input; the reference
log-probs of the same sequences either precomputed once per sample (default,
cached on disk and shared by the variants) or from a no-grad call with the adapters disabled; the
text-only log-probs (TPD) of the reference precomputed once per sample.  With tpd_form policy, a second
policy call (grad=True) over the text-only sequences, short and without media.  Sequences a variant does
not use are never run.

Multi-process (accelerate launch, DDP): each process takes its slice of every global batch; after the
micro-batches the LoRA gradients are averaged across processes with one all-reduce (the backend calls
its own module, not a DDP wrapper, so DDP's hooks could not do it), which equals the large-batch update.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, set_seed
from tqdm.auto import tqdm
from transformers import get_scheduler

import avere_utils.training.checkpoint as ckpt
from avere_utils import runlock
from avere_utils.models.backend import Backend
from avere_utils.paths import atomic_write_text, run_relative
from avere_utils.training.data import DataOrder, PairSource, SamplePlan, check_rows, plan_sample
from avere_utils.training.logp_cache import LogpCache, model_fingerprint
from avere_utils.training.loop import StepResult, TrainingLoop, reduce_gradients_
from avere_utils.training.loss import LossConfig, LossInputs, LossOutput, avem_dpo_loss, summarize
from avere_utils.training.params import TrainParams, upgrade_keys
from avere_utils.training.step_log import StepLogger, tracked_scalars
from avere_utils.training.variants import describe

log = logging.getLogger(__name__)

# Params that do not change what a run computes: a checkpoint written under other values may be resumed.
RESUME_NEUTRAL = ("resume", "report_to", "logging_steps", "save_steps", "save_total_limit", "device", "figures_dir",
                  "precompute_reference", "media_cache_dir", "logp_cache_dir", "shared_prefix",
                  "encoder_cache_dir")
PRECOMPUTE_SAMPLES_PER_CALL = 8
TEXT_SEQUENCES_PER_CALL = 64


class StopTraining(Exception):
    """Raised by a hook to stop a run on purpose (tests simulate a kill with it)."""


@dataclass
class Hooks:
    """Optional callbacks.  on_before_optimizer_step(trainer, step) sees the averaged gradients;
    on_step_end(trainer, step, record) runs after the step is logged and checkpointed (steps are 1-based)."""

    on_before_optimizer_step: Callable[["Trainer", int], None] | None = None
    on_step_end: Callable[["Trainer", int, dict[str, Any]], None] | None = None


@dataclass
class TrainResult:
    variant: str
    output_dir: str
    log_file: str
    steps: int
    resumed_from_step: int
    seconds: float
    loss_config: LossConfig
    history: list[dict[str, Any]] = field(default_factory=list)


def tracker_dir(params: TrainParams) -> Path:
    """Where `report_to` trackers write: one run per variant under it, so that
    `tensorboard --logdir <run_dir>/train_logs/tensorboard` shows the variants side by side."""
    return Path(params.log_file).parent / "tensorboard"


def load_default_backend(params: TrainParams, device: str) -> Backend:
    from avere_utils.models import load_backend
    from avere_utils.models.loading import LoraSettings

    return load_backend(params.reference_dir, lora=LoraSettings(r=params.lora_r, alpha=params.lora_alpha,
                                                                dropout=params.lora_dropout), device=device)


def load_default_pairs(params: TrainParams, backend: Backend) -> PairSource:
    from avere_utils.cache import FeatureCache
    from avere_utils.pairs import load_pair_media, load_pairs

    rows = [dict(r) for r in load_pairs(params.pairs_dir, params.split)]
    cache = FeatureCache(params.media_cache_dir)
    return PairSource(rows, lambda row: load_pair_media(row, backend.media_settings, cache))


def run_signature(params: TrainParams, rows: Sequence[Any], model_fp: str | None) -> dict[str, Any]:
    """What defines a run (only the same run may be resumed): the params that change the computation, the
    pairs (their ids, in order) and the reference checkpoint's fingerprint (a rebuilt reference is a new run)."""
    # run-relative paths: a run folder copied or moved elsewhere is still the same run
    d = run_relative({k: v for k, v in dataclasses.asdict(params).items() if k not in RESUME_NEUTRAL},
                     params.run_dir)
    d["pairs_sha1"] = hashlib.sha1("\n".join(str(r["id"]) for r in rows).encode()).hexdigest()
    d["reference_fingerprint"] = model_fp
    return d


class Trainer:
    def __init__(self, params: TrainParams, *, backend: Backend | None = None, pairs: PairSource | None = None,
                 accelerator=None, hooks: Hooks | None = None):
        self.params = params
        self.config = params.loss_config()
        self.hooks = hooks or Hooks()
        # cpu=True also when there is no GPU: under torchrun (accelerate launch --multi_gpu, cpu2.yaml)
        # accelerate 1.15 only sets up the gloo process group (MULTI_CPU) when asked for the CPU.
        on_cpu = params.device == "cpu" or (params.device == "auto" and not torch.cuda.is_available())
        tracking = params.report_to != "none"
        self.accelerator = accelerator or Accelerator(
            mixed_precision=params.accelerate_mixed_precision, cpu=on_cpu, log_with=params.report_to if tracking else None,
            project_dir=str(tracker_dir(params)) if tracking else None)
        if tracking and not self.accelerator.log_with:
            raise ValueError(f"report_to: {params.report_to}: the Accelerator has no such tracker (is the "
                             f"`{params.report_to}` package installed? It is pinned in requirements.lock; an "
                             f"Accelerator passed in must be made with log_with={params.report_to!r})")
        if self.accelerator.distributed_type == DistributedType.DEEPSPEED:
            raise NotImplementedError(
                "DeepSpeed launch detected: this trainer averages the LoRA gradients itself (DDP semantics); "
                "see docs/training.md, 'Multi-GPU', for why ZeRO-2 brings nothing for LoRA-only training and "
                "use configs/accelerate/ddp.yaml")
        self.rank = self.accelerator.process_index
        self.world = self.accelerator.num_processes
        self.is_main = self.accelerator.is_main_process
        # on a multi-process CPU launch accelerate names the device "cpu:0", which safetensors refuses when a
        # checkpoint is loaded to resume
        device = params.device if params.device != "auto" else ("cpu" if on_cpu else str(self.accelerator.device))
        set_seed(params.seed)  # the fresh LoRA weights are drawn here: the same on every process and run
        self.backend = backend if backend is not None else load_default_backend(params, device)
        self.pairs = pairs if pairs is not None else load_default_pairs(params, self.backend)
        rows = list(self.pairs.rows)
        if params.max_samples > 0:
            rows = rows[:params.max_samples]
        check_rows(rows, params.pairs_dir)
        self.rows = rows
        self.order = DataOrder(len(rows), seed=params.seed,
                               per_device_train_batch_size=params.per_device_train_batch_size,
                               gradient_accumulation_steps=params.gradient_accumulation_steps,
                               num_processes=self.world)
        by_epochs = self.order.steps_per_epoch * params.num_train_epochs
        self.total_steps = min(by_epochs, params.max_steps) if params.max_steps > 0 else by_epochs
        self.trainable = list(self.backend.trainable_parameters())
        if not self.trainable:
            raise ValueError("the backend has no trainable parameters (was it loaded with LoRA settings?)")
        # AdamW without MKL VML's sqrt (rsqrtps-based, CPU-dependent low bits): numerics.adamw (fused on CPU)
        from avere_utils.numerics import adamw

        self.optimizer = adamw(self.trainable, lr=params.learning_rate, weight_decay=params.weight_decay)
        self.scheduler = get_scheduler(params.lr_scheduler_type, self.optimizer,
                                       num_warmup_steps=math.ceil(params.warmup_ratio * self.total_steps),
                                       num_training_steps=self.total_steps)
        settings = self.backend.media_settings
        self.model_fp = model_fingerprint(self.backend.model_dir, settings.key() if settings is not None else "")
        self.logps = LogpCache(params.logp_cache_dir, self.model_fp)
        self.encoder_store = None
        if params.encoder_cache_dir:
            if not hasattr(self.backend, "use_encoder_store"):
                raise ValueError(f"encoder_cache_dir: the {type(self.backend).__name__} backend has no encoder "
                                 "store; set encoder_cache_dir: ''")
            from avere_utils.models.encoder_store import EncoderStore

            # the dtype too: a bf16 run's outputs are not an fp32 run's
            self.encoder_store = EncoderStore(params.encoder_cache_dir,
                                              f"{self.model_fp}|{getattr(self.backend, 'dtype', '')}")
            self.backend.use_encoder_store(self.encoder_store)

    # --- sequences ------------------------------------------------------------------------------
    def plan(self, index: int, with_media: bool = True) -> SamplePlan:
        row = self.rows[index]
        return plan_sample(index, row, self.config, self.pairs.load_media(row) if with_media else None)

    def _score(self, examples: list, *, reference: bool, grad: bool) -> torch.Tensor:
        # share_prefix only when on, so that a backend without the keyword still serves the unshared pass
        kw = {"share_prefix": True} if self.params.shared_prefix else {}
        with self.accelerator.autocast():
            if reference:
                with torch.no_grad(), self.backend.reference():
                    return self.backend.sequence_logprobs(examples, grad=False, **kw)[0]
            return self.backend.sequence_logprobs(examples, grad=grad, **kw)[0]

    def visited_indices(self, start_step: int) -> list[int]:
        out: dict[int, None] = {}
        for step in range(start_step, self.total_steps):
            for micro in self.order.micro_batches(step, self.rank):
                out.update(dict.fromkeys(micro))
        return list(out)

    def precompute(self, indices: Sequence[int]) -> None:
        """Fill the cache with the text-only (TPD) and, if `precompute_reference`, the reference log-probs
        of every sequence these samples need; each process computes its own samples, the main one saves."""
        need_text = self.config.needs_text
        need_ref = self.params.precompute_reference
        if not (need_text or need_ref):
            return
        key_plans = [self.plan(i, with_media=False) for i in indices]
        new: dict[str, float] = {}
        if need_text:
            todo: dict[str, Any] = {}
            for p in key_plans:
                for name, ex in p.text:
                    if p.keys[name] not in self.logps and p.keys[name] not in todo:
                        todo[p.keys[name]] = ex
            keys = list(todo)
            for s in tqdm(range(0, len(keys), TEXT_SEQUENCES_PER_CALL), desc="text-only log-probs",
                          disable=not self.is_main or not keys):
                chunk = keys[s:s + TEXT_SEQUENCES_PER_CALL]
                lp = self._score([todo[k] for k in chunk], reference=True, grad=False)
                new.update(zip(chunk, lp.float().tolist()))
        if need_ref:
            pending = [p.row_index for p in key_plans
                       if any(p.keys[n] not in self.logps for n, _ in p.policy)]
            for s in tqdm(range(0, len(pending), PRECOMPUTE_SAMPLES_PER_CALL), desc="reference log-probs",
                          disable=not self.is_main or not pending):
                plans = [self.plan(i) for i in pending[s:s + PRECOMPUTE_SAMPLES_PER_CALL]]
                named = [(p.keys[n], ex) for p in plans for n, ex in p.policy if p.keys[n] not in self.logps]
                lp = self._score([ex for _, ex in named], reference=True, grad=False)
                new.update(zip([k for k, _ in named], lp.float().tolist()))
        if self.world > 1:
            from accelerate.utils import gather_object

            merged: dict[str, float] = {}
            for part in gather_object([new]):
                merged.update(part)
            new = merged
        self.logps.update(new)
        if self.is_main and new:
            self.logps.save()
        log.info("precomputed %d log-probs (cache now %d)", len(new), len(self.logps.values))

    def micro_batch_loss(self, indices: Sequence[int]) -> LossOutput:
        """The loss of one micro-batch: one policy call, cached or no-grad reference, cached text."""
        plans = [self.plan(i) for i in indices]
        self._fill_missing(plans)  # a no-op after precompute(); keeps a lone call (tests, notebooks) valid
        named = [(j, n, ex) for j, p in enumerate(plans) for n, ex in p.policy]
        examples = [ex for _, _, ex in named]
        policy = self._score(examples, reference=False, grad=True).float()
        if self.params.precompute_reference:
            ref = torch.tensor([self.logps[plans[j].keys[n]] for j, n, _ in named], device=policy.device)
        else:
            ref = self._score(examples, reference=True, grad=False).float()
        pos = {(j, n): k for k, (j, n, _) in enumerate(named)}
        b = len(plans)

        def column(name: str, values: torch.Tensor, fallback: str | None = None) -> torch.Tensor:
            rows = [pos.get((j, name), pos.get((j, fallback))) for j in range(b)]
            return values[torch.tensor(rows, device=values.device)]

        kinds = list(self.config.rejection_weights())
        inputs = LossInputs(policy_chosen=column("chosen", policy), ref_chosen=column("chosen", ref),
                            policy_rejected={k: column(k, policy) for k in kinds},
                            ref_rejected={k: column(k, ref) for k in kinds})
        if self.config.needs_pmp:
            # samples without a PMP input get the chosen log-probs as filler; pmp_mask removes them
            inputs.policy_chosen_pmp = column("chosen_pmp", policy, fallback="chosen")
            inputs.ref_chosen_pmp = column("chosen_pmp", ref, fallback="chosen")
            inputs.pmp_mask = torch.tensor([p.has_pmp for p in plans], device=policy.device)
        if self.config.needs_text:
            def text(name: str) -> torch.Tensor:
                return torch.tensor([self.logps[p.keys[f"text_{name}"]] for p in plans], device=policy.device)
            inputs.text_chosen = text("chosen")
            inputs.text_rejected = {k: text(k) for k in kinds}
        if self.config.needs_policy_text:
            # a second policy call, not rows of the first: a text-only prompt (~50 tokens) batched with the
            # media prompts (~1,150) would be padded to their length and cost as much as one of them
            named_text = [(j, n, ex) for j, p in enumerate(plans) for n, ex in p.text]
            pol_text = self._score([ex for _, _, ex in named_text], reference=False, grad=True).float()
            tpos = {(j, n): k for k, (j, n, _) in enumerate(named_text)}

            def policy_text(name: str) -> torch.Tensor:
                return pol_text[torch.tensor([tpos[(j, f"text_{name}")] for j in range(b)], device=pol_text.device)]
            inputs.policy_text_chosen = policy_text("chosen")
            inputs.policy_text_rejected = {k: policy_text(k) for k in kinds}
        return avem_dpo_loss(inputs, self.config)

    def _fill_missing(self, plans: Sequence[SamplePlan]) -> None:
        named = [(p.keys[n], ex) for p in plans for n, ex in p.text]
        if self.params.precompute_reference:
            named += [(p.keys[n], ex) for p in plans for n, ex in p.policy]
        todo = {k: ex for k, ex in named if k not in self.logps}
        if todo:
            lp = self._score(list(todo.values()), reference=True, grad=False)
            self.logps.update(dict(zip(todo, lp.float().tolist())))

    # --- the loop -------------------------------------------------------------------------------
    def _average_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        """The mean of the processes' gradients, in one all-reduce (the backend calls its own module, not a
        DDP wrapper, so DDP's hooks could not do it)."""
        if self.world > 1:
            reduce_gradients_(params, self._mean_over_processes)

    def _mean_over_processes(self, flat: torch.Tensor) -> None:
        torch.distributed.all_reduce(flat)
        flat /= self.world

    def _broadcast_parameters(self) -> None:
        """Every process starts from rank 0's adapter weights (what DDP does at wrap time)."""
        if self.world > 1:
            with torch.no_grad():
                for p in self.trainable:
                    torch.distributed.broadcast(p.data, src=0)

    def _start(self) -> int:
        """Resume from the latest checkpoint of the same run (returns its step), or start clean (returns 0).

        A checkpoint written under other settings, other pairs or another reference checkpoint is not this
        run: it is not resumed, a warning names what differs, and the run starts over (a rerun of the whole
        pipeline after notebook 02 or 03 changed must not fail, nor continue a stale adapter)."""
        p = self.params
        cdir = Path(p.checkpoint_dir)
        signature = run_signature(p, self.rows, self.model_fp)
        # newest first; a damaged checkpoint (killed disk, truncated copy) is skipped for the one before it
        for found in reversed(ckpt.complete_checkpoints(cdir)) if p.resume else []:
            try:
                state = ckpt.read_state(found)
                old = upgrade_keys(state.get("signature", {}))  # a checkpoint from before the renames
                diff = sorted(k for k in set(old) | set(signature) if old.get(k) != signature.get(k))
                if state.get("world") != self.world:
                    diff.append(f"num_processes ({state.get('world')} -> {self.world})")
                if diff:
                    log.warning("%s was written by a different run (%s differ): starting %s over", found,
                                ", ".join(diff), p.variant)
                    break
                state = ckpt.load(found, backend=self.backend, optimizer=self.optimizer,
                                  scheduler=self.scheduler, rank=self.rank)
            except ckpt.CorruptCheckpoint as err:
                log.warning("skipping checkpoint %s: %s; trying the one before it", found.name, err)
                continue
            log.info("resumed %s from %s (step %d of %d)", p.variant, found, state["step"], self.total_steps)
            return int(state["step"])
        self.accelerator.wait_for_everyone()
        if self.is_main and cdir.is_dir():
            shutil.rmtree(cdir)  # a fresh run: stale checkpoints must never be resumed later
        self.accelerator.wait_for_everyone()
        return 0

    def _state(self, step: int) -> dict[str, Any]:
        order = hashlib.sha1(self.order.global_batch_indices(max(step - 1, 0)).tobytes()).hexdigest()
        return {"step": step, "total_steps": self.total_steps, "variant": self.params.variant,
                "world": self.world, "signature": run_signature(self.params, self.rows, self.model_fp),
                "last_batch_sha1": order}

    def working_log(self) -> Path:
        """The step log while the run trains: beside its checkpoints, copied to `log_file` at the end."""
        return Path(self.params.checkpoint_dir) / ckpt.LOG_NAME

    def train(self) -> TrainResult:
        """Train (or resume, or return at once when finished), holding this variant's training lock of the
        run folder: a second writer is refused with the holder's pid and command (avere_utils.runlock)."""
        p = self.params
        lock = (runlock.lock_name("train", p.variant), f"training of {p.variant}")
        with runlock.hold(p.run_dir, [lock], enabled=self.is_main):
            return self._train()

    def _train(self) -> TrainResult:
        p = self.params
        t0 = time.perf_counter()
        start = self._start()
        self._broadcast_parameters()
        if self.is_main:
            log.info("training %s: %d pairs, %d steps (global batch %d, %d dropped per epoch)\n%s", p.variant,
                     len(self.rows), self.total_steps, self.order.global_batch, self.order.dropped_per_epoch,
                     describe(self.config))
        self.precompute(self.visited_indices(start))
        logger = self._open_step_log(start)
        tracking = self._start_tracking(start)
        self.backend.model.train()
        try:
            with tqdm(desc=f"train {p.variant}", disable=not self.is_main, initial=start, total=self.total_steps,
                      mininterval=5) as bar:
                loop = TrainingLoop(
                    self.trainable, self.optimizer, self.scheduler, losses=self._micro_batch_losses,
                    combine_gradients=self._average_gradients, record=self._step_record,
                    write=functools.partial(self._log_step, logger=logger, bar=bar, tracking=tracking),
                    max_grad_norm=p.max_grad_norm, backward=self.accelerator.backward,
                    before_optimizer_step=self._before_optimizer_step, after_step=self._after_step)
                history = loop.run(range(start, self.total_steps))
        finally:
            self._stop_logging(logger, tracking)
        seconds = time.perf_counter() - t0
        if self.is_main:
            self.save_final(seconds, start)
        self.accelerator.wait_for_everyone()
        if tracking:
            # last: accelerate's end_training also ends the process group of a multi-process run
            self.accelerator.end_training()
        return TrainResult(p.variant, p.output_dir, p.log_file, self.total_steps, start, seconds, self.config,
                           history)

    def _open_step_log(self, start: int) -> StepLogger | None:
        """The main process's step log, holding the records of the steps before `start` (a resumed run)."""
        if not self.is_main:
            return None
        work, final = self.working_log(), Path(self.params.log_file)
        if start and not work.is_file() and final.is_file():
            work.write_text(final.read_text())  # a checkpoint from before the working log
        return StepLogger(work, keep_until_step=start)

    def _start_tracking(self, start: int) -> bool:
        """Start the `report_to` tracker (if any) for this variant; whether one is on."""
        p = self.params
        if p.report_to == "none":
            return False
        if start == 0 and self.is_main:  # a fresh run: the curves of an earlier run of this variant go
            shutil.rmtree(tracker_dir(p) / p.variant, ignore_errors=True)
        self.accelerator.init_trackers(p.variant)
        return True

    def _micro_batch_losses(self, step0: int) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        """Each of this process's micro-batches of the (0-based) step: its loss for the backward and its
        per-sample metrics.  The loss is the micro-batch's sum over the samples of the whole step, so that
        accumulation reproduces the large-batch mean exactly."""
        samples_per_step_local = self.order.per_device * self.order.accum
        for micro in self.order.micro_batches(step0, self.rank):
            out = self.micro_batch_loss(micro)
            yield out.per_sample.sum() / samples_per_step_local, out.metrics

    def _before_optimizer_step(self, step0: int) -> None:
        if self.hooks.on_before_optimizer_step:
            self.hooks.on_before_optimizer_step(self, step0 + 1)

    def _step_record(self, done: StepResult) -> dict[str, Any]:
        """A step's record for the log: its metrics gathered over the processes (steps are 1-based here)."""
        per_sample: dict[str, list[torch.Tensor]] = {}
        for metrics in done.outputs:
            for k, v in metrics.items():
                per_sample.setdefault(k, []).append(v.float())
        gathered = {k: self.accelerator.gather(torch.cat(v)) for k, v in per_sample.items()}
        step = done.step + 1
        return {"step": step, "epoch": done.step // self.order.steps_per_epoch, "lr": done.lr,
                **summarize(gathered), "grad_norm": done.grad_norm,
                "samples": step * self.order.global_batch,
                "step_seconds": time.perf_counter() - done.started}

    def _after_step(self, step0: int, record: dict[str, Any]) -> None:
        self._save_checkpoint(record["step"])
        if self.hooks.on_step_end:
            self.hooks.on_step_end(self, record["step"], record)

    def _log_step(self, record: dict[str, Any], logger: StepLogger | None, bar: tqdm, tracking: bool) -> None:
        """The one writer of a step's record.  logging_steps: the step log and the tracker get every n-th
        step and the last one."""
        step = record["step"]
        logged = step % self.params.logging_steps == 0 or step == self.total_steps
        bar.update(1)
        if logger is not None:
            if logged:
                logger.log(record)
            bar.set_postfix(loss=f"{record['loss']:.4f}", acc=f"{record['accuracies/response']:.2f}",
                            refresh=False)  # redraws stay throttled (see models/sft.run_sft)
        if tracking and logged:
            self.accelerator.log(tracked_scalars(record), step=step)

    def _save_checkpoint(self, step: int) -> None:
        """Every `save_steps` steps and after the last one."""
        p = self.params
        if (p.save_steps > 0 and step % p.save_steps == 0) or step == self.total_steps:
            ckpt.save(Path(p.checkpoint_dir), step, backend=self.backend, optimizer=self.optimizer,
                      scheduler=self.scheduler, state=self._state(step), is_main=self.is_main,
                      rank=self.rank, keep=p.save_total_limit, barrier=self.accelerator.wait_for_everyone)

    def _stop_logging(self, logger: StepLogger | None, tracking: bool) -> None:
        """Back to eval mode, the step log closed and the trackers flushed, also when a run stops early."""
        self.backend.model.eval()
        if logger is not None:
            logger.close()
        if tracking:
            for tracker in self.accelerator.trackers:
                tracker.finish()

    def save_final(self, seconds: float, resumed_from: int) -> None:
        p = self.params
        out = Path(p.output_dir)
        ckpt.save_adapter_atomically(self.backend, out)
        ckpt.promote_log(self.working_log(), Path(p.log_file))
        summary = {"variant": p.variant, "steps": self.total_steps, "resumed_from_step": resumed_from,
                   "seconds": round(seconds, 3), "n_pairs": len(self.rows),
                   "global_batch": self.order.global_batch, "num_processes": self.world,
                   "loss_config": dataclasses.asdict(self.config), "params": dataclasses.asdict(p),
                   "logp_values_computed": self.logps.computed,
                   "encoder_store": self.encoder_store.stats() if self.encoder_store is not None else None}
        atomic_write_text(out / "training_summary.json", json.dumps(summary, indent=1))
        log.info("saved the %s adapter to %s (%.1f s)", p.variant, out, seconds)


def train(params: TrainParams, *, backend: Backend | None = None, pairs: PairSource | None = None,
          hooks: Hooks | None = None) -> TrainResult:
    """Train `params.variant` from the reference checkpoint and save its adapter to `params.output_dir`."""
    return Trainer(params, backend=backend, pairs=pairs, hooks=hooks).train()
