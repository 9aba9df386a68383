"""ResNet in Flax NNX, laid out exactly like torchvision's.

He, Zhang, Ren and Sun, 2016, "Deep Residual Learning for Image Recognition", CVPR.
Like torchvision ("ResNet v1.5"), the bottleneck block puts its stride on the 3x3 conv rather
than on the first 1x1 conv as in the paper; this is what all torchvision/timm weights expect.
``resnet50_keras`` is the paper's v1 as Keras builds it (``stride_in_1x1``, biased convs, BN
epsilon 1.001e-5) for Keras' ImageNet weights (:mod:`jaxcxr.weights.maps.keras`).

Inputs are NHWC. Attribute names follow torchvision so a ``state_dict`` maps one-to-one:

==============================  =====================================  =======================
torchvision key                 NNX path                               transform
==============================  =====================================  =======================
``conv1.weight``                ``conv1/kernel``                       OIHW -> HWIO
``bn1.{weight,bias}``           ``bn1/{scale,bias}``                   --
``bn1.running_{mean,var}``      ``bn1/{mean,var}`` (``nnx.BatchStat``)  --
``layerL.i.convK.weight``       ``layerL/i/convK/kernel``              OIHW -> HWIO
``layerL.i.bnK.*``              ``layerL/i/bnK/*``                     as ``bn1``
``layerL.i.downsample.0.weight``  ``layerL/i/downsample/0/kernel``     OIHW -> HWIO
``layerL.i.downsample.1.*``     ``layerL/i/downsample/1/*``            as ``bn1``
``fc.weight``                   ``head/fc/kernel``                     transpose
``fc.bias``                     ``head/fc/bias``                       --
==============================  =====================================  =======================

(``bnK.num_batches_tracked`` has no counterpart and is dropped.) OIHW -> HWIO is
``w.transpose(2, 3, 1, 0)``. The only rename is ``fc`` -> ``head/fc``.

Batch norm takes ``use_running_average=not train`` at every call instead of relying on
``model.train()``/``model.eval()``: training runs functionally (``nnx.split`` once, ``nnx.merge``
inside ``jax.jit``), where a flag passed explicitly is the one thing guaranteed to be honoured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.typing import Dtype

from jaxcxr.models.base import Backbone
from jaxcxr.models.heads import ClassifierHead
from jaxcxr.models.layers import batch_norm, conv, conv_bn, conv_bn_act
from jaxcxr.models.registry import imagenet_cfg, register_variant

__all__ = ["BasicBlock", "Bottleneck", "ResNet"]


def _downsample(
  in_ch: int,
  out_ch: int,
  stride: int,
  *,
  conv_bias: bool,
  bn_eps: float,
  rngs: nnx.Rngs,
  dtype: Dtype,
  param_dtype: Dtype,
) -> nnx.List | None:
  """1x1 projection shortcut, or None when the identity fits.

  Kept as a 2-element list ``[conv, bn]`` so the paths are ``downsample/0`` and
  ``downsample/1``, exactly torchvision's ``downsample.0`` / ``downsample.1``.
  """
  if stride == 1 and in_ch == out_ch:
    return None
  kw = {"rngs": rngs, "dtype": dtype, "param_dtype": param_dtype}
  return conv_bn(in_ch, out_ch, 1, stride, bias=conv_bias, eps=bn_eps, **kw)


def _shortcut(downsample: nnx.List | None, x: jax.Array, train: bool) -> jax.Array:
  return x if downsample is None else conv_bn_act(downsample, x, train)


class BasicBlock(nnx.Module):
  """Two 3x3 convs with an identity (or 1x1 projection) shortcut; ResNet-18/34."""

  expansion: int = 1

  def __init__(
    self,
    in_ch: int,
    planes: int,
    stride: int = 1,
    *,
    zero_init_residual: bool = False,
    conv_bias: bool = False,
    bn_eps: float = 1e-5,
    rngs: nnx.Rngs,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
  ):
    """Builds the block.

    Args:
        in_ch: input channels.
        planes: output channels (``planes * expansion``).
        stride: stride of the first 3x3 conv and of the shortcut.
        zero_init_residual: start ``bn2.scale`` at 0 so the block begins as the identity
            (Goyal et al., 2017), as torchvision's option of the same name.
        conv_bias: give every conv a bias (Keras' ResNets; torchvision's have none).
        bn_eps: batch-norm epsilon (torch 1e-5, Keras' ResNets 1.001e-5).
        rngs: initialisation streams.
        dtype: computation dtype.
        param_dtype: parameter dtype.
    """
    kw = {"rngs": rngs, "dtype": dtype, "param_dtype": param_dtype}
    conv_kw, bn_kw = {"bias": conv_bias, **kw}, {"eps": bn_eps, **kw}
    out_ch = planes * self.expansion
    self.conv1 = conv(in_ch, planes, 3, stride, **conv_kw)
    self.bn1 = batch_norm(planes, **bn_kw)
    self.conv2 = conv(planes, out_ch, 3, 1, **conv_kw)
    self.bn2 = batch_norm(out_ch, zero_init=zero_init_residual, **bn_kw)
    self.downsample = _downsample(in_ch, out_ch, stride, conv_bias=conv_bias, bn_eps=bn_eps, **kw)

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    ura = not train
    y = nnx.relu(self.bn1(self.conv1(x), use_running_average=ura))
    y = self.bn2(self.conv2(y), use_running_average=ura)
    return nnx.relu(y + _shortcut(self.downsample, x, train))


class Bottleneck(nnx.Module):
  """1x1 reduce -> 3x3 (strided, v1.5) -> 1x1 expand (x4); ResNet-50/101/152.

  With ``stride_in_1x1`` the stride moves to the first 1x1 conv: the paper's original block
  ("v1"), as in Keras' ``ResNet50``.
  """

  expansion: int = 4

  def __init__(
    self,
    in_ch: int,
    planes: int,
    stride: int = 1,
    *,
    zero_init_residual: bool = False,
    conv_bias: bool = False,
    bn_eps: float = 1e-5,
    stride_in_1x1: bool = False,
    rngs: nnx.Rngs,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
  ):
    """Builds the block; arguments as :class:`BasicBlock` (``bn3`` is the zero-init one).

    Args:
        stride_in_1x1: stride the first 1x1 conv instead of the 3x3 one (ResNet v1).
    """
    kw = {"rngs": rngs, "dtype": dtype, "param_dtype": param_dtype}
    conv_kw, bn_kw = {"bias": conv_bias, **kw}, {"eps": bn_eps, **kw}
    out_ch = planes * self.expansion
    s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
    self.conv1 = conv(in_ch, planes, 1, s1, **conv_kw)
    self.bn1 = batch_norm(planes, **bn_kw)
    self.conv2 = conv(planes, planes, 3, s3, **conv_kw)
    self.bn2 = batch_norm(planes, **bn_kw)
    self.conv3 = conv(planes, out_ch, 1, 1, **conv_kw)
    self.bn3 = batch_norm(out_ch, zero_init=zero_init_residual, **bn_kw)
    self.downsample = _downsample(in_ch, out_ch, stride, conv_bias=conv_bias, bn_eps=bn_eps, **kw)

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    ura = not train
    y = nnx.relu(self.bn1(self.conv1(x), use_running_average=ura))
    y = nnx.relu(self.bn2(self.conv2(y), use_running_average=ura))
    y = self.bn3(self.conv3(y), use_running_average=ura)
    return nnx.relu(y + _shortcut(self.downsample, x, train))


class ResNet(Backbone):
  """ResNet backbone plus :class:`~jaxcxr.models.heads.ClassifierHead`.

  Attributes:
      conv1, bn1: the 7x7/2 stem.
      layer1, layer2, layer3, layer4: ``nnx.List`` of blocks (torchvision names).
      head: the pooling + dropout + ``fc`` classifier.
      num_features: channels of the final feature map (512 or 2048 at width 64).
  """

  def __init__(
    self,
    block: type[BasicBlock | Bottleneck],
    layers: Sequence[int],
    *,
    num_classes: int,
    in_chans: int = 3,
    drop_rate: float = 0.0,
    width: int = 64,
    zero_init_residual: bool = False,
    conv_bias: bool = False,
    bn_eps: float = 1e-5,
    stride_in_1x1: bool = False,
    rngs: nnx.Rngs,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
  ):
    """Builds the network.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: number of blocks in each of the four stages.
        num_classes: number of logits; 0 makes the model return pooled features.
        in_chans: input channels.
        drop_rate: dropout before the classifier (training only).
        width: stem / first-stage channels (64 in the paper); stages use width * 1, 2, 4, 8.
        zero_init_residual: zero the last BN scale of every block.
        conv_bias: give every conv a bias (Keras' ResNets; torchvision's have none).
        bn_eps: batch-norm epsilon (torch 1e-5, Keras' ResNets 1.001e-5).
        stride_in_1x1: :class:`Bottleneck` only: stride the first 1x1 conv of each stage
            (ResNet v1, Keras) instead of the 3x3 conv (v1.5, torchvision).
        rngs: initialisation streams.
        dtype: computation dtype (e.g. ``jnp.bfloat16``).
        param_dtype: parameter dtype.
    """
    if len(layers) != 4:
      raise ValueError(f"ResNet: layers must have 4 stage depths, got {list(layers)}")
    kw = {"rngs": rngs, "dtype": dtype, "param_dtype": param_dtype}
    block_kw = {"zero_init_residual": zero_init_residual, "conv_bias": conv_bias, "bn_eps": bn_eps}
    if stride_in_1x1:
      if block is not Bottleneck:
        raise ValueError("ResNet: stride_in_1x1 applies to Bottleneck blocks only.")
      block_kw["stride_in_1x1"] = True
    self.conv1 = conv(in_chans, width, 7, 2, bias=conv_bias, **kw)
    self.bn1 = batch_norm(width, eps=bn_eps, **kw)

    in_ch = width
    stages = []
    for i, depth in enumerate(layers):
      planes = width * 2**i
      stride = 1 if i == 0 else 2
      blocks = []
      for j in range(depth):
        blocks.append(block(in_ch, planes, stride if j == 0 else 1, **block_kw, **kw))
        in_ch = planes * block.expansion
      # nnx.List (not a plain list) so flax 0.12 tracks the blocks as submodules.
      stages.append(nnx.List(blocks))
    self.layer1, self.layer2, self.layer3, self.layer4 = stages

    self.num_features = in_ch
    self.num_classes = num_classes
    self.head = ClassifierHead(in_ch, num_classes, drop_rate=drop_rate, **kw)

  def forward_features(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """Stem and the four stages: ``(N, H, W, C)`` -> ``(N, H/32, W/32, num_features)``.

    This is the un-pooled map Grad-CAM hooks onto.
    """
    x = nnx.relu(self.bn1(self.conv1(x), use_running_average=not train))
    # max_pool pads with -inf, like torch's MaxPool2d(3, 2, padding=1). Keras pads with zeros
    # (ZeroPadding2D + valid pool): the same after the ReLU, as every window holds a value >= 0.
    x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
      for blk in stage:
        x = blk(x, train=train)
    return x

  def forward_stages(self, x: jax.Array, *, train: bool = False) -> list[jax.Array]:
    """The stem's output (stride 2, before the max pool) and each stage's (strides 4 to 32).

    The skip connections a UNet decoder reads (jaxcxr.models.unet), finest first.
    """
    x = nnx.relu(self.bn1(self.conv1(x), use_running_average=not train))
    out = [x]
    x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
      for blk in stage:
        x = blk(x, train=train)
      out.append(x)
    return out


def _register_resnet(
  name: str,
  block: type[BasicBlock | Bottleneck],
  layers: Sequence[int],
  *,
  cfg: dict[str, Any] | None = None,
  **defaults: Any,
) -> None:
  """Registers ``name`` as a partial of :class:`ResNet`."""
  register_variant(
    name,
    ResNet,
    block,
    layers,
    default_cfg=imagenet_cfg(first_conv="conv1", classifier="head.fc", **(cfg or {})),
    doc=f"{name}: {block.__name__}, layers {list(layers)}.",
    **defaults,
  )


_register_resnet("resnet18", BasicBlock, [2, 2, 2, 2])
_register_resnet("resnet34", BasicBlock, [3, 4, 6, 3])
_register_resnet("resnet50", Bottleneck, [3, 4, 6, 3])
_register_resnet("resnet101", Bottleneck, [3, 4, 23, 3])
_register_resnet("resnet152", Bottleneck, [3, 8, 36, 3])
# Keras' `keras.applications.ResNet50`: the paper's v1 block (stride in the first 1x1 conv),
# biased convs and BN epsilon 1.001e-5; weights in jaxcxr.weights.maps.keras.
_register_resnet(
  "resnet50_keras",
  Bottleneck,
  [3, 4, 6, 3],
  conv_bias=True,
  bn_eps=1.001e-5,
  stride_in_1x1=True,
  # Keras' 'caffe' preprocessing on [0, 1] images: BGR, times 255, minus the BGR ImageNet mean.
  cfg={
    "mean": (103.939 / 255, 116.779 / 255, 123.68 / 255),
    "std": (1 / 255, 1 / 255, 1 / 255),
    "mode": "caffe",
  },
)
# Used for testing only (as flax examples' _ResNet1): a few thousand parameters, fast on CPU.
_register_resnet("resnet_tiny", BasicBlock, [1, 1, 1, 1], width=8)
