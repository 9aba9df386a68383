"""The evaluator registry and the context every evaluator gets (a leaf: imports no evaluator).

Evaluator modules register themselves with `@register('type')`; `jaxcxr.evaluators` imports them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
from flax import nnx

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
