"""Layer-wise relevance propagation (LRP) for jaxcxr's VGG, ResNet and DenseNet backbones.

Bach, Binder, Montavon, Klauschen, Müller and Samek, 2015, "On Pixel-Wise Explanations for
Non-Linear Classifier Decisions by Layer-Wise Relevance Propagation", PLOS ONE; the composite
rules follow Montavon, Binder, Lapuschkin, Samek and Müller, 2019, "Layer-Wise Relevance
Propagation: An Overview", and Kohlbrenner et al., 2020, "Towards Best Practice in Explaining
Neural Network Decisions with LRP". The default :class:`Composite` is iNNvestigate's
``LRPSequentialPresetAFlat`` (the choice of Bassi & Attux, 2021, for their COVID-19 CheXNet
study), which zennit calls ``EpsilonPlusFlat``:

* dense layers: ε rule, ``R_i = x_i sum_j w_ij R_j / (z_j + ε sign z_j)`` (ε = 0.1 as
  iNNvestigate's preset; ``sign 0 = +1``);
* convolutions: α1β0 (z⁺) rule, ``z_j = sum_i x_i⁺ w_ij⁺ + b_j⁺ + x_i⁻ w_ij⁻`` and
  ``R_i = sum_j (x_i⁺ w_ij⁺ + x_i⁻ w_ij⁻) R_j / z_j`` (zennit's form, which also handles
  negative inputs; every conv input here is a ReLU output, so only the first term is non-zero);
* the first convolution: flat rule, ``R_i = sum_j R_j / (number of inputs of j)``, which ignores
  the input values and the weights (the pixels are not ReLU outputs);
* batch norm folded into the convolution before it (``w s``, ``(b - mean) s + beta`` with
  ``s = scale / sqrt(var + eps)``): exact in eval mode. DenseNet's batch norms come after a
  concatenation, not a convolution (BN-ReLU-conv), and pass relevance on unchanged, as do the
  ReLUs (zennit's ``Pass`` for both);
* residual additions and average pools (including the global one before the classifier):
  proportional split, ``R_i = x_i R / sum x`` (zennit's ``Norm``); DenseNet concatenations
  keep each channel's relevance with its channel; max pools send it to the maximum (gradient).

Implementation: each rule is a ``jax.custom_vjp`` whose forward is the layer's ordinary forward
and whose backward maps the relevance of the outputs to that of the inputs, so the model is run
once and ``jax.vjp`` of the logits, started at ``R = logit_target * one_hot``, propagates
relevance down to the pixels through the whole network in one jittable, batched backward pass.
Rules stay explicit and readable per layer kind (unlike the gradient-times-input trick with
``stop_gradient`` re-parametrisations, which needs every rule rewritten as a modified forward),
and the relevance at any point of the network is the cotangent of a zero "probe" added there,
which is how the conservation tests read it layer by layer. Any other family raises: their
depthwise convolutions, SiLU activations and squeeze-excitation gates have no established rule
in these presets.

Conservation: z⁺ with zero biases, flat, Pass, Norm and the max pool conserve relevance exactly
(up to the stabiliser 1e-6); the ε rule absorbs ``R_j (ε sign z_j + b_j) / (z_j + ε sign z_j)``
and z⁺ absorbs ``R_j b_j⁺ / z_j``: with biases (which BN folding creates) the sum at the pixels
is, in general, smaller in magnitude than the explained logit.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcxr.explain import common
from jaxcxr.models.densenet import DenseNet
from jaxcxr.models.resnet import BasicBlock, Bottleneck, ResNet
from jaxcxr.models.vgg import VGG, MaxPool, ReLU, adaptive_avg_pool2d

__all__ = ["RULES", "Composite", "lrp"]

RULES = ("epsilon", "zplus", "flat")


@dataclasses.dataclass(frozen=True)
class Composite:
  """Which rule each layer kind gets; the default is iNNvestigate's PresetAFlat.

  Attributes:
      first: rule of the first convolution (the one that sees the pixels).
      conv: rule of every other convolution.
      dense: rule of the fully connected layers.
      epsilon: ε of the ε rule.
      stabilizer: added to denominators of the other rules (with their sign) against 0/0.
  """

  first: str = "flat"
  conv: str = "zplus"
  dense: str = "epsilon"
  epsilon: float = 0.1
  stabilizer: float = 1e-6

  def __post_init__(self):
    for field in ("first", "conv", "dense"):
      if getattr(self, field) not in RULES:
        raise ValueError(
          f"Composite.{field}={getattr(self, field)!r}: expected one of {list(RULES)}."
        )


def _stabilize(z: jax.Array, eps: float) -> jax.Array:
  """``z + eps sign(z)`` with ``sign(0) = +1`` (zennit's and iNNvestigate's stabiliser)."""
  return z + eps * jnp.where(z >= 0, 1.0, -1.0).astype(z.dtype)


def _transpose(lin: Callable, x: jax.Array, w: jax.Array, s: jax.Array) -> jax.Array:
  """``d/dx <lin(x, w), s>``: propagates ``s`` back through the linear map ``lin(., w)``."""
  return jax.vjp(lambda v: lin(v, w), x)[1](s)[0]


# --- The rules, each a custom_vjp: ordinary forward, relevance backward. ---


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _linear(lin: Callable, rule: str, eps: float, x: jax.Array, w: jax.Array, b: jax.Array):
  return lin(x, w) + b


def _linear_fwd(lin, rule, eps, x, w, b):
  return lin(x, w) + b, (x, w, b)


def _linear_bwd(lin, rule, eps, res, r):
  x, w, b = res
  if rule == "epsilon":
    s = r / _stabilize(lin(x, w) + b, eps)
    rx = x * _transpose(lin, x, w, s)
  elif rule in ("zplus", "zplus_nonnegative"):
    wp = jnp.maximum(w, 0)
    if rule == "zplus_nonnegative":  # x >= 0 (a ReLU output): the x⁻ terms are all zero.
      rx = x * _transpose(lin, x, wp, r / _stabilize(lin(x, wp) + jnp.maximum(b, 0), eps))
    else:
      xp, xn, wn = jnp.maximum(x, 0), jnp.minimum(x, 0), jnp.minimum(w, 0)
      s = r / _stabilize(lin(xp, wp) + jnp.maximum(b, 0) + lin(xn, wn), eps)
      rx = xp * _transpose(lin, xp, wp, s) + xn * _transpose(lin, xn, wn, s)
  elif rule == "flat":
    ones, w1 = jnp.ones_like(x), jnp.ones_like(w)
    rx = _transpose(lin, ones, w1, r / _stabilize(lin(ones, w1), eps))
  else:
    raise ValueError(f"Unknown LRP rule {rule!r}; expected one of {list(RULES)}.")
  return rx, jnp.zeros_like(w), jnp.zeros_like(b)


_linear.defvjp(_linear_fwd, _linear_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _proportional(f: Callable, eps: float, xs: tuple[jax.Array, ...]) -> jax.Array:
  """``f(*xs)`` for a parameter-free linear ``f`` (a sum, an average pool); relevance split in
  proportion to each input's contribution (zennit's ``Norm`` rule)."""
  return f(*xs)


def _proportional_fwd(f, eps, xs):
  return f(*xs), xs


def _proportional_bwd(f, eps, xs, r):
  out, vjp = jax.vjp(f, *xs)
  grads = vjp(r / _stabilize(out, eps))
  return (tuple(x * g for x, g in zip(xs, grads, strict=True)),)


_proportional.defvjp(_proportional_fwd, _proportional_bwd)


def _pass(y: jax.Array, x: jax.Array) -> jax.Array:
  """Value ``y = f(x)`` for an elementwise ``f`` (ReLU, BN), relevance passed on unchanged."""
  return x + jax.lax.stop_gradient(y - x)


# --- Walking the families' layers. ---


def _conv_fn(conv: nnx.Conv) -> Callable[[jax.Array, jax.Array], jax.Array]:
  as_pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)
  return functools.partial(
    jax.lax.conv_general_dilated,
    window_strides=as_pair(conv.strides),
    padding=conv.padding,
    lhs_dilation=as_pair(conv.input_dilation),
    rhs_dilation=as_pair(conv.kernel_dilation),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    feature_group_count=conv.feature_group_count,
  )


def _dense_fn(x: jax.Array, w: jax.Array) -> jax.Array:
  return x @ w


def _fold(conv: nnx.Conv, bn: nnx.BatchNorm | None) -> tuple[jax.Array, jax.Array]:
  """Kernel and bias of ``conv`` followed by eval-mode ``bn``, as one convolution."""
  w = conv.kernel[...]
  b = conv.bias[...] if conv.bias is not None else jnp.zeros(w.shape[-1], w.dtype)
  if bn is None:
    return w, b
  s = bn.scale[...] / jnp.sqrt(bn.var[...] + bn.epsilon)
  return w * s, (b - bn.mean[...]) * s + bn.bias[...]


class _Propagator:
  """Applies the composite's rules layer by layer and places the relevance probes.

  ``probes`` (name -> zero array) are added at the named cuts of the network, where all the
  relevance passes; their cotangents are the relevance there. With ``probes=None`` the cuts'
  shapes are recorded instead.
  """

  def __init__(self, composite: Composite, probes: dict[str, jax.Array] | None):
    self.composite = composite
    self.probes = probes
    self.shapes: dict[str, jax.ShapeDtypeStruct] = {}
    self._first = True

  def tap(self, name: str, x: jax.Array) -> jax.Array:
    if self.probes is None:
      self.shapes[name] = jax.ShapeDtypeStruct(x.shape, x.dtype)
      return x
    return x + self.probes[name]

  def _eps(self, rule: str) -> float:
    return self.composite.epsilon if rule == "epsilon" else self.composite.stabilizer

  def conv(
    self,
    conv: nnx.Conv,
    x: jax.Array,
    bn: nnx.BatchNorm | None = None,
    *,
    after_relu: bool = False,
  ) -> jax.Array:
    """``conv`` (with ``bn`` folded in) under the composite's rule.

    ``after_relu``: ``x`` is a ReLU (or max-pooled ReLU) output, so z⁺ can skip the terms of
    negative inputs, half its work. Every conv of these families but the first is one, and
    says so at its call.
    """
    rule = self.composite.first if self._first else self.composite.conv
    self._first = False
    if rule == "zplus" and after_relu:
      rule = "zplus_nonnegative"
    w, b = _fold(conv, bn)
    return _linear(_conv_fn(conv), rule, self._eps(rule), x, w, b)

  def dense(self, fc: nnx.Linear, x: jax.Array) -> jax.Array:
    rule = self.composite.dense
    w = fc.kernel[...]
    b = fc.bias[...] if fc.bias is not None else jnp.zeros(w.shape[-1], w.dtype)
    return _linear(_dense_fn, rule, self._eps(rule), x, w, b)

  def relu(self, x: jax.Array) -> jax.Array:
    return _pass(jax.nn.relu(x), x)

  def batch_norm(self, bn: nnx.BatchNorm, x: jax.Array) -> jax.Array:
    return _pass(bn(x, use_running_average=True), x)

  def add(self, *xs: jax.Array) -> jax.Array:
    return _proportional(lambda *a: sum(a[1:], a[0]), self.composite.stabilizer, xs)

  def pool(self, f: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    return _proportional(f, self.composite.stabilizer, (x,))

  def global_pool(self, x: jax.Array) -> jax.Array:
    return self.pool(lambda a: jnp.mean(a, axis=(1, 2)), x)


def _max_pool_3x3(x: jax.Array) -> jax.Array:
  # ResNet's and DenseNet's stem pool (torch's MaxPool2d(3, 2, padding=1)).
  return nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


def _vgg(model: VGG, x: jax.Array, p: _Propagator) -> jax.Array:
  layers = list(model.features)
  for i, layer in enumerate(layers):
    x = p.tap(f"features.{i}", x)
    if isinstance(layer, nnx.Conv):
      nxt = layers[i + 1] if i + 1 < len(layers) else None
      bn = nxt if isinstance(nxt, nnx.BatchNorm) else None
      x = p.conv(layer, x, bn, after_relu=i > 0)
    elif isinstance(layer, nnx.BatchNorm):
      continue  # Folded into the conv before it.
    elif isinstance(layer, ReLU):
      x = p.relu(x)
    elif isinstance(layer, MaxPool):
      x = layer(x)
    else:
      raise TypeError(f"LRP: no rule for VGG layer features.{i} ({type(layer).__name__}).")
  x = p.tap("features", x)
  x = p.pool(lambda a: adaptive_avg_pool2d(a, (7, 7)), x)
  x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
  for i, layer in enumerate(model.classifier):
    if isinstance(layer, nnx.Linear):
      x = p.dense(layer, p.tap(f"classifier.{i}", x))
    elif isinstance(layer, ReLU):
      x = p.relu(x)
    elif not isinstance(layer, nnx.Dropout):  # Dropout: the identity in eval mode.
      raise TypeError(f"LRP: no rule for VGG layer classifier.{i} ({type(layer).__name__}).")
  return x


def _resnet_block(blk: BasicBlock | Bottleneck, x: jax.Array, p: _Propagator) -> jax.Array:
  y = p.relu(p.conv(blk.conv1, x, blk.bn1, after_relu=True))
  if isinstance(blk, Bottleneck):
    y = p.relu(p.conv(blk.conv2, y, blk.bn2, after_relu=True))
    y = p.conv(blk.conv3, y, blk.bn3, after_relu=True)
  else:
    y = p.conv(blk.conv2, y, blk.bn2, after_relu=True)
  # The block input is the previous block's (or the stem's max-pooled) ReLU output.
  if blk.downsample is None:
    shortcut = x
  else:
    shortcut = p.conv(blk.downsample[0], x, blk.downsample[1], after_relu=True)
  return p.relu(p.add(y, shortcut))


def _resnet(model: ResNet, x: jax.Array, p: _Propagator) -> jax.Array:
  x = p.relu(p.conv(model.conv1, x, model.bn1))
  x = _max_pool_3x3(p.tap("stem", x))
  for s, stage in enumerate((model.layer1, model.layer2, model.layer3, model.layer4), start=1):
    for j, blk in enumerate(stage):
      x = p.tap(f"layer{s}.{j}", x)
      x = _resnet_block(blk, x, p)
  x = p.global_pool(p.tap("features", x))
  return p.dense(model.head.fc, p.tap("pooled", x))


def _densenet_layers(block, features: Sequence[jax.Array], p: _Propagator) -> jax.Array:
  features = list(features)
  for j in range(block.num_layers):
    layer = getattr(block, f"denselayer{j + 1}")
    h = p.relu(p.batch_norm(layer.norm1, jnp.concatenate(features, axis=-1)))
    h = p.relu(p.conv(layer.conv1, h, layer.norm2, after_relu=True))
    features.append(p.conv(layer.conv2, h, after_relu=True))
  return jnp.concatenate(features, axis=-1)


def _densenet(model: DenseNet, x: jax.Array, p: _Propagator) -> jax.Array:
  f = model.features
  x = p.relu(p.conv(f.conv0, x, f.norm0))
  x = _max_pool_3x3(p.tap("stem", x))
  for i in range(1, f.num_blocks + 1):
    x = _densenet_layers(getattr(f, f"denseblock{i}"), [p.tap(f"denseblock{i}", x)], p)
    if i < f.num_blocks:
      t = getattr(f, f"transition{i}")
      x = p.tap(f"transition{i}", x)
      x = p.conv(t.conv, p.relu(p.batch_norm(t.norm, x)), after_relu=True)
      x = p.pool(lambda a: nnx.avg_pool(a, (2, 2), strides=(2, 2), padding="VALID"), x)
  x = p.relu(p.batch_norm(f.norm5, p.tap("norm5", x)))
  x = p.global_pool(p.tap("features", x))
  return p.dense(model.head.fc, p.tap("pooled", x))


_FAMILIES: tuple[tuple[type, Callable], ...] = (
  (VGG, _vgg),
  (ResNet, _resnet),
  (DenseNet, _densenet),
)


def _family(model: nnx.Module) -> Callable:
  from jaxcxr.models.heads import NamedHead  # pylint: disable=g-import-not-at-top

  if isinstance(getattr(model, "head", None), NamedHead):
    raise NotImplementedError(
      f"LRP has rules for the families' own classifiers, not the named head "
      f"{model.head.kind!r} (config.model.head); Grad-CAM explains any head."
    )
  for cls, fn in _FAMILIES:
    if isinstance(model, cls):
      if cls is not VGG and model.head.fc is None:
        break
      return fn
  else:
    raise NotImplementedError(
      f"LRP is implemented for the VGG, ResNet and DenseNet families, not {type(model).__name__}"
      " (its depthwise convs, SiLU and squeeze-excitation gates have no rule in the preset)."
    )
  raise ValueError("LRP: the model has no classifier (num_classes=0); nothing to explain.")


@functools.partial(jax.jit, static_argnames=("graphdef", "composite", "with_layers"))
def _lrp_jit(
  graphdef: nnx.GraphDef,
  state: nnx.State,
  images: jax.Array,
  target: jax.Array,
  *,
  composite: Composite,
  with_layers: bool,
) -> tuple[jax.Array, jax.Array, jax.Array, dict[str, jax.Array]]:
  model = nnx.merge(graphdef, state, copy=True)
  forward = _family(model)
  probes: dict[str, jax.Array] = {}
  if with_layers:
    shapes = _Propagator(composite, None)
    jax.eval_shape(lambda x: forward(model, x, shapes), images)
    probes = {k: jnp.zeros(v.shape, v.dtype) for k, v in shapes.shapes.items()}
  logits, vjp = jax.vjp(
    lambda x, pr: forward(model, x, _Propagator(composite, pr if with_layers else None)),
    images,
    probes,
  )
  target = common.resolve_target(logits, target)
  r_top = logits * jax.nn.one_hot(target, logits.shape[-1], dtype=logits.dtype)
  relevance, layers = vjp(r_top)
  return relevance, logits, target, layers


def lrp(
  model: nnx.Module,
  images: jax.Array,
  target: int | jax.Array | None = None,
  *,
  composite: Composite = Composite(),
  sum_channels: bool = True,
  return_layers: bool = False,
) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
  """Relevance of each pixel for the ``target`` logit, by LRP with a composite of rules.

  Example::

      model = models.create('densenet121', num_classes=14, pretrained=True)
      heat = lrp(model, images, target=6)   # (N, H, W), sums to about each image's logit

  Args:
      model: a VGG, ResNet or DenseNet from ``jaxcxr.models.create``; run in eval mode, not
          modified.
      images: preprocessed NHWC images ``(N, H, W, C)``.
      target: the class to explain: an int, one per image ``(N,)``, or ``None`` for each
          image's predicted class.
      composite: the rules (default: ε / z⁺ / flat, iNNvestigate's PresetAFlat).
      sum_channels: sum the relevance over the input channels (the heat map); else keep
          ``(N, H, W, C)``.
      return_layers: also return the relevance at the network's cuts (stage and block
          inputs, pooled features ...: every point all of it passes through), by name, plus
          ``"logit"``: the explained logit where propagation starts.

  Returns:
      Relevance ``(N, H, W)`` (or ``(N, H, W, C)``); positive values speak for the class,
      negative against. With ``return_layers``, ``(relevance, layers)``.
  """
  images, target = common.check_inputs(model, images, target, "lrp")
  _family(model)  # Unsupported families fail here, with their name.
  graphdef, state = nnx.split(model)
  relevance, logits, target, layers = _lrp_jit(
    graphdef, state, images, target, composite=composite, with_layers=return_layers
  )
  if sum_channels:
    relevance = relevance.sum(axis=-1)
  if not return_layers:
    return relevance
  layers = dict(layers)
  layers["logit"] = jnp.take_along_axis(logits, target[:, None], axis=1)[:, 0]
  return relevance, layers
