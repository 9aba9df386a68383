r"""Transfer vs scratch: the same budget from real ImageNet weights and from random initialisation.

    python benchmarks/transfer_vs_scratch.py --workdir /tmp/tvs --seeds 3 --steps 120 \
        --image_size 128 --batch_size 32 [--manual_dir ../shared/data/chest_xray]

The central claim of the five studies configs/studies/ reproduces (ImageNet pre-training helps
chest X-ray classification), measured on the Kermany pediatric pneumonia sample with the Kermany
recipe (configs/chest_xray.py: patient-disjoint re-split with the official test kept, RAdam,
cosine with warm-up, label smoothing 0.1, fastai augmentation without flips, the last state
reported) on EfficientNet-Lite0 (`tf_efficientnet_lite0`), once from
`tf_efficientnet_lite0.pypi_in1k` (the one real ImageNet checkpoint available offline; its RGB
stem summed to one grey channel) and once randomly initialised. Everything else is identical:
steps, batch, image size, optimizer and schedule, augmentation, input normalisation (the
pretrained weights' (x - 127) / 128 for both, so only the initial weights differ), the data split
(`input.splits.seed` 0) and, per seed, the shuffling and augmentation draws (`config.seed`).

Each (condition, seed) is one `jaxcxr.train.train_and_evaluate` run in WORKDIR/<condition>_s<seed>;
a run whose eval/test.json exists is read, not re-run (re-running the command resumes a series).
The dataset is prepared once into `--data_dir` (default WORKDIR/tfds) and shared by all runs.
Nothing is selected on test: the recipe reports its last state (`select='last'`), and the test
figures are read from each run's eval/test.json with the trainer's 95% patient-bootstrap
intervals (BCa, 2,000 resamples). Prints a Markdown table per run, mean ± sd over seeds per
condition, and the transfer − scratch difference of means with a paired Student-t 95% interval
over seeds (runs paired by seed). That interval is about training variability (initialisation,
order, augmentation) on this one fixed test set, not about sampling of test patients: the
per-run bootstrap intervals are. Also writes WORKDIR/summary.json and WORKDIR/summary.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import common  # noqa: E402  benchmarks/common.py (this script's folder is on sys.path)
import numpy as np  # noqa: E402
from absl import logging  # noqa: E402
from scipy import stats  # noqa: E402

from configs import chest_xray  # noqa: E402
from jaxcxr import cli, train  # noqa: E402
from jaxcxr.training import steps as steps_lib  # noqa: E402

MODEL = "tf_efficientnet_lite0"
WEIGHTS = "tf_efficientnet_lite0.pypi_in1k"
CONDITIONS = ("transfer", "scratch")
METRICS = ("accuracy", "auroc_macro")


def make_config(condition: str, seed: int, a: argparse.Namespace):
  """The Kermany recipe on Lite0 for one (condition, seed), at the benchmark's budget."""
  if condition not in CONDITIONS:
    raise ValueError(f"condition {condition!r} is not one of {CONDITIONS}")
  c = chest_xray.get_config()
  c.model_name = MODEL
  c.model_init = WEIGHTS
  # The pretrained weights' own normalisation, fixed for both conditions, so that the input
  # pipeline is identical and only the initial weights differ.
  mean, std = steps_lib.input_mean_std(c)
  c.input.mode, c.input.mean, c.input.std = "custom", tuple(mean), tuple(std)
  if condition == "scratch":
    c.model_init = ""
  c.seed = seed
  c.input.manual_dir = a.manual_dir
  c.input.data_dir = a.data_dir
  c.input.image_size = a.image_size
  c.input.batch_size = a.batch_size
  c.input.num_threads = 2
  c.num_epochs, c.total_steps = 0.0, a.steps
  # The recipe warms up 20 of ~120 steps; a shorter budget keeps that sixth.
  c.schedule.warmup_steps = min(c.schedule.warmup_steps, max(a.steps // 6, 0))
  c.eval_every_steps = min(c.eval_every_steps, a.steps)
  c.checkpoint_every_steps = a.steps  # One save: the runs are short and not resumed mid-way.
  c.progress_bar = False
  c.report.html = False  # Figures are not part of this comparison.
  return c


def _read(workdir: pathlib.Path, split: str) -> dict:
  with open(workdir / "eval" / f"{split}.json") as f:
    return json.load(f)


def run_one(condition: str, seed: int, a: argparse.Namespace) -> dict:
  """Trains (unless already done) and returns the run's row."""
  wd = pathlib.Path(a.workdir) / f"{condition}_s{seed}"
  wall = None
  if not (wd / "eval" / "test.json").exists():
    t0 = time.perf_counter()
    train.train_and_evaluate(make_config(condition, seed, a), str(wd))
    wall = time.perf_counter() - t0
  test, val = _read(wd, "test"), _read(wd, "val")
  row = {
    "condition": condition, "seed": seed, "workdir": str(wd), "wall_s": wall,
    "selected": test.get("selected"), "n_test": test["num_examples"],
    "n_val": val["num_examples"],
  }  # fmt: skip
  for m in METRICS:
    row[m], row[f"{m}_ci95"] = test.get(m), test.get(f"{m}_ci95")
    row[f"val_{m}"] = val.get(m)
  print(json.dumps(row), flush=True)
  return row


def _fmt(x, nd: int = 3) -> str:
  return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _with_ci(x, ci) -> str:
  return _fmt(x) + (f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "")


def _selected(sel: dict | None) -> str:
  sel = sel or {}
  return f"{sel.get('select', '-')} (step {sel.get('step', '-')})"


def summarise(rows: list[dict]) -> dict:
  """Mean ± sd over seeds per condition; the paired transfer − scratch difference, t interval."""
  out = {"conditions": {}, "difference": {}}
  by = {
    c: {r["seed"]: r for r in rows if r["condition"] == c and r["accuracy"] is not None}
    for c in CONDITIONS
  }
  for c in CONDITIONS:
    out["conditions"][c] = {"n_seeds": len(by[c])}
    for m in METRICS:
      v = np.array([r[m] for r in by[c].values() if r[m] is not None], float)
      out["conditions"][c][m] = {
        "mean": float(v.mean()) if v.size else None,
        "sd": float(v.std(ddof=1)) if v.size > 1 else None,
      }
  paired = sorted(set(by["transfer"]) & set(by["scratch"]))
  for m in METRICS:
    d = np.array(
      [by["transfer"][s][m] - by["scratch"][s][m] for s in paired
       if by["transfer"][s][m] is not None and by["scratch"][s][m] is not None],
      float,
    )  # fmt: skip
    entry = {"n_pairs": int(d.size), "mean": float(d.mean()) if d.size else None, "ci95": None}
    if d.size > 1:
      half = stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
      entry["ci95"] = [float(d.mean() - half), float(d.mean() + half)]
      entry["sd"] = float(d.std(ddof=1))
    entry["per_seed"] = [float(x) for x in d]
    out["difference"][m] = entry
  out["paired_seeds"] = paired
  out["interval"] = "paired Student-t 95% over seeds (t_{0.975, n-1} * sd / sqrt(n))"
  return out


def markdown(rows: list[dict], summary: dict) -> str:
  per_run = [
    {
      "cond": r["condition"], "seed": r["seed"],
      "acc": _with_ci(r["accuracy"], r["accuracy_ci95"]),
      "auc": _with_ci(r["auroc_macro"], r["auroc_macro_ci95"]),
      "vacc": _fmt(r["val_accuracy"]), "vauc": _fmt(r["val_auroc_macro"]),
      "sel": _selected(r["selected"]),
      "wall": "-" if r["wall_s"] is None else f"{r['wall_s']:.0f}",
    }
    for r in rows
  ]  # fmt: skip
  n_test = rows[0]["n_test"] if rows else "?"
  n_val = rows[0]["n_val"] if rows else "?"
  t1 = common.markdown_table(
    [
      ("condition", "cond"), ("seed", "seed"),
      (f"test accuracy [95% CI] (n={n_test})", "acc"), ("test macro AUROC [95% CI]", "auc"),
      (f"val acc (n={n_val})", "vacc"), ("val AUROC", "vauc"), ("reported state", "sel"),
      ("wall s", "wall"),
    ],
    per_run,
  )  # fmt: skip
  agg = []
  for c in CONDITIONS:
    s = summary["conditions"][c]
    agg.append(
      {
        "cond": c, "n": s["n_seeds"],
        **{m: f"{_fmt(s[m]['mean'])} ± {_fmt(s[m]['sd'])}" for m in METRICS},
      }
    )  # fmt: skip
  d = summary["difference"]
  agg.append(
    {
      "cond": "transfer − scratch (paired by seed)", "n": d["accuracy"]["n_pairs"],
      **{
        m: (f"{d[m]['mean']:+.3f}" if d[m]["mean"] is not None else "-")
        + (f" [{d[m]['ci95'][0]:+.3f}, {d[m]['ci95'][1]:+.3f}]" if d[m]["ci95"] else "")
        for m in METRICS
      },
    }
  )  # fmt: skip
  t2 = common.markdown_table(
    [("condition", "cond"), ("seeds", "n"), ("test accuracy mean ± sd", "accuracy"),
     ("test macro AUROC mean ± sd", "auroc_macro")],
    agg,
  )  # fmt: skip
  return (
    t1 + "\n\n" + t2 + "\n\nDifference interval: " + summary["interval"] + "; per-run "
    "intervals: the trainer's 95% patient bootstrap on test.\n"
  )


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--workdir", required=True)
  p.add_argument("--seeds", type=int, default=3, help="seeds 0..S-1 per condition")
  p.add_argument("--steps", type=int, default=120)
  p.add_argument("--image_size", type=int, default=128)
  p.add_argument("--batch_size", type=int, default=32)
  shared = os.environ.get("JAXCXR_SHARED_DATA", str(REPO.parent / "shared" / "data"))
  p.add_argument("--manual_dir", default=os.path.join(shared, "chest_xray"))
  p.add_argument("--data_dir", default="", help="prepared datasets (default WORKDIR/tfds)")
  p.add_argument("--conditions", default=",".join(CONDITIONS))
  a = p.parse_args()
  if a.seeds < 1 or a.steps < 1:
    p.error(f"--seeds and --steps must be >= 1 (got {a.seeds}, {a.steps})")
  if not os.path.isdir(a.manual_dir):
    p.error(f"--manual_dir {a.manual_dir}: no such directory (the Kermany sample)")
  conditions = a.conditions.split(",")
  bad = sorted(set(conditions) - set(CONDITIONS))
  if bad:
    p.error(f"--conditions: unknown {bad}; choose from {list(CONDITIONS)}")
  a.data_dir = a.data_dir or os.path.join(a.workdir, "tfds")
  os.makedirs(a.data_dir, exist_ok=True)
  logging.set_verbosity(logging.INFO)  # The trainer's step, timing and loading lines.
  cli.quiet_checkpoint_logs()
  # Seed-major order: a series stopped early still has pairs.
  rows = [run_one(c, s, a) for s in range(a.seeds) for c in conditions]
  summary = summarise(rows)
  text = markdown(rows, summary)
  print(text)
  wd = pathlib.Path(a.workdir)
  (wd / "summary.json").write_text(json.dumps({"runs": rows, **summary}, indent=1))
  (wd / "summary.md").write_text(text)


if __name__ == "__main__":
  main()
