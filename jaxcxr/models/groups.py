"""Named layer groups of every backbone, from the stem to the head, for staged fine-tuning.

Freezing "the first k groups" and discriminative learning rates (fastai's `slice(lo, hi)` spread
over layer groups, Howard & Gugger 2020; CheXNet's per-dense-block rates, Bassi & Attux 2021)
need the network cut into ordered pieces. As timm's `group_matcher`, each family lists
`(name, regex)` pairs over NNX parameter paths (`layer1/0/conv1/kernel`), in forward order. A
regex with a capture group expands into one group per distinct captured value, in order of
appearance (`('block', r'^blocks/(\\d+)/')` gives `block0`, `block1`, ...; alternatives that
form one group use `(?:...)`). Every parameter must
fall into exactly one group; `assign` checks that.

Keras layer indices ("unfreeze from layer N", Alotaibi 2020) map onto NNX path regexes with
`keras_trainable_from` for the models with Keras weights (see `KERAS_TRAINABLE_FROM`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

GroupSpec = Sequence[tuple[str, str]]

_RESNET = (
  ("stem", r"^(?:conv1|bn1)/"),
  ("layer1", r"^layer1/"),
  ("layer2", r"^layer2/"),
  ("layer3", r"^layer3/"),
  ("layer4", r"^layer4/"),
  ("head", r"^head/"),
)
# torchvision's DenseNet: each dense block together with the transition that follows it; the
# final norm belongs to the last block.
_DENSENET = (
  ("stem", r"^features/(?:conv0|norm0)/"),
  ("block1", r"^features/(?:denseblock1|transition1)/"),
  ("block2", r"^features/(?:denseblock2|transition2)/"),
  ("block3", r"^features/(?:denseblock3|transition3)/"),
  ("block4", r"^features/(?:denseblock4|norm5)/"),
  ("head", r"^head/"),
)
_EFFICIENTNET = (
  ("stem", r"^(?:conv_stem|bn1)/"),
  ("block", r"^blocks/(\d+)/"),
  ("top", r"^(?:conv_head|bn2)/"),
  ("head", r"^(?:classifier|head)/"),  # `head/`: a named head (`config.model.head`).
)
_MOBILENET = (
  ("stem", r"^features/0/"),
  ("block", r"^features/(\d+)/"),
  ("head", r"^head/"),
)
_VGG = (
  ("features", r"^features/"),
  ("fc", r"^classifier/[0-5]/"),
  ("head", r"^(?:classifier/6|head)/"),  # `head/`: a named head, which replaces fc6-fc8.
)
_INCEPTION = (
  ("stem", r"^Conv2d_"),
  ("mixed_", r"^Mixed_(\w\w)/"),
  ("head", r"^head/"),
)

# jaxcxr.models.unet: the encoder (a backbone, pretrained or not), the decoder, the 1x1 head.
_UNET = (
  ("encoder", r"^encoder/"),
  ("decoder", r"^decoder/"),
  ("head", r"^head/"),
)

_FAMILIES: tuple[tuple[str, GroupSpec], ...] = (
  ("unet", _UNET),
  ("resnet", _RESNET),
  ("densenet", _DENSENET),
  ("tf_efficientnet", _EFFICIENTNET),
  ("efficientnet", _EFFICIENTNET),
  ("mobilenet", _MOBILENET),
  ("vgg", _VGG),
  ("inception", _INCEPTION),
)


def group_spec(model_name: str) -> GroupSpec:
  """The `(name, regex)` list of `model_name`'s family (by name prefix)."""
  for prefix, spec in _FAMILIES:
    if model_name.startswith(prefix):
      return spec
  raise ValueError(
    f"No layer groups are defined for model {model_name!r}; known families: "
    f"{[p for p, _ in _FAMILIES]} (jaxcxr/models/groups.py)."
  )


def assign(model_name: str, paths: Sequence[str]) -> dict[str, list[str]]:
  """Ordered `{group: [paths]}` of `paths` (NNX parameter paths joined by '/').

  Raises:
    ValueError: if a path matches no group (the spec is incomplete for this model).
  """
  spec = [(name, re.compile(rx)) for name, rx in group_spec(model_name)]
  groups: dict[str, list[str]] = {}
  unmatched = []
  for path in paths:
    for name, rx in spec:
      m = rx.search(path)
      if m:
        key = name + m.group(1) if rx.groups else name
        groups.setdefault(key, []).append(path)
        break
    else:
      unmatched.append(path)
  if unmatched:
    raise ValueError(
      f"{len(unmatched)} parameters of {model_name} are in no layer group, e.g. {unmatched[:3]}; "
      "extend its spec in jaxcxr/models/groups.py."
    )
  # Forward order: groups appear in spec order, expanded groups in order of first appearance.
  order = {name: i for i, (name, _) in enumerate(spec)}
  first = {g: i for i, g in enumerate(groups)}

  def rank(g: str) -> tuple[int, int, int]:
    for name, rx in spec:
      if g == name or (rx.groups and g.startswith(name)):
        suffix = g[len(name) :]
        return order[name], int(suffix) if suffix.isdigit() else 0, first[g]
    return len(order), 0, first[g]

  return {g: groups[g] for g in sorted(groups, key=rank)}


# "Trainable from Keras layer N" (`model.layers[N:]` of `keras.applications.X` with ImageNet
# weights; Alotaibi 2020) as regexes over the NNX paths of jaxcxr's ports of those models. Listed
# for the indices the studies use, read from Keras 3.15's layer lists: ResNet50 165 is
# conv5_block3_1_conv (the last bottleneck onwards), VGG19 17 is block5_conv1 (the last conv
# block and the classifier), DenseNet121 423 is conv5_block16_2_conv (that conv, the final norm
# `bn` and the classifier), InceptionV3 299 is conv2d_93 — Keras' layer order there is not the
# forward order: layers[299:] hold the Mixed_7c pool-branch conv, two of Mixed_7c's batch norms
# (batch_normalization_85 and _93) and the classifier.
KERAS_TRAINABLE_FROM: dict[str, dict[int, tuple[str, ...]]] = {
  "resnet50_keras": {165: (r"^layer4/2/", r"^head/")},
  "vgg19": {17: (r"^features/(?:28|30|32|34)/", r"^(?:classifier|head)/")},
  "densenet121": {
    423: (r"^features/denseblock4/denselayer16/conv2/", r"^features/norm5/", r"^head/")
  },
  "inception_v3_keras": {
    299: (
      r"^Mixed_7c/branch_pool/(?:conv|bn)/",
      r"^Mixed_7c/branch1x1/bn/",
      r"^head/",
    )
  },
}


def keras_trainable_from(model_name: str, index: int) -> tuple[str, ...]:
  """Regexes of the parameters that train when Keras layers `index`: onwards train."""
  table = KERAS_TRAINABLE_FROM.get(model_name, {})
  if index not in table:
    known = {k: sorted(v) for k, v in KERAS_TRAINABLE_FROM.items()}
    raise ValueError(
      f"No Keras layer-index map for {model_name!r} index {index}; known: {known} "
      "(jaxcxr/models/groups.py)."
    )
  return table[index]
