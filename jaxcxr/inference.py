"""A trained run, restored for inference from its workdir alone: config, classes, model state.

`jaxcxr.evaluate`, `jaxcxr.predict`, `jaxcxr.export` and `jaxcxr.markers` restore a run the same
way: the model is built as an abstract graph (`nnx.eval_shape`: nothing is initialised, no
pretrained weights are downloaded) and only its parameters and batch-norm statistics are read
from the checkpoint (orbax partial restore: the optimizer state stays on disk). The run's config
is the `config.json` training wrote, its class names those of `data_splits.json` (the dataset
itself is not opened). The temperature and operating points training fitted on validation are
`jaxcxr.post_hoc`'s (`post_hoc.load(workdir)`).

Which state: `latest` (the newest checkpoint), `best` (the state `config.best_monitor` kept in
`WORKDIR/best`) or a step number of `WORKDIR/checkpoints`. `Predictor` is the restored run's
jitted forward pass (eval mode), which `predict`, `gallery`, `markers` and `lung_mask` share.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any

import flax
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from jaxcxr import checkpoint as ckpt_lib
from jaxcxr import config_lib
from jaxcxr.training import steps as steps_lib

RUN_CONFIG = "config.json"
RUN_SPLITS = "data_splits.json"


@flax.struct.dataclass
class ModelState:
  """What inference needs of a train state (`train_step`'s `params` and `rest`)."""

  params: nnx.State
  rest: nnx.State


@dataclasses.dataclass
class Restored:
  """A run restored for inference."""

  config: ml_collections.ConfigDict
  class_names: list[str]
  graphdef: nnx.GraphDef
  state: ModelState
  step: int
  select: str  # 'latest', 'best' or 'step'

  def model(self) -> nnx.Module:
    return nnx.merge(self.graphdef, self.state.params, self.state.rest)


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run trained with (`WORKDIR/config.json`, `config_lib.from_run_json`).

  Keys the run saved and the current schema lacks are errors naming them, so a config of an
  incompatible version is not silently half-read.
  """
  path = os.path.join(workdir, RUN_CONFIG)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} not found: is {workdir!r} a jaxcxr training workdir?")
  with open(path) as f:
    saved = json.load(f)
  try:
    return config_lib.from_run_json(saved)
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from e


def class_names(workdir: str) -> list[str]:
  """The run's class names, from `WORKDIR/data_splits.json` (written before the first step)."""
  path = os.path.join(workdir, RUN_SPLITS)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} not found: is {workdir!r} a jaxcxr training workdir?")
  with open(path) as f:
    return list(json.load(f)["class_names"])


def resolve_step(workdir: str, step: str | int | None) -> tuple[str, int]:
  """`(select, step)` for `step` in ('latest', 'best', None, N); errors name what exists."""
  ckpts = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
  steps = sorted(ckpts.manager.all_steps())
  ckpts.close()
  if step in (None, "latest"):
    if not steps:
      raise FileNotFoundError(f"No checkpoint in {workdir}/checkpoints.")
    return "latest", max(steps)
  if step == "best":
    best_dir = os.path.join(workdir, "best")
    found = [int(d) for d in os.listdir(best_dir) if d.isdigit()] if os.path.isdir(best_dir) else []
    if not found:
      raise FileNotFoundError(
        f"{best_dir}: no best checkpoint (the run kept none: set config.best_monitor)."
      )
    # max_to_keep=1: the one kept is the best.
    return "best", max(found)
  try:
    n = int(step)
  except (TypeError, ValueError) as e:
    raise ValueError(f"step {step!r} is not 'latest', 'best' or a step number.") from e
  if n not in steps:
    raise FileNotFoundError(f"No checkpoint of step {n} in {workdir}/checkpoints; it has {steps}.")
  return "step", n


def abstract_model(
  config: ml_collections.ConfigDict, num_classes: int
) -> tuple[nnx.GraphDef, ModelState]:
  """The run's model graph and the shapes of its state (nothing allocated or downloaded)."""
  from jaxcxr.training.model_init import create_model  # pylint: disable=g-import-not-at-top

  model = nnx.eval_shape(lambda: create_model(config, num_classes, init=False))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return graphdef, ModelState(params=params, rest=rest)


def restore_state(
  workdir: str, select: str, step: int, abstract: ModelState, sharding: Any = None
) -> ModelState:
  """Parameters and statistics of checkpoint `step` (`select='best'`: of `WORKDIR/best`)."""
  target = {"params": abstract.params, "rest": abstract.rest}
  target = jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding or _single()), target
  )
  directory = os.path.join(workdir, "best" if select == "best" else "checkpoints")
  ckpt_lib.verify(os.path.join(directory, str(step)))  # Its seal: no changed byte restores.
  mgr = ocp.CheckpointManager(directory)
  try:
    if select == "best":
      restored = mgr.restore(step, args=ocp.args.StandardRestore(target))
    else:
      restored = mgr.restore(
        step,
        args=ocp.args.Composite(
          state=ocp.args.PyTreeRestore(
            item=target,
            restore_args=ocp.checkpoint_utils.construct_restore_args(target),
            partial_restore=True,  # params and rest only: no optimizer state is read
          )
        ),
      )["state"]
  except Exception as e:  # pylint: disable=broad-except  # orbax/tensorstore raise many types
    # A damaged file gives a UnicodeDecodeError, a tensorstore DATA_LOSS or a KeyError that
    # names no step (or only a file deep inside it).
    raise ckpt_lib.damaged(os.path.join(directory, str(step)), e) from e
  finally:
    mgr.close()
  return ModelState(params=restored["params"], rest=restored["rest"])


def _single() -> jax.sharding.Sharding:
  return jax.sharding.SingleDeviceSharding(jax.local_devices()[0])


def restore(
  workdir: str,
  step: str | int | None = "latest",
  config: ml_collections.ConfigDict | None = None,
  sharding: Any = None,
) -> Restored:
  """Restores the run in `workdir` for inference.

  Args:
    workdir: a training workdir.
    step: 'latest' (or None), 'best' or a checkpoint step.
    config: the run's config; default: the one saved in the workdir.
    sharding: where the arrays go (default: the first local device; evaluation passes the
      mesh's replicated sharding).
  """
  workdir = os.path.abspath(workdir)
  config = config if config is not None else load_run_config(workdir)
  names = class_names(workdir)
  select, n = resolve_step(workdir, step)
  graphdef, abstract = abstract_model(config, config.num_classes or len(names))
  state = restore_state(workdir, select, n, abstract, sharding)
  return Restored(config, names, graphdef, state, n, select)


@dataclasses.dataclass
class Predictor:
  """A restored run's jitted forward pass: uint8 images → float32 logits, in padded batches."""

  restored: Restored
  batch_size: int = 32

  def __post_init__(self):
    r = self.restored
    self._logits = jax.jit(
      functools.partial(steps_lib.predict_logits, graphdef=r.graphdef, config=r.config)
    )

  def logits(self, batch_images: np.ndarray) -> np.ndarray:
    """Logits of uint8 `(N, S, S, 1)` images (padded to `batch_size`: one compiled shape)."""
    out = []
    for start in range(0, len(batch_images), self.batch_size):
      chunk = batch_images[start : start + self.batch_size]
      padded = np.zeros((self.batch_size, *chunk.shape[1:]), np.uint8)
      padded[: len(chunk)] = chunk
      out.append(np.asarray(self._logits(self.restored.state, {"image": padded}))[: len(chunk)])
    return np.concatenate(out)

  def probabilities(self, logits: np.ndarray) -> np.ndarray:
    return np.asarray(steps_lib.probabilities(logits, self.restored.config))
