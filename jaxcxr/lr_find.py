r"""Learning-rate range test (Smith 2017, "Cyclical Learning Rates for Training Neural Networks";
fastai's `lr_find`): train briefly while the rate grows exponentially, and plot the loss.

    python -m jaxcxr.lr_find --config configs/chest_xray.py --workdir W [--start_lr 1e-7]
        [--end_lr 10] [--num_steps 100]

Runs jaxcxr's own jitted train step (stage 0 of the config: what trains, its optimizer) from the
config's initial model for `num_steps` steps with the rate going from `start_lr` to `end_lr`
geometrically, smooths the loss with fastai's debiased exponential average (beta 0.98), stops
early when the smoothed loss exceeds 4x its minimum, and suggests two rates: the steepest
descent of the smoothed loss against log-rate, and fastai's "minimum / 10". Writes
`WORKDIR/lr_find.json` and `WORKDIR/lr_find.png`; the run's checkpoints are not touched.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import flags, logging
from ml_collections import config_flags

from jaxcxr import cli, sharding, train
from jaxcxr.data import pipeline


def smooth(losses: np.ndarray, beta: float = 0.98) -> np.ndarray:
  """fastai's debiased exponential moving average of the loss."""
  avg, out = 0.0, []
  for i, loss in enumerate(losses, 1):
    avg = beta * avg + (1 - beta) * loss
    out.append(avg / (1 - beta**i))
  return np.asarray(out)


def suggest(lrs: np.ndarray, smoothed: np.ndarray) -> dict[str, float]:
  """The steepest descent of the smoothed loss in log-rate, and the rate at its minimum / 10."""
  skip = max(1, len(lrs) // 10)  # fastai skips the first and last points, noisy by nature.
  lo, hi = skip, max(skip + 2, len(lrs) - skip // 2)
  grads = np.gradient(smoothed[lo:hi], np.log(lrs[lo:hi]))
  return {
    "steep": float(lrs[lo + int(np.argmin(grads))]),
    "minimum_div_10": float(lrs[int(np.argmin(smoothed))] / 10),
  }


def lr_find(
  config: ml_collections.ConfigDict,
  workdir: str,
  start_lr: float = 1e-7,
  end_lr: float = 10.0,
  num_steps: int = 100,
) -> dict[str, Any]:
  """Runs the range test; returns and writes `{lrs, losses, smoothed, suggestions}`."""
  if not 0 < start_lr < end_lr:
    raise ValueError(f"Need 0 < start_lr < end_lr, got {start_lr} and {end_lr}.")
  if num_steps < 5:
    raise ValueError(f"num_steps={num_steps}: the test needs at least 5 steps.")
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  s = train.setup(config)
  st = s.stages[0]
  ratio = end_lr / start_lr
  schedule = lambda count: start_lr * ratio ** (count / (num_steps - 1))
  tx = st.make_tx(schedule)
  state = sharding.replicate(train.begin_stage(s.state, st, tx), s.mesh)
  step = jax.jit(
    train.bind_train_step(
      config, s.graphdef, tx, schedule, len(s.class_names), s.class_weights,
      trainable=st.trainable_tree(state.params), keep_stats=st.keep_stats_tree(state.rest),
    ),
    donate_argnums=0,
  )  # fmt: skip
  it = pipeline.train_iterator(
    s.train_source,
    local_batch_size=sharding.local_batch_size(config.input.batch_size, s.mesh),
    image_size=config.input.image_size,
    **pipeline.resize_args(config.input),
    seed=config.seed,
    num_workers=config.input.num_workers,
    num_threads=config.input.num_threads,
  )
  lrs, losses = [], []
  for i in range(num_steps):
    state, m = step(state, sharding.shard_batch(next(it), s.mesh))
    lrs.append(float(schedule(i)))
    losses.append(float(m["loss"]))
    sm = smooth(np.asarray(losses))
    if not np.isfinite(losses[-1]) or (i > 5 and sm[-1] > 4 * sm.min()):
      logging.info("lr_find: the loss diverged at lr %.3g (step %d); stopping.", lrs[-1], i)
      break
  lrs_a, losses_a = np.asarray(lrs), np.asarray(losses)
  finite = np.isfinite(losses_a)
  lrs_a, losses_a = lrs_a[finite], losses_a[finite]
  smoothed = smooth(losses_a)
  result = {
    "lrs": lrs_a.tolist(),
    "losses": losses_a.tolist(),
    "smoothed": smoothed.tolist(),
    "suggestions": suggest(lrs_a, smoothed) if len(lrs_a) >= 5 else {},
    "steps_run": len(lrs),
  }
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "lr_find.json"), "w") as f:
      json.dump(result, f, indent=2)
    plot(result, os.path.join(workdir, "lr_find.png"))
    print(f"lr_find suggestions: {result['suggestions']}", flush=True)
  return result


def plot(result: dict[str, Any], path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(6, 4))
  ax.plot(result["lrs"], result["losses"], alpha=0.3, label="loss")
  ax.plot(result["lrs"], result["smoothed"], label="smoothed loss")
  for name, lr in result["suggestions"].items():
    ax.axvline(
      lr, linestyle="--", color="C2" if name == "steep" else "C3", label=f"{name} {lr:.2e}"
    )
  ax.set_xscale("log")
  ax.set_xlabel("learning rate")
  ax.set_ylabel("training loss")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


FLAGS = flags.FLAGS


def define_flags() -> None:
  """Command-line flags, defined only when run as a program (so modules import freely)."""
  config_flags.DEFINE_config_file("config", None, "The training config.", lock_config=True)
  flags.DEFINE_string("workdir", None, "lr_find.json and lr_find.png go here.")
  flags.DEFINE_float("start_lr", 1e-7, "First learning rate of the sweep.")
  flags.DEFINE_float("end_lr", 10.0, "Last learning rate of the sweep.")
  flags.DEFINE_integer("num_steps", 100, "Steps of the sweep (fastai: 100).")


def main(argv):
  del argv
  lr_find(FLAGS.config, FLAGS.workdir, FLAGS.start_lr, FLAGS.end_lr, FLAGS.num_steps)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["config", "workdir"])
  cli.run(main, config_help=True)
