"""Name maps for Keras ImageNet weights: ``keras.applications.ResNet50`` and ``VGG19``.

ResNet-50: He, Zhang, Ren and Sun, 2016, "Deep Residual Learning for Image Recognition". VGG-19:
Simonyan and Zisserman, 2015, "Very Deep Convolutional Networks for Large-Scale Image
Recognition". Two of the chest X-ray studies fine-tuned these Keras models, starting from the
files ``keras.applications`` downloads (``*_weights_tf_dim_ordering_tf_kernels.h5``).

Keras' ResNet50 is the paper's v1 (stride in the first 1x1 conv of a stage, convs with biases, BN
epsilon 1.001e-5), so it loads into ``resnet50_keras``, not torchvision's v1.5 ``resnet50``; its
VGG19 is torchvision's ``vgg19`` layer for layer. Both maps are functions
``{'layer/variable': array}`` (:func:`jaxcxr.weights.readers.read_keras_h5`) -> ``{dotted NNX
path: array in torch layout}``, the contract of :func:`jaxcxr.weights.convert.merge_into`, which
then converts layouts, adapts the first conv to ``in_chans`` and fails loudly on any mismatch.

ResNet50 (stage ``s`` = 2..5, block ``b`` = 1.., ``k`` = 1..3; ``k = 0`` is the projection
shortcut of a stage's first block):

================================  ======================================  ======================
Keras layer                       NNX path                                transform
================================  ======================================  ======================
``conv1_conv``                    ``conv1``                               HWIO -> OIHW
``conv1_bn``                      ``bn1``                                 see below
``conv{s}_block{b}_{k}_conv``     ``layer{s-1}.{b-1}.conv{k}``            HWIO -> OIHW
``conv{s}_block{b}_{k}_bn``       ``layer{s-1}.{b-1}.bn{k}``              see below
``conv{s}_block1_0_conv``         ``layer{s-1}.0.downsample.0``           HWIO -> OIHW
``conv{s}_block1_0_bn``           ``layer{s-1}.0.downsample.1``           see below
``predictions`` (or ``probs``)    ``head.fc``                             (in, out) -> (out, in)
================================  ======================================  ======================

VGG19 (``c`` = 1..4 convs per block; ``block1``/``block2`` have 2):

================================  ======================================  ======================
Keras layer                       NNX path                                transform
================================  ======================================  ======================
``block{b}_conv{c}``              ``features.{i}`` (torchvision index)    HWIO -> OIHW
``fc1``                           ``classifier.0``                        rows (H, W, C) ->
                                                                          (C, H, W), then
                                                                          (in, out) -> (out, in)
``fc2``                           ``classifier.3``                        (in, out) -> (out, in)
``predictions``                   ``classifier.6``                        (in, out) -> (out, in)
================================  ======================================  ======================

Each conv/dense layer gives ``.kernel`` and ``.bias``; each batch norm ``gamma, beta,
moving_mean, moving_variance`` -> ``.scale, .bias, .mean, .var``. A layer's variables are taken by
position (Keras writes them in build order in every file layout), because the names inside old
files vary (the Keras-1-era VGG files call them ``block1_conv1_W_1:0``). Keras' ``Flatten``
flattens NHWC in (H, W, C) order, while :class:`jaxcxr.models.vgg.VGG` flattens in torch's
(C, H, W) order: fc1's input rows are permuted to match. A layer the map does not know is an
error, never silently dropped.

The weights expect Keras' ``preprocess_input`` in 'caffe' mode: BGR channel order, 0-255 pixels
minus the BGR ImageNet mean, no scaling. For 1-channel X-rays the summed first-conv kernel makes
the channel order irrelevant.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import numpy as np

from jaxcxr.weights.pretrained import CAFFE_MEAN, PretrainedCfg, register_pretrained

__all__ = ["keras_resnet50_state_dict", "keras_vgg19_state_dict"]

_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications"

# VGG19's torchvision `features` index of each Keras conv: every conv occupies two slots (conv,
# ReLU) and every block ends in a max-pool slot.
_VGG19_FEATURES = {
  "block1_conv1": 0, "block1_conv2": 2,
  "block2_conv1": 5, "block2_conv2": 7,
  "block3_conv1": 10, "block3_conv2": 12, "block3_conv3": 14, "block3_conv4": 16,
  "block4_conv1": 19, "block4_conv2": 21, "block4_conv3": 23, "block4_conv4": 25,
  "block5_conv1": 28, "block5_conv2": 30, "block5_conv3": 32, "block5_conv4": 34,
}  # fmt: skip
_VGG19_CHANNELS = 512  # channels of the last conv block, the rows of fc1 are 7 * 7 * 512


def _layers(h5_dict: Mapping[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
  """Groups `{'layer/variable': array}` by layer, keeping each layer's variables in file order."""
  out: dict[str, list[np.ndarray]] = {}
  for key, value in h5_dict.items():
    out.setdefault(key.split("/", 1)[0], []).append(np.asarray(value))
  return out


def _conv(path: str, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
  kernel, *bias = arrays
  if kernel.ndim != 4 or len(bias) > 1:
    raise ValueError(f"{path}: expected a 4-d conv kernel and a bias, got {_shapes(arrays)}.")
  out = {f"{path}.kernel": kernel.transpose(3, 2, 0, 1)}  # HWIO -> OIHW
  if bias:
    out[f"{path}.bias"] = bias[0]
  return out


def _dense(path: str, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
  if len(arrays) != 2 or arrays[0].ndim != 2:
    raise ValueError(f"{path}: expected a dense kernel and bias, got {_shapes(arrays)}.")
  kernel, bias = arrays
  return {f"{path}.kernel": kernel.T, f"{path}.bias": bias}  # (in, out) -> (out, in)


def _bn(path: str, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
  if len(arrays) != 4:
    raise ValueError(
      f"{path}: expected gamma, beta, moving_mean, moving_variance, got {_shapes(arrays)}."
    )
  return dict(zip((f"{path}.{v}" for v in ("scale", "bias", "mean", "var")), arrays, strict=True))


def _shapes(arrays: list[np.ndarray]) -> list[tuple[int, ...]]:
  return [a.shape for a in arrays]


def _convert(
  h5_dict: Mapping[str, np.ndarray],
  target: Callable[[str], tuple[Callable, str] | None],
  model: str,
) -> dict[str, np.ndarray]:
  """Applies `target(layer) -> (converter, NNX path)` to every layer; unknown layers fail."""
  out: dict[str, np.ndarray] = {}
  unknown = []
  for layer, arrays in _layers(h5_dict).items():
    found = target(layer)
    if found is None:
      unknown.append(layer)
      continue
    convert, path = found
    out.update(convert(path, arrays))
  if unknown:
    raise ValueError(f"Layers unknown to the Keras {model} map: {unknown[:20]}.")
  return out


def _resnet50_target(layer: str) -> tuple[Callable, str] | None:
  if layer == "conv1_conv":
    return _conv, "conv1"
  if layer == "conv1_bn":
    return _bn, "bn1"
  # keras_applications' resnet_common.py, which wrote the downloadable file, named it `probs`.
  if layer in ("predictions", "probs"):
    return _dense, "head.fc"
  m = re.fullmatch(r"conv([2-5])_block(\d+)_([0-3])_(conv|bn)", layer)
  if m is None:
    return None
  stage, block, k, kind = int(m[1]) - 1, int(m[2]) - 1, int(m[3]), m[4]
  prefix = f"layer{stage}.{block}"
  if k == 0:  # the projection shortcut
    return (_conv, f"{prefix}.downsample.0") if kind == "conv" else (_bn, f"{prefix}.downsample.1")
  return (_conv, f"{prefix}.conv{k}") if kind == "conv" else (_bn, f"{prefix}.bn{k}")


def keras_resnet50_state_dict(h5_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Keras ``ResNet50`` weights -> ``{dotted NNX path of resnet50_keras: array, torch layout}``.

  Args:
    h5_dict: ``read_keras_h5`` of a Keras ResNet50 weights file (either layout; a ``_notop`` file
      simply has no ``head.fc``).
  """
  return _convert(h5_dict, _resnet50_target, "ResNet50")


def _fc1(path: str, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
  out = _dense(path, arrays)
  kernel = out[f"{path}.kernel"]  # (out, H * W * C), Keras' flatten order
  hw = kernel.shape[1] // _VGG19_CHANNELS
  side = round(hw**0.5)
  if side * side * _VGG19_CHANNELS != kernel.shape[1]:
    raise ValueError(f"{path}: fc1 has {kernel.shape[1]} inputs, not a square map x 512.")
  out[f"{path}.kernel"] = (
    kernel.reshape(-1, side, side, _VGG19_CHANNELS).transpose(0, 3, 1, 2).reshape(kernel.shape)
  )
  return out


def _vgg19_target(layer: str) -> tuple[Callable, str] | None:
  if layer in _VGG19_FEATURES:
    return _conv, f"features.{_VGG19_FEATURES[layer]}"
  return {
    "fc1": (_fc1, "classifier.0"),
    "fc2": (_dense, "classifier.3"),
    "predictions": (_dense, "classifier.6"),
  }.get(layer)


def keras_vgg19_state_dict(h5_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Keras ``VGG19`` weights -> ``{dotted NNX path of vgg19: array, torch layout}``.

  Args:
    h5_dict: ``read_keras_h5`` of a Keras VGG19 weights file built for 224 x 224 inputs (fc1
      expects the 7 x 7 x 512 map).
  """
  return _convert(h5_dict, _vgg19_target, "VGG19")


def _keras(arch: str, rules: Callable, file: str, source: str, license: str, **kw) -> PretrainedCfg:
  return PretrainedCfg(
    arch=arch,
    tag="keras_in1k",
    rules=rules,
    url=f"{_KERAS_APPS}/{file}",
    file_format="keras_h5",
    mean=CAFFE_MEAN,  # B, G, R, on the 0-255 scale
    std=(1.0, 1.0, 1.0),
    mode="caffe",
    source=source,
    license=license,
    **kw,
  )


for _cfg in (
  _keras(
    "resnet50_keras",
    keras_resnet50_state_dict,
    "resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5",
    "keras.applications.ResNet50(weights='imagenet'), ported from Kaiming He's Caffe model",
    "mit (see keras-applications)",
  ),
  _keras(
    "vgg19",
    keras_vgg19_state_dict,
    "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels.h5",
    "keras.applications.VGG19(weights='imagenet'), ported from Oxford VGG's Caffe model",
    "cc-by-4.0 (see keras-applications)",
    first_conv="features.0",
    classifier="classifier.6",
  ),
):
  register_pretrained(_cfg)
