"""Periodic actions of the training loop, as small objects it calls after every step.

The loop (`jaxcxr.train.train_and_evaluate`) owns a `Loop` record (the state, the stage, the
step, the latest monitored scalars) and calls `hook.after_step(loop)` for each hook in order:
the finite guard, evaluation, plateau, early stopping, best checkpoint, halting, preemption,
train-metric means, checkpoint (the guard and preemption hooks live in `training.guards`).
A hook reads and writes the record only; none runs the model except `Evaluate`. Hooks that read
the state on the host (logging, evaluation, saves) call `loop.ensure_finite()` first: the
`jaxcxr.training.guards.FiniteGuard` check, which stops a diverged run before it is evaluated or
saved.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxcxr.training import stages as stages_lib


@dataclasses.dataclass
class Loop:
  """What the hooks share; `state` is the current TrainState."""

  state: Any
  stage: stages_lib.Stage
  step: int  # Global steps done.
  # Steps done in this stage, counted on the host from the state's value at the stage's start
  # (every train step adds one): reading `state.stage_step` would sync with the device each step.
  stage_step: int = 0
  step_metrics: Any = None  # The last step's (device) metrics.
  writer: Any = None
  progress: Any = None
  evaluated: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # This step's.
  monitors: dict[str, float] = dataclasses.field(default_factory=dict)  # Latest scalars.
  stage_over: bool = False  # The stage ends after this step (length reached or early stop).
  halt: bool = False  # Save and exit after this step.
  guard: Any = None  # A guards.FiniteGuard (None: no check).
  # Host seconds spent in `next(train_iter)` since the last logged interval (the loop adds them,
  # `TrainMetrics` logs their share of the interval's wall time and resets them).
  data_wait: float = 0.0

  def ensure_finite(self) -> None:
    """Raises `guards.NonFiniteError` if a step not yet checked was not finite."""
    if self.guard is not None:
      self.guard.check(self)


def stage_over(state: Any, stage: stages_lib.Stage) -> bool:
  """True once a stage's steps are done or its early stopping has run out of patience."""
  es = int(stage.early_stopping.patience)
  return int(state.stage_step) >= stage.total_steps or bool(es and int(state.stop_wait) >= es)


def next_batch(train_iter: Any, loop: Loop) -> Any:
  """`next(train_iter)`, its wall time added to `loop.data_wait` (`train/data_wait_fraction`)."""
  start = time.perf_counter()
  batch = next(train_iter)
  loop.data_wait += time.perf_counter() - start
  return batch


class TrainMetrics:
  """Means of the step metrics over each logging interval (not the interval's last step)."""

  def __init__(self, every_steps: int, global_batch: int, start_step: int):
    self.every, self.global_batch = max(1, every_steps), global_batch
    self.buffer: list[Any] = []
    self.t_last, self.step_last = time.perf_counter(), start_step

  def after_step(self, loop: Loop) -> None:
    self.buffer.append(loop.step_metrics)
    if loop.step % self.every and not loop.stage_over and not loop.halt:
      return
    loop.ensure_finite()
    stacked = jax.device_get(jax.tree.map(lambda *xs: jnp.stack(xs), *self.buffer))
    scalars = {k: float(np.mean(v)) for k, v in stacked.items()}
    scalars["lr"] = float(stacked["lr"][-1])  # The rate now, not a mean.
    now = time.perf_counter()
    elapsed = now - self.t_last
    scalars["images_per_sec"] = (loop.step - self.step_last) * self.global_batch / elapsed
    # The share of the interval the loop stood waiting for the input pipeline: near 0 when the
    # host keeps up (device dispatch is asynchronous, so compute overlaps the next fetch).
    scalars["data_wait_fraction"] = min(1.0, loop.data_wait / elapsed) if elapsed > 0 else 0.0
    loop.data_wait = 0.0
    self.t_last, self.step_last, self.buffer = now, loop.step, []
    if loop.writer:
      for k, v in scalars.items():
        loop.writer.add_scalar(f"train/{k}", v, loop.step)
      loop.writer.add_scalar("train/stage", loop.stage.index, loop.step)
    if loop.progress:
      loop.progress.set_postfix(
        stage=loop.stage.index,
        loss=f"{scalars['loss']:.4f}",
        lr=f"{scalars['lr']:.2e}",
        img_s=f"{scalars['images_per_sec']:.1f}",
      )


class Evaluate:
  """Runs each evaluator on its interval; records its scalars as `<name>_<scalar>` monitors."""

  def __init__(self, evaluators: dict[str, Any], default_every: int, workdir: str, is_main: bool):
    self.evaluators, self.default_every = evaluators, default_every
    self.workdir, self.is_main = workdir, is_main

  def after_step(self, loop: Loop) -> None:
    loop.evaluated = {}
    for name, ev in self.evaluators.items():
      every = ev.every_steps or self.default_every
      if not every or loop.stage_step % every:
        continue
      loop.ensure_finite()
      try:
        result = ev.run(loop.state)
      except FloatingPointError as e:  # finite weights whose outputs overflow
        if loop.guard is None:
          raise
        loop.guard.fail(loop.step, loop.stage.index, str(e))
      scalars = ev.scalars(result)
      loop.evaluated[name] = result
      loop.monitors.update({f"{name}_{k}": v for k, v in scalars.items()})
      log_eval(loop.writer, ev.split, scalars, loop.step)
      if self.is_main:
        with open(os.path.join(self.workdir, "eval", "history.jsonl"), "a") as f:
          row = {"step": loop.step, "stage": loop.stage.index, "evaluator": name}
          f.write(json.dumps({**row, "split": ev.split, **result}) + "\n")


def _monitored(loop: Loop, monitor: str, evaluator: str) -> float | None:
  """The monitor's value if its evaluator ran this step, else None."""
  if evaluator not in loop.evaluated:
    return None
  if monitor not in loop.monitors:
    raise KeyError(
      f"Monitor {monitor!r} is not a scalar of evaluator {evaluator!r}: {sorted(loop.monitors)}."
    )
  return loop.monitors[monitor]


class Plateau:
  """optax.contrib.reduce_on_plateau on a monitor; its scale multiplies every update."""

  def __init__(self, stage: stages_lib.Stage, evaluator: str):
    self.monitor, self.evaluator = stage.plateau.monitor, evaluator
    self.sign = stages_lib.monitor_sign(self.monitor)
    tx = stages_lib.plateau_tx(stage)
    self.update = jax.jit(lambda s, v: tx.update(jnp.zeros(()), s, value=v)[1])

  def after_step(self, loop: Loop) -> None:
    value = _monitored(loop, self.monitor, self.evaluator)
    if value is None:
      return
    old = float(loop.state.plateau.scale)
    plateau = self.update(loop.state.plateau, jnp.float32(self.sign * value))
    loop.state = loop.state.replace(plateau=plateau)
    if float(plateau.scale) != old:
      logging.info(
        "Plateau on %s: learning-rate scale %g → %g", self.monitor, old, float(plateau.scale)
      )


class EarlyStopping:
  """Ends the stage after `patience` evaluations without an improvement over `min_delta`."""

  def __init__(self, stage: stages_lib.Stage, evaluator: str):
    es = stage.early_stopping
    self.monitor, self.evaluator = es.monitor, evaluator
    self.patience, self.min_delta = int(es.patience), float(es.min_delta)
    self.sign = stages_lib.monitor_sign(self.monitor)

  def after_step(self, loop: Loop) -> None:
    value = _monitored(loop, self.monitor, self.evaluator)
    if value is None:
      return
    v = self.sign * value  # Minimised.
    best, wait = float(loop.state.stop_best), int(loop.state.stop_wait)
    if v < best - self.min_delta:
      best, wait = v, 0
    else:
      wait += 1
    loop.state = loop.state.replace(stop_best=jnp.float32(best), stop_wait=jnp.int32(wait))
    if wait >= self.patience:
      logging.info(
        "Early stopping: %s has not improved for %d evaluations; stage %d ends at step %d.",
        self.monitor, wait, loop.stage.index, loop.step,
      )  # fmt: skip
      loop.stage_over = True


class BestCheckpoint:
  """Saves the model state whenever its monitor is evaluated; orbax keeps the best one."""

  def __init__(self, best: Any, monitor: str, evaluator: str):
    self.best, self.monitor, self.evaluator = best, monitor, evaluator

  def after_step(self, loop: Loop) -> None:
    value = _monitored(loop, self.monitor, self.evaluator)
    if value is not None:
      loop.ensure_finite()
      self.best.save(loop.step, loop.state, {self.monitor: value})


class Halt:
  """Stops the invocation after `halt_at` global steps (job-time limits; re-run resumes)."""

  def __init__(self, halt_at: int | None):
    self.halt_at = halt_at

  def after_step(self, loop: Loop) -> None:
    if self.halt_at is not None and loop.step >= self.halt_at:
      loop.halt = True


class Checkpoint:
  """Saves on orbax's interval, and always at a stage's end or a halt."""

  def __init__(self, checkpointer: Any, meta: dict[str, Any], data_iterator: Any):
    self.checkpointer, self.meta, self.data_iterator = checkpointer, meta, data_iterator

  def after_step(self, loop: Loop) -> None:
    meta = {**self.meta, "step": loop.step, "stage": loop.stage.index}
    force = loop.stage_over or loop.halt
    if force or self.checkpointer.should_save(loop.step):
      loop.ensure_finite()  # Only where it saves: a check is a device-to-host sync.
    self.checkpointer.save(loop.step, loop.state, self.data_iterator, meta, force=force)


def log_eval(writer, split: str, scalars: dict[str, float], step: int) -> None:
  logging.info("eval %s @ step %d: %s", split, step, scalars)
  if writer:
    for k, v in scalars.items():
      writer.add_scalar(f"{split}/{k}", v, step)
    writer.flush()
