"""Tests for jaxcxr.explain.gradcam (Selvaraju et al., 2017; Chattopadhyay et al., 2018).

Every backbone of the zoo gets heat maps of the right shape through its tiny variant; the
definition is checked against a hand-computed CAM; and ResNet-50 and DenseNet-121 match the
reference ``grad-cam`` PyTorch package on the same (random, BN-randomised) torchvision weights
and input, both its raw CAM and its post-processed output.

Tolerance: float32 throughout; XLA and torch sum the convolutions in different orders, which
moves the logits of these models by ~1e-6 relative (the model parity tests allow 1e-4
absolute). A CAM is a sum of products of activations and gradients, so its error is relative
to its scale: we allow 1e-4 of each map's largest magnitude (measured: ~1e-6 for both models,
both variants). The post-processed maps are in [0, 1] and reproduce the package exactly
(min-max, bilinear resize, min-max again; jax.image.resize and cv2.resize agree to 3e-7 when
upsampling): 1e-4 absolute (measured ~3e-6). A wrong target class, the other CAM variant or
DenseNet's map before its last ReLU are all > 5 % off, which the tests check too, so the
comparison can fail.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from explain_testlib import load_torchvision, nhwc, reference
from flax import nnx

from jaxcxr.explain import gradcam
from jaxcxr.models import create, list_models


def _rngs(seed: int = 0) -> nnx.Rngs:
  return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def _size(name: str) -> int:
  from jaxcxr import models

  return max(64, models.get_default_cfg(name).get("min_input_size", (3, 0, 0))[1])


@pytest.mark.parametrize("name", list_models("*_tiny"))
def test_every_backbone_shapes_and_range(name):
  model = create(name, num_classes=3, rngs=_rngs())
  size = _size(name)
  x = jax.random.normal(jax.random.key(1), (2, size, size, 3))
  maps, target = gradcam(model, x, return_target=True)
  assert maps.shape == (2, size, size)
  assert bool(jnp.all(jnp.isfinite(maps)))
  assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0
  np.testing.assert_array_equal(target, jnp.argmax(model(x), axis=-1))
  raw = gradcam(model, x, target=[0, 2], resize=False, normalize=False, plus_plus=True)
  feats = model.forward_features(x)
  assert raw.shape == feats.shape[:3]


def test_definition_by_hand():
  model = create("resnet_tiny", num_classes=3, rngs=_rngs())
  x = jax.random.normal(jax.random.key(2), (2, 64, 64, 3))
  feats = model.forward_features(x)
  # d logit_c / d A for each image, one image at a time with jax.grad.
  cams = []
  for i, c in enumerate([1, 2]):
    g = jax.grad(lambda a, i=i, c=c: model.forward_head(a)[i, c])(feats)[i]
    cams.append(np.maximum(np.einsum("hwc,c->hw", feats[i], g.mean(axis=(0, 1))), 0))
  got = gradcam(model, x, target=[1, 2], resize=False, normalize=False)
  np.testing.assert_allclose(got, np.stack(cams), rtol=1e-5, atol=1e-6)


def test_named_layer():
  model = create("resnet_tiny", num_classes=3, rngs=_rngs())
  x = jax.random.normal(jax.random.key(3), (2, 64, 64, 3))
  # The last block's output is the default map: the same CAM.
  default = gradcam(model, x, target=1, resize=False, normalize=False)
  named = gradcam(model, x, target=1, layer="layer4.0", resize=False, normalize=False)
  np.testing.assert_allclose(named, default, rtol=1e-5, atol=1e-6)
  # An earlier stage: twice the resolution, and the model itself is left as it was.
  earlier = gradcam(model, x, target=1, layer="layer3")
  assert earlier.shape == (2, 64, 64)
  assert gradcam(model, x, target=1, layer="layer3", resize=False).shape == (2, 4, 4)
  assert type(model.layer3).__name__ == "List" and type(model.layer3[0]).__name__ == "BasicBlock"


def test_errors_name_the_problem():
  model = create("resnet_tiny", num_classes=3, rngs=_rngs())
  x = jnp.zeros((1, 32, 32, 3))
  with pytest.raises(ValueError, match="no submodule 'layer9'"):
    gradcam(model, x, layer="layer9")
  with pytest.raises(ValueError, match="out of range for 3 classes"):
    gradcam(model, x, target=3)
  with pytest.raises(ValueError, match="NHWC"):
    gradcam(model, x[0])


def _compare_with_package(arch: str, tmp_path):
  ref = reference(tmp_path, "gradcam", arch, "--size", "112")
  model = load_torchvision(arch, ref)
  x, target = nhwc(ref["x"]), ref["target"]
  for key, pp in (("gradcam", False), ("gradcampp", True)):
    raw = np.asarray(gradcam(model, x, target, plus_plus=pp, resize=False, normalize=False))
    want = ref[f"{key}_raw"]
    # The scale of the map before its ReLU: a map can be all zero after it.
    scale = np.abs(ref[f"{key}_lin"]).max(axis=(1, 2), keepdims=True)
    err = np.abs(raw - want) / scale
    assert err.max() <= 1e-4, (key, err.max())
    final = np.asarray(gradcam(model, x, target, plus_plus=pp))
    assert np.abs(final - ref[key]).max() <= 1e-4, (key, np.abs(final - ref[key]).max())
  # The comparison can fail: the other variant and another class are far outside the bound.
  pp_raw = np.asarray(gradcam(model, x, target, plus_plus=True, resize=False, normalize=False))
  assert _rel_err(pp_raw, ref) > 0.05
  other = np.asarray(gradcam(model, x, target[::-1], resize=False, normalize=False))
  assert _rel_err(other, ref) > 0.05
  return model, x, target, ref


def _rel_err(cams: np.ndarray, ref) -> float:
  """Largest error against the reference Grad-CAM, relative to the batch's map scale."""
  return float(np.abs(cams - ref["gradcam_raw"]).max() / np.abs(ref["gradcam_lin"]).max())


@pytest.mark.slow  # torch + grad-cam in a subprocess (~6 s), one ResNet-50 compile (~20 s)
def test_parity_with_grad_cam_package_resnet50(tmp_path):
  _compare_with_package("resnet50", tmp_path)


@pytest.mark.slow  # torch + grad-cam in a subprocess (~8 s), one DenseNet-121 compile (~40 s)
def test_parity_with_grad_cam_package_densenet121(tmp_path):
  model, x, target, ref = _compare_with_package("densenet121", tmp_path)
  # The map before DenseNet's last ReLU (features.norm5's output) gives another CAM: the
  # reference's ReLU'd target layer matters, and the test sees the difference.
  pre = np.asarray(gradcam(model, x, target, layer="features.norm5", resize=False, normalize=False))
  assert _rel_err(pre, ref) > 0.05
