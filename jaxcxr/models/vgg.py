"""VGG in Flax NNX, laid out exactly like torchvision's.

Simonyan and Zisserman, 2015, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR. Configurations D (VGG-16) and E (VGG-19), with and without batch norm after
every conv (the ``_bn`` variants, a later addition by torchvision).

Inputs are NHWC. ``features`` and ``classifier`` are ``nnx.List`` s that mirror torchvision's
``nn.Sequential`` entry for entry (ReLU, max-pool and dropout included, as parameter-free
layers), so every index is torchvision's index and a ``state_dict`` maps one-to-one; see
:mod:`jaxcxr.weights.maps.vgg`.

Head: torchvision's ``AdaptiveAvgPool2d((7, 7))`` (reproduced bin for bin, so inputs of any size
give torch's numbers), flatten in torch's (C, H, W) order, then fc6 -> ReLU -> dropout -> fc7 ->
ReLU -> dropout -> fc8. ``num_classes=0`` drops fc8 only and returns the 4096-d fc7 features:
transfer learning with VGG keeps the ImageNet fc6/fc7 and replaces fc8 (torchvision's
``model.classifier[6] = nn.Linear(4096, n)``). As in timm, ``num_features`` is then the channel
count of the conv feature map (512, what Grad-CAM hooks onto) and ``head_hidden_size`` (4096) the
size of what ``num_classes=0`` returns.

``drop_rate`` defaults to 0 like every jaxcxr family (the training config sets it); the paper and
torchvision use 0.5 for both dropouts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.typing import Dtype

from jaxcxr.models import layers as nn_layers
from jaxcxr.models.base import Backbone
from jaxcxr.models.layers import dropout_rngs
from jaxcxr.models.registry import imagenet_cfg, register_variant

__all__ = ["VGG", "adaptive_avg_pool2d"]

# torchvision's init: kaiming_normal_(mode='fan_out', nonlinearity='relu') for convs, N(0, 0.01)
# for linears, zero biases.
_LINEAR_INIT = nnx.initializers.normal(0.01)


# Channels of each 3x3 conv; "M" is a 2x2/2 max-pool (torchvision's cfgs "D" and "E").
_CFGS: dict[str, list[int | str]] = {
  "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M"]
  + [512, 512, 512, "M"],
  "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M"]
  + [512, 512, 512, 512, "M"],
  # Used for testing only: five pools (stride 32) like the real ones, a few thousand weights.
  "vgg_tiny": [8, "M", 16, "M", 16, "M", 32, "M", 32, "M"],
}

_POOL_SIZE = (7, 7)


def _bins(n_in: int, n_out: int) -> list[tuple[int, int]]:
  # torch's AdaptiveAvgPool bins: [floor(i * n_in / n_out), ceil((i + 1) * n_in / n_out)).
  return [((i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)) for i in range(n_out)]


def adaptive_avg_pool2d(x: jax.Array, output_size: tuple[int, int]) -> jax.Array:
  """``torch.nn.AdaptiveAvgPool2d`` for NHWC inputs, with torch's exact (overlapping) bins.

  Smaller inputs are upsampled by repetition (a 2x2 map gives a 7x7 map), larger ones averaged.
  The mean over a rectangular bin is the mean over its rows of the mean over its columns, so the
  two axes are pooled one after the other.

  Args:
      x: ``(N, H, W, C)``.
      output_size: ``(out_h, out_w)``.

  Returns:
      ``(N, out_h, out_w, C)``.
  """
  _, h, w, _ = x.shape
  if (h, w) == tuple(output_size):
    return x
  x = jnp.stack([x[:, s:e].mean(axis=1) for s, e in _bins(h, output_size[0])], axis=1)
  return jnp.stack([x[:, :, s:e].mean(axis=2) for s, e in _bins(w, output_size[1])], axis=2)


class ReLU(nnx.Module):
  """Parameter-free placeholder for torch's ``nn.ReLU`` entry, keeping the indices aligned."""

  def __call__(self, x: jax.Array) -> jax.Array:
    return nnx.relu(x)


class MaxPool(nnx.Module):
  """torch's ``nn.MaxPool2d(2, 2)`` (no padding, floor mode), as a placeholder entry."""

  def __call__(self, x: jax.Array) -> jax.Array:
    return nnx.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")


class VGG(Backbone):
  """VGG backbone and its three-layer fully connected classifier.

  Attributes:
      features: ``nnx.List`` of conv [, batch norm], ReLU and max-pool layers (torchvision's
          indices).
      classifier: ``nnx.List`` ``[fc6, ReLU, Dropout, fc7, ReLU, Dropout, fc8]``; without
          ``fc8`` when ``num_classes == 0``.
      num_features: channels of the conv feature map (512 at full width).
      head_hidden_size: width of fc6/fc7, the size of the output when ``num_classes == 0``.
  """

  def __init__(
    self,
    cfg: Sequence[int | str],
    *,
    batch_norm: bool = False,
    num_classes: int,
    in_chans: int = 3,
    drop_rate: float = 0.0,
    hidden: int = 4096,
    rngs: nnx.Rngs,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
  ):
    """Builds the network.

    Args:
        cfg: output channels of each 3x3 conv, ``"M"`` for a max-pool.
        batch_norm: batch norm between every conv and its ReLU (torchvision's ``vgg*_bn``).
        num_classes: number of logits; 0 returns the ``hidden``-d fc7 features.
        in_chans: input channels.
        drop_rate: rate of the two dropouts after fc6 and fc7 (training only).
        hidden: width of fc6 and fc7 (4096 in the paper).
        rngs: initialisation streams.
        dtype: computation dtype (e.g. ``jnp.bfloat16``).
        param_dtype: parameter dtype.
    """
    kw = {"rngs": rngs, "dtype": dtype, "param_dtype": param_dtype}
    layers: list[nnx.Module] = []
    ch = in_chans
    for v in cfg:
      if v == "M":
        layers.append(MaxPool())
        continue
      layers.append(nn_layers.conv(ch, v, 3, bias=True, **kw))
      if batch_norm:
        layers.append(nn_layers.batch_norm(v, **kw))
      layers.append(ReLU())
      ch = v
    self.features = nnx.List(layers)

    def linear(n_in: int, n_out: int) -> nnx.Linear:
      return nnx.Linear(n_in, n_out, kernel_init=_LINEAR_INIT, **kw)

    head = [linear(ch * _POOL_SIZE[0] * _POOL_SIZE[1], hidden), ReLU(), nnx.Dropout(drop_rate)]
    head += [linear(hidden, hidden), ReLU(), nnx.Dropout(drop_rate)]
    if num_classes > 0:
      head.append(linear(hidden, num_classes))
    self.classifier = nnx.List(head)

    self.num_features = ch
    self.head_hidden_size = hidden
    self.num_classes = num_classes
    self.drop_rate = drop_rate

  def forward_features(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """Conv stack: ``(N, H, W, C)`` -> ``(N, H/32, W/32, num_features)`` (the Grad-CAM map)."""
    for layer in self.features:
      if isinstance(layer, nnx.BatchNorm):
        x = layer(x, use_running_average=not train)
      else:
        x = layer(x)
    return x

  def forward_head(
    self,
    feats: jax.Array,
    *,
    train: bool = False,
    rngs: nnx.Rngs | jax.Array | None = None,
  ) -> jax.Array:
    """Adaptive pool to 7x7, flatten in torch's order, then the fully connected layers.

    Args:
        feats: feature map ``(N, h, w, num_features)`` of any spatial size.
        train: enables the dropouts (when ``drop_rate > 0``).
        rngs: an ``nnx.Rngs`` (``dropout`` stream) or a PRNG key; needed only when ``train``
            and ``drop_rate > 0``.

    Returns:
        Logits ``(N, num_classes)``, or fc7 features ``(N, head_hidden_size)`` if
        ``num_classes == 0``.
    """
    if getattr(self, "head", None) is not None:  # A named head (`config.model.head`).
      return self.head(feats, train=train, rngs=rngs)
    use_dropout = train and self.drop_rate > 0.0
    # A stream, so that the two dropouts draw different masks from one key.
    rngs = dropout_rngs(rngs, needed=use_dropout, owner="VGG", rate=self.drop_rate)
    x = adaptive_avg_pool2d(feats, _POOL_SIZE)
    # torch flattens NCHW, i.e. (C, 7, 7) per image, and fc6's weights are ordered that way:
    # transposing the activations to channel-major keeps the checkpoint's fc6 unchanged.
    x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
    for layer in self.classifier:
      if isinstance(layer, nnx.Dropout):
        x = layer(x, deterministic=not use_dropout, rngs=rngs)
      else:
        x = layer(x)
    return x


def _register_vgg(name: str, cfg_name: str, **defaults: Any) -> None:
  """Registers ``name`` as a partial of :class:`VGG`."""
  cfg = imagenet_cfg(
    interpolation="bilinear", crop_pct=0.875, first_conv="features.0", classifier="classifier.6"
  )
  doc = f"{name}: VGG config {cfg_name!r}, options {defaults}."
  register_variant(name, VGG, _CFGS[cfg_name], default_cfg=cfg, doc=doc, **defaults)


_register_vgg("vgg16", "vgg16")
_register_vgg("vgg19", "vgg19")
_register_vgg("vgg16_bn", "vgg16", batch_norm=True)
_register_vgg("vgg19_bn", "vgg19", batch_norm=True)
# Used for testing only (as flax examples' _ResNet1): narrow convs and a 64-wide classifier.
_register_vgg("vgg_tiny", "vgg_tiny", batch_norm=True, hidden=64)
