"""Parameters of notebook 04_avem_dpo_training (defaults = the tiny profile; the paper's are in
params/paper/04_avem_dpo_training.yaml).

The training settings carry Hugging Face `TrainingArguments` names (per_device_train_batch_size,
gradient_accumulation_steps, num_train_epochs, lr_scheduler_type, bf16 / fp16, logging_steps, ...); the
kit's earlier names are refused with the new one (config.RENAMED_KEYS).

The variant (avem_dpo, avem_dpo_reversed, avem_dpo_policy, naive_dpo, vista_dpo, no_pmp, no_erp, no_tpd) only
switches loss terms on or off and may pick the TPD reading;
the loss weights below are always taken from here (see avere_utils.training.variants).
"""
from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from avere_utils.config import RENAMED_KEYS, ConfigError, StageParams, param
from avere_utils.training.loss import SINGLE_REJECTION, TPD_FORMS, LossConfig
from avere_utils.training.variants import SWITCHES, VARIANTS, loss_config_for

REPORT_TO = ("none", "tensorboard")
SCHEDULERS = ("linear", "constant_with_warmup", "cosine")
# choices: the config layer (config.build) refuses any other value, naming the key, the value and these
ReportTo = Literal[REPORT_TO]
Scheduler = Literal[SCHEDULERS]
SingleRejection = Literal[SINGLE_REJECTION]
TpdForm = Literal[TPD_FORMS]
VariantName = Literal[tuple(VARIANTS)]

log = logging.getLogger(__name__)


def launched_processes() -> int:
    """How many training processes this launch has: WORLD_SIZE, set by `accelerate launch` / torchrun for
    DDP, DeepSpeed and multi-CPU (gloo) alike, before any process group exists; 1 for a plain run."""
    for var in ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) >= 1:
            return int(value)
    return 1


def derive_grad_accum(global_batch_size: int, per_device_train_batch_size: int, num_processes: int) -> int:
    """gradient_accumulation_steps that make `global_batch_size` = per_device x processes x accumulation;
    a ConfigError naming the three numbers when the layout cannot reach it exactly."""
    per_step = per_device_train_batch_size * num_processes
    if (global_batch_size < 1 or per_device_train_batch_size < 1 or num_processes < 1
            or global_batch_size % per_step):
        raise ConfigError(
            f"TrainParams: global_batch_size {global_batch_size} cannot be reached with "
            f"per_device_train_batch_size {per_device_train_batch_size} on {num_processes} process(es): it must be "
            f"a multiple of {per_device_train_batch_size} x {num_processes} = {per_step} (set "
            f"per_device_train_batch_size or the number of processes so that it divides, or global_batch_size: 0 "
            f"to use gradient_accumulation_steps as given)")
    return global_batch_size // per_step


def upgrade_keys(values: Mapping[str, Any]) -> dict[str, Any]:
    """TrainParams values written under the kit's earlier key names (a checkpoint's recorded run signature
    from before the Hugging Face names) in today's names: the 1:1 renames of config.RENAMED_KEYS, and
    mixed_precision 'no' | 'bf16' | 'fp16' as the two booleans bf16 / fp16.  Today's keys pass unchanged."""
    out = dict(values)
    for old, (new, _) in RENAMED_KEYS.items():
        if old not in out:
            continue
        if old == "mixed_precision":
            mode = out.pop(old)
            out.setdefault("bf16", mode == "bf16")
            out.setdefault("fp16", mode == "fp16")
        elif len(new) == 1:
            out.setdefault(new[0], out.pop(old))
    return out


@dataclass
class TrainParams(StageParams):
    variant: VariantName = param("avem_dpo", f"which loss terms are on: {', '.join(VARIANTS)} (training/variants.py)")
    # inputs / outputs
    reference_dir: str = param("${run_dir}/models/reference", "the reference model (notebook 03), also the base "
                                                              "the adapter trains on")
    pairs_dir: str = param("${run_dir}/pairs", "the preference pairs (notebook 02)")
    output_dir: str = param("${run_dir}/models/${variant}", "the LoRA adapter (what evaluation loads)")
    log_file: str = param("${run_dir}/train_logs/${variant}.jsonl", "one JSON line per optimizer step (each "
                                                                    "logging_steps-th and the last)")
    checkpoint_dir: str = param("${run_dir}/checkpoints/${variant}", "checkpoints to resume from")
    media_cache_dir: str = param("${run_dir}/cache", "decoded clips (FeatureCache), shared with the other stages")
    logp_cache_dir: str = param("${run_dir}/cache/logps", "reference / text-only log-probs, shared by variants")
    encoder_cache_dir: str = param("", "frozen encoder outputs, written by the reference pass and read at each "
                                       "step instead of running the encoders again ('' = off; about 7.3 MB per "
                                       "clip at 7B in bf16; docs/training.md)")
    figures_dir: str = param("${run_dir}/figures", "where the notebook's figures are saved")
    split: str = param("train", "the split of the pairs trained on")
    max_samples: int = param(0, "0 = every pair of the split (the first N pairs otherwise)")
    # the loss (docs/method.md, Eq. 1-4)
    beta: float = param(0.1, "beta: the DPO temperature of every term (Eq. 1 and 3)")
    beta_vr: float = param(0.5, "weight of the rejection y_l^vr (cites a cue that is present but irrelevant), "
                                "Eq. 1; beta_vr + beta_er = 1")
    beta_er: float = param(0.5, "weight of the rejection y_l^er (cites an emotion-typical cue that is absent), Eq. 1")
    gamma_tpd: float = param(0.2, "gamma_TPD: weight of the text-prior debiasing term (Eq. 2); 0 = off")
    tpd_form: TpdForm = param("literal", "which reading of TPD (docs/method.md): literal = Eq. 2 as published, the frozen "
                                         "reference's detached text-only difference x gamma_TPD subtracted from z_y; "
                                         "reversed = the same offset added; policy = the policy's own text-only "
                                         "log-ratio margin x gamma_TPD x beta subtracted, with gradient (one more "
                                         "policy pass on the short text-only sequences); the variants "
                                         "avem_dpo_reversed / avem_dpo_policy fix it")
    lambda_av: float = param(1.0, "lambda_av: weight of the modality-preference loss L_av (Eq. 4); 0 = off")
    single_rejection: SingleRejection = param("alternate", "single-rejection variants: vr | er | alternate (per sample)")
    # LoRA (paper: rank 8, alpha 32, on the LLM's projections)
    lora_r: int = param(8, "LoRA rank")
    lora_alpha: int = param(32, "LoRA alpha (the update is scaled by alpha / r)")
    lora_dropout: float = param(0.0, "LoRA dropout")
    # optimisation
    learning_rate: float = param(2.5e-4, "peak learning rate (AdamW)")
    lr_scheduler_type: Scheduler = param("linear", f"learning-rate schedule after warmup: {' | '.join(SCHEDULERS)}")
    warmup_ratio: float = param(0.1, "fraction of the optimizer steps spent warming up, in [0, 1)")
    weight_decay: float = param(0.0, "AdamW weight decay")
    max_grad_norm: float = param(1.0, "gradient-norm clip; 0 = no clipping")
    num_train_epochs: int = param(1, "epochs over the pairs")
    max_steps: int = param(0, "0 = num_train_epochs over the data; >0 = stop after this many optimizer steps")
    per_device_train_batch_size: int = param(4, "pairs per forward pass")
    gradient_accumulation_steps: int = param(2, "forward passes per optimizer step (effective batch = the "
                                                "product); derived, and this value ignored, when "
                                                "global_batch_size > 0")
    global_batch_size: int = param(0, "pairs per optimizer step over all processes; > 0: "
                                      "gradient_accumulation_steps = this / (processes x "
                                      "per_device_train_batch_size), an error if that is not a whole number (the "
                                      "processes are WORLD_SIZE, set by accelerate launch; 1 for a plain run); 0 = "
                                      "derive nothing, use gradient_accumulation_steps as given")
    bf16: bool = param(False, "bfloat16 autocast (accelerate mixed_precision bf16); at most one of bf16 / fp16")
    fp16: bool = param(False, "float16 autocast (accelerate mixed_precision fp16); at most one of bf16 / fp16")
    precompute_reference: bool = param(True, "reference log-probs once per sample before training, cached")
    shared_prefix: bool = param(True, "chosen, vr and er of a pair share one prompt pass (KV cache kept in the "
                                      "graph): same numbers up to floating-point order, about half the policy "
                                      "compute at paper geometry; false: one full sequence each")
    # checkpoints and logs
    save_steps: int = param(10, "a checkpoint every this many optimizer steps; 0 = only the final adapter")
    save_total_limit: int = param(2, "checkpoints kept (the oldest are deleted)")
    logging_steps: int = param(1, "a line in log_file (and a point in report_to's tracker) every this many "
                                  "optimizer steps, and at the last step; 1 = every step")
    resume: bool = param(True, "continue from the latest checkpoint of this same run (else start over)")
    report_to: ReportTo = param("none", "none | tensorboard: per-step losses, rewards, margins and lr also through "
                                        "accelerate's tracker API, to <log_file's folder>/tensorboard/<variant> "
                                        "(docs/training.md)")

    def __post_init__(self) -> None:
        if self.bf16 and self.fp16:
            raise ConfigError("TrainParams: keys 'bf16' and 'fp16' are both true; set at most one of them "
                              "(bf16: true for bfloat16 autocast, fp16: true for float16, both false for none)")
        positive = ("per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs",
                    "logging_steps", "lora_r", "lora_alpha")
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(f"TrainParams: key {key!r} must be >= 1, got {getattr(self, key)}")
        # 0 has a meaning for these (every pair, the epochs decide, no checkpoint, keep all); below 0 none
        for key in ("max_samples", "max_steps", "save_steps", "save_total_limit", "global_batch_size"):
            if getattr(self, key) < 0:
                raise ConfigError(f"TrainParams: key {key!r} must be >= 0, got {getattr(self, key)}")
        if self.global_batch_size > 0:
            self.apply_global_batch(launched_processes())
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"TrainParams: key 'lora_dropout' must be in [0, 1), got {self.lora_dropout}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"TrainParams: key 'warmup_ratio' must be in [0, 1), got {self.warmup_ratio}")
        if self.learning_rate <= 0:
            raise ConfigError(f"TrainParams: key 'learning_rate' must be > 0, got {self.learning_rate}")
        try:
            self.loss_config()
        except ValueError as e:
            raise ConfigError(f"TrainParams: loss settings are invalid: {e}") from None

    @property
    def accelerate_mixed_precision(self) -> str:
        """accelerate's mixed_precision value for bf16 / fp16: 'bf16', 'fp16' or 'no'."""
        return "bf16" if self.bf16 else "fp16" if self.fp16 else "no"

    def apply_global_batch(self, num_processes: int) -> None:
        """Derive gradient_accumulation_steps from global_batch_size for `num_processes` (a no-op at
        global_batch_size 0) and log the effective batch."""
        if self.global_batch_size <= 0:
            return
        accum = derive_grad_accum(self.global_batch_size, self.per_device_train_batch_size, num_processes)
        if accum != self.gradient_accumulation_steps:
            log.info("global_batch_size %d: gradient_accumulation_steps %d -> %d", self.global_batch_size,
                     self.gradient_accumulation_steps, accum)
        self.gradient_accumulation_steps = accum
        log.info("effective batch %d = %d per device x %d process(es) x %d accumulation steps",
                 self.effective_batch(num_processes), self.per_device_train_batch_size, num_processes, accum)

    def effective_batch(self, num_processes: int = 1) -> int:
        """Pairs per optimizer step: per_device_train_batch_size x num_processes x gradient_accumulation_steps."""
        return self.per_device_train_batch_size * num_processes * self.gradient_accumulation_steps

    def loss_config(self) -> LossConfig:
        """The effective loss: the variant's on/off switches + the weights of these params (every LossConfig
        field that is not a switch has a param of the same name, so a new weight needs no line here)."""
        weights = {f.name: getattr(self, f.name) for f in dataclasses.fields(LossConfig) if f.name not in SWITCHES}
        return loss_config_for(self.variant, **weights)
