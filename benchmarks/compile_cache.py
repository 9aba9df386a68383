r"""Compile time of the first ResNet-50 train step, cold and with the persistent cache warm.

    python benchmarks/compile_cache.py                   # resnet50, 224 px, batch 8, fp32
    python benchmarks/compile_cache.py --model resnet_tiny --image_size 32   # smoke test

Runs the same child process twice against one fresh, empty cache directory
(`JAXCXR_COMPILATION_CACHE_DIR`, see `jaxcxr.compile_cache`): the first compiles and writes the
cache, the second reads it. Each child times `jit(train_step).lower(...).compile()` of jaxcxr's
train step (SGD) and the first step including it. Prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def child(a: argparse.Namespace) -> None:
  import common  # benchmarks/common.py
  import jax

  from jaxcxr import config_lib

  c = config_lib.base_config()
  c.model_name = a.model
  c.input.image_size, c.input.batch_size = a.image_size, a.batch_size
  c.optimizer.name, c.optimizer.lr = "sgd", 0.01
  state, batch, step, _ = common.jitted_steps(c, 14)
  t0 = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  t1 = time.perf_counter()
  jax.block_until_ready(compiled(state, batch))
  print(
    json.dumps(
      {
        "model": a.model,
        "cache_dir": jax.config.jax_compilation_cache_dir,
        "compile_s": round(t1 - t0, 2),
        "first_step_s": round(time.perf_counter() - t0, 2),
      }
    ),
    flush=True,
  )


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--model", default="resnet50")
  p.add_argument("--image_size", type=int, default=224)
  p.add_argument("--batch_size", type=int, default=8)
  p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  a = p.parse_args()
  if a.child:
    return child(a)
  with tempfile.TemporaryDirectory() as cache:
    env = {**os.environ, "JAXCXR_COMPILATION_CACHE_DIR": cache}
    env.pop("JAXCXR_COMPILATION_CACHE", None)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    for run in ("cold", "warm"):
      out = (
        subprocess.run(
          [sys.executable, __file__, "--child", *sys.argv[1:]],
          env=env,
          check=True,
          capture_output=True,
          text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
      )
      print(json.dumps({"run": run, **json.loads(out)}), flush=True)


if __name__ == "__main__":
  main()
