r"""Train-step throughput and compile time of a jaxcxr config (no data loading: a fixed batch).

    python benchmarks/train_step.py --model resnet50 --image_size 224 --batch_size 8
    python benchmarks/train_step.py --model resnet50 --batch_size 256 --dtype bfloat16  # GPU

Runs exactly the jitted `jaxcxr.train.train_step` that training runs (augmentation included),
sharded over all local devices, on a random uint8 batch. Prints one JSON line: compile seconds,
images/s over the timed steps, FLOPs per step from XLA's cost analysis and, when the device's
peak is known, model FLOPs utilisation (MFU = achieved FLOP/s / peak FLOP/s).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import common  # benchmarks/common.py (this script's folder is on sys.path)
import jax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from configs.common import fastai_augment  # noqa: E402
from jaxcxr import config_lib  # noqa: E402

# Dense peak FLOP/s per device (no sparsity), by dtype; used only for the MFU figure.
PEAK_FLOPS = {
  "H100": {"bfloat16": 989e12, "float32": 67e12},
  "H200": {"bfloat16": 989e12, "float32": 67e12},
  "A100": {"bfloat16": 312e12, "float32": 19.5e12},
}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--model", default="resnet50")
  p.add_argument("--image_size", type=int, default=224)
  p.add_argument("--batch_size", type=int, default=8, help="global batch")
  p.add_argument("--in_chans", type=int, default=3)
  p.add_argument("--num_classes", type=int, default=3)
  p.add_argument("--dtype", default="float32")
  p.add_argument("--optimizer", default="radam")
  p.add_argument("--augment", action="store_true", help="fastai-style augmentation in the step")
  p.add_argument("--warmup", type=int, default=2, help="untimed steps after compilation")
  p.add_argument("--steps", type=int, default=5, help="timed steps")
  a = p.parse_args()

  c = config_lib.base_config()
  c.model_name, c.model.in_chans, c.dtype = a.model, a.in_chans, a.dtype
  c.input.image_size, c.input.batch_size = a.image_size, a.batch_size
  c.optimizer.name = a.optimizer
  if a.augment:
    fastai_augment(c)
  c.optimizer.lr = 1e-3
  state, batch, step, _ = common.jitted_steps(c, a.num_classes)
  t0 = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get("flops", float("nan"))) if cost else float("nan")

  for _ in range(a.warmup):
    state, m = compiled(state, batch)
  jax.block_until_ready(state)
  t0 = time.perf_counter()
  for _ in range(a.steps):
    state, m = compiled(state, batch)
  jax.block_until_ready(state)
  dt = (time.perf_counter() - t0) / a.steps

  device = jax.devices()[0]
  kind = getattr(device, "device_kind", device.platform)
  peak = next((v.get(a.dtype) for k, v in PEAK_FLOPS.items() if k in kind), None)
  # cost_analysis counts the FLOPs of the per-device program.
  mfu = flops / dt / peak if peak and flops == flops else None
  print(
    json.dumps(
      {
        "model": a.model,
        "image_size": a.image_size,
        "batch_size": a.batch_size,
        "dtype": a.dtype,
        "devices": jax.device_count(),
        "device_kind": kind,
        "compile_s": round(compile_s, 2),
        "step_s": round(dt, 4),
        "images_per_s": round(a.batch_size / dt, 2),
        "flops_per_step_per_device": flops,
        "mfu": None if mfu is None else round(mfu, 4),
        "loss": float(m["loss"]),
      }
    )
  )


if __name__ == "__main__":
  main()
