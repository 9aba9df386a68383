"""Lists every registered model: ``python -m jaxcxr.models [PATTERN]``.

One row per model: name, parameter count with the 1000-class ImageNet head (computed on an
abstract model from ``nnx.eval_shape``, so nothing is allocated), native input size, the tags of
its registered pretrained weights and where those come from.
"""

from __future__ import annotations

import sys

from flax import nnx

from jaxcxr import models
from jaxcxr.weights import pretrained


def rows(pattern: str = "*") -> list[tuple[str, str, str, str, str]]:
  """(name, params, input size, pretrained tags, sources) for each model matching `pattern`."""
  out = []
  for name in models.list_models(pattern):
    abstract = nnx.eval_shape(lambda name=name: models.create(name, num_classes=1000))
    size = models.get_default_cfg(name).get("input_size", ("?",) * 3)
    tags = pretrained.pretrained_tags(name)
    sources = sorted({pretrained.get_pretrained_cfg(f"{name}.{t}").source for t in tags})
    out.append(
      (
        name,
        f"{models.param_count(abstract) / 1e6:.2f}M",
        "x".join(map(str, size[1:])),
        ", ".join(tags) or "-",
        "; ".join(sources) or "-",
      )
    )
  return out


def main(argv: list[str]) -> None:
  header = ("model", "params", "input", "pretrained tags", "source")
  table = [header, *rows(argv[1] if len(argv) > 1 else "*")]
  widths = [max(len(r[i]) for r in table) for i in range(len(header) - 1)]
  for r in table:
    print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])


if __name__ == "__main__":
  main(sys.argv)
