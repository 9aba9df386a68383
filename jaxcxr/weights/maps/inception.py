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

from jaxcxr.weights.convert import Rule

TORCHVISION_RULES: tuple[Rule, ...] = ((r"^fc\.", "head.fc."),)
TIMM_RULES: tuple[Rule, ...] = TORCHVISION_RULES

# dont_load regex that drops the checkpoint's auxiliary classifier (model built without it).
DONT_LOAD_AUX: tuple[str, ...] = (r"^AuxLogits\.",)
