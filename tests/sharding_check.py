"""Run in a subprocess with 8 simulated CPU devices (see test_sharding.py).

One train step of a tiny ResNet on the same global batch, on a 1-device mesh and on an 8-device
mesh: the loss, gradients, updated parameters and batch statistics must agree to fp32 tolerance.
Prints the largest differences as JSON.
"""

import functools
import json
import os

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"

import jax  # noqa: E402
import numpy as np  # noqa: E402

from configs import common  # noqa: E402
from jaxcxr import config_lib, losses, optim, sharding, train  # noqa: E402


def main():
  assert jax.device_count() == 8, jax.devices()
  c = config_lib.base_config()
  c.model_name = "resnet_tiny"
  c.model.in_chans = 1
  c.model.drop_rate = 0.0
  c.input.image_size = 32
  c.input.batch_size = 16
  c.optimizer.name = "radam"
  common.fastai_augment(c)  # Augmentation runs sharded too; its draws must not depend on it.
  rng = np.random.default_rng(0)
  batch = {
    "image": rng.integers(0, 256, (16, 32, 32, 1), dtype=np.uint8),
    "label": rng.integers(0, 3, (16,), dtype=np.int32),
  }
  schedule = optim.make_schedule(c.schedule, 1e-2, 10, 1)
  tx = optim.make_optimizer(c.optimizer, schedule)
  loss_fn = losses.make_loss(c.loss, 3)
  kw = dict(loss_fn=loss_fn, config=c, base_key=jax.random.key(0))
  out = {}
  for n in (1, 8):
    mesh = sharding.make_mesh(jax.devices()[:n])
    graphdef, state = train.create_train_state(c, 3, tx)
    state = sharding.replicate(state, mesh)
    b = sharding.shard_batch(batch, mesh)
    assert len(b["image"].sharding.device_set) == n
    grads_fn = jax.jit(functools.partial(train.loss_and_grads, graphdef=graphdef, **kw))
    loss, _, _, grads = grads_fn(state, b)
    step_fn = jax.jit(train.bind_train_step(c, graphdef, tx, schedule, 3))
    new_state, _ = step_fn(state, b)
    out[n] = jax.device_get((loss, grads, new_state.params, new_state.rest))
  diff = lambda a, b: max(
    float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  )
  grad_scale = max(float(np.max(np.abs(g))) for g in jax.tree.leaves(out[1][1]))
  print(
    json.dumps(
      {
        "loss_1": float(out[1][0]),
        "loss_8": float(out[8][0]),
        "loss": abs(float(out[1][0]) - float(out[8][0])),
        "grads": diff(out[1][1], out[8][1]),
        "grad_scale": grad_scale,
        "params": diff(out[1][2], out[8][2]),
        "batch_stats": diff(out[1][3], out[8][3]),
      }
    )
  )


if __name__ == "__main__":
  main()
