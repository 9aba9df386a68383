"""DenseNet-BC in Flax NNX, laid out exactly like torchvision's.

Huang, Liu, van der Maaten and Weinberger, 2017, "Densely Connected Convolutional Networks",
CVPR. Every dense layer (BN-ReLU-1x1 conv to ``bn_size * growth_rate`` channels, BN-ReLU-3x3 conv
to ``growth_rate``) sees the concatenation of all earlier feature maps of its block; transitions
(BN-ReLU-1x1 conv halving the channels, 2x2 average pool) sit between blocks. DenseNet-121 is the
CheXNet backbone (Rajpurkar et al., 2017, "CheXNet: Radiologist-Level Pneumonia Detection on
Chest X-Rays with Deep Learning").

Inputs are NHWC. Attribute names follow torchvision (``features.denseblock1.denselayer1.norm1``
...), so its ``state_dict`` maps onto the model with one rename, ``classifier`` -> ``head.fc``;
the name map is :data:`jaxcxr.weights.maps.densenet.TORCHVISION_RULES`.

``memory_efficient=True`` rematerialises every dense layer (``nnx.remat``, Pleiss et al., 2017,
"Memory-Efficient Implementation of DenseNets"): without it, backpropagation keeps each layer's
concatenated input and its normalised copies, which grows quadratically with the block depth;
with it only the layers' outputs are kept and the rest is recomputed in the backward pass.

Batch norm takes ``use_running_average=not train`` at every call, as in
:mod:`jaxcxr.models.resnet`, so the flag survives the functional ``nnx.split``/``nnx.merge``
training loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.typing import Dtype

from jaxcxr.models.base import Backbone
from jaxcxr.models.heads import ClassifierHead
from jaxcxr.models.layers import KAIMING_FAN_IN, batch_norm, conv
from jaxcxr.models.registry import imagenet_cfg, register_variant

__all__ = ["DenseBlock", "DenseLayer", "DenseNet", "DenseNetFeatures", "Transition"]

# torchvision: kaiming_normal_ with its defaults (mode='fan_in', nonlinearity='relu'), i.e. an
# untruncated normal with variance 2 / (in_channels * kh * kw).


class DenseLayer(nnx.Module):
  """BN-ReLU-Conv1x1 (bottleneck) -> BN-ReLU-Conv3x3 on the concatenated earlier features."""

  def __init__(
    self,
    in_ch: int,
    growth_rate: int,
    bn_size: int,
    *,
    bn_eps: float = 1e-5,
    rngs: nnx.Rngs,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
  ):
    """Builds the layer.

    Args:
        in_ch: channels of the concatenated input.
        growth_rate: channels this layer adds (``k`` in the paper).
        bn_size: the bottleneck has ``bn_size * growth_rate`` channels.
        bn_eps: batch-norm epsilon.
        rngs: initialisation streams.
        dtype: computation dtype.
        param_dtype: parameter dtype.
    """
    kw = {"rngs": rngs, "dtype": dtype, "param_dtype": param_dtype}
    mid = bn_size * growth_rate
    self.norm1 = batch_norm(in_ch, eps=bn_eps, **kw)
    self.conv1 = conv(in_ch, mid, 1, kernel_init=KAIMING_FAN_IN, **kw)
    self.norm2 = batch_norm(mid, eps=bn_eps, **kw)
    self.conv2 = conv(mid, growth_rate, 3, kernel_init=KAIMING_FAN_IN, **kw)

  def __call__(self, features: Sequence[jax.Array], *, train: bool = False) -> jax.Array:
    """New ``growth_rate`` channels from the list of earlier NHWC feature maps."""
    ura = not train
    # The concatenation happens here, not in the block, so that a rematerialised layer
    # recomputes it instead of keeping a copy per layer.
    x = jnp.concatenate(features, axis=-1)
    x = self.conv1(nnx.relu(self.norm1(x, use_running_average=ura)))
    return self.conv2(nnx.relu(self.norm2(x, use_running_average=ura)))


@partial(nnx.remat, static_argnums=(2,))
def _remat_layer(layer: DenseLayer, features: Sequence[jax.Array], train: bool) -> jax.Array:
  return layer(features, train=train)


class DenseBlock(nnx.Module):
  """``num_layers`` dense layers, named ``denselayer1`` ... like torchvision's ``_DenseBlock``."""

  def __init__(
    self,
    num_layers: int,
    in_ch: int,
    growth_rate: int,
    bn_size: int,
    *,
    memory_efficient: bool = False,
    bn_eps: float = 1e-5,
    rngs: nnx.Rngs,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
  ):
    """Builds the block; it outputs ``in_ch + num_layers * growth_rate`` channels.

    Args:
        num_layers: number of dense layers.
        in_ch: input channels.
        growth_rate: channels added by each layer.
        bn_size: bottleneck width factor.
        memory_efficient: rematerialise each layer in the backward pass.
        bn_eps: batch-norm epsilon.
        rngs: initialisation streams.
        dtype: computation dtype.
        param_dtype: parameter dtype.
    """
    self.num_layers = num_layers
    self.memory_efficient = memory_efficient
    for j in range(num_layers):
      layer = DenseLayer(
        in_ch + j * growth_rate,
        growth_rate,
        bn_size,
        bn_eps=bn_eps,
        rngs=rngs,
        dtype=dtype,
        param_dtype=param_dtype,
      )
      setattr(self, f"denselayer{j + 1}", layer)

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    features = [x]
    for j in range(self.num_layers):
      layer = getattr(self, f"denselayer{j + 1}")
      if self.memory_efficient:
        features.append(_remat_layer(layer, features, train))
      else:
        features.append(layer(features, train=train))
    return jnp.concatenate(features, axis=-1)


class Transition(nnx.Module):
  """BN-ReLU-Conv1x1 to ``out_ch`` channels, then 2x2 average pooling with stride 2."""

  def __init__(
    self,
    in_ch: int,
    out_ch: int,
    *,
    bn_eps: float = 1e-5,
    rngs: nnx.Rngs,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
  ):
    kw = {"rngs": rngs, "dtype": dtype, "param_dtype": param_dtype}
    self.norm = batch_norm(in_ch, eps=bn_eps, **kw)
    self.conv = conv(in_ch, out_ch, 1, kernel_init=KAIMING_FAN_IN, **kw)

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    x = self.conv(nnx.relu(self.norm(x, use_running_average=not train)))
    # torch AvgPool2d(2, 2) floors odd sizes, as 'VALID' does.
    return nnx.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")


class DenseNetFeatures(nnx.Module):
  """torchvision's ``features`` Sequential: stem, blocks and transitions, ``norm5`` (no ReLU).

  Attributes:
      conv0, norm0: the 7x7/2 stem (followed by ReLU and a 3x3/2 max pool).
      denseblock1 ... denseblockN: :class:`DenseBlock`.
      transition1 ... transitionN-1: :class:`Transition`.
      norm5: the final batch norm.
      num_features: output channels.
  """

  def __init__(
    self,
    growth_rate: int,
    block_config: Sequence[int],
    num_init_features: int,
    bn_size: int,
    *,
    in_chans: int,
    memory_efficient: bool,
    bn_eps: float = 1e-5,
    rngs: nnx.Rngs,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
  ):
    kw = {"rngs": rngs, "dtype": dtype, "param_dtype": param_dtype}
    self.num_blocks = len(block_config)
    self.conv0 = conv(in_chans, num_init_features, 7, 2, kernel_init=KAIMING_FAN_IN, **kw)
    self.norm0 = batch_norm(num_init_features, eps=bn_eps, **kw)
    ch = num_init_features
    for i, num_layers in enumerate(block_config, start=1):
      block = DenseBlock(
        num_layers,
        ch,
        growth_rate,
        bn_size,
        memory_efficient=memory_efficient,
        bn_eps=bn_eps,
        **kw,
      )
      setattr(self, f"denseblock{i}", block)
      ch += num_layers * growth_rate
      if i < self.num_blocks:
        setattr(self, f"transition{i}", Transition(ch, ch // 2, bn_eps=bn_eps, **kw))
        ch //= 2
    self.norm5 = batch_norm(ch, eps=bn_eps, **kw)
    self.num_features = ch

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    x = nnx.relu(self.norm0(self.conv0(x), use_running_average=not train))
    # max_pool pads with -inf, like torch's MaxPool2d(3, 2, padding=1).
    x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for i in range(1, self.num_blocks + 1):
      x = getattr(self, f"denseblock{i}")(x, train=train)
      if i < self.num_blocks:
        x = getattr(self, f"transition{i}")(x, train=train)
    return self.norm5(x, use_running_average=not train)


class DenseNet(Backbone):
  """DenseNet-BC backbone plus :class:`~jaxcxr.models.heads.ClassifierHead`.

  Attributes:
      features: :class:`DenseNetFeatures` (torchvision's ``features``).
      head: the pooling + dropout + ``fc`` classifier (torchvision's ``classifier``).
      num_features: channels of the final feature map (1024 for DenseNet-121).
  """

  def __init__(
    self,
    growth_rate: int = 32,
    block_config: Sequence[int] = (6, 12, 24, 16),
    num_init_features: int = 64,
    bn_size: int = 4,
    *,
    num_classes: int,
    in_chans: int = 3,
    drop_rate: float = 0.0,
    memory_efficient: bool = False,
    bn_eps: float = 1e-5,
    rngs: nnx.Rngs,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
  ):
    """Builds the network.

    Args:
        growth_rate: channels added by each dense layer (``k`` in the paper).
        block_config: number of dense layers in each block.
        num_init_features: stem channels.
        bn_size: bottleneck width factor (``bn_size * growth_rate`` channels).
        num_classes: number of logits; 0 makes the model return pooled features.
        in_chans: input channels.
        drop_rate: dropout before the classifier (training only). Unlike torchvision's
            ``drop_rate``, which drops inside every dense layer, this is the head dropout every
            jaxcxr family shares (timm's convention).
        memory_efficient: rematerialise each dense layer in the backward pass (same outputs
            and gradients, less activation memory, about one more forward of compute).
        bn_eps: batch-norm epsilon: torchvision's 1e-5, or 1.001e-5 to reproduce Keras's
            ``DenseNet121`` exactly (its ImageNet weights load into either; the two differ by
            about 1e-8 relative to each channel's variance).
        rngs: initialisation streams.
        dtype: computation dtype (e.g. ``jnp.bfloat16``).
        param_dtype: parameter dtype.
    """
    kw = {"rngs": rngs, "dtype": dtype, "param_dtype": param_dtype}
    self.features = DenseNetFeatures(
      growth_rate,
      block_config,
      num_init_features,
      bn_size,
      in_chans=in_chans,
      memory_efficient=memory_efficient,
      bn_eps=bn_eps,
      **kw,
    )
    self.num_features = self.features.num_features
    self.num_classes = num_classes
    self.head = ClassifierHead(self.num_features, num_classes, drop_rate=drop_rate, **kw)

  def forward_features(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """``(N, H, W, C)`` -> ``(N, H/32, W/32, num_features)``, after ``norm5`` and its ReLU.

    torchvision applies this ReLU in ``forward`` (``F.relu(features)``); it belongs here so that
    the head only pools and classifies and Grad-CAM sees the map the classifier pools.
    """
    return nnx.relu(self.features(x, train=train))

  def forward_stages(self, x: jax.Array, *, train: bool = False) -> list[jax.Array]:
    """The stem (stride 2, after its ReLU) and each dense block's output before its transition
    (strides 4 to 16), then ``norm5`` + ReLU (stride 32), finest first: the skip connections
    a UNet decoder reads (jaxcxr.models.unet; segmentation_models_pytorch's DenseNet taps)."""
    f = self.features
    x = nnx.relu(f.norm0(f.conv0(x), use_running_average=not train))
    out = [x]
    x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for i in range(1, f.num_blocks + 1):
      x = getattr(f, f"denseblock{i}")(x, train=train)
      if i < f.num_blocks:
        out.append(x)
        x = getattr(f, f"transition{i}")(x, train=train)
    out.append(nnx.relu(f.norm5(x, use_running_average=not train)))
    return out


def _register_densenet(
  name: str,
  growth_rate: int,
  block_config: Sequence[int],
  num_init_features: int,
  **defaults: Any,
) -> None:
  """Registers ``name`` as a partial of :class:`DenseNet`."""
  register_variant(
    name,
    DenseNet,
    growth_rate,
    block_config,
    num_init_features,
    default_cfg=imagenet_cfg(
      first_conv="features.conv0", classifier="head.fc", interpolation="bilinear", crop_pct=0.875
    ),
    doc=f"{name}: growth {growth_rate}, blocks {list(block_config)}.",
    **defaults,
  )


_register_densenet("densenet121", 32, (6, 12, 24, 16), 64)
_register_densenet("densenet169", 32, (6, 12, 32, 32), 64)
_register_densenet("densenet201", 32, (6, 12, 48, 32), 64)
# Used for testing only: ~30k parameters, fast on CPU, still two layers per block so the dense
# concatenation is exercised.
_register_densenet("densenet_tiny", 8, (2, 2, 2, 2), 16)
