#!/usr/bin/env bash
# XLA:CPU flags vs the dense-family train step (issue 13): one benchmarks/train_step.py JSON line
# per setting, each in a fresh process with the persistent compilation cache off (a flag changes
# the compiled program). Run on an idle machine:
#
#   bash benchmarks/cpu_flags.sh [MODEL] [BATCH]        # default resnet50 at 224, batch 4
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-resnet50}
BATCH=${2:-4}
PY=${PY:-python}
export JAXCXR_COMPILATION_CACHE=0 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
for flags in \
  "" \
  "--xla_cpu_use_xnnpack=false" \
  "--xla_cpu_multi_thread_eigen=false" \
  "--xla_cpu_enable_concurrency_optimized_scheduler=true" \
  "--xla_cpu_prefer_vector_width=512" \
  "--xla_cpu_enable_fast_math=true"; do
  echo "XLA_FLAGS='$flags'"
  XLA_FLAGS="$flags" "$PY" benchmarks/train_step.py --model "$MODEL" --image_size 224 \
    --batch_size "$BATCH" --optimizer sgd --warmup 2 --steps 5 2>/dev/null | grep '^{' ||
    echo '{"failed": true}'
done
