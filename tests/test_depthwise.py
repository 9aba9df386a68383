"""Depthwise convolutions as shifted slices (jaxcxr.models.depthwise) against XLA's convolution."""

from __future__ import annotations

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from jaxcxr import models
from jaxcxr.models import depthwise
from jaxcxr.models.efficientnet import get_same_padding

# (kernel, stride, padding, dilation, size): every depthwise conv of the zoo at small sizes —
# MobileNetV2 and the PyTorch-trained EfficientNets pad symmetrically ((s - 1) + (k - 1)) // 2,
# the TF ports use TF 'SAME' (asymmetric for stride 2, even and odd sizes), plus VALID and
# dilation, which the zoo does not use but the function supports.
CASES = [
  (3, 1, ((1, 1), (1, 1)), 1, 9),
  (3, 2, ((1, 1), (1, 1)), 1, 10),
  (3, 2, ((1, 1), (1, 1)), 1, 9),
  (5, 1, ((2, 2), (2, 2)), 1, 8),
  (5, 2, ((2, 2), (2, 2)), 1, 11),
  (3, 1, "SAME", 1, 7),
  (3, 2, "SAME", 1, 8),
  (3, 2, "SAME", 1, 9),
  (5, 2, "SAME", 1, 10),
  (5, 2, "SAME", 1, 13),
  (3, 1, "VALID", 1, 7),
  (5, 2, "VALID", 1, 12),
  (3, 1, "SAME", 2, 9),
  (3, 2, ((2, 2), (2, 2)), 2, 10),
]


def _reference(x, kernel, stride, padding, dilation):
  return lax.conv_general_dilated(
    x,
    kernel,
    (stride, stride),
    padding,
    rhs_dilation=(dilation, dilation),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    feature_group_count=x.shape[-1],
    precision=lax.Precision.HIGHEST,
  )


def _close(actual, expected, rtol):
  """Equal within ``rtol`` of the largest magnitude of ``expected`` (sums reorder terms)."""
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  assert actual.shape == expected.shape
  scale = max(float(np.abs(expected).max()), 1e-30)
  np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def _inputs(k, size, batch, channels, dtype=jnp.float32, seed=0):
  kx, kk, kg = jax.random.split(jax.random.key(seed), 3)
  x = jax.random.normal(kx, (batch, size, size, channels), dtype)
  kernel = jax.random.normal(kk, (k, k, 1, channels), dtype)
  return x, kernel, kg


@pytest.mark.parametrize("k,stride,padding,dilation,size", CASES)
def test_forward_and_gradients_match_xla(k, stride, padding, dilation, size):
  x, kernel, kg = _inputs(k, size, 1 + size % 2, 6)  # batch 1 or 2

  def slices(x, kernel):
    return depthwise.depthwise_conv(
      x, kernel, strides=stride, padding=padding, dilation=dilation, impl="slices"
    )

  def ref(x, kernel):
    return _reference(x, kernel, stride, padding, dilation)

  y, vjp = jax.vjp(jax.jit(slices), x, kernel)
  y_ref, vjp_ref = jax.vjp(jax.jit(ref), x, kernel)
  _close(y, y_ref, 1e-5)
  g = jax.random.normal(kg, y_ref.shape)
  for got, want in zip(vjp(g), vjp_ref(g), strict=True):  # d/dx, d/dkernel
    _close(got, want, 1e-5)


def test_tf_same_matches_the_explicit_pads_of_conv2dsame():
  # EfficientNet's Conv2dSame pads by get_same_padding (half before, the rest after) and then
  # convolves VALID; 'SAME' here must be the same pads, e.g. (0, 1) for 3x3/2 on 8 px.
  x, kernel, _ = _inputs(3, 8, 1, 4)
  total = get_same_padding(8, 3, 2)
  assert (total // 2, total - total // 2) == (0, 1)
  explicit = ((0, 1), (0, 1))
  for impl in ("slices", "xla"):
    y = depthwise.depthwise_conv(x, kernel, strides=2, padding="SAME", impl=impl)
    _close(y, _reference(x, kernel, 2, explicit, 1), 1e-5)


def test_bf16_inputs_within_bf16_tolerance():
  x, kernel, _ = _inputs(3, 16, 2, 8)
  xb, kb = x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16)
  y = depthwise.depthwise_conv(xb, kb, strides=2, padding="SAME", impl="slices")
  assert y.dtype == jnp.bfloat16
  # Against the fp32 convolution of the same (bf16-rounded) values: only the output rounding
  # (2^-8 relative) and the fp32 accumulation order differ.
  want = _reference(xb.astype(jnp.float32), kb.astype(jnp.float32), 2, "SAME", 1)
  _close(y, want, 1e-2)
  yx = depthwise.depthwise_conv(xb, kb, strides=2, padding="SAME", impl="xla")
  _close(y, yx.astype(jnp.float32), 2e-2)


def test_auto_is_slices_on_cpu_and_xla_elsewhere(monkeypatch):
  monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
  assert depthwise.resolve_impl("auto") == "slices"
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert depthwise.resolve_impl("auto") == "xla"
  assert depthwise.resolve_impl("slices") == "slices"


def test_bad_arguments_are_named():
  x, kernel, _ = _inputs(3, 8, 1, 4)
  with pytest.raises(ValueError, match="'fast'"):
    depthwise.depthwise_conv(x, kernel, impl="fast")
  with pytest.raises(ValueError, match="kernel must be"):
    depthwise.depthwise_conv(x, jnp.ones((3, 3, 4, 4)))
  with pytest.raises(ValueError, match="depthwise_impl"):
    depthwise.DepthwiseConvFn("fast")
  with pytest.raises(ValueError, match="'fast'"):
    models.create("mobilenet_v2_tiny", num_classes=2, depthwise_impl="fast")


def test_conv_fn_passes_other_convolutions_to_lax():
  # A dense and a grouped (not depthwise) nnx.Conv with DepthwiseConvFn compute as before.
  fn = depthwise.DepthwiseConvFn("slices")
  x = jax.random.normal(jax.random.key(1), (2, 9, 9, 4))
  for groups, out in ((1, 6), (2, 4)):
    ref = nnx.Conv(4, out, (3, 3), strides=2, feature_group_count=groups, rngs=nnx.Rngs(0))
    alt = nnx.Conv(
      4,
      out,
      (3, 3),
      strides=2,
      feature_group_count=groups,
      conv_general_dilated=fn,
      rngs=nnx.Rngs(0),
    )
    assert not depthwise.is_depthwise(alt)
    np.testing.assert_array_equal(alt(x), ref(x))


def _grouped_convs(fun, *args) -> list[int]:
  """feature_group_count of every convolution in the jaxpr of ``fun(*args)``."""
  found = []

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "conv_general_dilated":
        found.append(eqn.params["feature_group_count"])
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        walk(sub)

  walk(jax.make_jaxpr(fun)(*args).jaxpr)
  return found


@pytest.mark.parametrize("name", ["mobilenet_v2_tiny", "efficientnet_tiny"])
def test_families_route_depthwise_convs(name):
  """Under 'slices' no grouped convolution is left in the forward; under 'xla' they are."""
  x = jnp.zeros((1, 64, 64, 3))

  def groups(impl):
    graphdef, state = nnx.split(models.create(name, num_classes=2, depthwise_impl=impl))
    return _grouped_convs(lambda s, x: nnx.merge(graphdef, s)(x), state, x)

  assert groups("slices") and all(g == 1 for g in groups("slices"))
  assert any(g > 1 for g in groups("xla"))


def _logits(name, impl, size, train=False):
  model = models.create(name, num_classes=5, depthwise_impl=impl, rngs=nnx.Rngs(3))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  x = jax.random.normal(jax.random.key(7), (2, size, size, 3))

  @jax.jit
  def f(params, rest, x):
    # copy=True: a train-mode call updates the batch-norm statistics of this copy only.
    return nnx.merge(graphdef, params, rest, copy=True)(x, train=train)

  if not train:
    return params, f(params, rest, x), None

  weights = jax.random.normal(jax.random.key(8), (2, 5))

  def loss(params):
    return jnp.sum(f(params, rest, x) * weights)

  return params, *jax.value_and_grad(loss)(params)


@pytest.mark.parametrize(
  "name,size",
  [
    ("mobilenet_v2", 64),
    ("efficientnet_b0", 64),
    ("efficientnet_lite0", 64),
    ("tf_efficientnet_lite0", 66),  # TF 'SAME': odd sizes after the first stride 2
  ],
)
def test_whole_model_logits_equal_between_impls(name, size):
  params_s, y_s, _ = _logits(name, "slices", size)
  params_x, y_x, _ = _logits(name, "xla", size)
  # Weight ports see the same parameters: paths, shapes and values.
  assert jax.tree.structure(params_s) == jax.tree.structure(params_x)
  jax.tree.map(np.testing.assert_array_equal, params_s, params_x)
  _close(y_s, y_x, 1e-5)


def test_train_mode_gradients_equal_between_impls():
  _, loss_s, grads_s = _logits("efficientnet_tiny", "slices", 64, train=True)
  _, loss_x, grads_x = _logits("efficientnet_tiny", "xla", 64, train=True)
  _close(loss_s, loss_x, 1e-5)
  # Some gradients are zero up to rounding (a bias right before a train-mode batch norm), so the
  # scale is the largest gradient of the model, not of each leaf.
  scale = max(float(np.abs(g).max()) for g in jax.tree.leaves(grads_x))
  for a, b in zip(jax.tree.leaves(grads_s), jax.tree.leaves(grads_x), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale)


def test_set_impl_changes_no_state():
  model = models.create("mobilenet_v2_tiny", num_classes=2)
  before = jax.tree.map(np.asarray, nnx.state(model))
  n = depthwise.set_impl(model, "xla")
  assert n == 5  # one depthwise conv in each of the 5 inverted residual blocks
  after = nnx.state(model)
  assert jax.tree.structure(before) == jax.tree.structure(after)
  jax.tree.map(np.testing.assert_array_equal, before, after)
  assert depthwise.set_impl(models.create("resnet_tiny", num_classes=2), "xla") == 0
