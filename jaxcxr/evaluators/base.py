"""The evaluator registry, the context every evaluator gets and the one pass over a split that
they share (a leaf: imports no evaluator).

Evaluator modules register themselves with `@register('type')`; `jaxcxr.evaluators` imports them.
`predict_split` runs the jitted eval step over every example of a split exactly once: each process
evaluates its own slice of the split (`pipeline.eval_batches`, the last batch padded with
`mask == 0`), keeps its rows on the host, and the processes exchange them in one gather per split,
after the last batch (a gather per batch would stall every step on a collective).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from jaxcxr import sharding
from jaxcxr.data import pipeline

_TYPES: dict[str, type] = {}


def register(name: str) -> Callable[[type], type]:
  def decorator(cls: type) -> type:
    if name in _TYPES:
      raise ValueError(f"Evaluator type {name!r} is already registered by {_TYPES[name]}.")
    _TYPES[name] = cls
    return cls

  return decorator


@dataclasses.dataclass
class EvalContext:
  """What every evaluator may use: the run's data, model graph and jitted eval step."""

  config: ml_collections.ConfigDict
  mesh: jax.sharding.Mesh
  data: Any  # jaxcxr.data.splits.Data
  class_names: list[str]
  graphdef: nnx.GraphDef
  eval_step: Callable[..., dict[str, jax.Array]]  # jit(steps.eval_step) bound to the run.


def create(name: str, cfg: ml_collections.ConfigDict, ctx: EvalContext) -> Any:
  kind = cfg.get("type", "classification")
  if kind not in _TYPES:
    raise ValueError(
      f"config.evals.{name}.type={kind!r} is not a registered evaluator: {sorted(_TYPES)}."
    )
  return _TYPES[kind](name, cfg, ctx)


def types() -> list[str]:
  return sorted(_TYPES)


def _probs_and_loss(out: dict[str, jax.Array]) -> dict[str, jax.Array]:
  return {"probs": out["probs"], "loss": out["loss"]}


def predict_split(
  ctx: EvalContext,
  state: Any,
  source: Any,
  *,
  with_masks: bool = False,
  outputs: Callable[[dict[str, jax.Array]], dict[str, jax.Array]] = _probs_and_loss,
  augment_key: jax.Array | None = None,
) -> dict[str, np.ndarray]:
  """Per-example outputs of `ctx.eval_step` on every example of `source`, once, in split order.

  Returns `outputs(step_outputs)` (batch-sharded device arrays, by default `probs` and `loss`;
  reduce there what need not reach the host, e.g. a threshold), the batch's `label` (with
  `with_masks`: its `seg` masks, the step's target, and `image`s instead), `index` (into the
  split: `arange(len(source))`) and, where the split has them, `patient` ids. Padding rows are
  dropped; everything is gathered to every process once, after the last batch. `augment_key`:
  the images are augmented in the step, batch b from `fold_in(augment_key, b)` (the same draws
  at every evaluation; `config.augment_eval`).
  """
  config, mesh = ctx.config, ctx.mesh
  global_bs = config.input.eval_batch_size or config.input.batch_size
  local_bs = sharding.local_batch_size(global_bs, mesh)
  host_keys = ("seg", "image") if with_masks else ("label",)
  local: dict[str, list[np.ndarray]] = {}
  pending = None  # The previous batch's device outputs, copied to host once the next is queued.
  for b, batch in enumerate(
    pipeline.eval_batches(
      source,
      local_batch_size=local_bs,
      image_size=config.input.image_size,
      **pipeline.resize_args(config.input),
      num_threads=config.input.num_threads,
      with_masks=with_masks,
    )
  ):
    sharded = sharding.shard_batch({"image": batch["image"], "label": batch[host_keys[0]]}, mesh)
    if augment_key is None:
      out = outputs(ctx.eval_step(state, sharded))
    else:
      out = outputs(ctx.eval_step(state, sharded, jax.random.fold_in(augment_key, b)))
    if pending is not None:
      _append(local, sharding.to_local(pending, mesh))
    pending = out
    _append(local, {k: batch[k] for k in (*host_keys, "mask")})
  _append(local, sharding.to_local(pending, mesh))
  rows = {k: np.concatenate(v) for k, v in local.items()}
  gathered = sharding.process_allgather(rows)  # Concatenated in process order.
  # eval_batches' rule: process p reads rows [p * per, (p + 1) * per) in order, then padding.
  per, n_local = math.ceil(len(source) / jax.process_count()), len(rows["mask"])
  index = (np.arange(jax.process_count())[:, None] * per + np.arange(n_local)).ravel()
  keep = gathered.pop("mask") > 0
  res = {k: v[keep] for k, v in gathered.items()}
  res["index"] = index[keep]
  patients = getattr(source, "patients", None)
  if patients is not None:
    res["patient"] = np.asarray(patients)[res["index"]].astype(str)
  return res


def _append(lists: dict[str, list[np.ndarray]], arrays: dict[str, np.ndarray]) -> None:
  for k, v in arrays.items():
    lists.setdefault(k, []).append(v)
