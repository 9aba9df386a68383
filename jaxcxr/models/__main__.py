r"""Lists the registered models: ``python -m jaxcxr.models [PATTERN] [--sources] [--check]``.

One short row per model from the registry's metadata, without building anything: name, trainable
parameters with the 1000-class ImageNet head (``default_cfg["num_params"]``), native input size
and the tags of its registered pretrained weights (``--sources``: where those come from).
``--check`` builds every listed model abstractly (``nnx.eval_shape``, nothing allocated; minutes
on a CPU) and fails if a stored parameter count differs from the built model's.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import app, flags

from jaxcxr import cli, models
from jaxcxr.weights import pretrained


def rows(pattern: str = "*") -> list[tuple[str, str, str, str, str]]:
  """(name, params, input size, pretrained tags, sources) for each model matching `pattern`."""
  out = []
  for name in models.list_models(pattern):
    cfg = models.get_default_cfg(name)
    size = cfg.get("input_size", ("?",) * 3)
    count = cfg.get("num_params")
    tags = pretrained.pretrained_tags(name)
    sources = sorted({pretrained.get_pretrained_cfg(f"{name}.{t}").source for t in tags})
    out.append(
      (
        name,
        "?" if count is None else f"{count / 1e6:.2f}M",
        "x".join(map(str, size[1:])),
        ", ".join(tags) or "-",
        "; ".join(sources) or "-",
      )
    )
  return out


def check(pattern: str = "*") -> list[str]:
  """Builds each model matching `pattern` abstractly; returns the stored counts that are wrong."""
  from flax import nnx  # pylint: disable=g-import-not-at-top

  wrong = []
  for name in models.list_models(pattern):
    abstract = nnx.eval_shape(lambda name=name: models.create(name, num_classes=1000))
    built, stored = models.param_count(abstract), models.get_default_cfg(name).get("num_params")
    print(f"{name}: built {built:,}, stored {stored if stored is None else f'{stored:,}'}")
    if built != stored:
      wrong.append(f"{name}: stored {stored}, built {built}")
  return wrong


def format_table(table: Sequence[Sequence[str]]) -> str:
  widths = [max(len(r[i]) for r in table) for i in range(len(table[0]) - 1)]
  return "\n".join(
    "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in table
  )


def define_flags() -> None:
  """Command-line flags, defined only when run as a program (so the module imports freely)."""
  flags.DEFINE_bool("sources", False, "Also say where each model's pretrained weights come from.")
  flags.DEFINE_bool(
    "check", False, "Build every listed model and compare its parameter count with the stored one."
  )


def main(argv: Sequence[str]) -> int:
  if len(argv) > 2:
    raise app.UsageError(f"Expected at most one PATTERN, got {argv[1:]}")
  pattern = argv[1] if len(argv) > 1 else "*"
  FLAGS = flags.FLAGS  # noqa: N806
  if FLAGS.check:
    wrong = check(pattern)
    if wrong:
      print("Stored parameter counts that differ from the built models:", *wrong, sep="\n  ")
      return 1
    print("All stored parameter counts match the built models.")
    return 0
  header = ("model", "params", "input", "pretrained tags", "source")
  table = [header, *rows(pattern)]
  if not FLAGS.sources:
    table = [r[:4] for r in table]
  print(format_table(table))
  return 0


if __name__ == "__main__":
  define_flags()
  cli.run(main)
