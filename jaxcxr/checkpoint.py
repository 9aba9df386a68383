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

`BestCheckpointer` keeps, in a second directory (`WORKDIR/best`), the model state (parameters and
batch statistics, no optimizer state) of the best evaluation of a monitor, with orbax's own
`best_fn`/`best_mode` options of `CheckpointManagerOptions`.
"""

from __future__ import annotations

import os
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp


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

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(
    self, step: int, state: Any, data_iterator: Any, meta: dict[str, Any], force: bool = False
  ) -> bool:
    """Saves if `step` is on the save interval (or `force`); returns whether it saved."""
    return self.manager.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(data_iterator),
        meta=ocp.args.JsonSave(meta),
      ),
      force=force,
    )

  def restore(self, step: int, abstract_state: Any, data_iterator: Any) -> tuple[Any, Any]:
    """Restores the state (shaped and sharded like `abstract_state`) and the data iterator."""
    restored = self.manager.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=grain.checkpoint.CheckpointRestore(data_iterator),
      ),
    )
    return restored["state"], restored["data"]

  def restore_meta(self, step: int) -> dict[str, Any]:
    """The JSON `meta` item of checkpoint `step` (reads no arrays)."""
    restored = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(restored["meta"])

  def restore_state(self, step: int, abstract_state: Any) -> Any:
    """Restores only the train state (for evaluation or fine-tuning from a run)."""
    restored = self.manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
    )
    return restored["state"]

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
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

  def save(self, step: int, state: Any, scalars: dict[str, float]) -> None:
    model = {"params": state.params, "rest": state.rest}
    self.manager.save(step, args=ocp.args.StandardSave(model), metrics=scalars, force=True)

  def best_step(self) -> int | None:
    self.manager.wait_until_finished()
    return self.manager.best_step()

  def restore(self, step: int, abstract_model: Any) -> dict[str, Any]:
    """`{'params', 'rest'}` of checkpoint `step`, shaped like `abstract_model`."""
    return self.manager.restore(step, args=ocp.args.StandardRestore(abstract_model))

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def abstract_like(tree: Any) -> Any:
  """`jax.ShapeDtypeStruct`s with shardings, the restore target orbax needs."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
