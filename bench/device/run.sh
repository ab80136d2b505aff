#!/usr/bin/env bash
# On the GPU machine, from the repository root, after bench/device/prepare_wheels.sh filled .whl/ here:
# installs the wheels into /tmp/site, stands in PyAV and soundfile with empty modules (too large to carry;
# nothing in these checks decodes a file), then runs bench/gpu_check.sh with its figures under $OUT.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
mkdir -p /tmp/stub/av && echo "# stand-in" > /tmp/stub/av/__init__.py && echo "# stand-in" > /tmp/stub/soundfile.py
export PYTHONPATH=/tmp/site:/tmp/stub:$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
OUT=${OUT:-outputs/bench} bash bench/gpu_check.sh
