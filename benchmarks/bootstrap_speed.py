r"""Wall time of the patient bootstrap (`jaxcxr.intervals.metrics_with_intervals`).

    python benchmarks/bootstrap_speed.py [--images 4000 --patients 1500 --classes 3 \
        --resamples 2000 --method bca] [--multilabel]

Synthetic scores (no data needed); prints one line per run with the time of the plain sklearn
metrics, of the whole report with intervals, and the interval widths of accuracy and macro AUROC.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np
from scipy import special

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from jaxcxr import intervals, metrics  # noqa: E402


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--images", type=int, default=4000)
  p.add_argument("--patients", type=int, default=1500)
  p.add_argument("--classes", type=int, default=3)
  p.add_argument("--resamples", type=int, default=2000)
  p.add_argument("--method", default="bca", choices=["bca", "percentile"])
  p.add_argument("--multilabel", action="store_true")
  a = p.parse_args()
  rng = np.random.default_rng(0)
  names = [f"c{i}" for i in range(a.classes)]
  if a.multilabel:
    labels = (rng.random((a.images, a.classes)) < 0.2).astype(int)
    probs = special.expit(rng.normal(size=labels.shape) + 1.5 * labels - 1)
  else:
    labels = rng.integers(0, a.classes, a.images)
    probs = special.softmax(
      rng.normal(size=(a.images, a.classes)) + 1.5 * np.eye(a.classes)[labels], 1
    )
  pids = rng.integers(0, a.patients, a.images).astype(str)
  t0 = time.perf_counter()
  metrics.classification_metrics(labels, probs, names)
  t1 = time.perf_counter()
  r = intervals.metrics_with_intervals(
    labels, probs, pids, names, n_resamples=a.resamples, method=a.method
  )
  t2 = time.perf_counter()
  acc, auc = r["accuracy_ci95"], r["auroc_macro_ci95"]
  print(
    f"images={a.images} patients={r['bootstrap']['n_clusters']} classes={a.classes} "
    f"multilabel={a.multilabel} resamples={a.resamples} method={a.method}: "
    f"sklearn metrics {t1 - t0:.2f} s, with intervals {t2 - t1:.2f} s; "
    f"accuracy {r['accuracy']:.3f} [{acc[0]:.3f}, {acc[1]:.3f}], "
    f"macro AUROC {r['auroc_macro']:.3f} [{auc[0]:.3f}, {auc[1]:.3f}]"
  )


if __name__ == "__main__":
  main()
