"""Evaluator plug-ins, picked by name from the config (big_vision's evaluators).

    config.evals.val = ml_collections.ConfigDict({'type': 'classification', 'split': 'val'})

Each `config.evals.<name>` names a registered `type`, the `split` it reads and `every_steps`
(0: the stage's evaluation interval); other keys go to the evaluator. An evaluator is built once
with an `EvalContext` and called as `evaluator.run(state)`; it returns a JSON-able result whose
`scalars(result)` the loop logs and monitors as `<name>_<scalar>` (`val_loss`, `val_accuracy`).
An evaluator keeps what it computed (`evaluator.last`), so later ones and reports need no second
pass. Register a new one in its own module with `@register('type')` (`evaluators.base`) and
import it below.
"""

from jaxcxr.evaluators import (
  classification,  # noqa: F401  (registers itself)
  segmentation,  # noqa: F401  (registers itself)
)
from jaxcxr.evaluators.base import EvalContext, create, register, types

__all__ = ["EvalContext", "create", "register", "types"]
