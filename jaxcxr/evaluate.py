r"""Evaluate a trained run: restore a checkpoint of a workdir and write the metric reports.

    python -m jaxcxr.evaluate --workdir W --splits test
    python -m jaxcxr.evaluate --config configs/chest_xray.py --workdir W --step 100 --splits val
    python -m jaxcxr.evaluate --workdir W --step best --splits test

Uses the config training saved in the workdir (or `--config`, with the same overrides), restores
the latest checkpoint (or `--step`: a number, or `best`) with `jaxcxr.inference` (an abstract
model, `nnx.eval_shape`; only parameters and statistics are read, no optimizer state is allocated
and no pretrained weights are downloaded), and writes `WORKDIR/eval/<split>.json` (or
`<split>@<step>.json` for an older step, `<split>@best.json`) with the keys of
`jaxcxr.metrics.classification_metrics`, its `loss` and `selected`, and the per-example
predictions beside it.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import ml_collections
from absl import flags
from ml_collections import config_flags

from jaxcxr import cli, evaluators, inference, losses, sharding, train


def evaluate(
  config: ml_collections.ConfigDict | None,
  workdir: str,
  splits: tuple[str, ...] | None = None,
  step: int | str | None = None,
) -> dict[str, Any]:
  """Restores checkpoint `step` (default: latest; `best`) of `workdir` and evaluates `splits`.

  `config`: None reads the one training saved in the workdir.

  Returns:
    `{split: metrics}`; also written by process 0 under `workdir/eval/`.
  """
  workdir = os.path.abspath(workdir)
  config = config if config is not None else inference.load_run_config(workdir)
  s = train.setup(config, restoring=True)  # No pretrained download: the checkpoint has it all.
  select, step = inference.resolve_step(workdir, step)
  # Against the abstract model of the setup: only parameters and statistics are read.
  state = inference.restore_state(
    workdir,
    select,
    step,
    inference.ModelState(params=s.state.params, rest=s.state.rest),
    sharding.replicated(s.mesh),
  )
  loss_fn = losses.make_loss(config.loss, len(s.class_names), s.class_weights)
  ctx = evaluators.EvalContext(
    config=config, mesh=s.mesh, data=s.data, class_names=s.class_names, graphdef=s.graphdef,
    eval_step=jax.jit(
      functools.partial(train.eval_step, graphdef=s.graphdef, config=config, loss_fn=loss_fn)
    ),
  )  # fmt: skip
  os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
  selected = {"select": "last" if select == "latest" else select, "step": int(step)}
  if select == "best":
    selected["monitor"] = config.best_monitor
  suffix = {"latest": "", "best": "@best"}.get(select, f"@{step}")
  return train.final_reports(
    ctx, state, tuple(splits or config.eval_splits), workdir, selected, suffix=suffix
  )


FLAGS = flags.FLAGS


def define_flags() -> None:
  """Command-line flags, defined only when run as a program (so modules import freely)."""
  config_flags.DEFINE_config_file(
    "config", None, "The training config (default: the one saved in the workdir).",
    lock_config=True,
  )  # fmt: skip
  flags.DEFINE_string("workdir", None, "The training run's workdir.")
  flags.DEFINE_list("splits", None, "Splits to evaluate (default: config.eval_splits).")
  flags.DEFINE_string("step", None, "Checkpoint step, 'latest' (default) or 'best'.")
  cli.define_multihost_flags()


def main(argv):
  del argv
  cli.init_multihost()
  cli.quiet_checkpoint_logs()
  evaluate(FLAGS.config, FLAGS.workdir, tuple(FLAGS.splits or ()) or None, FLAGS.step)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["workdir"])
  cli.run(main, config_help=True)
