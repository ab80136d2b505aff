"""avere_utils.numerics: the CPU code-path pins applied before torch is imported (docs/models.md,
"Same bits on every CPU")."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from avere_utils import numerics

PIN_VARS = (*numerics.PINS, numerics.NATIVE_SWITCH, "MKL_ENABLE_INSTRUCTIONS")
HAS_AVX2 = numerics.cpu_info()["machine"].lower() in ("x86_64", "amd64") and "avx2" in numerics.cpu_info()["flags"]
needs_avx2 = pytest.mark.skipif(not HAS_AVX2, reason="the pins apply on x86-64 CPUs with AVX2")

REPORT = ("import json, os, torch, avere_utils.numerics as n; "
          "print(json.dumps({'cap': torch.backends.cpu.get_cpu_capability(), "
          "'env': {k: os.environ.get(k) for k in n.PINS}, 'describe': n.describe()}))")


def _child(code: str, **env_over: str) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items() if k not in PIN_VARS}
    env.update(env_over)
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1]), p.stderr


@needs_avx2
def test_import_avere_utils_pins_torch_to_avx2():
    out, err = _child("import avere_utils; " + REPORT)
    assert out["cap"] == "AVX2"
    assert out["env"] == numerics.PINS
    assert out["describe"]["pins"] == numerics.PINS and out["describe"]["capability"] == "AVX2"
    assert "too late" not in err


@needs_avx2
def test_native_switch_lifts_the_pins():
    out, _ = _child("import avere_utils; " + REPORT, AVERE_NATIVE_CPU="1")
    assert all(v is None for v in out["env"].values())
    assert out["describe"]["native_switch"] and out["describe"]["pins"] == {}
    bare, _ = _child("import json, torch; print(json.dumps({'cap': torch.backends.cpu.get_cpu_capability()}))")
    assert out["cap"] == bare["cap"]  # what torch picks on its own


@needs_avx2
def test_a_user_set_value_is_kept_and_logged():
    out, err = _child("import avere_utils; " + REPORT, ATEN_CPU_CAPABILITY="default", MKL_CBWR="AUTO")
    assert out["cap"] == "DEFAULT"
    assert out["env"]["ATEN_CPU_CAPABILITY"] == "default" and out["env"]["MKL_CBWR"] == "AUTO"
    assert out["env"]["ONEDNN_MAX_CPU_ISA"] == numerics.PINS["ONEDNN_MAX_CPU_ISA"]
    assert out["describe"]["user_set"] == {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "AUTO"}
    assert "ATEN_CPU_CAPABILITY=default set by the user is kept" in err


@needs_avx2
def test_torch_imported_first_warns_with_the_capability_in_use():
    _, err = _child("import torch; torch.ones(8).softmax(0); import avere_utils; " + REPORT)
    assert "too late" in err and "torch uses" in err


@needs_avx2
def test_spawned_children_inherit_the_pins(tmp_path):
    """The SFT workers and the runner's pool are spawned: they inherit the pins through the environment even
    if their main module imported torch first."""
    script = tmp_path / "spawn_check.py"
    script.write_text("import multiprocessing as mp, json, avere_utils\n"
                      "def cap():\n    import torch; return torch.backends.cpu.get_cpu_capability()\n"
                      "if __name__ == '__main__':\n"
                      "    with mp.get_context('spawn').Pool(1) as p: print(json.dumps({'cap': p.apply(cap)}))\n")
    env = {k: v for k, v in os.environ.items() if k not in PIN_VARS}
    p = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.strip().splitlines()[-1])["cap"] == "AVX2"


def test_plan_sets_missing_pins_keeps_user_values_and_honours_the_switch():
    flags = ["sse4_2", "avx", "avx2", "avx512f"]
    assert numerics.plan({}, "x86_64", flags)["set"] == numerics.PINS
    p = numerics.plan({"MKL_CBWR": "AUTO", "ATEN_CPU_CAPABILITY": "avx2"}, "x86_64", flags)
    assert p["user_set"] == {"MKL_CBWR": "AUTO"} and "MKL_CBWR" not in p["set"]
    assert "ATEN_CPU_CAPABILITY" not in p["set"] and "ATEN_CPU_CAPABILITY" not in p["user_set"]
    for on in ("1", "true", "yes"):
        assert numerics.plan({"AVERE_NATIVE_CPU": on}, "x86_64", flags) == {
            "set": {}, "user_set": {}, "native": True, "skipped": None}
    assert numerics.plan({"AVERE_NATIVE_CPU": "0"}, "x86_64", flags)["set"] == numerics.PINS
    assert numerics.plan({}, "x86_64", ["sse4_2", "avx"])["skipped"] == "the CPU has no AVX2"
    assert numerics.plan({}, "aarch64", [])["set"] == {}


def test_apply_on_a_given_environment_only_touches_it(monkeypatch):
    monkeypatch.setattr(numerics, "_state", dict(numerics._state))  # this process's own record stays
    before = dict(os.environ)
    env = {"MKL_CBWR": "AUTO"}
    numerics.apply(env)
    if HAS_AVX2:
        assert env == {**numerics.PINS, "MKL_CBWR": "AUTO"}
    assert dict(os.environ) == before


def test_describe_is_json_and_names_the_cpu_and_torch_settings():
    d = numerics.describe()
    json.dumps(d)
    assert {"capability", "pins", "user_set", "native_switch", "env", "cpu_model", "blas", "mkl", "mkldnn",
            "torch"} <= set(d)
    assert set(numerics.PINS) <= set(d["env"])
    assert d["capability"] in ("DEFAULT", "AVX2", "AVX512", "NO AVX", "ZVECTOR", "VSX", "SVE256", "SVE")


@needs_avx2
@pytest.mark.skipif(any(os.environ.get(k) not in (None, v) for k, v in numerics.PINS.items())
                    or os.environ.get(numerics.NATIVE_SWITCH), reason="the pins were changed or lifted for this run")
def test_this_test_process_is_pinned_too():
    """conftest imports avere_utils before anything imports torch: the tests run on the pinned code path."""
    import torch

    assert numerics._state["late"] is None  # torch was not imported before avere_utils
    assert torch.backends.cpu.get_cpu_capability() == "AVX2"


def test_mkl_pin_is_the_free_avx2_branch_and_compatible_stays_reachable():
    """MKL_CBWR=AVX2 (CNR:AUTO on AMD: no AVX-512 kernel, checked under an emulated Zen3, docs/models.md); a user's
    MKL_CBWR=COMPATIBLE (Intel/AMD mixes) is kept with the other pins."""
    assert numerics.PINS["MKL_CBWR"] == "AVX2"
    p = numerics.plan({"MKL_CBWR": "COMPATIBLE"}, "x86_64", ["avx2"])
    assert p["user_set"] == {"MKL_CBWR": "COMPATIBLE"}
    assert p["set"] == {k: v for k, v in numerics.PINS.items() if k != "MKL_CBWR"}


def _adamw_problem(seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    shapes = [(37, 19), (101,), (3, 5, 7)]
    params = [torch.nn.Parameter(torch.randn(*s, generator=g)) for s in shapes]
    grads = [[torch.randn(*s, generator=g) for s in shapes] for _ in range(3)]
    return params, grads


def test_kit_adamw_is_the_fused_vml_free_one_with_torchs_maths():
    """numerics.adamw (used by run_sft and the DPO trainer) builds torch's fused AdamW on CPU (ATen's exact
    sqrt, no MKL VML), and its updates equal torch.optim.AdamW's default single-tensor ones within 1e-6."""
    import torch

    kw = dict(lr=3e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    ref_params, grads = _adamw_problem()
    kit_params = [torch.nn.Parameter(p.detach().clone()) for p in ref_params]
    kit = numerics.adamw(kit_params, **kw)
    ref = torch.optim.AdamW(ref_params, **kw)
    assert isinstance(kit, torch.optim.AdamW)
    assert kit.defaults["fused"] is True and all(g["fused"] for g in kit.param_groups)
    assert not ref.defaults["fused"] and not ref.defaults["foreach"]  # the former path: sqrt through VML
    for step_grads in grads:
        for opt, params in ((kit, kit_params), (ref, ref_params)):
            for p, gr in zip(params, step_grads):
                p.grad = gr.clone()
            opt.step()
        for a, b in zip(kit_params, ref_params):
            torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=1e-6)
    # a checkpoint written by a non-fused AdamW (fused=None in its param groups) keeps the kit's fused path
    state = ref.state_dict()
    kit.load_state_dict(state)
    assert all(g["fused"] is True for g in kit.param_groups)
    for p, gr in zip(kit_params, grads[0]):
        p.grad = gr.clone()
    kit.step()


def test_kit_adamw_param_groups_and_non_float_fallback():
    import torch

    params, _ = _adamw_problem()
    opt = numerics.adamw([{"params": params[:2]}, {"params": params[2:], "weight_decay": 0.0}], lr=1e-3)
    assert opt.defaults["fused"] is True and opt.param_groups[1]["weight_decay"] == 0.0
    # an explicit foreach is the caller's choice: left to torch
    assert not numerics.adamw(params, lr=1e-3, foreach=False).defaults["fused"]
    # the fused CPU kernel takes every floating-point dtype (float64 here)
    assert numerics.adamw([torch.nn.Parameter(torch.randn(3, dtype=torch.float64))], lr=1e-3).defaults["fused"]
