"""Whole pickled torch modules (``torch.save(model)``) read as state dicts, without torch.

Some published checkpoints pickle the model object instead of its ``state_dict()``:
jrzech/reproduce-chexnet (Zech, "reproduce-chexnet", the DenseNet-121 Bassi & Attux start from)
saves ``torch.save({'model': model, 'best_loss': ..., 'epoch': ..., 'rng_state': ..., 'LR':
...}, 'results/checkpoint')`` where ``model`` is a torchvision ``densenet121`` whose classifier
is ``nn.Sequential(nn.Linear(1024, 14), nn.Sigmoid())``.

Unpickling such a file with torch imports and runs the classes it names. Here instead each
allowed class (:data:`MODULE_CLASSES`: the torch.nn layers and torchvision DenseNet parts that
file is made of) becomes a :class:`ModuleStub` that only keeps the pickled attribute dict, and
:meth:`ModuleStub.state_dict` walks ``_parameters`` / ``_buffers`` / ``_modules`` exactly as
``nn.Module.state_dict`` does (non-persistent buffers left out). Any other class is refused by
:mod:`jaxcxr.weights.readers`, naming it. Add a class here only if its pickled state is plain
data (no custom ``__reduce__`` that would need code to run).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

__all__ = ["MODULE_CLASSES", "ModuleStub", "find_module_class", "is_stub_class"]


class ModuleStub:
  """A pickled ``nn.Module``: its attribute dict, nothing callable."""

  torch_name = "torch.nn.Module"

  def __setstate__(self, state: Any) -> None:
    # nn.Module pickles as NEWOBJ + BUILD with its `__dict__`; a (dict, slots) pair is possible.
    if isinstance(state, tuple) and len(state) == 2:
      state = {**(state[0] or {}), **(state[1] or {})}
    if not isinstance(state, dict):
      raise ValueError(f"pickled {self.torch_name}: expected an attribute dict, got {state!r:.80}")
    self.__dict__.update(state)

  def state_dict(self, prefix: str = "") -> OrderedDict:
    """``{dotted name: tensor}`` in ``nn.Module.state_dict``'s order (params, buffers, children)."""
    out: OrderedDict = OrderedDict()
    skip = self.__dict__.get("_non_persistent_buffers_set") or set()
    for kind in ("_parameters", "_buffers"):
      for name, value in (self.__dict__.get(kind) or {}).items():
        if value is not None and not (kind == "_buffers" and name in skip):
          out[prefix + name] = value
    for name, child in (self.__dict__.get("_modules") or {}).items():
      if child is None:
        continue
      if not isinstance(child, ModuleStub):
        raise ValueError(f"pickled {self.torch_name}: child {prefix + name!r} is {child!r:.80}")
      out.update(child.state_dict(f"{prefix}{name}."))
    return out


_NN = "torch.nn.modules."
MODULE_CLASSES: frozenset[tuple[str, str]] = frozenset(
  {
    (_NN + "container", "Sequential"),
    (_NN + "container", "ModuleDict"),
    (_NN + "container", "ModuleList"),
    (_NN + "conv", "Conv2d"),
    (_NN + "batchnorm", "BatchNorm2d"),
    (_NN + "activation", "ReLU"),
    (_NN + "activation", "Sigmoid"),
    (_NN + "pooling", "MaxPool2d"),
    (_NN + "pooling", "AvgPool2d"),
    (_NN + "pooling", "AdaptiveAvgPool2d"),
    (_NN + "linear", "Linear"),
    (_NN + "dropout", "Dropout"),
    ("torchvision.models.densenet", "DenseNet"),
    ("torchvision.models.densenet", "_DenseBlock"),
    ("torchvision.models.densenet", "_DenseLayer"),
    ("torchvision.models.densenet", "_Transition"),
  }
)
_STUBS: dict[tuple[str, str], type[ModuleStub]] = {}


class _Backend:
  """torch < 0.4 modules keep a `_backend` (THNN); its pickle is a call to a getter."""


def find_module_class(module: str, name: str) -> Any:
  """The stand-in for an allowed module class (or torch 0.3's THNN backend getter), else None."""
  if (module, name) == ("torch.nn.backends.thnn", "_get_thnn_function_backend"):
    return _Backend
  if (module, name) not in MODULE_CLASSES:
    return None
  key = (module, name)
  if key not in _STUBS:
    _STUBS[key] = type(name, (ModuleStub,), {"torch_name": f"{module}.{name}"})
  return _STUBS[key]


def is_stub_class(obj: Any) -> bool:
  """Whether `obj` is a class :func:`find_module_class` returned (legacy files' module tags)."""
  return isinstance(obj, type) and issubclass(obj, ModuleStub)
