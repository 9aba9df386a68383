"""Name map for Inception-v3 checkpoints (Szegedy et al., 2016, "Rethinking the Inception
Architecture for Computer Vision"), torchvision's ``inception_v3`` and timm's ``inception_v3``.

timm's ``inception_v3`` uses exactly torchvision's module names (checked: the two state dicts
have the same keys), so one map serves both. Used with :mod:`jaxcxr.weights.convert`::

    flat = convert.torch_to_flat(state_dict, TORCHVISION_RULES)
    convert.merge_into(model, flat, dont_load=DONT_LOAD_AUX, first_conv="Conv2d_1a_3x3.conv")

=====================================  ======================================  ===============
torch key                              NNX path                                transform
=====================================  ======================================  ===============
``<layer>.conv.weight``                ``<layer>.conv.kernel``                 OIHW -> HWIO
``<layer>.bn.{weight,bias}``           ``<layer>.bn.{scale,bias}``             --
``<layer>.bn.running_{mean,var}``      ``<layer>.bn.{mean,var}``               --
``AuxLogits.fc.weight``                ``AuxLogits.fc.kernel``                 transpose
``fc.weight``                          ``head.fc.kernel``                      transpose
``fc.bias``                            ``head.fc.bias``                        --
=====================================  ======================================  ===============

``<layer>`` is any BasicConv2d by its torchvision name (``Conv2d_1a_3x3``,
``Mixed_6b.branch7x7dbl_3``, ``AuxLogits.conv0`` ...); ``num_batches_tracked`` is dropped. The
only rename is ``fc`` -> ``head.fc``; every other rename (``weight`` -> ``kernel``/``scale``,
running statistics) is :mod:`jaxcxr.weights.convert`'s generic one.

The auxiliary classifier: torchvision's ImageNet checkpoint (and timm's ``tv_in1k`` copy of it)
holds ``AuxLogits.*`` tensors, but jaxcxr builds ``AuxLogits`` only with ``aux_logits=True``.
For the default model pass ``dont_load=DONT_LOAD_AUX`` so those tensors are dropped (otherwise
``merge_into`` reports them as unexpected); with ``aux_logits=True`` load them all. To replace the
classifiers for a new task, add ``r"^head\\.fc\\."`` (and ``r"^AuxLogits\\.fc\\."``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from jaxcxr.weights.convert import Rule, torch_to_flat
from jaxcxr.weights.pretrained import TF_MEAN, TF_STD, PretrainedCfg, register_pretrained

TORCHVISION_RULES: tuple[Rule, ...] = ((r"^fc\.", "head.fc."),)
TIMM_RULES: tuple[Rule, ...] = TORCHVISION_RULES

# dont_load regex that drops the checkpoint's auxiliary classifier (model built without it).
DONT_LOAD_AUX: tuple[str, ...] = (r"^AuxLogits\.",)


# --- Pretrained weights (`jaxcxr.weights.pretrained.list_pretrained('inception_v3.*')`) --------


def _without_aux(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The flat NNX dict without the auxiliary classifier, for the default model (no AuxLogits).

  A model built with ``aux_logits=True`` loads the auxiliary classifier from the file with
  ``convert.merge_into(model, convert.torch_to_flat(sd, TORCHVISION_RULES))`` instead.
  """
  flat = torch_to_flat(state_dict, TORCHVISION_RULES)
  return {k: v for k, v in flat.items() if not k.startswith("AuxLogits.")}


# torchvision's transform: resize 342 -> crop 299, bilinear. Its Inception3 re-normalises the
# ImageNet-normalised input to [-1, 1] (transform_input=True), so the weights see 'tf' inputs.
register_pretrained(
  PretrainedCfg(
    arch="inception_v3",
    tag="tv_in1k",
    rules=_without_aux,
    url="https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
    mean=TF_MEAN,
    std=TF_STD,
    mode="tf",
    input_size=(3, 299, 299),
    crop_pct=299 / 342,
    first_conv="Conv2d_1a_3x3.conv",
    classifier="head.fc",
    source="torchvision Inception_V3_Weights.IMAGENET1K_V1 (ported from TensorFlow)",
    license="bsd-3-clause",
  )
)
