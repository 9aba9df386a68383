r"""`python -m jaxcxr.audit`: the leakage and shortcut audit from the command line.

    python -m jaxcxr.audit --data covid_chestxray/3class --data chest_xray_pneumonia/3class \
        --manual_dir chest_xray_pneumonia=PATH/TO/chest_xray --out audit/ --strict
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from absl import app, flags
from ml_collections import config_flags

from jaxcxr import cli
from jaxcxr.audit.records import (
  Record,
  manual_dir_for,
  parse_data_spec,
  records_from_config,
  records_from_tfds,
)
from jaxcxr.audit.report import run
from jaxcxr.audit.shortcuts import SHORTCUT_THRESHOLD
from jaxcxr.data.duplicates import CONFIRM_THRESHOLD, NEAR_THRESHOLD


def define_flags() -> None:
  """Command-line flags, defined only when run as a program (so the module imports freely)."""
  flags.DEFINE_multi_string(
    "data",
    [],
    "NAME[:SPLIT[,SPLIT...]] of a TFDS dataset (repeatable), e.g. chest_xray_pneumonia/3class or "
    "covid_chestxray/3class:train. All splits by default.",
  )
  config_flags.DEFINE_config_file("config", None, "Audit the splits of this training config.")
  flags.DEFINE_string("data_dir", None, "TFDS data dir.")
  flags.DEFINE_multi_string(
    "manual_dir", [], "Manual download dir, for every dataset (DIR) or one (NAME=DIR); repeatable."
  )
  flags.DEFINE_string("out", None, "Write audit.md and audit.json here.")
  flags.DEFINE_bool(
    "strict",
    False,
    "Exit with status 1 on any duplicate across splits, any patient in two splits of a dataset "
    "or a shortcut score above --shortcut_threshold.",
  )
  flags.DEFINE_integer("near_threshold", NEAR_THRESHOLD, "Max pHash distance (bits of 256).")
  flags.DEFINE_integer("confirm_threshold", CONFIRM_THRESHOLD, "Max wavelet-hash distance.")
  flags.DEFINE_float(
    "shortcut_threshold",
    SHORTCUT_THRESHOLD,
    "Shortcut score above which --strict fails (0 = metadata no better than the majority class "
    "or chance, 1 = metadata gives the class, or picks out one class, perfectly); 1: never.",
  )
  flags.DEFINE_integer("max_examples", 10, "Examples listed per finding.")
  flags.DEFINE_integer("folds", 5, "Cross-validation folds of the shortcut accuracy.")


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  FLAGS = flags.FLAGS  # noqa: N806
  inputs: list[Iterable[Record]] = []
  if FLAGS.config is not None:
    inputs.append(records_from_config(FLAGS.config, FLAGS.out))  # lung masks cached in OUT
  for spec in FLAGS.data:
    name, splits = parse_data_spec(spec)
    inputs.append(
      records_from_tfds(
        name,
        splits,
        data_dir=FLAGS.data_dir,
        manual_dir=manual_dir_for(name, FLAGS.manual_dir),
      )
    )
  if not inputs:
    raise app.UsageError("Give --data NAME[:SPLIT,...] (repeatable) or --config.")
  return run(
    itertools.chain.from_iterable(inputs),
    out=FLAGS.out,
    strict=FLAGS.strict,
    near_threshold=FLAGS.near_threshold,
    confirm_threshold=FLAGS.confirm_threshold,
    shortcut_threshold=FLAGS.shortcut_threshold,
    max_examples=FLAGS.max_examples,
    folds=FLAGS.folds,
    log_every=1000,
  )


if __name__ == "__main__":
  define_flags()
  cli.run(main, config_help=True)
