"""The training loop's data-wait metric (`train/data_wait_fraction`, issue 13): the time spent in
`next(train_iter)` as a share of each logging interval's wall time."""

import time
import types

import jax.numpy as jnp

from jaxcxr.training import hooks


class _Writer:
  def __init__(self):
    self.scalars = {}

  def add_scalar(self, name, value, step):
    self.scalars[name] = value


def _slow_iter(delay):
  while True:
    time.sleep(delay)
    yield {"image": 0}


def test_data_wait_fraction_measures_time_in_next():
  loop = hooks.Loop(state=None, stage=types.SimpleNamespace(index=0), step=0, writer=_Writer())
  metrics = hooks.TrainMetrics(every_steps=4, global_batch=2, start_step=0)
  it = _slow_iter(0.05)
  for _ in range(4):
    hooks.next_batch(it, loop)
    time.sleep(0.05)  # The "step": as long as the wait, so the fraction is about 1/2.
    loop.step += 1
    loop.step_metrics = {"loss": jnp.float32(1.0), "lr": jnp.float32(0.1)}
    metrics.after_step(loop)
  frac = loop.writer.scalars["train/data_wait_fraction"]
  assert 0.3 < frac < 0.7, frac
  assert loop.data_wait == 0.0  # Reset for the next interval.


def test_data_wait_fraction_near_zero_for_a_ready_iterator():
  loop = hooks.Loop(state=None, stage=types.SimpleNamespace(index=0), step=0, writer=_Writer())
  metrics = hooks.TrainMetrics(every_steps=3, global_batch=2, start_step=0)
  it = _slow_iter(0.0)
  for _ in range(3):
    hooks.next_batch(it, loop)
    time.sleep(0.05)
    loop.step += 1
    loop.step_metrics = {"loss": jnp.float32(1.0), "lr": jnp.float32(0.1)}
    metrics.after_step(loop)
  assert loop.writer.scalars["train/data_wait_fraction"] < 0.1
