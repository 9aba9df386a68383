"""What stops a training run on purpose: divergence (non-finite numbers) and preemption.

`FiniteGuard` (a hook) stops a run whose loss or gradient norm turns NaN or infinite, before any
non-finite state is evaluated or saved. Each train step returns a device bool `finite`
(`jaxcxr.training.steps.train_step`); the guard keeps those flags on the device and fetches them
only where the loop synchronises anyway: at a logging step, before an evaluation and before each
checkpoint save (latest or best). Fetching a flag every step would stall JAX's asynchronous
dispatch (the host would wait for each step before queueing the next). On a non-finite step it
waits for the saves in flight, so the newest checkpoint (saved only after its flags were checked,
hence finite) is complete and is never rotated away by a later save, and raises `NonFiniteError`
naming the first bad step and that checkpoint. A state that is finite but whose evaluation
outputs are not (weights so large that the forward pass overflows) is reported the same way, at
the evaluation. `config.optimizer.skip_nonfinite = N` lets `optax.apply_if_finite` skip up to N
consecutive bad steps instead.

`Preemption` (a hook) turns SIGTERM, the notice schedulers (SLURM, Kubernetes, spot VMs) send
before they kill a job, into a save at the current step and an exit with status
`PREEMPTED_EXIT_CODE`; re-running the same command resumes exactly. On several processes each
host may get its notice at a different step, so the stop step comes from JAX's preemption service
(`jax.experimental.multihost_utils.reached_preemption_sync_point`, on by default with
`jax.distributed`), which agrees on one step for all hosts and listens for SIGTERM itself.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

import jax
from absl import logging

from jaxcxr import cli

DIVERGED_EXIT_CODE = 4
# sysexits.h EX_TEMPFAIL: "a temporary failure; the user is invited to retry".
PREEMPTED_EXIT_CODE = 75


class NonFiniteError(cli.UserError):
  """Training diverged: a loss, gradient norm or state value is NaN or infinite."""

  exit_code = DIVERGED_EXIT_CODE


class Preempted(cli.UserError):
  """The run was asked to stop (SIGTERM or a preemption notice) and saved its current step."""

  exit_code = PREEMPTED_EXIT_CODE


class FiniteGuard:
  """Checks the train steps' `finite` flags where the loop synchronises anyway (see module doc).

  Hooks that evaluate or save call `check(loop)` first (through `Loop.ensure_finite`); the guard's
  own `after_step` records the step's flag and checks at the logging interval.
  """

  def __init__(self, log_every: int, checkpointer: Any, best: Any = None, what_to_try: str = ""):
    self.every = max(1, int(log_every))
    self.checkpointer, self.best, self.what_to_try = checkpointer, best, what_to_try
    self.pending: list[tuple[int, int, Any]] = []  # (step, stage, that step's device metrics)

  def after_step(self, loop: Any) -> None:
    self.pending.append((loop.step, loop.stage.index, loop.step_metrics))
    if loop.step % self.every == 0:
      self.check(loop)

  def check(self, loop: Any) -> None:
    """Raises `NonFiniteError` if a step since the last check was not finite."""
    del loop
    if not self.pending:
      return
    flags = jax.device_get([m["finite"] for _, _, m in self.pending])
    bad = next((p for p, ok in zip(self.pending, flags, strict=True) if not ok), None)
    self.pending = []
    if bad is not None:
      step, stage, step_metrics = bad
      values = {k: float(jax.device_get(step_metrics[k])) for k in ("loss", "grad_norm")}
      self.fail(
        step,
        stage,
        f"loss={values['loss']:g}, grad_norm={values['grad_norm']:g} (or the state after it is "
        "not finite)",
      )

  def fail(self, step: int, stage: int, what: str) -> None:
    """Raises `NonFiniteError` for `step`, once the saves in flight are complete."""
    # The saves in flight (of checked, finite states) complete before the error ends the run.
    if self.best is not None:
      self.best.wait()
    self.checkpointer.wait()
    last = self.checkpointer.latest_step()
    kept_text = (
      f"the last finite checkpoint, step {last} in {self.checkpointer.directory}, is kept"
      if last is not None
      else f"no checkpoint had been saved yet in {self.checkpointer.directory}"
    )
    raise NonFiniteError(
      f"Training diverged at step {step} (stage {stage}): {what.rstrip('.')}. Nothing "
      f"non-finite was saved; {kept_text}. {self.what_to_try}"
    )


def guard_advice(config: Any) -> str:
  """What to change when a run diverges, in the config's own keys."""
  return (
    f"Lower config.optimizer.lr (now {config.optimizer.lr:g}), set "
    "config.optimizer.grad_clip_norm, or let up to N consecutive bad steps be skipped with "
    "config.optimizer.skip_nonfinite=N; re-running unchanged resumes from that checkpoint and "
    "diverges again."
  )


def _multihost_preemption() -> bool:
  """Whether JAX's preemption service runs (jax.distributed with several processes)."""
  from jax._src import distributed  # pylint: disable=g-import-not-at-top

  state = distributed.global_state
  return state.client is not None and state.preemption_sync_manager is not None


class Preemption:
  """A hook: after SIGTERM (or, multi-host, at JAX's preemption sync point) the loop halts, the
  Checkpoint hook after it saves the current step, and `raise_if_stopped` ends the run.

  `arm()` installs the SIGTERM handler for the training loop only; `disarm()` restores the one
  before it (so a SIGTERM during set-up or the final evaluation terminates the process as usual:
  there is nothing new to save then). A second SIGTERM while stopping terminates at once.
  """

  def __init__(self) -> None:
    self.multihost = _multihost_preemption()
    self.requested = False
    self.stopped_at: int | None = None
    self._previous: Any = None
    self._armed = False

  def arm(self) -> None:
    if self.multihost or threading.current_thread() is not threading.main_thread():
      return  # JAX's service watches SIGTERM; Python handlers can only be set in the main thread.
    self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
    self._armed = True

  def disarm(self) -> None:
    if self._armed:  # None: a handler set outside Python, which cannot be put back.
      signal.signal(signal.SIGTERM, self._previous or signal.SIG_DFL)
      self._armed = False

  def _on_sigterm(self, signum: int, frame: Any) -> None:
    del frame
    if self.requested:  # Asked twice: stop waiting for the save.
      self.disarm()
      os.kill(os.getpid(), signum)
      return
    self.requested = True

  def after_step(self, loop: Any) -> None:
    if self.multihost:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

      hit = multihost_utils.reached_preemption_sync_point(loop.step)
    else:
      hit = self.requested
    if hit and self.stopped_at is None:
      logging.warning("Preemption notice: saving step %d and stopping.", loop.step)
      self.stopped_at = loop.step
      loop.halt = True

  def raise_if_stopped(self, checkpoint_dir: str) -> None:
    if self.stopped_at is not None:
      raise Preempted(
        f"preempted (SIGTERM) after step {self.stopped_at}: its checkpoint is saved in "
        f"{checkpoint_dir}; re-run the same command to resume (exit status {PREEMPTED_EXIT_CODE})."
      )


def restores_sigterm(fn: Callable[..., Any]) -> Callable[..., Any]:
  """Decorator: `fn` leaves the SIGTERM handler as it found it, however it ends (a `Preemption`
  armed inside it and not disarmed because of an exception is undone)."""

  @functools.wraps(fn)
  def wrapper(*args: Any, **kwargs: Any) -> Any:
    if threading.current_thread() is not threading.main_thread():
      return fn(*args, **kwargs)
    previous = signal.getsignal(signal.SIGTERM)
    try:
      return fn(*args, **kwargs)
    finally:
      signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)

  return wrapper
