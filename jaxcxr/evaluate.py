r"""Evaluate a trained run: restore a checkpoint of a workdir and write the metric reports.

    python -m jaxcxr.evaluate --config configs/chest_xray.py --workdir W --splits test
    python -m jaxcxr.evaluate --config configs/chest_xray.py --workdir W --step 100 --splits val

Uses the same config as training (with the same overrides), restores the latest checkpoint (or
`--step`) and writes `WORKDIR/eval/<split>.json` (or `<split>@<step>.json` for an older step) with
the keys of `jaxcxr.metrics.classification_metrics`.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import ml_collections
from absl import flags
from ml_collections import config_flags

from jaxcxr import checkpoint as ckpt_lib
from jaxcxr import cli, metrics, train


def evaluate(
  config: ml_collections.ConfigDict,
  workdir: str,
  splits: tuple[str, ...] | None = None,
  step: int | None = None,
) -> dict[str, Any]:
  """Restores checkpoint `step` (default: latest) of `workdir` and evaluates `splits`.

  Returns:
    `{split: metrics}`; also written by process 0 under `workdir/eval/`.
  """
  workdir = os.path.abspath(workdir)
  s = train.setup(config)
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
  latest = checkpointer.latest_step()
  if latest is None:
    raise FileNotFoundError(f"No checkpoint in {workdir}/checkpoints to evaluate.")
  step = latest if step is None else step
  state = checkpointer.restore_state(step, ckpt_lib.abstract_like(s.state))
  checkpointer.close()
  predict = jax.jit(functools.partial(train.predict_step, graphdef=s.graphdef, config=config))
  results = {}
  for split in splits or tuple(config.eval_splits):
    results[split] = train.evaluate_split(
      predict,
      state,
      s.data.split(split),
      mesh=s.mesh,
      config=config,
      class_names=s.class_names,
    )
    if jax.process_index() == 0:
      name = split if step == latest else f"{split}@{step}"
      os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
      metrics.write_json(os.path.join(workdir, "eval", f"{name}.json"), results[split])
      print(train.format_eval(f"{split} @ step {step}", results[split]), flush=True)
  return results


FLAGS = flags.FLAGS


def define_flags() -> None:
  """Command-line flags, defined only when run as a program (so modules import freely)."""
  config_flags.DEFINE_config_file("config", None, "The training config.", lock_config=True)
  flags.DEFINE_string("workdir", None, "The training run's workdir.")
  flags.DEFINE_list("splits", None, "Splits to evaluate (default: config.eval_splits).")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
  cli.define_multihost_flags()


def main(argv):
  del argv
  cli.init_multihost()
  cli.quiet_checkpoint_logs()
  evaluate(FLAGS.config, FLAGS.workdir, tuple(FLAGS.splits or ()) or None, FLAGS.step)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["config", "workdir"])
  cli.run(main, config_help=True)
