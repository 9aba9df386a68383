r"""Hyper-parameter search over a training config, ranked on a validation split only.

    python -m jaxcxr.sweep --config configs/studies/naik2021.py --workdir W
    python -m jaxcxr.sweep --config configs/studies/naik2021.py:tiny --workdir W --trials 2
    python -m jaxcxr.sweep --config C --workdir W --space random --trials 20 --seed 0

The config file's `get_hyper(arg)` (big_vision's convention: the same `:arg` as `get_config`)
returns either a list of trials, each a dict of dotted config keys to values
(`{'optimizer.lr': 1e-3, 'stages.1.optimizer.name': 'nadam'}`; an integer part indexes a tuple
such as `config.stages`), or a space, a dict of dotted keys to lists of values (or scipy.stats
distributions), which `--space grid` enumerates with scikit-learn's `ParameterGrid` and `--space
random` samples `--trials` times with `ParameterSampler` (seeded by `--seed`). `--trials N` keeps
the first N trials of a list or grid.

Trial k is an ordinary `jaxcxr.train.train_and_evaluate` run in `W/trial_k/` (its overrides in
`W/trial_k/overrides.json`; a re-run checks they are unchanged): finished trials are read, an
interrupted one resumes from its own checkpoints. Trials evaluate no test split: their
`eval_splits` lose every split whose name contains 'test', so no figure of the summary can be
selected on test data. Trials are ranked on `--monitor` (`<split>_<scalar>`, default the config's
`best_monitor`, else `val_loss`), read from the trial's final `eval/<split>.json` of its selected
state; its direction is that of the trainer's monitors (losses and errors lower, others higher).
`W/sweep_summary.json` and `W/sweep_summary.md` hold the table (rank, trial, overrides, every
validation scalar) and the command that trains the best trial's config in full, test split
included.

Trials run one after another in this process (each uses every local device through the data
mesh); `--only=K,...` runs a subset, so several hosts can share a sweep, and a last call without
it writes the summary over all of them.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import ml_collections
from absl import flags, logging
from ml_collections import config_flags

from jaxcxr import cli, metrics

SUMMARY_JSON, SUMMARY_MD = "sweep_summary.json", "sweep_summary.md"
SPACES = ("grid", "random")


def load_config_module(config_file: str) -> tuple[Any, str]:
  """The module of `path[:arg]` and its `arg` (imported from the path, as config_flags does)."""
  path, _, arg = config_file.partition(":")
  if not os.path.isfile(path):
    raise ValueError(f"--config {path}: no such file.")
  spec = importlib.util.spec_from_file_location("jaxcxr_sweep_config", path)
  module = importlib.util.module_from_spec(spec)
  sys.path.insert(0, os.getcwd())  # `from configs import common`, as when config_flags loads it.
  try:
    spec.loader.exec_module(module)
  finally:
    sys.path.remove(os.getcwd())
  return module, arg


def trials_from(
  hyper: Sequence[dict[str, Any]] | dict[str, Any],
  space: str = "grid",
  num_trials: int = 0,
  seed: int = 0,
) -> list[dict[str, Any]]:
  """The trials of a `get_hyper()` result: a list as is, a dict space by grid or random search."""
  from sklearn import model_selection  # pylint: disable=g-import-not-at-top

  if space not in SPACES:
    raise ValueError(f"--space={space!r} is not one of {SPACES}.")
  if isinstance(hyper, dict):
    if space == "random":
      if num_trials <= 0:
        raise ValueError("--space=random needs --trials > 0.")
      trials = list(model_selection.ParameterSampler(hyper, num_trials, random_state=seed))
    else:
      trials = list(model_selection.ParameterGrid(hyper))
  else:
    trials = [dict(t) for t in hyper]
  if num_trials > 0:
    trials = trials[:num_trials]
  if not trials:
    raise ValueError("get_hyper() gave no trials.")
  # JSON-able plain values (numpy scalars from ParameterSampler): stored and compared on resume.
  return [{k: v.item() if hasattr(v, "item") else v for k, v in t.items()} for t in trials]


def apply_overrides(
  config: ml_collections.ConfigDict, overrides: dict[str, Any]
) -> ml_collections.ConfigDict:
  """A copy of `config` with dotted-key `overrides` set (integer parts index tuples)."""
  c = copy.deepcopy(config)
  with c.unlocked():
    for key, value in overrides.items():
      node = c
      *parents, leaf = key.split(".")
      try:
        for p in parents:
          node = node[int(p)] if p.isdigit() else node[p]
        if leaf not in node:
          raise KeyError(leaf)
        node[leaf] = value
      except (KeyError, IndexError, TypeError) as e:
        raise ValueError(f"get_hyper(): the key {key!r} is not in the config ({e}).") from e
  return c


def without_test(split_names: Sequence[str]) -> tuple[str, ...]:
  return tuple(s for s in split_names if "test" not in s.lower())


def monitor_value(reports: dict[str, Any], monitor: str) -> tuple[str, str, float | None]:
  """`(split, scalar, value)` of a `<split>_<scalar>` monitor over a trial's final reports."""
  names = [s for s in reports if monitor.startswith(s + "_")]
  if not names:
    raise ValueError(
      f"--monitor={monitor!r} names no evaluated split: monitors are '<split>_<scalar>' over "
      f"{sorted(reports)}."
    )
  split = max(names, key=len)
  scalar = monitor[len(split) + 1 :]
  values = {**metrics.scalar_summary(reports[split]), "loss": reports[split].get("loss")}
  return split, scalar, values.get(scalar)


def run_sweep(
  config: ml_collections.ConfigDict,
  workdir: str,
  trials: list[dict[str, Any]],
  monitor: str = "",
  only: Sequence[int] = (),
  config_file: str = "",
) -> dict[str, Any]:
  """Runs (or reads) every trial into `workdir/trial_k/`, ranks them on `monitor`, summarises."""
  from jaxcxr import train  # pylint: disable=g-import-not-at-top
  from jaxcxr.training import stages as stages_lib  # pylint: disable=g-import-not-at-top

  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  monitor = monitor or config.best_monitor or "val_loss"
  if "test" in monitor.split("_")[0].lower():
    raise ValueError(f"--monitor={monitor!r}: a sweep never selects on a test split.")
  eval_splits = without_test(config.eval_splits)
  if not eval_splits:
    raise ValueError(f"config.eval_splits={tuple(config.eval_splits)} has no validation split.")
  rows = []
  for k, overrides in enumerate(trials):
    tdir = os.path.join(workdir, f"trial_{k}")
    c = apply_overrides(config, overrides)
    with c.unlocked():
      c.eval_splits = eval_splits
    reports = _read(tdir, eval_splits)
    if os.path.exists(os.path.join(tdir, "overrides.json")):
      with open(os.path.join(tdir, "overrides.json")) as f:
        if json.load(f) != json.loads(json.dumps(overrides)):  # Tuples are stored as lists.
          raise ValueError(
            f"{tdir} holds a trial with other overrides; use a new --workdir for a changed sweep."
          )
    if reports is None and (not only or k in only):
      os.makedirs(tdir, exist_ok=True)
      metrics.write_json(os.path.join(tdir, "overrides.json"), overrides)
      with cli.phase(f"trial {k} of {len(trials)}: {overrides}"):
        if train.train_and_evaluate(c, tdir):
          reports = _read(tdir, eval_splits)
        else:  # halt_after_steps: the same command resumes it.
          logging.info("trial %d halted before its end; re-run the same command to resume.", k)
          break
    row: dict[str, Any] = {"trial": k, "overrides": overrides, "finished": reports is not None}
    if reports is not None:
      split, scalar, value = monitor_value(reports, monitor)
      row["monitor"] = value
      row["scalars"] = {
        f"{s}_{key}": v
        for s, r in reports.items()
        for key, v in {**metrics.scalar_summary(r), "loss": r.get("loss")}.items()
      }
    rows.append(row)
  sign = stages_lib.monitor_sign(monitor)  # +1: lower is better.
  done = [r for r in rows if r["finished"] and r["monitor"] is not None]
  done.sort(key=lambda r: sign * r["monitor"])
  for rank, r in enumerate(done, 1):
    r["rank"] = rank
  summary: dict[str, Any] = {
    "monitor": monitor,
    "mode": "min" if sign > 0 else "max",
    "num_trials": len(trials),
    "finished": [r["trial"] for r in rows if r["finished"]],
    "trials": sorted(rows, key=lambda r: r.get("rank", len(rows) + 1 + r["trial"])),
  }
  if done:
    best = done[0]
    sets = " ".join(f"--config.{k}={json.dumps(v)}" for k, v in best["overrides"].items())
    summary["best"] = {"trial": best["trial"], "overrides": best["overrides"], "monitor": best[
      "monitor"]}  # fmt: skip
    summary["best"]["command"] = (
      f"python -m jaxcxr.train --config {config_file or 'CONFIG'} --workdir WORKDIR {sets}".strip()
    )
  metrics.write_json(os.path.join(workdir, SUMMARY_JSON), summary)
  with open(os.path.join(workdir, SUMMARY_MD), "w") as f:
    f.write(markdown(summary))
  print(markdown(summary), flush=True)
  return summary


def _read(run_dir: str, split_names: Sequence[str]) -> dict[str, Any] | None:
  from jaxcxr import kfold  # pylint: disable=g-import-not-at-top

  return kfold.read_reports(run_dir, split_names)


def markdown(summary: dict[str, Any]) -> str:
  """The ranked trials as a Markdown table (validation scalars only)."""
  keys = list(dict.fromkeys(k for r in summary["trials"] for k in r.get("scalars", {})))
  lines = [
    f"# Sweep: {len(summary['finished'])} of {summary['num_trials']} trials finished, ranked on "
    f"{summary['monitor']} ({summary['mode']})",
    "",
    "| rank | trial | overrides | " + " | ".join(keys) + " |",
    "| --- | --- | --- | " + " | ".join("---" for _ in keys) + " |",
  ]
  for r in summary["trials"]:
    cells = [
      "n/a" if r.get("scalars", {}).get(k) is None else f"{r['scalars'][k]:.4f}" for k in keys
    ]
    over = ", ".join(f"{k}={v}" for k, v in r["overrides"].items())
    lines.append(f"| {r.get('rank', '-')} | {r['trial']} | {over} | " + " | ".join(cells) + " |")
  if "best" in summary:
    best = summary["best"]
    lines += ["", f"Best (on {summary['monitor']}): trial {best['trial']}; train it in full, "
              "test split included:", "", f"    {best['command']}"]  # fmt: skip
  return "\n".join(lines) + "\n"


FLAGS = flags.FLAGS


def define_flags() -> None:
  """Command-line flags, defined only when run as a program (so modules import freely)."""
  config_flags.DEFINE_config_file(
    "config", None, "Training config file with get_hyper(arg), with optional `:arg`.",
    lock_config=True,
  )  # fmt: skip
  flags.DEFINE_string("workdir", None, "Trials go to WORKDIR/trial_k/, the summary to WORKDIR.")
  flags.DEFINE_enum("space", "grid", list(SPACES), "How a dict space is searched.")
  flags.DEFINE_integer("trials", 0, "Trials to run (random: to sample; list/grid: the first N).")
  flags.DEFINE_integer("seed", 0, "Seed of --space=random.")
  flags.DEFINE_string("monitor", "", "'<split>_<scalar>' (default: best_monitor, else val_loss).")
  flags.DEFINE_list("only", [], "Run only these trials (several hosts sharing one sweep).")


def main(argv):
  del argv
  cli.quiet_checkpoint_logs()
  config_file = config_flags.get_config_filename(FLAGS["config"])
  module, arg = load_config_module(config_file)
  if not hasattr(module, "get_hyper"):
    raise ValueError(f"--config {config_file}: the file defines no get_hyper(arg).")
  trials = trials_from(module.get_hyper(arg), FLAGS.space, FLAGS.trials, FLAGS.seed)
  run_sweep(FLAGS.config, FLAGS.workdir, trials, FLAGS.monitor, [int(k) for k in FLAGS.only],
            config_file)  # fmt: skip


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["config", "workdir"])
  cli.run(main, config_help=True)
