r"""Head-only stage vs full fine-tuning: train-step images/s of the same backbone, same batch.

    python benchmarks/staged.py --models resnet50,densenet121 --image_size 224 --batch_size 8

Runs jaxcxr's jitted train step twice per model on a fixed random batch: every parameter
training (today's single stage), and a head-only stage (`config_lib.stage(trainable=('head',),
bn_stats='frozen')`: the body under `stop_gradient`, no optimizer state for it). Prints one JSON
line per (model, mode) with compile seconds and images/s over the timed steps, then the speed-up.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcxr import config_lib, sharding, train
from jaxcxr.training import stages as stages_lib


def measure(model: str, image_size: int, batch: int, head_only: bool, steps: int) -> dict:
  c = config_lib.base_config()
  c.model_name, c.model.in_chans = model, 3
  c.input.image_size, c.input.batch_size = image_size, batch
  c.optimizer.name = "radam"
  c.total_steps = 1000
  if head_only:
    c.total_steps = 0
    c.stages = (config_lib.stage(total_steps=1000, trainable=("head",), bn_stats="frozen"),)
  mesh = sharding.make_mesh()
  graphdef, state = train.create_train_state(c, 3, optax.identity())
  (st,) = stages_lib.resolve(c, 100, state.params, state.rest)
  schedule = st.schedule_fn(100)
  tx = st.make_tx(schedule)
  state = sharding.replicate(train.begin_stage(state, st, tx), mesh)
  step = jax.jit(
    train.bind_train_step(
      c, graphdef, tx, schedule, 3,
      trainable=st.trainable_tree(state.params), keep_stats=st.keep_stats_tree(state.rest),
    ),
    donate_argnums=0,
  )  # fmt: skip
  rng = np.random.default_rng(0)
  b = sharding.shard_batch(
    {
      "image": rng.integers(0, 256, (batch, image_size, image_size, 1), dtype=np.uint8),
      "label": rng.integers(0, 3, (batch,), dtype=np.int32),
    },
    mesh,
  )
  t0 = time.perf_counter()
  state, m = step(state, b)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(steps):
    state, m = step(state, b)
  jax.block_until_ready(m)
  dt = (time.perf_counter() - t0) / steps
  opt_floats = sum(x.size for x in jax.tree.leaves(state.opt_state) if jnp.ndim(x))
  return {
    "model": model, "mode": "head_only" if head_only else "full", "px": image_size,
    "batch": batch, "compile_s": round(compile_s, 1), "s_per_step": round(dt, 3),
    "images_per_sec": round(batch / dt, 2), "optimizer_state_floats": int(opt_floats),
  }  # fmt: skip


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--models", default="resnet50,densenet121")
  p.add_argument("--image_size", type=int, default=224)
  p.add_argument("--batch_size", type=int, default=8)
  p.add_argument("--steps", type=int, default=3)
  a = p.parse_args()
  for model in a.models.split(","):
    rows = [measure(model, a.image_size, a.batch_size, h, a.steps) for h in (False, True)]
    for r in rows:
      print(json.dumps(r), flush=True)
    print(
      json.dumps(
        {
          "model": model,
          "head_only_speedup": round(rows[1]["images_per_sec"] / rows[0]["images_per_sec"], 2),
        }
      ),
      flush=True,
    )


if __name__ == "__main__":
  main()
