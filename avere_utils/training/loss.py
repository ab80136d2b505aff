"""The AVEm-DPO loss (docs/method.md, AVEm-DPO, the loss) as a pure function of per-sequence log-probabilities.

Notation follows the paper.  rho(y | a, v, x) = log pi_theta(y | a, v, x) - log pi_ref(y | a, v, x), with
log-probabilities summed over the response tokens.  Implemented literally:

    z_y  = beta * [ rho(y_w) - sum_i beta_i * rho(y_l^i) ]                                   (ERP)
           - gamma_TPD * [ log pi_text(y_w | x) - sum_i beta_i * log pi_text(y_l^i | x) ]   (TPD)
    L_y  = -log sigmoid(z_y)
    z_av = beta * [ rho(y_w | a_w, v_w, x) - rho(y_w | a_l, v_l, x) ]                         (PMP)
    L_av = -log sigmoid(z_av)
    L    = L_y + lambda_av * L_av

Note where beta sits: it multiplies the policy/reference log-ratios only.  gamma_TPD multiplies the raw
text-only log-probabilities and is NOT multiplied by beta (the paper subtracts it from z_y after beta has
been applied).  The text-only term is detached: pi_text is the frozen reference without media, so no
gradient may flow through it even if a caller hands in a tensor that requires grad.

`tpd_form` picks one of three readings of the TPD term (docs/method.md, The three readings of TPD, derives the
optimum of each):

    literal   z_y = margin - gamma_TPD * T,  T = log pi_text(y_w|x) - sum_i beta_i log pi_text(y_l^i|x)
    reversed  z_y = margin + gamma_TPD * T
    policy    z_y = margin - gamma_TPD * beta * [rho^text(y_w) - sum_i beta_i rho^text(y_l^i)],
              rho^text(y) = log pi_theta(y|x) - log pi_ref(y|x), both without media; the policy part
              keeps its gradient (the reference part is detached like pi_text above).

The per-sample loss is L_y + lambda_av * m * L_av, where m = 1 for samples that have a PMP rejected input
(`pmp_mask`) and 0 otherwise; the batch loss is the mean of the per-sample losses over the whole batch.
Averaging per sample (rather than averaging L_av over the masked samples only) keeps the loss additive
over samples, so gradient accumulation and multi-process averaging reproduce the large-batch update.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal, Mapping

import torch
import torch.nn.functional as F

REJECTION_KINDS = ("vr", "er")  # vr: present but emotion-irrelevant cue; er: absent emotion-typical cue
SINGLE_REJECTION = ("vr", "er", "alternate")
PMP_MODALITIES = ("video", "audio")
TPD_FORMS = ("literal", "reversed", "policy")


@dataclass(frozen=True)
class LossConfig:
    """Everything the loss needs besides the log-probabilities.

    use_erp=False is the single-rejection form: one rejection per sample with weight 1, which one is
    `single_rejection` ("vr", "er", or "alternate": the trainer picks vr or er per sample, deterministically).
    use_tpd=False drops the text-prior term (as gamma_tpd = 0); use_pmp=False drops L_av (as lambda_av = 0)
    and lets the trainer skip the PMP forward.  `pmp_modalities` are the modalities a PMP rejected input may
    replace (Vista-DPO's input preference replaces the video only).
    """

    beta: float = 0.1
    beta_vr: float = 0.5
    beta_er: float = 0.5
    gamma_tpd: float = 0.2
    lambda_av: float = 1.0
    use_erp: bool = True
    single_rejection: Literal["vr", "er", "alternate"] = "alternate"
    use_tpd: bool = True
    use_pmp: bool = True
    pmp_modalities: tuple[str, ...] = PMP_MODALITIES
    # literal is the published Eq. 2; reversed and policy are the two other readings the paper's words allow
    # (docs/method.md, The three readings of TPD): which one does what the paper says TPD does is measured,
    # not assumed (docs/training.md)
    tpd_form: Literal["literal", "reversed", "policy"] = "literal"

    def __post_init__(self) -> None:
        if not self.beta > 0:
            raise ValueError(f"LossConfig.beta must be > 0, got {self.beta}")
        for name in ("beta_vr", "beta_er"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"LossConfig.{name} must be in [0, 1], got {v}")
        if not math.isclose(self.beta_vr + self.beta_er, 1.0, abs_tol=1e-6):
            raise ValueError(f"LossConfig: beta_vr + beta_er must be 1 (docs/method.md, Eq. 1, ERP), got "
                             f"{self.beta_vr} + {self.beta_er} = {self.beta_vr + self.beta_er}")
        if self.gamma_tpd < 0 or self.lambda_av < 0:
            raise ValueError(f"LossConfig: gamma_tpd and lambda_av must be >= 0, got "
                             f"{self.gamma_tpd}, {self.lambda_av}")
        if self.tpd_form not in TPD_FORMS:
            raise ValueError(f"LossConfig.tpd_form must be one of {TPD_FORMS}, got {self.tpd_form!r}")
        if self.single_rejection not in SINGLE_REJECTION:
            raise ValueError(f"LossConfig.single_rejection must be one of {SINGLE_REJECTION}, "
                             f"got {self.single_rejection!r}")
        bad = [m for m in self.pmp_modalities if m not in PMP_MODALITIES]
        if bad or (self.use_pmp and not self.pmp_modalities):
            raise ValueError(f"LossConfig.pmp_modalities must be a non-empty subset of {PMP_MODALITIES}, "
                             f"got {self.pmp_modalities!r}")
        object.__setattr__(self, "pmp_modalities", tuple(self.pmp_modalities))

    def rejection_weights(self) -> dict[str, float]:
        """Weight of each rejected response in the ERP sum; zero-weight rejections are left out (and
        therefore never computed).  The single-rejection form uses the key "rejected" for the
        per-sample alternating choice."""
        if not self.use_erp:
            return {"rejected" if self.single_rejection == "alternate" else self.single_rejection: 1.0}
        return {k: w for k, w in (("vr", self.beta_vr), ("er", self.beta_er)) if w > 0}

    @property
    def needs_text(self) -> bool:
        return self.use_tpd and self.gamma_tpd > 0

    @property
    def needs_policy_text(self) -> bool:
        """The policy form needs the policy's own text-only log-probs, with gradient (a forward the other
        forms never run)."""
        return self.needs_text and self.tpd_form == "policy"

    @property
    def needs_pmp(self) -> bool:
        return self.use_pmp and self.lambda_av > 0

    def with_overrides(self, **kw) -> "LossConfig":
        return replace(self, **kw)


@dataclass
class LossInputs:
    """Per-sequence summed log-probs, each a float tensor [B].  `*_rejected` map a rejection kind (the keys of
    `LossConfig.rejection_weights()`) to its log-probs.  Text-only and PMP entries may be None when the
    config does not use them."""

    policy_chosen: torch.Tensor
    ref_chosen: torch.Tensor
    policy_rejected: Mapping[str, torch.Tensor]
    ref_rejected: Mapping[str, torch.Tensor]
    text_chosen: torch.Tensor | None = None  # the frozen reference without media (always detached)
    text_rejected: Mapping[str, torch.Tensor] | None = None
    policy_text_chosen: torch.Tensor | None = None  # the policy without media (tpd_form policy only)
    policy_text_rejected: Mapping[str, torch.Tensor] | None = None
    policy_chosen_pmp: torch.Tensor | None = None
    ref_chosen_pmp: torch.Tensor | None = None
    pmp_mask: torch.Tensor | None = None  # bool [B]; None = every sample has a PMP rejected input


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar: mean of per_sample
    per_sample: torch.Tensor  # [B], carries the gradient
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)  # detached [B] each; NaN = not applicable


def _require(value, what: str, cfg: LossConfig):
    if value is None:
        raise ValueError(f"avem_dpo_loss: {what} is required by {cfg} but was not given")
    return value


def avem_dpo_loss(inputs: LossInputs, config: LossConfig) -> LossOutput:
    """L = L_y + lambda_av * L_av per sample (see the module docstring), and its metrics.

    Metrics (per sample, detached): loss, loss_y, loss_av (NaN where no PMP input), rewards/chosen,
    rewards/<kind> for each rejection, rewards/rejected (the beta_i-weighted rejection reward),
    rewards/chosen_pmp (NaN where no PMP input), margins/response (beta*[rho_w - sum beta_i rho_i], the
    reward margin before TPD), margins/<kind>, tpd_offset (what is subtracted from z_y), z_y, margins/pmp
    (= z_av), and accuracies/* (margin > 0) for each margin; with tpd_form policy also margins/text
    (beta * [rho^text_w - sum beta_i rho^text_i], the margin the text alone would give).
    """
    weights = config.rejection_weights()
    missing = [k for k in weights if k not in inputs.policy_rejected or k not in inputs.ref_rejected]
    if missing:
        raise ValueError(f"avem_dpo_loss: log-probs of rejection(s) {missing} are missing; "
                         f"the config {config} needs {list(weights)}")
    beta = config.beta
    rho_w = inputs.policy_chosen - inputs.ref_chosen
    rho_l = {k: inputs.policy_rejected[k] - inputs.ref_rejected[k] for k in weights}
    rho_l_weighted = sum(w * rho_l[k] for k, w in weights.items())
    margin_y = beta * (rho_w - rho_l_weighted)

    text_margin = None
    if config.needs_text:
        text_w = _require(inputs.text_chosen, "text_chosen", config).detach()
        text_l = _require(inputs.text_rejected, "text_rejected", config)
        if config.tpd_form == "policy":
            pol_w = _require(inputs.policy_text_chosen, "policy_text_chosen", config)
            pol_l = _require(inputs.policy_text_rejected, "policy_text_rejected", config)
            text_margin = beta * ((pol_w - text_w)
                                  - sum(w * (pol_l[k] - text_l[k].detach()) for k, w in weights.items()))
            tpd_offset = config.gamma_tpd * text_margin
        else:
            text_diff = text_w - sum(w * text_l[k].detach() for k, w in weights.items())
            tpd_offset = (1.0 if config.tpd_form == "literal" else -1.0) * config.gamma_tpd * text_diff
    else:
        tpd_offset = torch.zeros_like(margin_y)
    z_y = margin_y - tpd_offset
    loss_y = -F.logsigmoid(z_y)

    nan = torch.full_like(margin_y, float("nan")).detach()
    if config.needs_pmp:
        policy_pmp = _require(inputs.policy_chosen_pmp, "policy_chosen_pmp", config)
        ref_pmp = _require(inputs.ref_chosen_pmp, "ref_chosen_pmp", config)
        mask = (inputs.pmp_mask.bool() if inputs.pmp_mask is not None
                else torch.ones_like(margin_y, dtype=torch.bool))
        rho_w_pmp = policy_pmp - ref_pmp
        z_av = beta * (rho_w - rho_w_pmp)
        loss_av = -F.logsigmoid(z_av)
        # torch.where routes zero gradient to the unselected branch, so samples without PMP contribute nothing
        per_sample = loss_y + config.lambda_av * torch.where(mask, loss_av, torch.zeros_like(loss_av))
        pmp_metrics = {
            "loss_av": torch.where(mask, loss_av.detach(), nan),
            "rewards/chosen_pmp": torch.where(mask, beta * rho_w_pmp.detach(), nan),
            "margins/pmp": torch.where(mask, z_av.detach(), nan),
            "accuracies/pmp": torch.where(mask, (z_av.detach() > 0).float(), nan),
        }
    else:
        per_sample = loss_y
        pmp_metrics = {"loss_av": nan, "rewards/chosen_pmp": nan, "margins/pmp": nan, "accuracies/pmp": nan}

    r_w = (beta * rho_w).detach()
    metrics: dict[str, torch.Tensor] = {
        "loss": per_sample.detach(),
        "loss_y": loss_y.detach(),
        **{k: v for k, v in pmp_metrics.items() if k == "loss_av"},
        "rewards/chosen": r_w,
        "rewards/rejected": (beta * rho_l_weighted).detach(),
    }
    for k in weights:
        metrics[f"rewards/{k}"] = (beta * rho_l[k]).detach()
    metrics["rewards/chosen_pmp"] = pmp_metrics["rewards/chosen_pmp"]
    metrics["margins/response"] = margin_y.detach()
    for k in weights:
        metrics[f"margins/{k}"] = r_w - metrics[f"rewards/{k}"]
    metrics["margins/pmp"] = pmp_metrics["margins/pmp"]
    if text_margin is not None:
        metrics["margins/text"] = text_margin.detach()
    metrics["tpd_offset"] = tpd_offset.detach()
    metrics["z_y"] = z_y.detach()
    metrics["accuracies/response"] = (margin_y.detach() > 0).float()
    for k in weights:
        metrics[f"accuracies/{k}"] = (metrics[f"margins/{k}"] > 0).float()
    metrics["accuracies/pmp"] = pmp_metrics["accuracies/pmp"]
    return LossOutput(loss=per_sample.mean(), per_sample=per_sample, metrics=metrics)


def summarize(metrics: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Batch means of per-sample metrics, ignoring NaN (not-applicable) entries; NaN if none applies."""
    out = {}
    for k, v in metrics.items():
        v = v.detach().float().flatten()
        ok = ~torch.isnan(v)
        out[k] = float(v[ok].mean()) if ok.any() else float("nan")
    return out
