#!/usr/bin/env bash
# unprior vs TRL's DPOTrainer on a random-weight 7B LLaVA-1.5 (bf16, FSDP2 or ZeRO-3 through accelerate, one CUDA
# GPU), then `unprior pairs` with the vllm and hf backends; about 5-7 minutes. Options: bench/gpu.sh --help.
#   bench/gpu.sh                 # the whole run; results in /tmp/unprior-gpu/summary.md and results.json
#   bench/gpu.sh --dry-run       # no GPU: write the accelerate config and print the plan
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
export HF_HUB_OFFLINE=1 TQDM_DISABLE=1 TOKENIZERS_PARALLELISM=false
exec "$PYTHON" bench/gpu_bench.py "$@"
