r"""Zhang & Liu 2021's homologous-transfer chain on the Kermany + Cohen sample, CPU-sized.

    python benchmarks/zhang_chain.py --workdir W [--data ../shared/data] [--image_size 96] \
        [--batch_size 32] [--source_epochs 8] [--stage_epochs 2,6]

The recipe is `configs/studies/zhang2021.py` (its `source`, `4class` and `3class` configs, built by
its own `get_config`), shrunk to fit a 2-core CPU; this script changes only:
* the backbone: EfficientNet-Lite0 from `tf_efficientnet_lite0.pypi_in1k` (the one real ImageNet
  checkpoint available offline) instead of ResNet-50 from `resnet50.tv_in1k`, with the weights'
  own input normalisation given explicitly so that every run of the chain normalises alike;
* the image size (`--image_size`, letterboxed as in the recipe) and batch;
* the length: the source task `--source_epochs` (the study: 30) with its ×0.9 step decay every
  fifth of them; each target's two stages `--stage_epochs` (the recipe: 5 classifier-only + 20
  with the first three layer groups frozen).

Runs, each one `jaxcxr.train.train_and_evaluate` in WORKDIR/<name> (a run whose eval/test.json
exists is read, not re-run): `source` (Kermany normal / bacterial / viral), then `4class` and
`3class` targets once from the source run's best state (homologous transfer) and once from the
ImageNet weights alone (`source=imagenet`), the comparison the study draws. Every run keeps its
lowest-validation-loss state (the recipe's `select='best'`); test is read once, at the end, with
the trainer's 95% patient-bootstrap intervals. Prints one JSON line per run and a Markdown table,
and writes WORKDIR/summary.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import common  # noqa: E402  benchmarks/common.py (this script's folder is on sys.path)
from absl import logging  # noqa: E402

from configs.studies import zhang2021  # noqa: E402
from jaxcxr import cli, train  # noqa: E402
from jaxcxr.training import steps as steps_lib  # noqa: E402

MODEL = "tf_efficientnet_lite0"
WEIGHTS = "tf_efficientnet_lite0.pypi_in1k"
RUNS = (  # (name, zhang2021 arg; SRC: the source run's workdir)
  ("source", "source"),
  ("4class_from_source", "4class,source=SRC"),
  ("4class_from_imagenet", "4class,source=imagenet,splits_from=SRC"),
  ("3class_from_source", "3class,source=SRC"),
  ("3class_from_imagenet", "3class,source=imagenet,splits_from=SRC"),
)


def make_config(name: str, arg: str, a: argparse.Namespace):
  """The study's config for one run, CPU-sized (see the module docstring for what changes)."""
  src = str(pathlib.Path(a.workdir) / "source")
  c = zhang2021.get_config(f"{arg.replace('SRC', src)},data={a.data}")
  c.model_name = MODEL
  if name == "source" or "imagenet" in name:
    c.model_init = WEIGHTS
  init = c.model_init
  c.model_init = WEIGHTS  # The weights' own normalisation, for every run of the chain alike.
  mean, std = steps_lib.input_mean_std(c)
  c.model_init = init
  c.input.mode, c.input.mean, c.input.std = "custom", tuple(mean), tuple(std)
  c.input.data_dir = a.data_dir
  c.input.image_size, c.input.batch_size = a.image_size, a.batch_size
  c.input.num_threads = 2
  if name == "source":
    c.num_epochs = float(a.source_epochs)
    fifth = a.source_epochs / 5  # The study decays ×0.9 every 5 of its 30 epochs.
    c.schedule.boundaries_epochs = tuple(fifth * k for k in range(1, 5))
  else:
    head, partial = a.stage_epochs
    with c.unlocked():
      c.stages[0].num_epochs, c.stages[1].num_epochs = float(head), float(partial)
  c.eval_every_steps = a.eval_every
  c.checkpoint_every_steps = a.eval_every
  c.progress_bar = False
  c.report.html = False  # Figures are not part of this comparison.
  return c


def run_one(name: str, arg: str, a: argparse.Namespace) -> dict:
  wd = pathlib.Path(a.workdir) / name
  wall = None
  if not (wd / "eval" / "test.json").exists():
    t0 = time.perf_counter()
    train.train_and_evaluate(make_config(name, arg, a), str(wd))
    wall = time.perf_counter() - t0
  with open(wd / "eval" / "test.json") as f:
    test = json.load(f)
  with open(wd / "eval" / "val.json") as f:
    val = json.load(f)
  row = {
    "run": name, "wall_s": wall, "n_test": test["num_examples"], "n_val": val["num_examples"],
    "selected": test.get("selected"), "class_names": test.get("class_names"),
    "accuracy": test.get("accuracy"), "accuracy_ci95": test.get("accuracy_ci95"),
    "auroc_macro": test.get("auroc_macro"), "auroc_macro_ci95": test.get("auroc_macro_ci95"),
    "f1_macro": test.get("f1_macro"), "confusion": test.get("confusion_matrix"),
    "val_loss": val.get("loss"), "val_accuracy": val.get("accuracy"),
  }  # fmt: skip
  print(json.dumps(row), flush=True)
  return row


def _ci(x, ci) -> str:
  if x is None:
    return "-"
  return f"{x:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def markdown(rows: list[dict]) -> str:
  table = [
    {
      "run": r["run"], "n": f"{r['n_test']} / {r['n_val']}",
      "acc": _ci(r["accuracy"], r["accuracy_ci95"]),
      "auc": _ci(r["auroc_macro"], r["auroc_macro_ci95"]),
      "f1": "-" if r["f1_macro"] is None else f"{r['f1_macro']:.3f}",
      "sel": "{} @ {}".format(*[(r["selected"] or {}).get(k, "-") for k in ("select", "step")]),
      "cm": json.dumps(r["confusion"]),
      "wall": "-" if r["wall_s"] is None else f"{r['wall_s']:.0f}",
    }
    for r in rows
  ]  # fmt: skip
  return common.markdown_table(
    [
      ("run", "run"), ("test / val images", "n"), ("test accuracy [95% CI]", "acc"),
      ("test macro AUROC [95% CI]", "auc"), ("test macro F1", "f1"), ("reported state", "sel"),
      ("test confusion (rows true)", "cm"), ("wall s", "wall"),
    ],
    table,
  )  # fmt: skip


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--workdir", required=True)
  p.add_argument("--data", default=os.environ.get("JAXCXR_SHARED_DATA", "../shared/data"),
                 help="the folder holding chest_xray/ and covid-chestxray-dataset/")  # fmt: skip
  p.add_argument("--data_dir", default=None, help="TFDS data dir (default WORKDIR/tfds)")
  p.add_argument("--image_size", type=int, default=96)
  p.add_argument("--batch_size", type=int, default=32)
  p.add_argument("--source_epochs", type=float, default=8.0)
  p.add_argument("--stage_epochs", default="2,6", help="classifier-only,partial epochs")
  p.add_argument("--eval_every", type=int, default=25)
  a = p.parse_args()
  a.stage_epochs = tuple(float(x) for x in a.stage_epochs.split(","))
  if len(a.stage_epochs) != 2:
    raise SystemExit(f"--stage_epochs={a.stage_epochs}: expected two numbers, e.g. 2,6")
  a.data_dir = a.data_dir or str(pathlib.Path(a.workdir) / "tfds")
  os.makedirs(a.data_dir, exist_ok=True)
  logging.set_verbosity(logging.INFO)  # The trainer's step, timing and loading lines.
  cli.quiet_checkpoint_logs()
  rows = [run_one(name, arg, a) for name, arg in RUNS]
  md = markdown(rows)
  print(md)
  (pathlib.Path(a.workdir) / "summary.md").write_text(md + "\n")


if __name__ == "__main__":
  main()
