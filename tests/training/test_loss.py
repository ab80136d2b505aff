"""The AVEm-DPO loss term by term, with hand-computed numbers, and its reduction to trl's sigmoid DPO."""
from __future__ import annotations

import collections
import math
import types

import pytest
import torch

from avere_utils.training.loss import LossConfig, LossInputs, avem_dpo_loss, summarize
from avere_utils.training.variants import VARIANTS, describe, loss_config_for


def softplus_neg(z: float) -> float:  # -log sigmoid(z)
    return math.log1p(math.exp(-z))


def t(*xs: float, grad: bool = False) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64, requires_grad=grad)


def example_inputs(**over) -> LossInputs:
    """One sample.  rho_w = -10 - (-12) = 2; rho_vr = -15 - (-14) = -1; rho_er = -20 - (-18) = -2;
    text: chosen -30, vr -25, er -33; PMP: rho(y_w | a_l, v_l) = -13 - (-12) = -1."""
    kw = dict(policy_chosen=t(-10.0), ref_chosen=t(-12.0),
              policy_rejected={"vr": t(-15.0), "er": t(-20.0)}, ref_rejected={"vr": t(-14.0), "er": t(-18.0)},
              text_chosen=t(-30.0), text_rejected={"vr": t(-25.0), "er": t(-33.0)},
              policy_chosen_pmp=t(-13.0), ref_chosen_pmp=t(-12.0), pmp_mask=torch.tensor([True]))
    kw.update(over)
    return LossInputs(**kw)


def test_erp_term_alone():
    # z_y = 0.1 * [2 - (0.5 * -1 + 0.5 * -2)] = 0.1 * 3.5 = 0.35
    out = avem_dpo_loss(example_inputs(), LossConfig(gamma_tpd=0.0, lambda_av=0.0))
    assert out.loss.item() == pytest.approx(softplus_neg(0.35), abs=1e-12)
    m = summarize(out.metrics)
    assert m["rewards/chosen"] == pytest.approx(0.2)
    assert m["rewards/vr"] == pytest.approx(-0.1) and m["rewards/er"] == pytest.approx(-0.2)
    assert m["rewards/rejected"] == pytest.approx(-0.15)
    assert m["margins/response"] == pytest.approx(0.35)
    assert m["margins/vr"] == pytest.approx(0.3) and m["margins/er"] == pytest.approx(0.4)
    assert m["accuracies/response"] == 1.0 and math.isnan(m["loss_av"])


def test_erp_weights_are_used():
    # beta_vr = 0.8: z_y = 0.1 * [2 - (0.8 * -1 + 0.2 * -2)] = 0.1 * 3.2 = 0.32
    out = avem_dpo_loss(example_inputs(), LossConfig(beta_vr=0.8, beta_er=0.2, gamma_tpd=0.0, lambda_av=0.0))
    assert out.loss.item() == pytest.approx(softplus_neg(0.32), abs=1e-12)


def test_tpd_term_is_outside_beta_and_detached():
    # text difference = -30 - (0.5 * -25 + 0.5 * -33) = -1; offset = 0.2 * -1 = -0.2 (no beta on it)
    # z_y = 0.35 - (-0.2) = 0.55
    inp = example_inputs(text_chosen=t(-30.0, grad=True),
                         text_rejected={"vr": t(-25.0, grad=True), "er": t(-33.0, grad=True)})
    inp.policy_chosen.requires_grad_(True)
    out = avem_dpo_loss(inp, LossConfig(gamma_tpd=0.2, lambda_av=0.0))
    assert out.loss.item() == pytest.approx(softplus_neg(0.55), abs=1e-12)
    assert summarize(out.metrics)["tpd_offset"] == pytest.approx(-0.2)
    out.loss.backward()
    assert inp.policy_chosen.grad is not None and inp.policy_chosen.grad.abs().item() > 0
    assert inp.text_chosen.grad is None
    assert all(v.grad is None for v in inp.text_rejected.values())


def test_tpd_reversed_form_adds_the_offset_and_is_detached():
    # z_y = 0.35 + (-0.2) = 0.15; the logged offset is what is subtracted
    inp = example_inputs(text_chosen=t(-30.0, grad=True),
                         text_rejected={"vr": t(-25.0, grad=True), "er": t(-33.0, grad=True)})
    inp.policy_chosen.requires_grad_(True)
    out = avem_dpo_loss(inp, LossConfig(gamma_tpd=0.2, lambda_av=0.0, tpd_form="reversed"))
    assert out.loss.item() == pytest.approx(softplus_neg(0.15), abs=1e-12)
    assert summarize(out.metrics)["tpd_offset"] == pytest.approx(0.2)
    assert "margins/text" not in out.metrics  # the literal / reversed step log keeps its keys
    out.loss.backward()
    assert inp.text_chosen.grad is None and all(v.grad is None for v in inp.text_rejected.values())
    with pytest.raises(ValueError, match="tpd_form"):
        LossConfig(tpd_form="minus")


def policy_text_inputs(grad: bool = False) -> dict:
    """The policy's text-only log-probs: rho^text_w = -28 - (-30) = 2, rho^text_vr = -26 - (-25) = -1,
    rho^text_er = -31 - (-33) = 2."""
    return dict(policy_text_chosen=t(-28.0, grad=grad),
                policy_text_rejected={"vr": t(-26.0, grad=grad), "er": t(-31.0, grad=grad)})


def test_tpd_policy_form_uses_the_policy_text_log_ratios_with_gradient():
    # text margin = 0.1 * [2 - (0.5 * -1 + 0.5 * 2)] = 0.1 * 1.5 = 0.15; offset = 0.2 * 0.15 = 0.03
    # z_y = 0.35 - 0.03 = 0.32
    inp = example_inputs(text_chosen=t(-30.0, grad=True),
                         text_rejected={"vr": t(-25.0, grad=True), "er": t(-33.0, grad=True)},
                         **policy_text_inputs(grad=True))
    out = avem_dpo_loss(inp, LossConfig(gamma_tpd=0.2, lambda_av=0.0, tpd_form="policy"))
    assert out.loss.item() == pytest.approx(softplus_neg(0.32), abs=1e-12)
    m = summarize(out.metrics)
    assert m["tpd_offset"] == pytest.approx(0.03) and m["margins/text"] == pytest.approx(0.15)
    assert m["z_y"] == pytest.approx(0.32) and m["margins/response"] == pytest.approx(0.35)
    out.loss.backward()
    # d L / d log pi_theta(y_w|x) = sigmoid(-z) * gamma * beta; the reference's text log-probs stay detached
    s = 1.0 / (1.0 + math.exp(0.32))
    assert inp.policy_text_chosen.grad.item() == pytest.approx(s * 0.2 * 0.1, rel=1e-9)
    assert inp.policy_text_rejected["vr"].grad.item() == pytest.approx(-s * 0.2 * 0.1 * 0.5, rel=1e-9)
    assert inp.text_chosen.grad is None and all(v.grad is None for v in inp.text_rejected.values())
    with pytest.raises(ValueError, match="policy_text_chosen"):
        avem_dpo_loss(example_inputs(), LossConfig(tpd_form="policy"))
    assert LossConfig(tpd_form="policy").needs_policy_text and not LossConfig().needs_policy_text
    assert not LossConfig(tpd_form="policy", use_tpd=False).needs_policy_text


def test_tpd_switched_off_ignores_text():
    cfg = LossConfig(gamma_tpd=0.2, lambda_av=0.0, use_tpd=False)
    out = avem_dpo_loss(example_inputs(text_chosen=None, text_rejected=None), cfg)
    assert out.loss.item() == pytest.approx(softplus_neg(0.35), abs=1e-12)


def test_pmp_term():
    # z_av = 0.1 * [2 - (-1)] = 0.3 ; total = L_y(0.55) + 1.0 * L_av(0.3)
    out = avem_dpo_loss(example_inputs(), LossConfig())
    assert out.loss.item() == pytest.approx(softplus_neg(0.55) + softplus_neg(0.3), abs=1e-12)
    m = summarize(out.metrics)
    assert m["loss_av"] == pytest.approx(softplus_neg(0.3))
    assert m["margins/pmp"] == pytest.approx(0.3) and m["accuracies/pmp"] == 1.0
    assert m["rewards/chosen_pmp"] == pytest.approx(-0.1)
    # lambda_av scales it
    out2 = avem_dpo_loss(example_inputs(), LossConfig(lambda_av=0.5))
    assert out2.loss.item() == pytest.approx(softplus_neg(0.55) + 0.5 * softplus_neg(0.3), abs=1e-12)


def test_pmp_mask_excludes_samples_without_a_rejected_input():
    # two samples: the second has no PMP input; its pmp log-probs are garbage and must not matter
    inp = LossInputs(policy_chosen=t(-10.0, -10.0), ref_chosen=t(-12.0, -12.0),
                     policy_rejected={"vr": t(-15.0, -15.0), "er": t(-20.0, -20.0)},
                     ref_rejected={"vr": t(-14.0, -14.0), "er": t(-18.0, -18.0)},
                     text_chosen=t(-30.0, -30.0), text_rejected={"vr": t(-25.0, -25.0), "er": t(-33.0, -33.0)},
                     policy_chosen_pmp=t(-13.0, 1e4, grad=True), ref_chosen_pmp=t(-12.0, -1e4),
                     pmp_mask=torch.tensor([True, False]))
    out = avem_dpo_loss(inp, LossConfig())
    ly, lav = softplus_neg(0.55), softplus_neg(0.3)
    assert out.per_sample.tolist() == pytest.approx([ly + lav, ly], abs=1e-12)
    assert out.loss.item() == pytest.approx((2 * ly + lav) / 2, abs=1e-12)
    out.loss.backward()
    assert inp.policy_chosen_pmp.grad[1].item() == 0.0 and inp.policy_chosen_pmp.grad[0].item() != 0.0
    assert math.isnan(out.metrics["loss_av"][1].item())


def test_single_rejection_forms():
    inp = example_inputs(policy_rejected={"rejected": t(-15.0)}, ref_rejected={"rejected": t(-14.0)})
    out = avem_dpo_loss(inp, LossConfig(use_erp=False, use_tpd=False, use_pmp=False))
    assert out.loss.item() == pytest.approx(softplus_neg(0.1 * (2 - (-1))), abs=1e-12)
    cfg = LossConfig(use_erp=False, single_rejection="er", use_tpd=False, use_pmp=False)
    assert cfg.rejection_weights() == {"er": 1.0}
    assert avem_dpo_loss(example_inputs(), cfg).loss.item() == pytest.approx(softplus_neg(0.4), abs=1e-12)


@pytest.mark.parametrize("bad", [dict(beta_vr=0.6, beta_er=0.6), dict(beta=0.0), dict(gamma_tpd=-1.0),
                                 dict(pmp_modalities=("smell",)), dict(single_rejection="both")])
def test_config_is_validated(bad):
    with pytest.raises(ValueError):
        LossConfig(**bad)


def test_missing_inputs_are_named():
    with pytest.raises(ValueError, match="text_chosen"):
        avem_dpo_loss(example_inputs(text_chosen=None), LossConfig())
    with pytest.raises(ValueError, match="er"):
        avem_dpo_loss(example_inputs(policy_rejected={"vr": t(-1.0)}), LossConfig())


# --- the reduction to trl 1.16's sigmoid DPO ------------------------------------------------------------
def trl_sigmoid_dpo(policy_c, policy_r, ref_c, ref_r, beta: float) -> torch.Tensor:
    """trl 1.16 has no free function for the DPO loss: it lives in the private method
    DPOTrainer._compute_loss(model, inputs, return_outputs).  We call that method on a bare instance
    (object.__new__, no __init__) with the attributes it reads, precomputed reference log-probs, and a fake
    model whose fused-head output holds each sequence's summed log-prob as a single completion token."""
    from trl.trainer.dpo_trainer import DPOTrainer

    logps = torch.cat([policy_c, policy_r]).unsqueeze(1)  # batch is [chosen, rejected]
    n = logps.shape[0]
    outputs = types.SimpleNamespace(log_probs=logps, entropy=torch.zeros(n, 1), mean_logits=torch.zeros(n, 1),
                                    is_top1=torch.zeros(n, 1, dtype=torch.bool))
    acc = types.SimpleNamespace(device=torch.device("cpu"), gather=lambda x: x, gather_for_metrics=lambda x: x)
    trainer = object.__new__(DPOTrainer)
    trainer.__dict__.update(
        model=types.SimpleNamespace(training=True), accelerator=acc, aux_loss_enabled=False, ld_alpha=None,
        precompute_ref_logps=True, f_divergence_type="reverse_kl", loss_types=["sigmoid"], loss_weights=[1.0],
        beta=beta, use_weighting=False, label_smoothing=0.0, _total_train_tokens=0, _tp_size=1,
        _metrics=collections.defaultdict(lambda: collections.defaultdict(list)))
    inputs = {"input_ids": torch.zeros(n, 2, dtype=torch.long), "attention_mask": torch.ones(n, 2, dtype=torch.long),
              "completion_mask": torch.tensor([[0, 1]] * n), "ref_chosen_logps": ref_c, "ref_rejected_logps": ref_r}
    return trainer._compute_loss(lambda **kw: outputs, inputs, False)


@pytest.mark.parametrize("config", [
    *[LossConfig(gamma_tpd=0.0, lambda_av=0.0, beta_vr=1.0, beta_er=0.0, tpd_form=f)  # the paper's reduction,
      for f in ("literal", "reversed", "policy")],  # in every reading of TPD
    LossConfig(use_erp=False, single_rejection="vr", use_tpd=False, use_pmp=False),  # naive_dpo's form
    loss_config_for("naive_dpo", beta=0.1, beta_vr=0.5, beta_er=0.5, gamma_tpd=0.2, lambda_av=1.0,
                    single_rejection="vr"),
])
def test_reduces_to_trl_sigmoid_dpo(config):
    g = torch.Generator().manual_seed(0)
    B = 16
    pc, pr, rc, rr = (-50 * torch.rand(B, generator=g) for _ in range(4))
    text = {"vr": -50 * torch.rand(B, generator=g), "er": -50 * torch.rand(B, generator=g)}
    ours = avem_dpo_loss(LossInputs(policy_chosen=pc, ref_chosen=rc, policy_rejected={"vr": pr, "er": pr - 3},
                                    ref_rejected={"vr": rr, "er": rr}, text_chosen=-50 * torch.rand(B, generator=g),
                                    text_rejected=text, policy_chosen_pmp=pc - 1, ref_chosen_pmp=rc,
                                    policy_text_chosen=pc - 5, policy_text_rejected={"vr": pr - 5, "er": pr}),
                         config)
    oracle = trl_sigmoid_dpo(pc, pr, rc, rr, beta=config.beta)
    assert ours.loss.item() == pytest.approx(oracle.item(), rel=1e-6)
    # and it is not trivially equal: the full loss differs on the same numbers
    full = avem_dpo_loss(LossInputs(policy_chosen=pc, ref_chosen=rc, policy_rejected={"vr": pr, "er": pr - 3},
                                    ref_rejected={"vr": rr, "er": rr}, text_chosen=pc, text_rejected=text,
                                    policy_chosen_pmp=pc - 1, ref_chosen_pmp=rc), LossConfig())
    assert abs(full.loss.item() - oracle.item()) > 1e-3


# --- variants -------------------------------------------------------------------------------------------
def test_variant_presets_switch_terms_and_keep_numbers_from_params():
    nums = dict(beta=0.2, beta_vr=0.3, beta_er=0.7, gamma_tpd=0.4, lambda_av=2.0)
    cfgs = {name: loss_config_for(name, **nums) for name in VARIANTS}
    assert set(cfgs) == {"avem_dpo", "avem_dpo_reversed", "avem_dpo_policy", "naive_dpo", "vista_dpo", "no_pmp",
                         "no_erp", "no_tpd"}
    for cfg in cfgs.values():  # numbers are never clobbered by a preset
        assert (cfg.beta, cfg.gamma_tpd, cfg.lambda_av, cfg.beta_vr) == (0.2, 0.4, 2.0, 0.3)
    full = cfgs["avem_dpo"]
    assert full.needs_text and full.needs_pmp and full.rejection_weights() == {"vr": 0.3, "er": 0.7}
    assert not cfgs["naive_dpo"].needs_text and not cfgs["naive_dpo"].needs_pmp
    assert cfgs["naive_dpo"].rejection_weights() == {"rejected": 1.0}
    assert cfgs["vista_dpo"].needs_pmp and cfgs["vista_dpo"].pmp_modalities == ("video",)
    assert not cfgs["vista_dpo"].needs_text
    assert not cfgs["no_pmp"].needs_pmp and cfgs["no_pmp"].needs_text
    assert cfgs["no_erp"].rejection_weights() == {"rejected": 1.0} and cfgs["no_erp"].needs_pmp
    assert not cfgs["no_tpd"].needs_text and cfgs["no_tpd"].needs_pmp
    assert "lambda_av = 2.0" in describe(full)
    # the TPD form: the two form presets fix theirs, avem_dpo and the ablations take the params' one
    assert [cfgs[v].tpd_form for v in ("avem_dpo", "avem_dpo_reversed", "avem_dpo_policy")] == \
        ["literal", "reversed", "policy"]
    for form in ("literal", "reversed", "policy"):
        by = {name: loss_config_for(name, **nums, tpd_form=form) for name in VARIANTS}
        assert by["avem_dpo"].tpd_form == by["no_pmp"].tpd_form == by["no_erp"].tpd_form == form
        assert (by["avem_dpo_reversed"].tpd_form, by["avem_dpo_policy"].tpd_form) == ("reversed", "policy")
        # apart from the form, the form presets are avem_dpo
        for name in ("avem_dpo_reversed", "avem_dpo_policy"):
            assert by[name].with_overrides(tpd_form=form) == by["avem_dpo"]
    assert "tpd_form = policy" in describe(cfgs["avem_dpo_policy"])
    with pytest.raises(ValueError, match="unknown training variant"):
        loss_config_for("dpo_plus", **nums)


def test_every_loss_weight_has_a_train_param_and_switches_stay_with_the_variant():
    """A new LossConfig weight needs only its field, one TrainParams param and the profile files: the params
    pass every non-switch field through by name, and a switch can not be set from params."""
    import dataclasses

    from avere_utils.training.params import TrainParams
    from avere_utils.training.variants import SWITCHES

    weights = [f.name for f in dataclasses.fields(LossConfig) if f.name not in SWITCHES]
    assert set(weights) <= {f.name for f in dataclasses.fields(TrainParams)}
    cfg = TrainParams(gamma_tpd=0.3, lambda_av=0.5, variant="no_pmp").loss_config()
    assert (cfg.gamma_tpd, cfg.lambda_av, cfg.use_pmp) == (0.3, 0.5, False)
    with pytest.raises(ValueError, match="set by the variant"):
        loss_config_for("avem_dpo", beta=0.1, use_tpd=False)
