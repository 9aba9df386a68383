"""UNet for lung segmentation: a plain encoder or a zoo backbone, a decoder with skips.

Ronneberger, Fischer and Brox, 2015, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI: a contracting path of 3x3 conv pairs and 2x2 max pools, an expanding path
that upsamples, concatenates the encoder's map of the same resolution (the skip connection) and
applies a 3x3 conv pair, and a 1x1 conv to per-pixel logits. Zhang & Liu (2021) segment the lungs
with one before classifying. Two departures from the paper, both today's common practice: the
convs are padded (output size = input size) and batch-normalised, and the decoder upsamples by
nearest-neighbour repetition followed by the conv pair (segmentation_models_pytorch's
`Unet`) instead of a learned 2x2 up-convolution.

Encoders:

- ``unet`` / ``unet_mini``: the paper's encoder (widths 64..1024, four pools; ``unet_mini``
  widths 4..32 for tests), skips at strides 1, 2, 4, 8, the bottleneck at 16.
- a zoo backbone (``unet_resnet34``, ``unet_resnet50``, ``unet_lite0`` =
  ``tf_efficientnet_lite0``, ``unet_densenet121``, and the test variants ``unet_resnet_mini``,
  ``unet_lite_mini``): the backbone's ``forward_stages`` gives its map at strides 2, 4, 8, 16,
  32; the decoder (channels 256, 128, 64, 32, 16) climbs back with a skip at every stride and one
  last upsampling to full resolution without one. The backbone is ``self.encoder``, built by the
  registry with its own parameter names, so its ImageNet weights load into it unchanged
  (``encoder_name`` names the architecture for `jaxcxr.weights.pretrained`); its classifier is
  not built (``num_classes=0``) and its head conv (EfficientNet's ``conv_head``) is left unused.

Any input whose sides are divisible by ``stride`` (16 plain, 32 for the backbones) works. The
output is ``(N, H, W, num_classes)`` logits (one channel for a lung mask).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.typing import Dtype

from jaxcxr.models import registry
from jaxcxr.models.layers import batch_norm, conv, dropout_rngs

__all__ = ["UNet"]


class ConvPair(nnx.Module):
  """Two 3x3 conv - batch norm - ReLU (the paper's unit, padded and normalised)."""

  def __init__(self, in_ch: int, out_ch: int, *, rngs: nnx.Rngs, dtype: Dtype, param_dtype: Dtype):
    kw = {"rngs": rngs, "dtype": dtype, "param_dtype": param_dtype}
    self.conv1 = conv(in_ch, out_ch, 3, **kw)
    self.bn1 = batch_norm(out_ch, **kw)
    self.conv2 = conv(out_ch, out_ch, 3, **kw)
    self.bn2 = batch_norm(out_ch, **kw)

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    x = nnx.relu(self.bn1(self.conv1(x), use_running_average=not train))
    return nnx.relu(self.bn2(self.conv2(x), use_running_average=not train))


class PlainEncoder(nnx.Module):
  """The paper's contracting path: ``depth + 1`` conv pairs of widths ``width * 2**i``."""

  def __init__(
    self, in_chans: int, width: int, depth: int, *, rngs: nnx.Rngs, dtype: Dtype, param_dtype: Dtype
  ):
    kw = {"rngs": rngs, "dtype": dtype, "param_dtype": param_dtype}
    chans = [in_chans] + [width * 2**i for i in range(depth + 1)]
    self.blocks = nnx.List([ConvPair(chans[i], chans[i + 1], **kw) for i in range(depth + 1)])

  def forward_stages(self, x: jax.Array, *, train: bool = False) -> list[jax.Array]:
    """Each conv pair's output (strides 1, 2, ... 2**depth), finest first."""
    out = []
    for i, blk in enumerate(self.blocks):
      if i:
        x = nnx.max_pool(x, (2, 2), strides=(2, 2))
      x = blk(x, train=train)
      out.append(x)
    return out


def _upsample2(x: jax.Array) -> jax.Array:
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class UNet(nnx.Module):
  """UNet over an encoder with ``forward_stages`` (plain or a registered backbone).

  Attributes:
      encoder: :class:`PlainEncoder` or the backbone (``encoder_name``'s registered model).
      decoder: ``nnx.List`` of :class:`ConvPair`, coarsest first.
      head: the 1x1 conv to ``num_classes`` logits (``None`` when ``num_classes == 0``).
      stride: the input sides must be divisible by it.
  """

  def __init__(
    self,
    encoder: str = "",
    *,
    num_classes: int,
    in_chans: int = 3,
    width: int = 64,
    depth: int = 4,
    decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
    drop_rate: float = 0.0,
    rngs: nnx.Rngs,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
    **encoder_kwargs: Any,
  ):
    """Builds the network.

    Args:
        encoder: a registered backbone name with ``forward_stages`` (``'resnet34'``,
            ``'tf_efficientnet_lite0'``...), or ``''`` for the paper's plain encoder.
        num_classes: output channels (1 for a binary mask); 0 returns the decoder's features.
        in_chans: input channels.
        width: plain encoder only: channels of its first conv pair.
        depth: plain encoder only: number of 2x2 poolings.
        decoder_channels: backbone encoders only: the decoder's channels, one per upsampling
            (as many as the backbone has strides: 5 for stride 32).
        drop_rate: dropout on the decoder's last map, before the head (training only).
        rngs: initialisation streams.
        dtype: computation dtype.
        param_dtype: parameter dtype.
        **encoder_kwargs: options of the backbone (``drop_path_rate``...).
    """
    kw = {"rngs": rngs, "dtype": dtype, "param_dtype": param_dtype}
    self.encoder_name = encoder
    self.num_classes = num_classes
    if encoder:
      self.encoder = registry.create(
        encoder, num_classes=0, in_chans=in_chans, rngs=rngs, dtype=dtype,
        param_dtype=param_dtype, **encoder_kwargs,
      )  # fmt: skip
      if not hasattr(self.encoder, "forward_stages"):
        raise ValueError(f"UNet encoder {encoder!r} has no forward_stages (no skip taps).")
    else:
      if encoder_kwargs:
        raise ValueError(f"The plain UNet encoder takes no options {sorted(encoder_kwargs)}.")
      self.encoder = PlainEncoder(in_chans, width, depth, **kw)
    # Encoders with stochastic depth take the dropout key (EfficientNet's drop path).
    self.encoder_draws = "rngs" in inspect.signature(self.encoder.forward_stages).parameters
    chans, strides = self._probe(in_chans, dtype)
    if any(b != 2 * a for a, b in zip(strides, strides[1:], strict=False)):
      raise ValueError(f"UNet encoder {encoder!r}: its taps' strides {strides} do not halve.")
    self.stride = strides[-1]
    # One decoder block per upsampling: onto each skip, and (a backbone whose finest tap is at
    # stride 2) one more onto the full resolution without a skip.
    skips = chans[-2::-1] + ([0] if strides[0] > 1 else [])
    if encoder:
      dec = list(decoder_channels)
      if len(dec) != len(skips):
        raise ValueError(
          f"UNet decoder_channels={tuple(dec)}: need {len(skips)} (one per upsampling of "
          f"{encoder!r}, strides {strides})."
        )
    else:
      dec = chans[-2::-1]  # The paper: the decoder mirrors the encoder's widths.
    blocks, ch = [], chans[-1]
    for skip, out_ch in zip(skips, dec, strict=True):
      blocks.append(ConvPair(ch + skip, out_ch, **kw))
      ch = out_ch
    self.decoder = nnx.List(blocks)
    self.num_features = ch
    self.head = conv(ch, num_classes, 1, bias=True, **kw) if num_classes > 0 else None
    # No stored rngs: dropout keys are passed at call time (functional training under jit).
    self.dropout = nnx.Dropout(drop_rate)

  def _probe(self, in_chans: int, dtype: Dtype) -> tuple[list[int], list[int]]:
    """Channels and strides of the encoder's taps, from an abstract forward (no compute)."""
    size = 64
    graphdef, state = nnx.split(self.encoder)
    x = jax.ShapeDtypeStruct((1, size, size, in_chans), dtype)
    taps = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s).forward_stages(x), state, x)
    return [t.shape[-1] for t in taps], [size // t.shape[1] for t in taps]

  def __call__(
    self,
    x: jax.Array,
    *,
    train: bool = False,
    rngs: nnx.Rngs | jax.Array | None = None,
  ) -> jax.Array:
    """Per-pixel logits ``(N, H, W, num_classes)`` for NHWC images ``x``.

    Args:
        x: images ``(N, H, W, in_chans)``, sides divisible by ``stride``.
        train: use batch statistics (and update the running ones).
        rngs: dropout key (``nnx.Rngs`` or PRNG key), for ``drop_rate`` and a backbone
            encoder's drop path; needed only when training with either.
    """
    h, w = x.shape[1], x.shape[2]
    if h % self.stride or w % self.stride:
      raise ValueError(
        f"UNet ({self.encoder_name or 'plain'}): input {h}x{w} is not divisible by its stride "
        f"{self.stride}; resize to a multiple (config.input.image_size)."
      )
    rngs = dropout_rngs(rngs)
    kwargs = {"rngs": rngs} if self.encoder_draws else {}
    taps = self.encoder.forward_stages(x, train=train, **kwargs)
    y = taps[-1]
    skips = taps[-2::-1]
    for i, blk in enumerate(self.decoder):
      y = _upsample2(y)
      if i < len(skips):
        y = jnp.concatenate([y, skips[i].astype(y.dtype)], axis=-1)
      y = blk(y, train=train)
    if train and self.dropout.rate > 0.0:
      rngs = dropout_rngs(rngs, needed=True, owner="UNet", rate=self.dropout.rate)
      y = self.dropout(y, deterministic=False, rngs=rngs)
    return y if self.head is None else self.head(y)


def _cfg(encoder: str) -> dict[str, Any]:
  cfg = registry.imagenet_cfg(
    input_size=(3, 256, 256),
    first_conv="encoder." + (registry.get_default_cfg(encoder)["first_conv"] if encoder else ""),
    classifier="head",
    task="segmentation",
  )
  if not encoder:
    cfg["first_conv"] = "encoder.blocks.0.conv1"
  return cfg


def _register(name: str, encoder: str, doc: str, **defaults: Any) -> None:
  registry.register_variant(name, UNet, encoder, default_cfg=_cfg(encoder), doc=doc, **defaults)


_register("unet", "", "unet: the paper's UNet (plain encoder, widths 64..1024, stride 16).")
# Used for testing only: widths 4..32, three pools (stride 8); a few thousand parameters.
_register("unet_mini", "", "unet_mini: plain UNet, widths 4..32, stride 8.", width=4, depth=3)
_register("unet_resnet34", "resnet34", "unet_resnet34: UNet on a ResNet-34 encoder.")
_register("unet_resnet50", "resnet50", "unet_resnet50: UNet on a ResNet-50 encoder.")
_register(
  "unet_lite0",
  "tf_efficientnet_lite0",
  "unet_lite0: UNet on an EfficientNet-Lite0 encoder (TF padding, tf_efficientnet_lite0).",
)
_register("unet_densenet121", "densenet121", "unet_densenet121: UNet on a DenseNet-121 encoder.")
# Test variants on the families' tiny backbones, with a small decoder.
_register(
  "unet_resnet_mini", "resnet_tiny", "unet_resnet_mini: test UNet on resnet_tiny.",
  decoder_channels=(16, 8, 8, 8, 8),
)  # fmt: skip
_register(
  "unet_lite_mini", "efficientnet_tiny", "unet_lite_mini: test UNet on efficientnet_tiny.",
  decoder_channels=(16, 8, 8, 8, 8),
)  # fmt: skip
