"""Name maps for MobileNetV2 checkpoints (Sandler et al., 2018, "MobileNetV2: Inverted Residuals
and Linear Bottlenecks"): torchvision's ``mobilenet_v2`` and timm's ``mobilenetv2_*``.

:class:`jaxcxr.models.mobilenet.MobileNetV2` keeps torchvision's module paths, so torchvision's
map is one rename (the classifier)::

    flat = convert.torch_to_flat(state_dict, TORCHVISION_RULES)   # or TIMM_RULES
    convert.merge_into(model, flat, first_conv="features.0.0", dont_load=(r"^head\\.fc\\.",))

==========================================  ===========================================  ========
torchvision key                             NNX path                                     transform
==========================================  ===========================================  ========
``features.0.0.weight`` (stem conv)         ``features.0.0.kernel``                      OIHW->HWIO
``features.0.1.*`` (stem bn)                ``features.0.1.{scale,bias,mean,var}``       --
``features.1.conv.0.{0,1}.*`` (dw, bn)      ``features.1.conv.0.{0,1}.*``                as above
``features.1.conv.{1,2}.*`` (proj, bn)      ``features.1.conv.{1,2}.*``                  as above
``features.{i}.conv.{0,1}.{0,1}.*``         ``features.{i}.conv.{0,1}.{0,1}.*``          as above
``features.{i}.conv.{2,3}.*`` (proj, bn)    ``features.{i}.conv.{2,3}.*``                as above
``features.18.{0,1}.*`` (last conv, bn)     ``features.18.{0,1}.*``                      as above
``classifier.1.weight``                     ``head.fc.kernel``                           transpose
``classifier.1.bias``                       ``head.fc.bias``                             --
==========================================  ===========================================  ========

(``i`` = 2 ... 17: the blocks with an expansion conv; ``features.1`` has expansion ratio 1.
Depthwise kernels (C, 1, 3, 3) become (3, 3, 1, C); ``num_batches_tracked`` is dropped.)

timm's ``mobilenetv2_100`` has the same layers under EfficientNet-style names. Its blocks are
numbered ``blocks.{stage}.{index}``; ``TIMM_RULES`` renumbers them to torchvision's flat
``features.{n}`` (stage depths 1, 2, 3, 4, 3, 3, 1, as every timm ``mobilenetv2_{035..140}``)
and then renames the layers inside:

========================================  ============================================
timm key                                  NNX path
========================================  ============================================
``conv_stem``, ``bn1``                    ``features.0.0``, ``features.0.1``
``blocks.0.0.{conv_dw,bn1}``              ``features.1.conv.0.{0,1}``
``blocks.0.0.{conv_pw,bn2}``              ``features.1.conv.{1,2}``
``blocks.s.j.{conv_pw,bn1}``              ``features.{n}.conv.0.{0,1}``
``blocks.s.j.{conv_dw,bn2}``              ``features.{n}.conv.1.{0,1}``
``blocks.s.j.{conv_pwl,bn3}``             ``features.{n}.conv.{2,3}``
``conv_head``, ``bn2``                    ``features.18.0``, ``features.18.1``
``classifier``                            ``head.fc``
========================================  ============================================
"""

from __future__ import annotations

from jaxcxr.weights.convert import Rule
from jaxcxr.weights.pretrained import PretrainedCfg, register_pretrained

TORCHVISION_RULES: tuple[Rule, ...] = ((r"^classifier\.1\.", "head.fc."),)

_TIMM_STAGE_DEPTHS = (1, 2, 3, 4, 3, 3, 1)


def _timm_block_rules() -> tuple[Rule, ...]:
  """``blocks.{s}.{j}.`` -> ``features.{n}.conv.`` with n counting blocks from 1 (after stem)."""
  rules, n = [], 1
  for s, depth in enumerate(_TIMM_STAGE_DEPTHS):
    for j in range(depth):
      rules.append((rf"^blocks\.{s}\.{j}\.", f"features.{n}.conv."))
      n += 1
  return tuple(rules)


TIMM_RULES: tuple[Rule, ...] = (
  # Stem, last conv and classifier first: their `bn1`/`bn2` are top-level, anchored at ^.
  (r"^conv_stem\.", "features.0.0."),
  (r"^bn1\.", "features.0.1."),
  (r"^conv_head\.", "features.18.0."),
  (r"^bn2\.", "features.18.1."),
  (r"^classifier\.", "head.fc."),
  *_timm_block_rules(),
  # The first block (depthwise separable, no expansion conv).
  (r"^(features\.1\.conv)\.conv_dw\.", r"\1.0.0."),
  (r"^(features\.1\.conv)\.bn1\.", r"\1.0.1."),
  (r"^(features\.1\.conv)\.conv_pw\.", r"\1.1."),
  (r"^(features\.1\.conv)\.bn2\.", r"\1.2."),
  # Every other block: expansion, depthwise, linear projection.
  (r"\.conv\.conv_pw\.", ".conv.0.0."),
  (r"\.conv\.bn1\.", ".conv.0.1."),
  (r"\.conv\.conv_dw\.", ".conv.1.0."),
  (r"\.conv\.bn2\.", ".conv.1.1."),
  (r"\.conv\.conv_pwl\.", ".conv.2."),
  (r"\.conv\.bn3\.", ".conv.3."),
)


# --- Pretrained weights (`jaxcxr.weights.pretrained.list_pretrained('mobilenet_v2.*')`) --------
_MOBILENET = {"first_conv": "features.0.0", "classifier": "head.fc"}
for _cfg in (
  # torchvision: V1 evaluated at resize 256 -> crop 224, V2 (new recipe) at 232 -> 224; bilinear.
  PretrainedCfg(
    arch="mobilenet_v2",
    tag="tv_in1k",
    rules=TORCHVISION_RULES,
    url="https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
    source="torchvision MobileNet_V2_Weights.IMAGENET1K_V1",
    license="bsd-3-clause",
    **_MOBILENET,
  ),
  PretrainedCfg(
    arch="mobilenet_v2",
    tag="tv2_in1k",
    rules=TORCHVISION_RULES,
    url="https://download.pytorch.org/models/mobilenet_v2-7ebf99e0.pth",
    crop_pct=224 / 232,
    source="torchvision MobileNet_V2_Weights.IMAGENET1K_V2",
    license="bsd-3-clause",
    **_MOBILENET,
  ),
  # timm's mobilenetv2_100 is this architecture under EfficientNet-style names (TIMM_RULES).
  PretrainedCfg(
    arch="mobilenet_v2",
    tag="ra_in1k",
    rules=TIMM_RULES,
    hf_hub_id="timm/mobilenetv2_100.ra_in1k",
    filename="model.safetensors",
    file_format="safetensors",
    interpolation="bicubic",
    source="timm mobilenetv2_100.ra_in1k (RandAugment recipe)",
    license="apache-2.0",
    **_MOBILENET,
  ),
):
  register_pretrained(_cfg)
