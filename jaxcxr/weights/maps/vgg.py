"""Name map for VGG checkpoints (Simonyan and Zisserman, 2015, "Very Deep Convolutional Networks
for Large-Scale Image Recognition"): torchvision's ``vgg16``, ``vgg19``, ``vgg16_bn``, ``vgg19_bn``.

:class:`jaxcxr.models.vgg.VGG` keeps torchvision's ``nn.Sequential`` indices (ReLU, max-pool and
dropout occupy their slots as parameter-free layers), so no key is renamed: the generic rules of
:mod:`jaxcxr.weights.convert` (``weight`` -> ``kernel``/``scale``, running statistics) and its
layout conversion do everything. Used as::

    flat = convert.torch_to_flat(state_dict, TORCHVISION_RULES)
    convert.merge_into(model, flat, first_conv="features.0", dont_load=(r"^classifier\\.6\\.",))

=====================================  =====================================  ================
torchvision key                        NNX path                               transform
=====================================  =====================================  ================
``features.{i}.weight`` (conv)         ``features.{i}.kernel``                OIHW -> HWIO
``features.{i}.bias`` (conv)           ``features.{i}.bias``                  --
``features.{i}.{weight,bias}`` (bn)    ``features.{i}.{scale,bias}``          --
``features.{i}.running_{mean,var}``    ``features.{i}.{mean,var}``            --
``classifier.{0,3,6}.weight``          ``classifier.{0,3,6}.kernel``          transpose
``classifier.{0,3,6}.bias``            ``classifier.{0,3,6}.bias``            --
=====================================  =====================================  ================

``num_batches_tracked`` is dropped. ``classifier.0`` (fc6) is used as stored, rows in torch's
(C, 7, 7) flatten order: the model transposes its NHWC activations to NCHW before flattening. To
replace the classifier for a new task pass ``dont_load=(r"^classifier\\.6\\.",)``; with
``num_classes=0`` the model has no ``classifier.6`` and the same ``dont_load`` drops the
checkpoint's. (timm's ``vgg*`` hold fc6/fc7 as 7x7 and 1x1 convs under ``pre_logits``: not
mapped here; torchvision's checkpoints are the originals that timm's ``tv_in1k`` copy.)
"""

from __future__ import annotations

from jaxcxr.weights.convert import Rule
from jaxcxr.weights.pretrained import PretrainedCfg, register_pretrained

TORCHVISION_RULES: tuple[Rule, ...] = ()


# --- Pretrained weights (`jaxcxr.weights.pretrained.list_pretrained('vgg*')`) ------------------
# torchvision's originals; its ImageClassification transform: resize 256, crop 224, bilinear.
for _arch, _file, _weights in (
  ("vgg16", "vgg16-397923af.pth", "VGG16_Weights.IMAGENET1K_V1"),
  ("vgg16_bn", "vgg16_bn-6c64b313.pth", "VGG16_BN_Weights.IMAGENET1K_V1"),
  ("vgg19", "vgg19-dcbb9e9d.pth", "VGG19_Weights.IMAGENET1K_V1"),
  ("vgg19_bn", "vgg19_bn-c79401a0.pth", "VGG19_BN_Weights.IMAGENET1K_V1"),
):
  register_pretrained(
    PretrainedCfg(
      arch=_arch,
      tag="tv_in1k",
      rules=TORCHVISION_RULES,
      url=f"https://download.pytorch.org/models/{_file}",
      first_conv="features.0",
      classifier="classifier.6",
      source=f"torchvision {_weights}",
      license="bsd-3-clause",
    )
  )
