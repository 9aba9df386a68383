"""Tests for MobileNetV2 (Sandler et al., 2018) and its torchvision and timm name maps.

The generic forward/training tests in test_models.py cover ``mobilenet_v2_tiny``; here: parameter
counts (abstract construction, free), the block layout, and logit parity with torchvision's
``mobilenet_v2`` and timm's ``mobilenetv2_100`` through ``jaxcxr.weights.convert``.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcxr.models import create, param_count
from jaxcxr.models.mobilenet import make_divisible
from jaxcxr.weights import convert
from jaxcxr.weights.maps import mobilenet as mobilenet_map

HERE = pathlib.Path(__file__).parent

# sum(p.numel() for p in torchvision.models.mobilenet_v2(weights=None, width_mult=w)
# .parameters()), torchvision 0.29.1, 1000 classes; timm 1.0.31's mobilenetv2_{050,100,140}
# have the same counts.
TORCHVISION_PARAMS = {0.5: 1_968_680, 1.0: 3_504_872, 1.4: 6_108_776}


@pytest.mark.parametrize("width_mult", sorted(TORCHVISION_PARAMS))
def test_param_count_matches_torchvision(width_mult):
  abstract = nnx.eval_shape(lambda: create("mobilenet_v2", num_classes=1000, width_mult=width_mult))
  assert param_count(abstract) == TORCHVISION_PARAMS[width_mult]


def test_make_divisible():
  assert [make_divisible(c * 0.35) for c in (32, 16, 24, 96, 320)] == [16, 8, 8, 32, 112]
  assert make_divisible(1280 * 1.4) == 1792


def test_block_layout_follows_torchvision():
  model = nnx.eval_shape(lambda: create("mobilenet_v2", num_classes=1000))
  assert len(model.features) == 19 and model.num_features == 1280
  blocks = model.features[1:-1]
  # Expansion ratio 1: no expansion conv, [dw, bn], proj, bn; the others [pw, bn], [dw, bn], ...
  assert len(blocks[0].conv) == 3 and all(len(b.conv) == 4 for b in blocks[1:])
  # Identity shortcuts: every block of a stage but its first (stride or width change).
  assert [i + 1 for i, b in enumerate(blocks) if b.use_res_connect] == [
    3, 5, 6, 8, 9, 10, 12, 13, 15, 16,
  ]  # fmt: skip
  dw = blocks[1].conv[1][0]
  assert dw.feature_group_count == 96 and dw.kernel.shape == (3, 3, 1, 96)


def _reference(tmp_path: pathlib.Path, lib: str, arch: str) -> np.lib.npyio.NpzFile:
  ref_file = tmp_path / f"{arch}.npz"
  proc = subprocess.run(
    [sys.executable, str(HERE / "torch_reference.py"), lib, arch,
     "--num_classes", "10", "--size", "64", "--out", str(ref_file)],
    capture_output=True, text=True, timeout=600,
  )  # fmt: skip
  if proc.returncode == 3:
    pytest.skip(f"reference torch unavailable: {proc.stderr.strip()}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return np.load(ref_file)


@pytest.mark.slow  # importing torch and compiling the depthwise convs: ~20 s each
@pytest.mark.parametrize(
  ("lib", "arch", "rules"),
  [
    ("torchvision", "mobilenet_v2", mobilenet_map.TORCHVISION_RULES),
    ("timm", "mobilenetv2_100", mobilenet_map.TIMM_RULES),
  ],
)
def test_parity(tmp_path, lib, arch, rules):
  ref = _reference(tmp_path, lib, arch)
  flat = convert.torch_to_flat({k[3:]: ref[k] for k in ref.files if k.startswith("sd/")}, rules)
  # Abstract model: merge_into replaces every variable (and fails if one is missing).
  model = nnx.eval_shape(lambda: create("mobilenet_v2", num_classes=10))
  convert.merge_into(model, flat, first_conv="features.0.0", source=f"{lib} {arch}")
  got = np.asarray(model(jnp.asarray(ref["x"].transpose(0, 2, 3, 1))))
  err = np.max(np.abs(got - ref["logits"]))
  assert err <= 1e-4, err
