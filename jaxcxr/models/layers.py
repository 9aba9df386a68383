"""Layers every model family builds from: torch-padded and TF-'SAME' convs, batch norm, the
conv-BN pair, channel rounding, dropout keys and the pooled-dropout head step.

Helpers return plain `nnx.Conv` / `nnx.BatchNorm` / `nnx.List` modules, so a family's parameter
paths (and with them the explicit weight-name maps of `jaxcxr.weights.maps`) are those of the
attributes it assigns them to: nothing here adds a level to an NNX path.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx
from flax.typing import Dtype
from jax import lax

from jaxcxr.models.depthwise import DepthwiseConvFn

# torchvision's kaiming_normal_(mode='fan_out', nonlinearity='relu'): an untruncated normal with
# variance 2 / (out_channels * kh * kw). JAX's fan_out for an HWIO kernel is the same product.
KAIMING_FAN_OUT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")
# kaiming_normal_ with mode='fan_in' (torchvision DenseNet; timm's depthwise convs).
KAIMING_FAN_IN = nnx.initializers.variance_scaling(2.0, "fan_in", "normal")

IntPair = int | tuple[int, int]


def pair(v: IntPair) -> tuple[int, int]:
  return (v, v) if isinstance(v, int) else tuple(v)


def conv_fn(groups: int) -> Callable[..., jax.Array]:
  """The convolution function of an `nnx.Conv` with `groups` feature groups.

  Grouped (depthwise) convolutions go through `jaxcxr.models.depthwise` (shifted slices on the CPU
  backend, XLA's convolution elsewhere; it passes any call it does not handle on to lax), others
  through `lax.conv_general_dilated`. The parameters are the same either way.
  """
  return DepthwiseConvFn() if groups > 1 else lax.conv_general_dilated


def conv(
  in_ch: int,
  out_ch: int,
  kernel: IntPair,
  stride: int = 1,
  *,
  padding: IntPair | None = None,
  groups: int = 1,
  bias: bool = False,
  kernel_init: nnx.Initializer = KAIMING_FAN_OUT,
  rngs: nnx.Rngs,
  dtype: Dtype,
  param_dtype: Dtype,
) -> nnx.Conv:
  """A convolution with torch's explicit symmetric zero padding (default: kernel // 2).

  'SAME' would pad asymmetrically for stride 2 and even inputs, shifting every feature map by a
  pixel relative to torch weights; TF-trained weights need `Conv2dSame` instead.
  """
  kh, kw = pair(kernel)
  ph, pw = pair(padding) if padding is not None else (kh // 2, kw // 2)
  return nnx.Conv(
    in_ch,
    out_ch,
    (kh, kw),
    strides=(stride, stride),
    padding=((ph, ph), (pw, pw)),
    feature_group_count=groups,
    conv_general_dilated=conv_fn(groups),
    use_bias=bias,
    kernel_init=kernel_init,
    dtype=dtype,
    param_dtype=param_dtype,
    rngs=rngs,
  )


def batch_norm(
  ch: int,
  *,
  eps: float = 1e-5,
  zero_init: bool = False,
  rngs: nnx.Rngs,
  dtype: Dtype,
  param_dtype: Dtype,
) -> nnx.BatchNorm:
  """Batch norm with torch's running-statistics update (`zero_init`: scale starts at 0)."""
  # Flax momentum is the weight of the *old* statistics: 0.9 here == torch momentum 0.1.
  return nnx.BatchNorm(
    ch,
    momentum=0.9,
    epsilon=eps,
    scale_init=nnx.initializers.zeros if zero_init else nnx.initializers.ones,
    dtype=dtype,
    param_dtype=param_dtype,
    rngs=rngs,
  )


def conv_bn(
  in_ch: int,
  out_ch: int,
  kernel: IntPair,
  stride: int = 1,
  *,
  groups: int = 1,
  bias: bool = False,
  eps: float = 1e-5,
  kernel_init: nnx.Initializer = KAIMING_FAN_OUT,
  rngs: nnx.Rngs,
  dtype: Dtype,
  param_dtype: Dtype,
) -> nnx.List:
  """torchvision's ``Conv2dNormActivation`` / ResNet ``downsample``: ``[conv, bn]`` (paths
  ``.0`` and ``.1``, as torch's ``Sequential``)."""
  kw = {"rngs": rngs, "dtype": dtype, "param_dtype": param_dtype}
  return nnx.List(
    [
      conv(in_ch, out_ch, kernel, stride, groups=groups, bias=bias, kernel_init=kernel_init, **kw),
      batch_norm(out_ch, eps=eps, **kw),
    ]
  )


def conv_bn_act(
  layers: nnx.List, x: jax.Array, train: bool, act: Callable[[jax.Array], jax.Array] | None = None
) -> jax.Array:
  """Applies a `conv_bn` pair, then `act` (None: linear)."""
  conv_, bn = layers
  x = bn(conv_(x), use_running_average=not train)
  return x if act is None else act(x)


def make_divisible(v: float, divisor: int = 8) -> int:
  """Rounds channels to a multiple of ``divisor``, at least ``divisor``, and never below 90% of
  ``v`` (torchvision's ``_make_divisible``, timm's ``make_divisible`` / ``round_channels``)."""
  new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
  if new_v < 0.9 * v:
    new_v += divisor
  return new_v


def get_same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> int:
  """Total TF 'SAME' padding of one spatial axis (timm's ``get_same_padding``)."""
  return max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)


class Conv2dSame(nnx.Conv):
  """Convolution with TensorFlow 'SAME' padding, computed from the input size at call time.

  timm's ``Conv2dSame``/``pad_same``: the total padding of each axis goes half before and the
  rest (one more when odd) after; a 3x3/2 conv pads a 64 px input by (0, 1) and a 65 px one by
  (1, 1). Torch-style symmetric padding would shift feature maps by a pixel against TF weights.
  Construct it with ``padding='VALID'`` and 2-tuple ``strides``/``kernel_dilation``; the
  parameters are those of ``nnx.Conv``.
  """

  def __call__(self, x: jax.Array) -> jax.Array:  # type: ignore[override]
    pads = [(0, 0)]
    for axis in range(2):
      total = get_same_padding(
        x.shape[1 + axis],
        self.kernel_size[axis],
        self.strides[axis],  # type: ignore[index]
        self.kernel_dilation[axis],  # type: ignore[index]
      )
      pads.append((total // 2, total - total // 2))
    pads.append((0, 0))
    return super().__call__(jnp.pad(x, pads))


def dropout_rngs(
  rngs: nnx.Rngs | jax.Array | None, *, needed: bool = False, owner: str = "model", rate: float = 0
) -> nnx.Rngs | None:
  """The dropout stream: a raw key becomes an ``nnx.Rngs`` so that every dropout draws a fresh key.

  Dropout keys are passed at call time, never stored in a module, because training runs
  functionally (``nnx.split`` / ``nnx.merge`` under ``jax.jit``) with an explicit per-step key.

  Raises:
    ValueError: `needed` (training with dropout) and no key was given.
  """
  if needed and rngs is None:
    raise ValueError(
      f"{owner}: train=True with drop_rate={rate} needs a dropout key; pass "
      "rngs=nnx.Rngs(dropout=key) or a jax.random key."
    )
  if rngs is None or isinstance(rngs, nnx.Rngs):
    return rngs
  return nnx.Rngs(dropout=rngs)


def pool_and_dropout(
  x: jax.Array,
  dropout: nnx.Dropout,
  *,
  train: bool,
  rngs: nnx.Rngs | jax.Array | None,
  owner: str,
) -> jax.Array:
  """Global average pool of an NHWC map, then dropout when training (the ImageNet CNN head)."""
  x = jnp.mean(x, axis=(1, 2))
  if train and dropout.rate > 0.0:
    rngs = dropout_rngs(rngs, needed=True, owner=owner, rate=dropout.rate)
    x = dropout(x, deterministic=False, rngs=rngs)
  return x
