#!/usr/bin/env bash
# GPU readiness in one go (≤ 10 minutes on one GPU): bf16 inference tiles/s of xpath_small and
# xpath_large at 512 and 1024 px, xpath_large training steps/s and MFU on one GPU, and a
# 2-process torchrun DDP run (NCCL when there are ≥ 2 GPUs; with one GPU, NCCL refuses two
# ranks on one device, so the two ranks share it over gloo and the line says so).
#
#   benchmarks/gpu_check.sh            # on a GPU machine (make gpu-check)
#   benchmarks/gpu_check.sh --cpu      # tiny CPU mode (xpath_tiny, 64 px, gloo): what the tests run
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
CHECK=benchmarks/gpu_check.py
export HF_HUB_OFFLINE=1
if [[ "${1:-}" == "--cpu" ]]; then
  export OMP_NUM_THREADS=1
  $PY $CHECK inference --cpu
  $PY $CHECK train --cpu
  $PY -m torch.distributed.run --standalone --nproc_per_node=2 $CHECK ddp --cpu
  exit 0
fi
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device (use --cpu)'; print('GPUs:', [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])"
NGPU=$($PY -c "import torch; print(torch.cuda.device_count())")
timeout 240 $PY $CHECK inference --models xpath_small xpath_large --sizes 512 1024 --batch 8 --seconds 15
timeout 180 $PY $CHECK train --model xpath_large --size 1024 --batch 4 --seconds 30
BACKEND=nccl
[[ "$NGPU" -lt 2 ]] && BACKEND=gloo
timeout 150 $PY -m torch.distributed.run --standalone --nproc_per_node=2 $CHECK ddp --model xpath_large --size 512 \
  --batch 2 --seconds 20 --backend "$BACKEND"
