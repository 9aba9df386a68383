r"""Stratified, patient-grouped k-fold cross-validation of a training config.

    python -m jaxcxr.kfold --config configs/studies/alotaibi2020.py --workdir W [--folds 5]
    python -m jaxcxr.kfold --config configs/studies/alotaibi2020.py:tiny --workdir W --folds 2

Fold k is an ordinary run of `jaxcxr.train.train_and_evaluate` in `W/fold_k/` whose splits come
from the data layer (`config.input.splits.method='kfold'`, `fold=k`, `num_folds`; scikit-learn's
`StratifiedGroupKFold` by patient, `jaxcxr.data.resplit`), so the trainer sees plain train / val /
test splits. Validation is the held-out fold's patient-grouped, stratified half and test the other
half (`--val_from=held_out`, the default: Alotaibi 2020's protocol; every image is tested in one
fold and validated in one); `--val_from=rest` takes `input.splits.val_fraction` of all images from
the training folds instead. The held-out test half is never a monitor (`jaxcxr.train` refuses one).

Resumable per fold: a fold whose `eval/<split>.json` reports all exist is read, not re-run; an
interrupted fold resumes from its own checkpoints (the trainer's resume). A run that halts
(`halt_after_steps`) stops the driver, to be re-run with the same command.

Then a summary, `W/kfold_summary.json` and `W/kfold_summary.md`: per split, every scalar metric of
each fold (top-level, per-class and calibration numbers of `eval/<split>.json`; not intervals),
their mean and sample standard deviation (ddof=1) over folds, and the confusion matrix summed over
folds.

Side by side: folds are independent runs with their own workdirs and locks, so on several devices
or hosts run one driver per fold with `--only=K` (e.g. `CUDA_VISIBLE_DEVICES=K python -m
jaxcxr.kfold ... --only=K` for each K, or one job per host), then once all are done the same
command without `--only` (or `--summary_only`) finds every fold finished and writes the summary.
Without `--only` the folds run one after another in this process: one run already uses every
local device through the data-parallel mesh, and a second concurrent run would share them.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np
from absl import flags, logging
from ml_collections import config_flags

from jaxcxr import cli, metrics

SUMMARY_JSON, SUMMARY_MD = "kfold_summary.json", "kfold_summary.md"


def fold_config(
  config: ml_collections.ConfigDict, fold: int, num_folds: int, val_from: str = "held_out"
) -> ml_collections.ConfigDict:
  """`config` with its splits set to fold `fold` of `num_folds` (a copy); `val_from` as in
  `config.input.splits.val_from`."""
  if not 0 <= fold < num_folds:
    raise ValueError(f"fold {fold} is out of range for {num_folds} folds.")
  if tuple(config.input.splits.keep):
    raise ValueError(
      f"config.input.splits.keep={tuple(config.input.splits.keep)}: k-fold re-splits every "
      "image; unset keep."
    )
  c = copy.deepcopy(config)
  with c.unlocked():
    c.input.splits.method = "kfold"
    c.input.splits.fold = int(fold)
    c.input.splits.num_folds = int(num_folds)
    c.input.splits.test_per_class = 0
    c.input.splits.val_from = val_from
  return c


def fold_dir(workdir: str, fold: int) -> str:
  return os.path.join(workdir, f"fold_{fold}")


def read_reports(run_dir: str, split_names: Sequence[str]) -> dict[str, Any] | None:
  """`{split: eval/<split>.json}` of a finished run, or None when any report is missing."""
  paths = {s: os.path.join(run_dir, "eval", f"{s}.json") for s in split_names}
  if not all(os.path.exists(p) for p in paths.values()):
    return None
  out = {}
  for s, p in paths.items():
    with open(p) as f:
      out[s] = json.load(f)
  return out


def run_folds(
  config: ml_collections.ConfigDict,
  workdir: str,
  num_folds: int | None = None,
  only: Sequence[int] = (),
  summary_only: bool = False,
  val_from: str = "held_out",
) -> dict[str, Any]:
  """Runs (or reads) every fold of `config` into `workdir/fold_k/`, then summarises.

  Args:
    config: a training config; its `input.splits` become k-fold splits.
    workdir: parent of the fold runs and home of the summary.
    num_folds: folds (default: `config.input.splits.num_folds`).
    only: run just these folds (one driver per device or host); the summary is written once all
      folds have their reports.
    summary_only: run nothing; summarise the folds that are finished.
    val_from: 'held_out' (validation = half the held-out fold) or 'rest'.

  Returns:
    The summary (see `summarise`), with `finished` and `missing` fold lists.
  """
  from jaxcxr import train  # pylint: disable=g-import-not-at-top  (heavy; not for summary_only)

  num_folds = int(num_folds or config.input.splits.num_folds)
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  split_names = tuple(config.eval_splits)
  if not split_names:
    raise ValueError("config.eval_splits is empty: the k-fold summary has nothing to read.")
  for k in only:
    fold_config(config, int(k), num_folds, val_from)  # Range check before any fold runs.
  reports: dict[int, dict[str, Any]] = {}
  for k in range(num_folds):
    done = read_reports(fold_dir(workdir, k), split_names)
    if done is not None:
      logging.info("fold %d/%d: finished earlier, reading %s", k, num_folds, fold_dir(workdir, k))
      reports[k] = done
      continue
    if summary_only or (only and k not in only):
      continue
    with cli.phase(f"fold {k} of {num_folds}"):
      results = train.train_and_evaluate(
        fold_config(config, k, num_folds, val_from), fold_dir(workdir, k)
      )
    if not results:  # halt_after_steps: the same command resumes this fold.
      logging.info("fold %d halted before its end; re-run the same command to resume.", k)
      break
    reports[k] = read_reports(fold_dir(workdir, k), split_names)
  missing = [k for k in range(num_folds) if k not in reports]
  summary = summarise(reports, split_names)
  summary.update(num_folds=num_folds, finished=sorted(reports), missing=missing)
  if missing:
    logging.info(
      "Folds %s are not finished; the summary covers folds %s.", missing, sorted(reports)
    )
  metrics.write_json(os.path.join(workdir, SUMMARY_JSON), summary)
  with open(os.path.join(workdir, SUMMARY_MD), "w") as f:
    f.write(markdown(summary))
  print(markdown(summary), flush=True)
  return summary


def scalars(report: dict[str, Any]) -> dict[str, float]:
  """Every scalar metric of an `eval/<split>.json`: top-level numbers, `per_class.<name>.<m>`
  and `calibration.<m>`; not intervals, counts of examples per class, nor the selected step."""
  out: dict[str, float] = {}

  def take(prefix: str, d: dict[str, Any], skip: Sequence[str] = ()) -> None:
    for k, v in d.items():
      if k in skip or k.endswith(("_ci95", "_note")):
        continue
      if isinstance(v, bool) or not isinstance(v, int | float):
        continue
      out[prefix + k] = float(v)

  take("", report, skip=("num_examples",))
  for name, d in (report.get("per_class") or {}).items():
    take(f"per_class.{name}.", d, skip=("support",))
  if isinstance(report.get("calibration"), dict):
    take("calibration.", report["calibration"])
  return out


def mean_sd(values: Sequence[float]) -> dict[str, Any]:
  """Mean and sample standard deviation (ddof=1; None for one value) of the defined values."""
  v = np.asarray([x for x in values if x is not None and not math.isnan(x)], np.float64)
  if not len(v):
    return {"mean": None, "sd": None, "n": 0}
  return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else None, "n": len(v)}


def summarise(reports: dict[int, dict[str, Any]], split_names: Sequence[str]) -> dict[str, Any]:
  """Per split: each scalar per fold, mean ± sd over folds, and the summed confusion matrix."""
  out: dict[str, Any] = {"splits": {}}
  folds = sorted(reports)
  for s in split_names:
    per_fold = {k: scalars(reports[k][s]) for k in folds}
    keys = list(dict.fromkeys(key for k in folds for key in per_fold[k]))
    table = {
      key: {"folds": [per_fold[k].get(key) for k in folds], **mean_sd(
        [per_fold[k].get(key) for k in folds])}
      for key in keys
    }  # fmt: skip
    cms = [np.asarray(reports[k][s]["confusion_matrix"]) for k in folds]
    entry: dict[str, Any] = {
      "folds": folds,
      "num_examples": [int(reports[k][s]["num_examples"]) for k in folds],
      "metrics": table,
    }
    if cms:
      entry["class_names"] = reports[folds[0]][s].get("class_names")
      entry["confusion_matrix_summed"] = np.sum(cms, axis=0).tolist()
    out["splits"][s] = entry
  return out


def _fmt(v: float | None) -> str:
  return "n/a" if v is None else f"{v:.4f}"


def markdown(summary: dict[str, Any]) -> str:
  """The summary as Markdown: one table per split (metric × fold, mean ± sd) and the summed
  confusion matrix."""
  lines = [f"# k-fold summary ({len(summary.get('finished', []))} of "
           f"{summary.get('num_folds', '?')} folds finished)", ""]  # fmt: skip
  if summary.get("missing"):
    lines += [f"Folds not finished: {summary['missing']}.", ""]
  for s, e in summary["splits"].items():
    folds = e["folds"]
    lines += [f"## {s} (n per fold: {e['num_examples']})", ""]
    lines.append("| metric | " + " | ".join(f"fold {k}" for k in folds) + " | mean ± sd |")
    lines.append("| --- | " + " | ".join("---" for _ in folds) + " | --- |")
    for key, m in e["metrics"].items():
      sd = f" ± {m['sd']:.4f}" if m["sd"] is not None else ""
      lines.append(
        f"| {key} | " + " | ".join(_fmt(v) for v in m["folds"]) + f" | {_fmt(m['mean'])}{sd} |"
      )
    if "confusion_matrix_summed" in e:
      names = e.get("class_names") or [str(i) for i in range(len(e["confusion_matrix_summed"]))]
      lines += ["", "Confusion matrix summed over folds (rows: true, columns: predicted):", ""]
      lines.append("| true \\ predicted | " + " | ".join(names) + " |")
      lines.append("| --- | " + " | ".join("---" for _ in names) + " |")
      for name, row in zip(names, e["confusion_matrix_summed"], strict=True):
        lines.append(f"| {name} | " + " | ".join(str(x) for x in row) + " |")
    lines.append("")
  return "\n".join(lines)


FLAGS = flags.FLAGS


def define_flags() -> None:
  """Command-line flags, defined only when run as a program (so modules import freely)."""
  config_flags.DEFINE_config_file(
    "config", None, "Training config file (configs/*.py), with optional `:arg`.", lock_config=True
  )
  flags.DEFINE_string("workdir", None, "Fold runs go to WORKDIR/fold_k/, the summary to WORKDIR.")
  flags.DEFINE_integer("folds", None, "Number of folds (default: config.input.splits.num_folds).")
  flags.DEFINE_list("only", [], "Run only these folds (one driver per device or host).")
  flags.DEFINE_bool("summary_only", False, "Run nothing; summarise the finished folds.")
  flags.DEFINE_enum(
    "val_from", "held_out", ["held_out", "rest"],
    "Validation: half the held-out fold (Alotaibi 2020) or val_fraction of the training folds.",
  )  # fmt: skip
  cli.define_multihost_flags()


def main(argv):
  del argv
  cli.quiet_checkpoint_logs()
  cli.init_multihost()
  run_folds(
    FLAGS.config,
    FLAGS.workdir,
    FLAGS.folds,
    [int(k) for k in FLAGS.only],
    FLAGS.summary_only,
    FLAGS.val_from,
  )


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["config", "workdir"])
  cli.run(main, config_help=True)
