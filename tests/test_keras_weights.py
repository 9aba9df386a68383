"""Tests for the Keras ImageNet weight maps (``jaxcxr.weights.maps.keras``): ResNet50 and VGG19.

Parity: ``tests/keras_reference.py`` (a subprocess: TensorFlow stays out of this process) builds
``keras.applications.ResNet50`` / ``VGG19`` with random weights, random biases and batch-norm
statistics, saves them and their logits; here the files go through ``read_keras_h5`` -> the map
-> ``merge_into`` (and ``load_pretrained``), the path a downloaded Keras file takes.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from jaxcxr.models import create, param_count
from jaxcxr.weights import convert, pretrained, readers
from jaxcxr.weights.maps import keras as keras_map

HERE = pathlib.Path(__file__).parent

# sum(np.prod(w.shape) for w in keras.applications.<Model>(weights=None).trainable_weights),
# Keras 3.15.1, 1000 classes (the Keras reference run re-checks it).
KERAS_PARAMS = {"resnet50_keras": 25_583_592, "vgg19": 143_667_240}


def _rngs() -> nnx.Rngs:
  return nnx.Rngs(jax.random.key(0, impl="rbg"))


def _keras_reference(arch: str, size: int, out: pathlib.Path, *extra: str) -> dict:
  proc = subprocess.run(
    [sys.executable, str(HERE / "keras_reference.py"), arch, "--size", str(size)]
    + ["--out", str(out), *extra],
    capture_output=True,
    text=True,
  )
  if proc.returncode == 3:
    pytest.skip(f"keras unavailable: {proc.stderr.strip()[-300:]}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return dict(np.load(out / "ref.npz"))


def _assert_logits_close(got: np.ndarray, want: np.ndarray) -> None:
  # Random-init Keras logits are O(1) (max |logit| ~3 for ResNet50, ~0.6 for VGG19), so the
  # absolute 1e-4 bar is also a relative one.
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", sorted(KERAS_PARAMS))
def test_param_count_matches_keras(name):
  abstract = nnx.eval_shape(lambda: create(name, num_classes=1000))
  assert param_count(abstract) == KERAS_PARAMS[name]


def test_resnet50_keras_is_v1_with_biases():
  model = nnx.eval_shape(lambda: create("resnet50_keras", num_classes=1000))
  first = model.layer2[0]
  assert first.conv1.strides == (2, 2) and first.conv2.strides == (1, 1)
  assert first.conv1.bias is not None and model.conv1.bias is not None
  assert model.bn1.epsilon == pytest.approx(1.001e-5)
  # torchvision's resnet50 is untouched: stride on the 3x3 conv, no biases.
  tv = nnx.eval_shape(lambda: create("resnet50", num_classes=1000))
  assert tv.layer2[0].conv1.strides == (1, 1) and tv.layer2[0].conv2.strides == (2, 2)
  assert tv.conv1.bias is None and tv.bn1.epsilon == 1e-5


def test_stride_in_1x1_needs_bottleneck():
  with pytest.raises(ValueError, match="Bottleneck"):
    nnx.eval_shape(lambda: create("resnet18", num_classes=10, stride_in_1x1=True))


def test_registered_entries():
  for name, first_conv, classifier in (
    ("resnet50_keras.keras_in1k", "conv1", "head.fc"),
    ("vgg19.keras_in1k", "features.0", "classifier.6"),
  ):
    cfg = pretrained.get_pretrained_cfg(name)
    assert cfg.url.startswith("https://storage.googleapis.com/tensorflow/keras-applications/")
    assert cfg.url.endswith("_weights_tf_dim_ordering_tf_kernels.h5")
    assert cfg.file_format == "keras_h5" and cfg.mode == "caffe"
    assert cfg.mean == pretrained.CAFFE_MEAN and cfg.std == (1.0, 1.0, 1.0)
    assert (cfg.first_conv, cfg.classifier) == (first_conv, classifier)
    assert callable(cfg.rules) and cfg.license and cfg.source


def test_vgg19_fc1_rows_go_from_hwc_to_chw():
  # Keras' fc1 row (h, w, c) must become torch's input column c * 49 + h * 7 + w.
  rows = np.arange(7 * 7 * 512, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
  flat = keras_map.keras_vgg19_state_dict({"fc1/kernel": rows, "fc1/bias": np.zeros(2)})
  kernel = flat["classifier.0.kernel"]  # torch layout (out, in)
  h, w, c = 3, 5, 100
  assert kernel[0, c * 49 + h * 7 + w] == (h * 7 + w) * 512 + c


def test_resnet50_map_names_and_layouts():
  rng = np.random.default_rng(0)
  h5 = {
    "conv3_block1_0_conv/kernel": rng.standard_normal((1, 1, 256, 512)),
    "conv3_block1_0_conv/bias": rng.standard_normal(512),
    "conv4_block2_2_bn/gamma": np.full(256, 1.0),
    "conv4_block2_2_bn/beta": np.full(256, 2.0),
    "conv4_block2_2_bn/moving_mean": np.full(256, 3.0),
    "conv4_block2_2_bn/moving_variance": np.full(256, 4.0),
    # The downloadable file's classifier is named `probs` (keras_applications' resnet_common).
    "probs/kernel": rng.standard_normal((2048, 1000)),
    "probs/bias": rng.standard_normal(1000),
  }
  flat = keras_map.keras_resnet50_state_dict(h5)
  np.testing.assert_array_equal(
    flat["layer2.0.downsample.0.kernel"], h5["conv3_block1_0_conv/kernel"].transpose(3, 2, 0, 1)
  )
  assert flat["layer2.0.downsample.0.bias"] is h5["conv3_block1_0_conv/bias"]
  for leaf, value in (("scale", 1.0), ("bias", 2.0), ("mean", 3.0), ("var", 4.0)):
    assert flat[f"layer3.1.bn2.{leaf}"][0] == value
  np.testing.assert_array_equal(flat["head.fc.kernel"], h5["probs/kernel"].T)
  assert len(flat) == 8


def test_unknown_layer_fails_loudly():
  with pytest.raises(ValueError, match="unknown to the Keras ResNet50 map"):
    keras_map.keras_resnet50_state_dict({"conv6_block1_1_conv/kernel": np.zeros((1, 1, 2, 2))})
  with pytest.raises(ValueError, match="gamma, beta"):
    keras_map.keras_resnet50_state_dict({"conv1_bn/gamma": np.ones(4)})


@pytest.fixture(scope="module")
def resnet_ref(tmp_path_factory):
  out = tmp_path_factory.mktemp("keras_resnet50")
  # ResNet50 pools globally, so 64 px exercises every layer (incl. the head) at 1/12 the cost.
  return out, _keras_reference("resnet50", 64, out, "--classic")


@pytest.mark.slow  # Keras subprocess ~10 s, ResNet50 forwards on CPU
def test_resnet50_parity_with_keras(resnet_ref):
  out, ref = resnet_ref
  assert int(ref["num_params"]) == KERAS_PARAMS["resnet50_keras"]
  # Keras 3 `.weights.h5` through the reader, the map and merge_into.
  flat = keras_map.keras_resnet50_state_dict(readers.read_keras_h5(out / "model.weights.h5"))
  model = create("resnet50_keras", num_classes=1000, rngs=_rngs())
  convert.merge_into(model, flat, first_conv="conv1")
  _assert_logits_close(np.asarray(model(ref["x"])), ref["logits"])

  # The classic HDF5 layout of the downloadable files, through load_pretrained.
  model = create("resnet50_keras", num_classes=1000, rngs=_rngs())
  report = pretrained.load_pretrained(model, out / "model.h5", arch="resnet50_keras")
  assert report.kept == () and report.loaded == len(nnx.to_flat_state(nnx.state(model)))
  _assert_logits_close(np.asarray(model(ref["x"])), ref["logits"])


@pytest.mark.slow
def test_resnet50_keras_single_channel(resnet_ref):
  # Summing the (BGR) kernels is exact for a grey image whatever the channel order.
  out, ref = resnet_ref
  model = create("resnet50_keras", num_classes=1000, in_chans=1, rngs=_rngs())
  pretrained.load_pretrained(model, out / "model.weights.h5", arch="resnet50_keras.keras_in1k")
  assert model.conv1.kernel.shape == (7, 7, 1, 64)
  _assert_logits_close(np.asarray(model(ref["x_grey"])), ref["logits_grey"])


@pytest.mark.slow  # a 575 MB weights file and VGG19 forwards at 224 px on CPU: ~40 s
def test_vgg19_parity_with_keras(tmp_path):
  # Keras' VGG19 flattens a fixed 7 x 7 map into fc1: 224 px, the only size its fc1 fits.
  ref = _keras_reference("vgg19", 224, tmp_path)
  assert int(ref["num_params"]) == KERAS_PARAMS["vgg19"]
  h5 = readers.read_keras_h5(tmp_path / "model.weights.h5")
  flat = keras_map.keras_vgg19_state_dict(h5)

  # Keras-1-era files (the downloadable VGG weights) name variables `block1_conv1_W_1:0`: the
  # map takes them by position, so the names inside a layer do not matter.
  old_names = {f"{k.split('/')[0]}/{k.replace('/', '_')}_1": v for k, v in h5.items()}
  old_flat = keras_map.keras_vgg19_state_dict(old_names)
  assert old_flat.keys() == flat.keys()
  assert all(np.array_equal(old_flat[k], flat[k]) for k in flat)
  del h5, old_names, old_flat

  model = create("vgg19", num_classes=1000, rngs=_rngs())
  convert.merge_into(model, flat, first_conv="features.0")
  feats = model.forward_features(ref["x"])
  _assert_logits_close(np.asarray(model.forward_head(feats)), ref["logits"])

  # The fc1 row permutation is what makes this work: fc1 as Keras stores it gives other logits.
  keras_order = flat["classifier.0.kernel"].reshape(-1, 512, 7, 7).transpose(0, 2, 3, 1)
  model.classifier[0].kernel.set_value(keras_order.reshape(4096, -1).T)
  wrong = np.asarray(model.forward_head(feats))
  assert np.abs(wrong - ref["logits"]).max() > 1e-2
