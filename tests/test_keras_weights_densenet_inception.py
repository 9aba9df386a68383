"""Keras's DenseNet121 and InceptionV3 weights (``jaxcxr.weights.maps.keras_densenet_inception``).

Fast tests check the name maps on synthetic files. The parity tests build the Keras models with
randomised batch norms in a subprocess (``keras_reference_densenet_inception.py``: TensorFlow and
torch must not share the test process), save their weights in both ``.h5`` layouts, and load them
through ``load_pretrained`` (reader -> map -> ``merge_into``), the path a user's file takes.
"""

from __future__ import annotations

import functools
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcxr.models import create, inception, param_count
from jaxcxr.weights import convert, pretrained, readers
from jaxcxr.weights.maps import keras_densenet_inception as kmaps

HERE = pathlib.Path(__file__).parent

# Keras 3.15 `keras.applications.X(weights=None)` with the 1000-class head: DenseNet121 has
# 7,978,856 trainable weights (torchvision's count); InceptionV3 has 23,817,352, plus the 17,216
# batch-norm gammas it lacks (scale=False) that jaxcxr holds as ones = torchvision's 23,834,568.
KERAS_TRAINABLE = {"densenet121": 7_978_856, "inception_v3": 23_817_352}
INCEPTION_BN_CHANNELS = 17_216


def _abstract(name: str, **kwargs) -> nnx.Module:
  return nnx.eval_shape(lambda: create(name, **{"num_classes": 1000, **kwargs}))


@functools.cache
def _abstract_densenet121() -> nnx.Module:
  """Tracing DenseNet-121 takes seconds even abstractly; read-only tests share one."""
  return _abstract("densenet121")


def _paths(model: nnx.Module) -> set[str]:
  return {convert.path_str(p) for p, _ in nnx.to_flat_state(nnx.state(model))}


# --- Registry and model options ---------------------------------------------------------------


def test_registered_weights():
  dn = pretrained.get_pretrained_cfg("densenet121.keras_in1k")
  assert dn.mode == "torch" and dn.input_size == (3, 224, 224) and dn.file_format == "keras_h5"
  assert dn.url.endswith("/densenet121_weights_tf_dim_ordering_tf_kernels.h5")
  inc = pretrained.get_pretrained_cfg("inception_v3_keras.keras_in1k")
  assert inc.mode == "tf" and inc.mean == inc.std == (0.5, 0.5, 0.5)
  assert inc.input_size == (3, 299, 299)
  assert inc.url.endswith("/inception_v3_weights_tf_dim_ordering_tf_kernels.h5")
  # The torchvision weights stay the bare-name default.
  assert pretrained.get_pretrained_cfg("densenet121").tag != "keras_in1k"


def test_keras_branch_pool_excludes_padding():
  # Keras AveragePooling2D(3, 1, 'same') divides by the pixels inside: a constant stays constant.
  out = inception._avg_pool_3x3(jnp.ones((1, 4, 4, 1)), count_include_pad=False)
  np.testing.assert_allclose(out, 1.0, rtol=1e-6)
  keras_model = _abstract("inception_v3_tiny", pool_count_include_pad=False)
  assert not keras_model.Mixed_5b.count_include_pad and not keras_model.Mixed_7c.count_include_pad


@pytest.mark.slow  # abstract, but tracing both full networks takes ~10 s
def test_param_counts_match_keras():
  assert param_count(_abstract_densenet121()) == KERAS_TRAINABLE["densenet121"]
  assert param_count(_abstract("inception_v3_keras")) == (
    KERAS_TRAINABLE["inception_v3"] + INCEPTION_BN_CHANNELS
  )


# --- Name maps on synthetic files -------------------------------------------------------------


def _fake_inception_h5(start: int, keras3_bn_names: bool = False) -> dict[str, np.ndarray]:
  """An InceptionV3-shaped dict: conv2d_{start..}, each array filled with its layer's index."""
  out = {}
  for i in range(len(kmaps.INCEPTION_V3_LAYERS)):
    suffix = "" if start + i == 0 else f"_{start + i}"
    out[f"conv2d{suffix}/kernel"] = np.full((1, 1, 2, 3), i, np.float32)
    bn_names = (
      ("gamma", "beta", "moving_mean")
      if keras3_bn_names
      else ("beta", "moving_mean", "moving_variance")
    )
    for name, value in zip(bn_names, (i, i + 0.25, i + 0.5), strict=True):
      out[f"batch_normalization{suffix}/{name}"] = np.full((3,), value, np.float32)
  out["predictions/kernel"] = np.zeros((3, 5), np.float32)
  out["predictions/bias"] = np.zeros((5,), np.float32)
  return out


def test_inception_layer_list_covers_the_model():
  tiny = _paths(_abstract("inception_v3_tiny"))
  convs = {p.removesuffix(".conv.kernel") for p in tiny if p.endswith(".conv.kernel")}
  assert len(kmaps.INCEPTION_V3_LAYERS) == len(set(kmaps.INCEPTION_V3_LAYERS)) == 94
  assert set(kmaps.INCEPTION_V3_LAYERS) == convs


@pytest.mark.parametrize("start", [0, 1])  # tf.keras / Keras 3 names vs the Keras 2.0 files
@pytest.mark.parametrize("keras3_bn_names", [False, True])
def test_inception_map_pairs_layers_by_number(start, keras3_bn_names):
  h5 = _fake_inception_h5(start, keras3_bn_names)
  # Keras 3 files list layers alphabetically (conv2d_10 before conv2d_2): order must not matter.
  flat = kmaps.keras_inception_v3_state_dict(dict(sorted(h5.items())))
  layers = kmaps.INCEPTION_V3_LAYERS
  for i in (0, 2, 10, 93):
    assert flat[f"{layers[i]}.conv.kernel"].shape == (3, 2, 1, 1)  # OIHW
    assert flat[f"{layers[i]}.conv.kernel"][0, 0, 0, 0] == i
    np.testing.assert_array_equal(flat[f"{layers[i]}.bn.scale"], 1.0)
    np.testing.assert_array_equal(flat[f"{layers[i]}.bn.bias"], i)
    np.testing.assert_array_equal(flat[f"{layers[i]}.bn.mean"], i + 0.25)
    np.testing.assert_array_equal(flat[f"{layers[i]}.bn.var"], i + 0.5)
  assert flat["head.fc.kernel"].shape == (5, 3)
  assert len(flat) == 94 * 5 + 2


def test_inception_map_errors():
  h5 = _fake_inception_h5(0)
  with pytest.raises(ValueError, match="unknown layers"):
    kmaps.keras_inception_v3_state_dict({**h5, "dense/kernel": np.zeros((2, 2))})
  del h5["conv2d_5/kernel"]
  with pytest.raises(ValueError, match="found 93 and 94"):
    kmaps.keras_inception_v3_state_dict(h5)


@pytest.mark.parametrize("sep", ["_", "/"])  # Keras 3 / tf.keras names vs the 2017 files'
def test_densenet_map_names(sep):
  h5 = {
    f"conv1{sep}conv/kernel": np.zeros((7, 7, 3, 64)),
    f"conv1{sep}bn/moving_variance": np.zeros(64),
    "conv2_block1_0_bn/gamma": np.zeros(64),
    "conv3_block12_2_conv/kernel": np.zeros((3, 3, 128, 32)),
    "conv5_block16_1_bn/beta": np.zeros(128),
    "pool4_bn/moving_mean": np.zeros(1024),
    "pool2_conv/kernel": np.zeros((1, 1, 256, 128)),
    "bn/gamma": np.zeros(1024),
    "predictions/kernel": np.zeros((1024, 1000)),
  }
  flat = kmaps.keras_densenet121_state_dict(h5)
  assert {k: v.shape for k, v in flat.items()} == {
    "features.conv0.kernel": (64, 3, 7, 7),
    "features.norm0.var": (64,),
    "features.denseblock1.denselayer1.norm1.scale": (64,),
    "features.denseblock2.denselayer12.conv2.kernel": (32, 128, 3, 3),
    "features.denseblock4.denselayer16.norm2.bias": (128,),
    "features.transition3.norm.mean": (1024,),
    "features.transition1.conv.kernel": (128, 256, 1, 1),
    "features.norm5.scale": (1024,),
    "head.fc.kernel": (1000, 1024),
  }
  assert set(flat) <= _paths(_abstract_densenet121())
  with pytest.raises(ValueError, match="unknown layer 'fc1000'"):
    kmaps.keras_densenet121_state_dict({"fc1000/kernel": np.zeros((2, 2))})


# --- Parity with Keras ------------------------------------------------------------------------


def _keras_reference(arch: str, size: int, tmp: pathlib.Path) -> dict[str, np.ndarray]:
  proc = subprocess.run(
    [sys.executable, str(HERE / "keras_reference_densenet_inception.py"), arch, "--size", str(size),
     "--out", str(tmp / f"{arch}.npz"), "--save_weights", str(tmp / f"{arch}.weights.h5"),
     "--save_legacy_h5", str(tmp / f"{arch}.h5")],
    capture_output=True, text=True, timeout=600,
  )  # fmt: skip
  if proc.returncode == 3:
    pytest.skip(f"Keras unavailable: {proc.stderr.strip()}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return dict(np.load(tmp / f"{arch}.npz"))


@pytest.mark.slow  # Keras subprocess (~10 s) + one XLA:CPU compile of each model (~25 s)
@pytest.mark.parametrize(
  "keras_arch, arch, weights, size, kwargs",
  [
    ("densenet121", "densenet121", "densenet121.keras_in1k", 64, {"bn_eps": 1.001e-5}),
    ("inception_v3", "inception_v3_keras", "inception_v3_keras.keras_in1k", 75, {}),
  ],
)
def test_parity_with_keras(tmp_path, keras_arch, arch, weights, size, kwargs):
  ref = _keras_reference(keras_arch, size, tmp_path)
  # Both file layouts map to the same tensors (Keras 3's lists layers in another order).
  classic = readers.read_checkpoint(tmp_path / f"{keras_arch}.h5")
  keras3 = readers.read_checkpoint(tmp_path / f"{keras_arch}.weights.h5")
  map_fn = pretrained.get_pretrained_cfg(weights).rules
  a, b = map_fn(classic), map_fn(keras3)
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)

  model = create(arch, num_classes=10, rngs=nnx.Rngs(jax.random.key(0, impl="rbg")), **kwargs)
  expected_params = int(ref["num_trainable"])
  if keras_arch == "inception_v3":
    expected_params += INCEPTION_BN_CHANNELS  # the gammas Keras does not have
  assert param_count(model) == expected_params
  report = pretrained.load_pretrained(model, tmp_path / f"{keras_arch}.h5", arch=weights)
  assert report.kept == ()
  got = np.asarray(nnx.jit(lambda m, x: m(x))(model, jnp.asarray(ref["x"])))
  err = float(np.max(np.abs(got - ref["logits"])))
  assert err <= 1e-4, (err, float(np.max(np.abs(ref["logits"]))))
