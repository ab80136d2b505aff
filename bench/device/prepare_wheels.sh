#!/usr/bin/env bash
# Wheels for a GPU machine that has torch (and torchvision) but no network and none of the kit's pins:
# the pinned transformers, tokenizers, huggingface_hub (and its httpx2 stack), peft and click, as files in
# .whl/ (git-ignored), small enough to travel with the working tree.  Run here, where PyPI is reachable.
set -euo pipefail
cd "$(dirname "$0")/../.."
pin() { grep -i "^$1==" requirements.lock | head -1; }
mkdir -p .whl
for name in transformers tokenizers huggingface_hub httpx2 httpcore2 truststore click peft; do
    spec=$(pin "$name") || { echo "not pinned in requirements.lock: $name" >&2; exit 1; }
    pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "$spec"
done
ls -la .whl
