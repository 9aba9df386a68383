"""Depthwise convolutions as shifted slices (fast on CPU) or XLA's grouped convolution.

A depthwise convolution (``feature_group_count`` equal to the input channels, one filter per
channel: Howard et al., 2017, "MobileNets: Efficient Convolutional Neural Networks for Mobile
Vision Applications") is, per output pixel, a sum of K x K input pixels each scaled by a
per-channel weight. XLA:CPU has no specialised kernel for it: the forward runs one tiny GEMM per
group, and the kernel gradient becomes a batch-grouped convolution that XLA:CPU expands into a
dense convolution plus a mask (C times the work). Written as K x K strided slices of the padded
input multiplied by per-channel weights, the same computation is elementwise code that XLA fuses;
autodiff through it gives pads/slices for the input gradient and a reduction for the kernel
gradient. On GPU and TPU XLA's own convolution (cuDNN's depthwise kernels) is the better choice.

Which implementation runs:

* ``impl='auto'`` (the default): ``'slices'`` when ``jax.default_backend()`` is ``'cpu'`` at
  trace time, ``'xla'`` otherwise;
* ``models.create(..., depthwise_impl='slices' | 'xla' | 'auto')`` pins one model's depthwise
  convs (it calls :func:`set_impl`); a training config sets it as ``config.model.depthwise_impl``
  (``--config.model.depthwise_impl=xla`` on the command line).

The modules stay ``nnx.Conv`` (same parameters, paths and init); only their
``conv_general_dilated`` (a documented ``nnx.Conv`` argument) is :class:`DepthwiseConvFn`, which
takes ``lax.conv_general_dilated``'s arguments and routes depthwise NHWC convolutions to
:func:`depthwise_conv` and everything else to ``lax.conv_general_dilated`` unchanged.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

__all__ = [
  "IMPLS",
  "DepthwiseConvFn",
  "depthwise_conv",
  "is_depthwise",
  "resolve_impl",
  "set_impl",
]

IMPLS = ("auto", "slices", "xla")

Padding = str | int | Sequence[tuple[int, int]]


def _check_impl(impl: str, source: str) -> str:
  if impl not in IMPLS:
    raise ValueError(f"depthwise: {source} must be one of {IMPLS}, got {impl!r}")
  return impl


def resolve_impl(impl: str = "auto") -> str:
  """``'slices'`` or ``'xla'``: ``'auto'`` is slices on the CPU backend, XLA elsewhere."""
  if _check_impl(impl, "depthwise impl") == "auto":
    return "slices" if jax.default_backend() == "cpu" else "xla"
  return impl


def _pads(
  spatial: Sequence[int],
  kernel: Sequence[int],
  strides: Sequence[int],
  padding: Padding,
  dilation: Sequence[int],
) -> list[tuple[int, int]]:
  """Explicit ``(lo, hi)`` pads per spatial axis; 'SAME' is TF's (the extra pixel after)."""
  if isinstance(padding, str):
    dilated = [(k - 1) * d + 1 for k, d in zip(kernel, dilation, strict=True)]
    return [tuple(p) for p in lax.padtype_to_pads(spatial, dilated, strides, padding.upper())]
  if isinstance(padding, int):
    return [(padding, padding)] * len(spatial)
  pads = [tuple(p) for p in padding]
  if len(pads) != len(spatial) or any(len(p) != 2 for p in pads):
    raise ValueError(
      f"depthwise: padding must be 'SAME', 'VALID', an int or {len(spatial)} (lo, hi) pairs, "
      f"got {padding!r}"
    )
  return pads  # type: ignore[return-value]


def _slices(
  x: jax.Array,
  kernel: jax.Array,
  strides: Sequence[int],
  pads: Sequence[tuple[int, int]],
  dilation: Sequence[int],
  out_dtype: Any,
) -> jax.Array:
  """Sum over kernel taps of strided slices of the padded input times per-channel weights."""
  zero = jnp.zeros((), x.dtype)
  xp = lax.pad(x, zero, [(0, 0, 0), *[(lo, hi, 0) for lo, hi in pads], (0, 0, 0)])
  ksize = kernel.shape[:-2]
  out = [
    (p - ((k - 1) * d + 1)) // s + 1
    for p, k, s, d in zip(xp.shape[1:-1], ksize, strides, dilation, strict=True)
  ]
  if any(o <= 0 for o in out):
    raise ValueError(
      f"depthwise: kernel {tuple(ksize)} (dilation {tuple(dilation)}) is larger than the padded "
      f"input {xp.shape[1:-1]}"
    )
  # Low-precision inputs are multiplied and summed in fp32, as XLA's convolutions accumulate.
  acc_dtype = jnp.promote_types(x.dtype, jnp.float32)
  w = kernel.reshape(*ksize, kernel.shape[-1]).astype(acc_dtype)
  y = None
  for tap in itertools.product(*[range(k) for k in ksize]):
    start = [0] + [t * d for t, d in zip(tap, dilation, strict=True)] + [0]
    limit = (
      [xp.shape[0]]
      + [st + (o - 1) * s + 1 for st, o, s in zip(start[1:-1], out, strides, strict=True)]
      + [xp.shape[-1]]
    )
    term = lax.slice(xp, start, limit, [1, *strides, 1]).astype(acc_dtype) * w[tap]
    y = term if y is None else y + term
  return y.astype(out_dtype)  # type: ignore[union-attr]


def depthwise_conv(
  x: jax.Array,
  kernel: jax.Array,
  *,
  strides: int | Sequence[int] = 1,
  padding: Padding = "VALID",
  dilation: int | Sequence[int] = 1,
  impl: str = "auto",
  precision: Any = None,
  preferred_element_type: Any = None,
) -> jax.Array:
  """Depthwise convolution of NHWC (channels-last) ``x`` with a ``(*window, 1, C)`` kernel.

  Equal to ``lax.conv_general_dilated(x, kernel, strides, padding, rhs_dilation=dilation,
  dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=C)``, the layout of an
  ``nnx.Conv`` with ``feature_group_count == in_features == out_features``.

  Args:
      x: ``(N, *spatial, C)`` input.
      kernel: ``(*window, 1, C)`` per-channel filters.
      strides: one int or one per spatial axis.
      padding: ``'SAME'`` (TensorFlow's: any odd pixel goes after), ``'VALID'``, an int, or
          explicit ``(lo, hi)`` pairs per spatial axis.
      dilation: kernel (atrous) dilation, one int or one per spatial axis.
      impl: ``'slices'``, ``'xla'`` or ``'auto'`` (slices on the CPU backend, XLA elsewhere).
      precision: passed to XLA's convolution (``impl='xla'``); the slices multiply in the
          input dtype promoted to at least fp32.
      preferred_element_type: output dtype (default: that of ``x`` and ``kernel``).

  Returns:
      ``(N, *out_spatial, C)``.

  Raises:
      ValueError: on a kernel that is not ``(*window, 1, C)``, bad padding, or an unknown impl.
  """
  nsp = x.ndim - 2
  channels = x.shape[-1]
  if kernel.ndim != x.ndim or kernel.shape[-2] != 1 or kernel.shape[-1] != channels:
    raise ValueError(
      f"depthwise: kernel must be (*window, 1, {channels}) for an input of shape {x.shape}, "
      f"got {kernel.shape}"
    )
  strides = (strides,) * nsp if isinstance(strides, int) else tuple(strides)
  dilation = (dilation,) * nsp if isinstance(dilation, int) else tuple(dilation)
  pads = _pads(x.shape[1:-1], kernel.shape[:-2], strides, padding, dilation)
  if resolve_impl(impl) == "xla":
    spatial = "HWD"[:nsp] if nsp <= 3 else None
    if spatial is None:
      raise ValueError(f"depthwise: impl='xla' supports 1-3 spatial axes, got {nsp}")
    return lax.conv_general_dilated(
      x,
      kernel,
      strides,
      pads,
      rhs_dilation=dilation,
      dimension_numbers=(f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"),
      feature_group_count=channels,
      precision=precision,
      preferred_element_type=preferred_element_type,
    )
  out_dtype = preferred_element_type or jnp.result_type(x.dtype, kernel.dtype)
  return _slices(x, kernel, strides, pads, dilation, out_dtype)


def _channels_last(ndim: int, dimension_numbers: Any, lhs_shape, rhs_shape) -> bool:
  """Whether ``dimension_numbers`` is channels-last / ``(*window, I, O)`` (nnx.Conv's)."""
  if ndim < 3 or ndim > 5:
    return False
  spatial = "HWD"[: ndim - 2]
  want = lax.conv_dimension_numbers(
    lhs_shape, rhs_shape, (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")
  )
  got = lax.conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers)
  return got == want


@dataclasses.dataclass(frozen=True)
class DepthwiseConvFn:
  """A drop-in ``lax.conv_general_dilated`` for ``nnx.Conv(conv_general_dilated=...)``.

  Depthwise, channel-multiplier-1, channels-last convolutions without input dilation go to
  :func:`depthwise_conv` with this ``impl``; any other call is passed to
  ``lax.conv_general_dilated`` unchanged. Frozen (hashable, compared by value) because it is a
  static attribute of the module's graph.

  Attributes:
      impl: ``'auto'`` (resolved at trace time), ``'slices'`` or ``'xla'``.
  """

  impl: str = "auto"

  def __post_init__(self):
    _check_impl(self.impl, "depthwise_impl")

  def __call__(
    self,
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: Padding,
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
    **kwargs: Any,
  ) -> jax.Array:
    nsp = lhs.ndim - 2
    depthwise = (
      batch_group_count == 1
      and not kwargs.get("out_sharding")
      and all(d == 1 for d in (lhs_dilation or (1,) * nsp))
      and dimension_numbers is not None
      and _channels_last(lhs.ndim, dimension_numbers, lhs.shape, rhs.shape)
      and feature_group_count == lhs.shape[-1] == rhs.shape[-1]
      and rhs.shape[-2] == 1
    )
    if not depthwise:
      return lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count,
        precision=precision,
        preferred_element_type=preferred_element_type,
        **kwargs,
      )
    return depthwise_conv(
      lhs,
      rhs,
      strides=window_strides,
      padding=padding,
      dilation=rhs_dilation or 1,
      impl=self.impl,
      precision=precision,
      preferred_element_type=preferred_element_type,
    )


def is_depthwise(module: Any) -> bool:
  """Whether ``module`` is an ``nnx.Conv`` with one filter per input channel."""
  return (
    isinstance(module, nnx.Conv)
    and module.feature_group_count > 1
    and module.feature_group_count == module.in_features == module.out_features
  )


def set_impl(model: nnx.Module, impl: str) -> int:
  """Makes every depthwise ``nnx.Conv`` in ``model`` compute with ``impl``.

  Only the static ``conv_general_dilated`` of those modules changes: parameters, their paths
  and the state are untouched.

  Args:
      model: any NNX module tree.
      impl: ``'auto'``, ``'slices'`` or ``'xla'``.

  Returns:
      How many convolutions were switched (0 for a model without depthwise convs).
  """
  fn = DepthwiseConvFn(impl)
  n = 0
  for _, module in nnx.iter_modules(model):
    if is_depthwise(module):
      module.conv_general_dilated = fn
      n += 1
  return n
