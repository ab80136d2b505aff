#!/usr/bin/env bash
# The checks that need a GPU and torchvision, in one short run (about 2 minutes on one H100):
# the kit's processor against the official Qwen2_5OmniProcessor, bf16 CUDA against fp32 CPU log-probs,
# and the model and training benchmarks on CUDA.  Figures land in ${OUT:-outputs/bench}/.
# Usage: bash bench/gpu_check.sh   (in an environment with the kit's stack plus torchvision and a GPU)
set -uo pipefail
out=${OUT:-outputs/bench}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
python3 -c "import torch, transformers, torchvision; print('torch', torch.__version__, 'transformers', transformers.__version__, 'torchvision', torchvision.__version__, torch.cuda.get_device_name(0))"
python3 -m pytest -q -rs -p no:cacheprovider tests/test_models.py 2>&1 | tee "$out/gpu_tests.txt" | tail -8
python3 bench/bench_model.py --device cuda --out "$out/model_gpu.json" 2>&1 | tail -3
python3 bench/bench_training.py --device cuda --out "$out/training_gpu.json" 2>&1 | tail -3
