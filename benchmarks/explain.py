r"""Throughput of jaxcxr's explanations on this machine: Grad-CAM, Grad-CAM++ and LRP images/s.

    python benchmarks/explain.py                                   # resnet50, densenet121, 224 px
    python benchmarks/explain.py --models resnet_tiny --size 64 --steps 1   # smoke test

For each model (random weights: speed does not depend on them) and method, the jitted batched
call (`jaxcxr.explain.gradcam` / `jaxcxr.explain.lrp`, the ones `predict` would make) on a fixed
random batch: compiled and run `--warmup` times untimed, then `--steps` timed calls. Grad-CAM
is one forward and one backward to the last feature map; LRP one forward and one backward to
the pixels with the composite's rules. Prints one JSON line per (model, method), then a
markdown table.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcxr import explain, models

METHODS = {
  "gradcam": lambda m, x: explain.gradcam(m, x, target=0),
  "gradcam++": lambda m, x: explain.gradcam(m, x, target=0, plus_plus=True),
  "lrp": lambda m, x: explain.lrp(m, x, target=0),
}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--models", default="resnet50,densenet121")
  p.add_argument("--methods", default="gradcam,gradcam++,lrp")
  p.add_argument("--size", type=int, default=224)
  p.add_argument("--batch_size", type=int, default=8)
  p.add_argument("--num_classes", type=int, default=14)
  p.add_argument("--warmup", type=int, default=1)
  p.add_argument("--steps", type=int, default=3)
  a = p.parse_args()
  x = jax.random.normal(jax.random.key(0), (a.batch_size, a.size, a.size, 3))
  rows = []
  for name in a.models.split(","):
    model = models.create(name, num_classes=a.num_classes, rngs=nnx.Rngs(jax.random.key(0)))
    for method in a.methods.split(","):
      fn = METHODS[method]
      t0 = time.perf_counter()
      jax.block_until_ready(fn(model, x))
      compile_s = time.perf_counter() - t0
      for _ in range(a.warmup):
        jax.block_until_ready(fn(model, x))
      t0 = time.perf_counter()
      for _ in range(a.steps):
        out = fn(model, x)
      jax.block_until_ready(out)
      per_call = (time.perf_counter() - t0) / a.steps
      row = {
        "model": name,
        "method": method,
        "px": a.size,
        "batch": a.batch_size,
        "first_call_s": round(compile_s, 2),
        "s_per_batch": round(per_call, 3),
        "images_per_s": round(a.batch_size / per_call, 2),
        "finite": bool(jnp.all(jnp.isfinite(out))),
        "device": jax.devices()[0].device_kind,
      }
      print(json.dumps(row), flush=True)
      rows.append(row)
  print("\n| model | method | px | batch | first call s (incl. compile) | s/batch | images/s |")
  print("|---|---|---|---|---|---|---|")
  for r in rows:
    print(
      f"| {r['model']} | {r['method']} | {r['px']} | {r['batch']} | {r['first_call_s']} "
      f"| {r['s_per_batch']} | {r['images_per_s']} |"
    )


if __name__ == "__main__":
  main()
