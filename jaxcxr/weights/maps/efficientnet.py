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
