"""Training variants: the paper's method, its baselines and its ablations, as named presets of the loss.

The rule (so that a sweep over gamma_tpd / lambda_av is never silently undone by a preset): a preset only
switches loss terms on or off (use_erp, use_tpd, use_pmp) and picks which modalities a PMP rejected
input may replace, and a preset may pick the reading of TPD (`tpd_form`, which is a choice of equation,
not a number; a preset that names no form uses the params' `tpd_form`, literal by default, so the
ablations are the default form minus one term).  Every number - beta, beta_vr, beta_er, gamma_tpd,
lambda_av - and the single-rejection choice come from the parameters.  A switched-off term ignores its
weight (and the trainer skips the forward passes it would need); the effective configuration is logged
and printed by notebook 04.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from avere_utils.training.loss import PMP_MODALITIES, LossConfig


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    use_erp: bool = True
    use_tpd: bool = True
    use_pmp: bool = True
    pmp_modalities: tuple[str, ...] = PMP_MODALITIES
    tpd_form: str | None = None  # None: the params' tpd_form


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("avem_dpo", "AVEm-DPO: ERP (two weighted rejections) + TPD + PMP (prompt-targeted modality)"),
    Variant("avem_dpo_reversed", "AVEm-DPO with TPD's offset added instead of subtracted (tpd_form reversed)",
            tpd_form="reversed"),
    Variant("avem_dpo_policy", "AVEm-DPO with TPD as the policy's own text-only margin, with gradient "
            "(tpd_form policy)", tpd_form="policy"),
    Variant("naive_dpo", "Naive-DPO: plain sigmoid DPO, one rejection per sample, no PMP, no TPD",
            use_erp=False, use_tpd=False, use_pmp=False),
    Variant("vista_dpo", "Vista-DPO style: response DPO (one rejection) + a video-only input preference, no TPD",
            use_erp=False, use_tpd=False, use_pmp=True, pmp_modalities=("video",)),
    Variant("no_pmp", "AVEm-DPO without PMP (ablation)", use_pmp=False),
    Variant("no_erp", "AVEm-DPO without ERP: a single rejection per sample (ablation)", use_erp=False),
    Variant("no_tpd", "AVEm-DPO without TPD (ablation)", use_tpd=False),
)}


def get_variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ValueError(f"unknown training variant {name!r}; variants are: {', '.join(VARIANTS)}")
    return VARIANTS[name]


# LossConfig fields a variant decides (the switches); every other field is a weight taken from params
SWITCHES = ("use_erp", "use_tpd", "use_pmp", "pmp_modalities")


def loss_config_for(variant: str, **weights: Any) -> LossConfig:
    """The effective loss configuration: the variant's switches + the numeric weights from params (any
    LossConfig field that is not a switch: beta, beta_vr, beta_er, gamma_tpd, lambda_av, single_rejection,
    tpd_form); a variant that fixes its tpd_form overrides the params' one."""
    v = get_variant(variant)
    switched = sorted(set(weights) & set(SWITCHES))
    if switched:
        raise ValueError(f"loss_config_for: {switched} are set by the variant, not by params")
    if v.tpd_form is not None:
        weights = {**weights, "tpd_form": v.tpd_form}
    return LossConfig(**weights, use_erp=v.use_erp, use_tpd=v.use_tpd, use_pmp=v.use_pmp,
                      pmp_modalities=v.pmp_modalities)


def describe(config: LossConfig) -> str:
    """One readable block: which terms are on, with which weights (what notebook 04 prints)."""
    w = config.rejection_weights()
    lines = [
        f"beta = {config.beta}",
        f"ERP  : {'on ' if config.use_erp else 'off'} rejections {w}",
        f"TPD  : {'on ' if config.needs_text else 'off'} gamma_tpd = {config.gamma_tpd if config.use_tpd else 0.0}"
        + (f", tpd_form = {config.tpd_form}" if config.needs_text else ""),
        f"PMP  : {'on ' if config.needs_pmp else 'off'} lambda_av = {config.lambda_av if config.use_pmp else 0.0}"
        + (f", rejected input replaces {'+'.join(config.pmp_modalities)}" if config.needs_pmp else ""),
    ]
    return "\n".join(lines)
