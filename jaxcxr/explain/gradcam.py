"""Grad-CAM and Grad-CAM++ heat maps for every jaxcxr backbone, batched and jitted.

Selvaraju, Cogswell, Das, Vedantam, Parikh and Batra, 2017, "Grad-CAM: Visual Explanations from
Deep Networks via Gradient-based Localization", ICCV. For a class ``c`` with logit ``y_c`` and a
feature map ``A`` (channels ``k``) the class activation map is

    L_c = ReLU(sum_k w_k A_k),   w_k = mean_ij dy_c / dA_k[i, j].

Chattopadhyay, Sarkar, Howlader and Balasubramanian, 2018, "Grad-CAM++: Improved Visual
Explanations for Deep Convolutional Networks", WACV: the channel weights become
``w_k = sum_ij a_kij ReLU(g_kij)`` with ``a = g^2 / (2 g^2 + sum_ab A_kab g^3)`` (their eq. 19,
``g = dy_c/dA``), zero where ``g`` is zero -- exactly the formula of the reference ``grad-cam``
PyTorch package (``pytorch_grad_cam.GradCAMPlusPlus``), so that the two can be compared.

The default feature map is the one every backbone exposes through ``forward_features`` (the
un-pooled map the classifier pools: ResNet's ``layer4``, DenseNet's ``norm5`` after its ReLU,
VGG's last conv block...), so the forward is split there and nothing is hooked. Another layer is
named by its dotted module path (``"layer3"``, ``"layer4.0"``, ``"features.denseblock3"``; a
stage held as a list is read at its last entry): on a
private copy of the model, inside the jitted function, that submodule is wrapped so that its
output ``A`` can be read and its gradient taken (as ``d logit / d delta`` at ``delta = 0`` for
``A + delta``); the model itself is never modified.

The result is either the raw CAM at the feature map's resolution (``resize=False,
normalize=False``) or what the reference package returns: each map min-max scaled to [0, 1]
(``cam - min``, then ``/ (max + 1e-7)``) and bilinearly resized to the input size.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcxr.explain import common

__all__ = ["class_activation_maps", "gradcam", "postprocess"]

# pytorch_grad_cam's constants (grad_cam_plusplus.py and utils/image.py::scale_cam_image).
_PLUSPLUS_EPS = 1e-6
_MINMAX_EPS = 1e-7


class _Tap(nnx.Module):
  """Wraps a submodule so that its output passes through ``fn`` (reads it, adds a probe)."""

  def __init__(self, inner: nnx.Module, fn: Callable[[jax.Array], jax.Array]):
    self.inner = inner
    self.fn = fn

  def __call__(self, *args: Any, **kwargs: Any) -> jax.Array:
    return self.fn(self.inner(*args, **kwargs))


def _split_path(model: nnx.Module, layer: str) -> tuple[Any, str | int]:
  """The parent of the submodule at dotted ``layer`` and its key in that parent."""
  parts = layer.split(".")
  node: Any = model
  walked = []
  for part in parts[:-1]:
    node = _child(node, part, ".".join(walked) or type(model).__name__)
    walked.append(part)
  last = parts[-1]
  key: str | int = int(last) if last.isdigit() else last
  child = _child(node, last, ".".join(walked) or type(model).__name__)
  # A stage held as an nnx.List (ResNet's layerN, VGG's features) runs its entries in order:
  # its output is its last entry's.
  while isinstance(child, nnx.List):
    node, key = child, len(child) - 1
    child = child[key]
  return node, key


def _child(node: Any, part: str, where: str) -> Any:
  try:
    if part.isdigit():
      return node[int(part)]
    child = getattr(node, part)
  except (AttributeError, IndexError, TypeError, KeyError):
    child = None
  if not isinstance(child, nnx.Module):
    raise ValueError(
      f"Grad-CAM layer: {where!r} has no submodule {part!r}; name a module by its dotted path "
      "as in the model's parameter names (e.g. 'layer3', 'layer4.0', 'features.denseblock3')."
    )
  return child


def _forward_tapped(
  graphdef: nnx.GraphDef,
  state: nnx.State,
  images: jax.Array,
  layer: str,
  delta: jax.Array | None,
) -> tuple[jax.Array, jax.Array]:
  """Logits and the output of submodule ``layer`` (plus ``delta``, the gradient probe)."""
  model = nnx.merge(graphdef, state, copy=True)
  seen = []

  def fn(y: jax.Array) -> jax.Array:
    seen.append(y)
    return y if delta is None else y + delta

  parent, key = _split_path(model, layer)
  if isinstance(key, int):
    parent[key] = _Tap(parent[key], fn)
  else:
    setattr(parent, key, _Tap(getattr(parent, key), fn))
  logits = model(images, train=False)
  if len(seen) != 1:
    raise ValueError(f"Grad-CAM layer {layer!r} ran {len(seen)} times in the forward; need 1.")
  act = seen[0]
  if not isinstance(act, jax.Array) or act.ndim != 4:
    raise ValueError(
      f"Grad-CAM layer {layer!r} must output an NHWC feature map, got "
      f"{getattr(act, 'shape', type(act))}."
    )
  return logits, act


def _activations_and_grads(
  graphdef: nnx.GraphDef, state: nnx.State, images: jax.Array, target: jax.Array, layer: str | None
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Feature map ``A``, ``d y_target / d A`` (both NHWC) and the target classes."""
  if layer is None:
    model = nnx.merge(graphdef, state, copy=True)
    act = model.forward_features(images, train=False)
    logits, vjp = jax.vjp(lambda a: model.forward_head(a, train=False), act)
  else:
    shape = jax.eval_shape(
      lambda s, x: _forward_tapped(graphdef, s, x, layer, None)[1], state, images
    )
    probe = jnp.zeros(shape.shape, shape.dtype)
    logits, vjp, act = jax.vjp(
      lambda d: _forward_tapped(graphdef, state, images, layer, d), probe, has_aux=True
    )
  target = common.resolve_target(logits, target)
  (grads,) = vjp(jax.nn.one_hot(target, logits.shape[-1], dtype=logits.dtype))
  return act, grads, target


def class_activation_maps(act: jax.Array, grads: jax.Array, *, plus_plus: bool) -> jax.Array:
  """Raw CAMs ``(N, h, w)`` (ReLU applied) from a feature map and its gradient, both NHWC."""
  if plus_plus:
    g2 = grads**2
    g3 = g2 * grads
    sum_act = jnp.sum(act, axis=(1, 2), keepdims=True)
    alpha = g2 / (2 * g2 + sum_act * g3 + _PLUSPLUS_EPS)
    alpha = jnp.where(grads != 0, alpha, 0.0)
    weights = jnp.sum(jax.nn.relu(grads) * alpha, axis=(1, 2))
  else:
    weights = jnp.mean(grads, axis=(1, 2))
  return jax.nn.relu(jnp.einsum("nhwc,nc->nhw", act, weights))


def postprocess(cams: jax.Array, size: tuple[int, int] | None) -> jax.Array:
  """Min-max scales each map to [0, 1], resizes it bilinearly to ``size`` (H, W), scales again.

  What the reference package does, in its order: ``scale_cam_image`` with a target size (scale,
  then ``cv2.resize`` with its default bilinear interpolation, which for upsampling samples at
  half-pixel centres and clamps at the border as ``jax.image.resize`` does), then
  ``aggregate_multi_layers`` scales once more without resizing (interpolation between pixel
  centres leaves the maximum just under 1).
  """
  cams = _minmax(cams)
  if size is not None and tuple(size) != cams.shape[1:]:
    cams = jax.image.resize(cams, (cams.shape[0], *size), method="bilinear")
  return _minmax(cams)


def _minmax(cams: jax.Array) -> jax.Array:
  cams = cams - jnp.min(cams, axis=(1, 2), keepdims=True)
  return cams / (_MINMAX_EPS + jnp.max(cams, axis=(1, 2), keepdims=True))


@functools.partial(jax.jit, static_argnames=("graphdef", "layer", "plus_plus", "size", "normalize"))
def _gradcam_jit(
  graphdef: nnx.GraphDef,
  state: nnx.State,
  images: jax.Array,
  target: jax.Array,
  *,
  layer: str | None,
  plus_plus: bool,
  size: tuple[int, int] | None,
  normalize: bool,
) -> tuple[jax.Array, jax.Array]:
  act, grads, target = _activations_and_grads(graphdef, state, images, target, layer)
  cams = class_activation_maps(act, grads, plus_plus=plus_plus)
  if normalize:
    cams = postprocess(cams, size)
  elif size is not None:
    cams = jax.image.resize(cams, (cams.shape[0], *size), method="bilinear")
  return cams, target


def gradcam(
  model: nnx.Module,
  images: jax.Array,
  target: int | jax.Array | None = None,
  *,
  layer: str | None = None,
  plus_plus: bool = False,
  resize: bool = True,
  normalize: bool = True,
  return_target: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
  """Grad-CAM (or Grad-CAM++) heat maps for a batch of images.

  Example::

      model = models.create('densenet121', num_classes=14, pretrained=True)
      maps = gradcam(model, images, target=6)  # (N, H, W) in [0, 1]

  Args:
      model: a jaxcxr backbone (``jaxcxr.models.create``); run in eval mode (running BN
          statistics), and not modified.
      images: preprocessed NHWC images ``(N, H, W, C)``, as the model takes them.
      target: the class to explain: an int for the whole batch, one per image ``(N,)``, or
          ``None`` for each image's predicted (highest-logit) class.
      layer: dotted path of the submodule whose output is explained (``"layer3"``,
          ``"features.denseblock3"``); ``None`` is the model's last feature map
          (``forward_features``).
      plus_plus: Grad-CAM++ channel weights instead of Grad-CAM's mean gradients.
      resize: resize the maps bilinearly to the input's ``(H, W)``; else keep the feature
          map's resolution.
      normalize: min-max scale each map to [0, 1] (before resizing, as the reference does).
          ``resize=False, normalize=False`` returns the raw CAM ``ReLU(sum_k w_k A_k)``.
      return_target: also return the explained class of each image.

  Returns:
      Heat maps ``(N, H, W)`` (or ``(N, h, w)`` without ``resize``), float32; with
      ``return_target``, ``(maps, target)``.
  """
  images, target = common.check_inputs(model, images, target, "gradcam")
  graphdef, state = nnx.split(model)
  size = tuple(images.shape[1:3]) if resize else None
  cams, target = _gradcam_jit(
    graphdef,
    state,
    images,
    target,
    layer=layer,
    plus_plus=plus_plus,
    size=size,
    normalize=normalize,
  )
  return (cams, target) if return_target else cams
