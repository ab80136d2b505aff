"""requirements-gpu.lock (make setup-gpu) equals requirements.lock outside the CUDA packages, and its CUDA
pins, the Makefile's index and the CPU lock's torch agree; setup-gpu is never part of the test targets."""
from __future__ import annotations

import re

from avere_utils.paths import REPO_ROOT

CUDA_PACKAGES = {"torch", "torchvision", "torchaudio", "triton"}


def pins(name: str) -> dict[str, str]:
    out = {}
    for line in (REPO_ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        assert "==" in line, f"{name}: not an exact pin: {line!r}"
        pkg, version = line.split("==", 1)
        key = re.sub(r"[-_.]+", "-", pkg).lower()
        assert key not in out, f"{name}: {pkg} pinned twice"
        out[key] = version
    return out


def is_cuda(pkg: str) -> bool:
    return pkg in CUDA_PACKAGES or pkg.startswith("nvidia-")


def test_the_two_locks_agree_outside_the_cuda_packages():
    cpu, gpu = pins("requirements.lock"), pins("requirements-gpu.lock")
    only_cpu = {k: v for k, v in cpu.items() if not is_cuda(k)}
    only_gpu = {k: v for k, v in gpu.items() if not is_cuda(k)}
    assert only_cpu == only_gpu, {k: (only_cpu.get(k), only_gpu.get(k))
                                  for k in set(only_cpu) | set(only_gpu) if only_cpu.get(k) != only_gpu.get(k)}


def test_the_gpu_lock_pins_cuda_builds_of_the_same_torch():
    cpu, gpu = pins("requirements.lock"), pins("requirements-gpu.lock")
    base, _, tag = gpu["torch"].partition("+")
    assert base == cpu["torch"].partition("+")[0] and re.fullmatch(r"cu\d+", tag), gpu["torch"]
    assert gpu["torchvision"].endswith(f"+{tag}")  # the same CUDA build
    makefile = (REPO_ROOT / "Makefile").read_text()
    index = re.search(r"^TORCH_INDEX \?= (\S+)$", makefile, re.M)
    assert index and index.group(1).rstrip("/").endswith(f"/whl/{tag}"), "the Makefile's index serves another build"


def test_setup_gpu_is_not_part_of_make_test():
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(r"^setup-gpu: requirements-gpu\.lock", makefile, re.M)
    for target in ("test", "test-fast", "unit", "nbval", "reproduce", "setup", "lint"):
        rule = re.search(rf"^{re.escape(target)}:(.*)$", makefile, re.M)
        assert rule and "setup-gpu" not in rule.group(1), target
