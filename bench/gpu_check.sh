#!/usr/bin/env bash
# The checks that need a GPU and torchvision, in one short run (a few minutes on one H100/H200):
# the kit's processor against the official Qwen2_5OmniProcessor, CUDA (bf16 and fp32) log-probs against fp32
# CPU ones, packed scoring on CUDA sdpa (bench/gpu_check.py), then the training-geometry (every TPD form) and
# evaluation-throughput benchmarks on CUDA in bf16 at Qwen2.5-Omni-7B's widths with a quarter of its depths
# (random weights; --preset 7b for the whole thinker).  Figures land in ${OUT:-outputs/bench}/.
# Usage: bash bench/gpu_check.sh   (in an environment with the kit's stack plus torchvision and a GPU)
set -uo pipefail
out=${OUT:-outputs/bench}
preset=${PRESET:-7b-quarter-depth}
model=${GEOMETRY_MODEL_DIR:-/tmp/avere_geometry_$preset}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name(0))"
python3 bench/gpu_check.py --out "$out/gpu_check.json" 2>&1 | grep -E "^(processor|cuda_vs_cpu|packing|generation|wrote)" | cut -c1-700
python3 bench/bench_training_geometry.py --device cuda --dtype bf16 --preset "$preset" --threads 8 \
    --model-dir "$model" --out "$out/training_geometry_gpu.json" 2>&1 | tail -3
python3 bench/bench_eval.py --device cuda --preset "$preset" --threads 8 --geo-model-dir "$model" \
    --out "$out/eval_gpu.json" 2>&1 | tail -4
