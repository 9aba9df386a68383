"""Name map for DenseNet checkpoints (Huang et al., 2017, "Densely Connected Convolutional
Networks"): torchvision's ``densenet121``/``169``/``201`` and CheXNet (Rajpurkar et al., 2017,
"CheXNet: Radiologist-Level Pneumonia Detection on Chest X-Rays with Deep Learning").

:class:`jaxcxr.models.densenet.DenseNet` keeps torchvision's attribute names, so the map is the
identity except for the classifier and the dense-layer names of old checkpoints. Used as::

    flat = convert.torch_to_flat(state_dict, TORCHVISION_RULES)
    convert.merge_into(model, flat, first_conv="features.conv0", dont_load=(r"^head\\.fc\\.",))

Abbreviating ``L = features.denseblockI.denselayerJ`` and ``T = features.transitionI``:

=================================  =================================  ============
torchvision key                    NNX path                           transform
=================================  =================================  ============
``features.conv0.weight``          ``features.conv0.kernel``          OIHW -> HWIO
``features.norm0.{weight,bias}``   ``features.norm0.{scale,bias}``    --
``features.norm0.running_mean``    ``features.norm0.mean``            --
``features.norm0.running_var``     ``features.norm0.var``             --
``L.conv{1,2}.weight``             ``L.conv{1,2}.kernel``             OIHW -> HWIO
``L.conv.{1,2}.weight`` (old)      ``L.conv{1,2}.kernel``             OIHW -> HWIO
``L.norm{1,2}.*``                  ``L.norm{1,2}.*``                  as ``norm0``
``L.norm.{1,2}.*`` (old)           ``L.norm{1,2}.*``                  as ``norm0``
``T.conv.weight``                  ``T.conv.kernel``                  OIHW -> HWIO
``T.norm.*``                       ``T.norm.*``                       as ``norm0``
``features.norm5.*``               ``features.norm5.*``               as ``norm0``
``classifier.weight``              ``head.fc.kernel``                 transpose
``classifier.bias``                ``head.fc.bias``                   --
=================================  =================================  ============

``num_batches_tracked`` is dropped. Old torchvision modules named the dense-layer submodules
``norm.1``, ``relu.1``, ``conv.1``, ``norm.2``, ``conv.2``; the ImageNet files torchvision still
downloads and CheXNet's ``model.pth.tar`` keep those keys (torchvision renames them in
``_load_state_dict``), so the first rule does the same.

CheXNet checkpoints need more than renaming; :func:`chexnet_state_dict` turns one into a
torchvision state dict for the rules above. Registered: ``densenet121.chexnet`` (arnoweng's
``model.pth.tar``, a state dict) and ``densenet121.chexnet_jrzech`` (jrzech/reproduce-chexnet's
``checkpoint``, a whole pickled model, which :mod:`jaxcxr.weights.readers` reads as its state
dict; its classes are listed in :mod:`jaxcxr.weights.torch_modules`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxcxr.constants import CHESTXRAY14_FINDINGS
from jaxcxr.weights.convert import Rule, torch_to_flat
from jaxcxr.weights.pretrained import PretrainedCfg, register_pretrained

__all__ = ["CHEXNET_CLASSES", "TORCHVISION_RULES", "chexnet_state_dict"]

# Old dense-layer names: `denselayer1.norm.1.weight` -> `denselayer1.norm1.weight`.
_OLD_DENSE_LAYER_NAMES: Rule = (r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.", r"\1\2.")

TORCHVISION_RULES: tuple[Rule, ...] = (
  _OLD_DENSE_LAYER_NAMES,
  (r"^classifier\.", "head.fc."),
)

# The 14 ChestX-ray14 findings (Wang et al., 2017) in the order of CheXNet's 14 outputs.
CHEXNET_CLASSES: tuple[str, ...] = CHESTXRAY14_FINDINGS


def chexnet_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """A CheXNet training checkpoint as a torchvision DenseNet-121 state dict of numpy arrays.

  The public CheXNet reproductions (e.g. arnoweng/CheXNet's ``model.pth.tar``) save
  ``{'epoch': ..., 'state_dict': ..., 'best_loss': ..., 'optimizer': ...}`` from a model wrapped
  in ``nn.DataParallel`` (every key starts with ``module.``), whose torchvision DenseNet-121 sits
  in a ``densenet121`` attribute, has the old dense-layer names (``norm.1``) and a classifier
  ``nn.Sequential(nn.Linear(1024, 14), nn.Sigmoid())``. This undoes all of that, so that::

      sd = chexnet_state_dict(checkpoint)
      convert.merge_into(model, convert.torch_to_flat(sd, TORCHVISION_RULES))

  loads it into ``create('densenet121', num_classes=14)``. The model returns logits; apply
  ``jax.nn.sigmoid`` for CheXNet's probabilities, in the order of :data:`CHEXNET_CLASSES`.

  Args:
    checkpoint: the loaded file (e.g. ``jaxcxr.weights.readers.read_checkpoint(path)`` or
      ``torch.load(path)``), or its ``state_dict`` entry. Values may be numpy arrays or tensors.

  Returns:
    ``{torchvision key: numpy array}`` with ``classifier.{weight,bias}`` (14 outputs).

  Raises:
    ValueError: the checkpoint holds no state dict, or it lacks ``classifier.0.weight``.
  """
  sd = checkpoint.get("state_dict", checkpoint)
  if not isinstance(sd, Mapping) or not any(isinstance(k, str) and "." in k for k in sd):
    raise ValueError(
      "CheXNet checkpoint: expected a state dict or a mapping with one under 'state_dict'; "
      f"got top-level keys {list(checkpoint)[:10]}."
    )
  out: dict[str, np.ndarray] = {}
  for key, value in sd.items():
    key = re.sub(r"^module\.", "", key)
    # arnoweng's DenseNet121 wrapper holds torchvision's model as `self.densenet121`.
    key = re.sub(r"^densenet121\.", "", key)
    key = re.sub(*_OLD_DENSE_LAYER_NAMES, key)
    # Sequential(Linear, Sigmoid): the Linear is index 0; the sigmoid is applied by the caller.
    key = re.sub(r"^classifier\.0\.", "classifier.", key)
    out[key] = np.asarray(value)
  if "classifier.weight" not in out:
    raise ValueError(
      "CheXNet checkpoint: no 'classifier.0.weight' (the Linear of the "
      f"Sequential(Linear, Sigmoid) head); keys end with {list(sd)[-4:]}."
    )
  return out


# --- Pretrained weights (`jaxcxr.weights.pretrained.list_pretrained('densenet*')`) --------------


def _chexnet_flat(checkpoint: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """A CheXNet checkpoint as a flat NNX dict (the registry's `rules` callable)."""
  return torch_to_flat(chexnet_state_dict(checkpoint), TORCHVISION_RULES)


def _tv(arch: str, file: str, weights: str) -> PretrainedCfg:
  # torchvision's ImageClassification transform: resize 256, crop 224, bilinear.
  return PretrainedCfg(
    arch=arch,
    tag="tv_in1k",
    rules=TORCHVISION_RULES,
    url=f"https://download.pytorch.org/models/{file}",
    first_conv="features.conv0",
    source=f"torchvision {weights} (ported from LuaTorch)",
    license="bsd-3-clause",
  )


for _cfg in (
  _tv("densenet121", "densenet121-a639ec97.pth", "DenseNet121_Weights.IMAGENET1K_V1"),
  _tv("densenet169", "densenet169-b2777c0a.pth", "DenseNet169_Weights.IMAGENET1K_V1"),
  _tv("densenet201", "densenet201-c1103571.pth", "DenseNet201_Weights.IMAGENET1K_V1"),
  # timm's DenseNet-121 has torchvision's keys (checked: the 727 keys and shapes are equal).
  PretrainedCfg(
    arch="densenet121",
    tag="ra_in1k",
    rules=TORCHVISION_RULES,
    hf_hub_id="timm/densenet121.ra_in1k",
    filename="model.safetensors",
    file_format="safetensors",
    interpolation="bicubic",
    first_conv="features.conv0",
    source="timm densenet121.ra_in1k (RandAugment recipe)",
    license="apache-2.0",
  ),
  # arnoweng/CheXNet evaluates with resize 256 and ten 224 crops, ImageNet mean/std.
  PretrainedCfg(
    arch="densenet121",
    tag="chexnet",
    rules=_chexnet_flat,
    url="https://github.com/arnoweng/CheXNet/raw/master/model.pth.tar",
    first_conv="features.conv0",
    num_classes=len(CHEXNET_CLASSES),
    source="arnoweng/CheXNet model.pth.tar (ChestX-ray14, 14 findings: CHEXNET_CLASSES)",
    license="no licence stated; research use",
  ),
  # jrzech/reproduce-chexnet (Zech 2018; retrained 2022 with current torchvision names), the
  # CheXNet Bassi & Attux fine-tune: `{'model': <whole pickled DenseNet-121>, 'best_loss',
  # 'epoch', 'rng_state', 'LR'}`, read without torch by `readers` (`torch_modules`). The 2018
  # original is `pretrained-old/checkpoint` in the same repository (legacy format, same rules).
  PretrainedCfg(
    arch="densenet121",
    tag="chexnet_jrzech",
    rules=_chexnet_flat,
    url="https://github.com/jrzech/reproduce-chexnet/raw/master/pretrained/checkpoint",
    first_conv="features.conv0",
    num_classes=len(CHEXNET_CLASSES),
    source="jrzech/reproduce-chexnet pretrained/checkpoint (ChestX-ray14: CHEXNET_CLASSES)",
    license="see the repository's LICENSE",
  ),
):
  register_pretrained(_cfg)
