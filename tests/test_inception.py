"""Tests for Inception-v3 (Szegedy et al., 2016, "Rethinking the Inception Architecture for
Computer Vision"): parameter counts, torchvision layout, the weight map, and parity with
torchvision and timm.

Generic forward/backward tests of ``inception_v3_tiny`` live in ``test_models.py``. The full model
is only built abstractly (``nnx.eval_shape``) except in the parity tests, which load every
variable from the reference checkpoint and run at 75 px, the smallest input the network accepts.
"""

from __future__ import annotations

import functools
import pathlib
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcxr.models import create, inception, param_count
from jaxcxr.weights import convert
from jaxcxr.weights.maps import inception as maps

HERE = pathlib.Path(__file__).parent

# sum(p.numel() for p in torchvision.models.inception_v3(weights=None, aux_logits=A,
# init_weights=False).parameters()) with torchvision 0.29.1, keyed by A; timm 1.0.31's
# inception_v3 (no aux head) has 23,834,568 too. 27,161,264 is also the num_params of
# torchvision's Inception_V3_Weights.IMAGENET1K_V1.
TORCHVISION_PARAMS = {False: 23_834_568, True: 27_161_264}

# One jitted forward shared by the parity tests: same graphdef and shapes, so one compile.
_predict = nnx.jit(lambda model, x: model(x))


def _abstract(name: str = "inception_v3", **kwargs) -> nnx.Module:
  return nnx.eval_shape(lambda: create(name, **{"num_classes": 1000, **kwargs}))


@functools.cache
def _shared_abstract(aux_logits: bool = False) -> nnx.Module:
  """Tracing the full model takes seconds even abstractly, so read-only tests share builds."""
  return _abstract(aux_logits=aux_logits)


def _paths(model: nnx.Module) -> set[str]:
  return {convert.path_str(p) for p, _ in nnx.to_flat_state(nnx.state(model))}


@pytest.mark.parametrize("aux", [False, True])
def test_param_count_matches_torchvision(aux):
  assert param_count(_shared_abstract(aux_logits=aux)) == TORCHVISION_PARAMS[aux]


def test_parameter_paths_follow_torchvision():
  paths = _paths(_shared_abstract(aux_logits=True))
  for p in (
    "Conv2d_1a_3x3.conv.kernel",
    "Conv2d_1a_3x3.bn.scale",
    "Conv2d_4a_3x3.bn.var",
    "Mixed_5b.branch5x5_2.conv.kernel",
    "Mixed_5d.branch_pool.bn.mean",
    "Mixed_6a.branch3x3dbl_3.conv.kernel",
    "Mixed_6e.branch7x7dbl_5.bn.bias",
    "Mixed_7a.branch7x7x3_4.conv.kernel",
    "Mixed_7c.branch3x3dbl_3b.conv.kernel",
    "AuxLogits.conv1.conv.kernel",
    "AuxLogits.fc.kernel",
    "head.fc.kernel",
    "head.fc.bias",
  ):
    assert p in paths, p
  assert not any(p.startswith("AuxLogits.") for p in _paths(_shared_abstract(aux_logits=False)))


def test_tiny_has_the_full_topology():
  # Same variables, channels divided by 8: the tiny model exercises every block of the real one.
  full, tiny = _shared_abstract(aux_logits=False), _abstract("inception_v3_tiny")
  assert _paths(tiny) == _paths(full)
  assert tiny.num_features * 8 == full.num_features == 2048


@pytest.mark.slow  # abstract, but tracing the full network three times takes ~5-10 s
def test_feature_map_sizes():
  def sides(model):
    return [model.forward_features(jnp.zeros((1, s, s, 3))) for s in (299, 107, 75)]

  got = nnx.eval_shape(lambda: sides(create("inception_v3", num_classes=0)))
  assert [out.shape for out in got] == [(1, 8, 8, 2048), (1, 2, 2, 2048), (1, 1, 1, 2048)]


@pytest.mark.slow  # abstract, ~5-10 s of tracing
def test_aux_logits():
  def both(model):
    return model.forward_with_aux(jnp.zeros((2, 299, 299, 3)), train=True)

  logits, aux = nnx.eval_shape(lambda: both(create("inception_v3", num_classes=5, aux_logits=True)))
  assert logits.shape == aux.shape == (2, 5)
  with pytest.raises(ValueError, match="aux_logits=True"):
    both(_shared_abstract(aux_logits=False))  # raises before touching the (abstract) weights
  with pytest.raises(ValueError, match="num_classes > 0"):
    create("inception_v3", num_classes=0, aux_logits=True)  # raises before building anything


def test_branch_pool_counts_padding():
  # torch's avg_pool2d(3, 1, padding=1) default count_include_pad=True: a corner sees 4 ones / 9.
  out = inception._avg_pool_3x3(jnp.ones((1, 4, 4, 1)))
  np.testing.assert_allclose(out[0, :, :, 0][0], [4 / 9, 6 / 9, 6 / 9, 4 / 9], rtol=1e-6)
  np.testing.assert_allclose(out[0, 1:3, 1:3, 0], 1.0, rtol=1e-6)


# --- Parity (optional: needs torch, which the library itself never imports) ---


def _reference(tmp_path: pathlib.Path, lib: str, *args: str) -> dict[str, np.ndarray]:
  out = tmp_path / f"{lib}.npz"
  proc = subprocess.run(
    [sys.executable, str(HERE / "torch_reference.py"), lib, "inception_v3", "--num_classes", "10",
     "--size", "75", "--out", str(out), *args],
    capture_output=True, text=True, timeout=600,
  )  # fmt: skip
  if proc.returncode == 3:
    pytest.skip(f"reference torch unavailable: {proc.stderr.strip()}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return dict(np.load(out))


def _max_abs_err(model: nnx.Module, ref: dict[str, np.ndarray]) -> float:
  got = np.asarray(_predict(model, jnp.asarray(ref["x"].transpose(0, 2, 3, 1))))
  return float(np.max(np.abs(got - ref["logits"])))


@pytest.mark.slow  # torch subprocess + compiling the full forward: ~20-40 s on 2 cores
def test_parity_with_torchvision(tmp_path):
  # aux_logits=True like torchvision's ImageNet checkpoint; init_weights=False skips its slow
  # scipy init (the BN statistics are randomised by torch_reference.py either way).
  ref = _reference(
    tmp_path, "torchvision", "--kwargs", '{"aux_logits": true, "init_weights": false}'
  )
  sd = {k[3:]: v for k, v in ref.items() if k.startswith("sd/")}
  flat = convert.torch_to_flat(sd, maps.TORCHVISION_RULES)
  assert any(k.startswith("AuxLogits.") for k in flat)

  # The default model has no aux head: its tensors are unexpected unless dropped explicitly.
  model = _abstract(num_classes=10)
  with pytest.raises(ValueError, match=r"unexpected .*AuxLogits\."):
    convert.merge_into(model, flat)
  convert.merge_into(model, flat, dont_load=maps.DONT_LOAD_AUX, first_conv="Conv2d_1a_3x3.conv")
  err = _max_abs_err(model, ref)
  assert err <= 1e-4, err

  # With aux_logits=True every tensor has a place (merge_into fails on anything missing).
  assert convert.merge_into(_abstract(num_classes=10, aux_logits=True), flat) == []


@pytest.mark.slow  # torch subprocess; the forward reuses the compile of the torchvision test
def test_parity_with_timm_safetensors(tmp_path):
  from safetensors.numpy import load_file

  st = tmp_path / "timm.safetensors"
  ref = _reference(tmp_path, "timm", "--save_safetensors", str(st))
  model = _abstract(num_classes=10)
  convert.merge_into(model, convert.torch_to_flat(load_file(st), maps.TIMM_RULES))
  # timm initialises every conv with std 0.1 (torchvision with init_weights=False does not), so
  # with random weights its logits reach ~1e8 and only a relative bound is meaningful: fp32 gives
  # ~2e-6. The absolute 1e-4 check on this same architecture is the torchvision test.
  scale = float(np.max(np.abs(ref["logits"])))
  assert _max_abs_err(model, ref) <= 1e-5 * max(1.0, scale)
