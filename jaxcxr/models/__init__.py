"""Model registry: build any backbone by name.

Each family module (``resnet.py``, later ``densenet.py``, ``efficientnet.py`` ...) decorates its
factory functions with :func:`register`; importing this package imports those modules so every
model is available through :func:`create` and :func:`list_models` (the timm pattern).

Example::

    from jaxcxr import models
    model = models.create('resnet50', num_classes=14, in_chans=1)
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

__all__ = ["create", "get_default_cfg", "list_models", "param_count", "register"]

_MODELS: dict[str, Callable[..., nnx.Module]] = {}


def register(
  name: str, *, default_cfg: Mapping[str, Any] | None = None
) -> Callable[[Callable[..., nnx.Module]], Callable[..., nnx.Module]]:
  """Decorator that registers a model factory under ``name``.

  The factory is called as ``fn(*, num_classes, in_chans, rngs, dtype, param_dtype, **kwargs)``.
  ``default_cfg`` (input size, mean/std, first conv and classifier names) is attached to the
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
    fn.default_cfg = dict(default_cfg or {})  # type: ignore[attr-defined]
    _MODELS[name] = fn
    return fn

  return decorator


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

  model = fn(
    num_classes=num_classes,
    in_chans=in_chans,
    rngs=rngs,
    dtype=dtype,
    param_dtype=param_dtype,
    **kwargs,
  )
  from jaxcxr.models import depthwise  # pylint: disable=g-import-not-at-top

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


# Imported last so that the families can import `register` from this module.
from jaxcxr.models import densenet as densenet  # noqa: E402
from jaxcxr.models import efficientnet as efficientnet  # noqa: E402
from jaxcxr.models import inception as inception  # noqa: E402
from jaxcxr.models import mobilenet as mobilenet  # noqa: E402
from jaxcxr.models import resnet as resnet  # noqa: E402
from jaxcxr.models import vgg as vgg  # noqa: E402
