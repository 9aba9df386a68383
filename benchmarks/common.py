"""Setup shared by the benchmark scripts: a replicated train state, a fixed random batch sharded
over all devices, and jaxcxr's own jitted train step and eval forward (no input pipeline); the
markdown table their rows go into (BENCHMARKS.md)."""

from __future__ import annotations

import functools

import jax
import ml_collections
import numpy as np

from jaxcxr import optim, sharding, train


def jitted_steps(c: ml_collections.ConfigDict, num_classes: int):
  """Returns `(state, batch, jit(train_step), jit(predict_step))` for config `c`."""
  mesh = sharding.make_mesh()
  schedule = optim.make_schedule(c.schedule, c.optimizer.lr, 1000, 100)
  tx = optim.make_optimizer(c.optimizer, schedule)
  graphdef, state = train.create_train_state(c, num_classes, tx)
  state = sharding.replicate(state, mesh)
  rng = np.random.default_rng(0)
  local, size = sharding.local_batch_size(c.input.batch_size, mesh), c.input.image_size
  host = {
    "image": rng.integers(0, 256, (local, size, size, 1), dtype=np.uint8),
    "label": rng.integers(0, num_classes, (local,), dtype=np.int32),
  }
  if c.get("task") == "segmentation":  # 0/1 masks, one blob per image.
    yy, xx = np.mgrid[:size, :size]
    host["mask"] = np.broadcast_to(
      ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2)[None, :, :, None],
      (local, size, size, 1),
    ).astype(np.uint8)
  batch = sharding.shard_batch(host, mesh)
  step = jax.jit(train.bind_train_step(c, graphdef, tx, schedule, num_classes), donate_argnums=0)
  forward = jax.jit(functools.partial(train.predict_step, graphdef=graphdef, config=c))
  return state, batch, step, forward


def markdown_table(cols: list[tuple[str, str]], rows: list[dict], header_suffix: str = "") -> str:
  """A markdown table: `cols` are (heading, row key) pairs; missing values print as '-'."""
  lines = [
    "| " + " | ".join(c for c, _ in cols) + " |" + header_suffix,
    "|" + "---|" * len(cols),
  ]
  for r in rows:
    lines.append("| " + " | ".join(str(r.get(k, "-")) for _, k in cols) + " |")
  return "\n".join(lines)
