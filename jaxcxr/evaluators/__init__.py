"""Evaluator plug-ins, picked by name from the config (big_vision's evaluators).

    config.evals.val = ml_collections.ConfigDict({'type': 'classification', 'split': 'val'})

Each `config.evals.<name>` names a registered `type`, the `split` it reads and `every_steps`
(0: the stage's evaluation interval); other keys go to the evaluator. An evaluator is built once
with an `EvalContext` and called as `evaluator.run(state)`; it returns a JSON-able result whose
`scalars(result)` the loop logs and monitors as `<name>_<scalar>` (`val_loss`, `val_accuracy`).
An evaluator keeps what it computed (`evaluator.last`), so later ones and reports need no second
pass. Register a new one in its own module with `@register('type')` and import it below.
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


from jaxcxr.evaluators import classification  # noqa: E402,F401  (registers itself)
