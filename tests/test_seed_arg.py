"""The train step takes the seed as an input (`steps.seed_arg`), so runs that differ only in
their seed compile to one program (the persistent compilation cache serves every seed) and draw
exactly what the seed-as-constant step draws."""

import jax
import numpy as np
import pytest

from configs import common
from jaxcxr import config_lib, optim, train
from jaxcxr.training import steps


def _setup(seed: int):
  c = config_lib.base_config()
  c.model_name, c.model.in_chans, c.seed = "resnet_tiny", 1, seed
  c.input.image_size, c.input.batch_size = 32, 4
  common.fastai_augment(c)  # Augmentation and dropout draw from the seed's key.
  schedule = optim.make_schedule(c.schedule, 1e-2, 10, 1)
  tx = optim.make_optimizer(c.optimizer, schedule)
  graphdef, state = train.create_train_state(c, 3, tx)
  rng = np.random.default_rng(0)
  batch = {
    "image": rng.integers(0, 256, (4, 32, 32, 1), dtype=np.uint8),
    "label": rng.integers(0, 3, (4,), dtype=np.int32),
  }
  return c, state, batch, steps.bind_train_step(c, graphdef, tx, schedule, 3)


def test_seeds_share_one_program_and_draw_as_the_constant():
  texts, const_texts, outs = [], [], []
  for seed in (0, 5):
    c, state, batch, step = _setup(seed)
    texts.append(jax.jit(step).lower(state, batch, steps.seed_arg(seed)).as_text())
    const_texts.append(jax.jit(step).lower(state, batch).as_text())
    as_arg = jax.jit(step)(state, batch, steps.seed_arg(seed))
    as_const = jax.jit(step)(state, batch)
    for a, b in zip(jax.tree.leaves(as_arg), jax.tree.leaves(as_const), strict=True):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    outs.append(as_arg[1]["loss"])
  assert texts[0] == texts[1]  # One program for both seeds.
  assert const_texts[0] != const_texts[1]  # The seed as a constant: two programs.
  assert float(outs[0]) != float(outs[1])  # The seeds do draw differently.


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_seed_out_of_range_is_refused(seed):
  with pytest.raises(ValueError, match=r"config.seed="):
    steps.seed_arg(seed)
