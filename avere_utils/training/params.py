"""Parameters of notebook 04_avem_dpo_training (defaults = the tiny profile; the paper's are in
params/paper/04_avem_dpo_training.yaml).

The variant (avem_dpo, naive_dpo, vista_dpo, no_pmp, no_erp, no_tpd) only switches loss terms on or off;
the loss weights below are always taken from here (see avere_utils.training.variants).
"""
from __future__ import annotations

from dataclasses import dataclass

from avere_utils.config import ConfigError, StageParams
from avere_utils.training.loss import LossConfig
from avere_utils.training.variants import VARIANTS, loss_config_for

MIXED_PRECISION = ("no", "bf16", "fp16")
REPORT_TO = ("none", "tensorboard")
SCHEDULERS = ("linear", "constant_with_warmup", "cosine")


@dataclass
class TrainParams(StageParams):
    variant: str = "avem_dpo"
    # inputs / outputs
    reference_dir: str = "${run_dir}/models/reference"
    pairs_dir: str = "${run_dir}/pairs"
    output_dir: str = "${run_dir}/models/${variant}"  # the LoRA adapter (what evaluation loads)
    log_file: str = "${run_dir}/train_logs/${variant}.jsonl"  # one JSON line per optimizer step
    checkpoint_dir: str = "${run_dir}/checkpoints/${variant}"
    media_cache_dir: str = "${run_dir}/cache"  # decoded clips (FeatureCache), shared with the other stages
    logp_cache_dir: str = "${run_dir}/cache/logps"  # reference / text-only log-probs, shared by variants
    figures_dir: str = "${run_dir}/figures"
    split: str = "train"
    max_samples: int = 384  # 0 = every pair of the split (the first N pairs otherwise)
    # the loss (docs/method.md defaults)
    beta: float = 0.1
    beta_vr: float = 0.5
    beta_er: float = 0.5
    gamma_tpd: float = 0.2
    lambda_av: float = 1.0
    single_rejection: str = "alternate"  # single-rejection variants: vr | er | alternate (per sample)
    # LoRA (paper: rank 8, alpha 32, on the LLM's projections)
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    # optimisation
    learning_rate: float = 2e-3
    lr_scheduler: str = "linear"
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # 0 = no clipping
    num_epochs: int = 1
    max_steps: int = 0  # 0 = num_epochs over the data; >0 = stop after this many optimizer steps
    per_device_batch_size: int = 4
    grad_accum_steps: int = 2
    mixed_precision: str = "no"  # no | bf16 | fp16 (accelerate autocast)
    precompute_reference: bool = True  # reference log-probs once per sample before training, cached
    # chosen, vr and er of a pair share one prompt pass (KV cache kept in the graph): same numbers up to
    # floating-point order, about half the policy compute at paper geometry; false: one full sequence each
    shared_prefix: bool = True
    # checkpoints and logs
    save_steps: int = 10  # 0 = only the final adapter
    save_total_limit: int = 2
    resume: bool = True  # continue from the latest checkpoint of this same run (else start over)
    report_to: str = "none"  # none | tensorboard

    def __post_init__(self) -> None:
        checks = [
            ("mixed_precision", self.mixed_precision in MIXED_PRECISION, MIXED_PRECISION),
            ("report_to", self.report_to in REPORT_TO, REPORT_TO),
            ("lr_scheduler", self.lr_scheduler in SCHEDULERS, SCHEDULERS),
            ("single_rejection", self.single_rejection in ("vr", "er", "alternate"), ("vr", "er", "alternate")),
        ]
        for key, ok, allowed in checks:
            if not ok:
                raise ConfigError(f"TrainParams: key {key!r} must be one of {list(allowed)}, "
                                  f"got {getattr(self, key)!r}")
        positive = ("per_device_batch_size", "grad_accum_steps", "num_epochs", "lora_r", "lora_alpha")
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(f"TrainParams: key {key!r} must be >= 1, got {getattr(self, key)}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"TrainParams: key 'warmup_ratio' must be in [0, 1), got {self.warmup_ratio}")
        if self.learning_rate <= 0:
            raise ConfigError(f"TrainParams: key 'learning_rate' must be > 0, got {self.learning_rate}")
        if self.variant not in VARIANTS:
            raise ConfigError(f"TrainParams: key 'variant' must be one of {list(VARIANTS)}, got {self.variant!r}")
        try:
            self.loss_config()
        except ValueError as e:
            raise ConfigError(f"TrainParams: loss settings are invalid: {e}") from None

    def loss_config(self) -> LossConfig:
        """The effective loss: the variant's on/off switches + the weights of these params."""
        return loss_config_for(self.variant, beta=self.beta, beta_vr=self.beta_vr, beta_er=self.beta_er,
                               gamma_tpd=self.gamma_tpd, lambda_av=self.lambda_av,
                               single_rejection=self.single_rejection)
