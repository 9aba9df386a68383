"""Tests for VGG (Simonyan and Zisserman, 2015) and its torchvision name map.

The generic forward/training tests in test_models.py cover ``vgg_tiny``; here: parameter counts of
the full models (abstract construction, free), torch's adaptive-pool bins, the ``num_classes=0``
contract, and logit parity with torchvision through ``jaxcxr.weights.convert``.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcxr.models import create, param_count
from jaxcxr.models.vgg import _bins, adaptive_avg_pool2d
from jaxcxr.weights import convert
from jaxcxr.weights.maps import vgg as vgg_map

HERE = pathlib.Path(__file__).parent

# sum(p.numel() for p in torchvision.models.<name>(weights=None).parameters()), torchvision
# 0.29.1, 1000 classes.
TORCHVISION_PARAMS = {
  "vgg16": 138_357_544,
  "vgg19": 143_667_240,
  "vgg16_bn": 138_365_992,
  "vgg19_bn": 143_678_248,
}


def _rngs(seed: int = 0) -> nnx.Rngs:
  return nnx.Rngs(jax.random.key(seed, impl="rbg"))


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_param_count_matches_torchvision(name):
  abstract = nnx.eval_shape(lambda: create(name, num_classes=1000))
  assert param_count(abstract) == TORCHVISION_PARAMS[name]


def test_torch_adaptive_pool_bins():
  # Worked out by hand from torch's start = floor(i * n / 7), end = ceil((i + 1) * n / 7).
  assert _bins(2, 7) == [(0, 1), (0, 1), (0, 1), (0, 2), (1, 2), (1, 2), (1, 2)]
  assert _bins(10, 7) == [(0, 2), (1, 3), (2, 5), (4, 6), (5, 8), (7, 9), (8, 10)]
  assert _bins(14, 7) == [(2 * i, 2 * i + 2) for i in range(7)]


@pytest.mark.parametrize("hw", [(2, 3), (7, 7), (10, 14), (9, 1)])
def test_adaptive_avg_pool2d_is_the_mean_of_each_bin(hw):
  x = np.random.default_rng(0).standard_normal((2, *hw, 3)).astype(np.float32)
  got = np.asarray(adaptive_avg_pool2d(jnp.asarray(x), (7, 7)))
  want = np.stack(
    [
      np.stack([x[:, hs:he, ws:we].mean(axis=(1, 2)) for ws, we in _bins(hw[1], 7)], axis=1)
      for hs, he in _bins(hw[0], 7)
    ],
    axis=1,
  )
  assert got.shape == (2, 7, 7, 3)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.slow  # two vgg_tiny forwards compile op by op: 4-13 s
def test_num_classes_zero_returns_fc7_features():
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  # Same seed: every layer but the last one (created last) gets the same initial weights.
  full = create("vgg_tiny", num_classes=3, rngs=_rngs())
  trunk = create("vgg_tiny", num_classes=0, rngs=_rngs())
  assert len(trunk.classifier) == 6 and trunk.num_features == 32
  feats = trunk(x)
  assert feats.shape == (2, trunk.head_hidden_size)
  np.testing.assert_allclose(full.classifier[6](feats), full(x), rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # a train-mode vgg_tiny forward: 4-7 s
def test_two_dropouts_draw_different_masks_from_one_key():
  model = create("vgg_tiny", num_classes=0, drop_rate=0.5, rngs=_rngs())
  # Identity fc7 with zero bias: fc7's input and output masks become directly comparable.
  fc6, fc7 = model.classifier[0], model.classifier[3]
  fc6.kernel[...] = jnp.zeros_like(fc6.kernel[...])
  fc6.bias[...] = jnp.ones(64)
  fc7.kernel[...] = jnp.eye(64)
  fc7.bias[...] = jnp.zeros(64)
  out = np.asarray(model(jnp.zeros((1, 32, 32, 3)), train=True, rngs=jax.random.key(0)))
  # fc6 outputs 1 everywhere; its dropout keeps about half as 2 (1 / (1 - 0.5)), fc7 passes them
  # on and its dropout keeps about half of those as 4. Reusing one mask would keep about half.
  assert set(np.unique(out).tolist()) <= {0.0, 4.0}
  assert 0.1 < np.mean(out == 4.0) < 0.4


def _torchvision_reference(tmp_path: pathlib.Path, arch: str, size: int) -> np.lib.npyio.NpzFile:
  ref_file = tmp_path / f"{arch}.npz"
  proc = subprocess.run(
    [sys.executable, str(HERE / "torch_reference.py"), "torchvision", arch,
     "--num_classes", "10", "--size", str(size), "--out", str(ref_file)],
    capture_output=True, text=True, timeout=600,
  )  # fmt: skip
  if proc.returncode == 3:
    pytest.skip(f"reference torch unavailable: {proc.stderr.strip()}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return np.load(ref_file)


@pytest.mark.slow  # torch builds a 140M-parameter model and writes it out: ~30 s each
@pytest.mark.parametrize(
  ("arch", "size"),
  [
    ("vgg16_bn", 64),  # 2x2 feature map -> 7x7
    ("vgg19", 96),  # 3x3 -> 7x7: other overlapping bins
  ],
)
def test_parity_with_torchvision(tmp_path, arch, size):
  ref = _torchvision_reference(tmp_path, arch, size)
  sd = {k[3:]: ref[k] for k in ref.files if k.startswith("sd/")}
  flat = convert.torch_to_flat(sd, vgg_map.TORCHVISION_RULES)

  # The documented transfer-learning load: fc8 left out, the model returns fc7 features.
  trunk = nnx.eval_shape(lambda: create(arch, num_classes=0))
  kept = convert.merge_into(trunk, flat, first_conv="features.0", dont_load=(r"^classifier\.6\.",))
  assert kept == []

  # Abstract model: merge_into replaces every variable (and fails if one is missing).
  model = nnx.eval_shape(lambda: create(arch, num_classes=10))
  convert.merge_into(model, flat, first_conv="features.0", source=arch)
  got = np.asarray(model(jnp.asarray(ref["x"].transpose(0, 2, 3, 1))))
  err = np.max(np.abs(got - ref["logits"]))
  assert err <= 1e-4, err
  # VGG's N(0, 0.01) classifier init gives logits far below 1: check the error relative to them.
  assert err <= 1e-4 * np.max(np.abs(ref["logits"])), err
