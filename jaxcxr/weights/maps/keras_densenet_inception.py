"""Name maps for Keras's ImageNet DenseNet121 and InceptionV3 ``.h5`` weights.

Chest X-ray studies often fine-tune ``tf.keras.applications.DenseNet121`` (Huang et al., 2017,
"Densely Connected Convolutional Networks") or ``InceptionV3`` (Szegedy et al., 2016,
"Rethinking the Inception Architecture for Computer Vision") from Keras's ImageNet weights. These
functions turn such a file, read by :func:`jaxcxr.weights.readers.read_keras_h5`
(``{'layer/weight': array}``, Keras layouts), into ``{dotted NNX path: array in torch layout}``
for :func:`jaxcxr.weights.convert.merge_into`::

    sd = readers.read_keras_h5('densenet121_weights_tf_dim_ordering_tf_kernels.h5')
    convert.merge_into(create('densenet121', num_classes=1000), keras_densenet121_state_dict(sd))

Both accept the classic layout of the downloaded files and Keras 3's ``.weights.h5``.

DenseNet121 (``densenet121``; Keras names its layers, older files with ``/`` where newer ones have
``_``: ``conv1/conv`` == ``conv1_conv``). With ``B`` the Keras block number (2..5), ``i = B - 1``
and ``L`` the layer number:

==============================  ===================================================
Keras layer                     NNX module
==============================  ===================================================
``conv1_conv``, ``conv1_bn``    ``features.conv0``, ``features.norm0``
``convB_blockL_0_bn``           ``features.denseblock{i}.denselayer{L}.norm1``
``convB_blockL_1_conv``         ``features.denseblock{i}.denselayer{L}.conv1``
``convB_blockL_1_bn``           ``features.denseblock{i}.denselayer{L}.norm2``
``convB_blockL_2_conv``         ``features.denseblock{i}.denselayer{L}.conv2``
``poolB_bn``, ``poolB_conv``    ``features.transition{i}.norm``, ``.conv``
``bn``                          ``features.norm5``
``predictions``                 ``head.fc``
==============================  ===================================================

Keras uses the same structure as torchvision (zero padding 3 + 7x7/2 valid conv; zero padding 1
+ 3x3/2 max pool, which after the ReLU equals torch's implicit -inf padding), but batch-norm eps
1.001e-5 instead of 1e-5: ``densenet121(bn_eps=1.001e-5)`` reproduces Keras to float precision,
plain ``densenet121`` to within about 1e-8 relative to each channel's variance.

InceptionV3 (``inception_v3_keras``: Keras's branch pools leave the padding out of the average).
Keras names its layers by creation order only (``conv2d``, ``conv2d_1`` ... in tf.keras and
Keras 3; ``conv2d_1`` ... ``conv2d_94`` in the Keras 2.0 files), so the map sorts the 94
``conv2d*`` and the 94 ``batch_normalization*`` layers by their number and pairs them, in order,
with :data:`INCEPTION_V3_LAYERS`: torchvision's module names in the order Keras creates them
(``keras/src/applications/inception_v3.py``). Its batch norms have no gamma (``scale=False``),
so ``.bn.scale`` is filled with ones; eps 1e-3 as in jaxcxr. ``predictions`` -> ``head.fc``.

Variables: ``kernel`` -> ``kernel`` (HWIO -> OIHW, ``(in, out)`` -> ``(out, in)``), ``bias``,
``gamma`` -> ``scale``, ``beta`` -> ``bias``, ``moving_mean`` -> ``mean``, ``moving_variance``
-> ``var``. A file without ``predictions`` (``*_notop.h5``) maps no classifier.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

# Imported for its side effect: torchvision's DenseNet weights register first, so they stay the
# default of a bare `get_pretrained_cfg('densenet121')` whichever map module is imported first.
from jaxcxr.weights.maps import densenet as _densenet  # noqa: F401
from jaxcxr.weights.pretrained import TF_MEAN, TF_STD, PretrainedCfg, register_pretrained

__all__ = [
  "INCEPTION_V3_LAYERS",
  "keras_densenet121_state_dict",
  "keras_inception_v3_state_dict",
]

_VARS = {
  "kernel": "kernel",
  "bias": "bias",
  "gamma": "scale",
  "beta": "bias",
  "moving_mean": "mean",
  "moving_variance": "var",
}

_DENSENET_LAYERS: tuple[tuple[str, str], ...] = (
  (r"^conv1_conv$", "features.conv0"),
  (r"^conv1_bn$", "features.norm0"),
  (r"^conv(\d)_block(\d+)_0_bn$", r"features.denseblock{B}.denselayer\2.norm1"),
  (r"^conv(\d)_block(\d+)_1_conv$", r"features.denseblock{B}.denselayer\2.conv1"),
  (r"^conv(\d)_block(\d+)_1_bn$", r"features.denseblock{B}.denselayer\2.norm2"),
  (r"^conv(\d)_block(\d+)_2_conv$", r"features.denseblock{B}.denselayer\2.conv2"),
  (r"^pool(\d)_bn$", "features.transition{B}.norm"),
  (r"^pool(\d)_conv$", "features.transition{B}.conv"),
  (r"^bn$", "features.norm5"),
  (r"^predictions$", "head.fc"),
)


def _inception_block(prefix: str, names: str) -> tuple[str, ...]:
  return tuple(f"{prefix}.{n}" for n in names.split())


_A = "branch1x1 branch5x5_1 branch5x5_2 branch3x3dbl_1 branch3x3dbl_2 branch3x3dbl_3 branch_pool"
_B = "branch3x3 branch3x3dbl_1 branch3x3dbl_2 branch3x3dbl_3"
_C = (
  "branch1x1 branch7x7_1 branch7x7_2 branch7x7_3 branch7x7dbl_1 branch7x7dbl_2 branch7x7dbl_3 "
  "branch7x7dbl_4 branch7x7dbl_5 branch_pool"
)
_D = "branch3x3_1 branch3x3_2 branch7x7x3_1 branch7x7x3_2 branch7x7x3_3 branch7x7x3_4"
_E = (
  "branch1x1 branch3x3_1 branch3x3_2a branch3x3_2b branch3x3dbl_1 branch3x3dbl_2 "
  "branch3x3dbl_3a branch3x3dbl_3b branch_pool"
)

# torchvision's BasicConv2d names in the order Keras's InceptionV3 creates its conv2d_bn layers
# (Keras's mixed0..mixed10 are torchvision's Mixed_5b..Mixed_7c).
INCEPTION_V3_LAYERS: tuple[str, ...] = (
  ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3")
  + sum((_inception_block(f"Mixed_5{b}", _A) for b in "bcd"), ())
  + _inception_block("Mixed_6a", _B)
  + sum((_inception_block(f"Mixed_6{b}", _C) for b in "bcde"), ())
  + _inception_block("Mixed_7a", _D)
  + sum((_inception_block(f"Mixed_7{b}", _E) for b in "bc"), ())
)


def _to_torch_layout(array: np.ndarray) -> np.ndarray:
  """Keras layout -> torch layout (what `merge_into` expects)."""
  array = np.asarray(array)
  if array.ndim == 4:
    return array.transpose(3, 2, 0, 1)  # HWIO -> OIHW
  if array.ndim == 2:
    return array.T  # (in, out) -> (out, in)
  return array


def _by_layer(h5_dict: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
  """`{'conv1/conv/kernel': a}` -> `{'conv1_conv': {'kernel': a}}`, in the file's order."""
  layers: dict[str, dict[str, np.ndarray]] = {}
  for key, value in h5_dict.items():
    if "/" not in key:
      raise ValueError(f"Keras weights: expected 'layer/weight' keys, got {key!r}.")
    layer, var = key.rsplit("/", 1)
    layers.setdefault(layer.replace("/", "_"), {})[var] = value
  return layers


def _variables(module: str, weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  out = {}
  for var, value in weights.items():
    if var not in _VARS:
      raise ValueError(f"Keras weights: unknown variable {var!r} of the layer mapped to {module}.")
    out[f"{module}.{_VARS[var]}"] = _to_torch_layout(value)
  return out


def keras_densenet121_state_dict(h5_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Keras ``DenseNet121`` weights -> ``{dotted NNX path: array in torch layout}``.

  Args:
    h5_dict: :func:`~jaxcxr.weights.readers.read_keras_h5` of a Keras DenseNet121 file.

  Raises:
    ValueError: a layer or variable the map does not know.
  """
  out: dict[str, np.ndarray] = {}
  for layer, weights in _by_layer(h5_dict).items():
    for pattern, target in _DENSENET_LAYERS:
      m = re.match(pattern, layer)
      if m:
        # Keras numbers the blocks from 2 (conv1 is the stem); torchvision from 1.
        block = str(int(m.group(1)) - 1) if m.groups() else ""
        out.update(_variables(m.expand(target.replace("{B}", block)), weights))
        break
    else:
      raise ValueError(f"Keras DenseNet121 weights: unknown layer {layer!r}.")
  return out


def _numbered(layers: Mapping[str, object], base: str) -> list[str]:
  """Layers named `base`, `base_1`, `base_2` ... sorted by number (creation order)."""
  pattern = re.compile(rf"^{base}(?:_(\d+))?$")
  found = [(int(m.group(1) or 0), name) for name in layers if (m := pattern.match(name))]
  return [name for _, name in sorted(found)]


def _bn_weights(layer: str, weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """A gamma-less batch norm's (beta, moving mean, moving variance), with scale = ones."""
  if set(weights) == {"gamma", "beta", "moving_mean"}:
    # Keras 3 `.weights.h5` stores variables by index; `read_keras_h5` names them after a BN with
    # a gamma, so a `scale=False` BN's (beta, mean, variance) arrive one name too early.
    shift = {"gamma": "beta", "beta": "moving_mean", "moving_mean": "moving_variance"}
    weights = {shift[k]: v for k, v in weights.items()}
  if set(weights) != {"beta", "moving_mean", "moving_variance"}:
    raise ValueError(
      f"Keras InceptionV3 weights: batch norm {layer!r} has {sorted(weights)}, expected beta, "
      "moving_mean and moving_variance (scale=False)."
    )
  return {**weights, "gamma": np.ones_like(weights["beta"])}


def keras_inception_v3_state_dict(h5_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Keras ``InceptionV3`` weights -> ``{dotted NNX path: array in torch layout}``.

  Load the result into ``inception_v3_keras`` (or ``inception_v3``, whose border averages in the
  branch pools then differ from Keras's).

  Args:
    h5_dict: :func:`~jaxcxr.weights.readers.read_keras_h5` of a Keras InceptionV3 file.

  Raises:
    ValueError: not 94 conv and 94 batch-norm layers, or layers the map does not know.
  """
  layers = _by_layer(h5_dict)
  convs, bns = _numbered(layers, "conv2d"), _numbered(layers, "batch_normalization")
  n = len(INCEPTION_V3_LAYERS)
  if len(convs) != n or len(bns) != n:
    raise ValueError(
      f"Keras InceptionV3 weights: expected {n} conv2d and {n} batch_normalization layers, "
      f"found {len(convs)} and {len(bns)}."
    )
  out: dict[str, np.ndarray] = {}
  for module, conv, bn in zip(INCEPTION_V3_LAYERS, convs, bns, strict=True):
    out.update(_variables(f"{module}.conv", layers[conv]))
    out.update(_variables(f"{module}.bn", _bn_weights(bn, layers[bn])))
  rest = sorted(set(layers) - {*convs, *bns, "predictions"})
  if rest:
    raise ValueError(f"Keras InceptionV3 weights: unknown layers {rest}.")
  if "predictions" in layers:
    out.update(_variables("head.fc", layers["predictions"]))
  return out


_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications"

register_pretrained(
  PretrainedCfg(
    arch="densenet121",
    tag="keras_in1k",
    rules=keras_densenet121_state_dict,
    url=f"{_KERAS_APPS}/densenet/densenet121_weights_tf_dim_ordering_tf_kernels.h5",
    file_format="keras_h5",
    # keras.applications.densenet.preprocess_input is 'torch' mode: RGB in [0, 1], ImageNet
    # mean/std (the PretrainedCfg defaults).
    mode="torch",
    input_size=(3, 224, 224),
    first_conv="features.conv0",
    source="keras.applications.DenseNet121(weights='imagenet')",
    license="apache-2.0 (Keras Applications)",
  )
)
register_pretrained(
  PretrainedCfg(
    arch="inception_v3_keras",
    tag="keras_in1k",
    rules=keras_inception_v3_state_dict,
    url=f"{_KERAS_APPS}/inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
    file_format="keras_h5",
    # keras.applications.inception_v3.preprocess_input is 'tf' mode: RGB scaled to [-1, 1].
    mode="tf",
    mean=TF_MEAN,
    std=TF_STD,
    input_size=(3, 299, 299),
    first_conv="Conv2d_1a_3x3.conv",
    source="keras.applications.InceptionV3(weights='imagenet')",
    license="apache-2.0 (Keras Applications)",
  )
)
