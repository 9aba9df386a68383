"""Inception-v3 in Flax NNX, laid out exactly like torchvision's ``Inception3``.

Szegedy, Vanhoucke, Ioffe, Shlens and Wojna, 2016, "Rethinking the Inception Architecture for
Computer Vision", CVPR.

Inputs are NHWC. Module names follow torchvision (timm's ``inception_v3`` uses the same names), so
a ``state_dict`` maps one-to-one apart from ``fc`` -> ``head.fc``; the map is in
:mod:`jaxcxr.weights.maps.inception`. Every conv is a :class:`BasicConv2d` (conv without bias,
batch norm with eps 1e-3, ReLU), stored as ``<name>.conv`` and ``<name>.bn``:

================  ==========================================================  ==================
block             branches (torchvision names, in concatenation order)        output (at 299 px)
================  ==========================================================  ==================
stem              ``Conv2d_1a_3x3`` (s2), ``Conv2d_2a_3x3``, ``Conv2d_2b_3x3``,  35 x 35 x 192
                  max pool, ``Conv2d_3b_1x1``, ``Conv2d_4a_3x3``, max pool
``Mixed_5b..5d``  :class:`InceptionA`: ``branch1x1``, ``branch5x5_{1,2}``,       35 x 35 x 256..288
                  ``branch3x3dbl_{1,2,3}``, ``branch_pool``
``Mixed_6a``      :class:`InceptionB`: ``branch3x3``, ``branch3x3dbl_{1,2,3}``,  17 x 17 x 768
                  max pool
``Mixed_6b..6e``  :class:`InceptionC`: ``branch1x1``, ``branch7x7_{1,2,3}``,     17 x 17 x 768
                  ``branch7x7dbl_{1..5}``, ``branch_pool``
``Mixed_7a``      :class:`InceptionD`: ``branch3x3_{1,2}``,                     8 x 8 x 1280
                  ``branch7x7x3_{1..4}``, max pool
``Mixed_7b, 7c``  :class:`InceptionE`: ``branch1x1``, ``branch3x3_{1,2a,2b}``,   8 x 8 x 2048
                  ``branch3x3dbl_{1,2,3a,3b}``, ``branch_pool``
``AuxLogits``     :class:`InceptionAux` on ``Mixed_6e`` (only with ``aux_logits=True``)
``head``          global average pool, dropout, ``fc``
================  ==========================================================  ==================

Faithful details: all max pools are 3x3/2 without padding; the ``branch_pool`` average pools are
3x3/1 with padding 1 and ``count_include_pad=True`` (torch's default), so border averages divide
by 9 and include the zero padding. The smallest input the network accepts is 75 x 75 px.

``inception_v3_keras`` is the same network with ``pool_count_include_pad=False``: Keras's
``InceptionV3`` (``AveragePooling2D(3, 1, padding='same')``) leaves the padding out of border
averages. Everything else matches (checked against ``keras/src/applications/inception_v3.py``):
Keras's stride-2 and unpadded stem convs are ``'valid'``, its stride-1 convs ``'same'`` with odd
kernels (symmetric, as torchvision), and its branches are concatenated in torchvision's order. Its
weights are mapped by :mod:`jaxcxr.weights.maps.keras_densenet_inception`.

torchvision's ``transform_input`` option (re-normalising ImageNet-normalised inputs to [-1, 1] for
Google's original weights) is not reproduced: jaxcxr normalises inputs itself with the
``mean``/``std`` of the ``default_cfg`` ((0.5, 0.5, 0.5) like timm's ``inception_v3.tv_in1k``),
which is what ``transform_input=True`` amounts to.

Batch norm takes ``use_running_average=not train`` at every call (see :mod:`jaxcxr.models.resnet`
for why).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.typing import Dtype

from jaxcxr.models import layers
from jaxcxr.models.base import Backbone
from jaxcxr.models.heads import ClassifierHead
from jaxcxr.models.registry import register

__all__ = [
  "BasicConv2d",
  "InceptionA",
  "InceptionAux",
  "InceptionB",
  "InceptionC",
  "InceptionD",
  "InceptionE",
  "InceptionV3",
]

# torchvision's init_weights: trunc_normal_(std=0.1, a=-2, b=2) for every conv and linear. The
# bounds are absolute, i.e. +-20 standard deviations, so this is a plain normal.
_CONV_INIT = nnx.initializers.normal(0.1)


class BasicConv2d(nnx.Module):
  """Conv (no bias) -> BatchNorm (eps 1e-3) -> ReLU, torchvision's ``BasicConv2d``."""

  def __init__(
    self,
    in_ch: int,
    out_ch: int,
    kernel: layers.IntPair,
    *,
    stride: int = 1,
    padding: layers.IntPair = 0,
    kernel_init: nnx.Initializer = _CONV_INIT,
    rngs: nnx.Rngs,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
  ):
    """Builds the layer.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        kernel: kernel size, an int or ``(kh, kw)`` (the 1x7 / 7x1 factorised convs).
        stride: spatial stride.
        padding: symmetric zero padding, an int or ``(ph, pw)`` as in torch (0 = 'VALID').
        kernel_init: conv kernel initialiser.
        rngs: initialisation streams.
        dtype: computation dtype.
        param_dtype: parameter dtype.
    """
    kw = {"rngs": rngs, "dtype": dtype, "param_dtype": param_dtype}
    self.conv = layers.conv(
      in_ch, out_ch, kernel, stride, padding=padding, kernel_init=kernel_init, **kw
    )
    # eps 1e-3 (not torch's default 1e-5) is what the ported TF weights were trained with.
    self.bn = layers.batch_norm(out_ch, eps=1e-3, **kw)

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    return nnx.relu(self.bn(self.conv(x), use_running_average=not train))


def _avg_pool_3x3(x: jax.Array, count_include_pad: bool = True) -> jax.Array:
  # torch F.avg_pool2d(x, 3, stride=1, padding=1) counts the zero padding in the average; Keras's
  # AveragePooling2D(3, 1, padding='same') averages only the pixels inside the image.
  return nnx.avg_pool(
    x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=count_include_pad
  )


def _max_pool_3x3_s2(x: jax.Array) -> jax.Array:
  return nnx.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class InceptionA(nnx.Module):
  """35x35 block (``Mixed_5b..5d``): 1x1, 5x5, double 3x3 and pooled 1x1 branches."""

  def __init__(
    self, in_ch: int, pool_features: int, *, c: Any, count_include_pad: bool = True, **kw: Any
  ):
    """Builds the block; ``c`` maps a torchvision channel count to this model's width.

    ``count_include_pad`` says whether the branch pool's average counts the zero padding
    (torchvision) or not (Keras).
    """
    self.count_include_pad = count_include_pad
    self.branch1x1 = BasicConv2d(in_ch, c(64), 1, **kw)
    self.branch5x5_1 = BasicConv2d(in_ch, c(48), 1, **kw)
    self.branch5x5_2 = BasicConv2d(c(48), c(64), 5, padding=2, **kw)
    self.branch3x3dbl_1 = BasicConv2d(in_ch, c(64), 1, **kw)
    self.branch3x3dbl_2 = BasicConv2d(c(64), c(96), 3, padding=1, **kw)
    self.branch3x3dbl_3 = BasicConv2d(c(96), c(96), 3, padding=1, **kw)
    self.branch_pool = BasicConv2d(in_ch, pool_features, 1, **kw)
    self.out_ch = c(64) + c(64) + c(96) + pool_features

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    t = train
    b1 = self.branch1x1(x, train=t)
    b5 = self.branch5x5_2(self.branch5x5_1(x, train=t), train=t)
    b3 = self.branch3x3dbl_1(x, train=t)
    b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(b3, train=t), train=t)
    bp = self.branch_pool(_avg_pool_3x3(x, self.count_include_pad), train=t)
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nnx.Module):
  """35x35 -> 17x17 grid reduction (``Mixed_6a``): strided 3x3, double 3x3 and max pool."""

  def __init__(self, in_ch: int, *, c: Any, **kw: Any):
    """Builds the block; ``c`` as :class:`InceptionA`."""
    self.branch3x3 = BasicConv2d(in_ch, c(384), 3, stride=2, **kw)
    self.branch3x3dbl_1 = BasicConv2d(in_ch, c(64), 1, **kw)
    self.branch3x3dbl_2 = BasicConv2d(c(64), c(96), 3, padding=1, **kw)
    self.branch3x3dbl_3 = BasicConv2d(c(96), c(96), 3, stride=2, **kw)
    self.out_ch = c(384) + c(96) + in_ch

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    t = train
    b3 = self.branch3x3(x, train=t)
    bd = self.branch3x3dbl_1(x, train=t)
    bd = self.branch3x3dbl_3(self.branch3x3dbl_2(bd, train=t), train=t)
    return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nnx.Module):
  """17x17 block (``Mixed_6b..6e``) with 7x7 convs factorised into 1x7 and 7x1."""

  def __init__(
    self, in_ch: int, channels_7x7: int, *, c: Any, count_include_pad: bool = True, **kw: Any
  ):
    """Builds the block; ``channels_7x7`` is already scaled, the rest as :class:`InceptionA`."""
    self.count_include_pad = count_include_pad
    c7 = channels_7x7
    self.branch1x1 = BasicConv2d(in_ch, c(192), 1, **kw)
    self.branch7x7_1 = BasicConv2d(in_ch, c7, 1, **kw)
    self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3), **kw)
    self.branch7x7_3 = BasicConv2d(c7, c(192), (7, 1), padding=(3, 0), **kw)
    self.branch7x7dbl_1 = BasicConv2d(in_ch, c7, 1, **kw)
    self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0), **kw)
    self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3), **kw)
    self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0), **kw)
    self.branch7x7dbl_5 = BasicConv2d(c7, c(192), (1, 7), padding=(0, 3), **kw)
    self.branch_pool = BasicConv2d(in_ch, c(192), 1, **kw)
    self.out_ch = 4 * c(192)

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    t = train
    b1 = self.branch1x1(x, train=t)
    b7 = self.branch7x7_1(x, train=t)
    b7 = self.branch7x7_3(self.branch7x7_2(b7, train=t), train=t)
    bd = self.branch7x7dbl_1(x, train=t)
    for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4):
      bd = conv(bd, train=t)
    bd = self.branch7x7dbl_5(bd, train=t)
    bp = self.branch_pool(_avg_pool_3x3(x, self.count_include_pad), train=t)
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nnx.Module):
  """17x17 -> 8x8 grid reduction (``Mixed_7a``)."""

  def __init__(self, in_ch: int, *, c: Any, **kw: Any):
    """Builds the block; ``c`` as :class:`InceptionA`."""
    self.branch3x3_1 = BasicConv2d(in_ch, c(192), 1, **kw)
    self.branch3x3_2 = BasicConv2d(c(192), c(320), 3, stride=2, **kw)
    self.branch7x7x3_1 = BasicConv2d(in_ch, c(192), 1, **kw)
    self.branch7x7x3_2 = BasicConv2d(c(192), c(192), (1, 7), padding=(0, 3), **kw)
    self.branch7x7x3_3 = BasicConv2d(c(192), c(192), (7, 1), padding=(3, 0), **kw)
    self.branch7x7x3_4 = BasicConv2d(c(192), c(192), 3, stride=2, **kw)
    self.out_ch = c(320) + c(192) + in_ch

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    t = train
    b3 = self.branch3x3_2(self.branch3x3_1(x, train=t), train=t)
    b7 = self.branch7x7x3_1(x, train=t)
    for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
      b7 = conv(b7, train=t)
    return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nnx.Module):
  """8x8 block (``Mixed_7b, 7c``) whose 3x3 branches split into parallel 1x3 and 3x1 convs."""

  def __init__(self, in_ch: int, *, c: Any, count_include_pad: bool = True, **kw: Any):
    """Builds the block; arguments as :class:`InceptionA`."""
    self.count_include_pad = count_include_pad
    self.branch1x1 = BasicConv2d(in_ch, c(320), 1, **kw)
    self.branch3x3_1 = BasicConv2d(in_ch, c(384), 1, **kw)
    self.branch3x3_2a = BasicConv2d(c(384), c(384), (1, 3), padding=(0, 1), **kw)
    self.branch3x3_2b = BasicConv2d(c(384), c(384), (3, 1), padding=(1, 0), **kw)
    self.branch3x3dbl_1 = BasicConv2d(in_ch, c(448), 1, **kw)
    self.branch3x3dbl_2 = BasicConv2d(c(448), c(384), 3, padding=1, **kw)
    self.branch3x3dbl_3a = BasicConv2d(c(384), c(384), (1, 3), padding=(0, 1), **kw)
    self.branch3x3dbl_3b = BasicConv2d(c(384), c(384), (3, 1), padding=(1, 0), **kw)
    self.branch_pool = BasicConv2d(in_ch, c(192), 1, **kw)
    self.out_ch = c(320) + 4 * c(384) + c(192)

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    t = train
    b1 = self.branch1x1(x, train=t)
    b3 = self.branch3x3_1(x, train=t)
    b3 = [self.branch3x3_2a(b3, train=t), self.branch3x3_2b(b3, train=t)]
    bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x, train=t), train=t)
    bd = [self.branch3x3dbl_3a(bd, train=t), self.branch3x3dbl_3b(bd, train=t)]
    bp = self.branch_pool(_avg_pool_3x3(x, self.count_include_pad), train=t)
    return jnp.concatenate([b1, *b3, *bd, bp], axis=-1)


class InceptionAux(nnx.Module):
  """Auxiliary classifier on the 17x17 map (``AuxLogits``), used as an extra training loss.

  Its 5x5/3 pool followed by an unpadded 5x5 conv needs a ``Mixed_6e`` map of at least 17x17,
  i.e. inputs of at least 299 px (as in torchvision).
  """

  def __init__(self, in_ch: int, num_classes: int, *, c: Any, **kw: Any):
    """Builds the head; ``c`` as :class:`InceptionA`."""
    self.conv0 = BasicConv2d(in_ch, c(128), 1, **kw)
    # torchvision's per-layer stddev attributes: 0.01 for conv1, 0.001 for fc.
    self.conv1 = BasicConv2d(c(128), c(768), 5, kernel_init=nnx.initializers.normal(0.01), **kw)
    self.fc = nnx.Linear(
      c(768),
      num_classes,
      kernel_init=nnx.initializers.normal(0.001),
      dtype=kw["dtype"],
      param_dtype=kw["param_dtype"],
      rngs=kw["rngs"],
    )

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    x = nnx.avg_pool(x, (5, 5), strides=(3, 3), padding="VALID")
    x = self.conv1(self.conv0(x, train=train), train=train)
    return self.fc(jnp.mean(x, axis=(1, 2)))


class InceptionV3(Backbone):
  """Inception-v3 backbone plus :class:`~jaxcxr.models.heads.ClassifierHead`.

  Attributes:
      Conv2d_1a_3x3 ... Mixed_7c: the torchvision-named layers (see the module docstring).
      AuxLogits: the auxiliary classifier, or ``None`` (the default, ``aux_logits=False``).
      head: the pooling + dropout + ``fc`` classifier.
      num_features: channels of the final feature map (2048 at full width).
  """

  def __init__(
    self,
    *,
    num_classes: int,
    in_chans: int = 3,
    drop_rate: float = 0.0,
    aux_logits: bool = False,
    channel_divisor: int = 1,
    pool_count_include_pad: bool = True,
    rngs: nnx.Rngs,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
  ):
    """Builds the network.

    Args:
        num_classes: number of logits; 0 makes the model return pooled features.
        in_chans: input channels.
        drop_rate: dropout before the classifier in training. torchvision trains with 0.5; the
            default 0.0 is timm's and the other jaxcxr families'.
        aux_logits: build ``AuxLogits`` (needed to load its checkpoint tensors or to train with
            the auxiliary loss through :meth:`forward_with_aux`).
        channel_divisor: divides every channel count (8 for the tiny test variant).
        pool_count_include_pad: whether the 3x3 average pools of the ``branch_pool`` branches
            count the zero padding in the average, as torchvision does; ``False`` averages only
            the pixels inside the map, as Keras's ``InceptionV3`` does (its weights need it).
        rngs: initialisation streams.
        dtype: computation dtype (e.g. ``jnp.bfloat16``).
        param_dtype: parameter dtype.
    """
    if aux_logits and num_classes <= 0:
      raise ValueError("InceptionV3: aux_logits=True needs num_classes > 0.")

    def c(n: int) -> int:
      if n % channel_divisor:
        raise ValueError(f"InceptionV3: channel_divisor={channel_divisor} does not divide {n}.")
      return n // channel_divisor

    kw = {"rngs": rngs, "dtype": dtype, "param_dtype": param_dtype}
    pool_kw = {"count_include_pad": pool_count_include_pad, **kw}
    self.Conv2d_1a_3x3 = BasicConv2d(in_chans, c(32), 3, stride=2, **kw)
    self.Conv2d_2a_3x3 = BasicConv2d(c(32), c(32), 3, **kw)
    self.Conv2d_2b_3x3 = BasicConv2d(c(32), c(64), 3, padding=1, **kw)
    self.Conv2d_3b_1x1 = BasicConv2d(c(64), c(80), 1, **kw)
    self.Conv2d_4a_3x3 = BasicConv2d(c(80), c(192), 3, **kw)
    self.Mixed_5b = InceptionA(c(192), c(32), c=c, **pool_kw)
    self.Mixed_5c = InceptionA(self.Mixed_5b.out_ch, c(64), c=c, **pool_kw)
    self.Mixed_5d = InceptionA(self.Mixed_5c.out_ch, c(64), c=c, **pool_kw)
    self.Mixed_6a = InceptionB(self.Mixed_5d.out_ch, c=c, **kw)
    self.Mixed_6b = InceptionC(self.Mixed_6a.out_ch, c(128), c=c, **pool_kw)
    self.Mixed_6c = InceptionC(self.Mixed_6b.out_ch, c(160), c=c, **pool_kw)
    self.Mixed_6d = InceptionC(self.Mixed_6c.out_ch, c(160), c=c, **pool_kw)
    self.Mixed_6e = InceptionC(self.Mixed_6d.out_ch, c(192), c=c, **pool_kw)
    self.AuxLogits = (
      InceptionAux(self.Mixed_6e.out_ch, num_classes, c=c, **kw) if aux_logits else None
    )
    self.Mixed_7a = InceptionD(self.Mixed_6e.out_ch, c=c, **kw)
    self.Mixed_7b = InceptionE(self.Mixed_7a.out_ch, c=c, **pool_kw)
    self.Mixed_7c = InceptionE(self.Mixed_7b.out_ch, c=c, **pool_kw)

    self.num_features = self.Mixed_7c.out_ch
    self.num_classes = num_classes
    self.head = ClassifierHead(self.num_features, num_classes, drop_rate=drop_rate, **kw)

  def _features(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    """Final feature map and the ``Mixed_6e`` map the auxiliary classifier reads."""
    for conv in (self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3):
      x = conv(x, train=train)
    x = _max_pool_3x3_s2(x)  # maxpool1
    x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x, train=train), train=train)
    x = _max_pool_3x3_s2(x)  # maxpool2
    for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a):
      x = block(x, train=train)
    for block in (self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e):
      x = block(x, train=train)
    mixed_6e = x
    for block in (self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
      x = block(x, train=train)
    return x, mixed_6e

  def forward_features(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """Stem and Inception blocks: ``(N, 299, 299, C)`` -> ``(N, 8, 8, num_features)``.

    H and W must be at least 75. This is the un-pooled map Grad-CAM hooks onto; ``__call__``
    (``Backbone``'s) pools and classifies it and does not run the auxiliary head.
    """
    return self._features(x, train)[0]

  def forward_with_aux(
    self,
    x: jax.Array,
    *,
    train: bool = False,
    rngs: nnx.Rngs | jax.Array | None = None,
  ) -> tuple[jax.Array, jax.Array]:
    """``(logits, aux_logits)``, for training with the paper's auxiliary loss (weight 0.4 in
    torchvision's recipe). Requires ``aux_logits=True`` and inputs of at least 299 px.
    """
    if self.AuxLogits is None:
      raise ValueError("InceptionV3.forward_with_aux needs a model built with aux_logits=True.")
    feats, mixed_6e = self._features(x, train)
    aux = self.AuxLogits(mixed_6e, train=train)
    return self.forward_head(feats, train=train, rngs=rngs), aux


def _cfg(**overrides: Any) -> dict[str, Any]:
  # timm's inception_v3.tv_in1k: the torchvision weights expect inputs scaled to [-1, 1].
  cfg = {
    "input_size": (3, 299, 299),
    "min_input_size": (3, 75, 75),
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
    "interpolation": "bicubic",
    "crop_pct": 0.875,
    "first_conv": "Conv2d_1a_3x3.conv",
    "classifier": "head.fc",
  }
  cfg.update(overrides)
  return cfg


@register("inception_v3", default_cfg=_cfg())
def inception_v3(**kwargs: Any) -> InceptionV3:
  """Inception-v3 (torchvision / timm ``inception_v3``)."""
  return InceptionV3(**kwargs)


@register("inception_v3_keras", default_cfg=_cfg(interpolation="bilinear"))
def inception_v3_keras(**kwargs: Any) -> InceptionV3:
  """Inception-v3 as Keras's ``InceptionV3``: branch pools average without the padding.

  Same layers and parameters as :func:`inception_v3`; the Keras ImageNet weights
  (``inception_v3_keras.keras_in1k``) need this variant to reproduce Keras's outputs.
  """
  return InceptionV3(**{"pool_count_include_pad": False, **kwargs})


# Used for testing only: every channel count divided by 8 (~0.4 M parameters), same topology.
@register("inception_v3_tiny", default_cfg=_cfg(input_size=(3, 75, 75)))
def inception_v3_tiny(**kwargs: Any) -> InceptionV3:
  """Inception-v3 at 1/8 width, for fast tests."""
  return InceptionV3(**{"channel_divisor": 8, **kwargs})
