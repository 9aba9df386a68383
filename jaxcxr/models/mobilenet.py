"""MobileNetV2 in Flax NNX, laid out exactly like torchvision's.

Sandler, Howard, Zhu, Zhmoginov and Chen, 2018, "MobileNetV2: Inverted Residuals and Linear
Bottlenecks", CVPR. A 3x3/2 stem, 17 inverted residual blocks (1x1 expansion -> 3x3 depthwise ->
linear 1x1 projection, identity shortcut when the shape allows), a 1x1 conv to 1280 channels, then
global average pooling, dropout and the classifier.

Inputs are NHWC. ``features`` is an ``nnx.List`` with torchvision's indices, and every
conv-BN-ReLU6 is a ``[conv, bn]`` pair, so the paths are torchvision's (``features.0.0``,
``features.3.conv.1.1``, ``features.18.1``); the classifier is the shared
:class:`~jaxcxr.models.heads.ClassifierHead` (``classifier.1`` -> ``head.fc``). See
:mod:`jaxcxr.weights.maps.mobilenet` for the name maps (torchvision and timm).

Depthwise convs are ``nnx.Conv`` with ``feature_group_count`` equal to the channel count.
``drop_rate`` defaults to 0 like every jaxcxr family; torchvision's ``mobilenet_v2`` uses 0.2.
A fresh classifier gets ``ClassifierHead``'s init (torch's ``nn.Linear`` default), not
torchvision's N(0, 0.01): it is the layer transfer learning replaces anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.typing import Dtype
from jax import lax

from jaxcxr.models import register
from jaxcxr.models.base import Backbone
from jaxcxr.models.depthwise import DepthwiseConvFn
from jaxcxr.models.heads import ClassifierHead

__all__ = ["InvertedResidual", "MobileNetV2", "make_divisible"]

# torchvision's init: kaiming_normal_(mode='fan_out') for convs (depthwise included: torch's and
# JAX's fan_out of a (C, 1, 3, 3) / (3, 3, 1, C) kernel are both 9 C).
_CONV_INIT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

# (expansion t, output channels c, repeats n, first stride s): Table 2 of the paper.
_SETTING_V2: tuple[tuple[int, int, int, int], ...] = (
  (1, 16, 1, 1),
  (6, 24, 2, 2),
  (6, 32, 3, 2),
  (6, 64, 4, 2),
  (6, 96, 3, 1),
  (6, 160, 3, 2),
  (6, 320, 1, 1),
)


def make_divisible(v: float, divisor: int = 8) -> int:
  """Rounds channels to a multiple of ``divisor``, never below 90% of ``v`` (torchvision's)."""
  new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
  if new_v < 0.9 * v:
    new_v += divisor
  return new_v


def _conv(
  in_ch: int,
  out_ch: int,
  kernel: int,
  stride: int = 1,
  *,
  groups: int = 1,
  rngs: nnx.Rngs,
  dtype: Dtype,
  param_dtype: Dtype,
) -> nnx.Conv:
  # Explicit symmetric padding like torch ('SAME' pads stride-2 convs asymmetrically).
  pad = kernel // 2
  return nnx.Conv(
    in_ch,
    out_ch,
    (kernel, kernel),
    strides=(stride, stride),
    padding=((pad, pad), (pad, pad)),
    feature_group_count=groups,
    # Same nnx.Conv parameters; only the forward of depthwise convs goes through depthwise.py.
    conv_general_dilated=DepthwiseConvFn() if groups > 1 else lax.conv_general_dilated,
    use_bias=False,
    kernel_init=_CONV_INIT,
    dtype=dtype,
    param_dtype=param_dtype,
    rngs=rngs,
  )


def _bn(ch: int, *, rngs: nnx.Rngs, dtype: Dtype, param_dtype: Dtype) -> nnx.BatchNorm:
  # Flax momentum weighs the *old* statistics: 0.9 == torch's momentum 0.1.
  return nnx.BatchNorm(
    ch, momentum=0.9, epsilon=1e-5, dtype=dtype, param_dtype=param_dtype, rngs=rngs
  )


def _conv_bn(
  in_ch: int, out_ch: int, kernel: int, stride: int = 1, *, groups: int = 1, **kw: Any
) -> nnx.List:
  """torchvision's ``Conv2dNormActivation``: ``[conv, bn]`` (paths ``.0`` and ``.1``)."""
  return nnx.List([_conv(in_ch, out_ch, kernel, stride, groups=groups, **kw), _bn(out_ch, **kw)])


def _conv_bn_relu6(pair: nnx.List, x: jax.Array, train: bool) -> jax.Array:
  conv, bn = pair
  return nnx.relu6(bn(conv(x), use_running_average=not train))


class InvertedResidual(nnx.Module):
  """Expand (1x1, unless t = 1) -> depthwise 3x3 -> linear 1x1 projection [+ identity].

  Attributes:
      conv: ``nnx.List`` with torchvision's layout: ``[[pw, bn], [dw, bn], proj, bn]``, or
          ``[[dw, bn], proj, bn]`` when the expansion ratio is 1.
      use_res_connect: whether the input is added to the output (stride 1, same channels).
  """

  def __init__(
    self,
    in_ch: int,
    out_ch: int,
    stride: int,
    expand_ratio: int,
    *,
    rngs: nnx.Rngs,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
  ):
    """Builds the block.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        stride: stride of the depthwise conv (1 or 2).
        expand_ratio: hidden channels / input channels (t in the paper).
        rngs: initialisation streams.
        dtype: computation dtype.
        param_dtype: parameter dtype.
    """
    kw = {"rngs": rngs, "dtype": dtype, "param_dtype": param_dtype}
    hidden = round(in_ch * expand_ratio)
    layers: list[nnx.Module] = []
    if expand_ratio != 1:
      layers.append(_conv_bn(in_ch, hidden, 1, **kw))
    layers.append(_conv_bn(hidden, hidden, 3, stride, groups=hidden, **kw))
    layers += [_conv(hidden, out_ch, 1, **kw), _bn(out_ch, **kw)]
    self.conv = nnx.List(layers)
    self.use_res_connect = stride == 1 and in_ch == out_ch

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    *conv_bn_relu6, proj, bn = self.conv
    y = x
    for pair in conv_bn_relu6:
      y = _conv_bn_relu6(pair, y, train)
    # Linear projection: a ReLU on the narrow bottleneck would destroy information (Sec. 3.2).
    y = bn(proj(y), use_running_average=not train)
    return x + y if self.use_res_connect else y


class MobileNetV2(Backbone):
  """MobileNetV2 backbone plus :class:`~jaxcxr.models.heads.ClassifierHead`.

  Attributes:
      features: ``nnx.List``: stem ``[conv, bn]``, the inverted residual blocks, and the final
          1x1 ``[conv, bn]`` (torchvision's ``features.0`` ... ``features.18``).
      head: global average pool, dropout and ``fc``.
      num_features: channels of the final feature map (1280 for width_mult <= 1).
  """

  def __init__(
    self,
    *,
    num_classes: int,
    in_chans: int = 3,
    drop_rate: float = 0.0,
    width_mult: float = 1.0,
    inverted_residual_setting: Sequence[Sequence[int]] = _SETTING_V2,
    last_channel: int = 1280,
    rngs: nnx.Rngs,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
  ):
    """Builds the network.

    Args:
        num_classes: number of logits; 0 makes the model return pooled features.
        in_chans: input channels.
        drop_rate: dropout before the classifier (training only).
        width_mult: channel multiplier (alpha in the paper); channels are rounded to multiples
            of 8 as torchvision does, and the last conv never shrinks below ``last_channel``.
        inverted_residual_setting: rows ``(t, c, n, s)`` of the paper's Table 2.
        last_channel: channels of the final 1x1 conv at ``width_mult`` 1.
        rngs: initialisation streams.
        dtype: computation dtype (e.g. ``jnp.bfloat16``).
        param_dtype: parameter dtype.
    """
    kw = {"rngs": rngs, "dtype": dtype, "param_dtype": param_dtype}
    in_ch = make_divisible(32 * width_mult)
    layers: list[nnx.Module] = [_conv_bn(in_chans, in_ch, 3, 2, **kw)]
    for t, c, n, s in inverted_residual_setting:
      out_ch = make_divisible(c * width_mult)
      for i in range(n):
        layers.append(InvertedResidual(in_ch, out_ch, s if i == 0 else 1, t, **kw))
        in_ch = out_ch
    self.num_features = make_divisible(last_channel * max(1.0, width_mult))
    layers.append(_conv_bn(in_ch, self.num_features, 1, **kw))
    self.features = nnx.List(layers)

    self.num_classes = num_classes
    self.head = ClassifierHead(self.num_features, num_classes, drop_rate=drop_rate, **kw)

  def forward_features(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """Stem, blocks and last conv: ``(N, H, W, C)`` -> ``(N, H/32, W/32, num_features)``."""
    stem, *blocks, last = self.features
    x = _conv_bn_relu6(stem, x, train)
    for blk in blocks:
      x = blk(x, train=train)
    return _conv_bn_relu6(last, x, train)


def _register_mobilenet(name: str, **defaults: Any) -> None:
  """Registers ``name`` as a partial of :class:`MobileNetV2`."""

  def factory(**kwargs: Any) -> MobileNetV2:
    return MobileNetV2(**{**defaults, **kwargs})

  factory.__name__ = factory.__qualname__ = name
  factory.__doc__ = f"{name}: MobileNetV2, options {defaults or 'default'}."
  default_cfg = {
    "input_size": (3, 224, 224),
    "mean": _IMAGENET_MEAN,
    "std": _IMAGENET_STD,
    "interpolation": "bilinear",
    "crop_pct": 0.875,
    "first_conv": "features.0.0",
    "classifier": "head.fc",
  }
  register(name, default_cfg=default_cfg)(factory)


_register_mobilenet("mobilenet_v2")
# Used for testing only: the stem and four stride-2 stages (stride 32), one of them the expansion
# ratio 1 block and one with an identity shortcut; about 20k weights.
_register_mobilenet(
  "mobilenet_v2_tiny",
  width_mult=0.5,
  inverted_residual_setting=((1, 16, 1, 2), (6, 24, 2, 2), (6, 32, 1, 2), (6, 64, 1, 2)),
  last_channel=64,
)
