"""Name map for ResNet checkpoints (He, Zhang, Ren and Sun, 2016, "Deep Residual Learning for
Image Recognition"): torchvision's ``resnet18/34/50/101/152`` and timm's ``resnet*`` weights.

:class:`jaxcxr.models.resnet.ResNet` keeps torchvision's attribute names, and timm's ``resnet18``
to ``resnet152`` use exactly the same state-dict keys as torchvision's (checked: the 320 keys of
``timm.create_model('resnet50').state_dict()`` equal those of ``torchvision.models.resnet50()``),
so one map serves both. The only rename is the classifier, which lives in the shared
:class:`~jaxcxr.models.heads.ClassifierHead`. Used as::

    flat = convert.torch_to_flat(state_dict, TORCHVISION_RULES)
    convert.merge_into(model, flat, first_conv="conv1", dont_load=(r"^head\\.fc\\.",))

==================================  =====================================  ================
torchvision / timm key              NNX path                               transform
==================================  =====================================  ================
``conv1.weight``                    ``conv1.kernel``                       OIHW -> HWIO
``bn1.{weight,bias}``               ``bn1.{scale,bias}``                   --
``bn1.running_{mean,var}``          ``bn1.{mean,var}``                     --
``layerL.i.convK.weight``           ``layerL.i.convK.kernel``              OIHW -> HWIO
``layerL.i.bnK.*``                  ``layerL.i.bnK.*``                     as ``bn1``
``layerL.i.downsample.0.weight``    ``layerL.i.downsample.0.kernel``       OIHW -> HWIO
``layerL.i.downsample.1.*``         ``layerL.i.downsample.1.*``            as ``bn1``
``fc.weight``                       ``head.fc.kernel``                     transpose
``fc.bias``                         ``head.fc.bias``                       --
==================================  =====================================  ================

``num_batches_tracked`` is dropped. ``weight`` -> ``kernel``/``scale`` and the running
statistics are the generic rules of :mod:`jaxcxr.weights.convert`.

The pretrained weights registered below (``jaxcxr.weights.pretrained.list_pretrained('resnet*')``)
are torchvision's originals (``tv_in1k``, and ``tv2_in1k``: the 2021 recipe, evaluated at resize
232 / crop 224) and timm's "ResNet strikes back" safetensors on the Hugging Face hub.
"""

from __future__ import annotations

from jaxcxr.weights.convert import Rule
from jaxcxr.weights.pretrained import PretrainedCfg, register_pretrained

TORCHVISION_RULES: tuple[Rule, ...] = ((r"^fc\.", "head.fc."),)
# timm's ResNets share torchvision's keys (see above).
TIMM_RULES: tuple[Rule, ...] = TORCHVISION_RULES


def _tv(arch: str, tag: str, file: str, weights: str, **kw) -> PretrainedCfg:
  return PretrainedCfg(
    arch=arch,
    tag=tag,
    rules=TORCHVISION_RULES,
    url=f"https://download.pytorch.org/models/{file}",
    source=f"torchvision {weights}",
    license="bsd-3-clause",
    **kw,
  )


def _timm(arch: str, tag: str) -> PretrainedCfg:
  # ResNet Strikes Back recipes; timm evaluates them at 288 px (test_input_size), trained at 224.
  return PretrainedCfg(
    arch=arch,
    tag=tag,
    rules=TIMM_RULES,
    hf_hub_id=f"timm/{arch}.{tag}",
    filename="model.safetensors",
    file_format="safetensors",
    crop_pct=0.95,
    interpolation="bicubic",
    source=f"timm {arch}.{tag} (Wightman et al., 2021, 'ResNet strikes back')",
    license="apache-2.0",
  )


# torchvision's V2 weights are evaluated with resize 232 -> crop 224.
_V2 = {"crop_pct": 224 / 232}
for _cfg in (
  _tv("resnet18", "tv_in1k", "resnet18-f37072fd.pth", "ResNet18_Weights.IMAGENET1K_V1"),
  _tv("resnet34", "tv_in1k", "resnet34-b627a593.pth", "ResNet34_Weights.IMAGENET1K_V1"),
  _tv("resnet50", "tv_in1k", "resnet50-0676ba61.pth", "ResNet50_Weights.IMAGENET1K_V1"),
  _tv("resnet50", "tv2_in1k", "resnet50-11ad3fa6.pth", "ResNet50_Weights.IMAGENET1K_V2", **_V2),
  _tv("resnet101", "tv_in1k", "resnet101-63fe2227.pth", "ResNet101_Weights.IMAGENET1K_V1"),
  _tv("resnet101", "tv2_in1k", "resnet101-cd907fc2.pth", "ResNet101_Weights.IMAGENET1K_V2", **_V2),
  _tv("resnet152", "tv_in1k", "resnet152-394f9c45.pth", "ResNet152_Weights.IMAGENET1K_V1"),
  _tv("resnet152", "tv2_in1k", "resnet152-f82ba261.pth", "ResNet152_Weights.IMAGENET1K_V2", **_V2),
  _timm("resnet18", "a1_in1k"),
  _timm("resnet34", "a1_in1k"),
  _timm("resnet50", "a1_in1k"),
  _timm("resnet101", "a1h_in1k"),
  _timm("resnet152", "a1h_in1k"),
):
  register_pretrained(_cfg)
