#!/usr/bin/env bash
# One-shot GPU benchmark of jaxcxr's train step: images/s, step time and MFU.
#
#   bash benchmarks/gpu.sh            # from the repository root, on a machine with one GPU
#
# Installs jax[cuda12] and jaxcxr into ./.venv-gpu (skipped when that venv already imports a
# GPU jax), then runs benchmarks/train_step.py (the jitted `jaxcxr.train.train_step`, a fixed
# random batch: input pipeline off) for ResNet-50 at 224 (batch 256, bf16), DenseNet-121 at 224,
# EfficientNet-B0 at 224 and EfficientNet-B7 at 600, each with a time limit so that the whole
# script stays under ~8 minutes. MFU is XLA's cost analysis of the compiled step over the chip's
# dense bf16 peak (train_step.py's PEAK_FLOPS). The input-pipeline rows run
# benchmarks/input_pipeline.py where the shared data are present. The compilation cache is pointed at a fresh
# directory so that compile_s is a cold compile. Paste the JSON lines into BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

# An image that already has a GPU jax (e.g. a lent machine with no network): use its python3,
# with what jaxcxr needs beyond it (grain, tensorflow-datasets, ml_collections, dm-pix, ...) from
# wheels carried in ./.whl (pip download on a networked machine), installed without an index.
# Otherwise: a venv with jax[cuda12] from PyPI.
VENV=${VENV:-.venv-gpu}
if python3 -c 'import jax; assert jax.default_backend() == "gpu"' 2>/dev/null; then
  PY=python3
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/jaxcxr-site .whl/*.whl
    export PYTHONPATH="$PYTHONPATH:/tmp/jaxcxr-site"
  fi
else
  if ! "$VENV/bin/python" -c 'import jax; assert jax.default_backend() == "gpu"' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q "jax[cuda12]"
    "$VENV/bin/pip" install -q -e .
  fi
  PY="$VENV/bin/python"
fi
"$PY" -c 'import jax; print("devices:", jax.devices())'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

export JAXCXR_COMPILATION_CACHE_DIR
JAXCXR_COMPILATION_CACHE_DIR=$(mktemp -d)
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}

run() {  # run SECONDS ARGS...: one train_step.py row, killed after SECONDS
  local limit=$1
  shift
  timeout "$limit" "$PY" benchmarks/train_step.py --dtype bfloat16 --optimizer sgd \
    --warmup 3 --steps 20 "$@" || echo "{\"failed\": \"$*\", \"rc\": $?}"
}

run 150 --model resnet50 --image_size 224 --batch_size 256
run 120 --model densenet121 --image_size 224 --batch_size 256
run 120 --model efficientnet_b0 --image_size 224 --batch_size 256
run 120 --model efficientnet_b7 --image_size 600 --batch_size 16 --steps 10

# Input pipeline on: host images/s per core from 2,000 px originals and from the prepared cache
# (needs the shared Kermany sample: $JAXCXR_SHARED_DATA/chest_xray).
if [[ -d "${JAXCXR_SHARED_DATA:-../shared/data}/chest_xray" ]]; then
  timeout 120 "$PY" benchmarks/input_pipeline.py || echo '{"failed": "input_pipeline.py"}'
else
  echo '{"skipped": "input pipeline: no chest_xray sample under $JAXCXR_SHARED_DATA"}'
fi
