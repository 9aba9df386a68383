"""The model registry: `register` (used by the families), `create`, `list_models`, metadata.

Imports no model family: each family module (`resnet.py`, `densenet.py`, ...) registers its
factories with `register` when it is imported, and `jaxcxr.models` imports them all (the timm
pattern), so importing this module alone never builds or imports a network.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.typing import Dtype

from jaxcxr import cli
from jaxcxr.constants import IMAGENET_MEAN, IMAGENET_STD
from jaxcxr.models import depthwise
from jaxcxr.models.param_counts import NUM_PARAMS

__all__ = [
  "create",
  "get_default_cfg",
  "imagenet_cfg",
  "list_models",
  "param_count",
  "register",
  "register_variant",
]

_MODELS: dict[str, Callable[..., nnx.Module]] = {}


def register(
  name: str, *, default_cfg: Mapping[str, Any] | None = None
) -> Callable[[Callable[..., nnx.Module]], Callable[..., nnx.Module]]:
  """Decorator that registers a model factory under ``name``.

  The factory is called as ``fn(*, num_classes, in_chans, rngs, dtype, param_dtype, **kwargs)``.
  ``default_cfg`` (input size, mean/std, first conv and classifier names, ``num_params``: the
  trainable parameters with the 1000-class head, checked by ``python -m jaxcxr.models --check``
  and the tests) is attached to the
  factory as ``fn.default_cfg``; it lives on the factory, not the module, so that the module's
  graphdef stays hashable.

  Args:
      name: registry name, e.g. ``'resnet50'``. Must be unique.
      default_cfg: optional pretrained/preprocessing config for this model.

  Returns:
      The decorator, which returns the factory unchanged (apart from ``default_cfg``).
  """

  def decorator(fn: Callable[..., nnx.Module]) -> Callable[..., nnx.Module]:
    if name in _MODELS:
      raise ValueError(f"Model {name!r} is already registered (by {_MODELS[name]!r}).")
    cfg = dict(default_cfg or {})
    cfg.setdefault("num_params", NUM_PARAMS.get(name))
    fn.default_cfg = cfg  # type: ignore[attr-defined]
    _MODELS[name] = fn
    return fn

  return decorator


def register_variant(
  name: str,
  model_cls: Callable[..., nnx.Module],
  *args: Any,
  default_cfg: Mapping[str, Any],
  doc: str = "",
  **defaults: Any,
) -> None:
  """Registers ``name`` as a partial of ``model_cls`` (flax examples' ``ResNet50 = partial(...)``).

  Args:
      name: registry name.
      model_cls: the family's module class.
      *args: its positional arguments (block type, stage sizes, ...).
      default_cfg: as for :func:`register`.
      doc: the factory's docstring (default: the class and the options).
      **defaults: keyword defaults, overridable at ``create`` time.
  """

  def factory(**kwargs: Any) -> nnx.Module:
    return model_cls(*args, **{**defaults, **kwargs})

  factory.__name__ = factory.__qualname__ = name
  factory.__doc__ = doc or f"{name}: {model_cls.__name__}, options {defaults or 'default'}."
  register(name, default_cfg=default_cfg)(factory)


def imagenet_cfg(**overrides: Any) -> dict[str, Any]:
  """A ``default_cfg`` for ImageNet weights: 224 px, ImageNet mean/std, then ``overrides``."""
  return {"input_size": (3, 224, 224), "mean": IMAGENET_MEAN, "std": IMAGENET_STD, **overrides}


def _lookup(name: str) -> Callable[..., nnx.Module]:
  try:
    return _MODELS[name]
  except KeyError:
    close = difflib.get_close_matches(name, _MODELS, n=5, cutoff=0.5)
    raise ValueError(
      f"Unknown model {name!r}. Did you mean: {close}? Available models: {sorted(_MODELS)}"
    ) from None


def create(
  name: str,
  *,
  num_classes: int,
  in_chans: int = 3,
  rngs: nnx.Rngs | None = None,
  dtype: Dtype = jnp.float32,
  param_dtype: Dtype = jnp.float32,
  pretrained: bool | str = False,
  depthwise_impl: str = "auto",
  **kwargs: Any,
) -> nnx.Module:
  """Builds a registered model, optionally with pretrained weights.

  Args:
      name: registered model name (see :func:`list_models`).
      num_classes: number of logits; 0 returns pooled features instead.
      in_chans: input channels (1 for grayscale X-rays).
      rngs: random streams for initialisation; defaults to ``nnx.Rngs(0)``.
      dtype: computation dtype (e.g. ``jnp.bfloat16``).
      param_dtype: parameter storage dtype.
      pretrained: ``True`` loads the model's first registered weights (``name.tag``; downloaded
          and cached, see ``jaxcxr.weights.pretrained``); a string names a tag (``"tv_in1k"``),
          a full ``arch.tag`` or a local checkpoint file. The classifier stays as initialised
          when ``num_classes`` differs from the checkpoint's; the first conv is adapted to
          ``in_chans``; any other mismatch is an error.
      depthwise_impl: how depthwise convolutions compute (EfficientNet, MobileNetV2):
          ``'auto'`` (shifted slices on the CPU backend, XLA's convolution elsewhere),
          ``'slices'`` or ``'xla'``; see :mod:`jaxcxr.models.depthwise`. The parameters are
          the same either way.
      **kwargs: family-specific options (e.g. ``drop_rate``, ``zero_init_residual``).

  Returns:
      The initialised ``nnx.Module``.

  Raises:
      ValueError: if ``name`` is not registered (the message lists close matches).
  """
  fn = _lookup(name)
  if rngs is None:
    rngs = nnx.Rngs(0)

  # Flax NNX initialises eagerly, one op at a time: seconds even for a tiny model on a CPU.
  with cli.phase(f"building {name}"):
    model = fn(
      num_classes=num_classes,
      in_chans=in_chans,
      rngs=rngs,
      dtype=dtype,
      param_dtype=param_dtype,
      **kwargs,
    )
  depthwise.set_impl(model, depthwise_impl)
  if pretrained:
    from jaxcxr.weights import pretrained as weights  # pylint: disable=g-import-not-at-top

    if pretrained is True:
      source = weights.get_pretrained_cfg(name).name  # Its first registered weights.
    elif "." not in pretrained and not os.path.exists(pretrained):
      source = f"{name}.{pretrained}"
    else:
      source = pretrained
    weights.load_pretrained(model, source, arch=name)
  return model


def get_default_cfg(name: str) -> dict[str, Any]:
  """Returns a copy of the ``default_cfg`` registered for ``name``."""
  return dict(_lookup(name).default_cfg)  # type: ignore[attr-defined]


def list_models(pattern: str = "*") -> list[str]:
  """Sorted names of registered models matching the ``fnmatch`` ``pattern``."""
  return sorted(n for n in _MODELS if fnmatch.fnmatchcase(n, pattern))


def param_count(model: nnx.Module) -> int:
  """Number of trainable (``nnx.Param``) elements; batch-norm statistics are not counted.

  Works on abstract models from ``nnx.eval_shape`` too, since only shapes are read.
  """
  params = nnx.state(model, nnx.Param)
  return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
