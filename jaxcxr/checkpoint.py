"""Checkpoints with orbax: the train state *and* the input pipeline's position, saved together.

A checkpoint holds three items (orbax `Composite`):
  - `state`: the train state pytree (step, params, batch statistics, optimizer state);
  - `data`:  the grain iterator state of every process (grain's orbax handler), so a resumed run
             reads exactly the batches an uninterrupted run would, even when stopped mid-epoch;
  - `meta`:  a small JSON record (step, config name, timestamp) for humans and tools.
Saving is asynchronous (the step loop goes on while arrays are written), keeps the newest N and
saves every K steps; `train_and_evaluate` always resumes from the workdir's latest checkpoint first.
`meta.stage` says which stage's optimizer state the checkpoint holds, so that a resumed run can
build the matching restore target before reading the arrays.

A save that fails for lack of space (`ENOSPC`, `EDQUOT`; raised by the save itself or, for
arrays written in the background, by the next save or wait) stops the run with `NoSpaceError`,
naming the folder and the last complete checkpoint: orbax writes a step into
`<step>.orbax-checkpoint-tmp` and renames it only once complete, so the half-written one is never
taken as a checkpoint and a re-run with space resumes from the last complete one.

Every finalized step folder is sealed with `jaxcxr_sha256.json`, the SHA-256 of each of its
files (written by process 0 once orbax has finished the step: at the next save or wait), and
checked before any restore: a flipped byte in an array file otherwise restores silently as a
wrong weight. A step without the file (saved by an older jaxcxr, or the last save before a crash)
restores unchecked; a mismatch raises `DamagedCheckpointError` naming the file.

`BestCheckpointer` keeps, in a second directory (`WORKDIR/best`), the model state (parameters and
batch statistics, no optimizer state) of the best evaluation of a monitor, with orbax's own
`best_fn`/`best_mode` options of `CheckpointManagerOptions`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from absl import logging

from jaxcxr import cli

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class NoSpaceError(cli.UserError):
  """A checkpoint save failed for lack of disk space (or quota)."""


class DamagedCheckpointError(RuntimeError):
  """A checkpoint's step folder exists but its arrays cannot be restored."""


def damaged(step_dir: str, error: BaseException) -> DamagedCheckpointError:
  """The error for a step folder that does not restore: names it, its error and the others."""
  parent, step = os.path.split(os.path.normpath(step_dir))
  others = [s for s in _complete_steps(parent) if str(s) != step]
  reason = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:300]}"
  return DamagedCheckpointError(
    f"The checkpoint {step_dir} cannot be restored: it is damaged, or not of the config's model "
    f"({reason}). Other steps in {parent}: {others or 'none'} (choose one with --step)."
  )


MANIFEST = "jaxcxr_sha256.json"


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def _files(step_dir: str) -> list[str]:
  out = []
  for root, _, names in os.walk(step_dir):
    out += [os.path.relpath(os.path.join(root, n), step_dir) for n in names if n != MANIFEST]
  return sorted(out)


def seal(step_dir: str) -> None:
  """Writes `step_dir/jaxcxr_sha256.json` ({relative path: sha256}) for a finalized step."""
  digests = {rel: _sha256(os.path.join(step_dir, rel)) for rel in _files(step_dir)}
  tmp = os.path.join(step_dir, MANIFEST + ".tmp")
  with open(tmp, "w") as f:
    json.dump(digests, f, indent=0, sort_keys=True)
  os.replace(tmp, os.path.join(step_dir, MANIFEST))


def verify(step_dir: str) -> bool:
  """Checks a step folder against its seal; returns False where it has none (unchecked).

  Raises:
    DamagedCheckpointError: a sealed file is missing or its bytes changed (named), or the seal
      itself does not parse.
  """
  path = os.path.join(step_dir, MANIFEST)
  if not os.path.exists(path):
    return False
  try:
    with open(path) as f:
      digests = json.load(f)
  except (OSError, ValueError) as e:
    raise damaged(step_dir, e) from e
  for rel, want in digests.items():
    full = os.path.join(step_dir, rel)
    if not os.path.exists(full):
      raise damaged(step_dir, FileNotFoundError(f"{rel} is missing (listed in {MANIFEST})"))
    if _sha256(full) != want:
      raise damaged(step_dir, ValueError(f"{rel} changed since it was saved (SHA-256 of "
                                         f"{MANIFEST})"))  # fmt: skip
  return True


class _Sealer:
  """Seals the steps a manager saved once they are final (orbax renames them when done)."""

  def __init__(self, directory: str):
    self.directory, self.pending = directory, []

  def saved(self, step: int) -> None:
    self.pending.append(step)

  def seal_finished(self) -> None:
    """Seals the pending steps; call only when the manager has finished (`wait_until_finished`:
    nothing is written or deleted meanwhile). Steps deleted since (`max_to_keep`) are dropped."""
    for step in self.pending:
      step_dir = os.path.join(self.directory, str(step))
      if jax.process_index() == 0 and os.path.isdir(step_dir):
        seal(step_dir)
    self.pending = []


def _complete_steps(directory: str) -> list[int]:
  """The finalized step folders (orbax renames `<step>.orbax-checkpoint-tmp` once complete)."""
  return (
    sorted(int(d) for d in os.listdir(directory) if d.isdigit()) if os.path.isdir(directory) else []
  )


@contextlib.contextmanager
def _space_errors_named(directory: str) -> Iterator[None]:
  """Re-raises an out-of-space error anywhere in an exception's chain as `NoSpaceError`."""
  try:
    yield
  except Exception as e:  # pylint: disable=broad-except  # orbax wraps and re-raises
    cause: BaseException | None = e
    while cause is not None and not (isinstance(cause, OSError) and cause.errno in _NO_SPACE):
      cause = cause.__cause__ or cause.__context__
    if cause is None:
      raise
    steps = _complete_steps(directory)
    kept = (
      f"The last complete checkpoint, step {steps[-1]}, is kept"
      if steps
      else "No checkpoint is complete yet"
    )
    raise NoSpaceError(
      f"No space left on the device of {directory} ({os.strerror(cause.errno)}): a checkpoint "
      f"could not be saved and the run stops. {kept}; the half-written one is ignored. Free "
      "space (or move the workdir) and re-run to resume."
    ) from e


class Checkpointer:
  """A thin wrapper over `ocp.CheckpointManager` for jaxcxr's three checkpoint items."""

  def __init__(self, directory: str, *, max_to_keep: int = 3, save_every_steps: int = 1000):
    self.directory = os.path.abspath(directory)
    self.manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        save_interval_steps=max(1, save_every_steps),
        enable_async_checkpointing=True,
        create=True,
      ),
    )
    self.sealer = _Sealer(self.directory)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def should_save(self, step: int) -> bool:
    """Whether `save(step, ...)` without `force` would save (orbax's interval)."""
    return self.manager.should_save(step)

  def save(
    self, step: int, state: Any, data_iterator: Any, meta: dict[str, Any], force: bool = False
  ) -> bool:
    """Saves if `step` is on the save interval (or `force`); returns whether it saved."""
    if force or self.manager.should_save(step):
      # orbax's save would wait for the previous one here anyway; waiting first lets that one
      # be sealed while nothing is written.
      self.wait()
    with _space_errors_named(self.directory):
      saved = self.manager.save(
        step,
        args=ocp.args.Composite(
          state=ocp.args.StandardSave(state),
          data=grain.checkpoint.CheckpointSave(data_iterator),
          meta=ocp.args.JsonSave(meta),
        ),
        force=force,
      )
    if saved:
      self.sealer.saved(step)
    return saved

  def restore(self, step: int, abstract_state: Any, data_iterator: Any) -> tuple[Any, Any]:
    """Restores the state (shaped and sharded like `abstract_state`) and the data iterator."""
    verify(os.path.join(self.directory, str(step)))
    restored = self.manager.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=grain.checkpoint.CheckpointRestore(data_iterator),
      ),
    )
    return restored["state"], restored["data"]

  def restore_newest_intact(
    self, abstract_state: Any | Callable[[int], Any], data_iterator: Any
  ) -> tuple[int, Any, Any]:
    """Restores the newest checkpoint that restores: `(step, state, data iterator)`.

    `abstract_state` is the restore target, or a function of the step that returns it (a staged
    run's optimizer state has the shape of the stage that step belongs to).

    Saves are atomic, but a step folder can still be emptied or damaged afterwards (a full or
    failing disk, a partial copy of the workdir). Such a step would block every resume; instead
    it is moved aside to `<directory>_damaged/<step>` (kept, for inspection), a warning names
    it and why it failed, and the previous step is tried.

    Raises:
      RuntimeError: no checkpoint restores; the message names each step and its error.
    """
    failures, failed_steps = [], []
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        target = abstract_state(step) if callable(abstract_state) else abstract_state
        state, data_iterator = self.restore(step, target, data_iterator)
      except Exception as e:  # pylint: disable=broad-except  # orbax/tensorstore raise many types
        reason = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        failures.append(f"step {step}: {reason}")
        failed_steps.append(step)
        logging.warning(
          "The checkpoint of step %d in %s cannot be restored (%s); trying the previous one.",
          step,
          self.directory,
          reason,
        )
        continue
      if failures:
        self._set_aside(failed_steps)
        logging.warning(
          "Resumed from step %d; skipped the damaged newer checkpoint(s): %s (moved to %s).",
          step,
          "; ".join(failures),
          self.directory + "_damaged",
        )
      return step, state, data_iterator
    raise RuntimeError(
      f"No checkpoint in {self.directory} can be restored: {'; '.join(failures) or 'none'}. "
      "Move the folder away to start afresh."
    )

  def _set_aside(self, steps: list[int]) -> None:
    """Moves damaged step folders out of the manager's directory, so new saves can take them."""
    if jax.process_index() == 0:
      aside = self.directory + "_damaged"
      os.makedirs(aside, exist_ok=True)
      for step in steps:
        target = os.path.join(aside, str(step))
        if os.path.exists(target):
          shutil.rmtree(target)
        shutil.move(os.path.join(self.directory, str(step)), target)
    self.manager.reload()

  def restore_meta(self, step: int) -> dict[str, Any]:
    """The JSON `meta` item of checkpoint `step` (reads no arrays)."""
    restored = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(restored["meta"])

  def restore_state(self, step: int, abstract_state: Any) -> Any:
    """Restores only the train state (for evaluation or fine-tuning from a run)."""
    verify(os.path.join(self.directory, str(step)))
    restored = self.manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
    )
    return restored["state"]

  def wait(self) -> None:
    with _space_errors_named(self.directory):
      self.manager.wait_until_finished()
    self.sealer.seal_finished()

  def close(self) -> None:
    self.wait()
    self.manager.close()


class BestCheckpointer:
  """The model state of the best evaluation by `monitor` (orbax ranks and keeps `max_to_keep`)."""

  def __init__(self, directory: str, monitor: str, mode: str, max_to_keep: int = 1):
    if mode not in ("min", "max"):
      raise ValueError(f"best mode {mode!r} is not 'min' or 'max'.")
    self.directory, self.monitor = os.path.abspath(directory), monitor
    self.manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        best_fn=lambda m: m[monitor],
        best_mode=mode,
        keep_checkpoints_without_metrics=False,
        enable_async_checkpointing=True,
        create=True,
      ),
    )
    self.sealer = _Sealer(self.directory)

  def save(self, step: int, state: Any, scalars: dict[str, float]) -> None:
    model = {"params": state.params, "rest": state.rest}
    self.wait()  # As orbax's own save would; the previous best step is sealed meanwhile.
    with _space_errors_named(self.directory):
      saved = self.manager.save(
        step, args=ocp.args.StandardSave(model), metrics=scalars, force=True
      )
    if saved:
      self.sealer.saved(step)

  def wait(self) -> None:
    with _space_errors_named(self.directory):
      self.manager.wait_until_finished()
    self.sealer.seal_finished()

  def discard_after(self, step: int) -> list[int]:
    """Deletes the checkpoints of steps after `step`, the step a run resumes from.

    A run killed after a best save but before its next regular checkpoint leaves best steps the
    resumed run replays (bit-identically) and saves again; orbax refuses to save a step twice
    (`StepAlreadyExistsError`), which would stop every re-run at that step.
    """
    newer = [s for s in self.manager.all_steps() if s > step]
    for s in newer:
      self.manager.delete(s)
    if newer:
      logging.info("Resuming from step %d: best-model steps %s will be replayed.", step, newer)
    return newer

  def best_step(self) -> int | None:
    self.wait()
    return self.manager.best_step()

  def restore(self, step: int, abstract_model: Any) -> dict[str, Any]:
    """`{'params', 'rest'}` of checkpoint `step`, shaped like `abstract_model`."""
    self.wait()  # The step may still be being written (and then sealed).
    verify(os.path.join(self.directory, str(step)))
    return self.manager.restore(step, args=ocp.args.StandardRestore(abstract_model))

  def close(self) -> None:
    self.wait()
    self.manager.close()


def abstract_like(tree: Any) -> Any:
  """`jax.ShapeDtypeStruct`s with shardings, the restore target orbax needs."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
