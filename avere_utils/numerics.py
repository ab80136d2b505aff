"""One numerical code path on every x86-64 CPU (docs/models.md, "Same bits on every CPU").

torch's vectorised ATen kernels, MKL and oneDNN each pick a code path by CPU capability, and the paths sum in
different orders: the same commit then trains another tiny reference on an AVX2-only CPU than on an AVX-512
one.  `apply()` pins every library to the level an AVX2-only x86-64 CPU shares with an AVX-512 one, through
environment variables that must be set before torch is imported (the libraries read them once, at their
first kernel); `avere_utils/__init__.py` calls it first thing, so every process that imports the kit before
torch (CLI, notebook kernels, SFT and training workers, tests) gets the pins, and the processes it starts
inherit them through the environment.

- ``ATEN_CPU_CAPABILITY=avx2``: torch's own kernels (softmax, layer_norm, gelu, reductions, attention...).
- ``MKL_CBWR=AVX2``: MKL's GEMMs (linear, matmul).  On an AMD CPU MKL runs it as ``CNR:AUTO`` (MKL_VERBOSE):
  its generic non-Intel path with fixed cache sizes and deterministic reductions, and that path has no AVX-512
  kernel (a debugger on the Zen5 shows ``mkl_blas_cnr_def_sgemm_kernel_0_zen`` and VML's SSE4.2 ``EX``
  kernels; bench/cpu_paths.py under QEMU's EPYC-Milan (Zen3) gives the probe's and the first SFT step's
  gradient bits of this Zen5).  Free, where ``MKL_CBWR=COMPATIBLE`` costs 1.7x per SFT step.
  On an Intel CPU MKL honours the AVX2 branch, which need not equal AMD's path: for a mix of Intel and AMD
  machines set ``MKL_CBWR=COMPATIBLE`` yourself (respected like any user value; MKL documents it as the
  same results on every x86 CPU).
- ``ONEDNN_MAX_CPU_ISA=AVX2``: oneDNN (the vision tower's Conv3d patch embed).

``AVERE_NATIVE_CPU=1`` lifts the pins (faster, but the bits then depend on the CPU).  A pin variable the user
set is respected and logged.  If torch was imported first, the pins may come too late: a warning names the
capability torch uses.
"""
from __future__ import annotations

import logging
import os
import platform
import sys
from typing import Any, Mapping, MutableMapping

log = logging.getLogger(__name__)

NATIVE_SWITCH = "AVERE_NATIVE_CPU"
# what the kit sets on an x86-64 CPU with AVX2 (the AVX2 level ATen, MKL and oneDNN share with AVX-512 CPUs)
PINS: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2",  # AMD: CNR:AUTO, no AVX-512 kernel; Intel/AMD mixes: MKL_CBWR=COMPATIBLE by hand
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}
# torch's names for the capability ATEN_CPU_CAPABILITY selects (torch.backends.cpu.get_cpu_capability())
CAPABILITY_NAMES = {"avx2": "AVX2", "avx512": "AVX512", "default": "DEFAULT"}

_state: dict[str, Any] = {"applied": {}, "user_set": {}, "native": False, "skipped": None, "late": None}


def cpu_info() -> dict[str, Any]:
    """The CPU's model string, vendor, family/model and flags (from /proc/cpuinfo on Linux)."""
    info: dict[str, Any] = {"machine": platform.machine(), "model": platform.processor() or None,
                            "vendor": None, "family": None, "model_number": None, "flags": []}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            text = f.read().split("\n\n")[0]
    except OSError:
        return info
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    info.update(model=fields.get("model name", info["model"]), vendor=fields.get("vendor_id"),
                family=fields.get("cpu family"), model_number=fields.get("model"),
                flags=fields.get("flags", "").split())
    return info


def plan(environ: Mapping[str, str], machine: str, flags: set[str] | list[str]) -> dict[str, Any]:
    """Pure: which pins to set given the environment and the CPU.
    Returns {"set": {var: value}, "user_set": {var: value differing from the pin}, "native": bool,
    "skipped": reason or None}."""
    out: dict[str, Any] = {"set": {}, "user_set": {}, "native": False, "skipped": None}
    if environ.get(NATIVE_SWITCH, "").strip().lower() in ("1", "true", "yes", "on"):
        out["native"] = True
        return out
    if machine.lower() not in ("x86_64", "amd64"):
        out["skipped"] = f"not an x86-64 CPU ({machine})"
        return out
    if "avx2" not in set(flags):
        out["skipped"] = "the CPU has no AVX2"
        return out
    for var, value in PINS.items():
        have = environ.get(var)
        if have is None or have == "":
            out["set"][var] = value
        elif have != value:
            out["user_set"][var] = have
    return out


def apply(environ: MutableMapping[str, str] | None = None) -> dict[str, Any]:
    """Set the pins in `environ` (os.environ) unless the switch lifts them; warn if torch came first."""
    environ = os.environ if environ is None else environ
    cpu = cpu_info()
    p = plan(environ, cpu["machine"], cpu["flags"])
    environ.update(p["set"])
    _state.update(applied=dict(p["set"]), user_set=dict(p["user_set"]), native=p["native"], skipped=p["skipped"])
    for var, value in p["user_set"].items():
        log.warning("numerics: %s=%s set by the user is kept (the kit pins %s): the bits may differ from the "
                    "committed golden run", var, value, PINS[var])
    if p["skipped"]:
        log.info("numerics: no CPU pins: %s", p["skipped"])
    torch = sys.modules.get("torch")
    if torch is not None and not p["native"] and environ is os.environ:
        # the libraries read the variables at their first kernel: this may already have happened
        want = CAPABILITY_NAMES.get(environ.get("ATEN_CPU_CAPABILITY", ""), None)
        try:
            have = torch.backends.cpu.get_cpu_capability()
        except Exception:  # pragma: no cover - a torch without the query
            have = None
        _state["late"] = have
        if want is not None and have != want:
            log.warning("numerics: torch was imported before avere_utils, so the CPU pins came too late: torch "
                        "uses %s (pinned %s). Import avere_utils first, or set %s in the environment.",
                        have, want, ", ".join(f"{k}={v}" for k, v in PINS.items()))
    return dict(_state)


def describe() -> dict[str, Any]:
    """What a run records: the capability torch reports, the pins, the MKL/oneDNN settings, the CPU."""
    cpu = cpu_info()
    out: dict[str, Any] = {
        "pins": dict(_state["applied"]),
        "user_set": dict(_state["user_set"]),
        "native_switch": bool(_state["native"]),
        "skipped": _state["skipped"],
        "env": {k: os.environ.get(k) for k in (*PINS, "MKL_ENABLE_INSTRUCTIONS", NATIVE_SWITCH,
                                               "OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        "cpu_model": cpu["model"],
        "cpu_vendor": cpu["vendor"],
        "cpu_family": cpu["family"],
        "cpu_model_number": cpu["model_number"],
        "cpu_avx2": "avx2" in cpu["flags"],
        "cpu_avx512f": "avx512f" in cpu["flags"],
        "machine": cpu["machine"],
    }
    try:
        import torch
    except ImportError:  # pragma: no cover
        return out
    config = torch.__config__.show()
    blas = next((part.split("=", 1)[1] for line in config.splitlines() for part in line.replace(",", " ").split()
                 if part.startswith("BLAS_INFO=")), None)
    out.update(torch=torch.__version__, capability=torch.backends.cpu.get_cpu_capability(), blas=blas,
               mkl=torch.backends.mkl.is_available(), mkldnn=torch.backends.mkldnn.is_available(),
               threads=torch.get_num_threads())
    return out


def adamw(params, **kw: Any):
    """torch.optim.AdamW with the same maths but no MKL VML on CPU (docs/models.md, "Same bits on every CPU").

    The default (single-tensor) AdamW computes ``exp_avg_sq.sqrt()`` with ATen's contiguous-float sqrt, which
    on CPU calls MKL VML (``mkl_vml_kernel_sSqrt_EXHAynn``): a kernel built on ``rsqrtps``, whose low bits each
    CPU design defines by its own table, so the weights after the first update could differ between CPUs.
    ``fused=True`` (torch >= 2.4 has a CPU kernel) runs the whole update in one ATen kernel with ATen's own
    Vectorized sqrt (``sqrtps``, exact IEEE) and no VML.  Used when every parameter is a floating-point CPU
    tensor (the fused kernel's constraint); otherwise (e.g. CUDA) torch's default is kept.  The choice
    survives ``load_state_dict`` of a checkpoint written by a non-fused AdamW (which would set fused=None)."""
    import torch

    params = list(params)
    tensors = [p for group in params for p in (group["params"] if isinstance(group, dict) else [group])]
    fused = bool(tensors) and "foreach" not in kw and all(
        isinstance(p, torch.Tensor) and p.device.type == "cpu" and torch.is_floating_point(p) for p in tensors)
    if fused:
        kw.setdefault("fused", True)
    opt = torch.optim.AdamW(params, **kw)
    if opt.defaults.get("fused"):
        def keep_fused(optimizer, *_args):
            for group in optimizer.param_groups:
                group["fused"], group["foreach"] = True, None
        opt.register_load_state_dict_post_hook(keep_fused)
    return opt
