#!/usr/bin/env bash
# Every GPU figure of BENCHMARKS.md in one run (issue 16 item 5), for a lent GPU machine that
# has PyTorch and timm but not Ray: P1 (HRNet-w32 256x256 training img/s, bf16 + channels_last
# + torch.compile against fp32 eager), the throughput per backbone that --plan's GPU-hours
# need, P2 (the loop's data wait, both pipelines), P4c (small trials packed per GPU) and the
# batched augmentation tests on CUDA. Each step has its own time limit (the whole run stays
# under 10 minutes) and a failed step does not stop the others. Writes OUT/gpu_figures.txt
# (OUT defaults to ./gpu-figures) with the GPU model on every figure line.
#   bash benchmarks/gpu_figures.sh
set -uo pipefail
out=${OUT:-gpu-figures}
mkdir -p "$out"
log="$out/gpu_figures.txt"
py=${PYTHON:-python}
gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
echo "gpu: ${gpu:-none found}; torch $($py -c 'import torch; print(torch.__version__, torch.version.cuda)')" | tee "$log"
step() {  # step SECONDS NAME COMMAND...
    local limit=$1 name=$2; shift 2
    echo "== $name (limit ${limit}s)" | tee -a "$log"
    local start=$(date +%s)
    timeout "$limit" "$@" 2>&1 | tail -6 | sed "s/^/[$gpu] /" | tee -a "$log"
    echo "   rc=${PIPESTATUS[0]} in $(( $(date +%s) - start )) s" | tee -a "$log"
}
step 150 "P1 hrnet_w32 256 batch 128" $py benchmarks/train_throughput.py --device cuda --batch 128 --steps 50 --warmup 10 --compile
for b in resnet50 resnet101 resnet152 hrnet_w48; do
    step 45 "plan throughput $b 256 bf16" $py benchmarks/train_throughput.py --device cuda --batch 64 --steps 20 --warmup 5 --backbone $b
done
step 120 "P2 data wait, both pipelines" $py -m benchmarks.data_wait --batch 64 --steps 50 --workers 8 --bf16 --channels-last --compile
step 90 "P4c packing 4 trials per GPU" $py benchmarks/gpu_packing.py --trials 8 --pack 4
step 60 "batched augmentation on CUDA" $py -m pytest -q -p no:cacheprovider tests/test_batch_augment.py
echo "done; figures in $log"
