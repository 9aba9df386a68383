"""EfficientNet and EfficientNet-Lite in Flax NNX, laid out exactly like timm's.

Tan and Le, 2019, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
ICML. B0 is a MnasNet-style stack of mobile inverted bottlenecks (MBConv, Sandler et al., 2018)
with squeeze-and-excitation (Hu et al., 2018) and SiLU; B1-B7 scale its width and depth by the
compound coefficients. EfficientNet-Lite (tensorflow/tpu ``efficientnet/lite``) drops SE, uses
ReLU6 and keeps the stem, the head and the first and last stages at their B0 size.

This module follows timm (``timm/models/efficientnet.py``, ``_efficientnet_blocks.py``,
``_efficientnet_builder.py``): the same channel rounding, depth scaling, block types and
attribute names, so a timm ``state_dict`` maps one-to-one (see
:mod:`jaxcxr.weights.maps.efficientnet`)::

    conv_stem, bn1
    blocks.{stage}.{i}.{conv_dw, bn1, se.conv_reduce, se.conv_expand, conv_pw, bn2}   # stage 0
    blocks.{stage}.{i}.{conv_pw, bn1, conv_dw, bn2, se.*, conv_pwl, bn3}             # others
    conv_head, bn2, classifier

Two weight flavours share each architecture: ``tf_efficientnet_*`` (ported from the TensorFlow
originals: TF 'SAME' padding, computed from the input size like timm's ``pad_same``, and BN eps
1e-3) and ``efficientnet_*`` (trained in PyTorch: symmetric ``k // 2`` padding, BN eps 1e-5).
Mixing them up costs no error message, only accuracy, because the shapes are identical.

Inputs are NHWC. Batch norm takes ``use_running_average=not train`` at every call (see
:mod:`jaxcxr.models.resnet` for why).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from flax.typing import Dtype

from jaxcxr.models.layers import (
  Conv2dSame,
  batch_norm,
  conv,
  conv_fn,
  dropout_rngs,
  get_same_padding,
  make_divisible,
  pool_and_dropout,
)
from jaxcxr.models.registry import imagenet_cfg, register_variant

__all__ = [
  "B0_STAGES",
  "Conv2dSame",
  "DepthwiseSeparable",
  "EfficientNet",
  "InvertedResidual",
  "SqueezeExcite",
  "StageSpec",
  "drop_path",
  "get_same_padding",
  "round_channels",
]

# timm's _init_weight_goog: conv weights ~ N(0, 2 / fan_out) with fan_out = kh * kw * out / groups.
# For a regular HWIO kernel JAX's fan_out is that product; for a depthwise kernel (kh, kw, 1, C)
# timm's fan_out is kh * kw, which is JAX's fan_in there.
_CONV_INIT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")
_DW_CONV_INIT = nnx.initializers.variance_scaling(2.0, "fan_in", "normal")
# timm's _init_weight_goog for the classifier: U(-1/sqrt(num_classes), 1/sqrt(num_classes)).
_LINEAR_INIT = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_out", "uniform")

_TF_LITE_MEAN = (0.5, 0.5, 0.5)
_TF_LITE_STD = (0.5, 0.5, 0.5)

BN_EPS_TF = 1e-3
BN_EPS_TORCH = 1e-5


class StageSpec(NamedTuple):
  """One stage of the B0 / Lite0 definition (timm's ``ds_r1_k3_s1_e1_c16`` strings).

  Attributes:
      block: ``'ds'`` (depthwise-separable, no expansion) or ``'ir'`` (inverted residual).
      repeats: number of blocks before depth scaling.
      kernel: depthwise kernel size.
      stride: stride of the first block of the stage.
      exp_ratio: expansion ratio of the inverted residual (1 for ``'ds'``).
      out_chs: output channels before width scaling.
  """

  block: str
  repeats: int
  kernel: int
  stride: int
  exp_ratio: float
  out_chs: int


# EfficientNet-B0 (Tan and Le, 2019, Table 1); Lite0 is the same without SE.
B0_STAGES: tuple[StageSpec, ...] = (
  StageSpec("ds", 1, 3, 1, 1.0, 16),
  StageSpec("ir", 2, 3, 2, 6.0, 24),
  StageSpec("ir", 2, 5, 2, 6.0, 40),
  StageSpec("ir", 3, 3, 2, 6.0, 80),
  StageSpec("ir", 3, 5, 1, 6.0, 112),
  StageSpec("ir", 4, 5, 2, 6.0, 192),
  StageSpec("ir", 1, 3, 1, 6.0, 320),
)


def round_channels(channels: float, multiplier: float = 1.0, divisor: int = 8) -> int:
  """timm's ``round_channels``: ``make_divisible(channels * multiplier, divisor)``."""
  return make_divisible(channels * multiplier, divisor)


def _conv(
  in_ch: int,
  out_ch: int,
  kernel: int,
  stride: int = 1,
  *,
  pad_type: str,
  depthwise: bool = False,
  use_bias: bool = False,
  rngs: nnx.Rngs,
  dtype: Dtype,
  param_dtype: Dtype,
) -> nnx.Conv:
  """timm's ``create_conv2d``: ``pad_type`` ``''`` pads symmetrically like torch, ``'same'``
  pads like TF (statically when that is symmetric, i.e. stride 1 and an odd kernel)."""
  if pad_type not in ("", "same"):
    raise ValueError(f"EfficientNet: pad_type must be '' or 'same', got {pad_type!r}")
  groups = in_ch if depthwise else 1
  kernel_init = _DW_CONV_INIT if depthwise else _CONV_INIT
  kw = {"rngs": rngs, "dtype": dtype, "param_dtype": param_dtype}
  if pad_type == "same" and not (stride == 1 and (kernel - 1) % 2 == 0):
    return Conv2dSame(
      in_ch,
      out_ch,
      (kernel, kernel),
      strides=(stride, stride),
      padding="VALID",
      kernel_dilation=(1, 1),
      feature_group_count=groups,
      conv_general_dilated=conv_fn(groups),
      use_bias=use_bias,
      kernel_init=kernel_init,
      **kw,
    )
  pad = ((stride - 1) + (kernel - 1)) // 2  # timm's get_padding (dilation 1)
  return conv(
    in_ch,
    out_ch,
    kernel,
    stride,
    padding=pad,
    groups=groups,
    bias=use_bias,
    kernel_init=kernel_init,
    **kw,
  )


def drop_path(x: jax.Array, rate: float, key: jax.Array) -> jax.Array:
  """Stochastic depth (Huang et al., 2016): zero whole samples of a residual branch with
  probability ``rate`` and rescale the survivors by ``1 / (1 - rate)`` (timm's ``drop_path``)."""
  keep = 1.0 - rate
  mask = jax.random.bernoulli(key, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
  return x * (mask.astype(x.dtype) / jnp.asarray(keep, x.dtype))


class SqueezeExcite(nnx.Module):
  """Squeeze-and-excitation with 1x1 convs (timm's EfficientNet ``SqueezeExcite``).

  Attributes:
      conv_reduce, conv_expand: the two 1x1 convs (with bias) on the pooled features.
  """

  def __init__(
    self,
    chs: int,
    rd_chs: int,
    act: Callable[[jax.Array], jax.Array],
    *,
    rngs: nnx.Rngs,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
  ):
    """Builds the gate: ``chs`` -> ``rd_chs`` (block activation) -> ``chs`` (sigmoid)."""
    kw = {
      "pad_type": "",
      "use_bias": True,
      "rngs": rngs,
      "dtype": dtype,
      "param_dtype": param_dtype,
    }
    self.conv_reduce = _conv(chs, rd_chs, 1, **kw)
    self.conv_expand = _conv(rd_chs, chs, 1, **kw)
    self.act = act

  def __call__(self, x: jax.Array) -> jax.Array:
    s = jnp.mean(x, axis=(1, 2), keepdims=True)
    s = self.conv_expand(self.act(self.conv_reduce(s)))
    return x * nnx.sigmoid(s)


class _Block(nnx.Module):
  """Shared residual logic of the two block types."""

  has_skip: bool
  drop_path_rate: float

  def _residual(self, y: jax.Array, x: jax.Array, train: bool, rngs: nnx.Rngs | None) -> jax.Array:
    if not self.has_skip:
      return y
    if train and self.drop_path_rate > 0.0:
      if rngs is None:
        raise ValueError(
          f"EfficientNet: train=True with drop_path_rate={self.drop_path_rate} needs a dropout "
          "key; pass rngs=nnx.Rngs(dropout=key) or a jax.random key."
        )
      # rngs.dropout falls back to the default stream when there is no 'dropout' one.
      y = drop_path(y, self.drop_path_rate, rngs.dropout())
    return y + x


class DepthwiseSeparable(_Block):
  """Depthwise kxk -> BN-act -> SE -> pointwise 1x1 -> BN (no activation); the first stage.

  Attributes:
      conv_dw, bn1, se, conv_pw, bn2: timm's names (``se`` is ``None`` without SE).
  """

  def __init__(
    self,
    in_ch: int,
    out_ch: int,
    kernel: int,
    stride: int,
    *,
    se_ratio: float,
    act: Callable[[jax.Array], jax.Array],
    pad_type: str,
    bn_eps: float,
    drop_path_rate: float = 0.0,
    rngs: nnx.Rngs,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
  ):
    """Builds the block; ``se_ratio`` is relative to ``in_ch`` (0 disables SE)."""
    kw = {"rngs": rngs, "dtype": dtype, "param_dtype": param_dtype}
    self.conv_dw = _conv(in_ch, in_ch, kernel, stride, pad_type=pad_type, depthwise=True, **kw)
    self.bn1 = batch_norm(in_ch, eps=bn_eps, **kw)
    # Python's round, as timm: the reduced width is round(in_ch * se_ratio).
    self.se = SqueezeExcite(in_ch, round(in_ch * se_ratio), act, **kw) if se_ratio else None
    self.conv_pw = _conv(in_ch, out_ch, 1, pad_type=pad_type, **kw)
    self.bn2 = batch_norm(out_ch, eps=bn_eps, **kw)
    self.act = act
    self.has_skip = stride == 1 and in_ch == out_ch
    self.drop_path_rate = drop_path_rate

  def __call__(
    self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None
  ) -> jax.Array:
    ura = not train
    y = self.act(self.bn1(self.conv_dw(x), use_running_average=ura))
    if self.se is not None:
      y = self.se(y)
    y = self.bn2(self.conv_pw(y), use_running_average=ura)
    return self._residual(y, x, train, rngs)


class InvertedResidual(_Block):
  """MBConv: 1x1 expand -> BN-act -> depthwise kxk -> BN-act -> SE -> 1x1 project -> BN.

  Attributes:
      conv_pw, bn1, conv_dw, bn2, se, conv_pwl, bn3: timm's names (``se`` may be ``None``).
  """

  def __init__(
    self,
    in_ch: int,
    out_ch: int,
    kernel: int,
    stride: int,
    exp_ratio: float,
    *,
    se_ratio: float,
    act: Callable[[jax.Array], jax.Array],
    pad_type: str,
    bn_eps: float,
    drop_path_rate: float = 0.0,
    rngs: nnx.Rngs,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
  ):
    """Builds the block; ``se_ratio`` is relative to ``in_ch`` (EfficientNet's convention)."""
    kw = {"rngs": rngs, "dtype": dtype, "param_dtype": param_dtype}
    mid = round_channels(in_ch * exp_ratio)
    self.conv_pw = _conv(in_ch, mid, 1, pad_type=pad_type, **kw)
    self.bn1 = batch_norm(mid, eps=bn_eps, **kw)
    self.conv_dw = _conv(mid, mid, kernel, stride, pad_type=pad_type, depthwise=True, **kw)
    self.bn2 = batch_norm(mid, eps=bn_eps, **kw)
    # timm divides the ratio by exp_ratio and applies it to the expanded width, in this order.
    rd = round(mid * (se_ratio / exp_ratio))
    self.se = SqueezeExcite(mid, rd, act, **kw) if se_ratio else None
    self.conv_pwl = _conv(mid, out_ch, 1, pad_type=pad_type, **kw)
    self.bn3 = batch_norm(out_ch, eps=bn_eps, **kw)
    self.act = act
    self.has_skip = stride == 1 and in_ch == out_ch
    self.drop_path_rate = drop_path_rate

  def __call__(
    self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None
  ) -> jax.Array:
    ura = not train
    y = self.act(self.bn1(self.conv_pw(x), use_running_average=ura))
    y = self.act(self.bn2(self.conv_dw(y), use_running_average=ura))
    if self.se is not None:
      y = self.se(y)
    y = self.bn3(self.conv_pwl(y), use_running_average=ura)
    return self._residual(y, x, train, rngs)


class EfficientNet(nnx.Module):
  """EfficientNet / EfficientNet-Lite: stem, seven MBConv stages, 1x1 head conv, classifier.

  Attributes:
      conv_stem, bn1: the 3x3/2 stem.
      blocks: ``nnx.List`` of stages, each an ``nnx.List`` of blocks (timm's ``blocks.S.I``).
      conv_head, bn2: the 1x1 conv to ``num_features`` channels.
      classifier: the final ``nnx.Linear`` (``None`` when ``num_classes == 0``).
      num_features: channels of the final feature map (1280 for B0).
  """

  def __init__(
    self,
    stages: Sequence[StageSpec] = B0_STAGES,
    *,
    num_classes: int,
    in_chans: int = 3,
    width: float = 1.0,
    depth: float = 1.0,
    head_chs: int = 1280,
    lite: bool = False,
    pad_type: str = "",
    bn_eps: float = BN_EPS_TORCH,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    rngs: nnx.Rngs,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
  ):
    """Builds the network.

    Args:
        stages: the unscaled stage definitions (:data:`B0_STAGES`).
        num_classes: number of logits; 0 makes the model return pooled features.
        in_chans: input channels.
        width: channel multiplier (B0 1.0 ... B7 2.0); rounded to multiples of 8.
        depth: repeat multiplier (B0 1.0 ... B7 3.1); repeats are ``ceil(r * depth)``.
        head_chs: channels of the head conv before width scaling (timm's ``num_features``).
        lite: EfficientNet-Lite: no SE, ReLU6, stem/head and first/last stage depths unscaled.
        pad_type: ``''`` symmetric padding (PyTorch-trained weights) or ``'same'`` (TF weights).
        bn_eps: 1e-5 for PyTorch-trained weights, 1e-3 for TF ones.
        drop_rate: dropout before the classifier (training only). timm defaults to 0; its
            recipes train B0/B1/Lite0/Lite1 with 0.2, up to 0.5 for B6/B7.
        drop_path_rate: stochastic depth rate of the last block, rising linearly from 0 at the
            first (training only). timm defaults to 0 and trains with 0.2.
        rngs: initialisation streams.
        dtype: computation dtype (e.g. ``jnp.bfloat16``).
        param_dtype: parameter dtype.
    """
    kw = {"rngs": rngs, "dtype": dtype, "param_dtype": param_dtype}
    act = jax.nn.relu6 if lite else nnx.silu
    se_ratio = 0.0 if lite else 0.25
    stem = 32 if lite else round_channels(32, width)
    self.conv_stem = _conv(in_chans, stem, 3, 2, pad_type=pad_type, **kw)
    self.bn1 = batch_norm(stem, eps=bn_eps, **kw)

    last = len(stages) - 1
    repeats = [
      s.repeats if lite and i in (0, last) else math.ceil(s.repeats * depth)
      for i, s in enumerate(stages)
    ]
    total, idx, in_ch = sum(repeats), 0, stem
    blocks = []
    for spec, n in zip(stages, repeats, strict=True):
      out_ch = round_channels(spec.out_chs, width)
      stage = []
      for j in range(n):
        common = {
          "se_ratio": se_ratio,
          "act": act,
          "pad_type": pad_type,
          "bn_eps": bn_eps,
          "drop_path_rate": drop_path_rate * idx / total,  # timm: linear in the block index
          **kw,
        }
        stride = spec.stride if j == 0 else 1
        if spec.block == "ds":
          stage.append(DepthwiseSeparable(in_ch, out_ch, spec.kernel, stride, **common))
        else:
          blk = InvertedResidual(in_ch, out_ch, spec.kernel, stride, spec.exp_ratio, **common)
          stage.append(blk)
        in_ch, idx = out_ch, idx + 1
      blocks.append(nnx.List(stage))
    self.blocks = nnx.List(blocks)

    self.num_features = head_chs if lite else round_channels(head_chs, width)
    self.conv_head = _conv(in_ch, self.num_features, 1, pad_type=pad_type, **kw)
    self.bn2 = batch_norm(self.num_features, eps=bn_eps, **kw)
    self.act = act

    self.in_chans = in_chans
    self.num_classes = num_classes
    self.drop_rate = drop_rate
    self.drop_path_rate = drop_path_rate
    # No stored rngs: dropout keys are passed at call time (functional training under jit).
    self.dropout = nnx.Dropout(drop_rate)
    self.classifier = (
      nnx.Linear(self.num_features, num_classes, kernel_init=_LINEAR_INIT, **kw)
      if num_classes > 0
      else None
    )

  def forward_features(
    self,
    x: jax.Array,
    *,
    train: bool = False,
    rngs: nnx.Rngs | jax.Array | None = None,
  ) -> jax.Array:
    """Stem, blocks and head conv: ``(N, H, W, C)`` -> ``(N, H/32, W/32, num_features)``.

    ``rngs`` (an ``nnx.Rngs`` or a key) is needed only for training with drop_path_rate > 0.
    This is the un-pooled map Grad-CAM hooks onto.
    """
    ura = not train
    rngs = dropout_rngs(rngs)
    x = self.act(self.bn1(self.conv_stem(x), use_running_average=ura))
    for stage in self.blocks:
      for blk in stage:
        x = blk(x, train=train, rngs=rngs)
    return self.act(self.bn2(self.conv_head(x), use_running_average=ura))

  def forward_stages(
    self,
    x: jax.Array,
    *,
    train: bool = False,
    rngs: nnx.Rngs | jax.Array | None = None,
  ) -> list[jax.Array]:
    """The last feature map at each stride (2, 4, ... 32), finest first; no head conv.

    The skip connections a UNet decoder reads (jaxcxr.models.unet): a stage's output is kept
    when the next stage halves the resolution, or it is the last stage (timm's `features_only`
    taps of EfficientNet: blocks 0, 1, 2, 4 and 6 for B0).
    """
    ura = not train
    rngs = dropout_rngs(rngs)
    x = self.act(self.bn1(self.conv_stem(x), use_running_average=ura))
    out = [x]
    for stage in self.blocks:
      for blk in stage:
        x = blk(x, train=train, rngs=rngs)
      if x.shape[1] == out[-1].shape[1]:
        out[-1] = x  # Same stride as the last tap: this stage's output replaces it.
      else:
        out.append(x)
    return out

  def forward_head(
    self,
    feats: jax.Array,
    *,
    train: bool = False,
    rngs: nnx.Rngs | jax.Array | None = None,
  ) -> jax.Array:
    """Global average pool, dropout (train only, key from ``rngs``) and classify; or the named
    head (`config.model.head`, `jaxcxr.training.model_init.replace_head`) where one was put."""
    if getattr(self, "head", None) is not None:
      return self.head(feats, train=train, rngs=rngs)
    x = pool_and_dropout(feats, self.dropout, train=train, rngs=rngs, owner="EfficientNet")
    return x if self.classifier is None else self.classifier(x)

  def __call__(
    self,
    x: jax.Array,
    *,
    train: bool = False,
    rngs: nnx.Rngs | jax.Array | None = None,
  ) -> jax.Array:
    """Logits ``(N, num_classes)`` (or pooled features) for NHWC images ``x``.

    Args:
        x: images ``(N, H, W, in_chans)``.
        train: use batch statistics (and update the running ones); enable dropout/drop path.
        rngs: dropout key (``nnx.Rngs`` or PRNG key); needed only when training with
            drop_rate or drop_path_rate > 0.
    """
    rngs = dropout_rngs(rngs)
    feats = self.forward_features(x, train=train, rngs=rngs)
    return self.forward_head(feats, train=train, rngs=rngs)


def _cfg(size: int, crop_pct: float, **overrides: Any) -> dict[str, Any]:
  cfg = {
    "input_size": (3, size, size),
    "interpolation": "bicubic",
    "crop_pct": crop_pct,
    "first_conv": "conv_stem",
    "classifier": "classifier",
  }
  return imagenet_cfg(**{**cfg, **overrides})


def _register(name: str, cfg: dict[str, Any], **defaults: Any) -> None:
  """Registers ``name`` as a partial of :class:`EfficientNet`."""
  register_variant(
    name, EfficientNet, default_cfg=cfg, doc=f"{name}: EfficientNet with {defaults}.", **defaults
  )


_TF = {"pad_type": "same", "bn_eps": BN_EPS_TF}
_TORCH = {"pad_type": "", "bn_eps": BN_EPS_TORCH}

# (width, depth, native resolution, crop_pct) from the paper / timm's tf_ pretrained cfgs.
_B_PARAMS = (
  (1.0, 1.0, 224, 0.875),
  (1.0, 1.1, 240, 0.882),
  (1.1, 1.2, 260, 0.890),
  (1.2, 1.4, 300, 0.904),
  (1.4, 1.8, 380, 0.922),
  (1.6, 2.2, 456, 0.934),
  (1.8, 2.6, 528, 0.942),
  (2.0, 3.1, 600, 0.949),
)
# Lite sizes as timm's cfgs (the TF reference evaluates Lite3/Lite4 at 280/300); (crop_pct,
# interpolation) of the tf_ ports: timm notes bicubic matches TF's bilinear better at low res.
_LITE_PARAMS = (
  (1.0, 1.0, 224, 0.875, 0.875, "bicubic"),
  (1.0, 1.1, 240, 0.882, 0.882, "bicubic"),
  (1.1, 1.2, 260, 0.890, 0.890, "bicubic"),
  (1.2, 1.4, 300, 0.904, 0.904, "bilinear"),
  (1.4, 1.8, 380, 0.922, 0.920, "bilinear"),
)

for _i, (_w, _d, _size, _crop) in enumerate(_B_PARAMS):
  # timm's own PyTorch-trained efficientnet_b2..b5 weights were trained/evaluated at other
  # sizes (256, 288, 320, 448): override input_size when loading those.
  _register(f"efficientnet_b{_i}", _cfg(_size, _crop), width=_w, depth=_d, **_TORCH)
  _register(f"tf_efficientnet_b{_i}", _cfg(_size, _crop), width=_w, depth=_d, **_TF)

for _i, (_w, _d, _size, _crop, _tf_crop, _interp) in enumerate(_LITE_PARAMS):
  _register(f"efficientnet_lite{_i}", _cfg(_size, _crop), width=_w, depth=_d, lite=True, **_TORCH)
  _register(
    f"tf_efficientnet_lite{_i}",
    _cfg(_size, _tf_crop, mean=_TF_LITE_MEAN, std=_TF_LITE_STD, interpolation=_interp),
    width=_w,
    depth=_d,
    lite=True,
    **_TF,
  )

# Used for testing only: both block types with and without skip, SE and the five stride-2
# steps of B0 (output stride 32) in five stages of 8-16 channels, ~10 k parameters. Few distinct
# shapes, so that eager execution on CPU compiles few kernels.
_TINY_STAGES = (
  StageSpec("ds", 1, 3, 1, 1.0, 8),
  StageSpec("ir", 2, 3, 2, 2.0, 16),
  StageSpec("ir", 1, 3, 2, 2.0, 16),
  StageSpec("ir", 1, 3, 2, 2.0, 16),
  StageSpec("ir", 1, 3, 2, 2.0, 16),
)
_register(
  "efficientnet_tiny", _cfg(224, 0.875), stages=_TINY_STAGES, width=0.25, head_chs=128, **_TORCH
)
