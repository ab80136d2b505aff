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


@dataclass
class _ResponseTerms:
    """The response-preference side of one batch, each [B]: rho of the chosen and of each rejected response,
    their beta_i-weighted sum, the reward margin before TPD, the TPD offset and the text margin (policy form)."""

    rho_w: torch.Tensor
    rho_l: dict[str, torch.Tensor]
    rho_l_weighted: torch.Tensor
    margin_y: torch.Tensor
    tpd_offset: torch.Tensor
    text_margin: torch.Tensor | None


def avem_dpo_loss(inputs: LossInputs, config: LossConfig) -> LossOutput:
    """L = L_y + lambda_av * L_av per sample (see the module docstring), and its per-sample metrics
    (`_loss_metrics` lists them)."""
    weights = _rejection_weights(inputs, config)
    terms = _response_terms(inputs, config, weights)
    z_y = terms.margin_y - terms.tpd_offset
    loss_y = -F.logsigmoid(z_y)
    per_sample, pmp_metrics = _add_pmp(inputs, config, terms.rho_w, loss_y)
    metrics = _loss_metrics(config.beta, terms, z_y, loss_y, per_sample, pmp_metrics)
    return LossOutput(loss=per_sample.mean(), per_sample=per_sample, metrics=metrics)


def _rejection_weights(inputs: LossInputs, config: LossConfig) -> dict[str, float]:
    """The config's rejection weights, after checking that every weighted rejection has its log-probs."""
    weights = config.rejection_weights()
    missing = [k for k in weights if k not in inputs.policy_rejected or k not in inputs.ref_rejected]
    if missing:
        raise ValueError(f"avem_dpo_loss: log-probs of rejection(s) {missing} are missing; "
                         f"the config {config} needs {list(weights)}")
    return weights


def _response_terms(inputs: LossInputs, config: LossConfig, weights: Mapping[str, float]) -> _ResponseTerms:
    """ERP: beta * [rho(y_w) - sum_i beta_i rho(y_l^i)], and the TPD offset subtracted from it."""
    beta = config.beta
    rho_w = inputs.policy_chosen - inputs.ref_chosen
    rho_l = {k: inputs.policy_rejected[k] - inputs.ref_rejected[k] for k in weights}
    rho_l_weighted = sum(w * rho_l[k] for k, w in weights.items())
    margin_y = beta * (rho_w - rho_l_weighted)
    if config.needs_text:
        tpd_offset, text_margin = _tpd_offset(inputs, config, weights)
    else:
        tpd_offset, text_margin = torch.zeros_like(margin_y), None
    return _ResponseTerms(rho_w, rho_l, rho_l_weighted, margin_y, tpd_offset, text_margin)


def _tpd_offset(inputs: LossInputs, config: LossConfig, weights: Mapping[str, float]
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What `tpd_form` subtracts from z_y, and (policy form only) the text margin it is made of."""
    text_w = _require(inputs.text_chosen, "text_chosen", config).detach()
    text_l = _require(inputs.text_rejected, "text_rejected", config)
    if config.tpd_form == "policy":
        pol_w = _require(inputs.policy_text_chosen, "policy_text_chosen", config)
        pol_l = _require(inputs.policy_text_rejected, "policy_text_rejected", config)
        text_margin = config.beta * ((pol_w - text_w)
                                     - sum(w * (pol_l[k] - text_l[k].detach()) for k, w in weights.items()))
        return config.gamma_tpd * text_margin, text_margin
    text_diff = text_w - sum(w * text_l[k].detach() for k, w in weights.items())
    return (1.0 if config.tpd_form == "literal" else -1.0) * config.gamma_tpd * text_diff, None


def _add_pmp(inputs: LossInputs, config: LossConfig, rho_w: torch.Tensor, loss_y: torch.Tensor
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The per-sample loss L_y + lambda_av * m * L_av, and the PMP metrics (NaN where no PMP input)."""
    nan = torch.full_like(loss_y, float("nan")).detach()
    if not config.needs_pmp:
        return loss_y, {"loss_av": nan, "rewards/chosen_pmp": nan, "margins/pmp": nan, "accuracies/pmp": nan}
    policy_pmp = _require(inputs.policy_chosen_pmp, "policy_chosen_pmp", config)
    ref_pmp = _require(inputs.ref_chosen_pmp, "ref_chosen_pmp", config)
    mask = (inputs.pmp_mask.bool() if inputs.pmp_mask is not None
            else torch.ones_like(loss_y, dtype=torch.bool))
    rho_w_pmp = policy_pmp - ref_pmp
    z_av = config.beta * (rho_w - rho_w_pmp)
    loss_av = -F.logsigmoid(z_av)
    # torch.where routes zero gradient to the unselected branch, so samples without PMP contribute nothing
    per_sample = loss_y + config.lambda_av * torch.where(mask, loss_av, torch.zeros_like(loss_av))
    return per_sample, {
        "loss_av": torch.where(mask, loss_av.detach(), nan),
        "rewards/chosen_pmp": torch.where(mask, config.beta * rho_w_pmp.detach(), nan),
        "margins/pmp": torch.where(mask, z_av.detach(), nan),
        "accuracies/pmp": torch.where(mask, (z_av.detach() > 0).float(), nan),
    }


def _loss_metrics(beta: float, terms: _ResponseTerms, z_y: torch.Tensor, loss_y: torch.Tensor,
                 per_sample: torch.Tensor, pmp: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-sample metrics (detached): loss, loss_y, loss_av (NaN where no PMP input), rewards/chosen,
    rewards/rejected (the beta_i-weighted rejection reward), rewards/<kind> for each rejection,
    rewards/chosen_pmp (NaN where no PMP input), margins/response (beta*[rho_w - sum beta_i rho_i], the reward
    margin before TPD), margins/<kind>, margins/pmp (= z_av), with tpd_form policy margins/text
    (beta * [rho^text_w - sum beta_i rho^text_i], the margin the text alone would give), tpd_offset (what is
    subtracted from z_y), z_y, and accuracies/* (margin > 0) for each margin but the text one."""
    r_w = (beta * terms.rho_w).detach()
    rewards = {k: (beta * rho).detach() for k, rho in terms.rho_l.items()}
    margins = {k: r_w - r for k, r in rewards.items()}
    metrics = {
        "loss": per_sample.detach(), "loss_y": loss_y.detach(), "loss_av": pmp["loss_av"],
        "rewards/chosen": r_w, "rewards/rejected": (beta * terms.rho_l_weighted).detach(),
        **{f"rewards/{k}": r for k, r in rewards.items()},
        "rewards/chosen_pmp": pmp["rewards/chosen_pmp"],
        "margins/response": terms.margin_y.detach(),
        **{f"margins/{k}": m for k, m in margins.items()},
        "margins/pmp": pmp["margins/pmp"],
    }
    if terms.text_margin is not None:
        metrics["margins/text"] = terms.text_margin.detach()
    return {**metrics, "tpd_offset": terms.tpd_offset.detach(), "z_y": z_y.detach(),
            "accuracies/response": (terms.margin_y.detach() > 0).float(),
            **{f"accuracies/{k}": (m > 0).float() for k, m in margins.items()},
            "accuracies/pmp": pmp["accuracies/pmp"]}


def summarize(metrics: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Batch means of per-sample metrics, ignoring NaN (not-applicable) entries; NaN if none applies."""
    out = {}
    for k, v in metrics.items():
        v = v.detach().float().flatten()
        ok = ~torch.isnan(v)
        out[k] = float(v[ok].mean()) if ok.any() else float("nan")
    return out
