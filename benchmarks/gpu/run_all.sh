#!/usr/bin/env bash
# The whole GPU run in one command, on the lent GPU machine (python3 3.12 with CUDA torch).
# Carry .whl/ and shared/ (made by benchmarks/gpu/prepare.sh) and run from the repo root:
#   bash benchmarks/gpu/run_all.sh            # results under $OUT (or benchmarks/results/)
# It installs the wheels into /tmp/site (no index, no deps, torch untouched), puts src/ on the
# path instead of installing medverse, runs the `gpu` tests, then the inference benchmark on
# CUDA, then (BUDGET_MIN > 0) the training benchmark on CUDA.
set -uo pipefail
cd "$(dirname "$0")/../.."
RESULTS="${OUT:-benchmarks/results}"
BUDGET_MIN="${BUDGET_MIN:-6}"
mkdir -p "$RESULTS"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD/src:$PWD" PYTHONUNBUFFERED=1
# tests and benchmarks read ../shared/data beside the checkout: point it at the carried copy
[ -e ../shared ] || ln -s "$PWD/shared" ../shared
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$RESULTS/gpu_device.txt"
python3 -c "import torch, monai; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'monai', monai.__version__)" \
  | tee -a "$RESULTS/gpu_device.txt"
python3 -m pytest -q -m gpu -p no:cacheprovider --continue-on-collection-errors tests 2>&1 | tee "$RESULTS/gpu_tests.txt"
python3 benchmarks/bench_inference.py --device cuda --json "$RESULTS/inference_cuda.json" 2>&1 \
  | tee "$RESULTS/inference_cuda.txt"
if [ "$BUDGET_MIN" -gt 0 ]; then
  python3 benchmarks/bench_training.py --device cuda --budget-min "$BUDGET_MIN" \
    --json "$RESULTS/bench_training_cuda.json" 2>&1 | tail -40 | tee "$RESULTS/bench_training_cuda.txt"
fi
