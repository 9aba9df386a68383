r"""Evaluate a trained run: restore a checkpoint of a workdir and write the metric reports.

    python -m jaxcxr.evaluate --config configs/chest_xray.py --workdir W --splits test
    python -m jaxcxr.evaluate --config configs/chest_xray.py --workdir W --step 100 --splits val

Uses the same config as training (with the same overrides), restores the latest checkpoint (or
`--step`) against an abstract train state (`nnx.eval_shape`: no optimizer state is allocated and
no pretrained weights are downloaded), and writes `WORKDIR/eval/<split>.json` (or
`<split>@<step>.json` for an older step) with the keys of `jaxcxr.metrics.classification_metrics`,
its `loss` and `selected`, and the per-example predictions beside it.
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
from jaxcxr import cli, evaluators, losses, train


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
  s = train.setup(config, restoring=True)  # No pretrained download: the checkpoint has it all.
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
  latest = checkpointer.latest_step()
  if latest is None:
    raise FileNotFoundError(f"No checkpoint in {workdir}/checkpoints to evaluate.")
  step = latest if step is None else step
  st = s.stages[int(checkpointer.restore_meta(step).get("stage", 0))]
  # An abstract target (nnx.eval_shape / jax.eval_shape): nothing is initialised or downloaded.
  tx = st.make_tx(st.schedule_fn(s.steps_per_epoch))
  state = checkpointer.restore_state(step, train.abstract_stage_state(s.state, st, tx, s.mesh))
  checkpointer.close()
  loss_fn = losses.make_loss(config.loss, len(s.class_names), s.class_weights)
  ctx = evaluators.EvalContext(
    config=config, mesh=s.mesh, data=s.data, class_names=s.class_names, graphdef=s.graphdef,
    eval_step=jax.jit(
      functools.partial(train.eval_step, graphdef=s.graphdef, config=config, loss_fn=loss_fn)
    ),
  )  # fmt: skip
  os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
  selected = {"select": "last" if step == latest else "step", "step": int(step)}
  return train.final_reports(
    ctx,
    state,
    tuple(splits or config.eval_splits),
    workdir,
    selected,
    suffix="" if step == latest else f"@{step}",
  )


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
